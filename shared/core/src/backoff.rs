//! The one retry delay every Vigil loop uses: exponential, capped, optionally jittered.
//!
//! The n-th delay (counting from 0) is `min(first * 2^n, max)`. With jitter it is drawn from
//! `[d/2, d]` instead, so many processes that lost the same server do not come back in
//! lockstep. A loop calls [`Backoff::next_delay`] after each failure and [`Backoff::reset`] after
//! a success.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff from `first` doubling to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: bool,
    attempt: u32,
}

impl Backoff {
    /// Delays `first`, `2 * first`, ... up to `max`, without jitter.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            jitter: false,
            attempt: 0,
        }
    }

    /// The same, each delay drawn from `[d/2, d]`.
    pub const fn jittered(self) -> Self {
        Backoff {
            jitter: true,
            ..self
        }
    }

    /// The delay before retry `n` (from 0), before jitter: `min(first * 2^n, max)`.
    pub fn nth(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        self.nth(self.attempt)
    }

    /// The next delay (jittered if asked for), and advances the attempt count.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        if !self.jitter {
            return ceiling;
        }
        let half = ceiling / 2;
        let spread = ceiling.saturating_sub(half).as_micros() as u64;
        half + Duration::from_micros(rand::thread_rng().gen_range(0..=spread))
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(FIRST, MAX);
        let delays: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]
        );
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), MAX, "no overflow after many attempts");
        b.reset();
        assert_eq!(b.next_delay(), FIRST);
        assert_eq!(b.nth(u32::MAX), MAX);
    }

    #[test]
    fn jitter_stays_within_half_to_the_ceiling() {
        let mut b = Backoff::new(FIRST, MAX).jittered();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]
        );
        b.reset();
        assert_eq!(b.ceiling(), FIRST);
    }
}
