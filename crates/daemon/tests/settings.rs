//! Run-time settings and rules through the API, against the embedded
//! default's simulated cluster with a fake clock (rounds driven here).

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

fn send(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Reply {
    call(addr, method, path, Some(TOKEN), &body.to_string())
}

/// Runs up to `rounds` control rounds; the plan id of the first that plans.
fn plan_within(daemon: &Daemon, clock: &keel_daemon::FakeClock, rounds: usize) -> Option<u64> {
    (0..rounds).find_map(|_| {
        clock.advance_ms(2_000);
        daemon.service.step().unwrap().plan
    })
}

#[test]
fn the_level_and_the_automation_change_at_run_time() {
    let (daemon, clock) = manual_daemon();
    let addr = daemon.addr();
    let settings = get(addr, "/api/v1/settings").json();
    assert_eq!(settings, json!({"automation": "manual", "level": 3}));

    for (body, code) in [
        (json!({"level": 9}), "invalid_setting"),
        (json!({"level": 0}), "invalid_setting"),
        (json!({"level": "high"}), "bad_json"),
        (json!({"automation": "sometimes"}), "bad_json"),
        (json!({"lvl": 2}), "bad_json"),
    ] {
        let reply = send(addr, "PATCH", "/api/v1/settings", &body);
        assert_eq!(
            (reply.status, reply.json()["code"].as_str()),
            (400, Some(code)),
            "{body}: {}",
            reply.body
        );
        assert!(reply.json()["message"].as_str().unwrap().contains("level") || code == "bad_json");
    }
    assert_eq!(get(addr, "/api/v1/settings").json()["level"], 3);

    // Level 1 makes mandatory moves only: the unbalanced demo cluster
    // breaks no rule, so nothing is planned.
    let reply = send(addr, "PATCH", "/api/v1/settings", &json!({"level": 1}));
    assert_eq!(reply.json(), json!({"automation": "manual", "level": 1}));
    assert_eq!(plan_within(&daemon, &clock, 3), None);

    // Back to level 3: balancing is recommended again; then full
    // automation executes the next plan at once.
    send(addr, "PATCH", "/api/v1/settings", &json!({"level": 3}));
    let id = plan_within(&daemon, &clock, 5).expect("a plan at level 3");
    assert_eq!(
        daemon.service.plan(id).unwrap().state,
        keel_daemon::PlanState::Recommended
    );
    let reply = send(
        addr,
        "PATCH",
        "/api/v1/settings",
        &json!({"automation": "full"}),
    );
    assert_eq!(reply.json()["automation"], "full");
    let report = daemon.service.step().unwrap();
    if let Some(id) = report.plan {
        assert_eq!(
            daemon.service.plan(id).unwrap().state,
            keel_daemon::PlanState::Done
        );
    }
    clock.advance_ms(2_000);
    daemon.service.step().unwrap();
    assert_eq!(get(addr, "/api/v1/cluster").json()["automation"], "full");
}

/// Two VMs that share a host in the demo's initial placement.
fn two_neighbours(addr: SocketAddr) -> (String, String) {
    let cluster = get(addr, "/api/v1/cluster").json();
    let vms = cluster["vms"].as_array().unwrap();
    let first = &vms[0];
    let second = vms[1..]
        .iter()
        .find(|v| v["host"] == first["host"])
        .expect("two VMs on one host");
    (
        first["name"].as_str().unwrap().to_string(),
        second["name"].as_str().unwrap().to_string(),
    )
}

#[test]
fn rules_are_added_checked_listed_and_removed() {
    let (daemon, clock) = manual_daemon();
    let addr = daemon.addr();
    let empty = get(addr, "/api/v1/rules").json();
    assert_eq!(empty["anti_affinity"], json!([]));
    assert_eq!(empty["overcommit"]["cpu"], 4.0);

    // At level 1 only mandatory moves are planned: an anti-affinity rule
    // over two neighbours makes exactly such a move.
    send(addr, "PATCH", "/api/v1/settings", &json!({"level": 1}));
    let (a, b) = two_neighbours(addr);
    let rule = json!({"name": "db-pair", "vms": [a, b]});
    let added = send(addr, "POST", "/api/v1/rules/anti_affinity", &rule);
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(added.json()["anti_affinity"][0]["name"], "db-pair");
    let id = plan_within(&daemon, &clock, 3).expect("the rule forces a move");
    let plan = daemon.service.plan(id).unwrap();
    assert_eq!(plan.moves.len(), 1, "{:?}", plan.moves);
    assert!(plan.moves[0].vm == a || plan.moves[0].vm == b);
    assert!(plan.rules.iter().any(|r| r == "anti_affinity: db-pair"));

    let again = send(addr, "POST", "/api/v1/rules/anti_affinity", &rule);
    assert_eq!(
        (again.status, again.json()["code"].as_str()),
        (409, Some("conflict"))
    );
    let unknown_vm = send(
        addr,
        "POST",
        "/api/v1/rules/affinity",
        &json!({"name": "ghosts", "vms": [a, "no-such-vm"]}),
    );
    assert_eq!(unknown_vm.status, 422, "{}", unknown_vm.body);
    assert!(unknown_vm.json()["message"]
        .as_str()
        .unwrap()
        .contains("no-such-vm"));
    let wrong_shape = send(
        addr,
        "POST",
        "/api/v1/rules/vm_host",
        &json!({"name": "x", "vms": [a]}),
    );
    assert_eq!(wrong_shape.json()["code"], "bad_json");
    let host = get(addr, "/api/v1/cluster").json()["hosts"][9]["name"].clone();
    let soft = send(
        addr,
        "POST",
        "/api/v1/rules/vm_host",
        &json!({"name": "prefer-last", "vms": [a], "hosts": [host], "kind": "should", "weight": 0.5}),
    );
    assert_eq!(soft.status, 201, "{}", soft.body);
    // An unknown kind is invalid by the document's enum of kinds: 400.
    assert_eq!(
        send(addr, "POST", "/api/v1/rules/colocation", &rule).status,
        400
    );
    let conflict = json!({
        "pin": [{"name": "stay", "vms": [a]}],
        "vm_host": [{"name": "leave", "vms": [a], "hosts": [get(addr, "/api/v1/cluster").json()["vms"][0]["host"]], "kind": "must_not"}]
    });
    let refused = send(addr, "PUT", "/api/v1/rules", &conflict);
    assert_eq!(refused.json()["code"], "invalid_rules", "{}", refused.body);
    let bad_ratio = send(
        addr,
        "PUT",
        "/api/v1/rules",
        &json!({"overcommit": {"cpu": 0.0}}),
    );
    // A non-positive ratio is invalid by the document (exclusiveMinimum 0).
    assert_eq!(bad_ratio.status, 400, "{}", bad_ratio.body);
    assert!(bad_ratio.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("overcommit.cpu: "));
    let in_force = get(addr, "/api/v1/rules").json();
    assert_eq!(in_force["anti_affinity"][0]["name"], "db-pair");
    assert_eq!(in_force["vm_host"][0]["name"], "prefer-last");

    let gone = call(
        addr,
        "DELETE",
        "/api/v1/rules/anti_affinity/db-pair",
        Some(TOKEN),
        "",
    );
    assert_eq!(gone.status, 200);
    assert_eq!(gone.json()["anti_affinity"], json!([]));
    let missing = call(
        addr,
        "DELETE",
        "/api/v1/rules/anti_affinity/db-pair",
        Some(TOKEN),
        "",
    );
    assert_eq!(missing.status, 404);

    let replaced = send(
        addr,
        "PUT",
        "/api/v1/rules",
        &json!({"overcommit": {"cpu": 2.0, "memory": 1.0}}),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(get(addr, "/api/v1/rules").json()["vm_host"], json!([]));
    assert_eq!(get(addr, "/api/v1/rules").json()["overcommit"]["cpu"], 2.0);
}

#[test]
fn settings_and_rules_set_through_the_api_survive_a_restart_unless_the_config_changed() {
    use keel_daemon::settings::{NamedRule, RuleKind, SettingsChange};
    use keel_daemon::{Automation, DaemonConfig, FakeClock};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let config = DaemonConfig {
        automation: Automation::Manual,
        ..DaemonConfig::default()
    };
    let clock = Arc::new(FakeClock::at(1_700_000_000_000));
    let open = |config: &DaemonConfig| {
        let service = config.open_service(clock.clone(), dir.path()).unwrap();
        service.warm_up().unwrap();
        service
    };
    let service = open(&config);
    let vms: Vec<String> = service
        .cluster()
        .unwrap()
        .vms
        .iter()
        .take(2)
        .map(|v| v.name.clone())
        .collect();
    service
        .change_settings(SettingsChange {
            automation: Some(Automation::Full),
            level: Some(2),
        })
        .unwrap();
    let rule = keel_model::VmGroupRule {
        name: "apart".into(),
        vms: vms.clone(),
    };
    service
        .add_rule(RuleKind::AntiAffinity, NamedRule::Group(rule))
        .unwrap();
    service.enter_maintenance("host-09", "test").unwrap();
    drop(service);

    // Same config: the run-time state is resumed.
    let service = open(&config);
    let settings = service.settings();
    assert_eq!((settings.automation, settings.level), (Automation::Full, 2));
    let rules = service.rules();
    assert_eq!(rules.anti_affinity[0].vms, vms);
    assert_eq!(rules.maintenance, vec!["host-09".to_string()]);
    drop(service);

    // An edited config wins: the operator meant it.
    let edited = DaemonConfig {
        interval_seconds: 5.0,
        ..config.clone()
    };
    let service = open(&edited);
    assert_eq!(service.settings().automation, Automation::Manual);
    assert!(service.rules().anti_affinity.is_empty());
    drop(service);
    // ...and stays in force at the next start.
    let service = open(&edited);
    assert_eq!(service.settings().level, 3);
}

#[test]
fn the_plan_list_takes_a_limit() {
    let (daemon, clock) = manual_daemon();
    let addr = daemon.addr();
    let first = plan_within(&daemon, &clock, 5).expect("a first plan");
    daemon.service.reject(first, "test").unwrap();
    let second = plan_within(&daemon, &clock, 5).expect("a second plan");
    assert!(second > first);
    let all = get(addr, "/api/v1/plans").json();
    assert!(all["plans"].as_array().unwrap().len() >= 2);
    let newest = get(addr, "/api/v1/plans?limit=1").json();
    let list = newest["plans"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"].as_u64(), Some(second));
    for bad in ["limit=0", "limit=x", "lim=1"] {
        let reply = get(addr, &format!("/api/v1/plans?{bad}"));
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
}
