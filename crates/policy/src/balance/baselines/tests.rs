//! Properties every baseline keeps, and their speed on a large cluster.

use super::testkit::*;
use super::*;
use crate::balance::{Balancer, InFlight};
use keel_model::rules::{VmGroupRule, VmHostRule};
use keel_model::{Rules, VmHostKind};
use proptest::prelude::*;
use std::time::Instant;

/// Every baseline, tuned to act as much as it can.
fn eager_balancers() -> Vec<Box<dyn Balancer>> {
    vec![
        Box::new(Crs::new(CrsConfig {
            threshold: 0.0,
            hold_rounds: 1,
            min_improvement: 0.0,
            check_overcommit: false,
        })),
        Box::new(ProxLb::new(ProxLbConfig {
            balanciness: 0.0,
            ..ProxLbConfig::default()
        })),
        Box::new(ProxLb::new(ProxLbConfig {
            method: ProxLbMethod::Cpu,
            mode: ProxLbMode::Assigned,
            balanciness: 0.0,
            larger_guests_first: true,
            ..ProxLbConfig::default()
        })),
        Box::new(Watcher::new(WatcherConfig {
            cpu: Some(WatcherMetric {
                threshold: 0.0,
                weight: 1.0,
            }),
            memory: Some(WatcherMetric {
                threshold: 0.0,
                weight: 0.5,
            }),
            max_moves: 8,
            ..WatcherConfig::default()
        })),
        Box::new(Crs::default()),
        Box::new(ProxLb::default()),
        Box::new(Watcher::default()),
    ]
}

type VmSpec = (usize, f64, f64, u8);

proptest! {
    #[test]
    fn baselines_never_break_hard_limits(
        n_hosts in 2usize..6,
        vms in proptest::collection::vec((0usize..6, 0.0f64..8.0, 0.0f64..32.0, 0u8..16), 0..24),
        maintenance in proptest::collection::vec(any::<bool>(), 6),
        must_mask in 1u8..63,
    ) {
        let hosts: Vec<_> = (0..n_hosts).map(|h| host(&format!("h{h}"), 16.0, 64.0)).collect();
        let vms: Vec<VmSpec> = vms;
        let infos = vms
            .iter()
            .enumerate()
            .map(|(i, &(h, cpu, mem, _))| vm(&format!("v{i}"), &format!("h{}", h % n_hosts), cpu, mem))
            .collect();
        let c = cluster(hosts, infos);
        // Flags per VM: 1 must rule, 2 pinned, 4 in flight, 8 anti-affinity pair.
        let name = |i: usize| format!("v{i}");
        // A VM both pinned and bound elsewhere would make the rules conflict.
        let flagged = |bit: u8| -> Vec<String> {
            let bit = |v: &VmSpec| v.3 & bit != 0 && (bit != 1 || v.3 & 2 == 0);
            vms.iter().enumerate().filter(|(_, v)| bit(v)).map(|(i, _)| name(i)).collect()
        };
        let must_hosts: Vec<String> = (0..n_hosts)
            .filter(|h| must_mask & (1 << h) != 0)
            .map(|h| format!("h{h}"))
            .collect();
        let mut rules = Rules {
            maintenance: (0..n_hosts).filter(|&h| maintenance[h]).map(|h| format!("h{h}")).collect(),
            pin: vec![VmGroupRule { name: "pin".into(), vms: flagged(2) }],
            ..Rules::default()
        };
        if !must_hosts.is_empty() {
            rules.vm_host.push(VmHostRule {
                name: "must".into(),
                vms: flagged(1),
                hosts: must_hosts,
                kind: VmHostKind::Must,
                weight: 1.0,
            });
        }
        let anti = flagged(8);
        if anti.len() >= 2 {
            rules.anti_affinity.push(VmGroupRule { name: "apart".into(), vms: anti[..2].to_vec() });
        }
        if vms.len() >= 2 && vms[0].3 & 11 == 0 && vms[1].3 & 11 == 0 {
            rules.affinity.push(VmGroupRule { name: "together".into(), vms: vec![name(0), name(1)] });
        }
        let compiled = rules.compile(&c);
        prop_assert!(compiled.is_ok(), "generated rules conflict: {:?}", compiled);
        let compiled = compiled.unwrap();
        let in_flight: Vec<InFlight> = c
            .placement
            .iter()
            .enumerate()
            .filter(|(i, _)| vms[*i].3 & 4 != 0)
            .map(|(i, &from)| InFlight {
                vm: VmId(i as u32),
                from,
                to: HostId(((from.0 as usize + 1) % n_hosts) as u32),
            })
            .collect();
        for with_flights in [false, true] {
            let flights: &[InFlight] = if with_flights { &in_flight } else { &[] };
            for mut b in eager_balancers() {
                for _ in 0..3 {
                    let plan = round(b.as_mut(), &c, &compiled, flights);
                    let mut placement = c.placement.clone();
                    for m in &plan.moves {
                        let vm = m.vm.index();
                        prop_assert_eq!(m.from, placement[vm], "{} from", b.name());
                        prop_assert!(m.to != m.from, "{} moves nowhere", b.name());
                        prop_assert!(!compiled.maintenance[m.to.index()], "{} into maintenance", b.name());
                        prop_assert!(compiled.host_allowed(m.vm, m.to), "{} breaks a must rule", b.name());
                        prop_assert!(!compiled.pinned[vm], "{} moves a pinned VM", b.name());
                        prop_assert!(!flights.iter().any(|f| f.vm == m.vm), "{} moves an in-flight VM", b.name());
                        for &g in &compiled.anti_affinity_of[vm] {
                            for &peer in &compiled.anti_affinity_groups[g] {
                                if peer != m.vm {
                                    prop_assert!(placement[peer.index()] != m.to, "{} joins a peer", b.name());
                                    prop_assert!(!flights.iter().any(|f| f.vm == peer && f.to == m.to));
                                }
                            }
                        }
                        placement[vm] = m.to;
                    }
                    if let Some(g) = compiled.affinity_groups.first() {
                        let moved: Vec<bool> = g.iter().map(|v| placement[v.index()] != c.placement[v.index()]).collect();
                        prop_assert!(moved.iter().all(|&x| x == moved[0]), "{} splits a group", b.name());
                    }
                    prop_assert_eq!(plan.predicted_loads.len(), n_hosts);
                }
            }
        }
    }
}

