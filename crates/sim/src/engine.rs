//! The event loop: virtual time, trace replay, host updates, energy,
//! migrations in flight.
//!
//! Event order and host bookkeeping follow CloudSim 3.0.3's `PowerDatacenter`
//! and `HostDynamicWorkload` (see docs/simulator.md): a step every scheduling
//! interval updates every host, accounts energy, removes finished VMs, then
//! runs one consolidation round and starts its migrations; migrations that
//! complete at the same instant form one group, with every host updated
//! before the first and after the last.

use crate::metrics::MetricsCollector;
use crate::scenario::{host_spec, vm_spec, START_SECONDS};
use crate::{SimConfig, SimError, StepObserver, StepRecord};
use keel_model::WorkloadTrace;
use keel_policy::cluster::{ClusterState, HostIndex, HostState, VmIndex, VmState};
use keel_policy::{ConsolidationPolicy, Consolidator, Migration};

/// Joules in a kilowatt-hour.
const JOULES_PER_KWH: f64 = 3_600_000.0;

/// A migration in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    completes_at: f64,
    migration: Migration,
}

/// Outcome of a run before wall-clock measurement.
#[derive(Debug, Clone)]
pub(crate) struct RunOutcome {
    pub vms_created: usize,
    pub energy_joules: f64,
    pub migrations: u64,
    pub metrics: MetricsCollector,
}

pub(crate) struct Engine<'t, 'o> {
    trace: &'t WorkloadTrace,
    /// Per VM: the trace samples plus the last one repeated (CloudSim pads so
    /// that interpolation at the very end has a right-hand sample).
    cluster: ClusterState,
    consolidator: Consolidator,
    power_aware: bool,
    alive: Vec<bool>,
    /// Per host: whether its latest recorded state is inactive.
    recorded_asleep: Vec<bool>,
    metrics: MetricsCollector,
    last_process_time: f64,
    energy_joules: f64,
    migrations: u64,
    in_flight: Vec<InFlight>,
    /// The time every host was last brought up to date by [`Self::update_all`],
    /// if nothing but migration completions and VM removals (tracked in
    /// `changed_since_update`) has touched a host since.
    hosts_fresh_at: Option<f64>,
    /// Per host: changed since the last [`Self::update_all`].
    changed_since_update: Vec<bool>,
    observer: &'o mut dyn StepObserver,
}

impl<'t, 'o> Engine<'t, 'o> {
    pub fn new(
        trace: &'t WorkloadTrace,
        config: &SimConfig,
        observer: &'o mut dyn StepObserver,
    ) -> Self {
        let SimConfig {
            hosts,
            policy,
            seed,
            share_order,
        } = *config;
        let vm_count = trace.vms.len();
        let cluster = ClusterState {
            hosts: (0..hosts)
                .map(|i| HostState::with_share_order(host_spec(i), share_order))
                .collect(),
            vms: (0..vm_count)
                .map(|i| VmState::new(vm_spec(i, vm_count)))
                .collect(),
        };
        Self {
            trace,
            cluster,
            consolidator: Consolidator::new(policy, seed),
            power_aware: policy != ConsolidationPolicy::NonPowerAware,
            alive: vec![false; vm_count],
            recorded_asleep: vec![false; hosts],
            metrics: MetricsCollector::new(hosts, vm_count),
            last_process_time: 0.0,
            energy_joules: 0.0,
            migrations: 0,
            in_flight: Vec::new(),
            hosts_fresh_at: None,
            changed_since_update: vec![false; hosts],
            observer,
        }
    }

    pub fn run(mut self) -> Result<RunOutcome, SimError> {
        let vms_created = self.create_vms();
        let interval = self.trace.interval_seconds;
        let limit = self.trace.duration_seconds();
        let mut step = 0usize;
        let mut now = START_SECONDS;
        loop {
            now += interval;
            // Events past the limit never fire.
            self.complete_migrations(|at| at < now && at <= limit)?;
            if now > limit {
                break;
            }
            step += 1;
            self.step(now, step)?;
        }
        Ok(RunOutcome {
            vms_created,
            energy_joules: self.energy_joules,
            migrations: self.migrations,
            metrics: self.metrics,
        })
    }

