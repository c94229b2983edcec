//! The libvirt driver: one libvirt connection per host (cargo feature
//! `libvirt`; needs libvirt's C library, and libvirt's `virsh` at run time
//! for what the `virt` binding does not wrap or wraps unsoundly: job abort,
//! blkiotune and completed-job statistics).
//!
//! What it reads, per host and observation:
//! - capacity from `virNodeGetInfo`: logical CPUs as cores, memory (the CPU
//!   figure can be overridden per host, see
//!   [`LibvirtDriver::set_host_cpu_capacity`]);
//! - per active domain, `virDomainGetInfo`: vCPUs, maximum memory, state and
//!   CPU time (the same figure as domain stats' `cpu.time`: all vCPU and
//!   emulator threads); disk bytes (`rd.bytes + wr.bytes`) and network bytes
//!   (`rx.bytes + tx.bytes`) per device named in the domain XML
//!   (`virDomainBlockStats`, `virDomainInterfaceStats`). The per-domain calls
//!   stand in for `virConnectGetAllDomainStats`, whose records the binding
//!   exposes only as raw pointers (reading them would need `unsafe`).
//! - memory used from the balloon's guest statistics, `available - unused`
//!   (what the guest's kernel has in use, page cache included) when the
//!   guest reports both (a virtio balloon with `<stats period='N'/>`);
//!   otherwise the QEMU process RSS capped at the configured memory (RSS
//!   includes QEMU's own ~100 MiB, so uncapped it would overstate the guest).
//!
//! Time is the driver's own monotonic clock, seconds since `connect`.
//!
//! Migration is peer to peer and live (see [`migrate`]); tunables go through
//! `virDomainSetSchedulerParameters` (cpu shares, vCPU quota and period),
//! `virDomainSetMemoryParameters` (soft and hard limit) and
//! `virsh blkiotune --weight`. All of them need libvirt to manage cgroups
//! for the domain (it does when it runs as root with the controllers
//! mounted; the error names the host and VM when it does not).

mod migrate;
mod stats;

use crate::{Capabilities, Driver, DriverError, MigrationOutcome, MigrationRequest, Observation};
use crate::{Tunables, VmObservation};
use keel_model::{HostInfo, Resources};
use std::process::Command;
use std::time::Instant;
use virt::connect::Connect;
use virt::domain::{Domain, MemoryParameters, SchedulerInfo};
use virt::sys;

/// QEMU's own memory beside the guest's (measured ~100 MiB under TCG): a
/// hard limit below guest memory plus this kills the VM.
pub const QEMU_OVERHEAD_BYTES: f64 = 100.0 * 1024.0 * 1024.0;

/// The CFS period used for CPU caps, microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// One host: its name, how Keel reaches its libvirt, how peers reach it.
struct Host {
    name: String,
    uri: String,
    /// The libvirt URI other hosts' daemons use to reach this one
    /// (peer-to-peer migration); defaults to `uri`.
    peer_uri: String,
    /// Where migration data goes (`tcp://ADDRESS[:PORT]`); `None` lets
    /// libvirt choose from the destination's host name.
    migration_uri: Option<String>,
    /// CPU capacity to report instead of `virNodeGetInfo`'s CPU count.
    cpu_capacity: Option<f64>,
    conn: Connect,
}

/// A driver over libvirt daemons, one per host.
pub struct LibvirtDriver {
    hosts: Vec<Host>,
    epoch: Instant,
}

/// A libvirt error as a [`DriverError::Hypervisor`] with its context.
fn hv(context: impl Into<String>, err: virt::error::Error) -> DriverError {
    DriverError::Hypervisor {
        context: context.into(),
        message: err.message().to_string(),
    }
}

impl LibvirtDriver {
    /// Opens one connection per `(host name, libvirt URI)`, e.g.
    /// `("h1", "qemu+tcp://10.200.0.1/system")`. Fails naming the first
    /// host that cannot be reached. Host names must be unique.
    pub fn connect(hosts: &[(String, String)]) -> Result<Self, DriverError> {
        // Errors come back as values; libvirt's default handler would also
        // print each one on the daemon's stderr.
        virt::error::clear_error_callback();
        let mut opened: Vec<Host> = Vec::with_capacity(hosts.len());
        for (name, uri) in hosts {
            if opened.iter().any(|h| &h.name == name) {
                return Err(DriverError::Hypervisor {
                    context: format!("connecting to host {name}"),
                    message: "host named twice".into(),
                });
            }
            let conn = Connect::open(Some(uri))
                .map_err(|e| hv(format!("connecting to {name} ({uri})"), e))?;
            opened.push(Host {
                name: name.clone(),
                uri: uri.clone(),
                peer_uri: uri.clone(),
                migration_uri: None,
                cpu_capacity: None,
                conn,
            });
        }
        Ok(LibvirtDriver {
            hosts: opened,
            epoch: Instant::now(),
        })
    }

