//! `keel plan`: read a cluster state and its rules, plan one balancing
//! round, print the moves, the imbalance before and after, the predicted host
//! loads, the mandatory moves left unresolved and the planning time.
//!
//! Exit codes: 0 a plan was made; 1 bad input (the message names the file,
//! line and column, or the item at fault); 2 bad usage; 3 a plan was made
//! and printed, but some mandatory moves (evacuations, broken hard rules)
//! cannot be made without breaking a rule.

use crate::toml_input::{one_line, read_toml};
use anyhow::{anyhow, Context, Result};
use clap::Args;
use keel_model::{Cluster, ClusterSnapshot, CompiledRules, HostId, Resources, Rules};
use keel_policy::balance::{
    BalanceInput, Balancer, HostLoads, Imbalance, KeelBalancer, MoveReason, NoBalancer, Plan,
    PlannerConfig,
};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Exit code when the plan leaves mandatory moves unresolved.
pub const EXIT_UNRESOLVED: u8 = 3;

/// Clusters with more hosts than this print only the hottest hosts.
const ALL_HOSTS_UP_TO: usize = 20;
/// How many hosts a large cluster's table shows.
const HOTTEST_SHOWN: usize = 10;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Which algorithm plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BalancerName {
    /// Keel's cost-benefit planner.
    Keel,
    /// Proxmox VE's CRS, dynamic mode (baseline, default settings).
    Crs,
    /// ProxLB (baseline, default settings).
    Proxlb,
    /// OpenStack Watcher's workload_stabilization (baseline, default settings).
    Watcher,
    /// Moves nothing: shows the current state.
    None,
}

/// How `keel plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// Aligned text tables (loads in percent).
    Table,
    /// One JSON object (loads as fractions, VMs and hosts by name).
    Json,
}

/// Arguments of `keel plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Cluster state: a JSON ClusterSnapshot (as `keel gen cluster` writes).
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Placement rules (TOML; see examples/rules.toml). Default: none.
    #[arg(long, value_name = "FILE.toml")]
    rules: Option<PathBuf>,
    /// Migration threshold level: 1 = mandatory moves only (maintenance,
    /// broken hard rules), 5 = most aggressive balancing.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    level: u8,
    /// Keel's exact mode: the fewest migrations that bring every host to at
    /// most --target-max-load, solved as a MIP (small clusters).
    #[arg(long)]
    exact: bool,
    /// Exact mode only: highest allowed host load (fraction).
    #[arg(long, default_value_t = 0.85, requires = "exact")]
    target_max_load: f64,
    /// Exact mode only: solver time limit, seconds.
    #[arg(long, default_value_t = 30.0, requires = "exact")]
    time_limit: f64,
    /// Balancing algorithm.
    #[arg(long, value_enum, default_value_t = BalancerName::Keel)]
    balancer: BalancerName,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    format: PlanFormat,
    /// Print what each move's decision used (demand, reservation, limit,
    /// shares, migration-cost inputs, source and target loads before and
    /// after), as `keel why` does for moves Keel made.
    #[arg(long)]
    explain: bool,
}

/// One move as printed.
#[derive(Debug, Serialize)]
struct MoveOut<'a> {
    wave: u32,
    vm: &'a str,
    from: &'a str,
    to: &'a str,
    reason: &'a MoveReason,
    migration_seconds: f64,
    migrated_bytes: f64,
    imbalance_reduction: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<keel_control::MoveInputs>,
}

/// One host's predicted load (fractions of capacity).
#[derive(Debug, Serialize)]
struct HostLoadOut<'a> {
    host: &'a str,
    cpu: f64,
    memory: f64,
    disk: f64,
    network: f64,
}

/// A mandatory move that cannot be made.
#[derive(Debug, Serialize)]
struct UnresolvedOut<'a> {
    vm: &'a str,
    reason: &'a str,
}

/// Everything `keel plan` prints, in both formats.
#[derive(Debug, Serialize)]
struct Report<'a> {
    balancer: &'static str,
    level: Option<u8>,
    exact: bool,
    /// Exact mode: whether the solver proved its placement optimal.
    exact_optimal: Option<bool>,
    hosts: usize,
    vms: usize,
    moves: Vec<MoveOut<'a>>,
    imbalance_before: &'a Imbalance,
    imbalance_after: &'a Imbalance,
    /// Every host, in state order.
    predicted_loads: Vec<HostLoadOut<'a>>,
    unresolved: Vec<UnresolvedOut<'a>>,
    plan_ms: f64,
}

