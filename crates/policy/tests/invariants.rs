//! Property tests of the consolidation invariants: CPU sharing never hands
//! out more than a host has, a round leaves the cluster as it found it, and
//! the migrations it returns fit where they go.

use keel_model::{HostSpec, PowerModel, VmSpec};
use keel_policy::cluster::{ClusterState, HostState, VmState};
use keel_policy::cpu_share::CpuShare;
use keel_policy::{ConsolidationPolicy, Consolidator};
use proptest::prelude::*;

fn host_spec(g5: bool) -> HostSpec {
    HostSpec {
        cores: 2,
        core_mips: if g5 { 2660.0 } else { 1860.0 },
        ram_mb: 4096.0,
        bandwidth: 1_000_000.0,
        storage_mb: 1_000_000.0,
        power: if g5 {
            PowerModel::HP_PROLIANT_ML110_G5
        } else {
            PowerModel::HP_PROLIANT_ML110_G4
        },
    }
}

const VM_MIPS: [f64; 4] = [2500.0, 2000.0, 1000.0, 500.0];
const VM_RAM: [f64; 4] = [870.0, 1740.0, 1740.0, 613.0];

/// A cluster in the state a consolidation round sees: every VM placed and
/// updated, with a utilisation history.
fn cluster_strategy() -> impl Strategy<Value = ClusterState> {
    (2usize..10, 1usize..24).prop_flat_map(|(hosts, vms)| {
        (
            Just(hosts),
            proptest::collection::vec(
                (
                    0usize..4,
                    0usize..hosts,
                    proptest::collection::vec(0u8..=100, 30),
                ),
                vms,
            ),
        )
            .prop_map(|(hosts, vms)| {
                let mut cluster = ClusterState {
                    hosts: (0..hosts)
                        .map(|i| HostState::new(host_spec(i % 2 == 1)))
                        .collect(),
                    vms: Vec::new(),
                };
                for (i, (kind, host, history)) in vms.into_iter().enumerate() {
                    let spec = VmSpec {
                        mips: VM_MIPS[kind],
                        cores: 1,
                        ram_mb: VM_RAM[kind],
                        bandwidth: 100_000.0,
                        size_mb: 2500.0,
                    };
                    let mut vm = VmState::new(spec);
                    vm.being_instantiated = false;
                    for &h in history.iter().rev() {
                        vm.push_history(h as f64 / 100.0);
                    }
                    vm.utilization = vm.history[0];
                    vm.requested_mips = vm.utilization * spec.mips;
                    vm.host = Some(host);
                    cluster.vms.push(vm);
                    cluster.hosts[host].vms.push(i);
                }
                for h in 0..cluster.hosts.len() {
                    let vms = cluster.hosts[h].vms.clone();
                    let mut used = 0.0;
                    for vm in vms {
                        let requested = cluster.vms[vm].requested_mips;
                        cluster.hosts[h].cpu.allocate(vm, requested, false);
                        used += cluster.hosts[h].cpu.allocated_mips(vm);
                    }
                    cluster.hosts[h].utilization_mips = used;
                }
                cluster
            })
    })
}

fn policy_strategy() -> impl Strategy<Value = ConsolidationPolicy> {
    prop_oneof![
        Just("thr-mmt-0.8"),
        Just("thr-mu-1.0"),
        Just("iqr-mc-1.5"),
        Just("mad-rs-2.5"),
        Just("lr-mmt-1.2"),
        Just("lrr-mc-1.2"),
    ]
    .prop_map(|name| name.parse().unwrap())
}

fn capped_request_sum(cluster: &ClusterState, host: usize, vms: &[usize]) -> f64 {
    let core = cluster.hosts[host].spec.core_mips;
    vms.iter()
        .map(|&vm| cluster.vms[vm].requested_mips.min(core))
        .sum()
}

