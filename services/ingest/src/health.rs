//! Dependency health, watched in the background so requests never wait on a probe: `/readyz`
//! reports it, and a request fails fast with 503 while a dependency it needs is unreachable
//! (Kafka for stored events, Redis for idempotency keys, ephemeral broadcasts and feeds) instead
//! of running into a timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use circulatory::registry::SchemaRegistry;
use rdkafka::producer::{FutureProducer, Producer};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct Health {
    kafka: AtomicBool,
    registry: AtomicBool,
    redis: AtomicBool,
}

#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    pub kafka: bool,
    pub registry: bool,
    pub redis: bool,
}

impl HealthReport {
    pub fn ready(&self) -> bool {
        self.kafka && self.registry && self.redis
    }
}

impl Health {
    pub fn kafka_up(&self) -> bool {
        self.kafka.load(Ordering::Relaxed)
    }

    pub fn redis_up(&self) -> bool {
        self.redis.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> HealthReport {
        HealthReport {
            kafka: self.kafka.load(Ordering::Relaxed),
            registry: self.registry.load(Ordering::Relaxed),
            redis: self.redis.load(Ordering::Relaxed),
        }
    }

    /// Probes every dependency once.
    pub async fn probe(
        &self,
        producer: &FutureProducer,
        registry: &SchemaRegistry,
        redis: &ConnectionManager,
    ) {
        let client = producer.clone();
        let kafka = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(None, Duration::from_millis(1500))
                .is_ok_and(|m| !m.brokers().is_empty())
        })
        .await
        .unwrap_or(false);
        self.set(&self.kafka, kafka, "kafka");
        let registry_up = tokio::time::timeout(Duration::from_secs(2), registry.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        self.set(&self.registry, registry_up, "registry");
        let mut redis = redis.clone();
        let redis_up = tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("PING").query_async::<String>(&mut redis),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        self.set(&self.redis, redis_up, "redis");
    }

    fn set(&self, flag: &AtomicBool, up: bool, name: &'static str) {
        let was = flag.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(dependency = name, "dependency reachable");
            } else {
                tracing::warn!(dependency = name, "dependency unreachable");
            }
        }
    }

    /// Probes every `interval` until `stop` fires.
    pub fn watch(
        self: Arc<Self>,
        producer: FutureProducer,
        registry: Arc<SchemaRegistry>,
        redis: ConnectionManager,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.probe(&producer, &registry, &redis).await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        })
    }
}
