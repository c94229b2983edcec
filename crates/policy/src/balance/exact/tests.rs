//! Hand-built instances with a known optimum.

use super::*;
use crate::balance::InFlight;
use keel_model::rules::{VmGroupRule, VmHostRule};
use keel_model::{Cluster, ClusterSnapshot, CompiledRules, HostInfo, Rules, VmHostKind};

const GB: f64 = 1e9;

fn host(name: &str) -> HostInfo {
    HostInfo {
        name: name.into(),
        capacity: Resources::new(10.0, 100.0 * GB, 0.0, 0.0),
        maintenance: false,
    }
}

/// A VM of `cpu` cores (size = demand) and `mem_gb` GB of memory (half of it in use).
fn vm(name: &str, host: &str, cpu: f64, mem_gb: f64) -> VmInfo {
    VmInfo {
        name: name.into(),
        host: host.into(),
        size: Resources::new(cpu, mem_gb * GB, 0.0, 0.0),
        demand: Resources::new(cpu, mem_gb * GB / 2.0, 0.0, 0.0),
        reservation: Resources::ZERO,
        limit: None,
        shares: 1000.0,
        memory_dirty_bytes_per_second: 0.0,
        local_disk_bytes: 0.0,
        last_migrated_seconds: None,
    }
}

fn cluster(hosts: &[&str], vms: Vec<VmInfo>) -> Cluster {
    Cluster::new(ClusterSnapshot {
        time_seconds: 0.0,
        hosts: hosts.iter().map(|h| host(h)).collect(),
        vms,
    })
    .unwrap()
}

fn group(name: &str, vms: &[&str]) -> VmGroupRule {
    VmGroupRule {
        name: name.into(),
        vms: vms.iter().map(|v| v.to_string()).collect(),
    }
}

fn solve(c: &Cluster, rules: &CompiledRules, target: f64, objective: Objective) -> ExactOutcome {
    let input = BalanceInput {
        cluster: c,
        rules,
        in_flight: &[],
    };
    let config = ExactConfig {
        target_max_load: target,
        objective,
        time_limit_seconds: 10.0,
    };
    solve_exact(&input, &config).unwrap()
}

fn max_cpu_load(c: &Cluster, placement: &[HostId]) -> f64 {
    let mut per_host = vec![0.0; c.hosts.len()];
    for (v, h) in placement.iter().enumerate() {
        per_host[h.index()] += effective_demand(&c.vms[v]).cpu_cores;
    }
    per_host
        .iter()
        .zip(&c.hosts)
        .map(|(d, h)| d / h.capacity.cpu_cores)
        .fold(0.0, f64::max)
}

#[test]
fn one_small_overload_needs_one_migration() {
    let c = cluster(
        &["a", "b", "c"],
        vec![
            vm("v1", "a", 6.0, 8.0),
            vm("v2", "a", 3.0, 4.0),
            vm("v3", "b", 2.0, 4.0),
            vm("v4", "c", 2.0, 4.0),
        ],
    );
    let rules = CompiledRules::none(&c);
    let out = solve(&c, &rules, 0.85, Objective::Migrations);
    assert!(out.optimal);
    assert_eq!(out.migrations, 1);
    assert_eq!(out.plan.moves.len(), 1);
    let m = &out.plan.moves[0];
    assert_eq!(m.from, HostId(0));
    assert_eq!((m.wave, &m.reason), (0, &MoveReason::Balance));
    assert_eq!(
        m.cost_seconds,
        c.vms[m.vm.index()].size.memory_bytes / 1.25e9
    );
    assert!(max_cpu_load(&c, &out.placement) <= 0.85 + 1e-9);
    assert!(out.plan.imbalance_after.std_dev < out.plan.imbalance_before.std_dev);
    assert_eq!(out.plan.predicted_loads.len(), 3);

    // Already within the target: nothing moves.
    let out = solve(&c, &rules, 0.9, Objective::Migrations);
    assert_eq!((out.migrations, out.optimal), (0, true));
    assert_eq!(out.placement, c.placement);
}

#[test]
fn migrated_bytes_prefers_the_small_vm() {
    let c = cluster(
        &["a", "b"],
        vec![
            vm("big", "a", 3.0, 32.0),
            vm("small", "a", 3.0, 2.0),
            vm("mid", "a", 3.0, 8.0),
        ],
    );
    let rules = CompiledRules::none(&c);
    let out = solve(&c, &rules, 0.85, Objective::MigratedBytes);
    assert!(out.optimal);
    assert_eq!(out.migrations, 1);
    assert_eq!(out.plan.moves[0].vm, c.vm_id("small").unwrap());
    assert_eq!(out.migrated_bytes, 2.0 * GB);
    assert_eq!(out.plan.moves[0].migrated_bytes, 2.0 * GB);
}