    /// Places every VM in trace order, each asking for its full size.
    fn create_vms(&mut self) -> usize {
        let mut created = 0;
        for vm in 0..self.cluster.vms.len() {
            let v = &mut self.cluster.vms[vm];
            v.being_instantiated = true;
            v.requested_mips = v.spec.mips * v.spec.cores as f64;
            let placed = self
                .consolidator
                .place_new(&mut self.cluster, vm)
                .filter(|&host| self.cluster.vm_create(host, vm));
            let v = &mut self.cluster.vms[vm];
            v.being_instantiated = false;
            // Until the first update the VM runs nothing, so it requests nothing.
            v.requested_mips = 0.0;
            if let Some(host) = placed {
                v.host = Some(host);
                self.alive[vm] = true;
                created += 1;
            }
        }
        created
    }

    fn step(&mut self, now: f64, step: usize) -> Result<(), SimError> {
        if now > self.last_process_time {
            self.update_all(now)?;
        }
        let started = if self.consolidator.migrates() {
            // The round and the migrations it starts touch any host.
            self.hosts_fresh_at = None;
            let migrations = self.consolidator.optimise(&mut self.cluster)?;
            for m in &migrations {
                self.start_migration(*m, now)?;
            }
            // Completion events fire in time order, ties in start order.
            self.in_flight
                .sort_by(|a, b| a.completes_at.total_cmp(&b.completes_at));
            migrations.len()
        } else {
            0
        };
        self.last_process_time = now;
        let record = self.step_record(now, step, started);
        self.observer.on_step(&record);
        Ok(())
    }

    fn step_record(&self, now: f64, step: usize, started: usize) -> StepRecord {
        let hosts = &self.cluster.hosts;
        StepRecord {
            step,
            time_seconds: now,
            energy_kwh: self.energy_joules / JOULES_PER_KWH,
            migrations_total: self.migrations,
            migrations_started: started,
            active_hosts: hosts.iter().filter(|h| h.utilization_mips > 0.0).count(),
            vms_alive: self.alive.iter().filter(|&&a| a).count(),
            requested_mips: (0..self.cluster.vms.len())
                .filter(|&vm| self.alive[vm])
                .map(|vm| self.cluster.vms[vm].requested_mips)
                .sum(),
            host_utilization_mips: hosts.iter().map(|h| h.utilization_mips).sum(),
        }
    }

    /// Updates every host at `now`: VM demand from the trace, CPU shares,
    /// histories, energy since the last update, removal of finished VMs.
    fn update_all(&mut self, now: f64) -> Result<(), SimError> {
        let dt = now - self.last_process_time;
        let interval = self.trace.interval_seconds;
        let record_history = (now - START_SECONDS) % interval == 0.0;
        if self.hosts_fresh_at == Some(now) && dt == 0.0 && !record_history {
            self.update_changed_hosts(now);
            return Ok(());
        }
        self.changed_since_update.fill(false);
        for vm in 0..self.cluster.vms.len() {
            if !self.alive[vm] {
                continue;
            }
            let u = utilization_at(&self.trace.vms[vm].cpu_utilization, interval, now);
            let v = &mut self.cluster.vms[vm];
            v.utilization = u;
            v.requested_mips = u * v.spec.mips * v.spec.cores as f64;
            if record_history {
                v.push_history(u);
            }
        }
        for host in 0..self.cluster.hosts.len() {
            let h = &self.cluster.hosts[host];
            // An empty host that was, is recorded as, and stays asleep adds
            // nothing: another inactive entry changes no metric. (Its first
            // inactive entry does count, as a shutdown.)
            if self.recorded_asleep[host]
                && h.vms.is_empty()
                && h.utilization_mips == 0.0
                && h.previous_utilization_mips == 0.0
            {
                continue;
            }
            self.update_host(host, now);
        }
        if dt > 0.0 {
            let mut frame = 0.0;
            for (i, h) in self.cluster.hosts.iter().enumerate() {
                frame += if self.power_aware {
                    h.spec
                        .power
                        .energy_joules(h.previous_utilization(), h.utilization(), dt)
                        .map_err(|_| SimError::HostOverUtilized {
                            host: i,
                            time_seconds: now,
                            utilization: h.utilization(),
                        })?
                } else {
                    h.spec.power.max_watts() * dt
                };
            }
            self.energy_joules += frame;
        }
        self.remove_finished_vms();
        self.last_process_time = now;
        self.hosts_fresh_at = Some(now);
        Ok(())
    }

