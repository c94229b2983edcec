//! `keel reference`: replays every row of CloudSim 3.0.3's reference results
//! (same day, policy and file order) with `keel sim` in a child process each,
//! and prints a Markdown report of both sets of figures, their differences,
//! and Keel's wall time and peak memory.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Arguments of `keel reference`.
#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// The PlanetLab folder holding the day folders and reference-cloudsim-3.0.3/.
    #[arg(long, value_name = "DIR")]
    planetlab: PathBuf,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// One row of cloudsim-3.0.3-results.csv.
#[derive(Debug, Clone)]
struct ReferenceRow {
    line: usize,
    day: String,
    policy: String,
    listfiles_order: bool,
    energy_kwh: f64,
    migrations: f64,
    slatah_pct: f64,
    pdm_pct: f64,
    slav_pct: f64,
    overall_pct: f64,
    average_pct: f64,
    shutdowns: f64,
    wall_seconds: f64,
    max_rss_mb: f64,
}

/// What `keel sim --format json` prints (the fields used here).
#[derive(Debug, Deserialize)]
struct KeelRun {
    energy_kwh: f64,
    migrations: f64,
    slatah: f64,
    pdm: f64,
    slav: f64,
    overall_sla_violation: f64,
    average_sla_violation: f64,
    host_shutdowns: f64,
    wall_seconds: f64,
    peak_memory_bytes: Option<f64>,
}

const RESULTS: &str = "reference-cloudsim-3.0.3/cloudsim-3.0.3-results.csv";

pub fn run(args: ReferenceArgs) -> Result<()> {
    let results = args.planetlab.join(RESULTS);
    let rows = read_rows(&results)?;
    let exe = std::env::current_exe().context("locating the keel binary")?;
    let mut table = String::new();
    let mut worst = [0.0f64; 4];
    for row in &rows {
        let started = Instant::now();
        let run = run_row(&exe, &args.planetlab, row)?;
        let process_seconds = started.elapsed().as_secs_f64();
        let diffs = [
            rel(run.energy_kwh, row.energy_kwh),
            rel(run.migrations, row.migrations),
            rel(round2(run.slatah * 100.0), row.slatah_pct),
            rel(round2(run.pdm * 100.0), row.pdm_pct),
        ];
        for (w, d) in worst.iter_mut().zip(diffs) {
            *w = w.max(d.abs());
        }
        let identical = format!("{:.2}", run.energy_kwh) == format!("{:.2}", row.energy_kwh)
            && run.migrations == row.migrations
            && round2(run.slatah * 100.0) == row.slatah_pct
            && round2(run.pdm * 100.0) == row.pdm_pct
            && format!("{:.5}", run.slav * 100.0) == format!("{:.5}", row.slav_pct)
            && round2(run.overall_sla_violation * 100.0) == row.overall_pct
            && round2(run.average_sla_violation * 100.0) == row.average_pct
            && run.host_shutdowns == row.shutdowns;
        writeln!(
            table,
            "| {} | {} | {} | {:.2} / {:.2} ({:+.2} %) | {} / {} ({:+.2} %) | {:.2} / {:.2} | {:.2} / {:.2} | {:.5} / {:.5} | {} / {} | {} | {:.3} | {:.2} | {:.0} | {:.1} | {:.0} |",
            row.day,
            if row.listfiles_order { "listFiles" } else { "sorted" },
            row.policy,
            row.energy_kwh,
            run.energy_kwh,
            diffs[0],
            row.migrations,
            run.migrations,
            diffs[1],
            row.slatah_pct,
            run.slatah * 100.0,
            row.pdm_pct,
            run.pdm * 100.0,
            row.slav_pct,
            run.slav * 100.0,
            row.shutdowns,
            run.host_shutdowns,
            if identical { "yes" } else { "**no**" },
            run.wall_seconds,
            process_seconds,
            run.peak_memory_bytes.unwrap_or(f64::NAN) / 1e6,
            row.wall_seconds,
            row.max_rss_mb,
        )?;
    }
    let mut report = String::new();
    writeln!(
        report,
        "| day | file order | policy | kWh CloudSim / Keel | migrations CloudSim / Keel | SLATAH % | PDM % | SLAV % | host shutdowns | identical as printed | Keel sim s | Keel process s | Keel peak MB | CloudSim s | CloudSim peak MB |"
    )?;
    writeln!(
        report,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    report.push_str(&table);
    writeln!(
        report,
        "\nLargest relative differences: energy {:.3} %, migrations {:.3} %, SLATAH {:.2} %, PDM {:.2} % (SLATAH and PDM compared as printed, 2 decimals).",
        worst[0], worst[1], worst[2], worst[3]
    )?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, report).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{report}"),
    }
    Ok(())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn rel(ours: f64, theirs: f64) -> f64 {
    if theirs == 0.0 {
        if ours == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (ours - theirs) / theirs * 100.0
    }
}

