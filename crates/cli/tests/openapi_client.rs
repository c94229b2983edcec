//! A client generated from the OpenAPI document of a real `keel serve`
//! (the embedded default, on 127.0.0.1) by openapi-python-client drives it:
//! crates/daemon/tests/openapi/client_smoke.py fetches the served document,
//! generates the client with the command of docs/daemon.md and calls the
//! API through it. Prints SKIPPED where the package is not installed
//! (.ci/run installs it with pip).

#[path = "../../daemon/tests/common/mod.rs"]
mod http;
#[path = "common/serve.rs"]
mod serve;

use std::process::Command;
use std::time::Duration;

#[test]
fn a_generated_python_client_drives_keel_serve() {
    let importable = Command::new("python3")
        .args(["-c", "import openapi_python_client"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !importable {
        println!("SKIPPED: openapi-python-client is not installed (.ci/run installs it with pip)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = serve::Serve::start_with(dir.path(), None);
    let addr = serve.addr;
    let token = std::fs::read_to_string(dir.path().join("data/token")).unwrap();
    let token = token.trim().to_string();
    http::wait_until("the cluster observed", Duration::from_secs(30), || {
        http::call(addr, "GET", "/api/v1/cluster", Some(&token), "").status == 200
    });
    let work = dir.path().join("client");
    std::fs::create_dir(&work).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../daemon/tests/openapi/client_smoke.py"
    );
    let run = Command::new("python3")
        .arg(script)
        .arg(&work)
        .env("KEEL_URL", format!("http://{addr}"))
        .env("KEEL_TOKEN", &token)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{said}");
    assert!(run.status.success() && said.contains("client ok"), "{said}");
}
