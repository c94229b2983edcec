//! The cgroup writer against the machine's real cgroupfs: a keel-owned
//! child cgroup is created, settings are written and read back through the
//! kernel (so the formats the writer compares are the kernel's), written
//! again (nothing changes: idempotent on a real kernel), undone, removed.
//!
//! v1: the `cpu`, `memory` and `blkio` hierarchies under /sys/fs/cgroup.
//! v2: the unified hierarchy (/sys/fs/cgroup if pure v2, else
//! /sys/fs/cgroup/unified), with whichever of cpu, memory, io it offers.
//! Needs root; each part prints a loud SKIPPED where it cannot run.

use keel_alloc::cgroup::{Cgroup, CgroupError, Device, V1_MEMORY_UNLIMITED};
use keel_alloc::plan::Settings;
use std::fs;
use std::path::{Path, PathBuf};

const GIB: f64 = 1073741824.0;

fn settings() -> Settings {
    Settings {
        shares: 2000.0,
        cpu_weight: 2.0,
        cpu_limit_cores: Some(0.5),
        memory_reservation_bytes: GIB,
        memory_entitlement_bytes: 3.0 * GIB,
        memory_limit_bytes: Some(4.0 * GIB),
        guest_memory_bytes: 2.0 * GIB,
        disk_limit_bytes_per_second: Some(50e6),
        disk_limit_iops: Some(300.0),
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("Uid:"))?;
            l.split_whitespace().nth(1).map(|u| u == "0")
        })
        .unwrap_or(false)
}

/// Removes the directories it holds when dropped (children first).
struct Dirs(Vec<PathBuf>);

impl Drop for Dirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// A whole disk of the machine (for the throttles), if any.
fn a_disk() -> Option<Device> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("zram") && !n.starts_with("ram"))
        .collect();
    names.sort();
    let t = fs::read_to_string(Path::new("/sys/block").join(names.first()?).join("dev")).ok()?;
    let (a, b) = t.trim().split_once(':')?;
    Some(Device {
        major: a.parse().ok()?,
        minor: b.parse().ok()?,
    })
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap().trim().to_string()
}

#[test]
fn v1_write_read_back_idempotent_undo() {
    if !is_root() {
        eprintln!("SKIPPED (real cgroup v1): needs root to create cgroups");
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    let ctrls = ["cpu", "memory", "blkio"];
    if let Some(c) = ctrls.iter().find(|c| !root.join(c).join("tasks").exists()) {
        eprintln!("SKIPPED (real cgroup v1): no v1 {c} hierarchy at /sys/fs/cgroup/{c}");
        return;
    }
    let name = format!("keel-alloc-test-{}", std::process::id());
    let dirs: Vec<PathBuf> = ctrls.iter().map(|c| root.join(c).join(&name)).collect();
    let _guard = Dirs(dirs.clone());
    for d in &dirs {
        fs::create_dir(d).unwrap();
    }
    let cg = Cgroup::V1 {
        cpu: dirs[0].clone(),
        memory: dirs[1].clone(),
        blkio: dirs[2].clone(),
    };
    let devs: Vec<Device> = a_disk().into_iter().collect();
    if devs.is_empty() {
        eprintln!("note: no whole disk found; the throttles are not exercised");
    }
    let w = cg.apply(&settings(), &devs).unwrap();
    assert!(!w.is_empty());
    assert_eq!(read(&dirs[0].join("cpu.shares")), "2048");
    assert_eq!(read(&dirs[0].join("cpu.cfs_quota_us")), "50000");
    assert_eq!(
        read(&dirs[1].join("memory.limit_in_bytes")),
        (4.0 * GIB).to_string()
    );
    assert_eq!(
        read(&dirs[1].join("memory.soft_limit_in_bytes")),
        (3.0 * GIB).to_string()
    );
    if let Some(d) = devs.first() {
        assert_eq!(
            read(&dirs[2].join("blkio.throttle.read_bps_device")),
            format!("{d} 50000000")
        );
        assert_eq!(
            read(&dirs[2].join("blkio.throttle.write_iops_device")),
            format!("{d} 300")
        );
    }
    // What the kernel reads back equals what was written: nothing to do.
    assert_eq!(cg.apply(&settings(), &devs).unwrap(), vec![]);
    assert!(!cg.undo(&devs).unwrap().is_empty());
    assert_eq!(read(&dirs[0].join("cpu.shares")), "1024");
    assert_eq!(read(&dirs[0].join("cpu.cfs_quota_us")), "-1");
    assert_eq!(
        read(&dirs[1].join("memory.limit_in_bytes")),
        V1_MEMORY_UNLIMITED.to_string()
    );
    assert_eq!(read(&dirs[2].join("blkio.throttle.read_bps_device")), "");
    assert_eq!(cg.undo(&devs).unwrap(), vec![], "undo is idempotent");
}

#[test]
fn v2_write_read_back_or_named_missing_controller() {
    if !is_root() {
        eprintln!("SKIPPED (real cgroup v2): needs root to create cgroups");
        return;
    }
    let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.controllers").exists());
    let Some(root) = root else {
        eprintln!("SKIPPED (real cgroup v2): no cgroup v2 hierarchy mounted");
        return;
    };
    let offered = read(&root.join("cgroup.controllers"));
    let want: Vec<&str> = ["cpu", "memory", "io"]
        .into_iter()
        .filter(|c| offered.split_whitespace().any(|o| o == *c))
        .collect();
    let parent = root.join(format!("keel-alloc-test-{}", std::process::id()));
    let child = parent.join("vm");
    let _guard = Dirs(vec![parent.clone(), child.clone()]);
    fs::create_dir(&parent).unwrap();
    for c in &want {
        let _ = fs::write(parent.join("cgroup.subtree_control"), format!("+{c}"));
    }
    fs::create_dir(&child).unwrap();
    let cg = Cgroup::detect(&child).unwrap();
    assert!(matches!(cg, Cgroup::V2(_)));
    if want.len() < 3 {
        // This machine binds its controllers to v1 (hybrid): the writer
        // must name the missing file, not fail obscurely or panic.
        eprintln!(
            "SKIPPED (real cgroup v2 values): {} offers only {offered:?}; checking the missing-controller error instead",
            root.display()
        );
        match cg.apply(&settings(), &[]) {
            Err(CgroupError::MissingFile { file }) => {
                assert!(file.starts_with(&child), "{file:?}")
            }
            other => panic!("{other:?}"),
        }
        return;
    }
    let devs: Vec<Device> = a_disk().into_iter().collect();
    cg.apply(&settings(), &devs).unwrap();
    assert_eq!(read(&child.join("cpu.weight")), "200");
    assert_eq!(read(&child.join("cpu.max")), "50000 100000");
    assert_eq!(read(&child.join("memory.max")), (4.0 * GIB).to_string());
    assert_eq!(cg.apply(&settings(), &devs).unwrap(), vec![]);
    cg.undo(&devs).unwrap();
    assert_eq!(read(&child.join("cpu.max")), "max 100000");
    assert_eq!(cg.undo(&devs).unwrap(), vec![]);
}
