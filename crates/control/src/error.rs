//! Why a control round could not run: each variant keeps its typed cause.

use keel_drivers::DriverError;
use keel_model::{ClusterError, RuleError};
use keel_policy::balance::demand::DemandError;
use keel_policy::PolicyError;

/// Why an iteration could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The driver failed to observe.
    #[error("observing the cluster: {0}")]
    Observe(#[source] DriverError),
    /// The observation is not a valid cluster (duplicate names...).
    #[error("the observed cluster is inconsistent: {0}")]
    Cluster(#[source] ClusterError),
    /// The rules do not fit the observed cluster.
    #[error("rules: {0}")]
    Rules(#[source] RuleError),
    /// The balancer failed.
    #[error("planning: {0}")]
    Plan(#[source] PolicyError),
    /// The demand estimator's settings are invalid.
    #[error("demand estimator: {0}")]
    Estimator(#[source] DemandError),
}
