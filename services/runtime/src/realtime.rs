//! Realtime broadcasts over Redis pub/sub: the message shape on the wire and the publisher.
//!
//! Messages are JSON `{"type", "id", "time", "data"}` (DESIGN §6). `time` is when the message was
//! published, so subscribers can measure publish → delivery latency. Delivery is best effort by
//! design: pub/sub keeps nothing for subscribers that are not connected.

use chrono::{DateTime, SecondsFormat, Utc};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::catalog::EventType;
use crate::topology::Topology;

/// One broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealtimeMessage {
    #[serde(rename = "type")]
    pub event_type: String,
    pub id: String,
    /// RFC 3339 with milliseconds.
    pub time: String,
    pub data: serde_json::Value,
}

impl RealtimeMessage {
    pub fn new(event_type: &str, id: &str, time: DateTime<Utc>, data: serde_json::Value) -> Self {
        RealtimeMessage {
            event_type: event_type.to_string(),
            id: id.to_string(),
            time: time.to_rfc3339_opts(SecondsFormat::Millis, true),
            data,
        }
    }
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
