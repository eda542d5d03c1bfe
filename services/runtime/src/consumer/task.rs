//! One event, start to finish, on its own task: decode, run the handler under the timeout,
//! send its effects, route a failure to a retry or the dead letters, mark the offset.

// Per-event lookups (partitions, keys, event types) use a fast hasher: the keys come from
// the group's own topics and records, and no map grows beyond the records it holds.
use crate::sync::MutexExt;
use foldhash::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::Headers;
use rdkafka::producer::FutureProducer;
use redis::aio::ConnectionManager;

use crate::catalog::Catalog;
use crate::consumer::breaker::BreakerState;
use crate::consumer::clock::now_ms;
use crate::consumer::handler::{Context, Event, Handler, HandlerError};
use crate::consumer::partitions::Shared;
use crate::consumer::progress::Tp;
use crate::consumer::rebalance::GroupConsumer;
use crate::consumer::record::Record;
use crate::consumer::retry::{self, DeadLetterReason, Failure, NextStop, Origin, RetryState};
use crate::consumer::stats::{Accumulator, Tally};
use crate::consumer::telemetry::GroupMetrics;
use crate::consumer::trace_steps;
use crate::publisher::{EventPublisher, OutboundRecord};
use crate::realtime::{self, RealtimeMessage};
use crate::registry::SchemaRegistry;
use crate::topology::Group;

/// Everything a handler task needs.
pub(super) struct Runtime {
    pub(super) catalog: Arc<Catalog>,
    pub(super) group: Group,
    pub(super) group_name: Arc<str>,
    pub(super) source: Arc<str>,
    pub(super) handlers: HashMap<String, Registered>,
    pub(super) registry: Arc<SchemaRegistry>,
    pub(super) producer: FutureProducer,
    pub(super) publisher: EventPublisher,
    pub(super) redis: Option<ConnectionManager>,
    pub(super) consumer: Arc<GroupConsumer>,
    pub(super) shared: Arc<Shared>,
    pub(super) stats: Mutex<Accumulator>,
}

impl Runtime {
    pub(super) fn tally(&self, event_type: &str, tally: Tally, duration: Duration) {
        self.stats().record(event_type, tally, duration);
    }

    /// Counts events the group emitted, for the figures' `published_by:<group>`.
    pub(super) fn count_published<'a>(&self, event_types: impl IntoIterator<Item = &'a str>) {
        let mut stats = self.stats();
        for event_type in event_types {
            stats.record_published(event_type);
        }
    }

    pub(super) fn stats(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.stats.locked()
    }
}

/// A handler with its event type's metrics, resolved once (not per event).
pub(super) struct Registered {
    pub(super) handler: Arc<dyn Handler>,
    pub(super) duration: prometheus::Histogram,
    pub(super) processed: prometheus::IntCounter,
    pub(super) failed: prometheus::IntCounter,
}

impl Registered {
    pub(super) fn new(
        handler: Arc<dyn Handler>,
        metrics: &GroupMetrics,
        event_type: &str,
    ) -> Registered {
        Registered {
            handler,
            duration: metrics.duration.with_label_values(&[event_type]),
            processed: metrics.processed.with_label_values(&[event_type]),
            failed: metrics.failed.with_label_values(&[event_type]),
        }
    }
}

/// What a handler task reports back to the engine.
pub(super) enum Outcome {
    /// Finished: succeeded, skipped, retried or dead-lettered. The offset is marked finished.
    Done {
        dead_lettered: bool,
        error: Option<String>,
        /// Transactional groups: the records this event produced, committed with its offset.
        records: Vec<OutboundRecord>,
    },
    /// A dependency's breaker is open: the event waits in memory, its offset stays pending.
    Parked { dependency: String },
}

