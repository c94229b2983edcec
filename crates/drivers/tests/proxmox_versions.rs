//! Contract tests of the Proxmox VE driver against the FAKE server in both
//! version profiles (8.4 and 9.1), one test per point of issue 13 (the
//! point is in each test's name, docs/proxmox.md lists them).

#![cfg(feature = "proxmox")]

mod proxmox_fake;

use keel_drivers::proxmox::ProxmoxDriver;
use keel_drivers::{Driver, DriverError, MigrationRequest};
use keel_model::VmHostKind;
use proxmox_fake::{FakeCluster, FakeGuest, FakeProxmox, Profile};
use serde_json::json;
use std::time::Duration;

const PROFILES: [Profile; 2] = [Profile::Pve8, Profile::Pve9];

fn request<'a>(vm: &'a str, from: &'a str, to: &'a str) -> MigrationRequest<'a> {
    MigrationRequest {
        vm,
        from,
        to,
        max_bandwidth_bytes_per_second: None,
        timeout: Duration::from_secs(30),
    }
}

fn assert_clean(fake: &FakeProxmox) {
    let v = fake.violations();
    assert!(v.is_empty(), "schema violations:\n{}", v.join("\n"));
}

/// Three nodes a, b, c; VMs 101 and 102 on c, container 200 on a.
fn cluster(profile: Profile) -> FakeCluster {
    let mut c = FakeCluster::new(&["a", "b", "c"], 8, 32);
    c.profile = profile;
    c.task_duration = Duration::from_millis(60);
    c.guests.push(FakeGuest::new(101, "qemu", "c", 2, 0.5));
    c.guests.push(FakeGuest::new(102, "qemu", "c", 2, 0.5));
    c.guests.push(FakeGuest::new(200, "lxc", "a", 2, 0.5));
    c
}

fn driver(fake: &FakeProxmox) -> ProxmoxDriver {
    let mut config = fake.config();
    config.allow_container_restart = true;
    config.ha_request_grace_seconds = 0.5;
    ProxmoxDriver::connect(config).expect("driver")
}

fn posts(fake: &FakeProxmox, path: &str) -> usize {
    let want = format!("POST {path}");
    fake.requests().iter().filter(|r| **r == want).count()
}

#[test]
fn point1_crs_auto_rebalance_read_from_the_parsed_object() {
    for profile in PROFILES {
        let mut c = cluster(profile);
        c.crs = "ha=dynamic,ha-auto-rebalance=1".into();
        let Some(fake) = FakeProxmox::start(c) else {
            return;
        };
        assert_eq!(
            fake.with(|c| c.crs_object()).get("ha-auto-rebalance"),
            Some(&json!(1)),
            "the fake answers crs as an object"
        );
        let mut d = driver(&fake);
        d.observe().unwrap();
        assert!(d.crs_auto_rebalance(), "{profile:?}");
        assert!(!d.capabilities().live_migration);
        let err = d.migrate(&request("101", "c", "b")).unwrap_err();
        assert!(matches!(err, DriverError::Unsupported(_)), "{err}");
        assert_eq!(fake.with(|c| c.started_during_auto_rebalance), 0);
        fake.with(|c| c.crs = "ha=dynamic".into());
        d.observe().unwrap();
        assert!(!d.crs_auto_rebalance());
        assert_clean(&fake);
    }
}

#[test]
fn point2_both_versions_are_observed_and_served() {
    for profile in PROFILES {
        let mut c = cluster(profile);
        c.guests[0].hastate = Some("started".into());
        c.guests[0].ha_group = Some("prefer-b".into());
        c.ha_groups
            .push(json!({"group": "prefer-b", "nodes": "b,c", "type": "group"}));
        c.ha_rules
            .push(json!({"rule": "prefer-b", "type": "node-affinity",
            "resources": "vm:101", "nodes": "b,c", "strict": 0}));
        let Some(fake) = FakeProxmox::start(c) else {
            return;
        };
        let mut d = driver(&fake);
        let observation = d.observe().expect("observe");
        assert_eq!(observation.vms.len(), 3);
        let (release, rules_path) = match profile {
            Profile::Pve8 => ("8.4", "GET /cluster/ha/groups"),
            Profile::Pve9 => ("9.1", "GET /cluster/ha/rules"),
        };
        assert_eq!(d.version().as_deref(), Some(release));
        assert!(
            fake.requests().iter().any(|r| r == rules_path),
            "{profile:?}"
        );
        let rules = d.cluster_rules();
        assert!(
            rules
                .vm_host
                .iter()
                .any(|r| r.vms == ["101"] && r.hosts == ["b", "c"]),
            "{profile:?}: {:?}",
            rules.vm_host
        );
        // A container moves on both (8.x has no precondition for it).
        d.migrate(&request("200", "a", "b"))
            .expect("container move");
        assert_eq!(fake.with(|c| c.node_of(200)).as_deref(), Some("b"));
        let checked = fake
            .requests()
            .iter()
            .any(|r| r == "GET /nodes/a/lxc/200/migrate");
        assert_eq!(checked, profile == Profile::Pve9);
        // An HA guest moves on both (8.x's HA API answers null).
        d.migrate(&request("101", "c", "b")).expect("HA move");
        assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("b"));
        assert_clean(&fake);
    }
}

