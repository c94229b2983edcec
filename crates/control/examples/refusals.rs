//! Prints why plans were refused by the check before acting in a balancing
//! run: `cargo run --release -p keel-control --example refusals -- TRACE BALANCER [HOSTS VCPUS_PER_CORE]`.
use keel_control::replay::{run_balance, BalanceSimConfig};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trace = keel_trace::load(
        std::path::Path::new(&args[1]),
        &keel_trace::LoadOptions {
            alignment: keel_trace::Alignment::FullSpan,
            ..Default::default()
        },
    )
    .expect("trace");
    let hosts = args
        .get(3)
        .map_or(trace.vms.len().div_ceil(20).max(2), |h| h.parse().unwrap());
    let mut config = BalanceSimConfig::new(hosts);
    if let Some(r) = args.get(4) {
        config.setup.cpu_overcommit = r.parse().unwrap();
    }
    let balancer: Box<dyn keel_policy::balance::Balancer + Send> = match args[2].as_str() {
        "watcher" => Box::new(keel_policy::balance::baselines::Watcher::default()),
        "proxlb" => Box::new(keel_policy::balance::baselines::ProxLb::default()),
        "crs" => Box::new(keel_policy::balance::baselines::Crs::default()),
        _ => Box::new(keel_policy::balance::KeelBalancer::default()),
    };
    let report = run_balance(&Arc::new(trace), &config, balancer).expect("run");
    for (reason, n) in &report.refusals {
        println!("{n:6} {reason}");
    }
    println!(
        "refused {} migrations {}",
        report.refused_plans, report.migrations
    );
}
