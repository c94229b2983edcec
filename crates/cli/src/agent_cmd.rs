//! `keel agent`: the per-host allocation control loop (keel-alloc's
//! [`Agent`]) with the host's `/proc`, cgroups and, if configured, libvirt
//! balloons. Thin wrapper: reads the file (and, with `[daemon]`, the
//! policy from `keel serve`, re-read every `refresh_seconds`), runs until
//! Ctrl-C or SIGTERM, undoes what it wrote.

use crate::agent_link::{describe, PolicyLink};
use anyhow::{bail, Context, Result};
use clap::Args;
use keel_alloc::agent::{config::cpuinfo_mhz, Agent, AgentConfig, StepReport};
use keel_alloc::balloon::{Balloon, BalloonState, NoBalloon, VirshBalloon};
use keel_alloc::config::{AllocConfig, ConfigError};
use keel_alloc::observe::ProcSource;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Arguments of `keel agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The agent's TOML file (settings and `[[vm]]`/`[[pool]]` policy).
    #[arg(long)]
    config: PathBuf,
    /// Validate the policy against the VMs running now and the host's
    /// capacity (unknown VMs, reservations above limits or capacity) and
    /// exit without writing anything.
    #[arg(long, conflicts_with = "once")]
    check: bool,
    /// Run one step (after a first observation, one interval earlier),
    /// print its report as JSON, leave the settings in place and exit.
    #[arg(long)]
    once: bool,
}

/// Balloons through virsh when the config names a libvirt URI.
enum AnyBalloon {
    None(NoBalloon),
    Virsh(VirshBalloon),
}

impl Balloon for AnyBalloon {
    fn state(&mut self, vm: &str) -> Option<BalloonState> {
        match self {
            AnyBalloon::None(b) => b.state(vm),
            AnyBalloon::Virsh(b) => b.state(vm),
        }
    }
    fn set_target(&mut self, vm: &str, bytes: f64) -> std::result::Result<(), String> {
        match self {
            AnyBalloon::None(b) => b.set_target(vm, bytes),
            AnyBalloon::Virsh(b) => b.set_target(vm, bytes),
        }
    }
}

fn summary(r: &StepReport) -> String {
    let vms: Vec<String> = r
        .vms
        .iter()
        .map(|v| {
            format!(
                "{} cpu {:.2}/{:.2} cores (weight {:.2}{}) mem {:.0} MiB{}",
                v.name,
                v.demand.cpu_cores,
                v.entitlement.cpu_cores,
                v.settings.cpu_weight,
                v.settings
                    .cpu_limit_cores
                    .map_or(String::new(), |l| format!(", limit {l:.2}")),
                v.entitlement.memory_bytes / 1048576.0,
                if v.files_written > 0 {
                    format!(" [{} written]", v.files_written)
                } else {
                    String::new()
                }
            )
        })
        .collect();
    vms.join("; ")
}

/// Runs `keel agent`.
pub fn run(args: AgentArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mhz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| cpuinfo_mhz(&t));
    let mut cfg = AgentConfig::from_toml(&text, mhz)
        .with_context(|| format!("{}: invalid agent config", args.config.display()))?;
    let mut link = match &cfg.daemon {
        Some(d) => Some(PolicyLink::connect(d, &args.config)?),
        None => None,
    };
    if let Some(link) = &mut link {
        cfg.policy = first_policy(link, args.check)?;
    }
    let source = ProcSource::default();
    let running: Vec<String> = source.scan().into_keys().collect();
    let names: Vec<&str> = running.iter().map(String::as_str).collect();
    // The daemon's policy covers the whole cluster: check what runs here.
    let policy_here = match &link {
        Some(_) => cfg.policy.retain_vms(&|n: &str| names.contains(&n)),
        None => cfg.policy.clone(),
    };
    let balloon = match &cfg.libvirt_uri {
        Some(uri) => AnyBalloon::Virsh(VirshBalloon { uri: uri.clone() }),
        None => AnyBalloon::None(NoBalloon),
    };
    let mut agent = Agent::new(cfg.clone(), source, balloon);
    let cap = agent.capacity();
    let cap3 = [cap.cpu_cores, cap.memory_bytes, cap.disk_bytes_per_second];
    match policy_here.validate(&names, cap3) {
        Ok(()) => {}
        Err(ConfigError::UnknownVm { name }) if !args.check => {
            eprintln!("keel agent: warning: {name:?} is not running (yet); its policy applies when it starts");
        }
        Err(e) => bail!("{}: {e} (running VMs: {running:?})", args.config.display()),
    }
    if args.check {
        if let Some(link) = &link {
            println!(
                "policy from {}: {}; {} of them running here",
                link.url(),
                describe(&cfg.policy),
                policy_here.vm_names().len()
            );
        }
        println!(
            "{}: valid for running VMs {running:?} on {:.2} cores, {:.1} GiB",
            args.config.display(),
            cap.cpu_cores,
            cap.memory_bytes / 1073741824.0
        );
        return Ok(());
    }
    if args.once {
        agent.step(0.0);
        std::thread::sleep(std::time::Duration::from_secs_f64(cfg.interval_seconds));
        let r = agent.step(cfg.interval_seconds);
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(crate::serve_cmd::wait_for_signal());
        }
        flag.store(true, Ordering::Relaxed);
    });
    eprintln!(
        "keel agent: managing {} VM(s) on {:.2} cores, {:.1} GiB, every {} s (Ctrl-C to stop and undo)",
        running.len(),
        cap.cpu_cores,
        cap.memory_bytes / 1073741824.0,
        cfg.interval_seconds
    );
    let pending: Arc<Mutex<Option<AllocConfig>>> = Arc::default();
    if let Some(link) = link {
        let (pending, stop) = (pending.clone(), stop.clone());
        let last = cfg.policy.clone();
        std::thread::spawn(move || follow(link, last, &pending, &stop));
    }
    let end = agent.run(&stop, |agent, r| {
        if let Some(p) = pending.lock().ok().and_then(|mut p| p.take()) {
            agent.set_policy(p);
        }
        let written = r.vms.iter().any(|v| v.files_written > 0);
        if written || !r.released.is_empty() {
            eprintln!("keel agent: {}", summary(r));
        }
        for n in &r.released {
            eprintln!("keel agent: released {n}");
        }
        for (item, why) in &r.refused {
            eprintln!("keel agent: admission control refused {item}: {why}");
        }
        for e in &r.errors {
            eprintln!("keel agent: error: {e}");
        }
    });
    for e in &end.errors {
        eprintln!("keel agent: error while undoing: {e}");
    }
    eprintln!("keel agent: stopped; settings undone on {:?}", end.released);
    Ok(())
}

/// The policy to start with: the daemon's; else (daemon unreachable, not
/// `--check`) the cached one; else none until the daemon answers.
fn first_policy(link: &mut PolicyLink, check: bool) -> Result<AllocConfig> {
    match link.fetch() {
        Ok(p) => {
            if !check {
                eprintln!("keel agent: policy from {}: {}", link.url(), describe(&p));
            }
            Ok(p)
        }
        Err(e) if check => Err(e),
        Err(e) => {
            let cached = link.cached();
            eprintln!(
                "keel agent: warning: {e:#}; {} until the daemon answers (retrying every {:?})",
                if cached.is_some() {
                    "enforcing the cached policy"
                } else {
                    "no cached policy: default shares only"
                },
                link.refresh()
            );
            Ok(cached.unwrap_or_default())
        }
    }
}

/// Re-reads the daemon's policy every refresh until `stop`, handing each
/// change to the control loop through `pending`. Failures are reported
/// once until the daemon answers again; the policy in force stays.
fn follow(
    mut link: PolicyLink,
    mut last: AllocConfig,
    pending: &Mutex<Option<AllocConfig>>,
    stop: &AtomicBool,
) {
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let next = std::time::Instant::now() + link.refresh();
        while std::time::Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match link.fetch() {
            Ok(p) => {
                if failing {
                    eprintln!("keel agent: the daemon at {} answers again", link.url());
                    failing = false;
                }
                if p != last {
                    eprintln!("keel agent: the daemon's policy changed: {}", describe(&p));
                    last = p.clone();
                    if let Ok(mut slot) = pending.lock() {
                        *slot = Some(p);
                    }
                }
            }
            Err(e) if !failing => {
                eprintln!("keel agent: warning: {e:#}; keeping the policy in force");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
