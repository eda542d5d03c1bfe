//! Kafka clients configured the way Circulatory needs them.
//!
//! The producer is durable by construction (`acks=all`, idempotence on, bounded local queue and
//! delivery timeout), so "202 only after the broker acknowledged" is a property of the client,
//! not of each call site.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, FromClientConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

/// Connection settings shared by every Kafka client of a process.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Identifies this process in broker logs and quotas.
    pub client_id: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, ...), applied last.
    pub overrides: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(bootstrap_servers: impl Into<String>, client_id: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: client_id.into(),
            overrides: Vec::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            // TCP_NODELAY, as Kafka's own clients and brokers set it: with Nagle a small request
            // written while an earlier one is unacknowledged waits for that acknowledgement.
            .set("socket.nagle.disable", "true");
        config
    }

    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }
}

/// Producer tuning; the defaults favour durability, then latency.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// How long the producer keeps trying a record before it fails (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// How long one produce request may go unanswered before the producer sends it again
    /// (`request.timeout.ms`). Kept well below the delivery timeout: a request that times out is
    /// resent with the same sequence numbers, which the broker deduplicates, while a record
    /// whose delivery timeout expires in flight makes the idempotent producer bump its epoch,
    /// and records of other partitions resent after the bump can be written twice. At most half
    /// the delivery timeout is used.
    pub request_timeout: Duration,
    /// Time to wait for more records to fill a batch.
    pub linger: Duration,
    /// Bound on records queued in the client; a full queue is backpressure, not growth.
    pub max_queued_messages: u32,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// Makes the producer transactional under this id (`transactional.id`).
    pub transactional_id: Option<String>,
    /// How long the broker lets a transaction stay open before aborting it: bounds how long an
    /// instance that died mid-transaction holds back `read_committed` readers.
    pub transaction_timeout: Duration,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            delivery_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            max_queued_messages: 100_000,
            compression: "zstd".into(),
            transactional_id: None,
            transaction_timeout: Duration::from_secs(15),
        }
    }
}

/// An idempotent producer with `acks=all`.
pub fn producer(
    kafka: &KafkaConfig,
    settings: &ProducerSettings,
) -> Result<FutureProducer, KafkaError> {
    // librdkafka refuses a transactional producer whose records outlive its transactions.
    let delivery_timeout = match &settings.transactional_id {
        Some(_) => settings.delivery_timeout.min(settings.transaction_timeout),
        None => settings.delivery_timeout,
    };
    let mut config = kafka.base();
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", &settings.compression)
        .set("linger.ms", settings.linger.as_millis().to_string())
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .set(
            "request.timeout.ms",
            settings
                .request_timeout
                .min(delivery_timeout / 2)
                .max(Duration::from_millis(1))
                .as_millis()
                .to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            settings.max_queued_messages.to_string(),
        );
    if let Some(id) = &settings.transactional_id {
        config.set("transactional.id", id).set(
            "transaction.timeout.ms",
            settings.transaction_timeout.as_millis().to_string(),
        );
    }
    kafka.finish(config).create()
}

/// An admin client for topic management.
pub fn admin(kafka: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    kafka.finish(kafka.base()).create()
}

/// A consumer that reads by assignment (tail, inspection, metadata): no offsets are ever
/// committed, so it never disturbs a consumer group.
pub fn reader<C: FromClientConfig>(kafka: &KafkaConfig) -> Result<C, KafkaError> {
    let mut config = kafka.base();
    config
        .set("group.id", format!("{}-reader", kafka.client_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    kafka.finish(config).create()
}

/// Fetches cluster metadata for `topic` (or all topics) without blocking the runtime.
pub async fn fetch_metadata(
    consumer: std::sync::Arc<BaseConsumer>,
    topic: Option<String>,
    timeout: Duration,
) -> Result<rdkafka::metadata::Metadata, KafkaError> {
    tokio::task::spawn_blocking(move || consumer.fetch_metadata(topic.as_deref(), timeout))
        .await
        .map_err(|_| KafkaError::Canceled)?
}
