//! Publishing domain events: validate JSON against the catalog, encode in wire format, produce
//! with CloudEvents headers, and answer only once the broker acknowledged.
//!
//! Validation is separate from publishing and does no I/O, so a batch can be checked whole before
//! any of it is produced: a batch with one bad event produces nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::catalog::{Catalog, EventType};
use crate::cloudevents::EventMetadata;
use crate::codec::FieldError;
use crate::registry::{RegistryError, SchemaRegistry};
use crate::trace::{self, TraceIndex};

/// An event as a client submits it.
#[derive(Debug, Clone, Default)]
pub struct EventDraft {
    pub event_type: String,
    pub data: serde_json::Value,
    /// Event id; generated (UUIDv7) when absent.
    pub id: Option<String>,
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub source: Option<String>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// A draft that passed validation: routed, keyed and converted to Avro.
#[derive(Debug, Clone)]
pub struct ValidatedEvent {
    pub metadata: EventMetadata,
    pub event: Arc<EventType>,
    /// The data in Avro binary encoding (the datum, without the wire format's header).
    pub datum: Vec<u8>,
    /// Partition key (`None` for ephemeral types).
    pub key: Option<String>,
}

impl ValidatedEvent {
    /// The data as plain JSON, read back from the datum (what consumers will see).
    pub fn data(&self) -> Result<serde_json::Value, String> {
        self.event
            .codec
            .decode_json(&self.datum)
            .map_err(|e| e.to_string())
    }
}

/// An encoded event, ready to be produced (alone, or inside a Kafka transaction).
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
    pub id: String,
    pub event_type: String,
    /// For the trace index, once acknowledged; None for a record that is not a new event (a
    /// retry or dead-letter hand-off).
    pub note: Option<trace::Note>,
}

/// What the broker acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivered {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a draft was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("`data` does not match the schema of `{event_type}`")]
    Schema {
        event_type: String,
        errors: Vec<FieldError>,
    },
    #[error("invalid attribute `{attribute}`: {message}")]
    Attribute {
        attribute: &'static str,
        message: String,
    },
    /// The record (key, value and headers) would exceed what the brokers accept.
    #[error("the record would have {size} bytes; the largest accepted is {limit}")]
    TooLarge { size: usize, limit: usize },
}

/// Why a validated event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("`{0}` is ephemeral: it is broadcast on Redis, never written to Kafka")]
    Ephemeral(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("kafka: {0}")]
    Kafka(KafkaError),
}

impl PublishError {
    /// Whether the record may have been written although the publish failed: it reached the
    /// producer and its outcome is unknown (timed out in flight, the producer closed). A retry
    /// of such a publish can write the event twice; every other failure wrote nothing.
    pub fn possibly_written(&self) -> bool {
        match self {
            PublishError::Ephemeral(_) | PublishError::Registry(_) => false,
            PublishError::Kafka(e) => match e.rdkafka_error_code() {
                Some(code) => !refuses_the_record(code) && !never_sent(code),
                None => true,
            },
        }
    }

    /// Whether retrying later may succeed (cluster or registry down, queue full, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Ephemeral(_) => false,
            PublishError::Registry(e) => e.is_transient(),
            PublishError::Kafka(e) => !e.rdkafka_error_code().is_some_and(refuses_the_record),
        }
    }
}

/// The broker or the client refuses this record as it is: retrying cannot help.
fn refuses_the_record(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidRecord
    )
}

/// The record never left the client: nothing can have been written.
fn never_sent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::QueueFull
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::PurgeQueue
    )
}

/// Longest attribute value (id, subject, source) accepted.
pub const MAX_ATTRIBUTE_LEN: usize = 256;

/// Longest W3C `tracestate` carried (the specification's own bound is 512 characters).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// Largest record produced by default: librdkafka's `message.max.bytes`, below the broker's
/// default `message.max.bytes` (1 MiB plus framing). A larger record would be refused by the
/// client or the broker only after the event was accepted.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;

/// Bytes a record's headers and framing take beyond their values (names, lengths, the wire
/// format's magic byte and schema id), rounded up.
const RECORD_OVERHEAD_BYTES: usize = 256;

