//! The history routes (samples per VM and host, imbalance, audit log)
//! against the embedded default's simulated cluster, rounds driven by the
//! test on a fake clock; the history is in memory here (tests of the
//! database file are in keel_daemon::store and the restart test in
//! crates/cli/tests/restart.rs).

mod common;

use common::*;
use keel_daemon::Clock;
use std::time::Duration;

#[test]
fn history_endpoints_samples_imbalance_audit_and_their_errors() {
    let (daemon, clock) = manual_daemon();
    let addr = daemon.addr();
    let t0 = clock.now_unix_ms();
    // Rounds 2 s apart until one plans (the estimator needs a couple of
    // samples), then three more.
    let first = (0..5).find_map(|_| {
        clock.advance_ms(2_000);
        daemon.service.step().unwrap().plan
    });
    assert!(first.is_some(), "no plan within 5 rounds");
    for _ in 0..3 {
        clock.advance_ms(2_000);
        daemon.service.step().unwrap();
    }
    // Later rounds may have superseded the first plan: apply the current one.
    let plans = get(addr, "/api/v1/plans").json();
    let id = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["state"] == "recommended")
        .and_then(|p| p["id"].as_u64())
        .expect("a recommended plan");
    let rounds = get(addr, "/api/v1/imbalance").json()["points"]
        .as_array()
        .unwrap()
        .len();
    assert!(rounds >= 4, "{rounds} imbalance points");

    let vm = get(addr, "/api/v1/vms/vm-0000/samples");
    assert_eq!(vm.status, 200, "{}", vm.body);
    let vm = vm.json();
    assert_eq!(vm["vm"], "vm-0000");
    assert_eq!(vm["host"], "host-00");
    let samples = vm["samples"].as_array().unwrap();
    assert_eq!(samples.len(), rounds);
    let times: Vec<u64> = samples
        .iter()
        .map(|s| s["t_ms"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {times:?}"
    );
    assert!(times[0] > t0);
    for key in [
        "cpu_cores",
        "memory_bytes",
        "disk_bytes_per_second",
        "network_bytes_per_second",
    ] {
        assert!(samples[0][key].is_number(), "{key}");
    }
    assert!(samples
        .iter()
        .any(|s| s["cpu_cores"].as_f64().unwrap() > 0.0));
    assert!(samples[0]["memory_bytes"].as_f64().unwrap() > 1e9);

    let limited = get(
        addr,
        &format!("/api/v1/vms/vm-0000/samples?since_ms={}&limit=2", times[1]),
    )
    .json();
    let limited: Vec<u64> = limited["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["t_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(limited, times[times.len() - 2..].to_vec(), "newest two");
    let later = get(
        addr,
        &format!(
            "/api/v1/vms/vm-0000/samples?since_ms={}",
            times[times.len() - 1] + 1
        ),
    );
    assert_eq!(later.json()["samples"].as_array().unwrap().len(), 0);

    let host = get(addr, "/api/v1/hosts/host-00/samples?limit=3").json();
    assert_eq!(host["host"], "host-00");
    let hs = host["samples"].as_array().unwrap();
    assert_eq!(hs.len(), 3);
    let load = hs[2]["cpu_load"].as_f64().unwrap();
    assert!(load > 0.0 && load < 5.0, "{load}");
    assert!(hs[2]["vms"].as_u64().unwrap() > 0);
    for key in ["memory_load", "disk_load", "network_load"] {
        assert!(hs[2][key].is_number(), "{key}");
    }

    let points = get(addr, "/api/v1/imbalance?limit=1").json();
    let p = &points["points"][0];
    assert!(p["imbalance"].as_f64().unwrap() > 0.0);
    assert!(p["r"].as_f64().unwrap() > 0.0, "R in cores");
    let l = p["l"].as_f64().unwrap();
    assert!(l > 0.0 && l < 2.0, "L {l}");

    for (path, needle) in [
        ("/api/v1/vms/vm-0000/samples?since_ms=yesterday", "since_ms"),
        ("/api/v1/hosts/host-00/samples?limit=0", "limit"),
        ("/api/v1/imbalance?limit=20000", "20000"),
        ("/api/v1/imbalance?from=3", "from"),
        ("/api/v1/audit?since_ms=1", "since_ms"),
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 400, "{path}");
        let e = r.json();
        assert_eq!(e["code"], "bad_request");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{path}: {e}"
        );
    }
    for path in ["/api/v1/vms/nope/samples", "/api/v1/hosts/nope/samples"] {
        let r = get(addr, path);
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }

    let applied = call(
        addr,
        "POST",
        &format!("/api/v1/plans/{id}/apply"),
        Some(TOKEN),
        r#"{"by": "alice"}"#,
    );
    assert_eq!(applied.status, 202, "{}", applied.body);
    wait_until("the plan to be done", Duration::from_secs(10), || {
        get(addr, &format!("/api/v1/plans/{id}")).json()["state"] == "done"
    });
    let enter = call(
        addr,
        "POST",
        "/api/v1/hosts/host-02/maintenance",
        Some(TOKEN),
        "",
    );
    assert_eq!(enter.status, 202);
    let leave = call(
        addr,
        "DELETE",
        "/api/v1/hosts/host-02/maintenance",
        Some(TOKEN),
        r#"{"by": "bob"}"#,
    );
    assert_eq!(leave.status, 200);
    let audit = get(addr, "/api/v1/audit").json();
    let entries: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["t_ms"].as_u64().unwrap() >= t0);
            assert!(e["detail"].is_string());
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("who"), s("action"), s("target"))
        })
        .collect();
    let expected = [
        ("alice", "plan.apply", format!("plan {id}")),
        ("api", "maintenance.enter", "host-02".to_string()),
        ("bob", "maintenance.leave", "host-02".to_string()),
    ];
    let expected: Vec<(String, String, String)> = expected
        .into_iter()
        .map(|(a, b, c)| (a.into(), b.into(), c))
        .collect();
    assert!(
        entries.ends_with(&expected),
        "audit entries {entries:?} do not end with {expected:?}"
    );
    let last = get(addr, "/api/v1/audit?limit=1").json();
    assert_eq!(last["entries"].as_array().unwrap().len(), 1);
    assert_eq!(last["entries"][0]["who"], "bob");
}
