//! ProxLB (gyptazy/ProxLB), re-implemented from its sources:
//!
//! - `proxlb/models/calculations.py`, `get_balanciness`: for the configured
//!   `method` (memory, cpu or disk) and `mode` (`used` or `assigned`), the
//!   balanciness is the highest minus the lowest node percentage
//!   `{method}_{mode}_percent`; balancing is needed when it exceeds
//!   `balanciness` (points), or when an optional `{method}_threshold` is set
//!   and the highest node reaches it.
//! - same file, `relocate_guests`: guests are processed by "affinity group"
//!   (`proxlb/models/groups.py` gives every guest without an affinity tag a
//!   group of its own), groups sorted by member count ascending, then by the
//!   group's `memory_used`, ascending unless `balance_larger_guests_first`
//!   (default False). Before each group the balanciness is checked again and
//!   the loop ends once it is fine. A guest is moved only while its node is
//!   the most loaded one, to the least loaded node not in maintenance
//!   (`get_most_free_node`), restricted to its pinned nodes (`plb_pin_*`
//!   tags or a pool's `pin` list; pools are strict by default).
//! - same file, `validate_node_resources`: the only capacity check is
//!   `guest memory_used < target memory_free`. CPU and disk are never
//!   checked, so a memory-balanced move can overcommit the target's CPU:
//!   this known flaw is reproduced on purpose.
//! - `update_node_resources`: after a move, both nodes' used and assigned
//!   amounts are updated, so later decisions see the moved guest.
//! - `proxlb/main.py`: one run computes the whole plan, then
//!   `models/balancing.py` executes it; the default `parallel: False` runs
//!   one migration at a time and each is awaited (`max_job_validation`)
//!   before the next run can start. Guests tagged `plb_ignore_*` never move;
//!   `plb_affinity_*` keeps guests together, `plb_anti_affinity_*` apart.
//! - `config/proxlb_example.yaml`: `balanciness: 5`, `method: memory`,
//!   `mode: used`, `balance_larger_guests_first: False`.
//!
//! Mapping onto Keel: `used` = the VMs' `demand`, `assigned` = their
//! configured `size`; memory free = capacity minus the VMs' memory demand in
//! both modes (ProxLB compares used memory there too). `plb_ignore` = pinned
//! VMs; `plb_pin` = hard VM-host rules; `plb_affinity` groups = Keel
//! affinity groups, moved together (a group that cannot move whole stays);
//! `plb_anti_affinity` = Keel anti-affinity, enforced by never choosing a
//! host where a peer runs or is heading. One [`Balancer::plan`] call is one
//! ProxLB run; moves go `parallel_jobs` per wave (1 = sequential).
//!
//! Differences, each deliberate:
//! - The issue specifies a default balanciness of 5 points, as ProxLB's
//!   example config; the code's built-in default is 10.
//! - The least loaded node is recomputed before every group (as the issue
//!   asks, and as ProxLB 1.1.2's `relocate_guests` did); the latest stored
//!   `relocate_guests` reuses the node `main.py` found once before the loop.
//! - Sort key: `groups.py` fills a group's `memory_used` with the guests'
//!   `cpu_used` (a bug), so ProxLB actually orders by CPU usage; that is
//!   what is done here (sum of the members' CPU demand).
//! - "Most loaded" for the move condition uses the configured mode; ProxLB
//!   always compares `{method}_used_percent` there.
//! - Hosts in maintenance are left out of the balanciness and never hold a
//!   source; ProxLB counts them and first evacuates their guests
//!   (`relocate_guests_on_maintenance_nodes`), which is not reproduced.
//! - ProxLB's own anti-affinity assignment (first node not yet used by the
//!   group, in node order) is replaced by the Keel rule above.
//! - `disk` balances Keel's disk I/O, not storage space.
//! - While any migration is in flight the run does nothing: a ProxLB run
//!   does not end before its migrations do.

use super::{Guard, PlanBuilder};
use crate::balance::{BalanceInput, Balancer, Plan};
use crate::PolicyError;
use keel_model::{HostId, Resource, VmId};
use serde::{Deserialize, Serialize};

