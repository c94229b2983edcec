//! Keel's decision code: how a host shares its CPU among VMs, when a host is
//! over-utilised, which VM to move, where to put it, and whole consolidation
//! rounds.
//!
//! Everything here is pure: no I/O, no clock (time arrives as an argument),
//! no global state. The simulator and, later, the daemon drive the same
//! functions, so what the simulator measures is what runs in production.
//! The consolidation algorithms follow CloudSim 3.0.3 operation for operation
//! where the PlanetLab benchmark depends on it; each such place says so.
#![deny(missing_docs)]

pub mod balance;
pub mod candidates;
pub mod cluster;
pub mod consolidate;
pub mod cpu_share;
pub mod detect;
pub mod placement;
pub mod select;
pub mod spec;
pub mod stats;

pub use cluster::{ClusterState, HostIndex, HostState, VmIndex, VmState};
pub use consolidate::{ConsolidationPolicy, Consolidator, Migration};
pub use detect::OverloadDetector;
pub use select::VmSelector;
pub use spec::{paper_policies, policy_grid};

/// Why a policy could not decide.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy name that does not parse.
    #[error("unknown policy {name:?}: {reason}")]
    UnknownPolicy {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting {setting}: {value}")]
    InvalidSetting {
        /// Which setting.
        setting: String,
        /// The value given.
        value: String,
    },
    /// A VM could not be put back where it was after a what-if round.
    #[error("could not restore VM {vm} on host {host} after a consolidation round")]
    RestoreFailed {
        /// The VM.
        vm: VmIndex,
        /// Its host.
        host: HostIndex,
    },
}
