//! Events ready to run (their key's lane is free) and which one runs next.
//!
//! Classes in order: retry topics first (their events already waited), then the tiers in
//! priority order. While a higher tier has a backlog, the tiers below it keep a minimum share of
//! the slots, and are held to it: the ready events of lower tiers first take up to `quota`
//! slots, then the rest go class by class. A critical backlog thus never starves the normal
//! tier, and the normal tier never takes more than its share while critical work waits.
//! Pure: no I/O, no clock; the engine asks for the next event while it has free slots.

use std::collections::VecDeque;

use crate::topology::Tier;

/// Retry topics, then the four tiers.
const CLASSES: usize = 1 + Tier::ALL.len();

/// The class of a main topic's tier (declaration order is priority order), or of the retry
/// topics (`None`).
fn class_of(tier: Option<Tier>) -> usize {
    tier.map_or(0, |tier| 1 + tier as usize)
}

fn tier_of(class: usize) -> Option<Tier> {
    class.checked_sub(1).map(|i| Tier::ALL[i])
}

/// The group's handler slots and who holds them.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    max: usize,
    /// Slots the tiers below the top backlog keep, and may not exceed, while it lasts.
    quota: usize,
    running: usize,
    by_tier: [usize; Tier::ALL.len()],
}

impl Slots {
    /// `max` slots; lower tiers keep `min_share` of them (at least one).
    pub(crate) fn new(max: usize, min_share: f64) -> Slots {
        let max = max.max(1);
        Slots {
            max,
            quota: ((max as f64 * min_share).ceil() as usize).max(1),
            running: 0,
            by_tier: [0; Tier::ALL.len()],
        }
    }

    pub(crate) fn running(&self) -> usize {
        self.running
    }

    pub(crate) fn is_full(&self) -> bool {
        self.running >= self.max
    }

    /// An event of `tier` (`None`: a retry topic) started.
    pub(crate) fn start(&mut self, tier: Option<Tier>) {
        self.running += 1;
        if let Some(tier) = tier {
            self.by_tier[tier as usize] += 1;
        }
    }

    /// An event of `tier` finished.
    pub(crate) fn finish(&mut self, tier: Option<Tier>) {
        self.running = self.running.saturating_sub(1);
        if let Some(tier) = tier {
            let n = &mut self.by_tier[tier as usize];
            *n = n.saturating_sub(1);
        }
    }

