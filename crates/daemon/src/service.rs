//! The daemon's state: the control loop, the automation level, the plans,
//! the latest cluster view and the counters behind /metrics. Every method
//! is synchronous (it may block on the driver); the HTTP layer calls them
//! from blocking tasks. Lock order: the control loop, then the status.

use crate::clock::Clock;
use crate::control::{ControlError, ControlLoop, NamedMove, Proposal};
use crate::plans::{NewPlan, PlanBook, PlanError, PlanRecord, PlanState, Trigger, UnresolvedMove};
use crate::store::Store;
use crate::view::{ClusterView, Counters};
use keel_drivers::{
    Capabilities, Driver, DriverError, MigrationOutcome, MigrationRequest, Observation, Tunables,
};
use keel_model::Rules;
use keel_policy::balance::{KeelBalancer, PlannerConfig};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How much the daemon does on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Automation {
    /// Every plan is a recommendation an operator applies or rejects.
    #[default]
    Manual,
    /// Initial placement automatic (`POST /api/v1/placements` answers
    /// `place`), balancing recommended (plans wait for an operator).
    Partial,
    /// Plans are executed as soon as they are made.
    Full,
}

/// Settings of the service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceConfig {
    /// Automation level.
    pub automation: Automation,
    /// Planner settings (migration threshold `level` 1-5 and the rest).
    pub planner: PlannerConfig,
    /// Placement rules, maintenance hosts, overcommit.
    pub rules: Rules,
    /// Migration-cost inputs for VMs whose driver reports none.
    pub migration_defaults: keel_control::MigrationDefaults,
}

/// A driver behind a box, so the service is not generic.
pub struct DynDriver(pub Box<dyn Driver>);

impl Driver for DynDriver {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn observe(&mut self) -> Result<Observation, DriverError> {
        self.0.observe()
    }
    fn migrate(&mut self, request: &MigrationRequest<'_>) -> Result<MigrationOutcome, DriverError> {
        self.0.migrate(request)
    }
    fn runs_waves_concurrently(&self) -> bool {
        self.0.runs_waves_concurrently()
    }
    fn migrate_wave(
        &mut self,
        requests: &[MigrationRequest<'_>],
    ) -> Vec<Result<MigrationOutcome, DriverError>> {
        self.0.migrate_wave(requests)
    }
    fn apply_tunables(&mut self, vm: &str, tunables: &Tunables) -> Result<(), DriverError> {
        self.0.apply_tunables(vm, tunables)
    }
    fn cluster_rules(&self) -> Rules {
        self.0.cluster_rules()
    }
}

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Observing or planning failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The plan cannot change state as asked.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No host has this name.
    #[error("unknown host {0:?}")]
    UnknownHost(String),
    /// A placement request cannot be answered (bad request, not observed yet).
    #[error("placement: {0}")]
    Placement(String),
    /// No host can take the VM; each host's refusal is in the message.
    #[error("{0}")]
    NoHost(String),
    /// A run-time setting is out of range.
    #[error("setting {setting} = {value}: expected {expected}")]
    InvalidSetting {
        /// Which setting.
        setting: &'static str,
        /// The value asked for.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// New rules do not fit the observed cluster; the old ones stay.
    #[error("rules rejected, the rules in force are unchanged: {0}")]
    InvalidRules(String),
    /// New rules do not fit the observed cluster (the rule and item at
    /// fault named); the old ones stay.
    #[error("rules rejected, the rules in force are unchanged: {0}")]
    RulesDoNotFit(#[source] keel_model::RuleError),
    /// A rule of this kind and name exists already.
    #[error("a {kind} rule named {name:?} exists already")]
    RuleExists {
        /// Rule kind (`affinity`, `anti_affinity`, `vm_host`, `pin`).
        kind: &'static str,
        /// Rule name.
        name: String,
    },
    /// No rule of this kind has this name.
    #[error("no {kind} rule named {name:?}")]
    UnknownRule {
        /// Rule kind.
        kind: &'static str,
        /// Rule name.
        name: String,
    },
    /// The history database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The plan no longer holds (the cluster or the rules changed since it
    /// was made); it was rejected and, where something needs to move, a new
    /// plan proposed.
    #[error("plan {id} is stale: {refusal}; it was rejected{}", replanned.map(|n| format!(" and plan {n} proposed instead")).unwrap_or_default())]
    Stale {
        /// The plan.
        id: u64,
        /// Why it no longer holds.
        #[source]
        refusal: keel_control::PlanRefusal,
        /// The plan proposed instead, if any.
        replanned: Option<u64>,
    },
}

/// What one periodic round did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The plan made (or kept), if it moves anything.
    pub plan: Option<u64>,
    /// Its state after the round.
    pub state: Option<PlanState>,
    /// Whether the plan was made in this round (not kept from an earlier one).
    pub new_plan: bool,
}

pub(crate) struct Status {
    pub(crate) plans: PlanBook,
    pub(crate) view: Option<ClusterView>,
    pub(crate) counters: Counters,
}

/// The daemon's state, shared by the loop and the API.
pub struct Service {
    control: Mutex<ControlLoop<DynDriver>>,
    status: RwLock<Status>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Automation level and planner settings, changeable at run time
    /// (`crate::settings`). Lock order: after the control loop.
    pub(crate) tuning: RwLock<Tuning>,
    driver_name: &'static str,
    store: Store,
}

/// The settings an operator may change while the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tuning {
    pub(crate) automation: Automation,
    pub(crate) planner: PlannerConfig,
}

