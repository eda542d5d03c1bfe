//! The Circulatory ingest API: HTTP clients publish domain events; the API validates them
//! against the Avro catalog, routes each to its topic, and answers once Kafka has it. The read
//! side ([`read`]) serves videos, feeds, notifications and wallets from the projections the
//! consumer groups keep in PostgreSQL and Redis.
//!
//! [`app`] builds the router from a state so tests drive it in-process; [`build`] assembles the
//! state from configuration; [`serve`] runs until the shutdown signal, then drains.

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use circulatory::auth::TokenVerifier;
use circulatory::catalog::Catalog;
use circulatory::kafka::{self, KafkaConfig, ProducerSettings};
use circulatory::publisher::EventPublisher;
use circulatory::registry::{RegistryConfig, SchemaRegistry};
use circulatory::trace::{TraceIndex, TraceSettings};
use object_store::ObjectStore;
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

pub mod body;
pub mod config;
pub mod correlation;
pub mod envelope;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod metrics;
pub mod problem;
pub mod ratelimit;
pub mod read;
pub mod routes;
pub mod settlement;
pub mod state;
pub mod stats;
pub mod upload;

use config::Config;
use health::{Health, Probes};
use idempotency::{IdempotencyStore, PENDING_MARGIN};
use metrics::Metrics;
use problem::{code, ApiError};
use ratelimit::RateLimiter;
use state::{AppState, Inner, Limits};

/// The router. The API routes share one concurrency bound (past it, requests are shed with 503
/// instead of queueing) and a request timeout; `/healthz`, `/readyz` and `/metrics` stay outside
/// the bound so probes answer under overload, and need no token.
pub fn app(state: AppState, max_concurrency: usize, request_timeout: Duration) -> Router {
    let upload_limit = usize::try_from(upload::upload_body_limit(state.limits.max_upload_bytes))
        .unwrap_or(usize::MAX);
    let api = Router::new()
        .route("/v1/events", post(events::publish))
        .route(
            "/v1/videos",
            post(upload::upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/videos/{id}", get(read::videos::video))
        .route("/v1/users/{id}/feed", get(read::feed::feed))
        .route(
            "/v1/users/{id}/notifications",
            get(read::notifications::notifications),
        )
        .route("/v1/wallets/{id}", get(read::wallets::wallet))
        .route("/v1/catalog", get(routes::catalog))
        .route("/openapi.json", get(routes::openapi))
        .route("/asyncapi.json", get(routes::asyncapi))
        // Bodies are read with an explicit limit in the handlers (so the 413 is a problem
        // document); this only disables axum's default for them.
        .layer(DefaultBodyLimit::disable())
        // axum applies a layer to each route separately: the global limit shares one semaphore
        // across them, so the bound is for the whole API, not per route.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(max_concurrency))
                .timeout(request_timeout),
        );
    Router::new()
        .merge(api)
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn(correlation::middleware))
        .with_state(state)
}

async fn overloaded(error: BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::unavailable(
            "the request took too long; retry later",
            code::OVERLOADED,
            error,
        )
        .into_problem_response(None)
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::unavailable(
            "the service is at capacity; retry later",
            code::OVERLOADED,
            error,
        )
        .into_problem_response(None)
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    }
}

/// A built service: the state plus what must be stopped at shutdown.
pub struct Service {
    pub state: AppState,
    pub stop_watchers: CancellationToken,
    /// Flushes the published counts to Redis; stopped last, after the producer's flush.
    pub stats: stats::Flusher,
}

