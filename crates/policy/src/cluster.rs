//! The cluster as the consolidation policies see it: hosts, the VMs on them,
//! their CPU requests and recent utilisation, and the host-level operations
//! (create a VM on a host, destroy it) that a what-if placement performs.
//!
//! Operations mirror CloudSim 3.0.3's `Host.vmCreate` / `vmDestroy` so that
//! the simulator reproduces the PlanetLab benchmark; nothing here does I/O.

use crate::cpu_share::{CpuShare, ShareOrder};
use keel_model::{HostSpec, VmSpec};

/// Index of a VM in [`ClusterState::vms`].
pub type VmIndex = usize;
/// Index of a host in [`ClusterState::hosts`].
pub type HostIndex = usize;

/// Number of utilisation samples a VM keeps (newest first).
pub const VM_HISTORY_LENGTH: usize = 30;

/// Hosts utilised above 1 but below this are treated as exactly full (CloudSim's clamp).
const UTILIZATION_CLAMP_LIMIT: f64 = 1.01;

/// One VM's state.
#[derive(Debug, Clone, PartialEq)]
pub struct VmState {
    /// Provisioned size.
    pub spec: VmSpec,
    /// CPU utilisation at the last update, fraction of the VM's MIPS.
    pub utilization: f64,
    /// Requested MIPS at the last update (full MIPS while being created).
    pub requested_mips: f64,
    /// Utilisation samples, newest first, at most [`VM_HISTORY_LENGTH`].
    pub history: Vec<f64>,
    /// The host the VM is registered on (its source while migrating).
    pub host: Option<HostIndex>,
    /// Whether a live migration of this VM is in flight.
    pub in_migration: bool,
    /// Whether the VM is being created (it then requests its full size).
    pub being_instantiated: bool,
}

impl VmState {
    /// A VM not yet placed.
    pub fn new(spec: VmSpec) -> Self {
        Self {
            spec,
            utilization: 0.0,
            requested_mips: 0.0,
            history: Vec::with_capacity(VM_HISTORY_LENGTH + 1),
            host: None,
            in_migration: false,
            being_instantiated: true,
        }
    }

    /// Memory requested now, MB: the full size while being created, then 0
    /// (the PlanetLab workload has no memory model, so only placement at
    /// creation is limited by memory).
    pub fn requested_ram_mb(&self) -> f64 {
        if self.being_instantiated {
            self.spec.ram_mb
        } else {
            0.0
        }
    }

    /// Bandwidth requested now, same rule as memory.
    pub fn requested_bandwidth(&self) -> f64 {
        if self.being_instantiated {
            self.spec.bandwidth
        } else {
            0.0
        }
    }

    /// Prepends a utilisation sample, dropping the oldest beyond the limit.
    pub fn push_history(&mut self, utilization: f64) {
        self.history.insert(0, utilization);
        self.history.truncate(VM_HISTORY_LENGTH);
    }
}

/// One host's state.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    /// Capacity and power model.
    pub spec: HostSpec,
    /// VMs on this host in placement order, including VMs migrating in.
    pub vms: Vec<VmIndex>,
    /// VMs migrating in, in the order their migrations started.
    pub migrating_in: Vec<VmIndex>,
    /// CPU shares.
    pub cpu: CpuShare,
    /// MIPS in use at the last update (migrating-out VMs counted in full).
    pub utilization_mips: f64,
    /// MIPS in use at the update before the last.
    pub previous_utilization_mips: f64,
    /// Memory not reserved by VMs, MB.
    pub ram_available_mb: f64,
    /// Bandwidth not reserved by VMs.
    pub bandwidth_available: f64,
    /// Storage not used by VM images, MB.
    pub storage_available_mb: f64,
    /// Memory and bandwidth each VM reserved here.
    pub reservations: Vec<Reservation>,
}

/// Memory and bandwidth a VM holds on a host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation {
    /// The VM.
    pub vm: VmIndex,
    /// Memory, MB.
    pub ram_mb: f64,
    /// Bandwidth.
    pub bandwidth: f64,
}

