//! Dead-letter routes: list with filters (paged, from the index), details (the one record,
//! decoded, truncated past a bound), and the actions.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

use crate::auth::{Operator, Viewer};
use crate::dead_letters::actions::{self, ActionOutcome};
use crate::dead_letters::bulk::{self, BulkRequest, DryRun, Started};
use crate::dead_letters::filter::Filter;
use crate::dead_letters::index::Summary;
use crate::dead_letters::jobs::Job;
use crate::problem::ApiError;
use crate::state::AppState;

/// Most items in one page.
const MAX_PAGE: usize = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items per page (at most 200, default 50).
    pub limit: Option<usize>,
    /// Where the page starts (the previous page's `nextCursor`).
    pub cursor: Option<usize>,
}

/// One page of dead letters, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub items: Vec<Summary>,
    /// Letters matching the filter.
    pub total: usize,
    pub next_cursor: Option<usize>,
    /// False while the index is still reading the topics from their start.
    pub complete: bool,
}

#[utoipa::path(get, path = "/admin/circulatory/dead-letters", tag = "dead letters",
    params(Filter, Page),
    responses((status = 200, description = "Matching dead letters, newest first", body = Listed), (status = 400, description = "Bad filter")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Query(filter): Query<Filter>,
    Query(page): Query<Page>,
) -> Result<Json<Listed>, ApiError> {
    let compiled = filter.compile()?;
    let all = state
        .dead_letters
        .select(compiled.group(), |s| compiled.matches(s));
    let limit = page.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let start = page.cursor.unwrap_or(0).min(all.len());
    let end = (start + limit).min(all.len());
    Ok(Json(Listed {
        total: all.len(),
        next_cursor: (end < all.len()).then_some(end),
        items: all[start..end].to_vec(),
        complete: state.dead_letters.caught_up(),
    }))
}

/// A dead letter in full.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    #[serde(flatten)]
    pub summary: Summary,
    /// Every header (`ce_*`, `circ_*`, correlation and trace ids) as text.
    pub headers: BTreeMap<String, String>,
    /// The decoded data, when it fits the bound; else `dataText` holds its beginning.
    pub data: Option<serde_json::Value>,
    pub data_text: Option<String>,
    pub truncated: bool,
    /// Why the value could not be decoded, if so.
    pub undecodable: Option<String>,
}

#[utoipa::path(get, path = "/admin/circulatory/dead-letters/{group}/{id}", tag = "dead letters",
    params(("group" = String, Path, description = "Group name"), ("id" = String, Path, description = "`<partition>-<offset>` in the group's dead-letter topic")),
    responses((status = 200, description = "The letter, decoded", body = Details), (status = 404, description = "No such letter")),
    security(("bearer" = [])))]
pub async fn details(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Path((group, id)): Path<(String, String)>,
) -> Result<Json<Details>, ApiError> {
    let topic = state
        .dead_letters
        .topic_of(&group)
        .ok_or_else(|| ApiError::NotFound(format!("no group `{group}` in the topology")))?;
    let summary = state
        .dead_letters
        .get(&group, &id)
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter `{id}` in {topic}")))?;
    let letter = state
        .fetcher
        .fetch(
            &topic,
            summary.partition,
            summary.offset,
            state.limits.kafka_timeout,
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("dead letter `{id}` is no longer in {topic}")))?;
    let headers = letter
        .record
        .headers()
        .map(|h| {
            h.iter()
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
        .unwrap_or_default();
    let (mut data, mut undecodable) = (None, None);
    if let Some(payload) = letter.record.payload() {
        match state.registry.decode_json(payload).await {
            Ok(decoded) => data = Some(decoded.data),
            Err(e) => undecodable = Some(e.to_string()),
        }
    }
    let (data, data_text, truncated) = bound(data, state.limits.max_payload_bytes);
    Ok(Json(Details {
        summary,
        headers,
        data,
        data_text,
        truncated,
        undecodable,
    }))
}

/// Large data is sent as the beginning of its text, so a page never chokes on it.
fn bound(
    data: Option<serde_json::Value>,
    max: usize,
) -> (Option<serde_json::Value>, Option<String>, bool) {
    let Some(data) = data else {
        return (None, None, false);
    };
    let text = data.to_string();
    if text.len() <= max {
        return (Some(data), None, false);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (None, Some(text[..cut].to_string()), true)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/admin/circulatory/dead-letters/{group}/{id}/retry", tag = "dead letters",
    params(("group" = String, Path, description = "Group name"), ("id" = String, Path, description = "Dead-letter id")),
    responses((status = 200, description = "Replayed to that group only", body = ActionOutcome),
              (status = 409, description = "Already decided, or quarantined by the loop guard"),
              (status = 403, description = "Not an operator, or no CSRF token")),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path((group, id)): Path<(String, String)>,
) -> Result<Json<ActionOutcome>, ApiError> {
    actions::retry(&state, &who, &group, &id).await.map(Json)
}

#[utoipa::path(post, path = "/admin/circulatory/dead-letters/{group}/{id}/discard", tag = "dead letters",
    params(("group" = String, Path, description = "Group name"), ("id" = String, Path, description = "Dead-letter id")),
    request_body(content = Reason, description = "Optional reason"),
    responses((status = 200, description = "Discarded", body = ActionOutcome), (status = 409, description = "Already decided")),
    security(("bearer" = [])))]
