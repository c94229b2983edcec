//! Hand-built clusters for the baselines' tests.

use crate::balance::{BalanceInput, Balancer, InFlight, Plan};
use keel_model::cluster::DEFAULT_SHARES;
use keel_model::{Cluster, ClusterSnapshot, CompiledRules, HostInfo, Resources, Rules, VmInfo};

/// One GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A host with `cores` cores and `mem_gib` GiB.
pub fn host(name: &str, cores: f64, mem_gib: f64) -> HostInfo {
    HostInfo {
        name: name.into(),
        capacity: Resources::new(cores, mem_gib * GIB, 1e9, 1e9),
        maintenance: false,
    }
}

/// A VM on `host` using `cpu` cores and `mem_gib` GiB, sized at twice that.
pub fn vm(name: &str, host: &str, cpu: f64, mem_gib: f64) -> VmInfo {
    VmInfo {
        name: name.into(),
        host: host.into(),
        size: Resources::new((2.0 * cpu).max(1.0), 2.0 * mem_gib * GIB, 0.0, 0.0),
        demand: Resources::new(cpu, mem_gib * GIB, 0.0, 0.0),
        reservation: Resources::ZERO,
        limit: None,
        shares: DEFAULT_SHARES,
        memory_dirty_bytes_per_second: 0.0,
        local_disk_bytes: 0.0,
        last_migrated_seconds: None,
    }
}

/// A validated cluster.
pub fn cluster(hosts: Vec<HostInfo>, vms: Vec<VmInfo>) -> Cluster {
    Cluster::new(ClusterSnapshot {
        time_seconds: 0.0,
        hosts,
        vms,
    })
    .expect("test cluster is valid")
}

/// Compiled `rules` for `cluster`.
pub fn compile(cluster: &Cluster, rules: &Rules) -> CompiledRules {
    rules.compile(cluster).expect("test rules compile")
}

/// One round of `balancer` on `cluster` with `rules` and `in_flight`.
pub fn round(
    balancer: &mut dyn Balancer,
    cluster: &Cluster,
    rules: &CompiledRules,
    in_flight: &[InFlight],
) -> Plan {
    let input = BalanceInput {
        cluster,
        rules,
        in_flight,
    };
    balancer.plan(&input, 0.0).expect("baselines never fail")
}

/// `(vm name, from host, to host)` of each move.
pub fn moves(cluster: &Cluster, plan: &Plan) -> Vec<(String, String, String)> {
    plan.moves
        .iter()
        .map(|m| {
            (
                cluster.vms[m.vm.index()].name.clone(),
                cluster.hosts[m.from.index()].name.clone(),
                cluster.hosts[m.to.index()].name.clone(),
            )
        })
        .collect()
}

/// `cluster` with `plan`'s moves applied.
pub fn apply(cluster: &Cluster, plan: &Plan) -> Cluster {
    let mut c = cluster.clone();
    for m in &plan.moves {
        c.placement[m.vm.index()] = m.to;
    }
    Cluster::new(c.to_snapshot()).expect("still valid")
}
