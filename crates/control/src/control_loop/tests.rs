use super::*;
use crate::check::PlanRefusal;
use keel_drivers::sim::{DemandSource, SimDriver, SimVm, SimVmSpec};
use keel_drivers::{Driver, MigrationRequest};
use keel_model::{HostInfo, Resources};
use keel_policy::balance::KeelBalancer;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[test]
fn a_hot_host_is_relieved_through_the_driver() {
    let host = |n: &str| HostInfo {
        name: n.into(),
        capacity: Resources::new(4.0, 16.0 * GIB, 0.0, 0.0),
        maintenance: false,
    };
    let vm = |n: &str, h: &str| SimVm {
        name: n.into(),
        host: h.into(),
        size: Resources::new(2.0, 2.0 * GIB, 0.0, 0.0),
        demand: vec![Resources::new(1.9, 1.0 * GIB, 0.0, 0.0)],
    };
    let driver = SimDriver::new(
        vec![host("a"), host("b")],
        vec![vm("v1", "a"), vm("v2", "a")],
        60.0,
    )
    .unwrap();
    let mut control = ControlLoop::new(driver, Box::new(KeelBalancer::default()), Rules::default());
    for _ in 0..3 {
        control.sample().unwrap();
        control.driver_mut().advance(60.0);
    }
    let report = control.iterate().unwrap();
    assert_eq!(report.moves.len(), 1, "{report:?}");
    assert!(report.moves[0].error.is_none());
    assert_eq!(report.moves[0].to, "b");
    assert!(report.imbalance_after < report.imbalance_before);
    let hosts: Vec<String> = control
        .driver_mut()
        .observe()
        .unwrap()
        .vms
        .iter()
        .map(|v| v.host.clone())
        .collect();
    assert_eq!(hosts.iter().filter(|h| *h == "a").count(), 1);
}

/// A host the driver reports in maintenance (Proxmox VE's HA
/// maintenance, say) is planned for exactly like one in the operator's
/// `rules.maintenance`: evacuated, never a target.
#[test]
fn a_host_the_driver_marks_in_maintenance_is_evacuated_like_the_operators() {
    let host = |n: &str, maintenance: bool| HostInfo {
        name: n.into(),
        capacity: Resources::new(8.0, 16.0 * GIB, 0.0, 0.0),
        maintenance,
    };
    let vm = |n: &str, h: &str, cpu: f64| SimVm {
        name: n.into(),
        host: h.into(),
        size: Resources::new(2.0, 2.0 * GIB, 0.0, 0.0),
        demand: vec![Resources::new(cpu, 1.0 * GIB, 0.0, 0.0)],
    };
    let vms = || {
        vec![
            vm("v1", "a", 0.5),
            vm("v2", "a", 0.5),
            vm("v3", "b", 1.9),
            vm("v4", "b", 1.9),
            vm("v5", "b", 1.9),
        ]
    };
    let plan = |flagged: bool, rules: Rules| {
        let hosts = vec![host("a", flagged), host("b", false), host("c", false)];
        let driver = SimDriver::new(hosts, vms(), 60.0).unwrap();
        let mut control = ControlLoop::new(driver, Box::new(KeelBalancer::default()), rules);
        for _ in 0..3 {
            control.sample().unwrap();
            control.driver_mut().advance(60.0);
        }
        let proposal = control.propose().unwrap();
        let mut moves: Vec<(String, String, String, MoveReason)> = proposal
            .moves
            .into_iter()
            .map(|m| (m.vm, m.from, m.to, m.reason))
            .collect();
        moves.sort_by(|x, y| x.0.cmp(&y.0));
        moves
    };
    let by_driver = plan(true, Rules::default());
    let by_operator = plan(
        false,
        Rules {
            maintenance: vec!["a".into()],
            ..Rules::default()
        },
    );
    assert_eq!(by_driver, by_operator);
    assert!(
        by_driver.iter().all(|(_, _, to, _)| to != "a"),
        "{by_driver:?}"
    );
    let evacuated: Vec<&str> = by_driver
        .iter()
        .filter(|(_, from, _, reason)| from == "a" && *reason == MoveReason::Evacuation)
        .map(|(vm, ..)| vm.as_str())
        .collect();
    assert_eq!(evacuated, ["v1", "v2"], "{by_driver:?}");
}

fn host4(n: &str) -> HostInfo {
    HostInfo {
        name: n.into(),
        capacity: Resources::new(4.0, 64.0 * GIB, 0.0, 0.0),
        maintenance: false,
    }
}

fn busy(n: &str, h: &str, cpu: f64, size_cores: f64) -> SimVm {
    SimVm {
        name: n.into(),
        host: h.into(),
        size: Resources::new(size_cores, 4.0 * GIB, 0.0, 0.0),
        demand: vec![Resources::new(cpu, 2.0 * GIB, 0.0, 0.0)],
    }
}

/// A loop over `driver` that has seen three samples.
fn warmed(driver: SimDriver) -> ControlLoop<SimDriver> {
    let mut control = ControlLoop::new(driver, Box::new(KeelBalancer::default()), Rules::default());
    for _ in 0..3 {
        control.sample().unwrap();
        control.driver_mut().advance(60.0);
    }
    control
}

