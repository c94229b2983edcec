//! The daemon's history in an embedded SQLite database (`<data_dir>/keel.db`,
//! WAL journal, foreign keys on): samples per VM and per host each round,
//! imbalance points, plans with their moves and state transitions, the
//! actions (one per migration) and an audit log of who did what.
//!
//! Every method is synchronous; the daemon calls them from blocking
//! threads (the control round and the API's blocking tasks), never on the
//! async reactor. Samples go to a writer thread of their own (one
//! transaction per round, or per batch of queued rounds), so a control
//! round does not wait for the disk; plans, actions and the audit log are
//! written synchronously on another connection; reads use a third, which
//! WAL lets run while a write is in progress.
//!
//! Modules: [`schema`] (layout, versions), [`samples`] (samples, imbalance,
//! retention and downsampling), [`plans`] (plans and actions), [`audit`].

pub mod audit;
pub mod plans;
mod sampler;
pub mod samples;
pub mod schema;
pub mod why;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use audit::AuditEntry;
pub use plans::{Action, ActionOutcome};
pub use samples::{HostSample, ImbalancePoint, VmSample};
pub use why::{ActionWhy, MoveDecision, PlanContext};

/// File name of the database in the data directory.
pub const DB_FILE: &str = "keel.db";

/// One downsampling tier: averages over `bucket_seconds`, kept `keep_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryTier {
    /// Width of one averaged bucket, seconds.
    pub bucket_seconds: u64,
    /// How long buckets of this tier are kept, seconds (counted from now).
    pub keep_seconds: u64,
}

/// Retention of the history: the `[history]` section of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Every round's samples are kept this long, seconds (default 3600).
    pub raw_keep_seconds: u64,
    /// Then averages, finer tiers first (default: 1-minute averages for
    /// 24 h, then 10-minute averages for 30 days). Empty: raw samples are
    /// deleted after `raw_keep_seconds`.
    pub tiers: Vec<HistoryTier>,
    /// Finished plans and their actions are kept this long, seconds
    /// (default 90 days).
    pub plans_keep_seconds: u64,
    /// Audit entries are kept this long, seconds (default 365 days).
    pub audit_keep_seconds: u64,
}

const DAY_SECONDS: u64 = 86_400;

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            raw_keep_seconds: 3_600,
            tiers: vec![
                HistoryTier {
                    bucket_seconds: 60,
                    keep_seconds: DAY_SECONDS,
                },
                HistoryTier {
                    bucket_seconds: 600,
                    keep_seconds: 30 * DAY_SECONDS,
                },
            ],
            plans_keep_seconds: 90 * DAY_SECONDS,
            audit_keep_seconds: 365 * DAY_SECONDS,
        }
    }
}

impl HistoryConfig {
    /// Checks what serde cannot: each tier coarser than the one before (a
    /// whole multiple of it) and kept longer. Returns the offending setting
    /// and what it must be.
    pub fn check(&self) -> Result<(), (String, String, &'static str)> {
        if self.raw_keep_seconds == 0 {
            return Err((
                "history.raw_keep_seconds".into(),
                "0".into(),
                "at least 1 second",
            ));
        }
        let mut bucket = 0;
        let mut keep = self.raw_keep_seconds;
        for (i, tier) in self.tiers.iter().enumerate() {
            let ok_bucket =
                tier.bucket_seconds > bucket && (bucket == 0 || tier.bucket_seconds % bucket == 0);
            if !ok_bucket {
                return Err((
                    format!("history.tiers[{i}].bucket_seconds"),
                    tier.bucket_seconds.to_string(),
                    "more than the tier before, and a whole multiple of it",
                ));
            }
            if tier.keep_seconds <= keep {
                return Err((
                    format!("history.tiers[{i}].keep_seconds"),
                    tier.keep_seconds.to_string(),
                    "longer than the tier before (or raw_keep_seconds)",
                ));
            }
            bucket = tier.bucket_seconds;
            keep = tier.keep_seconds;
        }
        Ok(())
    }
}

/// What went wrong with the history database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// SQLite failed (the message is SQLite's).
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file is not one this Keel can use.
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    /// Creating the data directory failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A stored value does not parse (the file was edited or damaged).
    #[error("bad stored value: {0}")]
    Data(String),
    /// The file or its directory cannot be used (what and why).
    #[error("{0}")]
    Unusable(String),
}

/// An error of the history database, naming its file.
#[derive(Debug, thiserror::Error)]
#[error("history database {path}: {kind}")]
pub struct StoreError {
    /// The database file (`:memory:` for an in-memory one).
    pub path: String,
    /// What went wrong.
    pub kind: StoreErrorKind,
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    /// Daemon clock at the last retention pass, ms.
    pub(crate) last_compaction_ms: u64,
}

