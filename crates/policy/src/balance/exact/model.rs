//! The MIP of the exact mode: units, host limits, candidate hosts, valid
//! inequalities, and the calls into the solver.

use super::{warm, ExactConfig, ExactError, Objective};
use crate::balance::BalanceInput;
use good_lp::{
    variable, Expression, ProblemVariables, ResolutionError, Solution, SolutionStatus, SolverModel,
    Variable, WithInitialSolution, WithMipGap, WithTimeLimit,
};
use keel_model::rules::overcommit_limit;
use keel_model::{HostId, Resource, Resources, VmId};

#[cfg(feature = "highs")]
use good_lp::highs as backend;
#[cfg(not(feature = "highs"))]
use good_lp::microlp as backend;

/// Relative slack when checking amounts against limits.
pub(super) const CHECK_TOLERANCE: f64 = 1e-6;

/// Per host: limits on CPU, memory, disk and network demand, then on
/// configured CPU and memory (overcommit); `None` = not constrained.
pub(super) type Limits = [Option<f64>; 6];

/// A VM or a whole affinity group, placed as one.
pub(super) struct Unit {
    /// Its VMs (indices).
    pub members: Vec<usize>,
    /// Summed effective demand.
    pub demand: Resources,
    /// Summed configured size.
    pub size: Resources,
}

impl Unit {
    /// Demand and size in [`Limits`] order.
    pub fn amounts(&self) -> [f64; 6] {
        amounts(self.demand, self.size)
    }
}

/// Groups VMs into units: affinity groups (merged where they share a VM)
/// and singletons. Returns the units and each VM's unit.
pub(super) fn build_units(
    input: &BalanceInput<'_>,
    demand: &[Resources],
) -> (Vec<Unit>, Vec<usize>) {
    let n = input.cluster.vms.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut v: usize) -> usize {
        while parent[v] != v {
            parent[v] = parent[parent[v]];
            v = parent[v];
        }
        v
    }
    for group in &input.rules.affinity_groups {
        for pair in group.windows(2) {
            let a = root(&mut parent, pair[0].index());
            let b = root(&mut parent, pair[1].index());
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut unit_of_root = vec![usize::MAX; n];
    let mut unit_of = vec![0; n];
    let mut units: Vec<Unit> = Vec::new();
    for v in 0..n {
        let r = root(&mut parent, v);
        if unit_of_root[r] == usize::MAX {
            unit_of_root[r] = units.len();
            units.push(Unit {
                members: Vec::new(),
                demand: Resources::ZERO,
                size: Resources::ZERO,
            });
        }
        let u = unit_of_root[r];
        unit_of[v] = u;
        units[u].members.push(v);
        units[u].demand += demand[v];
        units[u].size += input.cluster.vms[v].size;
    }
    (units, unit_of)
}

/// The limits a host of `capacity` imposes at `target` load.
pub(super) fn host_limits(capacity: &Resources, target: f64, input: &BalanceInput<'_>) -> Limits {
    let mut out = [None; 6];
    for (i, r) in Resource::ALL.into_iter().enumerate() {
        let c = capacity.get(r);
        if c > 0.0 || matches!(r, Resource::Cpu | Resource::Memory) {
            out[i] = Some(target * c);
        }
    }
    let oc = overcommit_limit(capacity, &input.rules.overcommit);
    out[4] = Some(oc.cpu_cores);
    out[5] = Some(oc.memory_bytes);
    out
}

/// Demand `d` and configured size `s` in [`Limits`] order.
pub(super) fn amounts(d: Resources, s: Resources) -> [f64; 6] {
    [
        d.cpu_cores,
        d.memory_bytes,
        d.disk_bytes_per_second,
        d.network_bytes_per_second,
        s.cpu_cores,
        s.memory_bytes,
    ]
}

/// Whether `amounts` stay within `limits` (with [`CHECK_TOLERANCE`] slack).
pub(super) fn within(limits: &Limits, amounts: [f64; 6]) -> bool {
    limits
        .iter()
        .zip(amounts)
        .all(|(l, a)| l.is_none_or(|l| a <= 0.0 || a <= l + CHECK_TOLERANCE * l.abs()))
}

/// The pieces the MIP is built from.
pub(super) struct Model<'a> {
    /// Per VM: its host before the plan (in-flight VMs: their destination).
    pub current: &'a [HostId],
    /// The units.
    pub units: &'a [Unit],
    /// Per VM: its unit.
    pub unit_of: &'a [usize],
    /// Per unit: (host index, objective cost) of each host it may take.
    pub candidates: &'a [Vec<(usize, f64)>],
    /// Per host: its limits.
    pub limits: &'a [Limits],
    /// Anti-affinity groups.
    pub anti_affinity: &'a [Vec<VmId>],
}

