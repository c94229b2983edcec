//! Demand estimation: what a VM will use next, per resource, from its recent
//! samples.
//!
//! Samples run oldest to newest, one per sampling interval. A sample that is
//! NaN, infinite or negative is a gap (a failed read), not a zero: every
//! estimator skips it. Windows are counted in sample *positions*, so a gap
//! still takes up its slot in time. Every estimate is finite and `>= 0`; no
//! samples means 0.
//!
//! [`estimate`] and [`estimate_demand`] work on a slice of history;
//! [`DemandTracker`] is the incremental form for the simulator and the daemon,
//! giving the same answers from a bounded ring buffer per VM.

use keel_model::{Resource, Resources};
use serde::{Deserialize, Serialize};

/// The longest window an estimator may use, samples. Bounds the memory of a
/// [`DemandTracker`].
pub const MAX_WINDOW_SAMPLES: usize = 1 << 16;

/// How to turn recent samples into one demand figure.
///
/// In TOML: `cpu = { kind = "percentile", percent = 90.0, window_samples = 12 }`.
/// A misspelt key is an error, except beside `kind = "last"` (serde does not
/// check the keys of a field-less variant).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Estimator {
    /// The newest valid sample.
    Last,
    /// Exponentially weighted moving average over every sample given,
    /// starting from the oldest valid one; a sample's weight halves every
    /// `half_life_samples` samples (`alpha = 1 - 2^(-1 / half_life)`).
    Ewma {
        /// Half-life, samples (> 0; a non-positive value acts as [`Estimator::Last`]).
        half_life_samples: f64,
    },
    /// A percentile of the valid samples among the last `window_samples`,
    /// interpolated linearly between order statistics (`percent = 100` is the
    /// window's maximum, `50` its median).
    Percentile {
        /// Which percentile, 0..=100 (clamped; NaN counts as 100).
        percent: f64,
        /// Window length, samples (0 counts as 1).
        window_samples: usize,
    },
    /// The least-squares line through the valid samples among the last
    /// `window_samples`, evaluated `horizon_samples` after the newest slot and
    /// clamped at 0. With fewer than 3 valid samples, their mean.
    LinearForecast {
        /// Window length, samples (0 counts as 1).
        window_samples: usize,
        /// How far ahead of the newest slot, samples (negative or NaN counts as 0).
        horizon_samples: f64,
    },
}

impl Estimator {
    /// How many of the newest samples the estimator reads (1 for
    /// [`Estimator::Last`] and [`Estimator::Ewma`], which a [`DemandTracker`]
    /// keeps as running state instead).
    pub fn window_samples(&self) -> usize {
        match *self {
            Estimator::Last | Estimator::Ewma { .. } => 1,
            Estimator::Percentile { window_samples, .. }
            | Estimator::LinearForecast { window_samples, .. } => window_samples.max(1),
        }
    }

    /// Checks the parameters: half-life finite and > 0, percent in 0..=100,
    /// window in 1..=[`MAX_WINDOW_SAMPLES`], horizon finite and >= 0.
    /// `resource` only labels the error.
    pub fn validate(&self, resource: Resource) -> Result<(), DemandError> {
        let bad = |field: &'static str, value: f64| DemandError::InvalidParameter {
            resource: resource.name(),
            field,
            value,
        };
        let window_ok = |w: usize| (1..=MAX_WINDOW_SAMPLES).contains(&w);
        match *self {
            Estimator::Last => Ok(()),
            Estimator::Ewma {
                half_life_samples: h,
            } if !(h.is_finite() && h > 0.0) => Err(bad("half_life_samples", h)),
            Estimator::Ewma { .. } => Ok(()),
            Estimator::Percentile { percent, .. } if !(0.0..=100.0).contains(&percent) => {
                Err(bad("percent", percent))
            }
            Estimator::Percentile {
                window_samples: w, ..
            }
            | Estimator::LinearForecast {
                window_samples: w, ..
            } if !window_ok(w) => Err(bad("window_samples", w as f64)),
            Estimator::LinearForecast {
                horizon_samples: h, ..
            } if !(h.is_finite() && h >= 0.0) => Err(bad("horizon_samples", h)),
            Estimator::Percentile { .. } | Estimator::LinearForecast { .. } => Ok(()),
        }
    }
}

