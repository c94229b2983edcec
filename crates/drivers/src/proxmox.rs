//! The Proxmox VE body: every guest of a Proxmox VE cluster, VMs and
//! containers, through the cluster's public REST API with an API token.
//!
//! - Observe: one `GET /cluster/resources` per interval; node details
//!   (`/nodes/{node}/status`) when a node appears or changes size; the
//!   version (`/version`: 8.x and 9.x differ, see `version.rs`), HA rules
//!   or groups, cluster options and, before 8.3, the HA status (nodes in HA
//!   maintenance, see `ha_status.rs`) every `rules_refresh_seconds`. Guests
//!   are named by vmid (Proxmox names need not be unique). Templates and
//!   stopped guests are not running, so never balanced; locked, paused and
//!   suspended guests are pinned.
//! - Rules: HA rules and `keel-*` tags become Keel rules
//!   ([`Driver::cluster_rules`]); the table is in `rules.rs` and
//!   docs/proxmox.md.
//! - Act: see `migrate.rs`. While the cluster's own resource scheduler
//!   rebalances automatically (CRS `ha-auto-rebalance=1`), Keel refuses to
//!   migrate unless `act_despite_crs_auto_rebalance` is set. What Proxmox
//!   VE refuses is remembered (`refusals.rs`) and reported as rules.
//!
//! The config section ([`ProxmoxConfig`]) is always built; the driver
//! itself needs the cargo feature `proxmox`.

pub mod config;

#[cfg(feature = "proxmox")]
mod client;
#[cfg(feature = "proxmox")]
mod ha_config;
#[cfg(feature = "proxmox")]
mod ha_status;
#[cfg(feature = "proxmox")]
mod migrate;
#[cfg(feature = "proxmox")]
mod observe;
#[cfg(feature = "proxmox")]
mod precondition;
#[cfg(feature = "proxmox")]
mod refusals;
#[cfg(feature = "proxmox")]
mod rules;
#[cfg(feature = "proxmox")]
mod settings;
#[cfg(feature = "proxmox")]
mod version;
#[cfg(feature = "proxmox")]
mod wave;

pub use config::{parse_fingerprint, ProxmoxConfig, ProxmoxConfigError};

#[cfg(feature = "proxmox")]
pub use driver::ProxmoxDriver;

#[cfg(feature = "proxmox")]
mod driver {
    use super::client::Api;
    use super::config::ProxmoxConfig;
    use super::ha_config::HaPlacement;
    use super::ha_status;
    use super::observe::{self, CpuIntegrator, Guest, NodeDetails, NodeStatus, Resource};
    use super::refusals::Refusals;
    use super::rules::{cluster_rules, without_conflicts, Pins};
    use super::settings;
    use super::version::PveVersion;
    use crate::{
        Capabilities, Driver, DriverError, MigrationOutcome, MigrationRequest, Observation,
    };
    use keel_model::{Resources, Rules};
    use serde_json::Value;
    use std::collections::{BTreeSet, HashMap};
    use std::time::{Duration, Instant};

    /// A Proxmox VE cluster as a Keel driver.
    pub struct ProxmoxDriver {
        pub(super) api: Api,
        pub(super) config: ProxmoxConfig,
        pub(super) version: Option<PveVersion>,
        started: Instant,
        cpu: CpuIntegrator,
        node_details: HashMap<String, NodeDetails>,
        pub(super) guests: HashMap<u64, Guest>,
        ha: HaPlacement,
        crs_auto_rebalance: bool,
        /// Nodes whose HA LRM is in maintenance mode (as last read).
        pub(super) ha_maintenance: BTreeSet<String>,
        /// The last HA status read failed (warned once until it works).
        ha_status_failing: bool,
        settings_read: Option<Instant>,
        pub(super) failed: HashMap<u64, Instant>,
        pub(super) refusals: Refusals,
        rules: Rules,
    }

    impl ProxmoxDriver {
        /// A driver for the cluster `config` names. Checks the config and
        /// reads the token secret; contacts nothing yet.
        pub fn connect(config: ProxmoxConfig) -> Result<Self, DriverError> {
            config.check().map_err(|e| DriverError::Hypervisor {
                context: "the [proxmox] config".into(),
                message: e.to_string(),
            })?;
            let secret = match (&config.token_secret, &config.token_secret_file) {
                (Some(s), _) => s.clone(),
                (None, Some(path)) => {
                    std::fs::read_to_string(path).map_err(|e| DriverError::Hypervisor {
                        context: format!("reading proxmox.token_secret_file {}", path.display()),
                        message: e.to_string(),
                    })?
                }
                (None, None) => {
                    return Err(DriverError::Hypervisor {
                        context: "the [proxmox] config".into(),
                        message: "no token_secret and no token_secret_file".into(),
                    })
                }
            };
            Ok(Self {
                api: Api::new(&config, &secret)?,
                config,
                version: None,
                started: Instant::now(),
                cpu: CpuIntegrator::default(),
                node_details: HashMap::new(),
                guests: HashMap::new(),
                ha: HaPlacement::default(),
                crs_auto_rebalance: false,
                ha_maintenance: BTreeSet::new(),
                ha_status_failing: false,
                settings_read: None,
                failed: HashMap::new(),
                refusals: Refusals::default(),
                rules: Rules::default(),
            })
        }

