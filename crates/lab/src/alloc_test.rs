//! `keel lab alloc-test`: Keel's host-local allocation (keel-alloc's
//! [`Agent`]) enforced on three real CPU-bound guests pinned to one core.
//!
//! Set-up (the lab's business, not the agent's): one lab host with three
//! guests; every guest's vCPU and emulator threads pinned to the least busy
//! CPU of the machine; each QEMU moved into a cgroup of its own,
//! `{prefix}-alloc/{vm}`, under a parent weighted 10x the machine's other
//! processes (as the selftest does) so that the core behaves roughly like a
//! dedicated one while other work runs on the machine. Enforcement: the
//! agent, stepping every second in a thread, with the capacity set to one
//! core; the test only changes its policy, suspends guests (to make them
//! idle) and measures. It never writes a cgroup setting itself.
//!
//! Phases (each: let the agent settle, then measure over a window):
//! 0. calibration: equal shares, all busy. Each guest's progress rate here
//!    is its yardstick: identical guests on one core differ in speed per
//!    CPU second (up to 10 % in CI, from where the host's caches and
//!    memory put each QEMU), which says nothing about the allocation.
//! 1. shares 4:2:1, all busy: progress rates, each in multiples of the
//!    guest's yardstick, normalised to the lowest, must be within
//!    [`SHARES_TOLERANCE`] of 4:2:1.
//! 2. work-conserving: the 4-share guest suspended; the others' combined
//!    rate over phase 1's is `work_conserving_gain` (ideal 7/3), which
//!    must be at least [`MIN_WORK_CONSERVING_GAIN`].
//! 3. reservation 0.5 core on one guest, equal shares, all busy: its part
//!    of what the three guests received (progress in yardsticks) is
//!    `reservation_share`, which must be at least 0.5 -
//!    [`LIMIT_TOLERANCE`]. This is a fraction
//!    of what the group got, not of a wall-clock core: the machine's other
//!    work takes part of the core whatever the guests' weights, which the
//!    report shows as `group_core_share`.
//! 4. limit 0.2 core on one guest, the two others suspended: its CPU time
//!    (all QEMU threads) over wall time is `limit_share`, which must be
//!    within [`LIMIT_TOLERANCE`] of 0.2 (absolute: a cap is absolute).
//! 5. balloons (after the CPU agent let go; see `balloon.rs`): another
//!    agent divides less memory than the QEMUs hold; every guest must
//!    give memory back through its balloon, keep running, and get it all
//!    back when the agent releases it. Skipped, loudly, where the guest
//!    kernel's balloon modules are not installed.
//! 6. the libvirt enforcer (`enforce = "libvirt"`) on one guest: libvirt
//!    lists exactly the settings applied, a second apply changes nothing,
//!    the undo restores what libvirt listed before (see `tunables.rs`).

use crate::cmd::run as run_cmd;
use crate::error::{failed, io, Result};
use crate::harness::{on_lab, LabNeeds};
use crate::selftest::meter;
use crate::state::{Resource, StateFile};
use crate::Lab;
use keel_alloc::agent::{Agent, AgentConfig, Manage, StepReport};
use keel_alloc::balloon::NoBalloon;
use keel_alloc::config::AllocConfig;
use keel_alloc::observe::ProcSource;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod balloon;
mod phases;
mod tunables;

pub use balloon::BalloonPhase;
pub use tunables::TunablesPhase;

/// Shares ratios must be within this fraction of 4:2:1.
pub const SHARES_TOLERANCE: f64 = 0.10;
/// The limit must hold within this many core fractions (3 points); the
/// reservation may fall short of its target by as much.
pub const LIMIT_TOLERANCE: f64 = 0.03;
/// The reserved fraction of a core.
pub const RESERVATION_CORES: f64 = 0.5;
/// The limited fraction of a core.
pub const LIMIT_CORES: f64 = 0.2;
/// The others' rate must rise at least this much when the 4-share guest
/// idles (ideal 7/3 on a core of their own).
pub const MIN_WORK_CONSERVING_GAIN: f64 = 1.5;
/// CPU weight of the test's parent cgroup (v1 `cpu.shares`; default 1024).
pub const PARENT_CPU_SHARES: u64 = 10240;

