//! The partitions a group process owns, shared by the poll thread, the engine and the event
//! tasks: progress, in-flight counts, revocation and pause reasons, under one lock.

// Per-event lookups (partitions, keys, event types) use a fast hasher: the keys come from
// the group's own topics and records, and no map grows beyond the records it holds.
use crate::sync::MutexExt;
use foldhash::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::TopicPartitionList;

use crate::consumer::dependencies::Dependencies;
use crate::consumer::progress::{PartitionProgress, Tp};
use crate::consumer::scheduler::PauseReason;
use crate::consumer::telemetry::GroupMetrics;
use crate::consumer::transactions::{Positions, Transactions};
use crate::topology::Tier;

#[derive(Debug, Default)]
pub(super) struct PartitionEntry {
    pub(super) progress: PartitionProgress,
    pub(super) in_flight: usize,
    pub(super) revoking: bool,
    pub(super) paused: HashSet<PauseReason>,
    /// Consumer lag from the client's statistics.
    pub(super) lag: i64,
}

#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) partitions: HashMap<Tp, PartitionEntry>,
    /// The highest tier with a lag the client reported (refreshed with its statistics).
    pub(super) lagging_tier: Option<Tier>,
}

/// State shared by the poll thread, the engine and handler tasks.
pub(super) struct Shared {
    pub(super) table: Mutex<Table>,
    pub(super) changed: Condvar,
    pub(super) breakers: Mutex<Dependencies>,
    /// Priority tier of each main topic.
    pub(super) tiers: HashMap<String, Tier>,
    pub(super) drain_timeout: Duration,
    pub(super) metrics: GroupMetrics,
    /// Set for transactional groups.
    pub(super) transactions: Option<Arc<Transactions>>,
    /// The engine applies an operator pause: partitions assigned meanwhile pause at once.
    pub(super) operator_paused: AtomicBool,
    /// Set once the member has joined and holds its assignment ([`super::ConsumerGroup::joined`]).
    pub(super) joined: Arc<AtomicBool>,
}

impl Shared {
    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.locked()
    }

    pub(super) fn breakers(&self) -> std::sync::MutexGuard<'_, Dependencies> {
        self.breakers.locked()
    }
}

impl Positions for Shared {
    fn snapshot(&self, take: &mut dyn FnMut()) -> Vec<(Tp, i64)> {
        let table = self.table();
        take();
        table
            .partitions
            .iter()
            .filter_map(|(tp, e)| e.progress.commit_position().map(|p| (tp.clone(), p)))
            .collect()
    }
}

impl Shared {
    pub(super) fn update_paused_gauge(&self) {
        let paused = self
            .table()
            .partitions
            .values()
            .filter(|e| !e.paused.is_empty())
            .count();
        self.metrics.paused.set(paused as i64);
    }

    pub(super) fn assigned(&self) -> Vec<Tp> {
        self.table().partitions.keys().cloned().collect()
    }
}

/// Adds or removes one reason to pause each partition; the client pauses a partition with any
/// reason and resumes it when none is left. Used by the engine and the poll thread.
pub(super) fn set_pause<C: ConsumerContext>(
    shared: &Shared,
    consumer: &BaseConsumer<C>,
    tps: &[Tp],
    reason: PauseReason,
    on: bool,
) {
    let mut change = TopicPartitionList::new();
    {
        let mut table = shared.table();
        for tp in tps {
            let Some(entry) = table.partitions.get_mut(tp) else {
                continue;
            };
            let was_running = entry.paused.is_empty();
            if on {
                entry.paused.insert(reason);
            } else {
                entry.paused.remove(&reason);
            }
            if was_running != entry.paused.is_empty() {
                change.add_partition(&tp.0, tp.1);
            }
        }
    }
    if change.count() == 0 {
        return;
    }
    let result = if on {
        consumer.pause(&change)
    } else {
        consumer.resume(&change)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "pause/resume");
    }
    shared.update_paused_gauge();
}
