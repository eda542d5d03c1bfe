//! Realtime broadcasts over Redis pub/sub: the message shape on the wire and the publisher.
//!
//! Messages are JSON `{"type", "id", "correlationId"?, "time", "data"}` (DESIGN §6; the gateway
//! adds `channel`). `time` is when the message was published, so subscribers can measure publish →
//! delivery latency. `id` is stable across redeliveries of the causing event (see
//! [`broadcast_ids`]), so a client can drop a duplicate. Delivery is best effort by design: pub/sub
//! keeps nothing for subscribers that are not connected.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::catalog::EventType;
use crate::cloudevents::EventMetadata;
use crate::topology::Topology;

/// One broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealtimeMessage {
    #[serde(rename = "type")]
    pub event_type: String,
    pub id: String,
    /// The correlation id of the event that caused the message; omitted when unknown.
    #[serde(
        rename = "correlationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
    /// RFC 3339 with milliseconds.
    pub time: String,
    pub data: serde_json::Value,
}

impl RealtimeMessage {
    pub fn new(event_type: &str, id: &str, time: DateTime<Utc>, data: serde_json::Value) -> Self {
        RealtimeMessage {
            event_type: event_type.to_string(),
            id: id.to_string(),
            correlation_id: None,
            time: time.to_rfc3339_opts(SecondsFormat::Millis, true),
            data,
        }
    }

    /// The same message with the correlation id of its cause (`None`: omitted on the wire).
    pub fn with_correlation_id(mut self, correlation_id: Option<String>) -> Self {
        self.correlation_id = correlation_id;
        self
    }
}

/// The ids of the messages a consumer group's handler broadcast because of one event, given as
/// `(channel, type)` in the order the handler asked for them.
///
/// One event may broadcast several messages, even on the same channel (the API does not forbid
/// it), so the causing event's id alone cannot name them all. The choice:
///
/// - A message that relays the causing event (same `type`: what realtime-bridge does, and what
///   the ingest service's ephemeral broadcasts do) carries the event's CloudEvents id, the first
///   one of that type on each channel. A client can relate it to the event, and the same event
///   relayed twice on a channel (a redelivery, or two publishers) has one id.
/// - Any other message gets a UUID v5 derived from the group, the event id, the channel, the
///   message's position among that event's broadcasts on that channel, and its type, like
///   [`Context::emit`](crate::consumer::Context::emit) derives the ids of emitted events.
///
/// Either way a redelivered event yields the same ids (handlers are deterministic in what they
/// broadcast), so clients can drop duplicates after reconnecting. The position counts per
/// channel, so a broadcast skipped on one channel does not shift the ids on another.
pub fn broadcast_ids(
    group: &str,
    cause: &EventMetadata,
    broadcasts: &[(&str, &str)],
) -> Vec<String> {
    // Per channel: how many broadcasts so far, and whether the cause was relayed on it yet.
    let mut seen: HashMap<&str, (usize, bool)> = HashMap::new();
    broadcasts
        .iter()
        .map(|&(channel, event_type)| {
            let (position, relayed) = seen.entry(channel).or_default();
            let id = if event_type == cause.event_type && !*relayed {
                *relayed = true;
                cause.id.clone()
            } else {
                let seed = format!(
                    "{group}/{}/broadcast/{channel}/{position}/{event_type}",
                    cause.id
                );
                uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string()
            };
            *position += 1;
            id
        })
        .collect()
}

/// The concrete channels an event of `event` with JSON `data` is broadcast on, per the routes of
/// the topology. A route whose parameter field is missing or not a string is skipped.
pub fn channels_for(
    topology: &Topology,
    event: &EventType,
    data: &serde_json::Value,
) -> Vec<String> {
    event
        .channels
        .iter()
        .filter_map(|route| {
            let channel = topology.channels.get(&route.channel)?;
            channel.render(|param| {
                data.get(route.field_for(param))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
        })
        .collect()
}

/// Publishes one message on several channels in one round trip; returns, per channel, how many
/// subscribers received it.
pub async fn publish(
    redis: &mut ConnectionManager,
    channels: &[String],
    message: &RealtimeMessage,
) -> redis::RedisResult<Vec<i64>> {
    let payload = serde_json::to_string(message).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "serialize", e.to_string()))
    })?;
    let mut pipe = redis::pipe();
    for channel in channels {
        pipe.cmd("PUBLISH").arg(channel).arg(&payload);
    }
    pipe.query_async(redis).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(id: &str, correlation_id: Option<&str>) -> EventMetadata {
        EventMetadata {
            id: id.into(),
            source: "/t".into(),
            event_type: "post.created".into(),
            time: Utc::now(),
            subject: None,
            traceparent: None,
            tracestate: None,
            correlation_id: correlation_id.map(str::to_string),
            request_id: None,
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn realtime_correlation_id_is_omitted_when_unknown() {
        let message = RealtimeMessage::new("post.created", "e1", at(), serde_json::json!({"a": 1}));
        assert_eq!(
            serde_json::to_string(&message).unwrap(),
            r#"{"type":"post.created","id":"e1","time":"2025-01-02T03:04:05.678Z","data":{"a":1}}"#
        );
        let parsed: RealtimeMessage = serde_json::from_str(
            r#"{"type":"post.created","id":"e1","time":"2025-01-02T03:04:05.678Z","data":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(parsed, message);
    }

    #[test]
    fn realtime_correlation_id_is_serialised_when_known() {
        let message = RealtimeMessage::new("post.created", "e1", at(), serde_json::json!(null))
            .with_correlation_id(Some("c1".into()));
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(
            text,
            r#"{"type":"post.created","id":"e1","correlationId":"c1","time":"2025-01-02T03:04:05.678Z","data":null}"#
        );
        let parsed: RealtimeMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.correlation_id.as_deref(), Some("c1"));
        assert_eq!(parsed, message);
    }

    #[test]
    fn realtime_broadcast_ids_relay_the_event_id_and_derive_the_rest() {
        let e1 = cause("e1", Some("c"));
        let broadcasts = [
            ("post:created", "post.created"),
            ("user:u1", "post.created"),
            ("user:u1", "notification.sent"),
            ("user:u1", "post.created"),
            ("user:u1", "notification.sent"),
        ];
        let ids = broadcast_ids("g", &e1, &broadcasts);
        // The event itself, once per channel: its id.
        assert_eq!(ids[0], "e1");
        assert_eq!(ids[1], "e1");
        // Everything else: derived, all different, none the event's.
        let derived: std::collections::HashSet<&String> = ids[2..].iter().collect();
        assert_eq!(derived.len(), 3);
        assert!(!derived.contains(&"e1".to_string()));
        for id in &ids[2..] {
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        }
        // A redelivery: the same ids.
        assert_eq!(broadcast_ids("g", &e1, &broadcasts), ids);
        // Another group, another event: other derived ids.
        assert_ne!(broadcast_ids("h", &e1, &broadcasts)[2], ids[2]);
        let e2 = cause("e2", None);
        let other = broadcast_ids("g", &e2, &broadcasts);
        assert_eq!(other[0], "e2");
        assert_ne!(other[2], ids[2]);
        // Positions count per channel: a broadcast skipped elsewhere shifts nothing here.
        let fewer = broadcast_ids("g", &e1, &broadcasts[1..]);
        assert_eq!(fewer, ids[1..]);
    }
}
