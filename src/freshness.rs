//! freshness: how long after an object was written its rows were committed, as its
//! users feel it.
//!
//! An object's time is when it was written (the S3 notification's `eventTime`, a file's
//! modification time); its commit is when the batch of its last part has committed on
//! every worker (the worker loop's acknowledgement). Each object is observed once, into
//! the `tracktable_freshness_seconds` histogram ([`BUCKETS`]) and into [`Percentiles`],
//! which the run's summary reads. Backfilled objects are not observed: they were written
//! long before the run, so their age measures the backlog, not the pipeline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The histogram's upper bounds, in seconds: fine around batch intervals of 1 to 60 s
/// (an interval plus a load lands in its own bucket), coarse beyond for backlogs.
pub const BUCKETS: [f64; 22] = [
    0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 12.0, 15.0, 20.0, 30.0, 45.0, 60.0, 75.0, 90.0,
    120.0, 180.0, 300.0, 600.0, 1800.0,
];

/// From `written` to `committed`; zero when the writer's clock is ahead of this one.
pub fn age(written: SystemTime, committed: SystemTime) -> Duration {
    committed.duration_since(written).unwrap_or_default()
}

/// Sub-buckets per power of two: a value is kept to within 1/64 of itself.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values are milliseconds, capped at 2^40 ms (35 years).
const TOP_BIT: u32 = 40;
const SLOTS: usize = ((TOP_BIT - SUB_BITS + 1) as u64 * SUB) as usize;

/// Counts of observed ages on a log-linear scale (exact below 64 ms, within 1/64 above),
/// so percentiles over a run of any length take a fixed 18 KiB. Workers record
/// concurrently.
pub struct Percentiles {
    slots: Box<[AtomicU64]>,
    count: AtomicU64,
    max_ms: AtomicU64,
}

impl Default for Percentiles {
    fn default() -> Percentiles {
        Percentiles {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max_ms: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Percentiles")
            .field("summary", &self.summary())
            .finish()
    }
}

/// The slot of `ms`.
fn slot(ms: u64) -> usize {
    let ms = ms.min((1 << TOP_BIT) - 1);
    if ms < SUB {
        return ms as usize;
    }
    let top = 63 - ms.leading_zeros();
    let mantissa = ms >> (top - SUB_BITS);
    ((top - SUB_BITS + 1) as u64 * SUB + (mantissa - SUB)) as usize
}

/// The largest value slot `index` holds.
fn slot_max(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let top = (index / SUB) as u32 + SUB_BITS - 1;
    let mantissa = index % SUB + SUB;
    ((mantissa + 1) << (top - SUB_BITS)) - 1
}

impl Percentiles {
    pub fn record(&self, age: Duration) {
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self.slots[slot(ms)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The value at quantile `q` (nearest rank: the smallest value at least `q` of the
    /// observations do not exceed), rounded up to its slot's top and never above the
    /// largest seen; `None` before any observation.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let max = self.max_ms.load(Ordering::Relaxed);
        let mut seen = 0;
        for (index, slot) in self.slots.iter().enumerate() {
            seen += slot.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(Duration::from_millis(slot_max(index).min(max)));
            }
        }
        // Observations recorded while this read: the largest is a true upper bound.
        Some(Duration::from_millis(max))
    }

    pub fn summary(&self) -> Option<FreshnessSummary> {
        Some(FreshnessSummary {
            objects: self.count.load(Ordering::Relaxed),
            p50: self.quantile(0.5)?,
            p99: self.quantile(0.99)?,
            max: Duration::from_millis(self.max_ms.load(Ordering::Relaxed)),
        })
    }
}

/// Freshness over a run, for its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessSummary {
    pub objects: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for FreshnessSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1}s, p99 {:.1}s, max {:.1}s over {} objects",
            self.p50.as_secs_f64(),
            self.p99.as_secs_f64(),
            self.max.as_secs_f64(),
            self.objects
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn recorded(values: impl IntoIterator<Item = u64>) -> Percentiles {
        let percentiles = Percentiles::default();
        for value in values {
            percentiles.record(ms(value));
        }
        percentiles
    }

