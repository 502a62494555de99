//! Batches: the unit of loading and acknowledgement, and the dataflow's timestamp.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A batch number. It is the timely timestamp of everything admitted into the batch:
/// a batch is loaded when the load operator's input frontier passes it, and its inputs
/// are acknowledged when the frontier after the load passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BatchId(pub u64);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch {}", self.0)
    }
}

/// When a batch closes: on the interval, or earlier when it holds enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Batches close on wall-clock boundaries that are multiples of this, so every
    /// worker of every process closes its batches at the same moments.
    pub interval: Duration,
    /// Close early once a worker's batch holds this many decoded messages.
    pub max_rows: u64,
    /// Close early once a worker's batch holds this many input bytes.
    pub max_bytes: u64,
}

/// One worker's batch clock.
///
/// Batch ids are milliseconds since the Unix epoch: a batch normally starts at a
/// multiple of the interval (the window), and a batch closed early by size is followed
/// by `id + 1`, `id + 2`, ... within the same window. Workers need no coordination to
/// agree: they all open window `w` at the same wall-clock moment (give or take clock
/// skew, which only delays the frontier), and ids are totally ordered.
#[derive(Debug, Clone)]
pub struct BatchClock {
    policy: BatchPolicy,
    interval_ms: u64,
    current: u64,
    rows: u64,
    bytes: u64,
}

impl BatchClock {
    pub fn new(policy: BatchPolicy, now_ms: u64) -> BatchClock {
        let interval_ms = (policy.interval.as_millis() as u64).max(1);
        BatchClock {
            policy,
            interval_ms,
            current: now_ms - now_ms % interval_ms,
            rows: 0,
            bytes: 0,
        }
    }

    pub fn current(&self) -> BatchId {
        BatchId(self.current)
    }

    /// Moves to the window containing `now_ms` if the current batch's window has ended.
    /// Returns whether the batch changed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let window = now_ms - now_ms % self.interval_ms;
        if window > self.current {
            self.open(window);
            true
        } else {
            false
        }
    }

    /// Counts admitted input toward the early-close limits.
    pub fn admit(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
    }

    /// Whether the current batch holds enough to close early.
    pub fn is_full(&self) -> bool {
        self.rows >= self.policy.max_rows || self.bytes >= self.policy.max_bytes
    }

    /// Closes the current batch early, if another id is left in this window.
    pub fn close_early(&mut self) -> bool {
        let next = self.current + 1;
        if next.is_multiple_of(self.interval_ms) {
            return false;
        }
        self.open(next);
        true
    }

    /// When the current window ends, in ms since the Unix epoch.
    pub fn window_end_ms(&self) -> u64 {
        self.current - self.current % self.interval_ms + self.interval_ms
    }

    fn open(&mut self, id: u64) {
        self.current = id;
        self.rows = 0;
        self.bytes = 0;
    }
}

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(interval_ms: u64) -> BatchPolicy {
        BatchPolicy {
            interval: Duration::from_millis(interval_ms),
            max_rows: 10,
            max_bytes: 1000,
        }
    }

    #[test]
    fn batches_follow_wall_clock_windows() {
        let mut clock = BatchClock::new(policy(500), 10_250);
        assert_eq!(clock.current(), BatchId(10_000));
        assert!(!clock.tick(10_499));
        assert!(clock.tick(10_500));
        assert_eq!(clock.current(), BatchId(10_500));
        assert_eq!(clock.window_end_ms(), 11_000);
        // Two workers starting at different moments agree on the window.
        assert_eq!(
            BatchClock::new(policy(500), 10_999).current(),
            clock.current()
        );
    }

    #[test]
    fn full_batches_close_early_within_the_window() {
        let mut clock = BatchClock::new(policy(500), 10_000);
        clock.admit(9, 0);
        assert!(!clock.is_full());
        clock.admit(1, 0);
        assert!(clock.is_full());
        assert!(clock.close_early());
        assert_eq!(clock.current(), BatchId(10_001));
        assert!(!clock.is_full());
        assert_eq!(clock.window_end_ms(), 10_500);
        clock.admit(0, 1000);
        assert!(clock.is_full());
        // The window moves on from an early-closed batch too.
        assert!(clock.tick(10_500));
        assert_eq!(clock.current(), BatchId(10_500));
    }

    #[test]
    fn no_early_close_past_the_window() {
        let mut clock = BatchClock::new(policy(2), 10);
        assert!(clock.close_early());
        assert_eq!(clock.current(), BatchId(11));
        assert!(!clock.close_early());
        assert_eq!(clock.current(), BatchId(11));
    }
}
