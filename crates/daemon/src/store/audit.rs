//! The audit log: who did what, when. `who` is the API caller (the name
//! given in the request's `by`, else `api`), `control-loop` for what the
//! daemon does on its own, `config` for changes of the config file seen
//! at start.

use super::{ms, ms_back, Store, StoreError};
use rusqlite::params;
use serde::Serialize;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When, ms since the Unix epoch (daemon clock).
    pub t_ms: u64,
    /// Who: the API caller, `control-loop` or `config`.
    pub who: String,
    /// What: `plan.apply`, `plan.reject`, `maintenance.enter`, ...
    pub action: String,
    /// On what: `plan 12`, `host-03`, ...
    pub target: String,
    /// Anything else worth keeping.
    pub detail: String,
}

impl Store {
    /// Appends an entry.
    pub fn audit(
        &self,
        t_ms: u64,
        who: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.writer()
            .conn
            .prepare_cached(
                "INSERT INTO audit (t_ms, who, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut q| q.execute(params![ms(t_ms), who, action, target, detail]))
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// The newest `limit` entries, oldest first.
    pub fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT * FROM (SELECT t_ms, who, action, target, detail, id FROM audit
                 ORDER BY id DESC LIMIT ?1) ORDER BY id",
            )?;
            let rows = q.query_map([limit as i64], |r| {
                Ok(AuditEntry {
                    t_ms: ms_back(r.get(0)?),
                    who: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    detail: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }
}
