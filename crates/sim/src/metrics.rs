//! SLA and host-activity metrics, computed as CloudSim 3.0.3's `Helper`
//! computes them from the state histories, but streamed: each host and VM
//! keeps only its latest entry (an entry at the same instant replaces the
//! previous one, as in CloudSim) and folds finished intervals into sums.

/// One state-history entry.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    time: f64,
    allocated_mips: f64,
    requested_mips: f64,
    /// Host: active. VM: migrating out.
    flag: bool,
}

/// Entries of one host or VM, with the last one still open to replacement.
#[derive(Debug, Clone, Default)]
struct EntryStream {
    open: Option<Entry>,
    last_closed: Option<Entry>,
}

impl EntryStream {
    /// Adds an entry; returns the pair (previous closed, newly closed) when an
    /// entry is closed by this one.
    fn push(&mut self, entry: Entry) -> Option<(Option<Entry>, Entry)> {
        match self.open {
            Some(open) if open.time == entry.time => {
                self.open = Some(entry);
                None
            }
            Some(open) => {
                let previous = self.last_closed.replace(open);
                self.open = Some(entry);
                Some((previous, open))
            }
            None => {
                self.open = Some(entry);
                None
            }
        }
    }

    fn close(&mut self) -> Option<(Option<Entry>, Entry)> {
        let open = self.open.take()?;
        let previous = self.last_closed.replace(open);
        Some((previous, open))
    }
}

#[derive(Debug, Clone)]
struct HostMetrics {
    stream: EntryStream,
    active_seconds: f64,
    overloaded_seconds: f64,
    previous_active: bool,
    last_switched_on: f64,
    active_spells: Vec<f64>,
}

impl Default for HostMetrics {
    fn default() -> Self {
        Self {
            stream: EntryStream::default(),
            active_seconds: 0.0,
            overloaded_seconds: 0.0,
            previous_active: true,
            last_switched_on: 0.0,
            active_spells: Vec::new(),
        }
    }
}

impl HostMetrics {
    fn fold(&mut self, previous: Option<Entry>, current: Entry) {
        if let Some(p) = previous {
            if p.flag {
                let dt = current.time - p.time;
                self.active_seconds += dt;
                if p.allocated_mips < p.requested_mips {
                    self.overloaded_seconds += dt;
                }
            }
        }
        if self.previous_active && !current.flag {
            self.active_spells
                .push(current.time - self.last_switched_on);
        }
        if !self.previous_active && current.flag {
            self.last_switched_on = current.time;
        }
        self.previous_active = current.flag;
    }
}

#[derive(Debug, Clone, Default)]
struct VmMetrics {
    stream: EntryStream,
    allocated_mips_seconds: f64,
    requested_mips_seconds: f64,
    shortfall_in_migration_mips_seconds: f64,
    shortfall_ratios: Vec<f64>,
    previous_migrating: bool,
    migration_started: f64,
    migration_spells: Vec<f64>,
}

impl VmMetrics {
    fn fold(&mut self, previous: Option<Entry>, current: Entry) {
        if let Some(p) = previous {
            let dt = current.time - p.time;
            self.allocated_mips_seconds += p.allocated_mips * dt;
            self.requested_mips_seconds += p.requested_mips * dt;
            if p.allocated_mips < p.requested_mips {
                self.shortfall_ratios
                    .push((p.requested_mips - p.allocated_mips) / p.requested_mips);
                if p.flag {
                    self.shortfall_in_migration_mips_seconds +=
                        (p.requested_mips - p.allocated_mips) * dt;
                }
            }
        }
        if self.previous_migrating && !current.flag {
            self.migration_spells
                .push(current.time - self.migration_started);
        }
        if !self.previous_migrating && current.flag {
            self.migration_started = current.time;
        }
        self.previous_migrating = current.flag;
    }
}

/// Collects host and VM state histories.
#[derive(Debug, Clone)]
pub struct MetricsCollector {
    hosts: Vec<HostMetrics>,
    vms: Vec<VmMetrics>,
}

