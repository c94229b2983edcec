//! Keel's one control loop: observe -> estimate -> decide -> check -> act
//! -> record, against any driver and an injected clock (the driver's own
//! time), with no HTTP and no SQL.
//!
//! It owns what happens between a driver and the pure policy layer: demand
//! history per VM (keyed by name, so VMs coming and going touch only their
//! own), the planner's inputs (estimated demand, the operator's allocation
//! policy, migration-cost inputs the driver reports or configured defaults),
//! the independent plan check before a plan's first move and before each
//! wave, wave-by-wave execution, and what each decision used (so "why did
//! Keel move VM X?" has an answer). `keel serve` (every driver), `keel lab`
//! and `keel sim --mode balance` ([`replay`]) all run this loop; the daemon
//! adds the API, the store and the automation levels around it.
#![deny(missing_docs)]

mod check;
mod control_loop;
mod error;
mod execute;
mod explain;
mod history;
mod inputs;
pub mod replay;

pub use check::PlanRefusal;
pub use control_loop::{
    ControlLoop, Execution, IterationReport, MoveOutcome, NamedMove, Proposal, VmUsage,
};
pub use error::ControlError;
pub use execute::{waves, ActionRecorder, NoRecorder};
pub use explain::{explain, LoadChange, MoveInputs};
pub use history::DemandHistory;
pub use inputs::{MigrationDefaults, VmAllocation};
