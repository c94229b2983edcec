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
