//! What ties the service to its history database: every plan change is
//! written through, every migration is recorded as started before the
//! driver is asked and given its outcome after, and at start the history
//! is read back and reconciled with the driver's reality.
//!
//! Restart semantics: the observed placement is the truth. An action that
//! was started and never finished (the daemon died meanwhile) is settled
//! as `done` if its VM is on the target, `interrupted` otherwise; it is
//! never repeated. A plan that was applying is marked `interrupted` and its
//! remaining moves are not executed: the next round (or an operator, in
//! manual mode) plans afresh from the observed placement.

use crate::control::{ActionRecorder, ControlLoop, Execution, MoveOutcome, NamedMove};
use crate::plans::{PlanBook, PlanState, MAX_PLANS};
use crate::service::{DynDriver, Service, ServiceError};
use crate::store::ActionOutcome;
use std::collections::HashMap;

/// What [`Service::warm_up`] found in the history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Plans read back.
    pub plans: usize,
    /// Highest plan id so far (the next plan gets a higher one).
    pub last_plan_id: u64,
    /// In-flight actions found on their VM's target: settled as done.
    pub actions_confirmed: usize,
    /// In-flight actions whose VM was elsewhere: settled as interrupted.
    pub actions_interrupted: usize,
    /// Plans that were applying: marked interrupted, not resumed.
    pub plans_interrupted: Vec<u64>,
}

impl Service {
    /// Writes plan `id` as it is now to the history; a failure is logged
    /// (the plan itself stands).
    pub(crate) fn persist(&self, id: u64) {
        let Ok(plan) = self.plan(id) else { return };
        if let Err(e) = self.store().save_plan(&plan) {
            tracing::warn!(plan = id, error = %e, "writing the plan to the history failed");
        }
    }

    /// Reads the plans back from the history, settles the actions that
    /// were in flight when the daemon stopped against the observed
    /// placement and marks the plans that were applying as interrupted.
    pub(crate) fn recover(
        &self,
        control: &mut ControlLoop<DynDriver>,
    ) -> Result<Recovery, ServiceError> {
        let store = self.store();
        let (plans, last_plan_id) = store.load_plans(MAX_PLANS)?;
        let applying: Vec<u64> = plans
            .iter()
            .filter(|p| p.state == PlanState::Applying)
            .map(|p| p.id)
            .collect();
        let mut report = Recovery {
            plans: plans.len(),
            last_plan_id,
            ..Recovery::default()
        };
        let unfinished = store.unfinished_actions()?;
        let now = self.now_unix_ms();
        if !unfinished.is_empty() {
            let observation = self.observe_now(control)?;
            let placement: HashMap<&str, &str> = observation
                .vms
                .iter()
                .map(|v| (v.name.as_str(), v.host.as_str()))
                .collect();
            for a in &unfinished {
                let actual = placement.get(a.vm.as_str()).copied().unwrap_or("nowhere");
                if actual == a.target {
                    store.settle(
                        a.plan_id,
                        a.seq as usize,
                        now,
                        ActionOutcome::Done,
                        None,
                        None,
                        None,
                    )?;
                    report.actions_confirmed += 1;
                } else {
                    let error = format!(
                        "interrupted by restart: {} is on {actual}, not on {}; not repeated",
                        a.vm, a.target
                    );
                    store.settle(
                        a.plan_id,
                        a.seq as usize,
                        now,
                        ActionOutcome::Interrupted,
                        None,
                        None,
                        Some(&error),
                    )?;
                    report.actions_interrupted += 1;
                }
            }
        }
        // Read again: the settled actions are now outcomes of their plans.
        let (plans, _) = store.load_plans(MAX_PLANS)?;
        let mut book = PlanBook::restore(plans, last_plan_id);
        for &id in &applying {
            let plan = book.get(id)?;
            let ok = plan.outcomes.iter().filter(|o| o.error.is_none()).count();
            let note = format!(
                "interrupted by restart: {ok} of {} moves done, {} not started; the rest is not executed (re-plan)",
                plan.moves.len(),
                plan.moves.len() - plan.outcomes.len()
            );
            let outcomes = plan.outcomes.clone();
            book.interrupt(id, outcomes, now, &note)?;
            store.save_plan(book.get(id)?)?;
            self.audit(
                "control-loop",
                "plan.interrupt",
                &format!("plan {id}"),
                &note,
            );
            report.plans_interrupted.push(id);
        }
        self.replace_plans(book);
        self.audit(
            "control-loop",
            "daemon.start",
            store.path(),
            &format!(
                "{} plans read back (last id {}), in-flight actions: {} confirmed on their target, {} interrupted; plans interrupted: {:?}",
                report.plans,
                report.last_plan_id,
                report.actions_confirmed,
                report.actions_interrupted,
                report.plans_interrupted
            ),
        );
        Ok(report)
    }

    /// Executes `moves` of plan `id` through the control loop (checked
    /// before each wave), each move recorded in the history as started
    /// before the driver is asked and with its outcome after. A move whose
    /// start cannot be recorded is not executed (a crash could otherwise
    /// repeat it unknowingly).
    pub(crate) fn execute_recorded(
        &self,
        control: &mut ControlLoop<DynDriver>,
        id: u64,
        moves: &[NamedMove],
    ) -> Execution {
        let mut recorder = StoreRecorder { service: self, id };
        control.execute_recorded(moves, &mut recorder)
    }
}

/// The history database as the control loop's [`ActionRecorder`].
struct StoreRecorder<'a> {
    service: &'a Service,
    id: u64,
}

impl ActionRecorder for StoreRecorder<'_> {
    fn begin(&mut self, seq: usize, planned: &NamedMove) -> Result<(), String> {
        let now = self.service.now_unix_ms();
        self.service
            .store()
            .begin_action(self.id, seq, planned, now)
            .map_err(|e| format!("recording its start failed: {e}"))
    }

    fn finish(&mut self, seq: usize, outcome: &MoveOutcome) {
        let now = self.service.now_unix_ms();
        if let Err(e) = self
            .service
            .store()
            .finish_action(self.id, seq, now, outcome)
        {
            tracing::warn!(plan = self.id, vm = %outcome.vm, error = %e, "recording a migration's outcome failed");
        }
    }
}
