//! The Circulatory realtime gateway: Redis pub/sub channels delivered to authenticated WebSocket
//! and SSE clients, with presence, backpressure and per-channel figures.
//!
//! - [`config`]: flags and environment, validated up front.
//! - [`auth`]: bearer tokens (header or `access_token`); [`channels`]: who may join what.
//! - [`protocol`]: the JSON frames; [`session`]: one connection; [`ws`] and [`sse`]: transports.
//! - [`hub`]: the one Redis subscription per instance, multiplexed to clients' bounded queues.
//! - [`presence`]: online/offline across instances; [`stats`]: per-channel figures in Redis;
//!   [`metrics`]: Prometheus.
//! - [`client`]: a minimal WebSocket/SSE client for the integration tests and the benchmark.
//!
//! [`app`] builds the router; [`build`] assembles the gateway from configuration and starts its
//! background tasks; [`serve`] runs until the shutdown signal, then closes every connection
//! (presence goes offline) and flushes the figures.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use circulatory::auth::TokenVerifier;
use circulatory::catalog::Catalog;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod channels;
pub mod client;
pub mod config;
pub mod hub;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod routes;
pub mod session;
pub mod sse;
pub mod state;
pub mod stats;
pub mod ws;

use channels::ChannelPolicy;
use config::Config;
use hub::Hub;
use metrics::Metrics;
use presence::Presence;
use state::{Gateway, Limits, Shared};
use stats::ChannelStats;

/// The router. Every route but the operations endpoints needs a token.
pub fn app(gateway: Gateway) -> Router {
    Router::new()
        .route("/v1/realtime", get(ws::upgrade))
        .route("/v1/realtime/sse", get(sse::stream))
        .route("/v1/presence/{user_id}", get(routes::presence))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(|| async { auth::problem(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            auth::problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "the route does not accept this method",
            )
        })
        .with_state(gateway)
}

/// Assembles the gateway: catalog (channel templates), token keys, Redis, the hub; starts the
/// presence refresher and sweeper and the stats flusher.
pub async fn build(config: &Config) -> anyhow::Result<Gateway> {
    let catalog = Catalog::load(&config.catalog.paths())?
        .with_namespace(config.catalog.namespace.as_deref())
        .map_err(anyhow::Error::msg)?;
    let catalog = Arc::new(catalog);
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
    let instance = config
        .instance
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    let policy = ChannelPolicy::from_topology(catalog.topology(), config.patterns);
    let metrics = Arc::new(Metrics::new());
    let client = redis::Client::open(config.redis.redis.as_str())?;
    let redis = connect_redis(&client).await?;
    let stop_background = CancellationToken::new();
    let hub = Hub::start(
        client,
        metrics.clone(),
        config.slow_client,
        stop_background.clone(),
    );
    let namespace = catalog.namespace().map(str::to_string);
    let stats = Arc::new(ChannelStats::new(
        namespace.as_deref(),
        &instance,
        policy.templates().iter().map(|t| &t.name),
    ));
    let presence = Arc::new(Presence::new(
        redis.clone(),
        namespace.as_deref(),
        &instance,
        config.presence_ttl,
        catalog.clone(),
        metrics.clone(),
    ));
    let gateway = Gateway(Arc::new(Shared {
        instance,
        limits: Limits {
            max_subscriptions: config.max_subscriptions,
            queue_len: config.queue_len,
            max_frame_bytes: config.max_frame_bytes,
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            write_timeout: config.write_timeout,
            header_timeout: config.header_timeout,
            sse_keepalive: config.sse_keepalive,
        },
        policy,
        verifier,
        hub,
        presence,
        stats,
        metrics,
        redis,
        connections: Arc::new(Semaphore::new(config.max_connections)),
        max_connections: config.max_connections,
        next_connection: AtomicU64::new(1),
        shutdown: CancellationToken::new(),
        stop_background,
    }));
    spawn_background(&gateway, config);
    wait_for_hub(&gateway, Duration::from_secs(10)).await?;
    Ok(gateway)
}

/// Connects to Redis, retrying for a while: at boot, Redis may start after us.
async fn connect_redis(client: &redis::Client) -> anyhow::Result<redis::aio::ConnectionManager> {
    let mut last = None;
    for _ in 0..30 {
        match client.get_connection_manager().await {
            Ok(manager) => return Ok(manager),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Err(anyhow::anyhow!(
        "redis unreachable: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

async fn wait_for_hub(gateway: &Gateway, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !gateway.hub.is_connected() {
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("the redis pub/sub connection did not come up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs `work` every `every` until the background tasks stop.
fn every<F, Fut>(gateway: &Gateway, every: Duration, mut work: F)
where
    F: FnMut(Gateway) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let gateway = gateway.clone();
    let stop = gateway.stop_background.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => work(gateway.clone()).await,
            }
        }
    });
}

fn spawn_background(gateway: &Gateway, config: &Config) {
    every(gateway, config.presence_refresh, |g| async move {
        g.presence.refresh().await
    });
    every(gateway, config.presence_sweep, |g| async move {
        if let Err(e) = g.presence.sweep().await {
            tracing::warn!(error = %e, "presence sweep failed");
        }
    });
    every(gateway, config.stats_flush, |g| async move {
        let mut redis = g.redis.clone();
        if let Err(e) = g.stats.flush(&mut redis).await {
            tracing::warn!(error = %e, "channel stats not flushed");
        }
    });
}

/// Serves until `shutdown` resolves; then every connection closes (WebSocket clients get 1001),
/// presence records the disconnects, the figures are flushed and the background tasks stop.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    drain: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let closing = gateway.shutdown.clone();
    let limits = circulatory::http_server::ConnectionLimits {
        header_timeout: gateway.limits.header_timeout,
        // Realtime frames are small and latency-bound: no Nagle delay.
        nodelay: true,
    };
    let stop = async move {
        shutdown.await;
        closing.cancel();
    };
    circulatory::http_server::serve(listener, app(gateway.clone()), limits, stop).await?;
    close(&gateway, drain).await;
    Ok(())
}

/// Closes every connection and stops the background tasks (also for in-process gateways).
pub async fn close(gateway: &Gateway, drain: Duration) {
    gateway.shutdown.cancel();
    let deadline = tokio::time::Instant::now() + drain;
    while gateway.open_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.presence.disconnect_all().await;
    let mut redis = gateway.redis.clone();
    if let Err(e) = gateway.stats.flush(&mut redis).await {
        tracing::warn!(error = %e, "channel stats not flushed at shutdown");
    }
    gateway.stop_background.cancel();
}
