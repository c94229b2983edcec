//! Ordering a plan into waves that are safe at every step.
//!
//! Moves of one wave run concurrently. While a VM migrates, both hosts hold
//! it, so a move may only join a wave if its target can hold the VM on top
//! of everything the target holds during that wave (earlier waves done,
//! moves out of it in the same wave not yet done). Per-host and per-cluster
//! concurrency limits cap each wave, and a VM never arrives on a host while
//! an anti-affinity partner is still leaving it.

use super::load::{effective_demand, HostLoads};
use super::plan::PlannedMove;
use keel_model::rules::overcommit_limit;
use keel_model::{Cluster, CompiledRules, Resource, Resources};

/// Concurrency limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Concurrency {
    /// Migrations touching one host (in or out) at once (vSphere: 2 per host on 1 GbE... 8 on 10 GbE).
    pub per_host: u32,
    /// Migrations in the whole cluster at once.
    pub per_cluster: u32,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            per_host: 2,
            per_cluster: 8,
        }
    }
}

/// Assigns waves to `moves` (in planned order: each move was validated
/// assuming every earlier one had completed) and sorts them by wave.
///
/// `initial` is the cluster before any move; `held` and `held_size` what
/// each host holds before any move (its VMs' demand and sizes plus those of
/// in-flight migrations arriving).
#[allow(clippy::too_many_arguments)]
pub fn assign_waves(
    cluster: &Cluster,
    rules: &CompiledRules,
    initial: &HostLoads,
    held: &[Resources],
    held_size: &[Resources],
    limits: Concurrency,
    moves: &mut [PlannedMove],
) {
    let n_hosts = initial.hosts();
    let size_limits: Vec<Resources> = initial
        .capacity
        .iter()
        .map(|c| overcommit_limit(c, &rules.overcommit))
        .collect();
    // Demand each host holds at the start of each wave, built up lazily.
    let mut waves: Vec<WaveState> = Vec::new();
    let mut last_wave_into: Vec<Option<u32>> = vec![None; n_hosts];
    let mut last_wave_out: Vec<Vec<(usize, u32)>> = vec![Vec::new(); n_hosts];
    for mv in moves.iter_mut() {
        let vm = &cluster.vms[mv.vm.index()];
        let demand = effective_demand(vm);
        let size = vm.size;
        let (from, to) = (mv.from.index(), mv.to.index());
        let mut wave = last_wave_into[to].unwrap_or(0);
        // An anti-affinity partner leaving the target must be gone first.
        for &g in &rules.anti_affinity_of[mv.vm.index()] {
            for &(group, w) in &last_wave_out[to] {
                if group == g {
                    wave = wave.max(w + 1);
                }
            }
        }
        loop {
            if wave as usize >= waves.len() {
                // A wave after every other: all earlier moves are done, which
                // is the state the planner validated this move against.
                waves.resize_with(wave as usize + 1, || WaveState::new(n_hosts));
                break;
            }
            let need = Need {
                demand,
                size,
                size_limit: size_limits[to],
            };
            if fits(
                initial, held, held_size, &waves, wave, to, need, limits, from,
            ) {
                break;
            }
            wave += 1;
        }
        let w = &mut waves[wave as usize];
        w.moves += 1;
        w.per_host[from] += 1;
        w.per_host[to] += 1;
        w.incoming[to] += demand;
        w.completed_delta[to] += demand;
        w.completed_delta[from] -= demand;
        w.incoming_size[to] += size;
        w.completed_size_delta[to] += size;
        w.completed_size_delta[from] -= size;
        mv.wave = wave;
        last_wave_into[to] = Some(last_wave_into[to].map_or(wave, |w| w.max(wave)));
        for &g in &rules.anti_affinity_of[mv.vm.index()] {
            last_wave_out[from].push((g, wave));
        }
    }
    moves.sort_by_key(|m| m.wave);
}

#[derive(Debug, Clone)]
struct WaveState {
    moves: u32,
    per_host: Vec<u32>,
    /// Demand arriving on each host during this wave.
    incoming: Vec<Resources>,
    /// Net change of each host's demand once this wave completes.
    completed_delta: Vec<Resources>,
    /// The same for configured sizes (overcommit).
    incoming_size: Vec<Resources>,
    completed_size_delta: Vec<Resources>,
}

/// What a move needs on its target.
#[derive(Debug, Clone, Copy)]
struct Need {
    demand: Resources,
    size: Resources,
    size_limit: Resources,
}

impl WaveState {
    fn new(hosts: usize) -> Self {
        Self {
            moves: 0,
            per_host: vec![0; hosts],
            incoming: vec![Resources::ZERO; hosts],
            completed_delta: vec![Resources::ZERO; hosts],
            incoming_size: vec![Resources::ZERO; hosts],
            completed_size_delta: vec![Resources::ZERO; hosts],
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fits(
    initial: &HostLoads,
    held_at_start: &[Resources],
    size_at_start: &[Resources],
    waves: &[WaveState],
    wave: u32,
    to: usize,
    need: Need,
    limits: Concurrency,
    from: usize,
) -> bool {
    let w = &waves[wave as usize];
    if w.moves >= limits.per_cluster
        || w.per_host[to] >= limits.per_host
        || w.per_host[from] >= limits.per_host
    {
        return false;
    }
    // What the target holds during this wave: its start, plus earlier
    // waves' net changes, plus everything arriving in this wave.
    let mut held = held_at_start[to];
    let mut sized = size_at_start[to];
    for earlier in &waves[..wave as usize] {
        held += earlier.completed_delta[to];
        sized += earlier.completed_size_delta[to];
    }
    held += w.incoming[to] + need.demand;
    sized += w.incoming_size[to] + need.size;
    let capacity = initial.capacity[to];
    Resource::ALL
        .iter()
        .all(|&r| capacity.get(r) <= 0.0 || held.get(r) <= capacity.get(r) * (1.0 + 1e-9))
        && [Resource::Cpu, Resource::Memory]
            .iter()
            .all(|&r| sized.get(r) <= need.size_limit.get(r) * (1.0 + 1e-9))
}
