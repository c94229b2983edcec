//! End-to-end tests of `keel sim` over several trace days at once: the real
//! binary, run as a child process on small PlanetLab days written to temp
//! folders, and (where present) on two of the project's shared days, whose
//! figures must be CloudSim 3.0.3's.

mod common;

use common::{assert_one_line_error, assert_success, stdout};
use serde_json::Value;
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

/// A PlanetLab day folder `root/name` of `vms` files whose values depend on `seed`.
fn day_folder(root: &Path, name: &str, vms: usize, seed: usize) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir(&dir).unwrap();
    for v in 0..vms {
        let text: String = (0..288)
            .map(|i| format!("{}\n", (i * (7 + seed) + v * 13 + seed * 29) % 90 + 5))
            .collect();
        fs::write(dir.join(format!("vm{v}")), text).unwrap();
    }
    dir
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn figure(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn a_folder_of_days_gives_per_day_rows_and_a_median_per_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let days = [
        day_folder(tmp.path(), "20110101", 12, 1),
        day_folder(tmp.path(), "20110102", 9, 2),
        day_folder(tmp.path(), "20110103", 15, 3),
    ];
    // Not a day: a folder of notes beside the days, as in the shared folder.
    fs::create_dir(tmp.path().join("reference")).unwrap();
    fs::write(tmp.path().join("README"), "notes").unwrap();
    let out = keel(&[
        "sim".as_ref(),
        "--trace".as_ref(),
        tmp.path().as_os_str(),
        "--policy".as_ref(),
        "dvfs,thr-mmt-0.8".as_ref(),
        "--hosts".as_ref(),
        "6".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_success(&out);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 3 * 2 + 2, "{}", stdout(&out));
    let names: Vec<&str> = rows.iter().map(|r| r["trace"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "20110101", "20110101", "20110102", "20110102", "20110103", "20110103", "median",
            "median"
        ]
    );
    // Each day's row is what that day gives alone.
    for (i, day) in days.iter().enumerate() {
        let alone = keel(&[
            "sim".as_ref(),
            "--trace".as_ref(),
            day.as_os_str(),
            "--policy".as_ref(),
            "thr-mmt-0.8".as_ref(),
            "--hosts".as_ref(),
            "6".as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
        ]);
        assert_success(&alone);
        let alone = &json_lines(&alone)[0];
        assert!(
            alone.get("trace").is_none(),
            "one trace prints no trace key"
        );
        let row = &rows[2 * i + 1];
        for key in [
            "energy_kwh",
            "migrations",
            "slatah",
            "pdm",
            "host_shutdowns",
        ] {
            assert_eq!(figure(row, key), figure(alone, key), "{key} of {day:?}");
        }
    }
    // The median of three days is the middle value, figure by figure.
    for (p, policy) in ["dvfs", "thr-mmt-0.8"].iter().enumerate() {
        let median = &rows[6 + p];
        assert_eq!(median["policy"], *policy);
        for key in ["energy_kwh", "slatah", "migrations"] {
            let mut values: Vec<f64> = (0..3).map(|d| figure(&rows[2 * d + p], key)).collect();
            values.sort_by(f64::total_cmp);
            assert_eq!(figure(median, key), values[1], "{policy} {key}");
        }
    }
}

#[test]
fn repeated_trace_options_print_a_table_with_day_and_median_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let a = day_folder(tmp.path(), "a", 8, 4);
    let b = day_folder(tmp.path(), "b", 8, 5);
    let out = keel(&[
        "sim".as_ref(),
        "--trace".as_ref(),
        a.as_os_str(),
        "--trace".as_ref(),
        b.as_os_str(),
        "--policy".as_ref(),
        "lr-mmt-1.2".as_ref(),
        "--hosts".as_ref(),
        "4".as_ref(),
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("trace"), "{text}");
    assert!(
        lines[1].starts_with("a ") && lines[2].starts_with("b "),
        "{text}"
    );
    assert!(
        lines[3].starts_with("median") && lines[3].contains("lr-mmt-1.2"),
        "{text}"
    );
    assert!(lines[4].starts_with("peak memory"), "{text}");
}

#[test]
fn a_listing_folder_orders_each_day_and_a_listing_file_orders_one_day_only() {
    let tmp = tempfile::tempdir().unwrap();
    let a = day_folder(tmp.path(), "a", 3, 6);
    let b = day_folder(tmp.path(), "b", 3, 7);
    let listings = tmp.path().join("orders");
    fs::create_dir(&listings).unwrap();
    fs::write(listings.join("a.txt"), "vm2\nvm0\nvm1\n").unwrap();
    fs::write(listings.join("b.txt"), "vm1\nvm2\nvm0\n").unwrap();
    let run = |order: &Path| {
        keel(&[
            "sim".as_ref(),
            "--trace".as_ref(),
            a.as_os_str(),
            "--trace".as_ref(),
            b.as_os_str(),
            "--order".as_ref(),
            order.as_os_str(),
            "--policy".as_ref(),
            "dvfs".as_ref(),
            "--hosts".as_ref(),
            "3".as_ref(),
            "--format".as_ref(),
            "csv".as_ref(),
        ])
    };
    let out = run(&listings);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("trace,policy,"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stdout(&out).lines().count(), 1 + 2 + 1);
    let out = run(&listings.join("a.txt"));
    assert_one_line_error(&out, &["a.txt", "2 traces"]);
    fs::remove_file(listings.join("b.txt")).unwrap();
    let out = run(&listings);
    assert_one_line_error(&out, &["b.txt"]);
}

#[test]
fn a_bad_day_among_several_names_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good = day_folder(tmp.path(), "good", 3, 8);
    let bad = day_folder(tmp.path(), "bad", 3, 9);
    fs::write(bad.join("vm1"), "12\nlots\n").unwrap();
    let out = keel(&[
        "sim".as_ref(),
        "--trace".as_ref(),
        good.as_os_str(),
        "--trace".as_ref(),
        bad.as_os_str(),
        "--policy".as_ref(),
        "dvfs".as_ref(),
    ]);
    assert_one_line_error(&out, &[&bad.join("vm1").display().to_string(), "\"lots\""]);
}

