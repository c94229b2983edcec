//! Keel's data model: the nouns every other layer speaks.
//!
//! This crate owns the units (documented once, on the field), the host and VM
//! specifications, power models and workload traces. It does no I/O and holds
//! no behaviour beyond arithmetic on its own values; loading traces from files
//! is `keel-trace`'s job, deciding anything is `keel-policy`'s.
#![deny(missing_docs)]

pub mod cluster;
pub mod power;
pub mod resources;
pub mod rules;
pub mod spec;
pub mod trace;

pub use cluster::{
    Cluster, ClusterError, ClusterSnapshot, HostId, HostInfo, VmId, VmInfo, DEFAULT_SHARES,
};
pub use power::{PowerModel, PowerModelError};
pub use resources::{Resource, Resources};
pub use rules::{CompiledRules, Overcommit, RuleError, Rules, VmGroupRule, VmHostKind, VmHostRule};
pub use spec::{HostSpec, VmSpec};
pub use trace::{ResourceUsage, TraceError, VmSeries, WorkloadTrace};
