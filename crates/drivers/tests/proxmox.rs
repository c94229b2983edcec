//! Contract tests of the Proxmox VE driver against the FAKE Proxmox VE API
//! server of `proxmox_fake` (every request and answer checked against the
//! published schema): a whole balancing round through the daemon's control
//! loop, containers included, and the failure cases.

mod proxmox_fake;

use keel_control::ControlLoop;
use keel_drivers::proxmox::ProxmoxDriver;
use keel_drivers::{Driver, DriverError, MigrationRequest};
use keel_model::Rules;
use keel_policy::balance::KeelBalancer;
use proxmox_fake::{Corruption, FakeCluster, FakeGuest, FakeProxmox};
use serde_json::json;
use std::time::Duration;

fn request<'a>(vm: &'a str, from: &'a str, to: &'a str) -> MigrationRequest<'a> {
    MigrationRequest {
        vm,
        from,
        to,
        max_bandwidth_bytes_per_second: Some(100e6),
        timeout: Duration::from_secs(30),
    }
}

fn assert_clean(fake: &FakeProxmox) {
    let v = fake.violations();
    assert!(v.is_empty(), "schema violations:\n{}", v.join("\n"));
}

/// Four nodes; a and c hot, b and d idle. On a: a VM Keel must leave
/// alone (`keel-ignore`) and a hot container; on c: two hot VMs. Also a
/// template, a stopped VM and a locked VM, none of which may move.
fn hot_cluster() -> FakeCluster {
    let mut c = FakeCluster::new(&["a", "b", "c", "d"], 4, 16);
    let mut ignored = FakeGuest::new(100, "qemu", "a", 2, 0.95);
    ignored.tags = "keel-ignore".into();
    c.guests.push(ignored);
    c.guests.push(FakeGuest::new(200, "lxc", "a", 2, 0.95));
    c.guests.push(FakeGuest::new(101, "qemu", "c", 2, 0.95));
    c.guests.push(FakeGuest::new(102, "qemu", "c", 2, 0.95));
    let mut template = FakeGuest::new(900, "qemu", "c", 2, 0.0);
    template.template = true;
    template.status = "stopped".into();
    c.guests.push(template);
    let mut stopped = FakeGuest::new(901, "qemu", "c", 2, 0.0);
    stopped.status = "stopped".into();
    c.guests.push(stopped);
    let mut locked = FakeGuest::new(902, "qemu", "c", 1, 0.5);
    locked.lock = Some("backup".into());
    c.guests.push(locked);
    c
}

fn driver(fake: &FakeProxmox, restart_containers: bool) -> ProxmoxDriver {
    let mut config = fake.config();
    config.allow_container_restart = restart_containers;
    ProxmoxDriver::connect(config).expect("driver")
}

#[test]
fn a_whole_balancing_round_through_the_control_loop() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    let mut control = ControlLoop::new(
        driver(&fake, true),
        Box::new(KeelBalancer::default()),
        Rules::default(),
    );
    for _ in 0..3 {
        control.sample().expect("observe");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = control.iterate().expect("a round");
    assert!(report.planned_moves >= 2, "{report:?}");
    for m in &report.moves {
        assert!(m.error.is_none(), "{m:?}");
        assert!(
            !["100", "900", "901", "902"].contains(&m.vm.as_str()),
            "{m:?}"
        );
    }
    assert!(
        report.moves.iter().any(|m| m.vm == "200"),
        "the container moved: {report:?}"
    );
    assert!(report.imbalance_after < report.imbalance_before);
    for m in &report.moves {
        assert_eq!(
            fake.with(|c| c.node_of(m.vm.parse().unwrap())),
            Some(m.to.clone())
        );
    }
    assert_eq!(fake.with(|c| c.node_of(100)).as_deref(), Some("a"));
    let requests = fake.requests();
    assert!(requests
        .iter()
        .any(|r| r == "POST /nodes/a/lxc/200/migrate"));
    assert!(requests
        .iter()
        .any(|r| r.starts_with("GET /nodes/c/qemu/") && r.ends_with("/migrate")));
    assert!(requests
        .iter()
        .any(|r| r.contains("/tasks/UPID:") && r.ends_with("/status")));
    assert_clean(&fake);
}

