//! Memory reclaim through the guest's balloon driver, before any cgroup
//! cap: a guest that gives memory back through its balloon chooses what
//! to give (its free and cache pages), where a cgroup cap would make the
//! host swap or reclaim pages the guest still uses.

use std::process::Command;

/// What a guest's balloon reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalloonState {
    /// Memory the guest has now (configured memory minus the balloon), bytes.
    pub actual_bytes: f64,
    /// Memory the guest uses (`available - unused` of its statistics:
    /// its MemTotal minus MemFree, caches included), bytes; `None` when
    /// the guest reports no statistics.
    pub guest_used_bytes: Option<f64>,
    /// Memory the guest could give without pressure (`usable`: its
    /// MemAvailable), bytes; `None` when not reported.
    pub guest_usable_bytes: Option<f64>,
}

/// Access to the balloons of a host's VMs.
pub trait Balloon {
    /// The balloon of `vm`; `None` if it has none (or it cannot be read).
    fn state(&mut self, vm: &str) -> Option<BalloonState>;
    /// Asks the guest to shrink or grow to `bytes`.
    fn set_target(&mut self, vm: &str, bytes: f64) -> Result<(), String>;
}

/// No ballooning: memory is only capped through cgroups (never below the
/// guest's configured memory plus QEMU's overhead).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBalloon;

impl Balloon for NoBalloon {
    fn state(&mut self, _vm: &str) -> Option<BalloonState> {
        None
    }
    fn set_target(&mut self, vm: &str, _bytes: f64) -> Result<(), String> {
        Err(format!("{vm}: no balloon access configured"))
    }
}

/// Balloons through libvirt (`virsh dommemstat` and `virsh setmem --live`
/// against `uri`); needs no libvirt library at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirshBalloon {
    /// libvirt connection URI, e.g. `qemu:///system`.
    pub uri: String,
}

/// Parses `virsh dommemstat` output (`key value` lines, KiB).
pub fn parse_dommemstat(text: &str) -> Option<BalloonState> {
    let get = |k: &str| {
        text.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(k)).then(|| f.next()?.parse::<f64>().ok())?
        })
    };
    let actual = get("actual")? * 1024.0;
    let used = get("available")
        .zip(get("unused"))
        .map(|(a, u)| (a - u).max(0.0) * 1024.0);
    Some(BalloonState {
        actual_bytes: actual,
        guest_used_bytes: used,
        guest_usable_bytes: get("usable").map(|u| u * 1024.0),
    })
}

impl Balloon for VirshBalloon {
    fn state(&mut self, vm: &str) -> Option<BalloonState> {
        let out = Command::new("virsh")
            .args(["-c", &self.uri, "dommemstat", vm])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        parse_dommemstat(&String::from_utf8_lossy(&out.stdout))
    }

    fn set_target(&mut self, vm: &str, bytes: f64) -> Result<(), String> {
        let kib = format!("{}", (bytes / 1024.0).round().max(1.0) as u64);
        let out = Command::new("virsh")
            .args(["-c", &self.uri, "setmem", vm, &kib, "--live"])
            .output()
            .map_err(|e| format!("virsh setmem {vm}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "virsh setmem {vm} {kib} KiB: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dommemstat_with_and_without_guest_stats() {
        let s = parse_dommemstat(
            "actual 131072\nswap_in 0\nunused 60000\navailable 110000\nrss 150000\n",
        )
        .unwrap();
        assert_eq!(s.actual_bytes, 131072.0 * 1024.0);
        assert_eq!(s.guest_used_bytes, Some(50000.0 * 1024.0));
        assert_eq!(s.guest_usable_bytes, None);
        // A lab guest (128 MiB, virtio_balloon loaded), as libvirt prints it.
        let s = parse_dommemstat(
            "actual 131072\nswap_in 0\nunused 67072\navailable 94928\nusable 72568\ndisk_caches 2964\nrss 162092\n",
        )
        .unwrap();
        assert_eq!(s.guest_usable_bytes, Some(72568.0 * 1024.0));
        let s = parse_dommemstat("actual 1024\nrss 5\n").unwrap();
        assert_eq!(s.guest_used_bytes, None);
        assert_eq!(parse_dommemstat("error: no balloon\n"), None);
    }
}
