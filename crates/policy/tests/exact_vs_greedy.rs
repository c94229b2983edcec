//! The exact mode as the greedy planner's yardstick (issue 3, item 6): on
//! seeded random clusters of 5-20 hosts and 20-200 VMs with one or two hosts
//! overloaded, the greedy plan to a target max load needs at most 1.1x the
//! migrations of the exact optimum for the same target, and the exact mode
//! solves each instance within 30 s.
//!
//! Instances: hosts of 32 cores and 256 GiB; VMs of 1, 2, 4 or 8 vCPUs and
//! 2-32 GiB, demand 10-90 % of size per resource; default overcommit (4
//! vCPUs per core, no memory overcommit). The overloaded hosts are filled
//! with the most CPU-dense VMs to 95-110 % CPU; the others take the rest at
//! random, each kept at or below 75 % so a balanced placement exists
//! (`exact_vs_greedy_tight_clusters`: 3-6 hot hosts, the others up to 78 %).
//! The target is the smallest of 0.80, 0.85, 0.90, 0.95 the exact mode
//! proves feasible. Up to 100 VMs, the fewest-bytes solution is computed
//! too, as a cross-check of the two objectives.
//!
//! Timings go to stderr (`cargo test -- --nocapture` shows them).

use keel_model::{Cluster, ClusterSnapshot, CompiledRules, HostId, HostInfo, Resources, VmInfo};
use keel_policy::balance::exact::{solve_exact, ExactConfig, ExactError, ExactOutcome, Objective};
use keel_policy::balance::load::HostLoads;
use keel_policy::balance::{BalanceInput, Plan};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::time::Instant;

const GIB: f64 = (1u64 << 30) as f64;
const TARGETS: [f64; 4] = [0.80, 0.85, 0.90, 0.95];
const TIME_LIMIT_SECONDS: f64 = 30.0;
/// Time limit of the migrated-bytes cross-check (microlp rarely proves a
/// bytes optimum at 200 VMs within 30 s; the migration count is the yardstick).
const BYTES_TIME_LIMIT_SECONDS: f64 = 2.0;

/// How an instance is drawn.
#[derive(Debug, Clone, Copy)]
struct Shape {
    hosts: usize,
    /// VMs drawn (a VM that fits on no host is dropped).
    vms: usize,
    /// Hosts filled to 95-110 % CPU.
    hot: usize,
    /// Highest CPU and memory load the other hosts are filled to.
    cool_max: f64,
}

/// A seeded random cluster of the given shape.
fn generate(seed: u64, shape: Shape) -> Cluster {
    let Shape {
        hosts: n_hosts,
        vms: n_vms,
        hot,
        cool_max,
    } = shape;
    let mut rng = StdRng::seed_from_u64(seed);
    let capacity = Resources::new(32.0, 256.0 * GIB, 0.0, 0.0);
    let hosts: Vec<HostInfo> = (0..n_hosts)
        .map(|h| HostInfo {
            name: format!("h{h}"),
            capacity,
            maintenance: false,
        })
        .collect();
    let mut vms: Vec<VmInfo> = (0..n_vms)
        .map(|v| {
            let vcpus = [1.0, 2.0, 4.0, 8.0][rng.gen_range(0..4)];
            let memory = f64::from(rng.gen_range(2u32..=32)) * GIB;
            let size = Resources::new(vcpus, memory, 0.0, 0.0);
            let demand = Resources::new(
                vcpus * rng.gen_range(0.1..=0.9),
                memory * rng.gen_range(0.1..=0.9),
                0.0,
                0.0,
            );
            VmInfo {
                name: format!("vm{v}"),
                host: String::new(),
                size,
                demand,
                reservation: Resources::ZERO,
                limit: None,
                shares: 1000.0,
                memory_dirty_bytes_per_second: 0.0,
                local_disk_bytes: 0.0,
                last_migrated_seconds: None,
            }
        })
        .collect();
    // Sums per host: demand cpu, demand memory, size cpu, size memory.
    let mut sums = vec![[0.0f64; 4]; n_hosts];
    let fits = |s: &[f64; 4], vm: &VmInfo, max_load: f64| {
        s[0] + vm.demand.cpu_cores <= max_load * capacity.cpu_cores
            && s[1] + vm.demand.memory_bytes <= max_load * capacity.memory_bytes
            && s[2] + vm.size.cpu_cores <= 4.0 * capacity.cpu_cores
            && s[3] + vm.size.memory_bytes <= capacity.memory_bytes
    };
    let add = |s: &mut [f64; 4], vm: &VmInfo| {
        s[0] += vm.demand.cpu_cores;
        s[1] += vm.demand.memory_bytes;
        s[2] += vm.size.cpu_cores;
        s[3] += vm.size.memory_bytes;
    };
    let mut host_of: Vec<Option<usize>> = vec![None; n_vms];
    // Hot hosts: the most CPU-dense VMs (demand per GiB configured) first.
    let mut dense: Vec<usize> = (0..n_vms).collect();
    dense.sort_by(|&a, &b| {
        let r = |v: usize| vms[v].demand.cpu_cores / vms[v].size.memory_bytes;
        r(b).total_cmp(&r(a))
    });
    for (h, s) in sums.iter_mut().enumerate().take(hot.min(n_hosts)) {
        let goal = rng.gen_range(0.95..=1.10) * capacity.cpu_cores;
        for &v in &dense {
            if s[0] >= goal {
                break;
            }
            if host_of[v].is_none() && fits(s, &vms[v], 1.10) {
                add(s, &vms[v]);
                host_of[v] = Some(h);
            }
        }
    }
    // The rest at random, at most `cool_max` loaded; a VM that fits nowhere is dropped.
    let cool: Vec<usize> = (hot.min(n_hosts)..n_hosts).collect();
    for v in 0..n_vms {
        if host_of[v].is_some() {
            continue;
        }
        let mut order = cool.clone();
        order.shuffle(&mut rng);
        if let Some(&h) = order.iter().find(|&&h| fits(&sums[h], &vms[v], cool_max)) {
            add(&mut sums[h], &vms[v]);
            host_of[v] = Some(h);
        }
    }
    let mut kept = Vec::with_capacity(n_vms);
    for (mut vm, h) in vms.drain(..).zip(host_of) {
        if let Some(h) = h {
            vm.host = format!("h{h}");
            kept.push(vm);
        }
    }
    Cluster::new(ClusterSnapshot {
        time_seconds: 0.0,
        hosts,
        vms: kept,
    })
    .expect("generated clusters are valid")
}

