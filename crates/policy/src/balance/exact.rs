//! Exact mode: the fewest migrations (or migrated bytes) that bring every
//! host to at most a target load, as a mixed-integer programme. It is the
//! yardstick the greedy planner is measured against.
//!
//! # Model
//!
//! A *unit* is a VM, or a whole affinity group (its members share one set of
//! variables, which is `x[a][h] == x[b][h]` without the equality rows). For
//! each unit `u` and each host `h` it may run on there is one binary `y[u][h]`;
//! pairs the hard rules forbid get no variable at all:
//!
//! * hosts in maintenance take nothing;
//! * `rules.host_allowed(vm, host)` must hold for every member (pinned VMs
//!   therefore stay where they are);
//! * a unit whose demand or configured size alone exceeds a host's limit
//!   (below) cannot go there;
//! * a VM with a migration in flight is counted on its destination and
//!   stays there (its migration is neither planned again nor counted).
//!
//! Rows: every unit on exactly one host; per host and resource,
//! `sum(effective demand) <= target_max_load * capacity` for CPU and memory,
//! and for disk and network where the host states a capacity (a zero disk or
//! network capacity means "not measured" and is not constrained; a zero CPU
//! or memory capacity admits only VMs with zero demand of it); per host,
//! `sum(configured size) <= overcommit ratio * capacity` for CPU and memory
//! ([`keel_model::rules::overcommit_limit`]); per anti-affinity group and
//! host, at most one member. Rows that cannot bind (every candidate together
//! fits) are left out. Rows are scaled by their limit so coefficients lie
//! in 0..=1 whatever the units.
//!
//! Objective: for [`Objective::Migrations`], the number of VMs that end on a
//! host other than their current one (`sum (1 - x[v][current])`); for
//! [`Objective::MigratedBytes`], the same weighted by each VM's bytes
//! (configured memory plus local disk), in GiB, plus 1e-6 per migration so
//! that VMs of zero bytes are not moved for nothing.
//!
//! # Solving
//!
//! Two valid additions keep branch and bound short (without them microlp
//! hit a 30 s limit at 60-100 VMs):
//!
//! * departure bounds: the units now on a host that stay must fit there on
//!   their own, so at least `k_h` of them leave, `k_h` counted by removing
//!   the largest first (a row per host that needs it);
//! * for [`Objective::Migrations`], whose value is a whole number, the LP
//!   relaxation is solved first and its value rounded up becomes a row
//!   `objective >= bound`.
//!
//! A quick heuristic placement (keep, evict from hosts over a limit, place
//! the evicted where they cost least) seeds the solver's incumbent; when it
//! already meets the rounded LP bound it is optimal and no branching is
//! needed. On the generated 20-host / 200-VM instances of
//! `tests/exact_vs_greedy.rs` the migration count is proved optimal in
//! milliseconds; the migrated-bytes objective is harder for microlp (up to
//! 100 VMs mostly under a second; at 200 VMs it often stops at the time
//! limit with an unproved incumbent).
//!
//! # Solver and time
//!
//! The model is solved through `good_lp` by microlp (pure Rust, the
//! default) or, with the `highs` cargo feature of `keel-policy`, by HiGHS.
//! The time limit is passed to the solver as configuration; the *solver*
//! measures elapsed time, this module never reads a clock. Each solver call
//! gets the limit: for [`Objective::Migrations`] there are at most two (the
//! LP relaxation, then the MIP), for [`Objective::MigratedBytes`] one. Both
//! backends report whether the limit stopped them: with an incumbent the
//! outcome has `optimal == false`; without one the error is
//! [`ExactError::TimeLimit`]. As a second guard, against memory, models
//! above [`MAX_VARIABLES`] binaries are refused with
//! [`ExactError::TooLarge`] before the solver model is built.

use super::imbalance::{Imbalance, ResourceWeights};
use super::load::{effective_demand, HostLoads};
use super::plan::{MoveReason, Plan, PlannedMove};
use super::BalanceInput;
use keel_model::{HostId, Resources, VmId, VmInfo};
use model::{amounts, build_units, host_limits, within, Limits, Model};

mod model;
mod warm;

/// The largest model (binary variables) [`solve_exact`] builds.
pub const MAX_VARIABLES: usize = 200_000;

/// Bandwidth of the placeholder migration cost, bytes per second (10 Gbit/s).
pub const PLACEHOLDER_BANDWIDTH_BYTES_PER_SECOND: f64 = 1.25e9;

/// What the exact mode minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Objective {
    /// The number of VMs that move.
    #[default]
    Migrations,
    /// The bytes the moves copy (configured memory plus local disk).
    MigratedBytes,
}

/// Settings of the exact mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactConfig {
    /// Highest allowed host load (effective demand / capacity), for every
    /// constrained resource (CPU, memory, and disk and network where a host
    /// states a capacity). Must be positive and finite.
    pub target_max_load: f64,
    /// What to minimise.
    pub objective: Objective,
    /// Time the solver may spend, seconds (positive, at most 1e6). The
    /// solver library measures it.
    pub time_limit_seconds: f64,
}

