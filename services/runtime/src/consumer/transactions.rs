//! Transactional groups: for a group whose effects are only Kafka records, the records an event
//! produced (emitted events, or its retry / dead-letter hand-off) and the offsets that move past
//! it commit in one Kafka transaction. A crash anywhere leaves either both or neither, so
//! `read_committed` readers never see an emitted event twice and nothing is lost.
//!
//! Handler tasks stage their records here when their event finishes, under the same lock that
//! marks the offset finished. A committer thread runs one transaction per interval (or on a
//! flush): it snapshots the staged records together with every partition's commit position (the
//! lowest offset still pending), so the offsets in a transaction never pass an event whose
//! records are not in it or in an earlier one. Aborted transactions are retried with the same
//! content; a fatal error (this instance was fenced) stops the group without committing.

use crate::sync::MutexExt;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::consumer::progress::Tp;
use crate::publisher::OutboundRecord;
use crate::trace::TraceIndex;

/// Timeout of one transactional call to the broker (begin, offsets, commit, abort).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at one transaction before the group gives up and stops.
const ATTEMPTS: u32 = 5;

#[derive(Default)]
struct State {
    staged: Vec<OutboundRecord>,
    /// Flush requests made and flushes completed (a flush completes with the first transaction
    /// whose snapshot was taken after it was requested).
    requested: u64,
    completed: u64,
    failed: Option<String>,
    stopping: bool,
}

/// The staging area shared by handler tasks, the rebalance callback and the committer thread.
pub(crate) struct Transactions {
    state: Mutex<State>,
    changed: Condvar,
    interval: Duration,
}

impl Transactions {
    pub(crate) fn new(interval: Duration) -> Arc<Transactions> {
        Arc::new(Transactions {
            state: Mutex::default(),
            changed: Condvar::new(),
            interval,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Stages the records of a finished event. Called while the caller holds the partition
    /// table's lock, so the committer sees the records and the finished offset together.
    pub(crate) fn stage(&self, records: Vec<OutboundRecord>) {
        if records.is_empty() {
            return;
        }
        self.state().staged.extend(records);
    }

    /// Why the committer stopped, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.state().failed.clone()
    }

    /// Requests a transaction now and waits (at most until `deadline`) until one whose snapshot
    /// was taken after this call committed. False when it did not happen in time or failed.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        let mut state = self.state();
        if state.stopping {
            // The committer already ran its last transaction (shutdown): nothing is pending.
            return state.staged.is_empty() && state.failed.is_none();
        }
        state.requested += 1;
        let ticket = state.requested;
        self.changed.notify_all();
        while state.completed < ticket && state.failed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.failed.is_none()
    }

    /// Stops the committer after its current transaction.
    pub(crate) fn stop(&self) {
        self.state().stopping = true;
        self.changed.notify_all();
    }
}

/// What the committer reads from the engine: the commit position of every owned partition.
pub(crate) trait Positions: Send + Sync + 'static {
    /// Takes a consistent snapshot: every partition's commit position, and (through `take`)
    /// the staged records, under the lock that finishing events also hold.
    fn snapshot(&self, take: &mut dyn FnMut()) -> Vec<(Tp, i64)>;
}

