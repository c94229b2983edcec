//! Moving a guest: Proxmox VE's own precondition check (`precondition.rs`),
//! then `POST /nodes/{node}/{qemu|lxc}/{vmid}/migrate`: live migration for
//! VMs, restart migration for containers (only when the operator allows
//! it). For an HA-managed guest the same call hands the move to the HA
//! stack as a short `hamigrate` task (qemu-server `src/PVE/API2/Qemu.pm`,
//! pve-container `src/PVE/API2/LXC.pm`, migrate_vm: `VM.Migrate` only);
//! the CRM's service state is then followed until the guest runs on the
//! target, the CRM leaves it where it was (refused), or it fails.
//!
//! A refusal (precondition, a synchronous API error, the CRM ignoring the
//! request) is returned as a [`Refusal`] for the driver to remember.

use super::client::{percent_encode, Api};
use super::config::ProxmoxConfig;
use super::observe::{Guest, GuestKind};
use super::precondition::{self, Verdict};
use super::version::PveVersion;
use crate::{DriverError, MigrationOutcome};
use serde_json::Value;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Task types that are migrations (Keel's or anyone's).
const MIGRATION_TASKS: [&str; 3] = ["qmigrate", "vzmigrate", "hamigrate"];

/// Where Proxmox VE refused a guest to go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refused {
    Everywhere,
    Nodes(Vec<String>),
}

/// A move Proxmox VE refused, to be remembered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub vmid: u64,
    pub targets: Refused,
    pub reason: String,
    /// Refused by the HA stack (blocking HA resources, the CRM ignoring
    /// the request): also forgotten when the HA rules change.
    pub by_ha: bool,
}

/// One migration, from its checks to its end.
pub(crate) struct Migration<'a> {
    pub api: &'a Api,
    pub config: &'a ProxmoxConfig,
    pub version: PveVersion,
    pub guest: &'a Guest,
    pub to: &'a str,
    /// Bandwidth cap asked by the caller, bytes per second.
    pub bandwidth_bytes_per_second: Option<f64>,
    /// Refusals met (appended).
    pub refusals: &'a RefCell<Vec<Refusal>>,
}

/// A started migration being followed.
pub(crate) struct Follow {
    pub upid: String,
    /// HA resources moving with the guest.
    pub partners: Vec<u64>,
    /// For an HA guest, once its `hamigrate` task ended: when, and
    /// whether the CRM was seen migrating it.
    crm: Option<(Instant, bool)>,
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

    fn dropped(&self, message: String) -> DriverError {
        DriverError::Hypervisor {
            context: self.context(),
            message,
        }
    }

