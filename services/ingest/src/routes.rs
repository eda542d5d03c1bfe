//! The small routes: catalog, health, readiness, metrics, OpenAPI document.

use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rdkafka::producer::Producer;
use serde::Serialize;
use utoipa::OpenApi;

use crate::health::HealthReport;
use crate::problem::ApiError;
use crate::state::AppState;

/// One entry of `GET /v1/catalog`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    #[serde(rename = "type")]
    pub event_type: String,
    pub domain: String,
    pub tier: String,
    /// `null` for ephemeral types.
    pub topic: Option<String>,
    pub partition_key: Option<String>,
    pub ephemeral: bool,
    /// Realtime channel templates this type is broadcast on.
    pub channels: Vec<String>,
    pub description: String,
    /// The Avro schema (JSON).
    pub schema: serde_json::Value,
}

/// Every event type: topic, partition key, ephemeral flag, Avro schema.
#[utoipa::path(get, path = "/v1/catalog", tag = "events",
    responses((status = 200, description = "The catalog", body = [CatalogEntry])))]
pub async fn catalog(State(state): State<AppState>) -> Json<Vec<CatalogEntry>> {
    Json(
        state
            .catalog
            .events()
            .map(|e| CatalogEntry {
                event_type: e.name().to_string(),
                domain: e.route.domain.clone(),
                tier: e.route.tier.to_string(),
                topic: e.topic.clone(),
                partition_key: e.route.partition_key.clone(),
                ephemeral: e.route.ephemeral,
                channels: e.channels.iter().map(|c| c.channel.clone()).collect(),
                description: e.route.description.clone(),
                schema: (*e.schema_json).clone(),
            })
            .collect(),
    )
}

/// No route has this path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} (see /openapi.json)",
        clip(uri.path())
    ))
}

/// The path exists, the method does not (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} does not accept {}",
        clip(uri.path()),
        clip(method.as_str())
    ))
}

/// A client-given text, bounded for an error message.
fn clip(text: &str) -> String {
    let mut clipped: String = text.chars().take(100).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: Kafka, the registry and Redis are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = HealthReport), (status = 503, description = "A dependency is down", body = HealthReport)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.health.report();
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Text exposition format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .producer_queue_depth
        .set(i64::from(state.publisher.producer().in_flight_count()));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Circulatory ingest API", description = "Publish validated domain events to Kafka; read videos, feeds, notifications and wallets back from the consumers' projections."),
    paths(
        crate::events::publish,
        crate::upload::upload,
        crate::read::videos::video,
        crate::read::feed::feed,
        crate::read::notifications::notifications,
        crate::read::wallets::wallet,
        catalog,
        healthz,
        readyz,
        metrics,
    ),
    components(schemas(crate::problem::Problem, crate::problem::EventProblem)),
    modifiers(&BearerAuth),
    tags((name = "events"), (name = "videos"), (name = "users"), (name = "wallets"), (name = "operations"))
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

/// The OpenAPI document, generated from the handlers' annotations.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The AsyncAPI 3.0 document of the topics, event types and consumer groups (`circ asyncapi`).
pub async fn asyncapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.asyncapi.clone(),
    )
        .into_response()
}
