//! The fake's cluster: nodes, guests, HA rules or groups, HA status (nodes
//! in HA maintenance), CRS options and tasks, and what each endpoint
//! answers, in one of two version profiles (PVE 8.4, 9.1). Tasks and the
//! CRM advance lazily: every request first finishes what is due.

use super::crm::CrmMove;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The Proxmox VE release the fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// 8.4: HA groups, no HA rules (501), no container precondition (501),
    /// the HA migrate request answers null, VM `mem` is host memory.
    Pve8,
    /// 9.1: HA rules with per-resource failback, `memhost`.
    Pve9,
}

impl Profile {
    /// `GET /version` (pve-manager `PVE/API2.pm`).
    pub fn version(self) -> Value {
        match self {
            Profile::Pve8 => {
                json!({"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"})
            }
            Profile::Pve9 => {
                json!({"version": "9.1.2", "release": "9.1", "repoid": "1e1f3b1c9a7e0d42"})
            }
        }
    }
}

/// A node.
#[derive(Debug, Clone)]
pub struct FakeNode {
    pub name: String,
    pub online: bool,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Its HA LRM is in maintenance mode (`ha-manager crm-command
    /// node-maintenance enable`). The fake does not move HA guests away.
    pub ha_maintenance: bool,
    /// Memory the node uses beyond its guests (ZFS ARC, Ceph), bytes.
    pub overhead_mem_bytes: u64,
}

/// A guest (`qemu` or `lxc`).
#[derive(Debug, Clone)]
pub struct FakeGuest {
    pub vmid: u64,
    pub kind: &'static str,
    pub name: String,
    pub node: String,
    pub status: String,
    pub template: bool,
    /// CPU use, fraction of `maxcpu`.
    pub cpu: f64,
    pub maxcpu: u32,
    pub mem: u64,
    pub maxmem: u64,
    pub tags: String,
    pub lock: Option<String>,
    /// The CRM's state of an HA resource (`started`, `migrate`...).
    pub hastate: Option<String>,
    /// 9.x: the HA resource's `failback` (default on).
    pub ha_failback: bool,
    /// 8.x: the HA group.
    pub ha_group: Option<String>,
    pub local_disk: bool,
    /// Passthrough and the like (`local_resources`, e.g. `hostpci0`).
    pub local_resources: Vec<String>,
    /// A local ISO in a CD-ROM drive (volid).
    pub cdrom_iso: Option<String>,
    /// A snapshot referencing the local disk.
    pub snapshot: bool,
    /// Nodes it is replicated to (a replicated VM moves only there).
    pub replication_targets: Option<Vec<String>>,
    /// The config digest (changes with the config).
    pub digest: String,
    /// Bytes per second behind the net and disk counters.
    pub net_rate: f64,
    pub disk_rate: f64,
}

impl FakeGuest {
    /// A running guest using `cpu` of its `maxcpu` cores.
    pub fn new(vmid: u64, kind: &'static str, node: &str, maxcpu: u32, cpu: f64) -> Self {
        Self {
            vmid,
            kind,
            name: format!("guest-{vmid}"),
            node: node.into(),
            status: "running".into(),
            template: false,
            cpu,
            maxcpu,
            mem: 1 << 30,
            maxmem: 2 << 30,
            tags: String::new(),
            lock: None,
            hastate: None,
            ha_failback: true,
            ha_group: None,
            local_disk: false,
            local_resources: Vec::new(),
            cdrom_iso: None,
            snapshot: false,
            replication_targets: None,
            digest: format!("{vmid:040x}"),
            net_rate: 1e5,
            disk_rate: 2e5,
        }
    }
}

/// How to spoil the next `/cluster/resources` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// Invalid JSON, complete HTTP message.
    Malformed,
    /// Content-Length promises more than is sent before the close.
    Truncated,
}

#[derive(Debug, Clone)]
pub(super) struct Task {
    upid: String,
    node: String,
    kind: &'static str,
    vmid: u64,
    target: String,
    started: Instant,
    starttime: u64,
    done: Option<String>,
    log: Vec<String>,
}

