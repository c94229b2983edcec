//! The allocation policy: per-VM shares (or a priority class), reservations
//! and limits, and nested resource pools, from TOML.
//!
//! ```toml
//! [[vm]]
//! name = "web"
//! priority = "high"            # or: shares = 2000
//! cpu = { reservation = 0.5, limit = 2.0 }     # cores
//! memory = { reservation = 1e9 }               # bytes
//!
//! [[pool]]
//! name = "batch"
//! shares = 500
//! cpu = { limit = 4.0 }
//! [[pool.vm]]
//! name = "job1"
//! disk = { limit = 50e6 }                      # bytes/s
//! ```
//!
//! Within a pool (and at the top level) the VMs come first, then the pools.
//! Amounts may be given with units (`"2GiB"`, `"1200MHz"`, `"50MB/s"`,
//! `"500 IOPS"`): see [`crate::units`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Deepest nesting of pools accepted (as the entitlement function's).
pub const MAX_DEPTH: usize = keel_policy::balance::entitlement::MAX_POOL_DEPTH;

/// Shares of a VM or pool that gives neither `shares` nor `priority`.
pub const DEFAULT_SHARES: f64 = 1000.0;

/// A priority class, a shorthand for shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// 2000 shares.
    High,
    /// 1000 shares.
    Normal,
    /// 500 shares.
    Low,
}

impl Priority {
    /// The shares this class stands for.
    pub fn shares(self) -> f64 {
        match self {
            Priority::High => 2000.0,
            Priority::Normal => 1000.0,
            Priority::Low => 500.0,
        }
    }
}

/// Reservation and limit of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Guaranteed amount (default 0).
    #[serde(default)]
    pub reservation: f64,
    /// Cap (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

impl Bounds {
    /// The limit, `f64::INFINITY` where none.
    pub fn limit_or_inf(&self) -> f64 {
        self.limit.unwrap_or(f64::INFINITY)
    }
}

/// One VM's allocation policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VmAlloc {
    /// The VM's name.
    pub name: String,
    /// Explicit shares (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<f64>,
    /// A priority class instead of shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// CPU, cores.
    #[serde(default)]
    pub cpu: Bounds,
    /// Memory, bytes.
    #[serde(default)]
    pub memory: Bounds,
    /// Disk I/O, bytes per second.
    #[serde(default)]
    pub disk: Bounds,
    /// Disk operations cap, IOPS (reads and writes each, per disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_iops_limit: Option<f64>,
}

/// A resource pool: its own weight and bounds, and its children.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolAlloc {
    /// The pool's name.
    pub name: String,
    /// Explicit shares among its siblings (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<f64>,
    /// A priority class instead of shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// CPU, cores.
    #[serde(default)]
    pub cpu: Bounds,
    /// Memory, bytes.
    #[serde(default)]
    pub memory: Bounds,
    /// Disk I/O, bytes per second.
    #[serde(default)]
    pub disk: Bounds,
    /// VMs directly in the pool.
    #[serde(default)]
    pub vm: Vec<VmAlloc>,
    /// Pools nested in the pool.
    #[serde(default)]
    pub pool: Vec<PoolAlloc>,
}

/// A host's whole allocation policy.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllocConfig {
    /// VMs at the top level.
    #[serde(default)]
    pub vm: Vec<VmAlloc>,
    /// Pools at the top level.
    #[serde(default)]
    pub pool: Vec<PoolAlloc>,
}

/// Removes `null` members and elements (TOML has no null: absent means
/// the default).
fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => {
            a.retain(|x| !x.is_null());
            a.iter_mut().for_each(strip_nulls);
        }
        _ => {}
    }
}

/// The resources the policy bounds, with their names in errors.
pub const RESOURCES: [&str; 3] = ["cpu", "memory", "disk"];

/// Why an allocation policy was refused. `item` names the VM or pool.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML, or not this schema (unknown fields included).
    #[error("allocation config: {0}")]
    Parse(String),
    /// Not JSON at all (the API's form, see [`AllocConfig::from_json`]).
    #[error("allocation policy: not JSON: {0}")]
    Json(String),
    /// An amount with a unit that could not be converted.
    #[error("{item}: {field} = {value:?}: {reason}")]
    Unit {
        /// VM or pool.
        item: String,
        /// e.g. `memory.limit`.
        field: String,
        /// The text given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A value that is negative, NaN or infinite.
    #[error("{item}: {field} = {value} (must be finite and >= 0)")]
    InvalidValue {
        /// VM or pool.
        item: String,
        /// e.g. `cpu.reservation`.
        field: String,
        /// The value.
        value: f64,
    },
    /// Shares that are not finite and > 0.
    #[error("{item}: shares = {value} (must be finite and > 0)")]
    InvalidShares {
        /// VM or pool.
        item: String,
        /// The value.
        value: f64,
    },
    /// Both `shares` and `priority` given.
    #[error("{item}: give either shares or priority, not both")]
    SharesAndPriority {
        /// VM or pool.
        item: String,
    },
    /// A reservation above the limit (for a pool, its children's
    /// reservations counted).
    #[error("{item}: {resource} reservation {reservation} is above its limit {limit}")]
    ReservationAboveLimit {
        /// VM or pool.
        item: String,
        /// `cpu`, `memory` or `disk`.
        resource: &'static str,
        /// The (effective) reservation.
        reservation: f64,
        /// The limit.
        limit: f64,
    },
    /// A VM the host does not run.
    #[error("unknown VM {name:?}")]
    UnknownVm {
        /// The name.
        name: String,
    },
    /// A VM or pool named twice.
    #[error("{name:?} appears more than once")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// Pools nested deeper than [`MAX_DEPTH`].
    #[error("pool {item:?} is nested deeper than {MAX_DEPTH}")]
    TooDeep {
        /// The pool.
        item: String,
    },
    /// Admission control: the reservations do not fit the host.
    #[error("{item} does not fit: {resource} reserved in total {reserved_total}, host capacity {capacity}")]
    DoesNotFit {
        /// The VM (or pool) at which the total exceeds the capacity.
        item: String,
        /// `cpu`, `memory` or `disk`.
        resource: &'static str,
        /// The running total including it.
        reserved_total: f64,
        /// The capacity.
        capacity: f64,
    },
}

