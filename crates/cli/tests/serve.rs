//! Acceptance test of issue 6's integration item: the real `keel serve` on
//! the embedded default (no config: the simulated cluster replaying the
//! bundled day, full automation), waited on until it has balanced at least
//! once (imbalance falls), then its API, /metrics and dashboard checked.
//! Every wait is bounded.

#[path = "../../daemon/tests/common/mod.rs"]
mod http;
#[path = "common/serve.rs"]
mod serve;

use http::{call, wait_until};
use serde_json::Value;
use std::time::Duration;

#[test]
fn the_embedded_default_balances_and_serves_its_api_metrics_and_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve::Serve::start_with(dir.path(), None);
    let addr = serve.addr;
    let token = std::fs::read_to_string(dir.path().join("data/token")).unwrap();
    let token = token.trim();
    let authed = |method: &str, path: &str, body: &str| call(addr, method, path, Some(token), body);

    // Balanced at least once: a plan executed, imbalance lower after it.
    let mut done: Option<Value> = None;
    wait_until("a plan executed", Duration::from_secs(60), || {
        let plans = authed("GET", "/api/v1/plans", "").json();
        done = plans["plans"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["state"] == "done").cloned());
        done.is_some()
    });
    let plan = done.unwrap();
    let before = plan["imbalance_before"]["std_dev"].as_f64().unwrap();
    let after = plan["imbalance_after"]["std_dev"].as_f64().unwrap();
    assert!(after < before, "plan {}: {before} -> {after}", plan["id"]);
    let cluster = authed("GET", "/api/v1/cluster", "").json();
    assert_eq!(cluster["hosts"].as_array().unwrap().len(), 10);
    assert_eq!(cluster["vms"].as_array().unwrap().len(), 200);
    let now = cluster["imbalance"]["std_dev"].as_f64().unwrap();
    // The demo starts at 0.23 (every VM first-fit on the first hosts).
    assert!(now < 0.2, "imbalance now {now}");

    let unauthorised = call(addr, "GET", "/api/v1/cluster", None, "");
    assert_eq!(unauthorised.status, 401);
    assert_eq!(unauthorised.json()["code"], "unauthorized");
    let id = plan["id"].as_u64().unwrap();
    let malformed = authed("POST", &format!("/api/v1/plans/{id}/apply"), "{\"by\": ");
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["code"], "bad_json");
    assert!(malformed.json()["message"]
        .as_str()
        .unwrap()
        .contains("request body"));
    let unknown = authed("GET", "/api/v1/vms/no-such-vm/samples", "");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(unknown.body.contains("no-such-vm"));

    let metrics = authed("GET", "/metrics", "");
    assert_eq!(metrics.status, 200);
    for name in ["keel_imbalance", "keel_host_load", "keel_migrations_total"] {
        assert!(metrics.body.contains(name), "/metrics lacks {name}");
    }
    // keel why: the round, the plan, the inputs and the outcome of a move
    // of that plan, in one screen.
    let moved = plan["moves"][0]["vm"].as_str().unwrap().to_string();
    let why = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["why", &moved, "--server", &format!("http://{addr}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&why.stdout);
    assert!(
        why.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&why.stderr)
    );
    for needle in [
        format!("{moved}: "),
        format!("plan {id} (balance, done)"),
        "round at driver time".into(),
        "why:".into(),
        "inputs:  demand".into(),
        "samples)".into(),
        "loads:   source".into(),
        "outcome: done".into(),
    ] {
        assert!(text.contains(&needle), "keel why lacks {needle:?}:\n{text}");
    }
    let nobody = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["why", "no-such-vm", "--server", &format!("http://{addr}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&nobody.stdout).contains("has not moved no-such-vm"));

    let page = call(addr, "GET", "/", None, "");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<html") || page.body.contains("<!doctype"),
        "{}",
        &page.body[..page.body.len().min(200)]
    );
}
