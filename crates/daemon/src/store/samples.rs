//! Samples per VM and per host, imbalance points; retention and
//! downsampling into coarser averages ([`super::HistoryConfig`]).

use super::{ms, ms_back, Store, StoreError};
use crate::control::VmUsage;
use crate::view::HostView;
use keel_model::Resources;
use keel_policy::balance::Imbalance;
use rusqlite::{params, Connection, TransactionBehavior};
use serde::Serialize;

/// One VM's usage over one round (or a bucket's average).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VmSample {
    /// Round time (or bucket start), ms since the Unix epoch.
    pub t_ms: u64,
    /// CPU used, cores.
    pub cpu_cores: f64,
    /// Memory used, bytes.
    pub memory_bytes: f64,
    /// Disk I/O, bytes per second.
    pub disk_bytes_per_second: f64,
    /// Network I/O, bytes per second.
    pub network_bytes_per_second: f64,
}

/// One host's loads (fractions of capacity) in one round or bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HostSample {
    /// Round time (or bucket start), ms since the Unix epoch.
    pub t_ms: u64,
    /// CPU demand / capacity.
    pub cpu_load: f64,
    /// Memory demand / capacity.
    pub memory_load: f64,
    /// Disk demand / capacity (-1: no capacity measured).
    pub disk_load: f64,
    /// Network demand / capacity (-1: no capacity measured).
    pub network_load: f64,
    /// VMs on the host (a bucket's average, rounded).
    pub vms: u32,
}

/// The cluster's imbalance in one round or bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ImbalancePoint {
    /// Round time (or bucket start), ms since the Unix epoch.
    pub t_ms: u64,
    /// Imbalance, std-dev form (what the planner minimises).
    pub imbalance: f64,
    /// R = sum of r_i for CPU: total CPU demand, cores.
    pub r: f64,
    /// L = mean of l_i for CPU: mean host CPU load, fraction.
    pub l: f64,
    /// Imbalance, normalised form (0..1).
    pub normalized: f64,
    /// R per resource (cores, bytes, bytes/s, bytes/s).
    pub r_per_resource: Resources,
    /// L per resource (fractions).
    pub l_per_resource: Resources,
}

/// A sampled table and how its rows fold into a coarser bucket.
struct Table {
    name: &'static str,
    /// Grouped by (besides the bucket).
    key: &'static str,
    /// Taken from the bucket's last row.
    last: &'static [&'static str],
    /// Averaged, weighted by `rounds`.
    values: &'static [&'static str],
}

const VM_VALUES: &[&str] = &[
    "cpu_cores",
    "memory_bytes",
    "disk_bytes_per_second",
    "network_bytes_per_second",
];
const HOST_VALUES: &[&str] = &[
    "cpu_load",
    "memory_load",
    "disk_load",
    "network_load",
    "vms",
];
const IMBALANCE_VALUES: &[&str] = &[
    "imbalance",
    "normalized",
    "r_cpu_cores",
    "r_memory_bytes",
    "r_disk_bytes_per_second",
    "r_network_bytes_per_second",
    "l_cpu",
    "l_memory",
    "l_disk",
    "l_network",
];

const TABLES: &[Table] = &[
    Table {
        name: "vm_samples",
        key: "vm",
        last: &["host"],
        values: VM_VALUES,
    },
    Table {
        name: "host_samples",
        key: "host",
        last: &[],
        values: HOST_VALUES,
    },
    Table {
        name: "imbalance_points",
        key: "",
        last: &[],
        values: IMBALANCE_VALUES,
    },
];

/// Rounds between two retention passes are written without one; a pass
/// runs at most once a minute of the daemon's clock.
const COMPACTION_EVERY_MS: u64 = 60_000;

/// One round's rows, owned, on their way to the database.
pub(crate) struct Round {
    t_ms: u64,
    vms: Vec<VmUsage>,
    hosts: Vec<(String, Resources, usize)>,
    imbalance: Imbalance,
}

