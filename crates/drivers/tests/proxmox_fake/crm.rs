//! The fake's HA stack: HA resources (guests with `hastate`), 9.x rules or
//! 8.x groups, and a CRM that handles migrate requests and fails services
//! back, as pve-ha-manager's sources say. Each behaviour names its file.

use super::cluster::{FakeCluster, FakeGuest, Profile};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// An HA migration the CRM runs: (vmid, target, started, asked by the API).
#[derive(Debug, Clone)]
pub struct CrmMove {
    pub vmid: u64,
    pub target: String,
    pub started: Instant,
    pub requested: bool,
}

/// The service id of a guest (`vm:100`, `ct:101`).
pub fn sid_of(g: &FakeGuest) -> String {
    format!("{}:{}", if g.kind == "qemu" { "vm" } else { "ct" }, g.vmid)
}

fn vmid_of(sid: &str) -> Option<u64> {
    sid.rsplit(':').next()?.parse().ok()
}

fn members(list: &str) -> Vec<u64> {
    list.split(',').filter_map(|s| vmid_of(s.trim())).collect()
}

/// `node:prio,...` as a map (no priority is 0).
fn node_priorities(list: &str) -> BTreeMap<String, i64> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|i| match i.split_once(':') {
            Some((n, p)) => (n.to_string(), p.parse().unwrap_or(0)),
            None => (i.to_string(), 0),
        })
        .collect()
}

/// A rule `errors` marks infeasible is not applied
/// (pve-ha-manager `src/PVE/API2/HA/Rules.pm`, check_feasibility).
fn applies(rule: &Value) -> bool {
    let off = rule.get("disable").and_then(Value::as_u64) == Some(1);
    !off && rule.get("errors").is_none()
}

impl FakeCluster {
    /// Which node-affinity rule or group applies to each guest (vmid ->
    /// index in `ha_rules` / `ha_groups`), parsed once per use.
    fn affinity_index(&self) -> HashMap<u64, usize> {
        match self.profile {
            Profile::Pve9 => {
                let mut index = HashMap::new();
                for (i, r) in self.ha_rules.iter().enumerate() {
                    if applies(r) && r["type"] == "node-affinity" {
                        for v in members(r["resources"].as_str().unwrap_or("")) {
                            index.entry(v).or_insert(i);
                        }
                    }
                }
                index
            }
            Profile::Pve8 => self
                .guests
                .iter()
                .filter_map(|g| {
                    let group = g.ha_group.as_deref()?;
                    let i = self.ha_groups.iter().position(|x| x["group"] == group)?;
                    Some((g.vmid, i))
                })
                .collect(),
        }
    }

    /// The node affinity of a guest: (priority by node, strict, failback).
    /// 9.x rules: `src/PVE/HA/Rules/NodeAffinity.pm`; 8.x groups (4.x
    /// `src/PVE/HA/Groups.pm`: `restricted`, `nofailback`).
    fn node_affinity(
        &self,
        g: &FakeGuest,
        index: &HashMap<u64, usize>,
    ) -> Option<(BTreeMap<String, i64>, bool, bool)> {
        let i = *index.get(&g.vmid)?;
        match self.profile {
            Profile::Pve9 => {
                let r = &self.ha_rules[i];
                Some((
                    node_priorities(r["nodes"].as_str().unwrap_or("")),
                    r.get("strict").and_then(Value::as_u64) == Some(1),
                    g.ha_failback,
                ))
            }
            Profile::Pve8 => {
                let gr = &self.ha_groups[i];
                Some((
                    node_priorities(gr["nodes"].as_str().unwrap_or("")),
                    gr.get("restricted").and_then(Value::as_u64) == Some(1),
                    gr.get("nofailback").and_then(Value::as_u64) != Some(1),
                ))
            }
        }
    }

    /// Resource-affinity partners of a guest (9.x only): (together, apart).
    fn resource_affinity(&self, vmid: u64) -> (Vec<u64>, Vec<u64>) {
        let (mut together, mut apart) = (Vec::new(), Vec::new());
        if self.profile == Profile::Pve8 {
            return (together, apart);
        }
        for r in self.ha_rules.iter().filter(|r| applies(r)) {
            if r["type"] != "resource-affinity" {
                continue;
            }
            let m = members(r["resources"].as_str().unwrap_or(""));
            if !m.contains(&vmid) {
                continue;
            }
            let others = m.into_iter().filter(|v| *v != vmid);
            if r["affinity"] == "negative" {
                apart.extend(others);
            } else {
                together.extend(others);
            }
        }
        (together, apart)
    }