/// Marks an offset finished; the engine stores the partition's commit position on its next tick.
/// A transactional group stages the event's records instead, under the same lock, for the next
/// transaction.
///
/// `records` is `None` for a parked event: it left the handler slot but is not finished. Returns
/// whether the partition is being revoked (or is gone).
pub(super) fn finish_offset(
    runtime: &Runtime,
    tp: &Tp,
    offset: i64,
    records: Option<Vec<OutboundRecord>>,
) -> bool {
    let mut table = runtime.shared.table();
    let Some(entry) = table.partitions.get_mut(tp) else {
        return true;
    };
    entry.in_flight = entry.in_flight.saturating_sub(1);
    if let Some(records) = records {
        entry.progress.finished(offset);
        if let Some(transactions) = &runtime.shared.transactions {
            transactions.stage(records);
        }
    }
    // Only a revocation waits for in-flight events (a notification is a system call).
    if entry.revoking {
        runtime.shared.changed.notify_all();
    }
    entry.revoking
}

/// One event, start to finish: decode, handle, emit, or route the failure.
/// Failure routing and effects are boxed where they are awaited: every event's task stays
/// small (it is moved into the runtime's task cell), the paths most events skip pay for the box.
pub(super) async fn process(runtime: &Runtime, tp: &Tp, message: &Record) -> Outcome {
    let started = Instant::now();
    let state = message.retry_state();
    let origin = state.origin.clone().unwrap_or(Origin {
        topic: tp.0.to_string(),
        partition: tp.1,
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
    });
    let event = match decode(runtime, message, &state, &origin).await {
        Ok(Some(event)) => event,
        // A type of the topic this group does not subscribe to.
        Ok(None) => {
            return Outcome::Done {
                dead_lettered: false,
                error: None,
                records: Vec::new(),
            }
        }
        Err(Decode::Poison(reason)) => {
            return Box::pin(route_failure(
                runtime,
                message,
                &state,
                &origin,
                "undecodable",
                &reason,
                None,
            ))
            .await
        }
        Err(Decode::Transient(reason)) => {
            // The registry is unreachable: the record is fine, the lookup is not.
            return Box::pin(route_failure(
                runtime,
                message,
                &state,
                &origin,
                "dependency",
                &reason,
                Some(true),
            ))
            .await;
        }
    };
    let Some((event_type, registered)) = runtime.handlers.get_key_value(event.event_type()) else {
        return Outcome::Done {
            dead_lettered: false,
            error: None,
            records: Vec::new(),
        };
    };
    let ctx = Context::new(
        runtime.group_name.clone(),
        runtime.source.clone(),
        event.metadata.clone(),
    );
    let span = tracing::info_span!(
        "event",
        group = %runtime.group_name,
        event_type = %event_type,
        event_id = %event.metadata.id,
        correlation_id = event.metadata.correlation_id.as_deref().unwrap_or(""),
        topic = %tp.0,
        partition = tp.1,
        offset = message.offset(),
        attempt = state.attempt,
    );
    let result = tracing::Instrument::instrument(
        tokio::time::timeout(
            runtime.group.timeout,
            registered.handler.handle(event, ctx.clone()),
        ),
        span,
    )
    .await
    .unwrap_or_else(|_| {
        Err(HandlerError::Retryable(format!(
            "timed out after {:?}",
            runtime.group.timeout
        )))
    });
    let result = match result {
        Ok(()) => Box::pin(apply_effects(runtime, &ctx)).await,
        Err(e) => Err(e),
    };
    let mut records = Vec::new();
    let result = result.map(|staged| records = staged);
    let elapsed = started.elapsed();
    registered.duration.observe(elapsed.as_secs_f64());
    match result {
        Ok(()) => {
            runtime.shared.breakers().succeeded(event_type);
            registered.processed.inc();
            runtime.tally(event_type, Tally::Completed, elapsed);
            trace_steps::processed(
                runtime.publisher.trace(),
                &runtime.group_name,
                message,
                &state,
                now_ms(),
            );
            Outcome::Done {
                dead_lettered: false,
                error: None,
                records,
            }
        }
        Err(error) => {
            registered.failed.inc();
            if let HandlerError::Dependency { dependency, .. } = &error {
                let state =
                    runtime
                        .shared
                        .breakers()
                        .failed(event_type, dependency, Instant::now());
                if !matches!(state, BreakerState::Closed) {
                    return Outcome::Parked {
                        dependency: dependency.clone(),
                    };
                }
            }
            Box::pin(route_failure(
                runtime,
                message,
                &state,
                &origin,
                error.class(),
                &error.to_string(),
                Some(error.is_retryable()),
            ))
            .await
        }
    }
}