    /// Says how other hosts reach `host` for migration: the libvirt URI its
    /// peers' daemons connect to (peer to peer) and, optionally, the address
    /// migration data goes to (`tcp://10.200.0.2`). Needed when Keel reaches
    /// a daemon differently from its peers (a local socket, a management
    /// network).
    pub fn set_peer_address(
        &mut self,
        host: &str,
        peer_uri: &str,
        migration_uri: Option<&str>,
    ) -> Result<(), DriverError> {
        let h = self.host_mut(host)?;
        h.peer_uri = peer_uri.to_string();
        h.migration_uri = migration_uri.map(str::to_string);
        Ok(())
    }

    /// Reports `cores` as `host`'s CPU capacity instead of the logical CPU
    /// count of `virNodeGetInfo`. For hosts whose guests may use only part
    /// of the machine libvirt runs on: `keel lab` runs every "host" on the
    /// same machine and pins each host's guests to its own core, so each
    /// host's capacity is that one core, not the whole machine's. On a
    /// real cluster leave it unset.
    pub fn set_host_cpu_capacity(&mut self, host: &str, cores: f64) -> Result<(), DriverError> {
        if !(cores.is_finite() && cores > 0.0) {
            return Err(invalid(
                format!("setting the CPU capacity of host {host}"),
                format!("{cores} cores (must be > 0)"),
            ));
        }
        self.host_mut(host)?.cpu_capacity = Some(cores);
        Ok(())
    }

    /// Host names in connection order.
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    fn host_index(&self, name: &str) -> Result<usize, DriverError> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| DriverError::Unknown {
                kind: "host",
                name: name.to_string(),
            })
    }

    fn host_mut(&mut self, name: &str) -> Result<&mut Host, DriverError> {
        let i = self.host_index(name)?;
        Ok(&mut self.hosts[i])
    }

    /// The host running `vm` (active there) and its domain handle.
    fn find_active(&self, vm: &str) -> Result<(usize, Domain), DriverError> {
        for (i, host) in self.hosts.iter().enumerate() {
            if let Ok(dom) = host.conn.lookup_domain_by_name(vm) {
                if dom.is_active().unwrap_or(false) {
                    return Ok((i, dom));
                }
            }
        }
        Err(DriverError::Unknown {
            kind: "VM",
            name: vm.to_string(),
        })
    }

    fn seconds(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
}

