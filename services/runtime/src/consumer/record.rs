//! A record taken off the consumer, copied once on the poll thread.
//!
//! librdkafka's own copy (`detach`) allocates every header separately, and looking a header up by
//! name through its API walks the list with a foreign call, a `strlen` and a UTF-8 check per
//! header. A group reads about twenty header names per record (CloudEvents attributes, retry
//! state), so the engine keeps its own copy instead: the key, the value and every header in one
//! buffer each, headers indexed by offset, lookups by byte comparison.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Header, Headers, Message, Timestamp};

use crate::cloudevents::{EventMetadata, HeaderError};
use crate::consumer::retry::RetryState;

/// A consumed record the engine owns.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
    key: Option<Box<[u8]>>,
    payload: Option<Box<[u8]>>,
    headers: Option<RecordHeaders>,
}

impl Record {
    /// Copies `message`; `topics` interns topic names so records of one topic share one name.
    pub(crate) fn copy(message: &BorrowedMessage<'_>, topics: &mut TopicNames) -> Record {
        Record {
            topic: topics.intern(message.topic()),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp(),
            key: message.key().map(Box::from),
            payload: message.payload().map(Box::from),
            headers: message.headers().map(RecordHeaders::copy),
        }
    }

    #[cfg(test)]
    pub(crate) fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Record {
        let mut copied = RecordHeaders::default();
        for (name, value) in headers {
            copied.push(name, *value);
        }
        Record {
            topic: Arc::from(topic),
            partition,
            offset,
            timestamp: Timestamp::NotAvailable,
            key: key.map(Box::from),
            payload: payload.map(Box::from),
            headers: (!headers.is_empty()).then_some(copied),
        }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic name, shared.
    pub(crate) fn topic_name(&self) -> &Arc<str> {
        &self.topic
    }

    pub(crate) fn partition(&self) -> i32 {
        self.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.offset
    }

    pub(crate) fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    pub(crate) fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    pub(crate) fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    pub(crate) fn headers(&self) -> Option<&RecordHeaders> {
        self.headers.as_ref()
    }

    /// The CloudEvents attributes the record carries.
    pub(crate) fn metadata(&self) -> Result<EventMetadata, HeaderError> {
        match &self.headers {
            Some(headers) => EventMetadata::from_pairs(headers.pairs()),
            None => EventMetadata::from_pairs(std::iter::empty()),
        }
    }

    /// What the record's `circ_*` headers say about earlier attempts (most records have none).
    pub(crate) fn retry_state(&self) -> RetryState {
        match &self.headers {
            Some(headers) if headers.has_retry_state => {
                RetryState::from_lookup(|name| headers.last(name))
            }
            _ => RetryState::from_lookup(|_| None),
        }
    }
}

/// Interned topic names (a group reads a handful of topics).
#[derive(Debug, Default)]
pub(crate) struct TopicNames(HashMap<String, Arc<str>>);

impl TopicNames {
    pub(crate) fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = self.0.get(topic) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(topic);
        self.0.insert(topic.to_string(), name.clone());
        name
    }
}

/// What every header of [`crate::consumer::retry::header`] starts with.
const RETRY_HEADER_PREFIX: &str = "circ_";

/// One header: where its name and value are in the buffer.
#[derive(Debug, Clone)]
struct Entry {
    name: Range<usize>,
    value: Option<Range<usize>>,
}

/// A record's headers in one buffer, in record order.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordHeaders {
    bytes: Vec<u8>,
    /// Header names, concatenated (kept as text, so no check is needed when reading them).
    names: String,
    entries: Vec<Entry>,
    /// Whether any header is a `circ_*` one (retry state, dead-letter metadata).
    has_retry_state: bool,
}

impl RecordHeaders {
    fn copy<H: Headers>(headers: &H) -> RecordHeaders {
        let count = headers.count();
        let mut copied = RecordHeaders {
            bytes: Vec::with_capacity(count * 40),
            names: String::with_capacity(count * 12),
            entries: Vec::with_capacity(count),
            has_retry_state: false,
        };
        for i in 0..count {
            if let Some(header) = headers.try_get(i) {
                copied.push(header.key, header.value);
            }
        }
        copied
    }

