//! From demand and the allocation policy to each VM's cgroup settings.

use crate::config::{AllocConfig, Bounds, ConfigError, PoolAlloc, VmAlloc, DEFAULT_SHARES};
use keel_model::{Resource, Resources};
use keel_policy::balance::entitlement::{divvy_tree, Claim, EntitlementError, Node};

/// QEMU's own memory beside the guest's RAM (TCG measured ~100 MiB): a
/// memory cap never goes below the guest's memory plus this.
pub const MEMORY_OVERHEAD_BYTES: f64 = 100.0 * 1024.0 * 1024.0;

/// A VM running on the host, as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningVm {
    /// Its name.
    pub name: String,
    /// Estimated demand (cores, bytes, bytes/s).
    pub demand: Resources,
    /// The guest's current memory (balloon size, else configured), bytes.
    pub guest_memory_bytes: f64,
}

/// What to enforce on one VM, version-independent.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Settings {
    /// Shares (> 0): the disk weight (`io.weight`, `blkio.weight`).
    pub shares: f64,
    /// CPU weight relative to the kernel's default (1.0 = `cpu.weight`
    /// 100, `cpu.shares` 1024): the VM's CPU entitlement over the mean
    /// entitlement of the managed VMs (see [`plan`]), so that under full
    /// contention the scheduler divides the CPU as the entitlements do,
    /// reservations included, and idle capacity still flows to whoever
    /// wants it (weights, not caps).
    pub cpu_weight: f64,
    /// CPU cap, cores (the tightest of the VM's and its pools' limits).
    pub cpu_limit_cores: Option<f64>,
    /// Memory reservation, bytes.
    pub memory_reservation_bytes: f64,
    /// Memory entitlement, bytes (the soft cap).
    pub memory_entitlement_bytes: f64,
    /// Memory limit, bytes (the tightest of the VM's and its pools').
    pub memory_limit_bytes: Option<f64>,
    /// The guest's current memory (its balloon's size, or its configured
    /// memory without a balloon), bytes.
    pub guest_memory_bytes: f64,
    /// Disk throughput cap, bytes/s, applied to reads and to writes
    /// separately on each of the VM's disks.
    pub disk_limit_bytes_per_second: Option<f64>,
    /// Disk operations cap, IOPS, reads and writes separately, per disk.
    pub disk_limit_iops: Option<f64>,
}

impl Settings {
    /// The least any memory cap may be: guest memory plus QEMU overhead.
    pub fn memory_floor_bytes(&self) -> f64 {
        self.guest_memory_bytes.max(0.0) + MEMORY_OVERHEAD_BYTES
    }
}

/// One VM's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct VmPlan {
    /// The VM.
    pub name: String,
    /// Its entitlement (cores, bytes, bytes/s; network 0).
    pub entitlement: Resources,
    /// What to write.
    pub settings: Settings,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The policy is invalid for these VMs and this host.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The entitlement function refused (a demand out of range).
    #[error("entitlement: {0}")]
    Entitlement(#[from] EntitlementError),
}

/// The least relative CPU weight written (an idle VM's): a VM that wakes
/// up is not starved for the one interval it takes the agent to see it.
pub const MIN_CPU_WEIGHT: f64 = 0.05;

const PLANNED: [Resource; 3] = [Resource::Cpu, Resource::Memory, Resource::Disk];

/// A leaf in depth-first order with its inherited limits.
struct Leaf<'a> {
    vm: &'a RunningVm,
    shares: f64,
    bounds: [Bounds; 3],
    inherited_limit: [f64; 3],
    iops_limit: Option<f64>,
}

