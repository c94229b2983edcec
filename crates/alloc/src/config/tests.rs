use super::*;
use crate::units::Units;
use proptest::prelude::*;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const CAP: [f64; 3] = [8.0, 32.0 * GIB, 1e9];
const KNOWN: &[&str] = &["web", "db", "job1", "job2"];

const SAMPLE: &str = r#"
[[vm]]
name = "web"
priority = "high"
cpu = { reservation = 0.5, limit = 2.0 }
memory = { reservation = 1e9 }

[[vm]]
name = "db"
shares = 1500

[[pool]]
name = "batch"
priority = "low"
cpu = { limit = 4.0 }
[[pool.vm]]
name = "job1"
disk = { limit = 50e6 }
[[pool.pool]]
name = "inner"
[[pool.pool.vm]]
name = "job2"
cpu = { reservation = 1.0 }
"#;

fn cfg(text: &str) -> AllocConfig {
    AllocConfig::from_toml(text).unwrap()
}

#[test]
fn parses_and_validates_sample() {
    let c = cfg(SAMPLE);
    assert_eq!(c.vm[0].effective_shares(), Ok(2000.0));
    assert_eq!(c.vm[1].effective_shares(), Ok(1500.0));
    assert_eq!(c.pool[0].effective_shares(), Ok(500.0));
    assert_eq!(c.pool[0].pool[0].vm[0].cpu.reservation, 1.0);
    c.validate(KNOWN, CAP).unwrap();
}

#[test]
fn unknown_fields_are_refused() {
    let e = AllocConfig::from_toml("[[vm]]\nname = \"web\"\nshare = 3\n").unwrap_err();
    assert!(matches!(e, ConfigError::Parse(m) if m.contains("share")));
    let e = AllocConfig::from_toml("[[vm]]\nname = \"a\"\ncpu = { reserve = 1 }\n");
    assert!(e.is_err());
    let e = AllocConfig::from_toml("[[vm]]\nname = \"a\"\npriority = \"urgent\"\n");
    assert!(e.is_err());
}

fn err(text: &str) -> ConfigError {
    cfg(text).validate(KNOWN, CAP).unwrap_err()
}

#[test]
fn bad_configs_name_the_item() {
    let e = err("[[vm]]\nname = \"web\"\ncpu = { reservation = 3, limit = 2 }\n");
    assert!(
        matches!(&e, ConfigError::ReservationAboveLimit { item, resource: "cpu", .. } if item == "web")
    );
    assert!(e.to_string().contains("web"));
    let e = err("[[vm]]\nname = \"web\"\nmemory = { reservation = -1 }\n");
    assert!(matches!(&e, ConfigError::InvalidValue { field, .. } if field == "memory.reservation"));
    let e = err("[[vm]]\nname = \"web\"\ndisk = { limit = inf }\n");
    assert!(matches!(&e, ConfigError::InvalidValue { field, .. } if field == "disk.limit"));
    let e = err("[[vm]]\nname = \"web\"\ncpu = { reservation = nan }\n");
    assert!(matches!(&e, ConfigError::InvalidValue { .. }));
    for s in ["0", "-5"] {
        let e = err(&format!("[[vm]]\nname = \"web\"\nshares = {s}\n"));
        assert!(matches!(&e, ConfigError::InvalidShares { item, .. } if item == "web"));
    }
    let e = err("[[vm]]\nname = \"web\"\nshares = 5\npriority = \"low\"\n");
    assert!(matches!(e, ConfigError::SharesAndPriority { .. }));
    let e = err("[[vm]]\nname = \"ghost\"\n");
    assert_eq!(
        e,
        ConfigError::UnknownVm {
            name: "ghost".into()
        }
    );
    let e = err("[[vm]]\nname = \"web\"\n[[pool]]\nname = \"p\"\n[[pool.vm]]\nname = \"web\"\n");
    assert_eq!(e, ConfigError::Duplicate { name: "web".into() });
    let e = err("[[pool]]\nname = \"p\"\nshares = -1\n");
    assert!(matches!(&e, ConfigError::InvalidShares { item, .. } if item == "p"));
}

#[test]
fn pool_limit_below_childrens_reservations() {
    let e = err("[[pool]]\nname = \"p\"\ncpu = { limit = 1 }\n[[pool.vm]]\nname = \"web\"\ncpu = { reservation = 0.7 }\n[[pool.vm]]\nname = \"db\"\ncpu = { reservation = 0.7 }\n");
    assert!(
        matches!(&e, ConfigError::ReservationAboveLimit { item, reservation, .. } if item == "p" && *reservation == 1.4)
    );
}

#[test]
fn admission_control_names_the_vm_that_does_not_fit() {
    let text = "[[vm]]\nname = \"web\"\ncpu = { reservation = 5 }\n[[pool]]\nname = \"p\"\n[[pool.vm]]\nname = \"job1\"\ncpu = { reservation = 2 }\n[[pool.vm]]\nname = \"job2\"\ncpu = { reservation = 2 }\n";
    let e = err(text);
    assert_eq!(
        e,
        ConfigError::DoesNotFit {
            item: "job2".into(),
            resource: "cpu",
            reserved_total: 9.0,
            capacity: 8.0
        }
    );
    // A pool's own reservation beyond its children's counts against it.
    let e = err("[[vm]]\nname = \"web\"\ncpu = { reservation = 5 }\n[[pool]]\nname = \"p\"\ncpu = { reservation = 4 }\n");
    assert!(matches!(&e, ConfigError::DoesNotFit { item, .. } if item == "p"));
    cfg(text).validate(KNOWN, [9.0, 1.0, 1.0]).unwrap();
}

