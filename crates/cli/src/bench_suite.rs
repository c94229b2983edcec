//! The balancing suite of `keel bench balance`: which traces at which
//! contention levels, and the verdict `../shared/bench/balance-suite.py`
//! prints (the same three conditions, computed the same way).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The project's suite: the eight setups of `balance-suite.py`, trace paths
/// relative to the shared traces folder.
pub const DEFAULT_SUITE_JSON: &str = include_str!("../suites/balance.json");

/// The baselines keel is judged against.
pub const BASELINES: [&str; 3] = ["crs", "proxlb", "watcher"];

/// Added to every unmet fraction before taking ratios (as balance-suite.py).
const EPSILON: f64 = 1e-5;

/// One trace of a suite file and the setups to run it at.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteEntry {
    /// Name in the table.
    pub name: String,
    /// Trace path (relative to the suite file, or to the shared traces
    /// folder for the default suite), or `bundled` for the bundled PlanetLab day.
    pub path: String,
    /// `keel sim` flags: `--bitbrains-window common|full`, `--trace-format F`, `--interval S`.
    #[serde(default)]
    pub extra: Vec<String>,
    /// `[hosts, vcpus_per_core]` pairs.
    pub setups: Vec<(usize, f64)>,
}

/// Where a suite's relative trace paths start.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The entries.
    pub entries: Vec<SuiteEntry>,
    /// Folder relative paths are resolved against (`None`: no shared traces folder).
    pub base: Option<PathBuf>,
}

/// Parses a suite file's text (`origin` names it in errors).
pub fn parse_suite(text: &str, origin: &str, base: Option<PathBuf>) -> Result<Suite> {
    let entries: Vec<SuiteEntry> = serde_json::from_str(text).with_context(|| {
        format!("{origin}: not a suite (a JSON list of {{name, path, extra, setups}})")
    })?;
    for (i, entry) in entries.iter().enumerate() {
        if entry.setups.is_empty() {
            bail!("{origin}: entry {i} ({:?}): setups is empty", entry.name);
        }
        for &(hosts, ratio) in &entry.setups {
            if hosts == 0 || !(ratio.is_finite() && ratio > 0.0) {
                bail!(
                    "{origin}: entry {i} ({:?}): setup [{hosts}, {ratio}] needs hosts >= 1 and vcpus_per_core > 0",
                    entry.name
                );
            }
        }
    }
    Ok(Suite { entries, base })
}

/// Reads the suite at `path` (its trace paths relative to its folder), or
/// the default suite (relative to the shared traces folder).
pub fn load_suite(path: Option<&Path>) -> Result<Suite> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading suite {}", path.display()))?;
            let base = path.parent().map(Path::to_path_buf);
            parse_suite(&text, &path.display().to_string(), base)
        }
        None => {
            let base = keel_trace::shared_traces_dir().or_else(|| {
                let beside = PathBuf::from("../shared/traces");
                beside.is_dir().then_some(beside)
            });
            parse_suite(DEFAULT_SUITE_JSON, "the default suite", base)
        }
    }
}

/// The trace of `entry`: `None` for the bundled day, else its resolved path.
pub fn trace_path(suite: &Suite, entry: &SuiteEntry) -> Option<PathBuf> {
    if entry.path == "bundled" {
        return None;
    }
    let path = PathBuf::from(&entry.path);
    Some(match (&suite.base, path.is_absolute()) {
        (Some(base), false) => base.join(path),
        _ => path,
    })
}

/// One balancer's figures in one setup, as the verdict needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupResult {
    /// Setup label.
    pub setup: String,
    /// Balancer name -> (unmet demand fraction, migrated GiB).
    pub by_balancer: BTreeMap<String, (f64, f64)>,
}

