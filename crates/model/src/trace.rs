//! Workload traces: what each VM demanded over time.
//!
//! A trace is a set of per-VM series sampled at one fixed interval. The CPU
//! series is always present, as a fraction of the VM's own CPU capacity
//! (0.0 = idle, 1.0 = every vCPU busy). Richer traces (Bitbrains) also carry
//! absolute usage of memory, disk and network.

use serde::{Deserialize, Serialize};

/// Why a trace is not usable as built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TraceError {
    /// The trace holds no VM at all.
    #[error("the trace holds no VM")]
    Empty,
    /// A VM's series has a different length from the others.
    #[error("VM {vm:?} has {got} samples, expected {expected}")]
    RaggedSeries {
        /// VM name.
        vm: String,
        /// Samples in this VM's series.
        got: usize,
        /// Samples in the first VM's series.
        expected: usize,
    },
    /// The sampling interval is not a positive number of seconds.
    #[error("sampling interval {0} s is not positive")]
    BadInterval(f64),
}

/// Absolute resource usage of one VM, one value per sample (Bitbrains-style traces).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// Number of vCPUs provisioned (cores).
    pub cpu_cores: Vec<f64>,
    /// CPU capacity provisioned, MHz.
    pub cpu_capacity_mhz: Vec<f64>,
    /// CPU used, MHz.
    pub cpu_usage_mhz: Vec<f64>,
    /// Memory provisioned, bytes.
    pub memory_capacity_bytes: Vec<f64>,
    /// Memory used, bytes.
    pub memory_usage_bytes: Vec<f64>,
    /// Disk reads, bytes per second.
    pub disk_read_bytes_per_second: Vec<f64>,
    /// Disk writes, bytes per second.
    pub disk_write_bytes_per_second: Vec<f64>,
    /// Network received, bytes per second.
    pub network_rx_bytes_per_second: Vec<f64>,
    /// Network transmitted, bytes per second.
    pub network_tx_bytes_per_second: Vec<f64>,
}

/// One VM's demand over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSeries {
    /// Name of the VM as the trace calls it (file name or column header).
    pub name: String,
    /// CPU utilisation per sample, as a fraction of the VM's CPU capacity (0.0..=1.0, unitless).
    pub cpu_utilization: Vec<f64>,
    /// Absolute usage of every resource, where the trace records it.
    pub usage: Option<ResourceUsage>,
}

/// A workload trace: equally spaced samples of many VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadTrace {
    /// Seconds between two consecutive samples (PlanetLab, Bitbrains and Azure: 300 s).
    pub interval_seconds: f64,
    /// The VMs, in the order the trace assigns them (VM i is `vms[i]`).
    pub vms: Vec<VmSeries>,
}

impl WorkloadTrace {
    /// Builds a trace, checking that it is non-empty and rectangular.
    pub fn new(interval_seconds: f64, vms: Vec<VmSeries>) -> Result<Self, TraceError> {
        if !(interval_seconds > 0.0 && interval_seconds.is_finite()) {
            return Err(TraceError::BadInterval(interval_seconds));
        }
        let first = vms.first().ok_or(TraceError::Empty)?;
        let expected = first.cpu_utilization.len();
        if let Some(bad) = vms.iter().find(|vm| vm.cpu_utilization.len() != expected) {
            return Err(TraceError::RaggedSeries {
                vm: bad.name.clone(),
                got: bad.cpu_utilization.len(),
                expected,
            });
        }
        Ok(Self {
            interval_seconds,
            vms,
        })
    }

    /// Number of samples per VM.
    pub fn samples(&self) -> usize {
        self.vms.first().map_or(0, |vm| vm.cpu_utilization.len())
    }

    /// Length of the trace in seconds (samples x interval).
    pub fn duration_seconds(&self) -> f64 {
        self.samples() as f64 * self.interval_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, n: usize) -> VmSeries {
        VmSeries {
            name: name.into(),
            cpu_utilization: vec![0.5; n],
            usage: None,
        }
    }

    #[test]
    fn rejects_empty_ragged_and_bad_interval() {
        assert_eq!(WorkloadTrace::new(300.0, vec![]), Err(TraceError::Empty));
        assert!(matches!(
            WorkloadTrace::new(300.0, vec![series("a", 3), series("b", 2)]),
            Err(TraceError::RaggedSeries {
                got: 2,
                expected: 3,
                ..
            })
        ));
        assert!(WorkloadTrace::new(0.0, vec![series("a", 1)]).is_err());
    }

    #[test]
    fn reports_samples_and_duration() {
        let t = WorkloadTrace::new(300.0, vec![series("a", 288)]).unwrap();
        assert_eq!(t.samples(), 288);
        assert_eq!(t.duration_seconds(), 86_400.0);
    }
}
