//! Failure injection: a throttled live migration whose destination QEMU is
//! killed (SIGKILL) while the migration runs; then where the VM is.

use super::meter;
use crate::cmd::run;
use keel_drivers::libvirt::LibvirtDriver;
use keel_drivers::{Driver, DriverError, MigrationRequest};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bandwidth cap of the injected migration: slow enough (a 128 MiB TCG
/// guest sends ~30-60 MB of non-zero pages) that the kill lands mid-copy.
pub const BANDWIDTH_BYTES_PER_SECOND: f64 = 2.0 * 1048576.0;

/// How long after the destination QEMU appears it is killed.
pub const KILL_DELAY: Duration = Duration::from_millis(1500);

/// What the failure injection did and found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Injection {
    /// The VM.
    pub vm: String,
    /// Its host.
    pub from: String,
    /// The destination whose QEMU was killed.
    pub to: String,
    /// Bandwidth cap of the migration, MiB/s.
    pub bandwidth_mib_per_second: f64,
    /// What was killed: `SIGKILL qemu pid N (incoming, in netns ...)`.
    pub killed: Option<String>,
    /// Seconds from the migration's start to the kill.
    pub killed_after_seconds: Option<f64>,
    /// Seconds from the migration's start to the driver's answer.
    pub failed_after_seconds: f64,
    /// The driver's error (`DriverError::MigrationFailed` names the cause),
    /// or `null` if the migration succeeded (the kill came too late).
    pub error: Option<String>,
    /// The kind of error: `MigrationFailed`, `VmLost`, or another.
    pub error_kind: Option<String>,
    /// Where the driver then sees the VM running (`null`: nowhere).
    pub vm_running_on: Option<String>,
    /// libvirt's state of the VM there (`running`, `paused`...).
    pub vm_state: String,
    /// Whether its TICK counter still advances (within 10 s).
    pub ticks_advancing: bool,
}

impl Injection {
    /// The injection proved what it should: the migration failed with
    /// `MigrationFailed`, and the VM runs, unpaused and progressing, on
    /// its source.
    pub fn passed(&self) -> bool {
        self.killed.is_some()
            && self.error_kind.as_deref() == Some("MigrationFailed")
            && self.vm_running_on.as_deref() == Some(self.from.as_str())
            && self.vm_state == "running"
            && self.ticks_advancing
    }
}

/// Where the kill went.
struct Killed {
    what: String,
    after: Duration,
}

/// Pids in network namespace `netns` (`ip netns pids`).
fn netns_pids(netns: &str) -> Vec<u32> {
    run(
        "list namespace pids",
        "ip",
        &["netns", "pids", netns],
        Duration::from_secs(5),
    )
    .map(|s| {
        s.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// True if `pid` is the incoming QEMU of `vm`: libvirt names the guest
/// `-name guest=VM,...` and passes `-incoming`.
fn is_incoming_qemu(pid: u32, vm: &str) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let name = format!("guest={vm},");
    args.iter().any(|a| a == "-incoming")
        && args
            .iter()
            .any(|a| a.starts_with(&name) || a == &format!("guest={vm}"))
}

/// Waits (while the migration runs) for the incoming QEMU of `vm` in
/// `netns`, lets it receive for [`KILL_DELAY`], and SIGKILLs it.
fn kill_incoming(netns: &str, vm: &str, start: Instant, done: &AtomicBool) -> Option<Killed> {
    let pid = loop {
        if done.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(60) {
            return None;
        }
        if let Some(p) = netns_pids(netns)
            .into_iter()
            .find(|&p| is_incoming_qemu(p, vm))
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seen = Instant::now();
    while seen.elapsed() < KILL_DELAY {
        if done.load(Ordering::SeqCst) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = pid.to_string();
    run(
        "kill destination QEMU",
        "kill",
        &["-KILL", &p],
        Duration::from_secs(5),
    )
    .ok()?;
    Some(Killed {
        what: format!("SIGKILL qemu pid {pid} (incoming {vm}, in netns {netns})"),
        after: start.elapsed(),
    })
}

fn kind(e: &DriverError) -> &'static str {
    match e {
        DriverError::MigrationFailed { .. } => "MigrationFailed",
        DriverError::VmLost { .. } => "VmLost",
        DriverError::Hypervisor { .. } => "Hypervisor",
        DriverError::Unknown { .. } => "Unknown",
        DriverError::Unsupported(_) => "Unsupported",
        _ => "other",
    }
}

/// Migrates `vm` from `from` to `to` (host names of `driver`; `to_netns`
/// is the destination's network namespace) at [`BANDWIDTH_BYTES_PER_SECOND`]
/// and kills the destination QEMU during it; then observes where the VM
/// runs, its libvirt state (`uris`: host name -> libvirt URI) and whether
/// its serial counter still advances.
pub fn run_injection(
    driver: &mut LibvirtDriver,
    vm: &str,
    (from, to): (&str, &str),
    to_netns: &str,
    uris: &[(String, String)],
    serial: &Path,
) -> Injection {
    let request = MigrationRequest {
        vm,
        from,
        to,
        max_bandwidth_bytes_per_second: Some(BANDWIDTH_BYTES_PER_SECOND),
        timeout: Duration::from_secs(120),
    };
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (result, killed) = std::thread::scope(|s| {
        let killer = s.spawn(|| kill_incoming(to_netns, vm, start, &done));
        let result = driver.migrate(&request);
        done.store(true, Ordering::SeqCst);
        (result, killer.join().ok().flatten())
    });
    let failed_after_seconds = start.elapsed().as_secs_f64();
    let running_on = driver.observe().ok().and_then(|o| {
        o.vms
            .into_iter()
            .find(|v| v.name == vm && v.running)
            .map(|v| v.host)
    });
    let vm_state = running_on
        .as_ref()
        .and_then(|h| uris.iter().find(|(n, _)| n == h))
        .map_or("not running anywhere".to_string(), |(_, uri)| {
            crate::guests::domstate(uri, vm)
        });
    Injection {
        vm: vm.into(),
        from: from.into(),
        to: to.into(),
        bandwidth_mib_per_second: BANDWIDTH_BYTES_PER_SECOND / 1048576.0,
        killed_after_seconds: killed.as_ref().map(|k| k.after.as_secs_f64()),
        killed: killed.map(|k| k.what),
        failed_after_seconds,
        error_kind: result.as_ref().err().map(|e| kind(e).to_string()),
        error: result.err().map(|e| e.to_string()),
        ticks_advancing: meter::advancing(serial, Duration::from_secs(10)),
        vm_running_on: running_on,
        vm_state,
    }
}
