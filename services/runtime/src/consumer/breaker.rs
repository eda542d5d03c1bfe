//! Circuit breaker per downstream dependency (the seed's defaults: open after 5 consecutive
//! failures, half-open after 60 s, closed again on a success).
//!
//! While a breaker is open the group pauses its partitions instead of burning retries and
//! flooding the dead-letter topic; half-open lets exactly one trial through.

use std::time::{Duration, Instant};

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
    cool_down: Duration,
    consecutive_failures: u32,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold: threshold.max(1),
            cool_down,
            consecutive_failures: 0,
            state: BreakerState::Closed,
        }
    }

    /// The seed's settings: 5 failures, 60 s.
    pub fn seed_default() -> CircuitBreaker {
        CircuitBreaker::new(5, Duration::from_secs(60))
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
        self.state = BreakerState::Closed;
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        self.consecutive_failures += 1;
        let reopen = matches!(self.state(now), BreakerState::HalfOpen { .. });
        if reopen
            || (matches!(self.state, BreakerState::Closed)
                && self.consecutive_failures >= self.threshold)
        {
            self.state = BreakerState::Open {
                until: now + self.cool_down,
            };
            return true;
        }
        false
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

    #[test]
    fn opens_after_the_threshold_half_opens_after_the_cool_down_and_closes_on_success() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(3, Duration::from_secs(60));
        assert!(!breaker.on_failure(t0));
        breaker.on_success();
        assert!(!breaker.on_failure(t0));
        assert!(!breaker.on_failure(t0));
        assert!(breaker.on_failure(t0), "third consecutive failure opens");
        assert!(!breaker.allow(t0 + Duration::from_secs(59)));
        let later = t0 + Duration::from_secs(60);
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
    fn a_failed_trial_reopens() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(1, Duration::from_secs(10));
        assert!(breaker.on_failure(t0));
        let trial = t0 + Duration::from_secs(10);
        assert!(breaker.allow(trial));
        assert!(breaker.on_failure(trial));
        assert_eq!(breaker.reopens_at(), Some(trial + Duration::from_secs(10)));
    }
}
