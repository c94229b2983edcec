//! Hard rules as a plan is built: where a VM (or an affinity group, which
//! moves as one) may go right now, given the moves already planned.

use super::load::HostLoads;
use super::InFlight;
use keel_model::rules::overcommit_limit;
use keel_model::{Cluster, CompiledRules, HostId, Resource, Resources, VmId};
use std::collections::HashMap;

/// Why a host cannot take a VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The host is in maintenance.
    Maintenance,
    /// A must / must_not rule or a pin forbids it.
    VmHostRule,
    /// The VMs' demand does not fit.
    Capacity(Resource),
    /// The configured sizes exceed the overcommit ratio.
    Overcommit(Resource),
    /// Another member of an anti-affinity group is there.
    AntiAffinity(usize),
}

impl Refusal {
    /// A short explanation.
    pub fn describe(&self, rules: &CompiledRules) -> String {
        match self {
            Refusal::Maintenance => "host in maintenance".into(),
            Refusal::VmHostRule => "a VM-host rule or pin forbids it".into(),
            Refusal::Capacity(r) => format!("not enough {}", r.name()),
            Refusal::Overcommit(r) => format!("{} overcommit ratio exceeded", r.name()),
            Refusal::AntiAffinity(g) => format!(
                "anti-affinity {:?}",
                rules
                    .anti_affinity_names
                    .get(*g)
                    .map_or("?", String::as_str)
            ),
        }
    }
}

/// Hard-rule bookkeeping for one planning pass.
#[derive(Debug, Clone)]
pub struct Constraints<'a> {
    cluster: &'a Cluster,
    rules: &'a CompiledRules,
    /// Per anti-affinity group: members per host.
    anti_counts: Vec<HashMap<HostId, u32>>,
    /// Per host: demand and size of VMs migrating in (held on both ends).
    incoming_demand: Vec<Resources>,
    incoming_size: Vec<Resources>,
    /// Per host: the most its VMs' sizes may add up to.
    size_limit: Vec<Resources>,
    /// Per VM: may not move at all (in flight or pinned).
    locked: Vec<bool>,
}

impl<'a> Constraints<'a> {
    /// Bookkeeping for `cluster` as placed, with `in_flight` migrations
    /// holding capacity on their targets.
    pub fn new(cluster: &'a Cluster, rules: &'a CompiledRules, in_flight: &[InFlight]) -> Self {
        let n_hosts = cluster.hosts.len();
        let mut anti_counts = vec![HashMap::new(); rules.anti_affinity_groups.len()];
        for (g, members) in rules.anti_affinity_groups.iter().enumerate() {
            for vm in members {
                *anti_counts[g].entry(cluster.host_of(*vm)).or_insert(0) += 1;
            }
        }
        let mut incoming_demand = vec![Resources::ZERO; n_hosts];
        let mut incoming_size = vec![Resources::ZERO; n_hosts];
        let mut locked: Vec<bool> = rules.pinned.clone();
        locked.resize(cluster.vms.len(), false);
        for f in in_flight {
            let vm = &cluster.vms[f.vm.index()];
            incoming_demand[f.to.index()] += super::load::effective_demand(vm);
            incoming_size[f.to.index()] += vm.size;
            locked[f.vm.index()] = true;
            // The VM will be on the target too: keep its partners off it.
            for &g in &rules.anti_affinity_of[f.vm.index()] {
                *anti_counts[g].entry(f.to).or_insert(0) += 1;
            }
        }
        let size_limit = cluster
            .hosts
            .iter()
            .map(|h| overcommit_limit(&h.capacity, &rules.overcommit))
            .collect();
        Self {
            cluster,
            rules,
            anti_counts,
            incoming_demand,
            incoming_size,
            size_limit,
            locked,
        }
    }

    /// Whether `vm` may move at all.
    pub fn movable(&self, vm: VmId) -> bool {
        !self.locked[vm.index()]
    }

    /// The rules.
    pub fn rules(&self) -> &CompiledRules {
        self.rules
    }

    /// Whether the VMs of `unit` (all on one host, moving together, with
    /// total demand `demand` and size `size`) may go to `target` now.
    pub fn check(
        &self,
        loads: &HostLoads,
        unit: &[VmId],
        demand: Resources,
        size: Resources,
        target: HostId,
    ) -> Result<(), Refusal> {
        let t = target.index();
        if self.rules.maintenance[t] {
            return Err(Refusal::Maintenance);
        }
        if unit.iter().any(|&vm| !self.rules.host_allowed(vm, target)) {
            return Err(Refusal::VmHostRule);
        }
        let capacity = loads.capacity[t];
        let after = loads.demand[t] + self.incoming_demand[t] + demand;
        for r in Resource::ALL {
            let c = capacity.get(r);
            // Tolerate rounding; a resource the host does not report is not limited.
            if c > 0.0 && after.get(r) > c * (1.0 + 1e-9) {
                return Err(Refusal::Capacity(r));
            }
        }
        let sized = loads.size[t] + self.incoming_size[t] + size;
        for r in [Resource::Cpu, Resource::Memory] {
            if sized.get(r) > self.size_limit[t].get(r) * (1.0 + 1e-9) {
                return Err(Refusal::Overcommit(r));
            }
        }
        for &vm in unit {
            for &g in &self.rules.anti_affinity_of[vm.index()] {
                let here = self.anti_counts[g].get(&target).copied().unwrap_or(0);
                // Members of the unit already on the target do not count.
                let own = unit
                    .iter()
                    .filter(|&&u| {
                        loads.placement[u.index()] == target
                            && self.rules.anti_affinity_of[u.index()].contains(&g)
                    })
                    .count() as u32;
                if here > own {
                    return Err(Refusal::AntiAffinity(g));
                }
            }
        }
        Ok(())
    }

    /// Records that `unit` moved from `from` to `to`.
    pub fn record_move(&mut self, unit: &[VmId], from: HostId, to: HostId) {
        for &vm in unit {
            for &g in &self.rules.anti_affinity_of[vm.index()] {
                if let Some(c) = self.anti_counts[g].get_mut(&from) {
                    *c = c.saturating_sub(1);
                }
                *self.anti_counts[g].entry(to).or_insert(0) += 1;
            }
        }
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        self.cluster
    }
}
