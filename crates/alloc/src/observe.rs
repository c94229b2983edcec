//! Finding the QEMU process of each VM on this host and reading what it
//! uses, from `/proc` only (works for libvirt-managed and plain QEMU).
//!
//! - A VM is a process whose command name contains `qemu` and whose
//!   command line has `-name NAME` or `-name guest=NAME,...` (libvirt).
//! - vCPUs from `-smp N` / `-smp cpus=N`, memory from `-m` (MiB, or
//!   `size=...k/M/G`).
//! - CPU: per thread `/proc/PID/task/TID/schedstat`: time run and time
//!   spent runnable but waiting for a CPU, both ns. Run + wait over an
//!   interval is what the VM *wanted*, even when the scheduler gave it
//!   less: the demand signal the agent feeds the entitlement function.
//! - Memory: `VmRSS` of `/proc/PID/status`. Disk: `read_bytes` +
//!   `write_bytes` of `/proc/PID/io`.
//! - Its cgroup: the deepest directory holding all its threads (libvirt
//!   puts vCPU and emulator threads in sub-cgroups of the VM's cgroup).
//! - Its disks: the block devices (whole disks) holding the regular files
//!   it has open for writing (`/proc/PID/fd`).

use crate::cgroup::{Cgroup, Device};
use crate::procfs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Cumulative counters of one QEMU process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counters {
    /// CPU time run by all its threads, seconds.
    pub cpu_run_seconds: f64,
    /// Time its threads waited runnable for a CPU, seconds.
    pub cpu_wait_seconds: f64,
    /// Bytes read and written to storage.
    pub disk_bytes: f64,
}

/// One VM's QEMU process as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuProcess {
    /// The VM's name.
    pub name: String,
    /// The process id.
    pub pid: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Configured guest memory, bytes (`None` if `-m` was not understood).
    pub guest_memory_bytes: Option<f64>,
    /// Resident memory of the process, bytes.
    pub rss_bytes: f64,
    /// The counters at the time of the scan.
    pub counters: Counters,
    /// The VM's cgroup (`None` if it could not be found).
    pub cgroup: Option<Cgroup>,
    /// Its disks (whole devices).
    pub devices: Vec<Device>,
}

/// Where the agent reads processes and cgroups from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSource {
    /// Usually `/proc`.
    pub proc_root: PathBuf,
    /// Usually `/sys/fs/cgroup`.
    pub cgroup_root: PathBuf,
    /// Usually `/sys/dev/block` (to map partitions to their disk).
    pub sys_dev_block: PathBuf,
}

impl Default for ProcSource {
    fn default() -> Self {
        ProcSource {
            proc_root: "/proc".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
            sys_dev_block: "/sys/dev/block".into(),
        }
    }
}

