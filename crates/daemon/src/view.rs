//! What the API shows: the cluster view (hosts, VMs, placement, loads,
//! imbalance with R and L) and the counters and text behind /metrics.

use crate::control::{MoveOutcome, Proposal};
use crate::plans::{PlanBook, PlanState};
use crate::service::Automation;
use keel_model::{HostId, Resource, Resources, Rules};
use keel_policy::balance::{HostLoads, Imbalance};
use serde::Serialize;
use std::fmt::Write;

/// One host as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostView {
    /// Name.
    pub name: String,
    /// Capacity (cores, bytes, bytes/s; 0 = not measured).
    pub capacity: Resources,
    /// In maintenance (by the host's own flag or by the daemon's rules).
    pub maintenance: bool,
    /// In maintenance and empty: safe to service.
    pub safe_to_service: bool,
    /// VMs on it.
    pub vm_count: usize,
    /// Summed estimated demand of its VMs.
    pub demand: Resources,
    /// Load per resource: demand / capacity (0 where capacity is 0 and
    /// nothing is demanded).
    pub load: Resources,
}

/// One VM as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmView {
    /// Name.
    pub name: String,
    /// Host it runs on.
    pub host: String,
    /// Configured size.
    pub size: Resources,
    /// Estimated demand.
    pub demand: Resources,
}

/// The cluster as last observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterView {
    /// When observed, milliseconds since the Unix epoch (daemon clock).
    pub observed_unix_ms: u64,
    /// The driver's clock at observation, seconds.
    pub driver_time_seconds: f64,
    /// The driver (`sim`, `libvirt`).
    pub driver: &'static str,
    /// The automation level.
    pub automation: Automation,
    /// Hosts.
    pub hosts: Vec<HostView>,
    /// VMs; placement is each VM's `host`.
    pub vms: Vec<VmView>,
    /// Imbalance: `std_dev` and `normalized` forms, per resource std-dev,
    /// `total_demand` (R = sum of r_i) and `mean_load` (L = mean of l_i).
    pub imbalance: Imbalance,
}

impl ClusterView {
    /// The view of a proposal's cluster under `rules`.
    pub fn new(
        proposal: &Proposal,
        rules: &Rules,
        driver: &'static str,
        automation: Automation,
        observed_unix_ms: u64,
    ) -> Self {
        let cluster = &proposal.cluster;
        let loads = HostLoads::new(cluster);
        let mut counts = vec![0usize; cluster.hosts.len()];
        for h in &cluster.placement {
            counts[h.index()] += 1;
        }
        let hosts = cluster
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let maintenance = h.maintenance || rules.maintenance.contains(&h.name);
                let id = HostId(i as u32);
                HostView {
                    name: h.name.clone(),
                    capacity: h.capacity,
                    maintenance,
                    safe_to_service: maintenance && counts[i] == 0,
                    vm_count: counts[i],
                    demand: loads.demand[i],
                    load: finite(loads.load(id)),
                }
            })
            .collect();
        let vms = cluster
            .vms
            .iter()
            .map(|v| VmView {
                name: v.name.clone(),
                host: v.host.clone(),
                size: v.size,
                demand: v.demand,
            })
            .collect();
        Self {
            observed_unix_ms,
            driver_time_seconds: proposal.time_seconds,
            driver,
            automation,
            hosts,
            vms,
            imbalance: proposal.imbalance_before,
        }
    }
}

/// JSON has no infinity: a load on a resource without capacity shows as -1.
fn finite(r: Resources) -> Resources {
    Resources::new(
        f(r.cpu_cores),
        f(r.memory_bytes),
        f(r.disk_bytes_per_second),
        f(r.network_bytes_per_second),
    )
}

fn f(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        -1.0
    }
}

/// Running totals for /metrics.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Periodic rounds run.
    pub iterations: u64,
    /// Migrations that succeeded.
    pub migrations_ok: u64,
    /// Migrations that failed.
    pub migrations_failed: u64,
    /// Driver errors (failed observations and failed migrations).
    pub driver_errors: u64,
    /// Planning calls timed.
    pub plans_timed: u64,
    /// Their summed time, seconds.
    pub plan_seconds_sum: f64,
    /// The last one, seconds.
    pub plan_seconds_last: f64,
    /// Summed time of the successful migrations, seconds.
    pub migration_seconds_sum: f64,
}

impl Counters {
    /// Counts one planning call.
    pub fn record_plan_time(&mut self, seconds: f64) {
        self.plans_timed += 1;
        self.plan_seconds_sum += seconds;
        self.plan_seconds_last = seconds;
    }

    /// Counts executed moves.
    pub fn record_moves(&mut self, outcomes: &[MoveOutcome]) {
        for o in outcomes {
            if o.error.is_some() {
                self.migrations_failed += 1;
                self.driver_errors += 1;
            } else {
                self.migrations_ok += 1;
                self.migration_seconds_sum += o.seconds.unwrap_or(0.0);
            }
        }
    }
}

