//! Time and the retry policy.
//!
//! After the n-th failed attempt of a report (n ≥ 1) the next one waits
//! `15 min × 2^(n-1)`, capped at 24 h, times a random factor in
//! [0.8, 1.2] (jitter, so that many clients that failed together do not
//! come back together), capped again at 24 h. The attempt count and the
//! time of the next attempt live in the report's metadata, so they survive
//! restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First retry delay.
pub const BASE_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 60 * 60);
/// Jitter: the delay is multiplied by a factor in `1 ± JITTER`.
pub const JITTER: f64 = 0.2;

/// The current time, injectable for tests.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that only moves when told to (for tests and simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now_ms))
    }

    /// Sets the time.
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The delay before attempt `failed_attempts + 1`, before jitter.
pub fn base_backoff(failed_attempts: u32) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(32);
    BASE_BACKOFF.saturating_mul(1u32 << doublings.min(31)).min(MAX_BACKOFF)
}

/// The range [`backoff`] draws from after `failed_attempts` failures.
pub fn backoff_bounds(failed_attempts: u32) -> (Duration, Duration) {
    let base = base_backoff(failed_attempts);
    (base.mul_f64(1.0 - JITTER), base.mul_f64(1.0 + JITTER).min(MAX_BACKOFF))
}

/// The delay before the next attempt after `failed_attempts` failures,
/// jittered with `rng`.
pub fn backoff(failed_attempts: u32, rng: &mut fastrand::Rng) -> Duration {
    let factor = 1.0 - JITTER + 2.0 * JITTER * rng.f64();
    base_backoff(failed_attempts).mul_f64(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_and_cap() {
        assert_eq!(base_backoff(1), Duration::from_secs(900));
        assert_eq!(base_backoff(2), Duration::from_secs(1800));
        assert_eq!(base_backoff(3), Duration::from_secs(3600));
        assert_eq!(base_backoff(7), Duration::from_secs(57_600));
        assert_eq!(base_backoff(8), MAX_BACKOFF);
        assert_eq!(base_backoff(u32::MAX), MAX_BACKOFF);
        assert_eq!(base_backoff(0), BASE_BACKOFF);
        let mut rng = fastrand::Rng::with_seed(7);
        for attempts in 1..40 {
            let (lo, hi) = backoff_bounds(attempts);
            for _ in 0..50 {
                let d = backoff(attempts, &mut rng);
                assert!(lo <= d && d <= hi, "{attempts}: {d:?} not in {lo:?}..{hi:?}");
            }
        }
    }

    #[test]
    fn manual_clock() {
        let c = ManualClock::new(5);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now_ms(), 1005);
        c.set(1);
        assert_eq!(c.now_ms(), 1);
        assert!(SystemClock.now_ms() > 1_600_000_000_000);
    }
}
