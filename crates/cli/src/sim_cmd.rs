//! `keel sim`: load a trace, run one or more policies, print the figures.

use crate::output::{self, OutputFormat};
use crate::sim_days;
use anyhow::{Context, Result};
use clap::Args;
use keel_model::WorkloadTrace;
use keel_policy::{paper_policies, policy_grid, ConsolidationPolicy};
use keel_sim::{SimConfig, StepRecord};
use keel_trace::{LoadOptions, TraceFormat};
use std::path::{Path, PathBuf};

/// Arguments of `keel sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Trace to replay: a PlanetLab day folder, a Bitbrains folder or .tar.xz,
    /// or a wide CSV (optionally gzip'd). Default: the bundled PlanetLab day
    /// 2011-03-03. Repeat it to run several days at once (per-day rows and a
    /// median row per policy); a folder of `YYYYMMDD` day folders stands for
    /// those days.
    #[arg(long, value_name = "PATH")]
    trace: Vec<PathBuf>,
    /// Trace format (detected when omitted).
    #[arg(long, value_name = "planetlab|bitbrains|wide-csv")]
    trace_format: Option<TraceFormat>,
    /// PlanetLab VM order: `sorted` (file names, lexicographic), a listing
    /// file with one file name per line, or a folder of listings named
    /// `<day>.txt` (one per day when several run).
    #[arg(long, value_name = "sorted|FILE", default_value = "sorted")]
    order: String,
    /// Policy: `npa`, `dvfs`, DETECTOR-SELECTOR-PARAMETER (detectors thr, iqr,
    /// mad, lr, lrr; selectors mmt, mu, mc, rs; e.g. `lr-mmt-1.2`), a
    /// comma-separated list of those, `all` for the paper's comparison table
    /// (Table V: NPA, DVFS and the MMT policies), or `grid` for every
    /// detector crossed with every VM selection.
    #[arg(long, default_value = "lr-mmt-1.2")]
    policy: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// What to simulate: `consolidate` (the PlanetLab benchmark: energy,
    /// SLA) or `balance` (load balancing on identical hosts).
    #[arg(long, value_enum, default_value_t = Mode::Consolidate)]
    mode: Mode,
    /// Bitbrains traces: `common` keeps the window every VM covers, `full`
    /// the whole span (idle before a VM starts and after it stops).
    #[arg(long, value_enum, default_value_t = Window::Common)]
    bitbrains_window: Window,
    /// Number of hosts. consolidate: 800 (half HP ProLiant G4, half G5);
    /// balance: one host per 20 VMs (at least 2), sized as docs/balancer.md says.
    #[arg(long)]
    hosts: Option<usize>,
    /// Balance mode: `keel`, `crs`, `proxlb`, `watcher`, `none`, `oracle` (Keel fed
    /// the actual demand of the next hour), a
    /// comma-separated list, or `all`.
    #[arg(long, default_value = "keel")]
    balancer: String,
    /// Balance mode: seconds between balancing rounds (default: the trace's interval).
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// Balance mode: vCPUs per physical core the hosts are sized for.
    #[arg(long, value_name = "RATIO", default_value_t = 2.0)]
    vcpus_per_core: f64,
    /// Balance mode: bandwidth of one migration, bytes per second.
    #[arg(long, value_name = "BYTES_PER_SECOND", default_value_t = 1.25e9)]
    migration_bandwidth: f64,
    /// Seed for random VM selection (`rs`).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Parallel runs (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Write each scheduling step's state as CSV to FILE (single policy only).
    #[arg(long, value_name = "FILE")]
    step_trace: Option<PathBuf>,
}

/// Which part of a Bitbrains trace to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Window {
    /// Only the time every VM covers.
    Common,
    /// Everything, VMs idle outside their own span.
    Full,
}

/// What `keel sim` simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Dynamic consolidation (the PlanetLab benchmark).
    Consolidate,
    /// Multi-resource load balancing.
    Balance,
}

pub fn run(args: SimArgs) -> Result<()> {
    if args.hosts == Some(0) {
        anyhow::bail!("--hosts must be at least 1, got 0");
    }
    if args.mode == Mode::Balance {
        return run_balance_mode(&args);
    }
    let hosts = args.hosts.unwrap_or(keel_sim::scenario::PLANETLAB_HOSTS);
    let policies = parse_policies(&args.policy)?;
    if args.step_trace.is_some() && policies.len() != 1 {
        anyhow::bail!(
            "--step-trace needs exactly one policy, got {}",
            policies.len()
        );
    }
    let configs: Vec<SimConfig> = policies
        .into_iter()
        .map(|policy| SimConfig {
            hosts,
            seed: args.seed,
            ..SimConfig::planetlab(policy)
        })
        .collect();
    let days = sim_days::expand_days(&args.trace)?;
    if days.len() > 1 {
        if args.step_trace.is_some() {
            anyhow::bail!("--step-trace needs exactly one trace, got {}", days.len());
        }
        return run_days(&args, &days, &configs);
    }
    let trace = load_trace(&args, days.first().map(PathBuf::as_path), 1)?;
    let mut steps: Vec<StepRecord> = Vec::new();
    let reports = if let Some(path) = &args.step_trace {
        let report = keel_sim::run_observed(&trace, &configs[0], &mut steps)
            .with_context(|| format!("simulating {}", configs[0].policy))?;
        output::write_step_trace(path, &steps)?;
        vec![report]
    } else {
        sim_days::run_pool(
            configs.len(),
            args.jobs,
            |i| configs[i].policy.to_string(),
            |i| {
                keel_sim::run(&trace, &configs[i])
                    .with_context(|| format!("simulating {}", configs[i].policy))
            },
        )?
    };
    let peak = output::peak_memory_bytes();
    output::print_reports(&reports, args.format, peak)
}