/// Which resource ProxLB balances (`balancing.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxLbMethod {
    /// Memory (the default).
    #[default]
    Memory,
    /// CPU.
    Cpu,
    /// Disk: Keel's disk I/O (ProxLB measures storage space).
    Disk,
}

impl ProxLbMethod {
    /// The Keel resource it reads.
    pub fn resource(self) -> Resource {
        match self {
            ProxLbMethod::Memory => Resource::Memory,
            ProxLbMethod::Cpu => Resource::Cpu,
            ProxLbMethod::Disk => Resource::Disk,
        }
    }
}

/// What ProxLB counts on a node (`balancing.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxLbMode {
    /// Measured usage: the VMs' demand (the default).
    #[default]
    Used,
    /// Assigned resources: the VMs' configured sizes.
    Assigned,
}

/// ProxLB settings (the `balancing` section of its config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxLbConfig {
    /// Balanced resource.
    pub method: ProxLbMethod,
    /// Used or assigned amounts.
    pub mode: ProxLbMode,
    /// Largest tolerated spread between the most and least loaded node, in
    /// percentage points.
    pub balanciness: f64,
    /// `{method}_threshold`: balance also when the most loaded node reaches
    /// this percentage. `None` = not set.
    pub threshold: Option<f64>,
    /// `balance_larger_guests_first`.
    pub larger_guests_first: bool,
    /// Migrations run at once (`parallel_jobs` with `parallel: True`; 1 =
    /// the default sequential execution).
    pub parallel_jobs: u32,
}

impl Default for ProxLbConfig {
    /// Memory, used, 5 points, no threshold, smaller guests first, sequential.
    fn default() -> Self {
        Self {
            method: ProxLbMethod::Memory,
            mode: ProxLbMode::Used,
            balanciness: 5.0,
            threshold: None,
            larger_guests_first: false,
            parallel_jobs: 1,
        }
    }
}

/// ProxLB's balanciness-driven balancer. Stateless between runs.
#[derive(Debug, Clone, Default)]
pub struct ProxLb {
    config: ProxLbConfig,
}

/// A guest or an affinity group, in processing order.
struct Group {
    members: Vec<VmId>,
    key: f64,
}

/// Node amounts as ProxLB tracks them during a run.
struct Nodes {
    /// Per host: amount of the balanced resource (used or assigned).
    amount: Vec<f64>,
    /// Per host: capacity of the balanced resource.
    capacity: Vec<f64>,
    /// Per host: memory used (demand), for the free-memory check.
    memory_used: Vec<f64>,
    /// Per host: takes part (not in maintenance, has capacity).
    eligible: Vec<bool>,
}

impl Nodes {
    fn percent(&self, h: usize) -> f64 {
        self.amount[h] / self.capacity[h] * 100.0
    }

    /// First most loaded and first least loaded eligible host, with their
    /// percentages.
    fn extremes(&self) -> Option<((usize, f64), (usize, f64))> {
        let mut hi: Option<(usize, f64)> = None;
        let mut lo: Option<(usize, f64)> = None;
        for h in (0..self.amount.len()).filter(|&h| self.eligible[h]) {
            let p = self.percent(h);
            if hi.is_none_or(|(_, v)| p > v) {
                hi = Some((h, p));
            }
            if lo.is_none_or(|(_, v)| p < v) {
                lo = Some((h, p));
            }
        }
        Some((hi?, lo?))
    }
}

impl ProxLb {
    /// A ProxLB balancer with `config`.
    pub fn new(config: ProxLbConfig) -> Self {
        Self { config }
    }

    /// Its settings.
    pub fn config(&self) -> &ProxLbConfig {
        &self.config
    }

    fn nodes(&self, input: &BalanceInput<'_>, guard: &Guard<'_>) -> Nodes {
        let c = input.cluster;
        let r = self.config.method.resource();
        let n = c.hosts.len();
        let capacity: Vec<f64> = c.hosts.iter().map(|h| h.capacity.get(r)).collect();
        let mut nodes = Nodes {
            amount: vec![0.0; n],
            eligible: (0..n)
                .map(|h| !guard.in_maintenance(HostId(h as u32)) && capacity[h] > 0.0)
                .collect(),
            capacity,
            memory_used: vec![0.0; n],
        };
        for (vm, host) in c.vms.iter().zip(&c.placement) {
            let h = host.index();
            if h < n {
                nodes.amount[h] += self.amount(vm);
                nodes.memory_used[h] += vm.demand.memory_bytes;
            }
        }
        nodes
    }

