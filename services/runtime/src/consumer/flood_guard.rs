//! The dead-letter flood guard: a group whose recent events nearly all go to the dead letters
//! is broken (a bad deploy, a schema it cannot read), not unlucky. Rather than dead-letter the
//! whole topic, it stops once the ratio of dead-lettered events over its last outcomes reaches
//! the limit, and an operator decides. Pure: the engine feeds it each finished event.

use std::collections::VecDeque;

/// Why the guard stopped the group.
#[derive(Debug, Clone, PartialEq)]
pub struct Flood {
    pub dead: usize,
    pub window: usize,
    /// The newest error among the dead-lettered events.
    pub last_error: String,
}

#[derive(Debug, Clone)]
pub struct FloodGuard {
    /// How many recent outcomes are judged.
    window: usize,
    /// Fewer outcomes than this never stop the group.
    min_events: usize,
    max_ratio: f64,
    /// The recent outcomes, oldest first: true when dead-lettered.
    outcomes: VecDeque<bool>,
    /// Dead-lettered outcomes in `outcomes`.
    dead: usize,
    last_error: Option<String>,
}

impl FloodGuard {
    /// Over the last `window` outcomes (at least `min_events` of them), a dead-letter ratio at
    /// or above `max_ratio` stops the group.
    pub fn new(window: usize, min_events: usize, max_ratio: f64) -> FloodGuard {
        let window = window.max(1);
        FloodGuard {
            window,
            min_events,
            max_ratio,
            outcomes: VecDeque::with_capacity(window),
            dead: 0,
            last_error: None,
        }
    }

    /// Records one finished event; a [`Flood`] when the group must stop.
    pub fn record(&mut self, dead_lettered: bool, error: Option<String>) -> Option<Flood> {
        if error.is_some() {
            self.last_error = error;
        }
        self.outcomes.push_back(dead_lettered);
        self.dead += usize::from(dead_lettered);
        if self.outcomes.len() > self.window {
            let left = self.outcomes.pop_front().unwrap_or(false);
            self.dead -= usize::from(left);
        }
        let window = self.outcomes.len();
        let flooded =
            window >= self.min_events && self.dead as f64 >= self.max_ratio * window as f64;
        flooded.then(|| Flood {
            dead: self.dead,
            window,
            last_error: self.last_error.clone().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(guard: &mut FloodGuard, outcomes: &str) -> Option<Flood> {
        let mut flood = None;
        for (i, c) in outcomes.chars().enumerate() {
            let dead = c == 'x';
            flood = guard.record(dead, dead.then(|| format!("error {i}")));
            if flood.is_some() {
                return flood;
            }
        }
        flood
    }

    #[test]
    fn it_stops_at_its_ratio_and_not_below() {
        // Window 10, ratio 0.5: 4 dead of 10 goes on, the fifth stops.
        let mut guard = FloodGuard::new(10, 10, 0.5);
        assert_eq!(feed(&mut guard, ".x.x.x.x.."), None, "4 of 10");
        let flood = guard.record(true, Some("the fifth".into()));
        // The window slid: the oldest ('.') left, 5 dead of 10.
        assert_eq!(
            flood,
            Some(Flood {
                dead: 5,
                window: 10,
                last_error: "the fifth".into()
            })
        );
    }

    #[test]
    fn too_few_outcomes_never_stop_the_group() {
        let mut guard = FloodGuard::new(200, 50, 0.95);
        assert_eq!(feed(&mut guard, &"x".repeat(49)), None);
        let flood = guard
            .record(true, Some("last".into()))
            .expect("the 50th stops");
        assert_eq!((flood.dead, flood.window), (50, 50));
    }

    #[test]
    fn outcomes_older_than_the_window_no_longer_count() {
        let mut guard = FloodGuard::new(10, 10, 0.6);
        assert!(feed(&mut guard, "xxxxx.....").is_none(), "5 of 10");
        // Five more healthy ones push the dead out of the window.
        assert!(feed(&mut guard, ".....").is_none());
        assert!(feed(&mut guard, "xxxxx").is_none(), "5 of the last 10");
        // Counted since the start this would be 11 of 21, below the ratio.
        let flood = guard.record(true, Some("sixth".into())).expect("6 of 10");
        assert_eq!((flood.dead, flood.window), (6, 10));
    }

    #[test]
    fn the_error_named_is_the_newest_one() {
        let mut guard = FloodGuard::new(4, 4, 0.75);
        guard.record(true, Some("old".into()));
        guard.record(false, None);
        guard.record(true, Some("newer".into()));
        let flood = guard.record(true, Some("newest".into())).expect("3 of 4");
        assert_eq!(flood.last_error, "newest");
    }
}
