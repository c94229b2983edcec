//! Keel's daemon layer: the control loop that turns a driver's observations
//! into demand estimates, asks a balancer for a plan and executes it through
//! the driver; automation levels and plans with their states; the REST API,
//! bearer-token authentication and Prometheus metrics of `keel serve`. It
//! holds no policy logic of its own: estimation and planning are
//! `keel-policy`'s, acting is the driver's. Time comes from a [`Clock`].
//!
//! Modules: [`control`] (one round against any driver), [`plans`] (ids,
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
pub mod control;
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
