//! Unit tests of the planner on small named scenarios.

use super::*;
use keel_model::rules::{VmGroupRule, VmHostKind, VmHostRule};
use keel_model::{Cluster, ClusterSnapshot, HostInfo, Resources, Rules, VmInfo};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn host(name: &str) -> HostInfo {
    HostInfo {
        name: name.into(),
        capacity: Resources::new(16.0, 128.0 * GIB, 0.0, 0.0),
        maintenance: false,
    }
}

fn vm(name: &str, host: &str, cores: f64) -> VmInfo {
    VmInfo::new(
        name,
        host,
        Resources::new(4.0, 8.0 * GIB, 0.0, 0.0),
        Resources::new(cores, 4.0 * GIB, 0.0, 0.0),
    )
}

/// Host a at 15 of 16 cores (hot), b and c nearly idle.
fn hot_host() -> ClusterSnapshot {
    let mut vms: Vec<VmInfo> = (0..5).map(|i| vm(&format!("a{i}"), "a", 3.0)).collect();
    vms.push(vm("b0", "b", 1.0));
    vms.push(vm("c0", "c", 1.0));
    ClusterSnapshot {
        time_seconds: 100_000.0,
        hosts: vec![host("a"), host("b"), host("c")],
        vms,
    }
}

fn run(snapshot: ClusterSnapshot, rules: Rules, level: u8) -> (Cluster, Plan) {
    let cluster = Cluster::new(snapshot).unwrap();
    let compiled = rules.compile(&cluster).unwrap();
    let input = BalanceInput {
        cluster: &cluster,
        rules: &compiled,
        in_flight: &[],
    };
    let config = PlannerConfig {
        level,
        ..PlannerConfig::default()
    };
    let plan = plan(&input, &config, cluster.time_seconds).unwrap();
    (cluster.clone(), plan)
}

#[test]
fn a_hot_host_sheds_load_to_the_idle_ones() {
    let (cluster, plan) = run(hot_host(), Rules::default(), 3);
    assert!(!plan.moves.is_empty());
    assert!(plan
        .moves
        .iter()
        .all(|m| m.from == cluster.host_id("a").unwrap()));
    assert!(plan.imbalance_after.std_dev < plan.imbalance_before.std_dev);
    let a_after = plan.predicted_loads[0].cpu_cores;
    assert!(a_after <= 0.85, "host a still at {a_after}");
}

#[test]
fn level_one_makes_mandatory_moves_only() {
    let (_, plan) = run(hot_host(), Rules::default(), 1);
    assert!(plan.moves.is_empty());
    let rules = Rules {
        maintenance: vec!["b".into()],
        ..Rules::default()
    };
    let (cluster, plan) = run(hot_host(), rules, 1);
    assert_eq!(plan.moves.len(), 1);
    assert_eq!(plan.moves[0].vm, cluster.vm_id("b0").unwrap());
    assert_eq!(plan.moves[0].reason, MoveReason::Evacuation);
}

#[test]
fn recently_moved_vms_stay_put() {
    let mut snapshot = hot_host();
    for vm in snapshot.vms.iter_mut().filter(|v| v.host == "a") {
        vm.last_migrated_seconds = Some(snapshot.time_seconds - 60.0);
    }
    let (_, plan) = run(snapshot, Rules::default(), 5);
    assert!(plan.moves.is_empty(), "{:?}", plan.moves);
}

#[test]
fn hard_rules_steer_the_moves() {
    // Nothing may go to b; a0 and a1 must stay apart (they are, both on a,
    // which is broken: one must leave); a2 is pinned.
    let rules = Rules {
        vm_host: vec![VmHostRule {
            name: "not-b".into(),
            vms: (0..5).map(|i| format!("a{i}")).collect(),
            hosts: vec!["b".into()],
            kind: VmHostKind::MustNot,
            weight: 1.0,
        }],
        anti_affinity: vec![VmGroupRule {
            name: "apart".into(),
            vms: vec!["a0".into(), "a1".into()],
        }],
        pin: vec![VmGroupRule {
            name: "stay".into(),
            vms: vec!["a2".into()],
        }],
        ..Rules::default()
    };
    let (cluster, plan) = run(hot_host(), rules, 3);
    let b = cluster.host_id("b").unwrap();
    assert!(plan.moves.iter().all(|m| m.to != b));
    assert!(plan
        .moves
        .iter()
        .all(|m| m.vm != cluster.vm_id("a2").unwrap()));
    let a1 = plan
        .moves
        .iter()
        .find(|m| m.vm == cluster.vm_id("a1").unwrap())
        .expect("a1 leaves a");
    assert_eq!(
        a1.reason,
        MoveReason::HardRule {
            rule: "apart".into()
        }
    );
}

#[test]
fn an_impossible_evacuation_is_reported_not_forced() {
    let rules = Rules {
        maintenance: vec!["a".into()],
        vm_host: vec![VmHostRule {
            name: "only-a".into(),
            vms: vec!["a0".into()],
            hosts: vec!["a".into()],
            kind: VmHostKind::Must,
            weight: 1.0,
        }],
        ..Rules::default()
    };
    let (cluster, plan) = run(hot_host(), rules, 3);
    let a0 = cluster.vm_id("a0").unwrap();
    assert!(plan.moves.iter().all(|m| m.vm != a0));
    assert!(
        plan.unresolved.iter().any(|u| u.vm == a0),
        "{:?}",
        plan.unresolved
    );
}

#[test]
fn invalid_settings_are_refused() {
    let cluster = Cluster::new(hot_host()).unwrap();
    let rules = keel_model::CompiledRules::none(&cluster);
    let input = BalanceInput {
        cluster: &cluster,
        rules: &rules,
        in_flight: &[],
    };
    for config in [
        PlannerConfig {
            level: 0,
            ..PlannerConfig::default()
        },
        PlannerConfig {
            level: 6,
            ..PlannerConfig::default()
        },
        PlannerConfig {
            hot_weight: f64::NAN,
            ..PlannerConfig::default()
        },
        PlannerConfig {
            per_host_concurrency: 0,
            ..PlannerConfig::default()
        },
    ] {
        assert!(matches!(
            plan(&input, &config, 0.0),
            Err(PolicyError::InvalidSetting { .. })
        ));
    }
}
