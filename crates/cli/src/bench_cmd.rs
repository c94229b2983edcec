//! `keel bench balance`: every balancer (the oracle included) on every
//! setup of a suite, one table, and balance-suite.py's verdict.

use crate::balance_cmd::{run_many, BALANCERS};
use crate::bench_suite::{load_suite, trace_path, verdict, SetupResult, Suite, SuiteEntry};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use keel_control::replay::{BalanceReport, BalanceSimConfig};
use keel_model::WorkloadTrace;
use keel_trace::{Alignment, LoadOptions, TraceFormat};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `keel bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Every balancer (none, crs, proxlb, watcher, keel, oracle) on every
    /// setup of a suite: unmet demand, its lower bound, migrations, GiB,
    /// contention, planning time; then balance-suite.py's verdict.
    Balance(BalanceBenchArgs),
}

/// Output of `keel bench balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchFormat {
    /// One aligned table, sums per balancer, the verdict last.
    Table,
    /// One JSON object per setup and balancer per line.
    Json,
}

#[derive(Debug, Args)]
struct BalanceBenchArgs {
    /// Suite file: a JSON list of {"name", "path", "extra": [flags],
    /// "setups": [[hosts, vcpus_per_core], ...]}, paths relative to the
    /// file ("bundled": the bundled PlanetLab day). Default: the project's
    /// suite (the eight setups of balance-suite.py) on ../shared/traces or
    /// $KEEL_SHARED_DIR.
    #[arg(long, value_name = "FILE")]
    suite: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BenchFormat::Table)]
    format: BenchFormat,
    /// Write the output to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Balancers run at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
}

/// One balancer's report in one setup.
#[derive(Debug, Serialize)]
struct Row {
    setup: String,
    trace: String,
    vcpus_per_core: f64,
    #[serde(flatten)]
    report: BalanceReport,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let BenchWhat::Balance(args) = args.what;
    let suite = load_suite(args.suite.as_deref())?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for entry in &suite.entries {
        let Some(trace) = load_entry(&suite, entry)? else {
            continue;
        };
        let trace = Arc::new(trace);
        for &(hosts, vcpus_per_core) in &entry.setups {
            let setup = format!("{} hosts={hosts} vcpus/core={vcpus_per_core}", entry.name);
            eprintln!("keel bench balance: {setup}");
            let mut config = BalanceSimConfig::new(hosts);
            config.setup.cpu_overcommit = vcpus_per_core;
            config.interval_seconds = interval_of(entry)?;
            let reports = run_many(&trace, &BALANCERS, &config, jobs)
                .with_context(|| format!("setup {setup}"))?;
            results.push(SetupResult {
                setup: setup.clone(),
                by_balancer: reports
                    .iter()
                    .map(|r| (r.balancer.clone(), (r.unmet_demand, r.migrated_gib)))
                    .collect(),
            });
            rows.extend(reports.into_iter().map(|report| Row {
                setup: setup.clone(),
                trace: entry.path.clone(),
                vcpus_per_core,
                report,
            }));
        }
    }
    if results.is_empty() {
        bail!("no setup of the suite ran (every trace was missing: see SKIPPED above)");
    }
    let (verdict_lines, _pass) = verdict(&results)?;
    let text = match args.format {
        BenchFormat::Json => rows
            .iter()
            .map(|r| serde_json::to_string(r).map(|s| s + "\n"))
            .collect::<Result<String, _>>()?,
        BenchFormat::Table => table(&rows, &verdict_lines),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}

/// The trace of `entry`, or `None` (said loudly) when its file is missing.
fn load_entry(suite: &Suite, entry: &SuiteEntry) -> Result<Option<WorkloadTrace>> {
    let Some(path) = trace_path(suite, entry) else {
        return Ok(Some(keel_trace::bundled_planetlab_day()));
    };
    if !path.exists() {
        eprintln!(
            "SKIPPED {}: trace {} not found (the default suite reads ../shared/traces or $KEEL_SHARED_DIR/traces)",
            entry.name,
            path.display()
        );
        return Ok(None);
    }
    let mut options = LoadOptions::default();
    let mut flags = entry.extra.iter();
    while let Some(flag) = flags.next() {
        let value = flags
            .next()
            .with_context(|| format!("suite entry {:?}: {flag} needs a value", entry.name))?;
        match flag.as_str() {
            "--bitbrains-window" => {
                options.alignment = match value.as_str() {
                    "full" => Alignment::FullSpan,
                    "common" => Alignment::CommonWindow,
                    other => bail!(
                        "suite entry {:?}: --bitbrains-window {other:?}: expected full or common",
                        entry.name
                    ),
                }
            }
            "--trace-format" => {
                options.format = Some(value.parse::<TraceFormat>().with_context(|| {
                    format!("suite entry {:?}: --trace-format {value:?}", entry.name)
                })?)
            }
            "--interval" => {}
            other => bail!(
                "suite entry {:?}: unknown flag {other:?} (expected --bitbrains-window, --trace-format or --interval)",
                entry.name
            ),
        }
    }
    keel_trace::load(&path, &options)
        .map(Some)
        .with_context(|| format!("suite entry {:?}: loading {}", entry.name, path.display()))
}

/// The entry's `--interval`, if given.
fn interval_of(entry: &SuiteEntry) -> Result<Option<f64>> {
    let Some(i) = entry.extra.iter().position(|f| f == "--interval") else {
        return Ok(None);
    };
    let value = entry.extra.get(i + 1).map(String::as_str).unwrap_or("");
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(Some(seconds)),
        _ => bail!(
            "suite entry {:?}: --interval {value:?} is not a positive number of seconds",
            entry.name
        ),
    }
}

