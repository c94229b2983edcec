//! Property tests of the balancer's plans on thousands of random clusters
//! with rules: no step exceeds a capacity or breaks a hard rule, the plan
//! executes in order, no VM moves twice, and mandatory moves are either made
//! or reported.

use keel_model::rules::{VmGroupRule, VmHostKind, VmHostRule};
use keel_model::{Cluster, ClusterSnapshot, HostInfo, Resources, Rules, VmInfo};
use keel_policy::balance::validate::check_plan;
use keel_policy::balance::waves::Concurrency;
use keel_policy::balance::{plan_to_target, BalanceInput, Balancer, KeelBalancer, PlannerConfig};
use proptest::prelude::*;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Debug, Clone)]
struct Scenario {
    snapshot: ClusterSnapshot,
    rules: Rules,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (2usize..10, 1usize..40)
        .prop_flat_map(|(hosts, vms)| {
            let host_specs = proptest::collection::vec(
                (
                    prop_oneof![Just(16.0), Just(32.0), Just(64.0)],
                    any::<bool>(),
                ),
                hosts,
            );
            let vm_specs = proptest::collection::vec(
                (
                    prop_oneof![Just(1.0), Just(2.0), Just(4.0), Just(8.0)],
                    prop_oneof![Just(2.0), Just(4.0), Just(8.0), Just(16.0)],
                    0.0f64..1.0,
                    0.1f64..1.0,
                    0..hosts,
                ),
                vms,
            );
            let groups =
                proptest::collection::vec((0..vms, 0..vms, 0..vms, 0u8..6, 0..hosts), 0..4);
            (Just(hosts), host_specs, vm_specs, groups)
        })
        .prop_map(|(hosts, host_specs, vm_specs, groups)| {
            let host_infos: Vec<HostInfo> = host_specs
                .iter()
                .enumerate()
                .map(|(i, &(cores, maintenance))| HostInfo {
                    name: format!("h{i}"),
                    capacity: Resources::new(cores, cores * 8.0 * GIB, 1e9, 1.25e9),
                    // At most a few hosts in maintenance, never all.
                    maintenance: maintenance && i % 3 == 0 && i > 0,
                })
                .collect();
            let vm_infos: Vec<VmInfo> = vm_specs
                .iter()
                .enumerate()
                .map(|(i, &(vcpus, mem_gib, cpu_use, mem_use, host))| VmInfo {
                    name: format!("v{i}"),
                    host: format!("h{host}"),
                    size: Resources::new(vcpus, mem_gib * GIB, 0.0, 0.0),
                    demand: Resources::new(
                        vcpus * cpu_use,
                        mem_gib * GIB * mem_use,
                        1e6 * cpu_use,
                        1e6 * mem_use,
                    ),
                    reservation: Resources::ZERO,
                    limit: None,
                    shares: 1000.0,
                    memory_dirty_bytes_per_second: 1e7,
                    local_disk_bytes: 0.0,
                    last_migrated_seconds: None,
                })
                .collect();
            let mut rules = Rules::default();
            for (k, &(a, b, c, kind, host)) in groups.iter().enumerate() {
                let name = |s: &str| format!("{s}{k}");
                let vm = |i: usize| format!("v{i}");
                match kind {
                    0 if a != b => rules.anti_affinity.push(VmGroupRule {
                        name: name("anti"),
                        vms: vec![vm(a), vm(b), vm(c)]
                            .into_iter()
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .collect(),
                    }),
                    1 if a != b => rules.affinity.push(VmGroupRule {
                        name: name("aff"),
                        vms: vec![vm(a), vm(b)],
                    }),
                    2 => rules.vm_host.push(VmHostRule {
                        name: name("must"),
                        vms: vec![vm(a)],
                        hosts: vec![format!("h{host}"), format!("h{}", (host + 1) % hosts)],
                        kind: VmHostKind::Must,
                        weight: 1.0,
                    }),
                    3 => rules.vm_host.push(VmHostRule {
                        name: name("mustnot"),
                        vms: vec![vm(a)],
                        hosts: vec![format!("h{host}")],
                        kind: VmHostKind::MustNot,
                        weight: 1.0,
                    }),
                    4 => rules.pin.push(VmGroupRule {
                        name: name("pin"),
                        vms: vec![vm(a)],
                    }),
                    _ => rules.vm_host.push(VmHostRule {
                        name: name("should"),
                        vms: vec![vm(b)],
                        hosts: vec![format!("h{host}")],
                        kind: VmHostKind::Should,
                        weight: 2.0,
                    }),
                }
            }
            Scenario {
                snapshot: ClusterSnapshot {
                    time_seconds: 10_000.0,
                    hosts: host_infos,
                    vms: vm_infos,
                },
                rules,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn plans_are_safe_at_every_step(s in scenario(), level in 1u8..=5) {
        let cluster = Cluster::new(s.snapshot.clone()).unwrap();
        let Ok(rules) = s.rules.compile(&cluster) else {
            // Conflicting rules are rejected up front; nothing to plan.
            return Ok(());
        };
        let input = BalanceInput { cluster: &cluster, rules: &rules, in_flight: &[] };
        let config = PlannerConfig { level, ..PlannerConfig::default() };
        let mut balancer = KeelBalancer { config };
        let plan = balancer.plan(&input, cluster.time_seconds).unwrap();
        let limits = Concurrency { per_host: config.per_host_concurrency, per_cluster: config.per_cluster_concurrency };
        if let Err(violation) = check_plan(&input, &plan, limits) {
            prop_assert!(false, "{violation}\nplan: {:?}", plan.moves);
        }
        // Every mandatory move is made or reported.
        let mut placement = cluster.placement.clone();
        for m in &plan.moves {
            placement[m.vm.index()] = m.to;
        }
        for (v, host) in placement.iter().enumerate() {
            let vm = keel_model::VmId(v as u32);
            let stuck = plan.unresolved.iter().any(|u| u.vm == vm) || rules.pinned[v];
            if rules.maintenance[host.index()] || !rules.host_allowed(vm, *host) {
                prop_assert!(stuck, "VM {v} still breaks a hard rule on host {} and is not reported", host.0);
            }
        }
    }

    #[test]
    fn target_plans_are_safe_too(s in scenario(), target in 0.6f64..1.0) {
        let cluster = Cluster::new(s.snapshot.clone()).unwrap();
        let Ok(rules) = s.rules.compile(&cluster) else { return Ok(()); };
        let input = BalanceInput { cluster: &cluster, rules: &rules, in_flight: &[] };
        let plan = plan_to_target(&input, target).unwrap();
        let defaults = PlannerConfig::default();
        let limits = Concurrency { per_host: defaults.per_host_concurrency, per_cluster: defaults.per_cluster_concurrency };
        if let Err(violation) = check_plan(&input, &plan, limits) {
            prop_assert!(false, "{violation}");
        }
    }
}
