//! The `[libvirt]` section of the daemon's config: which hosts' libvirt
//! daemons `keel serve` drives (`driver = "libvirt"`), and the driver built
//! from it. The section parses in every build; connecting needs the
//! `libvirt` cargo feature (it links libvirt's C library).

use serde::{Deserialize, Serialize};

/// One host of a libvirt cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtHost {
    /// Host name, as plans and the API show it.
    pub name: String,
    /// The libvirt URI Keel connects to (`qemu+tcp://10.0.0.1/system`,
    /// `qemu+ssh://root@h1/system`, `qemu:///system`).
    pub uri: String,
    /// The URI the other hosts' libvirt daemons reach this one by, for
    /// peer-to-peer migration (default: `uri`).
    #[serde(default)]
    pub peer_uri: Option<String>,
    /// Where migration data goes (`tcp://10.1.0.1`; default: libvirt's
    /// choice from the host name).
    #[serde(default)]
    pub migration_uri: Option<String>,
    /// CPU capacity in cores instead of libvirt's logical CPU count (for a
    /// host whose guests may use only part of the machine).
    #[serde(default)]
    pub cpu_cores: Option<f64>,
}

/// The `[libvirt]` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtConfig {
    /// Every host; at least one, names unique.
    pub hosts: Vec<LibvirtHost>,
}

/// Why the libvirt section cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LibvirtConfigError {
    /// `driver = "libvirt"` without hosts.
    #[error("driver = \"libvirt\" needs a [libvirt] section with at least one [[libvirt.hosts]] entry (name, uri)")]
    NoHosts,
    /// A setting of one host is wrong.
    #[error("libvirt.hosts[{index}].{field} = {value}: {expected}")]
    Host {
        /// Position in the list.
        index: usize,
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// This keel was built without the libvirt driver.
    #[error("driver = \"libvirt\": this keel was built without the libvirt driver; build it with `cargo build --release -p keel-cli --features libvirt` (needs libvirt-dev)")]
    NotBuilt,
    /// Connecting to a host failed.
    #[error(transparent)]
    Driver(#[from] keel_drivers::DriverError),
}

impl LibvirtConfig {
    /// Checks what no type checks: at least one host, unique non-empty
    /// names, non-empty URIs, positive CPU capacities.
    pub fn check(&self) -> Result<(), LibvirtConfigError> {
        if self.hosts.is_empty() {
            return Err(LibvirtConfigError::NoHosts);
        }
        for (index, h) in self.hosts.iter().enumerate() {
            let bad = |field, value: String, expected| LibvirtConfigError::Host {
                index,
                field,
                value,
                expected,
            };
            if h.name.trim().is_empty() {
                return Err(bad(
                    "name",
                    format!("{:?}", h.name),
                    "a non-empty host name",
                ));
            }
            if self.hosts[..index].iter().any(|o| o.name == h.name) {
                return Err(bad("name", format!("{:?}", h.name), "names must be unique"));
            }
            if h.uri.trim().is_empty() {
                return Err(bad("uri", format!("{:?}", h.uri), "a libvirt URI"));
            }
            if let Some(cores) = h.cpu_cores {
                if !(cores.is_finite() && cores > 0.0) {
                    return Err(bad(
                        "cpu_cores",
                        cores.to_string(),
                        "a positive number of cores",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Connects to every host.
    #[cfg(feature = "libvirt")]
    pub fn connect(&self) -> Result<Box<dyn keel_drivers::Driver>, LibvirtConfigError> {
        use keel_drivers::libvirt::LibvirtDriver;
        self.check()?;
        let pairs: Vec<(String, String)> = self
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.uri.clone()))
            .collect();
        let mut driver = LibvirtDriver::connect(&pairs)?;
        for h in &self.hosts {
            if h.peer_uri.is_some() || h.migration_uri.is_some() {
                let peer = h.peer_uri.as_deref().unwrap_or(&h.uri);
                driver.set_peer_address(&h.name, peer, h.migration_uri.as_deref())?;
            }
            if let Some(cores) = h.cpu_cores {
                driver.set_host_cpu_capacity(&h.name, cores)?;
            }
        }
        Ok(Box::new(driver))
    }

    /// Without the `libvirt` feature: says how to get it.
    #[cfg(not(feature = "libvirt"))]
    pub fn connect(&self) -> Result<Box<dyn keel_drivers::Driver>, LibvirtConfigError> {
        self.check()?;
        Err(LibvirtConfigError::NotBuilt)
    }
}
