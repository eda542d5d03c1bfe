//! `POST /v1/events`: validate every event of the request, then publish them (Kafka, or Redis for
//! ephemeral types) and answer once the broker acknowledged.
//!
//! Order of checks: authentication, media type, size, JSON, envelopes, known types, permission,
//! rate limit, schemas, idempotency, dependencies. Everything that can reject a request happens
//! before anything is produced, so a refused batch leaves no trace in Kafka.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use circulatory::publisher::{
    Delivered, EventDraft, Publication, PublishError, Unconfirmed, ValidatedEvent, ValidationError,
};
use circulatory::realtime::{self, RealtimeMessage};
use serde::Serialize;
use serde_json::Value;

use crate::body;
use crate::correlation::{respond, Correlation};
use crate::envelope::{self, BodyKind, Envelope};
use crate::idempotency::{fingerprint, Claim};
use crate::problem::{code, ApiError, EventProblem};
use crate::settlement::{release_all, settle_claims, Claimed};
use crate::state::AppState;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The answer for one event.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventResult {
    /// Written to Kafka: where the broker stored it.
    Stored {
        id: String,
        #[serde(rename = "type")]
        event_type: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// Ephemeral: broadcast on Redis channels, stored nowhere.
    Broadcast {
        id: String,
        #[serde(rename = "type")]
        event_type: String,
        channels: Vec<String>,
        /// Subscribers reached, summed over the channels.
        receivers: i64,
    },
}

impl From<Delivered> for EventResult {
    fn from(d: Delivered) -> Self {
        EventResult::Stored {
            id: d.id,
            event_type: d.event_type,
            topic: d.topic,
            partition: d.partition,
            offset: d.offset,
        }
    }
}

/// Publish one event or a batch.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(
        content_type = "application/json",
        description = "One event `{type, data, id?, subject?, time?}`, a structured CloudEvent, or an array of either",
        content = Value,
    ),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer when repeated within the window"),
        ("X-Correlation-ID" = Option<String>, Header, description = "Carried into Kafka headers; generated when absent"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context"),
    ),
    responses(
        (status = 202, description = "Acknowledged by the broker (an array for a batch)", body = EventResult),
        (status = 200, description = "Replay of an earlier answer (header Idempotent-Replayed: true)", body = EventResult),
        (status = 400, description = "Malformed", body = crate::problem::Problem),
        (status = 401, description = "No or invalid token", body = crate::problem::Problem),
        (status = 403, description = "Type not allowed for this client", body = crate::problem::Problem),
        (status = 413, description = "Body, event or batch too large", body = crate::problem::Problem),
        (status = 415, description = "Wrong content type", body = crate::problem::Problem),
        (status = 422, description = "Unknown type or schema violation (per-event errors)", body = crate::problem::Problem),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::problem::Problem),
        (status = 503, description = "Kafka, registry or Redis unavailable (Retry-After)", body = crate::problem::Problem),
    ),
    security(("bearer" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    Extension(correlation): Extension<Correlation>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = handle(&state, &correlation, &headers, body).await;
    if let Err(error) = &result {
        let reason = match error.status().as_u16() {
            400 => "malformed",
            401 => "unauthenticated",
            408 => "timeout",
            403 => "forbidden",
            413 => "too_large",
            415 => "media_type",
            422 => "invalid",
            429 => "rate_limited",
            503 => "unavailable",
            _ => "other",
        };
        if reason != "unauthenticated" && reason != "rate_limited" {
            state
                .metrics
                .events_rejected
                .with_label_values(&[reason])
                .inc();
        }
    }
    respond(result, &correlation)
}

/// The body as JSON: invalid JSON, or an object naming a member twice, is a 400 (a duplicate
/// with its event index and JSON Pointer, as in `errors[]` elsewhere).
fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    circulatory::json::from_slice(bytes).map_err(|e| match e {
        circulatory::json::StrictJsonError::Syntax(e) => {
            ApiError::Malformed(format!("the body is not valid JSON: {e}"))
        }
        circulatory::json::StrictJsonError::Duplicate { path } => {
            let (index, path) = split_batch_index(
                &path,
                bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['),
            );
            ApiError::MalformedAt {
                detail: "the body names a member twice".into(),
                errors: vec![EventProblem {
                    index,
                    path,
                    message: "appears more than once; each member may be given once".into(),
                }],
            }
        }
    })
}

/// `/3/data/x` in a batch is event 3's `/data/x`; a single event is event 0.
fn split_batch_index(pointer: &str, batch: bool) -> (usize, String) {
    if batch {
        let rest = pointer.trim_start_matches('/');
        let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if let Ok(index) = first.parse() {
            return (index, format!("/{tail}").trim_end_matches('/').to_string());
        }
    }
    (0, pointer.to_string())
}

/// A unit of idempotency: one key covering some events of the request.
struct Unit {
    key: String,
    fingerprint: String,
    events: Vec<usize>,
    /// Covers the whole request (the `Idempotency-Key` header): its answer is the response body.
    whole_request: bool,
}

async fn handle(
    state: &AppState,
    correlation: &Correlation,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The request timeout started as the request reached this handler.
    let answer_by = tokio::time::Instant::now() + state.limits.ack_budget;
    let claims = state.authenticate(headers)?;
    let kind = envelope::body_kind(headers)?;
    let idempotency_key = idempotency_key(headers)?;
    let bytes = body::read(body, state.limits.max_body_bytes, state.limits.body_timeout).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Malformed("the body is empty".into()));
    }
    let json = parse_json(&bytes)?;
    let (items, is_batch) = envelope::split(kind, json)?;
    if items.is_empty() {
        return Err(ApiError::Malformed("the batch is empty".into()));
    }
    if items.len() > state.limits.max_batch {
        return Err(ApiError::TooLarge(format!(
            "a batch holds at most {} events, this one has {}",
            state.limits.max_batch,
            items.len()
        )));
    }

    // Envelopes, sizes, types, permissions: all problems of the request at once.
    let structured = kind != BodyKind::Json;
    let mut envelopes = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match envelope::parse(index, item, structured) {
            Ok(envelope) => envelopes.push(envelope),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(envelope::envelope_error(problems));
    }
    // Re-serialised data stays well under eight times its text in the body (the worst case is
    // a short float: `1e15` becomes `1000000000000000.0`), so only a body above an eighth of the
    // limit needs measuring.
    if bytes.len().saturating_mul(8) > state.limits.max_event_bytes {
        for (index, envelope) in envelopes.iter().enumerate() {
            let size = json_size(&envelope.data);
            if size > state.limits.max_event_bytes {
                return Err(ApiError::TooLarge(format!(
                    "event {index} has {size} bytes of data; the limit is {}",
                    state.limits.max_event_bytes
                )));
            }
        }
    }
    let mut unknown = Vec::new();
    let mut forbidden = Vec::new();
    for (index, envelope) in envelopes.iter().enumerate() {
        match state.catalog.event(&envelope.event_type) {
            None => unknown.push(EventProblem {
                index,
                path: "/type".into(),
                message: format!(
                    "unknown event type `{}` (see GET /v1/catalog)",
                    envelope.event_type
                ),
            }),
            Some(event) if !claims.may_publish(event.name(), &event.route.domain) => {
                forbidden.push(envelope.event_type.clone())
            }
            Some(_) => {}
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(
            "unknown event type",
            code::UNKNOWN_TYPE,
            unknown,
        ));
    }
    if !forbidden.is_empty() {
        forbidden.dedup();
        return Err(ApiError::Forbidden(format!(
            "client `{}` may not publish {}",
            claims.sub,
            forbidden.join(", ")
        )));
    }
    state.rate_limit(&claims.sub, envelopes.len())?;

    // Which keys guard which events (before the envelopes become drafts).
    let units = idempotency_units(idempotency_key, &envelopes, &bytes);
    let count = envelopes.len();

    // Schemas.
    let mut validated = Vec::with_capacity(count);
    let mut problems = Vec::new();
    for (index, envelope) in envelopes.into_iter().enumerate() {
        match state.publisher.validate(draft(envelope, correlation)) {
            Ok(event) => validated.push(event),
            Err(ValidationError::Schema { errors, .. }) => {
                problems.extend(errors.into_iter().map(|e| EventProblem {
                    index,
                    path: format!("/data{}", e.path),
                    message: e.message,
                }))
            }
            Err(ValidationError::Attribute { attribute, message }) => problems.push(EventProblem {
                index,
                path: format!("/{attribute}"),
                message,
            }),
            Err(ValidationError::UnknownType(t)) => problems.push(EventProblem {
                index,
                path: "/type".into(),
                message: format!("unknown event type `{t}`"),
            }),
            Err(ValidationError::TooLarge { size, limit }) => {
                return Err(ApiError::TooLarge(format!(
                    "event {index} would be a record of {size} bytes; the largest accepted is {limit}"
                )))
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(
            "the events do not match their schemas",
            code::SCHEMA_VIOLATION,
            problems,
        ));
    }
    let needs_kafka = validated.iter().any(|e| e.event.topic.is_some());
    if needs_kafka && !state.health.kafka_up() {
        return Err(ApiError::unavailable(
            "the event log is unavailable; retry later",
            code::KAFKA_UNAVAILABLE,
            "kafka unreachable (health watcher)",
        ));
    }

    // Redis keeps the idempotency keys and carries the ephemeral broadcasts: known down, the
    // answer is an immediate 503 rather than a wait for its timeout.
    let broadcasts_any = validated.iter().any(|e| e.event.topic.is_none());
    if (!units.is_empty() || broadcasts_any) && !state.health.redis_up() {
        let public = if units.is_empty() {
            "the realtime hub is unavailable; retry later"
        } else {
            "the idempotency store is unavailable; retry later"
        };
        return Err(ApiError::unavailable(
            public,
            code::REDIS_UNAVAILABLE,
            "redis unreachable (health watcher)",
        ));
    }

    // Idempotency.
    let mut results: Vec<Option<EventResult>> = vec![None; validated.len()];
    let mut tickets: Vec<Claimed> = Vec::new();
    let mut replayed_events = 0;
    for unit in &units {
        let claim = state
            .idempotency
            .claim(&claims.sub, &unit.key, &unit.fingerprint)
            .await;
        match claim {
            Ok(Claim::Acquired(ticket)) => tickets.push(Claimed {
                ticket,
                events: unit.events.clone(),
                whole_request: unit.whole_request,
            }),
            Ok(Claim::Replay(answer)) => {
                let answers: Vec<EventResult> = match answer {
                    Value::Array(items) => items
                        .into_iter()
                        .filter_map(|v| serde_json::from_value(v).ok())
                        .collect(),
                    single => serde_json::from_value(single).into_iter().collect(),
                };
                for (slot, answer) in unit.events.iter().zip(answers) {
                    results[*slot] = Some(answer);
                    replayed_events += 1;
                }
            }
            Ok(other) => {
                release_all(state, &tickets).await;
                return Err(match other {
                    Claim::Mismatch => ApiError::unprocessable(
                        format!(
                            "the idempotency key `{}` was used for a different request",
                            unit.key
                        ),
                        code::IDEMPOTENCY_MISMATCH,
                        Vec::new(),
                    ),
                    _ => ApiError::Conflict(format!(
                        "a request with the idempotency key `{}` is still being processed",
                        unit.key
                    )),
                });
            }
            Err(e) => {
                release_all(state, &tickets).await;
                return Err(ApiError::unavailable(
                    "the idempotency store is unavailable; retry later",
                    code::REDIS_UNAVAILABLE,
                    e,
                ));
            }
        }
    }
    if replayed_events > 0 {
        state.metrics.idempotent_replays.inc();
    }

    // Publish what is not a replay: Kafka records all together, ephemeral events on Redis.
    let mut stored = Vec::new();
    let mut broadcasts = Vec::new();
    for (index, event) in validated.into_iter().enumerate() {
        if results[index].is_some() {
            continue;
        }
        if event.event.topic.is_some() {
            stored.push((index, event));
        } else {
            broadcasts.push((index, event));
        }
    }
    let (produced, broadcast) = tokio::join!(
        produce(state, stored, answer_by),
        futures::future::join_all(
            broadcasts
                .into_iter()
                .map(|(index, event)| async move { (index, broadcast(state, event).await) }),
        )
    );
    let mut failures: Vec<(usize, ApiError)> = Vec::new();
    let mut unconfirmed = HashMap::new();
    for (index, outcome) in produced {
        match outcome {
            Produced::Settled(Ok(result)) => results[index] = Some(result),
            Produced::Settled(Err(error)) => failures.push((index, error)),
            Produced::Unconfirmed(pending) => {
                failures.push((index, unconfirmed_error(pending.id())));
                unconfirmed.insert(index, pending);
            }
        }
    }
    for (index, outcome) in broadcast {
        match outcome {
            Ok(result) => results[index] = Some(result),
            Err(error) => failures.push((index, error)),
        }
    }
    settle_claims(state, tickets, &results, unconfirmed, is_batch).await;
    if !failures.is_empty() {
        let transient = failures
            .iter()
            .all(|(_, e)| e.status() == StatusCode::SERVICE_UNAVAILABLE);
        let summary = failures
            .iter()
            .map(|(i, e)| format!("event {i}: {}", e.log_detail()))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(if transient {
            let mut error = failures.swap_remove(0).1;
            if let ApiError::Unavailable { internal, .. } = &mut error {
                *internal = summary;
            }
            error
        } else {
            ApiError::Internal(summary)
        });
    }

    let results: Vec<EventResult> = results.into_iter().flatten().collect();
    let all_replayed = replayed_events == results.len();
    let status = if all_replayed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = if is_batch {
        (status, Json(results)).into_response()
    } else {
        (status, Json(results.into_iter().next())).into_response()
    };
    if all_replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(&IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key)
                if !key.is_empty()
                    && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
                    && !key.chars().any(char::is_control) =>
            {
                Ok(Some(key.to_string()))
            }
            _ => Err(ApiError::Malformed(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable characters"
            ))),
        },
    }
}

