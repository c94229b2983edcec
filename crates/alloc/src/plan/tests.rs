use super::*;
use crate::cgroup::{Cgroup, V1_MEMORY_UNLIMITED};
use crate::config::Priority;
use proptest::prelude::*;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn running(name: &str, cpu: f64, mem: f64) -> RunningVm {
    RunningVm {
        name: name.into(),
        demand: Resources::new(cpu, mem, 0.0, 0.0),
        guest_memory_bytes: 2.0 * GIB,
    }
}

#[test]
fn shares_4_2_1_on_one_core() {
    let c = AllocConfig::from_toml(
        "[[vm]]\nname = \"a\"\nshares = 4000\n[[vm]]\nname = \"b\"\nshares = 2000\n[[vm]]\nname = \"c\"\nshares = 1000\n",
    )
    .unwrap();
    let vms = ["a", "b", "c"].map(|n| running(n, 1.0, GIB));
    let cap = Resources::new(1.0, 16.0 * GIB, 1e9, 1e9);
    let p = plan(&c, &cap, &vms).unwrap();
    let cpu: Vec<f64> = p.iter().map(|p| p.entitlement.cpu_cores).collect();
    for (got, want) in cpu.iter().zip([4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]) {
        assert!((got - want).abs() < 1e-9, "{cpu:?}");
    }
    assert_eq!(p[0].settings.shares, 4000.0);
}

#[test]
fn pools_inherit_limits_and_unconfigured_vms_get_defaults() {
    let c = AllocConfig::from_toml(
        "[[pool]]\nname = \"p\"\npriority = \"low\"\ncpu = { limit = 1.5 }\nmemory = { limit = 1e9 }\n[[pool.vm]]\nname = \"a\"\ncpu = { limit = 3 }\n",
    )
    .unwrap();
    let vms = [running("x", 4.0, GIB), running("a", 4.0, GIB)];
    let cap = Resources::new(4.0, 16.0 * GIB, 1e9, 1e9);
    let p = plan(&c, &cap, &vms).unwrap();
    assert_eq!(p[0].name, "a");
    assert_eq!(p[0].settings.cpu_limit_cores, Some(1.5));
    assert_eq!(p[0].settings.memory_limit_bytes, Some(1e9));
    // Pool shares 500 against x's 1000: 4/3 and 8/3 of the 4 cores.
    assert!((p[0].entitlement.cpu_cores - 4.0 / 3.0).abs() < 1e-9);
    assert_eq!(p[1].name, "x");
    assert_eq!(p[1].settings.shares, DEFAULT_SHARES);
    assert_eq!(p[1].settings.cpu_limit_cores, None);
    assert!((p[1].entitlement.cpu_cores - 8.0 / 3.0).abs() < 1e-9);
}

