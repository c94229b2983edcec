//! Keel's daemon layer. For now: the control loop that turns a driver's
//! observations into demand estimates, asks a balancer for a plan and
//! executes it through the driver, wave by wave. It holds no policy logic of
//! its own: estimation and planning are `keel-policy`'s, acting is the
//! driver's. The REST API, dashboard and persistence come on top of it.
#![deny(missing_docs)]

pub mod control;

pub use control::{ControlError, ControlLoop, IterationReport, MoveOutcome};
