//! The cluster's own placement rules as Keel rules: Proxmox VE HA rules
//! (`/cluster/ha/rules`), guest tags, locks, and what the operator does not
//! allow Keel to move. docs/proxmox.md has the table.
//!
//! | source | Keel rule |
//! |---|---|
//! | HA `node-affinity` (9.x rule or 8.x group), failback on (the default) | `vm_host` must (the highest-priority online nodes: the CRM moves it back there, strict or not) |
//! | HA `node-affinity`, failback off, strict | `vm_host` must (all listed online nodes) |
//! | HA `node-affinity`, failback off, not strict | `vm_host` should (highest-priority nodes) |
//! | an HA rule PVE marks infeasible (`errors`) or disabled | nothing (the CRM ignores it) |
//! | HA `resource-affinity`, positive | `affinity` |
//! | HA `resource-affinity`, negative | `anti_affinity` |
//! | tag `keel-affinity-<group>` | `affinity` of the group |
//! | tag `keel-anti-affinity-<group>` | `anti_affinity` of the group |
//! | tag `keel-pin-<node>` | `vm_host` must `<node>` |
//! | tag `keel-avoid-<node>` | `vm_host` must not `<node>` |
//! | tag `keel-prefer-<node>` | `vm_host` should `<node>` |
//! | tag `keel-prefer-not-<node>` | `vm_host` should not `<node>` |
//! | tag `keel-ignore`, a config lock, a running container without `allow_container_restart`, a guest whose last migration failed, a paused/suspended/prelaunch VM | `pin` (stays, still counted) |
//! | a move Proxmox VE refused for every target (local resources, local disks, local CD-ROM, snapshots) | `pin` until the guest's config digest changes (`refusals.rs`) |
//! | a move Proxmox VE refused for some targets | `vm_host` must not those nodes, same lifetime |
//! | an HA-managed guest on a node in HA maintenance | `pin` (the HA stack moves it, not Keel) |
//!
//! The node in HA maintenance itself is not a rule: the observation marks
//! it `maintenance` (see `ha_status.rs`).

use super::observe::{Guest, GuestKind};
use keel_model::rules::{VmGroupRule, VmHostRule};
use keel_model::{Cluster, ClusterSnapshot, RuleError, Rules, VmHostKind, VmInfo};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One HA rule as `GET /cluster/ha/rules` lists it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HaRule {
    pub rule: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub resources: Option<String>,
    #[serde(default)]
    pub nodes: Option<String>,
    #[serde(default)]
    pub affinity: Option<String>,
    #[serde(default, deserialize_with = "super::observe::flag")]
    pub strict: bool,
    #[serde(default, deserialize_with = "super::observe::flag")]
    pub disable: bool,
    /// Why PVE finds the rule infeasible (then the CRM ignores it).
    #[serde(default)]
    pub errors: Option<Value>,
}

/// Why guests are pinned beyond tags and HA rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pins {
    /// Running containers are pinned (restart migration not allowed).
    pub pin_containers: bool,
    /// Guests whose last migration failed recently (vmids).
    pub failed: HashSet<u64>,
    /// Nodes in HA maintenance: their HA-managed guests are the HA
    /// stack's to move (Keel moving them too would race it).
    pub ha_maintenance: BTreeSet<String>,
    /// HA resources (vmids) whose failback is off.
    pub ha_no_failback: HashSet<u64>,
    /// Guests Proxmox VE refused to move anywhere, with the reason.
    pub refused_everywhere: BTreeMap<u64, String>,
}

