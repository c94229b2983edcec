//! The history writer thread: samples reach the database through a channel
//! so the control round never waits for the disk. Rounds that queue up
//! while a write is in progress are written together in one transaction:
//! with many VMs each round dirties one index page per VM, and batching
//! spreads that cost over the batch. Plans, actions and the audit log are
//! not written here: they are written synchronously (an action must be in
//! the database before its migration starts).

use super::samples::{compact, compaction_due, write_rounds, Round};
use super::{HistoryConfig, StoreErrorKind};
use rusqlite::Connection;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Most rounds written in one transaction.
const MAX_BATCH: usize = 64;

enum Job {
    Round(Round),
    Flush(mpsc::Sender<()>),
}

/// The thread and its channel; dropping it writes what is queued and
/// joins the thread.
pub(crate) struct Sampler {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts the thread on its own connection to the database.
    pub(crate) fn start(
        conn: Connection,
        history: HistoryConfig,
        path: String,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("keel-history".into())
            .spawn(move || run(conn, &history, &path, &rx))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a round.
    pub(crate) fn send(&self, round: Round) -> Result<(), StoreErrorKind> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(Job::Round(round)).ok())
            .ok_or_else(|| StoreErrorKind::Unusable("the history writer thread has stopped".into()))
    }

    /// Waits until every round queued before this call is written.
    pub(crate) fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if let Some(tx) = &self.tx {
            if tx.send(Job::Flush(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(mut conn: Connection, history: &HistoryConfig, path: &str, rx: &mpsc::Receiver<Job>) {
    let mut last_compaction_ms = 0;
    while let Ok(first) = rx.recv() {
        let mut rounds = Vec::new();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Round(r) => rounds.push(r),
                Job::Flush(done) => waiting.push(done),
            }
            next = if rounds.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if let Some(newest) = rounds.last().map(Round::t_ms) {
            if let Err(e) = write_rounds(&mut conn, &rounds) {
                tracing::warn!(path, error = %e, rounds = rounds.len(), "writing samples to the history failed");
            }
            if compaction_due(&mut last_compaction_ms, newest) {
                if let Err(e) = compact(&mut conn, history, newest) {
                    tracing::warn!(path, error = %e, "the history's retention pass failed");
                }
            }
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}