/// The names of every metric /metrics exposes.
pub const METRIC_NAMES: &[&str] = &[
    "keel_info",
    "keel_host_load",
    "keel_host_vms",
    "keel_host_maintenance",
    "keel_imbalance",
    "keel_migrations_total",
    "keel_migration_seconds",
    "keel_plan_seconds",
    "keel_plan_seconds_last",
    "keel_plans",
    "keel_driver_errors_total",
    "keel_iterations_total",
];

/// Prometheus text exposition format 0.0.4, written by hand (no crate).
pub fn metrics_text(view: Option<&ClusterView>, c: &Counters, plans: &PlanBook) -> String {
    let mut out = String::with_capacity(4096);
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(
        &mut out,
        "keel_info",
        "gauge",
        "Always 1; the labels say which driver and automation level run.",
    );
    if let Some(v) = view {
        let automation = match v.automation {
            Automation::Manual => "manual",
            Automation::Partial => "partial",
            Automation::Full => "full",
        };
        let _ = writeln!(
            out,
            "keel_info{{driver=\"{}\",automation=\"{automation}\"}} 1",
            escape(v.driver)
        );
    }
    head(
        &mut out,
        "keel_host_load",
        "gauge",
        "Host load per resource: estimated demand over capacity.",
    );
    if let Some(v) = view {
        for h in &v.hosts {
            for r in Resource::ALL {
                let _ = writeln!(
                    out,
                    "keel_host_load{{host=\"{}\",resource=\"{}\"}} {}",
                    escape(&h.name),
                    r.name(),
                    h.load.get(r)
                );
            }
        }
    }
    head(&mut out, "keel_host_vms", "gauge", "VMs per host.");
    if let Some(v) = view {
        for h in &v.hosts {
            let _ = writeln!(
                out,
                "keel_host_vms{{host=\"{}\"}} {}",
                escape(&h.name),
                h.vm_count
            );
        }
    }
    head(
        &mut out,
        "keel_host_maintenance",
        "gauge",
        "1 while a host is in maintenance, 2 once it is also empty (safe to service), else 0.",
    );
    if let Some(v) = view {
        for h in &v.hosts {
            let state = u8::from(h.maintenance) + u8::from(h.safe_to_service);
            let _ = writeln!(
                out,
                "keel_host_maintenance{{host=\"{}\"}} {state}",
                escape(&h.name)
            );
        }
    }
    head(
        &mut out,
        "keel_imbalance",
        "gauge",
        "Cluster imbalance: weighted std-dev of host loads, and its 0..1 normalised form.",
    );
    if let Some(v) = view {
        let _ = writeln!(
            out,
            "keel_imbalance{{form=\"std_dev\"}} {}",
            v.imbalance.std_dev
        );
        let _ = writeln!(
            out,
            "keel_imbalance{{form=\"normalized\"}} {}",
            v.imbalance.normalized
        );
    }
    head(
        &mut out,
        "keel_migrations_total",
        "counter",
        "Migrations executed, by result.",
    );
    let _ = writeln!(
        out,
        "keel_migrations_total{{result=\"ok\"}} {}",
        c.migrations_ok
    );
    let _ = writeln!(
        out,
        "keel_migrations_total{{result=\"failed\"}} {}",
        c.migrations_failed
    );
    head(
        &mut out,
        "keel_migration_seconds",
        "summary",
        "Time of the successful migrations.",
    );
    let _ = writeln!(
        out,
        "keel_migration_seconds_sum {}",
        c.migration_seconds_sum
    );
    let _ = writeln!(out, "keel_migration_seconds_count {}", c.migrations_ok);
    head(
        &mut out,
        "keel_plan_seconds",
        "summary",
        "Time of the planning call.",
    );
    let _ = writeln!(out, "keel_plan_seconds_sum {}", c.plan_seconds_sum);
    let _ = writeln!(out, "keel_plan_seconds_count {}", c.plans_timed);
    head(
        &mut out,
        "keel_plan_seconds_last",
        "gauge",
        "Time of the last planning call.",
    );
    let _ = writeln!(out, "keel_plan_seconds_last {}", c.plan_seconds_last);
    head(
        &mut out,
        "keel_plans",
        "gauge",
        "Plans kept in memory, by state.",
    );
    for state in PlanState::ALL {
        let n = plans.all().filter(|p| p.state == state).count();
        let _ = writeln!(out, "keel_plans{{state=\"{}\"}} {n}", state.as_str());
    }
    head(
        &mut out,
        "keel_driver_errors_total",
        "counter",
        "Failed driver calls (observations and migrations).",
    );
    let _ = writeln!(out, "keel_driver_errors_total {}", c.driver_errors);
    head(
        &mut out,
        "keel_iterations_total",
        "counter",
        "Periodic control rounds run.",
    );
    let _ = writeln!(out, "keel_iterations_total {}", c.iterations);
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