    /// The nodes the CRM would keep a started service on, `None` when any
    /// node will do: with failback the highest-priority online nodes, strict
    /// or not; without it the allowed ones (`src/PVE/HA/Manager.pm`,
    /// select_service_node with node_preference 'none').
    pub fn crm_wanted_nodes(&self, g: &FakeGuest) -> Option<Vec<String>> {
        self.wanted_nodes(g, &self.affinity_index())
    }

    fn wanted_nodes(&self, g: &FakeGuest, index: &HashMap<u64, usize>) -> Option<Vec<String>> {
        let (prio, strict, failback) = self.node_affinity(g, index)?;
        let online: BTreeMap<&String, i64> = prio
            .iter()
            .filter(|(n, _)| self.online(n))
            .map(|(n, p)| (n, *p))
            .collect();
        let top = online.values().copied().max()?;
        if failback {
            return Some(
                online
                    .iter()
                    .filter(|(_, p)| **p == top)
                    .map(|(n, _)| n.to_string())
                    .collect(),
            );
        }
        strict.then(|| online.keys().map(|n| n.to_string()).collect())
    }

    /// `ha-manager migrate`: queues the command; the CRM checks negative
    /// resource affinity on the target and takes positive partners along
    /// (`src/PVE/HA/Manager.pm`, queue_resource_motion).
    pub fn crm_migrate(&mut self, vmid: u64, target: &str) {
        let (together, apart) = self.resource_affinity(vmid);
        let blocked = apart.iter().any(|v| {
            self.node_of(*v).as_deref() == Some(target)
                || self
                    .crm_moves
                    .iter()
                    .any(|m| m.vmid == *v && m.target == target)
        });
        if blocked || !self.online(target) || self.node_of(vmid).as_deref() == Some(target) {
            self.crm_ignored.push(vmid);
            return;
        }
        for v in std::iter::once(vmid).chain(together) {
            if self.node_of(v).as_deref() == Some(target) {
                continue;
            }
            self.crm_moves.push(CrmMove {
                vmid: v,
                target: target.to_string(),
                started: Instant::now(),
                requested: v == vmid,
            });
            if let Some(g) = self.guest_mut(v) {
                g.hastate = Some("migrate".into());
            }
        }
    }

    /// One CRM round: finishes the HA migrations whose time is up, then
    /// fails started services back to where the rules want them.
    pub fn crm_round(&mut self) {
        let now = Instant::now();
        // The CRM works in rounds (`src/PVE/HA/CRM.pm`, every 10 s on a
        // real cluster): here at most one per `crm_round_interval`.
        if self
            .last_crm_round
            .is_some_and(|t| now < t + self.crm_round_interval)
        {
            return;
        }
        self.last_crm_round = Some(now);
        let done: Vec<CrmMove> = self
            .crm_moves
            .iter()
            .filter(|m| now >= m.started + self.task_duration)
            .cloned()
            .collect();
        self.crm_moves
            .retain(|m| now < m.started + self.task_duration);
        for m in done {
            if let Some(g) = self.guest_mut(m.vmid) {
                g.node = m.target.clone();
                g.hastate = Some("started".into());
            }
            if !m.requested {
                // A failback: it undoes a placement.
                if self.keel_placed.remove(&m.vmid) {
                    self.crm_undone.push(m.vmid);
                }
            } else {
                self.keel_placed.insert(m.vmid);
            }
        }
        let mut failbacks = Vec::new();
        let index = self.affinity_index();
        let moving: std::collections::HashSet<u64> =
            self.crm_moves.iter().map(|m| m.vmid).collect();
        for g in self
            .guests
            .iter()
            .filter(|g| g.hastate.as_deref() == Some("started"))
        {
            if moving.contains(&g.vmid) {
                continue;
            }
            if let Some(wanted) = self.wanted_nodes(g, &index) {
                if !wanted.is_empty() && !wanted.contains(&g.node) {
                    failbacks.push((g.vmid, wanted[0].clone()));
                }
            }
        }
        for (vmid, target) in failbacks {
            self.crm_moves.push(CrmMove {
                vmid,
                target,
                started: now,
                requested: false,
            });
            if let Some(g) = self.guest_mut(vmid) {
                g.hastate = Some("migrate".into());
            }
        }
    }

