//! Retry records held until they are due.
//!
//! A record read from a retry topic carries the time it is due (`circ_due_at`). Records of one
//! retry topic share a delay, so within a partition they come due in order: the head decides,
//! a record behind a waiting one waits too, and the partition stays paused until nothing of it
//! waits. Pure: time is passed in, in epoch milliseconds.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Whether a retry due at `due_ms` may run at `now_ms`. Both are whole milliseconds, truncated:
/// the due time was computed from a truncated failure time, so only a clock past the due
/// millisecond proves the full delay elapsed (at `now == due` it may be short by up to 1 ms).
pub(crate) fn is_due(due_ms: i64, now_ms: i64) -> bool {
    now_ms > due_ms
}

/// What became of an arriving retry record.
#[derive(Debug, PartialEq)]
pub(crate) enum Arrival<T> {
    /// Due, and nothing of its partition waits: it may run now.
    Due(T),
    /// Held; its partition must stay paused.
    Held,
}

/// Records that came due, and the partitions left with nothing waiting.
#[derive(Debug, PartialEq)]
pub(crate) struct Released<K, T> {
    /// Per partition in arrival order.
    pub(crate) due: Vec<(K, T)>,
    /// To resume.
    pub(crate) emptied: Vec<K>,
}

#[derive(Debug)]
pub(crate) struct Delayed<K, T> {
    queues: HashMap<K, VecDeque<(i64, T)>>,
}

impl<K, T> Default for Delayed<K, T> {
    fn default() -> Self {
        Delayed {
            queues: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash, T> Delayed<K, T> {
    /// A retry record of `partition` due at `due_ms` (0: at once) arrives at `now_ms`.
    pub(crate) fn arrive(
        &mut self,
        partition: &K,
        due_ms: i64,
        item: T,
        now_ms: i64,
    ) -> Arrival<T> {
        let waiting = self.queues.get(partition).is_some_and(|q| !q.is_empty());
        if is_due(due_ms, now_ms) && !waiting {
            return Arrival::Due(item);
        }
        self.queues
            .entry(partition.clone())
            .or_default()
            .push_back((due_ms, item));
        Arrival::Held
    }

    /// Takes every record due by `now_ms`.
    pub(crate) fn release(&mut self, now_ms: i64) -> Released<K, T> {
        let mut released = Released {
            due: Vec::new(),
            emptied: Vec::new(),
        };
        self.queues.retain(|partition, queue| {
            while queue.front().is_some_and(|(due, _)| is_due(*due, now_ms)) {
                if let Some((_, item)) = queue.pop_front() {
                    released.due.push((partition.clone(), item));
                }
            }
            if queue.is_empty() {
                released.emptied.push(partition.clone());
            }
            !queue.is_empty()
        });
        released
    }

    /// Drops what `partition` holds (revoked); returns how many records.
    pub(crate) fn remove(&mut self, partition: &K) -> usize {
        self.queues.remove(partition).map_or(0, |q| q.len())
    }

    pub(crate) fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    pub(crate) fn partitions(&self) -> impl Iterator<Item = &K> {
        self.queues.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_due_only_once_its_millisecond_has_passed() {
        // Failed at 1000.9 ms (recorded as 1000) with a 4 s delay: due 5000. At 5000.2 ms only
        // 3999.3 ms have passed.
        assert!(!is_due(5000, 4999));
        assert!(!is_due(5000, 5000));
        assert!(is_due(5000, 5001));
        // Replays carry no due time: due at once.
        assert!(is_due(0, 1));
    }

    #[test]
    fn nothing_runs_before_its_due_time() {
        let mut delayed = Delayed::default();
        assert_eq!(delayed.arrive(&"p0", 2_000, 'a', 1_000), Arrival::Held);
        assert_eq!(delayed.arrive(&"p0", 2_500, 'b', 1_100), Arrival::Held);
        for now in [1_000, 1_999, 2_000] {
            assert_eq!(delayed.release(now).due, [], "at {now}");
        }
        let at_2001 = delayed.release(2_001);
        assert_eq!(at_2001.due, [("p0", 'a')]);
        assert_eq!(
            at_2001.emptied,
            [] as [&str; 0],
            "b still waits: stay paused"
        );
        assert_eq!(delayed.release(2_500).due, []);
        let at_2501 = delayed.release(2_501);
        assert_eq!(at_2501.due, [("p0", 'b')]);
        assert_eq!(at_2501.emptied, ["p0"]);
        assert_eq!(delayed.len(), 0);
    }

    #[test]
    fn a_due_record_behind_a_waiting_one_waits_for_it() {
        let mut delayed = Delayed::default();
        assert_eq!(delayed.arrive(&"p0", 5_000, 'a', 1_000), Arrival::Held);
        // Due already (a replay, say), but order within the partition holds.
        assert_eq!(delayed.arrive(&"p0", 0, 'b', 1_000), Arrival::Held);
        // Another partition is not held back.
        assert_eq!(delayed.arrive(&"p1", 0, 'c', 1_000), Arrival::Due('c'));
        assert_eq!(delayed.release(4_000).due, []);
        assert_eq!(delayed.release(5_001).due, [("p0", 'a'), ("p0", 'b')]);
    }

    #[test]
    fn removing_a_partition_drops_exactly_its_records() {
        let mut delayed = Delayed::default();
        delayed.arrive(&"p0", 9_000, 'a', 0);
        delayed.arrive(&"p0", 9_000, 'b', 0);
        delayed.arrive(&"p1", 9_000, 'c', 0);
        assert_eq!(delayed.remove(&"p0"), 2);
        assert_eq!(delayed.remove(&"p0"), 0);
        assert_eq!(delayed.len(), 1);
        assert_eq!(delayed.partitions().collect::<Vec<_>>(), [&"p1"]);
    }
}
