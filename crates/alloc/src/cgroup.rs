//! Writing [`Settings`] to a VM's cgroup, v1 or v2: idempotent (a value
//! already in place is not written again), minimal (only changed files) and
//! undoable ([`Cgroup::undo`] restores the kernel's defaults).
//!
//! | setting            | cgroup v2                      | cgroup v1                                  |
//! |--------------------|--------------------------------|--------------------------------------------|
//! | CPU weight (relative entitlement) | `cpu.weight` = 100 w, 1..10000 | `cpu.shares` = 1024 w, 2..262144 |
//! | CPU limit          | `cpu.max` "quota 100000"       | `cpu.cfs_period_us` 100000, `cpu.cfs_quota_us` |
//! | memory reservation | `memory.min`                   | (none in v1)                               |
//! | memory entitlement | `memory.high` (>= floor)       | `memory.soft_limit_in_bytes` (>= floor)    |
//! | memory limit       | `memory.max` (>= floor)        | `memory.limit_in_bytes` (>= floor)         |
//! | shares (disk)      | `io.weight` "default shares/10", 1..10000 | `blkio.weight` shares/2, 100..1000 |
//! | disk limit, per disk | `io.max` "MAJ:MIN rbps= wbps= riops= wiops=" | `blkio.throttle.{read,write}_{bps,iops}_device` |
//!
//! The floor is the guest's memory plus [`crate::plan::MEMORY_OVERHEAD_BYTES`].
//! Memory values are rounded to 4 KiB pages (caps up, `memory.min` down) so
//! that what the kernel reads back equals what was written.

use crate::plan::Settings;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// CFS period used for CPU limits, microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// cgroup v1's "no memory limit" as the kernel reads it back.
pub const V1_MEMORY_UNLIMITED: u64 = 9_223_372_036_854_771_712;
const PAGE: f64 = 4096.0;

/// Which cgroup interface a VM's cgroup uses, with its directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// Unified hierarchy: one directory.
    V2(PathBuf),
    /// Legacy hierarchies: one directory per controller (they may coincide).
    V1 {
        /// The `cpu` controller's directory.
        cpu: PathBuf,
        /// The `memory` controller's directory.
        memory: PathBuf,
        /// The `blkio` controller's directory.
        blkio: PathBuf,
    },
}

/// Why a cgroup could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// The cgroup directory is gone: the VM stopped (not an error of Keel's).
    #[error("cgroup {dir} vanished (VM gone) while handling {file}")]
    VmGone {
        /// The directory.
        dir: PathBuf,
        /// The file being read or written.
        file: PathBuf,
    },
    /// The directory exists but a control file does not (controller not
    /// enabled for this cgroup).
    #[error("{file} missing (controller not enabled?)")]
    MissingFile {
        /// The file.
        file: PathBuf,
    },
    /// The directory holds neither v1 nor v2 control files.
    #[error("{dir} is not a cgroup directory (no cgroup.controllers, cpu.shares or memory.limit_in_bytes)")]
    NotACgroup {
        /// The directory.
        dir: PathBuf,
    },
    /// Any other I/O failure (e.g. the kernel refused the value).
    #[error("{op} {file} (value {value:?}): {source}")]
    Io {
        /// `read` or `write`.
        op: &'static str,
        /// The file.
        file: PathBuf,
        /// The value written (empty for reads).
        value: String,
        /// The error.
        source: std::io::Error,
    },
}

/// One control file write that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The file.
    pub file: PathBuf,
    /// What it held before (trimmed).
    pub old: String,
    /// What was written.
    pub new: String,
}

/// One control file and the value it should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The directory (cgroup).
    pub dir: PathBuf,
    /// The file name, e.g. `cpu.weight`.
    pub name: &'static str,
    /// The value, as the kernel reads it back.
    pub value: String,
    /// For per-device files (`io.max`, `blkio.throttle.*`): the device
    /// whose line is compared; the value starts with it.
    pub device: Option<Device>,
    /// Skipped where the kernel does not offer the file: the disk weights
    /// (`blkio.weight`, `io.weight`) exist only with an I/O scheduler
    /// that implements them (BFQ, CFQ, io.cost).
    pub optional: bool,
}