pub async fn discard(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path((group, id)): Path<(String, String)>,
    body: Option<Json<Reason>>,
) -> Result<Json<ActionOutcome>, ApiError> {
    let reason = body.and_then(|Json(r)| r.reason);
    actions::discard(&state, &who, &group, &id, reason.as_deref())
        .await
        .map(Json)
}

/// Corrected data for an edit and retry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Edit {
    /// The event's data, as JSON; validated against the type's Avro schema.
    pub data: serde_json::Value,
}

#[utoipa::path(post, path = "/admin/circulatory/dead-letters/{group}/{id}/edit", tag = "dead letters",
    params(("group" = String, Path, description = "Group name"), ("id" = String, Path, description = "Dead-letter id")),
    request_body(content = Edit, description = "Corrected data"),
    responses((status = 200, description = "Validated and replayed", body = ActionOutcome),
              (status = 422, description = "Does not match the schema; nothing produced")),
    security(("bearer" = [])))]
pub async fn edit(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path((group, id)): Path<(String, String)>,
    Json(edit): Json<Edit>,
) -> Result<Json<ActionOutcome>, ApiError> {
    actions::edit_and_retry(&state, &who, &group, &id, edit.data)
        .await
        .map(Json)
}

/// A bulk answer: a dry run's count, or the started job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BulkAnswer {
    DryRun(DryRun),
    Started(Started),
}

/// Bulk retry or discard by filter. Without `dryRun: false` it only counts; acting needs the
/// dry run's count in `expectCount`. Viewers may dry-run.
#[utoipa::path(post, path = "/admin/circulatory/dead-letters/bulk", tag = "dead letters",
    request_body(content = BulkRequest, description = "Action, filter, dry run or the expected count"),
    responses((status = 200, description = "Dry run: count, loop-guard quarantines, histogram of errors", body = BulkAnswer),
              (status = 202, description = "Job started"),
              (status = 409, description = "Selection changed since the dry run, or a job is running")),
    security(("bearer" = [])))]
pub async fn bulk_action(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Json(request): Json<BulkRequest>,
) -> Result<(axum::http::StatusCode, Json<BulkAnswer>), ApiError> {
    if request.dry_run {
        crate::auth::authenticate(&state.verifier, &headers)?;
        return Ok((
            axum::http::StatusCode::OK,
            Json(BulkAnswer::DryRun(bulk::dry_run(&state, &request)?)),
        ));
    }
    let who = crate::auth::operator(&state.verifier, &headers)?;
    let started = bulk::start(&state, &who, request)?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(BulkAnswer::Started(started)),
    ))
}

#[utoipa::path(get, path = "/admin/circulatory/dead-letters/jobs", tag = "dead letters",
    responses((status = 200, description = "Recent bulk jobs, newest first", body = Vec<Job>)),
    security(("bearer" = [])))]
pub async fn jobs(State(state): State<AppState>, Viewer(_): Viewer) -> Json<Vec<Job>> {
    Json(state.jobs.list())
}

#[utoipa::path(get, path = "/admin/circulatory/dead-letters/jobs/{id}", tag = "dead letters",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job's progress", body = Job), (status = 404, description = "Unknown job")),
    security(("bearer" = [])))]
pub async fn job(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    state
        .jobs
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no job `{id}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_data_is_cut_on_a_character_boundary() {
        let small = serde_json::json!({"a": 1});
        assert_eq!(bound(Some(small.clone()), 100), (Some(small), None, false));
        let big = serde_json::json!({"text": "é".repeat(100)});
        let (data, text, truncated) = bound(Some(big), 11);
        assert!(data.is_none() && truncated);
        assert!(text.unwrap().len() <= 11);
    }
}
