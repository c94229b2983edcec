//! Balancing mode: replay per-VM multi-resource traces on a cluster of
//! identical hosts, invoke a balancer every interval, and measure what its
//! migrations bought.
//!
//! Each interval: migrations that finished are applied; every VM's actual
//! demand is read from the trace and fed to the demand estimator; the
//! interval is accounted with the actual demand (overloads, unmet CPU, hot
//! hosts, imbalance); then the balancer plans with the estimated demand and
//! the first wave of its plan starts. A migration takes its memory (plus
//! local disk) over the migration bandwidth; meanwhile the VM's memory is
//! held on both hosts and it loses `migration_cpu_degradation` of its CPU.

pub mod setup;

use crate::SimError;
use keel_model::{
    Cluster, ClusterSnapshot, CompiledRules, Overcommit, Resources, Rules, WorkloadTrace,
};
use keel_policy::balance::demand::{DemandTracker, EstimatorConfig};
use keel_policy::balance::{
    BalanceInput, Balancer, HostLoads, Imbalance, InFlight, ResourceWeights,
};
use serde::Serialize;
use setup::{host_capacity, initial_cluster, ClusterSetup, TraceVms};
use std::time::Instant;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

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
    /// Balancing rounds.
    pub rounds: usize,
    /// Simulated time, seconds.
    pub simulated_seconds: f64,
    /// Migrations started.
    pub migrations: u64,
    /// Bytes migrated, GiB.
    pub migrated_gib: f64,
    /// Mean over rounds of the normalised imbalance (0..1) of actual demand.
    pub mean_imbalance: f64,
    /// Mean over rounds of the std-dev imbalance of actual demand.
    pub mean_imbalance_std_dev: f64,
    /// Host-seconds with CPU or memory demand above capacity.
    pub overload_host_seconds: f64,
    /// Fraction of CPU demand (core-seconds) not served.
    pub unmet_demand: f64,
    /// Host-seconds with CPU or memory load above 90 %.
    pub hot_host_seconds: f64,
    /// Mean planning time per round, milliseconds.
    pub plan_ms_mean: f64,
    /// Longest planning time of a round, milliseconds.
    pub plan_ms_max: f64,
    /// Wall-clock time of the run, seconds.
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, Copy)]
struct Migration {
    flight: InFlight,
    ends_at: f64,
}