/// 1000 hosts, 30,000 VMs, the first hundred hosts twice as loaded.
fn large() -> keel_model::Cluster {
    let hosts = (0..1000)
        .map(|h| host(&format!("h{h}"), 64.0, 512.0))
        .collect();
    let vms = (0..30_000)
        .map(|i| {
            let h = if i % 4 == 0 { (i / 4) % 100 } else { i % 1000 };
            let f = 1.0 + ((i * 7919) % 13) as f64 / 6.0;
            vm(&format!("v{i}"), &format!("h{h}"), f, 4.0 * f)
        })
        .collect();
    cluster(hosts, vms)
}

#[test]
#[ignore = "timing on a large cluster; run with --ignored"]
fn large_cluster_rounds_are_fast() {
    let c = large();
    let rules = compile(&c, &Rules::default());
    let balancers: Vec<Box<dyn Balancer>> = vec![
        Box::new(Crs::new(CrsConfig {
            threshold: 0.0,
            hold_rounds: 1,
            // One move among 30,000 VMs cannot gain the default 10 %.
            min_improvement: 0.0,
            check_overcommit: true,
        })),
        Box::new(ProxLb::default()),
        Box::new(Watcher::new(WatcherConfig {
            cpu: Some(WatcherMetric {
                threshold: 0.0,
                weight: 1.0,
            }),
            memory: Some(WatcherMetric {
                threshold: 0.0,
                weight: 1.0,
            }),
            ..WatcherConfig::default()
        })),
    ];
    for mut b in balancers {
        let start = Instant::now();
        let plan = round(b.as_mut(), &c, &rules, &[]);
        let took = start.elapsed();
        eprintln!("{}: {} moves in {:?}", b.name(), plan.moves.len(), took);
        assert!(!plan.moves.is_empty(), "{} found nothing", b.name());
        assert!(took.as_secs_f64() < 10.0, "{} took {took:?}", b.name());
    }
}