        /// HTTP requests sent so far.
        pub fn requests(&self) -> u64 {
            self.api.requests()
        }

        /// The Proxmox VE release (`major.minor`) as last read.
        pub fn version(&self) -> Option<String> {
            self.version.map(|v| v.to_string())
        }

        /// Whether the cluster's CRS rebalances on its own (as last read).
        pub fn crs_auto_rebalance(&self) -> bool {
            self.crs_auto_rebalance
        }

        /// Nodes in HA maintenance (as last read).
        pub fn nodes_in_ha_maintenance(&self) -> impl Iterator<Item = &str> {
            self.ha_maintenance.iter().map(String::as_str)
        }

        /// Why Proxmox VE refused moving guest `vmid` to `node`, if it did
        /// (remembered until the guest's config changes).
        pub fn refused(&self, vmid: u64, node: &str) -> Option<&str> {
            self.refusals.refuses(vmid, node)
        }

        /// Whether Keel may migrate now (not blocked by CRS auto-rebalance).
        pub fn may_act(&self) -> bool {
            !self.crs_auto_rebalance || self.config.act_despite_crs_auto_rebalance
        }

        /// Reads the version, HA settings and cluster options when due.
        fn refresh_settings(&mut self) -> Result<(), DriverError> {
            let period = Duration::from_secs_f64(self.config.rules_refresh_seconds);
            if self.settings_read.is_some_and(|t| t.elapsed() < period) {
                return Ok(());
            }
            let version = settings::read_version(&self.api)?;
            if self.version != Some(version) {
                tracing::info!(%version, "Proxmox VE release");
            }
            self.version = Some(version);
            let ha = settings::read_ha_placement(&self.api, version)?;
            if format!("{:?}", ha.rules) != format!("{:?}", self.ha.rules) {
                // What the HA stack refused may be possible under new rules.
                self.refusals.forget_ha();
            }
            self.ha = ha;
            let options: Value = self.api.get("/cluster/options", &[], "Sys.Audit on /")?;
            let auto = settings::crs_auto_rebalance(options.get("crs"));
            if auto && !self.crs_auto_rebalance {
                let crs = options.get("crs").cloned().unwrap_or_default().to_string();
                if self.config.act_despite_crs_auto_rebalance {
                    tracing::warn!(
                        crs,
                        "the cluster's CRS rebalances automatically and \
                        proxmox.act_despite_crs_auto_rebalance = true: both will move guests"
                    );
                } else {
                    tracing::warn!(
                        crs,
                        "the cluster's CRS rebalances automatically: \
                        Keel only recommends (set proxmox.act_despite_crs_auto_rebalance to act)"
                    );
                }
            }
            self.crs_auto_rebalance = auto;
            if !version.has_node_hastate() {
                self.refresh_ha_status();
            }
            self.recheck_refusals();
            self.settings_read = Some(Instant::now());
            Ok(())
        }

        /// Forgets the refusals of guests whose config changed since.
        fn recheck_refusals(&mut self) {
            for (vmid, digest) in self.refusals.guests() {
                let Some(guest) = self.guests.get(&vmid) else {
                    continue;
                };
                let now = self.config_digest(guest);
                if now.is_some() && now != digest {
                    tracing::info!(
                        guest = vmid,
                        "config changed: Proxmox VE's refusals forgotten"
                    );
                    self.refusals.forget(vmid);
                }
            }
        }

        /// The config digest of a guest, `None` when unreadable.
        pub(super) fn config_digest(&self, guest: &Guest) -> Option<String> {
            let path = format!(
                "/nodes/{}/{}/{}/config",
                guest.node,
                guest.kind.path(),
                guest.vmid
            );
            let need = format!("VM.Audit on /vms/{}", guest.vmid);
            let config = self.api.get(&path, &[], &need).ok()?;
            config.get("digest")?.as_str().map(str::to_string)
        }

        /// Nodes in HA maintenance from `hastate` of the node entries
        /// (8.3+); before 8.3 from the HA status.
        fn maintenance_from_hastate(&mut self, nodes: &[observe::NodeEntry]) {
            if !self.version.is_some_and(PveVersion::has_node_hastate) {
                return;
            }
            let now: BTreeSet<String> = nodes
                .iter()
                .filter(|n| n.ha_maintenance)
                .map(|n| n.name.clone())
                .collect();
            self.set_ha_maintenance(now);
        }

        fn set_ha_maintenance(&mut self, nodes: BTreeSet<String>) {
            for n in nodes.difference(&self.ha_maintenance) {
                tracing::info!(
                    node = %n,
                    "node in HA maintenance: Keel places nothing there \
                     and leaves its HA-managed guests to the HA stack"
                );
            }
            for n in self.ha_maintenance.difference(&nodes) {
                tracing::info!(node = %n, "node out of HA maintenance");
            }
            self.ha_maintenance = nodes;
        }

