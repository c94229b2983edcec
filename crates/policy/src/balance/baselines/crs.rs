//! Proxmox VE's cluster resource scheduler (CRS), `dynamic` mode with
//! automatic rebalancing ("ha-auto-rebalance"), re-implemented from its
//! sources:
//!
//! - proxmox/proxmox-rs, `proxmox-resource-scheduling/src/node.rs`: a node's
//!   load is `(cpu / maxcpu + mem / maxmem) / 2` over the node's running
//!   usage (`NodeStats::load`); moving a resource subtracts its measured
//!   `cpu` / `mem` from the source (clamped at 0) and adds them to the target
//!   (`remove_running_resource` / `add_running_resource`).
//! - same crate, `src/scheduler.rs`: the node imbalance is the coefficient of
//!   variation (population standard deviation over mean) of node loads;
//!   `score_best_balancing_migration_candidates` scores every candidate by
//!   the imbalance after it ("bruteforce", the default method; the other is
//!   TOPSIS) and keeps the lowest. It checks no capacity at all.
//! - pve-devel, "[PATCH ha-manager] implement automatic rebalancing"
//!   (D. Kral, 2026) and the datacenter.cfg `crs` options: act when the
//!   imbalance exceeds `ha-auto-rebalance-threshold` (default 30 %) for
//!   `ha-auto-rebalance-hold-duration` consecutive HA rounds (default 3),
//!   pick the best resource motion and queue it only if it improves the
//!   imbalance by `ha-auto-rebalance-margin` (default 10 %). Candidates are
//!   HA resources; resources in a strict positive resource-affinity rule move
//!   as one bundle; targets that break the HA rules (node affinity, negative
//!   resource affinity) are pruned before scoring. Nodes in HA maintenance
//!   mode are not targets.
//! - pve-devel, "clamp load imbalance to unit interval" (D. Rusovac, 2026):
//!   the CV is divided by its upper bound sqrt(n - 1), so it lies in 0..=1.
//!
//! As implemented here (the specification; see "Differences"):
//! node load as above over each VM's `demand` (CRS dynamic uses measured
//! usage); imbalance = CV / sqrt(n - 1) over hosts not in maintenance;
//! after `hold_rounds` consecutive rounds above `threshold`, try every
//! movable VM (or affinity bundle) on every other allowed host, keep the
//! move with the lowest resulting imbalance, and start it if
//! `(before - after) / before >= min_improvement`. One migration at a time:
//! while anything is in flight the round does nothing (and the hold counter
//! neither grows nor resets). Targets: not in maintenance, allowed by hard
//! VM-host rules (HA node affinity, strict), no anti-affinity peer there or
//! heading there (negative resource affinity). Pinned VMs are "HA resources
//! with automatic rebalancing disabled": never candidates.
//!
//! Differences from the real CRS, each deliberate:
//! - Imbalance is CV / sqrt(n - 1) as the issue specifies; the released
//!   `calculate_node_imbalance` returns the plain CV (the clamped form is a
//!   2026 follow-up series). With the plain CV a 0.3 threshold triggers
//!   earlier on clusters of more than two hosts.
//! - No capacity check, like the real bruteforce scorer. `check_overcommit`
//!   (off by default) adds a Keel-side check of configured sizes against the
//!   overcommit ratios for experiments.
//! - After a queued move the hold counter restarts (each migration needs a
//!   fresh `hold_rounds` of sustained imbalance); the patch's exact counter
//!   handling after queueing was not recoverable from the published text.
//! - Every VM is treated as an HA resource; non-HA guests only add load in
//!   the real one. Ties are broken by VM then host index (the real one by
//!   the migration's service id and node names).

use super::{fits_overcommit, ratio, Guard, PlanBuilder};
use crate::balance::imbalance::LoadMoments;
use crate::balance::{BalanceInput, Balancer, Plan};
use crate::PolicyError;
use keel_model::{HostId, Resources, VmId};
use serde::{Deserialize, Serialize};