impl HostState {
    /// An empty host.
    pub fn new(spec: HostSpec) -> Self {
        Self::with_share_order(spec, ShareOrder::Insertion)
    }

    /// An empty host whose CPU shares are walked in `order`.
    pub fn with_share_order(spec: HostSpec, order: ShareOrder) -> Self {
        Self {
            spec,
            vms: Vec::new(),
            migrating_in: Vec::new(),
            cpu: CpuShare::with_order(spec.total_mips(), spec.core_mips, order),
            utilization_mips: 0.0,
            previous_utilization_mips: 0.0,
            ram_available_mb: spec.ram_mb,
            bandwidth_available: spec.bandwidth,
            storage_available_mb: spec.storage_mb,
            reservations: Vec::new(),
        }
    }

    /// Utilisation at the last update as a fraction of capacity, with values
    /// just above 1 (below 1.01) clamped to 1.
    pub fn utilization(&self) -> f64 {
        clamp_utilization(self.utilization_mips / self.spec.total_mips())
    }

    /// Utilisation at the update before the last, clamped like [`Self::utilization`].
    pub fn previous_utilization(&self) -> f64 {
        clamp_utilization(self.previous_utilization_mips / self.spec.total_mips())
    }

    /// Whether `vm` is migrating in to this host.
    pub fn is_migrating_in(&self, vm: VmIndex) -> bool {
        self.migrating_in.contains(&vm)
    }
}

fn clamp_utilization(u: f64) -> f64 {
    if u > 1.0 && u < UTILIZATION_CLAMP_LIMIT {
        1.0
    } else {
        u
    }
}

/// Hosts and VMs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterState {
    /// Every host, by index.
    pub hosts: Vec<HostState>,
    /// Every VM ever created, by index (removed VMs stay, with no host).
    pub vms: Vec<VmState>,
}

impl ClusterState {
    /// Whether `vm` fits on `host` now: core size, free MIPS, memory, bandwidth.
    pub fn is_suitable(&self, host: HostIndex, vm: VmIndex) -> bool {
        let h = &self.hosts[host];
        let v = &self.vms[vm];
        h.cpu.core_mips() >= v.requested_mips
            && h.cpu.available_mips() >= v.requested_mips
            && h.ram_available_mb >= v.requested_ram_mb()
            && h.bandwidth_available >= v.requested_bandwidth()
    }

    /// Creates `vm` on `host` (appended to its list). Returns false, changing
    /// nothing, if storage, memory or bandwidth do not suffice.
    pub fn vm_create(&mut self, host: HostIndex, vm: VmIndex) -> bool {
        let v = &self.vms[vm];
        let (ram, bw, size, requested, in_migration) = (
            v.requested_ram_mb(),
            v.requested_bandwidth(),
            v.spec.size_mb,
            v.requested_mips,
            v.in_migration,
        );
        let h = &mut self.hosts[host];
        if h.storage_available_mb < size || h.ram_available_mb < ram || h.bandwidth_available < bw {
            return false;
        }
        h.ram_available_mb -= ram;
        h.bandwidth_available -= bw;
        h.reservations.push(Reservation {
            vm,
            ram_mb: ram,
            bandwidth: bw,
        });
        h.cpu.allocate(vm, requested, in_migration);
        h.storage_available_mb -= size;
        h.vms.push(vm);
        true
    }

    /// Removes `vm` from `host`, releasing what it held.
    ///
    pub fn vm_destroy(&mut self, host: HostIndex, vm: VmIndex) {
        let Some(pos) = self.hosts[host].vms.iter().position(|&v| v == vm) else {
            return;
        };
        let spec = self.vms[vm].spec;
        let h = &mut self.hosts[host];
        h.vms.remove(pos);
        h.cpu.deallocate(vm);
        h.storage_available_mb += spec.size_mb;
        self.release_reservations(host, vm);
    }