#[test]
fn invalid_config_is_a_plan_error() {
    let c = AllocConfig::from_toml("[[vm]]\nname = \"gone\"\n").unwrap();
    let e = plan(&c, &Resources::new(1.0, 1.0, 1.0, 1.0), &[]).unwrap_err();
    assert!(matches!(
        e,
        PlanError::Config(ConfigError::UnknownVm { .. })
    ));
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Mostly valid bounds: reservations up to `max / 4` (four VMs fit), the
/// limit at or above the reservation.
fn arb_bounds(max: f64) -> impl Strategy<Value = Bounds> {
    (0.0..max / 4.0, proptest::option::of(0.0..max)).prop_map(|(reservation, extra)| Bounds {
        reservation,
        limit: extra.map(|e| reservation + e),
    })
}

prop_compose! {
    fn arb_vm(i: usize)(shares in proptest::option::of(0.001..1e6f64), pri in 0..4u8,
                        cpu in arb_bounds(8.0), memory in arb_bounds(64.0 * GIB)) -> VmAlloc {
        let priority = [Some(Priority::High), Some(Priority::Normal), Some(Priority::Low), None][pri as usize]
            .filter(|_| shares.is_none());
        VmAlloc { name: NAMES[i].into(), shares, priority, cpu, memory, disk: Bounds::default(), disk_iops_limit: None }
    }
}

fn arb_case() -> impl Strategy<Value = (AllocConfig, Vec<RunningVm>)> {
    let vms = (arb_vm(0), arb_vm(1), arb_vm(2), arb_vm(3));
    let demand = proptest::collection::vec((0.0..16.0f64, 0.0..64.0 * GIB, 0.0..32.0 * GIB), 4);
    (vms, demand, arb_bounds(8.0), 0..4usize).prop_map(|((a, b, c, d), demand, pcpu, split)| {
        let mut all = vec![a, b, c, d];
        let pooled = all.split_off(split);
        let config = AllocConfig {
            vm: all,
            pool: vec![crate::config::PoolAlloc {
                name: "P".into(),
                shares: None,
                priority: None,
                cpu: pcpu,
                memory: Bounds::default(),
                disk: Bounds::default(),
                vm: pooled,
                pool: vec![],
            }],
        };
        let vms = NAMES
            .iter()
            .zip(demand)
            .map(|(n, (cpu, mem, guest))| RunningVm {
                name: n.to_string(),
                demand: Resources::new(cpu, mem, 0.0, 0.0),
                guest_memory_bytes: guest,
            })
            .collect();
        (config, vms)
    })
}

proptest! {
    #[test]
    fn valid_configs_write_values_in_range((config, vms) in arb_case()) {
        let cap = Resources::new(8.0, 64.0 * GIB, 1e9, 1e9);
        let plans = plan(&config, &cap, &vms);
        // A pool's own CPU limit may still fall below its VMs' reservations.
        let Ok(plans) = plans else { return Ok(()); };
        prop_assert_eq!(plans.len(), vms.len());
        for p in &plans {
            let s = &p.settings;
            let floor = s.memory_floor_bytes();
            let v2 = Cgroup::V2("/x".into());
            let v1 = Cgroup::V1 { cpu: "/x".into(), memory: "/x".into(), blkio: "/x".into() };
            for c in v2.controls(s, &[]).into_iter().chain(v1.controls(s, &[])) {
                let num = |v: &str| v.parse::<f64>().unwrap();
                match c.name {
                    "cpu.weight" => prop_assert!((1.0..=10_000.0).contains(&num(&c.value))),
                    "io.weight" => prop_assert!((1.0..=10_000.0).contains(&num(&c.value[8..]))),
                    "cpu.shares" => prop_assert!((2.0..=262_144.0).contains(&num(&c.value))),
                    "blkio.weight" => prop_assert!((100.0..=1000.0).contains(&num(&c.value))),
                    "cpu.max" if !c.value.starts_with("max") => {
                        let q = num(c.value.split(' ').next().unwrap());
                        prop_assert!(q >= 1000.0);
                        let limit = s.cpu_limit_cores.unwrap();
                        prop_assert!((q - (limit * 1e5).max(1000.0)).abs() <= 0.5);
                    }
                    "cpu.cfs_quota_us" => prop_assert!(c.value == "-1" || num(&c.value) >= 1000.0),
                    "memory.min" => prop_assert!(num(&c.value) <= s.memory_reservation_bytes),
                    "memory.high" | "memory.max" | "memory.soft_limit_in_bytes"
                    | "memory.limit_in_bytes" if c.value != "max" => {
                        let b = num(&c.value);
                        prop_assert!(b >= floor, "{} {} < {}", c.name, b, floor);
                        prop_assert!(b <= V1_MEMORY_UNLIMITED as f64);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// docs/allocation.md's worked example, through the real plan.
#[test]
fn worked_example_of_the_docs() {
    let cap = Resources::new(10.0, 64.0 * GIB, 1e9, 1e9);
    let vms = ["high", "mid", "low"].map(|n| running(n, 8.0, GIB));
    let cpu = |text: &str| -> Vec<f64> {
        let c = AllocConfig::from_toml(text).unwrap();
        plan(&c, &cap, &vms)
            .unwrap()
            .iter()
            .map(|p| (p.entitlement.cpu_cores * 100.0).round() / 100.0)
            .collect()
    };
    let base = "[[vm]]\nname = \"high\"\nshares = 4000\nHIGH\n[[vm]]\nname = \"mid\"\nshares = 2000\n[[vm]]\nname = \"low\"\nshares = 1000\nLOW\n";
    let with = |high: &str, low: &str| base.replace("HIGH", high).replace("LOW", low);
    assert_eq!(cpu(&with("", "")), vec![5.71, 2.86, 1.43]);
    assert_eq!(
        cpu(&with("", "cpu = { reservation = 4 }")),
        vec![4.0, 2.0, 4.0]
    );
    assert_eq!(cpu(&with("cpu = { limit = 2 }", "")), vec![2.0, 5.33, 2.67]);
    // The relative CPU weights written follow the entitlements.
    let c = AllocConfig::from_toml(&with("", "cpu = { reservation = 4 }")).unwrap();
    let w: Vec<f64> = plan(&c, &cap, &vms)
        .unwrap()
        .iter()
        .map(|p| (p.settings.cpu_weight * 100.0).round() / 100.0)
        .collect();
    assert_eq!(w, vec![1.2, 0.6, 1.2]);
}
