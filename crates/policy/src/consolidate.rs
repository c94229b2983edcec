//! Dynamic VM consolidation: one optimisation round of Beloglazov & Buyya
//! (CCPE 2012) as CloudSim 3.0.3 runs it.
//!
//! 1. Find the over-utilised hosts (the detector).
//! 2. Take VMs off each of them (the selector) until it is no longer
//!    over-utilised; place those VMs with PABFD, over-utilised hosts excluded.
//! 3. Repeatedly drain the least-utilised remaining host: place all its VMs
//!    elsewhere, or none of them.
//! 4. Undo every tentative change and return the migrations.
//!
//! The round works on the caller's [`ClusterState`] and restores the
//! allocation before returning, as CloudSim does; what a faithful port must
//! leave behind (the migration marks of what-if allocations) stays.

use crate::cluster::{ClusterState, HostIndex, VmIndex};
use crate::detect::{DetectorScratch, OverloadDetector};
use crate::placement::{first_fit, power_aware_best_fit, HostCandidates, HostSet};
use crate::select::{SelectorState, VmSelector};
use crate::PolicyError;
use serde::Serialize;

/// A decided live migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Migration {
    /// The VM to move.
    pub vm: VmIndex,
    /// Where to.
    pub target: HostIndex,
}

/// How VMs are placed and whether they are ever moved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub enum ConsolidationPolicy {
    /// No power awareness: first-fit placement, hosts always at full power, no migrations.
    NonPowerAware,
    /// DVFS only: first-fit placement, power follows utilisation, no migrations.
    Dvfs,
    /// Dynamic consolidation by live migration.
    Dynamic {
        /// Overload detector.
        detector: OverloadDetector,
        /// VM selection policy.
        selector: VmSelector,
    },
}

/// Runs consolidation rounds and initial placement under one policy.
#[derive(Debug, Clone)]
pub struct Consolidator {
    policy: ConsolidationPolicy,
    selector_state: SelectorState,
    scratch: DetectorScratch,
    /// Hosts worth scanning for new VMs (reset by each round).
    new_vm_candidates: Option<HostCandidates>,
}

