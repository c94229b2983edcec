//! Placement rules as an operator writes them (TOML), and their compiled,
//! indexed form.
//!
//! Hard rules are never broken by a plan: VM-VM affinity (keep together),
//! anti-affinity (keep apart), VM-host `must` / `must_not`, pinning, host
//! maintenance, and the overcommit ratios. Soft rules (`should` /
//! `should_not`) cost a penalty in the planner's score.

use crate::cluster::{Cluster, HostId, VmId};
use crate::resources::Resources;
use serde::{Deserialize, Serialize};

/// A named group of VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmGroupRule {
    /// Rule name, for messages.
    pub name: String,
    /// VM names.
    pub vms: Vec<String>,
}

/// How a VM-host rule binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmHostKind {
    /// Hard: the VMs run only on these hosts.
    Must,
    /// Hard: the VMs never run on these hosts.
    MustNot,
    /// Soft: prefer these hosts.
    Should,
    /// Soft: avoid these hosts.
    ShouldNot,
}

fn default_weight() -> f64 {
    1.0
}

/// A VM-host rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmHostRule {
    /// Rule name, for messages.
    pub name: String,
    /// VM names.
    pub vms: Vec<String>,
    /// Host names.
    pub hosts: Vec<String>,
    /// Must, must not, should, should not.
    pub kind: VmHostKind,
    /// Soft rules only: penalty weight (1.0 = one migration's worth of cost).
    #[serde(default = "default_weight")]
    pub weight: f64,
}

/// How far configured sizes may exceed a host's capacity (ratio of the sum of
/// VM sizes to host capacity, per resource).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overcommit {
    /// vCPUs per physical core.
    pub cpu: f64,
    /// Configured memory per byte of host memory.
    pub memory: f64,
}

impl Default for Overcommit {
    /// 4 vCPUs per core (a common KVM default) and no memory overcommit.
    fn default() -> Self {
        Self {
            cpu: 4.0,
            memory: 1.0,
        }
    }
}

/// Every rule of a cluster, as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Groups of VMs that must share a host.
    pub affinity: Vec<VmGroupRule>,
    /// Groups of VMs that must all be on different hosts.
    pub anti_affinity: Vec<VmGroupRule>,
    /// VM-host rules.
    pub vm_host: Vec<VmHostRule>,
    /// VMs that must stay where they are.
    pub pin: Vec<VmGroupRule>,
    /// Hosts in maintenance (besides those the state marks).
    pub maintenance: Vec<String>,
    /// Overcommit ratios.
    pub overcommit: Overcommit,
}

/// Why rules do not fit a cluster.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A rule names a VM the cluster does not have.
    #[error("rule {rule:?} names unknown VM {vm:?}")]
    UnknownVm {
        /// The rule.
        rule: String,
        /// The VM name.
        vm: String,
    },
    /// A rule names a host the cluster does not have.
    #[error("rule {rule:?} names unknown host {host:?}")]
    UnknownHost {
        /// The rule.
        rule: String,
        /// The host name.
        host: String,
    },
    /// Hard rules leave a VM no host at all.
    #[error("VM {vm:?} can run on no host: {reason}")]
    Conflict {
        /// The VM.
        vm: String,
        /// Which rules collide.
        reason: String,
    },
    /// A ratio or weight is not a positive number.
    #[error("{what} must be a positive number, got {value}")]
    InvalidNumber {
        /// Which setting.
        what: String,
        /// The value.
        value: f64,
    },
}

/// A soft preference of one VM.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftPreference {
    /// Hosts the rule names, ascending.
    pub hosts: Vec<HostId>,
    /// True for `should` (penalty when elsewhere), false for `should_not`.
    pub prefer: bool,
    /// Penalty weight.
    pub weight: f64,
}

/// Rules resolved to indices, with per-VM lookups.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompiledRules {
    /// Per VM: the hosts it may run on, `None` = any (must, must_not, pin combined).
    pub allowed: Vec<Option<Vec<bool>>>,
    /// Per VM: pinned to its current host.
    pub pinned: Vec<bool>,
    /// Affinity groups (VMs kept together); a VM is in at most one after merging.
    pub affinity_groups: Vec<Vec<VmId>>,
    /// Per VM: its affinity group.
    pub affinity_of: Vec<Option<usize>>,
    /// Per affinity group: the names of the rules merged into it.
    pub affinity_names: Vec<String>,
    /// Anti-affinity groups.
    pub anti_affinity_groups: Vec<Vec<VmId>>,
    /// Per VM: the anti-affinity groups it is in.
    pub anti_affinity_of: Vec<Vec<usize>>,
    /// Per anti-affinity group: its rule name.
    pub anti_affinity_names: Vec<String>,
    /// Per VM: soft preferences.
    pub soft: Vec<Vec<SoftPreference>>,
    /// Per host: in maintenance.
    pub maintenance: Vec<bool>,
    /// Overcommit ratios.
    pub overcommit: Overcommit,
}

