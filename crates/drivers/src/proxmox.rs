//! The Proxmox VE body: every guest of a Proxmox VE cluster, VMs and
//! containers, through the cluster's public REST API with an API token.
//!
//! - Observe: one `GET /cluster/resources` per interval; node details
//!   (`/nodes/{node}/status`) when a node appears or changes size; HA rules,
//!   cluster options and the HA status (nodes in HA maintenance, see
//!   `ha_status.rs`) every `rules_refresh_seconds`. Guests are named by
//!   vmid (Proxmox names need not be unique). Templates and stopped guests
//!   are not running, so never balanced; locked guests are pinned.
//! - Rules: HA rules and `keel-*` tags become Keel rules
//!   ([`Driver::cluster_rules`]); the table is in `rules.rs` and
//!   docs/proxmox.md.
//! - Act: see `migrate.rs`. While the cluster's own resource scheduler
//!   rebalances automatically (CRS `ha-auto-rebalance=1`), Keel refuses to
//!   migrate unless `act_despite_crs_auto_rebalance` is set.
//!
//! The config section ([`ProxmoxConfig`]) is always built; the driver
//! itself needs the cargo feature `proxmox`.

pub mod config;

#[cfg(feature = "proxmox")]
mod client;
#[cfg(feature = "proxmox")]
mod ha_status;
#[cfg(feature = "proxmox")]
mod migrate;
#[cfg(feature = "proxmox")]
mod observe;
#[cfg(feature = "proxmox")]
mod rules;

pub use config::{parse_fingerprint, ProxmoxConfig, ProxmoxConfigError};

#[cfg(feature = "proxmox")]
pub use driver::ProxmoxDriver;

#[cfg(feature = "proxmox")]
mod driver {
    use super::client::Api;
    use super::config::ProxmoxConfig;
    use super::ha_status;
    use super::migrate::{outcome_since, Migration, Poll, Started};
    use super::observe::{self, CpuIntegrator, Guest, NodeDetails, NodeStatus, Resource};
    use super::rules::{cluster_rules, without_conflicts, HaRule, Pins};
    use crate::{
        Capabilities, Driver, DriverError, MigrationOutcome, MigrationRequest, Observation,
    };
    use keel_model::{Resources, Rules};
    use serde_json::Value;
    use std::collections::{BTreeSet, HashMap};
    use std::time::{Duration, Instant};

