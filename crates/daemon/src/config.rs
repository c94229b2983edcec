//! The daemon's configuration (the TOML file of `keel serve --config`) and
//! the embedded default that runs with no file at all.

use crate::clock::Clock;
use crate::demo::{demo_cluster, AcceleratedSim, DemoConfig, DemoError};
use crate::libvirt_hosts::{LibvirtConfig, LibvirtConfigError};
use crate::service::{Automation, Service, ServiceConfig};
use crate::store::{HistoryConfig, Store, StoreError};
use crate::tls::TlsConfig;
use keel_drivers::proxmox::{ProxmoxConfig, ProxmoxConfigError};
use keel_model::Rules;
use keel_policy::balance::PlannerConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// Which body the daemon drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// The simulated cluster of [`crate::demo`].
    #[default]
    Sim,
    /// A Proxmox VE cluster through its REST API (the `[proxmox]` section).
    Proxmox,
    /// libvirt daemons, one per host (the `[libvirt]` section).
    Libvirt,
}

/// Everything `keel serve` can be told in its config file. Every field
/// has a default; command-line flags override `listen` and `data_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address to listen on (default 127.0.0.1:7878).
    pub listen: Option<SocketAddr>,
    /// Data directory (default `$XDG_DATA_HOME/keel` or `~/.local/share/keel`).
    pub data_dir: Option<PathBuf>,
    /// Bearer token; default: the file `token` in the data directory,
    /// generated at first start.
    pub token: Option<String>,
    /// Automation level (default `manual` in a config file).
    pub automation: Automation,
    /// Seconds between two control rounds (default 2).
    pub interval_seconds: f64,
    /// The body (default `sim`).
    pub driver: DriverKind,
    /// The simulated cluster.
    pub sim: DemoConfig,
    /// The Proxmox VE cluster (`driver = "proxmox"`; docs/proxmox.md).
    pub proxmox: Option<ProxmoxConfig>,
    /// The libvirt hosts (`driver = "libvirt"`).
    pub libvirt: Option<LibvirtConfig>,
    /// Planner settings, `level` 1-5 among them (default: the planner's
    /// defaults with a 25 Gbit/s migration network, [`demo_planner`]).
    pub planner: PlannerConfig,
    /// Placement rules, as in `keel plan --rules`.
    pub rules: Rules,
    /// Retention of the history database (`<data_dir>/keel.db`).
    pub history: HistoryConfig,
    /// HTTPS: certificate and key PEM files (default: plain HTTP).
    pub tls: Option<TlsConfig>,
    /// Migration-cost inputs for VMs whose driver reports none (memory
    /// dirty rate, local disk; default 0: docs/architecture.md says what
    /// each driver reports).
    pub migration_defaults: keel_control::MigrationDefaults,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            listen: None,
            data_dir: None,
            token: None,
            automation: Automation::Manual,
            interval_seconds: 2.0,
            driver: DriverKind::Sim,
            sim: DemoConfig::default(),
            proxmox: None,
            libvirt: None,
            planner: demo_planner(),
            rules: Rules::default(),
            history: HistoryConfig::default(),
            tls: None,
            migration_defaults: keel_control::MigrationDefaults::default(),
        }
    }
}

/// Migration bandwidth of the simulated cluster, bytes per second: a
/// 25 Gbit/s migration network, like the hosts of `keel gen cluster`.
pub const DEMO_MIGRATION_BANDWIDTH: f64 = 3.125e9;

/// Objective units one second of migration costs in the simulated cluster,
/// a quarter of the planner's default 0.008: the simulator's migrations
/// complete at once and cost the VM nothing.
pub const DEMO_MIGRATION_COST_WEIGHT: f64 = 0.002;