impl CompiledRules {
    /// No rules at all for `cluster` (maintenance from the hosts' flags).
    pub fn none(cluster: &Cluster) -> Self {
        Rules::default()
            .compile(cluster)
            .expect("empty rules always compile")
    }

    /// Whether hard VM-host rules allow `vm` on `host` (maintenance excluded).
    pub fn host_allowed(&self, vm: VmId, host: HostId) -> bool {
        self.allowed[vm.index()]
            .as_ref()
            .is_none_or(|a| a[host.index()])
    }

    /// Soft-rule penalty of `vm` on `host`.
    pub fn soft_penalty(&self, vm: VmId, host: HostId) -> f64 {
        self.soft[vm.index()]
            .iter()
            .filter(|p| p.hosts.binary_search(&host).is_ok() != p.prefer)
            .map(|p| p.weight)
            .sum()
    }
}

fn resolve_vms(cluster: &Cluster, rule: &str, names: &[String]) -> Result<Vec<VmId>, RuleError> {
    names
        .iter()
        .map(|n| {
            cluster.vm_id(n).ok_or_else(|| RuleError::UnknownVm {
                rule: rule.to_string(),
                vm: n.clone(),
            })
        })
        .collect()
}

fn resolve_hosts(
    cluster: &Cluster,
    rule: &str,
    names: &[String],
) -> Result<Vec<HostId>, RuleError> {
    let mut ids = names
        .iter()
        .map(|n| {
            cluster.host_id(n).ok_or_else(|| RuleError::UnknownHost {
                rule: rule.to_string(),
                host: n.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

impl Rules {
    /// Resolves every name against `cluster` and checks that hard rules
    /// leave each VM (and each affinity group) at least one host.
    pub fn compile(&self, cluster: &Cluster) -> Result<CompiledRules, RuleError> {
        for (what, value) in [
            ("overcommit.cpu", self.overcommit.cpu),
            ("overcommit.memory", self.overcommit.memory),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(RuleError::InvalidNumber {
                    what: what.into(),
                    value,
                });
            }
        }
        let n_vms = cluster.vms.len();
        let n_hosts = cluster.hosts.len();
        let mut out = CompiledRules {
            allowed: vec![None; n_vms],
            pinned: vec![false; n_vms],
            affinity_of: vec![None; n_vms],
            anti_affinity_of: vec![Vec::new(); n_vms],
            soft: vec![Vec::new(); n_vms],
            maintenance: cluster.hosts.iter().map(|h| h.maintenance).collect(),
            overcommit: self.overcommit,
            ..Default::default()
        };
        for name in &self.maintenance {
            let id = cluster
                .host_id(name)
                .ok_or_else(|| RuleError::UnknownHost {
                    rule: "maintenance".into(),
                    host: name.clone(),
                })?;
            out.maintenance[id.index()] = true;
        }
        let restrict = |allowed: &mut Option<Vec<bool>>, keep: &dyn Fn(usize) -> bool| {
            let a = allowed.get_or_insert_with(|| vec![true; n_hosts]);
            for (h, ok) in a.iter_mut().enumerate() {
                *ok = *ok && keep(h);
            }
        };
        for rule in &self.vm_host {
            let vms = resolve_vms(cluster, &rule.name, &rule.vms)?;
            let hosts = resolve_hosts(cluster, &rule.name, &rule.hosts)?;
            if !(rule.weight.is_finite() && rule.weight > 0.0) {
                return Err(RuleError::InvalidNumber {
                    what: format!("rule {:?} weight", rule.name),
                    value: rule.weight,
                });
            }
            let mut member = vec![false; n_hosts];
            for h in &hosts {
                member[h.index()] = true;
            }
            for vm in vms {
                match rule.kind {
                    VmHostKind::Must => restrict(&mut out.allowed[vm.index()], &|h| member[h]),
                    VmHostKind::MustNot => restrict(&mut out.allowed[vm.index()], &|h| !member[h]),
                    VmHostKind::Should | VmHostKind::ShouldNot => {
                        out.soft[vm.index()].push(SoftPreference {
                            hosts: hosts.clone(),
                            prefer: rule.kind == VmHostKind::Should,
                            weight: rule.weight,
                        })
                    }
                }
            }
        }
        for rule in &self.pin {
            for vm in resolve_vms(cluster, &rule.name, &rule.vms)? {
                out.pinned[vm.index()] = true;
                let current = cluster.host_of(vm).index();
                let allowed_here = out.allowed[vm.index()].as_ref().is_none_or(|a| a[current]);
                if !allowed_here {
                    return Err(RuleError::Conflict {
                        vm: cluster.vms[vm.index()].name.clone(),
                        reason: format!(
                            "pinned by {:?} to a host its VM-host rules forbid",
                            rule.name
                        ),
                    });
                }
                restrict(&mut out.allowed[vm.index()], &|h| h == current);
            }
        }
        // Merge overlapping affinity groups (together is transitive).
        let mut group_of: Vec<Option<usize>> = vec![None; n_vms];
        let mut groups: Vec<Vec<VmId>> = Vec::new();
        let mut names: Vec<Vec<String>> = Vec::new();
        for rule in &self.affinity {
            let vms = resolve_vms(cluster, &rule.name, &rule.vms)?;
            let mut target: Option<usize> = None;
            for vm in &vms {
                if let Some(g) = group_of[vm.index()] {
                    match target {
                        None => target = Some(g),
                        Some(t) if t != g => {
                            let moved = std::mem::take(&mut groups[g]);
                            for m in &moved {
                                group_of[m.index()] = Some(t);
                            }
                            groups[t].extend(moved);
                            let moved_names = std::mem::take(&mut names[g]);
                            names[t].extend(moved_names);
                        }
                        _ => {}
                    }
                }
            }
            let t = target.unwrap_or_else(|| {
                groups.push(Vec::new());
                names.push(Vec::new());
                groups.len() - 1
            });
            names[t].push(rule.name.clone());
            for vm in vms {
                if group_of[vm.index()] != Some(t) {
                    group_of[vm.index()] = Some(t);
                    groups[t].push(vm);
                }
            }
        }
        // Renumber non-empty groups and check each can live on some host.
        for (group, group_names) in groups.into_iter().zip(names).filter(|(g, _)| !g.is_empty()) {
            let id = out.affinity_groups.len();
            out.affinity_names.push(group_names.join("+"));
            let mut common = vec![true; n_hosts];
            for vm in &group {
                out.affinity_of[vm.index()] = Some(id);
                if let Some(a) = &out.allowed[vm.index()] {
                    for (c, ok) in common.iter_mut().zip(a) {
                        *c = *c && *ok;
                    }
                }
            }
            if !common.iter().any(|&c| c) {
                let vm = &cluster.vms[group[0].index()].name;
                return Err(RuleError::Conflict {
                    vm: vm.clone(),
                    reason: "its affinity group's VM-host rules and pins leave no common host"
                        .into(),
                });
            }
            out.affinity_groups.push(group);
        }
        for rule in &self.anti_affinity {
            let vms = resolve_vms(cluster, &rule.name, &rule.vms)?;
            let id = out.anti_affinity_groups.len();
            for (i, a) in vms.iter().enumerate() {
                for b in &vms[i + 1..] {
                    if a != b
                        && out.affinity_of[a.index()].is_some()
                        && out.affinity_of[a.index()] == out.affinity_of[b.index()]
                    {
                        return Err(RuleError::Conflict {
                            vm: cluster.vms[a.index()].name.clone(),
                            reason: format!(
                                "anti-affinity {:?} and affinity both name it with {:?}",
                                rule.name,
                                cluster.vms[b.index()].name
                            ),
                        });
                    }
                }
                out.anti_affinity_of[a.index()].push(id);
            }
            out.anti_affinity_groups.push(vms);
            out.anti_affinity_names.push(rule.name.clone());
        }
        for (vm, allowed) in out.allowed.iter().enumerate() {
            if let Some(a) = allowed {
                if !a.iter().any(|&ok| ok) {
                    return Err(RuleError::Conflict {
                        vm: cluster.vms[vm].name.clone(),
                        reason: "its must and must_not rules exclude every host".into(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Total configured size that `rules` allow on a host of `capacity`.
pub fn overcommit_limit(capacity: &Resources, overcommit: &Overcommit) -> Resources {
    Resources {
        cpu_cores: capacity.cpu_cores * overcommit.cpu,
        memory_bytes: capacity.memory_bytes * overcommit.memory,
        disk_bytes_per_second: f64::INFINITY,
        network_bytes_per_second: f64::INFINITY,
    }
}
