//! `keel lab`: a real lab of QEMU guests on network-namespaced "hosts",
//! each with its own libvirtd, for end-to-end tests of Keel's drivers.
//!
//! Everything runs through `std::process::Command` with argument vectors
//! (`ip`, `unshare`, `nsenter`, `mount`, `libvirtd`, `virsh`, `gcc`); the
//! crate links no C library. Every resource is recorded in the state file
//! (`state.json` in the lab directory) before it is created, so that
//! [`down`] cleans up even after `up` was killed half-way. See docs/lab.md.
//!
//! With the cargo feature `libvirt`, [`selftest`] runs one control
//! iteration of Keel against the lab through the libvirt driver (which does
//! link libvirt's C library), and [`alloc_test`] enforces host-local
//! allocation (shares, reservation, limit) on three guests through
//! keel-alloc's agent; without it the crate links none.

#[cfg(feature = "libvirt")]
pub mod alloc_test;
pub mod cmd;
mod down;
pub mod error;
pub mod guests;
#[cfg(feature = "libvirt")]
mod harness;
pub mod hosts;
pub mod image;
mod lab;
pub mod prereq;
#[cfg(feature = "libvirt")]
pub mod selftest;
pub mod state;

pub use down::{down, DownReport};
pub use error::{LabError, Result};
pub use lab::{status, up, up_placed, Accel, UpOptions};

use std::path::{Path, PathBuf};

/// Default lab directory (overridden by `$KEEL_LAB_DIR`).
pub const DEFAULT_DIR: &str = "/var/lib/keel-lab";

/// Default name prefix of namespaces, cgroups and domains.
pub const DEFAULT_PREFIX: &str = "keel-lab";

/// Where a lab lives and how its resources are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    /// The lab directory: everything the lab creates, and the state file.
    pub dir: PathBuf,
    /// Prefix of namespace, cgroup and domain names.
    pub prefix: String,
}

impl Lab {
    /// A lab in `dir` with the default prefix.
    pub fn new(dir: impl Into<PathBuf>) -> Lab {
        Lab {
            dir: dir.into(),
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }

    /// The lab of `$KEEL_LAB_DIR`, or of /var/lib/keel-lab.
    pub fn from_env() -> Lab {
        match std::env::var_os("KEEL_LAB_DIR") {
            Some(d) if !d.is_empty() => Lab::new(d),
            _ => Lab::new(DEFAULT_DIR),
        }
    }

    /// The hub namespace (holding the bridge).
    pub fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Host `i`'s network namespace.
    pub fn host_ns(&self, i: usize) -> String {
        format!("{}-h{i}", self.prefix)
    }

    /// Host `i`'s address (inside its namespace only).
    pub fn host_addr(&self, i: usize) -> String {
        format!("10.200.0.{}", i + 1)
    }

    /// Host `i`'s directory.
    pub fn host_dir(&self, i: usize) -> PathBuf {
        self.dir.join("hosts").join(format!("h{i}"))
    }

    /// True if `name` is a namespace name this lab could have created.
    pub fn owns_netns(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(&self.prefix) else {
            return false;
        };
        rest == "-hub"
            || rest
                .strip_prefix("-h")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    /// The cgroup directory under which host cgroups go: the cgroup v2 root
    /// if the machine is pure v2, else the v1 cpuacct hierarchy; None if
    /// neither is usable.
    pub fn cgroup_root(&self) -> Option<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            return Some(root.to_path_buf());
        }
        ["cpuacct", "cpu,cpuacct"]
            .iter()
            .map(|c| root.join(c))
            .find(|p| p.join("cpuacct.usage").exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let l = Lab::new("/x");
        assert_eq!(l.host_ns(3), "keel-lab-h3");
        assert_eq!(l.host_addr(0), "10.200.0.1");
        assert!(l.owns_netns("keel-lab-h12"));
        assert!(l.owns_netns("keel-lab-hub"));
        assert!(!l.owns_netns("keel-lab-h"));
        assert!(!l.owns_netns("keel-lab-hx"));
        assert!(!l.owns_netns("other"));
    }
}
