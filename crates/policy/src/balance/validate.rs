//! Independent check of a plan: replays it wave by wave and verifies that no
//! step breaks a hard rule. The planner's property tests use it, and the
//! daemon can run it before applying a plan it did not make.

use super::load::{effective_demand, HostLoads};
use super::plan::Plan;
use super::waves::Concurrency;
use super::BalanceInput;
use keel_model::rules::overcommit_limit;
use keel_model::{HostId, Resource};
use std::collections::HashSet;

/// A rule a plan breaks, at which wave.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanViolation {
    /// A VM is moved twice.
    #[error("VM {vm} is moved more than once")]
    MovedTwice {
        /// VM index.
        vm: u32,
    },
    /// A move starts from a host the VM is not on at that point.
    #[error("move of VM {vm} starts from host {from}, but the VM is on host {actual}")]
    WrongSource {
        /// VM index.
        vm: u32,
        /// Claimed source.
        from: u32,
        /// Actual host.
        actual: u32,
    },
    /// Waves are not in order.
    #[error("moves are not sorted by wave")]
    Unordered,
    /// A target lacks capacity while the wave runs.
    #[error("wave {wave}: host {host} holds {held} {resource} of {capacity}")]
    Capacity {
        /// Wave.
        wave: u32,
        /// Host index.
        host: u32,
        /// Resource.
        resource: &'static str,
        /// Held during the wave.
        held: f64,
        /// Capacity.
        capacity: f64,
    },
    /// Configured sizes exceed the overcommit ratio on a target.
    #[error("wave {wave}: host {host} exceeds its {resource} overcommit ratio")]
    Overcommit {
        /// Wave.
        wave: u32,
        /// Host index.
        host: u32,
        /// Resource.
        resource: &'static str,
    },
    /// A VM goes where a hard rule forbids it.
    #[error("wave {wave}: VM {vm} moves to host {host}, which {rule}")]
    Forbidden {
        /// Wave.
        wave: u32,
        /// VM index.
        vm: u32,
        /// Host index.
        host: u32,
        /// What forbids it.
        rule: &'static str,
    },
    /// Two members of an anti-affinity group share a host during or after a wave.
    #[error("wave {wave}: anti-affinity group {group} has two VMs on host {host}")]
    AntiAffinity {
        /// Wave.
        wave: u32,
        /// Group index.
        group: usize,
        /// Host index.
        host: u32,
    },
    /// Too many concurrent migrations.
    #[error("wave {wave}: {count} migrations on {scope}, limit {limit}")]
    Concurrency {
        /// Wave.
        wave: u32,
        /// `host N` or `cluster`.
        scope: String,
        /// Migrations.
        count: u32,
        /// Limit.
        limit: u32,
    },
}