#[test]
fn one_request_per_interval_for_metrics() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    let mut config = fake.config();
    config.rules_refresh_seconds = 3600.0;
    let mut d = ProxmoxDriver::connect(config).unwrap();
    let first = d.observe().unwrap();
    assert_eq!(first.hosts.len(), 4);
    assert_eq!(first.hosts[0].capacity.cpu_cores, 4.0);
    // Guests on online nodes, keyed by vmid; templates and stopped ones
    // are there but not running.
    let running: Vec<&str> = first
        .vms
        .iter()
        .filter(|v| v.running)
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(running, ["100", "200", "101", "102", "902"]);
    fake.clear_requests();
    for _ in 0..3 {
        d.observe().unwrap();
    }
    assert_eq!(fake.requests(), vec!["GET /cluster/resources"; 3]);
    // A node that changes size is read again, once.
    fake.with(|c| c.nodes[1].memory_bytes = 32 << 30);
    fake.clear_requests();
    let o = d.observe().unwrap();
    assert_eq!(
        fake.requests(),
        ["GET /cluster/resources", "GET /nodes/b/status"]
    );
    assert_eq!(o.hosts[1].capacity.memory_bytes, (32u64 << 30) as f64);
    assert_clean(&fake);
}

#[test]
fn cluster_rules_come_from_tags_locks_and_ha() {
    let mut cluster = hot_cluster();
    cluster.guests[2].tags = "keel-anti-affinity-db".into();
    cluster.guests[3].tags = "keel-anti-affinity-db;keel-pin-c".into();
    cluster.ha_rules = vec![json!({"rule": "keep-on-b", "type": "node-affinity",
        "resources": "vm:101", "nodes": "b:2,d", "strict": 1, "digest": "0123"})];
    let Some(fake) = FakeProxmox::start(cluster) else {
        return;
    };
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    let rules = d.cluster_rules();
    let pins: Vec<(&str, Vec<&str>)> = rules
        .pin
        .iter()
        .map(|p| (p.name.as_str(), p.vms.iter().map(String::as_str).collect()))
        .collect();
    assert!(
        pins.contains(&("proxmox: locked guests", vec!["902"])),
        "{pins:?}"
    );
    assert!(
        pins.contains(&("tag: keel-ignore", vec!["100"])),
        "{pins:?}"
    );
    assert!(
        pins.iter()
            .any(|(n, v)| n.contains("containers") && v == &["200"]),
        "{pins:?}"
    );
    assert_eq!(rules.anti_affinity[0].vms, ["101", "102"]);
    let host_rules: Vec<(&str, &[String])> = rules
        .vm_host
        .iter()
        .map(|r| (r.name.as_str(), r.hosts.as_slice()))
        .collect();
    assert!(
        host_rules.contains(&("tag: keel-pin-c", &["c".to_string()][..])),
        "{host_rules:?}"
    );
    // Failback on (the default): the CRM pulls it to the top priority.
    assert!(
        host_rules
            .iter()
            .any(|(n, h)| n.starts_with("ha: keep-on-b") && *h == ["b".to_string()]),
        "{host_rules:?}"
    );
    assert_clean(&fake);
}

#[test]
fn ha_managed_guests_move_through_the_ha_stack() {
    let mut cluster = hot_cluster();
    cluster.guests[2].hastate = Some("started".into());
    let Some(fake) = FakeProxmox::start(cluster) else {
        return;
    };
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    d.migrate(&request("101", "c", "b")).expect("HA migration");
    assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("b"));
    // The guest's own endpoint forwards to the HA stack (`hamigrate`,
    // VM.Migrate only); the HA API (Sys.Console) is not used.
    assert!(fake
        .requests()
        .iter()
        .any(|r| r == "POST /nodes/c/qemu/101/migrate"));
    assert!(!fake
        .requests()
        .iter()
        .any(|r| r == "POST /cluster/ha/resources/vm:101/migrate"));
    assert_clean(&fake);
}

#[test]
fn containers_move_only_when_restarts_are_allowed() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    let err = d.migrate(&request("200", "a", "b")).unwrap_err();
    assert!(err.to_string().contains("allow_container_restart"), "{err}");
    assert_eq!(fake.with(|c| c.node_of(200)).as_deref(), Some("a"));
    assert_clean(&fake);
}

