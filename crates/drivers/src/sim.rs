//! The simulator as a body: a cluster whose VMs replay recorded demand in
//! virtual time. `keel sim --mode balance` and the daemon's embedded
//! default both run the one control loop (`keel-control`) on it, and
//! control-loop tests use it where no hypervisor can run.
//!
//! Time is virtual: it moves only when [`SimDriver::advance`] is called, or
//! while a migration runs. What it reports is what a real driver would:
//! CPU time *served* (a VM on a host whose demand exceeds its cores gets
//! its proportional share), plus the time its vCPUs waited for a core
//! (run-queue wait, as the libvirt body can report it), so
//! [`crate::usage_between`] recovers the demand. Migrations take
//! `(memory + local disk) / bandwidth` seconds; meanwhile the VM's memory
//! is held on both hosts and it loses `cpu_degradation` of its CPU (the
//! accounting the balancing simulator always used). Everything the body
//! measures about contention is summed in its [`SimLedger`].

mod physics;

pub use physics::SimLedger;

use crate::{
    Capabilities, Driver, DriverError, MigrationOutcome, MigrationRequest, Observation, Tunables,
    UsageCounters, VmObservation,
};
use keel_model::{HostInfo, Resources};
use physics::Flight;
use std::sync::Arc;

/// Where simulated demand comes from: cores, bytes, bytes/s of VM `vm` at
/// trace sample `sample` (the sample index may run past the series: a
/// source decides whether it wraps or holds its last value).
pub trait DemandSource: Send + Sync {
    /// Demand of VM `vm` during sample `sample`.
    fn demand(&self, vm: usize, sample: usize) -> Resources;
}

/// Demand series held in memory, one per VM; replay wraps around.
struct Series(Vec<Vec<Resources>>);

impl DemandSource for Series {
    fn demand(&self, vm: usize, sample: usize) -> Resources {
        match self.0.get(vm) {
            Some(s) if !s.is_empty() => s[sample % s.len()],
            _ => Resources::ZERO,
        }
    }
}

/// One simulated VM: its size and its demand per sample (cores, bytes, bytes/s).
#[derive(Debug, Clone, PartialEq)]
pub struct SimVm {
    /// Unique name.
    pub name: String,
    /// Host it starts on.
    pub host: String,
    /// Configured size.
    pub size: Resources,
    /// Demand per sample; replay wraps around at the end.
    pub demand: Vec<Resources>,
}

/// A simulated VM whose demand comes from a [`DemandSource`] (by position).
#[derive(Debug, Clone, PartialEq)]
pub struct SimVmSpec {
    /// Unique name.
    pub name: String,
    /// Host it starts on.
    pub host: String,
    /// Configured size.
    pub size: Resources,
    /// Local disk a migration copies along, bytes.
    pub local_disk_bytes: f64,
}

/// How simulated migrations behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimMigrationModel {
    /// Bytes per second one migration copies; `None` = migrations complete
    /// at once and cost nothing (the daemon's accelerated demo).
    pub bandwidth_bytes_per_second: Option<f64>,
    /// Fraction of its CPU a VM loses while it migrates (0.1, as CloudSim).
    pub cpu_degradation: f64,
}

impl Default for SimMigrationModel {
    fn default() -> Self {
        Self {
            bandwidth_bytes_per_second: None,
            cpu_degradation: 0.0,
        }
    }
}

/// A simulated cluster.
pub struct SimDriver {
    hosts: Vec<HostInfo>,
    names: Vec<String>,
    sizes: Vec<Resources>,
    local_disk_bytes: Vec<f64>,
    /// Host index of each VM (its source while it migrates).
    placement: Vec<usize>,
    source: Arc<dyn DemandSource>,
    counters: Vec<UsageCounters>,
    tunables: Vec<Tunables>,
    sample_seconds: f64,
    now_seconds: f64,
    model: SimMigrationModel,
    in_flight: Vec<Flight>,
    ledger: SimLedger,
    /// Each VM's demand during `demand_sample` (read once per sample).
    demand: Vec<Resources>,
    demand_sample: usize,
}

impl SimDriver {
    /// A cluster of `hosts` running `vms`, whose demand samples are
    /// `sample_seconds` apart. Fails on a VM placed on an unknown host.
    pub fn new(
        hosts: Vec<HostInfo>,
        vms: Vec<SimVm>,
        sample_seconds: f64,
    ) -> Result<Self, DriverError> {
        let (specs, series): (Vec<_>, Vec<_>) = vms
            .into_iter()
            .map(|v| {
                (
                    SimVmSpec {
                        name: v.name,
                        host: v.host,
                        size: v.size,
                        local_disk_bytes: 0.0,
                    },
                    v.demand,
                )
            })
            .unzip();
        Self::from_source(hosts, specs, Arc::new(Series(series)), sample_seconds)
    }

