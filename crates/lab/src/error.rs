//! The lab's typed errors: each names the step, and for a command its
//! argument vector and standard error.

use std::path::PathBuf;

/// An error of `keel lab`.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command exited unsuccessfully.
    #[error("{step}: `{command}` failed ({status}): {stderr}")]
    Command {
        /// What the lab was doing.
        step: String,
        /// The command line (argument vector joined by spaces, for display).
        command: String,
        /// Exit status.
        status: String,
        /// Its standard error (trimmed).
        stderr: String,
    },
    /// A command could not be started.
    #[error("{step}: cannot run `{command}`: {source}")]
    Spawn {
        /// What the lab was doing.
        step: String,
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A command did not finish in time (it was killed).
    #[error("{step}: `{command}` timed out after {secs} s; stderr: {stderr}")]
    Timeout {
        /// What the lab was doing.
        step: String,
        /// The command line.
        command: String,
        /// The time limit in seconds.
        secs: u64,
        /// Standard error received before the timeout.
        stderr: String,
    },
    /// A file system operation failed.
    #[error("{step}: {path}: {source}")]
    Io {
        /// What the lab was doing.
        step: String,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Prerequisites are missing (the message names the apt packages).
    #[error("missing prerequisites: {0}")]
    Prerequisites(String),
    /// The state file is unreadable or invalid.
    #[error("state file {path}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A step failed for another reason.
    #[error("{step}: {message}")]
    Failed {
        /// What the lab was doing.
        step: String,
        /// What went wrong.
        message: String,
    },
}

/// Result of a lab operation.
pub type Result<T> = std::result::Result<T, LabError>;

/// Wraps an I/O error with its step and path.
pub(crate) fn io(step: &str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
    let (step, path) = (step.to_string(), path.into());
    move |source| LabError::Io { step, path, source }
}

/// A failure without a command.
pub(crate) fn failed(step: &str, message: impl Into<String>) -> LabError {
    LabError::Failed {
        step: step.to_string(),
        message: message.into(),
    }
}