impl Default for ExactConfig {
    /// Target 0.85, fewest migrations, 30 s.
    fn default() -> Self {
        Self {
            target_max_load: 0.85,
            objective: Objective::Migrations,
            time_limit_seconds: 30.0,
        }
    }
}

/// What the exact mode found.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactOutcome {
    /// Per VM: its host once the plan (and every migration in flight) is done.
    pub placement: Vec<HostId>,
    /// VMs moved by the plan.
    pub migrations: usize,
    /// Bytes the plan's moves copy (configured memory plus local disk).
    pub migrated_bytes: f64,
    /// True when the solver proved the placement optimal; false when its time
    /// limit stopped it with a feasible, possibly sub-optimal, placement.
    pub optimal: bool,
    /// The moves (reason `Balance`, all in wave 0) with imbalance before and after.
    pub plan: Plan,
}

/// Why the exact mode gave no placement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExactError {
    /// A setting is out of range.
    #[error(
        "exact mode: {what} must be positive and finite (time limit at most 1e6 s), got {value}"
    )]
    InvalidConfig {
        /// Which setting.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// The input's parts do not match (lengths, indices, ratios).
    #[error("exact mode: inconsistent input: {reason}")]
    InvalidInput {
        /// What does not match.
        reason: String,
    },
    /// No placement keeps every host at or below the target under the hard rules.
    #[error(
        "no placement keeps every host at or below load {target} under the hard rules \
         (placement rules, maintenance, overcommit); raise the target or relax a rule"
    )]
    Infeasible {
        /// The target max load.
        target: f64,
    },
    /// The model would be too large to build.
    #[error("exact mode: model needs at least {variables} variables, more than the {max} allowed")]
    TooLarge {
        /// Variables needed (counted until the limit was passed).
        variables: usize,
        /// The limit ([`MAX_VARIABLES`]).
        max: usize,
    },
    /// The time limit ran out before the solver found any feasible placement.
    #[error("exact mode: no feasible placement found within the {seconds} s time limit")]
    TimeLimit {
        /// The limit, seconds.
        seconds: f64,
    },
    /// The solver failed otherwise, or returned a placement that breaks the model.
    #[error("exact mode: solver failed: {message}")]
    Solver {
        /// The solver's message.
        message: String,
    },
}

/// Bytes a migration of `vm` copies at least once: configured memory plus local disk.
pub fn migration_bytes(vm: &VmInfo) -> f64 {
    vm.size.memory_bytes + vm.local_disk_bytes
}

fn invalid(reason: impl Into<String>) -> ExactError {
    ExactError::InvalidInput {
        reason: reason.into(),
    }
}

fn check_config(config: &ExactConfig) -> Result<(), ExactError> {
    let t = config.target_max_load;
    if !(t.is_finite() && t > 0.0) {
        return Err(ExactError::InvalidConfig {
            what: "target_max_load",
            value: t,
        });
    }
    let s = config.time_limit_seconds;
    if !(s.is_finite() && s > 0.0 && s <= 1e6) {
        return Err(ExactError::InvalidConfig {
            what: "time_limit_seconds",
            value: s,
        });
    }
    Ok(())
}

/// Checks that every index and length in `input` is in range.
fn check_input(input: &BalanceInput<'_>) -> Result<(), ExactError> {
    let (c, r) = (input.cluster, input.rules);
    let (n_vms, n_hosts) = (c.vms.len(), c.hosts.len());
    if c.placement.len() != n_vms {
        return Err(invalid("placement length differs from the VM count"));
    }
    if c.placement.iter().any(|h| h.index() >= n_hosts) {
        return Err(invalid("a VM is placed on a host index out of range"));
    }
    if r.allowed.len() != n_vms || r.maintenance.len() != n_hosts {
        return Err(invalid("compiled rules were made for another cluster"));
    }
    if r.allowed.iter().flatten().any(|a| a.len() != n_hosts) {
        return Err(invalid("a VM-host rule mask has the wrong host count"));
    }
    let groups = r.affinity_groups.iter().chain(&r.anti_affinity_groups);
    if groups.flatten().any(|v| v.index() >= n_vms) {
        return Err(invalid("a VM group names a VM index out of range"));
    }
    for f in input.in_flight {
        if f.vm.index() >= n_vms || f.to.index() >= n_hosts {
            return Err(invalid("a migration in flight names an index out of range"));
        }
    }
    let oc = r.overcommit;
    if !(oc.cpu.is_finite() && oc.cpu > 0.0 && oc.memory.is_finite() && oc.memory > 0.0) {
        return Err(invalid("overcommit ratios must be positive and finite"));
    }
    Ok(())
}

