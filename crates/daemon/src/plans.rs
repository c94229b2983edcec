//! Plans as the daemon keeps them: an id, a state with its history, the
//! moves with their reasons (cost, benefit, rules) and what became of them.
//! Timestamps come from the [`crate::Clock`] the daemon is given.

use crate::control::{MoveOutcome, NamedMove};
use keel_policy::balance::Imbalance;
use serde::Serialize;
use std::collections::VecDeque;

/// Most plans kept in memory (oldest finished ones go first).
pub const MAX_PLANS: usize = 500;

/// Where a plan is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Made, waiting for an operator (manual and partial automation).
    Recommended,
    /// Being executed.
    Applying,
    /// Every move succeeded.
    Done,
    /// At least one move failed (each move's outcome says which and why).
    Failed,
    /// Rejected by an operator, superseded by a newer plan, or stale.
    Rejected,
    /// The daemon stopped (crashed, was killed) while applying it; after
    /// the restart its remaining moves are not executed (re-plan instead).
    Interrupted,
}

impl PlanState {
    /// Every state.
    pub const ALL: [PlanState; 6] = [
        PlanState::Recommended,
        PlanState::Applying,
        PlanState::Done,
        PlanState::Failed,
        PlanState::Rejected,
        PlanState::Interrupted,
    ];

    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recommended => "recommended",
            Self::Applying => "applying",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Interrupted => "interrupted",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What made a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The periodic balancing round.
    Balance,
    /// An operator put a host into maintenance (mandatory moves only).
    Maintenance,
}

impl Trigger {
    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Balance => "balance",
            Self::Maintenance => "maintenance",
        }
    }

    /// The trigger named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Balance, Self::Maintenance]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One change of state, with when and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// The new state.
    pub state: PlanState,
    /// When, milliseconds since the Unix epoch (the daemon's clock).
    pub at_unix_ms: u64,
    /// Why (who applied or rejected it, which plan superseded it...).
    pub note: String,
}

/// A plan and its history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanRecord {
    /// Unique and increasing, across restarts (kept in the history database).
    pub id: u64,
    /// Current state.
    pub state: PlanState,
    /// What made it.
    pub trigger: Trigger,
    /// When it was made, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// When its state last changed.
    pub updated_unix_ms: u64,
    /// Driver clock at the observation it was planned on, seconds.
    pub driver_time_seconds: f64,
    /// Imbalance before (both forms, R and L per resource).
    pub imbalance_before: Imbalance,
    /// Imbalance the plan predicts after it.
    pub imbalance_after: Imbalance,
    /// Total benefit: predicted imbalance reduction (std-dev form).
    pub benefit: f64,
    /// Total cost: estimated migration seconds, summed over moves.
    pub cost_seconds: f64,
    /// Rules in force that shaped the plan (maintenance hosts, rule names).
    pub rules: Vec<String>,
    /// The moves, in execution order, each with its reason, cost and benefit.
    pub moves: Vec<NamedMove>,
    /// Mandatory moves the planner could not make: VM and why.
    pub unresolved: Vec<UnresolvedMove>,
    /// What became of each move once executed.
    pub outcomes: Vec<MoveOutcome>,
    /// Every state it went through.
    pub history: Vec<Transition>,
    /// Planning time, seconds.
    pub plan_seconds: f64,
}

/// A mandatory move that cannot be made.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct UnresolvedMove {
    /// The VM.
    pub vm: String,
    /// Why it must move and why it cannot.
    pub reason: String,
}

impl PlanRecord {
    fn transition(&mut self, state: PlanState, at_unix_ms: u64, note: impl Into<String>) {
        self.state = state;
        self.updated_unix_ms = at_unix_ms;
        self.history.push(Transition {
            state,
            at_unix_ms,
            note: note.into(),
        });
    }
}

/// Why a plan cannot change state as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No plan has this id (or it was dropped as too old).
    #[error("no plan {0}")]
    NotFound(u64),
    /// Only a recommended plan can be applied or rejected.
    #[error("plan {id} is {state:?}, not recommended")]
    NotRecommended {
        /// The plan.
        id: u64,
        /// Its state.
        state: PlanState,
    },
}

