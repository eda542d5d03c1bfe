//! Watching the pipeline from outside while a scenario runs: a Redis pub/sub subscriber (what a
//! realtime client receives) and a Kafka tail of one topic (when each event was produced).
//! Both record what arrives, with the instant it arrived, until they are dropped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use circulatory::kafka::{self, KafkaConfig};
use circulatory::realtime::RealtimeMessage;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;

/// One pub/sub message as a subscriber got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub channel: String,
    /// The message, when it has the `{"type", "id", "correlationId"?, "time", "data"}` shape.
    pub message: Option<RealtimeMessage>,
    pub payload: String,
    pub at: Instant,
}

/// A subscriber to a set of channels, collecting every message.
pub struct Realtime {
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Realtime {
    /// Subscribes to `channels`; when this returns, Redis has confirmed every subscription, so
    /// nothing published afterwards is missed.
    pub async fn subscribe(redis_url: &str, channels: &[String]) -> anyhow::Result<Realtime> {
        let client = redis::Client::open(redis_url).context("redis url")?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .with_context(|| format!("Redis pub/sub at {redis_url}"))?;
        for channel in channels {
            pubsub
                .subscribe(channel)
                .await
                .with_context(|| format!("subscribing to {channel}"))?;
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let payload: String = message.get_payload().unwrap_or_default();
                let entry = Received {
                    channel: message.get_channel_name().to_string(),
                    message: serde_json::from_str(&payload).ok(),
                    payload,
                    at: Instant::now(),
                };
                if let Ok(mut received) = sink.lock() {
                    received.push(entry);
                }
            }
        });
        Ok(Realtime { received, task })
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One record of the tailed topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    /// The `ce_type` header.
    pub event_type: Option<String>,
    /// The record's timestamp (producer time), epoch milliseconds.
    pub timestamp_ms: Option<i64>,
    pub at: Instant,
}

/// Reads one topic from its current end on, as committed (`read_committed`: events a group
/// emitted in an aborted transaction never show up).
pub struct Tail {
    records: Arc<Mutex<Vec<Record>>>,
    task: JoinHandle<()>,
}

impl Tail {
    /// Starts at the current end of every partition of `topic` (resolved now, so nothing
    /// produced after this returns is missed).
    pub async fn start(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Tail> {
        let mut config = kafka.clone();
        config
            .overrides
            .push(("isolation.level".into(), "read_committed".into()));
        let metadata: Arc<BaseConsumer> = Arc::new(kafka::reader(&config).context("Kafka client")?);
        let name = topic.to_string();
        let ends = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(i32, i64)>> {
            let found = metadata
                .fetch_metadata(Some(&name), Duration::from_secs(10))
                .with_context(|| format!("Kafka metadata of {name}"))?;
            let partitions: Vec<i32> = found
                .topics()
                .iter()
                .filter(|t| t.name() == name && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                bail!("topic {name} does not exist (topics are created by `circ topics apply`)");
            }
            partitions
                .into_iter()
                .map(|p| {
                    metadata
                        .fetch_watermarks(&name, p, Duration::from_secs(10))
                        .map(|(_, high)| (p, high))
                        .with_context(|| format!("end offset of {name}/{p}"))
                })
                .collect()
        })
        .await
        .context("metadata task")??;
        let consumer: StreamConsumer = kafka::reader(&config).context("Kafka client")?;
        let mut assignment = TopicPartitionList::new();
        for (partition, end) in ends {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(end))
                .context("assignment")?;
        }
        consumer
            .assign(&assignment)
            .context("assigning partitions")?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let task = tokio::spawn(async move {
            let mut stream = consumer.stream();
            while let Some(message) = stream.next().await {
                let Ok(message) = message else { continue };
                let event_type = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .filter(|h| h.key == "ce_type")
                        .find_map(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                });
                let entry = Record {
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    event_type,
                    timestamp_ms: message.timestamp().to_millis(),
                    at: Instant::now(),
                };
                if let Ok(mut records) = sink.lock() {
                    records.push(entry);
                }
            }
        });
        Ok(Tail { records, task })
    }

    /// Everything read so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.task.abort();
    }
}