/// Runs `keel plan`; `Ok` carries 0, or [`EXIT_UNRESOLVED`] when mandatory
/// moves are left unresolved.
pub fn run(args: PlanArgs) -> Result<ExitCode> {
    if args.exact && args.balancer != BalancerName::Keel {
        anyhow::bail!(
            "--exact is Keel's exact mode and cannot be combined with --balancer {}",
            balancer_label(args.balancer)
        );
    }
    let cluster = load_state(&args.state)?;
    let rules = match &args.rules {
        Some(path) => load_rules(path, &cluster)?,
        None => CompiledRules::none(&cluster),
    };
    let input = BalanceInput {
        cluster: &cluster,
        rules: &rules,
        in_flight: &[],
    };
    let (plan, exact_optimal, plan_ms) = make_plan(&args, &input)?;
    let loads = predicted_loads(&cluster, &plan);
    let decided_by = match report_level(&args) {
        Some(level) => format!("{}, level {level}", balancer_label(args.balancer)),
        None => balancer_label(args.balancer).to_string(),
    };
    let mut inputs = if args.explain {
        let given = || "given in the state file".to_string();
        keel_control::explain(
            &cluster,
            &plan.moves,
            |_| 0,
            (given(), given()),
            &decided_by,
        )
    } else {
        Vec::new()
    }
    .into_iter();
    let host = |h: HostId| cluster.hosts[h.index()].name.as_str();
    let vm = |v: keel_model::VmId| cluster.vms[v.index()].name.as_str();
    let report = Report {
        balancer: balancer_label(args.balancer),
        level: report_level(&args),
        exact: args.exact,
        exact_optimal,
        hosts: cluster.hosts.len(),
        vms: cluster.vms.len(),
        moves: plan
            .moves
            .iter()
            .map(|m| MoveOut {
                wave: m.wave,
                vm: vm(m.vm),
                from: host(m.from),
                to: host(m.to),
                reason: &m.reason,
                migration_seconds: m.cost_seconds,
                migrated_bytes: m.migrated_bytes,
                imbalance_reduction: m.imbalance_reduction,
                inputs: inputs.next(),
            })
            .collect(),
        imbalance_before: &plan.imbalance_before,
        imbalance_after: &plan.imbalance_after,
        predicted_loads: loads
            .iter()
            .enumerate()
            .map(|(h, l)| HostLoadOut {
                host: host(HostId(h as u32)),
                cpu: l.cpu_cores,
                memory: l.memory_bytes,
                disk: l.disk_bytes_per_second,
                network: l.network_bytes_per_second,
            })
            .collect(),
        unresolved: plan
            .unresolved
            .iter()
            .map(|u| UnresolvedOut {
                vm: vm(u.vm),
                reason: &u.reason,
            })
            .collect(),
        plan_ms,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        PlanFormat::Json => writeln!(out, "{}", serde_json::to_string(&report)?)?,
        PlanFormat::Table => write_table(&mut out, &report)?,
    }
    out.flush()?;
    if report.unresolved.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "keel: warning: {} mandatory move(s) unresolved (exit code {EXIT_UNRESOLVED})",
            report.unresolved.len()
        );
        Ok(ExitCode::from(EXIT_UNRESOLVED))
    }
}

fn report_level(args: &PlanArgs) -> Option<u8> {
    (args.balancer == BalancerName::Keel && !args.exact).then_some(args.level)
}

fn balancer_label(b: BalancerName) -> &'static str {
    match b {
        BalancerName::Keel => "keel",
        BalancerName::Crs => "crs",
        BalancerName::Proxlb => "proxlb",
        BalancerName::Watcher => "watcher",
        BalancerName::None => "none",
    }
}