/// The verdict of balance-suite.py over `results`: the lines it prints
/// (SHORT lines, then the summary) and whether every condition holds.
pub fn verdict(results: &[SetupResult]) -> Result<(Vec<String>, bool)> {
    let mut short = Vec::new();
    let mut logs = Vec::new();
    let mut totals: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in results {
        let get = |b: &str| {
            r.by_balancer
                .get(b)
                .copied()
                .with_context(|| format!("{}: no result for {b}", r.setup))
        };
        let keel = get("keel")?;
        let mut best = (BASELINES[0], get(BASELINES[0])?);
        for b in &BASELINES[1..] {
            let figures = get(b)?;
            if figures.0 < best.1 .0 {
                best = (b, figures);
            }
        }
        logs.push(((keel.0 + EPSILON) / (best.1 .0 + EPSILON)).ln());
        if keel.0 > 1.1 * best.1 .0 + EPSILON {
            short.push(format!(
                "SHORT: {}: keel unmet {:.5} > 1.1 x {} {:.5}",
                r.setup, keel.0, best.0, best.1 .0
            ));
        }
        for (b, (unmet, gib)) in &r.by_balancer {
            let t = totals.entry(b.as_str()).or_default();
            t.0 += unmet;
            t.1 += gib;
        }
    }
    if logs.is_empty() {
        bail!("no setup ran: nothing to judge");
    }
    let worse = short.len();
    let geometric_mean = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
    let mut lead = BASELINES[0];
    for b in &BASELINES[1..] {
        if totals[b].0 < totals[lead].0 {
            lead = b;
        }
    }
    if geometric_mean > 0.70 {
        short.push(format!(
            "SHORT: geometric mean keel/best baseline unmet {geometric_mean:.2} > 0.70"
        ));
    }
    let (keel_gib, lead_gib) = (totals["keel"].1, totals[lead].1);
    if keel_gib > lead_gib {
        short.push(format!(
            "SHORT: keel migrated {keel_gib:.0} GiB > {lead} {lead_gib:.0} GiB"
        ));
    }
    let pass = short.is_empty();
    short.push(format!(
        "keel/best unmet, geometric mean {geometric_mean:.2} (goal <= 0.70); setups worse than the best baseline: {worse}; GiB keel {keel_gib:.0} vs {lead} {lead_gib:.0}"
    ));
    Ok((short, pass))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(name: &str, figures: &[(&str, f64, f64)]) -> SetupResult {
        SetupResult {
            setup: name.to_string(),
            by_balancer: figures
                .iter()
                .map(|&(b, u, g)| (b.to_string(), (u, g)))
                .collect(),
        }
    }

    #[test]
    fn the_default_suite_holds_the_eight_setups_of_balance_suite_py() {
        let suite = parse_suite(DEFAULT_SUITE_JSON, "default", None).unwrap();
        let setups: usize = suite.entries.iter().map(|e| e.setups.len()).sum();
        assert_eq!(setups, 8);
    }

    #[test]
    fn bad_suites_are_refused_naming_the_entry() {
        let err = parse_suite(
            r#"[{"name":"x","path":"p","setups":[[0,2]]}]"#,
            "s.json",
            None,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("s.json: entry 0 (\"x\")"),
            "{err:#}"
        );
        let err = parse_suite("{", "s.json", None).unwrap_err();
        assert!(format!("{err:#}").contains("s.json"), "{err:#}");
    }

    #[test]
    fn the_verdict_is_balance_suite_pys() {
        let all = |keel: f64, gib: f64| {
            setup(
                "s",
                &[
                    ("crs", 0.02, 10.0),
                    ("proxlb", 0.03, 5.0),
                    ("watcher", 0.01, 20.0),
                    ("keel", keel, gib),
                ],
            )
        };
        let (lines, pass) = verdict(&[all(0.005, 15.0)]).unwrap();
        assert!(pass, "{lines:?}");
        assert!(
            lines.last().unwrap().contains("geometric mean 0.50"),
            "{lines:?}"
        );
        let (lines, pass) = verdict(&[all(0.02, 25.0)]).unwrap();
        assert!(!pass);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].contains("keel unmet 0.02000 > 1.1 x watcher"),
            "{lines:?}"
        );
        assert!(lines
            .last()
            .unwrap()
            .contains("setups worse than the best baseline: 1"));
        assert!(verdict(&[]).is_err());
    }
}
