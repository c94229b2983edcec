//! Reading Proxmox VE's migration precondition answer
//! (`GET /nodes/{node}/qemu/{vmid}/migrate`, 9.x also for `lxc`) into
//! "go", "not to these nodes" or "nowhere", with the reason, as qemu-server
//! decides (`src/PVE/API2/Qemu.pm` migrate_vm_precondition, and what
//! `src/PVE/QemuMigrate.pm` refuses once the migration runs).

use serde_json::Value;

/// What the precondition answer says about one move.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// The move may start; `partners` are HA resources that move with it
    /// (positive resource affinity, `dependent-ha-resources`).
    Go {
        partners: Vec<u64>,
        local_disks: Vec<String>,
    },
    /// Not to these nodes (the target among them), for this reason.
    NotTo { nodes: Vec<String>, reason: String },
    /// Nowhere, for this reason.
    Nowhere(String),
}

/// The field names of the two guest kinds (qemu-server uses `_`,
/// pve-container `-`).
pub(crate) struct Spelling {
    pub allowed: &'static str,
    pub not_allowed: &'static str,
}

pub(crate) const QEMU: Spelling = Spelling {
    allowed: "allowed_nodes",
    not_allowed: "not_allowed_nodes",
};
pub(crate) const LXC: Spelling = Spelling {
    allowed: "allowed-nodes",
    not_allowed: "not-allowed-nodes",
};

/// The verdict on moving to `target`; `allow_local_disks` is the
/// operator's leave to copy local disks.
pub(crate) fn verdict(
    check: &Value,
    spelling: &Spelling,
    target: &str,
    allow_local_disks: bool,
) -> Verdict {
    // PCI/USB passthrough, local mappings...: no target at all
    // (qemu-server `src/PVE/QemuMigrate/Helpers.pm`, check_local_resources).
    if let Some(r) = non_empty_list(check, "local_resources") {
        return Verdict::Nowhere(format!("local resources: {r}"));
    }
    let running = check.get("running").is_some_and(truthy);
    let disks = check
        .get("local_disks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for d in disks {
        let volid = d.get("volid").and_then(Value::as_str).unwrap_or("?");
        // A local CD-ROM image blocks, a cloud-init one is regenerated
        // (qemu-server `src/PVE/QemuMigrate.pm`, "local cdrom image").
        if flag(d, "cdrom") && !is_cloudinit(volid) && !matches!(volid, "none" | "cdrom") {
            return Verdict::Nowhere(format!("local CD-ROM image {volid}"));
        }
        // Local disks with snapshots cannot be copied while the VM runs
        // (`src/PVE/QemuMigrate.pm`, "non-replicated snapshot exists").
        let snapshots = d
            .get("referenced_in_snapshot")
            .is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()));
        if running && snapshots && !flag(d, "replicated") && !flag(d, "is_unused") {
            return Verdict::Nowhere(format!("local disk {volid} has snapshots"));
        }
    }
    if let Some(verdict) = blocked(check, spelling, target) {
        return verdict;
    }
    let local_disks = local_disks(check);
    if !local_disks.is_empty() && !allow_local_disks {
        return Verdict::Nowhere(format!(
            "local disks ({}); set proxmox.allow_local_disks = true to copy them",
            local_disks.join(", ")
        ));
    }
    let partners = check
        .get("dependent-ha-resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(super::ha_config::sid_vmid)
        .collect();
    Verdict::Go {
        partners,
        local_disks,
    }
}

/// The nodes the answer forbids, when `target` is one of them (or not
/// among the allowed ones).
fn blocked(check: &Value, spelling: &Spelling, target: &str) -> Option<Verdict> {
    // An object keyed by node (what Proxmox VE answers) or a plain list.
    let (listed, info): (Vec<String>, Option<String>) = match check.get(spelling.not_allowed) {
        Some(Value::Object(map)) => (
            map.keys().cloned().collect(),
            map.get(target).map(|i| i.to_string()),
        ),
        Some(Value::Array(list)) => (
            list.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            None,
        ),
        _ => (Vec::new(), None),
    };
    if listed.iter().any(|n| n == target) {
        let reason = match info {
            Some(i) => format!("{target} is not allowed ({i})"),
            None => format!("{target} is not allowed"),
        };
        return Some(Verdict::NotTo {
            nodes: listed,
            reason,
        });
    }
    let allowed = check.get(spelling.allowed).and_then(Value::as_array)?;
    if !allowed.iter().any(|n| n.as_str() == Some(target)) {
        return Some(Verdict::NotTo {
            nodes: vec![target.to_string()],
            reason: format!("{target} is not among the allowed nodes"),
        });
    }
    None
}

