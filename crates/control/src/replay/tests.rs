use super::*;
use keel_policy::balance::{KeelBalancer, NoBalancer};

/// The bundled PlanetLab day (1052 VMs) on 4 hosts sized for 6 vCPUs per
/// core: contended at times, so balancing matters.
fn setup() -> (Arc<WorkloadTrace>, BalanceSimConfig) {
    let trace = keel_trace::bundled_planetlab_day();
    let mut config = BalanceSimConfig::new(4);
    config.setup.cpu_overcommit = 6.0;
    (Arc::new(trace), config)
}

#[test]
fn no_balancer_never_moves_and_keel_serves_more_demand() {
    let (trace, config) = setup();
    let none = run_balance(&trace, &config, Box::new(NoBalancer)).unwrap();
    assert_eq!(none.migrations, 0);
    assert!(none.moves.is_empty());
    assert!(none.unmet_demand > 0.0, "{none:?}");
    assert_eq!(none.rounds, 288);
    let keel = run_balance(&trace, &config, Box::new(KeelBalancer::default())).unwrap();
    assert!(keel.migrations > 0);
    assert_eq!(
        keel.migrations as usize,
        keel.moves.len(),
        "every move landed"
    );
    assert!(keel.moves.iter().all(|m| m.from != m.to));
    assert!(
        keel.unmet_demand < none.unmet_demand,
        "keel {} vs none {}",
        keel.unmet_demand,
        none.unmet_demand
    );
    assert!(keel.unmet_cpu_core_hours > 0.0 && keel.vm_contention_hours > 0.0);
    // The same run twice makes the same moves.
    let again = run_balance(&trace, &config, Box::new(KeelBalancer::default())).unwrap();
    assert_eq!(again.moves, keel.moves);
}

#[test]
fn bad_settings_are_refused_by_name() {
    let (trace, mut config) = setup();
    config.interval_seconds = Some(0.0);
    let err = run_balance(&trace, &config, Box::new(NoBalancer)).unwrap_err();
    assert!(err.to_string().contains("interval"), "{err}");
    config.interval_seconds = None;
    config.setup.hosts = 0;
    let err = run_balance(&trace, &config, Box::new(NoBalancer)).unwrap_err();
    assert!(matches!(err, ReplayError::NoHosts));
}

/// Two CPU-only VMs (1 and 2 vCPUs by index) over four 300 s samples.
fn tiny_trace() -> WorkloadTrace {
    let series = |name: &str, cpu: [f64; 4]| keel_model::VmSeries {
        name: name.to_string(),
        cpu_utilization: cpu.to_vec(),
        usage: None,
    };
    WorkloadTrace::new(
        300.0,
        vec![
            series("a", [0.1, 0.9, 0.2, 0.2]),
            series("b", [0.5, 0.5, 1.0, 0.0]),
        ],
    )
    .unwrap()
}

#[test]
fn the_oracle_sees_the_peak_of_the_next_window_under_the_bodys_names() {
    let trace = Arc::new(tiny_trace());
    let (_, truth, _) = simulated_body(&trace, &BalanceSimConfig::new(2)).unwrap();
    let names: Vec<String> = truth.vms.iter().map(|v| v.name.clone()).collect();
    let oracle = ClairvoyantDemand::new(&trace, names.clone(), 600.0);
    let now = oracle.at(0.0);
    assert_eq!(now.len(), 2);
    // VM a (1 vCPU): max(0.1, 0.9); VM b (2 vCPUs): max(0.5, 0.5) x 2.
    assert!((now[&names[0]].cpu_cores - 0.9).abs() < 1e-12, "{now:?}");
    assert!((now[&names[1]].cpu_cores - 1.0).abs() < 1e-12, "{now:?}");
    // From 600 s the window is samples 2 and 3; past the end, the last one.
    let later = oracle.at(600.0);
    assert!(
        (later[&names[1]].cpu_cores - 2.0).abs() < 1e-12,
        "{later:?}"
    );
    let past = oracle.at(10_000.0);
    assert!((past[&names[0]].cpu_cores - 0.2).abs() < 1e-12, "{past:?}");
}

#[test]
fn the_lower_bound_is_the_demand_above_the_whole_clusters_capacity() {
    let trace = tiny_trace();
    // Totals per sample: 1.1, 1.9, 2.2, 0.2 cores (sum 5.4); capacity 2 cores
    // leaves 0.2 unmet in the third sample only.
    let bound = unmet_lower_bound(&trace, 2, 1.0);
    assert!((bound - 0.2 / 5.4).abs() < 1e-12, "{bound}");
    assert_eq!(unmet_lower_bound(&trace, 3, 1.0), 0.0);
}

#[test]
fn the_oracle_plans_on_other_demand_and_nothing_beats_the_lower_bound() {
    let (trace, config) = setup();
    let none = run_balance(&trace, &config, Box::new(NoBalancer)).unwrap();
    let keel = run_balance(&trace, &config, Box::new(KeelBalancer::default())).unwrap();
    let oracle = run_oracle(&trace, &config).unwrap();
    assert_eq!(oracle.balancer, "oracle");
    assert!(oracle.migrations > 0);
    assert_ne!(oracle.moves, keel.moves, "the oracle plans on other demand");
    // Not asserted: that the oracle serves more than `none` here. Planning
    // against each VM's peak of the next hour is conservative, and on this
    // lightly contended day it ends level with `none` (5.9e-5 both).
    for r in [&none, &keel, &oracle] {
        assert_eq!(r.unmet_lower_bound, none.unmet_lower_bound);
        assert!(r.unmet_demand + 1e-12 >= r.unmet_lower_bound, "{r:?}");
    }
}