#[test]
fn point3_failback_rules_are_hard_and_infeasible_rules_ignored() {
    for profile in PROFILES {
        let mut c = cluster(profile);
        for g in &mut c.guests[..2] {
            g.hastate = Some("started".into());
        }
        c.guests[1].ha_failback = false;
        c.guests[0].node = "b".into();
        c.guests[1].node = "a".into();
        // 9.x rules: 101 prefers b over a (not strict, failback on);
        // 102 strict to b and a, failback off; an infeasible rule.
        c.ha_rules
            .push(json!({"rule": "web", "type": "node-affinity",
            "resources": "vm:101", "nodes": "b:2,a:1", "strict": 0}));
        c.ha_rules
            .push(json!({"rule": "db", "type": "node-affinity",
            "resources": "vm:102", "nodes": "b:2,a:1", "strict": 1}));
        c.ha_rules.push(json!({"rule": "broken", "type": "node-affinity",
            "resources": "vm:101", "nodes": "c", "strict": 1,
            "errors": {"resources": "resource 'vm:101' is already used in another node affinity rule"}}));
        // 8.x groups with the same meaning.
        c.guests[0].ha_group = Some("web".into());
        c.guests[1].ha_group = Some("db".into());
        c.ha_groups
            .push(json!({"group": "web", "nodes": "b:2,a:1", "type": "group"}));
        c.ha_groups
            .push(json!({"group": "db", "nodes": "b:2,a:1", "type": "group",
            "restricted": 1, "nofailback": 1}));
        let Some(fake) = FakeProxmox::start(c) else {
            return;
        };
        let mut d = driver(&fake);
        d.observe().unwrap();
        let rules = d.cluster_rules();
        let of = |vm: &str| -> Vec<(VmHostKind, Vec<String>)> {
            rules
                .vm_host
                .iter()
                .filter(|r| r.vms.contains(&vm.to_string()))
                .map(|r| (r.kind, r.hosts.clone()))
                .collect()
        };
        assert_eq!(
            of("101"),
            [(VmHostKind::Must, vec!["b".to_string()])],
            "{profile:?}: failback makes the top priority a must; the infeasible rule is ignored"
        );
        let db = of("102");
        assert!(
            db.contains(&(VmHostKind::Must, vec!["a".to_string(), "b".to_string()]))
                || db.contains(&(VmHostKind::Must, vec!["b".to_string(), "a".to_string()])),
            "{profile:?}: without failback a strict rule allows every listed node: {db:?}"
        );
        // The fake's CRM fails 101 back when it is put on a (not the top).
        // (Keel's planner never asks this: the must rule forbids it.)
        let _ = d.migrate(&request("101", "b", "a"));
        std::thread::sleep(Duration::from_millis(200));
        fake.with(|c| c.crm_round());
        std::thread::sleep(Duration::from_millis(100));
        fake.with(|c| c.crm_round());
        assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("b"));
        assert_clean(&fake);
    }
}

#[test]
fn point4_warnings_exit_status_is_a_success() {
    for profile in PROFILES {
        let Some(fake) = FakeProxmox::start(cluster(profile)) else {
            return;
        };
        fake.with(|c| c.warn_migration_of.insert(101));
        let mut d = driver(&fake);
        d.observe().unwrap();
        d.migrate(&request("101", "c", "b"))
            .expect("WARNINGS: 1 is a success");
        assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("b"));
        d.observe().unwrap();
        assert!(
            d.cluster_rules()
                .pin
                .iter()
                .all(|p| !p.vms.contains(&"101".to_string())),
            "not held as failed"
        );
        assert_clean(&fake);
    }
}

