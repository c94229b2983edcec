use super::*;
use crate::plan::MEMORY_OVERHEAD_BYTES;
use proptest::prelude::*;
use std::fs;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A fake cgroupfs directory with the kernel's defaults.
fn fake(version: u8) -> (tempfile::TempDir, Cgroup) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("machine.slice/qemu-1");
    fs::create_dir_all(&d).unwrap();
    let files: &[(&str, String)] = if version == 2 {
        &[
            ("cgroup.controllers", "cpu io memory pids".into()),
            ("cpu.weight", "100\n".into()),
            ("cpu.max", "max 100000\n".into()),
            ("memory.min", "0\n".into()),
            ("memory.high", "max\n".into()),
            ("memory.max", "max\n".into()),
            ("io.weight", "default 100\n8:0 200\n".into()),
        ]
    } else {
        &[
            ("cpu.shares", "1024\n".into()),
            ("cpu.cfs_quota_us", "-1\n".into()),
            ("cpu.cfs_period_us", "100000\n".into()),
            (
                "memory.soft_limit_in_bytes",
                format!("{V1_MEMORY_UNLIMITED}\n"),
            ),
            ("memory.limit_in_bytes", format!("{V1_MEMORY_UNLIMITED}\n")),
            ("blkio.weight", "500\n".into()),
        ]
    };
    for (name, value) in files {
        fs::write(d.join(name), value).unwrap();
    }
    let cg = Cgroup::detect(&d).unwrap();
    (tmp, cg)
}

fn settings() -> Settings {
    Settings {
        shares: 2000.0,
        cpu_weight: 2.0,
        cpu_limit_cores: Some(0.5),
        memory_reservation_bytes: GIB,
        memory_entitlement_bytes: 3.0 * GIB,
        memory_limit_bytes: Some(4.0 * GIB),
        guest_memory_bytes: 2.0 * GIB,
        disk_limit_bytes_per_second: None,
        disk_limit_iops: None,
    }
}

fn read(cg: &Cgroup, name: &str) -> String {
    let dir = match cg {
        Cgroup::V2(d) => d,
        Cgroup::V1 { cpu, .. } => cpu,
    };
    fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn detects_versions() {
    let (_t2, v2) = fake(2);
    assert!(matches!(v2, Cgroup::V2(_)));
    let (_t1, v1) = fake(1);
    assert!(matches!(v1, Cgroup::V1 { .. }));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Cgroup::detect(empty.path()),
        Err(CgroupError::NotACgroup { .. })
    ));
    assert!(matches!(
        Cgroup::detect(&empty.path().join("nope")),
        Err(CgroupError::VmGone { .. })
    ));
}

#[test]
fn v2_values_and_idempotence() {
    let (_t, cg) = fake(2);
    let w = cg.apply(&settings(), &[]).unwrap();
    assert_eq!(w.len(), 6, "{w:?}");
    assert_eq!(read(&cg, "cpu.weight"), "200");
    assert_eq!(read(&cg, "cpu.max"), "50000 100000");
    assert_eq!(read(&cg, "memory.min"), (GIB as u64).to_string());
    assert_eq!(read(&cg, "memory.high"), ((3.0 * GIB) as u64).to_string());
    assert_eq!(read(&cg, "memory.max"), ((4.0 * GIB) as u64).to_string());
    assert_eq!(read(&cg, "io.weight"), "default 200");
    assert_eq!(w[0].old, "100");
    assert!(cg.apply(&settings(), &[]).unwrap().is_empty());
}

#[test]
fn v1_values_and_idempotence() {
    let (_t, cg) = fake(1);
    let w = cg.apply(&settings(), &[]).unwrap();
    // The period already holds 100000: not written.
    assert_eq!(w.len(), 5, "{w:?}");
    assert_eq!(read(&cg, "cpu.shares"), "2048");
    assert_eq!(read(&cg, "cpu.cfs_quota_us"), "50000");
    assert_eq!(
        read(&cg, "memory.limit_in_bytes"),
        ((4.0 * GIB) as u64).to_string()
    );
    assert_eq!(
        read(&cg, "memory.soft_limit_in_bytes"),
        ((3.0 * GIB) as u64).to_string()
    );
    assert_eq!(read(&cg, "blkio.weight"), "1000");
    assert!(cg.apply(&settings(), &[]).unwrap().is_empty());
}

