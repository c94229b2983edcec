//! Observing a Proxmox VE cluster with one request per interval:
//! `GET /cluster/resources` lists every node and guest with its CPU
//! fraction, sizes and cumulative I/O counters. Node details
//! (`/nodes/{node}/status`) are read only when a node appears or its size
//! changes.

use crate::{UsageCounters, VmObservation};
use keel_model::{HostInfo, Resources};
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeSet, HashMap};

/// One entry of `GET /cluster/resources` (nodes, guests; others ignored).
/// Every field but `id` and `type` is optional in the schema.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub vmid: Option<u64>,
    #[serde(default)]
    pub status: Option<String>,
    /// CPU use as a fraction of `maxcpu` (recent average, not a counter).
    #[serde(default)]
    pub cpu: Option<f64>,
    #[serde(default)]
    pub maxcpu: Option<f64>,
    #[serde(default)]
    pub mem: Option<f64>,
    #[serde(default)]
    pub maxmem: Option<f64>,
    /// 9.x, VMs: host memory of the QEMU process (`mem` is then the
    /// guest's own view; pve-manager `PVE/API2Tools.pm`).
    #[serde(default)]
    pub memhost: Option<f64>,
    #[serde(default)]
    pub netin: Option<f64>,
    #[serde(default)]
    pub netout: Option<f64>,
    #[serde(default)]
    pub diskread: Option<f64>,
    #[serde(default)]
    pub diskwrite: Option<f64>,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub template: bool,
    #[serde(default)]
    pub hastate: Option<String>,
    #[serde(default)]
    pub lock: Option<String>,
}

/// Proxmox VE writes booleans as 0/1 (sometimes as strings).
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
        Text(String),
    }
    Ok(match Option::<Flag>::deserialize(d)? {
        None => false,
        Some(Flag::Bool(b)) => b,
        Some(Flag::Int(i)) => i != 0,
        Some(Flag::Text(s)) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
    })
}

/// VM (`qemu`) or container (`lxc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestKind {
    Qemu,
    Lxc,
}

impl GuestKind {
    /// The path segment of the kind (`qemu`, `lxc`).
    pub(crate) fn path(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }

    /// The HA resource type (`vm`, `ct`).
    pub(crate) fn ha_type(self) -> &'static str {
        match self {
            GuestKind::Qemu => "vm",
            GuestKind::Lxc => "ct",
        }
    }
}

/// What the driver keeps of a guest between observation and action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Guest {
    pub vmid: u64,
    pub kind: GuestKind,
    pub node: String,
    /// On its node holding memory (running, paused, suspended, prelaunch)
    /// and not a template: counted in the load.
    pub running: bool,
    /// Actually running (status `running`): the only guests Keel moves.
    pub movable: bool,
    /// Managed by the HA stack (`hastate` set): moved through HA.
    pub ha: bool,
    /// A config lock (backup, migrate, snapshot...): left alone.
    pub lock: Option<String>,
    /// Tags, lower case.
    pub tags: Vec<String>,
}

/// A node as `/cluster/resources` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeEntry {
    pub name: String,
    pub online: bool,
    pub maxcpu: f64,
    pub maxmem: f64,
    /// `hastate: "maintenance"` (PVE 8.3+, pve-manager `PVE/API2/Cluster.pm`).
    pub ha_maintenance: bool,
    /// Whether the entry carries `hastate` at all.
    pub has_hastate: bool,
    /// What the node uses beyond the guests Keel sees (ZFS ARC, Ceph
    /// daemons, guests hidden from the token): cores and bytes.
    pub overhead: Resources,
}

/// One `/cluster/resources` answer, split.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub nodes: Vec<NodeEntry>,
    pub guests: Vec<Guest>,
    pub vms: Vec<VmObservation>,
}

/// Cumulative CPU seconds per guest, integrated from the CPU fractions
/// (the API gives a recent average, Keel's rates want a counter).
#[derive(Debug, Default)]
pub(crate) struct CpuIntegrator {
    last_time: Option<f64>,
    seconds: HashMap<u64, f64>,
}

impl CpuIntegrator {
    /// Adds `cores` used since the last call at `time` and returns the
    /// guest's counter.
    fn advance(&mut self, vmid: u64, cores: f64, dt: f64) -> f64 {
        let total = self.seconds.entry(vmid).or_insert(0.0);
        *total += cores * dt;
        *total
    }
}

