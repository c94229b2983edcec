//! Plans (with their moves and state transitions) and actions: one row per
//! migration, written as `started` before the driver is asked and given
//! its outcome after. An action with no outcome is one that was in flight
//! when the daemon died; [`crate::Service::warm_up`] settles it against the
//! observed placement instead of repeating it. `UNIQUE (plan_id, seq)`
//! makes a second start of the same move fail in the database itself.

use super::{ms, ms_back, Store, StoreError, StoreErrorKind};
use crate::control::{MoveOutcome, NamedMove};
use crate::plans::{PlanRecord, PlanState, Transition, Trigger, UnresolvedMove};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    /// The migration succeeded (or, after a restart, the VM was found on
    /// its target).
    Done,
    /// The driver reported an error.
    Failed,
    /// The daemon died while it ran and the VM was not on its target at
    /// the restart.
    Interrupted,
}

impl ActionOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Done, Self::Failed, Self::Interrupted]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One migration Keel started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// Row id, increasing.
    pub id: u64,
    /// The plan it belongs to.
    pub plan_id: u64,
    /// The move's index in the plan.
    pub seq: u32,
    /// The VM.
    pub vm: String,
    /// Source host.
    pub source: String,
    /// Target host.
    pub target: String,
    /// When it started, ms since the Unix epoch.
    pub started_ms: u64,
    /// When it ended (`None`: in flight, or the daemon died meanwhile).
    pub finished_ms: Option<u64>,
    /// How it ended.
    pub outcome: Option<ActionOutcome>,
    /// Seconds the migration took, if it succeeded.
    pub seconds: Option<f64>,
    /// Downtime, ms, if reported.
    pub downtime_ms: Option<f64>,
    /// The error, if it failed or was interrupted.
    pub error: Option<String>,
}