/// Valid inequalities that tighten the LP relaxation (without them microlp
/// takes minutes to prove that an overloaded host needs k departures, not
/// a fraction of one). Let `U_h` be the units with a member on host `h`
/// now. Whatever arrives, the units of `U_h` that stay must fit within each
/// of `h`'s limits on their own, so at least `k_h` of them leave, where
/// `k_h` is, for the tightest limit, how many must go when the largest go
/// first. Returns `(h, U_h, |U_h| - k_h)` for every host with `k_h > 0`:
/// at most that many of `U_h` stay.
fn departure_bounds(model: &Model<'_>) -> Vec<(usize, Vec<usize>, usize)> {
    let mut here: Vec<Vec<usize>> = vec![Vec::new(); model.limits.len()];
    for (u, unit) in model.units.iter().enumerate() {
        let mut hosts: Vec<usize> = unit
            .members
            .iter()
            .map(|&v| model.current[v].index())
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        for h in hosts {
            here[h].push(u);
        }
    }
    let mut out = Vec::new();
    for (h, set) in here.into_iter().enumerate() {
        let mut leave = 0;
        for (k, limit) in model.limits[h].iter().enumerate() {
            let Some(limit) = *limit else { continue };
            let mut a: Vec<f64> = set.iter().map(|&u| model.units[u].amounts()[k]).collect();
            a.sort_unstable_by(|x, y| y.total_cmp(x));
            let mut total: f64 = a.iter().sum();
            let mut gone = 0;
            let fits = |t: f64| t <= 0.0 || t <= limit + CHECK_TOLERANCE * limit.abs();
            while !fits(total) && gone < a.len() {
                total -= a[gone];
                gone += 1;
            }
            leave = leave.max(gone);
        }
        if leave > 0 {
            let stay_max = set.len() - leave;
            out.push((h, set, stay_max));
        }
    }
    out
}

/// Per unit: (host index, variable) of each candidate host.
type UnitVars = Vec<Vec<(usize, Variable)>>;

#[cfg(feature = "highs")]
type Problem = good_lp::solvers::highs::HighsProblem;
#[cfg(not(feature = "highs"))]
type Problem = good_lp::solvers::microlp::MicroLpProblem;

/// The model as a solver problem: binary (or, for the relaxation,
/// continuous 0..=1) variables per unit and candidate host, their objective,
/// and every row. Returns the problem, the variables per unit, and the
/// objective expression.
fn build(
    model: &Model<'_>,
    config: &ExactConfig,
    binary: bool,
    hint: Option<&[usize]>,
) -> Result<(Problem, UnitVars), ExactError> {
    let (units, limits) = (model.units, model.limits);
    let mut vars = ProblemVariables::new();
    let mut y: UnitVars = Vec::with_capacity(units.len());
    let mut on_host: Vec<Vec<(usize, Variable)>> = vec![Vec::new(); limits.len()];
    let mut objective = Expression::from(0.0);
    for (u, hosts) in model.candidates.iter().enumerate() {
        let mut row = Vec::with_capacity(hosts.len());
        for &(h, cost) in hosts {
            let def = if binary {
                variable().binary()
            } else {
                variable().clamp(0.0, 1.0)
            };
            let var = vars.add(def);
            if cost != 0.0 {
                objective += cost * var;
            }
            row.push((h, var));
            on_host[h].push((u, var));
        }
        y.push(row);
    }
    let solver_error = |e: &dyn std::fmt::Display| ExactError::Solver {
        message: e.to_string(),
    };
    let mut problem = vars
        .minimise(objective)
        .using(backend)
        .with_time_limit(config.time_limit_seconds)
        .with_mip_gap(0.0)
        .map_err(|e| solver_error(&e))?;
    if let Some(hint) = hint {
        let values = y.iter().zip(hint).flat_map(|(row, &chosen)| {
            row.iter()
                .map(move |&(h, v)| (v, if h == chosen { 1.0 } else { 0.0 }))
        });
        problem = problem.with_initial_solution(values);
    }
    for row in &y {
        let sum: Expression = row.iter().map(|&(_, v)| v).sum();
        problem.add_constraint(sum.eq(1.0));
    }
    for (h, terms) in on_host.iter().enumerate() {
        for (k, limit) in limits[h].iter().enumerate() {
            let Some(limit) = *limit else { continue };
            if !(limit.is_finite() && limit > 0.0) {
                // Infinite: never binds. Zero: only zero amounts were admitted.
                continue;
            }
            let coef = |u: usize| units[u].amounts()[k] / limit;
            if terms.iter().map(|&(u, _)| coef(u)).sum::<f64>() <= 1.0 {
                continue;
            }
            let row: Expression = terms
                .iter()
                .filter(|&&(u, _)| coef(u) > 0.0)
                .map(|&(u, v)| coef(u) * v)
                .sum();
            problem.add_constraint(row.leq(1.0));
        }
    }
    for (h, set, stay_max) in departure_bounds(model) {
        let row: Expression = on_host[h]
            .iter()
            .filter(|(u, _)| set.binary_search(u).is_ok())
            .map(|&(_, v)| v)
            .sum();
        problem.add_constraint(row.leq(stay_max as f64));
    }
    for group in model.anti_affinity {
        for h in 0..limits.len() {
            let mut row = Expression::from(0.0);
            let mut count = 0;
            for vm in group {
                let u = model.unit_of[vm.index()];
                if let Some(&(_, var)) = y[u].iter().find(|&&(hh, _)| hh == h) {
                    row += var;
                    count += 1;
                }
            }
            if count > 1 {
                problem.add_constraint(row.leq(1.0));
            }
        }
    }
    Ok((problem, y))
}

