//! The per-host control loop (`keel agent`): every interval, observe each
//! VM's QEMU process, estimate its demand, divide the host with the
//! entitlement function, and write what changed to its cgroup; reclaim
//! memory by balloon first; undo everything when a VM leaves the agent's
//! care or the agent stops.
//!
//! Demand per VM over the last interval: CPU = (time run + time waiting
//! for a CPU) / interval, at most its vCPUs, so that a VM held back by
//! contention still shows what it wants; memory = QEMU's resident memory;
//! disk = bytes read and written per second. On the first step (no
//! interval yet) a VM is taken to want all its vCPUs.

pub mod config;
pub mod link;

use crate::balloon::{Balloon, BalloonState};
use crate::cgroup::{Cgroup, CgroupError, Device};
use crate::config::{AllocConfig, ConfigError};
use crate::enforce::{Enforce, VirshTunables};
use crate::observe::{Counters, ProcSource, QemuProcess};
use crate::plan::{plan, PlanError, RunningVm, Settings, MEMORY_OVERHEAD_BYTES};
pub use config::{AgentConfig, Manage};
use keel_model::Resources;
pub use link::DaemonLink;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Disk capacity used when none is configured: large enough never to bind.
pub const UNBOUNDED_DISK_BYTES_PER_SECOND: f64 = 1e15;

/// Memory caps stay at least this many times the QEMU's resident memory.
pub const RSS_FLOOR_FACTOR: f64 = 1.1;

/// A balloon target is only changed by more than this, bytes.
pub const BALLOON_STEP_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

/// What a guest needs to survive, given its balloon, `None` if it reports
/// no statistics: a fifth more than the larger of its used memory (caches
/// included) and what it cannot give without pressure (its size minus
/// its MemAvailable: the kernel's own memory and unreclaimable pages),
/// and never under a quarter of its configured memory. The second term
/// does not move as the balloon grows (size and MemAvailable fall
/// together), so the floor is stable and reachable: a 128 MiB lab guest
/// stalls its balloon at ~63 MiB, and this floor is ~69 MiB.
pub fn survival_bytes(configured: f64, b: &BalloonState) -> Option<f64> {
    let used = b.guest_used_bytes?;
    let held = b
        .guest_usable_bytes
        .map_or(0.0, |usable| (b.actual_bytes - usable).max(0.0));
    Some((used.max(held) * 1.2).max(configured * 0.25))
}

/// The host capacity the agent divides.
pub fn capacity(cfg: &AgentConfig) -> Resources {
    let cores = cfg
        .cpu_cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);
    let memory = cfg.memory_bytes.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                let l = t.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kb: f64 = l[9..].trim().trim_end_matches("kB").trim().parse().ok()?;
                Some(kb * 1024.0)
            })
            .unwrap_or(0.0)
    });
    let disk = cfg
        .disk_bytes_per_second
        .unwrap_or(UNBOUNDED_DISK_BYTES_PER_SECOND);
    Resources::new(cores, memory, disk, 0.0)
}

/// One VM in one step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VmStep {
    /// The VM.
    pub name: String,
    /// Its estimated demand (cores, bytes, bytes/s).
    pub demand: Resources,
    /// Its entitlement.
    pub entitlement: Resources,
    /// What was enforced.
    pub settings: Settings,
    /// Control files (or libvirt parameters) written this step (0 when
    /// nothing changed).
    pub files_written: usize,
    /// Balloon target set this step, bytes.
    pub balloon_target_bytes: Option<f64>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct StepReport {
    /// The managed VMs.
    pub vms: Vec<VmStep>,
    /// VMs whose settings were undone (no longer managed) or forgotten
    /// (stopped).
    pub released: Vec<String>,
    /// Admission control: VMs (or pools) whose reservations could not be
    /// met, with why; they run with default settings.
    pub refused: Vec<(String, String)>,
    /// Anything that failed (the step goes on with the other VMs).
    pub errors: Vec<String>,
}

/// What the agent keeps about a managed VM.
#[derive(Debug, Clone)]
struct Managed {
    pid: u32,
    cgroup: Option<Cgroup>,
    devices: Vec<Device>,
    /// The configured memory, when the agent moved the balloon.
    ballooned_from: Option<f64>,
}

/// The per-host control loop's state.
pub struct Agent<B: Balloon> {
    cfg: AgentConfig,
    source: ProcSource,
    balloon: B,
    capacity: Resources,
    last: BTreeMap<String, (u32, f64, Counters)>,
    managed: BTreeMap<String, Managed>,
    /// Set when enforcing through libvirt's tunables.
    tunables: Option<VirshTunables>,
}

impl<B: Balloon> Agent<B> {
    /// An agent reading `/proc` and cgroups through `source`.
    pub fn new(cfg: AgentConfig, source: ProcSource, balloon: B) -> Self {
        let capacity = capacity(&cfg);
        let tunables = match (cfg.enforce, &cfg.libvirt_uri) {
            (Enforce::Libvirt, Some(uri)) => Some(VirshTunables::new(uri.clone())),
            _ => None,
        };
        Agent {
            tunables,
            cfg,
            source,
            balloon,
            capacity,
            last: BTreeMap::new(),
            managed: BTreeMap::new(),
        }
    }