/// The planner's defaults, with the simulated cluster's migration network
/// and price ([`DEMO_MIGRATION_BANDWIDTH`], [`DEMO_MIGRATION_COST_WEIGHT`]).
/// The planner weighs each move's benefit against its migration time; with
/// the defaults (10 Gbit/s, 0.008 per second) moving memory between the
/// demo's 500 GiB hosts does not pay, and balancing would be one move now
/// and then instead of visible within seconds.
pub fn demo_planner() -> PlannerConfig {
    let mut planner = PlannerConfig::default();
    planner.cost_model.bandwidth_bytes_per_second = DEMO_MIGRATION_BANDWIDTH;
    planner.migration_cost_weight = DEMO_MIGRATION_COST_WEIGHT;
    planner
}

impl DaemonConfig {
    /// The embedded default (no config file): the simulated cluster in
    /// `full` automation, so balancing is seen at once.
    pub fn embedded_default() -> Self {
        Self {
            automation: Automation::Full,
            ..Self::default()
        }
    }

    /// Checks the settings no type can check.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(self.interval_seconds.is_finite() && self.interval_seconds >= 0.01) {
            return Err(ConfigError::Setting {
                setting: "interval_seconds",
                value: self.interval_seconds.to_string(),
                expected: "at least 0.01",
            });
        }
        let w = self.sim.wall_seconds_per_sample;
        if !(w.is_finite() && w > 0.0) {
            return Err(ConfigError::Setting {
                setting: "sim.wall_seconds_per_sample",
                value: w.to_string(),
                expected: "a positive number of seconds",
            });
        }
        if self.sim.migration_delay_ms > 600_000 {
            return Err(ConfigError::Setting {
                setting: "sim.migration_delay_ms",
                value: self.sim.migration_delay_ms.to_string(),
                expected: "at most 600000 (10 minutes)",
            });
        }
        if !(1..=5).contains(&self.planner.level) {
            return Err(ConfigError::Setting {
                setting: "planner.level",
                value: self.planner.level.to_string(),
                expected: "1 to 5",
            });
        }
        if let Err((setting, value, expected)) = self.history.check() {
            return Err(ConfigError::History {
                setting,
                value,
                expected,
            });
        }
        match (&self.driver, &self.proxmox) {
            (DriverKind::Proxmox, None) => {
                return Err(ConfigError::Setting {
                    setting: "proxmox",
                    value: "(missing)".into(),
                    expected: "a [proxmox] section with url, token_id and the token secret",
                })
            }
            (DriverKind::Proxmox, Some(p)) => p.check()?,
            _ => {}
        }
        if self.driver == DriverKind::Libvirt {
            self.libvirt
                .as_ref()
                .ok_or(LibvirtConfigError::NoHosts)?
                .check()?;
        }
        if let Some(token) = &self.token {
            crate::auth::check_token(token).map_err(|reason| ConfigError::Setting {
                setting: "token",
                value: "(hidden)".into(),
                expected: if reason.contains("characters") {
                    "at least 16 characters"
                } else {
                    "printable ASCII without spaces"
                },
            })?;
        }
        Ok(())
    }

    /// Builds the service this config describes, on `clock`, with its
    /// history in memory (gone at exit).
    pub fn build_service(&self, clock: Arc<dyn Clock>) -> Result<Service, ConfigError> {
        let store = Store::in_memory(self.history.clone())?;
        self.build_service_with(clock, store)
    }

    /// Builds the service this config describes, on `clock`, with its
    /// history in `<data_dir>/keel.db` (created if missing).
    pub fn open_service(
        &self,
        clock: Arc<dyn Clock>,
        data_dir: &Path,
    ) -> Result<Service, ConfigError> {
        self.check()?;
        let store = Store::open_in(data_dir, self.history.clone())?;
        let config_changed = self.audit_changes(&store, clock.now_unix_ms())?;
        let runtime = crate::settings::remembered(&store, config_changed)?;
        match runtime {
            Some(runtime) => {
                tracing::info!(
                    automation = ?runtime.automation,
                    level = runtime.level,
                    "the config is unchanged since the last run: continuing with the \
                     automation, level and rules last set through the API"
                );
                let mut resumed = self.clone();
                resumed.automation = runtime.automation;
                resumed.planner.level = runtime.level;
                resumed.rules = runtime.rules;
                resumed.build_service_with(clock, store)
            }
            None => self.build_service_with(clock, store),
        }
    }

    /// Compares this config with the one the history last ran with and
    /// audits the difference (`who` = `config`). The token is never stored.
    /// True when the config differs (or this is the history's first start).
    fn audit_changes(&self, store: &Store, now_ms: u64) -> Result<bool, StoreError> {
        let shown = Self {
            token: self.token.as_ref().map(|_| "(set)".into()),
            ..self.clone()
        };
        let now = serde_json::to_value(&shown).unwrap_or_default();
        let before: Option<serde_json::Value> = store
            .meta("config")?
            .and_then(|text| serde_json::from_str(&text).ok());
        let detail = match &before {
            Some(before) if *before == now => return Ok(false),
            Some(before) => {
                let changed: Vec<&str> = now
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| before.get(k.as_str()) != Some(v))
                    .map(|(k, _)| k.as_str())
                    .collect();
                format!("changed: {}", changed.join(", "))
            }
            None => "first start with this history".to_string(),
        };
        store.audit(now_ms, "config", "config.change", "config", &detail)?;
        store.set_meta("config", &now.to_string())?;
        Ok(true)
    }

    fn build_service_with(
        &self,
        clock: Arc<dyn Clock>,
        store: Store,
    ) -> Result<Service, ConfigError> {
        self.check()?;
        let driver: Box<dyn keel_drivers::Driver> = match self.driver {
            DriverKind::Sim => {
                let sim = demo_cluster(&self.sim)?;
                let speedup = 300.0 / self.sim.wall_seconds_per_sample;
                Box::new(
                    AcceleratedSim::new(sim, clock.clone(), speedup).with_migration_delay(
                        std::time::Duration::from_millis(self.sim.migration_delay_ms),
                    ),
                )
            }
            DriverKind::Proxmox => proxmox_driver(self.proxmox.as_ref())?,
            DriverKind::Libvirt => self
                .libvirt
                .as_ref()
                .ok_or(LibvirtConfigError::NoHosts)?
                .connect()?,
        };
        let config = ServiceConfig {
            automation: self.automation,
            planner: self.planner,
            rules: self.rules.clone(),
            migration_defaults: self.migration_defaults,
        };
        Ok(Service::new(driver, config, clock, store))
    }
}

