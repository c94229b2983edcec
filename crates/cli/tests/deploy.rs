//! The files of deploy/: the example config passes `keel serve
//! --check-config`, a broken one fails naming the setting and file, and the
//! systemd unit passes `systemd-analyze verify` (where systemd is installed).

mod common;

use common::{assert_one_line_error, assert_success, stdout};
use std::path::{Path, PathBuf};
use std::process::Command;

fn keel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel"))
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

#[test]
fn the_example_config_is_valid() {
    let config = repo_file("deploy/keel.toml");
    let out = keel()
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(stdout(&out).ends_with(": ok\n"), "{}", stdout(&out));
}

#[test]
fn a_config_with_missing_tls_files_is_refused_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        "[tls]\ncert = \"/nonexistent/keel-cert.pem\"\nkey = \"/nonexistent/keel-key.pem\"\n",
    )
    .unwrap();
    let out = keel()
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_one_line_error(&out, &["tls.cert", "/nonexistent/keel-cert.pem"]);

    std::fs::write(&config, "[tls]\ncert = \"a.pem\"\n").unwrap();
    let out = keel()
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_one_line_error(&out, &["keel.toml", "key"]);
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed, the unit file is not verified");
        return;
    };
    assert!(probe.status.success());
    for name in ["keel.service", "keel-agent.service"] {
        // The unit names the installed binary; verify a copy naming this build.
        let unit = std::fs::read_to_string(repo_file(&format!("deploy/{name}"))).unwrap();
        let unit = unit.replace("/usr/local/bin/keel", env!("CARGO_BIN_EXE_keel"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, unit).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // Outside a booted systemd (containers, CI) verify may complain about
        // the manager itself; only complaints about our unit count.
        let ours: Vec<&str> = err.lines().filter(|l| l.contains(name)).collect();
        assert!(ours.is_empty(), "systemd-analyze verify {name}:\n{err}");
    }
}
