use super::*;

const V2: &str = "0::/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope/libvirt/emulator\n";

const V1: &str = "\
12:pids:/machine/qemu-1
11:memory:/machine/qemu-1
10:cpu,cpuacct:/machine/qemu-1/emulator
9:blkio:/machine/qemu-1
1:name=systemd:/machine/qemu-1
0::/user.slice
";

#[test]
fn parses_v2() {
    let p = parse(V2).unwrap();
    assert!(p.v1.is_empty());
    let root = Path::new("/sys/fs/cgroup");
    assert_eq!(
        p.locate(root),
        Some(Cgroup::V2(root.join(
            "machine.slice/machine-qemu\\x2d1\\x2dvm1.scope/libvirt/emulator"
        )))
    );
}

#[test]
fn parses_v1_and_hybrid() {
    let p = parse(V1).unwrap();
    assert_eq!(p.unified.as_deref(), Some("/user.slice"));
    assert!(!p.v1.contains_key("name=systemd"));
    assert_eq!(
        p.v1_controller("cpu"),
        Some(("cpu,cpuacct", "/machine/qemu-1/emulator"))
    );
    let root = Path::new("/sys/fs/cgroup");
    assert_eq!(
        p.locate(root),
        Some(Cgroup::V1 {
            cpu: root.join("cpu,cpuacct/machine/qemu-1/emulator"),
            memory: root.join("memory/machine/qemu-1"),
            blkio: root.join("blkio/machine/qemu-1"),
        })
    );
}

#[test]
fn rejects_malformed_lines() {
    for bad in ["garbage", "x::/a", "0::relative", "3:cpu"] {
        let e = parse(&format!("0::/ok\n{bad}\n")).unwrap_err();
        assert_eq!(e.line_number, 2, "{bad}");
    }
    assert_eq!(parse("").unwrap(), ProcCgroup::default());
    assert_eq!(parse("").unwrap().locate(Path::new("/")), None);
}

#[test]
fn reads_from_a_proc_tree() {
    let proc = tempfile::tempdir().unwrap();
    std::fs::create_dir(proc.path().join("42")).unwrap();
    std::fs::write(proc.path().join("42/cgroup"), V2).unwrap();
    let root = Path::new("/sys/fs/cgroup");
    assert!(matches!(find(proc.path(), 42, root), Ok(Cgroup::V2(_))));
    assert!(matches!(
        find(proc.path(), 43, root),
        Err(FindError::ProcessGone { pid: 43, .. })
    ));
    std::fs::write(proc.path().join("42/cgroup"), "1:name=systemd:/x\n").unwrap();
    assert!(matches!(
        find(proc.path(), 42, root),
        Err(FindError::NoCgroup { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(text in "\\PC*") {
        let _ = parse(&text);
    }
}
