//! Peer-to-peer live migration with a bandwidth cap, a polled job, a
//! timeout that aborts the job, and a check of where the VM is afterwards.
//!
//! `virDomainMigrateToURI3` (flags `LIVE | PEER2PEER | UNSAFE`; `UNSAFE`
//! because lab disks are not `cache='none'`; Keel's guests share no disk
//! or use shared storage the operator vouches for) runs on a scoped thread
//! while this one polls `virDomainGetJobInfo` every 100 ms and, past the
//! timeout, aborts the job (`virsh domjobabort`: the binding does not wrap
//! `virDomainAbortJob`). The completed job's statistics (downtime, bytes)
//! come from `virsh domjobinfo --completed --rawstats`: the binding's
//! `job_stats` builds a `Vec` from a null pointer when libvirt has no
//! statistics to return (undefined behaviour; it aborts debug builds). A migration that failed leaves the VM on its
//! source: running is reported as `MigrationFailed`; paused is resumed
//! first; nowhere running is `VmLost`.

use super::{hv, virsh, LibvirtDriver};
use crate::{DriverError, MigrationOutcome, MigrationRequest};
use std::time::{Duration, Instant};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState, MigrateParameters};
use virt::sys;

const POLL: Duration = Duration::from_millis(100);

/// What the job reported last while it ran.
#[derive(Default)]
struct Progress {
    bytes: Option<f64>,
}

pub(super) fn migrate(
    d: &mut LibvirtDriver,
    req: &MigrationRequest<'_>,
) -> Result<MigrationOutcome, DriverError> {
    let (si, ti) = (d.host_index(req.from)?, d.host_index(req.to)?);
    let (src, dst) = (&d.hosts[si], &d.hosts[ti]);
    let ctx = format!("migrating VM {} from {} to {}", req.vm, req.from, req.to);
    if si == ti {
        return Err(DriverError::Hypervisor {
            context: ctx,
            message: "source and target are the same host".into(),
        });
    }
    let dom = match src.conn.lookup_domain_by_name(req.vm) {
        Ok(dom) if dom.is_active().unwrap_or(false) => dom,
        _ => {
            return Err(DriverError::Unknown {
                kind: "VM",
                name: format!("{} (not running on host {})", req.vm, req.from),
            })
        }
    };
    let params = MigrateParameters {
        uri: dst.migration_uri.clone(),
        bandwidth: req.max_bandwidth_bytes_per_second.map(mib_per_second),
        ..Default::default()
    };
    let flags = sys::VIR_MIGRATE_LIVE | sys::VIR_MIGRATE_PEER2PEER | sys::VIR_MIGRATE_UNSAFE;
    let start = Instant::now();
    let mut progress = Progress::default();
    let mut abort_note: Option<String> = None;
    let result = std::thread::scope(|s| {
        let job = s.spawn(|| dom.migrate_to_uri3(Some(&dst.peer_uri), params, flags));
        while !job.is_finished() {
            std::thread::sleep(POLL);
            if let Ok(stats) = dom.job_info() {
                if let Some(b) = stats.data_processed {
                    progress.bytes = Some(b as f64);
                }
            }
            if abort_note.is_none() && start.elapsed() > req.timeout {
                abort_note = Some(match virsh(&src.uri, &["domjobabort", req.vm]) {
                    Ok(_) => format!(
                        "timed out after {:.1} s; job aborted",
                        req.timeout.as_secs_f64()
                    ),
                    Err(e) => format!(
                        "timed out after {:.1} s; aborting the job failed: {e}",
                        req.timeout.as_secs_f64()
                    ),
                });
            }
        }
        job.join()
    });
    let seconds = start.elapsed().as_secs_f64();
    let cause = match result {
        // (Also when it finished just as the timeout struck: it is done.)
        Ok(Ok(())) => {
            let uris = [src.uri.as_str(), dst.uri.as_str()];
            return finished(&dst.conn, uris, req, seconds, progress, &ctx);
        }
        Ok(Err(e)) => match abort_note {
            Some(note) => format!("{note} ({})", e.message()),
            None => e.message().to_string(),
        },
        Err(_) => "the migration thread panicked".to_string(),
    };
    recover(&dom, &dst.conn, req, cause, seconds, progress)
}

/// libvirt takes MiB/s; at least 1 (0 would mean unlimited).
fn mib_per_second(bytes_per_second: f64) -> u64 {
    (bytes_per_second / 1048576.0).ceil().max(1.0) as u64
}

