//! The fake's cluster: nodes, guests, HA rules, HA status (nodes in HA
//! maintenance), CRS options and tasks, and what each endpoint answers. Tasks advance lazily: every request
//! first finishes the tasks whose time is up.

use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

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
    pub hastate: Option<String>,
    pub local_disk: bool,
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
            local_disk: false,
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
struct Task {
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
    pub nodes: Vec<FakeNode>,
    pub guests: Vec<FakeGuest>,
    pub ha_rules: Vec<Value>,
    /// The `crs` property string of `/cluster/options`.
    pub crs: String,
    /// How long a migration task runs.
    pub task_duration: Duration,
    /// Guests whose next migration task fails.
    pub fail_migration_of: HashSet<u64>,
    /// (method, path prefix, privilege): answered 403.
    pub forbidden: Vec<(String, String, String)>,
    pub corrupt_next: Option<Corruption>,
    /// After this many finished migrations, this node goes offline.
    pub offline_after_migrations: Option<(usize, String)>,
    started: Instant,
    tasks: Vec<Task>,
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
                })
                .collect(),
            guests: Vec::new(),
            ha_rules: Vec::new(),
            crs: "ha=static".into(),
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

    fn online(&self, node: &str) -> bool {
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
            if self.tasks[i].done.is_some() || now < self.tasks[i].started + self.task_duration {
                continue;
            }
            let (vmid, target) = (self.tasks[i].vmid, self.tasks[i].target.clone());
            let fail = self.fail_migration_of.remove(&vmid);
            let task = &mut self.tasks[i];
            if fail {
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
            let ok = !fail;
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
    }

    fn start_task(&mut self, node: &str, kind: &'static str, vmid: u64, target: &str) -> String {
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
        match (method, segs.as_slice()) {
            ("GET", ["cluster", "resources"]) => Ok(self.resources(p("type").as_deref(), seconds)),
            ("GET", ["nodes"]) => Ok(Value::Array(
                self.nodes
                    .iter()
                    .map(|n| {
                        json!({"node": n.name, "status": if n.online {"online"} else {"offline"},
                               "maxcpu": n.cpus, "maxmem": n.memory_bytes, "cpu": 0.1, "mem": 1u64 << 30,
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
                Ok(json!({
                    "cpu": 0.1, "loadavg": ["0.10", "0.20", "0.30"],
                    "memory": {"total": total, "used": total / 4, "free": total / 2, "available": total / 2},
                    "rootfs": {"total": 100u64 << 30, "used": 10u64 << 30, "free": 90u64 << 30, "avail": 90u64 << 30},
                    "cpuinfo": {"cpus": n.cpus, "cores": n.cpus / 2, "sockets": 1, "model": "Fake CPU"},
                    "pveversion": "pve-manager/9.1.3/fake", "boot-info": {"mode": "efi", "secureboot": 0},
                    "current-kernel": {"machine": "x86_64", "release": "6.17.2-1-pve", "sysname": "Linux", "version": "#1 SMP"},
                    "uptime": seconds as u64
                }))
            }
            ("GET", ["cluster", "ha", "rules"]) => Ok(Value::Array(self.ha_rules.clone())),
            ("GET", ["cluster", "ha", "status", "current"]) => Ok(self.ha_status()),
            ("GET", ["cluster", "options"]) => {
                let mut o = json!({"keyboard": "en-us"});
                if !self.crs.is_empty() {
                    o["crs"] = json!(self.crs);
                }
                Ok(o)
            }
            ("GET", ["cluster", "tasks"]) => Ok(Value::Array(
                self.tasks
                    .iter()
                    .map(|t| {
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
                let g = self
                    .guests
                    .iter()
                    .find(|g| g.vmid == vmid && g.hastate.is_some())
                    .ok_or((500, format!("service '{sid}' not defined")))?;
                if !self.online(&target) {
                    return Err((500, format!("node '{target}' is not online")));
                }
                let node = g.node.clone();
                self.start_task(&node, "qmigrate", vmid, &target);
                Ok(json!({"sid": sid, "requested-node": target}))
            }
            _ => Err((501, format!("the fake does not implement {method} {path}"))),
        }
    }

    /// `/cluster/ha/status/current` as Proxmox VE words it: quorum, the
    /// CRM master, one `lrm` entry per node (`NODE (STATE, TIME)`), one
    /// `service` entry per HA-managed guest.
    fn ha_status(&self) -> Value {
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
            let kind = if g.kind == "qemu" { "vm" } else { "ct" };
            let sid = format!("{kind}:{}", g.vmid);
            let state = g.hastate.clone().unwrap_or_default();
            out.push(
                json!({"id": format!("service:{sid}"), "type": "service", "sid": sid,
                "node": g.node, "crm_state": state, "state": state, "request_state": "started",
                "status": format!("{sid} ({}, {state})", g.node)}),
            );
        }
        Value::Array(out)
    }

    fn resources(&self, kind: Option<&str>, seconds: f64) -> Value {
        let mut out = Vec::new();
        if matches!(kind, None | Some("node")) {
            for n in &self.nodes {
                out.push(json!({"id": format!("node/{}", n.name), "type": "node", "node": n.name,
                    "status": if n.online {"online"} else {"offline"}, "cpu": 0.1, "maxcpu": n.cpus,
                    "mem": 1u64 << 30, "maxmem": n.memory_bytes, "disk": 1u64 << 30, "maxdisk": 100u64 << 30,
                    "uptime": seconds as u64, "level": ""}));
            }
        }
        if matches!(kind, None | Some("vm")) {
            for g in &self.guests {
                out.push(super::value_of(g, self.online(&g.node), seconds));
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

    fn migrate(
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
        let allowed: Vec<&String> = others.iter().filter(|n| self.online(n)).collect();
        let offline: Vec<&String> = others.iter().filter(|n| !self.online(n)).collect();
        if method == "GET" {
            let mut not_allowed = serde_json::Map::new();
            for n in &offline {
                not_allowed.insert(n.to_string(), json!({"unavailable_storages": []}));
            }
            return Ok(if kind == "qemu" {
                let disks = if g.local_disk {
                    json!([{"volid": format!("local-lvm:vm-{vmid}-disk-0"), "cdrom": 0, "is_unused": 0, "size": 8u64 << 30}])
                } else {
                    json!([])
                };
                json!({"running": (g.status == "running") as u8, "allowed_nodes": allowed,
                       "not_allowed_nodes": not_allowed, "local_disks": disks, "local_resources": [],
                       "mapped-resources": [], "mapped-resource-info": {}, "has-dbus-vmstate": 1})
            } else {
                json!({"running": (g.status == "running") as u8, "allowed-nodes": allowed,
                       "not-allowed-nodes": not_allowed})
            });
        }
        if !self.online(&target) {
            return Err((500, format!("target node '{target}' is not online")));
        }
        if let Some(lock) = &g.lock {
            return Err((500, format!("VM is locked ({lock})")));
        }
        let task = if kind == "qemu" {
            "qmigrate"
        } else {
            "vzmigrate"
        };
        Ok(json!(self.start_task(node, task, vmid, &target)))
    }
}