fn run_row(exe: &Path, planetlab: &Path, row: &ReferenceRow) -> Result<KeelRun> {
    let order = if row.listfiles_order {
        planetlab
            .join("reference-cloudsim-3.0.3/listfiles-order")
            .join(format!("{}.txt", row.day))
            .display()
            .to_string()
    } else {
        "sorted".to_string()
    };
    let output = Command::new(exe)
        .arg("sim")
        .arg("--trace")
        .arg(planetlab.join(&row.day))
        .args([
            "--policy",
            &row.policy,
            "--order",
            &order,
            "--format",
            "json",
            "--jobs",
            "1",
        ])
        .output()
        .with_context(|| format!("running keel sim for {} {}", row.day, row.policy))?;
    if !output.status.success() {
        bail!(
            "keel sim failed for row {} ({} {}): {}",
            row.line,
            row.day,
            row.policy,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("parsing keel sim output {stdout:?}"))
}

fn read_rows(path: &Path) -> Result<Vec<ReferenceRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let (_, header) = lines
        .next()
        .with_context(|| format!("{}: empty file", path.display()))?;
    let columns: Vec<&str> = header.split(',').collect();
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .with_context(|| format!("{}:1: no column {name:?}", path.display()))
    };
    let idx = [
        "workload",
        "overload",
        "selection",
        "param",
        "file_order",
        "energy_kwh",
        "migrations",
        "slatah_pct",
        "pdm_pct",
        "slav_printed_pct",
        "overall_sla_pct",
        "average_sla_pct",
        "host_shutdowns",
        "wall_clock_s",
        "max_rss_mb",
    ]
    .map(col);
    let idx: Vec<usize> = idx.into_iter().collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let field = |i: usize| {
            f.get(idx[i]).copied().with_context(|| {
                format!(
                    "{}:{}: missing column {}",
                    path.display(),
                    n + 1,
                    idx[i] + 1
                )
            })
        };
        let num = |i: usize| -> Result<f64> {
            let v = field(i)?;
            v.parse().with_context(|| {
                format!("{}:{}: value {v:?} is not a number", path.display(), n + 1)
            })
        };
        let (detector, selector, param) = (field(1)?, field(2)?, field(3)?);
        let policy = if selector.is_empty() {
            detector.to_string()
        } else {
            format!("{detector}-{selector}-{param}")
        };
        rows.push(ReferenceRow {
            line: n + 1,
            day: field(0)?.to_string(),
            policy,
            listfiles_order: field(4)? == "listFiles",
            energy_kwh: num(5)?,
            migrations: num(6)?,
            slatah_pct: num(7)?,
            pdm_pct: num(8)?,
            slav_pct: num(9)?,
            overall_pct: num(10)?,
            average_pct: num(11)?,
            shutdowns: num(12)?,
            wall_seconds: num(13)?,
            max_rss_mb: num(14)?,
        });
    }
    Ok(rows)
}
