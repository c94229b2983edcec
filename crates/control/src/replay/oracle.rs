//! What the trace knows and a balancer cannot: the clairvoyant demand an
//! oracle plans with, and the physical limit of any placement.

use keel_model::{Resources, WorkloadTrace};
use keel_sim::balance::setup::TraceVms;
use std::collections::HashMap;

/// How far ahead the oracle sees, seconds (the "next hour").
pub const ORACLE_HORIZON_SECONDS: f64 = 3600.0;

/// Each VM's actual demand over the `horizon_seconds` from a round's time,
/// per resource the maximum over that window (the sample in force now
/// included), keyed by the names the simulated body gives its VMs
/// (`vm-00000`, ... as [`keel_sim::balance::setup::initial_cluster`] names
/// them, in trace order).
pub struct ClairvoyantDemand<'a> {
    trace: &'a WorkloadTrace,
    vms: TraceVms,
    names: Vec<String>,
    horizon_samples: usize,
}

impl<'a> ClairvoyantDemand<'a> {
    /// The oracle of `trace`, seeing `horizon_seconds` ahead.
    pub fn new(trace: &'a WorkloadTrace, vm_names: Vec<String>, horizon_seconds: f64) -> Self {
        let horizon_samples = if trace.interval_seconds > 0.0 && horizon_seconds.is_finite() {
            (horizon_seconds / trace.interval_seconds).ceil().max(1.0) as usize
        } else {
            1
        };
        Self {
            trace,
            vms: TraceVms::new(trace),
            names: vm_names,
            horizon_samples,
        }
    }

    /// Demand per VM name for a round at `time_seconds`.
    pub fn at(&self, time_seconds: f64) -> HashMap<String, Resources> {
        let first = if self.trace.interval_seconds > 0.0 {
            (time_seconds.max(0.0) / self.trace.interval_seconds) as usize
        } else {
            0
        };
        let last = (first + self.horizon_samples).min(self.trace.samples().max(1));
        self.names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let peak = (first..last.max(first + 1))
                    .map(|t| self.vms.demand(self.trace, i, t))
                    .fold(Resources::ZERO, Resources::max);
                (name.clone(), peak)
            })
            .collect()
    }
}

/// The fraction of CPU demand no placement can serve: per sample, the
/// cluster's total CPU demand above the total CPU capacity of `hosts`
/// hosts of `cpu_cores_per_host`, summed, over the total demand (every
/// VM anywhere, migrations free).
pub fn unmet_lower_bound(trace: &WorkloadTrace, hosts: usize, cpu_cores_per_host: f64) -> f64 {
    let vms = TraceVms::new(trace);
    let capacity_cores = hosts as f64 * cpu_cores_per_host;
    let (mut excess, mut demand) = (0.0, 0.0);
    for t in 0..trace.samples() {
        let total: f64 = (0..trace.vms.len())
            .map(|i| vms.demand(trace, i, t).cpu_cores)
            .sum();
        demand += total;
        excess += (total - capacity_cores).max(0.0);
    }
    if demand > 0.0 {
        excess / demand
    } else {
        0.0
    }
}
