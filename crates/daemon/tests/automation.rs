//! Automation levels on the embedded default's simulated cluster, with a
//! fake clock: manual recommends, full executes, maintenance evacuates.

use keel_daemon::{Automation, Clock, DaemonConfig, FakeClock, PlanState, Service};
use std::collections::HashMap;
use std::sync::Arc;

fn service(automation: Automation) -> (Service, FakeClock) {
    let clock = FakeClock::at(1_700_000_000_000);
    let config = DaemonConfig {
        automation,
        ..DaemonConfig::default()
    };
    let service = config.build_service(Arc::new(clock.clone())).unwrap();
    service.warm_up().unwrap();
    clock.advance_ms(2_000);
    (service, clock)
}

/// Rounds 2 s apart until one makes a plan (the estimator needs a couple
/// of samples); at most 5.
fn first_plan(service: &Service, clock: &FakeClock) -> keel_daemon::service::StepReport {
    for _ in 0..5 {
        let report = service.step().unwrap();
        if report.plan.is_some() {
            return report;
        }
        clock.advance_ms(2_000);
    }
    panic!("no plan in 5 rounds from the unbalanced start");
}

fn placement(service: &Service) -> HashMap<String, String> {
    let view = service.cluster().unwrap();
    view.vms.into_iter().map(|v| (v.name, v.host)).collect()
}

#[test]
fn manual_recommends_and_waits_for_the_operator() {
    let (service, clock) = service(Automation::Manual);
    let before = placement(&service);
    let report = first_plan(&service, &clock);
    let id = report.plan.unwrap();
    assert_eq!(report.state, Some(PlanState::Recommended));
    assert_eq!(placement(&service), before, "manual moves nothing");
    let plan = service.plan(id).unwrap();
    assert!(!plan.moves.is_empty());
    assert!(plan.benefit > 0.0, "{}", plan.benefit);
    assert_eq!(plan.created_unix_ms, clock.now_unix_ms());
    // The same cluster gives the same plan: kept, not superseded.
    let again = service.step().unwrap();
    assert_eq!((again.plan, again.new_plan), (Some(id), false));

    clock.advance_ms(500);
    let applied_at = clock.now_unix_ms();
    let applying = service.begin_apply(id, "test").unwrap();
    assert_eq!(applying.state, PlanState::Applying);
    assert_eq!(service.run_plan(id).unwrap(), PlanState::Done);
    let done = service.plan(id).unwrap();
    assert_eq!(done.updated_unix_ms, applied_at);
    assert_eq!(done.outcomes.len(), done.moves.len());
    let after = placement(&service);
    for m in &done.moves {
        assert_eq!(after[&m.vm], m.to);
    }
    assert!(
        service.begin_apply(id, "test").is_err(),
        "applied once only"
    );
    let imbalance = service.cluster().unwrap().imbalance.std_dev;
    assert!(imbalance < done.imbalance_before.std_dev);
}

#[test]
fn full_executes_and_reject_is_recorded() {
    let (service, clock) = service(Automation::Full);
    let report = first_plan(&service, &clock);
    assert_eq!(report.state, Some(PlanState::Done));
    let (manual, clock) = self::service(Automation::Partial);
    let id = first_plan(&manual, &clock).plan.unwrap();
    let rejected = manual.reject(id, "test").unwrap();
    assert_eq!(rejected.state, PlanState::Rejected);
    assert_eq!(rejected.history.last().unwrap().note, "rejected by test");
}

#[test]
fn maintenance_evacuates_whatever_the_automation() {
    let (service, _clock) = service(Automation::Manual);
    let id = service
        .enter_maintenance("host-00", "test")
        .unwrap()
        .unwrap();
    assert_eq!(service.run_plan(id).unwrap(), PlanState::Done);
    let view = service.cluster().unwrap();
    let host = view.hosts.iter().find(|h| h.name == "host-00").unwrap();
    assert!(host.maintenance && host.safe_to_service && host.vm_count == 0);
    assert!(view.vms.iter().all(|v| v.host != "host-00"));
    assert!(service.enter_maintenance("nope", "test").is_err());
    service.leave_maintenance("host-00", "test").unwrap();
    assert!(!service.cluster().unwrap().hosts[0].maintenance);
}
