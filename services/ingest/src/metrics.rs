//! Prometheus metrics of the ingest API, in one place. Labels are low-cardinality: matched
//! route, status, event type (a closed set from the catalog), never ids.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use circulatory::metrics::{declare, render};
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::state::AppState;

/// Latency buckets from 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub events_produced: IntCounterVec,
    pub events_broadcast: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub produce_duration: HistogramVec,
    pub producer_queue_depth: IntGauge,
    pub idempotent_replays: IntCounter,
    pub unconfirmed_outcomes: IntCounterVec,
    pub rate_limited: IntCounter,
    pub uploads_bytes: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let declare = declare(&registry);
        let by_request = ["route", "method", "status"];
        Metrics {
            http_requests: declare.counter_vec(
                "circulatory_http_requests_total",
                "HTTP requests by route and status.",
                &by_request,
            ),
            http_duration: declare.histogram_vec(
                "circulatory_http_request_duration_seconds",
                "HTTP request duration by route and status.",
                Some(BUCKETS),
                &by_request,
            ),
            events_produced: declare.counter_vec(
                "circulatory_events_produced_total",
                "Events acknowledged by Kafka, by type.",
                &["type"],
            ),
            events_broadcast: declare.counter_vec(
                "circulatory_events_broadcast_total",
                "Ephemeral events published on Redis, by type.",
                &["type"],
            ),
            events_rejected: declare.counter_vec(
                "circulatory_events_rejected_total",
                "Requests refused, by reason.",
                &["reason"],
            ),
            produce_duration: declare.histogram_vec(
                "circulatory_produce_duration_seconds",
                "Encode + produce + broker acknowledgement, per event.",
                Some(BUCKETS),
                &["type"],
            ),
            producer_queue_depth: declare.gauge(
                "circulatory_producer_queue_depth",
                "Records in the producer waiting to be sent or acknowledged.",
            ),
            idempotent_replays: declare.counter(
                "circulatory_idempotent_replays_total",
                "Requests answered from the idempotency store.",
            ),
            unconfirmed_outcomes: declare.counter_vec(
                "circulatory_unconfirmed_outcomes_total",
                "Events answered kafka_unconfirmed, by what the producer reported later: \
                 delivered, failed (nothing written) or in_doubt (possibly written).",
                &["outcome"],
            ),
            rate_limited: declare.counter(
                "circulatory_rate_limited_total",
                "Requests refused by the per-client rate limit.",
            ),
            uploads_bytes: declare.counter(
                "circulatory_upload_bytes_total",
                "Bytes of video stored by uploads.",
            ),
            registry,
        }
    }

    /// The registry, for collectors owned elsewhere (the trace index's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The method as a label: the standard methods by name, anything a client made up as `other`,
/// so no request can add a series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Middleware: request count and duration by matched route (not raw path: ids stay out; any
/// path without a route is `unmatched`).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [route.as_str(), method, status.as_str()];
    state.metrics.http_requests.with_label_values(&labels).inc();
    state
        .metrics
        .http_duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
