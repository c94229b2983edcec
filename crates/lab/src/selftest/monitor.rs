//! Feeding the control loop one observation per interval while progress
//! is measured, and what those observations cost.

use super::{meter, Options};
use keel_control::ControlLoop;
use keel_drivers::libvirt::LibvirtDriver;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The cost of monitoring through the libvirt driver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Monitoring {
    /// Observations made (`ControlLoop::sample`: driver observe + estimator).
    pub samples: usize,
    /// Interval between them, seconds.
    pub interval_seconds: f64,
    /// Mean wall time of one observation, ms.
    pub observe_ms_mean: f64,
    /// Longest observation, ms.
    pub observe_ms_max: f64,
    /// CPU time of the sampling thread over the sampling wall time, % of a
    /// core: what monitoring at this interval costs Keel.
    pub sampling_thread_cpu_percent: f64,
    /// CPU time of the whole selftest process over the same wall time
    /// (adds the 50 ms serial-file polling of the progress meter), %.
    pub process_cpu_percent: f64,
    /// Failed observations.
    pub errors: usize,
}

/// Accumulates observation costs over the measurement windows.
#[derive(Debug, Default)]
pub(super) struct Sampler {
    interval: Duration,
    durations: Vec<Duration>,
    errors: usize,
    wall: f64,
    thread_cpu: f64,
    process_cpu: f64,
}

impl Sampler {
    /// Measures the guests' progress over `opts.window` (on a helper
    /// thread) while this thread feeds `control` one observation per
    /// `opts.sample_interval`. Returns the progress rates.
    pub(super) fn measure(
        &mut self,
        control: &mut ControlLoop<LibvirtDriver>,
        serials: &[PathBuf],
        opts: &Options,
    ) -> Vec<Option<f64>> {
        self.interval = opts.sample_interval;
        std::thread::scope(|s| {
            let meter = s.spawn(|| meter::progress_rates(serials, opts.window));
            let start = Instant::now();
            let (t0, p0) = (meter::thread_cpu_seconds(), meter::process_cpu_seconds());
            let mut next = Instant::now();
            while !meter.is_finished() {
                let t = Instant::now();
                if control.sample().is_err() {
                    self.errors += 1;
                }
                self.durations.push(t.elapsed());
                next += opts.sample_interval;
                while Instant::now() < next && !meter.is_finished() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let (t1, p1) = (meter::thread_cpu_seconds(), meter::process_cpu_seconds());
            self.wall += start.elapsed().as_secs_f64();
            self.thread_cpu += t1.zip(t0).map_or(0.0, |(b, a)| b - a);
            self.process_cpu += p1.zip(p0).map_or(0.0, |(b, a)| b - a);
            meter.join().unwrap_or_else(|_| vec![None; serials.len()])
        })
    }

    /// The figures so far.
    pub(super) fn summary(&self) -> Monitoring {
        let ms: Vec<f64> = self
            .durations
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        let pct = |cpu: f64| {
            if self.wall > 0.0 {
                cpu / self.wall * 100.0
            } else {
                0.0
            }
        };
        Monitoring {
            samples: ms.len(),
            interval_seconds: self.interval.as_secs_f64(),
            observe_ms_mean: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
            observe_ms_max: ms.iter().copied().fold(0.0, f64::max),
            sampling_thread_cpu_percent: pct(self.thread_cpu),
            process_cpu_percent: pct(self.process_cpu),
            errors: self.errors,
        }
    }
}
