//! Observation cost of the Proxmox VE driver on a big FAKE cluster
//! (default 50 nodes, 2,000 guests): requests per interval and Keel's CPU
//! time per observation (the calling thread plus reqwest's I/O thread; the
//! fake server's `fake-pve-*` threads are left out). Linux only (reads
//! /proc/self/task). Needs the schema in ../shared (as the contract tests).
//!
//!     cargo run --release -p keel-drivers --features proxmox \
//!         --example proxmox_observe -- [NODES] [GUESTS] [ROUNDS]

#[path = "../tests/proxmox_fake/mod.rs"]
mod proxmox_fake;

use keel_drivers::proxmox::ProxmoxDriver;
use keel_drivers::Driver;
use std::time::Instant;

/// CPU seconds of this process's threads whose name does not start with
/// `fake-pve` (utime + stime at the kernel's 100 ticks per second).
fn keel_cpu_seconds() -> f64 {
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("fake-pve") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += get(11) + get(12);
    }
    ticks as f64 / 100.0
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(50);
    let guests = args.get(1).copied().unwrap_or(2000);
    let rounds = args.get(2).copied().unwrap_or(50);
    let Some(fake) =
        proxmox_fake::FakeProxmox::start(proxmox_fake::FakeCluster::big(nodes, guests))
    else {
        std::process::exit(2);
    };
    let mut config = fake.config();
    config.rules_refresh_seconds = 3600.0;
    let mut driver = ProxmoxDriver::connect(config).expect("driver");
    // Warm up: first observation reads node details and settings.
    let first = driver.observe().expect("observe");
    assert_eq!(first.vms.len(), guests);
    let before_requests = driver.requests();
    let cpu0 = keel_cpu_seconds();
    let wall0 = Instant::now();
    for _ in 0..rounds {
        driver.observe().expect("observe");
    }
    let wall = wall0.elapsed().as_secs_f64() / rounds as f64;
    let cpu = (keel_cpu_seconds() - cpu0) / rounds as f64;
    let requests = (driver.requests() - before_requests) as f64 / rounds as f64;
    let violations = fake.violations();
    println!(
        "{nodes} nodes, {guests} guests, {rounds} observations: {requests:.2} requests per \
         observation, Keel CPU {:.1} ms per observation, wall {:.1} ms (fake server included), \
         schema violations {}",
        cpu * 1e3,
        wall * 1e3,
        violations.len()
    );
}