/// Keel rules for the running guests of `guests` on `nodes`. Rules never
/// name a guest that is not running or a node that is not online (they
/// would not compile); a pinned guest is left out of host and affinity
/// rules, so a lock or a tag cannot make the round fail.
pub(crate) fn cluster_rules(
    guests: &[Guest],
    nodes: &[String],
    ha_rules: &[HaRule],
    pins: &Pins,
) -> Rules {
    let running: Vec<&Guest> = guests.iter().filter(|g| g.running).collect();
    let node_of = |n: &str| nodes.iter().find(|k| k.eq_ignore_ascii_case(n)).cloned();
    let mut rules = Rules::default();
    let mut pinned: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in &running {
        let why = if g.lock.is_some() {
            Some("proxmox: locked guests".to_string())
        } else if !g.movable {
            // pvestatd's status is QEMU's (`qmpstatus`): paused, prelaunch,
            // suspended... still hold memory but are not live-migrated by Keel.
            Some("proxmox: paused or suspended guests".to_string())
        } else if g.ha && pins.ha_maintenance.contains(&g.node) {
            Some("proxmox: HA-managed on a node in HA maintenance (HA moves them)".to_string())
        } else if g.tags.iter().any(|t| t == "keel-ignore") {
            Some("tag: keel-ignore".to_string())
        } else if pins.pin_containers && g.kind == GuestKind::Lxc {
            Some("proxmox: containers (allow_container_restart = false)".to_string())
        } else if pins.failed.contains(&g.vmid) {
            Some("proxmox: last migration failed".to_string())
        } else {
            pins.refused_everywhere
                .get(&g.vmid)
                .map(|why| format!("proxmox: refused by Proxmox VE ({why})"))
        };
        if let Some(why) = why {
            pinned.entry(why).or_default().push(g.vmid.to_string());
        }
    }
    let is_pinned: HashSet<String> = pinned.values().flatten().cloned().collect();
    for (name, vms) in pinned {
        rules.pin.push(VmGroupRule { name, vms });
    }
    let free: Vec<&&Guest> = running
        .iter()
        .filter(|g| !is_pinned.contains(&g.vmid.to_string()))
        .collect();

    // Tags.
    let mut groups: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
    let mut host_rules: BTreeMap<(String, VmHostKindKey), Vec<String>> = BTreeMap::new();
    for g in &free {
        for tag in &g.tags {
            let vm = g.vmid.to_string();
            if let Some(group) = tag.strip_prefix("keel-anti-affinity-") {
                groups.entry((false, group.into())).or_default().push(vm);
            } else if let Some(group) = tag.strip_prefix("keel-affinity-") {
                groups.entry((true, group.into())).or_default().push(vm);
            } else if let Some((kind, node)) = host_tag(tag) {
                if let Some(node) = node_of(node) {
                    host_rules.entry((node, kind)).or_default().push(vm);
                }
            }
        }
    }
    for ((together, group), vms) in groups {
        push_group(&mut rules, together, format!("tag: {group}"), vms);
    }
    for ((node, kind), vms) in host_rules {
        let (kind, word) = kind.rule();
        rules.vm_host.push(VmHostRule {
            name: format!("tag: keel-{word}-{node}"),
            vms,
            hosts: vec![node],
            kind,
            weight: 1.0,
        });
    }

    // HA rules.
    for r in ha_rules.iter().filter(|r| !r.disable && r.errors.is_none()) {
        let vms: Vec<String> = ha_members(r.resources.as_deref().unwrap_or(""))
            .filter(|(kind, vmid)| {
                free.iter()
                    .any(|g| g.vmid == *vmid && kind.is_none_or(|k| k == g.kind))
            })
            .map(|(_, vmid)| vmid.to_string())
            .collect();
        if vms.is_empty() {
            continue;
        }
        let name = format!("ha: {}", r.rule);
        match r.kind.as_deref() {
            Some("node-affinity") => {
                let listed = ha_nodes(r.nodes.as_deref().unwrap_or(""));
                // Offline nodes are out of the CRM's choice (pve-ha-manager
                // `src/PVE/HA/Rules/NodeAffinity.pm`, get_node_affinity).
                let known: Vec<(String, i64)> = listed
                    .into_iter()
                    .filter_map(|(n, p)| node_of(&n).map(|n| (n, p)))
                    .collect();
                let Some(top) = known.iter().map(|(_, p)| *p).max() else {
                    continue;
                };
                let preferred: Vec<String> = known
                    .iter()
                    .filter(|(_, p)| *p == top)
                    .map(|(n, _)| n.clone())
                    .collect();
                let (fail_back, stay): (Vec<String>, Vec<String>) =
                    vms.into_iter().partition(|v| {
                        v.parse::<u64>()
                            .is_ok_and(|id| !pins.ha_no_failback.contains(&id))
                    });
                // With failback the CRM moves the resource to the
                // highest-priority online nodes whenever it is elsewhere,
                // strict rule or not (`src/PVE/HA/Manager.pm`,
                // select_service_node): anything else is undone.
                if !fail_back.is_empty() {
                    rules.vm_host.push(VmHostRule {
                        name: format!("{name} (failback, priority {top})"),
                        vms: fail_back,
                        hosts: preferred.clone(),
                        kind: VmHostKind::Must,
                        weight: 1.0,
                    });
                }
                if stay.is_empty() {
                    continue;
                }
                if r.strict {
                    rules.vm_host.push(VmHostRule {
                        name: name.clone(),
                        vms: stay.clone(),
                        hosts: known.iter().map(|(n, _)| n.clone()).collect(),
                        kind: VmHostKind::Must,
                        weight: 1.0,
                    });
                }
                if !r.strict || preferred.len() < known.len() {
                    rules.vm_host.push(VmHostRule {
                        name: format!("{name} (priority {top})"),
                        vms: stay,
                        hosts: preferred,
                        kind: VmHostKind::Should,
                        weight: 1.0,
                    });
                }
            }
            Some("resource-affinity") => {
                let together = r.affinity.as_deref() != Some("negative");
                push_group(&mut rules, together, name, vms);
            }
            _ => {}
        }
    }
    rules
}