    fn release_reservations(&mut self, host: HostIndex, vm: VmIndex) {
        let h = &mut self.hosts[host];
        if let Some(pos) = h.reservations.iter().position(|r| r.vm == vm) {
            let r = h.reservations.remove(pos);
            h.ram_available_mb += r.ram_mb;
            h.bandwidth_available += r.bandwidth;
        }
    }

    /// Removes every VM from `host` (migration marks stay).
    pub fn vm_destroy_all(&mut self, host: HostIndex) {
        let vms = std::mem::take(&mut self.hosts[host].vms);
        let h = &mut self.hosts[host];
        h.cpu.deallocate_all();
        for vm in vms {
            h.storage_available_mb += self.vms[vm].spec.size_mb;
        }
        h.ram_available_mb = h.spec.ram_mb;
        h.bandwidth_available = h.spec.bandwidth;
        h.reservations.clear();
    }

    /// MIPS allocated on `host`, counting VMs migrating in at their full
    /// potential (the scheduler reserves 10 % for them).
    pub fn allocated_mips_with_incoming(&self, host: HostIndex) -> f64 {
        let h = &self.hosts[host];
        let mut mips = 0.0;
        for (i, &vm) in h.vms.iter().enumerate() {
            let allocated = h.cpu.allocated_mips_hint(vm, i);
            if h.is_migrating_in(vm) {
                mips += allocated * 0.9 / 0.1;
            }
            mips += allocated;
        }
        mips
    }

    /// Sum of the current requests of the VMs on `host`, in list order, with
    /// `extra` (if any) added last, MIPS.
    pub fn requested_mips(&self, host: HostIndex, extra: Option<VmIndex>) -> f64 {
        let mut total = 0.0;
        for &vm in self.hosts[host].vms.iter().chain(extra.iter()) {
            total += self.vms[vm].requested_mips;
        }
        total
    }

    /// The first `n` values of [`Self::utilization_history`] in `out`
    /// (computed the same way, so bit-identical), and the length the whole
    /// trimmed history would have, capped at `n`. Cheaper when `n` is small:
    /// a sum of non-negative terms is zero only where every term is, so the
    /// trimmed length is the longest VM history up to its last non-zero
    /// value, and once one VM reaches `n` the others need not be searched.
    pub fn utilization_history_prefix(
        &self,
        host: HostIndex,
        extra: Option<VmIndex>,
        n: usize,
        out: &mut Vec<f64>,
    ) -> usize {
        out.clear();
        out.resize(n.min(VM_HISTORY_LENGTH), 0.0);
        let host_mips = self.hosts[host].spec.total_mips();
        let mut length = 1;
        for &vm in self.hosts[host].vms.iter().chain(extra.iter()) {
            let v = &self.vms[vm];
            for (slot, &u) in out.iter_mut().zip(&v.history) {
                *slot += u * v.spec.mips / host_mips;
            }
            if length < n {
                if let Some(last) = v.history.iter().rposition(|&u| u != 0.0) {
                    length = length.max(last + 1);
                }
            }
        }
        length.min(n.max(1))
    }

    /// The host's utilisation history (newest first): the VMs' histories
    /// weighted by VM MIPS over host MIPS, with `extra` added last, trailing
    /// zeros trimmed (an all-zero history keeps one value).
    pub fn utilization_history(&self, host: HostIndex, extra: Option<VmIndex>, out: &mut Vec<f64>) {
        out.clear();
        out.resize(VM_HISTORY_LENGTH, 0.0);
        let host_mips = self.hosts[host].spec.total_mips();
        for &vm in self.hosts[host].vms.iter().chain(extra.iter()) {
            let v = &self.vms[vm];
            for (slot, &u) in out.iter_mut().zip(&v.history) {
                *slot += u * v.spec.mips / host_mips;
            }
        }
        let keep = out.iter().rposition(|&u| u != 0.0).map_or(1, |i| i + 1);
        out.truncate(keep);
    }
}
