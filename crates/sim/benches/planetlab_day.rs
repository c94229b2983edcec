//! One simulated PlanetLab day (20110303, 1052 VMs, 800 hosts) per policy:
//! `cargo bench -p keel-sim --bench planetlab_day`.

use criterion::{criterion_group, criterion_main, Criterion};
use keel_sim::{run, SimConfig};

fn planetlab_day(c: &mut Criterion) {
    let trace = keel_trace::bundled_planetlab_day();
    let mut group = c.benchmark_group("planetlab_20110303");
    group.sample_size(10);
    for policy in ["dvfs", "thr-mmt-0.8", "lr-mmt-1.2", "mad-mc-2.5"] {
        let config = SimConfig::planetlab(policy.parse().unwrap());
        group.bench_function(policy, |b| b.iter(|| run(&trace, &config).unwrap()));
    }
    group.finish();
    c.bench_function("bundled_day_decode", |b| {
        b.iter(keel_trace::bundled_planetlab_day)
    });
}

criterion_group!(benches, planetlab_day);
criterion_main!(benches);