/// The history database.
pub struct Store {
    path: String,
    writer: Mutex<Writer>,
    /// Read connection; `None` in memory (reads then use the writer's).
    reader: Option<Mutex<Connection>>,
    /// The writer thread of samples; `None` in memory (written at once).
    sampler: Option<sampler::Sampler>,
    history: HistoryConfig,
}

fn setup(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // NORMAL is durable across a crash of the process (what SIGKILL does);
    // only a power loss may lose the last transactions in WAL mode.
    conn.pragma_update(None, "synchronous", "NORMAL")
}

impl Store {
    /// Opens (or creates) `<data_dir>/keel.db`, creating the directory.
    pub fn open_in(data_dir: &Path, history: HistoryConfig) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        let err = |kind: StoreErrorKind| StoreError {
            path: path.display().to_string(),
            kind,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| {
            err(StoreErrorKind::Unusable(format!(
                "creating the directory {}: {e}",
                data_dir.display()
            )))
        })?;
        Self::open(&path, history)
    }

    /// Opens (or creates) the database at `path`: WAL, foreign keys on,
    /// schema checked and brought up to date. A file from a newer Keel, or
    /// not a Keel database, is refused with an error naming it.
    pub fn open(path: &Path, history: HistoryConfig) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let err = |kind: StoreErrorKind| StoreError {
            path: name.clone(),
            kind,
        };
        let sql = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => err(StoreErrorKind::Unusable(format!(
                "damaged, or not SQLite ({e}); move it away to start a new history"
            ))),
            _ => err(e.into()),
        };
        create_private(path)
            .map_err(|e| err(StoreErrorKind::Unusable(format!("creating the file: {e}"))))?;
        let mut conn = Connection::open(path).map_err(sql)?;
        setup(&conn).map_err(sql)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(err(StoreErrorKind::Unusable(format!(
                "journal mode {mode:?}: WAL is needed (is the file on a network filesystem?)"
            ))));
        }
        schema::migrate(&mut conn).map_err(|e| err(e.into()))?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        reader.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        let samples = Connection::open(path).map_err(sql)?;
        setup(&samples).map_err(sql)?;
        let sampler = sampler::Sampler::start(samples, history.clone(), name.clone())
            .map_err(|e| err(e.into()))?;
        Ok(Self {
            path: name,
            writer: Mutex::new(Writer {
                conn,
                last_compaction_ms: 0,
            }),
            reader: Some(Mutex::new(reader)),
            sampler: Some(sampler),
            history,
        })
    }

    /// A database in memory, for a daemon without a data directory and for
    /// tests: the same schema, gone at exit.
    pub fn in_memory(history: HistoryConfig) -> Result<Self, StoreError> {
        let err = |kind: StoreErrorKind| StoreError {
            path: ":memory:".into(),
            kind,
        };
        let mut conn = Connection::open_in_memory().map_err(|e| err(e.into()))?;
        setup(&conn).map_err(|e| err(e.into()))?;
        schema::migrate(&mut conn).map_err(|e| err(e.into()))?;
        Ok(Self {
            path: ":memory:".into(),
            writer: Mutex::new(Writer {
                conn,
                last_compaction_ms: 0,
            }),
            reader: None,
            sampler: None,
            history,
        })
    }

    /// The database file (`:memory:` in memory).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The retention settings.
    pub fn history(&self) -> &HistoryConfig {
        &self.history
    }

    pub(crate) fn error(&self, kind: impl Into<StoreErrorKind>) -> StoreError {
        StoreError {
            path: self.path.clone(),
            kind: kind.into(),
        }
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the read connection (the writer's in memory).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let r = match &self.reader {
            Some(reader) => f(&reader.lock().unwrap_or_else(|e| e.into_inner())),
            None => f(&self.writer().conn),
        };
        r.map_err(|e| self.error(e))
    }

    /// Copies the write-ahead log into the database file and empties it
    /// (SQLite does this on its own every 1000 pages; at exit it is tidy).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.flush();
        self.writer()
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| self.error(e))
    }

    /// A value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        self.read(|c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
    }

    /// Sets a value of the `meta` table.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.writer()
            .conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }
}

/// Creates an empty database file readable by its owner only, if there is
/// none (SQLite gives its -wal and -shm files the same mode): the history
/// names every VM and host and who did what.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Milliseconds as SQLite's signed integer (saturating; no clock reaches it).
pub(crate) fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// A stored millisecond count back (negative values, never written, as 0).
pub(crate) fn ms_back(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

#[cfg(test)]
mod tests;
