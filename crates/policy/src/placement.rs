//! Choosing a host for a VM: power-aware best fit decreasing (PABFD) and
//! first fit.
//!
//! PABFD (Beloglazov & Buyya 2012) puts a VM on the host whose power draw
//! grows least, among hosts that can take it without becoming over-utilised.
//! The scan order, the strict `<` on the power increase and the rule that an
//! empty host is not checked for overload follow CloudSim 3.0.3.

use crate::cluster::{ClusterState, HostIndex, VmIndex};
use crate::detect::{DetectorScratch, OverloadDetector};

/// A set of hosts, by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSet {
    member: Vec<bool>,
    len: usize,
}

impl HostSet {
    /// An empty set over `hosts` hosts.
    pub fn new(hosts: usize) -> Self {
        Self {
            member: vec![false; hosts],
            len: 0,
        }
    }

    /// Adds `host`; returns whether it was new.
    pub fn insert(&mut self, host: HostIndex) -> bool {
        let new = !self.member[host];
        if new {
            self.member[host] = true;
            self.len += 1;
        }
        new
    }

    /// Whether `host` is in the set.
    pub fn contains(&self, host: HostIndex) -> bool {
        self.member[host]
    }

    /// Number of hosts in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The host whose power draw rises least when `vm` is added, skipping
/// `excluded` hosts, hosts where it does not fit, and non-empty hosts that
/// `detector` finds over-utilised with the VM added.
///
/// Like CloudSim, a what-if allocation on every non-empty candidate leaves its
/// mark on the host's migration bookkeeping (see `CpuShare`). The overload
/// check runs only for a host that would beat the best so far, which gives
/// the same answer as checking every host, at a fraction of the cost.
pub fn power_aware_best_fit(
    cluster: &mut ClusterState,
    vm: VmIndex,
    excluded: &HostSet,
    detector: &OverloadDetector,
    scratch: &mut DetectorScratch,
) -> Option<HostIndex> {
    let requested = cluster.vms[vm].requested_mips;
    let in_migration = cluster.vms[vm].in_migration;
    let mut best = None;
    let mut min_power_increase = f64::MAX;
    for host in 0..cluster.hosts.len() {
        if excluded.contains(host) || !cluster.is_suitable(host, vm) {
            continue;
        }
        let allocated = cluster.allocated_mips_with_incoming(host);
        let needs_overload_check = allocated != 0.0;
        if needs_overload_check {
            cluster.hosts[host]
                .cpu
                .update_migration_marks(vm, in_migration);
        }
        let h = &cluster.hosts[host];
        let after = (allocated + requested) / h.spec.total_mips();
        let (Ok(power_after), Ok(power_now)) = (
            h.spec.power.watts_at(after),
            h.spec.power.watts_at(h.utilization()),
        ) else {
            continue;
        };
        let increase = power_after - power_now;
        if increase < min_power_increase {
            if needs_overload_check && detector.is_overloaded(cluster, host, Some(vm), scratch) {
                continue;
            }
            min_power_increase = increase;
            best = Some(host);
        }
    }
    best
}

/// The first host (by index) where `vm` fits.
pub fn first_fit(cluster: &ClusterState, vm: VmIndex) -> Option<HostIndex> {
    (0..cluster.hosts.len()).find(|&host| cluster.is_suitable(host, vm))
}