/// Two shared days in CloudSim's listFiles order: each day's LR-MMT-1.2 row
/// is CloudSim 3.0.3's as printed (reference-cloudsim-3.0.3/cloudsim-3.0.3-results.csv).
#[test]
fn two_shared_days_in_listfiles_order_give_cloudsims_figures() {
    let Some(shared) = keel_trace::shared_traces_dir() else {
        eprintln!("SKIPPED (no shared traces; set KEEL_SHARED_DIR): two_shared_days_in_listfiles_order_give_cloudsims_figures");
        return;
    };
    let planetlab = shared.join("planetlab");
    let orders = planetlab.join("reference-cloudsim-3.0.3/listfiles-order");
    let out = keel(&[
        "sim".as_ref(),
        "--trace".as_ref(),
        planetlab.join("20110303").as_os_str(),
        "--trace".as_ref(),
        planetlab.join("20110306").as_os_str(),
        "--order".as_ref(),
        orders.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_success(&out);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 3);
    // CloudSim 3.0.3: 20110303 167.83 kWh, 27649 migrations; 20110306 127.98 kWh, 21661.
    for (row, (kwh, migrations)) in rows.iter().zip([(167.83, 27649.0), (127.98, 21661.0)]) {
        assert_eq!(
            format!("{:.2}", figure(row, "energy_kwh")),
            format!("{kwh:.2}")
        );
        assert_eq!(figure(row, "migrations"), migrations);
    }
    assert_eq!(rows[2]["trace"], "median");
    assert_eq!(
        figure(&rows[2], "migrations"),
        ((27649.0f64 + 21661.0) / 2.0).round()
    );
}
