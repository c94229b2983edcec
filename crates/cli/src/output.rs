//! Formatting run reports as a table, JSON lines or CSV.

use anyhow::{Context, Result};
use keel_sim::{RunReport, StepRecord};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// How `keel sim` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text table (percentages for ratios).
    Table,
    /// One JSON object per run and line (ratios as fractions).
    Json,
    /// CSV with a header row (ratios as fractions).
    Csv,
}

/// A report plus the process's peak memory, as printed.
#[derive(Serialize)]
struct Printed<'a> {
    /// The trace (day) of the row, or `median`, when several ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<&'a str>,
    #[serde(flatten)]
    report: &'a RunReport,
    /// Peak resident memory of the whole `keel` process, bytes (Linux only).
    peak_memory_bytes: Option<u64>,
}

/// Peak resident set size of this process (VmHWM), bytes; `None` where
/// /proc is not available.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

const CSV_COLUMNS: &str = "policy,vms,hosts,energy_kwh,migrations,slatah,pdm,slav,esv,overall_sla_violation,average_sla_violation,slatah_paper,pdm_paper,host_shutdowns,mean_time_before_host_shutdown_seconds,mean_migration_seconds,wall_seconds";

pub fn print_reports(reports: &[RunReport], format: OutputFormat, peak: Option<u64>) -> Result<()> {
    let rows: Vec<(Option<&str>, &RunReport)> = reports.iter().map(|r| (None, r)).collect();
    print_rows(&rows, format, peak)
}

/// Like [`print_reports`], each row led by the name of its trace (a `trace`
/// column in the table and CSV, a `trace` key in JSON).
pub fn print_labelled_reports(
    rows: &[(&str, &RunReport)],
    format: OutputFormat,
    peak: Option<u64>,
) -> Result<()> {
    let rows: Vec<(Option<&str>, &RunReport)> = rows.iter().map(|&(t, r)| (Some(t), r)).collect();
    print_rows(&rows, format, peak)
}

fn print_rows(
    rows: &[(Option<&str>, &RunReport)],
    format: OutputFormat,
    peak: Option<u64>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let labelled = rows.iter().any(|(t, _)| t.is_some());
    match format {
        OutputFormat::Json => {
            for &(trace, report) in rows {
                let printed = Printed {
                    trace,
                    report,
                    peak_memory_bytes: peak,
                };
                writeln!(out, "{}", serde_json::to_string(&printed)?)?;
            }
        }
        OutputFormat::Csv => {
            let lead = if labelled { "trace," } else { "" };
            writeln!(out, "{lead}{CSV_COLUMNS}")?;
            for &(trace, r) in rows {
                if labelled {
                    write!(out, "{},", trace.unwrap_or(""))?;
                }
                let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.policy,
                    r.vms,
                    r.hosts,
                    r.energy_kwh,
                    r.migrations,
                    r.slatah,
                    r.pdm,
                    r.slav,
                    r.esv,
                    r.overall_sla_violation,
                    r.average_sla_violation,
                    r.slatah_paper,
                    r.pdm_paper,
                    r.host_shutdowns,
                    opt(r.mean_time_before_host_shutdown_seconds),
                    opt(r.mean_migration_seconds),
                    r.wall_seconds
                )?;
            }
        }
        OutputFormat::Table => write_table(&mut out, rows, labelled, peak)?,
    }
    Ok(())
}

fn write_table(
    out: &mut impl Write,
    reports: &[(Option<&str>, &RunReport)],
    labelled: bool,
    peak: Option<u64>,
) -> Result<()> {
    let header = [
        "trace",
        "policy",
        "VMs",
        "hosts",
        "energy kWh",
        "migrations",
        "SLATAH %",
        "PDM %",
        "SLAV x1e-5",
        "ESV x1e-3",
        "overall SLA %",
        "avg SLA %",
        "shutdowns",
        "wall s",
    ];
    let rows: Vec<[String; 14]> = reports
        .iter()
        .map(|&(trace, r)| {
            [
                trace.unwrap_or("").to_owned(),
                r.policy.clone(),
                r.vms.to_string(),
                r.hosts.to_string(),
                format!("{:.2}", r.energy_kwh),
                r.migrations.to_string(),
                format!("{:.2}", r.slatah * 100.0),
                format!("{:.2}", r.pdm * 100.0),
                format!("{:.2}", r.slav * 1e5),
                format!("{:.2}", r.esv * 1e3),
                format!("{:.2}", r.overall_sla_violation * 100.0),
                format!("{:.2}", r.average_sla_violation * 100.0),
                r.host_shutdowns.to_string(),
                format!("{:.3}", r.wall_seconds),
            ]
        })
        .collect();
    // Without trace names the first column is left out.
    let first = usize::from(!labelled);
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .skip(first)
            .map(|(c, s)| {
                if c <= 1 {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    format!("{s:>w$}", w = widths[c])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    if let Some(bytes) = peak {
        writeln!(out, "peak memory: {:.1} MB", bytes as f64 / 1e6)?;
    }
    Ok(())
}

/// Writes one CSV row per scheduling step.
pub fn write_step_trace(path: &Path, steps: &[StepRecord]) -> Result<()> {
    let mut text = String::from(
        "time_s,energy_kwh_cum,migrations_cum,migrations_step,active_hosts,vms_alive,requested_mips,host_util_mips\n",
    );
    for s in steps {
        text.push_str(&format!(
            "{:.1},{:.6},{},{},{},{},{:.1},{:.1}\n",
            s.time_seconds,
            s.energy_kwh,
            s.migrations_total,
            s.migrations_started,
            s.active_hosts,
            s.vms_alive,
            s.requested_mips,
            s.host_utilization_mips
        ));
    }
    std::fs::write(path, text).with_context(|| format!("writing step trace {}", path.display()))
}