fn json<T: Serialize>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    column: usize,
    s: &str,
) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn bad_value(column: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

pub(super) const ACTION_COLUMNS: &str =
    "id, plan_id, seq, vm, source, target, started_ms, finished_ms, \
     outcome, seconds, downtime_ms, error";

pub(super) fn action_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Action> {
    let outcome: Option<String> = r.get(8)?;
    let outcome = match outcome {
        None => None,
        Some(s) => Some(ActionOutcome::parse(&s).ok_or_else(|| bad_value(8, "outcome", &s))?),
    };
    Ok(Action {
        id: ms_back(r.get(0)?),
        plan_id: ms_back(r.get(1)?),
        seq: r.get(2)?,
        vm: r.get(3)?,
        source: r.get(4)?,
        target: r.get(5)?,
        started_ms: ms_back(r.get(6)?),
        finished_ms: r.get::<_, Option<i64>>(7)?.map(ms_back),
        outcome,
        seconds: r.get(9)?,
        downtime_ms: r.get(10)?,
        error: r.get(11)?,
    })
}

impl Store {
    /// Writes a plan as it is now: its row (state, times) and any moves
    /// and transitions not yet stored. Idempotent.
    pub fn save_plan(&self, p: &PlanRecord) -> Result<(), StoreError> {
        let mut w = self.writer();
        let r = (|| {
            let tx = w
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO plans (id, state, trigger, created_ms, updated_ms, driver_time_seconds,
                 imbalance_before, imbalance_after, benefit, cost_seconds, rules, unresolved,
                 plan_seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state,
                 updated_ms = excluded.updated_ms",
            )?
            .execute(params![
                ms(p.id),
                p.state.as_str(),
                p.trigger.as_str(),
                ms(p.created_unix_ms),
                ms(p.updated_unix_ms),
                p.driver_time_seconds,
                json(&p.imbalance_before)?,
                json(&p.imbalance_after)?,
                p.benefit,
                p.cost_seconds,
                json(&p.rules)?,
                json(&p.unresolved)?,
                p.plan_seconds,
            ])?;
            let mut mv = tx.prepare_cached(
                "INSERT OR IGNORE INTO plan_moves (plan_id, seq, vm, from_host, to_host, wave,
                 reason, imbalance_reduction, cost_seconds, migrated_bytes, inputs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for (seq, m) in p.moves.iter().enumerate() {
                mv.execute(params![
                    ms(p.id),
                    seq as i64,
                    m.vm,
                    m.from,
                    m.to,
                    m.wave,
                    json(&m.reason)?,
                    m.imbalance_reduction,
                    m.cost_seconds,
                    m.migrated_bytes,
                    m.inputs.as_ref().map(json).transpose()?
                ])?;
            }
            let mut tr = tx.prepare_cached(
                "INSERT OR IGNORE INTO plan_transitions (plan_id, seq, state, at_ms, note)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (seq, t) in p.history.iter().enumerate() {
                tr.execute(params![
                    ms(p.id),
                    seq as i64,
                    t.state.as_str(),
                    ms(t.at_unix_ms),
                    t.note
                ])?;
            }
            drop((mv, tr));
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('last_plan_id', ?1)
                 ON CONFLICT (key) DO UPDATE SET
                 value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                [ms(p.id)],
            )?;
            tx.commit()
        })();
        r.map_err(|e| self.error(e))
    }

    /// The newest `max` plans, oldest first, with their outcomes (the
    /// finished actions), and the highest plan id ever stored (0: none).
    pub fn load_plans(&self, max: usize) -> Result<(Vec<PlanRecord>, u64), StoreError> {
        self.read(|c| {
            let last: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'last_plan_id'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let last = last.and_then(|v| v.parse().ok()).unwrap_or(0u64);
            let mut q = c.prepare(
                "SELECT * FROM (SELECT id, state, trigger, created_ms, updated_ms,
                 driver_time_seconds, imbalance_before, imbalance_after, benefit, cost_seconds,
                 rules, unresolved, plan_seconds FROM plans ORDER BY id DESC LIMIT ?1)
                 ORDER BY id",
            )?;
            let rows = q.query_map([max as i64], plan_row)?;
            let mut plans = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            for p in &mut plans {
                fill_plan(c, p)?;
            }
            Ok((plans, last))
        })
    }

    /// Records that move `seq` of plan `plan_id` starts now, before the
    /// driver is asked. Fails (and the move must not run) if it was
    /// started before.
    pub fn begin_action(
        &self,
        plan_id: u64,
        seq: usize,
        m: &NamedMove,
        started_ms: u64,
    ) -> Result<(), StoreError> {
        self.writer()
            .conn
            .prepare_cached(
                "INSERT INTO actions (plan_id, seq, vm, source, target, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut q| {
                q.execute(params![
                    ms(plan_id),
                    seq as i64,
                    m.vm,
                    m.from,
                    m.to,
                    ms(started_ms)
                ])
            })
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Records how move `seq` of plan `plan_id` ended.
    pub fn finish_action(
        &self,
        plan_id: u64,
        seq: usize,
        finished_ms: u64,
        outcome: &MoveOutcome,
    ) -> Result<(), StoreError> {
        let state = if outcome.error.is_none() {
            ActionOutcome::Done
        } else {
            ActionOutcome::Failed
        };
        self.settle(
            plan_id,
            seq,
            finished_ms,
            state,
            outcome.seconds,
            outcome.downtime_ms,
            outcome.error.as_deref(),
        )
    }

    /// Gives an action its outcome (after the migration, or at a restart).
    #[allow(clippy::too_many_arguments)] // one per column
    pub fn settle(
        &self,
        plan_id: u64,
        seq: usize,
        finished_ms: u64,
        outcome: ActionOutcome,
        seconds: Option<f64>,
        downtime_ms: Option<f64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed = self
            .writer()
            .conn
            .prepare_cached(
                "UPDATE actions SET finished_ms = ?3, outcome = ?4, seconds = ?5,
                 downtime_ms = ?6, error = ?7 WHERE plan_id = ?1 AND seq = ?2",
            )
            .and_then(|mut q| {
                q.execute(params![
                    ms(plan_id),
                    seq as i64,
                    ms(finished_ms),
                    outcome.as_str(),
                    seconds,
                    downtime_ms,
                    error
                ])
            })
            .map_err(|e| self.error(e))?;
        if changed == 0 {
            return Err(self.error(StoreErrorKind::Data(format!(
                "no action {seq} of plan {plan_id} to settle"
            ))));
        }
        Ok(())
    }

    /// Actions started and never finished: in flight when the daemon died.
    pub fn unfinished_actions(&self) -> Result<Vec<Action>, StoreError> {
        self.read(|c| {
            let mut q = c.prepare(&format!(
                "SELECT {ACTION_COLUMNS} FROM actions WHERE finished_ms IS NULL ORDER BY id"
            ))?;
            let rows = q.query_map([], action_row)?;
            rows.collect()
        })
    }

    /// The newest `limit` actions, oldest first.
    pub fn actions(&self, limit: usize) -> Result<Vec<Action>, StoreError> {
        self.read(|c| {
            let mut q = c.prepare_cached(&format!(
                "SELECT * FROM (SELECT {ACTION_COLUMNS} FROM actions ORDER BY id DESC LIMIT ?1)
                 ORDER BY id"
            ))?;
            let rows = q.query_map([limit as i64], action_row)?;
            rows.collect()
        })
    }
}

