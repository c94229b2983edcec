//! Keel's daemon layer around the one control loop (`keel-control`):
//! automation levels and plans with their states, the history store, the
//! REST API, bearer-token authentication and Prometheus metrics of `keel
//! serve`. It holds no policy logic and no loop of its own: observing,
//! estimating, planning, checking and acting are `keel-control`'s (with
//! `keel-policy` deciding and the driver acting). Time comes from a [`Clock`].
//!
//! Modules: [`control`] (the loop's types, re-exported), [`plans`] (ids,
//! states, reasons), [`service`] (automation, maintenance, the shared
//! state), [`view`] (cluster view and /metrics), [`api`] (routes),
//! [`auth`] (the token), [`dashboard`] (the web page), [`server`] (HTTP
//! server and periodic loop), [`tls`] (HTTPS), [`settings`] (run-time
//! settings and rules), [`config`] (the config file and the embedded
//! default), [`store`] (the history in SQLite), [`demo`] (the
//! simulated cluster of the embedded default), [`clock`].
#![deny(missing_docs)]

pub mod api;
mod api_alloc;
mod api_settings;
mod api_shape;
pub mod auth;
pub mod clock;
pub mod config;
/// The control loop the daemon drives (`keel-control`), re-exported.
pub mod control {
    pub use keel_control::*;
}
pub mod dashboard;
pub mod demo;
pub mod history_api;
pub mod libvirt_hosts;
mod maintenance;
pub mod placement_api;
pub mod plans;
pub mod recovery;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod tls;
pub mod view;

pub use clock::{Clock, FakeClock, WallClock};
pub use config::{DaemonConfig, DEFAULT_LISTEN};
pub use control::{ControlError, ControlLoop, IterationReport, MoveOutcome, NamedMove, Proposal};
pub use plans::{PlanRecord, PlanState};
pub use server::{start, start_with, Running, ServeError, ServeOptions};
pub use service::{Automation, Service, ServiceConfig, ServiceError};
