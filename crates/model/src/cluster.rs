//! A cluster for balancing: hosts with multi-resource capacity, VMs with
//! their demand, size, allocation settings and migration cost inputs.
//!
//! [`ClusterSnapshot`] is the serialised form (names, as a state file or an
//! API says them); [`Cluster`] is the validated, indexed form the policies use.

use crate::resources::{Resource, Resources};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Index of a host in [`Cluster::hosts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostId(pub u32);

/// Index of a VM in [`Cluster::vms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VmId(pub u32);

impl HostId {
    /// As a `usize` index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl VmId {
    /// As a `usize` index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A physical host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// Unique name.
    pub name: String,
    /// What the host can give its VMs (cores, bytes, bytes/s).
    pub capacity: Resources,
    /// In maintenance: every VM must leave, none may arrive.
    #[serde(default)]
    pub maintenance: bool,
}

/// Default shares of a VM (vSphere "normal" per vCPU is 1000).
pub const DEFAULT_SHARES: f64 = 1000.0;

fn default_shares() -> f64 {
    DEFAULT_SHARES
}

/// A VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmInfo {
    /// Unique name.
    pub name: String,
    /// Name of the host it runs on.
    pub host: String,
    /// Configured size: vCPUs (cores), memory (bytes); disk and network
    /// give the VM's I/O ceiling where known, 0 otherwise.
    pub size: Resources,
    /// Estimated demand (cores, bytes, bytes/s).
    pub demand: Resources,
    /// Guaranteed minimum (cores, bytes, bytes/s).
    #[serde(default)]
    pub reservation: Resources,
    /// Maximum it may get; `None` = its size.
    #[serde(default)]
    pub limit: Option<Resources>,
    /// Relative weight when a host is contended (1000 = normal).
    #[serde(default = "default_shares")]
    pub shares: f64,
    /// Rate at which the guest dirties memory, bytes/s (drives pre-copy cost).
    #[serde(default)]
    pub memory_dirty_bytes_per_second: f64,
    /// Local (non-shared) disk that must be copied along, bytes.
    #[serde(default)]
    pub local_disk_bytes: f64,
    /// When the VM last finished a migration, seconds on the cluster clock.
    #[serde(default)]
    pub last_migrated_seconds: Option<f64>,
}

impl VmInfo {
    /// A VM with no reservation, no limit, default shares and no migration
    /// cost inputs (no dirtying, no local disk), never migrated.
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        size: Resources,
        demand: Resources,
    ) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            size,
            demand,
            reservation: Resources::ZERO,
            limit: None,
            shares: DEFAULT_SHARES,
            memory_dirty_bytes_per_second: 0.0,
            local_disk_bytes: 0.0,
            last_migrated_seconds: None,
        }
    }

    /// The most the VM may get of each resource: its limit where it has one,
    /// never more than its size; a size of 0 means unknown, hence unlimited
    /// (unless a limit says otherwise).
    pub fn effective_limit(&self) -> Resources {
        self.limit
            .unwrap_or(self.size)
            .zip(self.size, |_, limit, size| {
                if size > 0.0 {
                    limit.min(size)
                } else if limit > 0.0 {
                    limit
                } else {
                    f64::INFINITY
                }
            })
    }
}

/// A cluster as serialised.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSnapshot {
    /// The cluster clock when the snapshot was taken, seconds.
    #[serde(default)]
    pub time_seconds: f64,
    /// Hosts.
    pub hosts: Vec<HostInfo>,
    /// VMs.
    pub vms: Vec<VmInfo>,
}

/// Why a snapshot is not a valid cluster. Each variant names the item at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Two hosts share a name.
    #[error("host {name:?} is defined twice")]
    DuplicateHost {
        /// The name.
        name: String,
    },
    /// Two VMs share a name.
    #[error("VM {name:?} is defined twice")]
    DuplicateVm {
        /// The name.
        name: String,
    },
    /// A VM runs on a host that does not exist.
    #[error("VM {vm:?} is on unknown host {host:?}")]
    UnknownHost {
        /// The VM.
        vm: String,
        /// The host it names.
        host: String,
    },
    /// A host capacity is negative or not a number.
    #[error("host {host:?} has invalid {resource} capacity {value}")]
    InvalidCapacity {
        /// The host.
        host: String,
        /// Which resource (`cpu`, `memory`, ...).
        resource: &'static str,
        /// The value.
        value: f64,
    },
    /// A VM amount is negative or not a number.
    #[error("VM {vm:?} has invalid {field}.{resource} {value}")]
    InvalidVmAmount {
        /// The VM.
        vm: String,
        /// Which field (`size`, `demand`, `reservation`, `limit`).
        field: &'static str,
        /// Which resource.
        resource: &'static str,
        /// The value.
        value: f64,
    },
    /// A VM's reservation exceeds its limit.
    #[error("VM {vm:?} reserves {reservation} {resource} but is limited to {limit}")]
    ReservationAboveLimit {
        /// The VM.
        vm: String,
        /// Which resource.
        resource: &'static str,
        /// The reservation.
        reservation: f64,
        /// The limit.
        limit: f64,
    },
    /// Shares must be positive.
    #[error("VM {vm:?} has invalid shares {value} (must be > 0)")]
    InvalidShares {
        /// The VM.
        vm: String,
        /// The value.
        value: f64,
    },
}