fn check_trace_context(draft: &EventDraft) -> Result<(), ValidationError> {
    if let Some(traceparent) = &draft.traceparent {
        if !crate::cloudevents::is_valid_traceparent(traceparent) {
            return Err(ValidationError::Attribute {
                attribute: "traceparent",
                message: "must be a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>".into(),
            });
        }
    }
    match &draft.tracestate {
        Some(state)
            if state.len() > MAX_TRACESTATE_LEN
                || !state.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            Err(ValidationError::Attribute {
                attribute: "tracestate",
                message: format!("must be at most {MAX_TRACESTATE_LEN} printable ASCII characters"),
            })
        }
        _ => Ok(()),
    }
}

fn check_attribute(attribute: &'static str, value: &Option<String>) -> Result<(), ValidationError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_ATTRIBUTE_LEN => Err(ValidationError::Attribute {
            attribute,
            message: format!("must be 1 to {MAX_ATTRIBUTE_LEN} bytes"),
        }),
        Some(v) if v.chars().any(char::is_control) => Err(ValidationError::Attribute {
            attribute,
            message: "must not contain control characters".into(),
        }),
        _ => Ok(()),
    }
}

/// The size of the record an event becomes, from above: value, key and every header.
fn record_size(draft: &EventDraft, datum_len: usize, key: Option<&str>) -> usize {
    let text = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    RECORD_OVERHEAD_BYTES
        + datum_len
        + key.map_or(0, str::len)
        + draft.event_type.len()
        + text(&draft.id).max(36)
        + text(&draft.subject)
        + text(&draft.source).max(MAX_ATTRIBUTE_LEN)
        + text(&draft.traceparent)
        + text(&draft.tracestate)
        + text(&draft.correlation_id)
        + text(&draft.request_id)
}

/// Publishes events of one catalog.
pub struct EventPublisher {
    catalog: Arc<Catalog>,
    registry: Arc<SchemaRegistry>,
    producer: FutureProducer,
    source: String,
    enqueue_timeout: Duration,
    /// Hard bound on one publish, enqueue to acknowledgement. librdkafka's own message timeout
    /// does not always apply to records already in flight to a broker that went away.
    publish_timeout: Duration,
    /// Largest record (key, value, headers) validation lets through.
    max_record_bytes: usize,
    /// Where acknowledged events are recorded for operators.
    trace: TraceIndex,
}

impl EventPublisher {
    /// `source` is the CloudEvents source of events this process publishes, e.g. `/circulatory/ingest`.
    pub fn new(
        catalog: Arc<Catalog>,
        registry: Arc<SchemaRegistry>,
        producer: FutureProducer,
        source: impl Into<String>,
    ) -> EventPublisher {
        EventPublisher {
            catalog,
            registry,
            producer,
            source: source.into(),
            enqueue_timeout: Duration::from_secs(1),
            publish_timeout: Duration::from_secs(30),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            trace: TraceIndex::disabled(),
        }
    }

    /// Records every acknowledged event in `trace`.
    pub fn with_trace(mut self, trace: TraceIndex) -> EventPublisher {
        self.trace = trace;
        self
    }

    pub fn trace(&self) -> &TraceIndex {
        &self.trace
    }

    /// Refuses, at validation, events whose record would exceed `bytes`.
    pub fn with_max_record_bytes(mut self, bytes: usize) -> EventPublisher {
        self.max_record_bytes = bytes;
        self
    }

