//! Dependency health, watched in the background so requests never wait on a probe: `/readyz`
//! reports it, and a request fails fast with 503 while a dependency it needs is unreachable
//! (Kafka for stored events, Redis for idempotency keys, ephemeral broadcasts and feeds,
//! PostgreSQL for the read routes) instead of running into a timeout. PostgreSQL does not make
//! the service unready: publishing does not need it.
//!
//! Kafka down must mean a record cannot be written, not that one broker is slow: the verdict
//! turns only after [`KAFKA_FAILED_PROBES`] probes in a row found no broker answering, and a
//! record acknowledged within [`ACK_VETO`] overrides it. One broker of three dying, or a CPU
//! starved for a second, refuses nothing; the producer waits for the new leader itself.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use circulatory::registry::SchemaRegistry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Consecutive failed Kafka probes (one a second, each waiting up to [`KAFKA_PROBE_TIMEOUT`])
/// before Kafka counts as down.
pub const KAFKA_FAILED_PROBES: u32 = 3;
/// How long one Kafka probe (a metadata request) may take.
pub const KAFKA_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A record acknowledged this recently proves Kafka writable whatever the probes say.
pub const ACK_VETO: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Health {
    /// Consecutive failed Kafka probes; down until a first probe succeeds.
    kafka_failures: AtomicU32,
    /// When a record was last acknowledged, in milliseconds since `origin` (0: never).
    last_ack_ms: AtomicU64,
    origin: Instant,
    registry: AtomicBool,
    redis: AtomicBool,
    database: AtomicBool,
}

/// The clients the watcher probes.
#[derive(Clone)]
pub struct Probes {
    /// A client of its own, so a probe never queues behind the producer's requests.
    pub kafka: Arc<BaseConsumer>,
    pub registry: Arc<SchemaRegistry>,
    pub redis: ConnectionManager,
    /// A probe of Redis waits as long as a command may, so a stall that commands ride out does
    /// not count as down.
    pub redis_timeout: Duration,
    pub db: PgPool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            kafka_failures: AtomicU32::new(KAFKA_FAILED_PROBES),
            last_ack_ms: AtomicU64::new(0),
            origin: Instant::now(),
            registry: AtomicBool::new(false),
            redis: AtomicBool::new(false),
            database: AtomicBool::new(false),
        }
    }
}

/// Whether Kafka counts as down: enough failed probes in a row and no acknowledgement since
/// the veto window.
pub fn kafka_down(failed_probes: u32, since_last_ack: Option<Duration>) -> bool {
    failed_probes >= KAFKA_FAILED_PROBES && since_last_ack.is_none_or(|age| age >= ACK_VETO)
}

#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    pub kafka: bool,
    pub registry: bool,
    pub redis: bool,
    /// The read routes' store; not part of readiness.
    pub database: bool,
}

impl HealthReport {
    pub fn ready(&self) -> bool {
        self.kafka && self.registry && self.redis
    }
}

impl Health {
    pub fn kafka_up(&self) -> bool {
        let last_ack = self.last_ack_ms.load(Ordering::Relaxed);
        let since_last_ack = (last_ack > 0).then(|| {
            self.origin
                .elapsed()
                .saturating_sub(Duration::from_millis(last_ack))
        });
        !kafka_down(self.kafka_failures.load(Ordering::Relaxed), since_last_ack)
    }

    /// Records that the broker acknowledged a record just now.
    pub fn acknowledged(&self) {
        let ms = self.origin.elapsed().as_millis().max(1) as u64;
        self.last_ack_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn redis_up(&self) -> bool {
        self.redis.load(Ordering::Relaxed)
    }

    pub fn database_up(&self) -> bool {
        self.database.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> HealthReport {
        HealthReport {
            kafka: self.kafka_up(),
            registry: self.registry.load(Ordering::Relaxed),
            redis: self.redis.load(Ordering::Relaxed),
            database: self.database.load(Ordering::Relaxed),
        }
    }

    /// Probes every dependency once.
    pub async fn probe(&self, probes: &Probes) {
        let client = probes.kafka.clone();
        let probed = tokio::task::spawn_blocking(move || {
            client
                .fetch_metadata(None, KAFKA_PROBE_TIMEOUT)
                .map(|m| m.brokers().len())
        })
        .await;
        let kafka = match probed {
            Ok(Ok(brokers)) => brokers > 0,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "kafka probe failed");
                false
            }
            Err(_) => false,
        };
        let was_up = self.kafka_up();
        if kafka {
            self.kafka_failures.store(0, Ordering::Relaxed);
        } else {
            self.kafka_failures.fetch_add(1, Ordering::Relaxed);
        }
        log_change("kafka", was_up, self.kafka_up());
        let registry_up = tokio::time::timeout(Duration::from_secs(2), probes.registry.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        self.set(&self.registry, registry_up, "registry");
        let mut redis = probes.redis.clone();
        let redis_up = tokio::time::timeout(
            probes.redis_timeout,
            redis::cmd("PING").query_async::<String>(&mut redis),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        self.set(&self.redis, redis_up, "redis");
        let database_up = tokio::time::timeout(
            Duration::from_secs(1),
            sqlx::query("SELECT 1").execute(&probes.db),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        self.set(&self.database, database_up, "database");
    }

    fn set(&self, flag: &AtomicBool, up: bool, name: &'static str) {
        log_change(name, flag.swap(up, Ordering::Relaxed), up);
    }

    /// Probes every `interval` until `stop` fires.
    pub fn watch(
        self: Arc<Self>,
        probes: Probes,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.probe(&probes).await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        })
    }
}

fn log_change(name: &'static str, was_up: bool, up: bool) {
    match (was_up, up) {
        (false, true) => tracing::info!(dependency = name, "dependency reachable"),
        (true, false) => tracing::warn!(dependency = name, "dependency unreachable"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_probe_is_not_an_outage() {
        assert!(!kafka_down(0, None));
        assert!(!kafka_down(KAFKA_FAILED_PROBES - 1, None));
        assert!(kafka_down(KAFKA_FAILED_PROBES, None));
    }

    #[test]
    fn a_recent_acknowledgement_overrides_failed_probes() {
        let probes = KAFKA_FAILED_PROBES + 3;
        assert!(!kafka_down(probes, Some(Duration::from_millis(100))));
        assert!(!kafka_down(
            probes,
            Some(ACK_VETO - Duration::from_millis(1))
        ));
        assert!(kafka_down(probes, Some(ACK_VETO)));
    }

    #[test]
    fn kafka_counts_as_down_until_a_first_probe_succeeds() {
        let health = Health::default();
        assert!(!health.kafka_up());
        health.kafka_failures.store(0, Ordering::Relaxed);
        assert!(health.kafka_up());
    }

    #[test]
    fn an_acknowledgement_proves_kafka_writable() {
        let health = Health::default();
        health.acknowledged();
        assert!(health.kafka_up(), "acknowledged just now");
    }
}