/// Runs `balancer` over `trace`.
pub fn run_balance(
    trace: &WorkloadTrace,
    config: &BalanceSimConfig,
    balancer: &mut dyn Balancer,
) -> Result<BalanceReport, SimError> {
    if config.setup.hosts == 0 {
        return Err(SimError::NoHosts);
    }
    let started = Instant::now();
    let vms = TraceVms::new(trace);
    let capacity = host_capacity(&config.setup, &vms, trace);
    let (hosts, vm_infos) = initial_cluster(&config.setup, &vms, capacity);
    let mut cluster = Cluster::new(ClusterSnapshot {
        time_seconds: 0.0,
        hosts,
        vms: vm_infos,
    })
    .map_err(|e| SimError::Setup(e.to_string()))?;
    // The hosts are sized for `cpu_overcommit` vCPUs per core: allow twice
    // that (at least the usual 4) so that rebalancing is not blocked by the
    // sizing itself; memory is not overcommitted.
    let rules = Rules {
        overcommit: Overcommit {
            cpu: (2.0 * config.setup.cpu_overcommit).max(4.0),
            memory: 1.0,
        },
        ..Rules::default()
    }
    .compile(&cluster)
    .map_err(|e| SimError::Setup(e.to_string()))?;
    let n = cluster.vms.len();
    let mut tracker =
        DemandTracker::new(n, config.estimator).map_err(|e| SimError::Setup(e.to_string()))?;
    let interval = config.interval_seconds.unwrap_or(trace.interval_seconds);
    if !(interval.is_finite() && interval > 0.0) {
        return Err(SimError::Setup(format!(
            "balancing interval {interval} s is not positive"
        )));
    }
    let duration = trace.duration_seconds();
    let mut in_flight: Vec<Migration> = Vec::new();
    let mut acc = Accounting::default();
    let mut actual = vec![Resources::ZERO; n];
    let mut t = 0.0;
    while t < duration {
        // Finished migrations land.
        in_flight.retain(|m| {
            if m.ends_at <= t {
                cluster.placement[m.flight.vm.index()] = m.flight.to;
                cluster.vms[m.flight.vm.index()].last_migrated_seconds = Some(m.ends_at);
                false
            } else {
                true
            }
        });
        let sample = (t / trace.interval_seconds) as usize;
        for (i, demand) in actual.iter_mut().enumerate() {
            *demand = vms.demand(trace, i, sample);
            tracker
                .push(i, *demand)
                .map_err(|e| SimError::Setup(e.to_string()))?;
        }
        acc.account(
            &cluster,
            &rules,
            &actual,
            &in_flight,
            t,
            interval,
            config.migration_cpu_degradation,
        );
        // Plan on estimated demand.
        for (i, vm) in cluster.vms.iter_mut().enumerate() {
            vm.demand = tracker.estimate(i);
        }
        cluster.time_seconds = t;
        let flights: Vec<InFlight> = in_flight.iter().map(|m| m.flight).collect();
        let input = BalanceInput {
            cluster: &cluster,
            rules: &rules,
            in_flight: &flights,
        };
        let plan_started = Instant::now();
        let plan = balancer.plan(&input, t)?;
        let plan_ms = plan_started.elapsed().as_secs_f64() * 1e3;
        acc.plan_ms_sum += plan_ms;
        acc.plan_ms_max = acc.plan_ms_max.max(plan_ms);
        let first_wave = plan.moves.first().map(|m| m.wave);
        for m in plan.moves.iter().filter(|m| Some(m.wave) == first_wave) {
            if in_flight.iter().any(|f| f.flight.vm == m.vm)
                || cluster.placement[m.vm.index()] != m.from
            {
                continue;
            }
            let vm = &cluster.vms[m.vm.index()];
            let bytes = vm.size.memory_bytes + vm.local_disk_bytes;
            in_flight.push(Migration {
                flight: InFlight {
                    vm: m.vm,
                    from: m.from,
                    to: m.to,
                },
                ends_at: t + bytes / config.migration_bandwidth_bytes_per_second,
            });
            acc.migrations += 1;
            acc.migrated_bytes += bytes;
        }
        acc.rounds += 1;
        t += interval;
    }
    Ok(BalanceReport {
        balancer: balancer.name().to_string(),
        vms: n,
        hosts: config.setup.hosts,
        host_capacity: capacity,
        rounds: acc.rounds,
        simulated_seconds: duration,
        migrations: acc.migrations,
        migrated_gib: acc.migrated_bytes / GIB,
        mean_imbalance: acc.imbalance_sum / acc.rounds.max(1) as f64,
        mean_imbalance_std_dev: acc.imbalance_std_sum / acc.rounds.max(1) as f64,
        overload_host_seconds: acc.overload_host_seconds,
        unmet_demand: if acc.cpu_demand_core_seconds > 0.0 {
            acc.unmet_core_seconds / acc.cpu_demand_core_seconds
        } else {
            0.0
        },
        hot_host_seconds: acc.hot_host_seconds,
        plan_ms_mean: acc.plan_ms_sum / acc.rounds.max(1) as f64,
        plan_ms_max: acc.plan_ms_max,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

#[derive(Debug, Default)]
struct Accounting {
    rounds: usize,
    migrations: u64,
    migrated_bytes: f64,
    imbalance_sum: f64,
    imbalance_std_sum: f64,
    overload_host_seconds: f64,
    hot_host_seconds: f64,
    cpu_demand_core_seconds: f64,
    unmet_core_seconds: f64,
    plan_ms_sum: f64,
    plan_ms_max: f64,
}

impl Accounting {
    /// Accounts the interval [t, t + dt) with the actual demand.
    #[allow(clippy::too_many_arguments)]
    fn account(
        &mut self,
        cluster: &Cluster,
        rules: &CompiledRules,
        actual: &[Resources],
        in_flight: &[Migration],
        t: f64,
        dt: f64,
        degradation: f64,
    ) {
        let mut loads = HostLoads::new(cluster);
        // Actual demand, not the estimate the cluster carries.
        for h in loads.demand.iter_mut() {
            *h = Resources::ZERO;
        }
        for (i, d) in actual.iter().enumerate() {
            loads.demand[cluster.placement[i].index()] += *d;
            loads.vm_demand[i] = *d;
        }
        let imbalance = Imbalance::of(&loads, &ResourceWeights::default(), rules);
        self.imbalance_sum += imbalance.normalized;
        self.imbalance_std_sum += imbalance.std_dev;
        // A migrating VM's memory is held on its target too.
        let mut memory_held = loads
            .demand
            .iter()
            .map(|d| d.memory_bytes)
            .collect::<Vec<_>>();
        for m in in_flight {
            memory_held[m.flight.to.index()] += actual[m.flight.vm.index()].memory_bytes;
        }
        for ((capacity, demand), &memory) in
            loads.capacity.iter().zip(&loads.demand).zip(&memory_held)
        {
            let cpu = demand.cpu_cores;
            self.cpu_demand_core_seconds += cpu * dt;
            self.unmet_core_seconds += (cpu - capacity.cpu_cores).max(0.0) * dt;
            if cpu > capacity.cpu_cores || memory > capacity.memory_bytes {
                self.overload_host_seconds += dt;
            }
            if cpu > 0.9 * capacity.cpu_cores || memory > 0.9 * capacity.memory_bytes {
                self.hot_host_seconds += dt;
            }
        }
        for m in in_flight {
            let overlap = (m.ends_at.min(t + dt) - t).max(0.0);
            self.unmet_core_seconds +=
                degradation * actual[m.flight.vm.index()].cpu_cores * overlap;
        }
    }
}