impl Round {
    pub(crate) fn t_ms(&self) -> u64 {
        self.t_ms
    }
}

/// Writes `rounds` in one transaction.
pub(crate) fn write_rounds(conn: &mut Connection, rounds: &[Round]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut vm = tx.prepare_cached(
            "INSERT INTO vm_samples (t_ms, bucket_ms, vm, host, cpu_cores, memory_bytes,
             disk_bytes_per_second, network_bytes_per_second, rounds)
             VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
        )?;
        let mut host = tx.prepare_cached(
            "INSERT INTO host_samples (t_ms, bucket_ms, host, cpu_load, memory_load,
             disk_load, network_load, vms, rounds)
             VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
        )?;
        let mut point = tx.prepare_cached(
            "INSERT INTO imbalance_points (t_ms, bucket_ms, imbalance, normalized,
             r_cpu_cores, r_memory_bytes, r_disk_bytes_per_second, r_network_bytes_per_second,
             l_cpu, l_memory, l_disk, l_network, rounds)
             VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1)",
        )?;
        for round in rounds {
            let t = ms(round.t_ms);
            for v in &round.vms {
                let u = v.usage;
                vm.execute(params![
                    t,
                    v.vm,
                    v.host,
                    u.cpu_cores,
                    u.memory_bytes,
                    u.disk_bytes_per_second,
                    u.network_bytes_per_second
                ])?;
            }
            for (name, l, vms) in &round.hosts {
                host.execute(params![
                    t,
                    name,
                    l.cpu_cores,
                    l.memory_bytes,
                    l.disk_bytes_per_second,
                    l.network_bytes_per_second,
                    *vms as f64
                ])?;
            }
            let i = &round.imbalance;
            let (r, l) = (i.total_demand, i.mean_load);
            point.execute(params![
                t,
                finite(i.std_dev),
                finite(i.normalized),
                finite(r.cpu_cores),
                finite(r.memory_bytes),
                finite(r.disk_bytes_per_second),
                finite(r.network_bytes_per_second),
                finite(l.cpu_cores),
                finite(l.memory_bytes),
                finite(l.disk_bytes_per_second),
                finite(l.network_bytes_per_second),
            ])?;
        }
    }
    tx.commit()
}

/// Whether the retention pass is due at `now_ms`, having last run at `*last_ms`
/// (updated when it is).
pub(crate) fn compaction_due(last_ms: &mut u64, now_ms: u64) -> bool {
    let due = now_ms >= last_ms.saturating_add(COMPACTION_EVERY_MS);
    if due {
        *last_ms = now_ms;
    }
    due
}

