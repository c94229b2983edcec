//! The `[proxmox]` section of Keel's config: where the cluster is, which
//! API token to use, how to trust its certificate and what Keel may do.
//! Pure data (always compiled), so a config file parses the same whether or
//! not the driver itself is built in.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How Keel talks to a Proxmox VE cluster and what it may do there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxConfig {
    /// Any node of the cluster, `https://HOST:8006` (no path).
    pub url: String,
    /// Other nodes of the same cluster, same form: asked in turn when the
    /// current one cannot be reached (a node rebooting), so Keel is not
    /// blind while one node is down.
    #[serde(default)]
    pub fallback_urls: Vec<String>,
    /// The API token id, `USER@REALM!TOKENID` (e.g. `keel@pve!balancer`).
    pub token_id: String,
    /// The token's secret (a UUID). Prefer `token_secret_file`.
    #[serde(default, skip_serializing)]
    pub token_secret: Option<String>,
    /// A file holding the token's secret (one line; keep it mode 0600).
    #[serde(default)]
    pub token_secret_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the node's TLS certificate, hex with or
    /// without colons (as `pvenode cert info` prints it): trusted even when
    /// self-signed, and nothing else is.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// A PEM file of CA certificates to trust instead of the system's
    /// (e.g. the cluster's `/etc/pve/pve-root-ca.pem`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (no verification at all). Logged as a warning
    /// at every start; for a lab only.
    #[serde(default)]
    pub insecure: bool,
    /// Seconds one HTTP request may take (default 30).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: f64,
    /// Seconds a migration task may run before Keel stops following it and
    /// reports it failed (default 900; the task itself is left to Proxmox).
    #[serde(default = "default_task_timeout")]
    pub task_timeout_seconds: f64,
    /// Seconds between two reads of the HA rules (default 60).
    #[serde(default = "default_rules_refresh")]
    pub rules_refresh_seconds: f64,
    /// Migrate running containers by restart (they stop for the move).
    /// Off by default: running containers are then pinned where they are.
    #[serde(default)]
    pub allow_container_restart: bool,
    /// Seconds a container may take to shut down for a restart migration
    /// (Proxmox's `timeout`, default 180).
    #[serde(default = "default_container_timeout")]
    pub container_shutdown_timeout_seconds: u32,
    /// Let a live migration copy local disks (`with-local-disks`); off by
    /// default, so only VMs on shared storage move.
    #[serde(default)]
    pub allow_local_disks: bool,
    /// Bandwidth cap of a migration, KiB/s (`bwlimit`); default: the
    /// cluster's own limit (datacenter.cfg).
    #[serde(default)]
    pub bandwidth_limit_kib_per_second: Option<u64>,
    /// Migrations running at once from or to one node, counting those
    /// Keel did not start (default 1).
    #[serde(default = "default_per_node")]
    pub max_migrations_per_node: u32,
    /// Migrations running at once in the whole cluster (default 2).
    #[serde(default = "default_per_cluster")]
    pub max_migrations_per_cluster: u32,
    /// Seconds a guest whose migration failed stays where it is before
    /// Keel plans to move it again (default 3600): no retry loop.
    #[serde(default = "default_failed_hold")]
    pub failed_migration_hold_seconds: f64,
    /// Seconds the HA stack has to start moving an HA-managed guest Keel
    /// asked it to move (default 30, three CRM rounds); if it has not, it
    /// ignored the request (node or resource affinity) and Keel records
    /// the refusal.
    #[serde(default = "default_ha_request_grace")]
    pub ha_request_grace_seconds: f64,
    /// First pause, seconds, between two looks at a running migration
    /// (task status, HA state); it doubles up to 2 s (default 0.05).
    #[serde(default = "default_poll_start")]
    pub poll_start_seconds: f64,
    /// Act even though the cluster's own resource scheduler (CRS) balances
    /// automatically. Off by default: Keel then only recommends.
    #[serde(default)]
    pub act_despite_crs_auto_rebalance: bool,
}

fn default_request_timeout() -> f64 {
    30.0
}
fn default_task_timeout() -> f64 {
    900.0
}
fn default_rules_refresh() -> f64 {
    60.0
}
fn default_poll_start() -> f64 {
    0.05
}
fn default_ha_request_grace() -> f64 {
    30.0
}
fn default_failed_hold() -> f64 {
    3600.0
}
fn default_container_timeout() -> u32 {
    180
}
fn default_per_node() -> u32 {
    1
}
fn default_per_cluster() -> u32 {
    2
}