/// The shares stated by `shares` or `priority` (or [`DEFAULT_SHARES`]),
/// checked.
pub fn effective_shares(
    item: &str,
    shares: Option<f64>,
    priority: Option<Priority>,
) -> Result<f64, ConfigError> {
    {
        match (shares, priority) {
            (Some(_), Some(_)) => Err(ConfigError::SharesAndPriority { item: item.into() }),
            (Some(s), None) if !(s.is_finite() && s > 0.0) => Err(ConfigError::InvalidShares {
                item: item.into(),
                value: s,
            }),
            (Some(s), None) => Ok(s),
            (None, Some(p)) => Ok(p.shares()),
            (None, None) => Ok(DEFAULT_SHARES),
        }
    }
}

fn check_bounds(item: &str, resource: &'static str, b: &Bounds) -> Result<(), ConfigError> {
    let bad = |what: &str, value: f64| ConfigError::InvalidValue {
        item: item.into(),
        field: format!("{resource}.{what}"),
        value,
    };
    if !(b.reservation.is_finite() && b.reservation >= 0.0) {
        return Err(bad("reservation", b.reservation));
    }
    if let Some(l) = b.limit {
        if !(l.is_finite() && l >= 0.0) {
            return Err(bad("limit", l));
        }
        if b.reservation > l {
            return Err(ConfigError::ReservationAboveLimit {
                item: item.into(),
                resource,
                reservation: b.reservation,
                limit: l,
            });
        }
    }
    Ok(())
}

/// Bounds of an item, in [`RESOURCES`] order.
fn bounds3(cpu: &Bounds, memory: &Bounds, disk: &Bounds) -> [Bounds; 3] {
    [*cpu, *memory, *disk]
}

impl VmAlloc {
    /// Its checked shares.
    pub fn effective_shares(&self) -> Result<f64, ConfigError> {
        effective_shares(&self.name, self.shares, self.priority)
    }

    /// Its bounds in [`RESOURCES`] order.
    pub fn bounds(&self) -> [Bounds; 3] {
        bounds3(&self.cpu, &self.memory, &self.disk)
    }
}

impl PoolAlloc {
    /// Its checked shares.
    pub fn effective_shares(&self) -> Result<f64, ConfigError> {
        effective_shares(&self.name, self.shares, self.priority)
    }

    /// Its bounds in [`RESOURCES`] order.
    pub fn bounds(&self) -> [Bounds; 3] {
        bounds3(&self.cpu, &self.memory, &self.disk)
    }
}

