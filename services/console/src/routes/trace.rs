//! `GET trace/{id}` and `GET trace?q=`: an event by id, or every event of a correlation id, with
//! what each subscribed group did with it (derivation in [`crate::trace`]).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use circulatory::trace::Traced;

use crate::auth::Viewer;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::trace::{status_in, GroupTrace};

/// Events listed for one correlation id, at most.
const MAX_CORRELATED: usize = 100;
/// Longest id or correlation id looked up.
const MAX_QUERY: usize = 256;

/// Another event linked to the traced one.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Linked {
    pub id: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
}

/// One event: where it is, what each group subscribed to its type did with it, and its links.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTrace {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// The event's time, ms since the epoch.
    pub time_ms: Option<i64>,
    /// Who published it: the ingest's source, or a group's.
    pub source: Option<String>,
    pub correlation_id: Option<String>,
    /// The event whose handling emitted this one.
    pub cause: Option<Linked>,
    /// The events emitted while handling it.
    pub caused: Vec<Linked>,
    pub groups: Vec<GroupTrace>,
    /// When the committed offsets used were read, ms since the epoch.
    pub offsets_read_at_ms: i64,
}

/// The events of a search.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceResults {
    /// `id` when the query is an event id, `correlation` when it is a correlation id.
    pub matched: String,
    pub events: Vec<EventTrace>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraceQuery {
    /// An event id or a correlation id.
    pub q: String,
}

fn check(query: &str) -> Result<&str, ApiError> {
    let query = query.trim();
    if query.is_empty() || query.len() > MAX_QUERY || query.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "give an event id or a correlation id (1 to {MAX_QUERY} characters, no control \
             characters)"
        )));
    }
    Ok(query)
}

fn redis_error(e: redis::RedisError) -> ApiError {
    ApiError::unavailable("the trace index (Redis)", e)
}

/// Joins what the index holds with the groups' committed offsets and dead letters.
async fn explain(state: &AppState, traced: Traced) -> Result<EventTrace, ApiError> {
    let view = state.collector.current();
    let subscribed: Vec<String> = traced
        .event_type
        .as_deref()
        .and_then(|t| view.events.iter().find(|e| e.event_type == t))
        .map(|e| e.groups.clone())
        .unwrap_or_default();
    // Groups that reported a step but are not subscribed (a type they stopped reading) too.
    let mut groups: Vec<String> = subscribed;
    for group in traced.steps.keys() {
        if !groups.contains(group) {
            groups.push(group.clone());
        }
    }
    let traces = groups
        .iter()
        .map(|group| {
            let committed = view.group(group).and_then(|g| {
                g.partitions
                    .iter()
                    .find(|p| {
                        Some(p.topic.as_str()) == traced.topic.as_deref()
                            && Some(p.partition) == traced.partition
                    })
                    .and_then(|p| p.committed)
            });
            let letter = state
                .dead_letters
                .select(Some(group), |s| s.event_id.as_deref() == Some(&traced.id))
                .into_iter()
                .next();
            status_in(group, &traced, committed, letter.as_ref())
        })
        .collect();
    let cause = match &traced.cause {
        Some(id) => {
            let parent = state.trace.event(id).await.map_err(redis_error)?;
            Some(Linked {
                id: id.clone(),
                event_type: parent.and_then(|p| p.event_type),
            })
        }
        None => None,
    };
    Ok(EventTrace {
        caused: traced
            .caused
            .iter()
            .map(|(id, t)| Linked {
                id: id.clone(),
                event_type: Some(t.clone()),
            })
            .collect(),
        id: traced.id,
        event_type: traced.event_type,
        topic: traced.topic,
        partition: traced.partition,
        offset: traced.offset,
        time_ms: traced.time_ms,
        source: traced.source,
        correlation_id: traced.correlation_id,
        cause,
        groups: traces,
        offsets_read_at_ms: view.taken_at_ms,
    })
}

/// One event by id.
#[utoipa::path(get, path = "/admin/circulatory/trace/{id}", tag = "trace",
    params(("id" = String, Path, description = "The event id (`ce_id`)")),
    responses((status = 200, description = "Where the event is and what each subscribed group did with it", body = EventTrace),
              (status = 404, description = "The trace index holds nothing for this id (older than its window, or never written)"),
              (status = 503, description = "The trace index cannot be read")),
    security(("bearer" = [])))]
pub async fn event(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Path(id): Path<String>,
) -> Result<Json<EventTrace>, ApiError> {
    let id = check(&id)?;
    let traced = state.trace.event(id).await.map_err(redis_error)?;
    let traced =
        traced.ok_or_else(|| ApiError::NotFound(format!("no event `{id}` in the trace index")))?;
    Ok(Json(explain(&state, traced).await?))
}

/// An event id, else every event of a correlation id (oldest first, at most 100).
#[utoipa::path(get, path = "/admin/circulatory/trace", tag = "trace",
    params(TraceQuery),
    responses((status = 200, description = "The matching events, each traced", body = TraceResults),
              (status = 400, description = "An empty or overlong query"),
              (status = 404, description = "Neither an event id nor a correlation id the index holds")),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Query(query): Query<TraceQuery>,
) -> Result<Json<TraceResults>, ApiError> {
    let q = check(&query.q)?;
    if let Some(traced) = state.trace.event(q).await.map_err(redis_error)? {
        return Ok(Json(TraceResults {
            matched: "id".into(),
            events: vec![explain(&state, traced).await?],
        }));
    }
    let ids = state
        .trace
        .correlated(q, MAX_CORRELATED)
        .await
        .map_err(redis_error)?;
    let mut found = BTreeMap::new();
    for id in ids {
        if let Some(traced) = state.trace.event(&id).await.map_err(redis_error)? {
            found.insert((traced.time_ms, id), traced);
        }
    }
    if found.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no event id or correlation id `{q}` in the trace index"
        )));
    }
    let mut events = Vec::with_capacity(found.len());
    for traced in found.into_values() {
        events.push(explain(&state, traced).await?);
    }
    Ok(Json(TraceResults {
        matched: "correlation".into(),
        events,
    }))
}