/// The job said it completed: check the VM runs on the target and read
/// the completed job's statistics (re-read once if downtime is not in yet).
fn finished(
    dst: &Connect,
    uris: [&str; 2],
    req: &MigrationRequest<'_>,
    seconds: f64,
    progress: Progress,
    ctx: &str,
) -> Result<MigrationOutcome, DriverError> {
    let dst_dom = dst.lookup_domain_by_name(req.vm).ok();
    match dst_dom.as_ref().map(state_of) {
        Some(Some(DomainState::Running)) => {}
        Some(Some(DomainState::Paused)) => {
            let d = dst_dom.as_ref().expect("looked up");
            d.resume()
                .map_err(|e| hv(format!("{ctx}: resuming it on {}", req.to), e))?;
        }
        _ => {
            return Err(DriverError::VmLost {
                vm: req.vm.into(),
                from: req.from.into(),
                to: req.to.into(),
                cause: "libvirt reported success but the VM does not run on the target".into(),
            })
        }
    }
    let mut outcome = MigrationOutcome {
        seconds,
        downtime_ms: None,
        bytes: progress.bytes,
    };
    // The source's record of the outgoing job, else the target's of the
    // incoming one; once more after 300 ms if the downtime is not in yet.
    'attempts: for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        for uri in uris {
            let Ok(text) = virsh(uri, &["domjobinfo", req.vm, "--completed", "--rawstats"]) else {
                continue;
            };
            let stats = raw_stats(&text);
            if let Some(&b) = stats.get("data_processed").filter(|&&b| b > 0.0) {
                outcome.bytes = Some(b);
            }
            if let Some(&ms) = stats.get("downtime").filter(|&&ms| ms > 0.0) {
                outcome.downtime_ms = Some(ms);
                break 'attempts;
            }
        }
    }
    Ok(outcome)
}

/// Numeric `key: value` lines of `virsh domjobinfo --rawstats` (libvirt
/// 9.0 prints `downtime: 188`; `key=value` is accepted too).
fn raw_stats(text: &str) -> std::collections::HashMap<&str, f64> {
    text.lines()
        .filter_map(|l| l.trim().split_once([':', '=']))
        .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k.trim(), v)))
        .collect()
}

/// The state of a domain, `None` if it cannot be read (gone, shut off).
fn state_of(dom: &Domain) -> Option<DomainState> {
    match dom.info() {
        Ok(info) => info.state.known(),
        Err(_) => None,
    }
}

/// The migration failed: find the VM, never leave it paused, say where it is.
fn recover(
    src_dom: &Domain,
    dst: &Connect,
    req: &MigrationRequest<'_>,
    cause: String,
    seconds: f64,
    progress: Progress,
) -> Result<MigrationOutcome, DriverError> {
    let failed = |cause: String| DriverError::MigrationFailed {
        vm: req.vm.into(),
        from: req.from.into(),
        to: req.to.into(),
        cause,
    };
    let lost = |cause: String| DriverError::VmLost {
        vm: req.vm.into(),
        from: req.from.into(),
        to: req.to.into(),
        cause,
    };
    // libvirt may still be resuming the source after a cancelled job.
    std::thread::sleep(Duration::from_millis(200));
    let dst_dom = dst.lookup_domain_by_name(req.vm).ok();
    let on_target = dst_dom.as_ref().and_then(state_of);
    let on_source = state_of(src_dom);
    match (on_source, on_target) {
        (Some(DomainState::Running), _) => Err(failed(cause)),
        // The error came after the switch-over: the VM runs on the target.
        (_, Some(DomainState::Running)) => Ok(MigrationOutcome {
            seconds,
            downtime_ms: None,
            bytes: progress.bytes,
        }),
        (Some(DomainState::Paused), _) => {
            // A half-arrived copy on the target must go before the source
            // runs again (never two running copies).
            if let Some(d) = dst_dom.as_ref().filter(|d| d.is_active().unwrap_or(false)) {
                let _ = d.destroy();
            }
            match src_dom.resume() {
                Ok(()) => Err(failed(format!(
                    "{cause}; the VM was paused on {} and has been resumed",
                    req.from
                ))),
                Err(_) if state_of(src_dom) == Some(DomainState::Running) => Err(failed(cause)),
                Err(e) => Err(lost(format!(
                    "{cause}; the VM is paused on {} and resuming it failed: {}",
                    req.from,
                    e.message()
                ))),
            }
        }
        _ => Err(lost(cause)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_in_whole_mib_per_second() {
        assert_eq!(mib_per_second(1.0), 1);
        assert_eq!(mib_per_second(10.0 * 1048576.0), 10);
        assert_eq!(mib_per_second(10.5 * 1048576.0), 11);
    }

    #[test]
    fn completed_job_raw_stats() {
        let text = "Job type: 3\n\ndowntime: 188\ndata_processed=92798621\nerrmsg: x: y\n";
        let s = raw_stats(text);
        assert_eq!(s.get("downtime"), Some(&188.0));
        assert_eq!(s.get("data_processed"), Some(&92798621.0));
        assert_eq!(s.get("errmsg"), None);
    }
}
