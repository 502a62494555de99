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
    /// Close early once a worker's batch holds this many bytes of decoded input (after
    /// decompression).
    pub max_bytes: u64,
}

/// How many batches at the start of a run close early at a fraction of the size limits:
/// the first at an eighth, then a quarter, then a half (see [`BatchClock::is_full`]).
pub const RAMP_BATCHES: u32 = 3;

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
    /// Batches opened after the first: drives the start-up ramp.
    opened: u32,
    /// Batches closed since the last [`BatchClock::take_closed`], with their fill.
    closed: Vec<(BatchId, f64)>,
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
            opened: 0,
            closed: Vec::new(),
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

    /// Counts decoded input (messages, and bytes after decompression) toward the
    /// early-close limits.
    pub fn admit(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
    }

    /// Whether the current batch holds enough to close early.
    ///
    /// The first [`RAMP_BATCHES`] batches of a run close at an eighth, a quarter and a
    /// half of the limits. A backlog present at start (a restart, a queue that built up)
    /// otherwise leaves the warehouse idle while every worker decodes a whole batch:
    /// with the warehouse on a core of its own that was a fifth of a run of 300k events
    /// (docs/decisions/0004). Later batches are whole, so the ramp
    /// costs a few extra loads per run and nothing in steady state.
    pub fn is_full(&self) -> bool {
        let (max_rows, max_bytes) = self.limits();
        self.rows >= max_rows || self.bytes >= max_bytes
    }

    /// How many more messages and bytes the current batch takes before it is full: what
    /// decoding may still put into it (0 and 0 once it is full).
    pub fn room(&self) -> (u64, u64) {
        let (max_rows, max_bytes) = self.limits();
        (
            max_rows.saturating_sub(self.rows),
            max_bytes.saturating_sub(self.bytes),
        )
    }

    /// The current batch's limits, ramped (see [`is_full`](Self::is_full)).
    fn limits(&self) -> (u64, u64) {
        let shift = RAMP_BATCHES.saturating_sub(self.opened);
        (
            (self.policy.max_rows >> shift).max(1),
            (self.policy.max_bytes >> shift).max(1),
        )
    }

    /// How full the current batch is, as a fraction of the (unramped) limits: the larger
    /// of its messages over `max_rows` and its bytes over `max_bytes`.
    pub fn fill(&self) -> f64 {
        let rows = self.rows as f64 / self.policy.max_rows.max(1) as f64;
        let bytes = self.bytes as f64 / self.policy.max_bytes.max(1) as f64;
        rows.max(bytes)
    }

    /// The batches closed since the last call, each with its [`fill`](Self::fill) when it
    /// closed: what Admit weighs its in-flight bound with.
    pub fn take_closed(&mut self) -> Vec<(BatchId, f64)> {
        std::mem::take(&mut self.closed)
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
        tracing::debug!(
            batch = self.current,
            messages = self.rows,
            bytes = self.bytes,
            next = id,
            "batch closed"
        );
        let fill = self.fill();
        self.closed.push((BatchId(self.current), fill));
        self.opened = self.opened.saturating_add(1);
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

    /// A clock past its start-up ramp.
    fn ramped(policy: BatchPolicy, now_ms: u64) -> BatchClock {
        let mut clock = BatchClock::new(policy, now_ms);
        clock.opened = RAMP_BATCHES;
        clock
    }

    #[test]
    fn the_first_batches_close_at_an_eighth_a_quarter_and_a_half() {
        let policy = BatchPolicy {
            interval: Duration::from_secs(60),
            max_rows: 80,
            max_bytes: u64::MAX,
        };
        let mut clock = BatchClock::new(policy, 60_000);
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let mut rows = 0;
            while !clock.is_full() {
                clock.admit(1, 0);
                rows += 1;
            }
            sizes.push(rows);
            assert!(clock.close_early());
        }
        assert_eq!(sizes, [10, 20, 40, 80, 80]);
        // Batches opened by the window count toward the ramp too: a trickle that never
        // fills a batch has left the ramp behind when a burst comes.
        let mut clock = BatchClock::new(policy, 60_000);
        for window in 1..=3 {
            assert!(clock.tick(60_000 * (window + 1)));
        }
        clock.admit(79, 0);
        assert!(!clock.is_full());
        // The byte limit ramps the same way.
        let bytes = BatchPolicy {
            max_rows: u64::MAX,
            max_bytes: 800,
            ..policy
        };
        let mut clock = BatchClock::new(bytes, 60_000);
        clock.admit(0, 100);
        assert!(clock.is_full());
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
        let mut clock = ramped(policy(500), 10_000);
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
    fn closed_batches_report_their_fill_of_the_unramped_limits() {
        // max_rows 10, max_bytes 1000; the first batch ramps to an eighth (2 rows).
        let mut clock = BatchClock::new(policy(500), 10_000);
        clock.admit(2, 100);
        assert!(clock.is_full());
        assert!(clock.close_early());
        clock.admit(1, 600);
        assert!(clock.tick(10_500));
        let closed = clock.take_closed();
        assert_eq!(
            closed,
            [(BatchId(10_000), 0.2), (BatchId(10_001), 0.6)],
            "rows 2 of 10, then bytes 600 of 1000"
        );
        assert!(clock.take_closed().is_empty());
    }

    #[test]
    fn room_is_what_the_ramped_limits_leave() {
        // max_rows 10, max_bytes 1000; the first batch ramps to an eighth: 1 row (10 >> 3)
        // and 125 bytes.
        let mut clock = BatchClock::new(policy(500), 10_000);
        assert_eq!(clock.room(), (1, 125));
        clock.admit(0, 100);
        assert_eq!(clock.room(), (1, 25));
        clock.admit(1, 0);
        assert_eq!(clock.room(), (0, 25));
        assert!(clock.is_full());
        let mut clock = ramped(policy(500), 10_000);
        clock.admit(4, 999);
        assert_eq!(clock.room(), (6, 1));
        clock.admit(0, 5);
        assert_eq!(clock.room(), (6, 0), "never below zero");
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