pub(super) enum Decode {
    Poison(String),
    Transient(String),
}

pub(super) async fn decode(
    runtime: &Runtime,
    message: &Record,
    state: &RetryState,
    origin: &Origin,
) -> Result<Option<Event>, Decode> {
    let metadata = message
        .metadata()
        .map_err(|e| Decode::Poison(format!("headers: {e}")))?;
    if !runtime.group.subscribe.contains(&metadata.event_type) {
        return Ok(None);
    }
    let payload = message
        .payload()
        .ok_or_else(|| Decode::Poison("the record has no value".into()))?;
    let decoded = runtime.registry.decode_json(payload).await.map_err(|e| {
        if e.is_transient() {
            Decode::Transient(e.to_string())
        } else {
            Decode::Poison(e.to_string())
        }
    })?;
    let expected = runtime
        .catalog
        .event(&metadata.event_type)
        .map(|e| e.full_name.clone());
    if decoded.full_name.is_some() && decoded.full_name != expected {
        return Err(Decode::Poison(format!(
            "`{}` carries a {} record",
            metadata.event_type,
            decoded.full_name.unwrap_or_default()
        )));
    }
    Ok(Some(Event {
        data: decoded.data,
        key: message.key().map(<[u8]>::to_vec),
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        origin: origin.clone(),
        attempt: state.attempt,
        metadata,
    }))
}

/// Sends what the handler emitted (awaiting acks) and its broadcasts (best effort). A
/// transactional group gets the encoded records back, to commit with the offset. Broadcasts
/// carry the correlation id of the handled event and ids stable across its redeliveries
/// ([`realtime::broadcast_ids`]: the event's own id for a message relaying it).
pub(super) async fn apply_effects(
    runtime: &Runtime,
    ctx: &Context,
) -> Result<Vec<OutboundRecord>, HandlerError> {
    let cause = ctx.cause();
    let (emitted, broadcasts) = ctx.take_effects();
    if emitted.is_empty() && broadcasts.is_empty() {
        return Ok(Vec::new());
    }
    let trace = runtime.publisher.trace();
    let children: Vec<(String, String)> = if trace.is_enabled() {
        emitted
            .iter()
            .filter_map(|d| Some((d.id.clone()?, d.event_type.clone())))
            .collect()
    } else {
        Vec::new()
    };
    let mut validated = Vec::with_capacity(emitted.len());
    for draft in emitted {
        let event = runtime
            .publisher
            .validate(draft)
            .map_err(|e| HandlerError::permanent(format!("emitted event: {e}")))?;
        validated.push(event);
    }
    let mut staged = Vec::new();
    if runtime.shared.transactions.is_some() {
        for event in validated {
            let record = runtime
                .publisher
                .encode(event)
                .await
                .map_err(|e| HandlerError::retryable(format!("emitting: {e}")))?;
            staged.push(record);
        }
        runtime.count_published(staged.iter().map(|r| r.event_type.as_str()));
    } else {
        let results = runtime.publisher.publish_all(validated).await;
        // Each acknowledged record counts, also when a sibling failed (a retry sends it again).
        runtime.count_published(
            results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|d| d.event_type.as_str()),
        );
        for result in results {
            result.map_err(|e| HandlerError::retryable(format!("emitting: {e}")))?;
        }
    }
    trace.caused(&cause.id, children);
    if let (Some(redis), false) = (&runtime.redis, broadcasts.is_empty()) {
        let mut redis = redis.clone();
        let named: Vec<(&str, &str)> = broadcasts
            .iter()
            .map(|b| (b.channel.as_str(), b.event_type.as_str()))
            .collect();
        let ids = realtime::broadcast_ids(&runtime.group_name, cause, &named);
        for (broadcast, id) in broadcasts.into_iter().zip(ids) {
            let message = RealtimeMessage::new(
                &broadcast.event_type,
                &id,
                chrono::Utc::now(),
                broadcast.data,
            )
            .with_correlation_id(cause.correlation_id.clone());
            if let Err(e) = realtime::publish(&mut redis, &[broadcast.channel], &message).await {
                tracing::warn!(error = %e, "broadcast failed");
            }
        }
    }
    Ok(staged)
}