/// A new plan's content, before it gets an id.
#[derive(Debug, Clone)]
pub struct NewPlan {
    /// What made it.
    pub trigger: Trigger,
    /// Driver clock, seconds.
    pub driver_time_seconds: f64,
    /// Imbalance now.
    pub imbalance_before: Imbalance,
    /// Imbalance after.
    pub imbalance_after: Imbalance,
    /// Rules that shaped it.
    pub rules: Vec<String>,
    /// Moves.
    pub moves: Vec<NamedMove>,
    /// Impossible mandatory moves.
    pub unresolved: Vec<UnresolvedMove>,
    /// Planning time, seconds.
    pub plan_seconds: f64,
}

/// The plans of this run, newest last.
#[derive(Debug, Default)]
pub struct PlanBook {
    plans: VecDeque<PlanRecord>,
    next_id: u64,
}

impl PlanBook {
    /// No plans yet; the first gets id 1.
    pub fn new() -> Self {
        Self {
            plans: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Plans read back from the history at a restart (oldest first); the
    /// next plan gets an id above `last_id` and above every one of them.
    pub fn restore(plans: Vec<PlanRecord>, last_id: u64) -> Self {
        let top = plans.iter().map(|p| p.id).max().unwrap_or(0).max(last_id);
        Self {
            plans: plans.into(),
            next_id: top + 1,
        }
    }

    /// Marks an applying plan interrupted (the daemon restarted while it
    /// ran), with the outcomes known of its moves.
    pub fn interrupt(
        &mut self,
        id: u64,
        outcomes: Vec<MoveOutcome>,
        now_unix_ms: u64,
        note: &str,
    ) -> Result<(), PlanError> {
        let plan = self.get_mut(id)?;
        plan.outcomes = outcomes;
        plan.transition(PlanState::Interrupted, now_unix_ms, note);
        Ok(())
    }

    /// Every plan kept, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &PlanRecord> {
        self.plans.iter()
    }

    /// One plan.
    pub fn get(&self, id: u64) -> Result<&PlanRecord, PlanError> {
        self.plans
            .iter()
            .find(|p| p.id == id)
            .ok_or(PlanError::NotFound(id))
    }

    fn get_mut(&mut self, id: u64) -> Result<&mut PlanRecord, PlanError> {
        self.plans
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or(PlanError::NotFound(id))
    }

    /// The recommended plan waiting for an operator, if any (at most one
    /// is: a new recommendation supersedes the previous one).
    pub fn recommended(&self) -> Option<&PlanRecord> {
        self.plans
            .iter()
            .rev()
            .find(|p| p.state == PlanState::Recommended)
    }

    /// Records `plan` in `state` (recommended or applying) and returns its id.
    /// A new recommendation rejects the previous one as superseded.
    pub fn add(&mut self, plan: NewPlan, state: PlanState, now_unix_ms: u64, note: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if state == PlanState::Recommended {
            for old in self
                .plans
                .iter_mut()
                .filter(|p| p.state == PlanState::Recommended)
            {
                old.transition(
                    PlanState::Rejected,
                    now_unix_ms,
                    format!("superseded by plan {id}"),
                );
            }
        }
        let benefit = plan.imbalance_before.std_dev - plan.imbalance_after.std_dev;
        let cost_seconds = plan.moves.iter().map(|m| m.cost_seconds).sum();
        self.plans.push_back(PlanRecord {
            id,
            state,
            trigger: plan.trigger,
            created_unix_ms: now_unix_ms,
            updated_unix_ms: now_unix_ms,
            driver_time_seconds: plan.driver_time_seconds,
            imbalance_before: plan.imbalance_before,
            imbalance_after: plan.imbalance_after,
            benefit,
            cost_seconds,
            rules: plan.rules,
            moves: plan.moves,
            unresolved: plan.unresolved,
            outcomes: Vec::new(),
            history: vec![Transition {
                state,
                at_unix_ms: now_unix_ms,
                note: note.to_string(),
            }],
            plan_seconds: plan.plan_seconds,
        });
        while self.plans.len() > MAX_PLANS {
            let Some(i) = self
                .plans
                .iter()
                .position(|p| !matches!(p.state, PlanState::Recommended | PlanState::Applying))
            else {
                break;
            };
            self.plans.remove(i);
        }
        id
    }

    /// Marks a recommended plan as applying (an operator asked for it).
    pub fn start_applying(
        &mut self,
        id: u64,
        now_unix_ms: u64,
        note: &str,
    ) -> Result<&PlanRecord, PlanError> {
        let plan = self.recommended_mut(id)?;
        plan.transition(PlanState::Applying, now_unix_ms, note);
        Ok(plan)
    }

    /// Rejects a recommended plan.
    pub fn reject(&mut self, id: u64, now_unix_ms: u64, note: &str) -> Result<(), PlanError> {
        self.recommended_mut(id)?
            .transition(PlanState::Rejected, now_unix_ms, note);
        Ok(())
    }

    /// Records the outcomes of an applying plan: done if every move
    /// succeeded, failed otherwise; rejected when the check before a wave
    /// refused the rest of it (`refused` says why; the moves before ran).
    pub fn finish(
        &mut self,
        id: u64,
        outcomes: Vec<MoveOutcome>,
        refused: Option<&str>,
        now_unix_ms: u64,
    ) -> Result<PlanState, PlanError> {
        let plan = self.get_mut(id)?;
        let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
        let (state, note) = match refused {
            Some(why) => (
                PlanState::Rejected,
                format!(
                    "refused by the check before acting after {} moves: {why}",
                    outcomes.len()
                ),
            ),
            None if failed == 0 => (PlanState::Done, format!("{} moves done", outcomes.len())),
            None => (
                PlanState::Failed,
                format!("{failed} of {} moves failed", outcomes.len()),
            ),
        };
        plan.outcomes = outcomes;
        plan.transition(state, now_unix_ms, note);
        Ok(state)
    }

    fn recommended_mut(&mut self, id: u64) -> Result<&mut PlanRecord, PlanError> {
        let plan = self.get_mut(id)?;
        if plan.state != PlanState::Recommended {
            return Err(PlanError::NotRecommended {
                id,
                state: plan.state,
            });
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_model::Resources;

    fn new_plan() -> NewPlan {
        let i = Imbalance {
            std_dev: 0.2,
            normalized: 0.1,
            per_resource_std_dev: Resources::ZERO,
            mean_load: Resources::ZERO,
            total_demand: Resources::ZERO,
        };
        NewPlan {
            trigger: Trigger::Balance,
            driver_time_seconds: 0.0,
            imbalance_before: i,
            imbalance_after: Imbalance { std_dev: 0.05, ..i },
            rules: vec![],
            moves: vec![],
            unresolved: vec![],
            plan_seconds: 0.001,
        }
    }

    #[test]
    fn lifecycle_and_superseding() {
        let mut book = PlanBook::new();
        let a = book.add(new_plan(), PlanState::Recommended, 10, "round");
        let b = book.add(new_plan(), PlanState::Recommended, 20, "round");
        assert_eq!(book.get(a).unwrap().state, PlanState::Rejected);
        assert_eq!(book.get(a).unwrap().history[1].note, "superseded by plan 2");
        assert_eq!(book.recommended().unwrap().id, b);
        assert!((book.get(b).unwrap().benefit - 0.15).abs() < 1e-12);
        assert!(matches!(
            book.start_applying(a, 30, "api"),
            Err(PlanError::NotRecommended { .. })
        ));
        book.start_applying(b, 30, "api").unwrap();
        assert_eq!(book.finish(b, vec![], None, 40).unwrap(), PlanState::Done);
        let p = book.get(b).unwrap();
        assert_eq!((p.created_unix_ms, p.updated_unix_ms), (20, 40));
        assert_eq!(p.history.len(), 3);
        assert_eq!(book.get(99), Err(PlanError::NotFound(99)));
    }

    #[test]
    fn old_finished_plans_are_dropped() {
        let mut book = PlanBook::new();
        for t in 0..(MAX_PLANS as u64 + 10) {
            book.add(new_plan(), PlanState::Recommended, t, "round");
        }
        assert_eq!(book.all().count(), MAX_PLANS);
        assert!(book.recommended().is_some());
    }
}
