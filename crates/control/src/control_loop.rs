//! One control iteration: observe -> estimate -> decide -> check -> act ->
//! report. The driver's clock is the loop's clock: every time in here is
//! `Observation::time_seconds`, never the machine's.

use crate::check::PlanRefusal;
use crate::error::ControlError;
use crate::explain::{describe, explain, MoveInputs};
use crate::history::DemandHistory;
use crate::inputs::{MigrationDefaults, VmAllocation};
use keel_drivers::{usage_by_index, Driver, Observation};
use keel_model::{Cluster, ClusterSnapshot, Rules, VmInfo};
use keel_policy::balance::demand::EstimatorConfig;
use keel_policy::balance::load::HostLoads;
use keel_policy::balance::waves::Concurrency;
use keel_policy::balance::{BalanceInput, Balancer, Imbalance, MoveReason, Plan, ResourceWeights};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// What became of one planned move.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveOutcome {
    /// The VM.
    pub vm: String,
    /// From host.
    pub from: String,
    /// To host.
    pub to: String,
    /// Wave.
    pub wave: u32,
    /// Seconds the migration took, if it succeeded.
    pub seconds: Option<f64>,
    /// Downtime, milliseconds, if reported.
    pub downtime_ms: Option<f64>,
    /// The error, if it failed (the VM's fate is in the message).
    pub error: Option<String>,
}

/// One VM's measured usage between two observations.
#[derive(Debug, Clone, PartialEq)]
pub struct VmUsage {
    /// The VM.
    pub vm: String,
    /// Its host at the later observation.
    pub host: String,
    /// CPU cores, memory bytes, disk and network bytes per second.
    pub usage: keel_model::Resources,
}

/// What one iteration saw, decided and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IterationReport {
    /// Driver clock at observation, seconds.
    pub time_seconds: f64,
    /// Imbalance of the estimated demand before the plan.
    pub imbalance_before: f64,
    /// Imbalance the plan predicts after it.
    pub imbalance_after: f64,
    /// The plan, as made.
    pub planned_moves: usize,
    /// What happened to each move, in execution order.
    pub moves: Vec<MoveOutcome>,
    /// Why the rest of the plan was refused before running, if it was.
    pub refused: Option<String>,
    /// Wall time of the planning call alone, seconds.
    pub plan_seconds: f64,
}

/// One planned move, by names, with why it is in the plan, what it costs
/// and what the decision used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedMove {
    /// The VM.
    pub vm: String,
    /// Its host when planned.
    pub from: String,
    /// Its host after the move.
    pub to: String,
    /// Moves of one wave may run together; wave k after wave k - 1.
    pub wave: u32,
    /// Why (evacuation, hard rule, overload, balance).
    pub reason: MoveReason,
    /// Benefit: imbalance (std-dev form) before minus after this move.
    pub imbalance_reduction: f64,
    /// Cost: estimated migration time, seconds.
    pub cost_seconds: f64,
    /// Cost: estimated bytes copied.
    pub migrated_bytes: f64,
    /// The inputs of the decision (absent in plans recorded before Keel
    /// kept them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<MoveInputs>,
}

/// What one planning round decided, by names, before anything is done.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Driver clock at observation, seconds.
    pub time_seconds: f64,
    /// The observed cluster, with estimated demand (the planner's input).
    pub cluster: Cluster,
    /// The plan's moves, in execution order.
    pub moves: Vec<NamedMove>,
    /// Imbalance of the estimated demand now.
    pub imbalance_before: Imbalance,
    /// Imbalance the plan predicts once every move is done.
    pub imbalance_after: Imbalance,
    /// Mandatory moves that cannot be made: (VM, why).
    pub unresolved: Vec<(String, String)>,
    /// Wall time of the planning call alone, seconds.
    pub plan_seconds: f64,
}

/// What executing a plan did.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Each move that ran, in execution order.
    pub outcomes: Vec<MoveOutcome>,
    /// Why the plan (from the wave that did not run on) was refused.
    pub refused: Option<PlanRefusal>,
}

