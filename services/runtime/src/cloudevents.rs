//! CloudEvents 1.0 Kafka protocol binding, binary mode: the event's attributes travel as record
//! headers (`ce_id`, `ce_type`, ...), the Avro payload as the record value.
//!
//! Building and parsing live together here so producers and consumers can never disagree on a
//! header name.

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE_AVRO: &str = "application/avro";

pub mod header {
    pub const SPEC_VERSION: &str = "ce_specversion";
    pub const ID: &str = "ce_id";
    pub const SOURCE: &str = "ce_source";
    pub const TYPE: &str = "ce_type";
    pub const TIME: &str = "ce_time";
    pub const SUBJECT: &str = "ce_subject";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const REQUEST_ID: &str = "request_id";
}

/// The attributes of one event, as carried in record headers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventMetadata {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Why a record's headers are not a valid binary-mode CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header `{0}` is missing")]
    Missing(&'static str),
    #[error("header `{0}` is not UTF-8")]
    NotUtf8(String),
    #[error("header `ce_specversion` is `{0}`, expected 1.0")]
    SpecVersion(String),
    #[error("header `ce_time` is not an RFC 3339 time: `{0}`")]
    Time(String),
}

impl EventMetadata {
    /// Record headers for this event (binary mode, UTF-8 values).
    pub fn to_headers(&self) -> OwnedHeaders {
        let time = self.time.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut headers = OwnedHeaders::new_with_capacity(11)
            .insert(pair(header::SPEC_VERSION, SPEC_VERSION))
            .insert(pair(header::ID, &self.id))
            .insert(pair(header::SOURCE, &self.source))
            .insert(pair(header::TYPE, &self.event_type))
            .insert(pair(header::TIME, &time))
            .insert(pair(header::CONTENT_TYPE, CONTENT_TYPE_AVRO));
        let optional = [
            (header::SUBJECT, &self.subject),
            (header::TRACEPARENT, &self.traceparent),
            (header::TRACESTATE, &self.tracestate),
            (header::CORRELATION_ID, &self.correlation_id),
            (header::REQUEST_ID, &self.request_id),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                headers = headers.insert(pair(key, value));
            }
        }
        headers
    }

    /// Reads the attributes back from a record's headers.
    pub fn from_headers<H: Headers>(headers: Option<&H>) -> Result<EventMetadata, HeaderError> {
        // The last occurrence wins, as in the Kafka binding's reference implementations.
        Self::from_lookup(|key| {
            headers
                .and_then(|h| h.iter().filter(|h| h.key == key).last())
                .map(|h| h.value)
        })
    }

    /// Reads the attributes from a record's headers in one pass, in record order (the last
    /// occurrence of a name wins).
    pub fn from_pairs<'a>(
        headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<EventMetadata, HeaderError> {
        const NAMES: [&str; 9] = [
            header::SPEC_VERSION,
            header::ID,
            header::SOURCE,
            header::TYPE,
            header::TIME,
            header::SUBJECT,
            header::TRACEPARENT,
            header::TRACESTATE,
            header::CORRELATION_ID,
        ];
        let slot = |name: &str| match name {
            header::REQUEST_ID => Some(NAMES.len()),
            _ => NAMES.iter().position(|n| *n == name),
        };
        let mut found: [Option<Option<&'a [u8]>>; NAMES.len() + 1] = [None; NAMES.len() + 1];
        for (name, value) in headers {
            if let Some(i) = slot(name) {
                found[i] = Some(value);
            }
        }
        Self::from_lookup(|key| slot(key).and_then(|i| found[i]))
    }

    /// Reads the attributes through `lookup`: a header's value by name (`Some(None)` for a header
    /// without a value), for callers that index headers once instead of scanning per name.
    pub fn from_lookup<'a>(
        lookup: impl Fn(&str) -> Option<Option<&'a [u8]>>,
    ) -> Result<EventMetadata, HeaderError> {
        let get = |key: &'static str| -> Result<Option<String>, HeaderError> {
            match lookup(key) {
                None | Some(None) => Ok(None),
                Some(Some(bytes)) => std::str::from_utf8(bytes)
                    .map(|s| Some(s.to_string()))
                    .map_err(|_| HeaderError::NotUtf8(key.to_string())),
            }
        };
        let required = |key: &'static str| get(key)?.ok_or(HeaderError::Missing(key));
        let spec_version = required(header::SPEC_VERSION)?;
        if spec_version != SPEC_VERSION {
            return Err(HeaderError::SpecVersion(spec_version));
        }
        let time_text = required(header::TIME)?;
        let time = DateTime::parse_from_rfc3339(&time_text)
            .map_err(|_| HeaderError::Time(time_text.clone()))?
            .with_timezone(&Utc);
        Ok(EventMetadata {
            id: required(header::ID)?,
            source: required(header::SOURCE)?,
            event_type: required(header::TYPE)?,
            time,
            subject: get(header::SUBJECT)?,
            traceparent: get(header::TRACEPARENT)?,
            tracestate: get(header::TRACESTATE)?,
            correlation_id: get(header::CORRELATION_ID)?,
            request_id: get(header::REQUEST_ID)?,
        })
    }
}

fn pair<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// All headers of a record as `(name, text)`, non-UTF-8 values shown lossily (for `tail`).
pub fn headers_as_text(headers: Option<&BorrowedHeaders>) -> Vec<(String, String)> {
    headers
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// W3C `traceparent`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, ids not all zero.
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> EventMetadata {
        EventMetadata {
            id: "e1".into(),
            source: "/circulatory/ingest".into(),
            event_type: "video.uploaded".into(),
            time: DateTime::parse_from_rfc3339("2026-11-27T10:00:00.123Z")
                .unwrap()
                .with_timezone(&Utc),
            subject: Some("videos/v1".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
            correlation_id: Some("c-1".into()),
            request_id: Some("r-1".into()),
        }
    }

    #[test]
    fn headers_round_trip() {
        let headers = metadata().to_headers();
        let parsed = EventMetadata::from_headers(Some(&headers)).unwrap();
        assert_eq!(parsed, metadata());
        let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert!(names.contains(&"ce_specversion") && names.contains(&"content-type"));
    }

    #[test]
    fn missing_or_wrong_headers_are_errors() {
        let headers = OwnedHeaders::new().insert(pair(header::SPEC_VERSION, "0.3"));
        assert_eq!(
            EventMetadata::from_headers(Some(&headers)),
            Err(HeaderError::SpecVersion("0.3".into()))
        );
        assert_eq!(
            EventMetadata::from_headers::<OwnedHeaders>(None),
            Err(HeaderError::Missing("ce_specversion"))
        );
    }

    #[test]
    fn traceparent_is_checked() {
        assert!(is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent("00-xyz-00f067aa0ba902b7-01"));
    }
}
