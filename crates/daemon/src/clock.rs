//! Time for the daemon. Decisions never read a clock: the daemon asks a
//! [`Clock`] for "now" and passes it down. [`WallClock`] is the real one,
//! [`FakeClock`] the one tests move by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> u64;

    /// Seconds since the Unix epoch.
    fn now_seconds(&self) -> f64 {
        self.now_unix_ms() as f64 / 1000.0
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    ms: Arc<AtomicU64>,
}

impl FakeClock {
    /// A clock standing at `unix_ms`.
    pub fn at(unix_ms: u64) -> Self {
        Self {
            ms: Arc::new(AtomicU64::new(unix_ms)),
        }
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_unix_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let clock = FakeClock::at(1_000);
        let shared = clock.clone();
        assert_eq!(clock.now_unix_ms(), 1_000);
        shared.advance_ms(500);
        assert_eq!(clock.now_unix_ms(), 1_500);
        assert_eq!(clock.now_seconds(), 1.5);
        assert!(WallClock.now_unix_ms() > 1_600_000_000_000);
    }
}
