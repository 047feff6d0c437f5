//! The waits between attempts to reach Postgres, for every connection walcast keeps there: the
//! replication stream, the relay's LISTEN connection and the first connection at start-up. A
//! first wait that doubles up to a cap, jittered where many walcast processes may retry against
//! one server, and started over once a connection proved itself. Sleeps nowhere and decides
//! nothing about errors: the caller waits for the delay (racing its shutdown) and says when to
//! start over.

use std::time::Duration;

/// Capped exponential backoff.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: bool,
    next: Duration,
}

impl Backoff {
    /// Waits of `first`, then twice the one before, at most `max` (the first is `first` even when
    /// it is larger).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            jitter: false,
            next: first,
        }
    }

    /// Each wait lengthened by a random part of itself (up to twice as long), so that processes
    /// that lost their connection together do not come back together.
    pub fn jittered(mut self) -> Backoff {
        self.jitter = true;
        self
    }

    /// The wait before the next attempt.
    pub fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        if self.jitter {
            delay + delay.mul_f64(unit_random())
        } else {
            delay
        }
    }

    /// A connection proved itself: the next wait is the first again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A number in [0, 1) that differs between calls and between processes: std's hash keys are
/// random per thread and move on with every `RandomState`. Enough to spread retries; not for
/// anything that must be unpredictable.
fn unit_random() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap_and_start_over() {
        let mut b = Backoff::new(200 * MS, 1000 * MS);
        let waits: Vec<Duration> = (0..5).map(|_| b.delay()).collect();
        assert_eq!(waits, [200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]);
        b.reset();
        assert_eq!(b.delay(), 200 * MS);
        // A first wait above the cap is kept, the next ones are capped.
        let mut b = Backoff::new(500 * MS, 300 * MS);
        assert_eq!((b.delay(), b.delay()), (500 * MS, 300 * MS));
    }

    #[test]
    fn jitter_stays_within_twice_the_wait() {
        let mut b = Backoff::new(100 * MS, 400 * MS).jittered();
        for base in [100, 200, 400, 400] {
            let wait = b.delay();
            assert!(
                wait >= base * MS && wait < 2 * base * MS,
                "{wait:?} for {base} ms"
            );
        }
        let spread: std::collections::HashSet<Duration> = (0..16)
            .map(|_| Backoff::new(100 * MS, 400 * MS).jittered().delay())
            .collect();
        assert!(spread.len() > 1, "jittered waits differ");
    }
}
