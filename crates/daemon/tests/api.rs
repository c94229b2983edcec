//! The REST API end to end: a server on 127.0.0.1 with an ephemeral port,
//! the embedded default's simulated cluster, a fake clock (rounds driven by
//! the test) or the wall clock with the periodic loop.

mod common;

use common::*;
use keel_daemon::api::ROUTES;
use keel_daemon::dashboard;
use keel_daemon::view::METRIC_NAMES;
use keel_daemon::{DaemonConfig, WallClock};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
#[test]
fn auth_cluster_shape_openapi_and_metrics() {
    let (daemon, _clock) = manual_daemon();
    let addr = daemon.addr();
    let health = call(addr, "GET", "/healthz", None, "");
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    for (method, path) in ROUTES.iter().filter(|(_, p)| *p != "/healthz") {
        let path = path.replace("{id}", "1").replace("{name}", "host-00");
        let reply = call(addr, &method.to_uppercase(), &path, None, "");
        assert_eq!(reply.status, 401, "{method} {path}");
        assert_eq!(reply.json()["code"], "unauthorized");
    }
    let wrong = call(
        addr,
        "GET",
        "/api/v1/cluster",
        Some("nope-nope-nope-nope"),
        "",
    );
    assert_eq!(wrong.status, 401);

    let cluster = get(addr, "/api/v1/cluster");
    assert_eq!(cluster.status, 200);
    let c = cluster.json();
    assert_eq!(c["hosts"].as_array().unwrap().len(), 10);
    assert_eq!(c["vms"].as_array().unwrap().len(), 200);
    assert_eq!(c["driver"], "sim");
    assert_eq!(c["automation"], "manual");
    for key in [
        "std_dev",
        "normalized",
        "per_resource_std_dev",
        "total_demand",
        "mean_load",
    ] {
        assert!(!c["imbalance"][key].is_null(), "imbalance.{key}");
    }
    assert!(
        c["imbalance"]["total_demand"]["cpu_cores"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let host = &c["hosts"][0];
    for key in [
        "name",
        "capacity",
        "maintenance",
        "safe_to_service",
        "vm_count",
        "demand",
        "load",
    ] {
        assert!(!host[key].is_null(), "host.{key}");
    }
    assert!(c["vms"][0]["host"].is_string());

    let not_found = get(addr, "/api/v1/nothing");
    assert_eq!(
        (not_found.status, not_found.json()["code"].as_str()),
        (404, Some("not_found"))
    );

    let openapi = get(addr, "/api/v1/openapi.json");
    assert_eq!(openapi.status, 200);
    let doc = openapi.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in ROUTES.iter().chain(dashboard::ROUTES) {
        assert!(
            doc["paths"][path][method].is_object(),
            "openapi lacks {method} {path}"
        );
    }

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    for name in METRIC_NAMES {
        assert!(metrics.body.contains(&format!("# TYPE {name} ")), "{name}");
    }
    assert!(metrics
        .body
        .contains("keel_host_load{host=\"host-00\",resource=\"cpu\"}"));

    // API latency of GET /cluster (printed for docs/daemon.md).
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(get(addr, "/api/v1/cluster").status, 200);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "GET /api/v1/cluster: median {:.2} ms, max {:.2} ms",
        times[25], times[49]
    );
}

#[test]
fn the_dashboard_is_served_without_the_token_and_holds_no_data() {
    let (daemon, _clock) = manual_daemon();
    let addr = daemon.addr();
    let page = call(addr, "GET", "/", None, "");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("<title>Keel</title>"), "{}", page.body);
    assert!(page.body.contains("id=\"heatmap\""));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    // The shell is public, so it must hold nothing the API guards.
    assert!(!page.body.contains("host-0") && !page.body.contains("vm-0"));
    assert!(!page.body.contains(TOKEN));
    for (name, content_type, body) in dashboard::ASSETS {
        let asset = call(addr, "GET", &format!("/ui/{name}"), None, "");
        assert_eq!(asset.status, 200, "{name}");
        assert_eq!(asset.header("content-type"), Some(*content_type), "{name}");
        assert_eq!(asset.body, *body, "{name}");
    }
    let missing = call(addr, "GET", "/ui/secret.js", None, "");
    assert_eq!(
        (missing.status, missing.json()["code"].as_str()),
        (404, Some("not_found"))
    );
    // What the page reads still needs the token.
    assert_eq!(call(addr, "GET", "/api/v1/cluster", None, "").status, 401);
}