/// The length of `value` serialised as compact JSON, without building the text.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Which keys guard which events: the `Idempotency-Key` header covers the whole request;
/// otherwise each event with an `id` is its own unit.
fn idempotency_units(header_key: Option<String>, envelopes: &[Envelope], body: &[u8]) -> Vec<Unit> {
    if let Some(key) = header_key {
        return vec![Unit {
            key: format!("key:{key}"),
            fingerprint: fingerprint(&[body]),
            events: (0..envelopes.len()).collect(),
            whole_request: true,
        }];
    }
    envelopes
        .iter()
        .enumerate()
        .filter_map(|(index, envelope)| {
            let id = envelope.id.as_ref()?;
            let data = serde_json::to_vec(&envelope.data).unwrap_or_default();
            Some(Unit {
                key: format!("id:{id}"),
                fingerprint: fingerprint(&[
                    envelope.event_type.as_bytes(),
                    &data,
                    envelope.subject.as_deref().unwrap_or("").as_bytes(),
                ]),
                events: vec![index],
                whole_request: false,
            })
        })
        .collect()
}

fn draft(envelope: Envelope, correlation: &Correlation) -> EventDraft {
    EventDraft {
        event_type: envelope.event_type,
        data: envelope.data,
        id: envelope.id,
        subject: envelope.subject,
        time: envelope.time,
        source: envelope.source,
        correlation_id: Some(correlation.correlation_id.clone()),
        request_id: Some(correlation.request_id.clone()),
        traceparent: Some(
            envelope
                .traceparent
                .unwrap_or_else(|| correlation.traceparent.clone()),
        ),
        tracestate: correlation.tracestate.clone(),
    }
}