    /// Bounds the wait for each publish's acknowledgement to `timeout`. [`Self::publish_all`]
    /// fails a record not acknowledged by then as timed out although it may still be delivered,
    /// so its callers give the producer's delivery timeout plus a margin; callers that answer
    /// sooner use [`Self::publish_all_settling`], which hands the record back still in flight.
    pub fn with_publish_timeout(mut self, timeout: Duration) -> EventPublisher {
        self.publish_timeout = timeout;
        self
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Checks a draft against the catalog and its schema; no I/O.
    pub fn validate(&self, draft: EventDraft) -> Result<ValidatedEvent, ValidationError> {
        let event = self
            .catalog
            .event_shared(&draft.event_type)
            .ok_or_else(|| ValidationError::UnknownType(draft.event_type.clone()))?;
        check_attribute("id", &draft.id)?;
        check_attribute("subject", &draft.subject)?;
        check_attribute("source", &draft.source)?;
        check_trace_context(&draft)?;
        let schema_error = |errors| ValidationError::Schema {
            event_type: draft.event_type.clone(),
            errors,
        };
        let key_field = event.route.partition_key.as_deref();
        let mut datum = Vec::with_capacity(128);
        let key = event
            .codec
            .encode_json_keyed(&draft.data, &mut datum, key_field)
            .map_err(schema_error)?;
        if let (Some(field), None) = (key_field, &key) {
            return Err(schema_error(vec![FieldError {
                path: format!("/{field}"),
                message: "the partition key must be a non-null string".into(),
            }]));
        }
        let size = record_size(&draft, datum.len(), key.as_deref());
        if size > self.max_record_bytes {
            return Err(ValidationError::TooLarge {
                size,
                limit: self.max_record_bytes,
            });
        }
        Ok(ValidatedEvent {
            metadata: EventMetadata {
                id: draft.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                source: draft.source.unwrap_or_else(|| self.source.clone()),
                event_type: draft.event_type,
                time: draft.time.unwrap_or_else(Utc::now),
                subject: draft.subject,
                traceparent: draft.traceparent,
                tracestate: draft.tracestate,
                correlation_id: draft.correlation_id,
                request_id: draft.request_id,
            },
            event: event.clone(),
            datum,
            key,
        })
    }

    /// Encodes a validated event into the record that carries it (Confluent wire format value,
    /// CloudEvents headers, partition key), without sending it.
    pub async fn encode(&self, event: ValidatedEvent) -> Result<OutboundRecord, PublishError> {
        let Some(topic) = event.event.topic.clone() else {
            return Err(PublishError::Ephemeral(event.metadata.event_type));
        };
        let payload = self.registry.encode(&event.event, &event.datum).await?;
        let note = self.trace.is_enabled().then(|| trace::Note {
            time_ms: event.metadata.time.timestamp_millis(),
            source: event.metadata.source.clone(),
            correlation_id: event.metadata.correlation_id.clone(),
        });
        Ok(OutboundRecord {
            topic,
            key: event.key.map(String::into_bytes),
            payload,
            headers: event.metadata.to_headers(),
            id: event.metadata.id,
            event_type: event.metadata.event_type,
            note,
        })
    }

    /// Encodes and produces one validated event; resolves once the broker acknowledged it.
    pub async fn publish(&self, event: ValidatedEvent) -> Result<Delivered, PublishError> {
        let mut results = self.publish_all(vec![event]).await;
        results
            .pop()
            .unwrap_or(Err(PublishError::Kafka(KafkaError::Canceled)))
    }

    /// Publishes several events; results keep the input order. A record not acknowledged within
    /// the publish timeout fails as timed out.
    pub async fn publish_all(
        &self,
        events: Vec<ValidatedEvent>,
    ) -> Vec<Result<Delivered, PublishError>> {
        self.publish_all_settling(events, None)
            .await
            .into_iter()
            .map(|publication| match publication {
                Publication::Settled(result) => result,
                Publication::Unconfirmed(_) => Err(timed_out()),
            })
            .collect()
    }

    /// Publishes several events; results keep the input order. A record not acknowledged within
    /// the publish timeout comes back [`Publication::Unconfirmed`]: still in the producer, which
    /// goes on until its delivery timeout, and awaitable for the outcome.
    ///
    /// Every record is handed to the producer first, so they travel together in the producer's
    /// batches, and one deadline bounds the wait for all acknowledgements: a batch costs one
    /// timer, not one per event. `answer_by`, when given, ends the wait sooner (a caller that
    /// must answer within its own bound).
    pub async fn publish_all_settling(
        &self,
        events: Vec<ValidatedEvent>,
        answer_by: Option<tokio::time::Instant>,
    ) -> Vec<Publication> {
        let own = tokio::time::Instant::now() + self.publish_timeout;
        let deadline = answer_by.map_or(own, |by| by.min(own));
        let enqueue_deadline = tokio::time::Instant::now() + self.enqueue_timeout;
        let mut in_flight = Vec::with_capacity(events.len());
        for event in events {
            in_flight.push(match self.encode(event).await {
                Ok(record) => self.enqueue(record, enqueue_deadline).await,
                Err(e) => Err(e),
            });
        }
        let mut expired = std::pin::pin!(tokio::time::sleep_until(deadline));
        let mut results = Vec::with_capacity(in_flight.len());
        for pending in in_flight {
            let (mut delivery, sent) = match pending {
                Ok(pending) => pending,
                Err(e) => {
                    results.push(Publication::Settled(Err(e)));
                    continue;
                }
            };
            results.push(tokio::select! {
                biased;
                acknowledged = &mut delivery => {
                    Publication::Settled(settle(acknowledged, sent, &self.trace))
                }
                _ = &mut expired => Publication::Unconfirmed(Unconfirmed {
                    delivery,
                    sent,
                    trace: self.trace.clone(),
                }),
            });
        }
        results
    }

    /// Hands one record to the producer. A full local queue is backpressure: wait for room until
    /// `deadline`, then fail as `QueueFull`.
    async fn enqueue(
        &self,
        record: OutboundRecord,
        deadline: tokio::time::Instant,
    ) -> Result<(DeliveryFuture, Sent), PublishError> {
        let OutboundRecord {
            topic,
            key,
            payload,
            headers,
            id,
            event_type,
            note,
        } = record;
        let mut future_record = FutureRecord::to(&topic).payload(&payload).headers(headers);
        if let Some(key) = &key {
            future_record = future_record.key(key);
        }
        let delivery = loop {
            match self.producer.send_result(future_record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record))
                    if tokio::time::Instant::now() < deadline =>
                {
                    future_record = record;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((e, _)) => return Err(PublishError::Kafka(e)),
            }
        };
        Ok((
            delivery,
            Sent {
                id,
                event_type,
                topic,
                note,
            },
        ))
    }
}