/// One estimator per resource.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EstimatorConfig {
    /// CPU.
    pub cpu: Estimator,
    /// Memory.
    pub memory: Estimator,
    /// Disk I/O.
    pub disk: Estimator,
    /// Network I/O.
    pub network: Estimator,
}

impl Default for EstimatorConfig {
    /// - CPU: 90th percentile of the last 12 samples (an hour at the 5-minute
    ///   PlanetLab interval). CPU is bursty and a burst that finds no room is
    ///   lost latency, so size for the busy periods, not the mean.
    /// - Memory: maximum (100th percentile) of the last 24 samples. Memory is
    ///   sticky — a guest rarely hands back what it touched — and a shortfall
    ///   means swapping, far costlier than CPU contention; the estimate falls
    ///   only once the peak has aged out of the window.
    /// - Disk and network: EWMA with a half-life of 3 samples. I/O rates are
    ///   noisy and elastic (requests queue rather than fail), so smooth
    ///   bursts away and follow sustained shifts within a few samples.
    fn default() -> Self {
        let io = Estimator::Ewma {
            half_life_samples: 3.0,
        };
        Self {
            cpu: Estimator::Percentile {
                percent: 90.0,
                window_samples: 12,
            },
            memory: Estimator::Percentile {
                percent: 100.0,
                window_samples: 24,
            },
            disk: io,
            network: io,
        }
    }
}

impl EstimatorConfig {
    /// The estimator of `resource`.
    pub fn get(&self, resource: Resource) -> &Estimator {
        match resource {
            Resource::Cpu => &self.cpu,
            Resource::Memory => &self.memory,
            Resource::Disk => &self.disk,
            Resource::Network => &self.network,
        }
    }

    /// Validates each resource's estimator ([`Estimator::validate`]).
    pub fn validate(&self) -> Result<(), DemandError> {
        Resource::ALL
            .iter()
            .try_for_each(|&r| self.get(r).validate(r))
    }

    /// The longest window any resource reads, samples (>= 1).
    pub fn max_window_samples(&self) -> usize {
        Resource::ALL
            .iter()
            .map(|&r| self.get(r).window_samples())
            .max()
            .unwrap_or(1)
    }
}

/// Why an estimator configuration or a tracker call was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DemandError {
    /// An estimator parameter out of range.
    #[error("{resource} estimator: invalid {field} {value}")]
    InvalidParameter {
        /// Which resource's estimator (`cpu`, `memory`, ...).
        resource: &'static str,
        /// Which parameter.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A VM index beyond the tracker's VM count.
    #[error("VM index {vm_index} is out of range (tracker holds {vm_count} VMs)")]
    UnknownVm {
        /// The index given.
        vm_index: usize,
        /// How many VMs the tracker holds.
        vm_count: usize,
    },
    /// The ring buffers would not fit in memory.
    #[error("cannot hold {samples} samples ({vm_count} VMs x {window_samples} samples each)")]
    TooLarge {
        /// VMs asked for.
        vm_count: usize,
        /// Ring capacity per VM, samples.
        window_samples: usize,
        /// Product, saturated.
        samples: usize,
    },
}