/// Broadcasts an ephemeral event on its Redis channels.
async fn broadcast(state: &AppState, event: ValidatedEvent) -> Result<EventResult, ApiError> {
    let event_type = event.metadata.event_type.clone();
    let data = event.data().map_err(ApiError::Internal)?;
    let channels = realtime::channels_for(state.catalog.topology(), &event.event, &data);
    let message = RealtimeMessage::new(&event_type, &event.metadata.id, event.metadata.time, data)
        .with_correlation_id(event.metadata.correlation_id.clone());
    let mut redis = state.redis.clone();
    let receivers = realtime::publish(&mut redis, &channels, &message)
        .await
        .map_err(|e| {
            ApiError::unavailable(
                "the realtime hub is unavailable; retry later",
                code::REDIS_UNAVAILABLE,
                e,
            )
        })?;
    state
        .metrics
        .events_broadcast
        .with_label_values(&[&event_type])
        .inc();
    state.published.add(&event_type, 1);
    Ok(EventResult::Broadcast {
        id: event.metadata.id,
        event_type,
        channels,
        receivers: receivers.iter().sum(),
    })
}

/// What producing one event came to within the ack timeout.
enum Produced {
    Settled(Result<EventResult, ApiError>),
    /// Still in the producer: it may yet be written.
    Unconfirmed(Unconfirmed),
}

