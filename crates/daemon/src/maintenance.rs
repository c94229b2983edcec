//! Maintenance mode of a host: enter (the host is taken out of placement
//! and evacuated by a level-1 plan, executed whatever the automation level:
//! the operator asked for it) and leave. A host is safe to service when the
//! cluster view shows it empty (`safe_to_service`).

use crate::control::ControlLoop;
use crate::plans::{PlanState, Trigger};
use crate::service::{new_plan, DynDriver, Service, ServiceError};
use keel_policy::balance::{KeelBalancer, PlannerConfig};

impl Service {
    /// Puts `host` into maintenance and plans its evacuation at level 1
    /// (mandatory moves only). The plan is recorded as applying whatever
    /// the automation level (the operator asked for it): run
    /// [`Service::run_plan`] with the returned id to execute it. `None`
    /// when nothing has to move.
    pub fn enter_maintenance(&self, host: &str, who: &str) -> Result<Option<u64>, ServiceError> {
        let mut control = self.control();
        self.check_host(&mut control, host)?;
        if !control.rules().maintenance.iter().any(|h| h == host) {
            control.rules_mut().maintenance.push(host.to_string());
            self.remember(&control);
        }
        let mut evacuate = KeelBalancer {
            config: PlannerConfig {
                level: 1,
                ..self.tuning().planner
            },
        };
        let proposal = self.observed(control.propose_with(&mut evacuate))?;
        let view = self.view_of(&proposal, control.rules());
        let mut status = self.status_mut();
        status.view = Some(view);
        let id = if proposal.moves.is_empty() {
            None
        } else {
            let plan = new_plan(&proposal, Trigger::Maintenance, &control.effective_rules());
            let note = format!("{host} entered maintenance");
            Some(
                status
                    .plans
                    .add(plan, PlanState::Applying, self.clock.now_unix_ms(), &note),
            )
        };
        drop(status);
        id.into_iter().for_each(|id| self.persist(id));
        let detail = match id {
            Some(id) => format!("evacuation plan {id} ({} moves)", proposal.moves.len()),
            None => "nothing to evacuate".to_string(),
        };
        self.audit(who, "maintenance.enter", host, &detail);
        Ok(id)
    }

    /// Takes `host` out of maintenance; the next rounds may use it again.
    pub fn leave_maintenance(&self, host: &str, who: &str) -> Result<(), ServiceError> {
        let mut control = self.control();
        self.check_host(&mut control, host)?;
        control.rules_mut().maintenance.retain(|h| h != host);
        self.remember(&control);
        self.audit(who, "maintenance.leave", host, "");
        self.refresh_view(&mut control)
    }

    pub(crate) fn check_host(
        &self,
        control: &mut ControlLoop<DynDriver>,
        host: &str,
    ) -> Result<(), ServiceError> {
        let known = self
            .status()
            .view
            .as_ref()
            .is_some_and(|v| v.hosts.iter().any(|h| h.name == host));
        if known {
            return Ok(());
        }
        let observation = self.observe_now(control)?;
        if observation.hosts.iter().any(|h| h.name == host) {
            Ok(())
        } else {
            Err(ServiceError::UnknownHost(host.to_string()))
        }
    }
}
