//! Keel's drivers: the one interface between decisions and hypervisors.
//!
//! A driver observes a cluster (hosts, VMs, placement, usage counters),
//! migrates VMs and applies resource tunables. It decides nothing: the
//! policy layer plans, the control loop (daemon, `keel lab selftest`) calls
//! a driver to act. One module per body: the simulator (always built),
//! libvirt (cargo feature `libvirt`, needs libvirt's C library) and
//! Proxmox VE (cargo feature `proxmox`, HTTPS; its config always built).
//! [`https`] is the TLS client both the Proxmox driver and `keel agent`'s
//! link to the daemon use (cargo feature `https`).
#![deny(missing_docs)]

pub mod sim;

pub mod https;

#[cfg(feature = "libvirt")]
pub mod libvirt;

pub mod proxmox;

use keel_model::{HostInfo, Resources, Rules};
use serde::Serialize;
use std::time::Duration;

/// What a driver sees of one VM at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmObservation {
    /// The VM's name (unique in the cluster).
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Configured size (vCPUs, memory bytes; disk and network 0 if unknown).
    pub size: Resources,
    /// Whether it is running (not paused, not shut off).
    pub running: bool,
    /// Monotonic usage counters, for rates between two observations.
    pub counters: UsageCounters,
    /// Memory the guest uses now, bytes, where the driver can tell (balloon
    /// guest statistics); `None` if unknown.
    pub memory_used_bytes: Option<f64>,
    /// Rate at which the guest dirties its memory, bytes per second, where
    /// the driver can measure it; `None` = unknown (the control loop then
    /// uses its configured default). Drives the migration cost.
    pub memory_dirty_bytes_per_second: Option<f64>,
    /// Local (non-shared) disk a migration must copy along, bytes, where
    /// the driver knows; `None` = unknown (the configured default is used).
    pub local_disk_bytes: Option<f64>,
}

/// Cumulative counters of one VM. Rates are differences between two
/// observations divided by the time between them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct UsageCounters {
    /// CPU time used by the VM, seconds (all vCPUs).
    pub cpu_seconds: f64,
    /// Time its vCPUs were runnable but waited for a physical CPU (run
    /// queue wait, steal), seconds, summed over vCPUs; 0 where the driver
    /// cannot measure it. A starved VM uses less than it wants: its demand
    /// is CPU time plus this wait.
    pub cpu_wait_seconds: f64,
    /// Bytes read from and written to its disks.
    pub disk_bytes: f64,
    /// Bytes received and sent on its network interfaces.
    pub network_bytes: f64,
}

/// A whole-cluster observation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// When, seconds on the driver's clock (monotonic within one driver).
    pub time_seconds: f64,
    /// Hosts and their capacity.
    pub hosts: Vec<HostInfo>,
    /// VMs.
    pub vms: Vec<VmObservation>,
}

/// Demand per VM derived from two observations: CPU in cores (time used
/// plus time waited for a CPU, so a starved VM shows what it wants, not
/// what it got), memory in bytes, disk and network in bytes per second.
/// VMs missing from either observation are left out. Linear in the number
/// of VMs (observations list VMs in a stable order; a name lookup is the
/// fallback).
pub fn usage_between(earlier: &Observation, later: &Observation) -> Vec<(String, Resources)> {
    usage_by_index(earlier, later)
        .into_iter()
        .map(|(i, u)| (later.vms[i].name.clone(), u))
        .collect()
}

