//! Moving a guest: live migration for VMs after Proxmox VE's own
//! precondition check, restart migration for containers (only when the
//! operator allows it), HA-managed guests through the HA stack; then the
//! task followed to its exit status. A failed task is reported with the
//! last line of its log and never retried here.

use super::client::{percent_encode, Api};
use super::config::ProxmoxConfig;
use super::observe::{Guest, GuestKind};
use crate::{DriverError, MigrationOutcome};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Task types that are migrations (Keel's or anyone's).
const MIGRATION_TASKS: [&str; 3] = ["qmigrate", "vzmigrate", "hamigrate"];

/// One migration, from its checks to its end.
pub(crate) struct Migration<'a> {
    pub api: &'a Api,
    pub config: &'a ProxmoxConfig,
    pub guest: &'a Guest,
    pub to: &'a str,
    /// Bandwidth cap asked by the caller, bytes per second.
    pub bandwidth_bytes_per_second: Option<f64>,
}

impl Migration<'_> {
    fn context(&self) -> String {
        format!(
            "migrating {} {} from {} to {}",
            kind_word(self.guest.kind),
            self.guest.vmid,
            self.guest.node,
            self.to
        )
    }

    fn refused(&self, message: String) -> DriverError {
        DriverError::Hypervisor {
            context: self.context(),
            message,
        }
    }

    fn failed(&self, cause: String) -> DriverError {
        DriverError::MigrationFailed {
            vm: self.guest.vmid.to_string(),
            from: self.guest.node.clone(),
            to: self.to.to_string(),
            cause,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs_f64(self.config.task_timeout_seconds)
    }

    /// Checks the guest and both nodes, waits for a free slot (the
    /// concurrency limits, counting migrations already running, Keel's own
    /// included) and starts the migration. An HA-managed guest is moved by
    /// the HA stack, not by a task: that one is followed to its end here.
    ///
    /// `own_tasks` are Keel's migration tasks of this wave as (UPID, target
    /// node): a running one counts on its target too (for other people's
    /// tasks only the source node is known).
    pub(crate) fn start(
        &self,
        deadline: Instant,
        own_tasks: &[(String, String)],
    ) -> Result<Started, DriverError> {
        if self.guest.kind == GuestKind::Lxc && !self.config.allow_container_restart {
            return Err(DriverError::Unsupported(
                "moving a running container (it restarts): set proxmox.allow_container_restart = true",
            ));
        }
        self.check_nodes()?;
        self.wait_for_slot(deadline, own_tasks)?;
        if self.guest.ha {
            self.through_ha(deadline)?;
            Ok(Started::Finished)
        } else {
            Ok(Started::Task(self.start_task()?))
        }
    }

    /// Both nodes online, else the move is dropped before anything starts.
    fn check_nodes(&self) -> Result<(), DriverError> {
        let nodes = self.api.get("/nodes", &[], "Sys.Audit on /nodes")?;
        for name in [self.guest.node.as_str(), self.to] {
            let status = nodes.as_array().and_then(|list| {
                list.iter()
                    .find(|n| n.get("node").and_then(Value::as_str) == Some(name))
                    .and_then(|n| n.get("status").and_then(Value::as_str))
            });
            if status != Some("online") {
                return Err(self.refused(format!(
                    "dropped before it started: node {name} is {}",
                    status.unwrap_or("not in the cluster")
                )));
            }
        }
        Ok(())
    }

    /// Waits until the nodes and the cluster have room for one more
    /// migration (counting migrations others started).
    fn wait_for_slot(
        &self,
        deadline: Instant,
        own_tasks: &[(String, String)],
    ) -> Result<(), DriverError> {
        let mut pause = Poll::new();
        loop {
            let tasks = self.api.get("/cluster/tasks", &[], "Sys.Audit on /")?;
            let list = tasks.as_array().map(Vec::as_slice).unwrap_or_default();
            let running: Vec<(String, String)> =
                list.iter().filter_map(running_migration).collect();
            // Targets of Keel's own tasks that still run.
            let own_targets: Vec<&str> = list
                .iter()
                .filter(|t| running_migration(t).is_some())
                .filter_map(|t| t.get("upid").and_then(Value::as_str))
                .filter_map(|upid| {
                    let own = own_tasks.iter().find(|(u, _)| u == upid);
                    own.map(|(_, target)| target.as_str())
                })
                .collect();
            let on = |n: &str| {
                (running.iter().filter(|(node, _)| node == n).count()
                    + own_targets.iter().filter(|t| **t == n).count()) as u32
            };
            let busy = if running.len() as u32 >= self.config.max_migrations_per_cluster {
                Some(format!(
                    "{} migrations running in the cluster",
                    running.len()
                ))
            } else {
                [self.guest.node.as_str(), self.to]
                    .into_iter()
                    .find(|n| on(n) >= self.config.max_migrations_per_node)
                    .map(|n| format!("{} migrations running on {n}", on(n)))
            };
            let Some(busy) = busy else { return Ok(()) };
            if Instant::now() >= deadline {
                return Err(self.refused(format!(
                    "dropped: {busy} (limits: proxmox.max_migrations_per_node = {}, \
                     max_migrations_per_cluster = {}) until the timeout",
                    self.config.max_migrations_per_node, self.config.max_migrations_per_cluster
                )));
            }
            pause.wait();
        }
    }

    /// The precondition check, then the POST; returns the task's UPID.
    fn start_task(&self) -> Result<String, DriverError> {
        let g = self.guest;
        let path = format!("/nodes/{}/{}/{}/migrate", g.node, g.kind.path(), g.vmid);
        let need = format!("VM.Migrate on /vms/{}", g.vmid);
        let check = self
            .api
            .get(&path, &[("target", self.to.to_string())], &need)?;
        let (allowed, not_allowed) = match g.kind {
            GuestKind::Qemu => ("allowed_nodes", "not_allowed_nodes"),
            GuestKind::Lxc => ("allowed-nodes", "not-allowed-nodes"),
        };
        if let Some(why) = blocked_target(&check, allowed, not_allowed, self.to) {
            return Err(self.refused(format!("Proxmox VE does not allow it: {why}")));
        }
        let mut form = vec![("target", self.to.to_string())];
        let kib = self.config.bandwidth_limit_kib_per_second.or(self
            .bandwidth_bytes_per_second
            .map(|b| (b / 1024.0).max(1.0) as u64));
        match g.kind {
            GuestKind::Qemu => {
                if let Some(r) = non_empty_list(&check, "local_resources") {
                    return Err(self.refused(format!("local resources block it: {r}")));
                }
                let disks = local_disks(&check);
                if !disks.is_empty() && !self.config.allow_local_disks {
                    return Err(self.refused(format!(
                        "it has local disks ({}); set proxmox.allow_local_disks = true to copy them",
                        disks.join(", ")
                    )));
                }
                form.push(("online", "1".into()));
                if !disks.is_empty() {
                    form.push(("with-local-disks", "1".into()));
                }
            }
            GuestKind::Lxc => {
                form.push(("restart", "1".into()));
                form.push((
                    "timeout",
                    self.config.container_shutdown_timeout_seconds.to_string(),
                ));
            }
        }
        if let Some(kib) = kib {
            form.push(("bwlimit", kib.to_string()));
        }
        let upid = self.api.post(&path, &form, &need)?;
        upid.as_str()
            .filter(|u| u.starts_with("UPID:"))
            .map(str::to_string)
            .ok_or_else(|| self.refused(format!("the answer is not a task id: {upid}")))
    }

    /// One look at task `upid`: `Some` once it stopped (its result) or the
    /// deadline passed (an error), `None` while it runs.
    pub(crate) fn poll(&self, upid: &str, deadline: Instant) -> Option<Result<(), DriverError>> {
        let node = upid
            .split(':')
            .nth(1)
            .unwrap_or(&self.guest.node)
            .to_string();
        let path = format!("/nodes/{node}/tasks/{}", percent_encode(upid));
        let need = format!("Sys.Audit on /nodes/{node}");
        let status = match self.api.get(&format!("{path}/status"), &[], &need) {
            Ok(status) => status,
            Err(e) => return Some(Err(e)),
        };
        if status.get("status").and_then(Value::as_str) == Some("stopped") {
            let exit = status
                .get("exitstatus")
                .and_then(Value::as_str)
                .unwrap_or("(no exit status)");
            if exit == "OK" {
                return Some(Ok(()));
            }
            let line = self.last_log_line(&path, &need);
            return Some(Err(
                self.failed(format!("task {upid} ended with {exit:?}; log: {line}"))
            ));
        }
        if Instant::now() >= deadline {
            return Some(Err(self.failed(format!(
                "task {upid} still running after {} s (proxmox.task_timeout_seconds); \
                 Keel stopped following it, Proxmox VE goes on with it",
                self.config.task_timeout_seconds
            ))));
        }
        None
    }

    fn last_log_line(&self, task_path: &str, need: &str) -> String {
        let query = [("start", "0".to_string()), ("limit", "1000".to_string())];
        match self.api.get(&format!("{task_path}/log"), &query, need) {
            Ok(lines) => lines
                .as_array()
                .and_then(|l| {
                    l.iter()
                        .filter_map(|x| x.get("t").and_then(Value::as_str))
                        .rfind(|t| !t.trim().is_empty())
                })
                .unwrap_or("(empty log)")
                .to_string(),
            Err(e) => format!("(log unreadable: {e})"),
        }
    }

    /// Asks the HA stack to move the guest and waits until it runs there.
    fn through_ha(&self, deadline: Instant) -> Result<(), DriverError> {
        let g = self.guest;
        let sid = format!("{}:{}", g.kind.ha_type(), g.vmid);
        let need = "Sys.Console on / (HA migrations)";
        let path = format!("/cluster/ha/resources/{}/migrate", percent_encode(&sid));
        let answer = self
            .api
            .post(&path, &[("node", self.to.to_string())], need)?;
        if let Some(blocking) = non_empty_list(&answer, "blocking-resources") {
            return Err(self.refused(format!("HA resources block it: {blocking}")));
        }
        let mut pause = Poll::new();
        loop {
            let list = self.api.get(
                "/cluster/resources",
                &[("type", "vm".to_string())],
                "VM.Audit on /vms",
            )?;
            let now = list.as_array().and_then(|l| {
                l.iter()
                    .find(|r| r.get("vmid").and_then(Value::as_u64) == Some(g.vmid))
            });
            let Some(now) = now else {
                return Err(DriverError::VmLost {
                    vm: g.vmid.to_string(),
                    from: g.node.clone(),
                    to: self.to.to_string(),
                    cause: "the guest vanished from the cluster during its HA migration".into(),
                });
            };
            let node = now.get("node").and_then(Value::as_str);
            let status = now.get("status").and_then(Value::as_str);
            if node == Some(self.to) && status == Some("running") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failed(format!(
                    "HA did not move {sid} within {} s (it is on {}, {})",
                    self.config.task_timeout_seconds,
                    node.unwrap_or("?"),
                    status.unwrap_or("?")
                )));
            }
            pause.wait();
        }
    }
}

