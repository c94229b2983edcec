//! Synthetic clusters for balancing benchmarks and demos: identical hosts and
//! VMs whose sizes and demand follow public traces, placed so that the
//! cluster starts unbalanced.
//!
//! Everything is drawn from one [`StdRng`] seeded with the caller's seed, in a
//! fixed order, so a seed always gives the same cluster (for a given version
//! of the `rand` crate). No I/O, no clock.
//!
//! # Distributions and their sources
//!
//! * **Flavours** (vCPUs, memory): the 16 flavours of the Azure Public
//!   Dataset V1 arrival streams, with the number of arrivals of each in
//!   `v1.train.txt` (1 200 998 VMs; see [`FLAVOURS`]). Mean 2.73 vCPUs and
//!   6.70 GiB per VM. Source: Cortez et al., "Resource Central:
//!   Understanding and predicting workloads for improved resource
//!   management in large cloud platforms", SOSP 2017; data CC-BY-4.0.
//!   The mix is by arrivals, not by VMs alive at one instant.
//! * **CPU demand**: a fraction of the VM's vCPUs, drawn from the
//!   distribution of per-VM mean CPU utilisation in Azure V1's 100-VM
//!   average-CPU sample (`microsoft_avg_100.csv.gz`, 8004 five-minute steps
//!   per VM, same source and licence). Measured: min 2.18 %, median 7.39 %,
//!   mean 10.62 %, 90th percentile 20.4 %, max 71.6 %. A lognormal fit
//!   (mu = 2.137, sigma = 0.615 on ln %) fails a Kolmogorov-Smirnov test at
//!   5 % (D = 0.142 > 0.136), so the generator samples the empirical
//!   quantile table [`CPU_MEAN_PERCENT_QUANTILES`] with linear interpolation.
//! * **Memory demand**: uniform between 40 % and 95 % of the configured size.
//! * **Disk and network demand**: small, from the per-VM mean disk
//!   (read + write) and network (received + transmitted) throughput of the
//!   GWA-T-12 Bitbrains "Rnd" trace, VMs 1-250, July 2013 (Shen, van Beek
//!   and Iosup, CCGrid 2015), KB taken as 1000 bytes: disk median 12.2 kB/s,
//!   mean 173 kB/s; network median 4.7 kB/s, mean 186 kB/s. Sampled from the
//!   quantile tables [`DISK_MEAN_BPS_QUANTILES`] and
//!   [`NETWORK_MEAN_BPS_QUANTILES`]. Azure V1 has no I/O data.
//! * **Migration inputs**: 10 % of VMs dirty memory at a rate log-uniform
//!   in 1-100 MB/s; independently, 10 % have a local disk of 20-100 GiB
//!   (uniform) that must be copied along. The others have neither.
//!
//! # Hosts
//!
//! All hosts are identical ([`host_capacity`]): 32 cores, 256 GiB, 2 GB/s of
//! disk I/O and 25 Gbit/s (3.125 GB/s) of network, a common two-socket KVM
//! host (8 GiB per core). At the issue's 30 VMs per host (1000 hosts,
//! 30 000 VMs) the Azure mix configures about 201 GiB per host, 79 % of its
//! memory, and 2.6 vCPUs per core, within the default 4:1 CPU overcommit:
//! a well-used cluster that still fits. The fill targets below (mean
//! 72.5 %) then hold most VMs and the rest spill up to full capacity, so
//! every host is used, between half and completely full (seed 1: configured
//! memory 50-100 %, mean 78.7 %, std-dev 16 points; memory load, i.e.
//! demand, 53 % on average). A 512 GiB host would be 39 % full at that
//! ratio and the skewed fill would leave half of the hosts empty.
//!
//! # Initial placement
//!
//! Random first fit that respects capacity but not balance: hosts are taken
//! in a random order, each with its own fill target drawn uniformly from
//! 50 % to 95 % of its memory; each VM goes to the first host (in that order)
//! where its configured memory stays within the host's target and its vCPUs
//! within 4 per core ([`Overcommit::default`]). A VM that fits under no
//! target goes to the first host with room under the full memory capacity
//! and the CPU overcommit; only when no host has room at all does it go to
//! the host with the most free memory, overcommitting it. Hosts therefore
//! start anywhere between half and completely full, and with fewer VMs than the
//! hosts' targets hold, the last hosts in the order stay empty.
//!
//! Names: hosts `host-0001`, `host-0002`, ...; VMs `vm-00001`, `vm-00002`, ...

