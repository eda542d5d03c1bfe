//! What every handler shares, built once from the configuration.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use circulatory::auth::{AuthError, Claims, TokenVerifier};
use circulatory::catalog::Catalog;
use circulatory::consumer::stats::Published;
use circulatory::publisher::EventPublisher;
use circulatory::registry::SchemaRegistry;
use object_store::ObjectStore;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::health::Health;
use crate::idempotency::IdempotencyStore;
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::ratelimit::RateLimiter;

/// Size bounds of requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_event_bytes: usize,
    pub max_batch: usize,
    pub max_upload_bytes: u64,
    /// Longest wait for a body (events) or for its next piece (uploads).
    pub body_timeout: Duration,
    /// How long after it arrived a request stops waiting for acknowledgements, at the latest:
    /// its timeout less what answering still needs (recording the outcome under its ids in
    /// Redis, and a margin). A request whose events may be written is then always answered
    /// 50307, never cut off by the request timeout.
    pub ack_budget: Duration,
}

pub struct Inner {
    pub catalog: Arc<Catalog>,
    pub publisher: EventPublisher,
    pub registry: Arc<SchemaRegistry>,
    pub redis: ConnectionManager,
    /// The projections the read routes serve (lazy: connects on first use).
    pub db: PgPool,
    pub verifier: TokenVerifier,
    pub idempotency: IdempotencyStore,
    pub rate_limiter: RateLimiter,
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub objects: Arc<dyn ObjectStore>,
    pub limits: Limits,
    /// The AsyncAPI document of the catalog, serialised once (`/asyncapi.json`).
    pub asyncapi: axum::body::Bytes,
    /// Events written per type since the last flush of the operators' figures.
    pub published: Arc<Published>,
}

/// Cheap to clone: handlers get an `Arc`.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    /// The bearer's claims, or 401; counted as a rejected publication.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, ApiError> {
        self.bearer(headers).inspect_err(|_| {
            self.metrics
                .events_rejected
                .with_label_values(&["unauthenticated"])
                .inc();
        })
    }

    /// The bearer's claims, or 401 (the read routes: nothing is counted as a rejected event).
    pub fn bearer(&self, headers: &HeaderMap) -> Result<Claims, ApiError> {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)
            .and_then(|token| self.verifier.verify(token))
            .map_err(|e| ApiError::Unauthenticated(e.to_string()))
    }

    /// Spends `cost` tokens of the client's rate limit, or 429 with the wait.
    pub fn rate_limit(&self, client: &str, cost: usize) -> Result<(), ApiError> {
        self.rate_limiter
            .check(client, u32::try_from(cost).unwrap_or(u32::MAX))
            .map_err(|wait: Duration| {
                self.metrics.rate_limited.inc();
                ApiError::RateLimited {
                    retry_after_secs: wait.as_secs_f64().ceil() as u64,
                }
            })
    }
}
