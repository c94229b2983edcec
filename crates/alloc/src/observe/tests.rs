use super::*;
use std::fs;

fn cmdline(args: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for a in args {
        v.extend_from_slice(a.as_bytes());
        v.push(0);
    }
    v
}

#[test]
fn parses_libvirt_and_plain_command_lines() {
    let libvirt = cmdline(&[
        "/usr/bin/qemu-system-x86_64",
        "-name",
        "guest=keel-lab-vm0,debug-threads=on",
        "-m",
        "size=131072k",
        "-smp",
        "2,sockets=2,cores=1,threads=1",
    ]);
    assert_eq!(
        parse_cmdline(&libvirt),
        Some(("keel-lab-vm0".into(), 2, Some(128.0 * 1048576.0)))
    );
    let plain = cmdline(&[
        "qemu-system-x86_64",
        "-m",
        "2G",
        "-name",
        "web",
        "-smp",
        "cpus=4",
    ]);
    assert_eq!(
        parse_cmdline(&plain),
        Some(("web".into(), 4, Some(2.0 * 1073741824.0)))
    );
    let mib = cmdline(&["qemu-kvm", "-name", "db", "-m", "512"]);
    assert_eq!(
        parse_cmdline(&mib),
        Some(("db".into(), 1, Some(512.0 * 1048576.0)))
    );
    assert_eq!(parse_cmdline(&cmdline(&["bash", "-name", "x"])), None);
    assert_eq!(
        parse_cmdline(&cmdline(&["qemu-system-x86_64", "-m", "1"])),
        None
    );
    assert_eq!(parse_cmdline(b""), None);
    assert_eq!(parse_cmdline(&cmdline(&["qemu", "-name"])), None);
}

#[test]
fn common_cgroup_of_threads() {
    let p = common_path(
        [
            "/machine/vm0.libvirt-qemu/emulator",
            "/machine/vm0.libvirt-qemu/vcpu0",
        ]
        .into_iter(),
    );
    assert_eq!(p.as_deref(), Some("/machine/vm0.libvirt-qemu"));
    assert_eq!(common_path(["/a/b"].into_iter()).as_deref(), Some("/a/b"));
    assert_eq!(common_path(std::iter::empty()), None);
}

/// A fake /proc with one libvirt QEMU (two threads in libvirt's v1
/// sub-cgroups) and one unrelated process.
fn fake_proc() -> (tempfile::TempDir, ProcSource) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("proc/4242");
    let args = cmdline(&[
        "/usr/bin/qemu-system-x86_64",
        "-name",
        "guest=vm0",
        "-m",
        "256",
    ]);
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("cmdline"), args).unwrap();
    fs::write(p.join("status"), "Name:\tqemu\nVmRSS:\t  2048 kB\n").unwrap();
    fs::write(
        p.join("io"),
        "rchar: 5\nread_bytes: 1000\nwrite_bytes: 24\n",
    )
    .unwrap();
    for (tid, sub, run, wait) in [
        (4242, "emulator", 1_500_000_000u64, 10),
        (4243, "vcpu0", 2_000_000_000, 500_000_000),
    ] {
        let d = p.join(format!("task/{tid}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("schedstat"), format!("{run} {wait} 7\n")).unwrap();
        fs::write(
            d.join("cgroup"),
            format!(
                "4:memory:/machine/vm0.libvirt-qemu\n1:cpu:/machine/vm0.libvirt-qemu/{sub}\n0::/\n"
            ),
        )
        .unwrap();
    }
    let other = t.path().join("proc/1");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("cmdline"), cmdline(&["init"])).unwrap();
    let src = ProcSource {
        proc_root: t.path().join("proc"),
        cgroup_root: "/cg".into(),
        sys_dev_block: t.path().join("sys"),
    };
    (t, src)
}

#[test]
fn scans_a_fake_proc() {
    let (_t, src) = fake_proc();
    let vms = src.scan();
    assert_eq!(vms.len(), 1);
    let vm = &vms["vm0"];
    assert_eq!(vm.pid, 4242);
    assert_eq!(vm.guest_memory_bytes, Some(256.0 * 1048576.0));
    assert_eq!(vm.rss_bytes, 2048.0 * 1024.0);
    assert!((vm.counters.cpu_run_seconds - 3.5).abs() < 1e-9);
    assert!((vm.counters.cpu_wait_seconds - 0.50000001).abs() < 1e-6);
    assert_eq!(vm.counters.disk_bytes, 1024.0);
    assert_eq!(
        vm.cgroup,
        Some(Cgroup::V1 {
            cpu: "/cg/cpu/machine/vm0.libvirt-qemu".into(),
            memory: "/cg/memory/machine/vm0.libvirt-qemu".into(),
            blkio: "/cg/cpu/machine/vm0.libvirt-qemu".into(),
        })
    );
    assert!(vm.devices.is_empty());
}

#[test]
fn a_vanished_process_is_skipped() {
    let (t, src) = fake_proc();
    fs::remove_file(t.path().join("proc/4242/status")).unwrap();
    assert!(src.scan().is_empty());
}

#[test]
fn finds_this_process_devices_on_the_real_proc() {
    // This test process has no large file open: no device; but reading
    // the real /proc must not fail.
    let src = ProcSource::default();
    let me = std::process::id();
    let p = src
        .process(me, "self".into(), 1, None)
        .expect("own /proc entry");
    assert!(p.counters.cpu_run_seconds > 0.0);
    assert!(p.rss_bytes > 0.0);
}
