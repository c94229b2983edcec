//! `keel agent` following the daemon's allocation policy (`[daemon]`):
//! the real `keel serve` on loopback, the policy set through its API, the
//! agent fetching it (`--check`), keeping it in its cache file, running
//! on the cached one while the daemon is down, picking up a change while
//! it runs, and pinning a self-signed HTTPS daemon by fingerprint. The
//! agent manages only the VMs the policy names (`manage = "configured"`),
//! which are the simulated cluster's: nothing on this machine is touched.

mod common;
#[path = "../../daemon/tests/common/mod.rs"]
mod http;
#[path = "common/serve.rs"]
mod serve;

use common::{assert_success, stderr, stdout};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn keel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel"))
}

fn agent_toml(dir: &Path, daemon: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "interval_seconds = 0.5\nmanage = \"configured\"\n\n[daemon]\n{daemon}refresh_seconds = 1\ncache_file = \"{}\"\n",
        dir.join("policy-cache.json").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn put_policy(addr: std::net::SocketAddr, token: &str, policy: &Value) {
    let reply = http::call(
        addr,
        "PUT",
        "/api/v1/allocation",
        Some(token),
        &policy.to_string(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn the_agent_follows_the_daemons_policy_and_keeps_it_while_the_daemon_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve::Serve::start_with(dir.path(), None);
    let addr = serve.addr;
    let token_file = dir.path().join("data/token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim().to_string();
    http::wait_until("the cluster observed", Duration::from_secs(30), || {
        http::call(addr, "GET", "/api/v1/cluster", Some(&token), "").status == 200
    });
    let cluster = http::call(addr, "GET", "/api/v1/cluster", Some(&token), "").json();
    let vm = |k: usize| cluster["vms"][k]["name"].as_str().unwrap().to_string();
    let policy = json!({"vm": [
        {"name": vm(0), "shares": 4000, "cpu": {"reservation": 0.5}},
        {"name": vm(1), "priority": "low", "memory": {"limit": "1GiB"}}
    ]});
    put_policy(addr, &token, &policy);

    let config = agent_toml(
        dir.path(),
        &format!(
            "url = \"http://{addr}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    );
    let out = keel()
        .args(["agent", "--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        stdout(&out).contains(&format!(
            "policy from http://{addr}: 2 VM(s), 0 top-level pool(s); 0 of them running here"
        )),
        "{}",
        stdout(&out)
    );
    let cached: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("policy-cache.json")).unwrap())
            .unwrap();
    assert_eq!(
        cached,
        http::call(addr, "GET", "/api/v1/allocation", Some(&token), "").json()
    );

    // A wrong token: refused, and the message says by whom and why.
    let bad = agent_toml(
        dir.path(),
        &format!("url = \"http://{addr}\"\ntoken = \"wrong\"\n"),
    );
    let out = keel()
        .args(["agent", "--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HTTP 401"), "{}", stderr(&out));

    // Running: a change of policy through the API reaches the agent.
    let config = agent_toml(
        dir.path(),
        &format!(
            "url = \"http://{addr}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    );
    let mut agent = keel()
        .args(["agent", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let log = agent.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| {
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no {needle:?} from keel agent ({e}); log: {seen:#?}"),
            }
        }
    };
    wait_for("policy from http://");
    put_policy(addr, &token, &json!({"vm": [{"name": vm(2)}]}));
    wait_for("the daemon's policy changed: 1 VM(s)");
    // The daemon goes away: the agent keeps the policy in force.
    serve.kill();
    wait_for("keeping the policy in force");
    sigterm(agent.id());
    wait_for("stopped; settings undone");
    assert!(agent.wait().unwrap().success());

    // A restart while the daemon is down: the cached policy, loudly.
    let out = keel()
        .args(["agent", "--once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        stderr(&out).contains("enforcing the cached policy"),
        "{}",
        stderr(&out)
    );
    // --check insists on the daemon.
    let out = keel()
        .args(["agent", "--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("GET http://{addr}/api/v1/allocation")),
        "{}",
        stderr(&out)
    );
}

/// SIGTERM through kill(1) (no libc in the tests' dependencies).
fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_https_daemon_is_trusted_by_its_pinned_fingerprint_only() {
    let dir = tempfile::tempdir().unwrap();
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let sha = ring::digest::digest(&ring::digest::SHA256, made.cert.der());
    let pin: Vec<String> = sha.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    std::fs::write(
        dir.path().join("keel.toml"),
        format!(
            "token = \"{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            http::TOKEN,
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let serve = serve::Serve::start(dir.path());
    let url = format!("https://localhost:{}", serve.addr.port());
    let check = |extra: &str| {
        let config = agent_toml(
            dir.path(),
            &format!("url = \"{url}\"\ntoken = \"{}\"\n{extra}", http::TOKEN),
        );
        keel()
            .args(["agent", "--check", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = check(&format!("fingerprint = \"{}\"\n", pin.join(":")));
    assert_success(&out);
    assert!(
        stdout(&out).contains(&format!("policy from {url}: 0 VM(s)")),
        "{}",
        stdout(&out)
    );
    // Another pin: refused, naming both fingerprints' setting.
    let out = check(&format!("fingerprint = \"{}\"\n", "AB".repeat(32)));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("daemon.fingerprint pins"),
        "{}",
        stderr(&out)
    );
    // No pin: the system's CAs do not know a self-signed certificate.
    let out = check("");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("GET {url}/api/v1/allocation")),
        "{}",
        stderr(&out)
    );
}