fn kind_word(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Qemu => "VM",
        GuestKind::Lxc => "container",
    }
}

/// A running migration task of `/cluster/tasks` as (node, type); the
/// fields come from the UPID (`UPID:node:pid:pstart:starttime:type:id:user:`).
fn running_migration(task: &Value) -> Option<(String, String)> {
    if task.get("endtime").is_some() || task.get("status").is_some() {
        return None;
    }
    let upid = task.get("upid")?.as_str()?;
    let mut parts = upid.split(':');
    let node = parts.nth(1)?;
    let kind = parts.nth(3)?;
    MIGRATION_TASKS
        .contains(&kind)
        .then(|| (node.to_string(), kind.to_string()))
}

/// Why the precondition answer forbids `target`, if it does.
fn blocked_target(check: &Value, allowed: &str, not_allowed: &str, target: &str) -> Option<String> {
    // An object keyed by node (what Proxmox VE answers) or a plain list.
    let listed = match check.get(not_allowed) {
        Some(Value::Object(map)) => map.get(target).map(|info| format!(" ({info})")),
        Some(Value::Array(list)) => list
            .iter()
            .any(|n| n.as_str() == Some(target))
            .then(String::new),
        _ => None,
    };
    if let Some(info) = listed {
        return Some(format!("{target} is not allowed{info}"));
    }
    if let Some(list) = check.get(allowed).and_then(Value::as_array) {
        if !list.iter().any(|n| n.as_str() == Some(target)) {
            return Some(format!("{target} is not among the allowed nodes"));
        }
    }
    None
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

/// Local disks that a live migration would have to copy (not CD-ROMs,
/// not unused volumes).
fn local_disks(check: &Value) -> Vec<String> {
    let yes = |d: &Value, k: &str| {
        d.get(k)
            .is_some_and(|v| v.as_bool().unwrap_or(false) || v.as_i64().unwrap_or(0) != 0)
    };
    check
        .get("local_disks")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|d| !yes(d, "cdrom") && !yes(d, "is_unused"))
                .map(|d| {
                    d.get("volid")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Where a migration stands once started.
pub(crate) enum Started {
    /// A task runs: follow it by its UPID.
    Task(String),
    /// Already over (an HA migration, followed to its end when started).
    Finished,
}

/// The outcome of a migration that started at `started` and ended now
/// (Proxmox VE reports neither downtime nor bytes).
pub(crate) fn outcome_since(started: Instant) -> MigrationOutcome {
    MigrationOutcome {
        seconds: started.elapsed().as_secs_f64(),
        downtime_ms: None,
        bytes: None,
    }
}

/// Polling pauses: 50 ms doubling to 2 s (short tasks finish fast, long
/// ones are not hammered).
pub(crate) struct Poll(Duration);

impl Poll {
    pub(crate) fn new() -> Self {
        Poll(Duration::from_millis(50))
    }
    pub(crate) fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preconditions_are_read_in_both_spellings() {
        let qemu = json!({"running":1,"allowed_nodes":["b"],"not_allowed_nodes":{"c":{"unavailable_storages":["local-zfs"]}},
            "local_disks":[{"volid":"local:iso/x.iso","cdrom":1,"is_unused":0,"size":1},{"volid":"local-zfs:vm-100-disk-0","cdrom":0,"is_unused":0,"size":1}],
            "local_resources":[]});
        assert_eq!(
            blocked_target(&qemu, "allowed_nodes", "not_allowed_nodes", "b"),
            None
        );
        assert!(
            blocked_target(&qemu, "allowed_nodes", "not_allowed_nodes", "c")
                .unwrap()
                .contains("local-zfs")
        );
        assert!(blocked_target(&qemu, "allowed_nodes", "not_allowed_nodes", "d").is_some());
        assert_eq!(local_disks(&qemu), ["local-zfs:vm-100-disk-0"]);
        assert_eq!(non_empty_list(&qemu, "local_resources"), None);
        let lxc = json!({"running":true,"allowed-nodes":["b"]});
        assert_eq!(
            blocked_target(&lxc, "allowed-nodes", "not-allowed-nodes", "b"),
            None
        );
    }

    #[test]
    fn running_migrations_are_found_from_upids() {
        let t = |upid: &str, end: bool| {
            let mut v = json!({ "upid": upid });
            if end {
                v["endtime"] = json!(1);
                v["status"] = json!("OK");
            }
            v
        };
        let up = "UPID:pve1:0000A1B2:00C0FFEE:65000000:qmigrate:100:keel@pve!b:";
        assert_eq!(
            running_migration(&t(up, false)),
            Some(("pve1".into(), "qmigrate".into()))
        );
        assert_eq!(running_migration(&t(up, true)), None);
        let backup = "UPID:pve1:0000A1B2:00C0FFEE:65000000:vzdump:100:root@pam:";
        assert_eq!(running_migration(&t(backup, false)), None);
    }
}
