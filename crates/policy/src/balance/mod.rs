//! Multi-resource load balancing: demand estimation, entitlement, imbalance,
//! the cost-benefit planner, initial placement, the exact (MIP) yardstick and
//! the peers' algorithms as baselines.
//!
//! Everything here is pure: a balancer reads a [`BalanceInput`] (the
//! validated cluster, its compiled rules, the migrations in flight) and the
//! current time, and returns a [`Plan`]. The simulator and the daemon drive
//! the same code.

pub mod baselines;
pub mod constraints;
pub mod cost;
pub mod demand;
pub mod entitlement;
pub mod exact;
pub mod imbalance;
pub mod load;
pub mod objective;
pub mod placement;
pub mod plan;
pub mod planner;
pub mod planner_config;
pub mod validate;
pub mod waves;

pub use imbalance::{Imbalance, ResourceWeights};
pub use load::HostLoads;
pub use plan::{MoveReason, Plan, PlannedMove, Unresolved};
pub use planner::{plan_to_target, KeelBalancer, PlannerConfig};

use crate::PolicyError;
use keel_model::{Cluster, CompiledRules, HostId, VmId};

/// A migration still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The VM.
    pub vm: VmId,
    /// Where it comes from.
    pub from: HostId,
    /// Where it goes.
    pub to: HostId,
}

/// What a balancer sees.
#[derive(Debug, Clone, Copy)]
pub struct BalanceInput<'a> {
    /// The cluster: hosts, VMs (with demand) and placement. A VM in flight
    /// is placed on its source.
    pub cluster: &'a Cluster,
    /// Compiled rules.
    pub rules: &'a CompiledRules,
    /// Migrations in flight.
    pub in_flight: &'a [InFlight],
}

/// A load balancer: Keel's planner or one of the peers' algorithms.
///
/// `plan` is called once per balancing round; a balancer may keep state
/// between rounds (Proxmox CRS counts rounds above its threshold).
pub trait Balancer {
    /// Short name (`keel`, `crs`, `proxlb`, `watcher`, `none`).
    fn name(&self) -> &'static str;

    /// The moves to start now, in order.
    fn plan(&mut self, input: &BalanceInput<'_>, now_seconds: f64) -> Result<Plan, PolicyError>;
}

/// The balancer that never moves anything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBalancer;

impl Balancer for NoBalancer {
    fn name(&self) -> &'static str {
        "none"
    }

    fn plan(&mut self, input: &BalanceInput<'_>, _now_seconds: f64) -> Result<Plan, PolicyError> {
        let loads = HostLoads::new(input.cluster);
        let imbalance = Imbalance::of(&loads, &ResourceWeights::default(), input.rules);
        Ok(Plan::empty(imbalance))
    }
}
