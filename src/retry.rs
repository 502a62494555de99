//! retry: the crate's one retry policy. Every operation that waits out a transient
//! failure (a warehouse load, an SQS receive or delete, reading an S3 object's body,
//! preparing the warehouse at start-up) counts its attempts with a [`Backoff`]: delays
//! grow exponentially from [`BASE`] to [`CAP`], with jitter, so that many workers
//! retrying against one recovering service do not arrive in lockstep.
//!
//! The AWS SDK retries its own calls with the same bounds ([`aws_retry_config`]); code
//! here retries only what the SDK cannot (a body cut off mid-read, a partial batch
//! delete), never an SDK call the SDK has already given up on.
//!
//! Invariant: what decides whether to retry is the error's class (transient or not),
//! never a count alone; a count only bounds how long a transient failure is waited out.

use std::time::Duration;

/// First retry delay.
pub const BASE: Duration = Duration::from_millis(200);
/// Longest delay between attempts.
pub const CAP: Duration = Duration::from_secs(30);
/// Attempts of one AWS SDK call, the first included.
pub const AWS_ATTEMPTS: u32 = 4;

/// The delay before retry number `attempt` (1-based), given a uniform random `jitter`
/// in [0, 1): between half and all of `min(CAP, BASE * 2^(attempt-1))`.
pub fn delay(attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = BASE.saturating_mul(1 << exponent).min(CAP);
    let jitter = jitter.clamp(0.0, 1.0);
    full.mul_f64(0.5 + 0.5 * jitter)
}

/// The failed attempts of one operation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backoff {
    failed: u32,
}

impl Backoff {
    /// Counts a failed attempt; returns how long to wait before the next.
    pub fn failed(&mut self) -> Duration {
        self.failed = self.failed.saturating_add(1);
        delay(self.failed, rand::random())
    }

    /// Failed attempts so far.
    pub fn failures(&self) -> u32 {
        self.failed
    }

    /// After a success: the next failure waits the shortest delay again.
    pub fn reset(&mut self) {
        self.failed = 0;
    }
}

/// The AWS SDK's retry settings: standard mode, [`AWS_ATTEMPTS`] attempts, this
/// module's bounds.
pub fn aws_retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(AWS_ATTEMPTS)
        .with_initial_backoff(BASE)
        .with_max_backoff(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_then_caps() {
        assert_eq!(delay(1, 1.0), Duration::from_millis(200));
        assert_eq!(delay(2, 1.0), Duration::from_millis(400));
        assert_eq!(delay(4, 1.0), Duration::from_millis(1600));
        assert_eq!(delay(100, 1.0), CAP);
        assert_eq!(delay(1, 0.0), Duration::from_millis(100));
        assert!(delay(30, 0.3) >= CAP / 2 && delay(30, 0.3) <= CAP);
    }

    #[test]
    fn a_backoff_counts_failures_and_starts_over_after_a_success() {
        let mut backoff = Backoff::default();
        let first = backoff.failed();
        assert!(first >= BASE / 2 && first <= BASE, "{first:?}");
        let second = backoff.failed();
        assert!(second >= BASE && second <= BASE * 2, "{second:?}");
        assert_eq!(backoff.failures(), 2);
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert!(backoff.failed() <= BASE);
    }
}
