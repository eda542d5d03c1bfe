//! What operators do to dead letters. Replays go to the failed group only (`<group>.replay`),
//! through `circulatory::consumer::dead_letters` as `circ dlq replay` does; each decision is
//! recorded in `dead_letter_resolutions` and published as an `admin.action` event.
//!
//! The loop guard: a letter whose event was already replayed `max_replays` times is quarantined
//! instead of sent back again. An edited payload is validated against the type's Avro schema
//! before anything is produced.

use circulatory::sync::MutexExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circulatory::consumer::dead_letters::{self, DeadLetter};
use circulatory::kafka;
use circulatory::publisher::{EventDraft, ValidationError};
use rdkafka::consumer::BaseConsumer;
use serde::Serialize;

use super::index::Summary;
use crate::audit::{self, Action};
use crate::auth::Principal;
use crate::problem::{ApiError, FieldProblem};
use crate::state::AppState;

/// Reads single dead-letter records (one client, reused).
#[derive(Clone)]
pub struct Fetcher {
    consumer: Arc<Mutex<BaseConsumer>>,
}

impl Fetcher {
    pub fn new(
        kafka: &circulatory::kafka::KafkaConfig,
    ) -> Result<Fetcher, rdkafka::error::KafkaError> {
        Ok(Fetcher {
            consumer: Arc::new(Mutex::new(kafka::reader(
                &circulatory::kafka::KafkaConfig {
                    client_id: format!("{}-fetch", kafka.client_id),
                    ..kafka.clone()
                },
            )?)),
        })
    }

    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<Option<DeadLetter>, ApiError> {
        let consumer = self.consumer.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let consumer = consumer.locked();
            dead_letters::read_at(&consumer, &topic, partition, offset, timeout)
        })
        .await
        .map_err(|e| ApiError::unavailable("kafka", e))?
        .map_err(|e| ApiError::unavailable("kafka", e))
    }
}

/// The answer to an action on one letter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionOutcome {
    pub id: String,
    pub group: String,
    /// The letter's state now.
    pub state: String,
    /// Where a replay went.
    pub replay_topic: Option<String>,
    /// Whether the `admin.action` event was written.
    pub audited: bool,
}

/// The letter an action names, open, with its record.
pub async fn open_letter(
    state: &AppState,
    group: &str,
    id: &str,
) -> Result<(Summary, DeadLetter, String), ApiError> {
    let topic = state
        .dead_letters
        .topic_of(group)
        .ok_or_else(|| ApiError::NotFound(format!("no group `{group}` in the topology")))?;
    let summary = state
        .dead_letters
        .get(group, id)
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter `{id}` in {topic}")))?;
    if summary.state != "open" {
        return Err(ApiError::Conflict(format!(
            "dead letter `{id}` is already {}",
            summary.state
        )));
    }
    let letter = state
        .fetcher
        .fetch(
            &topic,
            summary.partition,
            summary.offset,
            state.limits.kafka_timeout,
        )
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "dead letter `{id}` is no longer in {topic} (retention)"
            ))
        })?;
    Ok((summary, letter, topic))
}

pub(crate) async fn record_decision(
    state: &AppState,
    topic: &str,
    letter: &DeadLetter,
    action: &str,
    who: &Principal,
) -> Result<(), ApiError> {
    dead_letters::resolve(&state.db, topic, letter, action, who.sub())
        .await
        .map_err(|e| ApiError::unavailable("postgresql", e))?;
    state
        .dead_letters
        .set_resolution(topic, letter.partition, letter.offset, action);
    Ok(())
}

pub(crate) fn replay_topic(state: &AppState, group: &str) -> Result<String, ApiError> {
    let g = state
        .catalog
        .group(group)
        .ok_or_else(|| ApiError::NotFound(format!("no group `{group}` in the topology")))?;
    Ok(state.catalog.topic_name(&g.replay_topic_base()))
}