/// The whole fake cluster.
#[derive(Debug, Clone)]
pub struct FakeCluster {
    pub profile: Profile,
    pub nodes: Vec<FakeNode>,
    pub guests: Vec<FakeGuest>,
    /// 9.x HA rules as `/cluster/ha/rules` lists them (`errors` when PVE
    /// finds one infeasible).
    pub ha_rules: Vec<Value>,
    /// 8.x HA groups as `/cluster/ha/groups` lists them.
    pub ha_groups: Vec<Value>,
    /// The `crs` line of datacenter.cfg (a property string); answered
    /// parsed, as an object.
    pub crs: String,
    /// Guests whose next migration task ends `WARNINGS: 1`.
    pub warn_migration_of: HashSet<u64>,
    /// HA migrations the CRM runs.
    pub crm_moves: Vec<CrmMove>,
    /// HA migrate requests the CRM ignored (vmids).
    pub crm_ignored: Vec<u64>,
    /// Guests the CRM moved back after a requested move (vmids).
    pub crm_undone: Vec<u64>,
    /// HA guests placed by a requested move, not yet failed back.
    pub keel_placed: HashSet<u64>,
    /// Migrations started while CRS auto-rebalance was on.
    pub started_during_auto_rebalance: usize,
    /// The release `/version` reports instead of the profile's (e.g. "8.2":
    /// nodes then carry no `hastate`, which came with 8.3).
    pub release_override: Option<&'static str>,
    /// At most one CRM round per this (default 0: every request).
    pub crm_round_interval: Duration,
    pub(super) last_crm_round: Option<Instant>,
    /// Moves the fake refused (replication, blocked in the task).
    pub refused: Vec<super::migrate::Refused>,
    /// How long a migration task runs.
    pub task_duration: Duration,
    /// Guests whose next migration task fails.
    pub fail_migration_of: HashSet<u64>,
    /// (method, path prefix, privilege): answered 403.
    pub forbidden: Vec<(String, String, String)>,
    pub corrupt_next: Option<Corruption>,
    /// After this many finished migrations, this node goes offline.
    pub offline_after_migrations: Option<(usize, String)>,
    pub(super) started: Instant,
    pub(super) tasks: Vec<Task>,
    finished_migrations: usize,
}

impl FakeCluster {
    /// Nodes named `names`, each `cpus` cores and `gib` GiB, no guests.
    pub fn new(names: &[&str], cpus: u32, gib: u64) -> Self {
        Self {
            nodes: names
                .iter()
                .map(|n| FakeNode {
                    name: n.to_string(),
                    online: true,
                    cpus,
                    memory_bytes: gib << 30,
                    ha_maintenance: false,
                    overhead_mem_bytes: 0,
                })
                .collect(),
            profile: Profile::Pve9,
            guests: Vec::new(),
            ha_rules: Vec::new(),
            ha_groups: Vec::new(),
            crs: "ha=static".into(),
            warn_migration_of: HashSet::new(),
            crm_moves: Vec::new(),
            crm_ignored: Vec::new(),
            crm_undone: Vec::new(),
            keel_placed: HashSet::new(),
            started_during_auto_rebalance: 0,
            refused: Vec::new(),
            crm_round_interval: Duration::ZERO,
            release_override: None,
            last_crm_round: None,
            task_duration: Duration::from_millis(150),
            fail_migration_of: HashSet::new(),
            forbidden: Vec::new(),
            corrupt_next: None,
            offline_after_migrations: None,
            started: Instant::now(),
            tasks: Vec::new(),
            finished_migrations: 0,
        }
    }

