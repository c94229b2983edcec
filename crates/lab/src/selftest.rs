//! `keel lab selftest`: the end-to-end proof that Keel balances real VMs.
//!
//! Two CPU-bound guests run on host h0, both pinned to one physical core;
//! h1 is idle. Each lab host stands for one core: host i's guests are
//! pinned (vCPU and emulator threads) to CPU i mod ncpus, and the libvirt
//! driver reports each host's CPU capacity as that one core
//! ([`LibvirtDriver::set_host_cpu_capacity`]), since every libvirtd of the
//! lab sees the whole machine through `virNodeGetInfo`.
//!
//! Steps: measure each guest's progress (serial TICK counter against wall
//! time) over a window while the estimator is fed one observation a second
//! (which also measures the driver's monitoring cost); run ONE control
//! iteration (`ControlLoop` with `KeelBalancer`: observe, estimate, plan,
//! migrate); re-pin each migrated guest to its new host's core; measure
//! again. Passes if the slower guest's rate rose at least
//! [`MIN_SPEEDUP`] times and every guest still runs. Then the failure
//! injection ([`inject`]).
//!
//! The re-pinning is the lab's business, not the driver's: a pinning is a
//! property of the machine a VM runs on, and libvirt carries the source's
//! `<vcpupin>` to the destination unchanged, which in the lab would keep the
//! moved guest on the source's core. On a real cluster, with one machine
//! per host, nothing needs re-pinning.

pub mod inject;
pub mod meter;

use crate::error::{failed, Result};
use crate::harness::{on_lab, LabNeeds};
use crate::state::{Resource, StateFile};
use crate::Lab;
use inject::Injection;
use keel_control::{ControlLoop, MoveOutcome};
use keel_drivers::libvirt::LibvirtDriver;
use keel_drivers::Driver;
use keel_model::Rules;
use keel_policy::balance::KeelBalancer;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

mod monitor;
use monitor::{Monitoring, Sampler};

/// The slower guest must run at least this much faster after the move.
pub const MIN_SPEEDUP: f64 = 1.6;

/// How the selftest runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Leave the lab up at the end (it is torn down otherwise, if the
    /// selftest brought it up).
    pub keep: bool,
    /// Wall time over which progress rates are measured, before and after.
    pub window: Duration,
    /// Interval between the estimator's observations (monitoring cadence).
    pub sample_interval: Duration,
    /// Run the failure injection after the balancing proof.
    pub inject_failure: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keep: false,
            window: Duration::from_secs(10),
            sample_interval: Duration::from_secs(1),
            inject_failure: true,
        }
    }
}

/// What the selftest measured; printed as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True if every check passed.
    pub passed: bool,
    /// The checks that failed, in words.
    pub failures: Vec<String>,
    /// Accelerator (`tcg`/`kvm`), whether the selftest brought the lab up,
    /// the core each host stands for.
    pub accel: String,
    /// Whether the selftest brought the lab up itself.
    pub brought_up: bool,
    /// Host -> the physical CPU its guests are pinned to.
    pub host_cpus: BTreeMap<String, usize>,
    /// CPU weight (cgroup v1 `cpu.shares`) given to the lab hosts' guests
    /// over the machine's other processes; `null` if no cgroup was usable.
    pub guest_cpu_shares: Option<u64>,
    /// Seconds of each rate window.
    pub window_seconds: f64,
    /// VM -> host before the control iteration.
    pub placement_before: BTreeMap<String, String>,
    /// VM -> progress, loop iterations per wall second, before.
    pub rate_before: BTreeMap<String, Option<f64>>,
    /// VM -> progress after the control iteration.
    pub rate_after: BTreeMap<String, Option<f64>>,
    /// VM -> rate_after / rate_before.
    pub speedup: BTreeMap<String, Option<f64>>,
    /// The guest that was slower before, and its speedup (>= MIN_SPEEDUP).
    pub slower_guest: Option<String>,
    /// Its speedup.
    pub slower_guest_speedup: Option<f64>,
    /// VM -> host after.
    pub placement_after: BTreeMap<String, String>,
    /// Every move of the iteration, with its time, downtime or error.
    pub moves: Vec<MoveOutcome>,
    /// Wall time of the (first) migration, seconds.
    pub migration_seconds: Option<f64>,
    /// Its downtime as libvirt reports it, ms.
    pub downtime_ms: Option<f64>,
    /// Imbalance (std-dev form) of the estimated demand before the plan.
    pub imbalance_before: f64,
    /// Imbalance the plan predicted after it.
    pub imbalance_after: f64,
    /// Imbalance of the demand observed after the moves (next proposal).
    pub imbalance_after_observed: Option<f64>,
    /// Cost of the driver's observations at the sampling interval.
    pub monitoring: Monitoring,
    /// The failure injection, if run.
    pub failure_injection: Option<Injection>,
    /// Lab guests not running anywhere at the end.
    pub guests_lost: Vec<String>,
}