/// CRS rebalancing settings (datacenter.cfg `crs: ha-auto-rebalance-*`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrsConfig {
    /// Imbalance (0..=1) above which a round counts (`ha-auto-rebalance-threshold`).
    pub threshold: f64,
    /// Consecutive rounds above the threshold before a move (`ha-auto-rebalance-hold-duration`).
    pub hold_rounds: u32,
    /// Minimum relative imbalance improvement of the move (`ha-auto-rebalance-margin`).
    pub min_improvement: f64,
    /// Keel addition, off in the real CRS: refuse targets whose configured
    /// sizes would exceed the rules' overcommit ratios.
    pub check_overcommit: bool,
}

impl Default for CrsConfig {
    /// Proxmox VE's defaults: 30 %, 3 rounds, 10 %, no capacity check.
    fn default() -> Self {
        Self {
            threshold: 0.3,
            hold_rounds: 3,
            min_improvement: 0.1,
            check_overcommit: false,
        }
    }
}

/// Proxmox CRS dynamic-load automatic rebalancing. Keeps the count of
/// consecutive rounds above the threshold between calls.
#[derive(Debug, Clone, Default)]
pub struct Crs {
    config: CrsConfig,
    rounds_above: u32,
}

/// Per-host usage as CRS sees it.
struct Nodes {
    cpu: Vec<f64>,
    mem: Vec<f64>,
    maxcpu: Vec<f64>,
    maxmem: Vec<f64>,
    /// Takes part in the imbalance and may receive VMs.
    online: Vec<bool>,
    load: Vec<f64>,
}

fn node_load(cpu: f64, mem: f64, maxcpu: f64, maxmem: f64) -> f64 {
    (ratio(cpu, maxcpu) + ratio(mem, maxmem)) / 2.0
}

impl Nodes {
    fn new(input: &BalanceInput<'_>, guard: &Guard<'_>) -> Self {
        let c = input.cluster;
        let n = c.hosts.len();
        let mut nodes = Self {
            cpu: vec![0.0; n],
            mem: vec![0.0; n],
            maxcpu: c.hosts.iter().map(|h| h.capacity.cpu_cores).collect(),
            maxmem: c.hosts.iter().map(|h| h.capacity.memory_bytes).collect(),
            online: (0..n)
                .map(|h| {
                    let cap = c.hosts[h].capacity;
                    !guard.in_maintenance(HostId(h as u32))
                        && (cap.cpu_cores > 0.0 || cap.memory_bytes > 0.0)
                })
                .collect(),
            load: vec![0.0; n],
        };
        for (vm, host) in c.vms.iter().zip(&c.placement) {
            if let Some(cpu) = nodes.cpu.get_mut(host.index()) {
                *cpu += vm.demand.cpu_cores;
                nodes.mem[host.index()] += vm.demand.memory_bytes;
            }
        }
        for h in 0..n {
            nodes.load[h] = node_load(nodes.cpu[h], nodes.mem[h], nodes.maxcpu[h], nodes.maxmem[h]);
        }
        nodes
    }

    fn moments(&self) -> LoadMoments {
        let mut m = LoadMoments::default();
        for (l, _) in self.load.iter().zip(&self.online).filter(|(_, o)| **o) {
            m.n += 1;
            m.sum += l;
            m.sum_sq += l * l;
        }
        m
    }
}

/// The best motion found.
struct Best {
    members: Vec<VmId>,
    to: HostId,
    imbalance: f64,
}

