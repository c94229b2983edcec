//! `keel serve` as a child process on 127.0.0.1 port 0: started with a
//! config file and a data directory, its address read from its log, killed
//! (SIGKILL) when dropped. Include with
//! `#[path = "common/serve.rs"] mod serve;` next to the HTTP client
//! `#[path = "../../daemon/tests/common/mod.rs"] mod http;`.
#![allow(dead_code)] // each test file uses a part

use crate::http::{get, Reply};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `keel serve`.
pub struct Serve {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Serve {
    /// Starts `keel serve --config <dir>/keel.toml --data-dir <dir>/data`
    /// and waits (at most 60 s) for its "is up" log line.
    pub fn start(dir: &Path) -> Self {
        let config = dir.join("keel.toml");
        Self::start_with(dir, Some(&config))
    }

    /// As [`Serve::start`], with the embedded default when `config` is `None`.
    pub fn start_with(dir: &Path, config: Option<&Path>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command.arg("serve");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting keel serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the log to the end so the pipe never fills up.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("no 'keel serve is up' ({e}); log: {seen:#?}"));
            let rest = line.split("url=http").nth(1);
            if let Some(rest) = rest.and_then(|r| r.strip_prefix("://").or(r.strip_prefix("s://")))
            {
                break rest.split('/').next().unwrap().parse().unwrap();
            }
            seen.push(line);
        };
        Self { child, addr }
    }

    /// GET `path` with the test token; asserts 200 and returns the JSON.
    pub fn get(&self, path: &str) -> Value {
        let reply: Reply = get(self.addr, path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// SIGKILL (Child::kill on Unix): no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