    fn amount(&self, vm: &keel_model::VmInfo) -> f64 {
        let r = self.config.method.resource();
        match self.config.mode {
            ProxLbMode::Used => vm.demand.get(r),
            ProxLbMode::Assigned => vm.size.get(r),
        }
    }

    /// Guests and affinity groups, sorted as ProxLB sorts them.
    fn groups(input: &BalanceInput<'_>, guard: &Guard<'_>, larger_first: bool) -> Vec<Group> {
        let vms = &input.cluster.vms;
        let mut groups: Vec<Group> = Vec::new();
        for i in 0..vms.len() {
            let vm = VmId(i as u32);
            let mut members = match guard.affinity_group(vm) {
                Some(g) if g.iter().min() != Some(&vm) => continue,
                Some(g) => g.to_vec(),
                None => vec![vm],
            };
            members.sort_unstable();
            let key = members
                .iter()
                .filter_map(|m| vms.get(m.index()))
                .map(|v| v.demand.cpu_cores)
                .sum();
            groups.push(Group { members, key });
        }
        groups.sort_by(|a, b| {
            let by_key = if larger_first {
                b.key.total_cmp(&a.key)
            } else {
                a.key.total_cmp(&b.key)
            };
            a.members.len().cmp(&b.members.len()).then(by_key)
        });
        groups
    }
}