impl Crs {
    /// A CRS balancer with `config`.
    pub fn new(config: CrsConfig) -> Self {
        Self {
            config,
            rounds_above: 0,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &CrsConfig {
        &self.config
    }

    /// Consecutive rounds seen above the threshold since the last move.
    pub fn rounds_above(&self) -> u32 {
        self.rounds_above
    }

    /// The cluster's imbalance as this CRS computes it: CV / sqrt(n - 1)
    /// of `(cpu / maxcpu + mem / maxmem) / 2` over hosts not in maintenance.
    pub fn imbalance(input: &BalanceInput<'_>) -> f64 {
        let guard = Guard::new(input);
        Nodes::new(input, &guard).moments().normalized()
    }

    /// Every movable VM (or affinity bundle) on every allowed host.
    fn best_move(
        &self,
        input: &BalanceInput<'_>,
        guard: &Guard<'_>,
        nodes: &Nodes,
        moments: &LoadMoments,
        builder: &PlanBuilder<'_>,
    ) -> Option<Best> {
        let placement = builder.placement();
        let mut best: Option<Best> = None;
        let mut forbidden = Vec::new();
        for (i, vm_info) in input.cluster.vms.iter().enumerate() {
            let vm = VmId(i as u32);
            let single = [vm];
            let members: &[VmId] = match guard.affinity_group(vm) {
                // A bundle is scored once, from its lowest-numbered member.
                Some(g) if g.iter().min() != Some(&vm) => continue,
                Some(g) => g,
                None => &single,
            };
            let source = placement[i];
            if !nodes.online.get(source.index()).copied().unwrap_or(false)
                || !members
                    .iter()
                    .all(|&m| guard.movable(m) && placement.get(m.index()) == Some(&source))
            {
                continue;
            }
            let (mut cpu, mut mem, mut size) = (0.0, 0.0, Resources::ZERO);
            for &m in members {
                let info = if m == vm {
                    vm_info
                } else {
                    &input.cluster.vms[m.index()]
                };
                cpu += info.demand.cpu_cores;
                mem += info.demand.memory_bytes;
                size += info.size;
            }
            if cpu <= 0.0 && mem <= 0.0 {
                continue; // moving it changes nothing
            }
            forbidden.clear();
            for &m in members {
                guard.anti_affinity_hosts(m, placement, members, &mut forbidden);
            }
            let s = source.index();
            let old_s = nodes.load[s];
            let new_s = node_load(
                (nodes.cpu[s] - cpu).max(0.0),
                (nodes.mem[s] - mem).max(0.0),
                nodes.maxcpu[s],
                nodes.maxmem[s],
            );
            let without = moments.replaced(old_s, new_s);
            for t in 0..nodes.load.len() {
                let to = HostId(t as u32);
                if t == s
                    || !nodes.online[t]
                    || !members.iter().all(|&m| guard.target_ok(m, to))
                    || forbidden.binary_search(&to).is_ok()
                    || (self.config.check_overcommit
                        && !fits_overcommit(&builder.loads, input.rules, to, size))
                {
                    continue;
                }
                let new_t = node_load(
                    nodes.cpu[t] + cpu,
                    nodes.mem[t] + mem,
                    nodes.maxcpu[t],
                    nodes.maxmem[t],
                );
                let imbalance = without.replaced(nodes.load[t], new_t).normalized();
                if best.as_ref().is_none_or(|b| imbalance < b.imbalance) {
                    best = Some(Best {
                        members: members.to_vec(),
                        to,
                        imbalance,
                    });
                }
            }
        }
        best
    }
}

impl Balancer for Crs {
    fn name(&self) -> &'static str {
        "crs"
    }

    fn plan(&mut self, input: &BalanceInput<'_>, _now_seconds: f64) -> Result<Plan, PolicyError> {
        let mut builder = PlanBuilder::new(input);
        if !input.in_flight.is_empty() {
            return Ok(builder.finish());
        }
        let guard = Guard::new(input);
        let nodes = Nodes::new(input, &guard);
        let moments = nodes.moments();
        let imbalance = moments.normalized();
        // NaN never counts as above.
        let above = imbalance > self.config.threshold;
        if moments.n < 2 || !above {
            self.rounds_above = 0;
            return Ok(builder.finish());
        }
        self.rounds_above = self.rounds_above.saturating_add(1);
        if self.rounds_above < self.config.hold_rounds {
            return Ok(builder.finish());
        }
        if let Some(best) = self.best_move(input, &guard, &nodes, &moments, &builder) {
            if (imbalance - best.imbalance) / imbalance >= self.config.min_improvement {
                for &vm in &best.members {
                    builder.push(vm, best.to, 0);
                }
                self.rounds_above = 0;
            }
        }
        Ok(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::baselines::testkit::*;
    use crate::balance::InFlight;
    use keel_model::rules::{VmGroupRule, VmHostRule};
    use keel_model::{Rules, VmHostKind};

    /// a: 4 small VMs (heavy), b and c empty-ish.
    fn skewed() -> keel_model::Cluster {
        cluster(
            vec![
                host("a", 16.0, 64.0),
                host("b", 16.0, 64.0),
                host("c", 16.0, 64.0),
            ],
            vec![
                vm("v1", "a", 4.0, 16.0),
                vm("v2", "a", 4.0, 16.0),
                vm("v3", "a", 2.0, 8.0),
                vm("v4", "a", 2.0, 8.0),
                vm("w1", "b", 1.0, 4.0),
            ],
        )
    }

    #[test]
    fn waits_for_the_hold_duration_then_makes_the_best_single_move() {
        let c = skewed();
        let rules = compile(&c, &Rules::default());
        let input = BalanceInput {
            cluster: &c,
            rules: &rules,
            in_flight: &[],
        };
        assert!(Crs::imbalance(&input) > 0.3);
        let mut crs = Crs::default();
        assert!(round(&mut crs, &c, &rules, &[]).moves.is_empty());
        assert!(round(&mut crs, &c, &rules, &[]).moves.is_empty());
        assert_eq!(crs.rounds_above(), 2);
        let plan = round(&mut crs, &c, &rules, &[]);
        // Moving a large VM to the empty host c lowers the imbalance most.
        assert_eq!(
            moves(&c, &plan),
            vec![("v1".into(), "a".into(), "c".into())]
        );
        assert_eq!(plan.moves[0].wave, 0);
        assert_eq!(crs.rounds_above(), 0);
        let after = apply(&c, &plan);
        let input_after = BalanceInput {
            cluster: &after,
            rules: &rules,
            in_flight: &[],
        };
        assert!(Crs::imbalance(&input_after) < Crs::imbalance(&input));
        assert!(plan.imbalance_after.std_dev < plan.imbalance_before.std_dev);
    }

    #[test]
    fn refuses_a_move_that_improves_less_than_the_margin() {
        // One big VM alone: moving it just swaps the hosts' roles.
        let c = cluster(
            vec![host("a", 16.0, 64.0), host("b", 16.0, 64.0)],
            vec![vm("big", "a", 12.0, 48.0)],
        );
        let rules = compile(&c, &Rules::default());
        let mut crs = Crs::new(CrsConfig {
            hold_rounds: 1,
            ..CrsConfig::default()
        });
        for _ in 0..4 {
            assert!(round(&mut crs, &c, &rules, &[]).moves.is_empty());
        }
        assert_eq!(crs.rounds_above(), 4, "still counting, never moving");
    }

    #[test]
    fn does_nothing_while_a_migration_is_in_flight() {
        let c = skewed();
        let rules = compile(&c, &Rules::default());
        let mut crs = Crs::new(CrsConfig {
            hold_rounds: 1,
            ..CrsConfig::default()
        });
        let flying = [InFlight {
            vm: VmId(4),
            from: HostId(1),
            to: HostId(2),
        }];
        assert!(round(&mut crs, &c, &rules, &flying).moves.is_empty());
        assert_eq!(crs.rounds_above(), 0);
        assert_eq!(round(&mut crs, &c, &rules, &[]).moves.len(), 1);
    }

    #[test]
    fn honours_maintenance_must_rules_and_bundles() {
        let c = skewed();
        let rules = compile(
            &c,
            &Rules {
                maintenance: vec!["c".into()],
                vm_host: vec![VmHostRule {
                    name: "v2-on-a".into(),
                    vms: vec!["v2".into()],
                    hosts: vec!["a".into()],
                    kind: VmHostKind::Must,
                    weight: 1.0,
                }],
                affinity: vec![VmGroupRule {
                    name: "pair".into(),
                    vms: vec!["v1".into(), "v3".into()],
                }],
                ..Rules::default()
            },
        );
        let mut crs = Crs::new(CrsConfig {
            hold_rounds: 1,
            ..CrsConfig::default()
        });
        let plan = round(&mut crs, &c, &rules, &[]);
        let m = moves(&c, &plan);
        assert!(!m.is_empty());
        assert!(m.iter().all(|(v, _, to)| to == "b" && v != "v2"), "{m:?}");
        let names: Vec<&str> = m.iter().map(|(v, _, _)| v.as_str()).collect();
        assert!(names.contains(&"v1") == names.contains(&"v3"), "{m:?}");
    }
}
