//! A FAKE Proxmox VE API server for the driver's contract tests: a small
//! cluster in memory (nodes, VMs, containers, HA rules or groups, CRS
//! options) in a PVE 8.4 or 9.1 profile, served over HTTPS with a
//! self-signed certificate; migrations run as tasks that take time and can
//! be told to fail or warn; HA moves go through a CRM model (`crm.rs`). Every request is checked against the
//! parameters of the published schema and every answer's `data` against
//! its return schema; what does not fit is recorded as a violation (and the
//! request answered 400, as Proxmox VE would).

#![allow(dead_code)] // each test binary uses part of it

pub mod cluster;
pub mod crm;
pub mod http;
pub mod migrate;
pub mod schema;

#[allow(unused_imports)] // not every test binary plays both versions
pub use cluster::{Corruption, FakeCluster, FakeGuest, Profile};

use http::{Request, Response};
use keel_drivers::proxmox::ProxmoxConfig;
use schema::Schema;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Required answer members the 9.x schema has and 8.4 does not send.
const NEW_IN_9: [&str; 1] = ["has-dbus-vmstate"];

/// The token the fake accepts.
pub const TOKEN_ID: &str = "keel@pve!balancer";
/// Its secret.
pub const SECRET: &str = "5a0d7c1e-6b2f-4e39-9c51-0f3e2d8a7b64";

/// A running fake.
pub struct FakeProxmox {
    pub addr: std::net::SocketAddr,
    /// SHA-256 of the certificate, colon hex.
    pub fingerprint: String,
    /// The certificate, PEM (as a CA file).
    pub cert_pem: String,
    state: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

struct Shared {
    cluster: FakeCluster,
    violations: Vec<String>,
    requests: Vec<String>,
}

/// The schema, or a loud skip.
pub fn load_schema() -> Option<Arc<Schema>> {
    let Some(path) = schema::schema_path() else {
        eprintln!(
            "SKIPPED: Proxmox VE contract test because the API schema \
             ../shared/reference/proxmox-ve-api/apidata.json (or $KEEL_SHARED_DIR/...) is absent"
        );
        return None;
    };
    match Schema::load(&path) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => panic!("the Proxmox VE schema is there but unreadable: {e}"),
    }
}

impl FakeProxmox {
    /// Starts serving `cluster`; `None` (after a SKIPPED line) without the schema.
    pub fn start(cluster: FakeCluster) -> Option<Self> {
        let schema = load_schema()?;
        Some(Self::start_with(cluster, schema))
    }

