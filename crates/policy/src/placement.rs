//! Choosing a host for a VM: power-aware best fit decreasing (PABFD) and
//! first fit.
//!
//! PABFD (Beloglazov & Buyya 2012) puts a VM on the host whose power draw
//! grows least, among hosts that can take it without becoming over-utilised.
//! The scan order, the strict `<` on the power increase and the rule that an
//! empty host is not checked for overload follow CloudSim 3.0.3.

use crate::candidates::{is_idle_and_empty, same_fit_and_score};
pub use crate::candidates::{HostCandidates, HostSet};
use crate::cluster::{ClusterState, HostIndex, VmIndex};
use crate::detect::{DetectorScratch, OverloadDetector};
use keel_model::HostSpec;

/// The host whose power draw rises least when `vm` is added, among
/// `candidates` (ascending host indices; see [`HostCandidates`]), skipping
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
    candidates: &[HostIndex],
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
    for &host in candidates {
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
        let (Ok(power_after), Some(power_now)) = (
            h.spec.power.watts_at(after),
            power_now(scratch, cluster, host),
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

/// The host's power draw at its recorded utilisation, remembered until that
/// utilisation changes (it stays put through a whole round, while every VM
/// to place asks for it again).
fn power_now(
    scratch: &mut DetectorScratch,
    cluster: &ClusterState,
    host: HostIndex,
) -> Option<f64> {
    let h = &cluster.hosts[host];
    if scratch.power_now.len() != cluster.hosts.len() {
        scratch.power_now = vec![(f64::NAN, None); cluster.hosts.len()];
    }
    let (for_mips, watts) = &mut scratch.power_now[host];
    // NaN never equals itself, so an empty slot is always computed.
    if *for_mips != h.utilization_mips {
        *for_mips = h.utilization_mips;
        *watts = h.spec.power.watts_at(h.utilization()).ok();
    }
    *watts
}

/// The first host (by index) where `vm` fits.
pub fn first_fit(cluster: &ClusterState, vm: VmIndex) -> Option<HostIndex> {
    (0..cluster.hosts.len()).find(|&host| cluster.is_suitable(host, vm))
}