#[test]
fn minimal_writes_only_what_changed() {
    for v in [1, 2] {
        let (_t, cg) = fake(v);
        cg.apply(&settings(), &[]).unwrap();
        let s = Settings {
            cpu_limit_cores: Some(1.0),
            ..settings()
        };
        let w = cg.apply(&s, &[]).unwrap();
        assert_eq!(w.len(), 1, "v{v}: {w:?}");
        assert_eq!(w[0].new, if v == 2 { "100000 100000" } else { "100000" });
    }
}

#[test]
fn memory_caps_never_below_floor() {
    let s = Settings {
        memory_entitlement_bytes: 0.1 * GIB,
        memory_limit_bytes: Some(0.5 * GIB),
        ..settings()
    };
    let floor = 2.0 * GIB + MEMORY_OVERHEAD_BYTES;
    for v in [1, 2] {
        let (_t, cg) = fake(v);
        cg.apply(&s, &[]).unwrap();
        let (high, max) = if v == 2 {
            ("memory.high", "memory.max")
        } else {
            ("memory.soft_limit_in_bytes", "memory.limit_in_bytes")
        };
        for f in [high, max] {
            let b: f64 = read(&cg, f).parse().unwrap();
            assert!(b >= floor, "v{v} {f} {b} < {floor}");
        }
    }
}

#[test]
fn undo_restores_defaults() {
    for v in [1, 2] {
        let (t, cg) = fake(v);
        let before: Vec<_> = cg.defaults(&[]).iter().map(|c| read(&cg, c.name)).collect();
        cg.apply(&settings(), &[]).unwrap();
        assert!(!cg.undo(&[]).unwrap().is_empty());
        for (c, b) in cg.defaults(&[]).iter().zip(before) {
            assert_eq!(
                current_value(c.name, None, &read(&cg, c.name)),
                current_value(c.name, None, &b)
            );
        }
        assert!(cg.undo(&[]).unwrap().is_empty(), "undo is idempotent");
        drop(t);
    }
}

#[test]
fn vanishing_cgroup_is_vm_gone() {
    for v in [1, 2] {
        let (_t, cg) = fake(v);
        let controls = cg.controls(&settings(), &[]);
        let dir = controls[0].dir.clone();
        let mut n = 0;
        let r = write_controls(&controls, |_| {
            n += 1;
            if n == 2 {
                fs::remove_dir_all(&dir).unwrap();
            }
        });
        assert!(matches!(r, Err(CgroupError::VmGone { .. })), "v{v}: {r:?}");
        // Already gone before the first read.
        assert!(matches!(
            cg.apply(&settings(), &[]),
            Err(CgroupError::VmGone { .. })
        ));
        assert!(matches!(cg.undo(&[]), Err(CgroupError::VmGone { .. })));
    }
}

