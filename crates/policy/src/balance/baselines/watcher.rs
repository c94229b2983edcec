//! OpenStack Watcher's `workload_stabilization` strategy, re-implemented from
//! its sources:
//!
//! - openstack/watcher,
//!   `watcher/decision_engine/strategy/strategies/workload_stabilization.py`:
//!   host loads are normalised per metric (`normalize_hosts_load`: RAM used
//!   over the node's memory; `instance_cpu_usage` scaled by vCPUs over the
//!   host's vCPUs, i.e. cores used over host cores); `get_sd` is the
//!   population standard deviation over the available (online, enabled)
//!   compute nodes; `check_threshold` triggers when any metric's deviation
//!   exceeds its `thresholds` entry; `calculate_weighted_sd` sums
//!   `weight x sd` over the metrics; `simulate_migrations` tries instances
//!   (ACTIVE or PAUSED, not excluded) on other hosts (`host_choice`: `retry`
//!   draws `retry_count` random hosts, `fullsearch` tries all) and keeps those
//!   lowering the weighted deviation; `do_execute` applies them greedily in
//!   order of resulting deviation while each still lowers it, skips targets
//!   whose disk capacity is smaller than the instance's disk (its only
//!   capacity check), and stops once a metric falls below its threshold.
//!   Defaults of that strategy as first released (the 2016 oslo.config
//!   options): metrics `cpu_util` and `memory.resident`, thresholds 0.2 each,
//!   weights 1.0 each. `instance_metrics` maps each instance metric to the
//!   host metric it is compared with; `periods` / `aggregation_method` set
//!   the averaging windows of the measurements.
//! - `watcher/decision_engine/planner/weight.py`: the default planner runs
//!   `migrate` actions with `parallelization` 2: chunks of two migrations,
//!   each chunk after the previous one.
//!
//! As implemented here (the specification): both metrics on each
//! VM's `demand` over host capacity, threshold 0.2 and weight 1.0 each. When
//! a metric's deviation exceeds its threshold, simulate every move of every
//! movable VM on the most loaded host of each metric to every other allowed
//! host (a full search, with O(1) incremental deviations), apply the move
//! with the lowest weighted deviation if it lowers the current one, and
//! repeat until every metric is at or below its threshold, no move helps, or
//! `max_moves` (2) moves are planned. Moves go `parallel_migrations` (2) per
//! wave.
//!
//! Rules: the strategy itself ignores affinity, but Watcher's migrate action
//! asks Nova to live-migrate to a given host without forcing it, so Nova's
//! scheduler filters (server-group affinity and anti-affinity) reject moves
//! that break them. Here: VMs in an affinity group never move (moving one
//! alone breaks the group), targets with an anti-affinity peer are skipped,
//! hard VM-host rules and maintenance (a disabled compute service is not
//! "available") are respected, pinned VMs (`watcher_exclude`) never move,
//! in-flight VMs never move. Watcher does not wait for running migrations
//! (continuous audits run on their interval regardless); neither does this.
//!
//! Differences, each deliberate:
//! - Defaults follow the issue (cpu and memory, 0.2): the current schema's
//!   defaults are `instance_cpu_usage` only with threshold 0.1.
//! - At most `max_moves` (2) moves per round, all in one wave; the real
//!   strategy plans every improving move of an audit and the weight planner
//!   runs them two at a time. `max_moves: usize::MAX` gives that behaviour
//!   (waves of `parallel_migrations`).
//! - The candidate set is recomputed after each applied move (best single
//!   move, then the next) rather than one list sorted before applying; the
//!   sources are the most loaded host per metric instead of every host, and
//!   every other host is tried (`fullsearch`) instead of `retry`'s one
//!   random host, so the result is deterministic.
//! - The loop runs while any metric is above its threshold; the real
//!   `do_execute` stops as soon as any metric is below its own, which with
//!   two metrics can end it after one candidate. `stop_when_any_below`
//!   selects that rule.
//! - No disk-capacity check (Keel hosts have no disk size); measurements
//!   are the current demand, not `periods`-averaged samples.

use super::{ratio, Guard, PlanBuilder};
use crate::balance::imbalance::LoadMoments;
use crate::balance::{BalanceInput, Balancer, Plan};
use crate::PolicyError;
use keel_model::{HostId, Resource, VmId};
use serde::{Deserialize, Serialize};

/// One Watcher metric: the deviation that triggers balancing and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatcherMetric {
    /// Trigger: standard deviation of normalised host load (0..1).
    pub threshold: f64,
    /// Weight in the combined deviation.
    pub weight: f64,
}

impl Default for WatcherMetric {
    /// Threshold 0.2, weight 1.0.
    fn default() -> Self {
        Self {
            threshold: 0.2,
            weight: 1.0,
        }
    }
}

/// `workload_stabilization` settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatcherConfig {
    /// CPU usage metric (`instance_cpu_usage`); `None` = not used.
    pub cpu: Option<WatcherMetric>,
    /// RAM usage metric (`instance_ram_usage`); `None` = not used.
    pub memory: Option<WatcherMetric>,
    /// Most moves planned in one round.
    pub max_moves: usize,
    /// Migrations per wave (the weight planner's `migrate` parallelization).
    pub parallel_migrations: u32,
    /// Stop once any metric is below its threshold (the real `do_execute`)
    /// instead of once all are at or below.
    pub stop_when_any_below: bool,
}

