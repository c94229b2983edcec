//! Keel's planner: mandatory moves first (maintenance, hard rules), then
//! repeated best single move by cost-benefit until the cluster is balanced
//! enough for the migration threshold level, the move budget is spent, or no
//! move pays for itself.
//!
//! A move's benefit is the drop in the objective F (imbalance plus hot-host
//! penalty, see `objective`) held over the stability window; its cost is the
//! migration's duration weighted by `migration_cost_weight`. Affinity groups
//! move as one unit. No VM moves twice in a plan, none that moved within its
//! stability window (anti-ping-pong), none that is pinned or in flight.

use super::constraints::Constraints;
use super::imbalance::Imbalance;
use super::load::HostLoads;
use super::objective::{Objective, ObjectiveWeights};
use super::plan::{MoveReason, Plan, PlannedMove, Unresolved};
pub use super::planner_config::PlannerConfig;
use super::waves::{assign_waves, Concurrency};
use super::{BalanceInput, Balancer};
use crate::PolicyError;
use keel_model::{HostId, Resources, VmId};

/// Keel's balancer.
#[derive(Debug, Clone, Default)]
pub struct KeelBalancer {
    /// Settings.
    pub config: PlannerConfig,
}

impl Balancer for KeelBalancer {
    fn name(&self) -> &'static str {
        "keel"
    }

    fn plan(&mut self, input: &BalanceInput<'_>, now_seconds: f64) -> Result<Plan, PolicyError> {
        plan(input, &self.config, now_seconds)
    }
}

/// Work state of one planning pass.
struct Pass<'a> {
    input: &'a BalanceInput<'a>,
    config: &'a PlannerConfig,
    now: f64,
    loads: HostLoads,
    constraints: Constraints<'a>,
    objective: Objective,
    moved: Vec<bool>,
    /// VMs per host, kept current as moves are committed.
    vms_by_host: Vec<Vec<VmId>>,
    moves: Vec<PlannedMove>,
    unresolved: Vec<Unresolved>,
}

/// Plans one balancing round.
pub fn plan(
    input: &BalanceInput<'_>,
    config: &PlannerConfig,
    now_seconds: f64,
) -> Result<Plan, PolicyError> {
    config.check()?;
    let mut pass = Pass::new(input, config, now_seconds);
    let before = Imbalance::of(&pass.loads, &config.weights, input.rules);
    pass.mandatory_moves();
    if config.level >= 2 {
        pass.balancing_moves(None);
    }
    Ok(pass.finish(before))
}

/// Plans the moves that bring every host's CPU and memory load to at most
/// `target_max_load`, as few as the greedy can (the yardstick problem of
/// the exact mode). Mandatory moves come first, as always.
pub fn plan_to_target(input: &BalanceInput<'_>, target_max_load: f64) -> Result<Plan, PolicyError> {
    let config = PlannerConfig {
        max_moves: usize::MAX,
        ..PlannerConfig::default()
    };
    let mut pass = Pass::new(input, &config, input.cluster.time_seconds);
    let before = Imbalance::of(&pass.loads, &config.weights, input.rules);
    pass.mandatory_moves();
    pass.balancing_moves(Some(target_max_load));
    Ok(pass.finish(before))
}

impl<'a> Pass<'a> {
    fn new(input: &'a BalanceInput<'a>, config: &'a PlannerConfig, now: f64) -> Self {
        let loads = HostLoads::new(input.cluster);
        let objective = Objective::new(
            &loads,
            input.rules,
            ObjectiveWeights {
                resources: config.weights,
                hot_threshold: config.hot_threshold,
                hot_weight: config.hot_weight,
            },
        );
        let mut vms_by_host = vec![Vec::new(); loads.hosts()];
        for (v, host) in loads.placement.iter().enumerate() {
            vms_by_host[host.index()].push(VmId(v as u32));
        }
        Self {
            input,
            config,
            now,
            constraints: Constraints::new(input.cluster, input.rules, input.in_flight),
            objective,
            moved: vec![false; input.cluster.vms.len()],
            vms_by_host,
            moves: Vec::new(),
            unresolved: Vec::new(),
            loads,
        }
    }

    /// The VMs that move with `vm` (its affinity group, or itself).
    fn unit_of(&self, vm: VmId) -> Vec<VmId> {
        match self.input.rules.affinity_of[vm.index()] {
            Some(g) => self.input.rules.affinity_groups[g].clone(),
            None => vec![vm],
        }
    }