    /// A cluster of `hosts` running `vms`, VM `i`'s demand read from
    /// `source` at index `i`. Fails on a VM placed on an unknown host.
    pub fn from_source(
        hosts: Vec<HostInfo>,
        vms: Vec<SimVmSpec>,
        source: Arc<dyn DemandSource>,
        sample_seconds: f64,
    ) -> Result<Self, DriverError> {
        let placement =
            vms.iter()
                .map(|vm| {
                    hosts.iter().position(|h| h.name == vm.host).ok_or_else(|| {
                        DriverError::Unknown {
                            kind: "host",
                            name: vm.host.clone(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
        let n = vms.len();
        let mut driver = Self {
            hosts,
            sizes: vms.iter().map(|v| v.size).collect(),
            local_disk_bytes: vms.iter().map(|v| v.local_disk_bytes).collect(),
            names: vms.into_iter().map(|v| v.name).collect(),
            placement,
            source,
            counters: vec![UsageCounters::default(); n],
            tunables: vec![Tunables::default(); n],
            sample_seconds: sample_seconds.max(f64::MIN_POSITIVE),
            now_seconds: 0.0,
            model: SimMigrationModel::default(),
            in_flight: Vec::new(),
            ledger: SimLedger::default(),
            demand: Vec::new(),
            demand_sample: 0,
        };
        driver.read_demand();
        Ok(driver)
    }

    /// Reads every VM's demand for the current sample from the source.
    fn read_demand(&mut self) {
        let sample = (self.now_seconds / self.sample_seconds) as usize;
        if sample == self.demand_sample && self.demand.len() == self.names.len() {
            return;
        }
        self.demand_sample = sample;
        self.demand = (0..self.names.len())
            .map(|vm| self.source.demand(vm, sample))
            .collect();
    }

    /// Makes migrations take time and cost CPU as `model` says.
    pub fn with_migration_model(mut self, model: SimMigrationModel) -> Self {
        self.model = model;
        self
    }

    /// Demand of VM `vm` now (its cap applied), cores, bytes, bytes/s: what
    /// the simulator accounts with, not what the driver reports.
    pub fn demand_now(&self, vm: usize) -> Resources {
        let mut d = self.demand[vm];
        if let Some(cap) = self.tunables[vm].cpu_limit_cores {
            d.cpu_cores = d.cpu_cores.min(cap);
        }
        d
    }

    /// Moves virtual time forward: every VM runs, migrations in flight
    /// progress and land, and the ledger sums the contention.
    pub fn advance(&mut self, seconds: f64) {
        if !(seconds.is_finite() && seconds > 0.0) {
            return;
        }
        let end = self.now_seconds + seconds;
        // Step to each sample boundary and each migration's end, so demand
        // changes and landings are honoured exactly.
        while self.now_seconds < end {
            let into_sample = self.now_seconds % self.sample_seconds;
            let mut step = (self.sample_seconds - into_sample).min(end - self.now_seconds);
            for f in &self.in_flight {
                step = step.min((f.ends_at - self.now_seconds).max(0.0));
            }
            if step > 0.0 {
                self.run_step(step);
                let next = (self.now_seconds + step).min(end);
                // A step too small to move the clock (float precision far
                // into a run) ends the advance rather than spinning.
                self.now_seconds = if next > self.now_seconds { next } else { end };
                self.read_demand();
            }
            self.land_finished();
        }
    }

    /// The virtual clock, seconds.
    pub fn now_seconds(&self) -> f64 {
        self.now_seconds
    }

    /// What the body measured so far.
    pub fn ledger(&self) -> &SimLedger {
        &self.ledger
    }

    /// VMs, in the order they were given.
    pub fn vm_count(&self) -> usize {
        self.names.len()
    }

    /// Host index of VM `vm` (its source while it migrates).
    pub fn host_index_of(&self, vm: usize) -> usize {
        self.placement[vm]
    }

    /// The hosts, in the order they were given.
    pub fn hosts(&self) -> &[HostInfo] {
        &self.hosts
    }

    /// Tunables last applied to each VM, by name.
    pub fn tunables(&self, vm: &str) -> Option<Tunables> {
        self.names
            .iter()
            .position(|v| v == vm)
            .map(|i| self.tunables[i])
    }

    fn vm_index(&self, name: &str) -> Result<usize, DriverError> {
        self.names
            .iter()
            .position(|v| v == name)
            .ok_or_else(|| DriverError::Unknown {
                kind: "VM",
                name: name.to_string(),
            })
    }

    /// Checks a request and starts its migration; `Ok(None)` when
    /// migrations are instant (done already).
    fn start(&mut self, request: &MigrationRequest<'_>) -> Result<Option<f64>, DriverError> {
        let vm = self.vm_index(request.vm)?;
        let Some(to) = self.hosts.iter().position(|h| h.name == request.to) else {
            return Err(DriverError::Unknown {
                kind: "host",
                name: request.to.to_string(),
            });
        };
        let failed = |cause: String| DriverError::MigrationFailed {
            vm: request.vm.to_string(),
            from: request.from.to_string(),
            to: request.to.to_string(),
            cause,
        };
        if self.hosts[self.placement[vm]].name != request.from {
            return Err(failed(format!(
                "the VM is on {}, not on {}",
                self.hosts[self.placement[vm]].name, request.from
            )));
        }
        if self.in_flight.iter().any(|f| f.vm == vm) {
            return Err(failed("the VM is migrating already".into()));
        }
        let bytes = self.sizes[vm].memory_bytes + self.local_disk_bytes[vm];
        self.ledger.migrations += 1;
        self.ledger.migrated_bytes += bytes;
        let bandwidth = match (
            self.model.bandwidth_bytes_per_second,
            request.max_bandwidth_bytes_per_second,
        ) {
            (Some(b), Some(cap)) => Some(b.min(cap)),
            (b, _) => b,
        };
        match bandwidth.filter(|b| *b > 0.0) {
            None => {
                self.placement[vm] = to;
                Ok(None)
            }
            Some(b) => {
                let seconds = bytes / b;
                self.in_flight.push(Flight {
                    vm,
                    to,
                    ends_at: self.now_seconds + seconds,
                });
                Ok(Some(seconds))
            }
        }
    }
}

impl Driver for SimDriver {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn observe(&mut self) -> Result<Observation, DriverError> {
        let vms = (0..self.names.len())
            .map(|i| VmObservation {
                name: self.names[i].clone(),
                host: self.hosts[self.placement[i]].name.clone(),
                size: self.sizes[i],
                running: true,
                counters: self.counters[i],
                memory_used_bytes: Some(self.demand_now(i).memory_bytes),
                // The body's migration model copies memory and local disk
                // once (no dirtying): it reports exactly that.
                memory_dirty_bytes_per_second: Some(0.0),
                local_disk_bytes: Some(self.local_disk_bytes[i]),
            })
            .collect();
        Ok(Observation {
            time_seconds: self.now_seconds,
            hosts: self.hosts.clone(),
            vms,
        })
    }

    fn migrate(&mut self, request: &MigrationRequest<'_>) -> Result<MigrationOutcome, DriverError> {
        let vm = self.vm_index(request.vm)?;
        let seconds = self.start(request)?.unwrap_or(0.0);
        // A real driver blocks until the migration ends: so does time here.
        self.advance(seconds);
        Ok(MigrationOutcome {
            seconds,
            downtime_ms: Some(0.0),
            bytes: Some(self.sizes[vm].memory_bytes + self.local_disk_bytes[vm]),
        })
    }

    fn runs_waves_concurrently(&self) -> bool {
        true
    }

    fn migrate_wave(
        &mut self,
        requests: &[MigrationRequest<'_>],
    ) -> Vec<Result<MigrationOutcome, DriverError>> {
        let started: Vec<Result<(f64, f64), DriverError>> = requests
            .iter()
            .map(|r| {
                let vm = self.vm_index(r.vm)?;
                let seconds = self.start(r)?.unwrap_or(0.0);
                Ok((
                    seconds,
                    self.sizes[vm].memory_bytes + self.local_disk_bytes[vm],
                ))
            })
            .collect();
        let longest = started
            .iter()
            .filter_map(|s| s.as_ref().ok().map(|s| s.0))
            .fold(0.0, f64::max);
        self.advance(longest);
        started
            .into_iter()
            .map(|s| {
                s.map(|(seconds, bytes)| MigrationOutcome {
                    seconds,
                    downtime_ms: Some(0.0),
                    bytes: Some(bytes),
                })
            })
            .collect()
    }

    fn apply_tunables(&mut self, vm: &str, tunables: &Tunables) -> Result<(), DriverError> {
        let i = self.vm_index(vm)?;
        let t = &mut self.tunables[i];
        // Only the given fields change.
        t.cpu_shares = tunables.cpu_shares.or(t.cpu_shares);
        t.cpu_limit_cores = tunables.cpu_limit_cores.or(t.cpu_limit_cores);
        t.memory_soft_limit_bytes = tunables
            .memory_soft_limit_bytes
            .or(t.memory_soft_limit_bytes);
        t.memory_hard_limit_bytes = tunables
            .memory_hard_limit_bytes
            .or(t.memory_hard_limit_bytes);
        t.io_weight = tunables.io_weight.or(t.io_weight);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