    /// The capacity being divided.
    pub fn capacity(&self) -> Resources {
        self.capacity
    }

    /// The configuration in force.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// Replaces the allocation policy (applied at the next step).
    pub fn set_policy(&mut self, policy: AllocConfig) {
        self.cfg.policy = policy;
    }

    fn demand(&self, p: &QemuProcess, now: f64) -> Resources {
        let vcpus = f64::from(p.vcpus);
        let prev = self.last.get(&p.name).filter(|(pid, ..)| *pid == p.pid);
        let (cpu, disk) = match prev {
            Some((_, t, c)) if now > *t => {
                let dt = now - t;
                let run = p.counters.cpu_run_seconds - c.cpu_run_seconds;
                let wait = p.counters.cpu_wait_seconds - c.cpu_wait_seconds;
                let disk = (p.counters.disk_bytes - c.disk_bytes) / dt;
                (((run + wait) / dt).clamp(0.0, vcpus), disk.max(0.0))
            }
            _ => (vcpus, 0.0),
        };
        Resources::new(cpu, p.rss_bytes, disk, 0.0)
    }

    /// One control step at `now` (monotonic seconds).
    pub fn step(&mut self, now: f64) -> StepReport {
        let mut report = StepReport::default();
        let procs = self.source.scan();
        let named = self.cfg.policy.vm_names();
        let wanted = |n: &str| self.cfg.manage == Manage::All || named.iter().any(|v| v == n);
        let ours: Vec<&QemuProcess> = procs.values().filter(|p| wanted(&p.name)).collect();
        // Release VMs that stopped or are no longer ours.
        let gone: Vec<String> = self
            .managed
            .iter()
            .filter(|(n, m)| !ours.iter().any(|p| p.name == **n && p.pid == m.pid))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            if let Some(m) = self.managed.remove(&n) {
                if procs.get(&n).is_some_and(|p| p.pid == m.pid) {
                    self.undo(&n, &m, &mut report);
                }
                report.released.push(n);
            }
        }
        let running: Vec<RunningVm> = ours
            .iter()
            .map(|p| RunningVm {
                name: p.name.clone(),
                demand: self.demand(p, now),
                guest_memory_bytes: p.guest_memory_bytes.unwrap_or(p.rss_bytes),
            })
            .collect();
        for p in &ours {
            self.last.insert(p.name.clone(), (p.pid, now, p.counters));
        }
        self.last.retain(|n, _| procs.contains_key(n));
        let Some(plans) = self.admit(&running, &mut report) else {
            return report;
        };
        let memory_contended =
            running.iter().map(|v| v.demand.memory_bytes).sum::<f64>() > self.capacity.memory_bytes;
        for (vm_plan, demand) in plans.into_iter().map(|p| {
            let d = running.iter().find(|r| r.name == p.name).map(|r| r.demand);
            (p, d.unwrap_or(Resources::ZERO))
        }) {
            let Some(p) = procs.get(&vm_plan.name) else {
                continue;
            };
            if p.cgroup.is_none() && self.tunables.is_none() {
                report.errors.push(format!(
                    "{}: cgroup of QEMU pid {} not found",
                    p.name, p.pid
                ));
                continue;
            }
            let entry = self.managed.entry(p.name.clone()).or_insert(Managed {
                pid: p.pid,
                cgroup: p.cgroup.clone(),
                devices: p.devices.clone(),
                ballooned_from: None,
            });
            entry.devices = p.devices.clone();
            let mut s = vm_plan.settings;
            if !memory_contended {
                // No soft cap while the host has memory to spare.
                s.memory_entitlement_bytes = f64::INFINITY;
            }
            let configured = p.guest_memory_bytes.unwrap_or(p.rss_bytes);
            let state = if self.cfg.libvirt_uri.is_some() {
                self.balloon.state(&p.name)
            } else {
                None
            };
            let target = state.and_then(|b| balloon_target(&s, configured, &b));
            if let (Some(t), Some(b)) = (target, state) {
                match self.balloon.set_target(&p.name, t) {
                    Ok(()) => {
                        let m = self.managed.get_mut(&p.name).expect("inserted above");
                        m.ballooned_from.get_or_insert(configured);
                    }
                    Err(e) => report.errors.push(e),
                }
                // The cgroup floor follows the balloon only once the guest
                // has given the memory back (its actual size).
                s.guest_memory_bytes = b.actual_bytes;
            } else {
                s.guest_memory_bytes = state.map_or(configured, |b| b.actual_bytes);
            }
            // The floor of every memory cap is the guest's memory plus
            // QEMU's overhead; never below what QEMU holds now plus a tenth
            // either: a hard cap under its resident memory would make the
            // kernel swap or OOM-kill the guest (TCG QEMUs hold 77-85 MiB
            // beside a 128 MiB guest, measured in the lab).
            s.guest_memory_bytes = s
                .guest_memory_bytes
                .max(p.rss_bytes * RSS_FLOOR_FACTOR - MEMORY_OVERHEAD_BYTES);
            let m = &self.managed[&p.name];
            let outcome = match (self.tunables.as_mut(), &m.cgroup) {
                (Some(t), _) => t.apply(&p.name, &s, &m.devices).map_err(Some),
                (None, Some(cg)) => {
                    cg.apply(&s, &m.devices)
                        .map(|w| w.len())
                        .map_err(|e| match e {
                            CgroupError::VmGone { .. } => None,
                            e => Some(e.to_string()),
                        })
                }
                (None, None) => Err(Some("no cgroup".into())),
            };
            match outcome {
                Ok(n) => report.vms.push(VmStep {
                    name: p.name.clone(),
                    demand,
                    entitlement: vm_plan.entitlement,
                    settings: s,
                    files_written: n,
                    balloon_target_bytes: target,
                }),
                Err(None) => {
                    // Stopped between observation and action.
                    self.managed.remove(&p.name);
                    report.released.push(p.name.clone());
                }
                Err(Some(e)) => report.errors.push(format!("{}: {e}", p.name)),
            }
        }
        report
    }

    /// Plans with admission control: a VM (or pool) whose reservation does
    /// not fit is left out of the policy (default settings) and reported.
    fn admit(
        &self,
        running: &[RunningVm],
        report: &mut StepReport,
    ) -> Option<Vec<crate::plan::VmPlan>> {
        let present = |n: &str| running.iter().any(|r| r.name == n);
        let mut policy = self.cfg.policy.retain_vms(&present);
        for _ in 0..=running.len() {
            match plan(&policy, &self.capacity, running) {
                Ok(p) => return Some(p),
                Err(PlanError::Config(e @ ConfigError::DoesNotFit { .. })) => {
                    let ConfigError::DoesNotFit { item, .. } = &e else {
                        unreachable!()
                    };
                    let item = item.clone();
                    report.refused.push((item.clone(), e.to_string()));
                    policy = without(&policy, &item);
                }
                Err(e) => {
                    report.errors.push(format!("plan: {e}"));
                    return None;
                }
            }
        }
        report
            .errors
            .push("plan: admission control did not converge".into());
        None
    }

    fn undo(&mut self, name: &str, m: &Managed, report: &mut StepReport) {
        if let Some(t) = self.tunables.as_mut() {
            if let Err(e) = t.undo(name) {
                report.errors.push(format!("{name}: undo: {e}"));
            }
        } else if let Some(cg) = &m.cgroup {
            match cg.undo(&m.devices) {
                Ok(_) | Err(CgroupError::VmGone { .. }) => {}
                Err(e) => report.errors.push(format!("{name}: undo: {e}")),
            }
        }
        if let Some(bytes) = m.ballooned_from {
            if let Err(e) = self.balloon.set_target(name, bytes) {
                report.errors.push(e);
            }
        }
    }

    /// Undoes everything on every managed VM (the agent stops).
    pub fn release_all(&mut self) -> StepReport {
        let mut report = StepReport::default();
        for (n, m) in std::mem::take(&mut self.managed) {
            self.undo(&n, &m, &mut report);
            report.released.push(n);
        }
        report
    }

    /// Steps every `interval_seconds` until `stop` is set, calling
    /// `on_step` after each step (with the agent, e.g. to give it a new
    /// policy for the next step), then undoes everything.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_step: impl FnMut(&mut Self, &StepReport),
    ) -> StepReport {
        let start = Instant::now();
        let interval = Duration::from_secs_f64(self.cfg.interval_seconds.max(0.05));
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let r = self.step(start.elapsed().as_secs_f64());
            on_step(self, &r);
            next += interval;
            while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20).min(interval));
            }
        }
        self.release_all()
    }
}