#[test]
fn anti_affinity_forces_a_specific_move() {
    let c = cluster(
        &["a", "b", "c"],
        vec![vm("v1", "a", 1.0, 2.0), vm("v2", "a", 1.0, 2.0)],
    );
    let rules = Rules {
        anti_affinity: vec![group("apart", &["v1", "v2"])],
        pin: vec![group("stay", &["v1"])],
        vm_host: vec![VmHostRule {
            name: "not-c".into(),
            vms: vec!["v2".into()],
            hosts: vec!["c".into()],
            kind: VmHostKind::MustNot,
            weight: 1.0,
        }],
        ..Default::default()
    }
    .compile(&c)
    .unwrap();
    let out = solve(&c, &rules, 1.0, Objective::Migrations);
    assert_eq!(out.migrations, 1);
    let m = &out.plan.moves[0];
    assert_eq!((m.vm, m.from, m.to), (VmId(1), HostId(0), HostId(1)));
}

#[test]
fn affinity_group_moves_together() {
    let c = cluster(
        &["a", "b", "c"],
        vec![
            vm("g1", "a", 3.0, 4.0),
            vm("g2", "a", 3.0, 4.0),
            vm("x", "a", 3.0, 4.0),
            vm("y", "b", 4.0, 4.0),
        ],
    );
    let rules = Rules {
        affinity: vec![group("together", &["g1", "g2"])],
        pin: vec![group("stay", &["x"])],
        ..Default::default()
    }
    .compile(&c)
    .unwrap();
    let out = solve(&c, &rules, 0.85, Objective::Migrations);
    assert_eq!(out.migrations, 2);
    assert_eq!(out.placement[0], out.placement[1]);
    // b holds 4 cores: the pair (6 cores) only fits on c.
    assert_eq!(out.placement[0], HostId(2));
    assert_eq!(out.placement[2], HostId(0));
}

#[test]
fn branching_when_the_quick_placement_fails() {
    // a is over 7 cores by 2.5; the smallest VM that clears that alone
    // (2.5) fits on neither b nor c (2 cores of room each), so the
    // warm start gives up and branch and bound must find v2 + v3.
    let c = cluster(
        &["a", "b", "c"],
        vec![
            vm("v1", "a", 3.0, 4.0),
            vm("v2", "a", 2.0, 4.0),
            vm("v3", "a", 2.0, 4.0),
            vm("v4", "a", 2.5, 4.0),
            vm("b1", "b", 5.0, 4.0),
            vm("c1", "c", 5.0, 4.0),
        ],
    );
    let rules = CompiledRules::none(&c);
    let out = solve(&c, &rules, 0.7, Objective::Migrations);
    assert!(out.optimal);
    assert_eq!(out.migrations, 2);
    assert!(max_cpu_load(&c, &out.placement) <= 0.7 + 1e-9);
    let moved: Vec<VmId> = out.plan.moves.iter().map(|m| m.vm).collect();
    assert_eq!(moved, vec![VmId(1), VmId(2)]);

    // A time limit too short for anything is a typed outcome, not a panic.
    let input = BalanceInput {
        cluster: &c,
        rules: &rules,
        in_flight: &[],
    };
    let config = ExactConfig {
        target_max_load: 0.7,
        objective: Objective::MigratedBytes,
        time_limit_seconds: 1e-9,
    };
    match solve_exact(&input, &config) {
        Ok(out) => assert!(out.migrations >= 2),
        Err(e) => assert_eq!(e, ExactError::TimeLimit { seconds: 1e-9 }),
    }
}

#[test]
fn must_rule_makes_the_target_infeasible() {
    let c = cluster(
        &["a", "b"],
        vec![vm("v1", "a", 6.0, 4.0), vm("v2", "a", 3.0, 4.0)],
    );
    let rules = Rules {
        vm_host: vec![VmHostRule {
            name: "only-a".into(),
            vms: vec!["v1".into(), "v2".into()],
            hosts: vec!["a".into()],
            kind: VmHostKind::Must,
            weight: 1.0,
        }],
        ..Default::default()
    }
    .compile(&c)
    .unwrap();
    let input = BalanceInput {
        cluster: &c,
        rules: &rules,
        in_flight: &[],
    };
    let config = ExactConfig {
        target_max_load: 0.85,
        ..ExactConfig::default()
    };
    let err = solve_exact(&input, &config).unwrap_err();
    assert_eq!(err, ExactError::Infeasible { target: 0.85 });
    assert!(err.to_string().contains("at or below load 0.85"), "{err}");
}

