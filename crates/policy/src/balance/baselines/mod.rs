//! The peers' balancing algorithms, re-implemented from their published
//! descriptions as [`Balancer`](super::Balancer)s, so that Keel's planner can
//! be compared with them on the same traces:
//!
//! - [`Crs`]: Proxmox VE's cluster resource scheduler in `dynamic` mode with
//!   automatic rebalancing (pve-ha-manager + `proxmox-resource-scheduling`);
//! - [`ProxLb`]: ProxLB (gyptazy/ProxLB), the balanciness-driven external
//!   balancer for Proxmox VE;
//! - [`Watcher`]: OpenStack Watcher's `workload_stabilization` strategy.
//!
//! The balancer that never moves anything is [`NoBalancer`](super::NoBalancer).
//!
//! Each module says which source files it follows, what each rule is, and
//! where it deliberately differs from the tool (Keel's issue text wins where
//! the two disagree). Rules common to all three, whatever the tool does:
//! a VM in flight is never moved, a host in maintenance never receives a VM,
//! hard VM-host rules (`must` / `must_not` / pin) are always respected, and a
//! VM on a host in maintenance is left to the evacuation path (none of the
//! three balancers' evacuation logic is reproduced here). Every move is
//! [`MoveReason::Balance`]; `imbalance_before` / `imbalance_after` use Keel's
//! [`Imbalance::of`] with default weights, whatever metric the tool uses
//! internally, so results are comparable across balancers.

pub mod crs;
pub mod proxlb;
pub mod watcher;

pub use crs::{Crs, CrsConfig};
pub use proxlb::{ProxLb, ProxLbConfig, ProxLbMethod, ProxLbMode};
pub use watcher::{Watcher, WatcherConfig, WatcherMetric};

use super::imbalance::{Imbalance, ResourceWeights};
use super::load::HostLoads;
use super::plan::{MoveReason, Plan, PlannedMove};
use super::BalanceInput;
use keel_model::rules::overcommit_limit;
use keel_model::{Cluster, CompiledRules, HostId, Resources, VmId, VmInfo};

/// Placeholder migration bandwidth: 10 Gbit/s, in bytes per second.
pub const PLACEHOLDER_BYTES_PER_SECOND: f64 = 1.25e9;

/// Placeholder migration time of `vm`: its configured memory over 10 Gbit/s.
/// A shared migration cost model will replace it.
pub fn placeholder_cost_seconds(vm: &VmInfo) -> f64 {
    vm.size.memory_bytes / PLACEHOLDER_BYTES_PER_SECOND
}

/// `amount / capacity`, 0 where there is no capacity (such hosts are left
/// out of every baseline's statistics).
pub(crate) fn ratio(amount: f64, capacity: f64) -> f64 {
    if capacity > 0.0 {
        amount / capacity
    } else {
        0.0
    }
}

/// The hard limits every baseline obeys, resolved once per round. Lookups
/// are bounds-checked: rules compiled for another cluster never panic, they
/// only forbid.
pub(crate) struct Guard<'a> {
    rules: &'a CompiledRules,
    /// Per VM: a migration of it is running.
    in_flight: Vec<bool>,
    /// Per VM: where its running migration goes.
    heading_to: Vec<Option<HostId>>,
    /// Per host: in maintenance (the host's flag or the rules).
    maintenance: Vec<bool>,
}

impl<'a> Guard<'a> {
    /// Resolves `input`.
    pub(crate) fn new(input: &BalanceInput<'a>) -> Self {
        let cluster = input.cluster;
        let mut in_flight = vec![false; cluster.vms.len()];
        let mut heading_to = vec![None; cluster.vms.len()];
        for m in input.in_flight {
            if let Some(f) = in_flight.get_mut(m.vm.index()) {
                *f = true;
                heading_to[m.vm.index()] = Some(m.to);
            }
        }
        let maintenance = (0..cluster.hosts.len())
            .map(|h| {
                cluster.hosts[h].maintenance
                    || input.rules.maintenance.get(h).copied().unwrap_or(false)
            })
            .collect();
        Self {
            rules: input.rules,
            in_flight,
            heading_to,
            maintenance,
        }
    }

    /// Whether `host` is in maintenance (or unknown).
    pub(crate) fn in_maintenance(&self, host: HostId) -> bool {
        self.maintenance.get(host.index()).copied().unwrap_or(true)
    }

    /// Whether `vm` may be moved at all: not in flight, not pinned.
    pub(crate) fn movable(&self, vm: VmId) -> bool {
        !self.in_flight.get(vm.index()).copied().unwrap_or(true)
            && !self.rules.pinned.get(vm.index()).copied().unwrap_or(false)
    }