/// Assembles the state: catalog, registry, producer, Redis, token keys, object store; starts the
/// dependency watcher and the flusher of the published counts.
pub async fn build(config: &Config) -> anyhow::Result<Service> {
    let catalog = Catalog::load(&config.catalog.paths())?
        .with_namespace(config.catalog.namespace.as_deref())
        .map_err(anyhow::Error::msg)?;
    let catalog = Arc::new(catalog);
    let registry = Arc::new(SchemaRegistry::new(RegistryConfig::new(
        &config.kafka.registry,
    ))?);
    let kafka = KafkaConfig::new(&config.kafka.bootstrap, "circulatory-ingest");
    let producer = kafka::producer(
        &kafka,
        &ProducerSettings {
            delivery_timeout: config.delivery_timeout,
            linger: config.linger,
            compression: config.compression.clone(),
            ..ProducerSettings::default()
        },
    )?;
    let redis = connect_redis(&config.redis.redis, config.redis_timeout).await?;
    let db = database(&config.database.database_url, config.db_max_connections)?;
    let public_key = match &config.jwt_public_key_file {
        Some(path) => Some(std::fs::read(path)?),
        None => None,
    };
    let verifier = TokenVerifier::new(
        config.jwt_secret.as_deref().map(str::as_bytes),
        public_key.as_deref(),
        config.jwt_issuer.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let objects = object_store(&config.object_store)?;
    let health = Arc::new(Health::default());
    let publisher_trace = TraceIndex::spawn(
        redis.clone(),
        config.catalog.namespace.as_deref(),
        TraceSettings {
            window: config.trace_window,
            max_per_sec: config.trace_max_per_sec,
        },
    );
    let publisher = EventPublisher::new(
        catalog.clone(),
        registry.clone(),
        producer.clone(),
        &config.source,
    )
    .with_publish_timeout(config.ack_timeout)
    .with_trace(publisher_trace.clone());
    let probes = Probes {
        kafka: Arc::new(kafka::reader(&KafkaConfig {
            client_id: "circulatory-ingest-health".into(),
            ..kafka.clone()
        })?),
        registry: registry.clone(),
        redis: redis.clone(),
        redis_timeout: config.redis_timeout,
        db: db.clone(),
    };
    health.probe(&probes).await;
    let stop_watchers = CancellationToken::new();
    health
        .clone()
        .watch(probes, Duration::from_secs(1), stop_watchers.clone());
    let asyncapi = serde_json::to_vec(&circulatory::asyncapi::document(
        &catalog,
        &circulatory::asyncapi::Servers {
            kafka: config.kafka.bootstrap.clone(),
            registry_url: config.kafka.registry.clone(),
            ingest: config.listen.to_string(),
        },
    ))?
    .into();
    let published = Arc::new(circulatory::consumer::stats::Published::default());
    let stats = stats::Flusher::spawn(
        published.clone(),
        redis.clone(),
        config.catalog.namespace.clone(),
    );
    let state = AppState(Arc::new(Inner {
        idempotency: IdempotencyStore::new(
            redis.clone(),
            config.catalog.namespace.as_deref(),
            config.idempotency_window,
            Duration::from_secs(10),
            config.delivery_timeout + PENDING_MARGIN,
        ),
        rate_limiter: RateLimiter::new(config.rate_per_sec, config.rate_burst),
        catalog,
        publisher,
        registry,
        redis,
        db,
        verifier,
        health,
        metrics: {
            let metrics = Metrics::new();
            publisher_trace.register(metrics.registry());
            metrics
        },
        objects,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            max_event_bytes: config.max_event_bytes,
            max_batch: config.max_batch,
            max_upload_bytes: config.max_upload_bytes,
            body_timeout: config.body_timeout,
            ack_budget: config.ack_budget(),
        },
        asyncapi,
        published,
    }));
    Ok(Service {
        state,
        stop_watchers,
        stats,
    })
}

/// Connects to Redis, retrying for a while: at boot, Redis may start after us. Each command
/// fails after `timeout`.
async fn connect_redis(
    url: &str,
    timeout: Duration,
) -> anyhow::Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(timeout));
    let mut last = None;
    for _ in 0..30 {
        match client
            .get_connection_manager_with_config(config.clone())
            .await
        {
            Ok(manager) => return Ok(manager),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Err(anyhow::anyhow!(
        "redis at {url} unreachable: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// The read routes' pool. Lazy: the API starts, publishes and stays ready while PostgreSQL is
/// down (only the read routes answer 503 then), so the database is not part of `/readyz`; a
/// start-up check logs whether it is reachable. Statements are bounded so a slow query cannot
/// hold a connection past the request.
fn database(url: &str, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
    let options = options
        .application_name("circulatory-ingest")
        .options([("statement_timeout", "5000")]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options);
    let probe = pool.clone();
    tokio::spawn(async move {
        match tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::query("SELECT 1").execute(&probe),
        )
        .await
        {
            Ok(Ok(_)) => tracing::info!("database reachable"),
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "database unreachable: the read routes answer 503 until it is"
            ),
            Err(_) => tracing::warn!(
                "database did not answer within 5 s: the read routes answer 503 until it does"
            ),
        }
    });
    Ok(pool)
}

/// A local folder, or `s3://bucket[/prefix]` configured from the usual AWS_* variables.
pub fn object_store(location: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    if location.starts_with("s3://") {
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_url(location)
            .build()?;
        return Ok(Arc::new(store));
    }
    std::fs::create_dir_all(location)?;
    Ok(Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(location)?,
    ))
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish, and
/// flushes the producer within `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Service,
    config: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = service.state.clone();
    let router = app(
        service.state,
        config.max_concurrency,
        config.request_timeout,
    );
    let limits = circulatory::http_server::ConnectionLimits {
        header_timeout: config.header_timeout,
        nodelay: false,
    };
    circulatory::http_server::serve(listener, router, limits, shutdown).await?;
    service.stop_watchers.cancel();
    let drain = config.drain;
    let producer = state.publisher.producer().clone();
    let flushed = tokio::task::spawn_blocking(move || producer.flush(drain)).await?;
    // The last acknowledgements are counted: their figures go out before the process ends.
    service.stats.stop().await;
    flushed.map_err(|e| anyhow::anyhow!("producer flush: {e}"))?;
    Ok(())
}
