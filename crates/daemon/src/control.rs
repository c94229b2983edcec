//! One control iteration: observe -> estimate -> decide -> act -> report.

use keel_drivers::{usage_between, Driver, DriverError, MigrationRequest, Observation};
use keel_model::{Cluster, ClusterSnapshot, Rules, VmInfo, DEFAULT_SHARES};
use keel_policy::balance::demand::{DemandTracker, EstimatorConfig};
use keel_policy::balance::load::HostLoads;
use keel_policy::balance::{BalanceInput, Balancer, Imbalance, MoveReason, Plan, ResourceWeights};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Why an iteration could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The driver failed to observe.
    #[error("observing the cluster: {0}")]
    Observe(#[source] DriverError),
    /// The observation is not a valid cluster (duplicate names...).
    #[error("the observed cluster is inconsistent: {0}")]
    Cluster(String),
    /// The rules do not fit the observed cluster.
    #[error("rules: {0}")]
    Rules(String),
    /// The balancer failed.
    #[error("planning: {0}")]
    Plan(String),
}

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
}

/// One planned move, by names, with why it is in the plan and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// The control loop's state across iterations.
pub struct ControlLoop<D: Driver> {
    driver: D,
    balancer: Box<dyn Balancer + Send>,
    rules: Rules,
    estimator: EstimatorConfig,
    tracker: Option<(Vec<String>, DemandTracker)>,
    previous: Option<Observation>,
    migration_timeout: Duration,
    migration_bandwidth: Option<f64>,
    /// Driver time of each VM's last successful migration (anti-ping-pong).
    last_migrated: HashMap<String, f64>,
    /// Usage measured at the latest observation, not yet taken.
    usage: Vec<VmUsage>,
}

impl<D: Driver> ControlLoop<D> {
    /// A loop over `driver` planning with `balancer` under `rules`.
    pub fn new(driver: D, balancer: Box<dyn Balancer + Send>, rules: Rules) -> Self {
        Self {
            driver,
            balancer,
            rules,
            estimator: EstimatorConfig::default(),
            tracker: None,
            previous: None,
            migration_timeout: Duration::from_secs(120),
            migration_bandwidth: None,
            last_migrated: HashMap::new(),
            usage: Vec::new(),
        }
    }

