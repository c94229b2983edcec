//! Figures of the history database for docs/daemon.md, in release:
//!
//!     cargo run --release -p keel-daemon --example history_figures
//!
//! 1. One simulated day of the embedded default (288 rounds of 2 s, full
//!    automation) on a fake clock, history in a file: the time of a whole
//!    control round with the file and with the history in memory, and the
//!    database size after the day.
//! 2. Writing rounds alone for 200 and 2,000 VMs over 500 rounds: what
//!    `Store::record_round` costs the caller (queueing), the write of one
//!    round in its own transaction (record, then flush), and the cost per
//!    round when 30 queued rounds share a transaction.

use keel_daemon::control::VmUsage;
use keel_daemon::store::{HistoryConfig, Store};
use keel_daemon::view::HostView;
use keel_daemon::{DaemonConfig, FakeClock, Service};
use keel_model::Resources;
use keel_policy::balance::Imbalance;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const ROUNDS_PER_DAY: usize = 288;
const START_MS: u64 = 1_700_000_000_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms_stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.3} ms, p99 {:.3} ms",
        percentile(&v, 0.5),
        percentile(&v, 0.99)
    )
}

fn day(service: &Service, clock: &FakeClock) -> Vec<f64> {
    service.warm_up().expect("warm-up");
    (0..ROUNDS_PER_DAY)
        .map(|_| {
            clock.advance_ms(2_000);
            let t = Instant::now();
            service.step().expect("round");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn size(dir: &Path) -> u64 {
    ["keel.db", "keel.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let config = DaemonConfig::embedded_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = FakeClock::at(START_MS);
    let service = config
        .open_service(Arc::new(clock.clone()), dir.path())
        .expect("service");
    let with_file = day(&service, &clock);
    service.store().checkpoint().expect("checkpoint");
    let bytes = size(dir.path());
    let clock = FakeClock::at(START_MS);
    let memory = config
        .build_service(Arc::new(clock.clone()))
        .expect("service");
    let in_memory = day(&memory, &clock);
    println!(
        "one simulated day of the embedded default (200 VMs, 10 hosts, {ROUNDS_PER_DAY} rounds):"
    );
    println!(
        "  control round, history in a file:   {}",
        ms_stats(with_file)
    );
    println!(
        "  control round, history in memory:   {}",
        ms_stats(in_memory)
    );
    println!(
        "  database after the day: {:.2} MiB ({} rows per round)",
        bytes as f64 / 1048576.0,
        200 + 10 + 1
    );

    for vms in [200usize, 2_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_in(dir.path(), HistoryConfig::default()).expect("store");
        let usage: Vec<VmUsage> = (0..vms)
            .map(|i| VmUsage {
                vm: format!("vm-{i:05}"),
                host: format!("host-{:03}", i % (vms / 20)),
                usage: Resources::new(1.5, 4e9, 1e6, 2e6),
            })
            .collect();
        let hosts: Vec<HostView> = (0..vms / 20)
            .map(|h| HostView {
                name: format!("host-{h:03}"),
                capacity: Resources::new(38.0, 5e11, 0.0, 0.0),
                maintenance: false,
                safe_to_service: false,
                vm_count: 20,
                demand: Resources::ZERO,
                load: Resources::new(0.5, 0.6, 0.0, 0.0),
            })
            .collect();
        let imbalance = Imbalance {
            std_dev: 0.1,
            normalized: 0.05,
            per_resource_std_dev: Resources::ZERO,
            mean_load: Resources::new(0.5, 0.6, 0.0, 0.0),
            total_demand: Resources::new(300.0, 8e11, 0.0, 0.0),
        };
        let mut queue_ms = Vec::new();
        let write_ms: Vec<f64> = (0..500u64)
            .map(|i| {
                let t = Instant::now();
                store
                    .record_round(START_MS + i * 2_000, &usage, &hosts, &imbalance)
                    .expect("round");
                queue_ms.push(t.elapsed().as_secs_f64() * 1e3);
                store.flush();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let batch = Instant::now();
        for i in 500..530u64 {
            store
                .record_round(START_MS + i * 2_000, &usage, &hosts, &imbalance)
                .expect("round");
        }
        store.flush();
        let batched = batch.elapsed().as_secs_f64() * 1e3 / 30.0;
        println!("{vms} VMs and {} hosts, 500 rounds:", vms / 20);
        println!(
            "  record_round (what the control round waits for): {}",
            ms_stats(queue_ms)
        );
        println!(
            "  written, one transaction per round:             {}",
            ms_stats(write_ms)
        );
        println!("  written, 30 queued rounds per transaction:      {batched:.3} ms per round");
    }
}