fn valid(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

/// EWMA smoothing factor for a half-life in samples; 1 (no smoothing) for a
/// non-positive or NaN half-life.
fn ewma_alpha(half_life_samples: f64) -> f64 {
    if half_life_samples > 0.0 {
        -(-std::f64::consts::LN_2 / half_life_samples).exp_m1()
    } else {
        1.0
    }
}

/// The estimate from `n` samples read through `at` (0 = oldest).
fn estimate_by(
    n: usize,
    at: impl Fn(usize) -> f64,
    estimator: &Estimator,
    scratch: &mut Vec<f64>,
) -> f64 {
    let out = match *estimator {
        Estimator::Last => (0..n).rev().map(&at).find(|&x| valid(x)).unwrap_or(0.0),
        Estimator::Ewma { half_life_samples } => {
            let alpha = ewma_alpha(half_life_samples);
            (0..n)
                .map(&at)
                .filter(|&x| valid(x))
                .fold(None, |e: Option<f64>, x| {
                    Some(e.map_or(x, |e| e + alpha * (x - e)))
                })
                .unwrap_or(0.0)
        }
        Estimator::Percentile {
            percent,
            window_samples,
        } => {
            let start = n.saturating_sub(window_samples.max(1));
            scratch.clear();
            scratch.extend((start..n).map(&at).filter(|&x| valid(x)));
            percentile(scratch, percent)
        }
        Estimator::LinearForecast {
            window_samples,
            horizon_samples,
        } => {
            let start = n.saturating_sub(window_samples.max(1));
            let horizon = if horizon_samples > 0.0 {
                horizon_samples
            } else {
                0.0
            };
            forecast(
                (start..n).map(|i| ((i - start) as f64, at(i))),
                (n - start) as f64,
                horizon,
            )
        }
    };
    // Finite and >= 0 by construction; the guard makes it so for any input.
    if out.is_finite() && out > 0.0 {
        out
    } else {
        0.0
    }
}

/// Linear-interpolated percentile of `values` (reordered); 0 if empty.
fn percentile(values: &mut [f64], percent: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let p = if percent.is_nan() {
        100.0
    } else {
        percent.clamp(0.0, 100.0)
    };
    let rank = p / 100.0 * (values.len() - 1) as f64;
    let lo = (rank.floor() as usize).min(values.len() - 1);
    let frac = rank - lo as f64;
    let (_, &mut v_lo, upper) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let v_hi = upper.iter().copied().min_by(f64::total_cmp).unwrap_or(v_lo);
    if frac > 0.0 {
        (v_lo + (v_hi - v_lo) * frac).clamp(v_lo, v_hi)
    } else {
        v_lo
    }
}

/// Least-squares forecast at `x = slots - 1 + horizon` over the valid points;
/// the mean of the valid values when there are fewer than 3 of them or the
/// line is not finite.
fn forecast(points: impl Iterator<Item = (f64, f64)> + Clone, slots: f64, horizon: f64) -> f64 {
    // Running means (no overflow for any finite input).
    let (mut count, mut mx, mut my) = (0.0, 0.0, 0.0);
    for (x, y) in points.clone().filter(|&(_, y)| valid(y)) {
        count += 1.0;
        mx += (x - mx) / count;
        my += (y - my) / count;
    }
    if count < 3.0 {
        return my;
    }
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (x, y) in points.filter(|&(_, y)| valid(y)) {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
    }
    let target = slots - 1.0 + horizon;
    let line = my + sxy / sxx * (target - mx);
    if line.is_finite() {
        line.max(0.0)
    } else {
        my
    }
}

/// The estimate from `samples` (oldest first); 0 if none is valid.
/// Allocates only for [`Estimator::Percentile`]; see [`estimate_with_scratch`].
pub fn estimate(samples: &[f64], estimator: &Estimator) -> f64 {
    estimate_with_scratch(samples, estimator, &mut Vec::new())
}

/// [`estimate`] reusing `scratch` (its contents are overwritten).
pub fn estimate_with_scratch(
    samples: &[f64],
    estimator: &Estimator,
    scratch: &mut Vec<f64>,
) -> f64 {
    estimate_by(samples.len(), |i| samples[i], estimator, scratch)
}

/// A VM's demand per resource from its `history` (oldest first), each
/// resource with its own estimator. Allocates one scratch vector at most.
pub fn estimate_demand(history: &[Resources], config: &EstimatorConfig) -> Resources {
    estimate_demand_with_scratch(history, config, &mut Vec::new())
}

/// [`estimate_demand`] reusing `scratch`.
pub fn estimate_demand_with_scratch(
    history: &[Resources],
    config: &EstimatorConfig,
    scratch: &mut Vec<f64>,
) -> Resources {
    Resources::ZERO
        .map(|r, _| estimate_by(history.len(), |i| history[i].get(r), config.get(r), scratch))
}

/// Running state of one VM in a [`DemandTracker`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct VmTrack {
    /// Ring slot the next sample goes to.
    head: usize,
    /// Samples held (<= ring capacity).
    len: usize,
    /// Newest valid sample per resource; NaN = none yet.
    last: Resources,
    /// EWMA per resource; NaN = no valid sample yet.
    ewma: Resources,
}

const EMPTY_TRACK: VmTrack = VmTrack {
    head: 0,
    len: 0,
    last: Resources::new(f64::NAN, f64::NAN, f64::NAN, f64::NAN),
    ewma: Resources::new(f64::NAN, f64::NAN, f64::NAN, f64::NAN),
};