impl Store {
    /// Records one round: each VM's usage, each host's loads and VM count,
    /// the imbalance. With a database file the rows go to the history
    /// writer thread (the round does not wait for the disk; rounds queued
    /// meanwhile are written together in one transaction); in memory they
    /// are written at once. The retention pass runs once a minute.
    pub fn record_round(
        &self,
        t_ms: u64,
        vms: &[VmUsage],
        hosts: &[HostView],
        imbalance: &Imbalance,
    ) -> Result<(), StoreError> {
        let round = Round {
            t_ms,
            vms: vms.to_vec(),
            hosts: hosts
                .iter()
                .map(|h| (h.name.clone(), h.load, h.vm_count))
                .collect(),
            imbalance: *imbalance,
        };
        if let Some(sampler) = &self.sampler {
            return sampler.send(round).map_err(|kind| self.error(kind));
        }
        let mut w = self.writer();
        write_rounds(&mut w.conn, &[round]).map_err(|e| self.error(e))?;
        if compaction_due(&mut w.last_compaction_ms, t_ms) {
            compact(&mut w.conn, &self.history, t_ms).map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Waits until every round recorded so far is in the database.
    pub fn flush(&self) {
        if let Some(sampler) = &self.sampler {
            sampler.flush();
        }
    }

    /// Runs the retention pass now (the rounds run it once a minute),
    /// after the rounds recorded so far are written.
    pub fn compact(&self, now_ms: u64) -> Result<(), StoreError> {
        self.flush();
        let mut w = self.writer();
        w.last_compaction_ms = now_ms;
        compact(&mut w.conn, &self.history, now_ms).map_err(|e| self.error(e))
    }

    /// A VM's samples at or after `since_ms`: the newest `limit`, oldest first.
    pub fn vm_samples(
        &self,
        vm: &str,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<VmSample>, StoreError> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT * FROM (SELECT t_ms, cpu_cores, memory_bytes, disk_bytes_per_second,
                 network_bytes_per_second FROM vm_samples WHERE vm = ?1 AND t_ms >= ?2
                 ORDER BY t_ms DESC LIMIT ?3) ORDER BY t_ms",
            )?;
            let rows = q.query_map(params![vm, ms(since_ms), limit as i64], |r| {
                Ok(VmSample {
                    t_ms: ms_back(r.get(0)?),
                    cpu_cores: r.get(1)?,
                    memory_bytes: r.get(2)?,
                    disk_bytes_per_second: r.get(3)?,
                    network_bytes_per_second: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// A host's samples at or after `since_ms`: the newest `limit`, oldest first.
    pub fn host_samples(
        &self,
        host: &str,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<HostSample>, StoreError> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT * FROM (SELECT t_ms, cpu_load, memory_load, disk_load, network_load, vms
                 FROM host_samples WHERE host = ?1 AND t_ms >= ?2
                 ORDER BY t_ms DESC LIMIT ?3) ORDER BY t_ms",
            )?;
            let rows = q.query_map(params![host, ms(since_ms), limit as i64], |r| {
                let vms: f64 = r.get(5)?;
                Ok(HostSample {
                    t_ms: ms_back(r.get(0)?),
                    cpu_load: r.get(1)?,
                    memory_load: r.get(2)?,
                    disk_load: r.get(3)?,
                    network_load: r.get(4)?,
                    vms: vms.round().max(0.0) as u32,
                })
            })?;
            rows.collect()
        })
    }

    /// Imbalance points at or after `since_ms`: the newest `limit`, oldest first.
    pub fn imbalance_points(
        &self,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<ImbalancePoint>, StoreError> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT * FROM (SELECT t_ms, imbalance, normalized, r_cpu_cores, r_memory_bytes,
                 r_disk_bytes_per_second, r_network_bytes_per_second, l_cpu, l_memory, l_disk,
                 l_network FROM imbalance_points WHERE t_ms >= ?1
                 ORDER BY t_ms DESC LIMIT ?2) ORDER BY t_ms",
            )?;
            let rows = q.query_map(params![ms(since_ms), limit as i64], |r| {
                let res = |i: usize| -> rusqlite::Result<Resources> {
                    Ok(Resources::new(
                        r.get(i)?,
                        r.get(i + 1)?,
                        r.get(i + 2)?,
                        r.get(i + 3)?,
                    ))
                };
                let (rr, ll) = (res(3)?, res(7)?);
                Ok(ImbalancePoint {
                    t_ms: ms_back(r.get(0)?),
                    imbalance: r.get(1)?,
                    normalized: r.get(2)?,
                    r: rr.cpu_cores,
                    l: ll.cpu_cores,
                    r_per_resource: rr,
                    l_per_resource: ll,
                })
            })?;
            rows.collect()
        })
    }

    /// Where `vm` was last sampled, if it ever was.
    pub fn last_host_of(&self, vm: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        self.read(|c| {
            c.query_row(
                "SELECT host FROM vm_samples WHERE vm = ?1 ORDER BY t_ms DESC LIMIT 1",
                [vm],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Whether `host` was ever sampled.
    pub fn knows_host(&self, host: &str) -> Result<bool, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM host_samples WHERE host = ?1)",
                [host],
                |r| r.get(0),
            )
        })
    }
}