    /// [`Self::update_all`] again at the instant every host was last updated
    /// (after a group of migrations completed): the VMs' demand is what it
    /// was, no time has passed (no energy, no history), so a host that has not
    /// changed since would recompute the very same shares and metric entries
    /// (an entry at the same instant replaces the previous one); only its
    /// previous utilisation moves up to the current one. Changed hosts are
    /// updated in full, as before.
    fn update_changed_hosts(&mut self, now: f64) {
        let changed = std::mem::take(&mut self.changed_since_update);
        for (host, &was_changed) in changed.iter().enumerate() {
            if was_changed {
                self.update_host(host, now);
            } else {
                let h = &mut self.cluster.hosts[host];
                h.previous_utilization_mips = h.utilization_mips;
            }
        }
        self.changed_since_update = changed;
        self.changed_since_update.fill(false);
        self.remove_finished_vms();
    }

    /// A VM whose request drops to exactly zero has finished its workload
    /// and leaves for good (CloudSim's `getCompletedVms`); VMs in migration stay.
    fn remove_finished_vms(&mut self) {
        for host in 0..self.cluster.hosts.len() {
            let finished: Vec<VmIndex> = self.cluster.hosts[host]
                .vms
                .iter()
                .copied()
                .filter(|&vm| {
                    !self.cluster.vms[vm].in_migration && self.cluster.vms[vm].requested_mips == 0.0
                })
                .collect();
            for vm in finished {
                if let Some(registered) = self.cluster.vms[vm].host.take() {
                    self.cluster.vm_destroy(registered, vm);
                    self.changed_since_update[registered] = true;
                }
                self.alive[vm] = false;
            }
        }
    }

    /// Recomputes a host's CPU shares and records host and VM states.
    fn update_host(&mut self, host: HostIndex, now: f64) {
        let cluster = &mut self.cluster;
        let h = &mut cluster.hosts[host];
        h.previous_utilization_mips = h.utilization_mips;
        h.utilization_mips = 0.0;
        h.cpu.deallocate_all();
        for &vm in &h.vms {
            let v = &cluster.vms[vm];
            h.cpu.allocate(vm, v.requested_mips, v.in_migration);
        }
        let mut host_requested = 0.0;
        for (i, &vm) in h.vms.iter().enumerate() {
            let v = &cluster.vms[vm];
            let requested = v.requested_mips;
            // The shares were just created in list order.
            let mut allocated = h.cpu.allocated_mips_hint(vm, i);
            if !h.is_migrating_in(vm) {
                self.metrics
                    .vm_entry(vm, now, allocated, requested, v.in_migration);
                if v.in_migration {
                    // The source pays the full VM although the VM gets 90 %.
                    allocated /= 0.9;
                }
            }
            h.utilization_mips += allocated;
            host_requested += requested;
        }
        let (used, active) = (h.utilization_mips, h.utilization_mips > 0.0);
        self.recorded_asleep[host] = !active;
        self.metrics
            .host_entry(host, now, used, host_requested, active);
    }