use keel_model::cluster::DEFAULT_SHARES;
use keel_model::{ClusterSnapshot, HostInfo, Overcommit, Resources, VmInfo};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Bytes in a GiB.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Cores of a generated host.
pub const HOST_CORES: f64 = 32.0;
/// Memory of a generated host, GiB.
pub const HOST_MEMORY_GIB: f64 = 256.0;
/// Disk I/O of a generated host, bytes per second (2 GB/s).
pub const HOST_DISK_BYTES_PER_SECOND: f64 = 2.0e9;
/// Network of a generated host, bytes per second (25 Gbit/s).
pub const HOST_NETWORK_BYTES_PER_SECOND: f64 = 3.125e9;

/// Range of the per-host fill target, fraction of host memory.
pub const FILL_TARGET_RANGE: (f64, f64) = (0.50, 0.95);
/// Range of memory demand, fraction of the VM's configured memory.
pub const MEMORY_DEMAND_RANGE: (f64, f64) = (0.40, 0.95);
/// Fraction of VMs that dirty memory ([`DIRTY_RATE_RANGE`]).
pub const DIRTY_FRACTION: f64 = 0.10;
/// Range of the dirty rate, bytes per second (log-uniform).
pub const DIRTY_RATE_RANGE: (f64, f64) = (1.0e6, 100.0e6);
/// Fraction of VMs with a local disk ([`LOCAL_DISK_GIB_RANGE`]).
pub const LOCAL_DISK_FRACTION: f64 = 0.10;
/// Range of local disk sizes, GiB (uniform).
pub const LOCAL_DISK_GIB_RANGE: (f64, f64) = (20.0, 100.0);

/// A VM flavour and how often it was seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flavour {
    /// Azure V1's letter for it (`flav_map.txt`).
    pub code: char,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Configured memory, GiB.
    pub memory_gib: f64,
    /// Arrivals of this flavour in Azure V1's `v1.train.txt`; the sampling weight.
    pub arrivals: u32,
}

const fn flavour(code: char, vcpus: u32, memory_gib: f64, arrivals: u32) -> Flavour {
    Flavour {
        code,
        vcpus,
        memory_gib,
        arrivals,
    }
}

/// The Azure V1 flavours (`flav_map.txt`) with their arrival counts in
/// `v1.train.txt`, counted over every flavour token of the file. Three
/// flavours make up 82 % of arrivals: 1 vCPU/1.75 GiB (42.6 %),
/// 2/3.5 (27.8 %) and 4/7 (11.3 %).
pub const FLAVOURS: [Flavour; 16] = [
    flavour('a', 1, 0.75, 27_882),
    flavour('b', 1, 1.75, 512_172),
    flavour('c', 1, 2.0, 435),
    flavour('d', 16, 112.0, 121),
    flavour('e', 2, 14.0, 154),
    flavour('f', 2, 16.0, 15),
    flavour('g', 2, 3.5, 334_058),
    flavour('h', 2, 4.0, 175),
    flavour('i', 4, 28.0, 289),
    flavour('j', 4, 32.0, 32),
    flavour('k', 4, 7.0, 135_875),
    flavour('l', 4, 8.0, 48),
    flavour('m', 8, 14.0, 134_230),
    flavour('n', 8, 16.0, 9),
    flavour('o', 8, 56.0, 55_497),
    flavour('p', 8, 64.0, 6),
];

/// Quantiles (probability, per-VM mean CPU %) of Azure V1's 100-VM sample.
pub const CPU_MEAN_PERCENT_QUANTILES: [(f64, f64); 16] = [
    (0.00, 2.178),
    (0.05, 3.713),
    (0.10, 4.465),
    (0.20, 5.504),
    (0.25, 5.974),
    (0.30, 6.341),
    (0.40, 6.844),
    (0.50, 7.389),
    (0.60, 8.152),
    (0.70, 10.112),
    (0.75, 11.190),
    (0.80, 13.700),
    (0.90, 20.377),
    (0.95, 28.276),
    (0.99, 43.728),
    (1.00, 71.644),
];