#[test]
fn overcommit_and_anti_affinity_infeasibility_found_by_the_solver() {
    // Three VMs that must be apart on two hosts: each VM fits anywhere
    // alone, so only the solver can tell.
    let c = cluster(
        &["a", "b"],
        vec![
            vm("v1", "a", 1.0, 2.0),
            vm("v2", "a", 1.0, 2.0),
            vm("v3", "b", 1.0, 2.0),
        ],
    );
    let rules = Rules {
        anti_affinity: vec![group("apart", &["v1", "v2", "v3"])],
        ..Default::default()
    }
    .compile(&c)
    .unwrap();
    let input = BalanceInput {
        cluster: &c,
        rules: &rules,
        in_flight: &[],
    };
    let err = solve_exact(&input, &ExactConfig::default()).unwrap_err();
    assert_eq!(err, ExactError::Infeasible { target: 0.85 });

    // Memory overcommit 1.0: 60 + 60 GB configured cannot share a 100 GB host.
    let c = cluster(
        &["a", "b"],
        vec![vm("m1", "a", 1.0, 60.0), vm("m2", "a", 1.0, 60.0)],
    );
    let rules = CompiledRules::none(&c);
    let out = solve(&c, &rules, 0.85, Objective::Migrations);
    assert_eq!(out.migrations, 1);
    assert_ne!(out.placement[0], out.placement[1]);
}

#[test]
fn maintenance_and_in_flight() {
    let mut c = cluster(
        &["a", "b", "c"],
        vec![vm("v1", "a", 1.0, 2.0), vm("v2", "b", 1.0, 2.0)],
    );
    c.hosts[0].maintenance = true;
    let rules = CompiledRules::none(&c);
    let out = solve(&c, &rules, 0.85, Objective::Migrations);
    assert_eq!(out.migrations, 1);
    assert_ne!(out.placement[0], HostId(0));

    // v1 already on its way to c: counted there, not planned again.
    let in_flight = [InFlight {
        vm: VmId(0),
        from: HostId(0),
        to: HostId(2),
    }];
    let input = BalanceInput {
        cluster: &c,
        rules: &rules,
        in_flight: &in_flight,
    };
    let out = solve_exact(&input, &ExactConfig::default()).unwrap();
    assert_eq!(out.migrations, 0);
    assert_eq!(out.placement, vec![HostId(2), HostId(1)]);
}

#[test]
fn bad_settings_and_inputs_are_typed_errors() {
    let c = cluster(&["a"], vec![vm("v1", "a", 1.0, 2.0)]);
    let rules = CompiledRules::none(&c);
    let input = BalanceInput {
        cluster: &c,
        rules: &rules,
        in_flight: &[],
    };
    for (target, limit) in [
        (f64::NAN, 1.0),
        (0.0, 1.0),
        (0.8, -1.0),
        (0.8, f64::INFINITY),
    ] {
        let config = ExactConfig {
            target_max_load: target,
            objective: Objective::Migrations,
            time_limit_seconds: limit,
        };
        assert!(matches!(
            solve_exact(&input, &config),
            Err(ExactError::InvalidConfig { .. })
        ));
    }
    let other = cluster(&["a", "b"], vec![]);
    let wrong = CompiledRules::none(&other);
    let input = BalanceInput {
        cluster: &c,
        rules: &wrong,
        in_flight: &[],
    };
    assert!(matches!(
        solve_exact(&input, &ExactConfig::default()),
        Err(ExactError::InvalidInput { .. })
    ));
    let bad_flight = [InFlight {
        vm: VmId(7),
        from: HostId(0),
        to: HostId(0),
    }];
    let input = BalanceInput {
        cluster: &c,
        rules: &rules,
        in_flight: &bad_flight,
    };
    assert!(matches!(
        solve_exact(&input, &ExactConfig::default()),
        Err(ExactError::InvalidInput { .. })
    ));

    // No VMs at all: an empty, optimal plan.
    let empty = cluster(&["a"], vec![]);
    let rules = CompiledRules::none(&empty);
    let out = solve(&empty, &rules, 0.5, Objective::Migrations);
    assert_eq!((out.migrations, out.optimal), (0, true));
}
