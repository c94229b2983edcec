//! `keel agent`'s link to the daemon: fetches the allocation policy from
//! `GET /api/v1/allocation` of `keel serve` (the `[daemon]` section,
//! [`DaemonLink`]), keeps the last one in `cache_file`, and falls back to
//! it while the daemon cannot be reached. The answer's schema is
//! `AllocationPolicy` in the daemon's OpenAPI document; every policy it
//! allows parses here (crates/daemon/tests/openapi_contract.rs).

use anyhow::{bail, Context, Result};
use keel_alloc::agent::DaemonLink;
use keel_alloc::config::AllocConfig;
use keel_alloc::units::Units;
use std::path::Path;
use std::time::Duration;

/// A connected link (client built, token read).
pub struct PolicyLink {
    link: DaemonLink,
    /// The policy last written to the cache file.
    kept: Option<AllocConfig>,
    #[cfg(feature = "https")]
    token: String,
    #[cfg(feature = "https")]
    client: keel_drivers::https::BlockingClient,
}

impl PolicyLink {
    /// Reads the token and builds the client; `config` names the agent's
    /// file in messages.
    pub fn connect(link: &DaemonLink, config: &Path) -> Result<Self> {
        let token = match (&link.token, &link.token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| {
                    format!(
                        "{}: daemon.token_file = {}: cannot read it",
                        config.display(),
                        f.display()
                    )
                })?
                .trim()
                .to_string(),
            (None, None) => bail!("{}: [daemon] needs token or token_file", config.display()),
        };
        if token.is_empty() {
            bail!("{}: the daemon's token is empty", config.display());
        }
        #[cfg(feature = "https")]
        {
            let trust = keel_drivers::https::Trust {
                fingerprint: link.fingerprint.clone(),
                ca_file: link.ca_file.clone(),
                insecure: false,
            };
            let timeout = Duration::from_secs_f64(link.timeout_seconds);
            let client = keel_drivers::https::blocking_client(&trust, "daemon", timeout)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            Ok(PolicyLink {
                link: link.clone(),
                kept: None,
                token,
                client,
            })
        }
        #[cfg(not(feature = "https"))]
        {
            let _ = token;
            bail!(
                "{}: [daemon] needs keel built with the `https` feature (on by default)",
                config.display()
            )
        }
    }

    /// The daemon's URL.
    pub fn url(&self) -> &str {
        &self.link.url
    }

    /// The policy the daemon holds now; when it differs from the one last
    /// kept, also written to the cache file (a failure to write it is only
    /// reported, and tried again at the next fetch).
    pub fn fetch(&mut self) -> Result<AllocConfig> {
        let url = self.link.policy_url();
        let policy = self.get(&url)?;
        if let Some(path) = &self.link.cache_file {
            if self.kept.as_ref() != Some(&policy) {
                match write_cache(path, &policy) {
                    Ok(()) => self.kept = Some(policy.clone()),
                    Err(e) => eprintln!(
                        "keel agent: warning: cannot keep the policy in {}: {e:#}",
                        path.display()
                    ),
                }
            }
        }
        Ok(policy)
    }

    #[cfg(feature = "https")]
    fn get(&self, url: &str) -> Result<AllocConfig> {
        let reply = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| anyhow::anyhow!("GET {url}: {}", keel_drivers::https::error_chain(&e)))?;
        let status = reply.status();
        let body = reply.bytes().map_err(|e| {
            anyhow::anyhow!(
                "GET {url}: reading the answer: {}",
                keel_drivers::https::error_chain(&e)
            )
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            bail!("GET {url}: HTTP {}: {message}", status.as_u16());
        }
        AllocConfig::from_json(&body, &Units::default())
            .with_context(|| format!("GET {url}: the answer is not an allocation policy"))
    }

    #[cfg(not(feature = "https"))]
    fn get(&self, url: &str) -> Result<AllocConfig> {
        bail!("GET {url}: keel was built without the `https` feature")
    }

    /// Seconds between two fetches.
    pub fn refresh(&self) -> Duration {
        Duration::from_secs_f64(self.link.refresh_seconds)
    }

    /// The policy kept by an earlier fetch, if there is a readable one.
    pub fn cached(&self) -> Option<AllocConfig> {
        let path = self.link.cache_file.as_ref()?;
        let bytes = std::fs::read(path).ok()?;
        match AllocConfig::from_json(&bytes, &Units::default()) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!(
                    "keel agent: warning: ignoring the cached policy {}: {e}",
                    path.display()
                );
                None
            }
        }
    }
}

/// Writes `policy` as JSON to `path` through a temporary file and a rename,
/// so that a crash never leaves half a policy.
fn write_cache(path: &Path, policy: &AllocConfig) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(policy)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// A one-line description of a policy for the log.
pub fn describe(policy: &AllocConfig) -> String {
    let vms = policy.vm_names().len();
    let pools = policy.pool.len();
    format!("{vms} VM(s), {pools} top-level pool(s)")
}
