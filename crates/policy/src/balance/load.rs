//! Per-host demand sums and loads, updated incrementally as moves are tried.

use keel_model::{Cluster, HostId, Resource, Resources, VmId, VmInfo};

/// The demand a VM places on its host, per resource: its estimated demand,
/// raised to its reservation (reserved capacity is held) and capped at its
/// limit (or its size where it has no limit and a size is known).
pub fn effective_demand(vm: &VmInfo) -> Resources {
    vm.demand.min(vm.effective_limit()).max(vm.reservation)
}

/// Demand and configured size summed per host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostLoads {
    /// Per host: capacity.
    pub capacity: Vec<Resources>,
    /// Per host: sum of its VMs' effective demand.
    pub demand: Vec<Resources>,
    /// Per host: sum of its VMs' configured sizes.
    pub size: Vec<Resources>,
    /// Per VM: its effective demand.
    pub vm_demand: Vec<Resources>,
    /// Per VM: its current host (changes as moves are applied).
    pub placement: Vec<HostId>,
}

impl HostLoads {
    /// Sums every VM onto its host.
    pub fn new(cluster: &Cluster) -> Self {
        let n = cluster.hosts.len();
        let mut loads = Self {
            capacity: cluster.hosts.iter().map(|h| h.capacity).collect(),
            demand: vec![Resources::ZERO; n],
            size: vec![Resources::ZERO; n],
            vm_demand: cluster.vms.iter().map(effective_demand).collect(),
            placement: cluster.placement.clone(),
        };
        for (i, vm) in cluster.vms.iter().enumerate() {
            let h = cluster.placement[i].index();
            loads.demand[h] += loads.vm_demand[i];
            loads.size[h] += vm.size;
        }
        loads
    }

    /// Host load per resource: demand / capacity.
    pub fn load(&self, host: HostId) -> Resources {
        self.demand[host.index()].fraction_of(self.capacity[host.index()])
    }

    /// Load of one resource.
    pub fn load_of(&self, host: HostId, resource: Resource) -> f64 {
        let c = self.capacity[host.index()].get(resource);
        let d = self.demand[host.index()].get(resource);
        if c > 0.0 {
            d / c
        } else if d > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }

    /// Moves `vm` (of `size`) to `to`, updating both hosts' sums.
    pub fn apply_move(&mut self, vm: VmId, size: Resources, to: HostId) {
        let from = self.placement[vm.index()];
        let d = self.vm_demand[vm.index()];
        self.demand[from.index()] -= d;
        self.size[from.index()] -= size;
        self.demand[to.index()] += d;
        self.size[to.index()] += size;
        self.placement[vm.index()] = to;
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.capacity.len()
    }
}
