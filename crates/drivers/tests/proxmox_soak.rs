//! Soak test of the Proxmox VE driver on the FAKE server (9.1 profile):
//! 50 nodes, 2,000 guests (VMs and containers, a third HA-managed with
//! node-affinity rules and failback, some with passthrough or local
//! disks), CRS auto-rebalance off, then on, then off; Keel's real planner
//! (KeelBalancer) through the daemon's control loop at full automation for
//! 200 rounds. It checks: no move the CRM undoes, no refused move proposed
//! twice for the same reason, no move while CRS auto-rebalance is on, and
//! a lower load spread at the end than at the start.

#![cfg(feature = "proxmox")]

mod proxmox_fake;

use keel_control::ControlLoop;
use keel_drivers::proxmox::ProxmoxDriver;
use keel_model::Rules;
use keel_policy::balance::KeelBalancer;
use proxmox_fake::{FakeCluster, FakeGuest, FakeProxmox, Profile};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const NODES: usize = 50;
const GUESTS: usize = 2_000;
/// Rounds (`KEEL_SOAK_ROUNDS` overrides, for a quick look).
fn rounds() -> usize {
    std::env::var("KEEL_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}
/// Rounds with CRS auto-rebalance on.
const CRS_ON: std::ops::Range<usize> = 80..110;

fn node(i: usize) -> String {
    format!("pve{i:02}")
}

/// The cluster: load skewed onto the first ten nodes; every third guest
/// HA-managed under one of 25 node-affinity rules (two nodes each, the
/// first preferred; failback on except for every fifth rule) and started
/// on its preferred node; every tenth guest a container; every 97th with
/// a GPU, every 89th with a local disk, every 101st replicated to two nodes.
fn soak_cluster() -> FakeCluster {
    let names: Vec<String> = (0..NODES).map(node).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut c = FakeCluster::new(&refs, 64, 512);
    c.profile = Profile::Pve9;
    c.task_duration = Duration::from_millis(2);
    c.crm_round_interval = Duration::from_millis(5);
    for (i, n) in c.nodes.iter_mut().enumerate() {
        n.overhead_mem_bytes = if i % 7 == 0 { 32 << 30 } else { 4 << 30 };
    }
    let rules = 25;
    let mut members: Vec<Vec<String>> = vec![Vec::new(); rules];
    for i in 0..GUESTS {
        let kind = if i % 10 == 9 { "lxc" } else { "qemu" };
        // Skew: half of the guests on the first ten nodes.
        let home = if i % 2 == 0 { i % 10 } else { i % NODES };
        let cpu = 0.2 + (i % 5) as f64 / 10.0;
        let mut g = FakeGuest::new(1000 + i as u64, kind, &node(home), 2, cpu);
        g.mem = 2 << 30;
        g.maxmem = 4 << 30;
        if i % 3 == 0 {
            let rule = i % rules;
            g.hastate = Some("started".into());
            g.ha_failback = rule % 5 != 0;
            g.node = node(rule * 2);
            let prefix = if kind == "qemu" { "vm" } else { "ct" };
            members[rule].push(format!("{prefix}:{}", g.vmid));
        } else if kind == "qemu" && i % 97 == 0 {
            g.local_resources = vec!["hostpci0".into()];
        } else if kind == "qemu" && i % 89 == 0 {
            g.local_disk = true;
        } else if kind == "qemu" && i % 101 == 0 {
            g.replication_targets = Some(vec![node(1), node(2)]);
        }
        c.guests.push(g);
    }
    for (r, list) in members.iter().enumerate() {
        c.ha_rules.push(json!({"rule": format!("rule-{r}"), "type": "node-affinity",
            "resources": list.join(","), "nodes": format!("{}:2,{}:1", node(r * 2), node(r * 2 + 1)),
            "strict": u8::from(r % 2 == 0)}));
    }
    c
}

/// Standard deviation of the nodes' CPU use, fraction of capacity.
fn spread(c: &FakeCluster) -> f64 {
    let loads: Vec<f64> = c
        .nodes
        .iter()
        .map(|n| {
            let used: f64 = c
                .guests
                .iter()
                .filter(|g| g.node == n.name && g.status == "running")
                .map(|g| g.cpu * f64::from(g.maxcpu))
                .sum();
            used / f64::from(n.cpus)
        })
        .collect();
    let mean = loads.iter().sum::<f64>() / loads.len() as f64;
    (loads.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / loads.len() as f64).sqrt()
}

#[test]
fn soak_200_rounds_on_50_nodes_and_2000_guests() {
    let Some(fake) = FakeProxmox::start(soak_cluster()) else {
        return;
    };
    let started = Instant::now();
    let spread_before = fake.with(|c| spread(c));
    let mut config = fake.config();
    config.allow_container_restart = true;
    config.ha_request_grace_seconds = 0.1;
    config.poll_start_seconds = 0.005;
    config.max_migrations_per_node = 2;
    config.max_migrations_per_cluster = 8;
    config.rules_refresh_seconds = 0.001;
    let driver = ProxmoxDriver::connect(config).expect("driver");
    // At most 8 moves a round (a cautious production setting).
    let mut balancer = KeelBalancer::default();
    balancer.config.max_moves = 8;
    let mut control = ControlLoop::new(driver, Box::new(balancer), Rules::default());
    control.sample().expect("first observation");
    // (vm, target) -> the refusal reason, once refused.
    let mut refused: HashMap<(String, String), String> = HashMap::new();
    let mut proposed_again = Vec::new();
    let mut moves_ok = 0usize;
    let mut moves_while_crs_on = 0usize;
    let rounds = rounds();
    for round in 0..rounds {
        if round % 10 == 0 {
            eprintln!(
                "soak: round {round}, {moves_ok} moves, {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let crs_on = CRS_ON.contains(&round);
        fake.with(|c| {
            c.crs = if crs_on {
                "ha=dynamic,ha-auto-rebalance=1".into()
            } else {
                "ha=dynamic".into()
            }
        });
        let report = control.iterate().expect("a round");
        for m in &report.moves {
            let key = (m.vm.clone(), m.to.clone());
            if let Some(why) = refused.get(&key) {
                proposed_again.push(format!("round {round}: {} -> {} ({why})", m.vm, m.to));
            }
            match &m.error {
                None => moves_ok += 1,
                Some(e) if e.contains("refuses it") => {
                    refused.insert(key, e.clone());
                }
                Some(_) => {}
            }
            if crs_on && m.error.is_none() {
                moves_while_crs_on += 1;
            }
        }
    }
    // Let the CRM finish what is under way, then look at what it undid.
    std::thread::sleep(Duration::from_millis(50));
    let (undone, during_crs, spread_after) = fake.with(|c| {
        c.crm_round();
        (
            c.crm_undone.clone(),
            c.started_during_auto_rebalance,
            spread(c),
        )
    });
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "soak: {rounds} rounds, {moves_ok} moves, {} refusals, spread {spread_before:.4} -> {spread_after:.4}, {seconds:.1} s",
        refused.len()
    );
    assert!(moves_ok > 0, "Keel balanced nothing");
    assert!(undone.is_empty(), "moves the CRM undid: {undone:?}");
    assert!(
        proposed_again.is_empty(),
        "refused moves proposed again:\n{}",
        proposed_again.join("\n")
    );
    assert_eq!(moves_while_crs_on, 0);
    assert_eq!(
        during_crs, 0,
        "tasks started while CRS auto-rebalance was on"
    );
    assert!(
        spread_after < spread_before,
        "{spread_before} -> {spread_after}"
    );
    let unique: HashSet<&String> = refused.values().collect();
    assert!(unique.len() <= refused.len());
    let v = fake.violations();
    assert!(v.is_empty(), "schema violations:\n{}", v.join("\n"));
}
