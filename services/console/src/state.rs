//! What every route shares.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use circulatory::auth::TokenVerifier;
use circulatory::catalog::Catalog;
use circulatory::kafka::KafkaConfig;
use circulatory::publisher::EventPublisher;
use circulatory::registry::SchemaRegistry;
use circulatory::trace::TraceReader;
use rdkafka::producer::FutureProducer;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::cluster::Collector;
use crate::dead_letters::actions::Fetcher;
use crate::dead_letters::index::DeadLetterIndex;
use crate::dead_letters::jobs::Jobs;
use crate::history::History;
use crate::metrics::Metrics;

/// Bounds and knobs of the actions.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_replays: u32,
    pub replay_rate: u32,
    pub max_payload_bytes: usize,
    pub kafka_timeout: Duration,
}

pub struct Inner {
    pub catalog: Arc<Catalog>,
    pub kafka: KafkaConfig,
    pub registry: Arc<SchemaRegistry>,
    /// Validates edited payloads and publishes the audit events.
    pub publisher: EventPublisher,
    pub producer: FutureProducer,
    pub redis: ConnectionManager,
    pub db: PgPool,
    pub verifier: TokenVerifier,
    pub collector: Arc<Collector>,
    pub dead_letters: Arc<DeadLetterIndex>,
    pub fetcher: Fetcher,
    pub jobs: Jobs,
    pub history: History,
    pub trace: TraceReader,
    pub metrics: Metrics,
    pub limits: Limits,
}

/// Cheap to clone: routes get it by value.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
