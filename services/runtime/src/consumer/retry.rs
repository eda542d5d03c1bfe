//! Where a failed event goes next, and the headers that travel with it.
//!
//! Attempt 1 is the delivery from the main topic. A retryable failure of attempt `n` (below the
//! group's `max_attempts`) goes to `<group>.retry.<delay n>` due `delay n` later; exhausted
//! attempts, permanent failures and undecodable records go to `<group>.dlq`. The original key,
//! value and CloudEvents headers are kept; the `circ_*` headers say where the event came from, how
//! often it failed and why, and how often it was replayed from the dead letters.

use std::time::Duration;

use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::catalog::Catalog;
use crate::topology::Group;

pub mod header {
    pub const ATTEMPT: &str = "circ_attempt";
    pub const DUE_AT: &str = "circ_due_at";
    pub const FIRST_FAILURE_AT: &str = "circ_first_failure_at";
    pub const GROUP: &str = "circ_group";
    pub const ORIGINAL_TOPIC: &str = "circ_original_topic";
    pub const ORIGINAL_PARTITION: &str = "circ_original_partition";
    pub const ORIGINAL_OFFSET: &str = "circ_original_offset";
    pub const ORIGINAL_TIMESTAMP: &str = "circ_original_timestamp";
    pub const ERROR_CLASS: &str = "circ_error_class";
    pub const ERROR_MESSAGE: &str = "circ_error_message";
    pub const DEAD_LETTERED_AT: &str = "circ_dead_lettered_at";
    pub const DLQ_REASON: &str = "circ_dlq_reason";
    /// How often the event was replayed from the dead letters (decimal; absent: never). It
    /// travels with the event through retries and back to the dead letters, so a replay loop
    /// can be told from a first failure.
    pub const REPLAYS: &str = "circ_replays";

    /// Every header this module writes (stripped before writing fresh ones).
    pub const ALL: [&str; 13] = [
        ATTEMPT,
        DUE_AT,
        FIRST_FAILURE_AT,
        GROUP,
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        ORIGINAL_TIMESTAMP,
        ERROR_CLASS,
        ERROR_MESSAGE,
        DEAD_LETTERED_AT,
        DLQ_REASON,
        REPLAYS,
    ];
}

/// Longest error message carried in a header.
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// Why an event is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Retryable failures used up every attempt.
    Exhausted,
    /// The handler said retrying cannot help.
    Permanent,
    /// The record could not be decoded (not wire format, unknown schema, missing headers).
    Poison,
    /// No handler is registered for the event's type.
    Unhandled,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Exhausted => "exhausted",
            DeadLetterReason::Permanent => "permanent",
            DeadLetterReason::Poison => "poison",
            DeadLetterReason::Unhandled => "unhandled",
        }
    }
}

/// The next stop of a failed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStop {
    Retry {
        topic: String,
        /// The attempt number the retry will be.
        attempt: u32,
        delay: Duration,
    },
    DeadLetter {
        topic: String,
        reason: DeadLetterReason,
    },
}

/// Decides where an event that failed on `attempt` goes.
pub fn next_stop(catalog: &Catalog, group: &Group, attempt: u32, retryable: bool) -> NextStop {
    let dead_letter = |reason| NextStop::DeadLetter {
        topic: catalog.topic_name(&group.dead_letter_topic_base()),
        reason,
    };
    if !retryable {
        return dead_letter(DeadLetterReason::Permanent);
    }
    if attempt >= group.max_attempts {
        return dead_letter(DeadLetterReason::Exhausted);
    }
    let index = (attempt.max(1) - 1) as usize;
    match group.retry_delays.get(index).or(group.retry_delays.last()) {
        Some(delay) => NextStop::Retry {
            topic: catalog.topic_name(&group.retry_topic_base(*delay)),
            attempt: attempt + 1,
            delay: *delay,
        },
        None => dead_letter(DeadLetterReason::Exhausted),
    }
}

/// Where a record came from originally (its first topic), read from headers or the record itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

/// What the `circ_*` headers of a record say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryState {
    /// The attempt this delivery is (1 when the record carries no header).
    pub attempt: u32,
    pub due_at_ms: Option<i64>,
    pub first_failure_at_ms: Option<i64>,
    pub origin: Option<Origin>,
}

impl RetryState {
    pub fn read<H: Headers>(headers: Option<&H>) -> RetryState {
        match headers {
            None => RetryState::from_lookup(|_| None),
            Some(headers) => RetryState::from_lookup(|name| {
                headers
                    .iter()
                    .filter(|h| h.key == name)
                    .last()
                    .map(|h| h.value)
            }),
        }
    }

