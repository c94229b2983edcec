//! The embedded default: a simulated cluster replaying the bundled PlanetLab
//! day in accelerated time, so `keel serve` with no config shows balancing
//! within a minute.
//!
//! Setup (deterministic):
//! - VMs: the first `vms` VMs of the bundled day (PlanetLab 2011-03-03,
//!   sorted file order), sized as the balancing simulation sizes CPU-only
//!   traces (`keel_sim::balance::setup`): 1, 2, 4, 8 vCPUs by index, 4 GiB
//!   per vCPU, memory demand a steady 60-90 % of it, CPU demand the trace's
//!   utilisation times the vCPUs.
//! - Hosts: `hosts` identical hosts sized for 2 vCPUs per core and with the
//!   VMs' configured memory filling [`MEMORY_FILL`] of the cluster's memory.
//! - Initial placement, deliberately unbalanced: first fit by configured
//!   memory, hosts in order, each filled up to [`FIRST_FIT_FILL`] of its
//!   memory, as if every VM had been started on the first host with room.
//!   With 200 VMs on 10 hosts (500 GiB, 38 cores each) hosts 0-5 hold
//!   29-31 VMs at 90 % of their memory, host 6 holds 17 and hosts 7-9 are
//!   empty: imbalance 0.23 at the first estimate; the first plan (15
//!   moves) brings it to 0.10, level 3's target.
//! - Planner: [`crate::config::demo_planner`] (cheaper migrations than the
//!   planner's defaults, as the simulator's cost nothing).
//! - Time: one trace sample (300 s of virtual time) every
//!   `wall_seconds_per_sample` seconds of the daemon's clock (default 2).

use crate::clock::Clock;
use keel_drivers::sim::{SimDriver, SimVm};
use keel_drivers::{
    Capabilities, Driver, DriverError, MigrationOutcome, MigrationRequest, Observation,
};
use keel_model::{HostInfo, WorkloadTrace};
use keel_sim::balance::setup::{host_capacity, ClusterSetup, TraceVms};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Fraction of the cluster's memory the VMs' configured memory fills.
pub const MEMORY_FILL: f64 = 0.6;
/// Fraction of one host's memory the initial first fit fills.
pub const FIRST_FIT_FILL: f64 = 0.9;

/// Settings of the simulated cluster.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// VMs taken from the bundled day (1..=1052, default 200).
    pub vms: usize,
    /// Hosts (default 10).
    pub hosts: usize,
    /// Wall-clock seconds per trace sample of 300 s (default 2).
    pub wall_seconds_per_sample: f64,
    /// Wall-clock milliseconds each simulated migration takes (default 0:
    /// instant). For tests that must catch the daemon mid-plan.
    pub migration_delay_ms: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            vms: 200,
            hosts: 10,
            wall_seconds_per_sample: 2.0,
            migration_delay_ms: 0,
        }
    }
}