/// The highest CPU or memory load once `plan` is applied.
fn max_load_after(cluster: &Cluster, plan: &Plan) -> f64 {
    let mut loads = HostLoads::new(cluster);
    for m in &plan.moves {
        loads.apply_move(m.vm, cluster.vms[m.vm.index()].size, m.to);
    }
    (0..loads.hosts())
        .flat_map(|h| {
            let l = loads.load(HostId(h as u32));
            [l.cpu_cores, l.memory_bytes]
        })
        .fold(0.0, f64::max)
}

/// The greedy planner's plan to `target`.
///
/// ENABLE-GREEDY: the one call into the planner; everything else in this
/// file only needs the exact mode.
fn greedy_plan(input: &BalanceInput<'_>, target: f64) -> Option<Plan> {
    Some(
        keel_policy::balance::planner::plan_to_target(input, target)
            .expect("the greedy planner accepts a valid input"),
    )
}

/// Solves `input` exactly; the result and the wall time (measured here, in
/// the test: the policy crate reads no clock).
fn timed_solve(
    input: &BalanceInput<'_>,
    target: f64,
    objective: Objective,
) -> (Result<ExactOutcome, ExactError>, f64) {
    let config = ExactConfig {
        target_max_load: target,
        objective,
        time_limit_seconds: match objective {
            Objective::Migrations => TIME_LIMIT_SECONDS,
            Objective::MigratedBytes => BYTES_TIME_LIMIT_SECONDS,
        },
    };
    let start = Instant::now();
    let result = solve_exact(input, &config);
    (result, start.elapsed().as_secs_f64())
}