#[test]
fn crs_auto_rebalance_makes_keel_recommend_only_unless_confirmed() {
    let mut cluster = hot_cluster();
    cluster.crs = "ha=dynamic,ha-auto-rebalance=1".into();
    let Some(fake) = FakeProxmox::start(cluster) else {
        return;
    };
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    assert!(!d.capabilities().live_migration);
    let err = d.migrate(&request("101", "c", "b")).unwrap_err();
    assert!(matches!(err, DriverError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("act_despite_crs_auto_rebalance"));
    let mut config = fake.config();
    config.act_despite_crs_auto_rebalance = true;
    let mut d = ProxmoxDriver::connect(config).unwrap();
    d.observe().unwrap();
    assert!(d.capabilities().live_migration);
    d.migrate(&request("101", "c", "b")).expect("confirmed");
    assert_clean(&fake);
}

#[test]
fn a_rejected_token_names_the_token() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    let mut config = fake.config();
    config.token_secret = Some("wrong".into());
    let err = ProxmoxDriver::connect(config)
        .unwrap()
        .observe()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") && err.contains("keel@pve!balancer"),
        "{err}"
    );
}

#[test]
fn a_missing_privilege_is_named_with_the_token() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    fake.with(|c| {
        c.forbidden
            .push(("GET".into(), "/cluster/ha/rules".into(), "Sys.Audit".into()))
    });
    let err = driver(&fake, false).observe().unwrap_err().to_string();
    assert!(
        err.contains("403") && err.contains("keel@pve!balancer") && err.contains("Sys.Audit on /"),
        "{err}"
    );
    fake.with(|c| c.forbidden = vec![("POST".into(), "/nodes/c/qemu".into(), "VM.Migrate".into())]);
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    let err = d
        .migrate(&request("101", "c", "b"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("403")
            && err.contains("keel@pve!balancer")
            && err.contains("VM.Migrate on /vms/101"),
        "{err}"
    );
}

#[test]
fn a_failed_task_is_reported_with_its_log_and_not_retried() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    fake.with(|c| {
        c.fail_migration_of.insert(101);
    });
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    let err = d.migrate(&request("101", "c", "b")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DriverError::MigrationFailed { .. }), "{text}");
    assert!(
        text.contains("\"migration problems\"") && text.contains("UPID:c:"),
        "{text}"
    );
    assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("c"));
    // The next round pins it: the planner does not try it again.
    d.observe().unwrap();
    let rules = d.cluster_rules();
    assert!(
        rules
            .pin
            .iter()
            .any(|p| p.name.contains("failed") && p.vms == ["101"]),
        "{:?}",
        rules.pin
    );
    let posts = fake
        .requests()
        .iter()
        .filter(|r| *r == "POST /nodes/c/qemu/101/migrate")
        .count();
    assert_eq!(posts, 1);
    assert_clean(&fake);
}

#[test]
fn a_node_going_offline_mid_plan_drops_only_its_moves() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    fake.with(|c| c.offline_after_migrations = Some((1, "d".into())));
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    d.migrate(&request("101", "c", "b")).expect("first move");
    let err = d
        .migrate(&request("102", "c", "d"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dropped before it started: node d is offline"),
        "{err}"
    );
    d.migrate(&request("902", "c", "b"))
        .expect_err("locked: the fake refuses");
    fake.with(|c| c.guest_mut(902).unwrap().lock = None);
    d.observe().unwrap();
    d.migrate(&request("902", "c", "b"))
        .expect("a move not involving d goes on");
    assert!(!fake
        .requests()
        .iter()
        .any(|r| r == "POST /nodes/c/qemu/102/migrate"));
    let o = d.observe().unwrap();
    assert!(o.hosts.iter().all(|h| h.name != "d"));
    assert_clean(&fake);
}

#[test]
fn a_vanished_guest_fails_its_move_and_leaves_the_observation() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    fake.with(|c| c.guests.retain(|g| g.vmid != 101));
    let err = d
        .migrate(&request("101", "c", "b"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("101.conf' does not exist"), "{err}");
    let o = d.observe().unwrap();
    assert!(o.vms.iter().all(|v| v.name != "101"));
    assert_clean(&fake);
}

#[test]
fn malformed_and_truncated_answers_are_errors_not_panics() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    fake.with(|c| c.corrupt_next = Some(Corruption::Malformed));
    let err = d.observe().unwrap_err().to_string();
    assert!(
        err.contains("GET /cluster/resources") && err.contains("malformed or truncated JSON"),
        "{err}"
    );
    fake.with(|c| c.corrupt_next = Some(Corruption::Truncated));
    let err = d.observe().unwrap_err().to_string();
    assert!(err.contains("GET /cluster/resources"), "{err}");
    d.observe().expect("the next answer is fine again");
    assert_clean(&fake);
}

