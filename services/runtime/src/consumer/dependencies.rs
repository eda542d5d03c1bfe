//! A group's downstream dependencies: one circuit breaker each, and which event types use each.
//!
//! A breaker counts the consecutive failures of its own dependency, so only evidence about that
//! dependency may reset it. A handler's success says nothing of a dependency it never touches:
//! a Redis-only handler succeeding must not close the PostgreSQL breaker. Handlers do not
//! declare what they call, so the set learns it: an event type whose handler failed on a
//! dependency is one of its users from then on, and a success of that type resets that
//! dependency's breaker (it reached the dependency and got an answer). The other ways back
//! are the breaker's own: the single trial after the cool-down, whose outcome closes or reopens
//! it. Both maps are bounded by the group's event types and the dependency names handlers use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use crate::consumer::breaker::{BreakerState, CircuitBreaker};

#[derive(Debug, Clone)]
pub struct Dependencies {
    /// Every new dependency's breaker starts as a copy of this one.
    template: CircuitBreaker,
    breakers: BTreeMap<String, CircuitBreaker>,
    /// The dependencies each event type's handler was seen to fail on.
    used_by: HashMap<String, BTreeSet<String>>,
}

impl Dependencies {
    pub fn new(template: CircuitBreaker) -> Dependencies {
        Dependencies {
            template,
            breakers: BTreeMap::new(),
            used_by: HashMap::new(),
        }
    }

    /// A handler of `event_type` failed on `dependency`; returns that breaker's state after it.
    pub fn failed(&mut self, event_type: &str, dependency: &str, now: Instant) -> BreakerState {
        if !self
            .used_by
            .get(event_type)
            .is_some_and(|d| d.contains(dependency))
        {
            self.used_by
                .entry(event_type.to_string())
                .or_default()
                .insert(dependency.to_string());
        }
        let breaker = self
            .breakers
            .entry(dependency.to_string())
            .or_insert_with(|| self.template.clone());
        breaker.on_failure(now);
        breaker.state(now)
    }

    /// A handler of `event_type` succeeded: the dependencies it uses answered.
    pub fn succeeded(&mut self, event_type: &str) {
        let Some(used) = self.used_by.get(event_type) else {
            return;
        };
        for dependency in used {
            if let Some(breaker) = self.breakers.get_mut(dependency) {
                breaker.on_success();
            }
        }
    }

    /// The trial for `dependency` ended without failing on it: the breaker closes.
    pub fn trial_passed(&mut self, dependency: &str) {
        if let Some(breaker) = self.breakers.get_mut(dependency) {
            breaker.on_success();
        }
    }

    pub fn state(&self, dependency: &str, now: Instant) -> Option<BreakerState> {
        self.breakers.get(dependency).map(|b| b.state(now))
    }

    pub fn all_closed(&self, now: Instant) -> bool {
        self.states(now)
            .all(|(_, state)| matches!(state, BreakerState::Closed))
    }

    /// Every dependency seen so far with its breaker's state, by name.
    pub fn states(&self, now: Instant) -> impl Iterator<Item = (&str, BreakerState)> {
        self.breakers
            .iter()
            .map(move |(dependency, breaker)| (dependency.as_str(), breaker.state(now)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Opens after 3 consecutive failures, 10 s before a trial.
    fn dependencies() -> Dependencies {
        Dependencies::new(CircuitBreaker::new(3, 10 * SECOND, 60 * SECOND))
    }

    fn closed(deps: &Dependencies, dependency: &str, now: Instant) -> bool {
        matches!(deps.state(dependency, now), Some(BreakerState::Closed))
    }

    #[test]
    fn another_types_success_neither_resets_nor_closes_a_breaker() {
        let t0 = Instant::now();
        let mut deps = dependencies();
        deps.failed("comment.added", "postgres", t0);
        deps.failed("comment.added", "postgres", t0);
        deps.failed("typing.started", "redis", t0);
        deps.succeeded("typing.started");
        deps.succeeded("like.added");
        assert!(closed(&deps, "postgres", t0));
        assert!(
            !matches!(
                deps.failed("comment.added", "postgres", t0),
                BreakerState::Closed
            ),
            "the third consecutive postgres failure opens, whatever else succeeded"
        );
        deps.succeeded("typing.started");
        assert!(!closed(&deps, "postgres", t0), "still open");
        assert!(!deps.all_closed(t0));
    }

    #[test]
    fn a_users_success_resets_its_dependencies_and_only_those() {
        let t0 = Instant::now();
        let mut deps = dependencies();
        for _ in 0..2 {
            deps.failed("post.created", "postgres", t0);
            deps.failed("post.created", "redis", t0);
            deps.failed("video.viewed", "search", t0);
        }
        deps.succeeded("post.created");
        for _ in 0..2 {
            deps.failed("post.created", "postgres", t0);
            deps.failed("post.created", "redis", t0);
        }
        assert!(closed(&deps, "postgres", t0), "2 + reset + 2 < 3");
        assert!(closed(&deps, "redis", t0));
        deps.failed("video.viewed", "search", t0);
        assert!(!closed(&deps, "search", t0), "not reset: 3 in a row");
    }

    #[test]
    fn a_user_succeeding_while_open_is_evidence_and_closes_it() {
        let t0 = Instant::now();
        let mut deps = dependencies();
        for _ in 0..3 {
            deps.failed("payment.initiated", "postgres", t0);
        }
        assert!(!deps.all_closed(t0));
        // An event that was already running when the breaker opened got its answer.
        deps.succeeded("payment.initiated");
        assert!(deps.all_closed(t0));
    }

    #[test]
    fn a_passed_trial_closes_its_own_breaker_only() {
        let t0 = Instant::now();
        let mut deps = dependencies();
        for _ in 0..3 {
            deps.failed("a", "postgres", t0);
            deps.failed("b", "redis", t0);
        }
        let trial = t0 + 10 * SECOND;
        assert!(matches!(
            deps.state("postgres", trial),
            Some(BreakerState::HalfOpen { .. })
        ));
        deps.trial_passed("postgres");
        assert!(closed(&deps, "postgres", trial));
        assert!(!closed(&deps, "redis", trial - SECOND), "redis stays open");
        let states: Vec<&str> = deps.states(trial).map(|(d, _)| d).collect();
        assert_eq!(states, ["postgres", "redis"]);
    }
}