/// A block device, `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Device {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

fn clamp_round(x: f64, lo: f64, hi: f64) -> u64 {
    let v = if x.is_nan() {
        lo
    } else {
        x.round().clamp(lo, hi)
    };
    v as u64
}

/// Bytes rounded up to pages, saturating at v1's unlimited value.
fn cap_bytes(x: f64) -> u64 {
    let pages = (x / PAGE).ceil() * PAGE;
    if pages.is_finite() && pages < V1_MEMORY_UNLIMITED as f64 {
        pages.max(0.0) as u64
    } else {
        V1_MEMORY_UNLIMITED
    }
}

impl Settings {
    /// `io.weight` (v2): shares / 10 in 1..=10000.
    pub fn v2_weight(&self) -> u64 {
        clamp_round(self.shares / 10.0, 1.0, 10_000.0)
    }
    /// `cpu.weight` (v2): 100 times the relative CPU weight, 1..=10000.
    pub fn v2_cpu_weight(&self) -> u64 {
        clamp_round(self.cpu_weight * 100.0, 1.0, 10_000.0)
    }
    /// `cpu.shares` (v1): 1024 times the relative CPU weight, 2..=262144.
    pub fn v1_cpu_shares(&self) -> u64 {
        clamp_round(self.cpu_weight * 1024.0, 2.0, 262_144.0)
    }
    /// Disk bytes/s and IOPS caps as written (`None` = no cap).
    pub fn disk_caps(&self) -> (Option<u64>, Option<u64>) {
        let cap = |x: Option<f64>| {
            x.filter(|x| x.is_finite() && *x >= 0.0)
                .map(|x| clamp_round(x, 1.0, 1e18))
        };
        (
            cap(self.disk_limit_bytes_per_second),
            cap(self.disk_limit_iops),
        )
    }
    /// `blkio.weight` (v1): shares / 2 in 100..=1000.
    pub fn v1_blkio_weight(&self) -> u64 {
        clamp_round(self.shares / 2.0, 100.0, 1000.0)
    }
    /// CFS quota per [`CPU_PERIOD_US`], at least 1000 us; `None` = none.
    pub fn cpu_quota_us(&self) -> Option<u64> {
        let l = self.cpu_limit_cores.filter(|l| l.is_finite())?;
        Some(clamp_round(l * CPU_PERIOD_US as f64, 1000.0, 1e15))
    }
    /// Soft memory cap: the entitlement, never below the floor.
    pub fn memory_high(&self) -> u64 {
        cap_bytes(self.memory_entitlement_bytes.max(self.memory_floor_bytes()))
    }
    /// Hard memory cap: the limit, never below the floor; `None` = none.
    pub fn memory_max(&self) -> Option<u64> {
        let l = self.memory_limit_bytes.filter(|l| l.is_finite())?;
        Some(cap_bytes(l.max(self.memory_floor_bytes()))).filter(|&b| b < V1_MEMORY_UNLIMITED)
    }
    /// Memory guarantee, rounded down to pages.
    pub fn memory_min(&self) -> u64 {
        let b = (self.memory_reservation_bytes / PAGE).floor() * PAGE;
        if b.is_finite() && b > 0.0 {
            (b as u64).min(V1_MEMORY_UNLIMITED)
        } else {
            0
        }
    }
}

fn ctl(dir: &Path, name: &'static str, value: impl ToString) -> Control {
    Control {
        dir: dir.to_path_buf(),
        name,
        value: value.to_string(),
        device: None,
        optional: false,
    }
}

/// A control skipped where the kernel lacks its file.
fn optional(c: Control) -> Control {
    Control {
        optional: true,
        ..c
    }
}

/// v1 per-device throttle files, bytes/s first.
const V1_THROTTLES: [&str; 4] = [
    "blkio.throttle.read_bps_device",
    "blkio.throttle.write_bps_device",
    "blkio.throttle.read_iops_device",
    "blkio.throttle.write_iops_device",
];

