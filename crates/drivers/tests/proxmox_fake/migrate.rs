//! The fake's migrate endpoints: the precondition check (GET) and the
//! migration itself (POST) of VMs and containers, as qemu-server
//! (`src/PVE/API2/Qemu.pm`) and pve-container (`src/PVE/API2/LXC.pm`) answer.

use super::cluster::{FakeCluster, Profile};
use serde_json::{json, Value};

/// What the fake's precondition refused, for tests to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub vmid: u64,
    pub target: String,
    pub reason: String,
}

impl FakeCluster {
    pub(super) fn migrate(
        &mut self,
        method: &str,
        node: &str,
        kind: &str,
        vmid: &str,
        target: String,
    ) -> Result<Value, (u16, String)> {
        if !self.online(node) {
            return Err((595, format!("no route to host {node}")));
        }
        let vmid: u64 = vmid.parse().unwrap_or(0);
        let conf = if kind == "qemu" { "qemu-server" } else { "lxc" };
        let g = self
            .guests
            .iter()
            .find(|g| g.vmid == vmid && g.node == node && g.kind == kind)
            .ok_or((
                500,
                format!("Configuration file 'nodes/{node}/{conf}/{vmid}.conf' does not exist"),
            ))?
            .clone();
        let others: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.name != node)
            .map(|n| n.name.clone())
            .collect();
        let ha = g.hastate.is_some();
        let (dependent, blocking) = if ha {
            self.ha_motion_info(vmid)
        } else {
            Default::default()
        };
        if method == "GET" {
            // Not allowed: offline nodes (their storage is not available)
            // and nodes with a blocking HA resource (migrate_vm_precondition).
            let mut not_allowed = serde_json::Map::new();
            for n in others.iter().filter(|n| !self.online(n)) {
                not_allowed.insert(
                    n.to_string(),
                    json!({"unavailable_storages": ["local-lvm"]}),
                );
            }
            if self.profile == Profile::Pve9 {
                for (n, list) in &blocking {
                    if n != node {
                        not_allowed.insert(n.clone(), json!({"blocking-ha-resources": list}));
                    }
                }
            }
            let allowed: Vec<&String> = others
                .iter()
                .filter(|n| !not_allowed.contains_key(n.as_str()))
                .collect();
            let running = u8::from(g.status != "stopped");
            if kind == "lxc" {
                return Ok(json!({"running": running == 1, "allowed-nodes": allowed,
                       "not-allowed-nodes": not_allowed}));
            }
            // Local volumes with their attributes (`check_vm_disks_local`):
            // disks, CD-ROM images, snapshot references.
            let mut disks = Vec::new();
            if g.local_disk || g.snapshot {
                let mut d = json!({"volid": format!("local-lvm:vm-{vmid}-disk-0"), "cdrom": 0,
                    "is_unused": 0, "size": 8u64 << 30});
                if g.snapshot {
                    d["referenced_in_snapshot"] = json!({"before-upgrade": 1});
                }
                disks.push(d);
            }
            if let Some(iso) = &g.cdrom_iso {
                disks.push(json!({"volid": iso, "cdrom": 1, "is_unused": 0, "size": 1u64 << 30}));
            }
            let mut answer = json!({"running": running, "allowed_nodes": allowed,
                   "not_allowed_nodes": not_allowed, "local_disks": disks,
                   "local_resources": g.local_resources,
                   "mapped-resources": [], "mapped-resource-info": {}});
            if self.profile == Profile::Pve9 {
                answer["has-dbus-vmstate"] = json!(1);
                if ha {
                    answer["dependent-ha-resources"] = json!(dependent);
                }
            }
            return Ok(answer);
        }
        if !self.online(&target) {
            return Err((500, format!("target node '{target}' is not online")));
        }
        if let Some(lock) = &g.lock {
            return Err((500, format!("VM is locked ({lock})")));
        }
        // A running replicated VM moves only to a replication target
        // (qemu-server `src/PVE/API2/Qemu.pm`, migrate_vm).
        if let Some(targets) = &g.replication_targets {
            if g.status == "running" && !targets.contains(&target) {
                self.refused.push(Refused {
                    vmid,
                    target: target.clone(),
                    reason: "replication".into(),
                });
                return Err((
                    500,
                    format!(
                        "Cannot live-migrate replicated VM to node '{target}' - not a replication \
                         target. Use 'force' to override."
                    ),
                ));
            }
        }
        // An HA guest is handed to the HA stack (`hamigrate` worker).
        let task = match (ha, kind) {
            (true, _) => "hamigrate",
            (false, "qemu") => "qmigrate",
            (false, _) => "vzmigrate",
        };
        // What the migration itself refuses once running
        // (`src/PVE/QemuMigrate.pm`): the task fails.
        let blocked = !g.local_resources.is_empty()
            || g.cdrom_iso
                .as_deref()
                .is_some_and(|v| !v.contains("cloudinit"))
            || (g.snapshot && g.status == "running");
        if blocked && task == "qmigrate" {
            self.fail_migration_of.insert(vmid);
            self.refused.push(Refused {
                vmid,
                target: target.clone(),
                reason: "blocked in the task".into(),
            });
        }
        Ok(json!(self.start_task(node, task, vmid, &target)))
    }
}
