//! What happens inside the simulated cluster during a step of virtual
//! time: CPU served and waited, memory held, migrations landing, and the
//! contention the simulator reports.

use super::SimDriver;
use keel_model::Resources;
use serde::Serialize;

/// A migration in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Flight {
    pub(super) vm: usize,
    pub(super) to: usize,
    pub(super) ends_at: f64,
}

/// Contention and migration totals the simulated body measured.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SimLedger {
    /// CPU demand, core-seconds.
    pub cpu_demand_core_seconds: f64,
    /// CPU demand not served (host over its cores, or lost to a
    /// migration's degradation), core-seconds.
    pub unmet_core_seconds: f64,
    /// Memory held above a host's memory (a migrating VM's memory counts on
    /// both hosts): swapping or OOM in real life, byte-seconds.
    pub memory_shortfall_byte_seconds: f64,
    /// Host-seconds with CPU demand or memory held above capacity.
    pub overload_host_seconds: f64,
    /// Host-seconds with CPU demand or memory held above 90 % of capacity.
    pub hot_host_seconds: f64,
    /// VM-seconds where a VM got under 95 % of its CPU demand or sat on a
    /// host short of memory (DRS's "unhappy VM").
    pub vm_contention_seconds: f64,
    /// Migrations started.
    pub migrations: u64,
    /// Bytes those migrations copy.
    pub migrated_bytes: f64,
}

/// Share of CPU demand below which a VM counts as contended.
const CONTENDED_BELOW: f64 = 0.95;

impl SimDriver {
    /// Runs every VM for `step` seconds at the current sample's demand.
    pub(super) fn run_step(&mut self, step: f64) {
        let hosts = self.hosts.len();
        let mut cpu = vec![0.0; hosts];
        let mut memory = vec![0.0; hosts];
        let demand: Vec<Resources> = (0..self.names.len()).map(|i| self.demand_now(i)).collect();
        for (i, d) in demand.iter().enumerate() {
            cpu[self.placement[i]] += d.cpu_cores;
            memory[self.placement[i]] += d.memory_bytes;
        }
        let mut migrating = vec![false; self.names.len()];
        for f in &self.in_flight {
            memory[f.to] += demand[f.vm].memory_bytes;
            migrating[f.vm] = true;
        }
        let mut short_of_memory = vec![false; hosts];
        for h in 0..hosts {
            let capacity = self.hosts[h].capacity;
            let ledger = &mut self.ledger;
            ledger.cpu_demand_core_seconds += cpu[h] * step;
            let memory_over = memory[h] - capacity.memory_bytes;
            if memory_over > 0.0 {
                ledger.memory_shortfall_byte_seconds += memory_over * step;
                short_of_memory[h] = true;
            }
            if cpu[h] > capacity.cpu_cores || memory_over > 0.0 {
                ledger.overload_host_seconds += step;
            }
            if cpu[h] > 0.9 * capacity.cpu_cores || memory[h] > 0.9 * capacity.memory_bytes {
                ledger.hot_host_seconds += step;
            }
        }
        // Each VM gets its host's cores in proportion to its demand (what a
        // fair scheduler gives equally weighted vCPUs), less what a
        // migration costs it; the rest of its demand waits in the run queue.
        for (i, d) in demand.iter().enumerate() {
            let h = self.placement[i];
            let fit = if cpu[h] > self.hosts[h].capacity.cpu_cores {
                self.hosts[h].capacity.cpu_cores / cpu[h]
            } else {
                1.0
            };
            let kept = if migrating[i] {
                1.0 - self.model.cpu_degradation
            } else {
                1.0
            };
            let served = d.cpu_cores * fit * kept;
            let waited = d.cpu_cores - served;
            let c = &mut self.counters[i];
            c.cpu_seconds += served * step;
            c.cpu_wait_seconds += waited * step;
            c.disk_bytes += d.disk_bytes_per_second * step;
            c.network_bytes += d.network_bytes_per_second * step;
            self.ledger.unmet_core_seconds += waited * step;
            if served < CONTENDED_BELOW * d.cpu_cores || short_of_memory[h] {
                self.ledger.vm_contention_seconds += step;
            }
        }
    }

    /// Lands every migration that has ended by now.
    pub(super) fn land_finished(&mut self) {
        let now = self.now_seconds;
        let placement = &mut self.placement;
        self.in_flight.retain(|f| {
            if f.ends_at <= now {
                placement[f.vm] = f.to;
                false
            } else {
                true
            }
        });
    }
}