/// Validates `config` against the running `vms` and `capacity`, divides
/// each resource with [`divvy_tree`] and returns one plan per running VM
/// (VMs the policy does not name get default shares, no bounds).
pub fn plan(
    config: &AllocConfig,
    capacity: &Resources,
    vms: &[RunningVm],
) -> Result<Vec<VmPlan>, PlanError> {
    let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
    let cap3 = PLANNED.map(|r| capacity.get(r));
    config.validate(&names, cap3)?;
    let find = |n: &str| vms.iter().find(|v| v.name == n).expect("validated");
    let mut leaves = Vec::new();
    let mut trees: [Vec<Node>; 3] = Default::default();
    for (r, tree) in trees.iter_mut().enumerate() {
        leaves.clear();
        *tree = level(
            &config.vm,
            &config.pool,
            r,
            [f64::INFINITY; 3],
            &find,
            &mut leaves,
        )?;
        for vm in vms.iter().filter(|v| !in_config(config, &v.name)) {
            let claim = Claim::new(vm.demand.get(PLANNED[r]), DEFAULT_SHARES);
            tree.push(Node::Vm(claim));
            leaves.push(Leaf {
                vm,
                shares: DEFAULT_SHARES,
                bounds: Default::default(),
                inherited_limit: [f64::INFINITY; 3],
                iops_limit: None,
            });
        }
    }
    let mut out: Vec<VmPlan> = leaves
        .iter()
        .map(|l| {
            let limit = |r: usize| {
                Some(l.bounds[r].limit_or_inf().min(l.inherited_limit[r])).filter(|x| x.is_finite())
            };
            VmPlan {
                name: l.vm.name.clone(),
                entitlement: Resources::ZERO,
                settings: Settings {
                    shares: l.shares,
                    cpu_weight: 1.0,
                    cpu_limit_cores: limit(0),
                    memory_reservation_bytes: l.bounds[1].reservation,
                    memory_entitlement_bytes: 0.0,
                    memory_limit_bytes: limit(1),
                    guest_memory_bytes: l.vm.guest_memory_bytes,
                    disk_limit_bytes_per_second: limit(2),
                    disk_limit_iops: l.iops_limit.filter(|x| x.is_finite()),
                },
            }
        })
        .collect();
    for (r, tree) in trees.iter().enumerate() {
        let ents = divvy_tree(cap3[r], tree)?;
        for (p, e) in out.iter_mut().zip(ents) {
            *p.entitlement.get_mut(PLANNED[r]) = e;
        }
    }
    let mean_cpu =
        out.iter().map(|p| p.entitlement.cpu_cores).sum::<f64>() / out.len().max(1) as f64;
    for p in &mut out {
        p.settings.memory_entitlement_bytes = p.entitlement.memory_bytes;
        p.settings.cpu_weight = if mean_cpu > 0.0 {
            (p.entitlement.cpu_cores / mean_cpu).max(MIN_CPU_WEIGHT)
        } else {
            1.0
        };
    }
    Ok(out)
}

fn in_config(config: &AllocConfig, name: &str) -> bool {
    fn pool_has(p: &PoolAlloc, name: &str) -> bool {
        p.vm.iter().any(|v| v.name == name) || p.pool.iter().any(|q| pool_has(q, name))
    }
    config.vm.iter().any(|v| v.name == name) || config.pool.iter().any(|p| pool_has(p, name))
}

fn level<'a>(
    vms: &'a [VmAlloc],
    pools: &'a [PoolAlloc],
    r: usize,
    inherited_limit: [f64; 3],
    find: &impl Fn(&str) -> &'a RunningVm,
    leaves: &mut Vec<Leaf<'a>>,
) -> Result<Vec<Node>, ConfigError> {
    let mut nodes = Vec::with_capacity(vms.len() + pools.len());
    for v in vms {
        let vm = find(&v.name);
        let shares = v.effective_shares()?;
        let b = v.bounds()[r];
        nodes.push(Node::Vm(Claim {
            demand: vm.demand.get(PLANNED[r]).max(0.0),
            reservation: b.reservation,
            limit: b.limit_or_inf(),
            shares,
        }));
        leaves.push(Leaf {
            vm,
            shares,
            bounds: v.bounds(),
            inherited_limit,
            iops_limit: v.disk_iops_limit,
        });
    }
    for p in pools {
        let b = p.bounds();
        let limits = [0, 1, 2].map(|i| inherited_limit[i].min(b[i].limit_or_inf()));
        let children = level(&p.vm, &p.pool, r, limits, find, leaves)?;
        nodes.push(Node::Pool {
            reservation: b[r].reservation,
            limit: b[r].limit_or_inf(),
            shares: p.effective_shares()?,
            children,
        });
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests;
