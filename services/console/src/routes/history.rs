//! `GET history/groups` and `GET history/events`: per-minute series, 1 h to 24 h.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use crate::auth::Viewer;
use crate::history::{range_minutes, Point};
use crate::problem::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Range {
    /// `1h` (default), `6h` or `24h`.
    pub range: Option<String>,
    /// One series only (a group or an event type); all when absent.
    pub name: Option<String>,
}

async fn series(
    state: &AppState,
    kind: &str,
    all: Vec<String>,
    range: Range,
) -> Result<Json<BTreeMap<String, Vec<Point>>>, ApiError> {
    let minutes = range_minutes(range.range.as_deref())
        .ok_or_else(|| ApiError::BadRequest("`range` must be 1h, 6h or 24h".into()))?;
    let names = match range.name {
        Some(name) if all.contains(&name) => vec![name],
        Some(name) => {
            return Err(ApiError::NotFound(format!(
                "no {kind} `{name}` in the topology"
            )))
        }
        None => all,
    };
    state
        .history
        .series(kind, &names, minutes)
        .await
        .map(Json)
        .map_err(|e| ApiError::unavailable("redis", e))
}

#[utoipa::path(get, path = "/admin/circulatory/history/groups", tag = "history", params(Range),
    responses((status = 200, description = "Per group, per minute: completed, failed, dead-lettered, lag, time lag, duration p50 and p99", body = BTreeMap<String, Vec<Point>>)),
    security(("bearer" = [])))]
pub async fn groups(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Query(range): Query<Range>,
) -> Result<Json<BTreeMap<String, Vec<Point>>>, ApiError> {
    let all = state.catalog.topology().groups.keys().cloned().collect();
    series(&state, "group", all, range).await
}

#[utoipa::path(get, path = "/admin/circulatory/history/events", tag = "history", params(Range),
    responses((status = 200, description = "Per event type, per minute: processed, failed, dead-lettered, duration p50 and p99", body = BTreeMap<String, Vec<Point>>)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Query(range): Query<Range>,
) -> Result<Json<BTreeMap<String, Vec<Point>>>, ApiError> {
    let all = state
        .catalog
        .events()
        .map(|e| e.name().to_string())
        .collect();
    series(&state, "event", all, range).await
}
