//! The database layout and its versions. `PRAGMA user_version` is the
//! number of migrations applied; `PRAGMA application_id` marks the file as
//! Keel's, so another program's SQLite file is refused instead of being
//! written into.

use rusqlite::Connection;

/// `PRAGMA application_id` of a Keel history database ("KEEL" in ASCII).
pub const APPLICATION_ID: i64 = 0x4B45_454C;

/// Migrations, oldest first; the schema version is how many are applied.
/// Never edit a released one: append a new one.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this Keel writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Version 1. Times are milliseconds since the Unix epoch on the daemon's
/// clock. In the sample tables `bucket_ms` is 0 for one round's sample and
/// otherwise the width of the bucket whose average the row holds (`t_ms` is
/// then the bucket's start) and `rounds` how many rounds it averages, so
/// coarser buckets are exact weighted means. JSON columns hold values the API shows as is.
const V1: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE vm_samples (
    t_ms INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    vm TEXT NOT NULL,
    host TEXT NOT NULL,
    cpu_cores REAL NOT NULL,
    memory_bytes REAL NOT NULL,
    disk_bytes_per_second REAL NOT NULL,
    network_bytes_per_second REAL NOT NULL,
    rounds INTEGER NOT NULL
);
CREATE INDEX vm_samples_by_vm ON vm_samples (vm, t_ms);
CREATE INDEX vm_samples_by_age ON vm_samples (bucket_ms, t_ms);
CREATE TABLE host_samples (
    t_ms INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    host TEXT NOT NULL,
    cpu_load REAL NOT NULL,
    memory_load REAL NOT NULL,
    disk_load REAL NOT NULL,
    network_load REAL NOT NULL,
    vms REAL NOT NULL,
    rounds INTEGER NOT NULL
);
CREATE INDEX host_samples_by_host ON host_samples (host, t_ms);
CREATE INDEX host_samples_by_age ON host_samples (bucket_ms, t_ms);
CREATE TABLE imbalance_points (
    t_ms INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    imbalance REAL NOT NULL,
    normalized REAL NOT NULL,
    r_cpu_cores REAL NOT NULL,
    r_memory_bytes REAL NOT NULL,
    r_disk_bytes_per_second REAL NOT NULL,
    r_network_bytes_per_second REAL NOT NULL,
    l_cpu REAL NOT NULL,
    l_memory REAL NOT NULL,
    l_disk REAL NOT NULL,
    l_network REAL NOT NULL,
    rounds INTEGER NOT NULL
);
CREATE INDEX imbalance_points_by_time ON imbalance_points (t_ms);
CREATE INDEX imbalance_points_by_age ON imbalance_points (bucket_ms, t_ms);
CREATE TABLE plans (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    trigger TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    driver_time_seconds REAL NOT NULL,
    imbalance_before TEXT NOT NULL,
    imbalance_after TEXT NOT NULL,
    benefit REAL NOT NULL,
    cost_seconds REAL NOT NULL,
    rules TEXT NOT NULL,
    unresolved TEXT NOT NULL,
    plan_seconds REAL NOT NULL
);
CREATE TABLE plan_moves (
    plan_id INTEGER NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    vm TEXT NOT NULL,
    from_host TEXT NOT NULL,
    to_host TEXT NOT NULL,
    wave INTEGER NOT NULL,
    reason TEXT NOT NULL,
    imbalance_reduction REAL NOT NULL,
    cost_seconds REAL NOT NULL,
    migrated_bytes REAL NOT NULL,
    PRIMARY KEY (plan_id, seq)
);
CREATE TABLE plan_transitions (
    plan_id INTEGER NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (plan_id, seq)
);
CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    plan_id INTEGER NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    vm TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    outcome TEXT CHECK (outcome IN ('done', 'failed', 'interrupted')),
    seconds REAL,
    downtime_ms REAL,
    error TEXT,
    UNIQUE (plan_id, seq)
);
CREATE INDEX actions_unfinished ON actions (finished_ms) WHERE finished_ms IS NULL;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    t_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

/// Version 2: what each planned move's decision used (JSON of
/// `keel_control::MoveInputs`; NULL for plans recorded before), and the
/// actions of one VM found without a scan (`GET /api/v1/actions?vm=`).
const V2: &str = "
ALTER TABLE plan_moves ADD COLUMN inputs TEXT;
CREATE INDEX actions_by_vm ON actions (vm, id);
";

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A newer Keel wrote the file.
    #[error("schema version {found} was written by a newer Keel (this one knows versions up to {SCHEMA_VERSION}); run that Keel, or move the file away to start a new history")]
    TooNew {
        /// The file's version.
        found: i64,
    },
    /// Another program's SQLite file.
    #[error(
        "not a Keel history database ({reason}); move it away or choose another data directory"
    )]
    Foreign {
        /// What gave it away.
        reason: String,
    },
}

/// Checks the file's version and applies the missing migrations, each in
/// its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app != 0 && app != APPLICATION_ID {
        return Err(SchemaError::Foreign {
            reason: format!("application_id {app:#x}"),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(SchemaError::TooNew { found: version });
    }
    if version == 0 {
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 {
            return Err(SchemaError::Foreign {
                reason: format!("{tables} tables but no Keel schema version"),
            });
        }
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; both values are numbers of ours.
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
            i + 1
        ))?;
        tx.commit()?;
    }
    Ok(())
}
