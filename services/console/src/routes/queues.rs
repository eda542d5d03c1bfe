//! `GET queues`, `GET queues/{group}`, and pausing or resuming a running group.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::audit::{self, Action};
use crate::auth::{Operator, Viewer};
use crate::cluster::GroupView;
use crate::problem::ApiError;
use crate::state::AppState;

/// Every group at a glance, keyed by group name (the seed's shape, with more in each entry).
#[utoipa::path(get, path = "/admin/circulatory/queues", tag = "queues",
    responses((status = 200, description = "Per group: the seed's figures, lag, time lag, members, breakers, pauses, health", body = BTreeMap<String, GroupView>),
              (status = 401, description = "No valid token"), (status = 403, description = "Not an admin")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Viewer(_): Viewer,
) -> Json<BTreeMap<String, GroupView>> {
    let view = state.collector.current();
    Json(
        view.groups
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g.partitions.clear();
                (g.group.clone(), g)
            })
            .collect(),
    )
}

/// One group with its partitions.
#[utoipa::path(get, path = "/admin/circulatory/queues/{group}", tag = "queues",
    params(("group" = String, Path, description = "Group name in the topology")),
    responses((status = 200, description = "The group, per partition: committed and end offset, lag, time lag, paused (why), owner", body = GroupView),
              (status = 404, description = "No such group")),
    security(("bearer" = [])))]
pub async fn one(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Path(group): Path<String>,
) -> Result<Json<GroupView>, ApiError> {
    state
        .collector
        .current()
        .group(&group)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no group `{group}` in the topology")))
}

/// Why the operator pauses.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PauseRequest {
    pub reason: Option<String>,
}

/// The command as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseOutcome {
    pub group: String,
    pub paused: bool,
    /// Instances obey within about a second; the group's page shows when each applied it.
    pub instances: usize,
    pub audited: bool,
}

fn known(state: &AppState, group: &str) -> Result<(), ApiError> {
    state
        .catalog
        .group(group)
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound(format!("no group `{group}` in the topology")))
}

/// Pauses a running group: its instances stop taking records (in-flight events finish) until
/// resumed. Nothing is lost: what arrives meanwhile waits in Kafka.
#[utoipa::path(post, path = "/admin/circulatory/queues/{group}/pause", tag = "queues",
    params(("group" = String, Path, description = "Group name")),
    request_body(content = PauseRequest, description = "Optional reason"),
    responses((status = 200, description = "Command stored", body = PauseOutcome), (status = 403, description = "Not an operator, or no CSRF token")),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path(group): Path<String>,
    body: Option<Json<PauseRequest>>,
) -> Result<Json<PauseOutcome>, ApiError> {
    known(&state, &group)?;
    let reason = body.and_then(|Json(b)| b.reason).unwrap_or_default();
    let mut redis = state.redis.clone();
    let key = state.collector.keys().control(&group);
    let _: () = redis::pipe()
        .hset_multiple(
            &key,
            &[
                ("paused", "1".to_string()),
                ("by", who.sub().to_string()),
                ("at_ms", chrono::Utc::now().timestamp_millis().to_string()),
                ("reason", reason.clone()),
            ],
        )
        .query_async(&mut redis)
        .await
        .map_err(|e| ApiError::unavailable("redis", e))?;
    Ok(Json(answer(&state, &who, group, true, Some(&reason)).await))
}

/// Publishes the audit event of a pause or resume and answers.
async fn answer(
    state: &AppState,
    who: &crate::auth::Principal,
    group: String,
    paused: bool,
    reason: Option<&str>,
) -> PauseOutcome {
    let action = Action {
        kind: "CONFIG_CHANGE",
        target_kind: "CONFIG",
        target_ref: format!("group/{group}/paused"),
        reason: reason.filter(|r| !r.is_empty()),
        details: [
            ("group".to_string(), group.clone()),
            ("paused".into(), paused.to_string()),
        ]
        .into(),
    };
    let audited = audit::record(state, who, action).await;
    PauseOutcome {
        instances: instances(state, &group),
        group,
        paused,
        audited,
    }
}

fn instances(state: &AppState, group: &str) -> usize {
    state
        .collector
        .current()
        .group(group)
        .map_or(0, |g| g.instances.len())
}

/// Resumes a paused group.
#[utoipa::path(post, path = "/admin/circulatory/queues/{group}/resume", tag = "queues",
    params(("group" = String, Path, description = "Group name")),
    responses((status = 200, description = "Command removed", body = PauseOutcome), (status = 403, description = "Not an operator, or no CSRF token")),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path(group): Path<String>,
) -> Result<Json<PauseOutcome>, ApiError> {
    known(&state, &group)?;
    let mut redis = state.redis.clone();
    let _: () = redis::cmd("DEL")
        .arg(state.collector.keys().control(&group))
        .query_async(&mut redis)
        .await
        .map_err(|e| ApiError::unavailable("redis", e))?;
    Ok(Json(answer(&state, &who, group, false, None).await))
}
