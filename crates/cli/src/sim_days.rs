//! `keel sim` over several trace days at once: which folders are days, which
//! file order each gets, a pool of workers over every (day, policy) pair, and
//! the per-policy median over days (the paper reports ten-day medians).

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use keel_model::WorkloadTrace;
use keel_sim::RunReport;
use keel_trace::TraceOrder;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Name of the trace in output rows: the folder or file name.
pub fn day_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Whether `name` is a PlanetLab day folder name (8 digits, `YYYYMMDD`).
fn is_day_name(name: &str) -> bool {
    name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit())
}

/// The traces to run. A single folder whose sub-folders include
/// `YYYYMMDD` day folders stands for those days, in name order (the shared
/// PlanetLab folder holds the days beside a reference folder and notes);
/// anything else is one trace each.
pub fn expand_days(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let [single] = paths else {
        return Ok(paths.to_vec());
    };
    if !single.is_dir() {
        return Ok(paths.to_vec());
    }
    let entries =
        std::fs::read_dir(single).with_context(|| format!("listing {}", single.display()))?;
    let mut days = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", single.display()))?;
        let path = entry.path();
        if is_day_name(&entry.file_name().to_string_lossy()) && path.is_dir() {
            days.push(path);
        }
    }
    if days.is_empty() {
        return Ok(paths.to_vec());
    }
    days.sort();
    Ok(days)
}

/// The VM order for `day` from `--order`: `sorted`, a listing file (one
/// trace only), or a folder holding one listing per day named `<day>.txt`
/// (as `reference-cloudsim-3.0.3/listfiles-order/` does).
pub fn order_for_day(order: &str, day: &Path, days: usize) -> Result<TraceOrder> {
    if order == "sorted" {
        return Ok(TraceOrder::Sorted);
    }
    let given = PathBuf::from(order);
    if given.is_dir() {
        let listing = given.join(format!("{}.txt", day_name(day)));
        if !listing.is_file() {
            bail!(
                "--order {}: no listing {} for trace {}",
                given.display(),
                listing.display(),
                day.display()
            );
        }
        return Ok(TraceOrder::Listing(listing));
    }
    if days > 1 {
        bail!(
            "--order {order}: a listing file orders one day, got {days} traces; give `sorted` or a folder of <day>.txt listings"
        );
    }
    Ok(TraceOrder::Listing(given))
}

/// Runs `count` jobs on `jobs` worker threads (default: the number of
/// cores) with a progress bar on stderr when there is more than one; results
/// keep job order. `label` names a job in the bar.
pub fn run_pool<T: Send>(
    count: usize,
    jobs: Option<usize>,
    label: impl Fn(usize) -> String + Sync,
    work: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let workers = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, count.max(1));
    let progress = if count > 1 {
        let bar = ProgressBar::new(count as u64);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let result = work(i);
                progress.set_message(label(i));
                progress.inc(1);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
            });
        }
    });
    progress.finish_and_clear();
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("job {i} did not run"))?)
        .collect()
}

/// A day's trace, loaded by the first job that needs it and dropped after
/// the last, so memory holds only the days in progress.
pub struct DaySlot {
    trace: Mutex<Option<Arc<WorkloadTrace>>>,
    remaining_runs: AtomicUsize,
}

impl DaySlot {
    /// A slot for a day that `runs` jobs will use.
    pub fn new(runs: usize) -> Self {
        Self {
            trace: Mutex::new(None),
            remaining_runs: AtomicUsize::new(runs),
        }
    }

    /// The day's trace, loading it with `load` if no job has yet.
    pub fn get(&self, load: impl FnOnce() -> Result<WorkloadTrace>) -> Result<Arc<WorkloadTrace>> {
        let mut slot = self.trace.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(trace) = slot.as_ref() {
            return Ok(Arc::clone(trace));
        }
        let trace = Arc::new(load()?);
        *slot = Some(Arc::clone(&trace));
        Ok(trace)
    }

    /// One job of this day is done; the last one frees the trace.
    pub fn done(&self) {
        if self.remaining_runs.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.trace.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// The median of `values` (mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Per policy (in first-seen order), a report whose every figure is the
/// median of that figure over the days. Counts are rounded to the nearest
/// whole number; optional figures use the days that have them.
pub fn median_reports(reports: &[&RunReport]) -> Vec<RunReport> {
    let mut policies: Vec<&str> = Vec::new();
    for r in reports {
        if !policies.contains(&r.policy.as_str()) {
            policies.push(&r.policy);
        }
    }
    policies
        .into_iter()
        .map(|policy| {
            let runs: Vec<&RunReport> = reports
                .iter()
                .copied()
                .filter(|r| r.policy == policy)
                .collect();
            let of = |f: &dyn Fn(&RunReport) -> f64| median(runs.iter().map(|r| f(r)).collect());
            let optional = |f: &dyn Fn(&RunReport) -> Option<f64>| {
                let values: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
                (!values.is_empty()).then(|| median(values))
            };
            RunReport {
                policy: policy.to_owned(),
                vms: of(&|r| r.vms as f64).round() as usize,
                hosts: of(&|r| r.hosts as f64).round() as usize,
                energy_kwh: of(&|r| r.energy_kwh),
                migrations: of(&|r| r.migrations as f64).round() as u64,
                slatah: of(&|r| r.slatah),
                pdm: of(&|r| r.pdm),
                slav: of(&|r| r.slav),
                esv: of(&|r| r.esv),
                overall_sla_violation: of(&|r| r.overall_sla_violation),
                average_sla_violation: of(&|r| r.average_sla_violation),
                slatah_paper: of(&|r| r.slatah_paper),
                pdm_paper: of(&|r| r.pdm_paper),
                host_shutdowns: of(&|r| r.host_shutdowns as f64).round() as usize,
                mean_time_before_host_shutdown_seconds: optional(&|r| {
                    r.mean_time_before_host_shutdown_seconds
                }),
                mean_migration_seconds: optional(&|r| r.mean_migration_seconds),
                wall_seconds: of(&|r| r.wall_seconds),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn day_names_are_eight_digits() {
        assert!(is_day_name("20110303"));
        assert!(!is_day_name("reference-cloudsim-3.0.3"));
        assert!(!is_day_name("2011030"));
    }

    #[test]
    fn a_folder_of_days_expands_to_its_day_folders_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["20110306", "20110303", "reference", "20110309.txt"] {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
        }
        std::fs::write(tmp.path().join("README"), "notes").unwrap();
        let days = expand_days(&[tmp.path().to_path_buf()]).unwrap();
        let names: Vec<String> = days.iter().map(|d| day_name(d)).collect();
        assert_eq!(names, ["20110303", "20110306"]);
        let plain = tmp.path().join("reference");
        assert_eq!(expand_days(std::slice::from_ref(&plain)).unwrap(), [plain]);
    }

    #[test]
    fn a_listing_file_orders_one_day_only() {
        let err = order_for_day("list.txt", Path::new("20110303"), 2).unwrap_err();
        assert!(err.to_string().contains("2 traces"), "{err}");
        assert_eq!(
            order_for_day("sorted", Path::new("x"), 3).unwrap(),
            TraceOrder::Sorted
        );
    }
}
