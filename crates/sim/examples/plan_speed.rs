//! Times Keel's planner (and, where given, a baseline) on a generated cluster:
//! `cargo run --release -p keel-sim --example plan_speed -- HOSTS VMS [SEED] [LEVEL] [COST_WEIGHT_x1000]`.
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
        let config = keel_policy::balance::PlannerConfig {
            level: args.get(3).copied().unwrap_or(3) as u8,
            migration_cost_weight: args.get(4).map_or(0.008, |&w| w as f64 / 1000.0),
            ..Default::default()
        };
        let plan = KeelBalancer { config }
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
    use keel_policy::balance::baselines::{Crs, CrsConfig, ProxLb, Watcher};
    // CRS forced to search: it searches only once imbalance exceeds its threshold.
    let forced = Crs::new(CrsConfig {
        threshold: 0.0,
        hold_rounds: 1,
        ..CrsConfig::default()
    });
    let mut baselines: Vec<Box<dyn Balancer>> = vec![
        Box::new(Crs::default()),
        Box::new(forced),
        Box::new(ProxLb::default()),
        Box::new(Watcher::default()),
    ];
    for balancer in &mut baselines {
        let t = Instant::now();
        // CRS acts only after three rounds above its threshold: time the third.
        let mut plan = balancer.plan(&input, cluster.time_seconds).unwrap();
        for _ in 0..2 {
            plan = balancer.plan(&input, cluster.time_seconds).unwrap();
        }
        println!(
            "{}: {} moves, {:.1} ms for three rounds",
            balancer.name(),
            plan.moves.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
