//! Parsing many files on all cores, with the errors of a sequential loop.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crate::error::{Result, TraceLoadError};

/// Runs `work` on every job that `produce` emits, on up to `available_parallelism`
/// threads, and returns the results in emission order.
///
/// On failure the error returned is the one a sequential loop would have met
/// first: that of the earliest failing job, or the producer's own if it comes
/// before. Once a job fails, later jobs are skipped and the producer is stopped.
pub(crate) fn map_in_parallel<J: Send, T: Send>(
    produce: impl FnOnce(&mut dyn FnMut(J) -> Result<()>) -> Result<()>,
    work: impl Fn(J) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let workers = thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(8);
    let first_failure = AtomicUsize::new(usize::MAX);
    let (tx, rx) = sync_channel::<(usize, J)>(workers);
    // Shared by the workers only: if they all die, sending fails instead of blocking.
    let rx = Arc::new(Mutex::new(rx));
    thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = Arc::clone(&rx);
                let (work, first_failure) = (&work, &first_failure);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok((i, job)) = next else { break };
                        if i > first_failure.load(Ordering::Relaxed) {
                            continue;
                        }
                        let result = work(job);
                        if result.is_err() {
                            first_failure.fetch_min(i, Ordering::Relaxed);
                        }
                        done.push((i, result));
                    }
                    done
                })
            })
            .collect();
        drop(rx);

        let mut emitted = 0;
        let mut stopped = false;
        let produced = {
            let mut emit = |job: J| -> Result<()> {
                if first_failure.load(Ordering::Relaxed) < emitted
                    || tx.send((emitted, job)).is_err()
                {
                    stopped = true;
                    return Err(TraceLoadError::BadPacked("stopped".into()));
                }
                emitted += 1;
                Ok(())
            };
            produce(&mut emit)
        };
        drop(tx);

        let mut results: Vec<(usize, Result<T>)> = Vec::with_capacity(emitted);
        for handle in handles {
            match handle.join() {
                Ok(done) => results.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        if let Err(e) = produced {
            if !stopped {
                results.push((emitted, Err(e)));
            }
        }
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(i: usize) -> TraceLoadError {
        TraceLoadError::NoSamples {
            path: i.to_string().into(),
        }
    }

    fn failed_at(r: Result<Vec<usize>>) -> String {
        match r.unwrap_err() {
            TraceLoadError::NoSamples { path } => path.display().to_string(),
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn keeps_order_and_reports_the_earliest_error() {
        let all = map_in_parallel(|emit| (0..500).try_for_each(&mut *emit), |i| Ok(i * 2)).unwrap();
        assert_eq!(all, (0..500).map(|i| i * 2).collect::<Vec<_>>());

        let r = map_in_parallel(
            |emit| (0..500).try_for_each(&mut *emit),
            |i| if i % 100 == 37 { Err(fail(i)) } else { Ok(i) },
        );
        assert_eq!(failed_at(r), "37");

        // The producer's error counts where it happens.
        let r = map_in_parallel(
            |emit| {
                (0..10).try_for_each(&mut *emit)?;
                Err(fail(1000))
            },
            |i| if i == 20 { Err(fail(i)) } else { Ok(i) },
        );
        assert_eq!(failed_at(r), "1000");
        let r = map_in_parallel(
            |emit| {
                (0..10).try_for_each(&mut *emit)?;
                Err(fail(1000))
            },
            |i| if i == 3 { Err(fail(i)) } else { Ok(i) },
        );
        assert_eq!(failed_at(r), "3");
        assert!(map_in_parallel(|_| Ok(()), |i: usize| Ok(i))
            .unwrap()
            .is_empty());
    }
}