fn map_error(e: ResolutionError, config: &ExactConfig) -> ExactError {
    match e {
        ResolutionError::Infeasible => ExactError::Infeasible {
            target: config.target_max_load,
        },
        // microlp: "Time limit reached before finding a feasible solution";
        // HiGHS: "NoSolutionFound" after any limit.
        ResolutionError::Other(m) if m.contains("ime limit") || m == "NoSolutionFound" => {
            ExactError::TimeLimit {
                seconds: config.time_limit_seconds,
            }
        }
        other => ExactError::Solver {
            message: other.to_string(),
        },
    }
}

/// Total cost of `choice` (host index per unit).
fn cost_of(model: &Model<'_>, choice: &[usize]) -> f64 {
    model
        .candidates
        .iter()
        .zip(choice)
        .map(|(c, &h)| c.iter().find(|&&(hh, _)| hh == h).map_or(0.0, |&(_, w)| w))
        .sum()
}

/// Solves the model: each unit's host index, and whether it is proved optimal.
///
/// For [`Objective::Migrations`] the objective is a whole number, so the
/// LP relaxation's value rounded up is a lower bound: it is solved first
/// (with the same time limit), added as a row, and if the warm-start
/// heuristic already meets it, that placement is returned as optimal
/// without branching.
pub(super) fn solve(
    model: &Model<'_>,
    config: &ExactConfig,
) -> Result<(Vec<usize>, bool), ExactError> {
    let hint = warm::start(model);
    let mut floor = None;
    if config.objective == Objective::Migrations {
        let (relaxed, y) = build(model, config, false, None)?;
        let solution = relaxed.solve().map_err(|e| map_error(e, config))?;
        let lp: f64 = model
            .candidates
            .iter()
            .zip(&y)
            .flat_map(|(c, row)| c.iter().zip(row))
            .map(|(&(_, w), &(_, v))| w * solution.value(v))
            .sum();
        let bound = (lp - 1e-6).ceil().max(0.0);
        if let Some(hint) = &hint {
            if cost_of(model, hint) <= bound + 1e-9 {
                return Ok((hint.clone(), true));
            }
        }
        floor = Some(bound);
    }
    let (mut problem, y) = build(model, config, true, hint.as_deref())?;
    if let Some(bound) = floor.filter(|&b| b > 0.0) {
        let objective: Expression = model
            .candidates
            .iter()
            .zip(&y)
            .flat_map(|(c, row)| c.iter().zip(row))
            .filter(|((_, w), _)| *w != 0.0)
            .map(|(&(_, w), &(_, v))| w * v)
            .sum();
        problem.add_constraint(objective.geq(bound));
    }
    let solution = problem.solve().map_err(|e| map_error(e, config))?;
    let optimal = matches!(solution.status(), SolutionStatus::Optimal);
    let mut choice = Vec::with_capacity(y.len());
    for (u, row) in y.iter().enumerate() {
        let best = row
            .iter()
            .map(|&(h, v)| (h, solution.value(v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((h, value)) if value > 0.5 => choice.push(h),
            _ => {
                return Err(ExactError::Solver {
                    message: format!("unit {u} was assigned to no host"),
                })
            }
        }
    }
    Ok((choice, optimal))
}