    fn start_migration(&mut self, m: Migration, now: f64) -> Result<(), SimError> {
        let Migration { vm, target } = m;
        self.cluster.vms[vm].in_migration = true;
        let (requested, size, ram, source) = {
            let v = &self.cluster.vms[vm];
            (v.requested_mips, v.spec.size_mb, v.spec.ram_mb, v.host)
        };
        if !self.cluster.hosts[target].is_migrating_in(vm) {
            let h = &mut self.cluster.hosts[target];
            if h.storage_available_mb < size {
                return Err(SimError::MigrationRejected { vm, host: target });
            }
            h.cpu.mark_migrating_in(vm);
            h.cpu.allocate(vm, requested, true);
            h.storage_available_mb -= size;
            h.migrating_in.push(vm);
            h.vms.push(vm);
            self.update_host(target, now);
            if let Some(source) = source {
                self.update_host(source, now);
            }
        }
        self.migrations += 1;
        let bandwidth = self.cluster.hosts[target].spec.bandwidth;
        // Half the bandwidth carries the migration: RAM / (bw / (2 x 8000)).
        let seconds = ram / (bandwidth / (2.0 * 8000.0));
        self.in_flight.push(InFlight {
            completes_at: now + seconds,
            migration: m,
        });
        Ok(())
    }

    /// Completes, group by group, the migrations whose completion time is `due`.
    fn complete_migrations(&mut self, due: impl Fn(f64) -> bool) -> Result<(), SimError> {
        let due = self
            .in_flight
            .iter()
            .take_while(|f| due(f.completes_at))
            .count();
        let due: Vec<InFlight> = self.in_flight.drain(..due).collect();
        let mut i = 0;
        while i < due.len() {
            let at = due[i].completes_at;
            if at > self.last_process_time {
                self.update_all(at)?;
            }
            while i < due.len() && due[i].completes_at == at {
                self.complete_migration(due[i].migration)?;
                i += 1;
            }
            self.update_all(at)?;
        }
        Ok(())
    }

    fn complete_migration(&mut self, m: Migration) -> Result<(), SimError> {
        let Migration { vm, target } = m;
        self.changed_since_update[target] = true;
        if let Some(registered) = self.cluster.vms[vm].host.take() {
            self.cluster.vm_destroy(registered, vm);
            self.changed_since_update[registered] = true;
        }
        let size = self.cluster.vms[vm].spec.size_mb;
        let h = &mut self.cluster.hosts[target];
        h.cpu.deallocate(vm);
        h.storage_available_mb += size;
        h.migrating_in.retain(|&v| v != vm);
        if let Some(pos) = h.vms.iter().position(|&v| v == vm) {
            h.vms.remove(pos);
        }
        h.cpu.unmark_migrating_in(vm);
        self.cluster.vms[vm].in_migration = false;
        if !self.cluster.vm_create(target, vm) {
            return Err(SimError::MigrationRejected { vm, host: target });
        }
        self.cluster.vms[vm].host = Some(target);
        Ok(())
    }
}

/// A VM's CPU utilisation at `time`, linearly interpolated between samples
/// with CloudSim's float operations; past the last sample it holds.
pub fn utilization_at(samples: &[f64], interval: f64, time: f64) -> f64 {
    let sample = |i: usize| samples[i.min(samples.len() - 1)];
    let position = time / interval;
    // An exact multiple of the interval divides to an exact integer, so the
    // (slow) remainder is only needed when the quotient is whole.
    let lower = position as usize;
    if lower as f64 == position && time % interval == 0.0 {
        return sample((time as i64 / interval as i64) as usize);
    }
    let upper = if lower as f64 == position {
        lower
    } else {
        lower + 1
    };
    let (u1, u2) = (sample(lower), sample(upper));
    let delta = (u2 - u1) / ((upper - lower) as f64 * interval);
    u1 + delta * (time - lower as f64 * interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_samples_and_holds_at_the_end() {
        let s = [0.1, 0.3, 0.5];
        assert_eq!(utilization_at(&s, 300.0, 0.0), 0.1);
        assert_eq!(utilization_at(&s, 300.0, 300.0), 0.3);
        assert!((utilization_at(&s, 300.0, 150.0) - 0.2).abs() < 1e-12);
        assert_eq!(utilization_at(&s, 300.0, 900.0), 0.5);
        assert_eq!(utilization_at(&s, 300.0, 750.0), 0.5);
    }
}