    /// Starts serving `cluster` checked against `schema`.
    pub fn start_with(cluster: FakeCluster, schema: Arc<Schema>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a self-signed certificate");
        let der = cert.cert.der().to_vec();
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, &der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![der.into()], key)
            .expect("the fake's certificate");
        let state = Arc::new(Mutex::new(Shared {
            cluster,
            violations: Vec::new(),
            requests: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let handler_state = state.clone();
        let handler = Arc::new(move |r: Request| handle(&handler_state, &schema, r));
        let addr = http::serve(Arc::new(tls), handler, stop.clone());
        Self {
            addr,
            fingerprint,
            cert_pem: cert.cert.pem(),
            state,
            stop,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A driver config for this fake with its fingerprint pinned.
    pub fn config(&self) -> ProxmoxConfig {
        let mut c = ProxmoxConfig::new(&self.url(), TOKEN_ID, SECRET);
        c.fingerprint = Some(self.fingerprint.clone());
        c.rules_refresh_seconds = 0.001;
        c.task_timeout_seconds = 30.0;
        c
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the cluster (take a node down, make a task fail...).
    pub fn with<R>(&self, f: impl FnOnce(&mut FakeCluster) -> R) -> R {
        f(&mut self.shared().cluster)
    }

    /// Schema violations seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.shared().violations.clone()
    }

    /// Requests so far, `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.shared().requests.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.shared().requests.clear();
    }
}

impl Drop for FakeProxmox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn error(status: u16, message: &str) -> Response {
    let body = json!({ "data": null, "message": format!("{message}\n") });
    Response::Full(
        status,
        message.replace(['\r', '\n'], " "),
        body.to_string().into_bytes(),
    )
}

fn handle(state: &Mutex<Shared>, schema: &Schema, r: Request) -> Response {
    let mut shared = state.lock().unwrap_or_else(|e| e.into_inner());
    let expected = format!("PVEAPIToken={TOKEN_ID}={SECRET}");
    if r.header("authorization") != Some(expected.as_str()) {
        return error(401, "authentication failure");
    }
    let Some(path) = r.path.strip_prefix("/api2/json") else {
        return error(404, "not under /api2/json");
    };
    let path: String = path
        .split('/')
        .map(http::percent_decode)
        .collect::<Vec<_>>()
        .join("/");
    shared.requests.push(format!("{} {path}", r.method));
    let params = match r.method.as_str() {
        "GET" => http::decode_form(&r.query),
        _ => {
            if !r.query.is_empty() {
                shared
                    .violations
                    .push(format!("{} {path}: query on a {}", r.method, r.method));
            }
            http::decode_form(&String::from_utf8_lossy(&r.body))
        }
    };
    let Some((method, path_params)) = schema.find(&r.method, &path) else {
        shared
            .violations
            .push(format!("{} {path}: no such method in the schema", r.method));
        return error(501, "Method not implemented");
    };
    let mut all = params.clone();
    all.extend(path_params.iter().cloned());
    let problems = schema::check_request(&method.parameters, &all);
    if !problems.is_empty() {
        for p in &problems {
            shared.violations.push(format!("{} {path}: {p}", r.method));
        }
        return error(400, "Parameter verification failed.");
    }
    let cluster = &mut shared.cluster;
    if let Some(privilege) = cluster.forbidden(&r.method, &path) {
        return error(
            403,
            &format!("Permission check failed ({path}, {privilege})"),
        );
    }
    let corrupt = (path == "/cluster/resources")
        .then(|| cluster.corrupt_next.take())
        .flatten();
    let answer = cluster.route(&r.method, &path, &path_params, &params);
    match answer {
        Ok(data) => {
            let mut problems = Vec::new();
            schema::check_value(&method.returns, &data, "data", &mut problems);
            // apidata.json is 9.x's: on the 8.4 profile, members 9.x added
            // are not missing (qemu-server 9 added `has-dbus-vmstate`).
            let pve8 = shared.cluster.profile == Profile::Pve8;
            for p in problems {
                if pve8
                    && NEW_IN_9
                        .iter()
                        .any(|m| p.ends_with(&format!("required {m} missing")))
                {
                    continue;
                }
                shared
                    .violations
                    .push(format!("{} {path} answer: {p}", r.method));
            }
            let body = json!({ "data": data }).to_string().into_bytes();
            match corrupt {
                None => Response::Full(200, "OK".into(), body),
                Some(Corruption::Malformed) => {
                    let mut bad = body[..body.len() / 2].to_vec();
                    bad.extend_from_slice(b"\"\\");
                    Response::Full(200, "OK".into(), bad)
                }
                Some(Corruption::Truncated) => Response::Truncated {
                    length: body.len(),
                    body: body[..body.len() / 3].to_vec(),
                },
            }
        }
        Err((status, message)) => error(status, &message),
    }
}

/// The `data` of a guest list entry as `/cluster/resources` gives it.
pub fn value_of(g: &FakeGuest, node_online: bool, seconds: f64) -> Value {
    let mut v = json!({
        "id": format!("{}/{}", g.kind, g.vmid),
        "type": g.kind,
        "vmid": g.vmid,
        "node": g.node,
        "name": g.name,
        "status": if node_online { g.status.as_str() } else { "unknown" },
        "cpu": if g.status == "running" { g.cpu } else { 0.0 },
        "maxcpu": g.maxcpu,
        "mem": g.mem,
        "maxmem": g.maxmem,
        "disk": 0,
        "maxdisk": 8_589_934_592u64,
        "netin": (g.net_rate * seconds) as u64,
        "netout": (g.net_rate * seconds / 2.0) as u64,
        "diskread": (g.disk_rate * seconds) as u64,
        "diskwrite": (g.disk_rate * seconds / 2.0) as u64,
        "uptime": seconds as u64,
    });
    if g.template {
        v["template"] = json!(1);
    }
    if !g.tags.is_empty() {
        v["tags"] = json!(g.tags);
    }
    if let Some(lock) = &g.lock {
        v["lock"] = json!(lock);
    }
    if let Some(ha) = &g.hastate {
        v["hastate"] = json!(ha);
    }
    v
}