/// The VM name and vCPUs/memory from a QEMU command line (NUL-separated
/// `/proc/PID/cmdline`); `None` if it is not a QEMU with `-name`.
pub fn parse_cmdline(raw: &[u8]) -> Option<(String, u32, Option<f64>)> {
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let exe = args.first()?;
    if !exe.rsplit('/').next()?.contains("qemu") {
        return None;
    }
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let name_arg = after("-name")?;
    let name = name_arg
        .split(',')
        .find_map(|p| p.strip_prefix("guest="))
        .unwrap_or_else(|| name_arg.split(',').next().unwrap_or(""));
    if name.is_empty() {
        return None;
    }
    let vcpus = after("-smp")
        .and_then(|s| {
            s.split(',')
                .find_map(|p| p.strip_prefix("cpus="))
                .or_else(|| s.split(',').next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(1);
    let memory = after("-m").and_then(|m| parse_memory_arg(m));
    Some((name.to_string(), vcpus, memory))
}

/// `-m` values: `128` (MiB), `2G`, `size=131072k`, `size=2048M,slots=...`.
fn parse_memory_arg(m: &str) -> Option<f64> {
    let v = m
        .split(',')
        .find_map(|p| p.strip_prefix("size="))
        .unwrap_or_else(|| m.split(',').next().unwrap_or(""));
    let (num, f) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1024.0),
        'm' | 'M' => (&v[..v.len() - 1], 1048576.0),
        'g' | 'G' => (&v[..v.len() - 1], 1073741824.0),
        't' | 'T' => (&v[..v.len() - 1], 1099511627776.0),
        _ => (v, 1048576.0),
    };
    num.parse::<f64>().ok().map(|n| n * f)
}

/// `run wait` of a schedstat file, ns.
fn schedstat(path: &Path) -> Option<(f64, f64)> {
    let t = std::fs::read_to_string(path).ok()?;
    let mut f = t.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some((f.next()??, f.next()??))
}

/// A `key: value kB` line of `/proc/PID/status`, bytes.
fn status_kb(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

fn io_bytes(text: &str) -> f64 {
    ["read_bytes:", "write_bytes:"]
        .iter()
        .filter_map(|k| text.lines().find_map(|l| l.strip_prefix(k)))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// The longest common prefix of cgroup paths, by path component.
fn common_path<'a>(paths: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut common: Option<Vec<&str>> = None;
    for p in paths {
        let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        common = Some(match common {
            None => parts,
            Some(c) => c
                .iter()
                .zip(&parts)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    common.map(|c| format!("/{}", c.join("/")))
}

impl ProcSource {
    /// Every QEMU VM on the host, by name (a name seen twice keeps the
    /// older process: the newer one is a migration's incoming side).
    pub fn scan(&self) -> BTreeMap<String, QemuProcess> {
        let mut out: BTreeMap<String, QemuProcess> = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.proc_root) else {
            return out;
        };
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let Ok(raw) = std::fs::read(self.proc_root.join(format!("{pid}/cmdline"))) else {
                continue;
            };
            let Some((name, vcpus, mem)) = parse_cmdline(&raw) else {
                continue;
            };
            if out.contains_key(&name) {
                continue;
            }
            if let Some(p) = self.process(pid, name.clone(), vcpus, mem) {
                out.insert(name, p);
            }
        }
        out
    }

    /// Reads one process; `None` if it vanished meanwhile.
    pub fn process(
        &self,
        pid: u32,
        name: String,
        vcpus: u32,
        guest_memory_bytes: Option<f64>,
    ) -> Option<QemuProcess> {
        let dir = self.proc_root.join(pid.to_string());
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let (counters, cgroup) = self.threads(&dir);
        let disk_bytes = std::fs::read_to_string(dir.join("io")).map_or(0.0, |t| io_bytes(&t));
        Some(QemuProcess {
            name,
            pid,
            vcpus: vcpus.max(1),
            guest_memory_bytes,
            rss_bytes: status_kb(&status, "VmRSS:").unwrap_or(0.0),
            counters: Counters {
                disk_bytes,
                ..counters
            },
            cgroup,
            devices: self.devices(&dir),
        })
    }

    /// CPU counters summed over the threads, and the cgroup holding them.
    fn threads(&self, dir: &Path) -> (Counters, Option<Cgroup>) {
        let mut c = Counters::default();
        let mut parsed = Vec::new();
        let tasks = std::fs::read_dir(dir.join("task"))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for t in &tasks {
            if let Some((run, wait)) = schedstat(&t.join("schedstat")) {
                c.cpu_run_seconds += run / 1e9;
                c.cpu_wait_seconds += wait / 1e9;
            }
            if let Some(p) = std::fs::read_to_string(t.join("cgroup"))
                .ok()
                .and_then(|t| procfs::parse(&t).ok())
            {
                parsed.push(p);
            }
        }
        if parsed.is_empty() {
            // No task directory (a fake /proc): the process's own file.
            if let Some(p) = std::fs::read_to_string(dir.join("cgroup"))
                .ok()
                .and_then(|t| procfs::parse(&t).ok())
            {
                parsed.push(p);
            }
        }
        let Some(first) = parsed.first() else {
            return (c, None);
        };
        let mut merged = procfs::ProcCgroup::default();
        if first.unified.is_some() {
            merged.unified = common_path(parsed.iter().filter_map(|p| p.unified.as_deref()));
        }
        for key in first.v1.keys() {
            if let Some(path) = common_path(
                parsed
                    .iter()
                    .filter_map(|p| p.v1.get(key).map(String::as_str)),
            ) {
                merged.v1.insert(key.clone(), path);
            }
        }
        (c, merged.locate(&self.cgroup_root))
    }

    /// Whole disks holding the regular files the process has open.
    fn devices(&self, dir: &Path) -> Vec<Device> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            return out;
        };
        for fd in fds.filter_map(|e| e.ok()) {
            let Ok(meta) = std::fs::metadata(fd.path()) else {
                continue;
            };
            if !meta.is_file() || meta.len() < 1024 * 1024 {
                // Not a disk image (logs, pid files, sockets).
                continue;
            }
            let d = device_of(meta.dev());
            if d.major == 0 {
                // tmpfs, overlayfs: no block device to throttle.
                continue;
            }
            let d = self.whole_disk(d);
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out.sort();
        out
    }

    /// The whole disk holding `path` (`None` on tmpfs, overlayfs and the
    /// like), as the disks of a VM are found.
    pub fn disk_of(&self, path: &Path) -> Option<Device> {
        use std::os::unix::fs::MetadataExt;
        let d = device_of(std::fs::metadata(path).ok()?.dev());
        (d.major != 0).then(|| self.whole_disk(d))
    }

    /// The disk a partition belongs to (throttles apply to whole disks).
    fn whole_disk(&self, d: Device) -> Device {
        let sys = self.sys_dev_block.join(d.to_string());
        if !sys.join("partition").exists() {
            return d;
        }
        std::fs::read_to_string(sys.join("../dev"))
            .ok()
            .and_then(|t| {
                let (a, b) = t.trim().split_once(':')?;
                Some(Device {
                    major: a.parse().ok()?,
                    minor: b.parse().ok()?,
                })
            })
            .unwrap_or(d)
    }
}

/// Major and minor of a `st_dev` (glibc's encoding).
fn device_of(dev: u64) -> Device {
    Device {
        major: ((dev >> 32) & 0xffff_f000 | (dev >> 8) & 0xfff) as u32,
        minor: ((dev >> 12) & 0xffff_ff00 | dev & 0xff) as u32,
    }
}

#[cfg(test)]
mod tests;
