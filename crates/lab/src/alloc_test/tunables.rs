//! Phase 6 of the allocation test: keel-alloc's libvirt enforcer
//! (`enforce = "libvirt"`, [`VirshTunables`]) against the lab's real
//! libvirtd. Settings with a CPU weight and cap, a memory cap and disk
//! caps are applied to one guest; libvirt must then list exactly them
//! (a second apply sets nothing), and after the undo list again what it
//! listed before. The disk caps name the disk holding the lab directory
//! (the lab's guests boot from a kernel and initramfs and have no disk of
//! their own, and the lab's machine type has no PCI hotplug to add one).
//! The behaviour under these settings is the cgroup mode's (phases 1-4):
//! libvirt writes the same cgroup files.

use super::Guest;
use crate::error::Result;
use keel_alloc::enforce::{device_path, listing_fields, VirshTunables};
use keel_alloc::observe::ProcSource;
use keel_alloc::plan::Settings;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const MIB: f64 = 1024.0 * 1024.0;

/// What phase 6 saw (libvirt's listings, `key -> value`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TunablesPhase {
    /// The guest.
    pub vm: String,
    /// The disk the caps name.
    pub disk: Option<String>,
    /// Before Keel.
    pub before: BTreeMap<String, String>,
    /// After Keel's apply.
    pub applied: BTreeMap<String, String>,
    /// Parameters the first apply set, and a second one.
    pub set_first: usize,
    /// Parameters a second, identical apply set (0: idempotent).
    pub set_again: usize,
    /// After Keel's undo.
    pub restored: BTreeMap<String, String>,
}

fn listing(uri: &str, verb: &str, vm: &str) -> BTreeMap<String, String> {
    let out = Command::new("virsh")
        .args(["-c", uri, verb, vm, "--live"])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listing_fields(&text)
        .map(|(k, v)| (format!("{verb}.{k}"), v.to_string()))
        .collect()
}

fn listings(uri: &str, vm: &str) -> BTreeMap<String, String> {
    let mut all = listing(uri, "schedinfo", vm);
    all.extend(listing(uri, "memtune", vm));
    all.extend(listing(uri, "blkiotune", vm));
    all
}

/// Runs the phase on `guest`; failed checks go to `failures`.
pub(super) fn run(
    guest: &Guest,
    lab_dir: &Path,
    failures: &mut Vec<String>,
) -> Result<TunablesPhase> {
    let disk = ProcSource::default().disk_of(lab_dir);
    let disk_path = disk.as_ref().and_then(device_path);
    let settings = Settings {
        shares: 4000.0,
        cpu_weight: 1.5,
        cpu_limit_cores: Some(0.5),
        memory_reservation_bytes: 0.0,
        memory_entitlement_bytes: f64::INFINITY,
        memory_limit_bytes: Some(1024.0 * MIB),
        guest_memory_bytes: 128.0 * MIB,
        disk_limit_bytes_per_second: Some(10e6),
        disk_limit_iops: Some(300.0),
    };
    let mut phase = TunablesPhase {
        vm: guest.name.clone(),
        disk: disk_path.clone(),
        before: listings(&guest.uri, &guest.name),
        ..TunablesPhase::default()
    };
    let mut tunables = VirshTunables::new(guest.uri.clone());
    let devices: Vec<_> = disk.into_iter().collect();
    let mut fail = |what: String| failures.push(format!("libvirt tunables: {what}"));
    match tunables.apply(&guest.name, &settings, &devices) {
        Ok(n) => phase.set_first = n,
        Err(e) => fail(format!("apply: {e}")),
    }
    phase.applied = listings(&guest.uri, &guest.name);
    match tunables.apply(&guest.name, &settings, &devices) {
        Ok(n) => phase.set_again = n,
        Err(e) => fail(format!("second apply: {e}")),
    }
    if let Err(e) = tunables.undo(&guest.name) {
        fail(format!("undo: {e}"));
    }
    phase.restored = listings(&guest.uri, &guest.name);

    let mut want = vec![
        ("schedinfo.cpu_shares", "1536".to_string()),
        ("schedinfo.global_quota", "50000".to_string()),
        ("memtune.hard_limit", "1048576".to_string()),
    ];
    if let Some(d) = &disk_path {
        want.push(("blkiotune.device_read_bytes_sec", format!("{d},10000000")));
        want.push(("blkiotune.device_write_iops_sec", format!("{d},300")));
    }
    for (k, v) in want {
        if phase.applied.get(k) != Some(&v) {
            fail(format!(
                "{k} is {:?} after apply, not {v:?}",
                phase.applied.get(k)
            ));
        }
    }
    if phase.set_first == 0 || phase.set_again != 0 {
        fail(format!(
            "apply set {} parameters, an identical second apply {} (want > 0, then 0)",
            phase.set_first, phase.set_again
        ));
    }
    let keys = [
        "schedinfo.cpu_shares",
        "schedinfo.global_quota",
        "memtune.hard_limit",
        "memtune.soft_limit",
        "blkiotune.weight",
        "blkiotune.device_read_bytes_sec",
        "blkiotune.device_write_iops_sec",
    ];
    for k in keys {
        if phase.restored.get(k) != phase.before.get(k) {
            fail(format!(
                "{k} is {:?} after undo, was {:?}",
                phase.restored.get(k),
                phase.before.get(k)
            ));
        }
    }
    Ok(phase)
}