/// Replays `plan` on `input` and returns the first violation.
///
/// Anti-affinity is only checked for groups that were intact before the
/// plan (a plan can only repair, never break, a group).
pub fn check_plan(
    input: &BalanceInput<'_>,
    plan: &Plan,
    limits: Concurrency,
) -> Result<(), PlanViolation> {
    let cluster = input.cluster;
    let rules = input.rules;
    let mut loads = HostLoads::new(cluster);
    let mut held_extra = vec![keel_model::Resources::ZERO; loads.hosts()];
    let mut size_extra = vec![keel_model::Resources::ZERO; loads.hosts()];
    for f in input.in_flight {
        held_extra[f.to.index()] += effective_demand(&cluster.vms[f.vm.index()]);
        size_extra[f.to.index()] += cluster.vms[f.vm.index()].size;
    }
    let intact: Vec<bool> = rules
        .anti_affinity_groups
        .iter()
        .map(|g| {
            let hosts: HashSet<HostId> = g.iter().map(|v| cluster.host_of(*v)).collect();
            hosts.len() == g.len()
        })
        .collect();
    let mut seen = HashSet::new();
    if plan.moves.windows(2).any(|w| w[0].wave > w[1].wave) {
        return Err(PlanViolation::Unordered);
    }
    let mut i = 0;
    while i < plan.moves.len() {
        let wave = plan.moves[i].wave;
        let end = i + plan.moves[i..]
            .iter()
            .take_while(|m| m.wave == wave)
            .count();
        let batch = &plan.moves[i..end];
        if batch.len() as u32 > limits.per_cluster {
            return Err(PlanViolation::Concurrency {
                wave,
                scope: "cluster".into(),
                count: batch.len() as u32,
                limit: limits.per_cluster,
            });
        }
        let mut per_host = vec![0u32; loads.hosts()];
        let mut incoming = vec![keel_model::Resources::ZERO; loads.hosts()];
        let mut incoming_size = vec![keel_model::Resources::ZERO; loads.hosts()];
        for m in batch {
            if !seen.insert(m.vm) {
                return Err(PlanViolation::MovedTwice { vm: m.vm.0 });
            }
            let actual = loads.placement[m.vm.index()];
            if actual != m.from {
                return Err(PlanViolation::WrongSource {
                    vm: m.vm.0,
                    from: m.from.0,
                    actual: actual.0,
                });
            }
            let forbidden = if rules.maintenance[m.to.index()] {
                Some("is in maintenance")
            } else if !rules.host_allowed(m.vm, m.to) {
                Some("a VM-host rule or pin excludes")
            } else {
                None
            };
            if let Some(rule) = forbidden {
                return Err(PlanViolation::Forbidden {
                    wave,
                    vm: m.vm.0,
                    host: m.to.0,
                    rule,
                });
            }
            for h in [m.from, m.to] {
                per_host[h.index()] += 1;
                if per_host[h.index()] > limits.per_host {
                    return Err(PlanViolation::Concurrency {
                        wave,
                        scope: format!("host {}", h.0),
                        count: per_host[h.index()],
                        limit: limits.per_host,
                    });
                }
            }
            incoming[m.to.index()] += loads.vm_demand[m.vm.index()];
            incoming_size[m.to.index()] += cluster.vms[m.vm.index()].size;
        }
        // During the wave: targets hold what they had plus what arrives.
        for h in 0..loads.hosts() {
            if incoming[h] == keel_model::Resources::ZERO
                && incoming_size[h] == keel_model::Resources::ZERO
            {
                continue;
            }
            let held = loads.demand[h] + held_extra[h] + incoming[h];
            let capacity = loads.capacity[h];
            for r in Resource::ALL {
                if capacity.get(r) > 0.0 && held.get(r) > capacity.get(r) * (1.0 + 1e-6) {
                    return Err(PlanViolation::Capacity {
                        wave,
                        host: h as u32,
                        resource: r.name(),
                        held: held.get(r),
                        capacity: capacity.get(r),
                    });
                }
            }
            let sized = loads.size[h] + size_extra[h] + incoming_size[h];
            let limit = overcommit_limit(&capacity, &rules.overcommit);
            for r in [Resource::Cpu, Resource::Memory] {
                if sized.get(r) > limit.get(r) * (1.0 + 1e-6) {
                    return Err(PlanViolation::Overcommit {
                        wave,
                        host: h as u32,
                        resource: r.name(),
                    });
                }
            }
        }
        // Anti-affinity during the wave: a migrating VM is on both hosts.
        for (g, members) in rules.anti_affinity_groups.iter().enumerate() {
            if !intact[g] {
                continue;
            }
            let mut occupied: HashSet<HostId> = HashSet::new();
            for &vm in members {
                let mut hosts = vec![loads.placement[vm.index()]];
                if let Some(m) = batch.iter().find(|m| m.vm == vm) {
                    hosts.push(m.to);
                }
                for h in hosts {
                    if !occupied.insert(h) {
                        return Err(PlanViolation::AntiAffinity {
                            wave,
                            group: g,
                            host: h.0,
                        });
                    }
                }
            }
        }
        for m in batch {
            loads.apply_move(m.vm, cluster.vms[m.vm.index()].size, m.to);
        }
        i = end;
    }
    Ok(())
}
