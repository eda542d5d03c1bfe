//! The Circulatory operators' console: a JSON admin API (`/admin/circulatory/...`) and a web
//! dashboard on top of it, in one binary.
//!
//! - [`cluster`] refreshes one view of the pipeline in the background (Kafka's lag, time lag
//!   and members, the instances' heartbeats and figures from Redis) that every page, route and
//!   metric reads;
//! - [`verdict`] judges each group's health from that view;
//! - [`dead_letters`] indexes every group's dead letters and acts on them;
//! - [`history`] keeps per-minute series for 24 hours;
//! - [`trace`] tells where an event is and what each group did with it;
//! - [`auth`] admits admins (viewers read, operators act) and guards browser actions;
//! - [`audit`] publishes every action as an `admin.action` event;
//! - [`routes`] and [`web`] serve it all.

pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod dead_letters;
pub mod history;
pub mod metrics;
pub mod problem;
pub mod routes;
pub mod state;
pub mod trace;
pub mod verdict;
pub mod web;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use circulatory::auth::TokenVerifier;
use circulatory::catalog::Catalog;
use circulatory::kafka::{self, KafkaConfig, ProducerSettings};
use circulatory::publisher::EventPublisher;
use circulatory::registry::{RegistryConfig, SchemaRegistry};
use circulatory::trace::TraceReader;
use tokio_util::sync::CancellationToken;

use cluster::Collector;
use config::Config;
use dead_letters::actions::Fetcher;
use dead_letters::index::DeadLetterIndex;
use dead_letters::jobs::Jobs;
use history::History;
use metrics::Metrics;
use state::{AppState, Inner, Limits};

/// How often operators' decisions taken elsewhere (`circ dlq`, another console) are reloaded.
const RESOLUTIONS_EVERY: Duration = Duration::from_secs(5);

/// A built console: its state and what stops its background work.
pub struct Service {
    pub state: AppState,
    pub stop: CancellationToken,
    stop_reader: Arc<AtomicBool>,
}

impl Service {
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    pub fn shutdown(&self) {
        self.stop.cancel();
        self.stop_reader
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Connects to everything and starts the background work (the view's refresh, the dead-letter
/// reader, the resolutions' reload). Nothing is refused when a dependency is down at start: the
/// view reports what it could not read, and `/readyz` stays unready until it reads everything.
pub async fn build(config: &Config) -> anyhow::Result<Service> {
    let catalog = Catalog::load(&config.catalog.paths())?
        .with_namespace(config.catalog.namespace.as_deref())
        .map_err(anyhow::Error::msg)?;
    let catalog = Arc::new(catalog);
    let registry = Arc::new(SchemaRegistry::new(RegistryConfig::new(
        &config.kafka.registry,
    ))?);
    let kafka = KafkaConfig::new(&config.kafka.bootstrap, "circulatory-console");
    let producer = kafka::producer(&kafka, &ProducerSettings::default())?;
    let publisher = EventPublisher::new(
        catalog.clone(),
        registry.clone(),
        producer.clone(),
        "/circulatory/console",
    );
    let redis =
        redis::aio::ConnectionManager::new(redis::Client::open(config.redis.redis.as_str())?)
            .await?;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(&config.database.database_url)?;
    let public_key = config
        .jwt_public_key_file
        .as_ref()
        .map(std::fs::read)
        .transpose()?;
    let verifier = TokenVerifier::new(
        config.jwt_secret.as_deref().map(str::as_bytes),
        public_key.as_deref(),
        config.jwt_issuer.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let dead_letters = Arc::new(DeadLetterIndex::new(&catalog, config.max_dead_letters));
    let collector = Arc::new(Collector::new(
        catalog.clone(),
        &kafka,
        redis.clone(),
        dead_letters.clone(),
        config.kafka_timeout(),
    )?);
    let state = AppState(Arc::new(Inner {
        fetcher: Fetcher::new(&kafka)?,
        history: History::new(redis.clone(), catalog.namespace()),
        trace: TraceReader::new(redis.clone(), catalog.namespace()),
        catalog,
        kafka: kafka.clone(),
        registry,
        publisher,
        producer,
        redis,
        db: db.clone(),
        verifier,
        collector: collector.clone(),
        dead_letters: dead_letters.clone(),
        jobs: Jobs::default(),
        metrics: Metrics::new(),
        limits: Limits {
            max_replays: config.max_replays,
            replay_rate: config.replay_rate,
            max_payload_bytes: config.max_payload_bytes,
            kafka_timeout: config.kafka_timeout(),
        },
    }));
    let stop = CancellationToken::new();
    let stop_reader = Arc::new(AtomicBool::new(false));
    {
        let (index, kafka, flag) = (dead_letters.clone(), kafka.clone(), stop_reader.clone());
        std::thread::Builder::new()
            .name("dead-letters".into())
            .spawn(move || index.follow(kafka, flag))?;
    }
    tokio::spawn(reload_resolutions(dead_letters, db, stop.clone()));
    let after = state.clone();
    tokio::spawn(collector.run(config.refresh(), stop.clone(), move |view| {
        after.metrics.set(view);
        let (after, view) = (after.clone(), view.clone());
        tokio::spawn(async move { after.history.record(&view).await });
    }));
    Ok(Service {
        state,
        stop,
        stop_reader,
    })
}

async fn reload_resolutions(
    index: Arc<DeadLetterIndex>,
    db: sqlx::PgPool,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(RESOLUTIONS_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(e) = index.reload_resolutions(&db).await {
            tracing::debug!(error = %e, "dead-letter resolutions not reloaded");
        }
    }
}