/// How the test runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Leave the lab up at the end (if the test brought it up).
    pub keep: bool,
    /// Wall time over which each phase is measured.
    pub window: Duration,
    /// Wait after a policy change before measuring (the agent needs one
    /// interval to see the new demand and one to write).
    pub settle: Duration,
    /// The agent's interval.
    pub interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keep: false,
            window: Duration::from_secs(15),
            settle: Duration::from_secs(4),
            interval: Duration::from_secs(1),
        }
    }
}

/// One phase's measurements.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phase {
    /// Guest -> progress, loop iterations per wall second (`null`: fewer
    /// than two TICKs seen, e.g. suspended).
    pub progress_rate: BTreeMap<String, Option<f64>>,
    /// Guest -> CPU time of its QEMU (all threads) over wall time, cores.
    pub cpu_cores: BTreeMap<String, f64>,
    /// The guests' CPU time together over wall time: how much of the
    /// pinned core they received.
    pub group_core_share: f64,
    /// Guest -> relative CPU weight the agent last wrote (1 = default).
    pub cpu_weight: BTreeMap<String, f64>,
    /// Guest -> entitlement the agent last computed, cores.
    pub entitlement_cores: BTreeMap<String, f64>,
    /// Guest -> CPU limit the agent last wrote, cores.
    pub cpu_limit_cores: BTreeMap<String, Option<f64>>,
}

/// What the test measured; printed as JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// True if every check passed.
    pub passed: bool,
    /// Failed checks, in words.
    pub failures: Vec<String>,
    /// `tcg` or `kvm`.
    pub accel: String,
    /// Whether the test brought the lab up.
    pub brought_up: bool,
    /// The CPU the guests were pinned to.
    pub cpu: usize,
    /// The three guests, in the order of the ratios.
    pub guests: Vec<String>,
    /// Seconds of each measurement window.
    pub window_seconds: f64,
    /// Progress rates of the 4:2:1 phase, each in multiples of the guest's
    /// own rate under an equal split (phase 0), normalised so the lowest
    /// is 1.
    pub shares_ratio: Vec<f64>,
    /// The same from the raw progress rates, without the calibration.
    pub shares_ratio_raw: Option<Vec<f64>>,
    /// The same from CPU time (for comparison).
    pub shares_ratio_cpu: Vec<f64>,
    /// The reserved guest's part of the group's progress, each guest's
    /// progress in multiples of its rate under an equal split (target 0.5).
    pub reservation_share: Option<f64>,
    /// The same from the raw progress rates.
    pub reservation_share_raw: Option<f64>,
    /// The limited guest's CPU time over wall time, cores (target 0.2).
    pub limit_share: Option<f64>,
    /// The two other guests' combined rate with the 4-share guest idle
    /// over their combined rate with it busy (ideal 7/3).
    pub work_conserving_gain: Option<f64>,
    /// Phase name -> its measurements.
    pub phases: BTreeMap<String, Phase>,
    /// Phase 5, memory through the balloons (`null` if skipped: see
    /// `skipped`).
    pub balloon: Option<BalloonPhase>,
    /// Phase 6, the libvirt enforcer against the real libvirtd.
    pub libvirt_tunables: Option<TunablesPhase>,
    /// Checks that could not run here, and why.
    pub skipped: Vec<String>,
    /// Agent steps taken, and the errors they reported.
    pub agent_steps: usize,
    /// Errors the agent reported (deduplicated).
    pub agent_errors: Vec<String>,
    /// What the agent undid at the end.
    pub released: Vec<String>,
}

fn say(log: &mut dyn Write, msg: std::fmt::Arguments) {
    crate::harness::say(log, "alloc-test", msg);
}

