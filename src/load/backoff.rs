//! Retry delays: exponential, capped, with jitter so that many workers retrying against
//! one recovering warehouse do not arrive in lockstep.

use std::time::Duration;

/// First retry delay.
pub const BASE: Duration = Duration::from_millis(200);
/// Longest delay between attempts.
pub const CAP: Duration = Duration::from_secs(30);

/// The delay before retry number `attempt` (1-based), given a uniform random `jitter`
/// in [0, 1): between half and all of `min(CAP, BASE * 2^(attempt-1))`.
pub fn delay(attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = BASE.saturating_mul(1 << exponent).min(CAP);
    let jitter = jitter.clamp(0.0, 1.0);
    full.mul_f64(0.5 + 0.5 * jitter)
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
}