/// The Grafana dashboard of the repository (deploy/grafana/keel.json).
const GRAFANA_JSON: &str = include_str!("../../../deploy/grafana/keel.json");

/// Every `keel_*` name in the PromQL of `doc` (targets and variables).
fn promql_metric_names(doc: &Value, out: &mut Vec<String>) {
    match doc {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", Value::String(q)) => {
                        for (start, _) in q.match_indices("keel_") {
                            let name: String = q[start..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            out.push(name);
                        }
                    }
                    _ => promql_metric_names(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| promql_metric_names(v, out)),
        _ => {}
    }
}

#[test]
fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let (daemon, clock) = manual_daemon();
    clock.advance_ms(2_000);
    daemon.service.step().unwrap();
    let text = get(daemon.addr(), "/metrics").body;
    let exported: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let doc: Value = serde_json::from_str(GRAFANA_JSON).expect("deploy/grafana/keel.json is JSON");
    let panels = doc["panels"].as_array().expect("panels");
    assert!(panels.len() > 5);
    let mut ids = std::collections::HashSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(ids.insert(panel["id"].as_u64()), "panel id reused: {title}");
        let (x, w) = (&panel["gridPos"]["x"], &panel["gridPos"]["w"]);
        let (x, w) = (x.as_u64().unwrap(), w.as_u64().unwrap());
        assert!(x + w <= 24, "{title} is wider than the grid");
        if panel["type"] != "row" {
            let targets = panel["targets"].as_array().expect(title);
            assert!(targets.iter().all(|t| t["expr"].is_string()), "{title}");
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    let mut names = Vec::new();
    promql_metric_names(&doc, &mut names);
    assert!(names.len() > 10, "{names:?}");
    for name in &names {
        assert!(
            exported.contains(name.as_str()),
            "deploy/grafana/keel.json queries {name}, which /metrics does not export"
        );
    }
    // And the dashboard shows every metric the daemon exports.
    for name in METRIC_NAMES {
        assert!(
            names.iter().any(|n| n.starts_with(name)),
            "the Grafana dashboard does not show {name}"
        );
    }
}

