//! The simulator as a body: a cluster whose VMs replay recorded demand in
//! virtual time. The daemon's default runs on it (no cluster needed), and
//! control-loop tests use it where no hypervisor can run.
//!
//! Time is virtual: it moves only when [`SimDriver::advance`] is called.
//! Counters accumulate each VM's demand over the time it is advanced, so
//! [`crate::usage_between`] turns them back into the demand replayed.
//! Migrations complete at once (their cost is the simulator crate's
//! business) and cost the VM nothing here.

use crate::{
    Capabilities, Driver, DriverError, MigrationOutcome, MigrationRequest, Observation, Tunables,
    UsageCounters, VmObservation,
};
use keel_model::{HostInfo, Resources};

/// One simulated VM: its size and its demand per sample (cores, bytes, bytes/s).
#[derive(Debug, Clone, PartialEq)]
pub struct SimVm {
    /// Unique name.
    pub name: String,
    /// Host it starts on.
    pub host: String,
    /// Configured size.
    pub size: Resources,
    /// Demand per sample; replay wraps around at the end.
    pub demand: Vec<Resources>,
}

/// A simulated cluster.
#[derive(Debug, Clone)]
pub struct SimDriver {
    hosts: Vec<HostInfo>,
    vms: Vec<SimVm>,
    counters: Vec<UsageCounters>,
    tunables: Vec<Tunables>,
    sample_seconds: f64,
    now_seconds: f64,
}

impl SimDriver {
    /// A cluster of `hosts` running `vms`, whose demand samples are
    /// `sample_seconds` apart. Fails on a VM placed on an unknown host.
    pub fn new(
        hosts: Vec<HostInfo>,
        vms: Vec<SimVm>,
        sample_seconds: f64,
    ) -> Result<Self, DriverError> {
        for vm in &vms {
            if !hosts.iter().any(|h| h.name == vm.host) {
                return Err(DriverError::Unknown {
                    kind: "host",
                    name: vm.host.clone(),
                });
            }
        }
        let n = vms.len();
        Ok(Self {
            hosts,
            vms,
            counters: vec![UsageCounters::default(); n],
            tunables: vec![Tunables::default(); n],
            sample_seconds: sample_seconds.max(f64::MIN_POSITIVE),
            now_seconds: 0.0,
        })
    }

    fn demand_now(&self, vm: usize) -> Resources {
        let series = &self.vms[vm].demand;
        if series.is_empty() {
            return Resources::ZERO;
        }
        let i = (self.now_seconds / self.sample_seconds) as usize % series.len();
        let mut d = series[i];
        if let Some(cap) = self.tunables[vm].cpu_limit_cores {
            d.cpu_cores = d.cpu_cores.min(cap);
        }
        d
    }

    /// Moves virtual time forward, accumulating every VM's usage.
    pub fn advance(&mut self, seconds: f64) {
        if !(seconds.is_finite() && seconds > 0.0) {
            return;
        }
        // Step sample by sample so demand changes are honoured.
        let mut left = seconds;
        while left > 0.0 {
            let into_sample = self.now_seconds % self.sample_seconds;
            let step = (self.sample_seconds - into_sample).min(left);
            for vm in 0..self.vms.len() {
                let d = self.demand_now(vm);
                let c = &mut self.counters[vm];
                c.cpu_seconds += d.cpu_cores * step;
                c.disk_bytes += d.disk_bytes_per_second * step;
                c.network_bytes += d.network_bytes_per_second * step;
            }
            self.now_seconds += step;
            left -= step;
        }
    }

    /// The virtual clock, seconds.
    pub fn now_seconds(&self) -> f64 {
        self.now_seconds
    }

    /// Tunables last applied to each VM, by name.
    pub fn tunables(&self, vm: &str) -> Option<Tunables> {
        self.vms
            .iter()
            .position(|v| v.name == vm)
            .map(|i| self.tunables[i])
    }

    fn vm_index(&self, name: &str) -> Result<usize, DriverError> {
        self.vms
            .iter()
            .position(|v| v.name == name)
            .ok_or_else(|| DriverError::Unknown {
                kind: "VM",
                name: name.to_string(),
            })
    }
}

impl Driver for SimDriver {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn observe(&mut self) -> Result<Observation, DriverError> {
        let vms = (0..self.vms.len())
            .map(|i| VmObservation {
                name: self.vms[i].name.clone(),
                host: self.vms[i].host.clone(),
                size: self.vms[i].size,
                running: true,
                counters: self.counters[i],
                memory_used_bytes: Some(self.demand_now(i).memory_bytes),
            })
            .collect();
        Ok(Observation {
            time_seconds: self.now_seconds,
            hosts: self.hosts.clone(),
            vms,
        })
    }