/// Runs `virsh -c URI ARGS...`: its output, or its error output on failure.
fn virsh(uri: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("virsh")
        .arg("-q")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .map_err(|e| format!("running virsh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Driver for LibvirtDriver {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn observe(&mut self) -> Result<Observation, DriverError> {
        let mut hosts = Vec::with_capacity(self.hosts.len());
        let mut vms = Vec::new();
        for host in &self.hosts {
            let node = host
                .conn
                .node_info()
                .map_err(|e| hv(format!("reading capacity of host {}", host.name), e))?;
            hosts.push(HostInfo {
                name: host.name.clone(),
                capacity: Resources::new(
                    host.cpu_capacity.unwrap_or(f64::from(node.cpus)),
                    node.memory as f64 * 1024.0,
                    0.0,
                    0.0,
                ),
                maintenance: false,
            });
            let domains = host
                .conn
                .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                .map_err(|e| hv(format!("listing VMs of host {}", host.name), e))?;
            for dom in &domains {
                // A domain that stops or leaves between the listing and
                // the reading is simply not there any more.
                if let Some(vm) = stats::observe_domain(&host.name, dom)? {
                    vms.push(vm);
                }
            }
        }
        vms.sort_by(|a: &VmObservation, b| a.name.cmp(&b.name));
        Ok(Observation {
            time_seconds: self.seconds(),
            hosts,
            vms,
        })
    }

    fn migrate(&mut self, request: &MigrationRequest<'_>) -> Result<MigrationOutcome, DriverError> {
        migrate::migrate(self, request)
    }

    fn apply_tunables(&mut self, vm: &str, tunables: &Tunables) -> Result<(), DriverError> {
        let (i, dom) = self.find_active(vm)?;
        let host = &self.hosts[i];
        let ctx = |what: &str| format!("setting {what} of VM {vm} on host {}", host.name);
        let info = dom.info().map_err(|e| hv(ctx("tunables"), e))?;

        if tunables.cpu_shares.is_some() || tunables.cpu_limit_cores.is_some() {
            let (kind, _) = dom
                .scheduler_type()
                .map_err(|e| hv(ctx("CPU controls"), e))?;
            let mut sched = SchedulerInfo {
                scheduler_type: kind,
                ..Default::default()
            };
            if let Some(shares) = tunables.cpu_shares {
                if !(shares.is_finite() && shares >= 2.0) {
                    return Err(invalid(
                        ctx("CPU shares"),
                        format!("{shares} (must be >= 2)"),
                    ));
                }
                sched.cpu_shares = Some(shares.round() as u64);
            }
            if let Some(cores) = tunables.cpu_limit_cores {
                let quota = vcpu_quota_us(cores, info.nr_virt_cpu)
                    .map_err(|m| invalid(ctx("CPU cap"), m))?;
                sched.vcpu_bw.period = Some(CPU_PERIOD_US);
                sched.vcpu_bw.quota = Some(quota);
            }
            dom.set_scheduler_parameters_flags(&sched, sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(|e| hv(ctx("CPU controls"), e))?;
        }

        if tunables.memory_soft_limit_bytes.is_some() || tunables.memory_hard_limit_bytes.is_some()
        {
            let guest = info.max_mem as f64 * 1024.0;
            let mut params = MemoryParameters::default();
            if let Some(soft) = tunables.memory_soft_limit_bytes {
                params.soft_limit =
                    Some(kib(soft).map_err(|m| invalid(ctx("memory soft limit"), m))?);
            }
            if let Some(hard) = tunables.memory_hard_limit_bytes {
                check_hard_limit(hard, guest).map_err(|m| invalid(ctx("memory hard limit"), m))?;
                params.hard_limit =
                    Some(kib(hard).map_err(|m| invalid(ctx("memory hard limit"), m))?);
            }
            dom.set_memory_parameters(params, sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(|e| hv(ctx("memory limits"), e))?;
        }

        if let Some(weight) = tunables.io_weight {
            if !(weight.is_finite() && (100.0..=1000.0).contains(&weight)) {
                return Err(invalid(
                    ctx("I/O weight"),
                    format!("{weight} (cgroup v1 blkio takes 100..=1000)"),
                ));
            }
            let w = format!("{}", weight.round() as u64);
            virsh(&host.uri, &["blkiotune", vm, "--weight", &w, "--live"])
                .map(drop)
                .map_err(|message| DriverError::Hypervisor {
                    context: ctx("I/O weight"),
                    message,
                })?;
        }
        Ok(())
    }
}

fn invalid(context: String, message: String) -> DriverError {
    DriverError::Hypervisor {
        context,
        message: format!("invalid value {message}"),
    }
}

/// Per-vCPU CFS quota (µs per [`CPU_PERIOD_US`]) for a cap of `cores` over
/// the whole VM, split evenly across its vCPUs. Emulator threads are not
/// capped (under TCG they use ~2 % of what the vCPU uses).
pub fn vcpu_quota_us(cores: f64, vcpus: u32) -> Result<i64, String> {
    if !(cores.is_finite() && cores > 0.0) {
        return Err(format!("{cores} cores (must be > 0)"));
    }
    let per_vcpu = cores / f64::from(vcpus.max(1));
    // libvirt accepts 1000..=18446744073709551 µs; a cap of a whole vCPU or
    // more per vCPU is no cap at all.
    if per_vcpu >= 1.0 {
        return Ok(-1);
    }
    Ok(((per_vcpu * CPU_PERIOD_US as f64).round() as i64).max(1000))
}

/// Refuses a hard memory limit the VM cannot live with.
pub fn check_hard_limit(hard_bytes: f64, guest_bytes: f64) -> Result<(), String> {
    let floor = guest_bytes + QEMU_OVERHEAD_BYTES;
    if hard_bytes < floor {
        return Err(format!(
            "{:.0} MiB: below the guest's {:.0} MiB plus {:.0} MiB QEMU overhead ({:.0} MiB); QEMU would be OOM-killed",
            hard_bytes / 1048576.0,
            guest_bytes / 1048576.0,
            QEMU_OVERHEAD_BYTES / 1048576.0,
            floor / 1048576.0
        ));
    }
    Ok(())
}

fn kib(bytes: f64) -> Result<u64, String> {
    if !(bytes.is_finite() && bytes > 0.0) {
        return Err(format!("{bytes} bytes (must be > 0)"));
    }
    Ok((bytes / 1024.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_cap_splits_across_vcpus() {
        assert_eq!(vcpu_quota_us(0.25, 1), Ok(25_000));
        assert_eq!(vcpu_quota_us(1.0, 2), Ok(50_000));
        assert_eq!(vcpu_quota_us(2.0, 2), Ok(-1));
        assert_eq!(vcpu_quota_us(0.001, 1), Ok(1000));
        assert!(vcpu_quota_us(0.0, 1).is_err());
        assert!(vcpu_quota_us(f64::NAN, 1).is_err());
    }

    #[test]
    fn hard_limit_needs_guest_plus_overhead() {
        let guest = 128.0 * 1048576.0;
        assert!(check_hard_limit(228.0 * 1048576.0, guest).is_ok());
        let err = check_hard_limit(200.0 * 1048576.0, guest).unwrap_err();
        assert!(err.contains("OOM"), "{err}");
    }
}