fn say(log: &mut dyn Write, msg: std::fmt::Arguments) {
    crate::harness::say(log, "selftest", msg);
}

/// Runs the selftest on `lab` (bringing up 2 hosts with 2 guests on h0 if
/// no lab is up), logging progress to `log`; the lab is torn down at the end
/// if the selftest brought it up and `opts.keep` is false. An `Err` is a
/// selftest that could not run; a run that fails a check is an `Ok` report
/// with `passed: false`.
pub fn run(lab: &Lab, opts: &Options, log: &mut dyn Write) -> Result<Report> {
    let needs = LabNeeds {
        name: "selftest",
        hosts: 2,
        vms: 2,
        described: "2 hosts, 2 guests on h0",
    };
    on_lab(lab, &needs, opts.keep, log, |brought_up, log| {
        scenario(lab, opts, brought_up, log)
    })
}

/// Connects the driver to every lab host (unix sockets from here, the
/// TCP URIs and addresses between hosts) with one core of capacity each.
fn connect(sf: &StateFile) -> Result<(LibvirtDriver, Vec<(String, String)>)> {
    let hosts: Vec<(String, String)> = sf
        .state
        .hosts
        .iter()
        .map(|h| (format!("h{}", h.index), h.unix_uri.clone()))
        .collect();
    let e = |e: keel_drivers::DriverError| failed("connect the libvirt driver", e.to_string());
    let mut driver = LibvirtDriver::connect(&hosts).map_err(e)?;
    for h in &sf.state.hosts {
        let name = format!("h{}", h.index);
        let data = format!("tcp://{}", h.addr);
        driver
            .set_peer_address(&name, &h.tcp_uri, Some(&data))
            .map_err(e)?;
        driver.set_host_cpu_capacity(&name, 1.0).map_err(e)?;
    }
    Ok((driver, hosts))
}

/// VM -> (host, running), as the driver sees it.
fn placement(driver: &mut LibvirtDriver) -> Result<BTreeMap<String, (String, bool)>> {
    let o = driver
        .observe()
        .map_err(|e| failed("observe", e.to_string()))?;
    Ok(o.vms
        .into_iter()
        .map(|v| (v.name, (v.host, v.running)))
        .collect())
}

/// Records that `vm` is (about to be) on host `to` in the state file, so
/// that `down` destroys it there.
fn record_move(sf: &mut StateFile, vm: &str, to: &str) -> Result<()> {
    let Some(i) = to.strip_prefix('h').and_then(|n| n.parse::<usize>().ok()) else {
        return Ok(());
    };
    let Some(uri) = sf.state.hosts.get(i).map(|h| h.unix_uri.clone()) else {
        return Ok(());
    };
    let known = sf
        .state
        .resources
        .iter()
        .any(|r| matches!(r, Resource::Domain { name, uri: u } if name == vm && *u == uri));
    if !known {
        sf.record(Resource::Domain {
            name: vm.into(),
            uri,
        })?;
    }
    if let Some(rec) = sf.state.vms.iter_mut().find(|v| v.name == vm) {
        rec.host = i;
    }
    sf.save()
}

fn host_index(name: &str) -> usize {
    name.trim_start_matches('h').parse().unwrap_or(0)
}