/// Runs the chosen planner, timing the planning call alone. Returns the
/// plan, the exact mode's optimality flag and the time in milliseconds.
fn make_plan(args: &PlanArgs, input: &BalanceInput<'_>) -> Result<(Plan, Option<bool>, f64)> {
    let now = input.cluster.time_seconds;
    if args.exact {
        use keel_policy::balance::exact::{solve_exact, ExactConfig, Objective};
        let config = ExactConfig {
            target_max_load: args.target_max_load,
            objective: Objective::Migrations,
            time_limit_seconds: args.time_limit,
        };
        let started = Instant::now();
        let outcome = solve_exact(input, &config);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let outcome = outcome?;
        return Ok((outcome.plan, Some(outcome.optimal), ms));
    }
    use keel_policy::balance::baselines::{
        Crs, CrsConfig, ProxLb, ProxLbConfig, Watcher, WatcherConfig,
    };
    let mut balancer: Box<dyn Balancer> = match args.balancer {
        BalancerName::Keel => Box::new(KeelBalancer {
            config: PlannerConfig {
                level: args.level,
                ..Default::default()
            },
        }),
        BalancerName::None => Box::new(NoBalancer),
        BalancerName::Crs => Box::new(Crs::new(CrsConfig::default())),
        BalancerName::Proxlb => Box::new(ProxLb::new(ProxLbConfig::default())),
        BalancerName::Watcher => Box::new(Watcher::new(WatcherConfig::default())),
    };
    let started = Instant::now();
    let plan = balancer.plan(input, now);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    Ok((plan.context("planning")?, None, ms))
}

/// Reads and validates the state file; errors name the file and the position
/// or item at fault.
fn load_state(path: &Path) -> Result<Cluster> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading state file {}", path.display()))?;
    let snapshot: ClusterSnapshot = serde_json::from_str(&text).map_err(|e| {
        let message = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&position).unwrap_or(&message);
        anyhow!(
            "{}:{}:{}: invalid cluster state: {}",
            path.display(),
            e.line(),
            e.column(),
            one_line(message)
        )
    })?;
    Cluster::new(snapshot).map_err(|e| anyhow!("state {}: {e}", path.display()))
}

/// Reads and compiles the rules file against `cluster`.
fn load_rules(path: &Path, cluster: &Cluster) -> Result<CompiledRules> {
    let rules: Rules = read_toml(path, "rules")?;
    rules
        .compile(cluster)
        .map_err(|e| anyhow!("rules {}: {e}", path.display()))
}

/// The plan's predicted loads, or (for balancers that leave them out) the
/// current loads with the plan's moves applied.
fn predicted_loads(cluster: &Cluster, plan: &Plan) -> Vec<Resources> {
    if plan.predicted_loads.len() == cluster.hosts.len() {
        return plan.predicted_loads.clone();
    }
    let mut loads = HostLoads::new(cluster);
    for m in &plan.moves {
        loads.apply_move(m.vm, cluster.vms[m.vm.index()].size, m.to);
    }
    (0..loads.hosts())
        .map(|h| loads.load(HostId(h as u32)))
        .collect()
}

/// A load fraction as a percentage with one decimal, without "-0.0".
fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    format!("{:.1}", if p.abs() < 0.05 { 0.0 } else { p })
}

