//! What a consumer group's code sees: an [`Event`] to handle, a [`Context`] to emit downstream
//! events and realtime broadcasts, and a [`HandlerError`] that says whether retrying can help.

use crate::sync::MutexExt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use circulatory_events::EventPayload;
use futures::future::BoxFuture;

use crate::cloudevents::EventMetadata;
use crate::consumer::retry::Origin;
use crate::publisher::EventDraft;

/// A decoded event, as a handler receives it.
#[derive(Debug, Clone)]
pub struct Event {
    pub metadata: EventMetadata,
    /// The payload as plain JSON (the catalog's JSON form of the Avro record).
    pub data: serde_json::Value,
    pub key: Option<Vec<u8>>,
    /// Where this delivery was read (a main or a retry topic).
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Where the event was first read: its main topic position.
    pub origin: Origin,
    /// 1 for the first delivery, then 2, 3, ... for retries.
    pub attempt: u32,
}

impl Event {
    pub fn event_type(&self) -> &str {
        &self.metadata.event_type
    }

    pub fn id(&self) -> &str {
        &self.metadata.id
    }

    /// The payload as its generated type ([`crate::events`]). Asking for another event type's
    /// payload, or data the type cannot read (the schema said otherwise), is permanent.
    pub fn payload<T: EventPayload>(&self) -> Result<T, HandlerError> {
        if self.event_type() != T::EVENT_TYPE {
            return Err(HandlerError::permanent(format!(
                "a {} event read as {}",
                self.event_type(),
                T::EVENT_TYPE
            )));
        }
        T::deserialize(&self.data)
            .map_err(|e| HandlerError::permanent(format!("payload of {}: {e}", self.event_type())))
    }
}

/// How a handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying later (a timeout, a conflict, a transient error).
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (invalid business data): straight to the dead letters.
    #[error("{0}")]
    Permanent(String),
    /// A downstream dependency failed: retryable, and counted by that dependency's circuit
    /// breaker, which pauses the group when the dependency is down.
    #[error("{dependency}: {message}")]
    Dependency { dependency: String, message: String },
}

impl HandlerError {
    pub fn retryable(error: impl std::fmt::Display) -> HandlerError {
        HandlerError::Retryable(error.to_string())
    }

    pub fn permanent(error: impl std::fmt::Display) -> HandlerError {
        HandlerError::Permanent(error.to_string())
    }

    pub fn dependency(dependency: &str, error: impl std::fmt::Display) -> HandlerError {
        HandlerError::Dependency {
            dependency: dependency.to_string(),
            message: error.to_string(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        !matches!(self, HandlerError::Permanent(_))
    }

    /// The class written to the `circ_error_class` header.
    pub fn class(&self) -> &'static str {
        match self {
            HandlerError::Retryable(_) => "retryable",
            HandlerError::Permanent(_) => "permanent",
            HandlerError::Dependency { .. } => "dependency",
        }
    }
}

/// A realtime broadcast requested by a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub channel: String,
    pub event_type: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Default)]
struct Effects {
    emitted: Vec<EventDraft>,
    broadcasts: Vec<Broadcast>,
}

/// Handed to a handler with each event. Emitted events and broadcasts are sent only after the
/// handler succeeded, and before the event's offset counts as done.
#[derive(Debug, Clone)]
pub struct Context {
    group: Arc<str>,
    source: Arc<str>,
    cause: EventMetadata,
    effects: Arc<Mutex<Effects>>,
}