/// A setting of the `[proxmox]` section that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("proxmox.{setting} = {value}: expected {expected}")]
pub struct ProxmoxConfigError {
    /// The setting.
    pub setting: &'static str,
    /// Its value (secrets hidden).
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

impl ProxmoxConfig {
    /// A config for `url` with token `token_id` and secret, every other
    /// setting at its default.
    pub fn new(url: &str, token_id: &str, token_secret: &str) -> Self {
        Self {
            url: url.to_string(),
            fallback_urls: Vec::new(),
            token_id: token_id.to_string(),
            token_secret: Some(token_secret.to_string()),
            token_secret_file: None,
            fingerprint: None,
            ca_file: None,
            insecure: false,
            request_timeout_seconds: default_request_timeout(),
            task_timeout_seconds: default_task_timeout(),
            rules_refresh_seconds: default_rules_refresh(),
            allow_container_restart: false,
            container_shutdown_timeout_seconds: default_container_timeout(),
            allow_local_disks: false,
            bandwidth_limit_kib_per_second: None,
            max_migrations_per_node: default_per_node(),
            max_migrations_per_cluster: default_per_cluster(),
            failed_migration_hold_seconds: default_failed_hold(),
            ha_request_grace_seconds: default_ha_request_grace(),
            poll_start_seconds: default_poll_start(),
            act_despite_crs_auto_rebalance: false,
        }
    }

    /// Checks what no type checks: URL form, token id form, one secret,
    /// one way of trusting the certificate, positive durations and limits.
    pub fn check(&self) -> Result<(), ProxmoxConfigError> {
        let err = |setting, value: &str, expected| ProxmoxConfigError {
            setting,
            value: value.to_string(),
            expected,
        };
        let bad_url = |url: &str| {
            let rest = url.strip_prefix("https://").unwrap_or("");
            rest.is_empty() || rest.contains(['/', '?', '#', ' '])
        };
        if bad_url(&self.url) {
            return Err(err("url", &self.url, "https://HOST[:PORT] with no path"));
        }
        if let Some(url) = self.fallback_urls.iter().find(|u| bad_url(u)) {
            return Err(err(
                "fallback_urls",
                url,
                "https://HOST[:PORT] with no path, for each",
            ));
        }
        let (user, token) = self.token_id.split_once('!').unwrap_or(("", ""));
        let realm_ok = user
            .split_once('@')
            .is_some_and(|(u, r)| !u.is_empty() && !r.is_empty());
        if !realm_ok || token.is_empty() || token.contains(['=', ' ']) {
            return Err(err("token_id", &self.token_id, "USER@REALM!TOKENID"));
        }
        match (&self.token_secret, &self.token_secret_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "token_secret_file",
                    "(set)",
                    "either token_secret or token_secret_file, not both",
                ))
            }
            (None, None) => {
                return Err(err(
                    "token_secret",
                    "(missing)",
                    "the token's secret, or token_secret_file",
                ))
            }
            _ => {}
        }
        let trust = [
            self.fingerprint.is_some(),
            self.ca_file.is_some(),
            self.insecure,
        ];
        if trust.iter().filter(|t| **t).count() > 1 {
            return Err(err(
                "fingerprint",
                "(with ca_file or insecure)",
                "at most one of fingerprint, ca_file and insecure",
            ));
        }
        if let Some(f) = &self.fingerprint {
            if parse_fingerprint(f).is_none() {
                return Err(err(
                    "fingerprint",
                    f,
                    "64 hex digits (SHA-256), colons allowed",
                ));
            }
        }
        let durations = [
            ("request_timeout_seconds", self.request_timeout_seconds),
            ("task_timeout_seconds", self.task_timeout_seconds),
            ("rules_refresh_seconds", self.rules_refresh_seconds),
            (
                "failed_migration_hold_seconds",
                self.failed_migration_hold_seconds,
            ),
            ("ha_request_grace_seconds", self.ha_request_grace_seconds),
            ("poll_start_seconds", self.poll_start_seconds),
        ];
        for (setting, v) in durations {
            if !(v.is_finite() && v > 0.0 && v < 1e9) {
                return Err(err(setting, &v.to_string(), "a positive number of seconds"));
            }
        }
        if self.max_migrations_per_node == 0 {
            return Err(err("max_migrations_per_node", "0", "at least 1"));
        }
        if self.max_migrations_per_cluster == 0 {
            return Err(err("max_migrations_per_cluster", "0", "at least 1"));
        }
        Ok(())
    }
}

pub use crate::https::parse_fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ProxmoxConfig {
        ProxmoxConfig::new("https://pve1:8006", "keel@pve!balancer", "secret")
    }

    #[test]
    fn defaults_pass_and_bad_settings_are_named() {
        assert_eq!(good().check(), Ok(()));
        let mut c = good();
        c.url = "http://pve1:8006".into();
        assert_eq!(c.check().unwrap_err().setting, "url");
        let mut c = good();
        c.token_id = "keel@pve".into();
        assert_eq!(c.check().unwrap_err().setting, "token_id");
        let mut c = good();
        c.token_secret = None;
        assert_eq!(c.check().unwrap_err().setting, "token_secret");
        let mut c = good();
        c.fingerprint = Some("AB:CD".into());
        assert_eq!(c.check().unwrap_err().setting, "fingerprint");
        let mut c = good();
        c.insecure = true;
        c.ca_file = Some("/x".into());
        assert!(c.check().is_err());
        let mut c = good();
        c.task_timeout_seconds = f64::NAN;
        assert_eq!(c.check().unwrap_err().setting, "task_timeout_seconds");
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "ab".repeat(32);
        let colons: Vec<String> = (0..32).map(|_| "AB".to_string()).collect();
        assert_eq!(parse_fingerprint(&hex), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons.join(":")), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }
}