/// Solves one instance exactly for the smallest feasible target (fewest
/// migrations; with `bytes`, also fewest bytes as a cross-check) and
/// compares the greedy plan to it. Returns false when no target was proved
/// feasible.
fn compare(seed: u64, shape: Shape, bytes: bool) -> bool {
    let cluster = generate(seed, shape);
    let rules = CompiledRules::none(&cluster);
    let input = BalanceInput {
        cluster: &cluster,
        rules: &rules,
        in_flight: &[],
    };
    let name = format!(
        "seed {seed:>5} {:>2} hosts {:>3} VMs {} hot",
        shape.hosts,
        cluster.vms.len(),
        shape.hot
    );
    let mut found = None;
    for target in TARGETS {
        match timed_solve(&input, target, Objective::Migrations) {
            (Ok(outcome), seconds) => {
                found = Some((target, outcome, seconds));
                break;
            }
            (Err(e @ (ExactError::Infeasible { .. } | ExactError::TimeLimit { .. })), s) => {
                eprintln!("{name} target {target:.2}: {e} ({s:.2} s)");
            }
            (Err(e), _) => panic!("{name}: exact mode failed: {e}"),
        }
    }
    let Some((target, exact, exact_seconds)) = found else {
        eprintln!("{name}: no target proved feasible, instance skipped");
        return false;
    };
    assert!(
        exact_seconds <= TIME_LIMIT_SECONDS + 5.0,
        "{name}: exact took {exact_seconds:.1} s"
    );
    assert!(max_load_after(&cluster, &exact.plan) <= target + 1e-6);

    let status = |optimal: bool| if optimal { "optimal" } else { "time limit" };
    let mut line = format!(
        "{name} target {target:.2}: exact {} moves ({}, {exact_seconds:.3} s)",
        exact.migrations,
        status(exact.optimal),
    );
    if bytes {
        let (by_bytes, seconds) = timed_solve(&input, target, Objective::MigratedBytes);
        let by_bytes = by_bytes.unwrap_or_else(|e| panic!("{name}: bytes objective failed: {e}"));
        assert!(
            seconds <= BYTES_TIME_LIMIT_SECONDS + 5.0,
            "{name}: bytes took {seconds:.1} s"
        );
        if by_bytes.optimal {
            // The bytes objective carries 1e-6 GiB per migration as a tie-break.
            let slack = 1e-6 * GIB * cluster.vms.len() as f64;
            assert!(
                by_bytes.migrated_bytes <= exact.migrated_bytes + slack,
                "{name}"
            );
        }
        if exact.optimal {
            assert!(by_bytes.migrations >= exact.migrations, "{name}");
        }
        line += &format!(
            ", fewest bytes {} moves {:.0} GiB ({}, {seconds:.3} s)",
            by_bytes.migrations,
            by_bytes.migrated_bytes / GIB,
            status(by_bytes.optimal),
        );
    }
    let start = Instant::now();
    let Some(greedy) = greedy_plan(&input, target) else {
        eprintln!("{line}; greedy not enabled");
        return true;
    };
    let greedy_seconds = start.elapsed().as_secs_f64();
    let greedy_max = max_load_after(&cluster, &greedy);
    eprintln!(
        "{line}; greedy {} moves ({greedy_seconds:.3} s), max load {greedy_max:.4}",
        greedy.moves.len()
    );
    assert!(
        greedy_max <= target + 1e-9,
        "{name}: greedy leaves a host at {greedy_max} > target {target}"
    );
    if exact.optimal {
        assert!(
            greedy.moves.len() as f64 <= 1.1 * exact.migrations as f64 + 1e-9,
            "{name}: greedy {} moves > 1.1 x exact {}",
            greedy.moves.len(),
            exact.migrations
        );
    }
    true
}

/// Every size with `seeds`: one or two hot hosts (alternating), the others
/// at most 75 % loaded.
fn run(sizes: &[(usize, usize)], seeds: std::ops::Range<u64>, bytes: bool) {
    let mut solved = 0;
    for &(hosts, vms) in sizes {
        for seed in seeds.clone() {
            let shape = Shape {
                hosts,
                vms,
                hot: 1 + (seed as usize % 2),
                cool_max: 0.75,
            };
            solved += usize::from(compare(seed * 1000 + hosts as u64, shape, bytes));
        }
    }
    assert!(solved > 0, "no instance had a feasible target");
}

#[test]
fn exact_vs_greedy_up_to_100_vms() {
    run(
        &[(5, 20), (5, 40), (8, 60), (10, 80), (10, 100)],
        0..4,
        true,
    );
}

#[test]
fn exact_vs_greedy_150_to_200_vms() {
    run(&[(15, 150), (20, 200)], 0..4, false);
}

/// The migrated-bytes objective at 150-200 VMs: microlp often stops at its
/// (2 s) limit with an unproved incumbent; about 10 s in all.
#[test]
#[ignore = "slow: several 2 s solver time limits"]
fn exact_bytes_150_to_200_vms() {
    run(&[(15, 150), (20, 200)], 0..4, true);
}

/// Harder: 3-6 hot hosts and the others up to 78 %, at 20 hosts / 200 VMs.
#[test]
fn exact_vs_greedy_tight_clusters() {
    let mut solved = 0;
    for seed in 0..8u64 {
        let shape = Shape {
            hosts: 20,
            vms: 200,
            hot: 3 + (seed as usize % 4),
            cool_max: 0.78,
        };
        solved += usize::from(compare(50_000 + seed, shape, false));
    }
    assert!(solved > 0, "no instance had a feasible target");
}