impl Service {
    /// A service over `driver`, planning with Keel's balancer under
    /// `config`, keeping its history in `store`.
    pub fn new(
        driver: Box<dyn Driver>,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
        store: Store,
    ) -> Self {
        let driver_name = driver.name();
        let balancer = KeelBalancer {
            config: config.planner,
        };
        let mut control = ControlLoop::new(DynDriver(driver), Box::new(balancer), config.rules);
        control.set_migration_defaults(config.migration_defaults);
        control.set_concurrency(concurrency_of(&config.planner));
        Self {
            control: Mutex::new(control),
            status: RwLock::new(Status {
                plans: PlanBook::new(),
                view: None,
                counters: Counters::default(),
            }),
            clock,
            tuning: RwLock::new(Tuning {
                automation: config.automation,
                planner: config.planner,
            }),
            driver_name,
            store,
        }
    }

    /// The automation level.
    pub fn automation(&self) -> Automation {
        self.tuning().automation
    }

    pub(crate) fn tuning(&self) -> Tuning {
        *self.tuning.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn control(&self) -> MutexGuard<'_, ControlLoop<DynDriver>> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> RwLockReadGuard<'_, Status> {
        self.status.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status_mut(&self) -> RwLockWriteGuard<'_, Status> {
        self.status.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Observes once, to give the demand estimator a first sample, reads
    /// the history back (plans; actions in flight at a crash settled
    /// against the observed placement, see [`crate::recovery`]) and builds
    /// the first cluster view.
    pub fn warm_up(&self) -> Result<crate::recovery::Recovery, ServiceError> {
        let mut control = self.control();
        self.observed(control.sample())?;
        let recovery = self.recover(&mut control)?;
        self.refresh_view(&mut control)?;
        Ok(recovery)
    }

    /// Replaces the plans (read back from the history at start).
    pub(crate) fn replace_plans(&self, plans: PlanBook) {
        self.status_mut().plans = plans;
    }

    pub(crate) fn observed<T>(&self, r: Result<T, ControlError>) -> Result<T, ServiceError> {
        if r.is_err() {
            self.status_mut().counters.driver_errors += 1;
        }
        Ok(r?)
    }

    /// The cluster as the driver sees it now (a driver error counted).
    pub(crate) fn observe_now(
        &self,
        control: &mut ControlLoop<DynDriver>,
    ) -> Result<Observation, ServiceError> {
        self.observed(
            control
                .driver_mut()
                .observe()
                .map_err(ControlError::Observe),
        )
    }

    pub(crate) fn refresh_view(
        &self,
        control: &mut ControlLoop<DynDriver>,
    ) -> Result<(), ServiceError> {
        let proposal = self.observed(control.look())?;
        let view = self.view_of(&proposal, control.rules());
        self.status_mut().view = Some(view);
        Ok(())
    }

    /// One periodic round: observe, estimate, plan; then, by automation
    /// level, store the plan as recommended or execute it.
    pub fn step(&self) -> Result<StepReport, ServiceError> {
        let mut control = self.control();
        let proposal = self.observed(control.propose())?;
        let view = self.view_of(&proposal, control.rules());
        let now = self.clock.now_unix_ms();
        let usage = control.take_usage();
        if !usage.is_empty() {
            // History is not worth stopping the loop for: log and go on.
            let recorded = self
                .store
                .record_round(now, &usage, &view.hosts, &view.imbalance);
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "recording the round's samples failed");
            }
        }
        let mut status = self.status_mut();
        status.view = Some(view);
        status.counters.iterations += 1;
        status.counters.record_plan_time(proposal.plan_seconds);
        if proposal.moves.is_empty() {
            return Ok(StepReport {
                plan: None,
                state: None,
                new_plan: false,
            });
        }
        // A driver that may not migrate now (Proxmox VE while its own CRS
        // rebalances) gets recommendations whatever the automation level.
        let may_act = control.driver_mut().capabilities().live_migration;
        if self.automation() != Automation::Full || !may_act {
            if let Some(same) = status
                .plans
                .recommended()
                .filter(|p| same_moves(&p.moves, &proposal.moves))
            {
                return Ok(StepReport {
                    plan: Some(same.id),
                    state: Some(PlanState::Recommended),
                    new_plan: false,
                });
            }
            let plan = new_plan(&proposal, Trigger::Balance, &control.effective_rules());
            let superseded = status.plans.recommended().map(|p| p.id);
            let id = status
                .plans
                .add(plan, PlanState::Recommended, now, "balancing round");
            drop(status);
            superseded.into_iter().for_each(|old| self.persist(old));
            self.persist(id);
            return Ok(StepReport {
                plan: Some(id),
                state: Some(PlanState::Recommended),
                new_plan: true,
            });
        }
        let plan = new_plan(&proposal, Trigger::Balance, &control.effective_rules());
        let id = status
            .plans
            .add(plan, PlanState::Applying, now, "full automation");
        let summary = status.plans.get(id).map(plan_summary).unwrap_or_default();
        drop(status);
        self.persist(id);
        self.audit(
            "control-loop",
            "plan.apply",
            &format!("plan {id}"),
            &summary,
        );
        let state = self.execute(&mut control, id, &proposal.moves)?;
        Ok(StepReport {
            plan: Some(id),
            state: Some(state),
            new_plan: true,
        })
    }