    /// A big cluster for the benchmark: `nodes` nodes, `guests` guests
    /// (every tenth a container), spread evenly.
    pub fn big(nodes: usize, guests: usize) -> Self {
        let names: Vec<String> = (0..nodes).map(|i| format!("pve{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut c = Self::new(&refs, 64, 512);
        for i in 0..guests {
            let kind = if i % 10 == 9 { "lxc" } else { "qemu" };
            let mut g = FakeGuest::new(
                100 + i as u64,
                kind,
                &names[i % nodes],
                4,
                0.1 + (i % 7) as f64 / 10.0,
            );
            g.tags = if i % 5 == 0 {
                "keel-anti-affinity-web;prod".into()
            } else {
                "prod".into()
            };
            c.guests.push(g);
        }
        c
    }

    pub fn guest_mut(&mut self, vmid: u64) -> Option<&mut FakeGuest> {
        self.guests.iter_mut().find(|g| g.vmid == vmid)
    }

    /// The most migration tasks of `vmids` that ran at the same time
    /// (a task runs from its start for `task_duration`).
    pub fn most_tasks_at_once(&self, vmids: &[u64]) -> usize {
        let ours: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| vmids.contains(&t.vmid))
            .collect();
        ours.iter()
            .map(|t| {
                ours.iter()
                    .filter(|o| {
                        o.started <= t.started && t.started < o.started + self.task_duration
                    })
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn node_of(&self, vmid: u64) -> Option<String> {
        self.guests
            .iter()
            .find(|g| g.vmid == vmid)
            .map(|g| g.node.clone())
    }

    pub fn online(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n.name == node && n.online)
    }

    pub(super) fn forbidden(&self, method: &str, path: &str) -> Option<String> {
        self.forbidden
            .iter()
            .find(|(m, p, _)| m == method && path.starts_with(p.as_str()))
            .map(|(_, _, privilege)| privilege.clone())
    }

    /// Finishes the tasks whose time is up.
    fn advance(&mut self) {
        let now = Instant::now();
        for i in 0..self.tasks.len() {
            // A `hamigrate` worker only queues a CRM command: done at once.
            let duration = if self.tasks[i].kind == "hamigrate" {
                Duration::from_millis(10).min(self.task_duration)
            } else {
                self.task_duration
            };
            if self.tasks[i].done.is_some() || now < self.tasks[i].started + duration {
                continue;
            }
            let (vmid, target) = (self.tasks[i].vmid, self.tasks[i].target.clone());
            if self.tasks[i].kind == "hamigrate" {
                // The worker only runs `ha-manager migrate` (qemu-server
                // `src/PVE/API2/Qemu.pm`, migrate_vm): the CRM does the rest.
                self.tasks[i].log.push(format!(
                    "Requesting HA migration for VM {vmid} to node {target}"
                ));
                self.tasks[i].log.push("TASK OK".into());
                self.tasks[i].done = Some("OK".into());
                if let Some(g) = self.guests.iter_mut().find(|g| g.vmid == vmid) {
                    g.lock = None;
                }
                self.crm_migrate(vmid, &target);
                continue;
            }
            let fail = self.fail_migration_of.remove(&vmid);
            let warn = self.warn_migration_of.remove(&vmid);
            let task = &mut self.tasks[i];
            if warn {
                // A warning ends the task `WARNINGS: n`, a success
                // (pve-common `src/PVE/RESTEnvironment.pm`, `src/PVE/UPID.pm`).
                task.log.push("WARN: migration left a stale volume".into());
                task.log
                    .push(format!("migration finished successfully to {target}"));
                task.log.push("TASK WARNINGS: 1".into());
                task.done = Some("WARNINGS: 1".into());
            } else if fail {
                task.log
                    .push(format!("{vmid}: start migration to {target}"));
                task.log
                    .push("ERROR: online migrate failure - aborting".into());
                task.log.push("TASK ERROR: migration problems".into());
                task.done = Some("migration problems".into());
            } else {
                task.log
                    .push(format!("migration finished successfully to {target}"));
                task.log.push("TASK OK".into());
                task.done = Some("OK".into());
            }
            let ok = !fail || warn;
            if let Some(g) = self.guests.iter_mut().find(|g| g.vmid == vmid) {
                g.lock = None;
                if ok {
                    g.node = target;
                }
            }
            self.finished_migrations += 1;
            if let Some((n, node)) = self.offline_after_migrations.clone() {
                if self.finished_migrations >= n {
                    if let Some(x) = self.nodes.iter_mut().find(|x| x.name == node) {
                        x.online = false;
                    }
                    self.offline_after_migrations = None;
                }
            }
        }
        self.crm_round();
    }

    pub(super) fn start_task(
        &mut self,
        node: &str,
        kind: &'static str,
        vmid: u64,
        target: &str,
    ) -> String {
        if kind != "hamigrate" && self.auto_rebalance() {
            self.started_during_auto_rebalance += 1;
        }
        let starttime = 1_760_000_000 + self.tasks.len() as u64;
        let upid = format!(
            "UPID:{node}:{:08X}:{:08X}:{starttime:08X}:{kind}:{vmid}:{}:",
            4000 + self.tasks.len(),
            90_000 + self.tasks.len(),
            super::TOKEN_ID
        );
        self.tasks.push(Task {
            upid: upid.clone(),
            node: node.into(),
            kind,
            vmid,
            target: target.into(),
            started: Instant::now(),
            starttime,
            done: None,
            log: vec![format!("task started by {}", super::TOKEN_ID)],
        });
        if let Some(g) = self.guest_mut(vmid) {
            g.lock = Some("migrate".into());
        }
        upid
    }

    /// A migration someone else started (counts against Keel's limits).
    pub fn start_foreign_migration(&mut self, vmid: u64, target: &str) {
        let node = self.node_of(vmid).expect("a guest of the fake");
        self.start_task(&node, "qmigrate", vmid, target);
    }

    /// Whether `crs` turns CRS auto-rebalance on.
    pub fn auto_rebalance(&self) -> bool {
        self.crs_object().get("ha-auto-rebalance") == Some(&json!(1))
    }

    /// The `crs` line parsed as pve-cluster does (`src/PVE/DataCenterConfig.pm`,
    /// parse_property_string; booleans as 0/1, numbers as numbers).
    pub fn crs_object(&self) -> serde_json::Map<String, Value> {
        self.crs
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let value = match v {
                    "1" | "true" | "yes" | "on" if k != "ha" => json!(1),
                    "0" | "false" | "no" | "off" if k != "ha" => json!(0),
                    _ => v.parse::<f64>().map_or_else(|_| json!(v), |n| json!(n)),
                };
                (k.to_string(), value)
            })
            .collect()
    }

    /// The answer of one method (`Err((status, message))` as Proxmox VE).
    pub(super) fn route(
        &mut self,
        method: &str,
        path: &str,
        path_params: &[(String, String)],
        params: &[(String, String)],
    ) -> Result<Value, (u16, String)> {
        self.advance();
        let p = |name: &str| {
            path_params
                .iter()
                .chain(params)
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let seconds = self.started.elapsed().as_secs_f64();
        // pve-manager's REST handler answers 501 for a method it lacks
        // (PVE/HTTPServer.pm via pve-http-server): the 8.x gaps.
        let missing = || Err((501, format!("Method '{method} {path}' not implemented")));
        match (method, segs.as_slice()) {
            ("GET", ["version"]) => Ok(match self.release_override {
                Some(r) => json!({"version": format!("{r}.1"), "release": r, "repoid": "0123456789abcdef"}),
                None => self.profile.version(),
            }),
            ("GET", ["cluster", "resources"]) => Ok(self.resources(p("type").as_deref(), seconds)),
            ("GET", ["nodes"]) => Ok(Value::Array(
                self.nodes
                    .iter()
                    .map(|n| {
                        json!({"node": n.name, "status": if n.online {"online"} else {"offline"},
                               "maxcpu": n.cpus, "maxmem": n.memory_bytes, "cpu": 0.1, "mem": self.node_mem(&n.name),
                               "uptime": seconds as u64})
                    })
                    .collect(),
            )),
            ("GET", ["nodes", node, "status"]) => {
                let n = self
                    .nodes
                    .iter()
                    .find(|n| n.name == *node && n.online)
                    .ok_or((595, format!("no route to host {node}")))?;
                let total = n.memory_bytes;
                let used = self.node_mem(node);
                let release = if self.profile == Profile::Pve8 { "8.4.1" } else { "9.1.2" };
                Ok(json!({
                    "cpu": 0.1, "loadavg": ["0.10", "0.20", "0.30"],
                    "memory": {"total": total, "used": used, "free": total.saturating_sub(used), "available": total.saturating_sub(used)},
                    "rootfs": {"total": 100u64 << 30, "used": 10u64 << 30, "free": 90u64 << 30, "avail": 90u64 << 30},
                    "cpuinfo": {"cpus": n.cpus, "cores": n.cpus / 2, "sockets": 1, "model": "Fake CPU"},
                    "pveversion": format!("pve-manager/{release}/fake"), "boot-info": {"mode": "efi", "secureboot": 0},
                    "current-kernel": {"machine": "x86_64", "release": "6.17.2-1-pve", "sysname": "Linux", "version": "#1 SMP"},
                    "uptime": seconds as u64
                }))
            }
            // HA rules exist from pve-ha-manager 5.0 (`src/PVE/API2/HA/Rules.pm`).
            ("GET", ["cluster", "ha", "rules"]) if self.profile == Profile::Pve8 => missing(),
            ("GET", ["cluster", "ha", "rules"]) => Ok(Value::Array(self.ha_rules.clone())),
            // 9.x migrates groups into rules and lists none.
            ("GET", ["cluster", "ha", "groups"]) => Ok(Value::Array(match self.profile {
                Profile::Pve8 => self.ha_groups.clone(),
                Profile::Pve9 => Vec::new(),
            })),
            ("GET", ["cluster", "ha", "resources"]) => Ok(self.ha_resources()),
            ("GET", ["cluster", "ha", "status", "current"]) => Ok(self.ha_status()),
            ("GET", ["cluster", "options"]) => {
                let mut o = json!({"keyboard": "en-us"});
                if !self.crs.is_empty() {
                    o["crs"] = Value::Object(self.crs_object());
                }
                Ok(o)
            }
            // The cluster task list holds the recent tasks, not all ever
            // (pve-manager `PVE/API2/Cluster.pm`, tasks: the last ones per node).
            ("GET", ["cluster", "tasks"]) => Ok(Value::Array(
                self.tasks
                    .iter()
                    .rev()
                    .enumerate()
                    .filter(|(i, t)| t.done.is_none() || *i < 100)
                    .map(|(_, t)| {
                        let mut v = json!({"upid": t.upid, "node": t.node, "type": t.kind, "id": t.vmid.to_string(),
                                           "user": super::TOKEN_ID, "starttime": t.starttime});
                        if let Some(exit) = &t.done {
                            v["status"] = json!(exit);
                            v["endtime"] = json!(t.starttime + 1);
                        }
                        v
                    })
                    .collect(),
            )),
            ("GET", ["nodes", node, kind @ ("qemu" | "lxc"), vmid, "config"]) => {
                let g = self
                    .guests
                    .iter()
                    .find(|g| g.vmid.to_string() == *vmid && g.node == *node && g.kind == *kind)
                    .ok_or((500, format!("Configuration file for {vmid} does not exist")))?;
                Ok(json!({"digest": g.digest, "name": g.name, "cores": g.maxcpu, "memory": (g.maxmem >> 20).to_string()}))
            }
            // pve-container 5.x (8.x) has no precondition check.
            ("GET", ["nodes", _, "lxc", _, "migrate"]) if self.profile == Profile::Pve8 => missing(),
            (_, ["nodes", node, kind @ ("qemu" | "lxc"), vmid, "migrate"]) => {
                self.migrate(method, node, kind, vmid, p("target").unwrap_or_default())
            }
            ("GET", ["nodes", _, "tasks", upid, what @ ("status" | "log")]) => {
                let t = self
                    .tasks
                    .iter()
                    .find(|t| t.upid == *upid)
                    .ok_or((500, format!("no such task '{upid}'")))?;
                if *what == "log" {
                    return Ok(Value::Array(
                        t.log.iter().enumerate().map(|(i, l)| json!({"n": i + 1, "t": l})).collect(),
                    ));
                }
                let mut v = json!({"upid": t.upid, "node": t.node, "pid": 4000, "pstart": 90000,
                    "starttime": t.starttime, "type": t.kind, "id": t.vmid.to_string(),
                    "user": super::TOKEN_ID, "status": if t.done.is_some() {"stopped"} else {"running"}});
                if let Some(exit) = &t.done {
                    v["exitstatus"] = json!(exit);
                }
                Ok(v)
            }
            ("POST", ["cluster", "ha", "resources", sid, "migrate"]) => {
                let vmid: u64 = sid.rsplit(':').next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let target = p("node").unwrap_or_default();
                if !self.guests.iter().any(|g| g.vmid == vmid && g.hastate.is_some()) {
                    return Err((500, format!("service '{sid}' not defined")));
                }
                if !self.online(&target) {
                    return Err((500, format!("node '{target}' is not online")));
                }
                self.crm_migrate(vmid, &target);
                // 4.x returns null, 5.x an object (`src/PVE/API2/HA/Resources.pm`).
                Ok(match self.profile {
                    Profile::Pve8 => Value::Null,
                    Profile::Pve9 => json!({"sid": sid, "requested-node": target}),
                })
            }
            _ => Err((501, format!("the fake does not implement {method} {path}"))),
        }
    }

    /// Host memory a guest holds: 9.x reports it as `memhost`, 8.x as `mem`.
    pub fn host_mem(&self, g: &FakeGuest) -> u64 {
        if g.status == "stopped" {
            0
        } else {
            g.mem
        }
    }

    /// Memory a node uses: its overhead and its guests.
    pub fn node_mem(&self, node: &str) -> u64 {
        let n = self.nodes.iter().find(|n| n.name == node);
        let guests: u64 = self
            .guests
            .iter()
            .filter(|g| g.node == node)
            .map(|g| self.host_mem(g))
            .sum();
        n.map_or(0, |n| n.overhead_mem_bytes) + guests
    }

    fn resources(&self, kind: Option<&str>, seconds: f64) -> Value {
        let mut out = Vec::new();
        if matches!(kind, None | Some("node")) {
            for n in &self.nodes {
                let cores: f64 = self
                    .guests
                    .iter()
                    .filter(|g| g.node == n.name && g.status == "running")
                    .map(|g| g.cpu * f64::from(g.maxcpu))
                    .sum();
                // Node `hastate` since 8.3 (pve-manager `PVE/API2/Cluster.pm`).
                let mut entry = json!({"id": format!("node/{}", n.name), "type": "node", "node": n.name,
                    "status": if n.online {"online"} else {"offline"},
                    "cpu": (cores / f64::from(n.cpus.max(1))).min(1.0), "maxcpu": n.cpus,
                    "mem": self.node_mem(&n.name), "maxmem": n.memory_bytes, "disk": 1u64 << 30, "maxdisk": 100u64 << 30,
                    "uptime": seconds as u64, "level": ""});
                if self.release_override.is_none_or(|r| r >= "8.3") {
                    entry["hastate"] = json!(if n.ha_maintenance {
                        "maintenance"
                    } else {
                        "online"
                    });
                }
                out.push(entry);
            }
        }
        if matches!(kind, None | Some("vm")) {
            for g in &self.guests {
                let mut v = super::value_of(g, self.online(&g.node), seconds);
                if self.profile == Profile::Pve9 && g.kind == "qemu" {
                    // 9.x: `mem` is the guest's view, `memhost` the host's
                    // (pve-manager `PVE/API2Tools.pm`).
                    v["memhost"] = json!(self.host_mem(g));
                    v["mem"] = json!(g.mem / 2);
                }
                out.push(v);
            }
        }
        if matches!(kind, None | Some("storage")) {
            for n in &self.nodes {
                out.push(
                    json!({"id": format!("storage/{}/local", n.name), "type": "storage",
                    "node": n.name, "storage": "local", "status": "available", "shared": 0,
                    "disk": 1u64 << 30, "maxdisk": 100u64 << 30, "content": "iso,vztmpl,backup",
                    "plugintype": "dir"}),
                );
            }
        }
        Value::Array(out)
    }
}