impl Default for WatcherConfig {
    /// CPU and memory at 0.2 / 1.0, two moves, two per wave.
    fn default() -> Self {
        Self {
            cpu: Some(WatcherMetric::default()),
            memory: Some(WatcherMetric::default()),
            max_moves: 2,
            parallel_migrations: 2,
            stop_when_any_below: false,
        }
    }
}

/// Watcher's standard-deviation workload stabilization. Stateless.
#[derive(Debug, Clone, Default)]
pub struct Watcher {
    config: WatcherConfig,
}

/// Normalised loads per metric, for the hosts taking part.
struct State {
    metrics: Vec<(Resource, WatcherMetric)>,
    /// Per host: available (not in maintenance, capacity for every metric).
    available: Vec<bool>,
    /// Per host and metric: amount used.
    amount: Vec<[f64; 2]>,
    /// Per host and metric: capacity.
    capacity: Vec<[f64; 2]>,
    moments: [LoadMoments; 2],
}

impl State {
    fn load(&self, h: usize, k: usize) -> f64 {
        ratio(self.amount[h][k], self.capacity[h][k])
    }

    fn recompute(&mut self) {
        self.moments = [LoadMoments::default(); 2];
        for h in (0..self.amount.len()).filter(|&h| self.available[h]) {
            for k in 0..self.metrics.len() {
                let l = self.load(h, k);
                self.moments[k].n += 1;
                self.moments[k].sum += l;
                self.moments[k].sum_sq += l * l;
            }
        }
    }

    fn weighted_sd(&self) -> f64 {
        (self.metrics.iter().enumerate())
            .map(|(k, (_, m))| m.weight * self.moments[k].std_dev())
            .sum()
    }

    fn above(&self, k: usize) -> bool {
        self.moments[k].std_dev() > self.metrics[k].1.threshold
    }

    fn below(&self, k: usize) -> bool {
        self.moments[k].std_dev() < self.metrics[k].1.threshold
    }
}

impl Watcher {
    /// A Watcher balancer with `config`.
    pub fn new(config: WatcherConfig) -> Self {
        Self { config }
    }

    /// Its settings.
    pub fn config(&self) -> &WatcherConfig {
        &self.config
    }

    fn state(&self, input: &BalanceInput<'_>, guard: &Guard<'_>) -> State {
        let metrics: Vec<_> = [
            (Resource::Cpu, self.config.cpu),
            (Resource::Memory, self.config.memory),
        ]
        .into_iter()
        .filter_map(|(r, m)| Some((r, m?)))
        .collect();
        let c = input.cluster;
        let n = c.hosts.len();
        let mut capacity = vec![[0.0; 2]; n];
        let mut amount = vec![[0.0; 2]; n];
        for (h, host) in c.hosts.iter().enumerate() {
            for (k, (r, _)) in metrics.iter().enumerate() {
                capacity[h][k] = host.capacity.get(*r);
            }
        }
        for (vm, host) in c.vms.iter().zip(&c.placement) {
            if let Some(a) = amount.get_mut(host.index()) {
                for (k, (r, _)) in metrics.iter().enumerate() {
                    a[k] += vm.demand.get(*r);
                }
            }
        }
        let available = (0..n)
            .map(|h| {
                !guard.in_maintenance(HostId(h as u32))
                    && (0..metrics.len()).all(|k| capacity[h][k] > 0.0)
            })
            .collect();
        let mut state = State {
            metrics,
            available,
            amount,
            capacity,
            moments: [LoadMoments::default(); 2],
        };
        state.recompute();
        state
    }
}

