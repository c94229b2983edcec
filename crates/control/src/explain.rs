//! What a decision used, per move: the VM's estimated demand and how many
//! samples it rests on, its allocation and migration-cost inputs, and the
//! loads of its source and target before and after the move (in plan
//! order, earlier moves applied). Stored with each plan so "why did Keel
//! move VM X?" is answered from the record, and replayable.

use keel_model::{Cluster, Resources};
use keel_policy::balance::demand::Estimator;
use keel_policy::balance::{HostLoads, PlannedMove};
use serde::{Deserialize, Serialize};

/// A host's load (demand / capacity per resource) before and after a move.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadChange {
    /// Before the move (earlier moves of the plan done).
    pub before: Resources,
    /// After it.
    pub after: Resources,
}

/// The inputs behind one planned move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveInputs {
    /// Estimated demand the planner used (cores, bytes, bytes/s).
    pub demand: Resources,
    /// Demand after reservation and limit (what the VM holds on a host).
    pub effective_demand: Resources,
    /// Samples of this VM the estimator has seen.
    pub samples: u64,
    /// The CPU estimator, e.g. `p90 of 12 samples`.
    pub cpu_estimator: String,
    /// The memory estimator.
    pub memory_estimator: String,
    /// Reservation (cores, bytes, bytes/s).
    pub reservation: Resources,
    /// Limit, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Resources>,
    /// Shares.
    pub shares: f64,
    /// Memory dirty rate used for the cost, bytes per second.
    pub memory_dirty_bytes_per_second: f64,
    /// Local disk copied along, bytes.
    pub local_disk_bytes: f64,
    /// Source host load.
    pub source: LoadChange,
    /// Target host load.
    pub target: LoadChange,
    /// The balancer and, for Keel's, its migration threshold level.
    pub decided_by: String,
}

/// Describes an estimator in a few words.
pub fn describe(estimator: &Estimator) -> String {
    match estimator {
        Estimator::Last => "last sample".into(),
        Estimator::Ewma { half_life_samples } => {
            format!("EWMA, half-life {half_life_samples} samples")
        }
        Estimator::Percentile {
            percent,
            window_samples,
        } => format!("p{percent} of {window_samples} samples"),
        Estimator::LinearForecast {
            window_samples,
            horizon_samples,
        } => format!("linear trend of {window_samples} samples, {horizon_samples} ahead"),
    }
}

/// The inputs of each move of `moves` (in order), on `cluster`.
pub fn explain(
    cluster: &Cluster,
    moves: &[PlannedMove],
    samples: impl Fn(&str) -> u64,
    estimators: (String, String),
    decided_by: &str,
) -> Vec<MoveInputs> {
    if moves.is_empty() {
        return Vec::new();
    }
    let mut loads = HostLoads::new(cluster);
    let load = |loads: &HostLoads, h: usize| {
        let c = loads.capacity[h];
        loads.demand[h].map(|r, d| {
            let cap = c.get(r);
            if cap > 0.0 {
                d / cap
            } else {
                0.0
            }
        })
    };
    moves
        .iter()
        .map(|m| {
            let vm = &cluster.vms[m.vm.index()];
            let (from, to) = (m.from.index(), m.to.index());
            let d = loads.vm_demand[m.vm.index()];
            let (source_before, target_before) = (load(&loads, from), load(&loads, to));
            loads.demand[from] -= d;
            loads.demand[to] += d;
            MoveInputs {
                demand: vm.demand,
                effective_demand: d,
                samples: samples(&vm.name),
                cpu_estimator: estimators.0.clone(),
                memory_estimator: estimators.1.clone(),
                reservation: vm.reservation,
                limit: vm.limit,
                shares: vm.shares,
                memory_dirty_bytes_per_second: vm.memory_dirty_bytes_per_second,
                local_disk_bytes: vm.local_disk_bytes,
                source: LoadChange {
                    before: source_before,
                    after: load(&loads, from),
                },
                target: LoadChange {
                    before: target_before,
                    after: load(&loads, to),
                },
                decided_by: decided_by.to_string(),
            }
        })
        .collect()
}