    /// Events running from the tiers below `top`.
    fn running_below(&self, top: Tier) -> usize {
        Tier::ALL
            .iter()
            .zip(self.by_tier)
            .filter(|(tier, _)| **tier > top)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Ready events by class, oldest first in each.
#[derive(Debug)]
pub(crate) struct Ready<T> {
    queues: [VecDeque<T>; CLASSES],
    len: usize,
}

impl<T> Default for Ready<T> {
    fn default() -> Self {
        Ready {
            queues: std::array::from_fn(|_| VecDeque::new()),
            len: 0,
        }
    }
}

impl<T> Ready<T> {
    pub(crate) fn push(&mut self, tier: Option<Tier>, item: T) {
        self.queues[class_of(tier)].push_back(item);
        self.len += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keeps the events `keep` accepts; returns how many were removed.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let before = self.len;
        for queue in &mut self.queues {
            queue.retain(&mut keep);
        }
        self.len = self.queues.iter().map(VecDeque::len).sum();
        before - self.len
    }

    /// The next event to start, with its tier, given the slots and the highest tier with a
    /// backlog; `None` when nothing may start now.
    pub(crate) fn next(&mut self, slots: &Slots, top: Option<Tier>) -> Option<(Option<Tier>, T)> {
        if self.len == 0 || slots.is_full() {
            return None;
        }
        let class = self.next_class(slots, top)?;
        let item = self.queues[class].pop_front()?;
        self.len -= 1;
        Some((tier_of(class), item))
    }

    fn next_class(&self, slots: &Slots, top: Option<Tier>) -> Option<usize> {
        let below = |top: Tier| slots.running_below(top) < slots.quota;
        if let Some(top) = top.filter(|top| below(*top)) {
            let reserved = (class_of(Some(top)) + 1..CLASSES).find(|c| !self.queues[*c].is_empty());
            if reserved.is_some() {
                return reserved;
            }
        }
        let class = (0..CLASSES).find(|c| !self.queues[*c].is_empty())?;
        match (tier_of(class), top) {
            (Some(tier), Some(top)) if tier > top && !below(top) => None,
            _ => Some(class),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts what may start; returns the tiers started, in order ('R' for a retry topic).
    fn fill(ready: &mut Ready<u32>, slots: &mut Slots, top: Option<Tier>) -> String {
        let mut started = String::new();
        while let Some((tier, _)) = ready.next(slots, top) {
            slots.start(tier);
            started.push(match tier {
                None => 'R',
                Some(Tier::Critical) => 'C',
                Some(Tier::High) => 'H',
                Some(Tier::Normal) => 'N',
                Some(Tier::Low) => 'L',
            });
        }
        started
    }

    fn push(ready: &mut Ready<u32>, tier: Option<Tier>, count: u32) {
        for i in 0..count {
            ready.push(tier, i);
        }
    }

    #[test]
    fn lower_tiers_take_their_share_first_then_classes_go_in_order() {
        let (mut ready, mut slots) = (Ready::default(), Slots::new(4, 0.1));
        push(&mut ready, Some(Tier::Normal), 3);
        push(&mut ready, Some(Tier::Critical), 5);
        push(&mut ready, None, 1);
        assert_eq!(fill(&mut ready, &mut slots, Some(Tier::Critical)), "NRCC");
        assert!(slots.is_full());
        assert_eq!(ready.len(), 5);
    }

    #[test]
    fn a_lower_tier_keeps_its_minimum_share_under_a_higher_backlog() {
        let (mut ready, mut slots) = (Ready::default(), Slots::new(4, 0.1));
        push(&mut ready, Some(Tier::Normal), 20);
        push(&mut ready, Some(Tier::Critical), 30);
        // Round after round, every slot freed: one of four for the normal tier.
        for round in 0..10 {
            let started = fill(&mut ready, &mut slots, Some(Tier::Critical));
            assert_eq!(started, "NCCC", "round {round}");
            for tier in started.chars() {
                let tier = if tier == 'N' {
                    Tier::Normal
                } else {
                    Tier::Critical
                };
                slots.finish(Some(tier));
            }
        }
    }

    #[test]
    fn a_lower_tier_is_held_to_its_share_while_the_higher_one_still_has_work() {
        let (mut ready, mut slots) = (Ready::default(), Slots::new(10, 0.2));
        push(&mut ready, Some(Tier::Low), 20);
        push(&mut ready, Some(Tier::High), 1);
        // The high tier's only event runs; its backlog (held, not ready) still counts.
        assert_eq!(fill(&mut ready, &mut slots, Some(Tier::High)), "LLH");
        assert_eq!(
            slots.running(),
            3,
            "seven slots stay free for the high tier"
        );
        // Once the high tier has no backlog, the low tier is the top and takes every slot.
        assert_eq!(
            fill(&mut ready, &mut slots, Some(Tier::Low)),
            "LLLLLLL",
            "the low tier fills the rest"
        );
    }

    #[test]
    fn nothing_starts_on_full_slots_and_a_finish_frees_one() {
        let (mut ready, mut slots) = (Ready::default(), Slots::new(2, 0.1));
        push(&mut ready, Some(Tier::Normal), 5);
        assert_eq!(fill(&mut ready, &mut slots, Some(Tier::Normal)), "NN");
        assert!(ready.next(&slots, Some(Tier::Normal)).is_none());
        slots.finish(Some(Tier::Normal));
        assert_eq!(fill(&mut ready, &mut slots, Some(Tier::Normal)), "N");
    }

    #[test]
    fn retain_drops_exactly_what_it_is_told_to() {
        let mut ready = Ready::default();
        push(&mut ready, Some(Tier::Normal), 6);
        push(&mut ready, None, 4);
        assert_eq!(ready.retain(|i| i % 2 == 0), 5);
        assert_eq!(ready.len(), 5);
        let mut left = Vec::new();
        let slots = Slots::new(100, 0.1);
        while let Some((_, i)) = ready.next(&slots, None) {
            left.push(i);
        }
        assert_eq!(
            left,
            [0, 2, 0, 2, 4],
            "retry topics first, each queue in order"
        );
    }
}