/// Every policy on every day, all (day, policy) pairs on the worker pool;
/// prints per-day rows, then one median row per policy.
fn run_days(args: &SimArgs, days: &[PathBuf], configs: &[SimConfig]) -> Result<()> {
    let slots: Vec<sim_days::DaySlot> = days
        .iter()
        .map(|_| sim_days::DaySlot::new(configs.len()))
        .collect();
    let job = |i: usize| (i / configs.len(), i % configs.len());
    let reports = sim_days::run_pool(
        days.len() * configs.len(),
        args.jobs,
        |i| {
            let (day, config) = job(i);
            format!(
                "{} {}",
                sim_days::day_name(&days[day]),
                configs[config].policy
            )
        },
        |i| {
            let (day, config) = job(i);
            let trace = slots[day].get(|| load_trace(args, Some(&days[day]), days.len()))?;
            let report = keel_sim::run(&trace, &configs[config]).with_context(|| {
                format!(
                    "simulating {} on {}",
                    configs[config].policy,
                    days[day].display()
                )
            });
            drop(trace);
            slots[day].done();
            report
        },
    )?;
    let names: Vec<String> = (0..reports.len())
        .map(|i| sim_days::day_name(&days[job(i).0]))
        .collect();
    let medians = sim_days::median_reports(&reports.iter().collect::<Vec<_>>());
    let mut rows: Vec<(&str, &keel_sim::RunReport)> = names
        .iter()
        .map(String::as_str)
        .zip(reports.iter())
        .collect();
    rows.extend(medians.iter().map(|r| ("median", r)));
    let peak = output::peak_memory_bytes();
    output::print_labelled_reports(&rows, args.format, peak)
}

fn run_balance_mode(args: &SimArgs) -> Result<()> {
    let names = crate::balance_cmd::parse_balancers(&args.balancer)?;
    if !(args.migration_bandwidth.is_finite() && args.migration_bandwidth > 0.0) {
        anyhow::bail!(
            "--migration-bandwidth must be a positive number of bytes per second, got {}",
            args.migration_bandwidth
        );
    }
    if let Some(interval) = args.interval {
        if !(interval.is_finite() && interval > 0.0) {
            anyhow::bail!("--interval must be a positive number of seconds, got {interval}");
        }
    }
    let trace = match args.trace.as_slice() {
        [] => load_trace(args, None, 1)?,
        [one] => load_trace(args, Some(one), 1)?,
        several => anyhow::bail!(
            "--mode balance replays one trace, got {} --trace options",
            several.len()
        ),
    };
    let hosts = args
        .hosts
        .unwrap_or_else(|| trace.vms.len().div_ceil(20).max(2));
    let mut config = keel_control::replay::BalanceSimConfig::new(hosts);
    config.interval_seconds = args.interval;
    if !(args.vcpus_per_core.is_finite() && args.vcpus_per_core > 0.0) {
        anyhow::bail!(
            "--vcpus-per-core must be a positive number, got {}",
            args.vcpus_per_core
        );
    }
    config.setup.cpu_overcommit = args.vcpus_per_core;
    config.migration_bandwidth_bytes_per_second = args.migration_bandwidth;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    crate::balance_cmd::run(
        &std::sync::Arc::new(trace),
        &names,
        &config,
        args.format,
        jobs,
    )
}

fn parse_policies(spec: &str) -> Result<Vec<ConsolidationPolicy>> {
    match spec.trim().to_ascii_lowercase().as_str() {
        "all" => return Ok(paper_policies()),
        "grid" => return Ok(policy_grid()),
        _ => {}
    }
    spec.split(',')
        .map(|name| {
            name.parse::<ConsolidationPolicy>()
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// Loads `path` (the bundled day when `None`) as the options say.
/// `days` is how many traces this command runs.
fn load_trace(args: &SimArgs, path: Option<&Path>, days: usize) -> Result<WorkloadTrace> {
    let Some(path) = path else {
        return Ok(keel_trace::bundled_planetlab_day());
    };
    let order = sim_days::order_for_day(&args.order, path, days)?;
    let options = LoadOptions {
        format: args.trace_format,
        order,
        alignment: match args.bitbrains_window {
            Window::Common => keel_trace::Alignment::CommonWindow,
            Window::Full => keel_trace::Alignment::FullSpan,
        },
        ..LoadOptions::default()
    };
    Ok(keel_trace::load(path, &options)?)
}
