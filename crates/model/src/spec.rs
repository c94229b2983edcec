//! Host and VM specifications: capacities with their units.

use crate::power::PowerModel;
use serde::{Deserialize, Serialize};

/// A physical host's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HostSpec {
    /// Number of physical cores (PEs).
    pub cores: u32,
    /// Capacity of one core, MIPS.
    pub core_mips: f64,
    /// Memory, MB.
    pub ram_mb: f64,
    /// Network bandwidth, in CloudSim's bandwidth units (1,000,000 = 1 Gbit/s).
    pub bandwidth: f64,
    /// Storage, MB.
    pub storage_mb: f64,
    /// Watts drawn by utilisation.
    pub power: PowerModel,
}

impl HostSpec {
    /// Total CPU capacity, MIPS (cores x core MIPS).
    #[inline]
    pub fn total_mips(&self) -> f64 {
        self.cores as f64 * self.core_mips
    }
}

/// A VM's provisioned size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VmSpec {
    /// Capacity of one vCPU, MIPS.
    pub mips: f64,
    /// Number of vCPUs.
    pub cores: u32,
    /// Memory, MB.
    pub ram_mb: f64,
    /// Network bandwidth, in CloudSim's bandwidth units.
    pub bandwidth: f64,
    /// Image size, MB.
    pub size_mb: f64,
}