fn plan_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PlanRecord> {
    let state: String = r.get(1)?;
    let trigger: String = r.get(2)?;
    Ok(PlanRecord {
        id: ms_back(r.get(0)?),
        state: PlanState::parse(&state).ok_or_else(|| bad_value(1, "plan state", &state))?,
        trigger: Trigger::parse(&trigger).ok_or_else(|| bad_value(2, "trigger", &trigger))?,
        created_unix_ms: ms_back(r.get(3)?),
        updated_unix_ms: ms_back(r.get(4)?),
        driver_time_seconds: r.get(5)?,
        imbalance_before: from_json(6, &r.get::<_, String>(6)?)?,
        imbalance_after: from_json(7, &r.get::<_, String>(7)?)?,
        benefit: r.get(8)?,
        cost_seconds: r.get(9)?,
        rules: from_json(10, &r.get::<_, String>(10)?)?,
        moves: Vec::new(),
        unresolved: from_json::<Vec<UnresolvedMove>>(11, &r.get::<_, String>(11)?)?,
        outcomes: Vec::new(),
        history: Vec::new(),
        plan_seconds: r.get(12)?,
    })
}

/// Reads a plan's moves, transitions and outcomes.
fn fill_plan(c: &Connection, p: &mut PlanRecord) -> rusqlite::Result<()> {
    let id = ms(p.id);
    let mut q = c.prepare_cached(
        "SELECT vm, from_host, to_host, wave, reason, imbalance_reduction, cost_seconds,
         migrated_bytes, inputs FROM plan_moves WHERE plan_id = ?1 ORDER BY seq",
    )?;
    p.moves = q
        .query_map([id], |r| {
            Ok(NamedMove {
                vm: r.get(0)?,
                from: r.get(1)?,
                to: r.get(2)?,
                wave: r.get(3)?,
                reason: from_json(4, &r.get::<_, String>(4)?)?,
                imbalance_reduction: r.get(5)?,
                cost_seconds: r.get(6)?,
                migrated_bytes: r.get(7)?,
                inputs: r
                    .get::<_, Option<String>>(8)?
                    .map(|s| from_json(8, &s))
                    .transpose()?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut q = c.prepare_cached(
        "SELECT state, at_ms, note FROM plan_transitions WHERE plan_id = ?1 ORDER BY seq",
    )?;
    p.history = q
        .query_map([id], |r| {
            let state: String = r.get(0)?;
            Ok(Transition {
                state: PlanState::parse(&state).ok_or_else(|| bad_value(0, "state", &state))?,
                at_unix_ms: ms_back(r.get(1)?),
                note: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut q = c.prepare_cached(&format!(
        "SELECT {ACTION_COLUMNS} FROM actions WHERE plan_id = ?1 AND finished_ms IS NOT NULL
         ORDER BY seq"
    ))?;
    let actions = q
        .query_map([id], action_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    p.outcomes = actions
        .into_iter()
        .map(|a| {
            let wave = p.moves.get(a.seq as usize).map_or(0, |m| m.wave);
            MoveOutcome {
                vm: a.vm,
                from: a.source,
                to: a.target,
                wave,
                seconds: a.seconds,
                downtime_ms: a.downtime_ms,
                error: a.error,
            }
        })
        .collect();
    Ok(())
}
