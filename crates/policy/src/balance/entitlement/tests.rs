//! Tests of [`super`]: worked examples and properties.

use super::*;
use proptest::prelude::*;

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-9, "{got:?} vs {want:?}");
    }
}

fn claim(demand: f64, reservation: f64, limit: f64, shares: f64) -> Claim {
    Claim {
        demand,
        reservation,
        limit,
        shares,
    }
}

#[test]
fn worked_examples() {
    let mut c = [
        Claim::new(8.0, 4.0),
        Claim::new(8.0, 2.0),
        Claim::new(8.0, 1.0),
    ];
    close(
        &divvy(10.0, &c).unwrap(),
        &[40.0 / 7.0, 20.0 / 7.0, 10.0 / 7.0],
    );
    // Reservation 4 on the low-share VM: a floor, not a bonus.
    c[2].reservation = 4.0;
    close(&divvy(10.0, &c).unwrap(), &[4.0, 2.0, 4.0]);
    // Limit 2 on the high-share VM: the excess flows to the others 2:1.
    c[2].reservation = 0.0;
    c[0].limit = 2.0;
    close(&divvy(10.0, &c).unwrap(), &[2.0, 16.0 / 3.0, 8.0 / 3.0]);
    // Low demand is met; the rest splits 2:1.
    let c = [
        Claim::new(1.0, 4.0),
        Claim::new(8.0, 2.0),
        Claim::new(8.0, 1.0),
    ];
    close(&divvy(10.0, &c).unwrap(), &[1.0, 6.0, 3.0]);
    // Uncontended: everyone gets the demand; a reservation above demand is held.
    let c = [Claim::new(2.0, 1.0), claim(1.0, 3.0, 5.0, 1.0)];
    close(&divvy(10.0, &c).unwrap(), &[2.0, 3.0]);
    // Zero shares: reservation, then only the leftover.
    let c = [Claim::new(8.0, 1.0), claim(8.0, 1.0, f64::INFINITY, 0.0)];
    close(&divvy(10.0, &c).unwrap(), &[8.0, 2.0]);
    close(&divvy(0.0, &[Claim::new(3.0, 1.0)]).unwrap(), &[0.0]);
    assert_eq!(divvy(5.0, &[]), Ok(vec![]));
}

#[test]
fn bad_input_is_a_typed_error() {
    let c = [claim(1.0, 3.0, 9.0, 1.0), claim(1.0, 4.0, 9.0, 1.0)];
    assert_eq!(
        divvy(6.0, &c),
        Err(EntitlementError::ReservationsExceedCapacity {
            index: 1,
            reserved_total: 7.0,
            capacity: 6.0
        })
    );
    assert!(matches!(
        divvy(6.0, &[Claim::new(f64::NAN, 1.0)]),
        Err(EntitlementError::InvalidClaim {
            index: 0,
            field: "demand",
            ..
        })
    ));
    assert!(matches!(
        divvy(f64::NAN, &[]),
        Err(EntitlementError::InvalidCapacity { .. })
    ));
    assert_eq!(
        divvy(6.0, &[claim(1.0, 3.0, 2.0, 1.0)]),
        Err(EntitlementError::ReservationAboveLimit {
            index: 0,
            reservation: 3.0,
            limit: 2.0
        })
    );
}

#[test]
fn extreme_share_ratios_stay_within_capacity() {
    let c = [
        Claim::new(1e97, 1e-308),
        Claim::new(5.0, 1e300),
        Claim::new(1e12, 1.0),
    ];
    let e = divvy(1e10, &c).unwrap();
    assert!((e.iter().sum::<f64>() - 1e10).abs() <= 1e-6, "{e:?}");
    assert_eq!(e[1], 5.0);
    // Only the subnormal-share consumer left to fill: it gets all the rest.
    close(&divvy(7e10, &c[..1]).unwrap(), &[7e10]);
}

fn pool(limit: f64, shares: f64, children: Vec<Node>) -> Node {
    Node::Pool {
        reservation: 0.0,
        limit,
        shares,
        children,
    }
}

#[test]
fn nested_pools() {
    let kids = || {
        vec![
            Node::Vm(Claim::new(10.0, 1.0)),
            Node::Vm(Claim::new(2.0, 3.0)),
        ]
    };
    let a = Node::Vm(Claim::new(10.0, 1.0));
    let tree = [a.clone(), pool(f64::INFINITY, 2.0, kids())];
    close(&divvy_tree(12.0, &tree).unwrap(), &[4.0, 6.0, 2.0]);
    // A pool limit of 5: `a` takes the rest, the pool's 5 splits as 3 + 2.
    let tree = [a.clone(), pool(5.0, 2.0, kids())];
    close(&divvy_tree(12.0, &tree).unwrap(), &[7.0, 3.0, 2.0]);
    // A child's reservation raises the pool's; the pool's limit must cover it.
    let tree = [a, pool(5.0, 2.0, vec![Node::Vm(claim(1.0, 6.0, 9.0, 1.0))])];
    assert_eq!(
        divvy_tree(12.0, &tree),
        Err(EntitlementError::ReservationAboveLimit {
            index: 1,
            reservation: 6.0,
            limit: 5.0
        })
    );
    let bad = [pool(9.0, 1.0, vec![Node::Vm(Claim::new(-1.0, 1.0))])];
    assert!(matches!(
        divvy_tree(12.0, &bad),
        Err(EntitlementError::InPool { ref path, .. }) if path == &[0]
    ));
    let mut deep = Node::Vm(Claim::new(1.0, 1.0));
    for _ in 0..=MAX_POOL_DEPTH {
        deep = pool(f64::INFINITY, 1.0, vec![deep]);
    }
    assert!(matches!(
        divvy_tree(1.0, &[deep]),
        Err(EntitlementError::TooDeep { .. })
    ));
}