fn table(rows: &[Row], verdict_lines: &[String]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<38} {:<8} {:>8} {:>8} {:>10} {:>10} {:>12} {:>12} {:>12} {:>8} {:>8}",
        "setup",
        "balancer",
        "unmet %",
        "bound %",
        "migrations",
        "GiB",
        "unmet core-h",
        "mem GiB-h",
        "contended VM-h",
        "plan ms",
        "max ms"
    );
    for r in rows {
        let p = &r.report;
        let _ = writeln!(
            out,
            "{:<38} {:<8} {:>8.3} {:>8.3} {:>10} {:>10.0} {:>12.1} {:>12.1} {:>12.1} {:>8.2} {:>8.1}",
            r.setup,
            p.balancer,
            p.unmet_demand * 100.0,
            p.unmet_lower_bound * 100.0,
            p.migrations,
            p.migrated_gib,
            p.unmet_cpu_core_hours,
            p.memory_shortfall_gib_hours,
            p.vm_contention_hours,
            p.plan_ms_mean,
            p.plan_ms_max
        );
    }
    let mut sums: Vec<(&str, f64, f64, f64)> = Vec::new();
    for name in BALANCERS {
        let mine = rows.iter().filter(|r| r.report.balancer == name);
        let (unmet, gib, bound) = mine.fold((0.0, 0.0, 0.0), |a, r| {
            (
                a.0 + r.report.unmet_demand,
                a.1 + r.report.migrated_gib,
                a.2 + r.report.unmet_lower_bound,
            )
        });
        sums.push((name, unmet, gib, bound));
    }
    for (name, unmet, gib, _) in &sums {
        let _ = writeln!(
            out,
            "sum {name:<8} unmet {unmet:.5}  migrated GiB {gib:9.0}"
        );
    }
    let bound = sums.first().map_or(0.0, |s| s.3);
    let get = |n: &str| sums.iter().find(|s| s.0 == n).map_or(0.0, |s| s.1);
    let _ = writeln!(
        out,
        "sum lower bound unmet {bound:.5}; keel/oracle summed unmet {:.2} (goal <= 1.5)",
        get("keel") / get("oracle").max(1e-12)
    );
    for line in verdict_lines {
        let _ = writeln!(out, "{line}");
    }
    out
}
