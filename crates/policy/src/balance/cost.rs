//! Migration cost: how long a live migration takes and how many bytes it
//! copies, from memory size, dirty rate and local disk.
//!
//! Pre-copy live migration sends all memory, then re-sends what was dirtied
//! meanwhile, round after round. With memory M, dirty rate D and bandwidth B
//! the rounds form a geometric series M (1 + D/B + (D/B)^2 + ...), cut off
//! after a bounded number of rounds (QEMU then pauses the guest to finish).
//! Local disks are copied once, alongside.

use keel_model::VmInfo;
use serde::{Deserialize, Serialize};

/// Migration cost model parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationCostModel {
    /// Bandwidth available to one migration, bytes per second (10 Gbit/s = 1.25e9).
    pub bandwidth_bytes_per_second: f64,
    /// Pre-copy rounds before the guest is paused for the final copy.
    pub max_precopy_rounds: u32,
}

impl Default for MigrationCostModel {
    /// 10 Gbit/s and 30 rounds (QEMU converges or gives up within tens of rounds).
    fn default() -> Self {
        Self {
            bandwidth_bytes_per_second: 1.25e9,
            max_precopy_rounds: 30,
        }
    }
}

/// Cost of migrating one VM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MigrationCost {
    /// Bytes sent over the network.
    pub bytes: f64,
    /// Duration, seconds.
    pub seconds: f64,
}

impl MigrationCostModel {
    /// Cost of migrating `vm`.
    pub fn cost(&self, vm: &VmInfo) -> MigrationCost {
        let b = self.bandwidth_bytes_per_second.max(1.0);
        let memory = vm.size.memory_bytes.max(vm.demand.memory_bytes);
        let ratio = (vm.memory_dirty_bytes_per_second / b).clamp(0.0, 1.0);
        // Sum of the first `rounds` terms of the geometric series.
        let rounds = self.max_precopy_rounds.max(1) as i32;
        let factor = if ratio < 1.0 {
            (1.0 - ratio.powi(rounds)) / (1.0 - ratio)
        } else {
            rounds as f64
        };
        let bytes = memory * factor + vm.local_disk_bytes.max(0.0);
        MigrationCost {
            bytes,
            seconds: bytes / b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_model::Resources;

    fn vm(memory: f64, dirty: f64, disk: f64) -> VmInfo {
        VmInfo {
            memory_dirty_bytes_per_second: dirty,
            local_disk_bytes: disk,
            ..VmInfo::new(
                "v",
                "h",
                Resources::new(2.0, memory, 0.0, 0.0),
                Resources::ZERO,
            )
        }
    }

    #[test]
    fn idle_guest_costs_its_memory_and_dirty_guests_more() {
        let m = MigrationCostModel::default();
        let idle = m.cost(&vm(8e9, 0.0, 0.0));
        assert!((idle.bytes - 8e9).abs() < 1.0);
        assert!((idle.seconds - 6.4).abs() < 1e-9);
        let busy = m.cost(&vm(8e9, 0.5 * 1.25e9, 0.0));
        assert!((busy.bytes - 16e9).abs() / 16e9 < 1e-6, "{busy:?}");
        let disk = m.cost(&vm(8e9, 0.0, 20e9));
        assert!((disk.bytes - 28e9).abs() < 1.0);
        let hopeless = m.cost(&vm(1e9, 2.0 * 1.25e9, 0.0));
        assert_eq!(hopeless.bytes, 30e9);
    }
}
