//! The PlanetLab benchmark data centre (Beloglazov & Buyya 2012; CloudSim
//! 3.0.3 `org.cloudbus.cloudsim.examples.power.Constants`).

use keel_model::{HostSpec, PowerModel, VmSpec};

/// Hosts in the benchmark data centre.
pub const PLANETLAB_HOSTS: usize = 800;

/// Seconds between consolidation rounds (and between trace samples).
pub const SCHEDULING_INTERVAL_SECONDS: f64 = 300.0;

/// Moment the VMs are created and the workload starts, seconds. CloudSim's
/// broker submits the cloudlets 0.1 s into the run, so every step falls at
/// 300.1, 600.1, ...
pub const START_SECONDS: f64 = 0.1;

/// CloudSim's id of the broker that owns every VM in the benchmark (entities
/// 0 and 1 are CloudSim's own); it is part of each VM's key in the hosts' share maps.
pub const CLOUDSIM_BROKER_ID: u32 = 2;

/// Host memory, MB (CloudSim `HOST_RAM`).
const HOST_RAM_MB: f64 = 4096.0;
/// Host bandwidth, 1 Gbit/s in CloudSim's units (`HOST_BW`).
const HOST_BANDWIDTH: f64 = 1_000_000.0;
/// Host storage, MB (`HOST_STORAGE`).
const HOST_STORAGE_MB: f64 = 1_000_000.0;

/// HP ProLiant ML110 G4: 2 cores x 1860 MIPS.
pub const HOST_G4: HostSpec = HostSpec {
    cores: 2,
    core_mips: 1860.0,
    ram_mb: HOST_RAM_MB,
    bandwidth: HOST_BANDWIDTH,
    storage_mb: HOST_STORAGE_MB,
    power: PowerModel::HP_PROLIANT_ML110_G4,
};

/// HP ProLiant ML110 G5: 2 cores x 2660 MIPS.
pub const HOST_G5: HostSpec = HostSpec {
    cores: 2,
    core_mips: 2660.0,
    ram_mb: HOST_RAM_MB,
    bandwidth: HOST_BANDWIDTH,
    storage_mb: HOST_STORAGE_MB,
    power: PowerModel::HP_PROLIANT_ML110_G5,
};

/// VM bandwidth (`VM_BW`) and image size in MB (`VM_SIZE`), the same for every type.
const VM_BANDWIDTH: f64 = 100_000.0;
const VM_SIZE_MB: f64 = 2500.0;

/// The four VM types (Amazon EC2-like: high-CPU medium, extra large, small, micro).
pub const VM_TYPES: [VmSpec; 4] = [
    vm_type(2500.0, 870.0),
    vm_type(2000.0, 1740.0),
    vm_type(1000.0, 1740.0),
    vm_type(500.0, 613.0),
];

const fn vm_type(mips: f64, ram_mb: f64) -> VmSpec {
    VmSpec {
        mips,
        cores: 1,
        ram_mb,
        bandwidth: VM_BANDWIDTH,
        size_mb: VM_SIZE_MB,
    }
}

/// Host `i` of the data centre: G4 at even indices, G5 at odd ones.
pub fn host_spec(i: usize) -> HostSpec {
    if i % 2 == 0 {
        HOST_G4
    } else {
        HOST_G5
    }
}

/// VM `i` of `count`: type `i / ceil(count / 4)`, so each quarter of the
/// trace files gets one type.
pub fn vm_spec(i: usize, count: usize) -> VmSpec {
    let per_type = count.div_ceil(VM_TYPES.len()).max(1);
    VM_TYPES[(i / per_type).min(VM_TYPES.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_types_by_quarter() {
        assert_eq!(vm_spec(0, 1052).mips, 2500.0);
        assert_eq!(vm_spec(262, 1052).mips, 2500.0);
        assert_eq!(vm_spec(263, 1052).mips, 2000.0);
        assert_eq!(vm_spec(1051, 1052).mips, 500.0);
        assert_eq!(host_spec(0).total_mips(), 3720.0);
        assert_eq!(host_spec(1).total_mips(), 5320.0);
    }
}