#[test]
fn nesting_too_deep_is_refused() {
    let mut pool = PoolAlloc {
        name: "p0".into(),
        shares: None,
        priority: None,
        cpu: Bounds::default(),
        memory: Bounds::default(),
        disk: Bounds::default(),
        vm: vec![],
        pool: vec![],
    };
    for i in 1..=MAX_DEPTH {
        let mut outer = pool.clone();
        outer.name = format!("p{i}");
        outer.pool = vec![pool];
        pool = outer;
    }
    let c = AllocConfig {
        vm: vec![],
        pool: vec![pool],
    };
    assert!(matches!(
        c.validate(KNOWN, CAP),
        Err(ConfigError::TooDeep { .. })
    ));
}

fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        -10.0..100.0f64,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(0.0)
    ]
}

fn arb_bounds() -> impl Strategy<Value = Bounds> {
    (arb_f64(), proptest::option::of(arb_f64()))
        .prop_map(|(reservation, limit)| Bounds { reservation, limit })
}

prop_compose! {
    fn arb_vm()(name in "[a-z]{1,3}", shares in proptest::option::of(arb_f64()),
                cpu in arb_bounds(), memory in arb_bounds(), disk in arb_bounds()) -> VmAlloc {
        VmAlloc { name, shares, priority: None, cpu, memory, disk, disk_iops_limit: None }
    }
}

fn arb_config() -> impl Strategy<Value = AllocConfig> {
    let pool = (
        "[A-Z]{1,2}",
        proptest::option::of(arb_f64()),
        arb_bounds(),
        proptest::collection::vec(arb_vm(), 0..4),
    )
        .prop_map(|(name, shares, cpu, vm)| PoolAlloc {
            name,
            shares,
            priority: Some(Priority::Normal).filter(|_| shares.is_none()),
            cpu,
            memory: Bounds::default(),
            disk: Bounds::default(),
            vm,
            pool: vec![],
        });
    (
        proptest::collection::vec(arb_vm(), 0..5),
        proptest::collection::vec(pool, 0..3),
    )
        .prop_map(|(vm, pool)| AllocConfig { vm, pool })
}

proptest! {
    #[test]
    fn validation_never_panics(c in arb_config(), cap in proptest::array::uniform3(arb_f64())) {
        let names: Vec<String> = c.vm.iter().map(|v| v.name.clone()).collect();
        let known: Vec<&str> = names.iter().map(String::as_str).collect();
        let _ = c.validate(&known, cap);
    }

    #[test]
    fn parsing_never_panics(text in "\\PC*") {
        if let Ok(c) = AllocConfig::from_toml(&text) {
            let _ = c.validate(&[], CAP);
        }
    }
}

#[test]
fn json_form_accepts_units_and_nulls_and_names_bad_input() {
    let c = AllocConfig::from_json(
        br#"{"vm": [{"name": "web", "shares": null, "priority": "high",
                     "memory": {"reservation": "1GiB", "limit": null}}],
             "pool": []}"#,
        &Units::default(),
    )
    .unwrap();
    assert_eq!(c.vm[0].memory.reservation, GIB);
    assert_eq!(c.vm[0].memory.limit, None);
    assert_eq!(c.vm[0].priority, Some(Priority::High));
    let e = AllocConfig::from_json(b"{\"vm\": [", &Units::default()).unwrap_err();
    assert!(matches!(e, ConfigError::Json(_)), "{e}");
    let e = AllocConfig::from_json(b"[1, 2]", &Units::default()).unwrap_err();
    assert!(e.to_string().contains("expected an object"), "{e}");
    let e = AllocConfig::from_json(br#"{"vm": [{"name": "a", "cpus": 1}]}"#, &Units::default())
        .unwrap_err();
    assert!(e.to_string().contains("cpus"), "{e}");
}

fn finite(c: &AllocConfig) -> bool {
    let b = |x: &Bounds| x.reservation.is_finite() && x.limit.is_none_or(f64::is_finite);
    let vm = |v: &VmAlloc| {
        v.shares.is_none_or(f64::is_finite)
            && v.disk_iops_limit.is_none_or(f64::is_finite)
            && v.bounds().iter().all(b)
    };
    c.vm.iter().all(vm)
        && c.pool.iter().all(|p| {
            p.shares.is_none_or(f64::is_finite) && p.bounds().iter().all(b) && p.vm.iter().all(vm)
        })
}

proptest! {
    /// What the API returns (serde's JSON) parses back to the same policy.
    #[test]
    fn json_form_round_trips(c in arb_config().prop_filter("JSON has no NaN", finite)) {
        let text = serde_json::to_vec(&c).unwrap();
        prop_assert_eq!(AllocConfig::from_json(&text, &Units::default()), Ok(c));
    }
}
