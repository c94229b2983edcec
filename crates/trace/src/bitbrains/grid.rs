//! The common 300 s time grid of a Bitbrains trace (see the parent module).

use std::path::{Path, PathBuf};

use keel_model::{ResourceUsage, VmSeries, WorkloadTrace};

use super::{Alignment, BITBRAINS_INTERVAL_SECONDS, VALUES};
use crate::error::{Result, TraceLoadError};

/// Grid step, seconds.
const STEP: i64 = 300;

/// Most grid points one VM may span (about 9.5 years at 300 s): a guard
/// against timestamps in milliseconds or garbage.
const MAX_GRID_POINTS: i64 = 1_000_000;

/// One VM resampled onto the epoch-aligned 300 s grid.
pub(super) struct Resampled {
    pub(super) id: u64,
    /// Grid index (multiples of 300 s since the epoch) of `values[_][0]`.
    first_point: i64,
    first_ts: i64,
    last_ts: i64,
    /// Per value column (model units; CPU as a 0..=1 fraction), one per grid point.
    values: [Vec<f64>; VALUES],
}

impl Resampled {
    fn points(&self) -> i64 {
        self.values[0].len() as i64
    }
}

/// Sample-and-hold onto the multiples of 300 s from the first to the last timestamp.
pub(super) fn resample(id: u64, path: &Path, rows: &[(i64, [f64; VALUES])]) -> Result<Resampled> {
    let first_ts = rows[0].0;
    let last_ts = rows[rows.len() - 1].0;
    let first_point = first_ts.div_euclid(STEP) + i64::from(first_ts.rem_euclid(STEP) != 0);
    let last_point = last_ts.div_euclid(STEP);
    let points = (last_point - first_point + 1).max(0);
    if points > MAX_GRID_POINTS {
        return Err(TraceLoadError::TimeSpanTooLong {
            path: path.into(),
            first_ts,
            last_ts,
        });
    }
    let mut values: [Vec<f64>; VALUES] = Default::default();
    for column in &mut values {
        column.reserve_exact(points as usize);
    }
    let mut row = 0;
    for k in 0..points {
        let t = (first_point + k) * STEP;
        while row + 1 < rows.len() && rows[row + 1].0 <= t {
            row += 1;
        }
        for (column, v) in values.iter_mut().zip(rows[row].1) {
            column.push(v);
        }
    }
    Ok(Resampled {
        id,
        first_point,
        first_ts,
        last_ts,
        values,
    })
}

/// Puts every VM on the grid points chosen by `alignment`.
pub(super) fn align(
    path: &Path,
    vms: Vec<Resampled>,
    alignment: Alignment,
) -> Result<WorkloadTrace> {
    let starts = vms.iter().map(|vm| vm.first_point);
    let ends = vms.iter().map(|vm| vm.first_point + vm.points());
    let (start, end) = match alignment {
        Alignment::CommonWindow => (starts.max(), ends.min()),
        Alignment::FullSpan => (starts.min(), ends.max()),
    };
    let (start, end) = (start.unwrap_or(0), end.unwrap_or(0));
    if start >= end {
        return Err(TraceLoadError::NoCommonWindow {
            path: path.into(),
            latest_start: vms.iter().map(|vm| vm.first_ts).max().unwrap_or(0),
            earliest_end: vms.iter().map(|vm| vm.last_ts).min().unwrap_or(0),
        });
    }
    if end - start > MAX_GRID_POINTS {
        return Err(TraceLoadError::TimeSpanTooLong {
            path: path.into(),
            first_ts: start.saturating_mul(STEP),
            last_ts: end.saturating_mul(STEP),
        });
    }
    let series = vms
        .into_iter()
        .map(|vm| {
            let before = (vm.first_point - start).max(0) as usize;
            let skip = (start - vm.first_point).max(0) as usize;
            let len = (end - start) as usize;
            let values = vm.values.map(|column| {
                let mut out = Vec::with_capacity(len);
                out.resize(before, 0.0);
                out.extend(column.iter().skip(skip).take(len - before));
                out.resize(len, 0.0);
                out
            });
            let [cpu_cores, cpu_capacity_mhz, cpu_usage_mhz, cpu, memory_capacity_bytes, memory_usage_bytes, disk_read_bytes_per_second, disk_write_bytes_per_second, network_rx_bytes_per_second, network_tx_bytes_per_second] =
                values;
            VmSeries {
                name: vm.id.to_string(),
                cpu_utilization: cpu,
                usage: Some(ResourceUsage {
                    cpu_cores,
                    cpu_capacity_mhz,
                    cpu_usage_mhz,
                    memory_capacity_bytes,
                    memory_usage_bytes,
                    disk_read_bytes_per_second,
                    disk_write_bytes_per_second,
                    network_rx_bytes_per_second,
                    network_tx_bytes_per_second,
                }),
            }
        })
        .collect();
    WorkloadTrace::new(BITBRAINS_INTERVAL_SECONDS, series).map_err(|source| {
        TraceLoadError::InvalidTrace {
            path: PathBuf::from(path),
            source,
        }
    })
}
