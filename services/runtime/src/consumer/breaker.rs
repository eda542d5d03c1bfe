//! Circuit breaker per downstream dependency: open after 5 consecutive failures (the seed's
//! threshold), half-open after a cool-down, closed again on a success.
//!
//! While a breaker is open the group pauses its partitions instead of burning retries and
//! flooding the dead-letter topic; half-open lets exactly one trial through.
//!
//! The cool-down grows with the outage: the first is short (1 s), each failed trial makes the
//! next one [`GROWTH`] times longer, up to the longest (the seed's 60 s). A short outage costs
//! about its own length plus a fraction of it, not a whole minute; a long one costs a trial per
//! minute at most.

use std::time::{Duration, Instant};

/// How much longer each cool-down is than the one before it. At 1.5 the wait after a dependency
/// comes back is at most a third of the outage so far (a trial at t, the next at 2.5 t ...).
pub const GROWTH: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open {
        until: Instant,
    },
    /// One trial call is allowed; its outcome closes or re-opens the breaker.
    HalfOpen {
        trial_taken: bool,
    },
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    first_cool_down: Duration,
    max_cool_down: Duration,
    /// The cool-down the breaker waits (or last waited) since it opened.
    cool_down: Duration,
    consecutive_failures: u32,
    state: BreakerState,
}

impl CircuitBreaker {
    /// Opens after `threshold` consecutive failures; cool-downs grow from `first_cool_down` to
    /// `max_cool_down`.
    pub fn new(threshold: u32, first_cool_down: Duration, max_cool_down: Duration) -> Self {
        let first_cool_down = first_cool_down.min(max_cool_down);
        CircuitBreaker {
            threshold: threshold.max(1),
            first_cool_down,
            max_cool_down,
            cool_down: first_cool_down,
            consecutive_failures: 0,
            state: BreakerState::Closed,
        }
    }

    /// The seed's settings: 5 failures, 60 s, here as the longest cool-down.
    pub fn seed_default() -> CircuitBreaker {
        CircuitBreaker::new(5, Duration::from_secs(1), Duration::from_secs(60))
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if now >= until => {
                BreakerState::HalfOpen { trial_taken: false }
            }
            other => other,
        }
    }

    /// Whether a call may go out now; in half-open, the first caller takes the trial.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.state = self.state(now);
        match &mut self.state {
            BreakerState::Closed => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { trial_taken } => !std::mem::replace(trial_taken, true),
        }
    }

    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
        self.cool_down = self.first_cool_down;
        self.state = BreakerState::Closed;
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        self.consecutive_failures += 1;
        let reopen = matches!(self.state(now), BreakerState::HalfOpen { .. });
        let open = matches!(self.state, BreakerState::Closed)
            && self.consecutive_failures >= self.threshold;
        if !reopen && !open {
            return false;
        }
        self.cool_down = if reopen {
            self.cool_down.mul_f64(GROWTH).min(self.max_cool_down)
        } else {
            self.first_cool_down
        };
        self.state = BreakerState::Open {
            until: now + self.cool_down,
        };
        true
    }

    /// When an open breaker becomes half-open.
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_the_threshold_half_opens_after_the_cool_down_and_closes_on_success() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(3, 60 * SECOND, 60 * SECOND);
        assert!(!breaker.on_failure(t0));
        breaker.on_success();
        assert!(!breaker.on_failure(t0));
        assert!(!breaker.on_failure(t0));
        assert!(breaker.on_failure(t0), "third consecutive failure opens");
        assert!(!breaker.allow(t0 + 59 * SECOND));
        let later = t0 + 60 * SECOND;
        assert_eq!(
            breaker.state(later),
            BreakerState::HalfOpen { trial_taken: false }
        );
        assert!(breaker.allow(later), "one trial");
        assert!(!breaker.allow(later), "only one");
        breaker.on_success();
        assert_eq!(breaker.state(later), BreakerState::Closed);
        assert!(breaker.allow(later));
    }

    #[test]
    fn a_failed_trial_reopens_for_longer_up_to_the_longest_cool_down() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(1, 2 * SECOND, 5 * SECOND);
        assert!(breaker.on_failure(t0));
        assert_eq!(breaker.reopens_at(), Some(t0 + 2 * SECOND));
        let mut now = t0 + 2 * SECOND;
        let mut waits = Vec::new();
        for _ in 0..3 {
            assert!(breaker.allow(now), "a trial once the cool-down is over");
            assert!(breaker.on_failure(now), "the failed trial reopens");
            let until = breaker.reopens_at().expect("open");
            waits.push(until - now);
            now = until;
        }
        assert_eq!(
            waits,
            vec![3 * SECOND, 4500 * Duration::from_millis(1), 5 * SECOND]
        );
    }

    #[test]
    fn a_success_starts_the_next_outage_from_the_first_cool_down() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(1, SECOND, 60 * SECOND);
        breaker.on_failure(t0);
        let trial = t0 + SECOND;
        assert!(breaker.allow(trial));
        breaker.on_failure(trial);
        assert_eq!(
            breaker.reopens_at(),
            Some(trial + 1500 * Duration::from_millis(1))
        );
        let back = trial + 2 * SECOND;
        assert!(breaker.allow(back));
        breaker.on_success();
        assert!(breaker.on_failure(back));
        assert_eq!(breaker.reopens_at(), Some(back + SECOND));
    }

    #[test]
    fn a_ten_second_outage_resumes_within_four_seconds_of_its_end() {
        // Failures every time the breaker lets a trial through, until the dependency is back.
        let t0 = Instant::now();
        let back = t0 + 10 * SECOND;
        let mut breaker = CircuitBreaker::seed_default();
        for _ in 0..5 {
            breaker.on_failure(t0);
        }
        let resumed = loop {
            let now = breaker.reopens_at().expect("open while the outage lasts");
            assert!(breaker.allow(now));
            if now >= back {
                breaker.on_success();
                break now;
            }
            breaker.on_failure(now);
        };
        assert!(
            resumed - back <= 4 * SECOND,
            "resumed {:?} after",
            resumed - back
        );
    }
}
