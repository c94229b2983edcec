//! `keel bench balance` end to end: the real binary on a small suite file
//! (the bundled PlanetLab day) written to a temp folder.

mod common;

use common::{assert_one_line_error, assert_success, stderr, stdout};
use serde_json::Value;
use std::process::{Command, Output};

fn keel(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("the keel binary runs")
}

const BALANCERS: [&str; 6] = ["none", "crs", "proxlb", "watcher", "keel", "oracle"];

#[test]
fn bench_balance_runs_every_balancer_on_every_setup_and_judges() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.json");
    std::fs::write(
        &suite,
        r#"[{"name": "planetlab-day", "path": "bundled", "extra": [], "setups": [[4, 6]]},
            {"name": "absent", "path": "no-such-trace.csv", "setups": [[2, 2]]}]"#,
    )
    .unwrap();
    let out_file = dir.path().join("bench.txt");
    let out = keel(&[
        "bench".as_ref(),
        "balance".as_ref(),
        "--suite".as_ref(),
        suite.as_os_str(),
        "--out".as_ref(),
        out_file.as_os_str(),
    ]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("SKIPPED absent: trace"),
        "{}",
        stderr(&out)
    );
    let table = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        table.contains("planetlab-day hosts=4 vcpus/core=6"),
        "{table}"
    );
    for b in BALANCERS {
        assert!(table.contains(&format!("sum {b:<8} unmet")), "{table}");
    }
    for column in [
        "unmet %",
        "bound %",
        "migrations",
        "GiB",
        "contended VM-h",
        "plan ms",
    ] {
        assert!(table.contains(column), "{column}: {table}");
    }
    assert!(table.contains("keel/oracle summed unmet"), "{table}");
    let last = table.lines().last().unwrap();
    assert!(
        last.starts_with("keel/best unmet, geometric mean "),
        "{last}"
    );

    let out = keel(&[
        "bench".as_ref(),
        "balance".as_ref(),
        "--suite".as_ref(),
        suite.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_success(&out);
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), BALANCERS.len());
    for (row, b) in rows.iter().zip(BALANCERS) {
        assert_eq!(row["balancer"], b);
        assert_eq!(row["setup"], "planetlab-day hosts=4 vcpus/core=6");
        let unmet = row["unmet_demand"].as_f64().unwrap();
        let bound = row["unmet_lower_bound"].as_f64().unwrap();
        assert!(unmet + 1e-12 >= bound, "{row}");
        assert!(row["migrated_gib"].as_f64().is_some());
    }
}

#[test]
fn bench_balance_names_the_bad_suite_entry() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("bad.json");
    std::fs::write(
        &suite,
        r#"[{"name": "x", "path": "bundled", "setups": [[0, 2]]}]"#,
    )
    .unwrap();
    let out = keel(&[
        "bench".as_ref(),
        "balance".as_ref(),
        "--suite".as_ref(),
        suite.as_os_str(),
    ]);
    assert_one_line_error(&out, &["bad.json", "entry 0", "hosts >= 1"]);
}
