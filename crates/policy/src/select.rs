//! VM selection: which VM to move off an over-utilised host.
//!
//! The selection policies of Beloglazov & Buyya (CCPE 2012) as CloudSim 3.0.3
//! implements them. Only VMs not already migrating are candidates; ties go to
//! the VM first in the host's list.

use crate::cluster::{ClusterState, HostIndex, VmIndex};
use crate::stats;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// A VM selection policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum VmSelector {
    /// Minimum migration time: the VM with the least RAM.
    MinimumMigrationTime,
    /// Minimum utilisation: the VM using the smallest fraction of its CPU.
    MinimumUtilization,
    /// Maximum correlation: the VM whose utilisation history is best
    /// explained by the other VMs' (largest R² of a multiple regression).
    MaximumCorrelation,
    /// Random selection, seeded so that runs are reproducible.
    RandomSelection,
}

/// State a selector carries between calls (the random generator).
#[derive(Debug, Clone)]
pub struct SelectorState {
    rng: StdRng,
    candidates: Vec<VmIndex>,
}

impl SelectorState {
    /// A fresh state; `seed` drives random selection.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            candidates: Vec::new(),
        }
    }
}

impl VmSelector {
    /// Short name used in policy names (`mmt`, `mu`, `mc`, `rs`).
    pub fn short_name(&self) -> &'static str {
        match self {
            Self::MinimumMigrationTime => "mmt",
            Self::MinimumUtilization => "mu",
            Self::MaximumCorrelation => "mc",
            Self::RandomSelection => "rs",
        }
    }

    /// Picks a VM to migrate off `host`, or `None` if every VM is migrating.
    pub fn select(
        &self,
        cluster: &ClusterState,
        host: HostIndex,
        state: &mut SelectorState,
    ) -> Option<VmIndex> {
        state.candidates.clear();
        state.candidates.extend(
            cluster.hosts[host]
                .vms
                .iter()
                .copied()
                .filter(|&vm| !cluster.vms[vm].in_migration),
        );
        let candidates = &state.candidates;
        if candidates.is_empty() {
            return None;
        }
        match self {
            Self::MinimumMigrationTime => minimum_ram(cluster, candidates),
            Self::MinimumUtilization => {
                let mut best = None;
                let mut min_metric = f64::MAX;
                for &vm in candidates {
                    let v = &cluster.vms[vm];
                    let metric = v.utilization * v.spec.mips / v.spec.mips;
                    if metric < min_metric {
                        min_metric = metric;
                        best = Some(vm);
                    }
                }
                best
            }
            Self::RandomSelection => {
                let i = state.rng.gen_range(0..candidates.len());
                Some(candidates[i])
            }
            Self::MaximumCorrelation => {
                let histories: Vec<&[f64]> = candidates
                    .iter()
                    .map(|&vm| cluster.vms[vm].history.as_slice())
                    .collect();
                match stats::correlation_coefficients(&histories) {
                    Ok(r2) => Some(candidates[stats::pick_max_correlation(&r2)]),
                    Err(_) => minimum_ram(cluster, candidates),
                }
            }
        }
    }
}

fn minimum_ram(cluster: &ClusterState, candidates: &[VmIndex]) -> Option<VmIndex> {
    let mut best = None;
    let mut min_ram = f64::MAX;
    for &vm in candidates {
        let ram = cluster.vms[vm].spec.ram_mb;
        if ram < min_ram {
            min_ram = ram;
            best = Some(vm);
        }
    }
    best
}
