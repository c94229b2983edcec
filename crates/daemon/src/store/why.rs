//! "Why did Keel move VM X?": each migration of one VM with the plan and
//! round that decided it and what that decision used, from the history
//! alone (so the answer survives restarts and can be replayed).

use super::plans::{action_row, bad_value, from_json, Action, ACTION_COLUMNS};
use super::{ms_back, Store, StoreError};
use crate::plans::{PlanState, Trigger};
use keel_control::MoveInputs;
use keel_policy::balance::MoveReason;
use serde::Serialize;

/// The plan (and control round) a migration belonged to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanContext {
    /// The plan.
    pub id: u64,
    /// What made it (a balancing round, maintenance).
    pub trigger: Trigger,
    /// Its state now.
    pub state: PlanState,
    /// When it was made, ms since the Unix epoch.
    pub created_ms: u64,
    /// The driver's clock at the round's observation, seconds.
    pub driver_time_seconds: f64,
}

/// Why the move was in the plan, and what the decision used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveDecision {
    /// Its wave.
    pub wave: u32,
    /// Evacuation, hard rule, overload or balance.
    pub reason: MoveReason,
    /// Benefit: imbalance (std-dev form) removed.
    pub imbalance_reduction: f64,
    /// Cost: estimated migration time, seconds.
    pub cost_seconds: f64,
    /// Cost: estimated bytes copied.
    pub migrated_bytes: f64,
    /// The inputs (absent for plans recorded before Keel kept them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<MoveInputs>,
}

/// One migration with its chain: round -> plan -> move -> inputs -> outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionWhy {
    /// The migration and its outcome.
    #[serde(flatten)]
    pub action: Action,
    /// Its plan.
    pub plan: PlanContext,
    /// Its decision (absent where the move is not recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<MoveDecision>,
}

impl Store {
    /// The newest `limit` migrations of `vm`, oldest first, each with its
    /// plan and decision.
    pub fn actions_of_vm(&self, vm: &str, limit: usize) -> Result<Vec<ActionWhy>, StoreError> {
        let columns: String = ACTION_COLUMNS
            .split(", ")
            .map(|c| format!("a.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        self.read(|c| {
            let mut q = c.prepare_cached(&format!(
                "SELECT * FROM (
                   SELECT {columns}, p.trigger, p.state, p.created_ms, p.driver_time_seconds,
                          m.wave, m.reason, m.imbalance_reduction, m.cost_seconds,
                          m.migrated_bytes, m.inputs
                   FROM actions a
                   JOIN plans p ON p.id = a.plan_id
                   LEFT JOIN plan_moves m ON m.plan_id = a.plan_id AND m.seq = a.seq
                   WHERE a.vm = ?1 ORDER BY a.id DESC LIMIT ?2)
                 ORDER BY id"
            ))?;
            let rows = q.query_map(rusqlite::params![vm, limit as i64], |r| {
                let trigger: String = r.get(12)?;
                let state: String = r.get(13)?;
                let action = action_row(r)?;
                let plan = PlanContext {
                    id: action.plan_id,
                    trigger: Trigger::parse(&trigger)
                        .ok_or_else(|| bad_value(12, "trigger", &trigger))?,
                    state: PlanState::parse(&state)
                        .ok_or_else(|| bad_value(13, "plan state", &state))?,
                    created_ms: ms_back(r.get(14)?),
                    driver_time_seconds: r.get(15)?,
                };
                let decision = match r.get::<_, Option<u32>>(16)? {
                    None => None,
                    Some(wave) => Some(MoveDecision {
                        wave,
                        reason: from_json(17, &r.get::<_, String>(17)?)?,
                        imbalance_reduction: r.get(18)?,
                        cost_seconds: r.get(19)?,
                        migrated_bytes: r.get(20)?,
                        inputs: r
                            .get::<_, Option<String>>(21)?
                            .map(|s| from_json(21, &s))
                            .transpose()?,
                    }),
                };
                Ok(ActionWhy {
                    action,
                    plan,
                    decision,
                })
            })?;
            rows.collect()
        })
    }
}