impl Balancer for Watcher {
    fn name(&self) -> &'static str {
        "watcher"
    }

    fn plan(&mut self, input: &BalanceInput<'_>, _now_seconds: f64) -> Result<Plan, PolicyError> {
        let mut builder = PlanBuilder::new(input);
        let guard = Guard::new(input);
        let mut s = self.state(input, &guard);
        let nm = s.metrics.len();
        if nm == 0 || s.moments[0].n < 2 || !(0..nm).any(|k| s.above(k)) {
            return Ok(builder.finish());
        }
        let c = input.cluster;
        let hosts = c.hosts.len();
        let mut vms_on: Vec<Vec<VmId>> = vec![Vec::new(); hosts];
        for (i, h) in c.placement.iter().enumerate() {
            if let Some(list) = vms_on.get_mut(h.index()) {
                list.push(VmId(i as u32));
            }
        }
        let mut moved = vec![false; c.vms.len()];
        let parallel = self.config.parallel_migrations.max(1) as usize;
        let mut forbidden = Vec::new();
        while builder.len() < self.config.max_moves {
            let current = s.weighted_sd();
            // The most loaded host of each metric.
            let mut sources: Vec<usize> = (0..nm)
                .filter_map(|k| {
                    (0..hosts)
                        .filter(|&h| s.available[h])
                        .max_by(|&a, &b| s.load(a, k).total_cmp(&s.load(b, k)).then(b.cmp(&a)))
                })
                .collect();
            sources.dedup();
            let mut best: Option<(f64, VmId, usize, usize)> = None;
            for &src in &sources {
                for &vm in &vms_on[src] {
                    let info = &c.vms[vm.index()];
                    let d: Vec<f64> = s.metrics.iter().map(|(r, _)| info.demand.get(*r)).collect();
                    if moved[vm.index()]
                        || !guard.movable(vm)
                        || guard.affinity_group(vm).is_some()
                        || d.iter().all(|&x| x <= 0.0)
                    {
                        continue;
                    }
                    forbidden.clear();
                    guard.anti_affinity_hosts(vm, builder.placement(), &[], &mut forbidden);
                    for t in 0..hosts {
                        let to = HostId(t as u32);
                        if t == src
                            || !s.available[t]
                            || !guard.target_ok(vm, to)
                            || forbidden.binary_search(&to).is_ok()
                        {
                            continue;
                        }
                        let mut value = 0.0;
                        for (k, (_, metric)) in s.metrics.iter().enumerate() {
                            let new_src = ratio(s.amount[src][k] - d[k], s.capacity[src][k]);
                            let new_t = ratio(s.amount[t][k] + d[k], s.capacity[t][k]);
                            let m = s.moments[k]
                                .replaced(s.load(src, k), new_src)
                                .replaced(s.load(t, k), new_t);
                            value += metric.weight * m.std_dev();
                        }
                        if best.is_none_or(|b| value < b.0) {
                            best = Some((value, vm, src, t));
                        }
                    }
                }
            }
            let Some((value, vm, src, t)) = best else {
                break;
            };
            if value >= current {
                break;
            }
            for k in 0..nm {
                let x = c.vms[vm.index()].demand.get(s.metrics[k].0);
                s.amount[src][k] -= x;
                s.amount[t][k] += x;
            }
            s.recompute();
            vms_on[src].retain(|&v| v != vm);
            vms_on[t].push(vm);
            moved[vm.index()] = true;
            let wave = (builder.len() / parallel) as u32;
            builder.push(vm, HostId(t as u32), wave);
            let done = if self.config.stop_when_any_below {
                (0..nm).any(|k| s.below(k))
            } else {
                !(0..nm).any(|k| s.above(k))
            };
            if done {
                break;
            }
        }
        Ok(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::baselines::testkit::*;
    use keel_model::Rules;

    /// a carries eight 3-core / 12 GiB VMs (75 %); b, c, d are empty.
    fn piled() -> keel_model::Cluster {
        let vms = (0..8)
            .map(|i| vm(&format!("v{i}"), "a", 3.0, 12.0))
            .collect();
        let hosts = ["a", "b", "c", "d"].map(|n| host(n, 32.0, 128.0)).to_vec();
        cluster(hosts, vms)
    }

    #[test]
    fn caps_at_two_moves_per_round() {
        let c = piled();
        let rules = compile(&c, &Rules::default());
        let plan = round(&mut Watcher::default(), &c, &rules, &[]);
        // sd 0.32 -> 0.22 after two moves: still above 0.2, but capped.
        assert_eq!(
            moves(&c, &plan),
            vec![
                ("v0".into(), "a".into(), "b".into()),
                ("v1".into(), "a".into(), "c".into()),
            ]
        );
        assert!(plan.moves.iter().all(|m| m.wave == 0));

        // Uncapped, the third move brings it to 0.16 and it stops there.
        let uncapped = WatcherConfig {
            max_moves: usize::MAX,
            ..WatcherConfig::default()
        };
        let plan = round(&mut Watcher::new(uncapped), &c, &rules, &[]);
        let waves: Vec<u32> = plan.moves.iter().map(|m| m.wave).collect();
        assert_eq!(waves, vec![0, 0, 1]);
    }

    #[test]
    fn stops_once_the_deviation_is_below_the_threshold() {
        // 75 % against 25 %: sd 0.25; one move evens it out.
        let c = cluster(
            vec![host("a", 16.0, 64.0), host("b", 16.0, 64.0)],
            vec![
                vm("v1", "a", 4.0, 16.0),
                vm("v2", "a", 4.0, 16.0),
                vm("v3", "a", 4.0, 16.0),
                vm("w1", "b", 4.0, 16.0),
            ],
        );
        let rules = compile(&c, &Rules::default());
        let plan = round(&mut Watcher::default(), &c, &rules, &[]);
        assert_eq!(
            moves(&c, &plan),
            vec![("v1".into(), "a".into(), "b".into())]
        );
        assert!(plan.imbalance_after.std_dev < 1e-9);

        // 60 % against 40 %: sd 0.1, below the threshold: nothing to do.
        let c = cluster(
            vec![host("a", 10.0, 10.0), host("b", 10.0, 10.0)],
            vec![vm("p", "a", 6.0, 6.0), vm("q", "b", 4.0, 4.0)],
        );
        let rules = compile(&c, &Rules::default());
        assert!(round(&mut Watcher::default(), &c, &rules, &[])
            .moves
            .is_empty());
    }
}