fn scenario(lab: &Lab, opts: &Options, brought_up: bool, log: &mut dyn Write) -> Result<Report> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return Err(failed(
            "selftest",
            format!("needs at least 2 CPUs (one per host), this machine has {cpus}"),
        ));
    }
    let mut sf = StateFile::load(&lab.dir)?;
    let (mut driver, uris) = connect(&sf)?;
    let uri_of = |h: &str| uris.iter().find(|(n, _)| n == h).map(|(_, u)| u.clone());
    let guests: Vec<(String, std::path::PathBuf)> = sf.state.vms[..2]
        .iter()
        .map(|v| (v.name.clone(), v.serial.clone()))
        .collect();
    // Both test guests on h0 (a lab that was already up may have them elsewhere).
    for (vm, _) in &guests {
        let here = placement(&mut driver)?.get(vm).map(|p| p.0.clone());
        match here.as_deref() {
            Some("h0") => {}
            Some(from) => {
                say(log, format_args!("moving {vm} from {from} to h0 first"));
                record_move(&mut sf, vm, "h0")?;
                let req = keel_drivers::MigrationRequest {
                    vm,
                    from,
                    to: "h0",
                    max_bandwidth_bytes_per_second: None,
                    timeout: Duration::from_secs(120),
                };
                driver
                    .migrate(&req)
                    .map_err(|e| failed("move guest to h0", e.to_string()))?;
            }
            None => return Err(failed("selftest", format!("guest {vm} is not running"))),
        }
    }
    let before = placement(&mut driver)?;
    let mut weighted = false;
    for (vm, (host, _)) in &before {
        let uri = uri_of(host).unwrap_or_default();
        meter::pin(&uri, vm, meter::host_cpu(host_index(host), cpus))?;
        weighted |= meter::prioritize(lab, &mut sf, host_index(host), vm)?.is_some();
    }
    let host_cpus: BTreeMap<String, usize> = uris
        .iter()
        .map(|(h, _)| (h.clone(), meter::host_cpu(host_index(h), cpus)))
        .collect();
    say(log, format_args!("pinned: host -> CPU {host_cpus:?}"));
    let serials: Vec<std::path::PathBuf> = guests.iter().map(|g| g.1.clone()).collect();
    let mut control = ControlLoop::new(driver, Box::new(KeelBalancer::default()), Rules::default());
    let mut sampler = Sampler::default();
    std::thread::sleep(Duration::from_secs(2));
    say(
        log,
        format_args!(
            "measuring progress for {:?} (sampling every {:?})",
            opts.window, opts.sample_interval
        ),
    );
    let rates_before = sampler.measure(&mut control, &serials, opts);
    let proposal = control
        .propose()
        .map_err(|e| failed("control iteration: propose", e.to_string()))?;
    say(
        log,
        format_args!(
            "plan: {} move(s), imbalance {:.3} -> {:.3}",
            proposal.moves.len(),
            proposal.imbalance_before.std_dev,
            proposal.imbalance_after.std_dev
        ),
    );
    for m in &proposal.moves {
        record_move(&mut sf, &m.vm, &m.to)?;
    }
    let moves = control.execute(&proposal.moves);
    for m in moves.iter().filter(|m| m.error.is_none()) {
        say(
            log,
            format_args!(
                "moved {} {} -> {} in {:.2} s (downtime {:?} ms); re-pinning to CPU {}",
                m.vm,
                m.from,
                m.to,
                m.seconds.unwrap_or(f64::NAN),
                m.downtime_ms,
                host_cpus[&m.to]
            ),
        );
        meter::pin(&uri_of(&m.to).unwrap_or_default(), &m.vm, host_cpus[&m.to])?;
        meter::prioritize(lab, &mut sf, host_index(&m.to), &m.vm)?;
    }
    for m in moves.iter().filter(|m| m.error.is_some()) {
        record_move(&mut sf, &m.vm, &m.from)?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let rates_after = sampler.measure(&mut control, &serials, opts);
    let imbalance_after_observed = control.propose().ok().map(|p| p.imbalance_before.std_dev);
    let after = placement(control.driver_mut())?;

    let mut report = Report {
        passed: false,
        failures: Vec::new(),
        accel: sf.state.accel.clone().unwrap_or_default(),
        brought_up,
        host_cpus,
        guest_cpu_shares: weighted.then_some(meter::HOST_CPU_SHARES),
        window_seconds: opts.window.as_secs_f64(),
        placement_before: before
            .iter()
            .map(|(v, p)| (v.clone(), p.0.clone()))
            .collect(),
        rate_before: BTreeMap::new(),
        rate_after: BTreeMap::new(),
        speedup: BTreeMap::new(),
        slower_guest: None,
        slower_guest_speedup: None,
        placement_after: after
            .iter()
            .map(|(v, p)| (v.clone(), p.0.clone()))
            .collect(),
        migration_seconds: moves.iter().find_map(|m| m.seconds),
        downtime_ms: moves.iter().find_map(|m| m.downtime_ms),
        moves,
        imbalance_before: proposal.imbalance_before.std_dev,
        imbalance_after: proposal.imbalance_after.std_dev,
        imbalance_after_observed,
        monitoring: sampler.summary(),
        failure_injection: None,
        guests_lost: Vec::new(),
    };
    for (k, (vm, _)) in guests.iter().enumerate() {
        let (b, a) = (rates_before[k], rates_after[k]);
        report.rate_before.insert(vm.clone(), b);
        report.rate_after.insert(vm.clone(), a);
        report
            .speedup
            .insert(vm.clone(), b.zip(a).map(|(b, a)| a / b));
    }
    let slower = guests
        .iter()
        .enumerate()
        .min_by(|x, y| {
            let r = |k: usize| rates_before[k].unwrap_or(0.0);
            r(x.0).total_cmp(&r(y.0))
        })
        .map(|(_, g)| g.0.clone());
    report.slower_guest_speedup = slower.as_ref().and_then(|v| report.speedup[v]);
    report.slower_guest = slower;
    match report.slower_guest_speedup {
        Some(s) if s >= MIN_SPEEDUP => {}
        s => report.failures.push(format!(
            "the slower guest's rate rose {s:?} times (needs >= {MIN_SPEEDUP})"
        )),
    }
    if !report.moves.iter().any(|m| m.error.is_none()) {
        report
            .failures
            .push(format!("no successful migration: {:?}", report.moves));
    }

    if opts.inject_failure {
        // Migrate a guest that now runs alone on its host back, and kill
        // the destination's QEMU during it.
        let pick = guests
            .iter()
            .find(|(vm, _)| after.get(vm).is_some_and(|p| p.0 != "h0"));
        let (vm, serial) = pick.unwrap_or(&guests[0]);
        let from = after.get(vm).map_or("h0".to_string(), |p| p.0.clone());
        let to = if from == "h0" { "h1" } else { "h0" };
        say(log, format_args!("failure injection: migrating {vm} {from} -> {to} at {} MiB/s, killing the destination QEMU after {:?}", inject::BANDWIDTH_BYTES_PER_SECOND / 1048576.0, inject::KILL_DELAY));
        record_move(&mut sf, vm, to)?;
        let netns = lab.host_ns(host_index(to));
        let inj =
            inject::run_injection(control.driver_mut(), vm, (&from, to), &netns, &uris, serial);
        let now = inj.vm_running_on.clone().unwrap_or(from.clone());
        record_move(&mut sf, vm, &now)?;
        if !inj.passed() {
            report.failures.push(format!("failure injection: {inj:?}"));
        }
        report.failure_injection = Some(inj);
    }
    let end = placement(control.driver_mut())?;
    report.guests_lost = sf
        .state
        .vms
        .iter()
        .filter(|v| !end.get(&v.name).is_some_and(|p| p.1))
        .map(|v| v.name.clone())
        .collect();
    if !report.guests_lost.is_empty() {
        report
            .failures
            .push(format!("guests lost: {:?}", report.guests_lost));
    }
    report.passed = report.failures.is_empty();
    Ok(report)
}