/// A validated cluster with index lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The cluster clock, seconds.
    pub time_seconds: f64,
    /// Hosts, by [`HostId`].
    pub hosts: Vec<HostInfo>,
    /// VMs, by [`VmId`].
    pub vms: Vec<VmInfo>,
    /// Each VM's host.
    pub placement: Vec<HostId>,
    host_by_name: HashMap<String, HostId>,
    vm_by_name: HashMap<String, VmId>,
}

fn check_amounts(vm: &VmInfo, field: &'static str, r: &Resources) -> Result<(), ClusterError> {
    match r.first_invalid() {
        Some((resource, value)) => Err(ClusterError::InvalidVmAmount {
            vm: vm.name.clone(),
            field,
            resource: resource.name(),
            value,
        }),
        None => Ok(()),
    }
}

impl Cluster {
    /// Validates `snapshot`: unique names, known hosts, non-negative finite
    /// amounts, reservations within limits, positive shares.
    pub fn new(snapshot: ClusterSnapshot) -> Result<Self, ClusterError> {
        let mut host_by_name = HashMap::with_capacity(snapshot.hosts.len());
        for (i, h) in snapshot.hosts.iter().enumerate() {
            if let Some((resource, value)) = h.capacity.first_invalid() {
                return Err(ClusterError::InvalidCapacity {
                    host: h.name.clone(),
                    resource: resource.name(),
                    value,
                });
            }
            if host_by_name
                .insert(h.name.clone(), HostId(i as u32))
                .is_some()
            {
                return Err(ClusterError::DuplicateHost {
                    name: h.name.clone(),
                });
            }
        }
        let mut vm_by_name = HashMap::with_capacity(snapshot.vms.len());
        let mut placement = Vec::with_capacity(snapshot.vms.len());
        for (i, vm) in snapshot.vms.iter().enumerate() {
            let host = *host_by_name
                .get(&vm.host)
                .ok_or_else(|| ClusterError::UnknownHost {
                    vm: vm.name.clone(),
                    host: vm.host.clone(),
                })?;
            check_amounts(vm, "size", &vm.size)?;
            check_amounts(vm, "demand", &vm.demand)?;
            check_amounts(vm, "reservation", &vm.reservation)?;
            if let Some(limit) = &vm.limit {
                check_amounts(vm, "limit", limit)?;
                for r in Resource::ALL {
                    if vm.reservation.get(r) > limit.get(r) {
                        return Err(ClusterError::ReservationAboveLimit {
                            vm: vm.name.clone(),
                            resource: r.name(),
                            reservation: vm.reservation.get(r),
                            limit: limit.get(r),
                        });
                    }
                }
            }
            if !(vm.shares.is_finite() && vm.shares > 0.0) {
                return Err(ClusterError::InvalidShares {
                    vm: vm.name.clone(),
                    value: vm.shares,
                });
            }
            if vm_by_name.insert(vm.name.clone(), VmId(i as u32)).is_some() {
                return Err(ClusterError::DuplicateVm {
                    name: vm.name.clone(),
                });
            }
            placement.push(host);
        }
        Ok(Self {
            time_seconds: snapshot.time_seconds,
            hosts: snapshot.hosts,
            vms: snapshot.vms,
            placement,
            host_by_name,
            vm_by_name,
        })
    }

    /// The host called `name`.
    pub fn host_id(&self, name: &str) -> Option<HostId> {
        self.host_by_name.get(name).copied()
    }

    /// The VM called `name`.
    pub fn vm_id(&self, name: &str) -> Option<VmId> {
        self.vm_by_name.get(name).copied()
    }

    /// The host a VM runs on.
    pub fn host_of(&self, vm: VmId) -> HostId {
        self.placement[vm.index()]
    }

    /// Back to the serialised form, with the current placement.
    pub fn to_snapshot(&self) -> ClusterSnapshot {
        let mut vms = self.vms.clone();
        for (vm, host) in vms.iter_mut().zip(&self.placement) {
            vm.host = self.hosts[host.index()].name.clone();
        }
        ClusterSnapshot {
            time_seconds: self.time_seconds,
            hosts: self.hosts.clone(),
            vms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HostInfo {
        HostInfo {
            name: name.into(),
            capacity: Resources::new(16.0, 64e9, 1e9, 1e9),
            maintenance: false,
        }
    }

    fn vm(name: &str, host: &str) -> VmInfo {
        VmInfo::new(
            name,
            host,
            Resources::new(2.0, 4e9, 0.0, 0.0),
            Resources::new(1.0, 2e9, 0.0, 0.0),
        )
    }

    #[test]
    fn resolves_names_and_rejects_bad_items() {
        let ok = Cluster::new(ClusterSnapshot {
            time_seconds: 0.0,
            hosts: vec![host("a"), host("b")],
            vms: vec![vm("v1", "b")],
        })
        .unwrap();
        assert_eq!(ok.host_of(ok.vm_id("v1").unwrap()), HostId(1));

        let err = Cluster::new(ClusterSnapshot {
            hosts: vec![host("a")],
            vms: vec![vm("v1", "zz")],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "VM \"v1\" is on unknown host \"zz\"");

        let mut bad = host("a");
        bad.capacity.memory_bytes = -1.0;
        let err = Cluster::new(ClusterSnapshot {
            hosts: vec![bad],
            vms: vec![],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "host \"a\" has invalid memory capacity -1");

        let mut v = vm("v1", "a");
        v.reservation.cpu_cores = 4.0;
        v.limit = Some(Resources::new(2.0, 4e9, 0.0, 0.0));
        let err = Cluster::new(ClusterSnapshot {
            hosts: vec![host("a")],
            vms: vec![v],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("reserves 4 cpu"), "{err}");
    }
}
