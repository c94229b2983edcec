//! The simulator's balancing mode through the one control loop: a trace
//! replayed on identical hosts by the simulated body
//! ([`keel_drivers::sim::SimDriver`]), balanced by [`ControlLoop`] exactly
//! as `keel serve` runs it.
//!
//! The first observation (time 0) only feeds the estimator, as the
//! daemon's warm-up does. Then, every interval: the loop observes what the
//! body reports (CPU served plus run-queue wait, memory in use), estimates,
//! plans, checks the plan, and executes every wave; migrations take
//! `(memory + local disk) / bandwidth` seconds of virtual time, during which
//! the VM's memory is held on both hosts and it loses
//! `migration_cpu_degradation` of its CPU. A plan longer than an interval
//! holds the loop (the next round is the first tick after it ends), as in
//! the daemon. Contention is measured by the body ([`SimLedger`]), the
//! imbalance of actual demand at every tick here.

use crate::control_loop::ControlLoop;
use crate::error::ControlError;
use keel_drivers::sim::{DemandSource, SimDriver, SimLedger, SimMigrationModel, SimVmSpec};
use keel_model::{
    Cluster, ClusterSnapshot, CompiledRules, HostId, Overcommit, Resources, Rules, WorkloadTrace,
};
use keel_policy::balance::demand::EstimatorConfig;
use keel_policy::balance::{Balancer, HostLoads, Imbalance, ResourceWeights};
use keel_sim::balance::setup::{host_capacity, initial_cluster, ClusterSetup, TraceVms};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

mod oracle;
pub use oracle::{unmet_lower_bound, ClairvoyantDemand, ORACLE_HORIZON_SECONDS};

/// Demand per VM name a round plans with instead of the estimate, given
/// the round's time in seconds (VMs not named keep their estimate).
pub type DemandOracle<'a> = dyn Fn(f64) -> HashMap<String, Resources> + 'a;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const HOUR: f64 = 3600.0;

/// Settings of a balancing run.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceSimConfig {
    /// Cluster sizing.
    pub setup: ClusterSetup,
    /// Seconds between balancing rounds; `None` = the trace's sample interval.
    pub interval_seconds: Option<f64>,
    /// Bandwidth of one migration, bytes per second (default 1.25e9 = 10 Gbit/s).
    pub migration_bandwidth_bytes_per_second: f64,
    /// Fraction of its CPU a VM loses while it migrates (default 0.1, as CloudSim).
    pub migration_cpu_degradation: f64,
    /// How demand is estimated from the samples seen so far.
    pub estimator: EstimatorConfig,
}

impl BalanceSimConfig {
    /// Defaults for `hosts` hosts.
    pub fn new(hosts: usize) -> Self {
        Self {
            setup: ClusterSetup::new(hosts),
            interval_seconds: None,
            migration_bandwidth_bytes_per_second: 1.25e9,
            migration_cpu_degradation: 0.1,
            estimator: EstimatorConfig::default(),
        }
    }
}

/// Why a balancing run could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// No hosts to run on.
    #[error("the cluster has no hosts")]
    NoHosts,
    /// The balancing interval is not a positive number of seconds.
    #[error("balancing interval {0} s is not positive")]
    Interval(f64),
    /// The trace does not make a valid cluster.
    #[error("setting up the simulated cluster: {0}")]
    Cluster(#[source] keel_model::ClusterError),
    /// The simulated body refused the setup.
    #[error("setting up the simulated cluster: {0}")]
    Driver(#[source] keel_drivers::DriverError),
    /// The rules do not fit the cluster.
    #[error("setting up the simulated cluster: {0}")]
    Rules(#[source] keel_model::RuleError),
    /// A control round failed.
    #[error("control round at {time_seconds} s: {source}")]
    Control {
        /// Simulated time, seconds.
        time_seconds: f64,
        /// What failed.
        #[source]
        source: ControlError,
    },
}

/// One migration the loop completed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayMove {
    /// Simulated time of the round that planned it, seconds.
    pub round_seconds: f64,
    /// The VM.
    pub vm: String,
    /// From host.
    pub from: String,
    /// To host.
    pub to: String,
}

/// The figures of one balancing run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalanceReport {
    /// Balancer name.
    pub balancer: String,
    /// VMs.
    pub vms: usize,
    /// Hosts.
    pub hosts: usize,
    /// Capacity of each host.
    pub host_capacity: Resources,
    /// Balancing rounds (ticks, the warm-up included).
    pub rounds: usize,
    /// Simulated time, seconds.
    pub simulated_seconds: f64,
    /// Migrations started.
    pub migrations: u64,
    /// Bytes migrated, GiB.
    pub migrated_gib: f64,
    /// Mean over ticks of the normalised imbalance (0..1) of actual demand.
    pub mean_imbalance: f64,
    /// Mean over ticks of the std-dev imbalance of actual demand.
    pub mean_imbalance_std_dev: f64,
    /// Host-seconds with CPU demand or memory held above capacity.
    pub overload_host_seconds: f64,
    /// Fraction of CPU demand (core-seconds) not served.
    pub unmet_demand: f64,
    /// The fraction no placement could serve: per trace sample, total CPU
    /// demand above the cluster's total CPU capacity, summed, over the
    /// total demand (perfect spreading, free migrations).
    pub unmet_lower_bound: f64,
    /// CPU demand not served, core-hours.
    pub unmet_cpu_core_hours: f64,
    /// Memory held above hosts' memory, GiB-hours (swap or OOM in real life).
    pub memory_shortfall_gib_hours: f64,
    /// VM-hours with a VM served under 95 % of its CPU demand or on a host
    /// short of memory (DRS's unhappy VMs).
    pub vm_contention_hours: f64,
    /// Host-seconds with CPU demand or memory held above 90 %.
    pub hot_host_seconds: f64,
    /// Plans refused by the check before a wave (the rest not run).
    pub refused_plans: u64,
    /// Mean planning time per round, milliseconds.
    pub plan_ms_mean: f64,
    /// Longest planning time of a round, milliseconds.
    pub plan_ms_max: f64,
    /// Wall-clock time of the run, seconds.
    pub wall_seconds: f64,
    /// Every migration completed, in order (not printed).
    #[serde(skip)]
    pub moves: Vec<ReplayMove>,
    /// Refusals by reason, digits masked (not printed).
    #[serde(skip)]
    pub refusals: std::collections::BTreeMap<String, u64>,
}