        /// Reads which nodes are in HA maintenance. A failure (no
        /// Sys.Audit, a node's error, a timeout, an odd answer) keeps what
        /// was known and is warned about once, until a read works again:
        /// the observation goes on.
        fn refresh_ha_status(&mut self) {
            const PATH: &str = "/cluster/ha/status/current";
            let read = self.api.get(PATH, &[], "Sys.Audit on /").and_then(|data| {
                ha_status::nodes_in_maintenance(&data).map_err(|message| DriverError::Hypervisor {
                    context: format!("GET {PATH}"),
                    message,
                })
            });
            match read {
                Ok(nodes) => {
                    self.set_ha_maintenance(nodes);
                    self.ha_status_failing = false;
                }
                Err(e) => {
                    if !self.ha_status_failing {
                        let known: Vec<&str> = self.nodes_in_ha_maintenance().collect();
                        tracing::warn!(
                            error = %e,
                            in_maintenance = ?known,
                            "reading the HA status failed: nodes in HA maintenance kept as last known \
                             (warned once until a read works)"
                        );
                    }
                    self.ha_status_failing = true;
                }
            }
        }

        fn refresh_nodes(&mut self, nodes: &[observe::NodeEntry]) {
            for n in observe::nodes_to_refresh(nodes, &self.node_details) {
                let path = format!("/nodes/{}/status", n.name);
                let need = format!("Sys.Audit on /nodes/{}", n.name);
                match self.api.get_as::<NodeStatus>(&path, &[], &need) {
                    Ok(s) => {
                        let details = NodeDetails {
                            seen_maxcpu: n.maxcpu,
                            seen_maxmem: n.maxmem,
                            capacity: Resources::new(s.cpuinfo.cpus, s.memory.total, 0.0, 0.0),
                        };
                        self.node_details.insert(n.name.clone(), details);
                    }
                    // The resource list's sizes serve meanwhile; retried
                    // at the next observation.
                    Err(e) => tracing::warn!(node = %n.name, error = %e, "node details"),
                }
            }
        }
    }

    impl Driver for ProxmoxDriver {
        fn name(&self) -> &'static str {
            "proxmox"
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities {
                live_migration: self.may_act(),
                ..Capabilities::default()
            }
        }

        fn observe(&mut self) -> Result<Observation, DriverError> {
            self.refresh_settings()?;
            let resources: Vec<Resource> = self.api.get_as(
                "/cluster/resources",
                &[],
                "VM.Audit on /vms, Sys.Audit on /nodes",
            )?;
            let time_seconds = self.started.elapsed().as_secs_f64();
            let snapshot = observe::split(&resources, time_seconds, &mut self.cpu);
            self.maintenance_from_hastate(&snapshot.nodes);
            self.refresh_nodes(&snapshot.nodes);
            self.node_details
                .retain(|name, _| snapshot.nodes.iter().any(|n| n.online && n.name == *name));
            let hosts = observe::hosts(&snapshot.nodes, &self.node_details, &self.ha_maintenance);
            let hold = Duration::from_secs_f64(self.config.failed_migration_hold_seconds);
            self.failed.retain(|_, at| at.elapsed() < hold);
            let pins = Pins {
                pin_containers: !self.config.allow_container_restart,
                failed: self.failed.keys().copied().collect(),
                ha_maintenance: self.ha_maintenance.clone(),
                ha_no_failback: self.ha.no_failback.clone(),
                refused_everywhere: self.refusals.everywhere(),
            };
            let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
            let mut rules = cluster_rules(&snapshot.guests, &names, &self.ha.rules, &pins);
            let running: Vec<&Guest> = snapshot.guests.iter().filter(|g| g.running).collect();
            rules
                .vm_host
                .extend(self.refusals.must_not_rules(&running, &names));
            self.guests = snapshot.guests.into_iter().map(|g| (g.vmid, g)).collect();
            self.refusals.retain_present(&self.guests);
            let observation = Observation {
                time_seconds,
                hosts,
                vms: snapshot.vms,
            };
            self.rules = without_conflicts(rules, &observation);
            Ok(observation)
        }

        fn migrate(
            &mut self,
            request: &MigrationRequest<'_>,
        ) -> Result<MigrationOutcome, DriverError> {
            let mut results = self.migrate_wave(std::slice::from_ref(request));
            results.pop().unwrap_or(Err(DriverError::Unsupported(
                "a migration without a result",
            )))
        }

        fn runs_waves_concurrently(&self) -> bool {
            true
        }

        /// Starts the wave's migrations one after another (each after its
        /// checks and once the concurrency limits leave room), then follows
        /// every task together until each has ended.
        fn migrate_wave(
            &mut self,
            requests: &[MigrationRequest<'_>],
        ) -> Vec<Result<MigrationOutcome, DriverError>> {
            self.run_and_record(requests)
        }

        fn cluster_rules(&self) -> Rules {
            self.rules.clone()
        }
    }
}