    fn execute(
        &self,
        control: &mut ControlLoop<DynDriver>,
        id: u64,
        moves: &[NamedMove],
    ) -> Result<PlanState, ServiceError> {
        let execution = self.execute_recorded(control, id, moves);
        // The view first: whoever sees the plan finished (API, dashboard)
        // sees the cluster after its moves, not the one before.
        let refreshed = self.refresh_view(control);
        let now = self.clock.now_unix_ms();
        let refused = execution.refused.as_ref().map(|r| r.to_string());
        let state = {
            let mut status = self.status_mut();
            status.counters.record_moves(&execution.outcomes);
            status
                .plans
                .finish(id, execution.outcomes, refused.as_deref(), now)?
        };
        self.persist(id);
        if let Some(why) = &refused {
            self.audit("control-loop", "plan.refused", &format!("plan {id}"), why);
        }
        refreshed?;
        Ok(state)
    }

    /// Marks a recommended plan as applying, after the independent plan
    /// check against a fresh observation (every VM where the plan found it,
    /// every host there, the rules in force and capacity still allowing
    /// each wave). A plan that no longer holds is rejected with the reason
    /// and a new plan is proposed at once. Run [`Service::run_plan`] next
    /// to execute it.
    pub fn begin_apply(&self, id: u64, who: &str) -> Result<PlanRecord, ServiceError> {
        let mut control = self.control();
        let moves = self.status().plans.get(id)?.moves.clone();
        self.status().plans.get(id).and_then(|p| {
            if p.state == PlanState::Recommended {
                Ok(())
            } else {
                Err(PlanError::NotRecommended { id, state: p.state })
            }
        })?;
        if let Err(refusal) = control.check_now(&moves) {
            let now = self.clock.now_unix_ms();
            let note = format!("stale, refused by the check before acting: {refusal}");
            self.status_mut().plans.reject(id, now, &note)?;
            self.persist(id);
            self.audit(
                who,
                "plan.refused",
                &format!("plan {id}"),
                &refusal.to_string(),
            );
            let replanned = self.replan(&mut control)?;
            return Err(ServiceError::Stale {
                id,
                refusal,
                replanned,
            });
        }
        let now = self.clock.now_unix_ms();
        let record = self
            .status_mut()
            .plans
            .start_applying(id, now, &format!("applied by {who}"))?
            .clone();
        self.persist(id);
        self.audit(
            who,
            "plan.apply",
            &format!("plan {id}"),
            &plan_summary(&record),
        );
        Ok(record)
    }

    /// Plans afresh (after a refusal) and keeps the plan as recommended,
    /// superseding the one recommended before. `None` when nothing needs
    /// to move.
    fn replan(&self, control: &mut ControlLoop<DynDriver>) -> Result<Option<u64>, ServiceError> {
        let proposal = self.observed(control.propose())?;
        let view = self.view_of(&proposal, control.rules());
        let now = self.clock.now_unix_ms();
        let mut status = self.status_mut();
        status.view = Some(view);
        if proposal.moves.is_empty() {
            return Ok(None);
        }
        let plan = new_plan(&proposal, Trigger::Balance, &control.effective_rules());
        let superseded = status.plans.recommended().map(|p| p.id);
        let id = status.plans.add(
            plan,
            PlanState::Recommended,
            now,
            "replanned after a refusal",
        );
        drop(status);
        superseded.into_iter().for_each(|old| self.persist(old));
        self.persist(id);
        Ok(Some(id))
    }