fn details(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// What was decided on one letter.
enum Decided {
    Replayed(String),
    Edited(String),
    Discarded,
}

/// Publishes the audit event of a decision on one letter and answers.
async fn finish(
    state: &AppState,
    who: &Principal,
    summary: &Summary,
    decided: Decided,
    reason: Option<&str>,
) -> ActionOutcome {
    let (kind, name, replay_topic) = match decided {
        Decided::Replayed(t) => ("DLQ_REPLAY", "replayed", Some(t)),
        Decided::Edited(t) => ("DLQ_REPLAY", "edited", Some(t)),
        Decided::Discarded => ("DLQ_DISCARD", "discarded", None),
    };
    let mut details = details(&[
        ("group", summary.group.clone()),
        ("eventId", summary.event_id.clone().unwrap_or_default()),
        ("count", "1".into()),
    ]);
    if name == "edited" {
        details.insert("edited".into(), "true".into());
    }
    let action = Action {
        kind,
        target_kind: "DEAD_LETTER",
        target_ref: format!("{}/{}", summary.group, summary.id),
        reason,
        details,
    };
    let audited = audit::record(state, who, action).await;
    ActionOutcome {
        id: summary.id.clone(),
        group: summary.group.clone(),
        state: name.into(),
        replay_topic,
        audited,
    }
}

/// Replays one letter, or quarantines it when the loop guard says so.
pub async fn retry(
    state: &AppState,
    who: &Principal,
    group: &str,
    id: &str,
) -> Result<ActionOutcome, ApiError> {
    let (summary, letter, topic) = open_letter(state, group, id).await?;
    let target = replay_topic(state, group)?;
    if letter.is_looping(state.limits.max_replays) {
        record_decision(state, &topic, &letter, "quarantined", who).await?;
        return Err(ApiError::Conflict(format!(
            "dead letter `{id}` was replayed {} times already and keeps failing: quarantined, not replayed",
            letter.replays
        )));
    }
    dead_letters::replay(&state.producer, &target, &letter)
        .await
        .map_err(|e| ApiError::unavailable("kafka", e))?;
    record_decision(state, &topic, &letter, "replayed", who).await?;
    Ok(finish(state, who, &summary, Decided::Replayed(target), None).await)
}

/// Discards one letter (it stays in the topic; the decision is recorded).
pub async fn discard(
    state: &AppState,
    who: &Principal,
    group: &str,
    id: &str,
    reason: Option<&str>,
) -> Result<ActionOutcome, ApiError> {
    let (summary, letter, topic) = open_letter(state, group, id).await?;
    record_decision(state, &topic, &letter, "discarded", who).await?;
    Ok(finish(state, who, &summary, Decided::Discarded, reason).await)
}

/// Validation errors as field problems.
fn refusal(error: ValidationError) -> ApiError {
    match error {
        ValidationError::Schema { event_type, errors } => ApiError::Invalid {
            detail: format!("the corrected data does not match the schema of `{event_type}`; nothing was produced"),
            errors: errors.into_iter().map(|e| FieldProblem { path: e.path, message: e.message }).collect(),
        },
        other => ApiError::Invalid { detail: format!("{other}; nothing was produced"), errors: Vec::new() },
    }
}

/// Replays one letter with corrected data, validated against the schema first.
pub async fn edit_and_retry(
    state: &AppState,
    who: &Principal,
    group: &str,
    id: &str,
    data: serde_json::Value,
) -> Result<ActionOutcome, ApiError> {
    let (summary, letter, topic) = open_letter(state, group, id).await?;
    let event_type = summary.event_type.clone().ok_or_else(|| {
        ApiError::Conflict(format!(
            "dead letter `{id}` names no event type; it cannot be edited"
        ))
    })?;
    let validated = state
        .publisher
        .validate(EventDraft {
            event_type,
            data,
            id: summary.event_id.clone(),
            ..EventDraft::default()
        })
        .map_err(refusal)?;
    let encoded = state
        .publisher
        .encode(validated)
        .await
        .map_err(|e| ApiError::unavailable("schema registry", e))?;
    let target = replay_topic(state, group)?;
    dead_letters::replay_as(
        &state.producer,
        &target,
        &letter,
        &encoded.payload,
        encoded.key.as_deref(),
    )
    .await
    .map_err(|e| ApiError::unavailable("kafka", e))?;
    record_decision(state, &topic, &letter, "edited", who).await?;
    Ok(finish(
        state,
        who,
        &summary,
        Decided::Edited(target),
        Some("edited and replayed"),
    )
    .await)
}