/// Splits the resource list: online nodes, guests, and the VM observations
/// of the guests on online nodes. Guests are named by vmid.
pub(crate) fn split(
    resources: &[Resource],
    time_seconds: f64,
    cpu: &mut CpuIntegrator,
) -> Snapshot {
    let dt = cpu.last_time.map_or(0.0, |t| (time_seconds - t).max(0.0));
    cpu.last_time = Some(time_seconds);
    let mut snapshot = Snapshot::default();
    // Node use as the node reports it, less the guests seen below.
    let mut used: HashMap<String, (f64, f64)> = HashMap::new();
    for r in resources.iter().filter(|r| r.kind == "node") {
        let Some(name) = r.node.clone() else { continue };
        let maxcpu = r.maxcpu.unwrap_or(0.0);
        used.insert(
            name.clone(),
            (r.cpu.unwrap_or(0.0) * maxcpu, r.mem.unwrap_or(0.0)),
        );
        snapshot.nodes.push(NodeEntry {
            name,
            online: r.status.as_deref() == Some("online"),
            maxcpu,
            maxmem: r.maxmem.unwrap_or(0.0),
            ha_maintenance: r.hastate.as_deref() == Some("maintenance"),
            has_hastate: r.hastate.is_some(),
            overhead: Resources::ZERO,
        });
    }
    let online = |n: &str| snapshot.nodes.iter().any(|e| e.online && e.name == n);
    let mut seen = HashMap::with_capacity(resources.len());
    for r in resources {
        let kind = match r.kind.as_str() {
            "qemu" => GuestKind::Qemu,
            "lxc" => GuestKind::Lxc,
            _ => continue,
        };
        let (Some(vmid), Some(node)) = (r.vmid, r.node.clone()) else {
            continue;
        };
        if seen.insert(vmid, ()).is_some() || !online(&node) {
            // A vmid listed twice (a migration caught half way) or on a
            // node that is not online: not observable this round.
            continue;
        }
        // pvestatd reports QEMU's own state (`qmpstatus`) as the status
        // (pve-manager `PVE/Service/pvestatd.pm`): paused, prelaunch and
        // suspended VMs still hold their memory.
        let status = r.status.as_deref().unwrap_or("");
        let running = !matches!(status, "" | "stopped" | "unknown") && !r.template;
        let movable = running && status == "running";
        let maxcpu = r.maxcpu.unwrap_or(0.0);
        let cores = r.cpu.unwrap_or(0.0) * maxcpu;
        let memory_used = r.memhost.or(r.mem).filter(|m| *m > 0.0);
        if let Some(u) = used.get_mut(&node) {
            u.0 -= cores;
            u.1 -= memory_used.unwrap_or(0.0);
        }
        // A container without `cores` reports the host's CPU count as
        // `maxcpu` (pve-container `src/PVE/LXC.pm`, vmstatus): its size is
        // then what it uses, at least one core, not the whole node.
        let node_cpus = snapshot
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map_or(f64::INFINITY, |n| n.maxcpu);
        let size_cores = if kind == GuestKind::Lxc && maxcpu >= node_cpus {
            cores.ceil().max(1.0)
        } else {
            maxcpu
        };
        let counters = UsageCounters {
            cpu_seconds: cpu.advance(vmid, if running { cores } else { 0.0 }, dt),
            // /cluster/resources has no run-queue wait per guest.
            cpu_wait_seconds: 0.0,
            disk_bytes: r.diskread.unwrap_or(0.0) + r.diskwrite.unwrap_or(0.0),
            network_bytes: r.netin.unwrap_or(0.0) + r.netout.unwrap_or(0.0),
        };
        snapshot.vms.push(VmObservation {
            name: vmid.to_string(),
            host: node.clone(),
            size: Resources::new(size_cores, r.maxmem.unwrap_or(0.0), 0.0, 0.0),
            running,
            counters,
            memory_used_bytes: memory_used,
            // Neither is in /cluster/resources: the control loop's
            // configured defaults apply (docs/architecture.md).
            memory_dirty_bytes_per_second: None,
            local_disk_bytes: None,
        });
        snapshot.guests.push(Guest {
            vmid,
            kind,
            node,
            running,
            movable,
            ha: r
                .hastate
                .as_deref()
                .is_some_and(|s| !s.is_empty() && s != "ignored"),
            lock: r.lock.clone().filter(|l| !l.is_empty()),
            tags: split_tags(r.tags.as_deref().unwrap_or("")),
        });
    }
    cpu.seconds.retain(|vmid, _| seen.contains_key(vmid));
    for n in &mut snapshot.nodes {
        if let Some((cores, bytes)) = used.get(&n.name) {
            n.overhead = Resources::new(cores.max(0.0), bytes.max(0.0), 0.0, 0.0);
        }
    }
    snapshot
}