fn is_cloudinit(volid: &str) -> bool {
    volid
        .split_once("vm-")
        .and_then(|(_, rest)| rest.split_once('-'))
        .is_some_and(|(id, rest)| {
            id.chars().all(|c| c.is_ascii_digit()) && rest.starts_with("cloudinit")
        })
}

fn flag(d: &Value, key: &str) -> bool {
    d.get(key).is_some_and(truthy)
}

fn truthy(v: &Value) -> bool {
    v.as_bool().unwrap_or(false) || v.as_i64().unwrap_or(0) != 0
}

fn non_empty_list(v: &Value, key: &str) -> Option<String> {
    let list = v.get(key)?.as_array()?;
    (!list.is_empty()).then(|| {
        list.iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Local disks a live migration would have to copy (not CD-ROMs, not
/// unused volumes).
fn local_disks(check: &Value) -> Vec<String> {
    check
        .get("local_disks")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|d| !flag(d, "cdrom") && !flag(d, "is_unused"))
                .filter_map(|d| d.get("volid").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_are_read_in_both_spellings() {
        let qemu = json!({"running":1,"allowed_nodes":["b"],"not_allowed_nodes":{"c":{"unavailable_storages":["local-zfs"]}},
            "local_disks":[{"volid":"local-zfs:vm-100-disk-0","cdrom":0,"is_unused":0,"size":1}],
            "local_resources":[]});
        assert!(matches!(
            verdict(&qemu, &QEMU, "b", true),
            Verdict::Go { .. }
        ));
        let Verdict::NotTo { nodes, reason } = verdict(&qemu, &QEMU, "c", true) else {
            panic!()
        };
        assert_eq!(nodes, ["c"]);
        assert!(reason.contains("local-zfs"), "{reason}");
        assert!(matches!(
            verdict(&qemu, &QEMU, "d", true),
            Verdict::NotTo { .. }
        ));
        assert!(matches!(
            verdict(&qemu, &QEMU, "b", false),
            Verdict::Nowhere(_)
        ));
        let lxc = json!({"running":true,"allowed-nodes":["b"]});
        assert!(matches!(
            verdict(&lxc, &LXC, "b", false),
            Verdict::Go { .. }
        ));
    }

    #[test]
    fn cdroms_snapshots_and_passthrough_block_cloudinit_does_not() {
        let with = |disk: Value| json!({"running":1,"allowed_nodes":["b"],"local_disks":[disk],"local_resources":[]});
        let iso = with(json!({"volid":"local:iso/debian.iso","cdrom":1,"is_unused":0}));
        assert!(
            matches!(verdict(&iso, &QEMU, "b", true), Verdict::Nowhere(r) if r.contains("CD-ROM"))
        );
        let ci = with(json!({"volid":"local-lvm:vm-100-cloudinit","cdrom":1}));
        assert_eq!(
            verdict(&ci, &QEMU, "b", false),
            Verdict::Go {
                partners: vec![],
                local_disks: vec![]
            }
        );
        let snap =
            with(json!({"volid":"local-lvm:vm-100-disk-0","referenced_in_snapshot":{"s1":1}}));
        assert!(
            matches!(verdict(&snap, &QEMU, "b", true), Verdict::Nowhere(r) if r.contains("snapshots"))
        );
        let pci = json!({"running":1,"allowed_nodes":["b"],"local_disks":[],"local_resources":["hostpci0"]});
        assert!(
            matches!(verdict(&pci, &QEMU, "b", true), Verdict::Nowhere(r) if r.contains("hostpci0"))
        );
        let ha = json!({"running":1,"allowed_nodes":["b"],"local_disks":[],"local_resources":[],
            "dependent-ha-resources":["vm:101","ct:102"]});
        assert_eq!(
            verdict(&ha, &QEMU, "b", false),
            Verdict::Go {
                partners: vec![101, 102],
                local_disks: vec![]
            }
        );
    }
}