/// `rules` with what makes them impossible on `observation` taken out: a
/// guest whose tags or HA rules leave it no host (`keel-pin-a` with
/// `keel-avoid-a`, affinity with anti-affinity...) loses those rules, with
/// a warning, instead of stopping every round. Pins stay.
pub(crate) fn without_conflicts(mut rules: Rules, observation: &crate::Observation) -> Rules {
    let vms = observation
        .vms
        .iter()
        .filter(|v| v.running)
        .map(|v| VmInfo {
            name: v.name.clone(),
            host: v.host.clone(),
            size: v.size,
            demand: v.size,
            reservation: keel_model::Resources::ZERO,
            limit: None,
            shares: keel_model::DEFAULT_SHARES,
            memory_dirty_bytes_per_second: 0.0,
            local_disk_bytes: 0.0,
            last_migrated_seconds: None,
        })
        .collect();
    let Ok(cluster) = Cluster::new(ClusterSnapshot {
        time_seconds: observation.time_seconds,
        hosts: observation.hosts.clone(),
        vms,
    }) else {
        return rules;
    };
    // Each pass drops one guest's rules: bounded by the number of guests.
    for _ in 0..=observation.vms.len() {
        match rules.compile(&cluster) {
            Ok(_) => return rules,
            Err(RuleError::Conflict { vm, reason }) => {
                tracing::warn!(guest = %vm, %reason, "conflicting cluster rules: the guest's tag and HA rules are ignored");
                let keep = |list: &mut Vec<String>| list.retain(|v| *v != vm);
                rules.vm_host.iter_mut().for_each(|r| keep(&mut r.vms));
                rules.affinity.iter_mut().for_each(|r| keep(&mut r.vms));
                rules
                    .anti_affinity
                    .iter_mut()
                    .for_each(|r| keep(&mut r.vms));
                rules.vm_host.retain(|r| !r.vms.is_empty());
                rules.affinity.retain(|r| r.vms.len() > 1);
                rules.anti_affinity.retain(|r| r.vms.len() > 1);
            }
            Err(other) => {
                tracing::warn!(error = %other, "cluster rules do not fit the cluster: only pins kept");
                return Rules {
                    pin: rules.pin,
                    ..Rules::default()
                };
            }
        }
    }
    rules
}

fn push_group(rules: &mut Rules, together: bool, name: String, vms: Vec<String>) {
    if vms.len() < 2 {
        return;
    }
    let rule = VmGroupRule { name, vms };
    if together {
        rules.affinity.push(rule);
    } else {
        rules.anti_affinity.push(rule);
    }
}

/// The VM-host kinds tags can ask for, ordered for a stable rule list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum VmHostKindKey {
    Must,
    MustNot,
    Should,
    ShouldNot,
}

impl VmHostKindKey {
    fn rule(self) -> (VmHostKind, &'static str) {
        match self {
            Self::Must => (VmHostKind::Must, "pin"),
            Self::MustNot => (VmHostKind::MustNot, "avoid"),
            Self::Should => (VmHostKind::Should, "prefer"),
            Self::ShouldNot => (VmHostKind::ShouldNot, "prefer-not"),
        }
    }
}

