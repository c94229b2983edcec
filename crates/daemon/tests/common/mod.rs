//! What the daemon's integration tests share: a server on 127.0.0.1 with an
//! ephemeral port over the embedded default's simulated cluster, and a
//! minimal HTTP/1.1 client over std's TcpStream; every wait is bounded.
#![allow(dead_code)] // each test file uses a part

use keel_daemon::{start, Automation, DaemonConfig, FakeClock, Running, Service};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Reply {
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    pub body: String,
}

impl Reply {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    assert!(addr.ip().is_loopback());
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        head: head.to_string(),
        body,
    }
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    call(addr, "GET", path, Some(TOKEN), "")
}

pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Daemon {
    pub runtime: tokio::runtime::Runtime,
    pub running: Option<Running>,
    pub service: Arc<Service>,
}

impl Daemon {
    pub fn start(service: Service, interval: Option<Duration>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let service = Arc::new(service);
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let running = runtime
            .block_on(start(service.clone(), listen, TOKEN.into(), interval))
            .unwrap();
        Self {
            runtime,
            running: Some(running),
            service,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().unwrap().local_addr
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            self.runtime.block_on(running.shutdown());
        }
    }
}

pub fn manual_daemon() -> (Daemon, FakeClock) {
    let clock = FakeClock::at(1_700_000_000_000);
    let config = DaemonConfig {
        automation: Automation::Manual,
        ..DaemonConfig::default()
    };
    let service = config.build_service(Arc::new(clock.clone())).unwrap();
    service.warm_up().unwrap();
    (Daemon::start(service, None), clock)
}

/// [`manual_daemon`] after `rounds` control rounds 2 s apart (plans made).
pub fn manual_daemon_after(rounds: usize) -> (Daemon, FakeClock) {
    let (daemon, clock) = manual_daemon();
    for _ in 0..rounds {
        clock.advance_ms(2_000);
        daemon.service.step().unwrap();
    }
    (daemon, clock)
}
