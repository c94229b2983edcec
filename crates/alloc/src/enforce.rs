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
//! | disk weight (shares) | `blkiotune --live --weight` shares/2 in 100..1000, where libvirt shows one |
//! | disk limit, per disk | `blkiotune --live --device-{read,write}-{bytes,iops}-sec /dev/X,N` (0: none) |
//!
//! The disks are the host block devices holding the VM's image files (as
//! in the cgroup mode), named by their `/dev` path as libvirt wants them.
//! What libvirt showed before Keel's first change to a VM is remembered
//! and written back when Keel lets go of it (an operator's own
//! `<cputune>`/`<memtune>`/`<blkiotune>` survive Keel).
//!
//! Not through libvirt: `memory.min` (libvirt's `min_guarantee` is not
//! supported by its QEMU driver).

use crate::cgroup::{Device, CPU_PERIOD_US, V1_MEMORY_UNLIMITED};
use crate::plan::Settings;
use std::collections::BTreeMap;
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

/// The `key : value` pairs of a `virsh schedinfo` / `memtune` /
/// `blkiotune` listing, trimmed, in order.
pub fn listing_fields(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| {
        let (k, v) = l.split_once(':')?;
        Some((k.trim(), v.trim()))
    })
}

/// One value of such a listing.
fn field(text: &str, key: &str) -> Option<String> {
    listing_fields(text).find_map(|(k, v)| (k == key).then(|| v.to_string()))
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

/// The per-device caps of `blkiotune`, as virsh lists them.
const BLKIO_DEVICE_KEYS: [&str; 4] = [
    "device_read_bytes_sec",
    "device_write_bytes_sec",
    "device_read_iops_sec",
    "device_write_iops_sec",
];

/// The `blkiotune` parameters for `s` on the disks `disks` (`/dev` paths):
/// the weight, and per-device caps as virsh lists them (`/dev/X,N`
/// pairs joined by commas; empty for none).
pub fn blkiotune_params(s: &Settings, disks: &[String]) -> Vec<(&'static str, String)> {
    let (bps, iops) = s.disk_caps();
    let list = |cap: Option<u64>| {
        cap.map_or(String::new(), |v| {
            let pairs: Vec<String> = disks.iter().map(|d| format!("{d},{v}")).collect();
            pairs.join(",")
        })
    };
    let mut p = vec![("weight", s.v1_blkio_weight().to_string())];
    for (k, cap) in BLKIO_DEVICE_KEYS.iter().zip([bps, bps, iops, iops]) {
        p.push((k, list(cap)));
    }
    p
}

/// The `/dev` path of a block device, from sysfs.
pub fn device_path(d: &Device) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{}/uevent", d)).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    Some(format!("/dev/{}", name.trim()))
}

/// Pairs of `wanted` that differ from the listing `current`.
pub fn changed(current: &str, wanted: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    wanted
        .iter()
        .filter(|(k, v)| field(current, k).as_deref() != Some(v.as_str()))
        .cloned()
        .collect()
}

