//! The served OpenAPI document with standard tools from PyPI, installed by
//! .ci/run (each test prints SKIPPED where its package is missing):
//! openapi-spec-validator validates it as OpenAPI 3.0.3, and a client
//! generated from it by openapi-python-client drives a daemon on
//! 127.0.0.1 (docs/daemon.md, "The API contract").

mod common;

use common::*;
use serde_json::Value;

#[test]
fn the_document_is_valid_openapi_3_0_3() {
    let (daemon, _clock) = manual_daemon();
    let body = get(daemon.addr(), "/api/v1/openapi.json").body;
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    if !python_has("openapi_spec_validator") {
        println!("SKIPPED: python3 with openapi-spec-validator is not installed (.ci/run installs it with pip); the document was not validated");
        return;
    }
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(sys.stdin))\nprint('valid')",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
}

/// Whether `python3` can import `module`.
fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn a_client_generated_by_openapi_python_client_drives_the_daemon() {
    if !python_has("openapi_python_client") {
        println!("SKIPPED: openapi-python-client is not installed (.ci/run installs it with pip); no client was generated");
        return;
    }
    let (daemon, _clock) = manual_daemon_after(3);
    let addr = daemon.addr();
    let dir = tempfile::tempdir().unwrap();
    let said = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi/client_smoke.py");
    let run = std::process::Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .env("KEEL_URL", format!("http://{addr}"))
        .env("KEEL_TOKEN", TOKEN)
        .output()
        .unwrap();
    println!("{}", said(&run));
    assert!(
        run.status.success() && said(&run).contains("client ok"),
        "{}",
        said(&run)
    );
}
