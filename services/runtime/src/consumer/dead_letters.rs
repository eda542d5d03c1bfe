//! Operating on dead letters: list, show, replay to the failed group only, discard.
//!
//! A dead letter is addressed by its position in the group's `<group>.dlq` topic
//! (`<partition>-<offset>`). Replaying produces the record to `<group>.replay`, which only that
//! group reads, with the attempt count reset; the decision is recorded in
//! `dead_letter_resolutions` so the open list shrinks while the topic stays append-only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

use crate::cloudevents::header as ce;
use crate::consumer::retry::{self, header, Origin, RetryState};
use crate::kafka::{self, KafkaConfig};

/// One dead-lettered record and its story.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// `<partition>-<offset>` in the dead-letter topic.
    pub id: String,
    pub partition: i32,
    pub offset: i64,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub reason: Option<String>,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub attempt: u32,
    /// Times an operator already sent this event back to its group.
    pub replays: u32,
    pub dead_lettered_at_ms: Option<i64>,
    pub origin: Option<Origin>,
    /// `replayed` or `discarded` once an operator decided.
    pub resolution: Option<String>,
    pub record: OwnedMessage,
}

/// A header's text (the last occurrence), non-UTF-8 shown lossily.
pub(crate) fn text(headers: &OwnedHeaders, name: &str) -> Option<String> {
    headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

impl DeadLetter {
    /// Reads a dead-letter record's story from its headers.
    pub fn from_record(record: OwnedMessage) -> DeadLetter {
        let state = RetryState::read(record.headers());
        let empty = OwnedHeaders::new();
        let headers = record.headers().unwrap_or(&empty);
        DeadLetter {
            id: format!("{}-{}", record.partition(), record.offset()),
            partition: record.partition(),
            offset: record.offset(),
            event_id: text(headers, ce::ID),
            event_type: text(headers, ce::TYPE),
            reason: text(headers, header::DLQ_REASON),
            error_class: text(headers, header::ERROR_CLASS),
            error_message: text(headers, header::ERROR_MESSAGE),
            attempt: state.attempt,
            replays: retry::replays(record.headers()),
            dead_lettered_at_ms: text(headers, header::DEAD_LETTERED_AT)
                .and_then(|t| t.parse().ok()),
            origin: state.origin,
            resolution: None,
            record,
        }
    }
}

impl DeadLetter {
    /// The loop guard: a letter already replayed `max_replays` times is quarantined instead of
    /// being sent back again.
    pub fn is_looping(&self, max_replays: u32) -> bool {
        self.replays >= max_replays
    }
}

/// Which dead letters an operation applies to; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub event_type: Option<String>,
    /// Event ids (`ce_id`) or dead-letter ids (`<partition>-<offset>`).
    pub ids: Vec<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Include replayed and discarded ones.
    pub include_resolved: bool,
}

impl Selection {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        (self.include_resolved || letter.resolution.is_none())
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| letter.event_type.as_ref() == Some(t))
            && (self.ids.is_empty()
                || self
                    .ids
                    .iter()
                    .any(|id| *id == letter.id || letter.event_id.as_deref() == Some(id.as_str())))
            && self
                .since_ms
                .is_none_or(|since| letter.dead_lettered_at_ms.is_some_and(|t| t >= since))
            && self
                .until_ms
                .is_none_or(|until| letter.dead_lettered_at_ms.is_some_and(|t| t <= until))
    }
}

/// Reads every record of a dead-letter topic (up to the current end).
pub async fn read_all(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<DeadLetter>, rdkafka::error::KafkaError> {
    let consumer: Arc<BaseConsumer> = Arc::new(kafka::reader(kafka)?);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        let mut assignment = TopicPartitionList::new();
        let mut remaining: HashMap<i32, i64> = HashMap::new();
        for partition in metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions())
        {
            let (low, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
            if high > low {
                assignment.add_partition_offset(&topic, partition.id(), Offset::Offset(low))?;
                remaining.insert(partition.id(), high);
            }
        }
        let mut letters = Vec::new();
        if remaining.is_empty() {
            return Ok(letters);
        }
        consumer.assign(&assignment)?;
        let deadline = std::time::Instant::now() + timeout;
        while !remaining.is_empty() && std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let partition = message.partition();
                    let offset = message.offset();
                    letters.push(DeadLetter::from_record(message.detach()));
                    if remaining
                        .get(&partition)
                        .is_some_and(|high| offset + 1 >= *high)
                    {
                        remaining.remove(&partition);
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        letters.sort_by_key(|l| (l.dead_lettered_at_ms, l.partition, l.offset));
        Ok(letters)
    })
    .await
    .map_err(|_| rdkafka::error::KafkaError::Canceled)?
}

/// Reads the record at one position of a dead-letter topic with a client of its own.
pub async fn read_one(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<DeadLetter>, rdkafka::error::KafkaError> {
    let consumer: BaseConsumer = kafka::reader(kafka)?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_at(&consumer, &topic, partition, offset, timeout))
        .await
        .map_err(|_| rdkafka::error::KafkaError::Canceled)?
}