impl Context {
    pub(crate) fn new(group: Arc<str>, source: Arc<str>, cause: EventMetadata) -> Context {
        Context {
            group,
            source,
            cause,
            effects: Arc::default(),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The event being handled.
    pub(crate) fn cause(&self) -> &EventMetadata {
        &self.cause
    }

    pub fn correlation_id(&self) -> Option<&str> {
        self.cause.correlation_id.as_deref()
    }

    /// Emits a downstream event of `data`'s type. Its id is derived from the causing event's id
    /// and the emission's position, so a redelivered event emits the same ids and consumers
    /// deduplicate them.
    pub fn emit<T: EventPayload>(&self, data: T) -> String {
        self.emit_at(data, None, Utc::now())
    }

    /// Like [`Context::emit`] with a CloudEvents subject and time.
    pub fn emit_at<T: EventPayload>(
        &self,
        data: T,
        subject: Option<String>,
        time: DateTime<Utc>,
    ) -> String {
        let json = serde_json::to_value(&data).expect("a generated payload is JSON");
        self.emit_json_at(T::EVENT_TYPE, json, subject, time)
    }

    /// Emits `data` as JSON, for a relay whose event type is itself data; a handler that knows
    /// its types uses [`Context::emit`]. The catalog validates it when it is sent.
    pub fn emit_json(&self, event_type: &str, data: serde_json::Value) -> String {
        self.emit_json_at(event_type, data, None, Utc::now())
    }

    /// Like [`Context::emit_json`] with a CloudEvents subject and time.
    pub fn emit_json_at(
        &self,
        event_type: &str,
        data: serde_json::Value,
        subject: Option<String>,
        time: DateTime<Utc>,
    ) -> String {
        let mut effects = self.effects.locked();
        let seed = format!(
            "{}/{}/{}/{}",
            self.group,
            self.cause.id,
            effects.emitted.len(),
            event_type
        );
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string();
        effects.emitted.push(EventDraft {
            event_type: event_type.to_string(),
            data,
            id: Some(id.clone()),
            subject,
            time: Some(time),
            source: Some(self.source.to_string()),
            correlation_id: self.cause.correlation_id.clone(),
            request_id: None,
            traceparent: self.cause.traceparent.clone(),
            tracestate: self.cause.tracestate.clone(),
        });
        id
    }

    /// Broadcasts on a realtime channel once the handler succeeded.
    pub fn broadcast(&self, channel: impl Into<String>, event_type: &str, data: serde_json::Value) {
        let mut effects = self.effects.locked();
        effects.broadcasts.push(Broadcast {
            channel: channel.into(),
            event_type: event_type.to_string(),
            data,
        });
    }

    /// Takes what the handler asked for.
    pub(crate) fn take_effects(&self) -> (Vec<EventDraft>, Vec<Broadcast>) {
        let mut effects = self.effects.locked();
        (
            std::mem::take(&mut effects.emitted),
            std::mem::take(&mut effects.broadcasts),
        )
    }
}

/// The code of one event type in one group.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, event: Event, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Event, Context) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, event: Event, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(self(event, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(id: &str) -> EventMetadata {
        EventMetadata {
            id: id.into(),
            source: "/t".into(),
            event_type: "post.created".into(),
            time: Utc::now(),
            subject: None,
            traceparent: None,
            tracestate: None,
            correlation_id: Some("c".into()),
            request_id: None,
        }
    }

    fn fanout() -> crate::events::FeedFanout {
        crate::events::FeedFanout {
            post_id: uuid::Uuid::from_u128(1),
            author_id: uuid::Uuid::from_u128(2),
            follower_ids: vec![uuid::Uuid::from_u128(3)],
            chunk_index: 0,
            chunk_count: 1,
            created_at: DateTime::from_timestamp_millis(1_796_358_334_123).expect("in range"),
        }
    }

    #[test]
    fn emitted_ids_are_deterministic_per_cause_and_position() {
        let a = Context::new("g".into(), "/g".into(), cause("e1"));
        let first = a.emit(fanout());
        let second = a.emit(fanout());
        assert_ne!(first, second);
        let again = Context::new("g".into(), "/g".into(), cause("e1"));
        assert_eq!(again.emit(fanout()), first);
        let (emitted, _) = a.take_effects();
        assert_eq!(emitted.len(), 2);
        assert_eq!(emitted[0].event_type, "feed.fanout");
        assert_eq!(
            emitted[0].data["postId"],
            "00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(emitted[0].correlation_id.as_deref(), Some("c"));
    }

    #[test]
    fn a_payload_is_read_only_as_its_own_type() {
        let data = serde_json::to_value(fanout()).expect("JSON");
        let event = |event_type: &str| Event {
            metadata: EventMetadata {
                event_type: event_type.into(),
                ..cause("e1")
            },
            data: data.clone(),
            key: None,
            topic: "feed.normal".into(),
            partition: 0,
            offset: 0,
            origin: Origin {
                topic: "feed.normal".into(),
                partition: 0,
                offset: 0,
                timestamp: None,
            },
            attempt: 1,
        };
        let read: crate::events::FeedFanout = event("feed.fanout").payload().expect("its type");
        assert_eq!(read, fanout());
        let wrong = event("feed.refresh").payload::<crate::events::FeedFanout>();
        assert_eq!(
            wrong,
            Err(HandlerError::permanent(
                "a feed.refresh event read as feed.fanout"
            ))
        );
        let mut broken = event("feed.fanout");
        broken.data["chunkIndex"] = "zero".into();
        let err = broken.payload::<crate::events::FeedFanout>().unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(
            err.to_string().starts_with("payload of feed.fanout: "),
            "{err}"
        );
    }
}
