//! What the selftest measures with the host's clock: guests' progress from
//! their serial TICK counters against wall time, CPU time of the sampling
//! thread and of the whole process, and CPU pinning and CPU weight of
//! lab guests.
//!
//! Under TCG the guests' clocks do not follow wall time (docs/lab.md): a
//! guest's `rate=` field is per *guest* second and cannot be trusted, so
//! progress is the `total=` counter, timed by the host when each new TICK
//! line appears in the serial file (polled every 50 ms).

use crate::cmd::run;
use crate::error::{io, Result};
use crate::guests::{ticks, Tick};
use crate::state::{Resource, StateFile};
use crate::Lab;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);

/// The last TICK line of a serial log, if any.
pub fn last_tick(serial: &Path) -> Option<Tick> {
    let raw = std::fs::read(serial).ok()?;
    ticks(&String::from_utf8_lossy(&raw)).pop()
}

/// Each guest's progress over `window`: iterations per wall second between
/// the first and the last TICK line that appeared during the window (both
/// timed when seen). `None` for a guest that printed fewer than two new
/// TICK lines (stalled, paused or lost).
pub fn progress_rates(serials: &[PathBuf], window: Duration) -> Vec<Option<f64>> {
    let start = Instant::now();
    let mut seen: Vec<Option<u64>> = serials.iter().map(|p| last_tick(p).map(|t| t.n)).collect();
    let mut first: Vec<Option<(Instant, u64)>> = vec![None; serials.len()];
    let mut last: Vec<Option<(Instant, u64)>> = vec![None; serials.len()];
    while start.elapsed() < window {
        for (k, serial) in serials.iter().enumerate() {
            let Some(t) = last_tick(serial) else { continue };
            if seen[k] == Some(t.n) {
                continue;
            }
            seen[k] = Some(t.n);
            let point = Some((Instant::now(), t.total));
            if first[k].is_none() {
                first[k] = point;
            } else {
                last[k] = point;
            }
        }
        std::thread::sleep(POLL);
    }
    first
        .iter()
        .zip(&last)
        .map(|(a, b)| {
            let ((ta, na), (tb, nb)) = ((*a)?, (*b)?);
            let secs = (tb - ta).as_secs_f64();
            (secs > 0.0 && nb >= na).then(|| (nb - na) as f64 / secs)
        })
        .collect()
}

/// True if the guest's TICK counter advances within `within`.
pub fn advancing(serial: &Path, within: Duration) -> bool {
    let before = last_tick(serial).map(|t| t.total);
    let start = Instant::now();
    while start.elapsed() < within {
        std::thread::sleep(POLL);
        let now = last_tick(serial).map(|t| t.total);
        if now.is_some() && now != before {
            return true;
        }
    }
    false
}

/// CPU seconds (user + system) from a `/proc/.../stat` file; clock ticks
/// are taken as 100 per second (Linux's USER_HZ on every architecture
/// Keel targets).
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds used so far by the calling thread.
pub fn thread_cpu_seconds() -> Option<f64> {
    stat_cpu_seconds("/proc/thread-self/stat")
}

/// CPU seconds used so far by this process (all threads).
pub fn process_cpu_seconds() -> Option<f64> {
    stat_cpu_seconds("/proc/self/stat")
}

/// The physical CPU lab host `host` stands for: host i -> CPU i mod `cpus`.
pub fn host_cpu(host: usize, cpus: usize) -> usize {
    host % cpus.max(1)
}

/// Pins guest `vm` (its vCPU 0 and its emulator threads) to `cpu`, live,
/// through the libvirtd of the host it runs on (`uri`). Under TCG the
/// vCPU thread does all the guest's work; the emulator threads (I/O, the
/// migration stream) go with it so that a host's guests use its core only.
pub fn pin(uri: &str, vm: &str, cpu: usize) -> Result<()> {
    let c = cpu.to_string();
    let t = Duration::from_secs(30);
    run(
        "pin vCPU",
        "virsh",
        &["-c", uri, "vcpupin", vm, "0", &c, "--live"],
        t,
    )?;
    run(
        "pin emulator",
        "virsh",
        &["-c", uri, "emulatorpin", vm, &c, "--live"],
        t,
    )?;
    Ok(())
}

/// CPU weight of each lab host's guests (cgroup v1 `cpu.shares`; the
/// default is 1024): ten times any other process's, so that a host's core
/// behaves like a dedicated machine's even while the machine runs other
/// work (builds, tests), which would otherwise take a share of each core
/// and blur the before/after rates. v2: `cpu.weight` 1000 (default 100).
pub const HOST_CPU_SHARES: u64 = 10240;

/// Puts guest `vm`'s QEMU (all its threads) into host `host`'s cgroup of
/// the v1 `cpu` controller, `{prefix}-h{host}`, created (and recorded for
/// `down`) with [`HOST_CPU_SHARES`]. On cgroup v2 the QEMU is already in
/// the lab's host cgroup (inherited from libvirtd): its `cpu.weight` is set
/// if the cpu controller is enabled there. Returns the cgroup used, `None`
/// if neither is available (the weights stay the default).
pub fn prioritize(lab: &Lab, sf: &mut StateFile, host: usize, vm: &str) -> Result<Option<PathBuf>> {
    let pidfile = lab.host_dir(host).join(format!("run/qemu/{vm}.pid"));
    let pid = std::fs::read_to_string(&pidfile).map_err(io("read QEMU pid", &pidfile))?;
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    if v1.join("cpu.shares").exists() {
        let cg = v1.join(format!("{}-h{host}", lab.prefix));
        let known = sf
            .state
            .resources
            .iter()
            .any(|r| matches!(r, Resource::Cgroup { path } if *path == cg));
        if !known {
            sf.record(Resource::Cgroup { path: cg.clone() })?;
        }
        std::fs::create_dir_all(&cg).map_err(io("create cpu cgroup", &cg))?;
        let shares = cg.join("cpu.shares");
        std::fs::write(&shares, HOST_CPU_SHARES.to_string())
            .map_err(io("set cpu.shares", &shares))?;
        let procs = cg.join("cgroup.procs");
        std::fs::write(&procs, pid.trim()).map_err(io("move QEMU into cpu cgroup", &procs))?;
        return Ok(Some(cg));
    }
    let v2 = Path::new("/sys/fs/cgroup").join(format!("{}-h{host}", lab.prefix));
    let weight = v2.join("cpu.weight");
    if weight.exists()
        && std::fs::write(&weight, (HOST_CPU_SHARES * 100 / 1024).to_string()).is_ok()
    {
        return Ok(Some(v2));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_cpus() {
        assert_eq!(host_cpu(0, 2), 0);
        assert_eq!(host_cpu(1, 2), 1);
        assert_eq!(host_cpu(2, 2), 0);
        assert_eq!(host_cpu(3, 0), 0);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let t = thread_cpu_seconds().expect("/proc/thread-self/stat");
        let p = process_cpu_seconds().expect("/proc/self/stat");
        assert!(t >= 0.0 && p >= t - 0.02, "{t} {p}");
    }
}