#[test]
fn tls_trust_pinned_ca_file_and_mismatch() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    let mut config = fake.config();
    config.fingerprint = Some("00".repeat(32));
    let err = ProxmoxDriver::connect(config)
        .unwrap()
        .observe()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("certificate fingerprint mismatch") && err.contains(&fake.fingerprint),
        "{err}"
    );
    // The system's CA store does not know the self-signed certificate.
    let mut config = fake.config();
    config.fingerprint = None;
    assert!(ProxmoxDriver::connect(config).unwrap().observe().is_err());
    // The certificate as a CA file.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pve-root-ca.pem");
    std::fs::write(&ca, &fake.cert_pem).unwrap();
    let mut config = fake.config();
    config.fingerprint = None;
    config.ca_file = Some(ca);
    ProxmoxDriver::connect(config)
        .unwrap()
        .observe()
        .expect("trusted through the CA file");
    // Insecure accepts anything.
    let mut config = fake.config();
    config.fingerprint = None;
    config.insecure = true;
    ProxmoxDriver::connect(config)
        .unwrap()
        .observe()
        .expect("insecure");
}

#[test]
fn the_fake_checks_requests_and_answers_against_the_schema() {
    let Some(schema) = proxmox_fake::load_schema() else {
        return;
    };
    let (method, path_params) = schema
        .find("POST", "/nodes/a/qemu/100/migrate")
        .expect("the migrate method");
    let mut sent: Vec<(String, String)> = vec![
        ("online".into(), "maybe".into()),
        ("bogus".into(), "1".into()),
        ("bwlimit".into(), "-5".into()),
    ];
    sent.extend(path_params);
    let problems = proxmox_fake::schema::check_request(&method.parameters, &sent);
    let text = problems.join("\n");
    assert!(text.contains("online=maybe: not a boolean"), "{text}");
    assert!(text.contains("unknown parameter bogus"), "{text}");
    assert!(text.contains("bwlimit=-5: below its minimum"), "{text}");
    assert!(text.contains("missing required parameter target"), "{text}");
    let (status, _) = schema
        .find(
            "GET",
            "/nodes/a/tasks/UPID:a:1:2:3:qmigrate:100:root@pam:/status",
        )
        .expect("the task status method");
    let mut problems = Vec::new();
    let answer = json!({"upid": "x", "node": "a", "status": "paused", "pid": "1"});
    proxmox_fake::schema::check_value(&status.returns, &answer, "data", &mut problems);
    let text = problems.join("\n");
    assert!(text.contains("\"paused\" is not one of"), "{text}");
    assert!(
        text.contains("data.pid: \"1\" is not of type integer"),
        "{text}"
    );
    assert!(text.contains("required starttime missing"), "{text}");
}

/// `keel serve`'s path: the daemon config's `[proxmox]` section, the
/// service in full automation, the periodic loop on tokio (the driver is
/// called from blocking tasks), until a plan is done on the fake.
#[test]
fn keel_serve_balances_the_fake_cluster_in_full_automation() {
    use keel_daemon::{DaemonConfig, PlanState, WallClock};
    use std::sync::Arc;
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    let text = format!(
        r#"
automation = "full"
driver = "proxmox"

[proxmox]
url = "{}"
token_id = "{}"
token_secret = "{}"
fingerprint = "{}"
allow_container_restart = true
"#,
        fake.url(),
        proxmox_fake::TOKEN_ID,
        proxmox_fake::SECRET,
        fake.fingerprint
    );
    let config: DaemonConfig = toml::from_str(&text).expect("the config parses");
    let service = Arc::new(config.build_service(Arc::new(WallClock)).expect("service"));
    service.warm_up().expect("first observation");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let done = runtime.block_on(async {
        let running = keel_daemon::start(
            service.clone(),
            "127.0.0.1:0".parse().unwrap(),
            "a-test-token-of-32-characters-xx".into(),
            Some(Duration::from_millis(200)),
        )
        .await
        .expect("serving");
        // Bounded wait for the first finished plan (not a speed check).
        let mut done = None;
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(p) = service
                .plans()
                .into_iter()
                .find(|p| p.state == PlanState::Done)
            {
                done = Some(p);
                break;
            }
        }
        running.shutdown().await;
        done
    });
    let plan = done.expect("a plan was executed within 30 s");
    assert!(!plan.moves.is_empty());
    // The plan lists the rules the cluster gave (tags, locks) too.
    assert!(
        plan.rules.iter().any(|r| r == "pin: tag: keel-ignore"),
        "{:?}",
        plan.rules
    );
    assert!(
        plan.rules
            .iter()
            .any(|r| r == "pin: proxmox: locked guests"),
        "{:?}",
        plan.rules
    );
    for m in &plan.moves {
        assert_eq!(
            fake.with(|c| c.node_of(m.vm.parse().unwrap())),
            Some(m.to.clone())
        );
    }
    drop(runtime);
    drop(service);
    assert_clean(&fake);
}