/// The control loop's state across iterations.
pub struct ControlLoop<D: Driver> {
    pub(crate) driver: D,
    balancer: Box<dyn Balancer + Send>,
    rules: Rules,
    history: DemandHistory,
    pub(crate) previous: Option<Observation>,
    /// The observation of the latest [`ControlLoop::look`], when newer than
    /// `previous` (what placement and rule checks decide on).
    looked: Option<Observation>,
    pub(crate) migration_timeout: Duration,
    pub(crate) migration_bandwidth: Option<f64>,
    /// Driver time of each VM's last successful migration (anti-ping-pong).
    pub(crate) last_migrated: HashMap<String, f64>,
    /// Usage measured at the latest observation, not yet taken.
    usage: Vec<VmUsage>,
    keep_usage: bool,
    allocation: HashMap<String, VmAllocation>,
    defaults: MigrationDefaults,
    pub(crate) limits: Concurrency,
    pub(crate) check_before_acting: bool,
    /// Demand per VM name that replaces the estimate (the simulator's
    /// clairvoyant oracle); VMs not named keep their estimate.
    demand_override: Option<HashMap<String, keel_model::Resources>>,
}

impl<D: Driver> ControlLoop<D> {
    /// A loop over `driver` planning with `balancer` under `rules`.
    pub fn new(driver: D, balancer: Box<dyn Balancer + Send>, rules: Rules) -> Self {
        Self {
            driver,
            balancer,
            rules,
            history: DemandHistory::new(EstimatorConfig::default())
                .expect("the default estimator configuration is valid"),
            previous: None,
            looked: None,
            migration_timeout: Duration::from_secs(120),
            migration_bandwidth: None,
            last_migrated: HashMap::new(),
            usage: Vec::new(),
            keep_usage: true,
            allocation: HashMap::new(),
            defaults: MigrationDefaults::default(),
            limits: Concurrency::default(),
            check_before_acting: true,
            demand_override: None,
        }
    }

    /// Plans with `demand` (per VM name) instead of the estimate until
    /// replaced; `None` goes back to the estimator. The estimator still
    /// records every sample.
    pub fn set_demand_override(&mut self, demand: Option<HashMap<String, keel_model::Resources>>) {
        self.demand_override = demand;
    }

    /// Uses `estimator` for demand (history starts afresh).
    pub fn with_estimator(mut self, estimator: EstimatorConfig) -> Result<Self, ControlError> {
        self.history = DemandHistory::new(estimator).map_err(ControlError::Estimator)?;
        Ok(self)
    }

    /// Caps each migration at `bytes_per_second` and gives up after `timeout`.
    pub fn with_migration_limits(
        mut self,
        bytes_per_second: Option<f64>,
        timeout: Duration,
    ) -> Self {
        self.migration_bandwidth = bytes_per_second;
        self.migration_timeout = timeout;
        self
    }

    /// Whether measured usage is kept for [`ControlLoop::take_usage`]
    /// (default yes; the simulator's replay has no store to give it to).
    pub fn keep_usage(mut self, keep: bool) -> Self {
        self.keep_usage = keep;
        self
    }

    /// The migration concurrency the plan check enforces (the planner's).
    pub fn set_concurrency(&mut self, limits: Concurrency) {
        self.limits = limits;
    }

    /// Whether plans are checked against a fresh observation before their
    /// first move and before each wave (default yes).
    pub fn set_check_before_acting(&mut self, check: bool) {
        self.check_before_acting = check;
    }

    /// The allocation policy per VM name (reservations, limits, shares):
    /// VMs not named get none, as `keel agent` gives them.
    pub fn set_allocation(&mut self, allocation: HashMap<String, VmAllocation>) {
        self.allocation = allocation;
    }