/// v2 `io.max` line of `dev` for the caps (`None` = `max`).
fn io_max_line(dev: Device, bps: Option<u64>, iops: Option<u64>) -> String {
    let m = |v: Option<u64>| v.map_or("max".to_string(), |b| b.to_string());
    format!(
        "{dev} rbps={b} wbps={b} riops={i} wiops={i}",
        b = m(bps),
        i = m(iops)
    )
}

/// The per-device controls for the caps on `devices`.
fn disk_controls(
    cg: &Cgroup,
    devices: &[Device],
    bps: Option<u64>,
    iops: Option<u64>,
) -> Vec<Control> {
    let mut out = Vec::new();
    for &dev in devices {
        match cg {
            Cgroup::V2(d) => out.push(Control {
                device: Some(dev),
                ..ctl(d, "io.max", io_max_line(dev, bps, iops))
            }),
            Cgroup::V1 { blkio, .. } => {
                for (k, name) in V1_THROTTLES.into_iter().enumerate() {
                    let v = if k < 2 { bps } else { iops };
                    out.push(Control {
                        device: Some(dev),
                        ..ctl(blkio, name, format!("{dev} {}", v.unwrap_or(0)))
                    });
                }
            }
        }
    }
    out
}

impl Cgroup {
    /// Detects the version of `dir` by its files (`cgroup.controllers` for
    /// v2; `cpu.shares` or `memory.limit_in_bytes` for v1, all controllers
    /// taken to live in `dir`).
    pub fn detect(dir: &Path) -> Result<Cgroup, CgroupError> {
        if !dir.is_dir() {
            return Err(CgroupError::VmGone {
                dir: dir.into(),
                file: dir.into(),
            });
        }
        if dir.join("cgroup.controllers").exists() {
            Ok(Cgroup::V2(dir.into()))
        } else if dir.join("cpu.shares").exists() || dir.join("memory.limit_in_bytes").exists() {
            Ok(Cgroup::V1 {
                cpu: dir.into(),
                memory: dir.into(),
                blkio: dir.into(),
            })
        } else {
            Err(CgroupError::NotACgroup { dir: dir.into() })
        }
    }

    /// The control values for `s`, in write order; the disk caps go to
    /// each of `devices` (the VM's disks).
    pub fn controls(&self, s: &Settings, devices: &[Device]) -> Vec<Control> {
        let (bps, iops) = s.disk_caps();
        let mut out = self.scalar_controls(s);
        out.extend(disk_controls(self, devices, bps, iops));
        out
    }

    fn scalar_controls(&self, s: &Settings) -> Vec<Control> {
        match self {
            Cgroup::V2(d) => {
                let max = |v: Option<u64>| v.map_or("max".to_string(), |b| b.to_string());
                vec![
                    ctl(d, "cpu.weight", s.v2_cpu_weight()),
                    ctl(
                        d,
                        "cpu.max",
                        format!("{} {CPU_PERIOD_US}", max(s.cpu_quota_us())),
                    ),
                    ctl(d, "memory.min", s.memory_min()),
                    ctl(d, "memory.max", max(s.memory_max())),
                    ctl(
                        d,
                        "memory.high",
                        max(
                            Some(s.memory_high().min(s.memory_max().unwrap_or(u64::MAX)))
                                .filter(|&b| b < V1_MEMORY_UNLIMITED),
                        ),
                    ),
                    optional(ctl(d, "io.weight", format!("default {}", s.v2_weight()))),
                ]
            }
            Cgroup::V1 { cpu, memory, blkio } => {
                let quota = s.cpu_quota_us().map_or(-1, |q| q as i64);
                let hard = s.memory_max().unwrap_or(V1_MEMORY_UNLIMITED);
                vec![
                    ctl(cpu, "cpu.shares", s.v1_cpu_shares()),
                    ctl(cpu, "cpu.cfs_period_us", CPU_PERIOD_US),
                    ctl(cpu, "cpu.cfs_quota_us", quota),
                    ctl(memory, "memory.limit_in_bytes", hard),
                    ctl(
                        memory,
                        "memory.soft_limit_in_bytes",
                        s.memory_high().min(hard),
                    ),
                    optional(ctl(blkio, "blkio.weight", s.v1_blkio_weight())),
                ]
            }
        }
    }

