//! One control iteration: observe -> estimate -> decide -> act -> report.

use keel_drivers::{usage_between, Driver, DriverError, MigrationRequest, Observation};
use keel_model::{Cluster, ClusterSnapshot, Rules, VmInfo, DEFAULT_SHARES};
use keel_policy::balance::demand::{DemandTracker, EstimatorConfig};
use keel_policy::balance::load::HostLoads;
use keel_policy::balance::{BalanceInput, Balancer, Imbalance, Plan, ResourceWeights};
use serde::Serialize;
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

    /// Observes and feeds the estimator without planning (a warm-up sample).
    pub fn sample(&mut self) -> Result<(), ControlError> {
        let observation = self.driver.observe().map_err(ControlError::Observe)?;
        self.record(observation);
        Ok(())
    }

    fn record(&mut self, observation: Observation) {
        if let Some(previous) = &self.previous {
            let usage = usage_between(previous, &observation);
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
        let observation = self.driver.observe().map_err(ControlError::Observe)?;
        self.record(observation.clone());
        let cluster = self.cluster_from(&observation)?;
        let rules = self
            .rules
            .compile(&cluster)
            .map_err(|e| ControlError::Rules(e.to_string()))?;
        let input = BalanceInput {
            cluster: &cluster,
            rules: &rules,
            in_flight: &[],
        };
        let plan: Plan = self
            .balancer
            .plan(&input, observation.time_seconds)
            .map_err(|e| ControlError::Plan(e.to_string()))?;
        let before = Imbalance::of(
            &HostLoads::new(&cluster),
            &ResourceWeights::default(),
            &rules,
        );
        let mut moves = Vec::with_capacity(plan.moves.len());
        for m in &plan.moves {
            let (vm, from, to) = (
                cluster.vms[m.vm.index()].name.clone(),
                cluster.hosts[m.from.index()].name.clone(),
                cluster.hosts[m.to.index()].name.clone(),
            );
            let request = MigrationRequest {
                vm: &vm,
                from: &from,
                to: &to,
                max_bandwidth_bytes_per_second: self.migration_bandwidth,
                timeout: self.migration_timeout,
            };
            let outcome = self.driver.migrate(&request);
            moves.push(MoveOutcome {
                vm: vm.clone(),
                from: from.clone(),
                to: to.clone(),
                wave: m.wave,
                seconds: outcome.as_ref().ok().map(|o| o.seconds),
                downtime_ms: outcome.as_ref().ok().and_then(|o| o.downtime_ms),
                error: outcome.err().map(|e| e.to_string()),
            });
        }
        Ok(IterationReport {
            time_seconds: observation.time_seconds,
            imbalance_before: before.std_dev,
            imbalance_after: plan.imbalance_after.std_dev,
            planned_moves: plan.moves.len(),
            moves,
        })
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
                    last_migrated_seconds: None,
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
}