    /// Migration-cost inputs for VMs the driver reports none for.
    pub fn set_migration_defaults(&mut self, defaults: MigrationDefaults) {
        self.defaults = defaults;
    }

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The driver.
    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
    }

    /// The demand history.
    pub fn history(&self) -> &DemandHistory {
        &self.history
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The rules a round plans with: the operator's plus those the
    /// driver read from the cluster at its last observation.
    pub fn effective_rules(&self) -> Rules {
        with_cluster_rules(&self.rules, self.driver.cluster_rules())
    }

    /// The rules, to change (maintenance, affinity...); the next round uses them.
    pub fn rules_mut(&mut self) -> &mut Rules {
        &mut self.rules
    }

    /// Replaces the balancer (a new migration threshold level, say); the
    /// next round plans with it.
    pub fn set_balancer(&mut self, balancer: Box<dyn Balancer + Send>) {
        self.balancer = balancer;
    }

    /// The latest observation made by a round or a look.
    fn latest(&self) -> Option<Observation> {
        self.looked.clone().or_else(|| self.previous.clone())
    }

    /// Checks that `rules` fit the cluster as last observed (every VM and
    /// host they name exists, hard rules leave each VM a host). Before the
    /// first observation there is nothing to check against: accepted.
    pub fn check_rules(&mut self, rules: &Rules) -> Result<(), ControlError> {
        let Some(observation) = self.latest() else {
            return Ok(());
        };
        let cluster = self.cluster_from(&observation)?;
        with_cluster_rules(rules, self.driver.cluster_rules())
            .compile(&cluster)
            .map(|_| ())
            .map_err(ControlError::Rules)
    }

    /// The cluster as last observed (estimated demand, no new observation)
    /// and the rules in force, the cluster's own included: what initial
    /// placement decides on. `None` before the first observation.
    pub fn placement_input(&mut self) -> Result<Option<(ClusterSnapshot, Rules)>, ControlError> {
        let Some(observation) = self.latest() else {
            return Ok(None);
        };
        let cluster = self.cluster_from(&observation)?;
        Ok(Some((cluster.to_snapshot(), self.effective_rules())))
    }

    /// The usage measured since the previous observation, once: empty when
    /// no observation measured anything new since the last call.
    pub fn take_usage(&mut self) -> Vec<VmUsage> {
        std::mem::take(&mut self.usage)
    }

    /// Observes and feeds the estimator without planning (a warm-up sample).
    pub fn sample(&mut self) -> Result<(), ControlError> {
        let observation = self.driver.observe().map_err(ControlError::Observe)?;
        if self.record(&observation)? {
            self.previous = Some(observation);
            self.looked = None;
        }
        Ok(())
    }

    /// Feeds the estimator with the usage since the previous observation;
    /// `true` when `observation` is to become the base of the next rates.
    fn record(&mut self, observation: &Observation) -> Result<bool, ControlError> {
        if let Some(previous) = &self.previous {
            let usage = usage_by_index(previous, observation);
            if usage.is_empty() {
                // No time passed (or no VM in both): nothing to learn; keep
                // the earlier observation as the base of the next rates.
                return Ok(false);
            }
            self.history
                .record(
                    usage
                        .iter()
                        .map(|&(i, u)| (observation.vms[i].name.as_str(), u)),
                )
                .map_err(ControlError::Estimator)?;
            if self.keep_usage {
                self.usage = usage
                    .into_iter()
                    .map(|(i, usage)| VmUsage {
                        vm: observation.vms[i].name.clone(),
                        host: observation.vms[i].host.clone(),
                        usage,
                    })
                    .collect();
            }
        }
        Ok(true)
    }

    /// One iteration: observe, estimate, plan, check, execute wave by wave.
    pub fn iterate(&mut self) -> Result<IterationReport, ControlError> {
        let proposal = self.propose()?;
        let execution = self.execute_checked(&proposal.moves);
        Ok(IterationReport {
            time_seconds: proposal.time_seconds,
            imbalance_before: proposal.imbalance_before.std_dev,
            imbalance_after: proposal.imbalance_after.std_dev,
            planned_moves: proposal.moves.len(),
            moves: execution.outcomes,
            refused: execution.refused.map(|r| r.to_string()),
            plan_seconds: proposal.plan_seconds,
        })
    }

    /// Observes, estimates and plans with the loop's own balancer; executes nothing.
    pub fn propose(&mut self) -> Result<Proposal, ControlError> {
        let mut balancer = std::mem::replace(
            &mut self.balancer,
            Box::new(keel_policy::balance::NoBalancer),
        );
        let proposal = self.propose_with(balancer.as_mut());
        self.balancer = balancer;
        proposal
    }

    /// Observes, estimates and plans with `balancer` (an evacuation may plan
    /// at level 1 while the loop balances at another); executes nothing.
    pub fn propose_with(&mut self, balancer: &mut dyn Balancer) -> Result<Proposal, ControlError> {
        self.observe_and_plan(balancer, true)
    }

    /// The cluster as it is now, with the current estimates, planning
    /// nothing and not feeding the estimator (a look after a plan ran: the
    /// estimator gets one sample per round, whatever else observes).
    pub fn look(&mut self) -> Result<Proposal, ControlError> {
        self.observe_and_plan(&mut keel_policy::balance::NoBalancer, false)
    }

    fn observe_and_plan(
        &mut self,
        balancer: &mut dyn Balancer,
        feed_estimator: bool,
    ) -> Result<Proposal, ControlError> {
        let observation = self.driver.observe().map_err(ControlError::Observe)?;
        let time_seconds = observation.time_seconds;
        let keep = feed_estimator && self.record(&observation)?;
        let cluster = self.cluster_from(&observation)?;
        if keep {
            self.previous = Some(observation);
            self.looked = None;
        } else if !feed_estimator {
            self.looked = Some(observation);
        }
        let rules = self
            .effective_rules()
            .compile(&cluster)
            .map_err(ControlError::Rules)?;
        let input = BalanceInput {
            cluster: &cluster,
            rules: &rules,
            in_flight: &[],
        };
        let started = std::time::Instant::now();
        let plan: Plan = balancer
            .plan(&input, time_seconds)
            .map_err(ControlError::Plan)?;
        let plan_seconds = started.elapsed().as_secs_f64();
        let before = Imbalance::of(
            &HostLoads::new(&cluster),
            &ResourceWeights::default(),
            &rules,
        );
        let config = self.history.config();
        let estimators = (describe(&config.cpu), describe(&config.memory));
        let history = &self.history;
        let inputs = explain(
            &cluster,
            &plan.moves,
            |vm| history.samples(vm),
            estimators,
            balancer.name(),
        );
        let moves = plan
            .moves
            .iter()
            .zip(inputs)
            .map(|(m, inputs)| NamedMove {
                vm: cluster.vms[m.vm.index()].name.clone(),
                from: cluster.hosts[m.from.index()].name.clone(),
                to: cluster.hosts[m.to.index()].name.clone(),
                wave: m.wave,
                reason: m.reason.clone(),
                imbalance_reduction: m.imbalance_reduction,
                cost_seconds: m.cost_seconds,
                migrated_bytes: m.migrated_bytes,
                inputs: Some(inputs),
            })
            .collect();
        let unresolved = plan
            .unresolved
            .iter()
            .map(|u| (cluster.vms[u.vm.index()].name.clone(), u.reason.clone()))
            .collect();
        Ok(Proposal {
            time_seconds,
            cluster,
            moves,
            imbalance_before: before,
            imbalance_after: plan.imbalance_after,
            unresolved,
            plan_seconds,
        })
    }

    /// The observation as a cluster: estimated demand (memory and size as
    /// observed until the estimator has a sample), the allocation policy,
    /// and migration-cost inputs as reported or the configured defaults.
    pub(crate) fn cluster_from(
        &mut self,
        observation: &Observation,
    ) -> Result<Cluster, ControlError> {
        let vms = observation
            .vms
            .iter()
            .filter(|v| v.running)
            .map(|v| {
                let allocation = self.allocation.get(&v.name).copied().unwrap_or_default();
                VmInfo {
                    name: v.name.clone(),
                    host: v.host.clone(),
                    size: v.size,
                    demand: self
                        .demand_override
                        .as_ref()
                        .and_then(|d| d.get(&v.name).copied())
                        .or_else(|| self.history.estimate(&v.name))
                        .unwrap_or(v.size),
                    reservation: allocation.reservation,
                    limit: allocation.limit,
                    shares: allocation.shares,
                    memory_dirty_bytes_per_second: v
                        .memory_dirty_bytes_per_second
                        .unwrap_or(self.defaults.memory_dirty_bytes_per_second),
                    local_disk_bytes: v.local_disk_bytes.unwrap_or(self.defaults.local_disk_bytes),
                    last_migrated_seconds: self.last_migrated.get(&v.name).copied(),
                }
            })
            .collect();
        Cluster::new(ClusterSnapshot {
            time_seconds: observation.time_seconds,
            hosts: observation.hosts.clone(),
            vms,
        })
        .map_err(ControlError::Cluster)
    }
}

/// The operator's rules plus those the cluster holds (the driver's):
/// both kinds bind; overcommit stays the operator's.
fn with_cluster_rules(operator: &Rules, cluster: Rules) -> Rules {
    let mut rules = operator.clone();
    rules.affinity.extend(cluster.affinity);
    rules.anti_affinity.extend(cluster.anti_affinity);
    rules.vm_host.extend(cluster.vm_host);
    rules.pin.extend(cluster.pin);
    for host in cluster.maintenance {
        if !rules.maintenance.contains(&host) {
            rules.maintenance.push(host);
        }
    }
    rules
}

#[cfg(test)]
mod tests;
