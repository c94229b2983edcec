//! Plans: ordered migrations with their reasons, costs and benefits.

use super::imbalance::Imbalance;
use keel_model::{HostId, Resources, VmId};
use serde::{Deserialize, Serialize};

/// Why a move is in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MoveReason {
    /// The source host is in maintenance.
    Evacuation,
    /// The VM breaks a hard rule where it is (named).
    HardRule {
        /// The rule.
        rule: String,
    },
    /// The source host's demand exceeds its capacity.
    Overload,
    /// The move reduces imbalance by more than it costs.
    Balance,
}

/// One migration of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedMove {
    /// The VM.
    pub vm: VmId,
    /// Its host before the move.
    pub from: HostId,
    /// Its host after.
    pub to: HostId,
    /// Moves of one wave run concurrently; wave k starts when wave k - 1 is done.
    pub wave: u32,
    /// Why.
    pub reason: MoveReason,
    /// Imbalance (std-dev form) before minus after this move.
    pub imbalance_reduction: f64,
    /// Estimated migration time, seconds.
    pub cost_seconds: f64,
    /// Estimated bytes copied.
    pub migrated_bytes: f64,
}

/// A mandatory move the planner could not make without breaking a rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unresolved {
    /// The VM.
    pub vm: VmId,
    /// Why it had to move and why it cannot.
    pub reason: String,
}

/// An ordered plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Moves in execution order (by wave).
    pub moves: Vec<PlannedMove>,
    /// Imbalance now.
    pub imbalance_before: Imbalance,
    /// Imbalance once every move is done.
    pub imbalance_after: Imbalance,
    /// Predicted load per host after the plan (demand / capacity).
    pub predicted_loads: Vec<Resources>,
    /// Mandatory moves that are impossible.
    pub unresolved: Vec<Unresolved>,
}

impl Plan {
    /// A plan that moves nothing.
    pub fn empty(imbalance: Imbalance) -> Self {
        Self {
            moves: Vec::new(),
            imbalance_before: imbalance,
            imbalance_after: imbalance,
            predicted_loads: Vec::new(),
            unresolved: Vec::new(),
        }
    }
}
