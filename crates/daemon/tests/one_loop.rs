//! One loop: the simulator's balancing mode (`keel sim --mode balance`,
//! `keel_control::replay`) and the daemon's periodic rounds (`Service::step`
//! in full automation, a fake clock) drive the same control loop over the
//! same simulated body, so on the same trace they make the same moves, in
//! the same order, and the body accounts the same contention.

use keel_control::replay::{run_balance, simulated_body, BalanceSimConfig};
use keel_daemon::store::{HistoryConfig, Store};
use keel_daemon::{Automation, Clock, FakeClock, Service, ServiceConfig};
use keel_drivers::sim::{SimDriver, SimLedger};
use keel_drivers::{
    Capabilities, Driver, DriverError, MigrationOutcome, MigrationRequest, Observation,
};
use keel_policy::balance::{KeelBalancer, PlannerConfig};
use std::sync::{Arc, Mutex};

/// The simulated body, shared so the test can read its ledger, whose
/// virtual time follows the daemon's (fake) clock.
struct Clocked {
    body: Arc<Mutex<SimDriver>>,
    clock: FakeClock,
    start_ms: u64,
}

impl Clocked {
    fn body(&self) -> std::sync::MutexGuard<'_, SimDriver> {
        self.body.lock().unwrap()
    }
}

impl Driver for Clocked {
    fn name(&self) -> &'static str {
        "sim"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn observe(&mut self) -> Result<Observation, DriverError> {
        let wall = (self.clock.now_unix_ms() - self.start_ms) as f64 / 1000.0;
        let mut body = self.body();
        let behind = wall - body.now_seconds();
        if behind > 0.0 {
            body.advance(behind);
        }
        body.observe()
    }
    fn migrate(&mut self, request: &MigrationRequest<'_>) -> Result<MigrationOutcome, DriverError> {
        self.body().migrate(request)
    }
    fn runs_waves_concurrently(&self) -> bool {
        true
    }
    fn migrate_wave(
        &mut self,
        requests: &[MigrationRequest<'_>],
    ) -> Vec<Result<MigrationOutcome, DriverError>> {
        self.body().migrate_wave(requests)
    }
}

#[test]
fn the_simulator_and_the_daemon_run_the_same_loop() {
    let trace = Arc::new(keel_trace::bundled_planetlab_day());
    let mut config = BalanceSimConfig::new(4);
    config.setup.cpu_overcommit = 6.0;
    let interval = trace.interval_seconds;

    // The simulator's balancing mode.
    let simulated = run_balance(&trace, &config, Box::new(KeelBalancer::default())).unwrap();
    assert!(
        simulated.moves.len() >= 3,
        "the setup must make moves: {simulated:?}"
    );

    // The daemon's loop on the same body, one round per interval of its clock.
    let (body, _, rules) = simulated_body(&trace, &config).unwrap();
    let body = Arc::new(Mutex::new(body));
    let clock = FakeClock::at(1_000_000);
    let driver = Clocked {
        body: Arc::clone(&body),
        clock: clock.clone(),
        start_ms: 1_000_000,
    };
    let service = Service::new(
        Box::new(driver),
        ServiceConfig {
            automation: Automation::Full,
            planner: PlannerConfig::default(),
            rules,
            migration_defaults: Default::default(),
        },
        Arc::new(clock.clone()),
        Store::in_memory(HistoryConfig::default()).unwrap(),
    );
    service.warm_up().unwrap();
    let rounds = (trace.duration_seconds() / interval) as usize;
    for _ in 1..rounds {
        clock.advance_ms((interval * 1000.0) as u64);
        service.step().unwrap();
    }
    let daemon_moves: Vec<(f64, String, String, String)> = service
        .plans()
        .iter()
        .flat_map(|p| {
            p.outcomes
                .iter()
                .filter(|o| o.error.is_none())
                .map(move |o| {
                    (
                        p.driver_time_seconds,
                        o.vm.clone(),
                        o.from.clone(),
                        o.to.clone(),
                    )
                })
        })
        .collect();
    let replay_moves: Vec<(f64, String, String, String)> = simulated
        .moves
        .iter()
        .map(|m| (m.round_seconds, m.vm.clone(), m.from.clone(), m.to.clone()))
        .collect();
    assert_eq!(daemon_moves, replay_moves);

    // The same contention accounted over the same day.
    let mut body = body.lock().unwrap();
    let left = trace.duration_seconds() - body.now_seconds();
    if left > 0.0 {
        body.advance(left);
    }
    let ledger: SimLedger = *body.ledger();
    assert_eq!(ledger.migrations, simulated.migrations);
    let unmet = ledger.unmet_core_seconds / ledger.cpu_demand_core_seconds;
    assert!(
        (unmet - simulated.unmet_demand).abs() <= 1e-12,
        "daemon {unmet} vs simulator {}",
        simulated.unmet_demand
    );
}