    fn unit_sums(&self, unit: &[VmId]) -> (Resources, Resources) {
        let demand = unit.iter().map(|v| self.loads.vm_demand[v.index()]).sum();
        let size = unit
            .iter()
            .map(|v| self.input.cluster.vms[v.index()].size)
            .sum();
        (demand, size)
    }

    fn may_move(&self, vm: VmId, mandatory: bool) -> bool {
        if self.moved[vm.index()] || !self.constraints.movable(vm) {
            return false;
        }
        if mandatory {
            return true;
        }
        let window = self.config.stability_window_seconds;
        self.input.cluster.vms[vm.index()]
            .last_migrated_seconds
            .is_none_or(|t| self.now - t >= window)
    }

    /// Moves every member of `unit` that is not on `to` yet (each from its
    /// own host: a broken affinity group is reunited) and records them.
    fn commit(&mut self, unit: &[VmId], to: HostId, reason: MoveReason) {
        let before = self.objective.imbalance();
        for &vm in unit {
            let from = self.loads.placement[vm.index()];
            if from == to || self.moved[vm.index()] {
                continue;
            }
            let demand = self.loads.vm_demand[vm.index()];
            let evaluation = self.objective.evaluate(&self.loads, from, to, demand);
            self.objective.commit(&evaluation);
            let size = self.input.cluster.vms[vm.index()].size;
            self.loads.apply_move(vm, size, to);
            self.constraints.record_move(&[vm], from, to);
            self.vms_by_host[from.index()].retain(|&v| v != vm);
            self.vms_by_host[to.index()].push(vm);
            let cost = self
                .config
                .cost_model
                .cost(&self.input.cluster.vms[vm.index()]);
            self.moves.push(PlannedMove {
                vm,
                from,
                to,
                wave: 0,
                reason: reason.clone(),
                imbalance_reduction: 0.0,
                cost_seconds: cost.seconds,
                migrated_bytes: cost.bytes,
            });
            self.moved[vm.index()] = true;
        }
        if let Some(last) = self.moves.last_mut() {
            last.imbalance_reduction = before - self.objective.imbalance();
        }
    }