/// The policy without `item` (a VM, or a pool with everything in it).
fn without(policy: &AllocConfig, item: &str) -> AllocConfig {
    let mut p = policy.retain_vms(&|n: &str| n != item);
    fn drop_pool(pools: &mut Vec<crate::config::PoolAlloc>, item: &str) {
        pools.retain(|p| p.name != item);
        for p in pools {
            drop_pool(&mut p.pool, item);
        }
    }
    drop_pool(&mut p.pool, item);
    p
}

/// The balloon target for a VM, if it should move: shrink towards the
/// memory entitlement (minus QEMU's overhead) when memory is contended,
/// never below [`survival_bytes`]; grow back to the configured memory
/// when it is not. `None` when the guest reports no used memory (what it
/// needs is unknown: no shrinking) or the change is under
/// [`BALLOON_STEP_BYTES`].
pub fn balloon_target(s: &Settings, configured: f64, b: &BalloonState) -> Option<f64> {
    let want = if s.memory_entitlement_bytes.is_finite() {
        let floor = survival_bytes(configured, b)?;
        (s.memory_entitlement_bytes - MEMORY_OVERHEAD_BYTES)
            .max(floor)
            .max(s.memory_reservation_bytes)
            .min(configured)
    } else {
        configured
    };
    ((want - b.actual_bytes).abs() > BALLOON_STEP_BYTES).then_some(want)
}

#[cfg(test)]
mod tests;