    fn push(&mut self, name: &str, value: Option<&[u8]>) {
        self.has_retry_state |= name.starts_with(RETRY_HEADER_PREFIX);
        let name_start = self.names.len();
        self.names.push_str(name);
        let value = value.map(|v| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(v);
            start..self.bytes.len()
        });
        self.entries.push(Entry {
            name: name_start..self.names.len(),
            value,
        });
    }

    /// Every header as (name, value), in record order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.entries.iter().map(|e| {
            (
                &self.names[e.name.clone()],
                e.value.clone().map(|v| &self.bytes[v]),
            )
        })
    }

    /// The value of the last header called `name` (the last occurrence wins, as in the
    /// CloudEvents Kafka binding); `Some(None)` for a header without a value.
    pub(crate) fn last(&self, name: &str) -> Option<Option<&[u8]>> {
        self.entries
            .iter()
            .rev()
            .find(|e| &self.names[e.name.clone()] == name)
            .map(|e| e.value.clone().map(|v| &self.bytes[v]))
    }
}

impl Headers for RecordHeaders {
    fn count(&self) -> usize {
        self.entries.len()
    }

    fn try_get(&self, idx: usize) -> Option<Header<'_, &[u8]>> {
        let entry = self.entries.get(idx)?;
        Some(Header {
            key: &self.names[entry.name.clone()],
            value: entry.value.clone().map(|v| &self.bytes[v]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_order_and_the_last_occurrence_wins() {
        let record = Record::new(
            "t",
            0,
            7,
            Some(b"k"),
            Some(b"v"),
            &[
                ("ce_id", Some(b"1")),
                ("empty", None),
                ("ce_id", Some(b"2")),
            ],
        );
        let headers = record.headers().unwrap();
        assert_eq!(headers.count(), 3);
        assert_eq!(headers.last("ce_id"), Some(Some(&b"2"[..])));
        assert_eq!(headers.last("empty"), Some(None));
        assert_eq!(headers.last("missing"), None);
        let all: Vec<_> = headers.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(
            all,
            vec![
                ("ce_id", Some(&b"1"[..])),
                ("empty", None),
                ("ce_id", Some(&b"2"[..]))
            ]
        );
        assert_eq!(record.key(), Some(&b"k"[..]));
        assert_eq!(record.offset(), 7);
    }

    #[test]
    fn every_retry_header_is_seen_by_the_retry_state_shortcut() {
        for name in crate::consumer::retry::header::ALL {
            assert!(name.starts_with(RETRY_HEADER_PREFIX), "{name}");
        }
        let plain = Record::new("t", 0, 0, None, None, &[("ce_id", Some(b"1"))]);
        assert_eq!(plain.retry_state().attempt, 1);
        let retried = Record::new(
            "t",
            0,
            0,
            None,
            None,
            &[("circ_attempt", Some(b"3")), ("circ_due_at", Some(b"42"))],
        );
        assert_eq!(retried.retry_state().attempt, 3);
        assert_eq!(retried.retry_state().due_at_ms, Some(42));
    }

    #[test]
    fn metadata_in_one_pass_matches_the_per_name_reading() {
        let headers: &[(&str, Option<&[u8]>)] = &[
            ("ce_specversion", Some(b"1.0")),
            ("ce_id", Some(b"first")),
            ("ce_source", Some(b"/s")),
            ("ce_type", Some(b"like.added")),
            ("ce_time", Some(b"2026-11-27T10:00:00.000Z")),
            ("correlation_id", Some(b"c-1")),
            ("request_id", Some(b"r-1")),
            ("ce_subject", None),
            ("ce_id", Some(b"second")),
        ];
        let record = Record::new("t", 0, 0, None, None, headers);
        let one_pass = record.metadata().unwrap();
        let per_name = EventMetadata::from_headers(record.headers()).unwrap();
        assert_eq!(one_pass, per_name);
        assert_eq!(one_pass.id, "second");
        assert_eq!(one_pass.request_id.as_deref(), Some("r-1"));
        assert_eq!(one_pass.subject, None);
        let missing = Record::new("t", 0, 0, None, None, &headers[1..]);
        assert_eq!(
            missing.metadata(),
            Err(HeaderError::Missing("ce_specversion"))
        );
    }

    #[test]
    fn topic_names_are_shared() {
        let mut names = TopicNames::default();
        let a = names.intern("orders");
        let b = names.intern("orders");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
