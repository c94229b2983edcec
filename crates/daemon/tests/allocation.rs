//! The allocation policy through the API (`GET/PUT /api/v1/allocation`),
//! against the embedded default's simulated cluster: valid policies are
//! stored, bad ones refused with the item named, admission control per
//! host.

mod common;

use common::*;
use serde_json::{json, Value};

fn put(addr: std::net::SocketAddr, body: &Value) -> Reply {
    call(
        addr,
        "PUT",
        "/api/v1/allocation",
        Some(TOKEN),
        &body.to_string(),
    )
}

#[test]
fn allocation_policy_is_validated_and_stored() {
    let (daemon, _clock) = manual_daemon();
    let addr = daemon.addr();
    assert_eq!(
        get(addr, "/api/v1/allocation").json(),
        json!({"vm": [], "pool": []})
    );
    let cluster = get(addr, "/api/v1/cluster").json();
    let vm = |k: usize| cluster["vms"][k]["name"].as_str().unwrap().to_string();
    let host_of = |k: usize| cluster["vms"][k]["host"].as_str().unwrap().to_string();
    let cores = |h: &str| {
        cluster["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == h)
            .unwrap()["capacity"]["cpu_cores"]
            .as_f64()
            .unwrap()
    };
    let (a, b) = (vm(0), vm(1));
    let good = json!({"vm": [
        {"name": a, "shares": 4000, "cpu": {"reservation": 0.5, "limit": 2}, "memory": {"limit": "2GiB"}},
        {"name": b, "priority": "low", "disk": {"limit": "500 IOPS"}}
    ]});
    let reply = put(addr, &good);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let stored = get(addr, "/api/v1/allocation").json();
    assert_eq!(stored["vm"][0]["memory"]["limit"], json!(2147483648.0));
    assert_eq!(stored["vm"][1]["disk_iops_limit"], json!(500.0));
    // What GET returns can be sent back as it is (absent, not null, where
    // nothing is set; an explicit null is accepted as absent too).
    assert!(stored["vm"][1].get("shares").is_none(), "{stored}");
    let reply = put(addr, &stored);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), stored);
    let mut with_null = stored.clone();
    with_null["vm"][1]["shares"] = serde_json::Value::Null;
    assert_eq!(put(addr, &with_null).json(), stored);

    let host = host_of(0);
    let too_much = cores(&host) + 1.0;
    for (body, needle) in [
        (
            json!({"vm": [{"name": a, "cpu": {"reservation": 3, "limit": 2}}]}),
            "above its limit",
        ),
        (json!({"vm": [{"name": "ghost"}]}), "unknown VM \"ghost\""),
        (json!({"vm": [{"name": a, "shares": -1}]}), "shares = -1"),
        (
            json!({"vm": [{"name": a, "cpu": {"reservation": too_much}}]}),
            "does not fit",
        ),
        (
            json!({"vm": [{"name": a, "memory": {"limit": "2Gb"}}]}),
            "unknown memory unit",
        ),
    ] {
        let reply = put(addr, &body);
        assert_eq!(reply.status, 422, "{body}: {}", reply.body);
        let msg = reply.json()["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{body}: {msg}");
        assert_eq!(reply.json()["code"], "invalid_allocation");
    }
    let reply = put(addr, &json!({"vm": [{"name": a, "share": 3}]}));
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("share"), "{}", reply.body);
    let reply = call(addr, "PUT", "/api/v1/allocation", Some(TOKEN), "not json");
    assert_eq!(
        (reply.status, reply.json()["code"].as_str()),
        (400, Some("bad_json"))
    );
    // The refused policies left the good one in force.
    assert_eq!(get(addr, "/api/v1/allocation").json(), stored);
    // Without the token: refused.
    let reply = call(addr, "PUT", "/api/v1/allocation", None, &good.to_string());
    assert_eq!(reply.status, 401);
}

#[test]
fn the_allocation_policy_survives_a_restart() {
    use keel_daemon::{Automation, DaemonConfig, FakeClock};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let config = DaemonConfig {
        automation: Automation::Manual,
        ..DaemonConfig::default()
    };
    let start = || {
        let clock = FakeClock::at(1_700_000_000_000);
        let service = config.open_service(Arc::new(clock), dir.path()).unwrap();
        service.warm_up().unwrap();
        Daemon::start(service, None)
    };
    let daemon = start();
    let addr = daemon.addr();
    let cluster = get(addr, "/api/v1/cluster").json();
    let name = cluster["vms"][0]["name"].as_str().unwrap().to_string();
    let policy = json!({"vm": [{"name": name, "shares": 3000, "memory": {"limit": "3GiB"}}]});
    assert_eq!(put(addr, &policy).status, 200);
    let before = get(addr, "/api/v1/allocation").json();
    drop(daemon);

    let daemon = start();
    let after = get(daemon.addr(), "/api/v1/allocation").json();
    assert_eq!(after, before);
    assert_eq!(
        after["vm"][0]["memory"]["limit"],
        json!(3.0 * 1024.0 * 1024.0 * 1024.0)
    );
    let audit = get(daemon.addr(), "/api/v1/audit").json();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "allocation.change"),
        "{audit}"
    );
}
