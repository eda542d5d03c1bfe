//! Plain HTTP routes: presence lookups and the operations endpoints.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::{authenticate, problem, unauthorized};
use crate::channels::MAX_PARAM_LEN;
use crate::state::Gateway;
use crate::ws::ConnectQuery;

/// `GET /v1/presence/{userId}`: `{"userId", "online", "connections", "onlineSince"?,
/// "lastSeenAt"?}` for any authenticated user.
pub async fn presence(
    State(gateway): State<Gateway>,
    Path(user): Path<String>,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authenticate(&gateway.verifier, &headers, query.access_token.as_deref()) {
        return unauthorized(e);
    }
    let valid = !user.is_empty()
        && user.len() <= MAX_PARAM_LEN
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !valid {
        return problem(StatusCode::BAD_REQUEST, "not a user id");
    }
    match gateway.presence.status(&user).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "presence lookup failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "presence is unavailable; retry later",
            )
        }
    }
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready while the Redis pub/sub connection is up and the gateway is not shutting down.
pub async fn readyz(State(gateway): State<Gateway>) -> Response {
    let body = serde_json::json!({
        "redis": gateway.hub.is_connected(),
        "shuttingDown": gateway.shutdown.is_cancelled(),
        "connections": gateway.open_connections(),
    });
    let status = if gateway.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(gateway): State<Gateway>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gateway.metrics.render(),
    )
        .into_response()
}