fn hot_cluster() -> SimDriver {
    SimDriver::new(
        vec![host4("a"), host4("b"), host4("c")],
        vec![
            busy("v1", "a", 1.9, 2.0),
            busy("v2", "a", 1.9, 2.0),
            busy("v3", "a", 1.9, 2.0),
            busy("w1", "b", 1.0, 2.0),
            busy("w2", "c", 0.5, 4.0),
        ],
        60.0,
    )
    .unwrap()
}

/// The allocation policy reaches the planner: a reservation held on c
/// makes b the better target, although c's VM uses less.
#[test]
fn a_reservation_changes_the_target() {
    let targets = |reserve: bool| {
        let mut control = warmed(hot_cluster());
        if reserve {
            let allocation = VmAllocation {
                reservation: Resources::new(3.0, 0.0, 0.0, 0.0),
                ..VmAllocation::default()
            };
            control.set_allocation([("w2".to_string(), allocation)].into());
        }
        let proposal = control.propose().unwrap();
        assert!(!proposal.moves.is_empty(), "a is overloaded");
        let first = &proposal.moves[0];
        let inputs = first.inputs.as_ref().unwrap();
        if reserve {
            assert_eq!(
                proposal.cluster.vms[proposal.cluster.vm_id("w2").unwrap().index()]
                    .reservation
                    .cpu_cores,
                3.0
            );
        }
        assert_eq!(inputs.samples, 3, "three rates from four observations");
        first.to.clone()
    };
    assert_eq!(targets(false), "c");
    assert_eq!(targets(true), "b");
}

/// Local disk reported by the driver prices the migration: of two VMs
/// that would relieve the host equally, the one without 40 GiB of local
/// disk moves.
#[test]
fn local_disk_makes_a_vm_dearer_to_move() {
    let moved = |disk_on: &str| {
        let spec = |n: &str, h: &str, cores: f64| SimVmSpec {
            name: n.into(),
            host: h.into(),
            size: Resources::new(cores, 4.0 * GIB, 0.0, 0.0),
            local_disk_bytes: if n == disk_on { 40.0 * GIB } else { 0.0 },
        };
        struct Flat;
        impl DemandSource for Flat {
            fn demand(&self, vm: usize, _: usize) -> Resources {
                let cpu = [1.9, 1.9, 0.3, 0.2][vm];
                Resources::new(cpu, 2.0 * GIB, 0.0, 0.0)
            }
        }
        let driver = SimDriver::from_source(
            vec![host4("a"), host4("b")],
            vec![
                spec("v1", "a", 2.0),
                spec("v2", "a", 2.0),
                spec("v3", "a", 2.0),
                spec("w", "b", 2.0),
            ],
            std::sync::Arc::new(Flat),
            60.0,
        )
        .unwrap();
        let mut control = warmed(driver);
        let proposal = control.propose().unwrap();
        let first = proposal.moves[0].clone();
        let inputs = first.inputs.clone().unwrap();
        assert_eq!(
            inputs.local_disk_bytes,
            if first.vm == disk_on { 40.0 * GIB } else { 0.0 }
        );
        assert!(first.migrated_bytes < 10.0 * GIB, "{first:?}");
        first.vm
    };
    assert_eq!(moved("v1"), "v2");
    assert_eq!(moved("v2"), "v1");
}

/// A plan made stale between proposal and execution is refused before
/// its first move, with the reason; nothing of it runs.
#[test]
fn a_stale_plan_is_refused_before_any_move() {
    // A VM moved by hand.
    let mut control = warmed(hot_cluster());
    let proposal = control.propose().unwrap();
    let planned = proposal.moves[0].clone();
    let by_hand = MigrationRequest {
        vm: &planned.vm,
        from: &planned.from,
        to: if planned.to == "b" { "c" } else { "b" },
        max_bandwidth_bytes_per_second: None,
        timeout: Duration::from_secs(1),
    };
    control.driver_mut().migrate(&by_hand).unwrap();
    let before = control.driver().ledger().migrations;
    let execution = control.execute_checked(&proposal.moves);
    assert!(execution.outcomes.is_empty());
    assert!(
        matches!(&execution.refused, Some(PlanRefusal::Moved { vm, .. }) if *vm == planned.vm),
        "{:?}",
        execution.refused
    );
    assert_eq!(control.driver().ledger().migrations, before, "no move ran");

    // The target put into maintenance.
    let mut control = warmed(hot_cluster());
    let proposal = control.propose().unwrap();
    let target = proposal.moves[0].to.clone();
    control.rules_mut().maintenance.push(target.clone());
    let execution = control.execute_checked(&proposal.moves);
    assert!(execution.outcomes.is_empty());
    let refusal = execution.refused.expect("refused").to_string();
    assert!(refusal.contains(&target), "{refusal}");
    // Replanned, the next plan respects it.
    let replanned = control.propose().unwrap();
    assert!(replanned.moves.iter().all(|m| m.to != target));
}
