//! When an endpoint is tried again after a failure, and when failing long enough disables it.
//! Pure functions of the failure count, the answer and a random source; the caller keeps the
//! count, the time of the first failure and the timer.
//!
//! Full jitter (a delay drawn uniformly from zero to the exponential bound) rather than a fixed
//! or "equal" jitter: after an outage every endpoint of a receiver fails together, and drawing
//! the whole delay spreads their returns over the window instead of bunching them at its end.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// `webhooks.disable_after` when unset: five days of failing.
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

/// The most a `Retry-After` can hold an endpoint back by.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// Which schedule a failure follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 429, 5xx, timeouts, connection errors: the receiver may be back soon.
    Retryable,
    /// Another 4xx or a 3xx: likely a receiver's bug or configuration, not fixed in seconds.
    Rejected,
}

/// `(base, cap)` of each schedule; the bound doubles per consecutive failure.
const fn bounds(kind: FailureKind) -> (Duration, Duration) {
    match kind {
        FailureKind::Retryable => (Duration::from_secs(1), Duration::from_secs(600)),
        FailureKind::Rejected => (Duration::from_secs(30), Duration::from_secs(3600)),
    }
}

/// The wait before the next attempt after `consecutive_failures` failures in a row (1 after the
/// first): uniform in `[0, min(cap, base * 2^(n-1))]`, and never less than the answer's
/// `Retry-After` (itself capped at one hour, so a receiver cannot park an endpoint for days).
pub fn next_delay(
    consecutive_failures: u32,
    kind: FailureKind,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let (base, cap) = bounds(kind);
    let doublings = consecutive_failures.saturating_sub(1).min(31);
    let bound = base.saturating_mul(1 << doublings).min(cap);
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    let jittered = Duration::from_millis(rng.random_range(0..=millis));
    match retry_after {
        Some(asked) => jittered.max(asked.min(RETRY_AFTER_CAP)),
        None => jittered,
    }
}

/// Whether an endpoint failing since `first_failure_at` has failed for `disable_after` by
/// `now`. A clock that went back before the first failure counts as no time passed.
pub fn should_disable(
    first_failure_at: SystemTime,
    now: SystemTime,
    disable_after: Duration,
) -> bool {
    now.duration_since(first_failure_at)
        .is_ok_and(|failing| failing >= disable_after)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The largest and smallest delay drawn over many tries.
    fn spread(n: u32, kind: FailureKind, retry_after: Option<Duration>) -> (Duration, Duration) {
        let mut rng = StdRng::seed_from_u64(u64::from(n) * 7919 + 1);
        let draws: Vec<Duration> = (0..4000)
            .map(|_| next_delay(n, kind, retry_after, &mut rng))
            .collect();
        (*draws.iter().min().unwrap(), *draws.iter().max().unwrap())
    }

    #[test]
    fn retryable_failures_back_off_exponentially_with_full_jitter_up_to_ten_minutes() {
        for (n, bound) in [
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (8, 128),
            (10, 512),
            (11, 600),
            (40, 600),
        ] {
            let (min, max) = spread(n, FailureKind::Retryable, None);
            assert!(max <= secs(bound), "n={n}: {max:?} > {bound}s");
            // Full jitter: the draws cover the window, from near zero to near the bound.
            assert!(max >= secs(bound).mul_f64(0.95), "n={n}: max {max:?}");
            assert!(min <= secs(bound).mul_f64(0.05), "n={n}: min {min:?}");
        }
        // Zero failures (a caller's slip) is treated as the first.
        assert!(spread(0, FailureKind::Retryable, None).1 <= secs(1));
        assert!(spread(u32::MAX, FailureKind::Retryable, None).1 <= secs(600));
    }

    #[test]
    fn rejected_answers_follow_the_slower_schedule_up_to_an_hour() {
        for (n, bound) in [
            (1, 30),
            (2, 60),
            (3, 120),
            (7, 1920),
            (8, 3600),
            (100, 3600),
        ] {
            let (min, max) = spread(n, FailureKind::Rejected, None);
            assert!(
                max <= secs(bound) && max >= secs(bound).mul_f64(0.95),
                "n={n}: {max:?}"
            );
            assert!(min <= secs(bound).mul_f64(0.05), "n={n}: {min:?}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_an_hour() {
        // Longer than the jitter window: exactly it.
        let (min, max) = spread(1, FailureKind::Retryable, Some(secs(120)));
        assert_eq!((min, max), (secs(120), secs(120)));
        // Inside the window: at least it, and the jitter above it still applies.
        let (min, max) = spread(11, FailureKind::Retryable, Some(secs(60)));
        assert_eq!(min, secs(60));
        assert!(max > secs(500), "{max:?}");
        // Days asked: one hour given.
        let (min, max) = spread(3, FailureKind::Retryable, Some(secs(5 * 86400)));
        assert_eq!((min, max), (RETRY_AFTER_CAP, RETRY_AFTER_CAP));
        // Zero asked: the schedule's own delay.
        let (_, max) = spread(5, FailureKind::Retryable, Some(Duration::ZERO));
        assert!(max >= secs(15) && max <= secs(16));
        // It applies to rejected answers too.
        let (min, _) = spread(1, FailureKind::Rejected, Some(secs(300)));
        assert_eq!(min, secs(300));
    }

    #[test]
    fn endpoints_are_disabled_after_failing_for_disable_after() {
        let first = SystemTime::UNIX_EPOCH + secs(1_700_000_000);
        let five_days = DEFAULT_DISABLE_AFTER;
        assert_eq!(five_days, secs(432_000));
        assert!(!should_disable(first, first, five_days));
        assert!(!should_disable(
            first,
            first + five_days - secs(1),
            five_days
        ));
        assert!(should_disable(first, first + five_days, five_days));
        assert!(should_disable(
            first,
            first + five_days + secs(86400),
            five_days
        ));
        // The clock went back: not yet.
        assert!(!should_disable(first, first - secs(3600), five_days));
        assert!(should_disable(first, first, Duration::ZERO));
    }
}