#[test]
fn missing_control_file_is_named() {
    let (_t, cg) = fake(2);
    let Cgroup::V2(d) = &cg else { unreachable!() };
    fs::remove_file(d.join("memory.min")).unwrap();
    match cg.apply(&settings(), &[]) {
        Err(CgroupError::MissingFile { file }) => assert!(file.ends_with("memory.min")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn disk_weights_are_skipped_where_the_kernel_lacks_them() {
    for v in [1, 2] {
        let (_t, cg) = fake(v);
        let (dir, f) = match &cg {
            Cgroup::V2(d) => (d.clone(), "io.weight"),
            Cgroup::V1 { blkio, .. } => (blkio.clone(), "blkio.weight"),
        };
        fs::remove_file(dir.join(f)).unwrap();
        let w = cg.apply(&settings(), &[]).unwrap();
        assert!(
            !w.is_empty() && w.iter().all(|w| !w.file.ends_with(f)),
            "v{v}: {w:?}"
        );
        cg.undo(&[]).unwrap();
    }
}

fn arb_settings() -> impl Strategy<Value = Settings> {
    let amount = prop_oneof![0.0..1e13f64, Just(0.0), Just(1e300)];
    (
        0.001..1e7f64,
        proptest::option::of(0.0..512.0f64),
        amount.clone(),
        amount.clone(),
        proptest::option::of(amount),
        0.0..1e12f64,
    )
        .prop_map(|(shares, cpu, res, ent, lim, guest)| Settings {
            shares,
            cpu_weight: shares / 1000.0,
            disk_limit_bytes_per_second: lim,
            disk_limit_iops: cpu.map(|c| c * 100.0),
            cpu_limit_cores: cpu,
            memory_reservation_bytes: res,
            memory_entitlement_bytes: ent,
            memory_limit_bytes: lim,
            guest_memory_bytes: guest,
        })
}

proptest! {
    #[test]
    fn values_within_kernel_ranges(s in arb_settings()) {
        let floor = s.memory_floor_bytes();
        prop_assert!((1..=10_000).contains(&s.v2_weight()));
        prop_assert!((1..=10_000).contains(&s.v2_cpu_weight()));
        prop_assert!((2..=262_144).contains(&s.v1_cpu_shares()));
        prop_assert!((100..=1000).contains(&s.v1_blkio_weight()));
        if let Some(q) = s.cpu_quota_us() { prop_assert!(q >= 1000); }
        prop_assert!(s.memory_high() as f64 >= floor.min(V1_MEMORY_UNLIMITED as f64));
        if let Some(m) = s.memory_max() { prop_assert!(m as f64 >= floor); }
        for v in [1u8, 2] {
            let cg = if v == 2 { Cgroup::V2("/x".into()) } else {
                Cgroup::V1 { cpu: "/x".into(), memory: "/x".into(), blkio: "/x".into() }
            };
            for c in cg.controls(&s, &[]) {
                if c.name.starts_with("memory.") && c.name != "memory.min" && c.value != "max" {
                    let b: f64 = c.value.parse().unwrap();
                    prop_assert!(b >= floor.min(V1_MEMORY_UNLIMITED as f64), "{} {}", c.name, b);
                }
            }
        }
    }
}

#[test]
fn disk_caps_per_device_and_their_undo() {
    let devs = [
        Device { major: 8, minor: 0 },
        Device {
            major: 253,
            minor: 1,
        },
    ];
    let s = Settings {
        disk_limit_bytes_per_second: Some(50e6),
        disk_limit_iops: Some(300.0),
        ..settings()
    };
    // v2: one io.max line per disk; the fake file holds what was last
    // written (the kernel keeps one line per device: the compare looks
    // for the device's line only).
    let (_t, cg) = fake(2);
    let Cgroup::V2(d) = &cg else { unreachable!() };
    fs::write(d.join("io.max"), "").unwrap();
    let w = cg.apply(&s, &devs[..1]).unwrap();
    assert!(
        w.iter()
            .any(|w| w.new == "8:0 rbps=50000000 wbps=50000000 riops=300 wiops=300"),
        "{w:?}"
    );
    assert!(cg.apply(&s, &devs[..1]).unwrap().is_empty(), "idempotent");
    let undo = cg.undo(&devs[..1]).unwrap();
    assert_eq!(undo.len(), 7, "{undo:?}");
    assert_eq!(
        read(&cg, "io.max"),
        "8:0 rbps=max wbps=max riops=max wiops=max"
    );
    // v1: four throttle files per disk, "MAJ:MIN 0" = no limit.
    let (_t, cg) = fake(1);
    let Cgroup::V1 { blkio, .. } = &cg else {
        unreachable!()
    };
    for f in V1_THROTTLES {
        fs::write(blkio.join(f), "").unwrap();
    }
    let w = cg.apply(&s, &devs).unwrap();
    let throttles: Vec<_> = w
        .iter()
        .filter(|w| w.file.to_string_lossy().contains("throttle"))
        .collect();
    assert_eq!(throttles.len(), 8, "{w:?}");
    assert_eq!(read(&cg, "blkio.throttle.write_iops_device"), "253:1 300");
    assert_eq!(throttles[0].old, "8:0 0");
    // With no caps and no lines in the files, nothing is written.
    let (_t, cg) = fake(1);
    let Cgroup::V1 { blkio, .. } = &cg else {
        unreachable!()
    };
    for f in V1_THROTTLES {
        fs::write(blkio.join(f), "").unwrap();
    }
    assert!(cg.undo(&devs).unwrap().is_empty());
}