/// Runs the test on `lab` (bringing up one host with three guests if no
/// lab is up). An `Err` is a test that could not run; failed checks are an
/// `Ok` report with `passed: false`.
pub fn run(lab: &Lab, opts: &Options, log: &mut dyn Write) -> Result<Report> {
    let needs = LabNeeds {
        name: "alloc-test",
        hosts: 1,
        vms: 3,
        described: "1 host with 3 guests",
    };
    on_lab(lab, &needs, opts.keep, log, |brought_up, log| {
        scenario(lab, opts, brought_up, log)
    })
}

/// The CPU with the most idle time over `window` (from `/proc/stat`).
pub fn least_busy_cpu(window: Duration) -> usize {
    fn idle() -> Vec<(usize, f64)> {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("cpu")?;
                let (n, fields) = rest.split_once(' ')?;
                let cpu: usize = n.parse().ok()?;
                // idle + iowait.
                let f: Vec<f64> = fields
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                Some((cpu, f.get(3)? + f.get(4).unwrap_or(&0.0)))
            })
            .collect()
    }
    let a = idle();
    std::thread::sleep(window);
    let b = idle();
    a.iter()
        .filter_map(|(c, x)| b.iter().find(|(d, _)| d == c).map(|(_, y)| (*c, y - x)))
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map_or(0, |x| x.0)
}

/// Creates the test's parent cgroup and one child per guest, and moves
/// each guest's QEMU into its child. Returns the parent. v1: in the `cpu`
/// hierarchy; v2: under the root, with the cpu controller delegated.
fn cgroups(lab: &Lab, sf: &mut StateFile, pids: &[(String, u32)]) -> Result<PathBuf> {
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    let (parent, weight_file, weight) = if v1.join("cpu.shares").exists() {
        (
            v1.join(format!("{}-alloc", lab.prefix)),
            "cpu.shares",
            PARENT_CPU_SHARES,
        )
    } else {
        let root = Path::new("/sys/fs/cgroup");
        (
            root.join(format!("{}-alloc", lab.prefix)),
            "cpu.weight",
            PARENT_CPU_SHARES * 100 / 1024,
        )
    };
    let record = |sf: &mut StateFile, p: &Path| -> Result<()> {
        let known = sf
            .state
            .resources
            .iter()
            .any(|r| matches!(r, Resource::Cgroup { path } if path == p));
        if !known {
            sf.record(Resource::Cgroup { path: p.into() })?;
        }
        std::fs::create_dir_all(p).map_err(io("create cgroup", p))
    };
    record(sf, &parent)?;
    let wf = parent.join(weight_file);
    std::fs::write(&wf, weight.to_string()).map_err(io("weight the test's cgroup", &wf))?;
    if weight_file == "cpu.weight" {
        let sub = parent.join("cgroup.subtree_control");
        std::fs::write(&sub, "+cpu").map_err(io("enable the cpu controller", &sub))?;
    }
    for (vm, pid) in pids {
        let child = parent.join(vm);
        record(sf, &child)?;
        let procs = child.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(io("move QEMU into its cgroup", &procs))?;
    }
    Ok(parent)
}

/// The lab's view of the three guests: name, serial file, libvirt URI.
struct Guest {
    name: String,
    serial: PathBuf,
    uri: String,
}

fn virsh(uri: &str, verb: &str, vm: &str) -> Result<()> {
    run_cmd(
        verb,
        "virsh",
        &["-c", uri, verb, vm],
        Duration::from_secs(30),
    )
    .map(|_| ())
}