fn host_tag(tag: &str) -> Option<(VmHostKindKey, &str)> {
    // `keel-prefer-not-` before `keel-prefer-`: node names may hold dashes.
    let table = [
        ("keel-pin-", VmHostKindKey::Must),
        ("keel-avoid-", VmHostKindKey::MustNot),
        ("keel-prefer-not-", VmHostKindKey::ShouldNot),
        ("keel-prefer-", VmHostKindKey::Should),
    ];
    table
        .iter()
        .find_map(|(prefix, kind)| tag.strip_prefix(prefix).map(|node| (*kind, node)))
        .filter(|(_, node)| !node.is_empty())
}

/// `vm:100,ct:101,102` as (kind, vmid); a bare number is either kind.
fn ha_members(list: &str) -> impl Iterator<Item = (Option<GuestKind>, u64)> + '_ {
    list.split(',').filter_map(|item| {
        let item = item.trim();
        let (kind, id) = match item.split_once(':') {
            Some(("vm", id)) => (Some(GuestKind::Qemu), id),
            Some(("ct", id)) => (Some(GuestKind::Lxc), id),
            Some(_) => return None,
            None => (None, item),
        };
        id.parse().ok().map(|id| (kind, id))
    })
}

/// `node1:2,node2` as (node, priority); no priority is 0.
fn ha_nodes(list: &str) -> Vec<(String, i64)> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once(':') {
            Some((n, p)) => (n.to_string(), p.trim().parse().unwrap_or(0)),
            None => (item.to_string(), 0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(vmid: u64, kind: GuestKind, node: &str, tags: &[&str]) -> Guest {
        Guest {
            vmid,
            kind,
            node: node.into(),
            running: true,
            movable: true,
            ha: false,
            lock: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn ha(json: &str) -> Vec<HaRule> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn tags_become_rules() {
        let nodes = vec!["pve-1".to_string(), "pve-2".to_string()];
        let q = GuestKind::Qemu;
        let guests = vec![
            guest(
                100,
                q,
                "pve-1",
                &["keel-anti-affinity-db", "keel-pin-pve-2"],
            ),
            guest(
                101,
                q,
                "pve-1",
                &["keel-anti-affinity-db", "keel-prefer-not-pve-1"],
            ),
            guest(102, q, "pve-2", &["keel-affinity-web", "keel-avoid-pve-9"]),
            guest(103, q, "pve-2", &["keel-affinity-web", "keel-ignore"]),
            guest(104, GuestKind::Lxc, "pve-2", &[]),
        ];
        let pins = Pins {
            pin_containers: true,
            ..Pins::default()
        };
        let rules = cluster_rules(&guests, &nodes, &[], &pins);
        assert_eq!(rules.anti_affinity.len(), 1);
        assert_eq!(rules.anti_affinity[0].vms, ["100", "101"]);
        assert!(rules.affinity.is_empty(), "103 is ignored: a group of one");
        let names: Vec<&str> = rules.vm_host.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["tag: keel-prefer-not-pve-1", "tag: keel-pin-pve-2"]);
        assert_eq!(rules.vm_host[0].kind, VmHostKind::ShouldNot);
        let pinned: Vec<&str> = rules
            .pin
            .iter()
            .flat_map(|p| &p.vms)
            .map(|s| s.as_str())
            .collect();
        assert_eq!(pinned, ["104", "103"]);
    }

    #[test]
    fn ha_guests_on_a_node_in_ha_maintenance_are_left_to_ha() {
        let nodes = vec!["a".to_string(), "b".to_string()];
        let q = GuestKind::Qemu;
        let mut ha_on_a = guest(100, q, "a", &["keel-anti-affinity-x"]);
        ha_on_a.ha = true;
        let mut ha_on_b = guest(101, q, "b", &["keel-anti-affinity-x"]);
        ha_on_b.ha = true;
        let plain_on_a = guest(102, q, "a", &["keel-anti-affinity-x"]);
        let pins = Pins {
            ha_maintenance: BTreeSet::from(["a".to_string()]),
            ..Pins::default()
        };
        let rules = cluster_rules(&[ha_on_a, ha_on_b, plain_on_a], &nodes, &[], &pins);
        assert_eq!(rules.pin.len(), 1);
        assert!(rules.pin[0].name.contains("HA maintenance"));
        assert_eq!(rules.pin[0].vms, ["100"], "only the HA guest on the node");
        assert_eq!(
            rules.anti_affinity[0].vms,
            ["101", "102"],
            "a pinned guest leaves the group rules"
        );
    }

    #[test]
    fn conflicting_tags_are_dropped_not_fatal() {
        use crate::{Observation, UsageCounters, VmObservation};
        use keel_model::{HostInfo, Resources};
        let nodes = vec!["a".to_string(), "b".to_string()];
        let q = GuestKind::Qemu;
        let guests = vec![
            guest(
                100,
                q,
                "a",
                &["keel-pin-b", "keel-avoid-b", "keel-anti-affinity-x"],
            ),
            guest(101, q, "a", &["keel-anti-affinity-x", "keel-prefer-b"]),
            guest(102, q, "b", &["keel-anti-affinity-x"]),
        ];
        let rules = cluster_rules(&guests, &nodes, &[], &Pins::default());
        let vm = |name: &str, host: &str| VmObservation {
            name: name.into(),
            host: host.into(),
            size: Resources::new(1.0, 1e9, 0.0, 0.0),
            running: true,
            counters: UsageCounters::default(),
            memory_used_bytes: None,
            memory_dirty_bytes_per_second: None,
            local_disk_bytes: None,
        };
        let host = |name: &str| HostInfo {
            name: name.into(),
            capacity: Resources::new(8.0, 8e9, 0.0, 0.0),
            maintenance: false,
        };
        let observation = Observation {
            time_seconds: 0.0,
            hosts: vec![host("a"), host("b")],
            vms: vec![vm("100", "a"), vm("101", "a"), vm("102", "b")],
        };
        let kept = without_conflicts(rules, &observation);
        assert!(kept
            .vm_host
            .iter()
            .all(|r| !r.vms.contains(&"100".to_string())));
        assert_eq!(kept.anti_affinity[0].vms, ["101", "102"]);
        assert_eq!(kept.vm_host.len(), 1, "101's preference stays");
    }

    #[test]
    fn ha_rules_map_to_hard_and_soft_rules() {
        let nodes = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let q = GuestKind::Qemu;
        let guests = vec![
            guest(100, q, "a", &[]),
            guest(101, q, "b", &[]),
            guest(102, GuestKind::Lxc, "c", &[]),
        ];
        let rules = cluster_rules(
            &guests,
            &nodes,
            &ha(r#"[
                {"rule":"s","type":"node-affinity","resources":"vm:100","nodes":"a:2,b:1,z","strict":1},
                {"rule":"n","type":"node-affinity","resources":"vm:101","nodes":"c"},
                {"rule":"apart","type":"resource-affinity","resources":"vm:100,vm:101,ct:102","affinity":"negative"},
                {"rule":"off","type":"resource-affinity","resources":"vm:100,vm:101","affinity":"positive","disable":1},
                {"rule":"wrongkind","type":"resource-affinity","resources":"ct:100,vm:101","affinity":"positive"}
            ]"#),
            &Pins::default(),
        );
        assert_eq!(rules.vm_host.len(), 2, "failback on: one must rule each");
        assert_eq!(rules.vm_host[0].kind, VmHostKind::Must);
        assert_eq!(rules.vm_host[0].hosts, ["a"], "the top priority only");
        assert_eq!(
            rules.vm_host[1].kind,
            VmHostKind::Must,
            "not strict, yet failback"
        );
        assert_eq!(rules.vm_host[1].hosts, ["c"]);
        assert_eq!(rules.anti_affinity[0].vms, ["100", "101", "102"]);
        assert!(rules.affinity.is_empty());
    }

    #[test]
    fn without_failback_strict_rules_allow_every_listed_node() {
        let nodes = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let q = GuestKind::Qemu;
        let guests = vec![guest(100, q, "a", &[]), guest(101, q, "b", &[])];
        let pins = Pins {
            ha_no_failback: HashSet::from([100, 101]),
            ..Pins::default()
        };
        let rules = cluster_rules(
            &guests,
            &nodes,
            &ha(r#"[
                {"rule":"s","type":"node-affinity","resources":"vm:100","nodes":"a:2,b:1","strict":1},
                {"rule":"n","type":"node-affinity","resources":"vm:101","nodes":"c"}
            ]"#),
            &pins,
        );
        let shape: Vec<(VmHostKind, Vec<String>)> = rules
            .vm_host
            .iter()
            .map(|r| (r.kind, r.hosts.clone()))
            .collect();
        assert_eq!(
            shape,
            [
                (VmHostKind::Must, vec!["a".to_string(), "b".to_string()]),
                (VmHostKind::Should, vec!["a".to_string()]),
                (VmHostKind::Should, vec!["c".to_string()]),
            ]
        );
    }
}