/// The metrics of a finished run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaFigures {
    /// SLA violation time per active host (pooled, as CloudSim prints it), fraction.
    pub slatah: f64,
    /// Performance degradation due to migration (pooled), fraction.
    pub pdm: f64,
    /// SLATAH as the paper defines it: mean over hosts of overloaded / active time.
    pub slatah_paper: f64,
    /// PDM as the paper defines it: mean over VMs of migration shortfall / requested.
    pub pdm_paper: f64,
    /// (requested - allocated) / requested over all VM time, fraction.
    pub overall_sla_violation: f64,
    /// Mean shortfall ratio over VM intervals with a shortfall, fraction.
    pub average_sla_violation: f64,
    /// Active -> inactive host transitions.
    pub host_shutdowns: usize,
    /// Mean active spell before a host shutdown, seconds.
    pub mean_time_before_host_shutdown_seconds: Option<f64>,
    /// Mean time a VM spends flagged as migrating, seconds.
    pub mean_migration_seconds: Option<f64>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl MetricsCollector {
    /// A collector for `hosts` hosts and `vms` VMs.
    pub fn new(hosts: usize, vms: usize) -> Self {
        Self {
            hosts: vec![HostMetrics::default(); hosts],
            vms: vec![VmMetrics::default(); vms],
        }
    }

    /// Records a host state at `time`.
    pub fn host_entry(
        &mut self,
        host: usize,
        time: f64,
        allocated_mips: f64,
        requested_mips: f64,
        active: bool,
    ) {
        let m = &mut self.hosts[host];
        if let Some((previous, closed)) = m.stream.push(Entry {
            time,
            allocated_mips,
            requested_mips,
            flag: active,
        }) {
            m.fold(previous, closed);
        }
    }

    /// Records a VM state at `time`.
    pub fn vm_entry(
        &mut self,
        vm: usize,
        time: f64,
        allocated_mips: f64,
        requested_mips: f64,
        migrating: bool,
    ) {
        let m = &mut self.vms[vm];
        if let Some((previous, closed)) = m.stream.push(Entry {
            time,
            allocated_mips,
            requested_mips,
            flag: migrating,
        }) {
            m.fold(previous, closed);
        }
    }

    /// Closes every history and computes the figures.
    pub fn finish(mut self) -> SlaFigures {
        for m in &mut self.hosts {
            if let Some((previous, closed)) = m.stream.close() {
                m.fold(previous, closed);
            }
        }
        for m in &mut self.vms {
            if let Some((previous, closed)) = m.stream.close() {
                m.fold(previous, closed);
            }
        }
        let active: f64 = self.hosts.iter().map(|h| h.active_seconds).sum();
        let overloaded: f64 = self.hosts.iter().map(|h| h.overloaded_seconds).sum();
        let requested: f64 = self.vms.iter().map(|v| v.requested_mips_seconds).sum();
        let allocated: f64 = self.vms.iter().map(|v| v.allocated_mips_seconds).sum();
        let shortfall_migrating: f64 = self
            .vms
            .iter()
            .map(|v| v.shortfall_in_migration_mips_seconds)
            .sum();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        SlaFigures {
            slatah: ratio(overloaded, active),
            pdm: ratio(shortfall_migrating, requested),
            slatah_paper: mean(
                self.hosts
                    .iter()
                    .filter(|h| h.active_seconds > 0.0)
                    .map(|h| h.overloaded_seconds / h.active_seconds),
            )
            .unwrap_or(0.0),
            pdm_paper: mean(
                self.vms
                    .iter()
                    .filter(|v| v.requested_mips_seconds > 0.0)
                    .map(|v| v.shortfall_in_migration_mips_seconds / v.requested_mips_seconds),
            )
            .unwrap_or(0.0),
            overall_sla_violation: ratio(requested - allocated, requested),
            average_sla_violation: mean(
                self.vms
                    .iter()
                    .flat_map(|v| v.shortfall_ratios.iter().copied()),
            )
            .unwrap_or(0.0),
            host_shutdowns: self.hosts.iter().map(|h| h.active_spells.len()).sum(),
            mean_time_before_host_shutdown_seconds: mean(
                self.hosts
                    .iter()
                    .flat_map(|h| h.active_spells.iter().copied()),
            ),
            mean_migration_seconds: mean(
                self.vms
                    .iter()
                    .flat_map(|v| v.migration_spells.iter().copied()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_instant_replaces_and_intervals_use_the_earlier_entry() {
        let mut m = MetricsCollector::new(1, 1);
        m.host_entry(0, 0.0, 10.0, 10.0, true);
        m.host_entry(0, 0.0, 5.0, 10.0, true); // replaces: overloaded
        m.host_entry(0, 100.0, 10.0, 10.0, true);
        m.host_entry(0, 300.0, 0.0, 0.0, false);
        m.host_entry(0, 400.0, 0.0, 0.0, false);
        m.vm_entry(0, 0.0, 90.0, 100.0, true);
        m.vm_entry(0, 10.0, 100.0, 100.0, false);
        m.vm_entry(0, 20.0, 100.0, 100.0, false);
        let f = m.finish();
        assert!((f.slatah - 100.0 / 300.0).abs() < 1e-12, "{f:?}");
        assert_eq!(f.host_shutdowns, 1);
        assert_eq!(f.mean_time_before_host_shutdown_seconds, Some(300.0));
        assert!((f.pdm - 100.0 / 2000.0).abs() < 1e-12);
        assert_eq!(f.mean_migration_seconds, Some(10.0));
        assert!((f.average_sla_violation - 0.1).abs() < 1e-12);
    }
}
