//! Choosing a host for a VM: power-aware best fit decreasing (PABFD) and
//! first fit.
//!
//! PABFD (Beloglazov & Buyya 2012) puts a VM on the host whose power draw
//! grows least, among hosts that can take it without becoming over-utilised.
//! The scan order, the strict `<` on the power increase and the rule that an
//! empty host is not checked for overload follow CloudSim 3.0.3.

use crate::cluster::{ClusterState, HostIndex, VmIndex};
use crate::detect::{DetectorScratch, OverloadDetector};
use keel_model::HostSpec;

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
    // Idle, empty hosts of one spec all score alike, and ties go to the
    // first: only the first idle host of each spec needs scoring.
    let mut idle_specs_seen: Vec<HostSpec> = Vec::new();
    for host in 0..cluster.hosts.len() {
        if excluded.contains(host) {
            continue;
        }
        if is_idle_and_empty(cluster, host) {
            let spec = cluster.hosts[host].spec;
            if idle_specs_seen
                .iter()
                .any(|seen| same_fit_and_score(seen, &spec))
            {
                continue;
            }
            idle_specs_seen.push(spec);
        }
        if !cluster.is_suitable(host, vm) {
            continue;
        }
        let allocated = cluster.allocated_mips_with_incoming(host);
        let needs_overload_check = allocated != 0.0;
        if needs_overload_check {
            cluster.hosts[host].cpu.probe(vm, requested, in_migration);
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

/// Whether two idle hosts of these specs take the same VMs at the same score.
fn same_fit_and_score(a: &HostSpec, b: &HostSpec) -> bool {
    a.total_mips() == b.total_mips()
        && a.core_mips == b.core_mips
        && a.ram_mb == b.ram_mb
        && a.bandwidth == b.bandwidth
        && a.power.watts == b.power.watts
}

/// Whether `host` holds no VM, reserves nothing and used no CPU at the last
/// update: its fit and score for any VM then depend on its spec alone.
fn is_idle_and_empty(cluster: &ClusterState, host: HostIndex) -> bool {
    let h = &cluster.hosts[host];
    h.vms.is_empty()
        && h.utilization_mips == 0.0
        && h.cpu.available_mips() == h.spec.total_mips()
        && h.ram_available_mb == h.spec.ram_mb
        && h.bandwidth_available == h.spec.bandwidth
}

/// The first host (by index) where `vm` fits.
pub fn first_fit(cluster: &ClusterState, vm: VmIndex) -> Option<HostIndex> {
    (0..cluster.hosts.len()).find(|&host| cluster.is_suitable(host, vm))
}
