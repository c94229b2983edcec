//! Times Keel's planner (and, where given, a baseline) on a generated cluster:
//! `cargo run --release -p keel-sim --example plan_speed -- HOSTS VMS [SEED]`.
use keel_model::{Cluster, CompiledRules};
use keel_policy::balance::{BalanceInput, Balancer, KeelBalancer};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let (hosts, vms, seed) = (args[0], args[1], args.get(2).copied().unwrap_or(1) as u64);
    let t = Instant::now();
    let snapshot = keel_sim::generate::synthetic_cluster(hosts, vms, seed);
    let cluster = Cluster::new(snapshot).unwrap();
    let rules = CompiledRules::none(&cluster);
    eprintln!("generated in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let input = BalanceInput {
        cluster: &cluster,
        rules: &rules,
        in_flight: &[],
    };
    for _ in 0..3 {
        let t = Instant::now();
        let plan = KeelBalancer::default()
            .plan(&input, cluster.time_seconds)
            .unwrap();
        println!(
            "keel: {} moves, imbalance {:.4} -> {:.4}, {:.1} ms",
            plan.moves.len(),
            plan.imbalance_before.normalized,
            plan.imbalance_after.normalized,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