/// Produces a failed record to its next stop and waits for the broker's ack. `retryable` None
/// means undecodable (straight to the dead letters).
pub(super) async fn route_failure(
    runtime: &Runtime,
    message: &Record,
    state: &RetryState,
    origin: &Origin,
    class: &str,
    reason: &str,
    retryable: Option<bool>,
) -> Outcome {
    let stop = match retryable {
        None => NextStop::DeadLetter {
            topic: runtime
                .catalog
                .topic_name(&runtime.group.dead_letter_topic_base()),
            reason: DeadLetterReason::Poison,
        },
        Some(retryable) => {
            retry::next_stop(&runtime.catalog, &runtime.group, state.attempt, retryable)
        }
    };
    let failure = Failure {
        group: &runtime.group_name,
        class,
        message: reason,
        now_ms: now_ms(),
    };
    let headers = retry::headers_for(message.headers(), state, origin, &failure, &stop);
    let (topic, dead_lettered) = match &stop {
        NextStop::Retry { topic, .. } => (topic.clone(), false),
        NextStop::DeadLetter { topic, .. } => (topic.clone(), true),
    };
    let event_type = headers
        .iter()
        .find(|h| h.key == crate::cloudevents::header::TYPE)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| "unknown".into());
    let mut records = Vec::new();
    if runtime.shared.transactions.is_some() {
        // The hand-off commits with the offset, in the group's next transaction.
        records.push(OutboundRecord {
            topic: topic.clone(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: headers.clone(),
            id: String::new(),
            event_type: event_type.clone(),
            note: None,
        });
    }
    // The hand-off must succeed before the offset may be committed: retry until it does (or the
    // task is aborted at shutdown, leaving the offset uncommitted for redelivery).
    let mut backoff = Duration::from_millis(100);
    while records.is_empty() {
        let mut record = rdkafka::producer::FutureRecord::to(&topic)
            .headers(headers.clone())
            .payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match runtime
            .producer
            .send(
                record,
                rdkafka::util::Timeout::After(Duration::from_secs(5)),
            )
            .await
        {
            Ok(_) => break,
            Err((e, _)) => {
                tracing::warn!(error = %e, topic = %topic, "could not hand a failed event on; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    trace_steps::handed_on(
        runtime.publisher.trace(),
        &runtime.group_name,
        message,
        &event_type,
        origin,
        &stop,
        state,
        (class, reason),
        failure.now_ms,
    );
    let metrics = &runtime.shared.metrics;
    runtime.tally(
        &event_type,
        if dead_lettered {
            Tally::DeadLettered
        } else {
            Tally::Retried
        },
        Duration::ZERO,
    );
    if dead_lettered {
        metrics
            .dead_lettered
            .with_label_values(&[&event_type])
            .inc();
        tracing::warn!(topic = %topic, error_class = class, error = reason, "event dead-lettered");
    } else {
        metrics.retried.with_label_values(&[&event_type]).inc();
    }
    Outcome::Done {
        dead_lettered,
        error: Some(reason.to_string()),
        records,
    }
}