#[cfg(feature = "proxmox")]
fn proxmox_driver(
    config: Option<&ProxmoxConfig>,
) -> Result<Box<dyn keel_drivers::Driver>, ConfigError> {
    let config = config.cloned().ok_or(ConfigError::Setting {
        setting: "proxmox",
        value: "(missing)".into(),
        expected: "a [proxmox] section",
    })?;
    let driver = keel_drivers::proxmox::ProxmoxDriver::connect(config)
        .map_err(|e| ConfigError::Driver(e.to_string()))?;
    Ok(Box::new(driver))
}

#[cfg(not(feature = "proxmox"))]
fn proxmox_driver(
    _config: Option<&ProxmoxConfig>,
) -> Result<Box<dyn keel_drivers::Driver>, ConfigError> {
    Err(ConfigError::Driver(
        "driver = \"proxmox\": this keel was built without the `proxmox` feature".into(),
    ))
}

/// Why a config cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is out of range.
    #[error("setting {setting} = {value}: expected {expected}")]
    Setting {
        /// Which.
        setting: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A `[history]` setting is out of range.
    #[error("setting {setting} = {value}: expected {expected}")]
    History {
        /// Which (`history.tiers[1].keep_seconds`...).
        setting: String,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The history database cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The simulated cluster cannot be built.
    #[error(transparent)]
    Sim(#[from] DemoError),
    /// The `[proxmox]` section is wrong.
    #[error(transparent)]
    Proxmox(#[from] ProxmoxConfigError),
    /// The driver cannot be set up.
    #[error("driver: {0}")]
    Driver(String),
    /// The `[libvirt]` section is missing, wrong or its hosts unreachable.
    #[error(transparent)]
    Libvirt(#[from] LibvirtConfigError),
}
