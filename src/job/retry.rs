//! The retry decision: given a failed attempt, retry when, or die.
//!
//! Pure code, no clocks or threads: the threaded engine and the
//! deterministic [`Driver`](crate::job::driver::Driver) both call `decide`, so
//! the fuzzer checks the very decision the engine makes.
//!
//! Backoff is exponential with *full jitter* (AWS Architecture Blog,
//! "Exponential Backoff And Jitter", 2015): the delay before retry `n`
//! (after the `n`-th failed attempt) is uniform in
//! `[0, min(max_backoff, base · 2^(n−1))]`.

use crate::error::JobError;
use std::time::Duration;

/// How failed attempts are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's cap, doubled per attempt.
    pub base: Duration,
    /// The largest delay.
    pub max_backoff: Duration,
    /// Whether to draw the delay uniformly below the cap (full jitter) or
    /// use the cap itself.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(10),
            max_backoff: Duration::from_secs(60),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The cap on the delay after failed attempt `attempt` (1-based):
    /// `min(max_backoff, base · 2^(attempt−1))`, at most `u64::MAX`
    /// nanoseconds (about 584 years, the engine clock's range).
    pub fn cap(&self, attempt: u32) -> Duration {
        let base = u128::from(crate::clock::duration_nanos(self.base));
        let max = crate::clock::duration_nanos(self.max_backoff);
        // Widened: base < 2^64, so base · 2^64 fits in a u128, and a larger
        // shift can only grow a nonzero base further past `max`.
        let grown = base << attempt.saturating_sub(1).min(64);
        Duration::from_nanos(u64::try_from(grown).map_or(max, |g| g.min(max)))
    }

    /// The delay after failed attempt `attempt`, drawn from `rng`.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let cap = crate::clock::duration_nanos(self.cap(attempt));
        if !self.jitter || cap == 0 {
            return Duration::from_nanos(cap);
        }
        // Uniform in [0, cap]: `cap + 1` values, or all of them when the
        // cap is u64::MAX (`max_backoff` of `Duration::MAX`).
        Duration::from_nanos(match cap.checked_add(1) {
            Some(n) => rng.below(n),
            None => rng.next_u64(),
        })
    }
}

/// A small seedable RNG (SplitMix64, Steele et al., OOPSLA 2014): one per
/// worker, seeded from the engine's seed and the worker's index.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// An RNG with this seed.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// What happens after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run again after this delay.
    RetryAfter(Duration),
    /// Move to the dead-letter queue.
    Dead,
}

/// Decides the fate of a job whose attempt number `attempts` failed with
/// `err`, under an attempt limit of `max_attempts`.
pub(crate) fn decide(
    err: &JobError,
    attempts: u32,
    max_attempts: u32,
    policy: &RetryPolicy,
    rng: &mut Rng,
) -> Decision {
    if attempts >= max_attempts {
        return Decision::Dead;
    }
    match err {
        JobError::Fatal(_) => Decision::Dead,
        JobError::RetryAfter(d, _) => Decision::RetryAfter(*d),
        JobError::Retry(_) => Decision::RetryAfter(policy.delay(attempts, rng)),
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;

    #[test]
    fn backoff_delays_stay_within_their_bounds() {
        let p = RetryPolicy {
            base: Duration::from_millis(10),
            max_backoff: Duration::from_millis(300),
            jitter: true,
        };
        let mut rng = Rng::new(7);
        let caps = [10, 20, 40, 80, 160, 300, 300];
        for (i, cap) in caps.iter().enumerate() {
            let attempt = i as u32 + 1;
            assert_eq!(p.cap(attempt), Duration::from_millis(*cap));
            let mut seen_low = false;
            let mut seen_high = false;
            for _ in 0..2_000 {
                let d = p.delay(attempt, &mut rng);
                assert!(d <= Duration::from_millis(*cap), "attempt {attempt}: {d:?}");
                seen_low |= d < Duration::from_millis(*cap) / 4;
                seen_high |= d > Duration::from_millis(*cap) * 3 / 4;
            }
            assert!(seen_low && seen_high, "jitter should spread over [0, cap]");
        }
        assert_eq!(
            p.cap(200),
            Duration::from_millis(300),
            "no overflow at large attempts"
        );
        let fixed = RetryPolicy { jitter: false, ..p };
        assert_eq!(fixed.delay(3, &mut rng), Duration::from_millis(40));
    }

    #[test]
    fn unbounded_backoff_never_overflows() {
        // `max_backoff: Duration::MAX` lets the cap reach u64::MAX ns (the
        // largest delay the engine's nanosecond clock can express).
        let huge = Duration::from_nanos(u64::MAX);
        for base in [
            Duration::from_nanos(1),
            Duration::from_millis(10),
            Duration::MAX,
        ] {
            for jitter in [false, true] {
                let p = RetryPolicy {
                    base,
                    max_backoff: Duration::MAX,
                    jitter,
                };
                let mut rng = Rng::new(3);
                let mut last = Duration::ZERO;
                for attempt in [1, 2, 63, 64, 65, 100, 1_000, u32::MAX - 1, u32::MAX] {
                    let cap = p.cap(attempt);
                    assert!(cap >= last, "{base:?} attempt {attempt}: cap shrank");
                    last = cap;
                    for _ in 0..100 {
                        let d = p.delay(attempt, &mut rng);
                        assert!(d <= cap, "{base:?} attempt {attempt}: {d:?} > {cap:?}");
                        if !jitter {
                            assert_eq!(d, cap);
                        }
                    }
                }
                assert_eq!(p.cap(u32::MAX), huge, "{base:?}");
            }
        }
        // The full-range draw still spreads over [0, cap].
        let p = RetryPolicy {
            base: Duration::MAX,
            max_backoff: Duration::MAX,
            jitter: true,
        };
        let mut rng = Rng::new(11);
        let draws: Vec<Duration> = (0..1_000).map(|_| p.delay(1, &mut rng)).collect();
        assert!(draws.iter().any(|d| *d < huge / 4));
        assert!(draws.iter().any(|d| *d > huge / 4 * 3));
    }

    #[test]
    fn decisions() {
        let p = RetryPolicy::default();
        let mut rng = Rng::new(1);
        let retry = JobError::retry("x");
        assert!(matches!(
            decide(&retry, 1, 5, &p, &mut rng),
            Decision::RetryAfter(_)
        ));
        assert_eq!(decide(&retry, 5, 5, &p, &mut rng), Decision::Dead);
        assert_eq!(
            decide(&JobError::fatal("x"), 1, 5, &p, &mut rng),
            Decision::Dead
        );
        let after = JobError::RetryAfter(Duration::from_secs(3), "x".into());
        assert_eq!(
            decide(&after, 2, 5, &p, &mut rng),
            Decision::RetryAfter(Duration::from_secs(3))
        );
    }
}
