//! Host overload detection: is a host (or a host with one more VM) over-utilised?
//!
//! The detectors of Beloglazov & Buyya (CCPE 2012), as CloudSim 3.0.3
//! implements them. The adaptive ones (IQR, MAD, LR) need a history; while a
//! host has too short a history they fall back to a static 70 % threshold.

use crate::cluster::{ClusterState, HostIndex, VmIndex};
use crate::stats;
use serde::Serialize;

/// Threshold the adaptive detectors fall back to while history is short.
pub const FALLBACK_THRESHOLD: f64 = 0.7;
/// History values IQR and MAD need (Beloglazov & Buyya: "12 is a safe value").
pub const MIN_HISTORY_ROBUST: usize = 12;
/// History values the regression uses (CloudSim: responsive enough to the latest values).
pub const REGRESSION_WINDOW: usize = 10;
/// Seconds between two consolidation rounds in the benchmark; the regression
/// looks ahead by whole rounds.
pub const SCHEDULING_INTERVAL_SECONDS: f64 = 300.0;

/// An overload detector and its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub enum OverloadDetector {
    /// Static threshold: overloaded if requested / capacity > threshold.
    Threshold(f64),
    /// Interquartile range: overloaded if u > 1 - s x IQR(history).
    InterQuartileRange(f64),
    /// Median absolute deviation: overloaded if u > 1 - s x MAD(history).
    MedianAbsoluteDeviation(f64),
    /// Local regression: overloaded if s x forecast(one migration ahead) >= 1.
    LocalRegression(f64),
    /// Robust local regression; CloudSim applies robust weights only when at
    /// least 40 % of them are zero, which never happens, so it equals LR.
    LocalRegressionRobust(f64),
}

/// Scratch buffers reused across detector calls (no allocation per call).
#[derive(Debug, Default, Clone)]
pub struct DetectorScratch {
    history: Vec<f64>,
    work: Vec<f64>,
    /// Per host: the recorded utilisation (MIPS) a power draw was last
    /// computed for, and that draw (`None` outside the power model).
    pub(crate) power_now: Vec<(f64, Option<f64>)>,
}

impl OverloadDetector {
    /// Short name used in policy names (`thr`, `iqr`, `mad`, `lr`, `lrr`).
    pub fn short_name(&self) -> &'static str {
        match self {
            Self::Threshold(_) => "thr",
            Self::InterQuartileRange(_) => "iqr",
            Self::MedianAbsoluteDeviation(_) => "mad",
            Self::LocalRegression(_) => "lr",
            Self::LocalRegressionRobust(_) => "lrr",
        }
    }

    /// The detector's parameter (threshold or safety parameter).
    pub fn parameter(&self) -> f64 {
        match *self {
            Self::Threshold(p)
            | Self::InterQuartileRange(p)
            | Self::MedianAbsoluteDeviation(p)
            | Self::LocalRegression(p)
            | Self::LocalRegressionRobust(p) => p,
        }
    }

    /// Whether `host`, with `extra` added last if given, is over-utilised.
    pub fn is_overloaded(
        &self,
        cluster: &ClusterState,
        host: HostIndex,
        extra: Option<VmIndex>,
        scratch: &mut DetectorScratch,
    ) -> bool {
        if extra.is_none() && cluster.hosts[host].vms.is_empty() {
            // Nothing requested, no history: no detector fires.
            return false;
        }
        match *self {
            Self::Threshold(threshold) => threshold_exceeded(cluster, host, extra, threshold),
            Self::InterQuartileRange(safety) => {
                cluster.utilization_history(host, extra, &mut scratch.history);
                if scratch.history.len() < MIN_HISTORY_ROBUST {
                    return threshold_exceeded(cluster, host, extra, FALLBACK_THRESHOLD);
                }
                let upper = 1.0 - safety * stats::iqr(&scratch.history, &mut scratch.work);
                utilization(cluster, host, extra) > upper
            }
            Self::MedianAbsoluteDeviation(safety) => {
                cluster.utilization_history(host, extra, &mut scratch.history);
                if scratch.history.len() < MIN_HISTORY_ROBUST {
                    return threshold_exceeded(cluster, host, extra, FALLBACK_THRESHOLD);
                }
                let upper = 1.0 - safety * stats::mad(&scratch.history, &mut scratch.work);
                utilization(cluster, host, extra) > upper
            }
            Self::LocalRegression(safety) | Self::LocalRegressionRobust(safety) => {
                regression_forecast_exceeds(cluster, host, extra, safety, scratch)
            }
        }
    }
}

fn utilization(cluster: &ClusterState, host: HostIndex, extra: Option<VmIndex>) -> f64 {
    cluster.requested_mips(host, extra) / cluster.hosts[host].spec.total_mips()
}

fn threshold_exceeded(
    cluster: &ClusterState,
    host: HostIndex,
    extra: Option<VmIndex>,
    threshold: f64,
) -> bool {
    utilization(cluster, host, extra) > threshold
}

fn regression_forecast_exceeds(
    cluster: &ClusterState,
    host: HostIndex,
    extra: Option<VmIndex>,
    safety: f64,
    scratch: &mut DetectorScratch,
) -> bool {
    // Only the newest 10 values matter, and whether the trimmed history
    // reaches 10 values at all.
    let length =
        cluster.utilization_history_prefix(host, extra, REGRESSION_WINDOW, &mut scratch.history);
    if length < REGRESSION_WINDOW {
        return threshold_exceeded(cluster, host, extra, FALLBACK_THRESHOLD);
    }
    // Oldest to newest, x = 1..=10.
    scratch.work.clear();
    scratch
        .work
        .extend(scratch.history[..REGRESSION_WINDOW].iter().rev());
    let Some((intercept, slope)) = stats::linear_fit_1_to_n(&scratch.work) else {
        return threshold_exceeded(cluster, host, extra, FALLBACK_THRESHOLD);
    };
    let intervals =
        (max_migration_seconds(cluster, host, extra) / SCHEDULING_INTERVAL_SECONDS).ceil();
    let predicted = (intercept + slope * (REGRESSION_WINDOW as f64 + intervals)) * safety;
    predicted >= 1.0
}

/// Time to migrate the largest VM on `host`, seconds: RAM over half the
/// host's bandwidth (the other half serves the VMs' own traffic).
pub fn max_migration_seconds(
    cluster: &ClusterState,
    host: HostIndex,
    extra: Option<VmIndex>,
) -> f64 {
    let h = &cluster.hosts[host];
    // CloudSim starts from Integer.MIN_VALUE; an empty host never has a
    // history long enough to get here.
    let max_ram = h
        .vms
        .iter()
        .chain(extra.iter())
        .map(|&vm| cluster.vms[vm].spec.ram_mb)
        .fold(i32::MIN as f64, f64::max);
    max_ram / (h.spec.bandwidth / (2.0 * 8000.0))
}
