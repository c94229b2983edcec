//! Acceptance test of issue 6's restart: the real `keel serve` on the
//! embedded default's simulated cluster (manual automation, each simulated
//! migration slowed to 400 ms so the plan takes seconds), a plan applied
//! through the API, SIGKILL while it runs, a restart on the same data
//! directory. Checked: no migration is executed twice (actions are unique
//! per plan move and none starts after the restart), the action in flight
//! is settled against the placement, the earlier plans, samples and audit
//! log are still there, and plan ids go on. Every wait is bounded.

#[path = "../../daemon/tests/common/mod.rs"]
mod http;
#[path = "common/serve.rs"]
mod serve;

use http::wait_until;
use serde_json::Value;
use serve::Serve;
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CONFIG: &str = r#"
automation = "manual"
interval_seconds = 0.25
token = "test-token-0123456789abcdef"

[sim]
wall_seconds_per_sample = 0.25
migration_delay_ms = 400
"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn array<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no array {key} in {v}"))
}

fn plan_actions(serve: &Serve, id: u64) -> Vec<Value> {
    let actions = serve.get("/api/v1/actions?limit=10000");
    array(&actions, "actions")
        .iter()
        .filter(|a| a["plan_id"] == id)
        .cloned()
        .collect()
}

#[test]
fn sigkill_mid_plan_then_restart_repeats_no_migration_and_keeps_the_history() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keel.toml"), CONFIG).unwrap();
    let t0 = now_ms();
    let first = Serve::start(dir.path());

    // Manual automation: wait for a recommendation with enough moves.
    let mut id = 0;
    let mut moves = 0;
    wait_until("a recommended plan", Duration::from_secs(60), || {
        let plans = first.get("/api/v1/plans");
        let rec = array(&plans, "plans")
            .iter()
            .rev()
            .find(|p| p["state"] == "recommended")
            .cloned();
        if let Some(p) = rec {
            id = p["id"].as_u64().unwrap();
            moves = array(&p, "moves").len();
        }
        moves >= 4
    });
    let applied = http::call(
        first.addr,
        "POST",
        &format!("/api/v1/plans/{id}/apply"),
        Some(http::TOKEN),
        r#"{"by": "restart-test"}"#,
    );
    assert_eq!(applied.status, 202, "{}", applied.body);
    // Kill it once two migrations are done and a third has started.
    wait_until("the third migration", Duration::from_secs(60), || {
        plan_actions(&first, id).len() >= 3
    });
    let samples_before = first.get(&format!("/api/v1/imbalance?since_ms={t0}"));
    let points_before = array(&samples_before, "points").len();
    assert!(points_before > 0);
    first.kill();
    let killed_at = now_ms();

    let second = Serve::start(dir.path());
    let plan = second.get(&format!("/api/v1/plans/{id}"));
    assert_eq!(plan["state"], "interrupted", "{plan}");
    let notes: Vec<&str> = array(&plan, "history")
        .iter()
        .map(|h| h["note"].as_str().unwrap())
        .collect();
    assert!(notes.contains(&"applied by restart-test"), "{notes:?}");
    assert!(
        notes.last().unwrap().starts_with("interrupted by restart"),
        "{notes:?}"
    );
    // A few rounds after the restart: the loop runs and plans afresh.
    wait_until("rounds after the restart", Duration::from_secs(60), || {
        let points = second.get(&format!("/api/v1/imbalance?since_ms={killed_at}"));
        array(&points, "points").len() >= 4
    });

    let actions = plan_actions(&second, id);
    assert!(actions.len() >= 3 && actions.len() < moves, "{actions:?}");
    let mut seqs = HashSet::new();
    let mut vms = HashSet::new();
    for a in &actions {
        assert!(seqs.insert(a["seq"].as_u64().unwrap()), "move twice: {a}");
        assert!(vms.insert(a["vm"].as_str().unwrap()), "VM twice: {a}");
        assert!(
            a["started_ms"].as_u64().unwrap() < killed_at,
            "started after the kill: {a}"
        );
        assert!(a["finished_ms"].is_u64(), "unsettled: {a}");
    }
    let outcome = |a: &Value| a["outcome"].as_str().unwrap().to_string();
    assert!(actions.iter().filter(|a| outcome(a) == "done").count() >= 2);
    // The simulated cluster restarts from its initial placement: the
    // action in flight at the kill finds its VM off the target.
    let cluster = second.get("/api/v1/cluster");
    let host_of = |vm: &str| {
        array(&cluster, "vms")
            .iter()
            .find(|v| v["name"] == vm)
            .map(|v| v["host"].as_str().unwrap().to_string())
    };
    let interrupted: Vec<&Value> = actions
        .iter()
        .filter(|a| outcome(a) == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1, "{actions:?}");
    let a = interrupted[0];
    assert_ne!(
        host_of(a["vm"].as_str().unwrap()).as_deref(),
        a["target"].as_str()
    );
    assert!(a["error"]
        .as_str()
        .unwrap()
        .contains("interrupted by restart"));
    let all = second.get("/api/v1/actions");
    assert_eq!(
        array(&all, "actions").len(),
        actions.len(),
        "manual mode: nothing executed after the restart"
    );

    // History intact: earlier plans, samples from before the kill, audit.
    let plans = second.get("/api/v1/plans");
    let ids: Vec<u64> = array(&plans, "plans")
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&id), "{ids:?}");
    assert!(ids.iter().any(|&i| i > id), "plan ids go on: {ids:?}");
    let points = second.get(&format!("/api/v1/imbalance?since_ms={t0}"));
    let before_kill = array(&points, "points")
        .iter()
        .filter(|p| p["t_ms"].as_u64().unwrap() < killed_at)
        .count();
    assert!(
        before_kill >= points_before,
        "{before_kill} < {points_before}"
    );
    let vm = second.get(&format!("/api/v1/vms/vm-0000/samples?since_ms={t0}"));
    assert!(array(&vm, "samples")
        .iter()
        .any(|s| s["t_ms"].as_u64().unwrap() < killed_at));
    let audit = second.get("/api/v1/audit");
    let entries: Vec<String> = array(&audit, "entries")
        .iter()
        .map(|e| format!("{} {} {}", e["who"], e["action"], e["target"]))
        .map(|s| s.replace('"', ""))
        .collect();
    for expected in [
        "config config.change config".to_string(),
        format!("restart-test plan.apply plan {id}"),
        format!("control-loop plan.interrupt plan {id}"),
    ] {
        assert!(
            entries.contains(&expected),
            "{expected:?} not in {entries:#?}"
        );
    }
    let starts = entries
        .iter()
        .filter(|e| e.starts_with("control-loop daemon.start"))
        .count();
    assert_eq!(starts, 2, "{entries:#?}");
    second.kill();
}
