//! The second way of enforcing [`Settings`]: libvirt's own tunables, for
//! hosts where libvirt manages the VMs' cgroups and should stay the one
//! that writes them (`enforce = "libvirt"` in the agent's file). Through
//! `virsh` (no libvirt library at build time), reading the current values
//! first and passing only those that differ:
//!
//! | setting | libvirt |
//! |---|---|
//! | CPU weight | `schedinfo --live cpu_shares=` (the v1 value; libvirt converts on v2) |
//! | CPU limit | `schedinfo --live global_period=100000 global_quota=` (-1: none) |
//! | memory soft cap (only while contended) | `memtune --live --soft-limit` KiB (-1: none) |
//! | memory hard cap | `memtune --live --hard-limit` KiB (-1: none) |
//!
//! Not through libvirt: `memory.min` (libvirt's `min_guarantee` is not
//! supported by its QEMU driver) and disk weights and throttles (libvirt
//! names disks by path, not by device number): those stay unenforced in
//! this mode.

use crate::cgroup::{CPU_PERIOD_US, V1_MEMORY_UNLIMITED};
use crate::plan::Settings;
use std::process::Command;

/// How the agent enforces settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforce {
    /// Writes the VM's cgroup files directly ([`crate::cgroup`]).
    #[default]
    Cgroup,
    /// Sets libvirt's tunables through virsh ([`VirshTunables`]).
    Libvirt,
}

/// A `key : value` listing of `virsh schedinfo` / `virsh memtune`.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The `schedinfo` parameters for `s`, as `virsh schedinfo` prints them.
pub fn sched_params(s: &Settings) -> Vec<(&'static str, String)> {
    let quota = s.cpu_quota_us().map_or(-1, |q| q as i64);
    vec![
        ("cpu_shares", s.v1_cpu_shares().to_string()),
        ("global_period", CPU_PERIOD_US.to_string()),
        ("global_quota", quota.to_string()),
    ]
}

/// The `memtune` parameters for `s`, KiB as `virsh memtune` prints them
/// (`unlimited` for none).
pub fn memtune_params(s: &Settings) -> Vec<(&'static str, String)> {
    let kib = |b: Option<u64>| {
        b.filter(|&b| b < V1_MEMORY_UNLIMITED)
            .map_or("unlimited".to_string(), |b| (b / 1024).to_string())
    };
    let hard = s.memory_max();
    let soft = Some(s.memory_high().min(hard.unwrap_or(u64::MAX)));
    vec![("hard_limit", kib(hard)), ("soft_limit", kib(soft))]
}

/// Pairs of `wanted` that differ from the listing `current`.
pub fn changed(current: &str, wanted: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    wanted
        .iter()
        .filter(|(k, v)| field(current, k).as_deref() != Some(v.as_str()))
        .cloned()
        .collect()
}

/// libvirt's tunables through virsh, against `uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirshTunables {
    /// libvirt connection URI.
    pub uri: String,
}

impl VirshTunables {
    fn virsh(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("virsh")
            .args(["-c", &self.uri])
            .args(args)
            .output()
            .map_err(|e| format!("virsh {}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "virsh {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Sets what differs; returns the number of parameters set.
    pub fn apply(&self, vm: &str, s: &Settings) -> Result<usize, String> {
        self.set(vm, &sched_params(s), &memtune_params(s))
    }

    /// Back to libvirt's defaults (1024 shares, no quota, no memory caps).
    pub fn undo(&self, vm: &str) -> Result<usize, String> {
        let sched = vec![
            ("cpu_shares", "1024".to_string()),
            ("global_period", CPU_PERIOD_US.to_string()),
            ("global_quota", "-1".to_string()),
        ];
        let mem = vec![
            ("hard_limit", "unlimited".to_string()),
            ("soft_limit", "unlimited".to_string()),
        ];
        self.set(vm, &sched, &mem)
    }

    fn set(
        &self,
        vm: &str,
        sched: &[(&'static str, String)],
        mem: &[(&'static str, String)],
    ) -> Result<usize, String> {
        let mut n = 0;
        let cur = self.virsh(&["schedinfo", vm, "--live"])?;
        let todo = changed(&cur, sched);
        if !todo.is_empty() {
            let kv: Vec<String> = todo.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut args = vec!["schedinfo", vm, "--live"];
            args.extend(kv.iter().map(String::as_str));
            self.virsh(&args)?;
            n += todo.len();
        }
        let cur = self.virsh(&["memtune", vm, "--live"])?;
        let todo = changed(&cur, mem);
        if !todo.is_empty() {
            let mut args: Vec<String> = vec!["memtune".into(), vm.into(), "--live".into()];
            for (k, v) in &todo {
                args.push(format!("--{}", k.replace('_', "-")));
                args.push(if v == "unlimited" {
                    "-1".into()
                } else {
                    v.clone()
                });
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            self.virsh(&refs)?;
            n += todo.len();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED: &str = "Scheduler      : posix\ncpu_shares     : 1024\nvcpu_period    : 100000\nvcpu_quota     : -1\nglobal_period  : 100000\nglobal_quota   : -1\n";
    const MEM: &str =
        "hard_limit     : unlimited\nsoft_limit     : unlimited\nswap_hard_limit: unlimited\n";

    fn settings() -> Settings {
        Settings {
            shares: 1000.0,
            cpu_weight: 2.0,
            cpu_limit_cores: Some(0.2),
            memory_reservation_bytes: 0.0,
            memory_entitlement_bytes: f64::INFINITY,
            memory_limit_bytes: Some(512.0 * 1048576.0),
            guest_memory_bytes: 128.0 * 1048576.0,
            disk_limit_bytes_per_second: None,
            disk_limit_iops: None,
        }
    }

    #[test]
    fn only_changed_parameters_are_set() {
        let s = settings();
        let sched = changed(SCHED, &sched_params(&s));
        assert_eq!(
            sched,
            vec![
                ("cpu_shares", "2048".into()),
                ("global_quota", "20000".into())
            ]
        );
        let mem = changed(MEM, &memtune_params(&s));
        // Hard 512 MiB; soft is the hard cap (no soft cap below it).
        assert_eq!(
            mem,
            vec![
                ("hard_limit", "524288".into()),
                ("soft_limit", "524288".into())
            ]
        );
        let now = "cpu_shares     : 2048\nglobal_period  : 100000\nglobal_quota   : 20000\n";
        assert!(changed(now, &sched_params(&s)).is_empty());
    }

    #[test]
    fn no_caps_read_as_unlimited() {
        let s = Settings {
            cpu_limit_cores: None,
            memory_limit_bytes: None,
            cpu_weight: 1.0,
            ..settings()
        };
        assert!(changed(SCHED, &sched_params(&s)).is_empty());
        assert!(changed(MEM, &memtune_params(&s)).is_empty());
    }
}