    /// Reads the state through `lookup`: a header's value by name (the last occurrence).
    pub fn from_lookup<'a>(lookup: impl Fn(&str) -> Option<Option<&'a [u8]>>) -> RetryState {
        let text = |name: &str| {
            lookup(name)
                .flatten()
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        fn number<T: std::str::FromStr>(text: Option<&str>) -> Option<T> {
            text.and_then(|t| t.parse().ok())
        }
        let origin = match (
            text(header::ORIGINAL_TOPIC),
            number(text(header::ORIGINAL_PARTITION)),
            number(text(header::ORIGINAL_OFFSET)),
        ) {
            (Some(topic), Some(partition), Some(offset)) => Some(Origin {
                topic: topic.to_string(),
                partition,
                offset,
                timestamp: number(text(header::ORIGINAL_TIMESTAMP)),
            }),
            _ => None,
        };
        RetryState {
            attempt: number(text(header::ATTEMPT)).unwrap_or(1).max(1),
            due_at_ms: number(text(header::DUE_AT)),
            first_failure_at_ms: number(text(header::FIRST_FAILURE_AT)),
            origin,
        }
    }
}

/// The failure being recorded.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    pub group: &'a str,
    /// `retryable`, `permanent`, `timeout`, `dependency`, `undecodable`, `unhandled`.
    pub class: &'a str,
    pub message: &'a str,
    pub now_ms: i64,
}