/// Solves the exact mode: the placement with the fewest migrations (or
/// migrated bytes) that keeps every host at or below
/// `config.target_max_load` under every hard rule.
pub fn solve_exact(
    input: &BalanceInput<'_>,
    config: &ExactConfig,
) -> Result<ExactOutcome, ExactError> {
    check_config(config)?;
    check_input(input)?;
    let cluster = input.cluster;
    let n_vms = cluster.vms.len();
    let target = config.target_max_load;
    let demand: Vec<Resources> = cluster.vms.iter().map(effective_demand).collect();
    let mut current = cluster.placement.clone();
    let mut fixed: Vec<Option<HostId>> = vec![None; n_vms];
    for f in input.in_flight {
        current[f.vm.index()] = f.to;
        fixed[f.vm.index()] = Some(f.to);
    }
    let (units, unit_of) = build_units(input, &demand);
    let limits: Vec<Limits> = cluster
        .hosts
        .iter()
        .map(|h| host_limits(&h.capacity, target, input))
        .collect();
    let gib = f64::from(1u32 << 30);
    let weight = |v: usize| match config.objective {
        Objective::Migrations => 1.0,
        Objective::MigratedBytes => migration_bytes(&cluster.vms[v]) / gib + 1e-6,
    };

    // Candidate hosts and their cost, per unit.
    let mut candidates: Vec<Vec<(usize, f64)>> = Vec::with_capacity(units.len());
    let mut n_vars = 0usize;
    for unit in &units {
        let unit_amounts = amounts(unit.demand, unit.size);
        let mut hosts = Vec::new();
        for (h, host_limits) in limits.iter().enumerate() {
            let host = HostId(h as u32);
            let ok = !input.rules.maintenance[h]
                && unit.members.iter().all(|&v| {
                    input.rules.host_allowed(VmId(v as u32), host)
                        && fixed[v].is_none_or(|f| f == host)
                })
                && within(host_limits, unit_amounts);
            if ok {
                let cost = unit
                    .members
                    .iter()
                    .filter(|&&v| current[v] != host)
                    .map(|&v| weight(v))
                    .sum::<f64>();
                hosts.push((h, cost));
            }
        }
        if hosts.is_empty() {
            return Err(ExactError::Infeasible { target });
        }
        n_vars += hosts.len();
        if n_vars > MAX_VARIABLES {
            return Err(ExactError::TooLarge {
                variables: n_vars,
                max: MAX_VARIABLES,
            });
        }
        candidates.push(hosts);
    }

    let model = Model {
        current: &current,
        units: &units,
        unit_of: &unit_of,
        candidates: &candidates,
        limits: &limits,
        anti_affinity: &input.rules.anti_affinity_groups,
    };
    let mut placement = current.clone();
    let mut optimal = true;
    if n_vms > 0 {
        let (choice, proved) = model::solve(&model, config)?;
        for (unit, &h) in units.iter().zip(&choice) {
            for &v in &unit.members {
                placement[v] = HostId(h as u32);
            }
        }
        optimal = proved;
    }
    finish(input, config, &current, &fixed, placement, optimal)
}

/// Checks the placement against the target and turns it into an outcome.
fn finish(
    input: &BalanceInput<'_>,
    config: &ExactConfig,
    current: &[HostId],
    fixed: &[Option<HostId>],
    placement: Vec<HostId>,
    optimal: bool,
) -> Result<ExactOutcome, ExactError> {
    let cluster = input.cluster;
    let weights = ResourceWeights::default();
    let mut loads = HostLoads::new(cluster);
    let imbalance_before = Imbalance::of(&loads, &weights, input.rules);
    for (v, f) in fixed.iter().enumerate() {
        if let Some(to) = *f {
            loads.apply_move(VmId(v as u32), cluster.vms[v].size, to);
        }
    }
    let mut moves = Vec::new();
    let mut migrated_bytes = 0.0;
    let mut before = Imbalance::of(&loads, &weights, input.rules).std_dev;
    for (v, (&to, &from)) in placement.iter().zip(current).enumerate() {
        if to == from {
            continue;
        }
        let vm = &cluster.vms[v];
        loads.apply_move(VmId(v as u32), vm.size, to);
        let after = Imbalance::of(&loads, &weights, input.rules).std_dev;
        let bytes = migration_bytes(vm);
        migrated_bytes += bytes;
        moves.push(PlannedMove {
            vm: VmId(v as u32),
            from,
            to,
            wave: 0,
            reason: MoveReason::Balance,
            imbalance_reduction: before - after,
            cost_seconds: vm.size.memory_bytes / PLACEHOLDER_BANDWIDTH_BYTES_PER_SECOND,
            migrated_bytes: bytes,
        });
        before = after;
    }
    for h in 0..loads.hosts() {
        let limits = host_limits(&loads.capacity[h], config.target_max_load, input);
        if !within(&limits, amounts(loads.demand[h], loads.size[h])) {
            return Err(ExactError::Solver {
                message: format!("the solver's placement overloads host {h}"),
            });
        }
    }
    let imbalance_after = Imbalance::of(&loads, &weights, input.rules);
    let predicted_loads = (0..loads.hosts())
        .map(|h| loads.load(HostId(h as u32)))
        .collect();
    Ok(ExactOutcome {
        migrations: moves.len(),
        migrated_bytes,
        optimal,
        placement,
        plan: Plan {
            moves,
            imbalance_before,
            imbalance_after,
            predicted_loads,
            unresolved: Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests;
