//! The check before acting: a plan (or what is left of it) is replayed by
//! the independent plan checker (`keel_policy::balance::validate`) against
//! the latest observation, before its first move and again before each
//! wave. A plan that no longer holds is refused with the reason and never
//! partly applied blindly.

use crate::control_loop::NamedMove;
use keel_model::{Cluster, CompiledRules};
use keel_policy::balance::validate::{check_plan, PlanViolation};
use keel_policy::balance::waves::Concurrency;
use keel_policy::balance::{
    BalanceInput, HostLoads, Imbalance, Plan, PlannedMove, ResourceWeights,
};

/// Why a plan was refused before (part of) it ran.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanRefusal {
    /// A VM the plan moves is no longer in the cluster.
    #[error("VM {vm} is gone")]
    VmGone {
        /// The VM.
        vm: String,
    },
    /// A host the plan names is no longer in the cluster.
    #[error("host {host} is gone (move of {vm})")]
    HostGone {
        /// The VM moved.
        vm: String,
        /// The host.
        host: String,
    },
    /// A VM is no longer where the plan found it.
    #[error("VM {vm} is on {actual}, the plan moves it from {planned}")]
    Moved {
        /// The VM.
        vm: String,
        /// Where it is.
        actual: String,
        /// Where the plan expected it.
        planned: String,
    },
    /// The rules in force no longer allow the plan (a host in
    /// maintenance, a changed rule, capacity taken...).
    #[error("the plan no longer holds: {reason}")]
    Violation {
        /// The checker's finding, with names.
        reason: String,
        /// The checker's finding.
        #[source]
        violation: PlanViolation,
    },
    /// The rules do not fit the cluster as observed now.
    #[error("the rules no longer fit the cluster: {0}")]
    Rules(String),
    /// The cluster could not be observed to check the plan.
    #[error("the cluster could not be observed to check the plan: {0}")]
    Unobserved(String),
}

/// Checks `moves` (the part of a plan still to run, in wave order) on
/// `cluster` (the latest observation, current estimates) under `rules`.
pub fn check_moves(
    cluster: &Cluster,
    rules: &CompiledRules,
    moves: &[NamedMove],
    limits: Concurrency,
) -> Result<(), PlanRefusal> {
    let mut planned = Vec::with_capacity(moves.len());
    for m in moves {
        let vm = cluster
            .vm_id(&m.vm)
            .ok_or_else(|| PlanRefusal::VmGone { vm: m.vm.clone() })?;
        let host = |name: &str| {
            cluster.host_id(name).ok_or_else(|| PlanRefusal::HostGone {
                vm: m.vm.clone(),
                host: name.to_string(),
            })
        };
        let (from, to) = (host(&m.from)?, host(&m.to)?);
        let actual = cluster.host_of(vm);
        if actual != from {
            return Err(PlanRefusal::Moved {
                vm: m.vm.clone(),
                actual: cluster.hosts[actual.index()].name.clone(),
                planned: m.from.clone(),
            });
        }
        planned.push(PlannedMove {
            vm,
            from,
            to,
            wave: m.wave,
            reason: m.reason.clone(),
            imbalance_reduction: m.imbalance_reduction,
            cost_seconds: m.cost_seconds,
            migrated_bytes: m.migrated_bytes,
        });
    }
    let imbalance = Imbalance::of(&HostLoads::new(cluster), &ResourceWeights::default(), rules);
    let plan = Plan {
        moves: planned,
        ..Plan::empty(imbalance)
    };
    let input = BalanceInput {
        cluster,
        rules,
        in_flight: &[],
    };
    check_plan(&input, &plan, limits).map_err(|violation| PlanRefusal::Violation {
        reason: name_violation(cluster, &violation),
        violation,
    })
}

/// The checker's finding with VM and host names instead of indices.
fn name_violation(cluster: &Cluster, v: &PlanViolation) -> String {
    let vm = |i: u32| {
        cluster
            .vms
            .get(i as usize)
            .map_or_else(|| format!("#{i}"), |v| v.name.clone())
    };
    let host = |i: u32| {
        cluster
            .hosts
            .get(i as usize)
            .map_or_else(|| format!("#{i}"), |h| h.name.clone())
    };
    match v {
        PlanViolation::Capacity {
            host: h,
            resource,
            held,
            capacity,
            ..
        } => format!(
            "host {} would hold {held:.3e} {resource} of {capacity:.3e}",
            host(*h)
        ),
        PlanViolation::Forbidden {
            vm: i,
            host: h,
            rule,
            ..
        } => format!(
            "VM {} may not go to host {}, which {rule}",
            vm(*i),
            host(*h)
        ),
        PlanViolation::Overcommit {
            host: h, resource, ..
        } => format!(
            "host {} would exceed its {resource} overcommit ratio",
            host(*h)
        ),
        PlanViolation::AntiAffinity { host: h, .. } => {
            format!("an anti-affinity group would share host {}", host(*h))
        }
        other => other.to_string(),
    }
}