#[test]
fn a_manual_plan_is_applied_through_the_api_and_maintenance_evacuates() {
    let (daemon, clock) = manual_daemon();
    let addr = daemon.addr();
    let mut id = None;
    for _ in 0..5 {
        clock.advance_ms(2_000);
        id = daemon.service.step().unwrap().plan;
        if id.is_some() {
            break;
        }
    }
    let id = id.expect("a plan within 5 rounds");

    let plans = get(addr, "/api/v1/plans").json();
    assert_eq!(plans["automation"], "manual");
    let plan = &plans["plans"][0];
    assert_eq!(
        (plan["id"].as_u64(), plan["state"].as_str()),
        (Some(id), Some("recommended"))
    );
    assert!(plan["benefit"].as_f64().unwrap() > 0.0);
    assert!(plan["moves"][0]["reason"]["kind"].is_string());
    assert!(plan["moves"][0]["cost_seconds"].is_number());
    assert!(plan["rules"].is_array());
    let moves: Vec<(String, String)> = plan["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["vm"].as_str().unwrap().into(),
                m["to"].as_str().unwrap().into(),
            )
        })
        .collect();

    let bad_json = call(
        addr,
        "POST",
        &format!("/api/v1/plans/{id}/apply"),
        Some(TOKEN),
        "{oops",
    );
    assert_eq!(
        (bad_json.status, bad_json.json()["code"].as_str()),
        (400, Some("bad_json"))
    );
    let big = format!("{{\"by\": \"{}\"}}", "x".repeat(100_000));
    let too_big = call(
        addr,
        "POST",
        &format!("/api/v1/plans/{id}/apply"),
        Some(TOKEN),
        &big,
    );
    assert_eq!(too_big.status, 413);
    assert_eq!(
        call(addr, "POST", "/api/v1/plans/999/apply", Some(TOKEN), "").status,
        404
    );
    assert_eq!(
        call(addr, "POST", "/api/v1/plans/x/apply", Some(TOKEN), "").status,
        400
    );

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
    let cluster = get(addr, "/api/v1/cluster").json();
    let host_of = |vm: &str| {
        cluster["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == vm)
            .unwrap()["host"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (vm, to) in &moves {
        assert_eq!(&host_of(vm), to, "{vm}");
    }
    let twice = call(
        addr,
        "POST",
        &format!("/api/v1/plans/{id}/apply"),
        Some(TOKEN),
        "",
    );
    assert_eq!(
        (twice.status, twice.json()["code"].as_str()),
        (409, Some("conflict"))
    );

    let enter = call(
        addr,
        "POST",
        "/api/v1/hosts/host-01/maintenance",
        Some(TOKEN),
        "",
    );
    assert_eq!(enter.status, 202, "{}", enter.body);
    assert!(enter.json()["evacuation_plan"].is_u64());
    wait_until("host-01 to be empty", Duration::from_secs(10), || {
        let c = get(addr, "/api/v1/cluster").json();
        c["hosts"][1]["safe_to_service"] == true && c["hosts"][1]["vm_count"] == 0
    });
    let unknown = call(
        addr,
        "POST",
        "/api/v1/hosts/nope/maintenance",
        Some(TOKEN),
        "",
    );
    assert_eq!(unknown.status, 404);
    let leave = call(
        addr,
        "DELETE",
        "/api/v1/hosts/host-01/maintenance",
        Some(TOKEN),
        "",
    );
    assert_eq!(leave.status, 200);
    assert_eq!(
        get(addr, "/api/v1/cluster").json()["hosts"][1]["maintenance"],
        false
    );
    let metrics = get(addr, "/metrics").body;
    assert!(!metrics.contains("keel_migrations_total{result=\"ok\"} 0\n"));
}

#[test]
fn the_embedded_default_balances_on_its_own() {
    let config = DaemonConfig {
        interval_seconds: 0.1,
        sim: keel_daemon::demo::DemoConfig {
            wall_seconds_per_sample: 0.1,
            ..Default::default()
        },
        ..DaemonConfig::embedded_default()
    };
    let started = Instant::now();
    let service = config.build_service(Arc::new(WallClock)).unwrap();
    service.warm_up().unwrap();
    let daemon = Daemon::start(service, Some(Duration::from_millis(100)));
    let addr = daemon.addr();
    println!(
        "startup: {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut initial = 0.0;
    wait_until("a plan done by the loop", Duration::from_secs(30), || {
        let plans = get(addr, "/api/v1/plans").json();
        let done = plans["plans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["state"] == "done")
            .cloned();
        if let Some(plan) = done {
            initial = plan["imbalance_before"]["std_dev"].as_f64().unwrap();
        }
        initial > 0.0
    });
    println!(
        "first plan done: {:.0} ms after start",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut now = initial;
    wait_until(
        "the imbalance to fall by a third",
        Duration::from_secs(30),
        || {
            now = get(addr, "/api/v1/cluster").json()["imbalance"]["std_dev"]
                .as_f64()
                .unwrap();
            now < initial * 2.0 / 3.0
        },
    );
    let page = call(addr, "GET", "/", None, "");
    assert!(page.status == 200 && page.body.contains("/ui/app.js"));
    println!(
        "imbalance {initial:.3} -> {now:.3} after {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}