fn scenario(lab: &Lab, opts: &Options, brought_up: bool, log: &mut dyn Write) -> Result<Report> {
    let mut sf = StateFile::load(&lab.dir)?;
    let host0 = sf.state.vms[0].host;
    let guests: Vec<Guest> = sf
        .state
        .vms
        .iter()
        .filter(|v| v.host == host0)
        .take(3)
        .map(|v| Guest {
            name: v.name.clone(),
            serial: v.serial.clone(),
            uri: sf.state.hosts[v.host].unix_uri.clone(),
        })
        .collect();
    if guests.len() < 3 {
        return Err(failed("alloc-test", "needs 3 guests on one lab host"));
    }
    let cpu = least_busy_cpu(Duration::from_secs(1));
    let source = ProcSource::default();
    let procs = source.scan();
    let mut pids = Vec::new();
    for g in &guests {
        meter::pin(&g.uri, &g.name, cpu)?;
        let p = procs
            .get(&g.name)
            .ok_or_else(|| failed("alloc-test", format!("no QEMU process named {}", g.name)))?;
        pids.push((g.name.clone(), p.pid));
    }
    let parent = cgroups(lab, &mut sf, &pids)?;
    say(
        log,
        format_args!(
            "guests pinned to CPU {cpu}, each in its own cgroup under {}",
            parent.display()
        ),
    );
    let cfg = AgentConfig {
        interval_seconds: opts.interval.as_secs_f64(),
        cpu_cores: Some(1.0),
        manage: Manage::Configured,
        ..AgentConfig::default()
    };
    let agent = Mutex::new(Agent::new(cfg, source, NoBalloon));
    let reports: Mutex<Vec<StepReport>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let mut report = Report {
        accel: sf.state.accel.clone().unwrap_or_default(),
        brought_up,
        cpu,
        guests: guests.iter().map(|g| g.name.clone()).collect(),
        window_seconds: opts.window.as_secs_f64(),
        ..Report::default()
    };
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let r = agent
                    .lock()
                    .map(|mut a| a.step(start.elapsed().as_secs_f64()));
                if let (Ok(r), Ok(mut all)) = (r, reports.lock()) {
                    all.push(r);
                }
                let next = Instant::now() + opts.interval;
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        let ctx = phases::Ctx {
            guests: &guests,
            agent: &agent,
            reports: &reports,
            opts,
        };
        let r = phases::run_all(&ctx, &mut report, log);
        stop.store(true, Ordering::Relaxed);
        r
    });
    // Whatever happened, resume the guests and undo the agent's settings.
    for g in &guests {
        if crate::guests::domstate(&g.uri, &g.name).contains("paused") {
            let _ = virsh(&g.uri, "resume", &g.name);
        }
    }
    let end = agent
        .into_inner()
        .map(|mut a| a.release_all())
        .unwrap_or_default();
    report.released = end.released.clone();
    let all = reports.into_inner().unwrap_or_default();
    report.agent_steps = all.len();
    let mut errors: Vec<String> = all
        .iter()
        .chain([&end])
        .flat_map(|r| r.errors.clone())
        .collect();
    errors.sort();
    errors.dedup();
    report.agent_errors = errors;
    outcome?;
    let kernel = crate::prereq::find_vmlinuz();
    if kernel
        .as_deref()
        .and_then(crate::image::balloon_modules)
        .is_some()
    {
        report.balloon = Some(balloon::run(&guests, log, &mut report.failures)?);
    } else {
        let why = "balloon phase: the guest kernel has no uncompressed virtio_balloon module under /lib/modules".to_string();
        say(log, format_args!("SKIPPED {why}"));
        report.skipped.push(why);
    }
    say(
        log,
        format_args!("phase 6: the libvirt enforcer on {}", guests[0].name),
    );
    report.libvirt_tunables = Some(tunables::run(&guests[0], &lab.dir, &mut report.failures)?);
    if !report.agent_errors.is_empty() {
        report.failures.push(format!(
            "the agent reported errors: {:?}",
            report.agent_errors
        ));
    }
    report.passed = report.failures.is_empty();
    Ok(report)
}

/// Parses a policy written by the test (always valid).
fn policy(text: &str) -> Result<AllocConfig> {
    AllocConfig::from_toml(text).map_err(|e| failed("alloc-test policy", e.to_string()))
}