#[test]
fn point5_cdrom_snapshot_passthrough_and_replication_block() {
    for profile in PROFILES {
        let mut c = cluster(profile);
        c.nodes.push(c.nodes[0].clone());
        c.nodes[3].name = "d".into();
        let mut iso = FakeGuest::new(103, "qemu", "c", 1, 0.1);
        iso.cdrom_iso = Some("local:iso/debian-13.iso".into());
        let mut cloudinit = FakeGuest::new(104, "qemu", "c", 1, 0.1);
        cloudinit.cdrom_iso = Some("local-lvm:vm-104-cloudinit".into());
        let mut snap = FakeGuest::new(105, "qemu", "c", 1, 0.1);
        snap.snapshot = true;
        let mut gpu = FakeGuest::new(106, "qemu", "c", 1, 0.1);
        gpu.local_resources = vec!["hostpci0".into()];
        let mut replicated = FakeGuest::new(107, "qemu", "c", 1, 0.1);
        replicated.replication_targets = Some(vec!["b".into()]);
        c.guests.extend([iso, cloudinit, snap, gpu, replicated]);
        let Some(fake) = FakeProxmox::start(c) else {
            return;
        };
        let mut d = driver(&fake);
        d.observe().unwrap();
        for (vm, why) in [("103", "CD-ROM"), ("105", "snapshots"), ("106", "hostpci0")] {
            let err = d.migrate(&request(vm, "c", "b")).unwrap_err().to_string();
            assert!(err.contains(why), "{profile:?} {vm}: {err}");
            assert_eq!(posts(&fake, &format!("/nodes/c/qemu/{vm}/migrate")), 0);
        }
        d.migrate(&request("104", "c", "b"))
            .expect("a cloud-init drive is regenerated, not a blocker");
        let err = d
            .migrate(&request("107", "c", "a"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a replication target"), "{err}");
        d.migrate(&request("107", "c", "b"))
            .expect("to its replication target");
        assert!(
            fake.with(|c| c.fail_migration_of.is_empty()),
            "no task had to fail"
        );
        assert_clean(&fake);
    }
}

#[test]
fn point6_refusals_become_rules_until_the_config_changes() {
    for profile in PROFILES {
        let mut c = cluster(profile);
        c.guests[0].local_resources = vec!["hostpci0".into()];
        c.guests[1].replication_targets = Some(vec!["b".into()]);
        let Some(fake) = FakeProxmox::start(c) else {
            return;
        };
        let mut d = driver(&fake);
        d.observe().unwrap();
        assert!(d.migrate(&request("101", "c", "b")).is_err());
        assert!(d.migrate(&request("102", "c", "a")).is_err());
        d.observe().unwrap();
        let rules = d.cluster_rules();
        assert!(
            rules
                .pin
                .iter()
                .any(|p| p.vms == ["101"] && p.name.contains("hostpci0")),
            "{profile:?}: {:?}",
            rules.pin
        );
        assert!(
            rules
                .vm_host
                .iter()
                .any(|r| r.vms == ["102"] && r.kind == VmHostKind::MustNot && r.hosts == ["a"]),
            "{:?}",
            rules.vm_host
        );
        // Asked again anyway: refused by the driver, Proxmox VE not asked.
        let gets = fake.requests().len();
        let err = d
            .migrate(&request("102", "c", "a"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("refused this move before"), "{err}");
        assert!(fake.requests()[gets..]
            .iter()
            .all(|r| !r.contains("/migrate")));
        // The passthrough device is removed: the digest changes, the pin goes.
        fake.with(|c| {
            let g = c.guest_mut(101).unwrap();
            g.local_resources.clear();
            g.digest = "f".repeat(40);
        });
        d.observe().unwrap();
        assert!(d.cluster_rules().pin.iter().all(|p| p.vms != ["101"]));
        d.migrate(&request("101", "c", "b")).expect("allowed now");
        assert_clean(&fake);
    }
}

#[test]
fn point7_ha_moves_through_the_guest_endpoint_and_the_crm() {
    for profile in PROFILES {
        let mut c = cluster(profile);
        for g in &mut c.guests[..2] {
            g.hastate = Some("started".into());
        }
        c.guests.push(FakeGuest::new(103, "qemu", "a", 1, 0.1));
        let Some(fake) = FakeProxmox::start(c) else {
            return;
        };
        let mut d = driver(&fake);
        d.observe().unwrap();
        // An HA move and a plain one in one wave: both start at once.
        let wave = [request("101", "c", "b"), request("103", "a", "c")];
        let results = d.migrate_wave(&wave);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(posts(&fake, "/nodes/c/qemu/101/migrate"), 1);
        assert_eq!(posts(&fake, "/cluster/ha/resources/vm:101/migrate"), 0);
        assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("b"));
        if profile == Profile::Pve9 {
            // Negative affinity with 102: the precondition names the
            // blocking resource; positive affinity: the partner comes along.
            fake.with(|c| {
                c.ha_rules
                    .push(json!({"rule": "apart", "type": "resource-affinity",
                    "resources": "vm:101,vm:102", "affinity": "negative"}))
            });
            d.observe().unwrap();
            let err = d
                .migrate(&request("101", "b", "c"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("blocking-ha-resources"), "{err}");
            fake.with(|c| {
                c.ha_rules.clear();
                c.ha_rules
                    .push(json!({"rule": "together", "type": "resource-affinity",
                    "resources": "vm:101,vm:102", "affinity": "positive"}));
            });
            d.observe().unwrap();
            let results = d.migrate_wave(&[request("102", "c", "a"), request("101", "b", "a")]);
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            assert_eq!(fake.with(|c| c.node_of(101)).as_deref(), Some("a"));
            assert_eq!(
                posts(&fake, "/nodes/b/qemu/101/migrate"),
                0,
                "moved along with 102"
            );
            // The CRM ignores a request it cannot follow (102 is on its way
            // to c, 101 may not join it): refused after the grace, the
            // wave not held up to the task timeout.
            fake.with(|c| {
                c.ha_rules.clear();
                c.ha_rules
                    .push(json!({"rule": "apart", "type": "resource-affinity",
                    "resources": "vm:101,vm:102", "affinity": "negative"}));
                c.guest_mut(102).unwrap().node = "a".into();
                c.guest_mut(101).unwrap().node = "b".into();
                c.task_duration = Duration::from_secs(5);
            });
            d.observe().unwrap();
            fake.with(|c| c.crm_migrate(102, "c"));
            let started = std::time::Instant::now();
            let err = d
                .migrate(&request("101", "b", "c"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("did not start moving"), "{err}");
            assert!(started.elapsed() < Duration::from_secs(4));
            assert_eq!(fake.with(|c| c.crm_ignored.clone()), [101]);
            assert_eq!(d.refused(101, "c").map(|_| ()), Some(()));
        }
        assert_clean(&fake);
    }
}

#[test]
fn point8_paused_guests_node_overhead_and_container_cores_count() {
    for profile in PROFILES {
        let mut c = cluster(profile);
        c.guests[1].status = "paused".into();
        c.nodes[2].overhead_mem_bytes = 8 << 30;
        c.guests[2].maxcpu = 8; // no `cores`: the node's CPU count
        let Some(fake) = FakeProxmox::start(c) else {
            return;
        };
        let mut d = driver(&fake);
        let o = d.observe().unwrap();
        let paused = o.vms.iter().find(|v| v.name == "102").unwrap();
        assert!(paused.running, "a paused VM holds its memory");
        assert!(d
            .cluster_rules()
            .pin
            .iter()
            .any(|p| p.vms.contains(&"102".to_string())));
        let host_c = o.hosts.iter().find(|h| h.name == "c").unwrap();
        let host_b = o.hosts.iter().find(|h| h.name == "b").unwrap();
        let gib = f64::from(1u32 << 30);
        assert!(
            (host_b.capacity.memory_bytes - host_c.capacity.memory_bytes - 8.0 * gib).abs() < 1.0,
            "{profile:?}: the node's own 8 GiB are not capacity: {} vs {}",
            host_c.capacity.memory_bytes,
            host_b.capacity.memory_bytes
        );
        let ct = o.vms.iter().find(|v| v.name == "200").unwrap();
        assert!(ct.size.cpu_cores <= 8.0 * 0.5 + 1.0, "{:?}", ct.size);
        let vm = o.vms.iter().find(|v| v.name == "101").unwrap();
        assert_eq!(
            vm.memory_used_bytes,
            Some(gib),
            "host memory, memhost on 9.x"
        );
        assert_clean(&fake);
    }
}

#[test]
fn point9_fallback_url_exit_status_and_node_hastate() {
    for profile in PROFILES {
        let mut c = cluster(profile);
        c.nodes[1].ha_maintenance = true;
        let Some(fake) = FakeProxmox::start(c) else {
            return;
        };
        fake.with(|c| c.fail_migration_of.insert(101));
        let mut config = fake.config();
        config.fallback_urls = vec![config.url.clone()];
        config.url = "https://127.0.0.1:1".into();
        let mut d = ProxmoxDriver::connect(config).unwrap();
        d.observe().expect("the fallback node answers");
        assert_eq!(d.nodes_in_ha_maintenance().collect::<Vec<_>>(), ["b"]);
        assert!(
            !fake
                .requests()
                .iter()
                .any(|r| r.contains("/cluster/ha/status")),
            "{profile:?}: read from the nodes' hastate (8.3+)"
        );
        let err = d
            .migrate(&request("101", "c", "a"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("migration problems"), "{err}");
        assert!(!fake.requests().iter().any(|r| r.ends_with("/log")));
        assert_clean(&fake);
    }
}
