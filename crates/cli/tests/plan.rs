//! End-to-end tests of `keel gen cluster` and `keel plan`: the real binary,
//! run as a child process on generated clusters and on small hand-written
//! states and rules in temp folders.

mod common;

use common::{assert_one_line_error, assert_success, stderr, stdout};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `keel` with `args` (paths allowed) and returns what it did.
fn keel<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("the keel binary runs")
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// The documented example rules file.
fn example_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rules.toml")
}

/// `keel gen cluster` into `dir/cluster.json`; returns the path.
fn generate(dir: &Path, hosts: usize, vms: usize, seed: u64) -> PathBuf {
    let path = dir.join("cluster.json");
    let out = keel(&[
        "gen".as_ref(),
        "cluster".as_ref(),
        "--hosts".as_ref(),
        hosts.to_string().as_ref(),
        "--vms".as_ref(),
        vms.to_string().as_ref(),
        "--seed".as_ref(),
        seed.to_string().as_ref(),
        "--out".as_ref(),
        path.as_os_str(),
    ]);
    assert_success(&out);
    path
}

/// `keel plan --state STATE [EXTRA...] --format json`, parsed; checks the
/// exit code is `code`.
fn plan_json(state: &Path, extra: &[&str], code: i32) -> Value {
    let mut args: Vec<std::ffi::OsString> = vec!["plan".into(), "--state".into(), state.into()];
    args.extend(extra.iter().map(Into::into));
    args.extend(["--format".into(), "json".into()]);
    let out = keel(&args);
    assert_eq!(out.status.code(), Some(code), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one JSON object on one line");
    serde_json::from_str(&text).expect("plan JSON parses")
}

fn names(v: &Value, list: &str) -> HashSet<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A host as JSON.
fn host(name: &str, cores: f64, gib: f64, maintenance: bool) -> Value {
    json!({"name": name, "capacity": {"cpu_cores": cores, "memory_bytes": gib * GIB},
           "maintenance": maintenance})
}

/// A VM as JSON.
fn vm(name: &str, host: &str, vcpus: f64, gib: f64, cpu_demand: f64) -> Value {
    json!({"name": name, "host": host,
           "size": {"cpu_cores": vcpus, "memory_bytes": gib * GIB},
           "demand": {"cpu_cores": cpu_demand, "memory_bytes": gib * GIB * 0.5}})
}

#[test]
fn gen_then_plan_round_trip_with_the_example_rules() {
    let dir = tempfile::tempdir().unwrap();
    let state = generate(dir.path(), 20, 200, 1);
    let cluster = read_json(&state);
    let hosts = names(&cluster, "hosts");
    let vms = names(&cluster, "vms");
    assert_eq!((hosts.len(), vms.len()), (20, 200));
    assert!(hosts.contains("host-0001") && vms.contains("vm-00200"));

    // Same seed, same bytes, on stdout as in the file.
    let again = keel(&[
        "gen", "cluster", "--hosts", "20", "--vms", "200", "--seed", "1",
    ]);
    assert_success(&again);
    assert_eq!(stdout(&again), fs::read_to_string(&state).unwrap());

    let plain = plan_json(&state, &[], 0);
    assert!(plain["plan_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(plain["predicted_loads"].as_array().unwrap().len(), 20);

    // The documented example compiles against this cluster and forces moves.
    let rules = example_rules();
    let plan = plan_json(&state, &["--rules", rules.to_str().unwrap()], 0);
    let moves = plan["moves"].as_array().unwrap();
    assert!(!moves.is_empty(), "the example's rules force moves");
    for m in moves {
        assert!(hosts.contains(m["from"].as_str().unwrap()), "{m}");
        assert!(hosts.contains(m["to"].as_str().unwrap()), "{m}");
        assert!(vms.contains(m["vm"].as_str().unwrap()), "{m}");
        assert_ne!(
            m["to"], "host-0020",
            "nothing moves onto the maintenance host"
        );
        assert!(m["migration_seconds"].as_f64().unwrap() > 0.0);
    }
    let evacuated = moves.iter().filter(|m| m["from"] == "host-0020").count();
    assert!(evacuated > 0, "host-0020 is in maintenance");
    assert!(plan["unresolved"].as_array().unwrap().is_empty());
    assert!(plan["plan_ms"].is_number());
    for key in ["imbalance_before", "imbalance_after"] {
        for field in ["std_dev", "normalized", "mean_load", "total_demand"] {
            assert!(!plan[key][field].is_null(), "{key}.{field}");
        }
    }

    // The table says the same in words.
    let table = keel(&[
        "plan".as_ref(),
        "--state".as_ref(),
        state.as_os_str(),
        "--rules".as_ref(),
        rules.as_os_str(),
    ]);
    assert_success(&table);
    let text = stdout(&table);
    for needle in [
        "evacuation",
        "hard rule db-replicas",
        "R total demand",
        "unresolved mandatory moves: none",
        "plan_ms: ",
    ] {
        assert!(text.contains(needle), "table lacks {needle:?}:\n{text}");
    }
}

#[test]
fn large_clusters_show_only_the_hottest_hosts_and_every_balancer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = generate(dir.path(), 60, 1800, 5);
    let out = keel(&["plan".as_ref(), "--state".as_ref(), state.as_os_str()]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("the 10 hottest of 60 hosts"), "{text}");
    for balancer in ["keel", "crs", "proxlb", "watcher", "none"] {
        let plan = plan_json(&state, &["--balancer", balancer], 0);
        assert_eq!(plan["balancer"], balancer);
        assert_eq!(plan["predicted_loads"].as_array().unwrap().len(), 60);
    }
}

#[test]
fn gen_rejects_zero_hosts() {
    let out = keel(&["gen", "cluster", "--hosts", "0", "--vms", "10"]);
    assert_one_line_error(&out, &["--hosts", "at least 1"]);
}

#[test]
fn bad_states_are_one_line_errors_naming_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let state = generate(dir.path(), 4, 20, 2);
    let good = read_json(&state);
    let bad = dir.path().join("bad.json");
    let plan = |path: &Path| keel(&["plan".as_ref(), "--state".as_ref(), path.as_os_str()]);

    let mut v = good.clone();
    v["vms"][0]["host"] = json!("host-9999");
    write_json(&bad, &v);
    assert_one_line_error(&plan(&bad), &["vm-00001", "unknown host", "host-9999"]);

    let mut v = good.clone();
    v["hosts"][1]["capacity"]["memory_bytes"] = json!(-1.0);
    write_json(&bad, &v);
    assert_one_line_error(&plan(&bad), &["host-0002", "memory", "-1"]);

    let broken = write(
        dir.path(),
        "broken.json",
        "{\n  \"hosts\": [\n    {\"name\": \"a\" \"capacity\": {}}\n  ],\n  \"vms\": []\n}\n",
    );
    let line = assert_one_line_error(&plan(&broken), &[&format!("{}:3:", shown(&broken))]);
    assert!(line.contains("expected"), "{line}");

    let missing = dir.path().join("nope.json");
    assert_one_line_error(&plan(&missing), &[&shown(&missing)]);
}

#[test]
fn bad_rules_are_one_line_errors_naming_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let state = generate(dir.path(), 4, 20, 2);
    let plan = |rules: &Path| {
        keel(&[
            "plan".as_ref(),
            "--state".as_ref(),
            state.as_os_str(),
            "--rules".as_ref(),
            rules.as_os_str(),
        ])
    };

    let unknown = write(
        dir.path(),
        "unknown.toml",
        "[[affinity]]\nname = \"pair\"\nvms = [\"vm-00001\", \"vm-99999\"]\n",
    );
    assert_one_line_error(&plan(&unknown), &["pair", "unknown VM", "vm-99999"]);

    let conflict = write(
        dir.path(),
        "conflict.toml",
        "[[vm_host]]\nname = \"only-a\"\nkind = \"must\"\nvms = [\"vm-00003\"]\nhosts = [\"host-0001\"]\n\n\
         [[vm_host]]\nname = \"never-a\"\nkind = \"must_not\"\nvms = [\"vm-00003\"]\nhosts = [\"host-0001\"]\n",
    );
    assert_one_line_error(&plan(&conflict), &["vm-00003", "must", "no host"]);

    let malformed = write(
        dir.path(),
        "malformed.toml",
        "# rules\n[[pin]]\nname = \"x\" \"y\"\nvms = []\n",
    );
    assert_one_line_error(&plan(&malformed), &[&format!("{}:3:", shown(&malformed))]);

    let wrong_kind = write(
        dir.path(),
        "kind.toml",
        "\n[[vm_host]]\nname = \"k\"\nkind = \"sometimes\"\nvms = []\nhosts = []\n",
    );
    assert_one_line_error(
        &plan(&wrong_kind),
        &[&format!("{}:4:", shown(&wrong_kind)), "sometimes"],
    );
}

