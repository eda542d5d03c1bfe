//! The JSON protocol spoken with clients.
//!
//! Client → gateway (WebSocket text frames):
//!
//! ```json
//! {"type": "subscribe",   "channel": "comment:added:p1", "id": "optional, echoed back"}
//! {"type": "unsubscribe", "channel": "comment:added:p1"}
//! {"type": "ping"}
//! ```
//!
//! Gateway → client. Control frames have an undotted `type`:
//!
//! ```json
//! {"type": "connected", "connection": "...", "user": "<sub>", "heartbeatMs": 15000}
//! {"type": "subscribed", "channel": "...", "id": "..."}
//! {"type": "unsubscribed", "channel": "...", "id": "..."}
//! {"type": "pong", "id": "..."}
//! {"type": "error", "code": "forbidden", "message": "...", "channel": "...", "id": "..."}
//! ```
//!
//! Messages carry the event type (always dotted) and the concrete channel they came from:
//! `{"channel", "type", "id", "correlationId"?, "time", "data"}` (`time`: RFC 3339 with
//! milliseconds, set at publish).

use std::borrow::Cow;

use axum::extract::ws::Utf8Bytes;
use serde::Deserialize;
use serde_json::json;

/// The longest request id echoed back.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// A client command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    Subscribe {
        channel: String,
        #[serde(default)]
        id: Option<String>,
    },
    Unsubscribe {
        channel: String,
        #[serde(default)]
        id: Option<String>,
    },
    Ping {
        #[serde(default)]
        id: Option<String>,
    },
}

/// Why a client frame could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl Command {
    pub fn parse(text: &str) -> Result<Command, BadRequest> {
        let command: Command = serde_json::from_str(text).map_err(|e| {
            BadRequest(format!(
                "expected {{\"type\": \"subscribe\"|\"unsubscribe\"|\"ping\", ...}}: {e}"
            ))
        })?;
        let id = match &command {
            Command::Subscribe { id, .. }
            | Command::Unsubscribe { id, .. }
            | Command::Ping { id } => id,
        };
        if id.as_ref().is_some_and(|id| id.len() > MAX_REQUEST_ID_LEN) {
            return Err(BadRequest(format!(
                "id is longer than {MAX_REQUEST_ID_LEN} characters"
            )));
        }
        Ok(command)
    }
}

fn frame(value: serde_json::Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}

pub fn connected(connection: &str, user: &str, heartbeat_ms: u64) -> Utf8Bytes {
    frame(json!({
        "type": "connected",
        "connection": connection,
        "user": user,
        "heartbeatMs": heartbeat_ms,
    }))
}

pub fn subscribed(channel: &str, id: Option<&str>) -> Utf8Bytes {
    frame(json!({"type": "subscribed", "channel": channel, "id": id}))
}

pub fn unsubscribed(channel: &str, id: Option<&str>) -> Utf8Bytes {
    frame(json!({"type": "unsubscribed", "channel": channel, "id": id}))
}

pub fn pong(id: Option<&str>) -> Utf8Bytes {
    frame(json!({"type": "pong", "id": id}))
}

pub fn error(code: &str, message: &str, channel: Option<&str>, id: Option<&str>) -> Utf8Bytes {
    frame(json!({
        "type": "error",
        "code": code,
        "message": message,
        "channel": channel,
        "id": id,
    }))
}

/// What the gateway reads of a message from Redis.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    _event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
}

/// A message ready for clients: the frame text (shared by every recipient) and when it was
/// published, in milliseconds since the epoch, if the message said so.
#[derive(Debug, Clone)]
pub struct MessageFrame {
    pub text: Utf8Bytes,
    pub published_ms: Option<i64>,
}

/// Turns a Redis payload `{"type", "id", "correlationId"?, "time", "data"}` into the client
/// frame by adding the concrete channel. The payload must be a JSON object with a `type`;
/// anything else is not forwarded (`None`). The rest of the payload is passed through byte for
/// byte.
pub fn message_frame(channel: &str, payload: &[u8]) -> Option<MessageFrame> {
    let head: Head = serde_json::from_slice(payload).ok()?;
    let published_ms = head
        .time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    let text = std::str::from_utf8(payload).ok()?.trim_start();
    // `Head` deserialized from a JSON object with at least `type`, so `{` is followed by a field.
    let rest = text.strip_prefix('{')?;
    let channel_json = serde_json::to_string(channel).ok()?;
    let mut out = String::with_capacity(payload.len() + channel_json.len() + 12);
    out.push_str("{\"channel\":");
    out.push_str(&channel_json);
    out.push(',');
    out.push_str(rest);
    Some(MessageFrame {
        text: Utf8Bytes::from(out),
        published_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_are_explained() {
        assert_eq!(
            Command::parse(r#"{"type":"subscribe","channel":"post:created","id":"1"}"#),
            Ok(Command::Subscribe {
                channel: "post:created".into(),
                id: Some("1".into())
            })
        );
        assert_eq!(
            Command::parse(r#"{"type":"ping"}"#),
            Ok(Command::Ping { id: None })
        );
        assert!(Command::parse(r#"{"type":"publish","channel":"x"}"#).is_err());
        assert!(Command::parse(r#"{"type":"subscribe"}"#).is_err());
        assert!(Command::parse("not json").is_err());
        let long = format!(
            r#"{{"type":"ping","id":"{}"}}"#,
            "x".repeat(MAX_REQUEST_ID_LEN + 1)
        );
        assert!(Command::parse(&long).is_err());
    }

    #[test]
    fn messages_gain_their_channel_and_keep_the_rest() {
        let payload = br#"{"type":"comment.added","id":"e1","time":"2025-01-02T03:04:05.678Z","data":{"postId":"p1"}}"#;
        let frame = message_frame("comment:added:p1", payload).unwrap();
        let value: serde_json::Value = serde_json::from_str(&frame.text).unwrap();
        assert_eq!(value["channel"], "comment:added:p1");
        assert_eq!(value["type"], "comment.added");
        assert_eq!(value["id"], "e1");
        assert_eq!(value["data"]["postId"], "p1");
        assert_eq!(frame.published_ms, Some(1_735_787_045_678));
    }

    #[test]
    fn malformed_messages_are_not_forwarded() {
        assert!(message_frame("c", b"not json").is_none());
        assert!(message_frame("c", b"[1,2]").is_none());
        assert!(message_frame("c", b"{}").is_none());
        assert!(message_frame("c", br#"{"type":"x"} trailing"#).is_none());
        let no_time = message_frame("c", br#" {"type":"x","data":1}"#).unwrap();
        assert_eq!(no_time.published_ms, None);
        assert!(serde_json::from_str::<serde_json::Value>(&no_time.text).is_ok());
    }
}