/// Initialises the transactional producer, then runs transactions until stopped or failed. The
/// group consumes meanwhile: what it finishes is staged until the first transaction, so joining
/// the group and initialising the producer overlap instead of adding up.
pub(crate) fn spawn_committer<P: Positions, C: ConsumerContext + 'static>(
    transactions: Arc<Transactions>,
    producer: FutureProducer,
    consumer: Arc<BaseConsumer<C>>,
    positions: Arc<P>,
    trace: TraceIndex,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("circ-txn".into())
        .spawn(move || {
            if let Err(e) = producer.init_transactions(Duration::from_secs(30)) {
                let error = format!("initialising transactions: {e}");
                tracing::error!(error = %error, "stopping the group");
                transactions.state().failed = Some(error);
                transactions.changed.notify_all();
                return;
            }
            let mut committed: HashMap<Tp, i64> = HashMap::new();
            loop {
                {
                    let state = transactions.state();
                    let (state, _) = transactions
                        .changed
                        .wait_timeout_while(state, transactions.interval, |s| {
                            !s.stopping && s.requested == s.completed
                        })
                        .unwrap_or_else(|e| e.into_inner());
                    if state.failed.is_some() {
                        return;
                    }
                }
                let mut records = Vec::new();
                let mut ticket = 0;
                let mut stopping = false;
                let snapshot = positions.snapshot(&mut || {
                    let mut state = transactions.state();
                    records = std::mem::take(&mut state.staged);
                    ticket = state.requested;
                    stopping = state.stopping;
                });
                let offsets: Vec<(Tp, i64)> = snapshot
                    .into_iter()
                    .filter(|(tp, position)| committed.get(tp) != Some(position))
                    .collect();
                if !records.is_empty() || !offsets.is_empty() {
                    let done = commit(&producer, consumer.as_ref(), &records, &offsets);
                    if let Err(e) =
                        done.map(|deliveries| trace_written(&trace, &records, deliveries))
                    {
                        tracing::error!(error = %e, "transaction failed: stopping the group");
                        let mut state = transactions.state();
                        state.failed = Some(e);
                        transactions.changed.notify_all();
                        return;
                    }
                    committed.extend(offsets);
                }
                let mut state = transactions.state();
                state.completed = state.completed.max(ticket);
                transactions.changed.notify_all();
                if stopping {
                    return;
                }
            }
        })
        .expect("spawn the transaction thread")
}

/// One transaction: the records, then the offsets, then commit; retried after an abortable
/// error with the same content.
fn commit<C: ConsumerContext>(
    producer: &FutureProducer,
    consumer: &BaseConsumer<C>,
    records: &[OutboundRecord],
    offsets: &[(Tp, i64)],
) -> Result<Vec<(usize, DeliveryFuture)>, String> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), position) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*position))
            .map_err(|e| e.to_string())?;
    }
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        match try_commit(producer, consumer, records, &list) {
            Ok(deliveries) => return Ok(deliveries),
            Err(e) => {
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                last_error = e.to_string();
                if fatal {
                    break;
                }
                tracing::warn!(error = %e, attempt, "transaction aborted; retrying");
                if let Err(abort) = producer.abort_transaction(CALL_TIMEOUT) {
                    if matches!(&abort, KafkaError::Transaction(t) if t.is_fatal()) {
                        last_error = abort.to_string();
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
            }
        }
    }
    Err(last_error)
}

fn try_commit<C: ConsumerContext>(
    producer: &FutureProducer,
    consumer: &BaseConsumer<C>,
    records: &[OutboundRecord],
    offsets: &TopicPartitionList,
) -> Result<Vec<(usize, DeliveryFuture)>, KafkaError> {
    producer.begin_transaction()?;
    let mut deliveries = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let mut future_record = FutureRecord::to(&record.topic)
            .payload(&record.payload)
            .headers(record.headers.clone());
        if let Some(key) = &record.key {
            future_record = future_record.key(key);
        }
        // Enqueue only: commit_transaction flushes and fails if any record failed.
        let mut pending = future_record;
        loop {
            match producer.send_result(pending) {
                Ok(delivery) => {
                    if record.note.is_some() {
                        deliveries.push((index, delivery));
                    }
                    break;
                }
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    std::thread::sleep(Duration::from_millis(20));
                    pending = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    if offsets.count() > 0 {
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| KafkaError::Subscription("no consumer group metadata".into()))?;
        producer.send_offsets_to_transaction(offsets, &metadata, CALL_TIMEOUT)?;
    }
    producer.commit_transaction(CALL_TIMEOUT)?;
    Ok(deliveries)
}

/// Records the committed events in the trace index. Committing flushed the producer, so every
/// delivery report has been served; one that has not is skipped (the index is best effort).
fn trace_written(
    trace: &TraceIndex,
    records: &[OutboundRecord],
    deliveries: Vec<(usize, DeliveryFuture)>,
) {
    for (index, delivery) in deliveries {
        let record = &records[index];
        let (Some(note), Some(Ok(Ok(delivery)))) = (&record.note, delivery.now_or_never()) else {
            continue;
        };
        trace.written(note.clone().written(
            &record.id,
            &record.event_type,
            &record.topic,
            delivery.partition,
            delivery.offset,
        ));
    }
}