#[test]
fn an_impossible_evacuation_is_unresolved_with_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    write_json(
        &state,
        &json!({
            "hosts": [host("old", 16.0, 256.0, true), host("small", 16.0, 64.0, false)],
            "vms": [vm("big", "old", 4.0, 128.0, 1.0), vm("tiny", "old", 1.0, 1.0, 0.1)],
        }),
    );
    let plan = plan_json(&state, &[], 3);
    let unresolved = plan["unresolved"].as_array().unwrap();
    assert_eq!(unresolved.len(), 1, "{plan}");
    assert_eq!(unresolved[0]["vm"], "big");
    assert!(unresolved[0]["reason"].as_str().unwrap().contains("old"));
    let moves = plan["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "the VM that fits still leaves: {plan}");
    assert_eq!(
        (&moves[0]["vm"], &moves[0]["to"]),
        (&json!("tiny"), &json!("small"))
    );

    let out = keel(&["plan".as_ref(), "--state".as_ref(), state.as_os_str()]);
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(text.contains("UNRESOLVED mandatory moves: 1"), "{text}");
    assert!(text.contains("  big: "), "{text}");
    assert!(stderr(&out).contains("unresolved"));
}

#[test]
fn level_1_makes_only_mandatory_moves() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    // "hot" holds 24 cores of demand on 16 cores: overloaded; "cool" is empty.
    let vms: Vec<Value> = (0..8)
        .map(|i| vm(&format!("v{i}"), "hot", 4.0, 8.0, 3.0))
        .collect();
    write_json(
        &state,
        &json!({"hosts": [host("hot", 16.0, 256.0, false), host("cool", 16.0, 256.0, false)],
                "vms": vms}),
    );
    let level1 = plan_json(&state, &["--level", "1"], 0);
    assert!(level1["moves"].as_array().unwrap().is_empty(), "{level1}");
    assert_eq!(level1["imbalance_before"], level1["imbalance_after"]);
    let level3 = plan_json(&state, &["--level", "3"], 0);
    assert!(!level3["moves"].as_array().unwrap().is_empty(), "{level3}");

    // With the example rules, level 1 still makes the mandatory moves, and
    // only those.
    let state = generate(dir.path(), 20, 200, 1);
    let rules = example_rules();
    let plan = plan_json(
        &state,
        &["--level", "1", "--rules", rules.to_str().unwrap()],
        0,
    );
    let moves = plan["moves"].as_array().unwrap();
    assert!(!moves.is_empty());
    for m in moves {
        let kind = m["reason"]["kind"].as_str().unwrap();
        assert!(kind == "evacuation" || kind == "hard_rule", "{m}");
    }

    let out = keel(&[
        "plan".as_ref(),
        "--state".as_ref(),
        state.as_os_str(),
        "--level".as_ref(),
        "6".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2), "bad usage");
}

