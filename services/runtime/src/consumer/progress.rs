//! Per-partition progress: which offsets are still being worked on, the offset that is safe to
//! commit, and per-key ordering inside the partition.
//!
//! Events of one partition run concurrently when their keys differ, so they finish out of order.
//! Only the lowest contiguous completed offset may be committed: the commit position is the
//! smallest offset still pending (or one past the highest seen when nothing is). Events that share
//! a key wait in a lane behind the one in flight, preserving per-key order.

use std::collections::{BTreeSet, VecDeque};

use foldhash::{HashMap, HashMapExt};

/// A topic partition (the topic name shared between the records of one topic).
pub(crate) type Tp = (std::sync::Arc<str>, i32);

/// Offsets of one partition that were received and are not finished.
#[derive(Debug, Default, Clone)]
pub struct PartitionProgress {
    pending: BTreeSet<i64>,
    highest_seen: Option<i64>,
}

impl PartitionProgress {
    pub fn received(&mut self, offset: i64) {
        self.pending.insert(offset);
        self.highest_seen = Some(self.highest_seen.map_or(offset, |h| h.max(offset)));
    }

    /// Marks `offset` finished (handled, or safely handed to a retry or dead-letter topic).
    pub fn finished(&mut self, offset: i64) {
        self.pending.remove(&offset);
    }

    /// The offset to commit: everything below it is finished. `None` before anything was seen.
    pub fn commit_position(&self) -> Option<i64> {
        match self.pending.first() {
            Some(lowest) => Some(*lowest),
            None => self.highest_seen.map(|h| h + 1),
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Per-key lanes of one partition: at most one event per key in flight, the rest queued in order.
#[derive(Debug)]
pub struct KeyLanes<T> {
    lanes: HashMap<Vec<u8>, VecDeque<T>>,
    queued: usize,
}

impl<T> Default for KeyLanes<T> {
    fn default() -> Self {
        KeyLanes {
            lanes: HashMap::new(),
            queued: 0,
        }
    }
}

impl<T> KeyLanes<T> {
    /// Admits an item for `key`: returns it back when it may start now, or queues it behind the
    /// item of the same key in flight.
    pub fn admit(&mut self, key: Vec<u8>, item: T) -> Option<T> {
        match self.lanes.get_mut(&key) {
            Some(queue) => {
                queue.push_back(item);
                self.queued += 1;
                None
            }
            None => {
                self.lanes.insert(key, VecDeque::new());
                Some(item)
            }
        }
    }

    /// The in-flight item of `key` finished: returns the next item of that key to start, if any.
    pub fn finish(&mut self, key: &[u8]) -> Option<T> {
        let queue = self.lanes.get_mut(key)?;
        match queue.pop_front() {
            Some(next) => {
                self.queued -= 1;
                Some(next)
            }
            None => {
                self.lanes.remove(key);
                None
            }
        }
    }

    /// Items waiting behind an in-flight item of their key.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Drops everything (partition revoked).
    pub fn clear(&mut self) -> Vec<T> {
        self.queued = 0;
        self.lanes.drain().flat_map(|(_, q)| q).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lowest_contiguous_offset_is_committed() {
        let mut p = PartitionProgress::default();
        assert_eq!(p.commit_position(), None);
        for offset in 10..15 {
            p.received(offset);
        }
        assert_eq!(p.commit_position(), Some(10));
        p.finished(12);
        p.finished(11);
        assert_eq!(p.commit_position(), Some(10), "10 is still running");
        p.finished(10);
        assert_eq!(p.commit_position(), Some(13));
        p.finished(14);
        p.finished(13);
        assert_eq!(p.commit_position(), Some(15));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn same_key_items_wait_in_order_other_keys_run() {
        let mut lanes = KeyLanes::default();
        assert_eq!(lanes.admit(b"a".to_vec(), 1), Some(1));
        assert_eq!(lanes.admit(b"a".to_vec(), 2), None);
        assert_eq!(lanes.admit(b"b".to_vec(), 3), Some(3));
        assert_eq!(lanes.admit(b"a".to_vec(), 4), None);
        assert_eq!(lanes.queued(), 2);
        assert_eq!(lanes.finish(b"a"), Some(2));
        assert_eq!(lanes.finish(b"a"), Some(4));
        assert_eq!(lanes.finish(b"a"), None);
        assert_eq!(lanes.finish(b"b"), None);
        assert_eq!(
            lanes.admit(b"a".to_vec(), 5),
            Some(5),
            "the lane was released"
        );
        assert_eq!(lanes.queued(), 0);
    }
}