/// Produces the request's Kafka events together and waits for the broker's acknowledgements,
/// up to the ack timeout or `answer_by`, whichever comes first.
async fn produce(
    state: &AppState,
    events: Vec<(usize, ValidatedEvent)>,
    answer_by: tokio::time::Instant,
) -> Vec<(usize, Produced)> {
    if events.is_empty() {
        return Vec::new();
    }
    let (indexes, events): (Vec<usize>, Vec<ValidatedEvent>) = events.into_iter().unzip();
    let started = Instant::now();
    let outcomes = state
        .publisher
        .publish_all_settling(events, Some(answer_by))
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    // Metrics per type, looked up once per type rather than once per event.
    let mut produced: Vec<(&str, u64)> = Vec::new();
    for outcome in &outcomes {
        let Publication::Settled(Ok(delivered)) = outcome else {
            continue;
        };
        state.health.acknowledged();
        match produced
            .iter_mut()
            .find(|(t, _)| *t == delivered.event_type)
        {
            Some((_, count)) => *count += 1,
            None => produced.push((&delivered.event_type, 1)),
        }
    }
    for (event_type, count) in produced {
        let duration = state
            .metrics
            .produce_duration
            .with_label_values(&[event_type]);
        for _ in 0..count {
            duration.observe(elapsed);
        }
        state
            .metrics
            .events_produced
            .with_label_values(&[event_type])
            .inc_by(count);
        state.published.add(event_type, count);
    }
    indexes
        .into_iter()
        .zip(outcomes)
        .map(|(index, outcome)| {
            let produced = match outcome {
                Publication::Settled(result) => {
                    Produced::Settled(result.map(EventResult::from).map_err(publish_error))
                }
                Publication::Unconfirmed(pending) => Produced::Unconfirmed(pending),
            };
            (index, produced)
        })
        .collect()
}

fn unconfirmed_error(id: &str) -> ApiError {
    ApiError::unavailable(
        "the event log has not acknowledged the event yet and may still write it; retry with \
         the same id (or Idempotency-Key) to get its outcome",
        code::KAFKA_UNCONFIRMED,
        format!("event {id} not acknowledged within the ack timeout"),
    )
}

pub(crate) fn publish_error(e: PublishError) -> ApiError {
    match &e {
        PublishError::Registry(r) if r.is_transient() => ApiError::unavailable(
            "the schema registry is unavailable; retry later",
            code::REGISTRY_UNAVAILABLE,
            &e,
        ),
        _ if e.possibly_written() => ApiError::unavailable(
            "the event log did not confirm the event and may have written it; retry with the \
             same id (or Idempotency-Key)",
            code::KAFKA_UNCONFIRMED,
            &e,
        ),
        _ if e.is_transient() => ApiError::unavailable(
            "the event log is unavailable; retry later",
            code::KAFKA_UNAVAILABLE,
            &e,
        ),
        _ => ApiError::Internal(e.to_string()),
    }
}