/// Quantiles (probability, per-VM mean disk read + write, bytes/s) of
/// Bitbrains Rnd VMs 1-250.
pub const DISK_MEAN_BPS_QUANTILES: [(f64, f64); 10] = [
    (0.00, 93.0),
    (0.05, 1_180.0),
    (0.10, 3_527.0),
    (0.25, 5_200.0),
    (0.50, 12_192.0),
    (0.75, 23_444.0),
    (0.90, 87_592.0),
    (0.95, 1_070_492.0),
    (0.99, 4_231_922.0),
    (1.00, 4_507_953.0),
];

/// Quantiles (probability, per-VM mean network received + transmitted,
/// bytes/s) of Bitbrains Rnd VMs 1-250.
pub const NETWORK_MEAN_BPS_QUANTILES: [(f64, f64); 10] = [
    (0.00, 0.0),
    (0.05, 34.0),
    (0.10, 165.0),
    (0.25, 2_511.0),
    (0.50, 4_704.0),
    (0.75, 49_573.0),
    (0.90, 116_498.0),
    (0.95, 457_875.0),
    (0.99, 4_502_663.0),
    (1.00, 11_223_590.0),
];

/// The capacity of every generated host.
pub fn host_capacity() -> Resources {
    Resources::new(
        HOST_CORES,
        HOST_MEMORY_GIB * GIB,
        HOST_DISK_BYTES_PER_SECOND,
        HOST_NETWORK_BYTES_PER_SECOND,
    )
}

/// Host name of index `i` (from 0): `host-0001`, ...
pub fn host_name(i: usize) -> String {
    format!("host-{:04}", i + 1)
}

/// VM name of index `i` (from 0): `vm-00001`, ...
pub fn vm_name(i: usize) -> String {
    format!("vm-{:05}", i + 1)
}

/// The inverse CDF of a quantile table at `u` in 0..=1, linear between points.
pub fn quantile(table: &[(f64, f64)], u: f64) -> f64 {
    let u = u.clamp(0.0, 1.0);
    let i = table.partition_point(|&(p, _)| p < u);
    if i == 0 {
        return table[0].1;
    }
    let ((p0, v0), (p1, v1)) = (table[i - 1], table[i.min(table.len() - 1)]);
    if p1 <= p0 {
        return v1;
    }
    v0 + (v1 - v0) * (u - p0) / (p1 - p0)
}

fn pick_flavour(rng: &mut StdRng) -> &'static Flavour {
    let total: u32 = FLAVOURS.iter().map(|f| f.arrivals).sum();
    let mut ticket = rng.gen_range(0..total);
    for f in &FLAVOURS {
        if ticket < f.arrivals {
            return f;
        }
        ticket -= f.arrivals;
    }
    unreachable!("the ticket is below the total")
}

/// One VM, not yet placed.
fn draw_vm(rng: &mut StdRng, index: usize) -> VmInfo {
    let f = pick_flavour(rng);
    let vcpus = f64::from(f.vcpus);
    let memory = f.memory_gib * GIB;
    let cpu_percent = quantile(&CPU_MEAN_PERCENT_QUANTILES, rng.gen::<f64>());
    let memory_fraction = rng.gen_range(MEMORY_DEMAND_RANGE.0..=MEMORY_DEMAND_RANGE.1);
    let disk = quantile(&DISK_MEAN_BPS_QUANTILES, rng.gen::<f64>());
    let network = quantile(&NETWORK_MEAN_BPS_QUANTILES, rng.gen::<f64>());
    let dirty = if rng.gen_bool(DIRTY_FRACTION) {
        let (lo, hi) = (DIRTY_RATE_RANGE.0.ln(), DIRTY_RATE_RANGE.1.ln());
        rng.gen_range(lo..=hi).exp()
    } else {
        0.0
    };
    let local_disk = if rng.gen_bool(LOCAL_DISK_FRACTION) {
        rng.gen_range(LOCAL_DISK_GIB_RANGE.0..=LOCAL_DISK_GIB_RANGE.1) * GIB
    } else {
        0.0
    };
    VmInfo {
        name: vm_name(index),
        host: String::new(),
        size: Resources::new(vcpus, memory, 0.0, 0.0),
        demand: Resources::new(
            vcpus * cpu_percent / 100.0,
            memory * memory_fraction,
            disk,
            network,
        ),
        reservation: Resources::ZERO,
        limit: None,
        shares: DEFAULT_SHARES,
        memory_dirty_bytes_per_second: dirty,
        local_disk_bytes: local_disk,
        last_migrated_seconds: None,
    }
}