#[test]
fn a_bad_proxmox_section_is_refused_by_name() {
    use keel_daemon::DaemonConfig;
    let parse = |text: &str| toml::from_str::<DaemonConfig>(text).expect("parses");
    let missing = parse("driver = \"proxmox\"")
        .check()
        .unwrap_err()
        .to_string();
    assert!(missing.contains("[proxmox] section"), "{missing}");
    let bad = parse(
        "driver = \"proxmox\"\n[proxmox]\nurl = \"https://pve:8006\"\ntoken_id = \"keel@pve!b\"\n\
         token_secret = \"s\"\nfingerprint = \"AB:CD\"\n",
    );
    let err = bad.check().unwrap_err().to_string();
    assert!(err.contains("proxmox.fingerprint = AB:CD"), "{err}");
    let typo = toml::from_str::<DaemonConfig>(
        "driver = \"proxmox\"\n[proxmox]\nurl = \"https://pve:8006\"\ntoken_id = \"keel@pve!b\"\nsecret = \"s\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(typo.contains("unknown field `secret`"), "{typo}");
}

#[test]
fn running_migrations_hold_keel_back_and_slow_tasks_time_out() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    fake.with(|c| {
        c.task_duration = Duration::from_millis(600);
        c.start_foreign_migration(102, "d");
    });
    let mut d = driver(&fake, false);
    d.observe().unwrap();
    // One migration per node: 101 waits for the foreign one on c.
    d.migrate(&request("101", "c", "b"))
        .expect("after the other one");
    let requests = fake.requests();
    let post = requests
        .iter()
        .position(|r| r == "POST /nodes/c/qemu/101/migrate")
        .unwrap();
    let polls = requests[..post]
        .iter()
        .filter(|r| *r == "GET /cluster/tasks")
        .count();
    assert!(polls >= 2, "waited for a slot: {requests:?}");
    assert_eq!(fake.with(|c| c.node_of(102)).as_deref(), Some("d"));
    // A task slower than the timeout is reported, not waited for forever.
    let mut config = fake.config();
    config.task_timeout_seconds = 0.2;
    fake.with(|c| c.task_duration = Duration::from_secs(3600));
    let mut d = ProxmoxDriver::connect(config).unwrap();
    d.observe().unwrap();
    let err = d
        .migrate(&request("101", "b", "a"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("still running after 0.2 s"), "{err}");
    assert_clean(&fake);
}

#[test]
fn a_wave_runs_its_migrations_at_once_within_the_node_limits() {
    let Some(fake) = FakeProxmox::start(hot_cluster()) else {
        return;
    };
    fake.with(|c| c.task_duration = Duration::from_millis(400));
    let mut d = driver(&fake, true);
    assert!(d.runs_waves_concurrently());
    d.observe().unwrap();
    // Disjoint nodes: both tasks run together.
    let wave = [request("101", "c", "b"), request("200", "a", "d")];
    let results = d.migrate_wave(&wave);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fake.with(|c| c.most_tasks_at_once(&[101, 200])), 2);
    assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("b"));
    assert_eq!(fake.with(|c| c.node_of(200)).as_deref(), Some("d"));
    // Both go to a, one migration per node (the default): the second
    // starts only when the first has ended.
    let wave = [request("102", "c", "a"), request("101", "b", "a")];
    let results = d.migrate_wave(&wave);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fake.with(|c| c.most_tasks_at_once(&[101, 102])), 1);
    assert_eq!(fake.with(|c| c.node_of(102)).as_deref(), Some("a"));
    assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("a"));
    assert_clean(&fake);
}
