//! How a workload trace becomes a cluster for the balancing simulation:
//! VM sizes, per-sample demand, host capacity and initial placement. Every
//! choice is deterministic and documented here, because every balancer is
//! compared on exactly this setup.

use keel_model::{HostInfo, Resources, VmInfo, WorkloadTrace};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Sizing of the simulated cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterSetup {
    /// Number of identical hosts.
    pub hosts: usize,
    /// vCPUs per physical core the hosts are sized for (default 2).
    pub cpu_overcommit: f64,
    /// Fraction of host memory the VMs' configured memory fills (default 0.9).
    pub memory_fill: f64,
}

impl ClusterSetup {
    /// `hosts` hosts sized for 2 vCPUs per core and 90 % memory.
    pub fn new(hosts: usize) -> Self {
        Self {
            hosts,
            cpu_overcommit: 2.0,
            memory_fill: 0.9,
        }
    }
}

/// VM sizes for traces that record only CPU (PlanetLab, Azure V1): vCPUs
/// cycle through 1, 2, 4, 8 by VM index, with 4 GiB per vCPU; memory demand
/// is a steady 60-90 % of it (by index), since the trace says nothing.
fn cpu_only_size(i: usize) -> (f64, f64) {
    let vcpus = [1.0, 2.0, 4.0, 8.0][i % 4];
    (vcpus, vcpus * 4.0 * GIB)
}

fn cpu_only_memory_fraction(i: usize) -> f64 {
    0.6 + 0.3 * ((i * 7919) % 100) as f64 / 100.0
}

/// Per-VM sizes and demand series derived from a trace.
#[derive(Debug, Clone)]
pub struct TraceVms {
    /// Configured size per VM.
    pub sizes: Vec<Resources>,
    /// Whether the trace carries memory, disk and network (Bitbrains).
    pub multi_resource: bool,
}

impl TraceVms {
    /// Sizes every VM of `trace`. Bitbrains: vCPUs and provisioned memory
    /// from the trace (largest value seen); CPU-only traces: see
    /// [`cpu_only_size`].
    pub fn new(trace: &WorkloadTrace) -> Self {
        let multi_resource = trace.vms.iter().all(|v| v.usage.is_some());
        let sizes = trace
            .vms
            .iter()
            .enumerate()
            .map(|(i, vm)| match &vm.usage {
                Some(u) if multi_resource => {
                    let max = |s: &[f64]| s.iter().copied().fold(0.0, f64::max);
                    Resources::new(
                        max(&u.cpu_cores).max(1.0),
                        max(&u.memory_capacity_bytes).max(GIB),
                        0.0,
                        0.0,
                    )
                }
                _ => {
                    let (vcpus, memory) = cpu_only_size(i);
                    Resources::new(vcpus, memory, 0.0, 0.0)
                }
            })
            .collect();
        Self {
            sizes,
            multi_resource,
        }
    }

    /// Demand of VM `i` at sample `t` (cores, bytes, bytes/s).
    pub fn demand(&self, trace: &WorkloadTrace, i: usize, t: usize) -> Resources {
        let vm = &trace.vms[i];
        let t = t.min(vm.cpu_utilization.len().saturating_sub(1));
        let size = self.sizes[i];
        let cpu = vm.cpu_utilization.get(t).copied().unwrap_or(0.0) * size.cpu_cores;
        match (&vm.usage, self.multi_resource) {
            (Some(u), true) => Resources::new(
                cpu,
                u.memory_usage_bytes
                    .get(t)
                    .copied()
                    .unwrap_or(0.0)
                    .min(size.memory_bytes),
                u.disk_read_bytes_per_second.get(t).copied().unwrap_or(0.0)
                    + u.disk_write_bytes_per_second.get(t).copied().unwrap_or(0.0),
                u.network_rx_bytes_per_second.get(t).copied().unwrap_or(0.0)
                    + u.network_tx_bytes_per_second.get(t).copied().unwrap_or(0.0),
            ),
            _ => Resources::new(
                cpu,
                size.memory_bytes * cpu_only_memory_fraction(i),
                0.0,
                0.0,
            ),
        }
    }
}

/// Identical hosts sized so that the VMs' configured sizes fill them at
/// `cpu_overcommit` vCPUs per core and `memory_fill` of memory; disk and
/// network get 1.5 times the mean per-host peak of the summed demand (0,
/// i.e. unlimited, when the trace has none).
pub fn host_capacity(setup: &ClusterSetup, vms: &TraceVms, trace: &WorkloadTrace) -> Resources {
    let hosts = setup.hosts.max(1) as f64;
    let total: Resources = vms.sizes.iter().sum();
    let mut peak = Resources::ZERO;
    if vms.multi_resource {
        for t in 0..trace.samples() {
            let sum: Resources = (0..trace.vms.len()).map(|i| vms.demand(trace, i, t)).sum();
            peak = peak.max(sum);
        }
    }
    Resources::new(
        (total.cpu_cores / hosts / setup.cpu_overcommit)
            .ceil()
            .max(1.0),
        (total.memory_bytes / hosts / setup.memory_fill / GIB).ceil() * GIB,
        (peak.disk_bytes_per_second / hosts * 1.5).ceil(),
        (peak.network_bytes_per_second / hosts * 1.5).ceil(),
    )
}

/// The starting cluster: VMs in trace order, each on the host with the most
/// unreserved memory (worst fit by configured memory), ties to the lowest
/// index. This evens out configured memory but not CPU demand, which is
/// what balancers are for.
pub fn initial_cluster(
    setup: &ClusterSetup,
    vms: &TraceVms,
    capacity: Resources,
) -> (Vec<HostInfo>, Vec<VmInfo>) {
    let hosts: Vec<HostInfo> = (0..setup.hosts)
        .map(|h| HostInfo {
            name: format!("host-{h:04}"),
            capacity,
            maintenance: false,
        })
        .collect();
    let mut free_memory = vec![capacity.memory_bytes; setup.hosts];
    let vm_infos = vms
        .sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let h = (0..setup.hosts)
                .max_by(|&a, &b| free_memory[a].total_cmp(&free_memory[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            free_memory[h] -= size.memory_bytes;
            VmInfo::new(
                format!("vm-{i:05}"),
                hosts[h].name.clone(),
                *size,
                Resources::ZERO,
            )
        })
        .collect();
    (hosts, vm_infos)
}
