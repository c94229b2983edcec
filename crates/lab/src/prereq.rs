//! Prerequisites of `keel lab up`: what is missing, by apt package.

use crate::cmd::{is_root, which};
use std::path::PathBuf;

/// What `up` needs from the machine, found or not.
#[derive(Debug, Clone, Default)]
pub struct Prereqs {
    /// Missing items, each `(what, apt package)`; the package is empty for
    /// items no package provides (root).
    pub missing: Vec<(String, String)>,
    /// The guest kernel (/boot/vmlinuz-*), preferring the cloud flavour.
    pub vmlinuz: Option<PathBuf>,
    /// Static busybox.
    pub busybox: Option<PathBuf>,
}

impl Prereqs {
    /// Checks everything; never fails.
    pub fn check() -> Prereqs {
        let mut p = Prereqs::default();
        if !is_root() {
            p.missing.push(("root (run as root)".into(), String::new()));
        }
        for (prog, pkg) in [
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
            ("mount", "mount"),
            ("ip", "iproute2"),
            ("kill", "procps"),
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("libvirtd", "libvirt-daemon-system"),
            ("virsh", "libvirt-clients"),
            ("gcc", "gcc"),
        ] {
            if which(prog).is_none() {
                p.missing.push((prog.into(), pkg.into()));
            }
        }
        if !PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.a").is_file() {
            p.missing
                .push(("static libc (libc.a)".into(), "libc6-dev".into()));
        }
        p.vmlinuz = find_vmlinuz();
        if p.vmlinuz.is_none() {
            p.missing
                .push(("/boot/vmlinuz-*".into(), "linux-image-cloud-amd64".into()));
        }
        p.busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(is_static);
        if p.busybox.is_none() {
            p.missing
                .push(("static busybox".into(), "busybox-static".into()));
        }
        p
    }

    /// The apt packages to install, deduplicated, space-separated.
    pub fn packages(&self) -> String {
        let mut pk: Vec<&str> = self
            .missing
            .iter()
            .map(|(_, p)| p.as_str())
            .filter(|p| !p.is_empty())
            .collect();
        pk.sort_unstable();
        pk.dedup();
        pk.join(" ")
    }

    /// A message naming what is missing and the apt packages, or None.
    pub fn message(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let what: Vec<&str> = self.missing.iter().map(|(w, _)| w.as_str()).collect();
        Some(format!(
            "{}; install with: apt-get install -y --no-install-recommends {}",
            what.join(", "),
            self.packages()
        ))
    }
}

pub(crate) fn find_vmlinuz() -> Option<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    all.sort();
    let cloud = all
        .iter()
        .rev()
        .find(|p| p.to_string_lossy().contains("cloud"));
    cloud.or(all.last()).cloned()
}

/// An ELF file without a program interpreter (statically linked).
fn is_static(p: &PathBuf) -> bool {
    match std::fs::read(p) {
        Ok(b) => b.starts_with(b"\x7fELF") && !b.windows(11).any(|w| w == b"/lib64/ld-l"),
        Err(_) => false,
    }
}
