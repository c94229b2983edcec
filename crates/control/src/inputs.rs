//! The planner's inputs beyond what a driver observes: the operator's
//! allocation policy (reservations, limits, shares: what `keel agent`
//! enforces on the hosts, so plans respect it too) and the migration-cost
//! inputs a driver cannot measure (configured defaults).

use keel_model::{Resources, DEFAULT_SHARES};
use serde::{Deserialize, Serialize};

/// What the allocation policy entitles one VM to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VmAllocation {
    /// Guaranteed minimum (cores, bytes, bytes/s): held on its host.
    pub reservation: Resources,
    /// Maximum it may get; `None` = its size.
    pub limit: Option<Resources>,
    /// Relative weight when its host is contended (1000 = normal).
    pub shares: f64,
}

impl Default for VmAllocation {
    fn default() -> Self {
        Self {
            reservation: Resources::ZERO,
            limit: None,
            shares: DEFAULT_SHARES,
        }
    }
}

/// Migration-cost inputs used where the driver reports none (the
/// `[migration_defaults]` section of `keel serve`'s config).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationDefaults {
    /// Memory dirty rate, bytes per second (pre-copy rounds cost).
    pub memory_dirty_bytes_per_second: f64,
    /// Local disk copied along, bytes.
    pub local_disk_bytes: f64,
}