/// Why the simulated cluster cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A setting is out of range.
    #[error("sim setting {setting} = {value}: {expected}")]
    Setting {
        /// Which.
        setting: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The driver refused the cluster.
    #[error("building the simulated cluster: {0}")]
    Driver(#[from] DriverError),
}

/// Builds the simulated cluster described in this module's documentation.
pub fn demo_cluster(config: &DemoConfig) -> Result<SimDriver, DemoError> {
    let mut trace = keel_trace::bundled_planetlab_day();
    if config.vms == 0 || config.vms > trace.vms.len() {
        return Err(DemoError::Setting {
            setting: "vms",
            value: config.vms.to_string(),
            expected: "between 1 and 1052 (the bundled day's VMs)",
        });
    }
    if config.hosts == 0 || config.hosts > 1000 {
        return Err(DemoError::Setting {
            setting: "hosts",
            value: config.hosts.to_string(),
            expected: "between 1 and 1000",
        });
    }
    trace.vms.truncate(config.vms);
    let sizes = TraceVms::new(&trace);
    let setup = ClusterSetup {
        hosts: config.hosts,
        cpu_overcommit: 2.0,
        memory_fill: MEMORY_FILL,
    };
    let capacity = host_capacity(&setup, &sizes, &trace);
    let hosts: Vec<HostInfo> = (0..config.hosts)
        .map(|h| HostInfo {
            name: format!("host-{h:02}"),
            capacity,
            maintenance: false,
        })
        .collect();
    let vms = first_fit(&trace, &sizes, &hosts);
    Ok(SimDriver::new(hosts, vms, trace.interval_seconds)?)
}

fn first_fit(trace: &WorkloadTrace, sizes: &TraceVms, hosts: &[HostInfo]) -> Vec<SimVm> {
    let mut used = vec![0.0; hosts.len()];
    (0..trace.vms.len())
        .map(|i| {
            let size = sizes.sizes[i];
            let h = (0..hosts.len())
                .find(|&h| {
                    used[h] + size.memory_bytes <= FIRST_FIT_FILL * hosts[h].capacity.memory_bytes
                })
                .unwrap_or_else(|| {
                    // No host has room under the fill: the least used one.
                    (0..hosts.len())
                        .min_by(|&a, &b| used[a].total_cmp(&used[b]))
                        .unwrap_or(0)
                });
            used[h] += size.memory_bytes;
            SimVm {
                name: format!("vm-{i:04}"),
                host: hosts[h].name.clone(),
                size,
                demand: (0..trace.samples())
                    .map(|t| sizes.demand(trace, i, t))
                    .collect(),
            }
        })
        .collect()
}

/// A [`SimDriver`] whose virtual time follows a [`Clock`], accelerated:
/// every observation first advances the simulation to
/// `(clock - start) * speedup` seconds.
pub struct AcceleratedSim {
    sim: SimDriver,
    clock: Arc<dyn Clock>,
    start_unix_ms: u64,
    speedup: f64,
    migration_delay: std::time::Duration,
}

impl AcceleratedSim {
    /// Replays `sim` `speedup` times faster than `clock`, from now.
    pub fn new(sim: SimDriver, clock: Arc<dyn Clock>, speedup: f64) -> Self {
        let start_unix_ms = clock.now_unix_ms();
        Self {
            sim,
            clock,
            start_unix_ms,
            speedup: if speedup.is_finite() && speedup > 0.0 {
                speedup
            } else {
                1.0
            },
            migration_delay: std::time::Duration::ZERO,
        }
    }

    /// Makes every migration take `delay` of wall time (the driver blocks).
    pub fn with_migration_delay(mut self, delay: std::time::Duration) -> Self {
        self.migration_delay = delay;
        self
    }

    fn catch_up(&mut self) {
        let wall = self.clock.now_unix_ms().saturating_sub(self.start_unix_ms) as f64 / 1000.0;
        let behind = wall * self.speedup - self.sim.now_seconds();
        if behind > 0.0 {
            self.sim.advance(behind);
        }
    }
}

impl Driver for AcceleratedSim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn capabilities(&self) -> Capabilities {
        self.sim.capabilities()
    }

    fn observe(&mut self) -> Result<Observation, DriverError> {
        self.catch_up();
        self.sim.observe()
    }

    fn migrate(&mut self, request: &MigrationRequest<'_>) -> Result<MigrationOutcome, DriverError> {
        if !self.migration_delay.is_zero() {
            std::thread::sleep(self.migration_delay);
        }
        self.sim.migrate(request)
    }

    fn runs_waves_concurrently(&self) -> bool {
        // With a wall-clock delay per migration (tests that must catch the
        // daemon mid-plan) moves run one by one, each recorded as it starts.
        self.migration_delay.is_zero() && self.sim.runs_waves_concurrently()
    }

    fn migrate_wave(
        &mut self,
        requests: &[MigrationRequest<'_>],
    ) -> Vec<Result<MigrationOutcome, DriverError>> {
        if self.migration_delay.is_zero() {
            self.sim.migrate_wave(requests)
        } else {
            requests.iter().map(|r| self.migrate(r)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    #[test]
    fn the_default_cluster_starts_unbalanced_and_follows_the_clock() {
        let sim = demo_cluster(&DemoConfig::default()).unwrap();
        let clock = FakeClock::at(1_000_000);
        let mut driver = AcceleratedSim::new(sim, Arc::new(clock.clone()), 150.0);
        let first = driver.observe().unwrap();
        assert_eq!((first.hosts.len(), first.vms.len()), (10, 200));
        let on = |h: &str| first.vms.iter().filter(|v| v.host == h).count();
        assert!(on("host-00") > 0);
        assert_eq!(on("host-09"), 0, "the last host starts empty");
        clock.advance_ms(2_000);
        assert_eq!(driver.observe().unwrap().time_seconds, 300.0);
        assert!(demo_cluster(&DemoConfig {
            vms: 0,
            ..DemoConfig::default()
        })
        .is_err());
    }
}