    /// The kernel's defaults, what [`Cgroup::undo`] restores (no disk
    /// caps on `devices`).
    pub fn defaults(&self, devices: &[Device]) -> Vec<Control> {
        let mut out = self.scalar_defaults();
        out.extend(disk_controls(self, devices, None, None));
        out
    }

    fn scalar_defaults(&self) -> Vec<Control> {
        match self {
            Cgroup::V2(d) => vec![
                ctl(d, "cpu.weight", 100),
                ctl(d, "cpu.max", format!("max {CPU_PERIOD_US}")),
                ctl(d, "memory.min", 0),
                ctl(d, "memory.high", "max"),
                ctl(d, "memory.max", "max"),
                optional(ctl(d, "io.weight", "default 100")),
            ],
            Cgroup::V1 { cpu, memory, blkio } => vec![
                ctl(cpu, "cpu.shares", 1024),
                ctl(cpu, "cpu.cfs_quota_us", -1),
                ctl(cpu, "cpu.cfs_period_us", CPU_PERIOD_US),
                ctl(memory, "memory.soft_limit_in_bytes", V1_MEMORY_UNLIMITED),
                ctl(memory, "memory.limit_in_bytes", V1_MEMORY_UNLIMITED),
                optional(ctl(blkio, "blkio.weight", 500)),
            ],
        }
    }

    /// Writes the controls for `s` that differ from what the cgroup holds;
    /// returns what was written (nothing when already in place).
    pub fn apply(&self, s: &Settings, devices: &[Device]) -> Result<Vec<Written>, CgroupError> {
        write_controls(&self.controls(s, devices), |_| {})
    }

    /// Restores the defaults (Keel stops managing the VM); minimal too.
    pub fn undo(&self, devices: &[Device]) -> Result<Vec<Written>, CgroupError> {
        write_controls(&self.defaults(devices), |_| {})
    }
}

/// The value a control file holds, as compared: trimmed, for `io.weight`
/// only its `default` line, for a per-device file only `device`'s line
/// (or the no-limit line when there is none).
fn current_value(name: &str, device: Option<Device>, text: &str) -> String {
    if let Some(dev) = device {
        let prefix = format!("{dev} ");
        return match text.lines().find(|l| l.starts_with(&prefix)) {
            Some(l) => l.split_whitespace().collect::<Vec<_>>().join(" "),
            None if name == "io.max" => io_max_line(dev, None, None),
            None => format!("{dev} 0"),
        };
    }
    if name == "io.weight" {
        if let Some(l) = text.lines().find(|l| l.starts_with("default")) {
            return l.split_whitespace().collect::<Vec<_>>().join(" ");
        }
    }
    text.trim().to_string()
}

fn classify(op: &'static str, c: &Control, value: &str, e: std::io::Error) -> CgroupError {
    let file = c.dir.join(c.name);
    if e.kind() == ErrorKind::NotFound {
        if c.dir.is_dir() {
            CgroupError::MissingFile { file }
        } else {
            CgroupError::VmGone {
                dir: c.dir.clone(),
                file,
            }
        }
    } else {
        CgroupError::Io {
            op,
            file,
            value: value.into(),
            source: e,
        }
    }
}

/// Reads each control and writes it where it differs, calling `after`
/// after each write (tests use it to remove the cgroup mid-way).
pub(crate) fn write_controls(
    controls: &[Control],
    mut after: impl FnMut(&Written),
) -> Result<Vec<Written>, CgroupError> {
    let mut written = Vec::new();
    for c in controls {
        let file = c.dir.join(c.name);
        let old = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if c.optional && e.kind() == ErrorKind::NotFound && c.dir.is_dir() => continue,
            Err(e) => return Err(classify("read", c, "", e)),
        };
        let old = current_value(c.name, c.device, &old);
        if old == c.value {
            continue;
        }
        let open = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&file);
        open.and_then(|mut f| std::io::Write::write_all(&mut f, c.value.as_bytes()))
            .map_err(|e| classify("write", c, &c.value, e))?;
        let w = Written {
            file,
            old,
            new: c.value.clone(),
        };
        after(&w);
        written.push(w);
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
