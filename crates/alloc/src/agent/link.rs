//! The agent's `[daemon]` section: take the allocation policy from a
//! `keel serve` daemon (`GET /api/v1/allocation`) instead of the file, so
//! that one policy set through the API or dashboard follows each VM to
//! whichever host it runs on. Parsing only; the HTTP client is the CLI's.
//!
//! ```toml
//! [daemon]
//! url = "https://keel.example:7878"
//! token_file = "/var/lib/keel/token"     # or token = "..."
//! fingerprint = "AB:CD:..."              # pin a self-signed daemon; or ca_file
//! refresh_seconds = 30                   # default 30
//! cache_file = "/var/lib/keel/agent-policy.json"  # last policy, for restarts while the daemon is down
//! ```

use crate::config::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

/// Where and how to fetch the policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonLink {
    /// The daemon's base URL, `http://` or `https://` (no path).
    pub url: String,
    /// The bearer token itself (prefer `token_file`).
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the bearer token (the daemon's `token` file).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the daemon's TLS certificate (hex, colons
    /// allowed): trust that certificate only.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// PEM file of CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds between two fetches of the policy.
    #[serde(default = "default_refresh")]
    pub refresh_seconds: f64,
    /// Seconds a fetch may take.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Where to keep the last policy fetched; read at start when the
    /// daemon cannot be reached.
    #[serde(default)]
    pub cache_file: Option<PathBuf>,
}

fn default_refresh() -> f64 {
    30.0
}

fn default_timeout() -> f64 {
    10.0
}

fn bad(field: &str, value: impl ToString, reason: &str) -> ConfigError {
    ConfigError::Unit {
        item: "agent".into(),
        field: format!("daemon.{field}"),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl DaemonLink {
    /// Parses and checks the `[daemon]` table.
    pub fn from_value(value: toml::Value) -> Result<Self, ConfigError> {
        let link: DaemonLink = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(format!("[daemon]: {e}")))?;
        link.check()?;
        Ok(link)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"));
        match rest.map(|r| r.trim_end_matches('/')) {
            Some(authority) if !authority.is_empty() && !authority.contains('/') => {}
            _ => {
                return Err(bad(
                    "url",
                    &self.url,
                    "expected http://HOST:PORT or https://HOST:PORT (no path)",
                ))
            }
        }
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(bad("token", "(set)", "give token or token_file, not both"))
            }
            (None, None) => {
                return Err(bad(
                    "token_file",
                    "(missing)",
                    "the daemon needs its bearer token: token_file or token",
                ))
            }
            (Some(t), None) if t.trim().is_empty() => {
                return Err(bad("token", "", "must not be empty"))
            }
            _ => {}
        }
        if self.fingerprint.is_some() && self.ca_file.is_some() {
            return Err(bad(
                "ca_file",
                "(set)",
                "give fingerprint or ca_file, not both",
            ));
        }
        if self.url.starts_with("http://") && (self.fingerprint.is_some() || self.ca_file.is_some())
        {
            return Err(bad(
                "url",
                &self.url,
                "fingerprint and ca_file need https://",
            ));
        }
        for (field, x, min) in [
            ("refresh_seconds", self.refresh_seconds, 1.0),
            ("timeout_seconds", self.timeout_seconds, 0.1),
        ] {
            if !(x.is_finite() && (min..=86400.0).contains(&x)) {
                return Err(bad(field, x, &format!("must be between {min} and 86400")));
            }
        }
        Ok(())
    }

    /// The URL of the policy.
    pub fn policy_url(&self) -> String {
        format!("{}/api/v1/allocation", self.url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DaemonLink, ConfigError> {
        let t: toml::Table = text.parse().unwrap();
        DaemonLink::from_value(toml::Value::Table(t))
    }

    #[test]
    fn a_good_link_parses_with_defaults() {
        let l =
            parse("url = \"https://keel:7878/\"\ntoken_file = \"/var/lib/keel/token\"\n").unwrap();
        assert_eq!(l.refresh_seconds, 30.0);
        assert_eq!(l.policy_url(), "https://keel:7878/api/v1/allocation");
    }

    #[test]
    fn bad_links_name_the_field_and_value() {
        for (text, needle) in [
            (
                "url = \"keel:7878\"\ntoken = \"t\"\n",
                "daemon.url = \"keel:7878\"",
            ),
            ("url = \"http://keel/api\"\ntoken = \"t\"\n", "no path"),
            ("url = \"http://keel\"\n", "daemon.token_file"),
            (
                "url = \"http://keel\"\ntoken = \"t\"\ntoken_file = \"f\"\n",
                "not both",
            ),
            ("url = \"http://keel\"\ntoken = \" \"\n", "daemon.token"),
            (
                "url = \"http://keel\"\ntoken = \"t\"\nfingerprint = \"AB\"\n",
                "need https",
            ),
            (
                "url = \"https://keel\"\ntoken = \"t\"\nrefresh_seconds = 0\n",
                "daemon.refresh_seconds",
            ),
            (
                "url = \"https://keel\"\ntoken = \"t\"\nrefresh = 5\n",
                "refresh",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
