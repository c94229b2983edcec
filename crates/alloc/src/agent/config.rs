//! The agent's TOML file: its own settings at the top, then the
//! allocation policy (`[[vm]]`, `[[pool]]`, see [`crate::config`]).
//!
//! ```toml
//! interval_seconds = 2          # default 5
//! cpu_cores = 1                 # capacity to divide; default: the CPUs
//! cpu_mhz = 2600                # nominal MHz; default from /proc/cpuinfo
//! memory = "30GiB"              # default: MemTotal
//! disk = "500MB/s"              # default: no disk capacity bound
//! manage = "all"                # or "configured": only VMs named below
//! libvirt_uri = "qemu:///system"  # balloons through virsh; none = no ballooning
//! enforce = "cgroup"            # or "libvirt": libvirt's tunables (needs libvirt_uri)
//!
//! # [daemon]                    # the policy from `keel serve` instead (see [`DaemonLink`])
//! # url = "https://keel:7878"
//! # token_file = "/var/lib/keel/token"
//!
//! [[vm]]
//! name = "web"
//! cpu = { reservation = "1300MHz" }
//! ```

use super::link::DaemonLink;
use crate::config::{AllocConfig, ConfigError};
use crate::enforce::Enforce;
use crate::units::{parse_quantity, Quantity, Units};
use toml::Value;

/// Which QEMU VMs the agent manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Manage {
    /// Every QEMU VM on the host (unnamed ones get default shares).
    #[default]
    All,
    /// Only VMs the policy names.
    Configured,
}

/// The agent's settings and policy.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Seconds between control steps.
    pub interval_seconds: f64,
    /// CPU capacity to divide, cores (`None`: the host's CPUs).
    pub cpu_cores: Option<f64>,
    /// Nominal MHz of a core (`None`: from /proc/cpuinfo).
    pub cpu_mhz: Option<f64>,
    /// Memory capacity, bytes (`None`: MemTotal).
    pub memory_bytes: Option<f64>,
    /// Disk capacity, bytes/s (`None`: unbounded).
    pub disk_bytes_per_second: Option<f64>,
    /// Which VMs are managed.
    pub manage: Manage,
    /// libvirt URI for balloons and the libvirt enforcer (`None`: no
    /// ballooning).
    pub libvirt_uri: Option<String>,
    /// Through cgroup files (default) or libvirt's tunables.
    pub enforce: Enforce,
    /// The allocation policy (from the file; empty with `daemon`).
    pub policy: AllocConfig,
    /// Take the policy from a `keel serve` daemon instead of the file.
    pub daemon: Option<DaemonLink>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            interval_seconds: 5.0,
            cpu_cores: None,
            cpu_mhz: None,
            memory_bytes: None,
            disk_bytes_per_second: None,
            manage: Manage::All,
            libvirt_uri: None,
            enforce: Enforce::Cgroup,
            policy: AllocConfig::default(),
            daemon: None,
        }
    }
}

/// The host's nominal MHz from `/proc/cpuinfo` text: the `@ 2.60GHz` of
/// the model name if there is one (the nominal frequency), else the first
/// `cpu MHz` (the current one).
pub fn cpuinfo_mhz(text: &str) -> Option<f64> {
    let nominal = text.lines().find_map(|l| {
        let model = l.strip_prefix("model name")?;
        let ghz = model.rsplit('@').next()?.trim().strip_suffix("GHz")?;
        ghz.trim().parse::<f64>().ok().map(|g| g * 1000.0)
    });
    nominal.or_else(|| {
        text.lines().find_map(|l| {
            let v = l.strip_prefix("cpu MHz")?.split(':').nth(1)?;
            v.trim().parse().ok()
        })
    })
}

fn bad(field: &str, value: &Value, reason: &str) -> ConfigError {
    ConfigError::Unit {
        item: "agent".into(),
        field: field.into(),
        value: match value {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Boolean(b) => b.to_string(),
            other => other.type_str().to_string(),
        },
        reason: reason.into(),
    }
}

/// A positive finite number, or a string with units of `resource`.
fn amount(
    table: &mut toml::Table,
    field: &str,
    resource: &str,
    units: &Units,
) -> Result<Option<f64>, ConfigError> {
    let Some(v) = table.remove(field) else {
        return Ok(None);
    };
    let x = match &v {
        Value::Integer(i) => *i as f64,
        Value::Float(f) => *f,
        Value::String(s) => match parse_quantity(resource, s, units) {
            Ok(Quantity::Amount(x)) => x,
            Ok(Quantity::Iops(_)) => return Err(bad(field, &v, "capacity in bytes/s, not IOPS")),
            Err(reason) => return Err(bad(field, &v, &reason)),
        },
        _ => return Err(bad(field, &v, "expected a number or a string with a unit")),
    };
    if !(x.is_finite() && x > 0.0) {
        return Err(bad(field, &v, "must be finite and > 0"));
    }
    Ok(Some(x))
}