/// JSON and the averages have no room for NaN or infinity.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        -1.0
    }
}

/// The retention pass, in one transaction: rows older than their tier's
/// keep are folded into the next tier's buckets (weighted means, the
/// bucket's last host for a VM) or, past the last tier, deleted; then old
/// finished plans and old audit entries go.
pub(crate) fn compact(
    conn: &mut Connection,
    history: &super::HistoryConfig,
    now_ms: u64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut source_bucket_ms = 0u64;
    let mut source_keep_ms = history.raw_keep_seconds.saturating_mul(1000);
    for tier in &history.tiers {
        let bucket_ms = tier.bucket_seconds.saturating_mul(1000).max(1);
        // Only whole buckets: every source row of a bucket folded at once.
        let cutoff = now_ms.saturating_sub(source_keep_ms) / bucket_ms * bucket_ms;
        for t in TABLES {
            fold(&tx, t, source_bucket_ms, bucket_ms, cutoff)?;
        }
        source_bucket_ms = bucket_ms;
        source_keep_ms = tier.keep_seconds.saturating_mul(1000);
    }
    let cutoff = now_ms.saturating_sub(source_keep_ms);
    for t in TABLES {
        tx.execute(
            &format!("DELETE FROM {} WHERE bucket_ms = ?1 AND t_ms < ?2", t.name),
            params![ms(source_bucket_ms), ms(cutoff)],
        )?;
    }
    let plans_cutoff = now_ms.saturating_sub(history.plans_keep_seconds.saturating_mul(1000));
    tx.execute(
        "DELETE FROM plans WHERE updated_ms < ?1
         AND state NOT IN ('recommended', 'applying')",
        [ms(plans_cutoff)],
    )?;
    let audit_cutoff = now_ms.saturating_sub(history.audit_keep_seconds.saturating_mul(1000));
    tx.execute("DELETE FROM audit WHERE t_ms < ?1", [ms(audit_cutoff)])?;
    tx.commit()
}

/// Folds rows of `table` at resolution `from_ms` older than `cutoff` into
/// buckets of `to_ms`. Table and column names are constants of this module.
fn fold(
    tx: &rusqlite::Transaction<'_>,
    t: &Table,
    from_ms: u64,
    to_ms: u64,
    cutoff: u64,
) -> rusqlite::Result<()> {
    let key = if t.key.is_empty() {
        String::new()
    } else {
        format!("{}, ", t.key)
    };
    let last: String = t.last.iter().map(|c| format!("{c}, ")).collect();
    let values = t.values.join(", ");
    let means: Vec<String> = t
        .values
        .iter()
        .map(|c| format!("SUM({c} * rounds) / SUM(rounds) AS {c}"))
        .collect();
    // With exactly one max() in the query, SQLite takes the bare columns
    // (`last`) from the row holding the maximum: the bucket's last row.
    let sql = format!(
        "INSERT INTO {name} (t_ms, bucket_ms, {key}{last}{values}, rounds)
         SELECT b, ?2, {key}{last}{values}, n FROM (
             SELECT (t_ms / ?2) * ?2 AS b, {key}{last}MAX(t_ms) AS latest, {means}, SUM(rounds) AS n
             FROM {name} WHERE bucket_ms = ?1 AND t_ms < ?3 GROUP BY b{group})",
        name = t.name,
        means = means.join(", "),
        group = if t.key.is_empty() {
            String::new()
        } else {
            format!(", {}", t.key)
        },
    );
    tx.execute(&sql, params![ms(from_ms), ms(to_ms), ms(cutoff)])?;
    tx.execute(
        &format!("DELETE FROM {} WHERE bucket_ms = ?1 AND t_ms < ?2", t.name),
        params![ms(from_ms), ms(cutoff)],
    )?;
    Ok(())
}