/// Headers for the next stop: the record's own headers minus old `circ_*` ones, plus fresh ones.
pub fn headers_for<H: Headers>(
    original: Option<&H>,
    state: &RetryState,
    origin: &Origin,
    failure: &Failure<'_>,
    stop: &NextStop,
) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(original) = original {
        for h in original.iter().filter(|h| !header::ALL.contains(&h.key)) {
            out = out.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let mut message: String = failure.message.chars().take(MAX_ERROR_MESSAGE).collect();
    if message.is_empty() {
        message.push('-');
    }
    let mut put = |key: &str, value: String| {
        out = std::mem::take(&mut out).insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    };
    put(header::GROUP, failure.group.to_string());
    put(header::ORIGINAL_TOPIC, origin.topic.clone());
    put(header::ORIGINAL_PARTITION, origin.partition.to_string());
    put(header::ORIGINAL_OFFSET, origin.offset.to_string());
    if let Some(ts) = origin.timestamp {
        put(header::ORIGINAL_TIMESTAMP, ts.to_string());
    }
    put(
        header::FIRST_FAILURE_AT,
        state
            .first_failure_at_ms
            .unwrap_or(failure.now_ms)
            .to_string(),
    );
    put(header::ERROR_CLASS, failure.class.to_string());
    put(header::ERROR_MESSAGE, message);
    let replayed = replays(original);
    if replayed > 0 {
        put(header::REPLAYS, replayed.to_string());
    }
    match stop {
        NextStop::Retry { attempt, delay, .. } => {
            put(header::ATTEMPT, attempt.to_string());
            put(
                header::DUE_AT,
                (failure.now_ms + delay.as_millis() as i64).to_string(),
            );
        }
        NextStop::DeadLetter { reason, .. } => {
            put(header::ATTEMPT, state.attempt.to_string());
            put(header::DEAD_LETTERED_AT, failure.now_ms.to_string());
            put(header::DLQ_REASON, reason.as_str().to_string());
        }
    }
    out
}

/// Headers for a replay from the dead letters: the original headers, attempt count reset, with
/// the origin kept so the next failure still points at the first topic, and the replay count
/// one higher.
pub fn headers_for_replay<H: Headers>(original: Option<&H>) -> OwnedHeaders {
    let keep = [
        header::ORIGINAL_TOPIC,
        header::ORIGINAL_PARTITION,
        header::ORIGINAL_OFFSET,
        header::ORIGINAL_TIMESTAMP,
    ];
    let mut out = OwnedHeaders::new();
    if let Some(original) = original {
        for h in original
            .iter()
            .filter(|h| !header::ALL.contains(&h.key) || keep.contains(&h.key))
        {
            out = out.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let count = replays(original).saturating_add(1).to_string();
    out.insert(Header {
        key: header::REPLAYS,
        value: Some(count.as_bytes()),
    })
}

/// How often a record was replayed from the dead letters (its last `circ_replays` header; 0
/// when absent or not a number).
pub fn replays<H: Headers>(headers: Option<&H>) -> u32 {
    headers
        .and_then(|headers| headers.iter().filter(|h| h.key == header::REPLAYS).last())
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogPaths;
    use crate::consumer::dead_letters::text;
    use std::path::PathBuf;

    fn catalog() -> Catalog {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        Catalog::load(&CatalogPaths::in_dir(root))
            .unwrap()
            .with_namespace(Some("ns"))
            .unwrap()
    }

    #[test]
    fn the_ladder_is_climbed_then_the_dead_letters() {
        let catalog = catalog();
        let payments = catalog.group("payments").unwrap().clone();
        let stop = |attempt, retryable| next_stop(&catalog, &payments, attempt, retryable);
        assert_eq!(
            stop(1, true),
            NextStop::Retry {
                topic: "ns.payments.retry.2s".into(),
                attempt: 2,
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(
            stop(4, true),
            NextStop::Retry {
                topic: "ns.payments.retry.16s".into(),
                attempt: 5,
                delay: Duration::from_secs(16)
            }
        );
        assert_eq!(
            stop(5, true),
            NextStop::DeadLetter {
                topic: "ns.payments.dlq".into(),
                reason: DeadLetterReason::Exhausted
            }
        );
        assert_eq!(
            stop(1, false),
            NextStop::DeadLetter {
                topic: "ns.payments.dlq".into(),
                reason: DeadLetterReason::Permanent
            }
        );
        let tracking = catalog.group("event-tracking").unwrap().clone();
        assert!(matches!(
            next_stop(&catalog, &tracking, 1, true),
            NextStop::DeadLetter { .. }
        ));
    }

    #[test]
    fn headers_carry_origin_attempt_due_time_and_error() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "ce_id",
                value: Some("e1"),
            })
            .insert(Header {
                key: header::ATTEMPT,
                value: Some("1"),
            });
        let origin = Origin {
            topic: "ns.payments.critical".into(),
            partition: 3,
            offset: 42,
            timestamp: Some(7),
        };
        let stop = NextStop::Retry {
            topic: "t".into(),
            attempt: 2,
            delay: Duration::from_secs(2),
        };
        let failure = Failure {
            group: "payments",
            class: "retryable",
            message: "db down",
            now_ms: 1_000,
        };
        let headers = headers_for(
            Some(&original),
            &RetryState::read(Some(&original)),
            &origin,
            &failure,
            &stop,
        );
        let state = RetryState::read(Some(&headers));
        assert_eq!(state.attempt, 2);
        assert_eq!(state.due_at_ms, Some(3_000));
        assert_eq!(state.first_failure_at_ms, Some(1_000));
        assert_eq!(state.origin, Some(origin));
        assert_eq!(text(&headers, "ce_id").as_deref(), Some("e1"));
        assert_eq!(
            headers.iter().filter(|h| h.key == header::ATTEMPT).count(),
            1,
            "old circ_* dropped"
        );
        assert_eq!(
            text(&headers, header::ERROR_MESSAGE).as_deref(),
            Some("db down")
        );

        let replay = headers_for_replay(Some(&headers));
        let replayed = RetryState::read(Some(&replay));
        assert_eq!(replayed.attempt, 1);
        assert_eq!(replayed.due_at_ms, None);
        assert!(replayed.origin.is_some());
    }

    #[test]
    fn the_replay_count_grows_with_each_replay_and_survives_retries_and_dead_letters() {
        let failure = Failure {
            group: "payments",
            class: "retryable",
            message: "down",
            now_ms: 1_000,
        };
        let origin = Origin {
            topic: "ns.payments.critical".into(),
            partition: 0,
            offset: 1,
            timestamp: None,
        };
        let dead = NextStop::DeadLetter {
            topic: "ns.payments.dlq".into(),
            reason: DeadLetterReason::Exhausted,
        };
        let retry = NextStop::Retry {
            topic: "ns.payments.retry.2s".into(),
            attempt: 2,
            delay: Duration::from_secs(2),
        };
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "ce_id",
                value: Some("e1"),
            })
            .insert(Header {
                key: "traceparent",
                value: Some("00-abc-def-01"),
            });
        assert_eq!(replays(Some(&original)), 0);
        assert_eq!(replays::<OwnedHeaders>(None), 0);
        let route = |headers: &OwnedHeaders, stop: &NextStop| {
            headers_for(
                Some(headers),
                &RetryState::read(Some(headers)),
                &origin,
                &failure,
                stop,
            )
        };

        let letter = route(&original, &dead);
        assert_eq!(replays(Some(&letter)), 0);
        assert_eq!(
            text(&letter, header::REPLAYS),
            None,
            "never replayed: no header"
        );

        // Replay, fail, retry, dead letter again: the count travels the whole way.
        let replayed = headers_for_replay(Some(&letter));
        assert_eq!(replays(Some(&replayed)), 1);
        assert_eq!(text(&replayed, "ce_id").as_deref(), Some("e1"));
        assert_eq!(
            text(&replayed, "traceparent").as_deref(),
            Some("00-abc-def-01")
        );
        let retried = route(&replayed, &retry);
        assert_eq!(text(&retried, header::REPLAYS).as_deref(), Some("1"));
        let letter = route(&retried, &dead);
        assert_eq!(replays(Some(&letter)), 1);
        assert_eq!(
            letter.iter().filter(|h| h.key == header::REPLAYS).count(),
            1
        );

        let again = headers_for_replay(Some(&letter));
        assert_eq!(text(&again, header::REPLAYS).as_deref(), Some("2"));
        assert_eq!(again.iter().filter(|h| h.key == header::REPLAYS).count(), 1);
        assert_eq!(RetryState::read(Some(&again)).attempt, 1);

        let garbage = OwnedHeaders::new().insert(Header {
            key: header::REPLAYS,
            value: Some("many"),
        });
        assert_eq!(replays(Some(&garbage)), 0);
        assert_eq!(replays(Some(&headers_for_replay(Some(&garbage)))), 1);
    }
}