    /// Uses `estimator` for demand (default: [`EstimatorConfig::default`]).
    pub fn with_estimator(mut self, estimator: EstimatorConfig) -> Self {
        self.estimator = estimator;
        self.tracker = None;
        self
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

    /// The driver.
    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
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

    /// Checks that `rules` fit the cluster as last observed (every VM and
    /// host they name exists, hard rules leave each VM a host). Before the
    /// first observation there is nothing to check against: accepted.
    pub fn check_rules(&mut self, rules: &Rules) -> Result<(), ControlError> {
        let Some(observation) = self.previous.clone() else {
            return Ok(());
        };
        let cluster = self.cluster_from(&observation)?;
        with_cluster_rules(rules, self.driver.cluster_rules())
            .compile(&cluster)
            .map(|_| ())
            .map_err(|e| ControlError::Rules(e.to_string()))
    }

    /// The cluster as last observed (estimated demand, no new observation)
    /// and the rules in force, the cluster's own included: what initial
    /// placement decides on. `None` before the first observation.
    pub fn placement_input(
        &mut self,
    ) -> Result<Option<(keel_model::ClusterSnapshot, Rules)>, ControlError> {
        let Some(observation) = self.previous.clone() else {
            return Ok(None);
        };
        let cluster = self.cluster_from(&observation)?;
        let rules = with_cluster_rules(&self.rules, self.driver.cluster_rules());
        Ok(Some((cluster.to_snapshot(), rules)))
    }

    /// The usage measured since the previous observation, once: empty when
    /// no observation measured anything new since the last call.
    pub fn take_usage(&mut self) -> Vec<VmUsage> {
        std::mem::take(&mut self.usage)
    }

    /// Observes and feeds the estimator without planning (a warm-up sample).
    pub fn sample(&mut self) -> Result<(), ControlError> {
        let observation = self.driver.observe().map_err(ControlError::Observe)?;
        self.record(observation);
        Ok(())
    }

    fn record(&mut self, observation: Observation) {
        if let Some(previous) = &self.previous {
            let usage = usage_between(previous, &observation);
            if usage.is_empty() {
                // No time passed (or no VM in both): nothing to learn; keep
                // the earlier observation as the base of the next rates.
                return;
            }
            let hosts: HashMap<&str, &str> = observation
                .vms
                .iter()
                .map(|v| (v.name.as_str(), v.host.as_str()))
                .collect();
            self.usage = usage
                .iter()
                .filter_map(|(vm, u)| {
                    let host = *hosts.get(vm.as_str())?;
                    Some(VmUsage {
                        vm: vm.clone(),
                        host: host.to_string(),
                        usage: *u,
                    })
                })
                .collect();
            let names: Vec<String> = observation.vms.iter().map(|v| v.name.clone()).collect();
            let rebuild = self
                .tracker
                .as_ref()
                .is_none_or(|(known, _)| *known != names);
            if rebuild {
                // The VM set changed: start estimates afresh.
                self.tracker = DemandTracker::new(names.len(), self.estimator)
                    .ok()
                    .map(|t| (names.clone(), t));
            }
            if let Some((known, tracker)) = &mut self.tracker {
                for (name, demand) in usage {
                    if let Some(i) = known.iter().position(|n| *n == name) {
                        let _ = tracker.push(i, demand);
                    }
                }
            }
        }
        self.previous = Some(observation);
    }

    /// One iteration: observe, estimate, plan, execute the plan wave by wave.
    pub fn iterate(&mut self) -> Result<IterationReport, ControlError> {
        let proposal = self.propose()?;
        let moves = self.execute(&proposal.moves);
        Ok(IterationReport {
            time_seconds: proposal.time_seconds,
            imbalance_before: proposal.imbalance_before.std_dev,
            imbalance_after: proposal.imbalance_after.std_dev,
            planned_moves: proposal.moves.len(),
            moves,
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
        let observation = self.driver.observe().map_err(ControlError::Observe)?;
        self.record(observation.clone());
        let cluster = self.cluster_from(&observation)?;
        let rules = with_cluster_rules(&self.rules, self.driver.cluster_rules())
            .compile(&cluster)
            .map_err(|e| ControlError::Rules(e.to_string()))?;
        let input = BalanceInput {
            cluster: &cluster,
            rules: &rules,
            in_flight: &[],
        };
        let started = std::time::Instant::now();
        let plan: Plan = balancer
            .plan(&input, observation.time_seconds)
            .map_err(|e| ControlError::Plan(e.to_string()))?;
        let plan_seconds = started.elapsed().as_secs_f64();
        let before = Imbalance::of(
            &HostLoads::new(&cluster),
            &ResourceWeights::default(),
            &rules,
        );
        let moves = plan
            .moves
            .iter()
            .map(|m| NamedMove {
                vm: cluster.vms[m.vm.index()].name.clone(),
                from: cluster.hosts[m.from.index()].name.clone(),
                to: cluster.hosts[m.to.index()].name.clone(),
                wave: m.wave,
                reason: m.reason.clone(),
                imbalance_reduction: m.imbalance_reduction,
                cost_seconds: m.cost_seconds,
                migrated_bytes: m.migrated_bytes,
            })
            .collect();
        let unresolved = plan
            .unresolved
            .iter()
            .map(|u| (cluster.vms[u.vm.index()].name.clone(), u.reason.clone()))
            .collect();
        Ok(Proposal {
            time_seconds: observation.time_seconds,
            cluster,
            moves,
            imbalance_before: before,
            imbalance_after: plan.imbalance_after,
            unresolved,
            plan_seconds,
        })
    }

    /// Executes `moves` wave by wave through the driver (the moves of a
    /// wave at once where the driver can; the next wave after the last
    /// ends). A failed move is recorded and the rest go on (each names its
    /// own source, so a move whose VM is no longer there fails on its own).
    pub fn execute(&mut self, moves: &[NamedMove]) -> Vec<MoveOutcome> {
        waves(moves)
            .flat_map(|wave| self.execute_wave(wave))
            .collect()
    }

    /// Executes the moves of one wave through the driver (at once where
    /// the driver can) and follows each to its end.
    pub fn execute_wave(&mut self, wave: &[NamedMove]) -> Vec<MoveOutcome> {
        let requests: Vec<MigrationRequest<'_>> = wave
            .iter()
            .map(|m| MigrationRequest {
                vm: &m.vm,
                from: &m.from,
                to: &m.to,
                max_bandwidth_bytes_per_second: self.migration_bandwidth,
                timeout: self.migration_timeout,
            })
            .collect();
        let results = self.driver.migrate_wave(&requests);
        let now = self.previous.as_ref().map_or(0.0, |o| o.time_seconds);
        wave.iter()
            .zip(results)
            .map(|(m, outcome)| {
                if outcome.is_ok() {
                    self.last_migrated.insert(m.vm.clone(), now);
                }
                MoveOutcome {
                    vm: m.vm.clone(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    wave: m.wave,
                    seconds: outcome.as_ref().ok().map(|o| o.seconds),
                    downtime_ms: outcome.as_ref().ok().and_then(|o| o.downtime_ms),
                    error: outcome.err().map(|e| e.to_string()),
                }
            })
            .collect()
    }

    /// The observation as a cluster, with estimated demand (memory and size
    /// as observed until the estimator has two samples).
    fn cluster_from(&mut self, observation: &Observation) -> Result<Cluster, ControlError> {
        let vms = observation
            .vms
            .iter()
            .filter(|v| v.running)
            .map(|v| {
                let estimate = self.tracker.as_mut().and_then(|(names, tracker)| {
                    names
                        .iter()
                        .position(|n| *n == v.name)
                        .map(|i| tracker.estimate(i))
                });
                VmInfo {
                    name: v.name.clone(),
                    host: v.host.clone(),
                    size: v.size,
                    demand: estimate.unwrap_or(v.size),
                    reservation: keel_model::Resources::ZERO,
                    limit: None,
                    shares: DEFAULT_SHARES,
                    memory_dirty_bytes_per_second: 0.0,
                    local_disk_bytes: 0.0,
                    last_migrated_seconds: self.last_migrated.get(&v.name).copied(),
                }
            })
            .collect();
        Cluster::new(ClusterSnapshot {
            time_seconds: observation.time_seconds,
            hosts: observation.hosts.clone(),
            vms,
        })
        .map_err(|e| ControlError::Cluster(e.to_string()))
    }
}

/// The moves split into their waves: runs of consecutive moves with the
/// same wave number (plans list moves wave by wave).
pub fn waves(moves: &[NamedMove]) -> impl Iterator<Item = &[NamedMove]> {
    moves.chunk_by(|a, b| a.wave == b.wave)
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
mod tests {
    use super::*;
    use keel_drivers::sim::{SimDriver, SimVm};
    use keel_model::{HostInfo, Resources};
    use keel_policy::balance::KeelBalancer;

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    #[test]
    fn a_hot_host_is_relieved_through_the_driver() {
        let host = |n: &str| HostInfo {
            name: n.into(),
            capacity: Resources::new(4.0, 16.0 * GIB, 0.0, 0.0),
            maintenance: false,
        };
        let vm = |n: &str, h: &str| SimVm {
            name: n.into(),
            host: h.into(),
            size: Resources::new(2.0, 2.0 * GIB, 0.0, 0.0),
            demand: vec![Resources::new(1.9, 1.0 * GIB, 0.0, 0.0)],
        };
        let driver = SimDriver::new(
            vec![host("a"), host("b")],
            vec![vm("v1", "a"), vm("v2", "a")],
            60.0,
        )
        .unwrap();
        let mut control =
            ControlLoop::new(driver, Box::new(KeelBalancer::default()), Rules::default());
        for _ in 0..3 {
            control.sample().unwrap();
            control.driver_mut().advance(60.0);
        }
        let report = control.iterate().unwrap();
        assert_eq!(report.moves.len(), 1, "{report:?}");
        assert!(report.moves[0].error.is_none());
        assert_eq!(report.moves[0].to, "b");
        assert!(report.imbalance_after < report.imbalance_before);
        let hosts: Vec<String> = control
            .driver_mut()
            .observe()
            .unwrap()
            .vms
            .iter()
            .map(|v| v.host.clone())
            .collect();
        assert_eq!(hosts.iter().filter(|h| *h == "a").count(), 1);
    }

    /// A host the driver reports in maintenance (Proxmox VE's HA
    /// maintenance, say) is planned for exactly like one in the operator's
    /// `rules.maintenance`: evacuated, never a target.
    #[test]
    fn a_host_the_driver_marks_in_maintenance_is_evacuated_like_the_operators() {
        let host = |n: &str, maintenance: bool| HostInfo {
            name: n.into(),
            capacity: Resources::new(8.0, 16.0 * GIB, 0.0, 0.0),
            maintenance,
        };
        let vm = |n: &str, h: &str, cpu: f64| SimVm {
            name: n.into(),
            host: h.into(),
            size: Resources::new(2.0, 2.0 * GIB, 0.0, 0.0),
            demand: vec![Resources::new(cpu, 1.0 * GIB, 0.0, 0.0)],
        };
        let vms = || {
            vec![
                vm("v1", "a", 0.5),
                vm("v2", "a", 0.5),
                vm("v3", "b", 1.9),
                vm("v4", "b", 1.9),
                vm("v5", "b", 1.9),
            ]
        };
        let plan = |flagged: bool, rules: Rules| {
            let hosts = vec![host("a", flagged), host("b", false), host("c", false)];
            let driver = SimDriver::new(hosts, vms(), 60.0).unwrap();
            let mut control = ControlLoop::new(driver, Box::new(KeelBalancer::default()), rules);
            for _ in 0..3 {
                control.sample().unwrap();
                control.driver_mut().advance(60.0);
            }
            let proposal = control.propose().unwrap();
            let mut moves: Vec<(String, String, String, MoveReason)> = proposal
                .moves
                .into_iter()
                .map(|m| (m.vm, m.from, m.to, m.reason))
                .collect();
            moves.sort_by(|x, y| x.0.cmp(&y.0));
            moves
        };
        let by_driver = plan(true, Rules::default());
        let by_operator = plan(
            false,
            Rules {
                maintenance: vec!["a".into()],
                ..Rules::default()
            },
        );
        assert_eq!(by_driver, by_operator);
        assert!(
            by_driver.iter().all(|(_, _, to, _)| to != "a"),
            "{by_driver:?}"
        );
        let evacuated: Vec<&str> = by_driver
            .iter()
            .filter(|(_, from, _, reason)| from == "a" && *reason == MoveReason::Evacuation)
            .map(|(vm, ..)| vm.as_str())
            .collect();
        assert_eq!(evacuated, ["v1", "v2"], "{by_driver:?}");
    }
}