fn reason_text(reason: &MoveReason) -> String {
    match reason {
        MoveReason::Evacuation => "evacuation".into(),
        MoveReason::HardRule { rule } => format!("hard rule {rule}"),
        MoveReason::Overload => "overload".into(),
        MoveReason::Balance => "balance".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Writes `rows` under `header`, columns padded; the first `left` columns
/// are left-aligned, the rest right-aligned.
fn write_rows(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
    left: usize,
) -> Result<()> {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c < left {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    format!("{s:>w$}", w = widths[c])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn write_table(out: &mut impl Write, r: &Report<'_>) -> Result<()> {
    let level = r.level.map_or(String::new(), |l| format!(", level {l}"));
    let mode = if r.exact { " (exact mode)" } else { "" };
    writeln!(
        out,
        "keel plan: {} hosts, {} VMs; balancer {}{level}{mode}",
        r.hosts, r.vms, r.balancer
    )?;
    if let Some(optimal) = r.exact_optimal {
        let proof = if optimal {
            "optimal"
        } else {
            "time limit reached, feasible but not proven optimal"
        };
        writeln!(out, "solver: {proof}")?;
    }
    writeln!(out)?;
    if r.moves.is_empty() {
        writeln!(out, "moves: none")?;
    } else {
        let waves = r.moves.iter().map(|m| m.wave).max().unwrap_or(0) + 1;
        writeln!(out, "moves: {} in {waves} wave(s)", r.moves.len())?;
        let rows: Vec<Vec<String>> = r
            .moves
            .iter()
            .map(|m| {
                vec![
                    m.wave.to_string(),
                    m.vm.to_string(),
                    m.from.to_string(),
                    m.to.to_string(),
                    reason_text(m.reason),
                    format!("{:.1}", m.migration_seconds),
                    format!("{:.2}", m.migrated_bytes / GIB),
                ]
            })
            .collect();
        let header = ["wave", "VM", "from", "to", "reason", "migration s", "GiB"];
        write_rows(out, &header, &rows, 5)?;
        for m in r.moves.iter().filter(|m| m.inputs.is_some()) {
            let mut text = format!(
                "{}: {} -> {} ({}, imbalance -{:.4})\n",
                m.vm,
                m.from,
                m.to,
                reason_text(m.reason),
                m.imbalance_reduction
            );
            crate::why_cmd::render_inputs(&mut text, &serde_json::to_value(&m.inputs)?);
            write!(out, "{text}")?;
        }
    }
    writeln!(out)?;
    let (b, a) = (r.imbalance_before, r.imbalance_after);
    let imbalance = vec![
        vec![
            "std-dev (weighted)".to_string(),
            format!("{:.4}", b.std_dev),
            format!("{:.4}", a.std_dev),
        ],
        vec![
            "normalized (0..1)".to_string(),
            format!("{:.4}", b.normalized),
            format!("{:.4}", a.normalized),
        ],
    ];
    write_rows(out, &["imbalance", "before", "after"], &imbalance, 1)?;
    writeln!(out)?;
    let t = b.total_demand;
    let per = |label: &str, x: Resources, fmt: &dyn Fn(f64) -> String| {
        let mut row = vec![label.to_string()];
        row.extend(keel_model::Resource::ALL.iter().map(|&res| fmt(x.get(res))));
        row
    };
    let per_resource = vec![
        vec![
            "R total demand".to_string(),
            format!("{:.1} cores", t.cpu_cores),
            format!("{:.1} GiB", t.memory_bytes / GIB),
            format!("{:.1} MB/s", t.disk_bytes_per_second / 1e6),
            format!("{:.1} MB/s", t.network_bytes_per_second / 1e6),
        ],
        per("L mean load before %", b.mean_load, &percent),
        per("L mean load after %", a.mean_load, &percent),
        per("std-dev before", b.per_resource_std_dev, &|v| {
            format!("{v:.4}")
        }),
        per("std-dev after", a.per_resource_std_dev, &|v| {
            format!("{v:.4}")
        }),
    ];
    let header = ["per resource", "cpu", "memory", "disk", "network"];
    write_rows(out, &header, &per_resource, 1)?;
    writeln!(out)?;
    let mut shown: Vec<&HostLoadOut<'_>> = r.predicted_loads.iter().collect();
    if shown.len() > ALL_HOSTS_UP_TO {
        shown.sort_by(|x, y| {
            x.cpu
                .max(x.memory)
                .total_cmp(&y.cpu.max(y.memory))
                .reverse()
        });
        shown.truncate(HOTTEST_SHOWN);
        writeln!(
            out,
            "predicted host loads after the plan: the {HOTTEST_SHOWN} hottest of {} hosts \
             (by the larger of cpu and memory; --format json lists every host)",
            r.hosts
        )?;
    } else {
        writeln!(out, "predicted host loads after the plan:")?;
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|l| vec![l.host.to_string(), percent(l.cpu), percent(l.memory)])
        .collect();
    write_rows(out, &["host", "cpu %", "memory %"], &rows, 1)?;
    writeln!(out)?;
    if r.unresolved.is_empty() {
        writeln!(out, "unresolved mandatory moves: none")?;
    } else {
        writeln!(
            out,
            "UNRESOLVED mandatory moves: {} (these VMs stay where a hard rule or maintenance says they must not be)",
            r.unresolved.len()
        )?;
        for u in &r.unresolved {
            writeln!(out, "  {}: {}", u.vm, u.reason)?;
        }
    }
    writeln!(out)?;
    writeln!(out, "plan_ms: {:.3}", r.plan_ms)?;
    Ok(())
}
