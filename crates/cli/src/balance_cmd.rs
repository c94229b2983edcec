//! `keel sim --mode balance`: replay a trace on identical hosts under one or
//! more balancers and print what each achieved.

use crate::output::OutputFormat;
use anyhow::{bail, Context, Result};
use keel_control::replay::{run_balance, run_oracle, BalanceReport, BalanceSimConfig};
use keel_model::WorkloadTrace;
use keel_policy::balance::{Balancer, KeelBalancer, NoBalancer};
use std::io::Write;
use std::sync::Arc;

/// Every balancer `--balancer all` compares, in table order (`oracle` is
/// Keel's planner fed the actual demand of the next hour: a bound, not a
/// balancer one can run).
pub const BALANCERS: [&str; 6] = ["none", "crs", "proxlb", "watcher", "keel", "oracle"];

/// Builds the balancer called `name`.
pub fn make_balancer(name: &str) -> Result<Box<dyn Balancer + Send>> {
    use keel_policy::balance::baselines;
    Ok(match name {
        "keel" | "oracle" => Box::new(KeelBalancer::default()),
        "none" => Box::new(NoBalancer),
        "crs" => Box::new(baselines::Crs::default()),
        "proxlb" => Box::new(baselines::ProxLb::default()),
        "watcher" => Box::new(baselines::Watcher::default()),
        other => {
            bail!("unknown balancer {other:?}: expected keel, crs, proxlb, watcher, none, oracle or all")
        }
    })
}

/// Parses `--balancer` (a name, a comma-separated list, or `all`).
pub fn parse_balancers(spec: &str) -> Result<Vec<String>> {
    let spec = spec.trim().to_ascii_lowercase();
    let names: Vec<String> = if spec == "all" {
        BALANCERS.iter().map(|s| s.to_string()).collect()
    } else {
        spec.split(',').map(|s| s.trim().to_string()).collect()
    };
    for name in &names {
        make_balancer(name)?;
    }
    Ok(names)
}

/// Runs every balancer on `trace` (in parallel, one per core) and prints the reports.
pub fn run(
    trace: &Arc<WorkloadTrace>,
    names: &[String],
    config: &BalanceSimConfig,
    format: OutputFormat,
    jobs: usize,
) -> Result<()> {
    let reports = run_many(trace, names, config, jobs)?;
    print_reports(&reports, format)
}

/// Runs every balancer of `names` on `trace`, `jobs` at once; reports in `names` order.
pub fn run_many<S: AsRef<str> + Sync>(
    trace: &Arc<WorkloadTrace>,
    names: &[S],
    config: &BalanceSimConfig,
    jobs: usize,
) -> Result<Vec<BalanceReport>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<Result<BalanceReport>>>> =
        std::sync::Mutex::new(names.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, names.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let result = run_one(trace, config, name.as_ref());
                results.lock().expect("no worker panics")[i] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panics")
        .into_iter()
        .map(|r| r.expect("every balancer ran"))
        .collect()
}

/// Runs the balancer called `name` (`oracle` with its clairvoyant demand).
pub fn run_one(
    trace: &Arc<WorkloadTrace>,
    config: &BalanceSimConfig,
    name: &str,
) -> Result<BalanceReport> {
    let report = if name == "oracle" {
        run_oracle(trace, config)
    } else {
        run_balance(trace, config, make_balancer(name)?)
    };
    report.with_context(|| format!("balancing with {name}"))
}

fn print_reports(reports: &[BalanceReport], format: OutputFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            for r in reports {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        OutputFormat::Csv => {
            writeln!(out, "balancer,vms,hosts,rounds,migrations,migrated_gib,mean_imbalance,overload_host_seconds,unmet_demand,unmet_lower_bound,unmet_cpu_core_hours,memory_shortfall_gib_hours,vm_contention_hours,hot_host_seconds,refused_plans,plan_ms_mean,plan_ms_max,wall_seconds")?;
            for r in reports {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.balancer,
                    r.vms,
                    r.hosts,
                    r.rounds,
                    r.migrations,
                    r.migrated_gib,
                    r.mean_imbalance,
                    r.overload_host_seconds,
                    r.unmet_demand,
                    r.unmet_lower_bound,
                    r.unmet_cpu_core_hours,
                    r.memory_shortfall_gib_hours,
                    r.vm_contention_hours,
                    r.hot_host_seconds,
                    r.refused_plans,
                    r.plan_ms_mean,
                    r.plan_ms_max,
                    r.wall_seconds
                )?;
            }
        }
        OutputFormat::Table => {
            if let Some(r) = reports.first() {
                let c = r.host_capacity;
                writeln!(
                    out,
                    "{} VMs on {} hosts of {} cores / {:.0} GiB, {} rounds over {:.1} h",
                    r.vms,
                    r.hosts,
                    c.cpu_cores,
                    c.memory_bytes / (1u64 << 30) as f64,
                    r.rounds,
                    r.simulated_seconds / 3600.0
                )?;
            }
            writeln!(
                out,
                "{:<8} {:>10} {:>12} {:>10} {:>16} {:>10} {:>9} {:>12} {:>14} {:>12} {:>14} {:>9}",
                "balancer",
                "migrations",
                "migrated GiB",
                "imbalance",
                "overload host-h",
                "unmet %",
                "bound %",
                "unmet core-h",
                "mem short GiB-h",
                "contended VM-h",
                "hot host-h",
                "plan ms"
            )?;
            for r in reports {
                writeln!(
                    out,
                    "{:<8} {:>10} {:>12.1} {:>10.4} {:>16.2} {:>10.3} {:>9.3} {:>12.2} {:>14.2} {:>12.2} {:>14.2} {:>9.2}",
                    r.balancer,
                    r.migrations,
                    r.migrated_gib,
                    r.mean_imbalance,
                    r.overload_host_seconds / 3600.0,
                    r.unmet_demand * 100.0,
                    r.unmet_lower_bound * 100.0,
                    r.unmet_cpu_core_hours,
                    r.memory_shortfall_gib_hours,
                    r.vm_contention_hours,
                    r.hot_host_seconds / 3600.0,
                    r.plan_ms_mean
                )?;
            }
        }
    }
    Ok(())
}