impl Balancer for ProxLb {
    fn name(&self) -> &'static str {
        "proxlb"
    }

    fn plan(&mut self, input: &BalanceInput<'_>, _now_seconds: f64) -> Result<Plan, PolicyError> {
        let mut builder = PlanBuilder::new(input);
        if !input.in_flight.is_empty() {
            return Ok(builder.finish());
        }
        let guard = Guard::new(input);
        let mut nodes = self.nodes(input, &guard);
        let cfg = self.config;
        let parallel = cfg.parallel_jobs.max(1) as usize;
        let mut forbidden = Vec::new();
        for group in Self::groups(input, &guard, cfg.larger_guests_first) {
            let Some(((hi, hi_pct), (_, lo_pct))) = nodes.extremes() else {
                break;
            };
            let balance =
                hi_pct - lo_pct > cfg.balanciness || cfg.threshold.is_some_and(|t| hi_pct >= t);
            if !balance {
                break;
            }
            let members = &group.members;
            let on_hi = members
                .iter()
                .all(|&m| builder.placement().get(m.index()).map(|h| h.index()) == Some(hi));
            if !on_hi || !members.iter().all(|&m| guard.movable(m)) {
                continue;
            }
            forbidden.clear();
            for &m in members {
                guard.anti_affinity_hosts(m, builder.placement(), members, &mut forbidden);
            }
            // The least loaded node this group may go to.
            let target = (0..nodes.amount.len())
                .filter(|&h| {
                    let to = HostId(h as u32);
                    h != hi
                        && nodes.eligible[h]
                        && members.iter().all(|&m| guard.target_ok(m, to))
                        && forbidden.binary_search(&to).is_err()
                })
                .min_by(|&a, &b| nodes.percent(a).total_cmp(&nodes.percent(b)));
            let Some(t) = target else { continue };
            // ProxLB's only check: each guest's used memory below the
            // target's free memory.
            let mut free = input.cluster.hosts[t].capacity.memory_bytes - nodes.memory_used[t];
            let fits = members.iter().all(|&m| {
                let need = input.cluster.vms[m.index()].demand.memory_bytes;
                let ok = need < free;
                free -= need;
                ok
            });
            if !fits {
                continue;
            }
            for &m in members {
                let vm = &input.cluster.vms[m.index()];
                let amount = self.amount(vm);
                nodes.amount[hi] -= amount;
                nodes.amount[t] += amount;
                nodes.memory_used[hi] -= vm.demand.memory_bytes;
                nodes.memory_used[t] += vm.demand.memory_bytes;
                let wave = (builder.len() / parallel) as u32;
                builder.push(m, HostId(t as u32), wave);
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
    use keel_model::rules::VmGroupRule;
    use keel_model::Rules;

    /// a 75 % memory, b 50 %, c 12.5 %; a's VMs use 1..6 cores.
    fn spread() -> keel_model::Cluster {
        let mut vms: Vec<_> = (1..=6)
            .map(|i| vm(&format!("v{i}"), "a", i as f64, 8.0))
            .collect();
        vms.extend((1..=4).map(|i| vm(&format!("u{i}"), "b", 1.0, 8.0)));
        vms.push(vm("x1", "c", 1.0, 8.0));
        cluster(
            vec![
                host("a", 32.0, 64.0),
                host("b", 32.0, 64.0),
                host("c", 32.0, 64.0),
            ],
            vms,
        )
    }

    #[test]
    fn moves_small_guests_from_the_most_to_the_least_loaded_node() {
        let c = spread();
        let rules = compile(&c, &Rules::default());
        let plan = round(&mut ProxLb::default(), &c, &rules, &[]);
        // a 75 -> 62.5 -> 50 -> 37.5 % while c fills up; then b (50 %) is
        // the most loaded and none of a's remaining guests qualifies.
        assert_eq!(
            moves(&c, &plan),
            vec![
                ("v1".into(), "a".into(), "c".into()),
                ("v2".into(), "a".into(), "c".into()),
                ("v3".into(), "a".into(), "c".into()),
            ]
        );
        let waves: Vec<u32> = plan.moves.iter().map(|m| m.wave).collect();
        assert_eq!(waves, vec![0, 1, 2], "sequential by default");

        let larger = ProxLbConfig {
            larger_guests_first: true,
            parallel_jobs: 5,
            ..ProxLbConfig::default()
        };
        let plan = round(&mut ProxLb::new(larger), &c, &rules, &[]);
        let m = moves(&c, &plan);
        assert_eq!(m[0], ("v6".into(), "a".into(), "c".into()));
        assert!(plan.moves.iter().all(|m| m.wave == 0));
    }

    #[test]
    fn checks_memory_only_and_so_can_overcommit_cpu() {
        // a is memory-heavy, b CPU-heavy with free memory.
        let c = cluster(
            vec![host("a", 16.0, 64.0), host("b", 16.0, 64.0)],
            vec![vm("mem", "a", 2.0, 40.0), vm("cpu", "b", 15.0, 4.0)],
        );
        // "cpu" carries a plb_ignore tag, or ProxLB would next move it from
        // b (now the most memory-loaded) back to a.
        let pin = Rules {
            pin: vec![VmGroupRule {
                name: "plb_ignore".into(),
                vms: vec!["cpu".into()],
            }],
            ..Rules::default()
        };
        let rules = compile(&c, &pin);
        let plan = round(&mut ProxLb::default(), &c, &rules, &[]);
        assert_eq!(
            moves(&c, &plan),
            vec![("mem".into(), "a".into(), "b".into())]
        );
        assert!(
            plan.predicted_loads[1].cpu_cores > 1.0,
            "b's CPU overcommitted"
        );

        // Not enough free memory on the least loaded node: no move.
        let c = cluster(
            vec![host("a", 16.0, 64.0), host("b", 16.0, 64.0)],
            vec![vm("big", "a", 1.0, 60.0), vm("other", "b", 1.0, 10.0)],
        );
        let rules = compile(&c, &Rules::default());
        assert!(round(&mut ProxLb::default(), &c, &rules, &[])
            .moves
            .is_empty());
    }

    #[test]
    fn balanced_cluster_or_running_migrations_mean_no_run() {
        let c = cluster(
            vec![host("a", 16.0, 64.0), host("b", 16.0, 64.0)],
            vec![vm("p", "a", 1.0, 20.0), vm("q", "b", 1.0, 18.0)],
        );
        let rules = compile(&c, &Rules::default());
        assert!(round(&mut ProxLb::default(), &c, &rules, &[])
            .moves
            .is_empty());

        let c = spread();
        let rules = compile(&c, &Rules::default());
        let flying = [InFlight {
            vm: VmId(10),
            from: HostId(2),
            to: HostId(1),
        }];
        assert!(round(&mut ProxLb::default(), &c, &rules, &flying)
            .moves
            .is_empty());
    }
}