impl Consolidator {
    /// A consolidator for `policy`; `seed` drives random VM selection.
    pub fn new(policy: ConsolidationPolicy, seed: u64) -> Self {
        Self {
            policy,
            selector_state: SelectorState::new(seed),
            scratch: DetectorScratch::default(),
            new_vm_candidates: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> ConsolidationPolicy {
        self.policy
    }

    /// Whether this policy ever migrates.
    pub fn migrates(&self) -> bool {
        matches!(self.policy, ConsolidationPolicy::Dynamic { .. })
    }

    /// The host for a new VM (first fit, or PABFD with nothing excluded).
    pub fn place_new(&mut self, cluster: &mut ClusterState, vm: VmIndex) -> Option<HostIndex> {
        match self.policy {
            ConsolidationPolicy::NonPowerAware | ConsolidationPolicy::Dvfs => {
                first_fit(cluster, vm)
            }
            ConsolidationPolicy::Dynamic { detector, .. } => {
                let none = HostSet::new(cluster.hosts.len());
                let candidates = self
                    .new_vm_candidates
                    .get_or_insert_with(|| HostCandidates::new(cluster));
                let hosts = candidates.select(cluster, &none, false).to_vec();
                let target =
                    power_aware_best_fit(cluster, vm, &hosts, &none, &detector, &mut self.scratch);
                // The caller creates the VM there: the host is no longer idle.
                if let (Some(host), Some(candidates)) = (target, self.new_vm_candidates.as_mut()) {
                    candidates.note_used(host);
                }
                target
            }
        }
    }

    /// One optimisation round: the migrations to start now.
    pub fn optimise(&mut self, cluster: &mut ClusterState) -> Result<Vec<Migration>, PolicyError> {
        let ConsolidationPolicy::Dynamic { detector, selector } = self.policy else {
            return Ok(Vec::new());
        };
        self.new_vm_candidates = None;
        let hosts = cluster.hosts.len();
        let overloaded: Vec<HostIndex> = (0..hosts)
            .filter(|&h| detector.is_overloaded(cluster, h, None, &mut self.scratch))
            .collect();
        let saved = save_allocation(cluster);

        let mut to_migrate = Vec::new();
        for &host in &overloaded {
            while let Some(vm) = selector.select(cluster, host, &mut self.selector_state) {
                to_migrate.push(vm);
                cluster.vm_destroy(host, vm);
                if !detector.is_overloaded(cluster, host, None, &mut self.scratch) {
                    break;
                }
            }
        }
        let mut excluded = HostSet::new(hosts);
        for &host in &overloaded {
            excluded.insert(host);
        }
        let mut migrations = Vec::new();
        let mut candidates = HostCandidates::new(cluster);
        self.place_each(
            cluster,
            to_migrate,
            &excluded,
            &detector,
            &mut candidates,
            &mut migrations,
        );
        self.drain_underloaded(
            cluster,
            &overloaded,
            &detector,
            &mut candidates,
            &mut migrations,
        );

        restore_allocation(cluster, &saved)?;
        Ok(migrations)
    }

    /// PABFD over `vms` sorted by CPU use, descending; VMs that fit nowhere stay put.
    fn place_each(
        &mut self,
        cluster: &mut ClusterState,
        mut vms: Vec<VmIndex>,
        excluded: &HostSet,
        detector: &OverloadDetector,
        candidates: &mut HostCandidates,
        out: &mut Vec<Migration>,
    ) {
        sort_by_cpu_use(cluster, &mut vms);
        for vm in vms {
            let hosts = candidates.select(cluster, excluded, false);
            if let Some(target) =
                power_aware_best_fit(cluster, vm, hosts, excluded, detector, &mut self.scratch)
            {
                cluster.vm_create(target, vm);
                candidates.note_used(target);
                out.push(Migration { vm, target });
            }
        }
    }

    /// PABFD over `vms`, all or nothing: on the first VM that fits nowhere,
    /// every tentative placement of this batch is undone. Every idle host
    /// must be in `excluded` (the caller excludes sleeping hosts).
    fn place_all(
        &mut self,
        cluster: &mut ClusterState,
        mut vms: Vec<VmIndex>,
        excluded: &HostSet,
        detector: &OverloadDetector,
        candidates: &mut HostCandidates,
    ) -> Vec<Migration> {
        sort_by_cpu_use(cluster, &mut vms);
        let mut placed = Vec::with_capacity(vms.len());
        for vm in vms {
            let hosts = candidates.select(cluster, excluded, true);
            match power_aware_best_fit(cluster, vm, hosts, excluded, detector, &mut self.scratch) {
                Some(target) => {
                    cluster.vm_create(target, vm);
                    candidates.note_used(target);
                    placed.push(Migration { vm, target });
                }
                None => {
                    for m in &placed {
                        cluster.vm_destroy(m.target, m.vm);
                    }
                    return Vec::new();
                }
            }
        }
        placed
    }

    fn drain_underloaded(
        &mut self,
        cluster: &mut ClusterState,
        overloaded: &[HostIndex],
        detector: &OverloadDetector,
        candidates: &mut HostCandidates,
        out: &mut Vec<Migration>,
    ) {
        let hosts = cluster.hosts.len();
        let mut not_drainable = HostSet::new(hosts);
        let mut not_target = HostSet::new(hosts);
        for &host in overloaded {
            not_drainable.insert(host);
            not_target.insert(host);
        }
        for host in 0..hosts {
            if cluster.hosts[host].utilization() == 0.0 {
                not_drainable.insert(host);
                not_target.insert(host);
            }
        }
        while not_drainable.len() < hosts {
            let Some(host) = least_utilized(cluster, &not_drainable) else {
                break;
            };
            not_drainable.insert(host);
            not_target.insert(host);
            let vms: Vec<VmIndex> = cluster.hosts[host]
                .vms
                .iter()
                .copied()
                .filter(|&vm| !cluster.vms[vm].in_migration)
                .collect();
            if vms.is_empty() {
                continue;
            }
            let placed = self.place_all(cluster, vms, &not_target, detector, candidates);
            for m in &placed {
                not_drainable.insert(m.target);
            }
            out.extend(placed);
        }
    }
}

/// Stable sort by current CPU use (utilisation x MIPS), largest first.
fn sort_by_cpu_use(cluster: &ClusterState, vms: &mut [VmIndex]) {
    vms.sort_by(|&a, &b| {
        let use_a = cluster.vms[a].utilization * cluster.vms[a].spec.mips;
        let use_b = cluster.vms[b].utilization * cluster.vms[b].spec.mips;
        use_b.total_cmp(&use_a)
    });
}

/// The least-utilised host with 0 < u < 1 (by recorded utilisation) that is
/// not excluded and has a VM that is neither migrating out nor preceded by
/// one migrating in.
fn least_utilized(cluster: &ClusterState, excluded: &HostSet) -> Option<HostIndex> {
    let mut min_utilization = 1.0;
    let mut best = None;
    for host in 0..cluster.hosts.len() {
        if excluded.contains(host) {
            continue;
        }
        let u = cluster.hosts[host].utilization();
        if u > 0.0 && u < min_utilization && !all_migrating_out_or_any_migrating_in(cluster, host) {
            min_utilization = u;
            best = Some(host);
        }
    }
    best
}

fn all_migrating_out_or_any_migrating_in(cluster: &ClusterState, host: HostIndex) -> bool {
    let h = &cluster.hosts[host];
    for &vm in &h.vms {
        if !cluster.vms[vm].in_migration {
            return false;
        }
        if h.is_migrating_in(vm) {
            return true;
        }
    }
    true
}

/// Every (host, VM) pair except VMs migrating in, in host and list order.
fn save_allocation(cluster: &ClusterState) -> Vec<(HostIndex, VmIndex)> {
    let mut saved = Vec::with_capacity(cluster.vms.len());
    for (host, h) in cluster.hosts.iter().enumerate() {
        for &vm in &h.vms {
            if !h.is_migrating_in(vm) {
                saved.push((host, vm));
            }
        }
    }
    saved
}

/// Rebuilds every host from the saved pairs, VMs migrating in first.
fn restore_allocation(
    cluster: &mut ClusterState,
    saved: &[(HostIndex, VmIndex)],
) -> Result<(), PolicyError> {
    for host in 0..cluster.hosts.len() {
        cluster.vm_destroy_all(host);
        let incoming = cluster.hosts[host].migrating_in.clone();
        for vm in incoming {
            let v = &cluster.vms[vm];
            let (requested, in_migration, size) =
                (v.requested_mips, v.in_migration, v.spec.size_mb);
            let h = &mut cluster.hosts[host];
            if !h.vms.contains(&vm) {
                h.vms.push(vm);
            }
            h.cpu.mark_migrating_in(vm);
            h.cpu.allocate(vm, requested, in_migration);
            h.storage_available_mb -= size;
        }
    }
    for &(host, vm) in saved {
        if !cluster.vm_create(host, vm) {
            return Err(PolicyError::RestoreFailed { vm, host });
        }
    }
    Ok(())
}