/// Configured vCPUs and memory already placed on one host.
#[derive(Debug, Clone, Copy, Default)]
struct Used {
    vcpus: f64,
    memory: f64,
}

/// First fit over `order` from `*start`: the first host where `vm` keeps
/// memory within `memory_limit(host)` and vCPUs within `vcpu_limit`.
/// Advances `*start` past hosts that cannot take even the smallest flavour.
fn first_fit(
    order: &[usize],
    start: &mut usize,
    used: &[Used],
    vm: &VmInfo,
    memory_limit: impl Fn(usize) -> f64,
    vcpu_limit: f64,
) -> Option<usize> {
    let smallest = FLAVOURS
        .iter()
        .map(|f| f.memory_gib * GIB)
        .fold(f64::INFINITY, f64::min);
    let fits = |h: usize, vcpus: f64, memory: f64| {
        used[h].vcpus + vcpus <= vcpu_limit && used[h].memory + memory <= memory_limit(h)
    };
    while *start < order.len() && !fits(order[*start], 1.0, smallest) {
        *start += 1;
    }
    order[*start..]
        .iter()
        .copied()
        .find(|&h| fits(h, vm.size.cpu_cores, vm.size.memory_bytes))
}

/// A synthetic cluster of `hosts` identical hosts and `vms` VMs, deterministic
/// for `seed`. See the module documentation for every distribution and the
/// placement.
///
/// # Panics
///
/// If `hosts` is 0 while `vms` is not (the VMs could run nowhere).
pub fn synthetic_cluster(hosts: usize, vms: usize, seed: u64) -> ClusterSnapshot {
    assert!(
        hosts > 0 || vms == 0,
        "a synthetic cluster with VMs needs at least one host"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut vm_list: Vec<VmInfo> = (0..vms).map(|i| draw_vm(&mut rng, i)).collect();

    let capacity = host_capacity();
    let mut order: Vec<usize> = (0..hosts).collect();
    order.shuffle(&mut rng);
    let targets: Vec<f64> = (0..hosts)
        .map(|_| rng.gen_range(FILL_TARGET_RANGE.0..=FILL_TARGET_RANGE.1))
        .collect();
    let vcpu_limit = capacity.cpu_cores * Overcommit::default().cpu;
    let memory_capacity = capacity.memory_bytes * Overcommit::default().memory;

    let mut used = vec![Used::default(); hosts];
    let (mut start_target, mut start_full) = (0, 0);
    for vm in &mut vm_list {
        let host = first_fit(
            &order,
            &mut start_target,
            &used,
            vm,
            |h| targets[h] * memory_capacity,
            vcpu_limit,
        )
        .or_else(|| {
            first_fit(
                &order,
                &mut start_full,
                &used,
                vm,
                |_| memory_capacity,
                vcpu_limit,
            )
        })
        .unwrap_or_else(|| {
            // No room anywhere: the host with the most free memory (the
            // lowest index among equals), overcommitted.
            (0..hosts)
                .min_by(|&a, &b| used[a].memory.total_cmp(&used[b].memory))
                .expect("there is a host")
        });
        used[host].vcpus += vm.size.cpu_cores;
        used[host].memory += vm.size.memory_bytes;
        vm.host = host_name(host);
    }

    ClusterSnapshot {
        time_seconds: 0.0,
        hosts: (0..hosts)
            .map(|i| HostInfo {
                name: host_name(i),
                capacity,
                maintenance: false,
            })
            .collect(),
        vms: vm_list,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_model::Cluster;

    fn per_host_memory(s: &ClusterSnapshot) -> Vec<(f64, f64)> {
        let cluster = Cluster::new(s.clone()).expect("a valid cluster");
        let mut sums = vec![(0.0, 0.0); cluster.hosts.len()];
        for (vm, host) in cluster.vms.iter().zip(&cluster.placement) {
            sums[host.index()].0 += vm.size.memory_bytes;
            sums[host.index()].1 += vm.size.cpu_cores;
        }
        sums
    }

    #[test]
    fn same_seed_same_cluster_and_names() {
        let a = synthetic_cluster(20, 200, 1);
        assert_eq!(a, synthetic_cluster(20, 200, 1));
        assert_ne!(a, synthetic_cluster(20, 200, 2));
        assert_eq!(a.hosts[0].name, "host-0001");
        assert_eq!(a.hosts[19].name, "host-0020");
        assert_eq!(a.vms[0].name, "vm-00001");
        assert_eq!(a.vms[199].name, "vm-00200");
        assert!(Cluster::new(a).is_ok());
    }

    #[test]
    fn issue_ratio_fits_within_capacity_and_overcommit_and_is_skewed() {
        let s = synthetic_cluster(1000, 30_000, 1);
        let cap = host_capacity();
        let sums = per_host_memory(&s);
        let fills: Vec<f64> = sums.iter().map(|&(m, _)| m / cap.memory_bytes).collect();
        for (h, &(memory, vcpus)) in sums.iter().enumerate() {
            assert!(memory <= cap.memory_bytes, "host {h} memory {memory}");
            assert!(vcpus <= 4.0 * cap.cpu_cores, "host {h} vCPUs {vcpus}");
        }
        let n = fills.len() as f64;
        let mean = fills.iter().sum::<f64>() / n;
        let sd = (fills.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((0.70..0.85).contains(&mean), "mean fill {mean}");
        assert!(sd > 0.08, "fill std-dev {sd}: not skewed");
        let max = fills.iter().cloned().fold(0.0, f64::max);
        assert!(max > 0.9, "fullest host {max}");
    }

    #[test]
    fn distributions_match_their_tables() {
        let s = synthetic_cluster(400, 20_000, 7);
        let n = s.vms.len() as f64;
        let share = |vcpus: f64, gib: f64| {
            s.vms
                .iter()
                .filter(|v| v.size.cpu_cores == vcpus && v.size.memory_bytes == gib * GIB)
                .count() as f64
                / n
        };
        assert!((share(1.0, 1.75) - 0.426).abs() < 0.02);
        assert!((share(2.0, 3.5) - 0.278).abs() < 0.02);
        assert!((share(8.0, 14.0) - 0.112).abs() < 0.015);
        let mut cpu: Vec<f64> = s
            .vms
            .iter()
            .map(|v| 100.0 * v.demand.cpu_cores / v.size.cpu_cores)
            .collect();
        cpu.sort_by(f64::total_cmp);
        let median = cpu[cpu.len() / 2];
        assert!((median - 7.389).abs() < 0.3, "median CPU % {median}");
        assert!(cpu[0] >= 2.178 && cpu[cpu.len() - 1] <= 71.644);
        for v in &s.vms {
            let m = v.demand.memory_bytes / v.size.memory_bytes;
            assert!((0.40..=0.95).contains(&m));
            assert!(
                v.memory_dirty_bytes_per_second == 0.0
                    || (1e6..=100e6).contains(&v.memory_dirty_bytes_per_second)
            );
            assert!(
                v.local_disk_bytes == 0.0
                    || (20.0 * GIB..=100.0 * GIB).contains(&v.local_disk_bytes)
            );
        }
        let dirty = s
            .vms
            .iter()
            .filter(|v| v.memory_dirty_bytes_per_second > 0.0);
        let local = s.vms.iter().filter(|v| v.local_disk_bytes > 0.0);
        assert!((dirty.count() as f64 / n - 0.10).abs() < 0.01);
        assert!((local.count() as f64 / n - 0.10).abs() < 0.01);
    }

    #[test]
    fn spills_past_targets_and_overcommits_only_when_full() {
        // 2 hosts cannot hold 200 VMs of 6.7 GiB on average: all placed anyway.
        let s = synthetic_cluster(2, 200, 3);
        assert_eq!(s.vms.len(), 200);
        assert!(Cluster::new(s).is_ok());
        // Few VMs: some hosts stay empty.
        let s = synthetic_cluster(50, 100, 3);
        let sums = per_host_memory(&s);
        assert!(sums.iter().any(|&(m, _)| m == 0.0));
        assert_eq!(synthetic_cluster(0, 0, 1).vms.len(), 0);
    }

    #[test]
    fn quantile_interpolates() {
        let t = [(0.0, 0.0), (0.5, 10.0), (1.0, 30.0)];
        assert_eq!(quantile(&t, 0.0), 0.0);
        assert_eq!(quantile(&t, 0.25), 5.0);
        assert_eq!(quantile(&t, 0.75), 20.0);
        assert_eq!(quantile(&t, 1.0), 30.0);
    }
}
