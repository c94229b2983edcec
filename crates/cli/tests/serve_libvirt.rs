//! `keel serve` with `driver = "libvirt"`: the config's hosts, the real
//! binary, and libvirt's own built-in test hypervisor (`test:///default`,
//! part of libvirt's C library: one host with one running domain `test`).
//! Real guests and migrations through libvirt are tested by the lab
//! (`keel lab selftest`, crates/drivers/tests/libvirt.rs); this checks the
//! daemon's wiring: config -> driver -> control rounds -> API and history.
//! Needs the `libvirt` feature (CI builds it where libvirt-dev is present).

#[path = "../../daemon/tests/common/mod.rs"]
mod http;
#[path = "common/serve.rs"]
mod serve;

#[cfg(not(feature = "libvirt"))]
#[test]
fn serve_drives_libvirt() {
    eprintln!("SKIPPED: keel-cli built without the `libvirt` feature (cargo test --features keel-cli/libvirt)");
}

#[cfg(feature = "libvirt")]
#[test]
fn serve_drives_libvirt() {
    use serde_json::Value;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keel.toml"),
        format!(
            "driver = \"libvirt\"\nautomation = \"manual\"\ninterval_seconds = 0.3\ntoken = \"{}\"\n\n[[libvirt.hosts]]\nname = \"h1\"\nuri = \"test:///default\"\ncpu_cores = 4.0\n",
            http::TOKEN
        ),
    )
    .unwrap();
    let serve = serve::Serve::start(dir.path());
    let cluster = serve.get("/api/v1/cluster");
    assert_eq!(cluster["driver"], "libvirt");
    assert_eq!(cluster["hosts"][0]["name"], "h1");
    assert_eq!(cluster["hosts"][0]["capacity"]["cpu_cores"], 4.0);
    let vms: Vec<&Value> = cluster["vms"].as_array().unwrap().iter().collect();
    assert!(
        vms.iter().any(|v| v["name"] == "test" && v["host"] == "h1"),
        "{cluster}"
    );
    // Rounds run and are recorded: the VM's samples grow.
    http::wait_until("two samples of VM test", Duration::from_secs(30), || {
        let samples = serve.get("/api/v1/vms/test/samples");
        samples["samples"].as_array().is_some_and(|s| s.len() >= 2)
    });
}

#[test]
fn a_libvirt_config_without_hosts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(&config, "driver = \"libvirt\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[[libvirt.hosts]]"), "{err}");

    std::fs::write(
        &config,
        "driver = \"libvirt\"\n[[libvirt.hosts]]\nname = \"h1\"\nuri = \"qemu:///system\"\ncpu_cores = -2\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("libvirt.hosts[0].cpu_cores = -2:"), "{err}");
}