    /// Executes an applying plan (blocks on the driver) and records the outcome.
    pub fn run_plan(&self, id: u64) -> Result<PlanState, ServiceError> {
        let mut control = self.control();
        let moves = self.status().plans.get(id)?.moves.clone();
        self.execute(&mut control, id, &moves)
    }

    /// Rejects a recommended plan.
    pub fn reject(&self, id: u64, who: &str) -> Result<PlanRecord, ServiceError> {
        let now = self.clock.now_unix_ms();
        let mut status = self.status_mut();
        status
            .plans
            .reject(id, now, &format!("rejected by {who}"))?;
        let record = status.plans.get(id)?.clone();
        drop(status);
        self.persist(id);
        self.audit(
            who,
            "plan.reject",
            &format!("plan {id}"),
            &plan_summary(&record),
        );
        Ok(record)
    }

    /// Appends to the audit log; a failure is logged, not returned (the
    /// action itself happened).
    pub fn audit(&self, who: &str, action: &str, target: &str, detail: &str) {
        let now = self.clock.now_unix_ms();
        if let Err(e) = self.store.audit(now, who, action, target, detail) {
            tracing::warn!(error = %e, who, action, target, "writing the audit log failed");
        }
    }

    /// The history database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The latest cluster view (`None` before the first observation).
    pub fn cluster(&self) -> Option<ClusterView> {
        self.status().view.clone()
    }

    /// Every plan kept, oldest first.
    pub fn plans(&self) -> Vec<PlanRecord> {
        self.status().plans.all().cloned().collect()
    }

    /// One plan.
    pub fn plan(&self, id: u64) -> Result<PlanRecord, ServiceError> {
        Ok(self.status().plans.get(id)?.clone())
    }

    /// Prometheus text exposition of the daemon's metrics.
    pub fn metrics(&self) -> String {
        let status = self.status();
        crate::view::metrics_text(status.view.as_ref(), &status.counters, &status.plans)
    }

    /// The driver's short name.
    pub fn driver_name(&self) -> &'static str {
        self.driver_name
    }

    /// The clock's now, milliseconds since the Unix epoch.
    pub fn now_unix_ms(&self) -> u64 {
        self.clock.now_unix_ms()
    }
}

impl Service {
    pub(crate) fn view_of(&self, proposal: &Proposal, rules: &Rules) -> ClusterView {
        ClusterView::new(
            proposal,
            rules,
            self.driver_name,
            self.automation(),
            self.clock.now_unix_ms(),
        )
    }
}

/// The migration concurrency the planner plans with, which the check
/// before acting enforces too.
pub(crate) fn concurrency_of(planner: &PlannerConfig) -> keel_policy::balance::waves::Concurrency {
    keel_policy::balance::waves::Concurrency {
        per_host: planner.per_host_concurrency,
        per_cluster: planner.per_cluster_concurrency,
    }
}

fn plan_summary(plan: &PlanRecord) -> String {
    format!(
        "{} moves, imbalance {:.4} -> {:.4}",
        plan.moves.len(),
        plan.imbalance_before.std_dev,
        plan.imbalance_after.std_dev
    )
}

fn same_moves(a: &[NamedMove], b: &[NamedMove]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.vm == y.vm && x.from == y.from && x.to == y.to)
}

pub(crate) fn new_plan(proposal: &Proposal, trigger: Trigger, rules: &Rules) -> NewPlan {
    let mut applied: Vec<String> = rules
        .maintenance
        .iter()
        .map(|h| format!("maintenance: {h}"))
        .collect();
    let groups = [
        ("affinity", &rules.affinity),
        ("anti_affinity", &rules.anti_affinity),
        ("pin", &rules.pin),
    ];
    for (kind, list) in groups {
        applied.extend(list.iter().map(|r| format!("{kind}: {}", r.name)));
    }
    applied.extend(rules.vm_host.iter().map(|r| format!("vm_host: {}", r.name)));
    applied.push(format!(
        "overcommit: cpu {} memory {}",
        rules.overcommit.cpu, rules.overcommit.memory
    ));
    NewPlan {
        trigger,
        driver_time_seconds: proposal.time_seconds,
        imbalance_before: proposal.imbalance_before,
        imbalance_after: proposal.imbalance_after,
        rules: applied,
        moves: proposal.moves.clone(),
        unresolved: proposal
            .unresolved
            .iter()
            .map(|(vm, reason)| UnresolvedMove {
                vm: vm.clone(),
                reason: reason.clone(),
            })
            .collect(),
        plan_seconds: proposal.plan_seconds,
    }
}