/// Tags as Proxmox VE stores them: separated by `;` (`,` and spaces also
/// accepted), compared in lower case.
pub(crate) fn split_tags(tags: &str) -> Vec<String> {
    tags.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Capacity of a node from `/nodes/{node}/status` (logical CPUs, total
/// memory), cached with the `/cluster/resources` sizes it was read at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeDetails {
    pub seen_maxcpu: f64,
    pub seen_maxmem: f64,
    pub capacity: Resources,
}

/// The node status fields Keel reads.
#[derive(Debug, Deserialize)]
pub(crate) struct NodeStatus {
    pub cpuinfo: CpuInfo,
    pub memory: Memory,
}

/// `cpuinfo` of a node status.
#[derive(Debug, Deserialize)]
pub(crate) struct CpuInfo {
    pub cpus: f64,
}

/// `memory` of a node status.
#[derive(Debug, Deserialize)]
pub(crate) struct Memory {
    pub total: f64,
}

/// The hosts of an observation: online nodes with their capacity (from
/// `details` where read, else the resource list's sizes) less what the
/// node uses beyond the guests Keel sees, in maintenance when their HA LRM
/// is (`ha_maintenance`).
pub(crate) fn hosts(
    nodes: &[NodeEntry],
    details: &HashMap<String, NodeDetails>,
    ha_maintenance: &BTreeSet<String>,
) -> Vec<HostInfo> {
    nodes
        .iter()
        .filter(|n| n.online)
        .map(|n| HostInfo {
            name: n.name.clone(),
            capacity: {
                let full = details
                    .get(&n.name)
                    .map(|d| d.capacity)
                    .unwrap_or_else(|| Resources::new(n.maxcpu, n.maxmem, 0.0, 0.0));
                Resources::new(
                    (full.cpu_cores - n.overhead.cpu_cores).max(0.0),
                    (full.memory_bytes - n.overhead.memory_bytes).max(0.0),
                    full.disk_bytes_per_second,
                    full.network_bytes_per_second,
                )
            },
            maintenance: ha_maintenance.contains(&n.name),
        })
        .collect()
}

/// Online nodes whose details are missing or were read at other sizes.
pub(crate) fn nodes_to_refresh<'a>(
    nodes: &'a [NodeEntry],
    details: &HashMap<String, NodeDetails>,
) -> Vec<&'a NodeEntry> {
    nodes
        .iter()
        .filter(|n| n.online)
        .filter(|n| {
            details
                .get(&n.name)
                .is_none_or(|d| d.seen_maxcpu != n.maxcpu || d.seen_maxmem != n.maxmem)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Vec<Resource> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn guests_are_keyed_by_vmid_and_counters_accumulate() {
        let list = parse(
            r#"[
            {"id":"node/a","type":"node","node":"a","status":"online","maxcpu":8,"maxmem":1000},
            {"id":"node/b","type":"node","node":"b","status":"offline"},
            {"id":"qemu/100","type":"qemu","vmid":100,"node":"a","name":"web","status":"running",
             "cpu":0.5,"maxcpu":2,"mem":100,"maxmem":200,"netin":10,"netout":5,"diskread":1,"diskwrite":2,
             "tags":"keel-ignore;prod"},
            {"id":"qemu/101","type":"qemu","vmid":101,"node":"a","name":"web","status":"stopped","template":1},
            {"id":"lxc/102","type":"lxc","vmid":102,"node":"b","status":"running"},
            {"id":"storage/a/local","type":"storage","node":"a"}
        ]"#,
        );
        let mut cpu = CpuIntegrator::default();
        let s = split(&list, 10.0, &mut cpu);
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.vms.len(), 2, "the guest on the offline node is left out");
        assert_eq!(s.vms[0].name, "100");
        assert_eq!(s.vms[1].name, "101", "same name, different vmid");
        assert!(!s.vms[1].running, "templates are never balanced");
        assert_eq!(s.vms[0].counters.disk_bytes, 3.0);
        assert_eq!(s.guests[0].tags, vec!["keel-ignore", "prod"]);
        let s = split(&list, 14.0, &mut cpu);
        assert_eq!(s.vms[0].counters.cpu_seconds, 4.0, "0.5 x 2 cores x 4 s");
        let hosts = hosts(&s.nodes, &HashMap::new(), &BTreeSet::new());
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].capacity.cpu_cores, 8.0);
        assert!(!hosts[0].maintenance);
        let serviced = BTreeSet::from(["a".to_string(), "b".to_string()]);
        let hosts = super::hosts(&s.nodes, &HashMap::new(), &serviced);
        assert_eq!(
            hosts.len(),
            1,
            "an offline node in maintenance is still left out"
        );
        assert!(hosts[0].maintenance);
    }

    #[test]
    fn node_details_are_refreshed_only_on_change() {
        let nodes = vec![NodeEntry {
            name: "a".into(),
            online: true,
            maxcpu: 8.0,
            maxmem: 1e9,
            ha_maintenance: false,
            has_hastate: false,
            overhead: Resources::ZERO,
        }];
        let mut details = HashMap::new();
        assert_eq!(nodes_to_refresh(&nodes, &details).len(), 1);
        details.insert(
            "a".to_string(),
            NodeDetails {
                seen_maxcpu: 8.0,
                seen_maxmem: 1e9,
                capacity: Resources::new(8.0, 1e9, 0.0, 0.0),
            },
        );
        assert!(nodes_to_refresh(&nodes, &details).is_empty());
        let grown = vec![NodeEntry {
            maxmem: 2e9,
            ..nodes[0].clone()
        }];
        assert_eq!(nodes_to_refresh(&grown, &details).len(), 1);
    }

    #[test]
    fn flags_accept_every_spelling() {
        let list = parse(
            r#"[{"id":"qemu/1","type":"qemu","template":true},{"id":"qemu/2","type":"qemu","template":"1"},
                {"id":"qemu/3","type":"qemu","template":0}]"#,
        );
        assert_eq!(
            list.iter().map(|r| r.template).collect::<Vec<_>>(),
            [true, true, false]
        );
    }
}
