//! Initial placement through the API (`POST /api/v1/placements`) on the
//! embedded default's simulated cluster: hosts 7-9 start empty, so a new VM
//! belongs there; the decision follows the automation level.

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_new_vm_is_placed_on_an_empty_host_and_impossible_requests_are_explained() {
    let (daemon, _clock) = manual_daemon();
    let addr = daemon.addr();
    let gib = 1024.0 * 1024.0 * 1024.0;
    let request =
        json!({"name": "new-web-1", "size": {"cpu_cores": 4.0, "memory_bytes": 16.0 * gib}});
    let reply = call(
        addr,
        "POST",
        "/api/v1/placements",
        Some(TOKEN),
        &request.to_string(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["decision"], "recommend");
    let host = answer["host"].as_str().unwrap();
    assert!(
        ["host-07", "host-08", "host-09"].contains(&host),
        "placed on {host}: {answer}"
    );
    let candidates = answer["candidates"].as_array().unwrap();
    assert_eq!(candidates[0]["host"], answer["host"]);
    assert!(candidates.len() >= 3);
    let scores: Vec<f64> = candidates
        .iter()
        .map(|c| c["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");

    let patch = call(
        addr,
        "PATCH",
        "/api/v1/settings",
        Some(TOKEN),
        r#"{"automation": "partial"}"#,
    );
    assert_eq!(patch.status, 200);
    let reply = call(
        addr,
        "POST",
        "/api/v1/placements",
        Some(TOKEN),
        &request.to_string(),
    );
    assert_eq!(reply.json()["decision"], "place");

    let huge = json!({"name": "huge", "size": {"cpu_cores": 1000.0, "memory_bytes": 4096.0 * gib}});
    let reply = call(
        addr,
        "POST",
        "/api/v1/placements",
        Some(TOKEN),
        &huge.to_string(),
    );
    assert_eq!(
        (reply.status, reply.json()["code"].as_str()),
        (409, Some("no_host"))
    );
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("host-00"),
        "{}",
        reply.body
    );

    let cluster = get(addr, "/api/v1/cluster").json();
    let existing = cluster["vms"][0]["name"].as_str().unwrap();
    let clash = json!({"name": existing, "size": {"cpu_cores": 1.0, "memory_bytes": gib}});
    let reply = call(
        addr,
        "POST",
        "/api/v1/placements",
        Some(TOKEN),
        &clash.to_string(),
    );
    assert_eq!(
        (reply.status, reply.json()["code"].as_str()),
        (422, Some("invalid_placement"))
    );

    let bad = call(
        addr,
        "POST",
        "/api/v1/placements",
        Some(TOKEN),
        r#"{"name": "x", "size": {"cores": 1}}"#,
    );
    assert_eq!(
        (bad.status, bad.json()["code"].as_str()),
        (400, Some("bad_json"))
    );
    let audit = get(addr, "/api/v1/audit").json();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "placement" && e["target"] == "new-web-1"),
        "{audit}"
    );
}