impl AgentConfig {
    /// Parses the agent's file; `cpuinfo_mhz` is the host's nominal MHz
    /// (used when the file gives no `cpu_mhz` and amounts are in MHz).
    pub fn from_toml(text: &str, host_mhz: Option<f64>) -> Result<Self, ConfigError> {
        let mut t: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        let mut c = AgentConfig::default();
        let none = Units::default();
        if let Some(x) = amount(&mut t, "interval_seconds", "cpu", &none)? {
            c.interval_seconds = x;
        }
        c.cpu_mhz = amount(&mut t, "cpu_mhz", "cpu", &none)?;
        let units = Units {
            cpu_mhz: c.cpu_mhz.or(host_mhz),
        };
        c.cpu_cores = amount(&mut t, "cpu_cores", "cpu", &units)?;
        c.memory_bytes = amount(&mut t, "memory", "memory", &units)?;
        c.disk_bytes_per_second = amount(&mut t, "disk", "disk", &units)?;
        if let Some(v) = t.remove("manage") {
            c.manage = match v.as_str() {
                Some("all") => Manage::All,
                Some("configured") => Manage::Configured,
                _ => return Err(bad("manage", &v, "expected \"all\" or \"configured\"")),
            };
        }
        if let Some(v) = t.remove("libvirt_uri") {
            match v.as_str() {
                Some(s) if !s.is_empty() => c.libvirt_uri = Some(s.to_string()),
                _ => return Err(bad("libvirt_uri", &v, "expected a libvirt URI string")),
            }
        }
        if let Some(v) = t.remove("enforce") {
            c.enforce = match v.as_str() {
                Some("cgroup") => Enforce::Cgroup,
                Some("libvirt") if c.libvirt_uri.is_some() => Enforce::Libvirt,
                Some("libvirt") => return Err(bad("enforce", &v, "\"libvirt\" needs libvirt_uri")),
                _ => return Err(bad("enforce", &v, "expected \"cgroup\" or \"libvirt\"")),
            };
        }
        if let Some(v) = t.remove("daemon") {
            c.daemon = Some(DaemonLink::from_value(v)?);
        }
        c.policy = AllocConfig::from_table(&mut t, &units)?;
        if c.daemon.is_some() && (!c.policy.vm.is_empty() || !c.policy.pool.is_empty()) {
            return Err(ConfigError::Parse(
                "[daemon] is set, so the policy comes from the daemon: remove this file's [[vm]] and [[pool]] entries".into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_policy() {
        let c = AgentConfig::from_toml(
            "interval_seconds = 2\ncpu_cores = 1\nmemory = \"4GiB\"\ndisk = \"100MB/s\"\nmanage = \"configured\"\nlibvirt_uri = \"qemu:///system\"\n[[vm]]\nname = \"a\"\ncpu = { reservation = \"1300MHz\" }\n",
            Some(2600.0),
        )
        .unwrap();
        assert_eq!(c.interval_seconds, 2.0);
        assert_eq!(c.cpu_cores, Some(1.0));
        assert_eq!(c.memory_bytes, Some(4.0 * 1073741824.0));
        assert_eq!(c.disk_bytes_per_second, Some(1e8));
        assert_eq!(c.manage, Manage::Configured);
        assert_eq!(c.policy.vm[0].cpu.reservation, 0.5);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = AgentConfig::from_toml("interval_seconds = -1\n", None).unwrap_err();
        assert!(e.to_string().contains("interval_seconds"), "{e}");
        let e = AgentConfig::from_toml("manage = \"some\"\n", None).unwrap_err();
        assert!(e.to_string().contains("manage"), "{e}");
        let e = AgentConfig::from_toml("[[vm]]\nname = \"a\"\ncpu = { limit = \"1GHz\" }\n", None)
            .unwrap_err();
        assert!(e.to_string().contains("nominal MHz"), "{e}");
        let e = AgentConfig::from_toml("enforce = \"libvirt\"\n", None).unwrap_err();
        assert!(e.to_string().contains("needs libvirt_uri"), "{e}");
        let e = AgentConfig::from_toml(
            "[daemon]\nurl = \"http://k:7878\"\ntoken = \"t\"\n[[vm]]\nname = \"a\"\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("comes from the daemon"), "{e}");
        let c = AgentConfig::from_toml("[daemon]\nurl = \"http://k:7878\"\ntoken = \"t\"\n", None)
            .unwrap();
        assert_eq!(c.daemon.map(|d| d.url), Some("http://k:7878".to_string()));
        let e = AgentConfig::from_toml("intervall = 3\n", None).unwrap_err();
        assert!(e.to_string().contains("intervall"), "{e}");
    }

    #[test]
    fn the_example_agent_config_parses() {
        let c =
            AgentConfig::from_toml(include_str!("../../../../deploy/agent.toml"), None).unwrap();
        assert_eq!(c.interval_seconds, 5.0);
        let d = c.daemon.expect("[daemon]");
        assert_eq!(d.refresh_seconds, 30.0);
        assert!(c.policy.vm.is_empty());
    }

    #[test]
    fn nominal_mhz_from_cpuinfo() {
        let intel =
            "model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\ncpu MHz\t\t: 1200.000\n";
        assert_eq!(cpuinfo_mhz(intel), Some(2400.0));
        let amd = "model name\t: AMD EPYC\ncpu MHz\t\t: 2596.122\n";
        assert_eq!(cpuinfo_mhz(amd), Some(2596.122));
        assert_eq!(cpuinfo_mhz(""), None);
    }
}