impl AllocConfig {
    /// Parses TOML (no validation: see [`AllocConfig::validate`]); CPU
    /// amounts in MHz are refused (see [`AllocConfig::from_toml_with`]).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with(text, &crate::units::Units::default())
    }

    /// Parses TOML, converting amounts with units ([`crate::units`]).
    pub fn from_toml_with(text: &str, units: &crate::units::Units) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        Self::from_table(&mut table, units)
    }

    /// Deserializes an already parsed table (e.g. a section of a larger
    /// file), converting amounts with units.
    pub fn from_table(
        table: &mut toml::Table,
        units: &crate::units::Units,
    ) -> Result<Self, ConfigError> {
        crate::units::resolve(table, units)?;
        table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))
    }

    /// Parses the API's JSON form: the same fields as the TOML, amounts
    /// with units accepted, and `null` the same as absent, so that what
    /// `GET /api/v1/allocation` returns can be edited and sent back.
    pub fn from_json(bytes: &[u8], units: &crate::units::Units) -> Result<Self, ConfigError> {
        use serde::Deserialize;
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
        strip_nulls(&mut value);
        let mut table = toml::Table::deserialize(value)
            .map_err(|e| ConfigError::Parse(format!("{e} (expected an object)")))?;
        Self::from_table(&mut table, units)
    }

    /// The policy without the VMs for which `keep` is false (pools kept,
    /// possibly empty): what applies to the VMs that are running.
    pub fn retain_vms(&self, keep: &dyn Fn(&str) -> bool) -> AllocConfig {
        fn pool(p: &PoolAlloc, keep: &dyn Fn(&str) -> bool) -> PoolAlloc {
            PoolAlloc {
                vm: p.vm.iter().filter(|v| keep(&v.name)).cloned().collect(),
                pool: p.pool.iter().map(|q| pool(q, keep)).collect(),
                ..p.clone()
            }
        }
        AllocConfig {
            vm: self.vm.iter().filter(|v| keep(&v.name)).cloned().collect(),
            pool: self.pool.iter().map(|p| pool(p, keep)).collect(),
        }
    }

    /// Every VM name in the policy, depth-first.
    pub fn vm_names(&self) -> Vec<String> {
        fn pool(p: &PoolAlloc, out: &mut Vec<String>) {
            out.extend(p.vm.iter().map(|v| v.name.clone()));
            p.pool.iter().for_each(|q| pool(q, out));
        }
        let mut out: Vec<String> = self.vm.iter().map(|v| v.name.clone()).collect();
        self.pool.iter().for_each(|p| pool(p, &mut out));
        out
    }

    /// Checks every value, that each VM is one of `known_vms`, and admission
    /// control: the reservations of each resource must fit `capacity`
    /// (cpu cores, memory bytes, disk bytes/s, in [`RESOURCES`] order).
    pub fn validate(&self, known_vms: &[&str], capacity: [f64; 3]) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        let known: BTreeSet<&str> = known_vms.iter().copied().collect();
        let mut running = [0.0; 3];
        let ctx = Ctx {
            known: &known,
            capacity,
        };
        ctx.level(&self.vm, &self.pool, 0, &mut seen, &mut running)?;
        Ok(())
    }
}

struct Ctx<'a> {
    known: &'a BTreeSet<&'a str>,
    capacity: [f64; 3],
}

impl Ctx<'_> {
    /// Validates one level; adds reservations to `running` (the host-wide
    /// running total, for admission control). Returns the level's effective
    /// reservations.
    fn level(
        &self,
        vms: &[VmAlloc],
        pools: &[PoolAlloc],
        depth: usize,
        seen: &mut BTreeSet<String>,
        running: &mut [f64; 3],
    ) -> Result<[f64; 3], ConfigError> {
        let mut total = [0.0; 3];
        for vm in vms {
            self.name(&vm.name, seen)?;
            vm.effective_shares()?;
            for (r, b) in vm.bounds().iter().enumerate() {
                check_bounds(&vm.name, RESOURCES[r], b)?;
            }
            if !self.known.contains(vm.name.as_str()) {
                return Err(ConfigError::UnknownVm {
                    name: vm.name.clone(),
                });
            }
            if let Some(l) = vm.disk_iops_limit.filter(|l| !(l.is_finite() && *l >= 0.0)) {
                return Err(ConfigError::InvalidValue {
                    item: vm.name.clone(),
                    field: "disk_iops_limit".into(),
                    value: l,
                });
            }
            for (r, b) in vm.bounds().iter().enumerate() {
                total[r] += b.reservation;
                self.admit(&vm.name, r, b.reservation, running)?;
            }
        }
        for pool in pools {
            self.name(&pool.name, seen)?;
            if depth + 1 > MAX_DEPTH {
                return Err(ConfigError::TooDeep {
                    item: pool.name.clone(),
                });
            }
            pool.effective_shares()?;
            let bounds = pool.bounds();
            for (r, b) in bounds.iter().enumerate() {
                check_bounds(&pool.name, RESOURCES[r], b)?;
            }
            let kids = self.level(&pool.vm, &pool.pool, depth + 1, seen, running)?;
            for (r, b) in bounds.iter().enumerate() {
                let effective = b.reservation.max(kids[r]);
                if effective > b.limit_or_inf() {
                    return Err(ConfigError::ReservationAboveLimit {
                        item: pool.name.clone(),
                        resource: RESOURCES[r],
                        reservation: effective,
                        limit: b.limit_or_inf(),
                    });
                }
                // The pool's own reservation beyond its children's.
                self.admit(&pool.name, r, effective - kids[r], running)?;
                total[r] += effective;
            }
        }
        Ok(total)
    }

    fn name(&self, name: &str, seen: &mut BTreeSet<String>) -> Result<(), ConfigError> {
        if seen.insert(name.to_string()) {
            Ok(())
        } else {
            Err(ConfigError::Duplicate { name: name.into() })
        }
    }

    fn admit(
        &self,
        item: &str,
        r: usize,
        amount: f64,
        running: &mut [f64; 3],
    ) -> Result<(), ConfigError> {
        running[r] += amount;
        if running[r] > self.capacity[r] {
            return Err(ConfigError::DoesNotFit {
                item: item.into(),
                resource: RESOURCES[r],
                reserved_total: running[r],
                capacity: self.capacity[r],
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