/// A trace's demand as the body's [`DemandSource`] (last sample held).
struct TraceDemand {
    trace: Arc<WorkloadTrace>,
    vms: TraceVms,
}

impl DemandSource for TraceDemand {
    fn demand(&self, vm: usize, sample: usize) -> Resources {
        self.vms.demand(&self.trace, vm, sample)
    }
}

/// The simulated body for `trace` under `config`, with the cluster as the
/// simulator accounts it (actual demand filled in each tick) and its rules.
pub fn simulated_body(
    trace: &Arc<WorkloadTrace>,
    config: &BalanceSimConfig,
) -> Result<(SimDriver, Cluster, Rules), ReplayError> {
    if config.setup.hosts == 0 {
        return Err(ReplayError::NoHosts);
    }
    let vms = TraceVms::new(trace);
    let capacity = host_capacity(&config.setup, &vms, trace);
    let (hosts, vm_infos) = initial_cluster(&config.setup, &vms, capacity);
    let specs = vm_infos
        .iter()
        .map(|v| SimVmSpec {
            name: v.name.clone(),
            host: v.host.clone(),
            size: v.size,
            local_disk_bytes: v.local_disk_bytes,
        })
        .collect();
    let truth = Cluster::new(ClusterSnapshot {
        time_seconds: 0.0,
        hosts: hosts.clone(),
        vms: vm_infos,
    })
    .map_err(ReplayError::Cluster)?;
    let source = Arc::new(TraceDemand {
        trace: Arc::clone(trace),
        vms,
    });
    let body = SimDriver::from_source(hosts, specs, source, trace.interval_seconds)
        .map_err(ReplayError::Driver)?
        .with_migration_model(SimMigrationModel {
            bandwidth_bytes_per_second: Some(config.migration_bandwidth_bytes_per_second),
            cpu_degradation: config.migration_cpu_degradation,
        });
    // The hosts are sized for `cpu_overcommit` vCPUs per core: allow twice
    // that (at least the usual 4) so that rebalancing is not blocked by the
    // sizing itself; memory is not overcommitted.
    let rules = Rules {
        overcommit: Overcommit {
            cpu: (2.0 * config.setup.cpu_overcommit).max(4.0),
            memory: 1.0,
        },
        ..Rules::default()
    };
    Ok((body, truth, rules))
}

/// Runs `balancer` over `trace` through the control loop.
pub fn run_balance(
    trace: &Arc<WorkloadTrace>,
    config: &BalanceSimConfig,
    balancer: Box<dyn Balancer + Send>,
) -> Result<BalanceReport, ReplayError> {
    run_balance_with(trace, config, balancer, None)
}

/// Runs Keel's default balancer fed each VM's actual demand over the next
/// [`ORACLE_HORIZON_SECONDS`] (the maximum over that window) instead of
/// its estimate: what perfect prediction would buy. Reported as `oracle`.
pub fn run_oracle(
    trace: &Arc<WorkloadTrace>,
    config: &BalanceSimConfig,
) -> Result<BalanceReport, ReplayError> {
    let names = (0..trace.vms.len()).map(|i| format!("vm-{i:05}")).collect();
    let oracle = ClairvoyantDemand::new(trace, names, ORACLE_HORIZON_SECONDS);
    let hook = |time_seconds: f64| oracle.at(time_seconds);
    let balancer = Box::new(keel_policy::balance::KeelBalancer::default());
    let mut report = run_balance_with(trace, config, balancer, Some(&hook))?;
    report.balancer = "oracle".to_string();
    Ok(report)
}