#[test]
fn exact_mode_plans_a_small_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let vms: Vec<Value> = (0..8)
        .map(|i| vm(&format!("v{i}"), "hot", 4.0, 8.0, 3.0))
        .collect();
    write_json(
        &state,
        &json!({"hosts": [host("hot", 16.0, 256.0, false), host("cool", 16.0, 256.0, false)],
                "vms": vms}),
    );
    let plan = plan_json(&state, &["--exact", "--target-max-load", "0.85"], 0);
    assert_eq!(plan["exact"], true);
    assert!(plan["exact_optimal"].is_boolean());
    // 8 VMs of 3 cores on two 16-core hosts at most 85 % (13.6 cores) each:
    // at most 4 VMs per host, so the fewest moves is 4.
    assert_eq!(plan["moves"].as_array().unwrap().len(), 4, "{plan}");
    let out = keel(&[
        "plan".as_ref(),
        "--state".as_ref(),
        state.as_os_str(),
        "--exact".as_ref(),
        "--balancer".as_ref(),
        "crs".as_ref(),
    ]);
    assert_one_line_error(&out, &["--exact", "crs"]);
}

/// `--explain` adds what each decision used, in JSON and under the table.
#[test]
fn explain_prints_each_moves_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    write_json(
        &state,
        &json!({
            "hosts": [host("old", 16.0, 256.0, true), host("new", 16.0, 256.0, false)],
            "vms": [vm("a", "old", 4.0, 8.0, 3.2)],
        }),
    );
    let plan = plan_json(&state, &["--explain"], 0);
    let inputs = &plan["moves"][0]["inputs"];
    assert_eq!(inputs["demand"]["cpu_cores"], 3.2, "{plan}");
    assert_eq!(inputs["target"]["before"]["cpu_cores"], 0.0);
    assert_eq!(inputs["target"]["after"]["cpu_cores"], 0.2);
    assert_eq!(inputs["decided_by"], "keel, level 3");
    assert!(plan_json(&state, &[], 0)["moves"][0]
        .get("inputs")
        .is_none());

    let out = keel(&[
        "plan".as_ref(),
        "--state".as_ref(),
        state.as_os_str(),
        "--explain".as_ref(),
    ]);
    assert_success(&out);
    let text = stdout(&out);
    for needle in [
        "a: old -> new (evacuation",
        "inputs:  demand 3.20 cores, 4.0 GiB (cpu given in the state file",
        "loads:   source cpu 20 %",
        "target cpu 0 %, memory 0 % -> cpu 20 %",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
}