    /// Whether `vm` may go to `host`: not in maintenance, allowed by its
    /// hard VM-host rules.
    pub(crate) fn target_ok(&self, vm: VmId, host: HostId) -> bool {
        !self.in_maintenance(host)
            && match self.rules.allowed.get(vm.index()) {
                Some(Some(a)) => a.get(host.index()).copied().unwrap_or(false),
                Some(None) => true,
                None => false,
            }
    }

    /// `vm`'s affinity group (VMs kept together) with more than one member.
    pub(crate) fn affinity_group(&self, vm: VmId) -> Option<&'a [VmId]> {
        let g = (*self.rules.affinity_of.get(vm.index())?)?;
        let members = self.rules.affinity_groups.get(g)?;
        (members.len() > 1).then_some(members.as_slice())
    }

    /// Hosts `vm` may not go to because an anti-affinity peer is there or on
    /// its way there (`placement` is the simulated placement), sorted.
    /// VMs in `except` (the members moving with `vm`) do not count.
    pub(crate) fn anti_affinity_hosts(
        &self,
        vm: VmId,
        placement: &[HostId],
        except: &[VmId],
        out: &mut Vec<HostId>,
    ) {
        let Some(groups) = self.rules.anti_affinity_of.get(vm.index()) else {
            return;
        };
        for &g in groups {
            for &peer in self.rules.anti_affinity_groups.get(g).into_iter().flatten() {
                if peer == vm || except.contains(&peer) {
                    continue;
                }
                out.extend(placement.get(peer.index()).copied());
                out.extend(self.heading_to.get(peer.index()).copied().flatten());
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// Whether `extra` configured size still fits `host` under the rules'
/// overcommit ratios (Nova placement-style check; optional in baselines).
pub(crate) fn fits_overcommit(
    loads: &HostLoads,
    rules: &CompiledRules,
    host: HostId,
    extra: Resources,
) -> bool {
    let limit = overcommit_limit(&loads.capacity[host.index()], &rules.overcommit);
    let after = loads.size[host.index()] + extra;
    after.cpu_cores <= limit.cpu_cores + 1e-9 && after.memory_bytes <= limit.memory_bytes + 1e-9
}

/// Builds a [`Plan`] move by move, tracking Keel's imbalance as it goes.
pub(crate) struct PlanBuilder<'a> {
    cluster: &'a Cluster,
    rules: &'a CompiledRules,
    /// Keel's host loads with the moves so far applied.
    pub(crate) loads: HostLoads,
    before: Imbalance,
    current: Imbalance,
    moves: Vec<PlannedMove>,
}

impl<'a> PlanBuilder<'a> {
    /// Starts from the cluster as `input` shows it.
    pub(crate) fn new(input: &BalanceInput<'a>) -> Self {
        let loads = HostLoads::new(input.cluster);
        let before = Imbalance::of(&loads, &ResourceWeights::default(), input.rules);
        Self {
            cluster: input.cluster,
            rules: input.rules,
            loads,
            before,
            current: before,
            moves: Vec::new(),
        }
    }

    /// Where `vm` is once the moves so far are done.
    pub(crate) fn placement(&self) -> &[HostId] {
        &self.loads.placement
    }

    /// Number of moves so far.
    pub(crate) fn len(&self) -> usize {
        self.moves.len()
    }

    /// Appends the move of `vm` to `to` in `wave`.
    pub(crate) fn push(&mut self, vm: VmId, to: HostId, wave: u32) {
        let info = &self.cluster.vms[vm.index()];
        let from = self.loads.placement[vm.index()];
        self.loads.apply_move(vm, info.size, to);
        let after = Imbalance::of(&self.loads, &ResourceWeights::default(), self.rules);
        self.moves.push(PlannedMove {
            vm,
            from,
            to,
            wave,
            reason: MoveReason::Balance,
            imbalance_reduction: self.current.std_dev - after.std_dev,
            cost_seconds: placeholder_cost_seconds(info),
            migrated_bytes: info.size.memory_bytes,
        });
        self.current = after;
    }

    /// The plan, with the predicted per-host loads after every move.
    pub(crate) fn finish(self) -> Plan {
        let predicted_loads = (0..self.loads.hosts())
            .map(|h| self.loads.load(HostId(h as u32)))
            .collect();
        Plan {
            moves: self.moves,
            imbalance_before: self.before,
            imbalance_after: self.current,
            predicted_loads,
            unresolved: Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests;