#[test]
fn per_resource_entitlements_and_load() {
    let vm = |cpu, shares| VmClaim {
        demand: Resources::new(cpu, 4.0, 0.0, 0.0),
        reservation: Resources::ZERO,
        limit: Resources::new(f64::INFINITY, 3.0, f64::INFINITY, f64::INFINITY),
        shares,
    };
    let capacity = Resources::new(6.0, 16.0, 0.0, 10.0);
    let e = host_entitlements(&capacity, &[vm(8.0, 2.0), vm(8.0, 1.0)]).unwrap();
    assert_eq!(e[0], Resources::new(4.0, 3.0, 0.0, 0.0));
    assert_eq!(e[1], Resources::new(2.0, 3.0, 0.0, 0.0));
    assert_eq!(
        host_load(&capacity, &e),
        Resources::new(1.0, 0.375, 0.0, 0.0)
    );
    let mut bad = vm(1.0, 1.0);
    bad.reservation.network_bytes_per_second = 11.0;
    assert!(matches!(
        host_entitlements(&capacity, &[bad]),
        Err(EntitlementError::ForResource {
            resource: Resource::Network,
            ..
        })
    ));
}

/// Capacity and claims whose reservations fit.
fn scenario() -> impl Strategy<Value = (f64, Vec<Claim>)> {
    let one = (
        0.0f64..100.0,
        0.0f64..1.0,
        prop_oneof![Just(f64::INFINITY), 0.0f64..100.0],
        prop_oneof![1 => Just(0.0), 4 => 0.01f64..1000.0],
    );
    (0.0f64..300.0, proptest::collection::vec(one, 0..8)).prop_map(|(capacity, raw)| {
        let n = raw.len().max(1) as f64;
        let claims = raw
            .into_iter()
            .map(|(demand, r, extra, shares)| {
                let reservation = r * capacity / n;
                claim(demand, reservation, reservation + extra, shares)
            })
            .collect();
        (capacity, claims)
    })
}

fn check_bounds(capacity: f64, claims: &[Claim], e: &[f64]) -> Result<(), TestCaseError> {
    let tol = 1e-9 * capacity.max(1.0);
    let total: f64 = e.iter().sum();
    prop_assert!(total <= capacity + tol, "{total} > {capacity}");
    let caps: f64 = claims.iter().map(Claim::cap).sum();
    prop_assert!(
        (total - capacity.min(caps)).abs() <= tol,
        "not work-conserving: {total}"
    );
    for (c, &x) in claims.iter().zip(e) {
        prop_assert!(c.reservation <= x && x <= c.cap(), "{x} outside {c:?}");
    }
    Ok(())
}

proptest! {
    #[test]
    fn divvy_is_bounded_work_conserving_and_share_monotone(
        (capacity, claims) in scenario(),
        pick in any::<prop::sample::Index>(),
        factor in 1.0f64..10.0,
    ) {
        let e = divvy(capacity, &claims).unwrap();
        check_bounds(capacity, &claims, &e)?;
        if !claims.is_empty() {
            let k = pick.index(claims.len());
            let mut more = claims.clone();
            more[k].shares = if more[k].shares == 0.0 { factor } else { more[k].shares * factor };
            let e2 = divvy(capacity, &more).unwrap();
            prop_assert!(e2[k] >= e[k] - 1e-9 * capacity.max(1.0), "{} -> {}", e[k], e2[k]);
        }
    }

    #[test]
    fn a_pool_around_everything_changes_nothing((capacity, claims) in scenario()) {
        let flat = divvy(capacity, &claims).unwrap();
        let leaves: Vec<Node> = claims.iter().copied().map(Node::Vm).collect();
        prop_assert_eq!(&divvy_tree(capacity, &leaves).unwrap(), &flat);
        let nested = divvy_tree(capacity, &[pool(f64::INFINITY, 1.0, leaves)]).unwrap();
        check_bounds(capacity, &claims, &nested)?;
        for (a, b) in nested.iter().zip(&flat) {
            prop_assert!((a - b).abs() <= 1e-9 * capacity.max(1.0), "{nested:?} vs {flat:?}");
        }
    }

    #[test]
    fn any_input_is_an_answer_or_an_error(
        capacity in any::<f64>(),
        raw in proptest::collection::vec(
            (any::<f64>(), any::<f64>(), any::<f64>(), any::<f64>()),
            0..6,
        ),
    ) {
        let claims: Vec<Claim> = raw.iter().map(|&(d, r, l, s)| claim(d, r, l, s)).collect();
        if let Ok(e) = divvy(capacity, &claims) {
            let total: f64 = e.iter().sum();
            prop_assert!(total <= capacity * (1.0 + 1e-9), "{total} > {capacity}");
            for (c, &x) in claims.iter().zip(&e) {
                prop_assert!(c.reservation <= x && x <= c.cap(), "{x} outside {c:?}");
            }
        }
        let tree = [pool(f64::INFINITY, 1.0, claims.iter().copied().map(Node::Vm).collect())];
        let _ = divvy_tree(capacity, &tree);
    }
}