    /// A refusal: remembered, and reported as an error.
    fn refuse(&self, targets: Refused, reason: String) -> DriverError {
        self.refusals.borrow_mut().push(Refusal {
            vmid: self.guest.vmid,
            targets,
            by_ha: reason.contains("blocking-ha-resources") || reason.contains("HA stack"),
            reason: reason.clone(),
        });
        self.dropped(format!("Proxmox VE refuses it: {reason}"))
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

    /// Checks the guest and both nodes, asks Proxmox VE whether the move
    /// is possible, waits for a free slot (the concurrency limits, counting
    /// migrations already running, Keel's own included, and HA partners
    /// moving along) and starts the migration task.
    ///
    /// `own_tasks` are Keel's migration tasks of this wave as (UPID, target
    /// node): a running one counts on its target too (for other people's
    /// tasks only the source node is known).
    pub(crate) fn start(
        &self,
        deadline: Instant,
        own_tasks: &[(String, String)],
    ) -> Result<Follow, DriverError> {
        if self.guest.kind == GuestKind::Lxc && !self.config.allow_container_restart {
            return Err(DriverError::Unsupported(
                "moving a running container (it restarts): set proxmox.allow_container_restart = true",
            ));
        }
        self.check_nodes()?;
        let g = self.guest;
        let path = format!("/nodes/{}/{}/{}/migrate", g.node, g.kind.path(), g.vmid);
        let need = format!("VM.Migrate on /vms/{}", g.vmid);
        let (partners, local_disks) = self.precondition(&path, &need)?;
        self.wait_for_slot(deadline, own_tasks, 1 + partners.len())?;
        let mut form = vec![("target", self.to.to_string())];
        match g.kind {
            GuestKind::Qemu => {
                form.push(("online", "1".into()));
                if !local_disks.is_empty() {
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
        let kib = self.config.bandwidth_limit_kib_per_second.or(self
            .bandwidth_bytes_per_second
            .map(|b| (b / 1024.0).max(1.0) as u64));
        if let Some(kib) = kib {
            form.push(("bwlimit", kib.to_string()));
        }
        let upid = match self.api.post(&path, &form, &need) {
            Ok(upid) => upid,
            // pve-manager answers a `die` of the handler with 500 and its
            // message (replicated VM to a node outside its replication
            // targets, storage missing there...): a refusal of this target.
            // A lock is passing (a backup, a snapshot): not a refusal.
            Err(DriverError::Hypervisor { message, .. })
                if (message.starts_with("HTTP 500") || message.starts_with("HTTP 400"))
                    && !message.contains("locked") =>
            {
                return Err(self.refuse(Refused::Nodes(vec![self.to.to_string()]), message));
            }
            Err(e) => return Err(e),
        };
        let upid = upid
            .as_str()
            .filter(|u| u.starts_with("UPID:"))
            .map(str::to_string)
            .ok_or_else(|| self.dropped(format!("the answer is not a task id: {upid}")))?;
        Ok(Follow {
            upid,
            partners,
            crm: None,
        })
    }

    /// The precondition check: (HA partners, local disks to copy), or the
    /// refusal. 8.x has no such check for containers.
    fn precondition(&self, path: &str, need: &str) -> Result<(Vec<u64>, Vec<String>), DriverError> {
        let spelling = match self.guest.kind {
            GuestKind::Qemu => &precondition::QEMU,
            GuestKind::Lxc if self.version.has_container_precondition() => &precondition::LXC,
            GuestKind::Lxc => return Ok((Vec::new(), Vec::new())),
        };
        let check = self
            .api
            .get(path, &[("target", self.to.to_string())], need)?;
        match precondition::verdict(&check, spelling, self.to, self.config.allow_local_disks) {
            Verdict::Go {
                partners,
                local_disks,
            } => Ok((partners, local_disks)),
            Verdict::NotTo { nodes, reason } => Err(self.refuse(Refused::Nodes(nodes), reason)),
            Verdict::Nowhere(reason) => Err(self.refuse(Refused::Everywhere, reason)),
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
                return Err(self.dropped(format!(
                    "dropped before it started: node {name} is {}",
                    status.unwrap_or("not in the cluster")
                )));
            }
        }
        Ok(())
    }

    /// Waits until the nodes and the cluster have room for `weight` more
    /// migrations (counting migrations others started).
    fn wait_for_slot(
        &self,
        deadline: Instant,
        own_tasks: &[(String, String)],
        weight: usize,
    ) -> Result<(), DriverError> {
        let weight = weight as u32;
        let mut pause = Poll::new(self.config);
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
            let limit_node = self.config.max_migrations_per_node.max(weight);
            let limit_cluster = self.config.max_migrations_per_cluster.max(weight);
            let busy = if running.len() as u32 + weight > limit_cluster {
                Some(format!(
                    "{} migrations running in the cluster",
                    running.len()
                ))
            } else {
                [self.guest.node.as_str(), self.to]
                    .into_iter()
                    .find(|n| on(n) + weight > limit_node)
                    .map(|n| format!("{} migrations running on {n}", on(n)))
            };
            let Some(busy) = busy else { return Ok(()) };
            if Instant::now() >= deadline {
                return Err(self.dropped(format!(
                    "dropped: {busy} (limits: proxmox.max_migrations_per_node = {}, \
                     max_migrations_per_cluster = {}) until the timeout",
                    self.config.max_migrations_per_node, self.config.max_migrations_per_cluster
                )));
            }
            pause.wait();
        }
    }

    /// One look at a started migration: `Some` once it ended (its result)
    /// or the deadline passed (an error), `None` while it runs.
    pub(crate) fn poll(
        &self,
        follow: &mut Follow,
        deadline: Instant,
    ) -> Option<Result<(), DriverError>> {
        if let Some((since, seen_migrating)) = follow.crm {
            return self.poll_crm(follow, since, seen_migrating, deadline);
        }
        let upid = &follow.upid;
        let node = upid
            .split(':')
            .nth(1)
            .unwrap_or(&self.guest.node)
            .to_string();
        let path = format!("/nodes/{node}/tasks/{}/status", percent_encode(upid));
        let need = format!("Sys.Audit on /nodes/{node}");
        let status = match self.api.get(&path, &[], &need) {
            Ok(status) => status,
            Err(e) => return Some(Err(e)),
        };
        if status.get("status").and_then(Value::as_str) == Some("stopped") {
            let exit = status
                .get("exitstatus")
                .and_then(Value::as_str)
                .unwrap_or("(no exit status)");
            if !exit_is_ok(exit) {
                // The exit status is the task's last error line (pve-common
                // `src/PVE/RESTEnvironment.pm`): no log read needed.
                return Some(Err(self.failed(format!("task {upid} ended with {exit:?}"))));
            }
            if self.guest.ha {
                follow.crm = Some((Instant::now(), false));
                return None;
            }
            return Some(Ok(()));
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

    /// Follows the CRM's handling of the request through the documented
    /// HA status (`crm_state` and `node` of the service entry, pve-ha-manager
    /// `src/PVE/API2/HA/Status.pm`).
    fn poll_crm(
        &self,
        follow: &mut Follow,
        since: Instant,
        seen_migrating: bool,
        deadline: Instant,
    ) -> Option<Result<(), DriverError>> {
        let g = self.guest;
        let sid = format!("{}:{}", g.kind.ha_type(), g.vmid);
        let status = match self
            .api
            .get("/cluster/ha/status/current", &[], "Sys.Audit on /")
        {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let entry = status.as_array().and_then(|l| {
            l.iter()
                .find(|e| e.get("sid").and_then(Value::as_str) == Some(sid.as_str()))
        });
        let Some(entry) = entry else {
            return Some(Err(DriverError::VmLost {
                vm: g.vmid.to_string(),
                from: g.node.clone(),
                to: self.to.to_string(),
                cause: format!("{sid} left the HA stack during its migration"),
            }));
        };
        let node = entry.get("node").and_then(Value::as_str).unwrap_or("?");
        let state = entry
            .get("crm_state")
            .and_then(Value::as_str)
            .unwrap_or("?");
        // Service states of the CRM (`src/PVE/HA/Manager.pm`).
        match state {
            "started" if node == self.to => return Some(Ok(())),
            "migrate" | "relocate" => follow.crm = Some((since, true)),
            "started" if seen_migrating => {
                return Some(Err(
                    self.failed(format!("the HA stack tried and left {sid} on {node}"))
                ))
            }
            "started" => {
                let grace = Duration::from_secs_f64(self.config.ha_request_grace_seconds);
                if since.elapsed() >= grace {
                    // The CRM ignores a request it cannot follow (node
                    // affinity, negative resource affinity) and logs it only.
                    return Some(Err(self.refuse(
                        Refused::Nodes(vec![self.to.to_string()]),
                        format!(
                            "the HA stack did not start moving {sid} within {} s \
                             (proxmox.ha_request_grace_seconds): it keeps it on {node}",
                            self.config.ha_request_grace_seconds
                        ),
                    )));
                }
            }
            "error" | "fence" | "recovery" | "freeze" | "stopped" | "request_stop" => {
                return Some(Err(
                    self.failed(format!("HA resource {sid} is in state {state} on {node}"))
                ))
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Some(Err(self.failed(format!(
                "HA did not move {sid} within {} s (it is on {node}, {state})",
                self.config.task_timeout_seconds
            ))));
        }
        None
    }
}

/// A task's exit status means success: `OK` or `WARNINGS: <n>` (pve-common
/// `src/PVE/UPID.pm`, status_is_error).
pub(crate) fn exit_is_ok(exit: &str) -> bool {
    exit == "OK"
        || exit
            .strip_prefix("WARNINGS: ")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
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

/// The outcome of a migration that started at `started` and ended now
/// (Proxmox VE reports neither downtime nor bytes).
pub(crate) fn outcome_since(started: Instant) -> MigrationOutcome {
    MigrationOutcome {
        seconds: started.elapsed().as_secs_f64(),
        downtime_ms: None,
        bytes: None,
    }
}

/// Polling pauses: `poll_start_seconds` (50 ms) doubling to 2 s (short
/// tasks finish fast, long ones are not hammered).
pub(crate) struct Poll(Duration);

impl Poll {
    pub(crate) fn new(config: &ProxmoxConfig) -> Self {
        Poll(Duration::from_secs_f64(config.poll_start_seconds.min(2.0)))
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
    fn ok_and_warnings_are_success() {
        assert!(exit_is_ok("OK"));
        assert!(exit_is_ok("WARNINGS: 1"));
        assert!(exit_is_ok("WARNINGS: 12"));
        assert!(!exit_is_ok("WARNINGS: "));
        assert!(!exit_is_ok("migration problems"));
        assert!(!exit_is_ok("unexpected status"));
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