/// [`usage_between`] with each VM given by its index in `later.vms` (no
/// name copied: the control loop's hot path).
pub fn usage_by_index(earlier: &Observation, later: &Observation) -> Vec<(usize, Resources)> {
    let dt = later.time_seconds - earlier.time_seconds;
    if dt <= 0.0 {
        return Vec::new();
    }
    let mut by_name: Option<std::collections::HashMap<&str, &VmObservation>> = None;
    later
        .vms
        .iter()
        .enumerate()
        .filter_map(|(i, vm)| {
            let before = match earlier.vms.get(i) {
                Some(v) if v.name == vm.name => v,
                _ => *by_name
                    .get_or_insert_with(|| {
                        earlier.vms.iter().map(|v| (v.name.as_str(), v)).collect()
                    })
                    .get(vm.name.as_str())?,
            };
            let rate = |a: f64, b: f64| ((b - a) / dt).max(0.0);
            let (a, b) = (&before.counters, &vm.counters);
            Some((
                i,
                Resources::new(
                    rate(
                        a.cpu_seconds + a.cpu_wait_seconds,
                        b.cpu_seconds + b.cpu_wait_seconds,
                    ),
                    vm.memory_used_bytes.unwrap_or(vm.size.memory_bytes),
                    rate(a.disk_bytes, b.disk_bytes),
                    rate(a.network_bytes, b.network_bytes),
                ),
            ))
        })
        .collect()
}

/// How a migration should run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MigrationRequest<'a> {
    /// The VM.
    pub vm: &'a str,
    /// Where it is.
    pub from: &'a str,
    /// Where it goes.
    pub to: &'a str,
    /// Bandwidth cap, bytes per second (`None` = the hypervisor's default).
    pub max_bandwidth_bytes_per_second: Option<f64>,
    /// Give up (and cancel) after this long.
    pub timeout: Duration,
}

/// What a finished migration measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MigrationOutcome {
    /// Wall time from start to completion, seconds.
    pub seconds: f64,
    /// Time the guest was paused for the final copy, milliseconds, if reported.
    pub downtime_ms: Option<f64>,
    /// Bytes sent, if reported.
    pub bytes: Option<f64>,
}

/// CPU, memory and I/O controls for one VM (`None` = leave as is).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Tunables {
    /// Relative CPU weight.
    pub cpu_shares: Option<f64>,
    /// CPU cap, cores.
    pub cpu_limit_cores: Option<f64>,
    /// Memory the guest may use before being reclaimed from, bytes.
    pub memory_soft_limit_bytes: Option<f64>,
    /// Hard memory cap, bytes (never below what the guest needs to live).
    pub memory_hard_limit_bytes: Option<f64>,
    /// Relative I/O weight.
    pub io_weight: Option<f64>,
}

/// Why a driver call failed. Every variant names what it was doing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The hypervisor could not be reached or answered an error.
    #[error("{context}: {message}")]
    Hypervisor {
        /// What the driver was doing (host, VM, call).
        context: String,
        /// The hypervisor's message.
        message: String,
    },
    /// A VM or host the call names does not exist.
    #[error("unknown {kind} {name:?}")]
    Unknown {
        /// `VM` or `host`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A migration failed; the VM is still on its source (checked).
    #[error(
        "migration of {vm} from {from} to {to} failed: {cause}; the VM is still running on {from}"
    )]
    MigrationFailed {
        /// The VM.
        vm: String,
        /// Its source.
        from: String,
        /// The intended target.
        to: String,
        /// Why.
        cause: String,
    },
    /// A migration failed and the VM could not be found running anywhere.
    #[error("migration of {vm} from {from} to {to} failed ({cause}) and the VM is not running on either host")]
    VmLost {
        /// The VM.
        vm: String,
        /// Its source.
        from: String,
        /// The intended target.
        to: String,
        /// Why the migration failed.
        cause: String,
    },
    /// The driver cannot do this at all.
    #[error("{0} is not supported by this driver")]
    Unsupported(&'static str),
}

/// What a driver can do beyond observing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Capabilities {
    /// Live migration.
    pub live_migration: bool,
    /// CPU shares and caps.
    pub cpu_tunables: bool,
    /// Memory soft and hard limits.
    pub memory_tunables: bool,
    /// I/O weights.
    pub io_tunables: bool,
}