proptest! {
    #[test]
    fn cpu_share_never_exceeds_capacity(requests in proptest::collection::vec(0.0f64..3000.0, 0..20)) {
        let mut cpu = CpuShare::new(3720.0, 1860.0);
        for (vm, &r) in requests.iter().enumerate() {
            cpu.allocate(vm, r, false);
        }
        let total: f64 = (0..requests.len()).map(|vm| cpu.allocated_mips(vm)).sum();
        prop_assert!(total <= 3720.0 + 1e-6, "allocated {total} of 3720");
        let capped_sum: f64 = requests.iter().map(|r| r.min(1860.0)).sum();
        for (vm, &r) in requests.iter().enumerate() {
            let a = cpu.allocated_mips(vm);
            prop_assert!(a <= r.min(1860.0) + 1e-9, "VM {vm} got {a} for a request of {r}");
            if capped_sum <= 3720.0 - 1e-6 {
                prop_assert_eq!(a, r.min(1860.0));
            }
        }
        // Releasing everything in any order leaves the host empty and whole.
        for vm in (0..requests.len()).rev() {
            cpu.deallocate(vm);
        }
        prop_assert_eq!(cpu.available_mips(), 3720.0);
    }

    #[test]
    fn a_round_restores_the_cluster_and_its_moves_fit(
        cluster in cluster_strategy(),
        policy in policy_strategy(),
        seed in 0u64..1000,
    ) {
        let before = cluster.clone();
        let mut after = cluster;
        let mut consolidator = Consolidator::new(policy, seed);
        let migrations = consolidator.optimise(&mut after).unwrap();

        // The round is a what-if: placements and allocations are as before.
        for (h, (a, b)) in after.hosts.iter().zip(&before.hosts).enumerate() {
            prop_assert_eq!(&a.vms, &b.vms, "host {} VM list changed", h);
            for &vm in &a.vms {
                prop_assert_eq!(a.cpu.allocated_mips(vm), b.cpu.allocated_mips(vm));
            }
        }

        // Apply the plan: each VM ends on its last target.
        let mut placement: Vec<Vec<usize>> = before.hosts.iter().map(|h| h.vms.clone()).collect();
        let mut received = vec![false; before.hosts.len()];
        for m in &migrations {
            prop_assert!(m.vm < before.vms.len() && m.target < before.hosts.len());
            for list in placement.iter_mut() {
                list.retain(|&v| v != m.vm);
            }
            placement[m.target].push(m.vm);
            received[m.target] = true;
        }
        for m in &migrations {
            let source = before.vms[m.vm].host.unwrap();
            prop_assert_ne!(source, m.target, "VM {} migrated onto its own host", m.vm);
        }
        for (h, list) in placement.iter().enumerate() {
            let total = before.hosts[h].spec.total_mips();
            if received[h] {
                let load = capped_request_sum(&before, h, list);
                prop_assert!(load <= total + 1e-6, "host {h} receives VMs and ends at {load} of {total} MIPS");
            }
        }
        // No VM is lost or duplicated.
        let mut all: Vec<usize> = placement.concat();
        all.sort_unstable();
        let mut expected: Vec<usize> = before.hosts.iter().flat_map(|h| h.vms.clone()).collect();
        expected.sort_unstable();
        prop_assert_eq!(all, expected);
    }
}

proptest! {
    #[test]
    fn history_prefix_agrees_with_the_full_history(cluster in cluster_strategy(), n in 1usize..30) {
        let mut full = Vec::new();
        let mut prefix = Vec::new();
        for host in 0..cluster.hosts.len() {
            for extra in [None, Some(0)] {
                cluster.utilization_history(host, extra, &mut full);
                let length = cluster.utilization_history_prefix(host, extra, n, &mut prefix);
                prop_assert_eq!(length, full.len().min(n));
                for (i, v) in prefix.iter().enumerate() {
                    let expected = full.get(i).copied().unwrap_or(0.0);
                    prop_assert_eq!(v.to_bits(), expected.to_bits());
                }
            }
        }
    }
}