/// Runs `balancer` over `trace` through the control loop; with `oracle`,
/// every round plans with the demand it gives for the round's time.
pub fn run_balance_with(
    trace: &Arc<WorkloadTrace>,
    config: &BalanceSimConfig,
    balancer: Box<dyn Balancer + Send>,
    oracle: Option<&DemandOracle<'_>>,
) -> Result<BalanceReport, ReplayError> {
    let started = Instant::now();
    let interval = config.interval_seconds.unwrap_or(trace.interval_seconds);
    if !(interval.is_finite() && interval > 0.0) {
        return Err(ReplayError::Interval(interval));
    }
    let name = balancer.name().to_string();
    let (body, mut truth, rules) = simulated_body(trace, config)?;
    let compiled = rules.compile(&truth).map_err(ReplayError::Rules)?;
    let capacity = truth.hosts[0].capacity;
    let mut control = ControlLoop::new(body, balancer, rules)
        .with_estimator(config.estimator)
        .map_err(|source| ReplayError::Control {
            time_seconds: 0.0,
            source,
        })?
        .keep_usage(false);
    let failed = |time_seconds: f64| {
        move |source| ReplayError::Control {
            time_seconds,
            source,
        }
    };
    let duration = trace.duration_seconds();
    let mut acc = Accounting::default();
    control.sample().map_err(failed(0.0))?;
    let mut tick = 0.0;
    while tick < duration {
        let now = control.driver().now_seconds();
        if now < tick {
            control.driver_mut().advance(tick - now);
        }
        acc.imbalance_at(control.driver(), &mut truth, &compiled);
        if tick > 0.0 {
            if let Some(oracle) = oracle {
                control.set_demand_override(Some(oracle(tick)));
            }
            let report = control.iterate().map_err(failed(tick))?;
            acc.plan_ms_sum += report.plan_seconds * 1e3;
            acc.plan_ms_max = acc.plan_ms_max.max(report.plan_seconds * 1e3);
            if let Some(why) = &report.refused {
                acc.refused_plans += 1;
                // Counted by kind: names and figures masked.
                let kind: String = why
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect();
                *acc.refusals.entry(kind).or_insert(0) += 1;
            }
            acc.moves.extend(
                report
                    .moves
                    .into_iter()
                    .filter(|m| m.error.is_none())
                    .map(|m| ReplayMove {
                        round_seconds: tick,
                        vm: m.vm,
                        from: m.from,
                        to: m.to,
                    }),
            );
        }
        acc.rounds += 1;
        // A plan that ran past the next tick held the loop: the next round
        // is the first tick after it ended.
        tick += interval;
        let now = control.driver().now_seconds();
        while tick < now {
            tick += interval;
        }
    }
    let now = control.driver().now_seconds();
    if now < duration {
        control.driver_mut().advance(duration - now);
    }
    let ledger: SimLedger = *control.driver().ledger();
    let rounds = acc.rounds.max(1) as f64;
    Ok(BalanceReport {
        balancer: name,
        vms: truth.vms.len(),
        hosts: config.setup.hosts,
        host_capacity: capacity,
        rounds: acc.rounds,
        simulated_seconds: duration,
        migrations: ledger.migrations,
        migrated_gib: ledger.migrated_bytes / GIB,
        mean_imbalance: acc.imbalance_sum / rounds,
        mean_imbalance_std_dev: acc.imbalance_std_sum / rounds,
        overload_host_seconds: ledger.overload_host_seconds,
        unmet_demand: if ledger.cpu_demand_core_seconds > 0.0 {
            ledger.unmet_core_seconds / ledger.cpu_demand_core_seconds
        } else {
            0.0
        },
        unmet_lower_bound: unmet_lower_bound(trace, config.setup.hosts, capacity.cpu_cores),
        unmet_cpu_core_hours: ledger.unmet_core_seconds / HOUR,
        memory_shortfall_gib_hours: ledger.memory_shortfall_byte_seconds / GIB / HOUR,
        vm_contention_hours: ledger.vm_contention_seconds / HOUR,
        hot_host_seconds: ledger.hot_host_seconds,
        refused_plans: acc.refused_plans,
        plan_ms_mean: acc.plan_ms_sum / (acc.rounds.saturating_sub(1).max(1)) as f64,
        plan_ms_max: acc.plan_ms_max,
        wall_seconds: started.elapsed().as_secs_f64(),
        moves: acc.moves,
        refusals: acc.refusals,
    })
}

#[derive(Debug, Default)]
struct Accounting {
    rounds: usize,
    imbalance_sum: f64,
    imbalance_std_sum: f64,
    plan_ms_sum: f64,
    plan_ms_max: f64,
    refused_plans: u64,
    refusals: std::collections::BTreeMap<String, u64>,
    moves: Vec<ReplayMove>,
}

impl Accounting {
    /// Adds the imbalance of the actual demand now, as placed now.
    fn imbalance_at(&mut self, body: &SimDriver, truth: &mut Cluster, rules: &CompiledRules) {
        for i in 0..body.vm_count() {
            truth.placement[i] = HostId(body.host_index_of(i) as u32);
            truth.vms[i].demand = body.demand_now(i);
        }
        let imbalance = Imbalance::of(&HostLoads::new(truth), &ResourceWeights::default(), rules);
        self.imbalance_sum += imbalance.normalized;
        self.imbalance_std_sum += imbalance.std_dev;
    }
}

#[cfg(test)]
mod tests;