impl Capabilities {
    /// Everything: live migration and every tunable.
    pub const ALL: Capabilities = Capabilities {
        live_migration: true,
        cpu_tunables: true,
        memory_tunables: true,
        io_tunables: true,
    };
}

/// A body Keel acts through. Required: `observe`, `migrate`; tunables
/// default to `Unsupported`, so a driver without them says so at run time
/// through [`Driver::capabilities`] rather than failing silently.
pub trait Driver: Send {
    /// Short name (`sim`, `libvirt`, ...).
    fn name(&self) -> &'static str;

    /// What this driver supports.
    fn capabilities(&self) -> Capabilities;

    /// The cluster now.
    fn observe(&mut self) -> Result<Observation, DriverError>;

    /// Live-migrates a VM and follows it to completion or failure.
    fn migrate(&mut self, request: &MigrationRequest<'_>) -> Result<MigrationOutcome, DriverError>;

    /// Placement rules the cluster itself holds (for Proxmox VE: HA rules,
    /// tags, locks), as of the last [`Driver::observe`]; the control loop
    /// adds them to the operator's. Default: none.
    fn cluster_rules(&self) -> Rules {
        Rules::default()
    }

    /// Whether [`Driver::migrate_wave`] runs a wave's migrations at once
    /// (callers then record them all as started before calling it).
    fn runs_waves_concurrently(&self) -> bool {
        false
    }

    /// Migrates the moves of one wave, which the planner made independent
    /// (no VM twice, within the per-host and cluster concurrency limits):
    /// a driver that can run them at once does; the default runs them one
    /// after another. One result per request, in order.
    fn migrate_wave(
        &mut self,
        requests: &[MigrationRequest<'_>],
    ) -> Vec<Result<MigrationOutcome, DriverError>> {
        requests.iter().map(|r| self.migrate(r)).collect()
    }

    /// Applies resource controls to one VM.
    fn apply_tunables(&mut self, vm: &str, tunables: &Tunables) -> Result<(), DriverError> {
        let _ = (vm, tunables);
        Err(DriverError::Unsupported("resource tunables"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, cpu: f64) -> VmObservation {
        VmObservation {
            name: name.into(),
            host: "h".into(),
            size: Resources::new(1.0, 1e9, 0.0, 0.0),
            running: true,
            counters: UsageCounters {
                cpu_seconds: cpu,
                ..UsageCounters::default()
            },
            memory_used_bytes: None,
            memory_dirty_bytes_per_second: None,
            local_disk_bytes: None,
        }
    }

    #[test]
    fn rates_from_two_observations() {
        let a = Observation {
            time_seconds: 10.0,
            hosts: vec![],
            vms: vec![vm("x", 5.0), vm("gone", 1.0)],
        };
        let b = Observation {
            time_seconds: 12.0,
            hosts: vec![],
            vms: vec![vm("x", 6.0), vm("new", 1.0)],
        };
        let usage = usage_between(&a, &b);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].0, "x");
        assert_eq!(usage[0].1.cpu_cores, 0.5);
        assert_eq!(usage[0].1.memory_bytes, 1e9);
    }

    #[test]
    fn a_starved_vm_shows_its_wait_as_demand() {
        let mut a = vm("x", 5.0);
        a.counters.cpu_wait_seconds = 1.0;
        let mut b = vm("x", 6.0);
        b.counters.cpu_wait_seconds = 3.0;
        let at = |t: f64, v: VmObservation| Observation {
            time_seconds: t,
            hosts: vec![],
            vms: vec![vm("other", 0.0), v],
        };
        // Different positions: found by name.
        let mut earlier = at(0.0, a);
        earlier.vms.reverse();
        let usage = usage_between(&earlier, &at(2.0, b));
        let x = usage.iter().find(|(n, _)| n == "x").unwrap();
        assert_eq!(x.1.cpu_cores, 1.5, "1 s used + 2 s waited over 2 s");
    }
}