/// Reads the record at one position with `consumer` (blocking; the consumer's assignment is
/// replaced). `None` when the record is gone (retention) or never was.
pub fn read_at(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<DeadLetter>, rdkafka::error::KafkaError> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.topic() == topic && m.partition() == partition => {
                return Ok((m.offset() == offset).then(|| DeadLetter::from_record(m.detach())));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(None)
}

/// Fills in operators' earlier decisions.
pub async fn load_resolutions(
    pool: &PgPool,
    topic: &str,
    letters: &mut [DeadLetter],
) -> Result<(), sqlx::Error> {
    let rows: Vec<(i32, i64, String)> = sqlx::query_as(
        "SELECT dlq_partition, dlq_offset, action FROM dead_letter_resolutions WHERE dlq_topic = $1",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?;
    let by_position: HashMap<(i32, i64), String> =
        rows.into_iter().map(|(p, o, a)| ((p, o), a)).collect();
    for letter in letters {
        letter.resolution = by_position.get(&(letter.partition, letter.offset)).cloned();
    }
    Ok(())
}

/// Records a decision on one dead letter.
pub async fn resolve(
    pool: &PgPool,
    topic: &str,
    letter: &DeadLetter,
    action: &str,
    actor: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letter_resolutions \
           (dlq_topic, dlq_partition, dlq_offset, event_id, action, actor) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) \
         DO UPDATE SET action = EXCLUDED.action, actor = EXCLUDED.actor, resolved_at = now()",
    )
    .bind(topic)
    .bind(letter.partition)
    .bind(letter.offset)
    .bind(letter.event_id.as_deref().unwrap_or(""))
    .bind(action)
    .bind(actor)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Sends a dead letter back to its group (its replay topic) with the attempt count reset, and
/// waits for the broker's ack.
pub async fn replay(
    producer: &FutureProducer,
    replay_topic: &str,
    letter: &DeadLetter,
) -> Result<(), rdkafka::error::KafkaError> {
    replay_as(
        producer,
        replay_topic,
        letter,
        letter.record.payload().unwrap_or_default(),
        letter.record.key(),
    )
    .await
}

/// Replays a dead letter with an operator's corrected value (wire format, already validated)
/// and its key; every header is kept.
pub async fn replay_as(
    producer: &FutureProducer,
    replay_topic: &str,
    letter: &DeadLetter,
    payload: &[u8],
    key: Option<&[u8]>,
) -> Result<(), rdkafka::error::KafkaError> {
    let headers = retry::headers_for_replay(letter.record.headers());
    let mut record = FutureRecord::to(replay_topic)
        .headers(headers)
        .payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, Timestamp};

    fn letter(
        partition: i32,
        offset: i64,
        event_type: &str,
        at: i64,
        resolution: Option<&str>,
    ) -> DeadLetter {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: ce::ID,
                value: Some(format!("e-{offset}").as_str()),
            })
            .insert(Header {
                key: ce::TYPE,
                value: Some(event_type),
            })
            .insert(Header {
                key: header::DEAD_LETTERED_AT,
                value: Some(at.to_string().as_str()),
            })
            .insert(Header {
                key: header::DLQ_REASON,
                value: Some("exhausted"),
            });
        let record = OwnedMessage::new(
            None,
            None,
            "t.dlq".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            Some(headers),
        );
        let mut letter = DeadLetter::from_record(record);
        letter.resolution = resolution.map(str::to_string);
        letter
    }

    #[test]
    fn selections_filter_by_type_id_time_and_resolution() {
        let letters = [
            letter(0, 1, "payment.initiated", 1_000, None),
            letter(0, 2, "payment.completed", 2_000, None),
            letter(1, 1, "payment.initiated", 3_000, Some("replayed")),
        ];
        let pick = |s: Selection| {
            letters
                .iter()
                .filter(|l| s.matches(l))
                .map(|l| l.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(Selection::default()), ["0-1", "0-2"]);
        assert_eq!(
            pick(Selection {
                include_resolved: true,
                ..Default::default()
            })
            .len(),
            3
        );
        assert_eq!(
            pick(Selection {
                event_type: Some("payment.completed".into()),
                ..Default::default()
            }),
            ["0-2"]
        );
        assert_eq!(
            pick(Selection {
                ids: vec!["e-1".into()],
                include_resolved: true,
                ..Default::default()
            }),
            ["0-1", "1-1"]
        );
        assert_eq!(
            pick(Selection {
                ids: vec!["1-1".into()],
                include_resolved: true,
                ..Default::default()
            }),
            ["1-1"]
        );
        assert_eq!(
            pick(Selection {
                since_ms: Some(1_500),
                until_ms: Some(2_500),
                ..Default::default()
            }),
            ["0-2"]
        );
        assert_eq!(letters[0].reason.as_deref(), Some("exhausted"));
        assert_eq!(letters[0].event_id.as_deref(), Some("e-1"));
    }
}