    /// `GET /cluster/ha/resources`: 9.x with `failback`, 8.x with `group`
    /// (`src/PVE/API2/HA/Resources.pm`).
    pub(super) fn ha_resources(&self) -> Value {
        let list = self.guests.iter().filter(|g| g.hastate.is_some()).map(|g| {
            let mut v = json!({"sid": sid_of(g), "type": if g.kind == "qemu" {"vm"} else {"ct"},
                "state": "started", "digest": "0".repeat(40)});
            match self.profile {
                Profile::Pve9 => v["failback"] = json!(u8::from(g.ha_failback)),
                Profile::Pve8 => {
                    if let Some(group) = &g.ha_group {
                        v["group"] = json!(group);
                    }
                }
            }
            v
        });
        Value::Array(list.collect())
    }

    /// The HA parts of the 9.x precondition answer: partners moving along
    /// (`dependent-ha-resources`) and, per node, blocking resources
    /// (qemu-server `src/PVE/API2/Qemu.pm`, migrate_vm_precondition).
    pub(super) fn ha_motion_info(&self, vmid: u64) -> (Vec<String>, BTreeMap<String, Value>) {
        let (together, apart) = self.resource_affinity(vmid);
        let dependent = together
            .iter()
            .filter_map(|v| self.guests.iter().find(|g| g.vmid == *v))
            .map(sid_of)
            .collect();
        let mut blocking: BTreeMap<String, Value> = BTreeMap::new();
        for v in apart {
            if let Some(g) = self.guests.iter().find(|g| g.vmid == v) {
                let entry = blocking.entry(g.node.clone()).or_insert_with(|| json!([]));
                if let Some(list) = entry.as_array_mut() {
                    list.push(json!({"sid": sid_of(g), "cause": "resource-affinity"}));
                }
            }
        }
        (dependent, blocking)
    }

    /// `/cluster/ha/status/current` as Proxmox VE words it: quorum, the
    /// CRM master, one `lrm` entry per node (`NODE (STATE, TIME)`), one
    /// `service` entry per HA-managed guest with its `crm_state`
    /// (pve-ha-manager `src/PVE/API2/HA/Status.pm`).
    pub(super) fn ha_status(&self) -> Value {
        let time = "Thu Nov 26 13:00:00 2026";
        let timestamp = 1_764_162_000u64;
        let master = self.nodes.iter().find(|n| n.online).map(|n| n.name.clone());
        let mut out = vec![json!({"id": "quorum", "type": "quorum",
            "node": master.clone().unwrap_or_default(), "status": "OK", "quorate": 1})];
        if let Some(m) = &master {
            out.push(json!({"id": "master", "type": "master", "node": m,
                "status": format!("{m} (active, {time})"), "timestamp": timestamp}));
        }
        for n in &self.nodes {
            let has_ha = self
                .guests
                .iter()
                .any(|g| g.node == n.name && g.hastate.is_some());
            let state = match (n.online, n.ha_maintenance) {
                (_, true) => "maintenance mode",
                (false, false) => "old timestamp - dead?",
                (true, false) if has_ha => "active",
                (true, false) => "idle",
            };
            out.push(
                json!({"id": format!("lrm:{}", n.name), "type": "lrm", "node": n.name,
                "status": format!("{} ({state}, {time})", n.name), "timestamp": timestamp}),
            );
        }
        for g in self.guests.iter().filter(|g| g.hastate.is_some()) {
            let sid = sid_of(g);
            let state = g.hastate.clone().unwrap_or_default();
            out.push(
                json!({"id": format!("service:{sid}"), "type": "service", "sid": sid,
                "node": g.node, "crm_state": state, "state": state, "request_state": "started",
                "status": format!("{sid} ({}, {state})", g.node)}),
            );
        }
        Value::Array(out)
    }
}