    /// A Proxmox VE cluster as a Keel driver.
    pub struct ProxmoxDriver {
        api: Api,
        config: ProxmoxConfig,
        started: Instant,
        cpu: CpuIntegrator,
        node_details: HashMap<String, NodeDetails>,
        guests: HashMap<u64, Guest>,
        ha_rules: Vec<HaRule>,
        crs_auto_rebalance: bool,
        /// Nodes whose HA LRM is in maintenance mode (as last read).
        ha_maintenance: BTreeSet<String>,
        /// The last HA status read failed (warned once until it works).
        ha_status_failing: bool,
        settings_read: Option<Instant>,
        failed: HashMap<u64, Instant>,
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
                started: Instant::now(),
                cpu: CpuIntegrator::default(),
                node_details: HashMap::new(),
                guests: HashMap::new(),
                ha_rules: Vec::new(),
                crs_auto_rebalance: false,
                ha_maintenance: BTreeSet::new(),
                ha_status_failing: false,
                settings_read: None,
                failed: HashMap::new(),
                rules: Rules::default(),
            })
        }

        /// HTTP requests sent so far.
        pub fn requests(&self) -> u64 {
            self.api.requests()
        }

        /// Whether the cluster's CRS rebalances on its own (as last read).
        pub fn crs_auto_rebalance(&self) -> bool {
            self.crs_auto_rebalance
        }

        /// Nodes in HA maintenance (as last read).
        pub fn nodes_in_ha_maintenance(&self) -> impl Iterator<Item = &str> {
            self.ha_maintenance.iter().map(String::as_str)
        }

        /// Whether Keel may migrate now (not blocked by CRS auto-rebalance).
        pub fn may_act(&self) -> bool {
            !self.crs_auto_rebalance || self.config.act_despite_crs_auto_rebalance
        }

        /// Reads HA rules and cluster options when they are due.
        fn refresh_settings(&mut self) -> Result<(), DriverError> {
            let period = Duration::from_secs_f64(self.config.rules_refresh_seconds);
            if self.settings_read.is_some_and(|t| t.elapsed() < period) {
                return Ok(());
            }
            self.ha_rules = self
                .api
                .get_as("/cluster/ha/rules", &[], "Sys.Audit on /")?;
            let options: Value = self.api.get("/cluster/options", &[], "Sys.Audit on /")?;
            let crs = options.get("crs").and_then(Value::as_str).unwrap_or("");
            let auto = crs_auto_rebalance(crs);
            if auto && !self.crs_auto_rebalance {
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
            self.refresh_ha_status();
            self.settings_read = Some(Instant::now());
            Ok(())
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

    /// Whether a `crs` property string turns automatic rebalancing on.
    pub(super) fn crs_auto_rebalance(crs: &str) -> bool {
        crs.split(',').any(|kv| {
            matches!(
                kv.trim().split_once('='),
                Some(("ha-auto-rebalance", "1" | "true" | "yes" | "on"))
            )
        })
    }

    impl ProxmoxDriver {
        /// The checks of one request before anything starts.
        fn admit(&self, request: &MigrationRequest<'_>) -> Result<&Guest, DriverError> {
            let unknown = || DriverError::Unknown {
                kind: "VM",
                name: request.vm.to_string(),
            };
            let vmid: u64 = request.vm.parse().map_err(|_| unknown())?;
            let guest = self.guests.get(&vmid).ok_or_else(unknown)?;
            if guest.node != request.from {
                return Err(DriverError::Hypervisor {
                    context: format!("migrating {vmid} from {} to {}", request.from, request.to),
                    message: format!("the guest is on {} now; move dropped", guest.node),
                });
            }
            if self.ha_maintenance.contains(request.to) {
                return Err(DriverError::Hypervisor {
                    context: format!("migrating {vmid} from {} to {}", request.from, request.to),
                    message: format!("node {} is in HA maintenance; move dropped", request.to),
                });
            }
            if !self.may_act() {
                return Err(DriverError::Unsupported(
                    "migrating while the cluster's CRS auto-rebalance is on \
                     (set proxmox.act_despite_crs_auto_rebalance = true to confirm)",
                ));
            }
            Ok(guest)
        }

        /// Starts and follows a wave; touches no state (the caller records
        /// the outcomes).
        fn run_wave(
            &self,
            requests: &[MigrationRequest<'_>],
        ) -> Vec<Result<MigrationOutcome, DriverError>> {
            let mut results: Vec<Option<Result<MigrationOutcome, DriverError>>> =
                requests.iter().map(|_| None).collect();
            // (request index, migration, task, start, deadline)
            let mut running = Vec::new();
            let mut own_tasks: Vec<(String, String)> = Vec::new();
            for (i, request) in requests.iter().enumerate() {
                let guest = match self.admit(request) {
                    Ok(guest) => guest,
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                };
                let migration = Migration {
                    api: &self.api,
                    config: &self.config,
                    guest,
                    to: request.to,
                    bandwidth_bytes_per_second: request.max_bandwidth_bytes_per_second,
                };
                let started = Instant::now();
                let deadline = migration.deadline();
                match migration.start(deadline, &own_tasks) {
                    Ok(Started::Task(upid)) => {
                        own_tasks.push((upid.clone(), request.to.to_string()));
                        running.push((i, migration, upid, started, deadline));
                    }
                    Ok(Started::Finished) => results[i] = Some(Ok(outcome_since(started))),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            let mut pause = Poll::new();
            while !running.is_empty() {
                running.retain(|(i, migration, upid, started, deadline)| {
                    match migration.poll(upid, *deadline) {
                        None => true,
                        Some(result) => {
                            results[*i] = Some(result.map(|()| outcome_since(*started)));
                            false
                        }
                    }
                });
                if !running.is_empty() {
                    pause.wait();
                }
            }
            results
                .into_iter()
                .map(|r| {
                    r.unwrap_or(Err(DriverError::Unsupported(
                        "a migration without a result",
                    )))
                })
                .collect()
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
            };
            let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
            let rules = cluster_rules(&snapshot.guests, &names, &self.ha_rules, &pins);
            self.guests = snapshot.guests.into_iter().map(|g| (g.vmid, g)).collect();
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
            let results = self.run_wave(requests);
            for (request, result) in requests.iter().zip(&results) {
                let Ok(vmid) = request.vm.parse::<u64>() else {
                    continue;
                };
                match result {
                    Ok(_) => {
                        if let Some(g) = self.guests.get_mut(&vmid) {
                            g.node = request.to.to_string();
                        }
                    }
                    Err(DriverError::MigrationFailed { .. } | DriverError::VmLost { .. }) => {
                        self.failed.insert(vmid, Instant::now());
                    }
                    Err(_) => {}
                }
            }
            results
        }

        fn cluster_rules(&self) -> Rules {
            self.rules.clone()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn crs_auto_rebalance_is_read_from_the_property_string() {
            assert!(!crs_auto_rebalance(""));
            assert!(!crs_auto_rebalance("ha=static,ha-rebalance-on-start=1"));
            assert!(crs_auto_rebalance("ha=dynamic,ha-auto-rebalance=1"));
            assert!(!crs_auto_rebalance("ha-auto-rebalance=0"));
        }
    }
}