/// Incremental demand estimation for many VMs: a ring buffer of the newest
/// samples per VM (as long as the longest window in the configuration) plus
/// running EWMA and last-valid state, so each [`DemandTracker::estimate`]
/// equals [`estimate_demand`] over the VM's whole history and a push costs
/// O(1) with no allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandTracker {
    config: EstimatorConfig,
    window_samples: usize,
    ring: Vec<Resources>,
    vms: Vec<VmTrack>,
    scratch: Vec<f64>,
}

impl DemandTracker {
    /// A tracker for `vm_count` VMs with no samples yet. Rejects an invalid
    /// configuration.
    pub fn new(vm_count: usize, config: EstimatorConfig) -> Result<Self, DemandError> {
        config.validate()?;
        let window_samples = config.max_window_samples();
        let mut tracker = Self {
            config,
            window_samples,
            ring: Vec::new(),
            vms: Vec::new(),
            scratch: Vec::with_capacity(window_samples),
        };
        tracker.resize(vm_count)?;
        Ok(tracker)
    }

    /// The configuration.
    pub fn config(&self) -> &EstimatorConfig {
        &self.config
    }

    /// How many VMs are tracked (indices `0..vm_count`).
    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// Tracks `vm_count` VMs: new ones start empty, those beyond are dropped.
    pub fn resize(&mut self, vm_count: usize) -> Result<(), DemandError> {
        let too_large = DemandError::TooLarge {
            vm_count,
            window_samples: self.window_samples,
            samples: vm_count.saturating_mul(self.window_samples),
        };
        let samples = vm_count
            .checked_mul(self.window_samples)
            .ok_or(too_large.clone())?;
        if samples > self.ring.len() {
            self.ring
                .try_reserve_exact(samples - self.ring.len())
                .map_err(|_| too_large.clone())?;
            self.vms
                .try_reserve_exact(vm_count - self.vms.len())
                .map_err(|_| too_large)?;
        }
        self.ring.resize(samples, Resources::ZERO);
        self.vms.resize(vm_count, EMPTY_TRACK);
        Ok(())
    }

    /// Forgets every sample of `vm_index` (a new VM took the slot).
    pub fn reset(&mut self, vm_index: usize) {
        if let Some(t) = self.vms.get_mut(vm_index) {
            *t = EMPTY_TRACK;
        }
    }

    /// Records the newest sample of `vm_index`.
    pub fn push(&mut self, vm_index: usize, sample: Resources) -> Result<(), DemandError> {
        let vm_count = self.vms.len();
        let t = self
            .vms
            .get_mut(vm_index)
            .ok_or(DemandError::UnknownVm { vm_index, vm_count })?;
        let w = self.window_samples;
        self.ring[vm_index * w + t.head] = sample;
        t.head = (t.head + 1) % w;
        t.len = (t.len + 1).min(w);
        for r in Resource::ALL {
            let x = sample.get(r);
            if !valid(x) {
                continue;
            }
            *t.last.get_mut(r) = x;
            if let Estimator::Ewma { half_life_samples } = *self.config.get(r) {
                let e = t.ewma.get_mut(r);
                *e = if e.is_nan() {
                    x
                } else {
                    *e + ewma_alpha(half_life_samples) * (x - *e)
                };
            }
        }
        Ok(())
    }

    /// The demand estimate of `vm_index`: zero for a VM with no samples or
    /// an index out of range.
    pub fn estimate(&mut self, vm_index: usize) -> Resources {
        let Some(t) = self.vms.get(vm_index).copied() else {
            return Resources::ZERO;
        };
        let w = self.window_samples;
        let ring = &self.ring[vm_index * w..(vm_index + 1) * w];
        let oldest = (t.head + w - t.len) % w;
        let scratch = &mut self.scratch;
        let config = &self.config;
        Resources::ZERO.map(|r, _| {
            let held = |x: f64| if x.is_nan() { 0.0 } else { x };
            match config.get(r) {
                Estimator::Last => held(t.last.get(r)),
                Estimator::Ewma { .. } => held(t.ewma.get(r)),
                windowed => {
                    estimate_by(t.len, |i| ring[(oldest + i) % w].get(r), windowed, scratch)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