/// How long to wait for room when the producer's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// The outcome of one record of [`EventPublisher::publish_all_settling`].
#[derive(Debug)]
pub enum Publication {
    Settled(Result<Delivered, PublishError>),
    Unconfirmed(Unconfirmed),
}

/// A record handed to the producer whose acknowledgement had not come by the publish timeout.
/// The producer keeps trying until its delivery timeout, and always reports the outcome.
pub struct Unconfirmed {
    delivery: DeliveryFuture,
    sent: Sent,
    trace: TraceIndex,
}

impl std::fmt::Debug for Unconfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unconfirmed")
            .field("sent", &self.sent)
            .finish()
    }
}

impl Unconfirmed {
    /// The event's id.
    pub fn id(&self) -> &str {
        &self.sent.id
    }

    /// Waits for the producer's report: delivered, or failed (and then possibly written, see
    /// [`PublishError::possibly_written`]).
    pub async fn outcome(self) -> Result<Delivered, PublishError> {
        settle(self.delivery.await, self.sent, &self.trace)
    }
}

fn settle(
    acknowledged: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
    sent: Sent,
    trace: &TraceIndex,
) -> Result<Delivered, PublishError> {
    match acknowledged {
        Ok(Ok(delivery)) => {
            if let Some(note) = sent.note {
                trace.written(note.written(
                    &sent.id,
                    &sent.event_type,
                    &sent.topic,
                    delivery.partition,
                    delivery.offset,
                ));
            }
            Ok(Delivered {
                id: sent.id,
                event_type: sent.event_type,
                topic: sent.topic,
                partition: delivery.partition,
                offset: delivery.offset,
            })
        }
        Ok(Err((e, _))) => Err(PublishError::Kafka(e)),
        // The producer dropped the record's report: only at shutdown.
        Err(_) => Err(PublishError::Kafka(KafkaError::Canceled)),
    }
}

/// What the answer for a record in flight needs besides the broker's acknowledgement.
#[derive(Debug)]
struct Sent {
    id: String,
    event_type: String,
    topic: String,
    note: Option<trace::Note>,
}

fn timed_out() -> PublishError {
    PublishError::Kafka(KafkaError::MessageProduction(
        RDKafkaErrorCode::MessageTimedOut,
    ))
}