    /// The best host for `unit` (on `from`) among all hosts, by objective
    /// plus soft-rule penalty; `None` with the last refusal if none can take it.
    fn best_target(&self, unit: &[VmId], from: HostId) -> Result<HostId, String> {
        let (demand, size) = self.unit_sums(unit);
        let mut best: Option<(f64, HostId)> = None;
        let mut refusal = String::from("no other host");
        for h in 0..self.loads.hosts() {
            let to = HostId(h as u32);
            if to == from {
                continue;
            }
            if let Err(r) = self.constraints.check(&self.loads, unit, demand, size, to) {
                refusal = r.describe(self.input.rules);
                continue;
            }
            let score = self.objective.evaluate(&self.loads, from, to, demand).value
                + self.soft_penalty(unit, to);
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, to));
            }
        }
        best.map(|(_, h)| h).ok_or(refusal)
    }

    fn soft_penalty(&self, unit: &[VmId], to: HostId) -> f64 {
        // A soft-rule weight of 1 costs as much as a move that gains 1/100 of F.
        unit.iter()
            .map(|&vm| self.input.rules.soft_penalty(vm, to))
            .sum::<f64>()
            * 0.01
    }

    fn mandatory_moves(&mut self) {
        let cluster = self.input.cluster;
        let rules = self.input.rules;
        for v in 0..cluster.vms.len() {
            let vm = VmId(v as u32);
            if self.moved[v] {
                continue;
            }
            let here = self.loads.placement[v];
            let reason = if rules.maintenance[here.index()] {
                Some(MoveReason::Evacuation)
            } else if !rules.host_allowed(vm, here) {
                Some(MoveReason::HardRule {
                    rule: "vm-host".into(),
                })
            } else {
                self.broken_group_rule(vm, here)
            };
            let Some(reason) = reason else { continue };
            if self.input.in_flight.iter().any(|f| f.vm == vm) {
                continue; // already leaving
            }
            if rules.pinned[v] {
                self.unresolved.push(Unresolved {
                    vm,
                    reason: format!(
                        "must leave host {:?} ({reason:?}) but is pinned there",
                        cluster.hosts[here.index()].name
                    ),
                });
                continue;
            }
            let unit = self.unit_of(vm);
            match self.best_target(&unit, here) {
                Ok(to) => self.commit(&unit, to, reason),
                Err(why) => self.unresolved.push(Unresolved {
                    vm,
                    reason: format!(
                        "must leave host {:?} ({reason:?}) but cannot: {why}",
                        cluster.hosts[here.index()].name
                    ),
                }),
            }
        }
    }

    /// An anti-affinity partner earlier in the list on the same host, or an
    /// affinity partner elsewhere.
    fn broken_group_rule(&self, vm: VmId, here: HostId) -> Option<MoveReason> {
        let rules = self.input.rules;
        for &g in &rules.anti_affinity_of[vm.index()] {
            let earlier_here = rules.anti_affinity_groups[g]
                .iter()
                .take_while(|&&m| m != vm)
                .any(|&m| self.loads.placement[m.index()] == here);
            if earlier_here {
                return Some(MoveReason::HardRule {
                    rule: rules.anti_affinity_names[g].clone(),
                });
            }
        }
        if let Some(g) = rules.affinity_of[vm.index()] {
            let members = &rules.affinity_groups[g];
            let first_host = self.loads.placement[members[0].index()];
            if members
                .iter()
                .any(|m| self.loads.placement[m.index()] != first_host)
                && here != first_host
            {
                return Some(MoveReason::HardRule {
                    rule: rules.affinity_names[g].clone(),
                });
            }
        }
        None
    }

    /// Repeated best single move. With `target_max_load`, moves only off
    /// hosts above it and stops once none is; otherwise balances by level.
    fn balancing_moves(&mut self, target_max_load: Option<f64>) {
        let budget = self.config.move_budget(self.loads.hosts());
        let hosts = self.loads.hosts();
        let mut ranked: Vec<(f64, HostId)> = Vec::with_capacity(hosts);
        // Ranks change only for the two hosts of each move.
        let mut ranks: Vec<f64> = (0..hosts as u32)
            .map(|h| self.rank(HostId(h), target_max_load))
            .collect();
        while self.moves.len() < budget {
            if target_max_load.is_none()
                && self.objective.imbalance() <= self.config.target_imbalance()
                && !self.any_hot()
            {
                break;
            }
            ranked.clear();
            ranked.extend(
                ranks
                    .iter()
                    .enumerate()
                    .map(|(h, &r)| (r, HostId(h as u32))),
            );
            // Hottest first; ties by host index, so plans are deterministic.
            let hotter =
                |a: &(f64, HostId), b: &(f64, HostId)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            let sources: Vec<HostId> = top_k(&mut ranked, self.config.source_hosts, hotter)
                .iter()
                .filter(|(r, _)| *r > f64::NEG_INFINITY && (target_max_load.is_none() || *r > 0.0))
                .map(|&(_, h)| h)
                .collect();
            if sources.is_empty() {
                break;
            }
            let maintenance = &self.input.rules.maintenance;
            ranked.retain(|&(_, h)| !maintenance[h.index()]);
            let cooler =
                |a: &(f64, HostId), b: &(f64, HostId)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            let targets: Vec<HostId> = top_k(&mut ranked, self.config.target_hosts, cooler)
                .iter()
                .map(|&(_, h)| h)
                .collect();
            let Some((unit, from, to, reason)) =
                self.best_move(&sources, &targets, target_max_load)
            else {
                break;
            };
            let changed: Vec<HostId> = unit
                .iter()
                .map(|vm| self.loads.placement[vm.index()])
                .chain(std::iter::once(from))
                .collect();
            self.commit(&unit, to, reason);
            for h in changed.into_iter().chain(std::iter::once(to)) {
                ranks[h.index()] = self.rank(h, target_max_load);
            }
        }
    }

    fn any_hot(&self) -> bool {
        (0..self.loads.hosts())
            .any(|h| self.objective.host_heat(&self.loads, HostId(h as u32)) > 0.0)
    }

    /// How urgently a host should shed load: its excess over the target in
    /// target mode, else its weighted load plus heat.
    fn rank(&self, host: HostId, target_max_load: Option<f64>) -> f64 {
        if self.input.rules.maintenance[host.index()] {
            return f64::NEG_INFINITY;
        }
        match target_max_load {
            Some(t) => {
                let l = self.loads.load(host);
                (l.cpu_cores - t).max(l.memory_bytes - t)
            }
            None => {
                self.objective.weighted_load(&self.loads, host)
                    + self.objective.host_heat(&self.loads, host)
            }
        }
    }

    fn best_move(
        &self,
        sources: &[HostId],
        targets: &[HostId],
        target_max_load: Option<f64>,
    ) -> Option<(Vec<VmId>, HostId, HostId, MoveReason)> {
        let current = self.objective.value();
        let mut best: Option<(f64, Vec<VmId>, HostId, HostId, bool)> = None;
        for &from in sources {
            let overloaded = {
                let l = self.loads.load(from);
                l.cpu_cores > 1.0 || l.memory_bytes > 1.0
            };
            let vms = self.vms_on(from);
            for vm in vms {
                if !self.may_move(vm, false) {
                    continue;
                }
                let unit = self.unit_of(vm);
                if unit[0] != vm
                    && unit.contains(&vm)
                    && unit
                        .iter()
                        .any(|&m| m < vm && self.loads.placement[m.index()] == from)
                {
                    continue; // the group is evaluated once, from its first member here
                }
                if unit
                    .iter()
                    .any(|&m| self.loads.placement[m.index()] != from || !self.may_move(m, false))
                {
                    continue;
                }
                let (demand, size) = self.unit_sums(&unit);
                let cost: f64 = unit
                    .iter()
                    .map(|&m| {
                        self.config
                            .cost_model
                            .cost(&self.input.cluster.vms[m.index()])
                            .seconds
                    })
                    .sum();
                for &to in targets {
                    if to == from
                        || self
                            .constraints
                            .check(&self.loads, &unit, demand, size, to)
                            .is_err()
                    {
                        continue;
                    }
                    let after = self.objective.evaluate(&self.loads, from, to, demand);
                    let score = match target_max_load {
                        Some(t) => {
                            // Fewest moves: a move that brings the source under
                            // the target wins; the target must stay under it.
                            let to_load = (self.loads.demand[to.index()] + demand)
                                .fraction_of(self.loads.capacity[to.index()]);
                            if to_load.cpu_cores > t + 1e-12 || to_load.memory_bytes > t + 1e-12 {
                                continue;
                            }
                            let from_load = (self.loads.demand[from.index()] - demand)
                                .fraction_of(self.loads.capacity[from.index()]);
                            let excess = (from_load.cpu_cores - t)
                                .max(from_load.memory_bytes - t)
                                .max(0.0);
                            // Lower is better: remaining excess first, then F.
                            -(excess * 1e6 + after.value)
                        }
                        None => {
                            let gain = current - after.value;
                            if gain < self.config.min_gain() && !(overloaded && gain > 0.0) {
                                continue;
                            }
                            let net = gain * self.config.stability_window_seconds / 3600.0
                                - self.config.migration_cost_weight * cost
                                - self.soft_penalty(&unit, to)
                                + self.soft_penalty(&unit, from);
                            if net <= 0.0 {
                                continue;
                            }
                            net
                        }
                    };
                    if best.as_ref().is_none_or(|b| score > b.0) {
                        best = Some((score, unit.clone(), from, to, overloaded));
                    }
                }
            }
        }
        best.map(|(_, unit, from, to, overloaded)| {
            let reason = if overloaded {
                MoveReason::Overload
            } else {
                MoveReason::Balance
            };
            (unit, from, to, reason)
        })
    }

    fn vms_on(&self, host: HostId) -> Vec<VmId> {
        self.vms_by_host[host.index()].clone()
    }

    fn finish(mut self, before: Imbalance) -> Plan {
        let initial = HostLoads::new(self.input.cluster);
        let mut held = initial.demand.clone();
        let mut held_size = initial.size.clone();
        for f in self.input.in_flight {
            held[f.to.index()] += initial.vm_demand[f.vm.index()];
            held_size[f.to.index()] += self.input.cluster.vms[f.vm.index()].size;
        }
        assign_waves(
            self.input.cluster,
            self.input.rules,
            &initial,
            &held,
            &held_size,
            Concurrency {
                per_host: self.config.per_host_concurrency,
                per_cluster: self.config.per_cluster_concurrency,
            },
            &mut self.moves,
        );
        let after = Imbalance::of(&self.loads, &self.config.weights, self.input.rules);
        let predicted_loads = (0..self.loads.hosts())
            .map(|h| self.loads.load(HostId(h as u32)))
            .collect();
        Plan {
            moves: self.moves,
            imbalance_before: before,
            imbalance_after: after,
            predicted_loads,
            unresolved: self.unresolved,
        }
    }
}

/// The first `k` items of `items` by `order`, sorted (partial selection:
/// linear in `items`, plus `k log k`).
fn top_k<T: Copy>(
    items: &mut [T],
    k: usize,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    let k = k.min(items.len());
    if k == 0 {
        return Vec::new();
    }
    if k < items.len() {
        items.select_nth_unstable_by(k - 1, &order);
    }
    let mut top = items[..k].to_vec();
    top.sort_by(&order);
    top
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
