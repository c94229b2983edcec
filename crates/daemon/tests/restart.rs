//! Restart reconciliation in process, on a history file in a temporary
//! directory and a fake clock: a first service dies (is dropped) with a
//! plan applying, one move done and others in flight; a second one on the
//! same data directory reads the history back, settles the in-flight
//! actions against the observed placement and repeats none of them. (The
//! same with the real binary and SIGKILL: crates/cli/tests/restart.rs.)

use keel_daemon::plans::{PlanRecord, PlanState};
use keel_daemon::{Automation, DaemonConfig, FakeClock, MoveOutcome, Service};
use std::path::Path;
use std::sync::Arc;

fn open(dir: &Path, clock: &FakeClock) -> Service {
    let config = DaemonConfig {
        automation: Automation::Manual,
        ..DaemonConfig::default()
    };
    config.open_service(Arc::new(clock.clone()), dir).unwrap()
}

fn ok(m: &keel_daemon::NamedMove) -> MoveOutcome {
    MoveOutcome {
        vm: m.vm.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        wave: m.wave,
        seconds: Some(1.0),
        downtime_ms: None,
        error: None,
    }
}

#[test]
fn a_restart_settles_in_flight_actions_by_placement_and_repeats_none() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(1_700_000_000_000);
    let first = open(dir.path(), &clock);
    first.warm_up().unwrap();
    let id = (0..5)
        .find_map(|_| {
            clock.advance_ms(2_000);
            first.step().unwrap().plan
        })
        .expect("a plan within 5 rounds");
    let plan = first.begin_apply(id, "alice").unwrap();
    assert!(plan.moves.len() >= 3, "{} moves", plan.moves.len());
    let store = first.store();
    // As the daemon would: move 0 done, move 1 started when it died.
    store.begin_action(id, 0, &plan.moves[0], 1).unwrap();
    store.finish_action(id, 0, 2, &ok(&plan.moves[0])).unwrap();
    store.begin_action(id, 1, &plan.moves[1], 3).unwrap();
    assert!(
        store.begin_action(id, 0, &plan.moves[0], 4).is_err(),
        "a move cannot start twice"
    );
    // A second applying plan whose in-flight move had in fact completed:
    // its VM is on the move's target (the simulator starts where the
    // first plan found it: `from` of the first plan's move 2).
    let m = &plan.moves[2];
    let mut done_elsewhere = PlanRecord {
        id: id + 1,
        state: PlanState::Applying,
        ..plan.clone()
    };
    done_elsewhere.moves = vec![keel_daemon::NamedMove {
        from: "host-09".into(),
        to: m.from.clone(),
        ..m.clone()
    }];
    store.save_plan(&done_elsewhere).unwrap();
    store
        .begin_action(id + 1, 0, &done_elsewhere.moves[0], 5)
        .unwrap();
    store.flush();
    let samples_before = store.vm_samples(&m.vm, 0, 10_000).unwrap().len();
    assert!(samples_before > 0);
    drop(first);

    clock.advance_ms(60_000);
    let second = open(dir.path(), &clock);
    let recovery = second.warm_up().unwrap();
    assert_eq!(
        (
            recovery.actions_confirmed,
            recovery.actions_interrupted,
            recovery.plans_interrupted.clone()
        ),
        (1, 1, vec![id, id + 1]),
        "{recovery:?}"
    );
    let p = second.plan(id).unwrap();
    assert_eq!(p.state, PlanState::Interrupted);
    assert_eq!(p.moves, plan.moves);
    assert_eq!(p.outcomes.len(), 2);
    assert!(p.outcomes[0].error.is_none());
    let err = p.outcomes[1].error.as_deref().unwrap();
    assert!(err.contains("interrupted by restart"), "{err}");
    let last = p.history.last().unwrap();
    assert!(last.note.contains("1 of"), "{}", last.note);
    assert_eq!(p.history[p.history.len() - 2].note, "applied by alice");
    let q = second.plan(id + 1).unwrap();
    assert_eq!(q.state, PlanState::Interrupted);
    assert!(q.outcomes[0].error.is_none(), "found on its target: done");
    assert!(second.begin_apply(id, "bob").is_err(), "not resumable");

    // Rounds after the restart plan afresh with higher ids and execute
    // nothing of the interrupted plans.
    let new = (0..5)
        .find_map(|_| {
            clock.advance_ms(2_000);
            second.step().unwrap().plan
        })
        .expect("a new plan after the restart");
    assert!(new > id + 1, "plan ids go on: {new}");
    let store = second.store();
    store.flush();
    let actions = store.actions(100).unwrap();
    assert_eq!(actions.len(), 3, "no action added or repeated");
    let mut keys: Vec<(u64, u32)> = actions.iter().map(|a| (a.plan_id, a.seq)).collect();
    keys.dedup();
    assert_eq!(keys.len(), 3);
    assert!(store.vm_samples(&m.vm, 0, 10_000).unwrap().len() > samples_before);
    let audit: Vec<String> = store
        .audit_entries(100)
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {}", e.who, e.action, e.target))
        .collect();
    for expected in [
        format!("alice plan.apply plan {id}"),
        format!("control-loop plan.interrupt plan {id}"),
        format!("control-loop plan.interrupt plan {}", id + 1),
    ] {
        assert!(audit.contains(&expected), "{expected:?} not in {audit:?}");
    }
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.starts_with("control-loop daemon.start"))
            .count(),
        2
    );
}
