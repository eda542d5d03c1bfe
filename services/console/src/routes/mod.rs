//! The console's routes: the JSON admin API under `/admin/circulatory/`, the session routes, the
//! dashboard, the OpenAPI document, and the operational endpoints.

pub mod dead_letters;
pub mod flows;
pub mod history;
pub mod queues;
pub mod session;
pub mod topology;
pub mod trace;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::problem::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Circulatory console", description = "Queues, events, realtime channels and dead letters for operators."),
    paths(
        queues::list, queues::one, queues::pause, queues::resume,
        flows::events, flows::realtime,
        history::groups, history::events,
        dead_letters::list, dead_letters::details, dead_letters::retry, dead_letters::discard,
        dead_letters::edit, dead_letters::bulk_action, dead_letters::jobs, dead_letters::job,
        topology::topology,
        trace::event, trace::search,
        session::sign_in, session::current, session::sign_out,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/queues", get(queues::list))
        .route("/queues/{group}", get(queues::one))
        .route("/queues/{group}/pause", post(queues::pause))
        .route("/queues/{group}/resume", post(queues::resume))
        .route("/events", get(flows::events))
        .route("/realtime", get(flows::realtime))
        .route("/history/groups", get(history::groups))
        .route("/history/events", get(history::events))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/bulk", post(dead_letters::bulk_action))
        .route("/dead-letters/jobs", get(dead_letters::jobs))
        .route("/dead-letters/jobs/{id}", get(dead_letters::job))
        .route("/dead-letters/{group}/{id}", get(dead_letters::details))
        .route(
            "/dead-letters/{group}/{id}/retry",
            post(dead_letters::retry),
        )
        .route(
            "/dead-letters/{group}/{id}/discard",
            post(dead_letters::discard),
        )
        .route("/dead-letters/{group}/{id}/edit", post(dead_letters::edit))
        .route("/topology", get(topology::topology))
        .route("/trace", get(trace::search))
        .route("/trace/{id}", get(trace::event));
    Router::new()
        .nest("/admin/circulatory", admin)
        .route(
            "/admin/session",
            post(session::sign_in)
                .get(session::current)
                .delete(session::sign_out),
        )
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::web::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route (see /openapi.json)".into())
}

/// Ready once a view was read without errors.
async fn readyz(State(state): State<AppState>) -> Response {
    let view = state.collector.current();
    let ready = view.taken_at_ms > 0 && view.errors.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({"ready": ready, "errors": view.errors, "takenAtMs": view.taken_at_ms}))).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}