    fn migrate(&mut self, request: &MigrationRequest<'_>) -> Result<MigrationOutcome, DriverError> {
        let vm = self.vm_index(request.vm)?;
        if !self.hosts.iter().any(|h| h.name == request.to) {
            return Err(DriverError::Unknown {
                kind: "host",
                name: request.to.to_string(),
            });
        }
        if self.vms[vm].host != request.from {
            return Err(DriverError::MigrationFailed {
                vm: request.vm.to_string(),
                from: request.from.to_string(),
                to: request.to.to_string(),
                cause: format!(
                    "the VM is on {}, not on {}",
                    self.vms[vm].host, request.from
                ),
            });
        }
        self.vms[vm].host = request.to.to_string();
        Ok(MigrationOutcome {
            seconds: 0.0,
            downtime_ms: Some(0.0),
            bytes: Some(self.vms[vm].size.memory_bytes),
        })
    }

    fn apply_tunables(&mut self, vm: &str, tunables: &Tunables) -> Result<(), DriverError> {
        let i = self.vm_index(vm)?;
        let t = &mut self.tunables[i];
        // Only the given fields change.
        t.cpu_shares = tunables.cpu_shares.or(t.cpu_shares);
        t.cpu_limit_cores = tunables.cpu_limit_cores.or(t.cpu_limit_cores);
        t.memory_soft_limit_bytes = tunables
            .memory_soft_limit_bytes
            .or(t.memory_soft_limit_bytes);
        t.memory_hard_limit_bytes = tunables
            .memory_hard_limit_bytes
            .or(t.memory_hard_limit_bytes);
        t.io_weight = tunables.io_weight.or(t.io_weight);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage_between;
    use std::time::Duration;

    fn cluster() -> SimDriver {
        let host = |n: &str| HostInfo {
            name: n.into(),
            capacity: Resources::new(8.0, 32e9, 0.0, 0.0),
            maintenance: false,
        };
        let vm = SimVm {
            name: "v".into(),
            host: "a".into(),
            size: Resources::new(2.0, 4e9, 0.0, 0.0),
            demand: vec![
                Resources::new(1.0, 2e9, 10.0, 0.0),
                Resources::new(2.0, 3e9, 0.0, 0.0),
            ],
        };
        SimDriver::new(vec![host("a"), host("b")], vec![vm], 300.0).unwrap()
    }

    #[test]
    fn counters_replay_the_demand() {
        let mut d = cluster();
        let a = d.observe().unwrap();
        d.advance(300.0);
        let b = d.observe().unwrap();
        d.advance(300.0);
        let c = d.observe().unwrap();
        assert_eq!(usage_between(&a, &b)[0].1.cpu_cores, 1.0);
        assert_eq!(usage_between(&a, &b)[0].1.disk_bytes_per_second, 10.0);
        assert_eq!(usage_between(&b, &c)[0].1.cpu_cores, 2.0);
        // Half a sample each side of a boundary.
        d.advance(150.0);
        let e = d.observe().unwrap();
        d.advance(300.0);
        let f = d.observe().unwrap();
        assert_eq!(usage_between(&e, &f)[0].1.cpu_cores, 1.5);
    }

    #[test]
    fn migrates_and_caps() {
        let mut d = cluster();
        let request = MigrationRequest {
            vm: "v",
            from: "a",
            to: "b",
            max_bandwidth_bytes_per_second: None,
            timeout: Duration::from_secs(10),
        };
        d.migrate(&request).unwrap();
        assert_eq!(d.observe().unwrap().vms[0].host, "b");
        assert!(matches!(
            d.migrate(&request),
            Err(DriverError::MigrationFailed { .. })
        ));
        d.apply_tunables(
            "v",
            &Tunables {
                cpu_limit_cores: Some(0.5),
                ..Tunables::default()
            },
        )
        .unwrap();
        let a = d.observe().unwrap();
        d.advance(300.0);
        let b = d.observe().unwrap();
        assert_eq!(usage_between(&a, &b)[0].1.cpu_cores, 0.5);
        assert!(matches!(
            d.apply_tunables("nope", &Tunables::default()),
            Err(DriverError::Unknown { .. })
        ));
    }
}