    #[test]
    fn slots_cover_every_value_in_order_and_hold_it_to_within_a_sixty_fourth() {
        let mut previous = 0;
        for value in (0..5_000).chain([65_535, 1 << 20, 86_400_000, (1 << 40) - 1]) {
            let index = slot(value);
            assert!(index < SLOTS, "{value}");
            assert!(index >= previous, "{value}");
            previous = index;
            let top = slot_max(index);
            assert!(top >= value, "{value} in a slot ending at {top}");
            assert!(
                top - value <= value / 64,
                "{value} in a slot ending at {top}"
            );
            assert_eq!(slot(top), index, "{value}");
            if index + 1 < SLOTS {
                assert_eq!(slot(top + 1), index + 1, "{value}");
            }
        }
        assert_eq!(slot(u64::MAX), SLOTS - 1);
    }

    #[test]
    fn nothing_observed_has_no_percentiles() {
        let percentiles = Percentiles::default();
        assert_eq!(percentiles.quantile(0.5), None);
        assert_eq!(percentiles.summary(), None);
    }

    #[test]
    fn small_values_are_exact_and_ranks_are_nearest() {
        let percentiles = recorded(1..=50);
        assert_eq!(percentiles.quantile(0.5), Some(ms(25)));
        assert_eq!(percentiles.quantile(0.99), Some(ms(50)));
        assert_eq!(percentiles.quantile(0.0), Some(ms(1)));
        assert_eq!(percentiles.quantile(1.0), Some(ms(50)));
        let single = recorded([7]);
        assert_eq!(
            single.summary(),
            Some(FreshnessSummary {
                objects: 1,
                p50: ms(7),
                p99: ms(7),
                max: ms(7)
            })
        );
    }

    #[test]
    fn large_values_round_up_by_at_most_a_sixty_fourth_and_never_past_the_largest() {
        // 1 s to 100 s in 1 s steps, shuffled: the order of recording does not matter.
        let seconds: Vec<u64> = (1..=100).map(|s| (s * 37 % 101) * 1000).collect();
        let percentiles = recorded(seconds);
        let p50 = percentiles.quantile(0.5).unwrap();
        assert!(
            p50 >= ms(50_000) && p50 <= ms(50_000 + 50_000 / 64),
            "{p50:?}"
        );
        let p99 = percentiles.quantile(0.99).unwrap();
        assert!(
            p99 >= ms(99_000) && p99 <= ms(99_000 + 99_000 / 64),
            "{p99:?}"
        );
        assert_eq!(percentiles.quantile(1.0), Some(ms(100_000)));
        assert_eq!(percentiles.summary().map(|s| s.max), Some(ms(100_000)));
    }

    #[test]
    fn the_p99_sees_the_slowest_hundredth_and_not_less() {
        // 990 objects at 2 s, 10 at 40 s: the 990th is still 2 s, the 991st 40 s.
        let percentiles = recorded((0..990).map(|_| 2_000).chain((0..10).map(|_| 40_000)));
        let summary = percentiles.summary().unwrap();
        assert_eq!(summary.objects, 1000);
        assert!(summary.p50 >= ms(2_000) && summary.p50 < ms(2_040));
        assert!(summary.p99 >= ms(2_000) && summary.p99 < ms(2_040));
        assert_eq!(summary.max, ms(40_000));
        percentiles.record(ms(40_000));
        let p99 = percentiles.quantile(0.99).unwrap();
        assert!(p99 >= ms(40_000) && p99 < ms(40_700), "{p99:?}");
    }

    #[test]
    fn an_age_is_never_negative_and_the_summary_reads_in_seconds() {
        let written = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(age(written, written + ms(2_500)), ms(2_500));
        assert_eq!(age(written + ms(10), written), Duration::ZERO);
        let summary = FreshnessSummary {
            objects: 12,
            p50: ms(2_340),
            p99: ms(5_060),
            max: ms(5_100),
        };
        assert_eq!(
            summary.to_string(),
            "p50 2.3s, p99 5.1s, max 5.1s over 12 objects"
        );
    }
}