/// The values of `keys` in a listing (missing ones left out).
fn pick(listing: &str, keys: &[&'static str]) -> Vec<(&'static str, String)> {
    keys.iter()
        .filter_map(|k| Some((*k, field(listing, k)?)))
        .collect()
}

/// The `--device-...` argument that makes a device list `want` when the
/// listing shows `current`: the wanted pairs, and 0 (no cap) for devices
/// that are capped now but not wanted.
fn device_argument(current: &str, want: &str) -> String {
    let pairs = |text: &str| -> Vec<(String, String)> {
        let parts: Vec<&str> = text.split(',').filter(|p| !p.is_empty()).collect();
        parts
            .chunks(2)
            .filter_map(|c| Some((c[0].to_string(), c.get(1)?.to_string())))
            .collect()
    };
    let wanted = pairs(want);
    let mut out: Vec<String> = wanted.iter().map(|(d, v)| format!("{d},{v}")).collect();
    for (d, _) in pairs(current) {
        if !wanted.iter().any(|(w, _)| *w == d) {
            out.push(format!("{d},0"));
        }
    }
    out.join(",")
}

/// What libvirt showed for a VM before Keel's first change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    sched: Vec<(&'static str, String)>,
    mem: Vec<(&'static str, String)>,
    blkio: Vec<(&'static str, String)>,
}

/// libvirt's tunables through virsh, against `uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirshTunables {
    uri: String,
    /// VM -> its values before Keel's first change, restored by `undo`.
    found: BTreeMap<String, Found>,
}

const SCHED_KEYS: [&str; 3] = ["cpu_shares", "global_period", "global_quota"];
const MEM_KEYS: [&str; 2] = ["hard_limit", "soft_limit"];

impl VirshTunables {
    /// Tunables of the VMs of the libvirt at `uri`.
    pub fn new(uri: impl Into<String>) -> Self {
        VirshTunables {
            uri: uri.into(),
            found: BTreeMap::new(),
        }
    }

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

    /// Sets what differs for `s` on the VM whose disks are `devices`;
    /// returns the number of parameters set.
    pub fn apply(&mut self, vm: &str, s: &Settings, devices: &[Device]) -> Result<usize, String> {
        let disks: Vec<String> = devices.iter().filter_map(device_path).collect();
        let listings = self.listings(vm)?;
        self.found.entry(vm.to_string()).or_insert_with(|| Found {
            sched: pick(&listings[0], &SCHED_KEYS),
            mem: pick(&listings[1], &MEM_KEYS),
            blkio: {
                let mut keys = vec!["weight"];
                keys.extend(BLKIO_DEVICE_KEYS);
                pick(&listings[2], &keys)
            },
        });
        let wanted = [
            sched_params(s),
            memtune_params(s),
            blkiotune_params(s, &disks),
        ];
        self.set(vm, &listings, &wanted)
    }

    /// Writes back what libvirt showed before Keel's first change (libvirt's
    /// defaults for a VM Keel changed before it last started).
    pub fn undo(&mut self, vm: &str) -> Result<usize, String> {
        let found = self.found.remove(vm).unwrap_or_else(|| Found {
            sched: vec![
                ("cpu_shares", "1024".to_string()),
                ("global_period", CPU_PERIOD_US.to_string()),
                ("global_quota", "-1".to_string()),
            ],
            mem: vec![
                ("hard_limit", "unlimited".to_string()),
                ("soft_limit", "unlimited".to_string()),
            ],
            blkio: BLKIO_DEVICE_KEYS
                .iter()
                .map(|k| (*k, String::new()))
                .collect(),
        });
        let listings = self.listings(vm)?;
        self.set(vm, &listings, &[found.sched, found.mem, found.blkio])
    }

    fn listings(&self, vm: &str) -> Result<[String; 3], String> {
        Ok([
            self.virsh(&["schedinfo", vm, "--live"])?,
            self.virsh(&["memtune", vm, "--live"])?,
            self.virsh(&["blkiotune", vm, "--live"])?,
        ])
    }

    fn set(
        &self,
        vm: &str,
        current: &[String; 3],
        wanted: &[Vec<(&'static str, String)>; 3],
    ) -> Result<usize, String> {
        let mut n = 0;
        let todo = changed(&current[0], &wanted[0]);
        if !todo.is_empty() {
            let kv: Vec<String> = todo.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut args = vec!["schedinfo", vm, "--live"];
            args.extend(kv.iter().map(String::as_str));
            self.virsh(&args)?;
            n += todo.len();
        }
        let todo = changed(&current[1], &wanted[1]);
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
            self.virsh(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
            n += todo.len();
        }
        // A weight libvirt does not show (no I/O weight on this kernel) is
        // not set, as the cgroup mode skips a missing blkio.weight.
        let todo: Vec<_> = changed(&current[2], &wanted[2])
            .into_iter()
            .filter(|(k, _)| {
                *k != "weight" || field(&current[2], "weight").is_some_and(|w| w != "0")
            })
            .collect();
        if !todo.is_empty() {
            let mut args: Vec<String> = vec!["blkiotune".into(), vm.into(), "--live".into()];
            for (k, v) in &todo {
                args.push(format!("--{}", k.replace('_', "-")));
                args.push(if *k == "weight" {
                    v.clone()
                } else {
                    device_argument(&field(&current[2], k).unwrap_or_default(), v)
                });
            }
            self.virsh(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
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

    /// `virsh blkiotune --live` of a lab guest, after a throttle was set.
    const BLKIO: &str = "weight         : 100\ndevice_weight  : \ndevice_read_iops_sec: \ndevice_write_iops_sec: /dev/vda,500\ndevice_read_bytes_sec: /dev/vda,1048576\ndevice_write_bytes_sec: \n";

    #[test]
    fn disk_weight_and_per_device_caps_as_virsh_lists_them() {
        let s = Settings {
            shares: 4000.0,
            disk_limit_bytes_per_second: Some(1048576.0),
            disk_limit_iops: None,
            ..settings()
        };
        let disks = ["/dev/vda".to_string(), "/dev/vdb".to_string()];
        let p = blkiotune_params(&s, &disks);
        assert_eq!(p[0], ("weight", "1000".into()));
        assert_eq!(
            p[1],
            (
                "device_read_bytes_sec",
                "/dev/vda,1048576,/dev/vdb,1048576".into()
            )
        );
        assert_eq!(p[3], ("device_read_iops_sec", String::new()));
        let todo = changed(BLKIO, &p);
        // The read-bytes cap differs (vdb added), the write-iops cap must go.
        let keys: Vec<&str> = todo.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "weight",
                "device_read_bytes_sec",
                "device_write_bytes_sec",
                "device_write_iops_sec"
            ]
        );
        assert_eq!(device_argument("/dev/vda,500", ""), "/dev/vda,0");
        assert_eq!(
            device_argument("/dev/vda,500", "/dev/vdb,7"),
            "/dev/vdb,7,/dev/vda,0"
        );
        assert_eq!(device_argument("", "/dev/vda,7"), "/dev/vda,7");
        // Nothing capped, nothing wanted: no argument needed.
        let none = blkiotune_params(&settings(), &[]);
        assert!(changed(
            "weight : 500\ndevice_read_iops_sec: \ndevice_write_iops_sec: \ndevice_read_bytes_sec: \ndevice_write_bytes_sec: \n",
            &none
        )
        .is_empty());
    }

    #[test]
    fn the_values_found_are_picked_from_listings() {
        assert_eq!(
            pick(SCHED, &SCHED_KEYS),
            vec![
                ("cpu_shares", "1024".to_string()),
                ("global_period", "100000".to_string()),
                ("global_quota", "-1".to_string())
            ]
        );
        assert_eq!(pick("garbage", &MEM_KEYS), vec![]);
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
