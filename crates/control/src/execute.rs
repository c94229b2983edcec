//! Acting on a plan: wave by wave, each wave only after what is left of
//! the plan passed the independent check against a fresh observation, each
//! move recorded as started before the driver is asked (through an
//! [`ActionRecorder`]: the daemon's is its SQLite history) and with its
//! outcome after, one structured log line per move.

use crate::check::{check_moves, PlanRefusal};
use crate::control_loop::{ControlLoop, Execution, MoveOutcome, NamedMove};
use keel_drivers::{Driver, MigrationRequest};

/// Where the loop records what it does, so a crash never repeats a move
/// unknowingly.
pub trait ActionRecorder {
    /// Move `seq` of the plan is about to start. An error means it must not
    /// run (its start could not be recorded); the message says why.
    fn begin(&mut self, seq: usize, planned: &NamedMove) -> Result<(), String>;

    /// Move `seq` ended as `outcome` says.
    fn finish(&mut self, seq: usize, outcome: &MoveOutcome);
}

/// Records nothing (the simulator, the lab, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecorder;

impl ActionRecorder for NoRecorder {
    fn begin(&mut self, _: usize, _: &NamedMove) -> Result<(), String> {
        Ok(())
    }

    fn finish(&mut self, _: usize, _: &MoveOutcome) {}
}

impl<D: Driver> ControlLoop<D> {
    /// Checks `moves` (what is left of a plan) against a fresh observation
    /// of the cluster, the rules in force and the current estimates, without
    /// feeding the estimator. `Ok` when checking is off.
    pub fn check_now(&mut self, moves: &[NamedMove]) -> Result<(), PlanRefusal> {
        if !self.check_before_acting || moves.is_empty() {
            return Ok(());
        }
        let observation = self
            .driver
            .observe()
            .map_err(|e| PlanRefusal::Unobserved(e.to_string()))?;
        let cluster = self
            .cluster_from(&observation)
            .map_err(|e| PlanRefusal::Unobserved(e.to_string()))?;
        let rules = self
            .effective_rules()
            .compile(&cluster)
            .map_err(|e| PlanRefusal::Rules(e.to_string()))?;
        check_moves(&cluster, &rules, moves, self.limits)
    }

    /// Executes `moves` wave by wave, each wave after the plan's remainder
    /// passed [`ControlLoop::check_now`]; a refusal stops the plan there.
    /// A driver that runs a wave's migrations at once gets the wave whole,
    /// others one move at a time, so a move is recorded as started only
    /// just before it really starts. A failed move is recorded and the rest
    /// go on (each names its own source, so a move whose VM is no longer
    /// there fails on its own).
    pub fn execute_recorded(
        &mut self,
        moves: &[NamedMove],
        recorder: &mut dyn ActionRecorder,
    ) -> Execution {
        let mut outcomes = Vec::with_capacity(moves.len());
        let mut done = 0;
        let concurrent = self.driver.runs_waves_concurrently();
        for wave in waves(moves) {
            if let Err(refusal) = self.check_now(&moves[done..]) {
                tracing::warn!(
                    target: "keel::plan",
                    reason = %refusal,
                    moves_left = moves.len() - done,
                    "plan refused before its next wave"
                );
                return Execution {
                    outcomes,
                    refused: Some(refusal),
                };
            }
            let batches: Vec<&[NamedMove]> = if concurrent {
                vec![wave]
            } else {
                wave.chunks(1).collect()
            };
            for batch in batches {
                let first_seq = done;
                let mut slots: Vec<Option<MoveOutcome>> = Vec::with_capacity(batch.len());
                let mut to_run = Vec::with_capacity(batch.len());
                for (offset, m) in batch.iter().enumerate() {
                    match recorder.begin(first_seq + offset, m) {
                        Ok(()) => {
                            slots.push(None);
                            to_run.push(m.clone());
                        }
                        Err(why) => slots.push(Some(not_run(m, &why))),
                    }
                }
                let mut results = self.execute_wave(&to_run).into_iter();
                for (offset, slot) in slots.into_iter().enumerate() {
                    let outcome = match slot {
                        Some(not_run) => not_run,
                        None => match results.next() {
                            Some(outcome) => {
                                recorder.finish(first_seq + offset, &outcome);
                                outcome
                            }
                            None => continue,
                        },
                    };
                    outcomes.push(outcome);
                }
                done += batch.len();
            }
        }
        Execution {
            outcomes,
            refused: None,
        }
    }

    /// Executes `moves`, checked, recording nothing.
    pub fn execute_checked(&mut self, moves: &[NamedMove]) -> Execution {
        self.execute_recorded(moves, &mut NoRecorder)
    }

    /// Executes `moves` (checked, see [`ControlLoop::execute_checked`]) and
    /// returns what ran.
    pub fn execute(&mut self, moves: &[NamedMove]) -> Vec<MoveOutcome> {
        self.execute_checked(moves).outcomes
    }

    /// Executes the moves of one wave through the driver (at once where
    /// the driver can) and follows each to its end. Unchecked and
    /// unrecorded: [`ControlLoop::execute_recorded`] does both.
    pub fn execute_wave(&mut self, wave: &[NamedMove]) -> Vec<MoveOutcome> {
        let requests: Vec<MigrationRequest<'_>> = wave
            .iter()
            .map(|m| MigrationRequest {
                vm: &m.vm,
                from: &m.from,
                to: &m.to,
                max_bandwidth_bytes_per_second: self.migration_bandwidth,
                timeout: self.migration_timeout,
            })
            .collect();
        let results = self.driver.migrate_wave(&requests);
        let now = self.previous.as_ref().map_or(0.0, |o| o.time_seconds);
        wave.iter()
            .zip(results)
            .map(|(m, outcome)| {
                if outcome.is_ok() {
                    self.last_migrated.insert(m.vm.clone(), now);
                }
                let outcome = MoveOutcome {
                    vm: m.vm.clone(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    wave: m.wave,
                    seconds: outcome.as_ref().ok().map(|o| o.seconds),
                    downtime_ms: outcome.as_ref().ok().and_then(|o| o.downtime_ms),
                    error: outcome.err().map(|e| e.to_string()),
                };
                log_move(m, &outcome);
                outcome
            })
            .collect()
    }
}

fn not_run(m: &NamedMove, why: &str) -> MoveOutcome {
    MoveOutcome {
        vm: m.vm.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        wave: m.wave,
        seconds: None,
        downtime_ms: None,
        error: Some(format!("not executed: {why}")),
    }
}

/// One structured log line per move, with the facts of its decision.
fn log_move(m: &NamedMove, outcome: &MoveOutcome) {
    let (cpu, memory, samples) = m.inputs.as_ref().map_or((0.0, 0.0, 0), |i| {
        (i.demand.cpu_cores, i.demand.memory_bytes, i.samples)
    });
    tracing::info!(
        target: "keel::move",
        vm = %m.vm,
        from = %m.from,
        to = %m.to,
        wave = m.wave,
        reason = ?m.reason,
        demand_cpu_cores = cpu,
        demand_memory_bytes = memory,
        samples,
        imbalance_reduction = m.imbalance_reduction,
        cost_seconds = m.cost_seconds,
        migrated_bytes = m.migrated_bytes,
        seconds = outcome.seconds,
        error = outcome.error.as_deref(),
        "migration"
    );
}

/// The moves split into their waves: runs of consecutive moves with the
/// same wave number (plans list moves wave by wave).
pub fn waves(moves: &[NamedMove]) -> impl Iterator<Item = &[NamedMove]> {
    moves.chunk_by(|a, b| a.wave == b.wave)
}
