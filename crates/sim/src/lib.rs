//! Keel's trace-driven simulator.
//!
//! It owns the virtual clock, trace replay, the migration and energy models
//! and the SLA metrics, and drives `keel-policy`'s decision code exactly as a
//! live cluster would. It knows no hypervisor and does no I/O: traces come in
//! as `keel_model::WorkloadTrace`, results go out as [`RunReport`] values and
//! [`StepObserver`] calls.
//!
//! The default data centre and event semantics are those of the PlanetLab
//! consolidation benchmark (Beloglazov & Buyya, CCPE 2012) as CloudSim 3.0.3
//! runs it, so that Keel's figures can be checked against CloudSim's.
#![deny(missing_docs)]

pub mod balance;
mod engine;
pub mod generate;
pub mod metrics;
pub mod scenario;

pub use engine::utilization_at;
use keel_model::WorkloadTrace;
use keel_policy::cpu_share::ShareOrder;
use keel_policy::{ConsolidationPolicy, HostIndex, PolicyError, VmIndex};
use serde::Serialize;
use std::time::Instant;

/// Why a simulation stopped.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SimError {
    /// The policy failed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A host's utilisation left the power model's range.
    #[error("host {host} is at {utilization} of its capacity at t = {time_seconds} s, beyond what its power model covers")]
    HostOverUtilized {
        /// The host.
        host: HostIndex,
        /// When.
        time_seconds: f64,
        /// Its utilisation (fraction).
        utilization: f64,
    },
    /// A migration's target could not take the VM.
    #[error("host {host} cannot take VM {vm} at the end of its migration")]
    MigrationRejected {
        /// The VM.
        vm: VmIndex,
        /// The target host.
        host: HostIndex,
    },
    /// The run was asked for zero hosts.
    #[error("a simulation needs at least one host")]
    NoHosts,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of hosts (G4 at even indices, G5 at odd); the benchmark uses 800.
    pub hosts: usize,
    /// The consolidation policy.
    pub policy: ConsolidationPolicy,
    /// Seed for random VM selection.
    pub seed: u64,
    /// Order in which hosts walk CPU shares (float rounding only; see
    /// `keel_policy::cpu_share::ShareOrder`).
    pub share_order: ShareOrder,
}

impl SimConfig {
    /// The benchmark data centre under `policy`.
    pub fn planetlab(policy: ConsolidationPolicy) -> Self {
        Self {
            hosts: scenario::PLANETLAB_HOSTS,
            policy,
            seed: 42,
            share_order: ShareOrder::JavaHashMap {
                owner_id: scenario::CLOUDSIM_BROKER_ID,
            },
        }
    }
}

/// State of the data centre after one scheduling step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepRecord {
    /// Step number, from 1.
    pub step: usize,
    /// Simulated time, seconds.
    pub time_seconds: f64,
    /// Energy consumed so far, kWh.
    pub energy_kwh: f64,
    /// Migrations started so far.
    pub migrations_total: u64,
    /// Migrations started at this step.
    pub migrations_started: usize,
    /// Hosts with CPU in use.
    pub active_hosts: usize,
    /// VMs not yet finished.
    pub vms_alive: usize,
    /// CPU requested by the live VMs, MIPS.
    pub requested_mips: f64,
    /// CPU in use on all hosts, MIPS.
    pub host_utilization_mips: f64,
}

/// Receives each step's record; the engine never prints.
pub trait StepObserver {
    /// Called after each scheduling step, migrations started.
    fn on_step(&mut self, _record: &StepRecord) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl StepObserver for NoObserver {}

impl StepObserver for Vec<StepRecord> {
    fn on_step(&mut self, record: &StepRecord) {
        self.push(*record);
    }
}

/// The figures of one run. Ratios are fractions, not percent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Policy name, e.g. `lr-mmt-1.2`.
    pub policy: String,
    /// VMs created.
    pub vms: usize,
    /// Hosts in the data centre.
    pub hosts: usize,
    /// Energy consumed, kWh.
    pub energy_kwh: f64,
    /// Live migrations started.
    pub migrations: u64,
    /// SLA violation time per active host, pooled (CloudSim's definition).
    pub slatah: f64,
    /// Performance degradation due to migration, pooled (CloudSim's definition).
    pub pdm: f64,
    /// SLATAH x PDM.
    pub slav: f64,
    /// Energy x SLAV, kWh.
    pub esv: f64,
    /// (requested - allocated) / requested over all VM time.
    pub overall_sla_violation: f64,
    /// Mean shortfall ratio over VM intervals with a shortfall.
    pub average_sla_violation: f64,
    /// SLATAH as the paper defines it: mean of per-host ratios.
    pub slatah_paper: f64,
    /// PDM as the paper defines it: mean of per-VM ratios.
    pub pdm_paper: f64,
    /// Active -> inactive host transitions.
    pub host_shutdowns: usize,
    /// Mean active spell of a host before it shuts down, seconds.
    pub mean_time_before_host_shutdown_seconds: Option<f64>,
    /// Mean time a VM is flagged as migrating, seconds.
    pub mean_migration_seconds: Option<f64>,
    /// Wall-clock time of the run, seconds.
    pub wall_seconds: f64,
}

/// Runs `trace` under `config` and returns the figures.
pub fn run(trace: &WorkloadTrace, config: &SimConfig) -> Result<RunReport, SimError> {
    run_observed(trace, config, &mut NoObserver)
}

/// Like [`run`], reporting each step to `observer`.
pub fn run_observed(
    trace: &WorkloadTrace,
    config: &SimConfig,
    observer: &mut dyn StepObserver,
) -> Result<RunReport, SimError> {
    if config.hosts == 0 {
        return Err(SimError::NoHosts);
    }
    let started = Instant::now();
    let outcome = engine::Engine::new(trace, config, observer).run()?;
    let sla = outcome.metrics.finish();
    let energy_kwh = outcome.energy_joules / 3_600_000.0;
    let slav = sla.slatah * sla.pdm;
    Ok(RunReport {
        policy: config.policy.to_string(),
        vms: outcome.vms_created,
        hosts: config.hosts,
        energy_kwh,
        migrations: outcome.migrations,
        slatah: sla.slatah,
        pdm: sla.pdm,
        slav,
        esv: energy_kwh * slav,
        overall_sla_violation: sla.overall_sla_violation,
        average_sla_violation: sla.average_sla_violation,
        slatah_paper: sla.slatah_paper,
        pdm_paper: sla.pdm_paper,
        host_shutdowns: sla.host_shutdowns,
        mean_time_before_host_shutdown_seconds: sla.mean_time_before_host_shutdown_seconds,
        mean_migration_seconds: sla.mean_migration_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}
