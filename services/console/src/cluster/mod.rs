//! The cluster view: every group's lag, time lag, members and instances' reports, every event
//! type's and channel's figures, refreshed in the background at a fixed pace. Pages, the JSON
//! API and `/metrics` read the last view, so any number of viewers costs the cluster nothing.

pub mod members;
pub mod offsets;
pub mod reports;
pub mod time_lag;
pub mod view;

use circulatory::sync::{MutexExt, RwLockExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use circulatory::catalog::Catalog;
use circulatory::consumer::lag::TopicRole;
use circulatory::kafka::{self, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::dead_letters::index::DeadLetterIndex;
use crate::verdict::Window;
use members::GroupDescription;
use offsets::{OffsetReader, Position};
use reports::Keys;
use time_lag::HeadTimes;
pub use view::{ClusterView, GroupView};

/// What one refresh read from Kafka.
#[derive(Debug, Default)]
pub struct KafkaSnapshot {
    /// Topic → (partitions, replicas of partition 0).
    pub topics: HashMap<String, (i32, usize)>,
    pub groups: HashMap<String, GroupDescription>,
    /// Group name → positions.
    pub positions: HashMap<String, Vec<Position>>,
    /// `(topic, partition, next offset)` → timestamp (ms) of the oldest record waiting there.
    pub heads: HashMap<time_lag::At, i64>,
}

/// The Kafka clients of the collector (blocking calls, used on a blocking thread).
struct KafkaReaders {
    metadata: BaseConsumer,
    offsets: OffsetReader,
    heads: HeadTimes,
}

/// Refreshes the view.
pub struct Collector {
    catalog: Arc<Catalog>,
    kafka: Arc<Mutex<KafkaReaders>>,
    redis: ConnectionManager,
    keys: Keys,
    timeout: Duration,
    windows: Mutex<HashMap<String, Window>>,
    pub view: RwLock<Arc<ClusterView>>,
    pub dead_letters: Arc<DeadLetterIndex>,
}

impl Collector {
    pub fn new(
        catalog: Arc<Catalog>,
        kafka: &KafkaConfig,
        redis: ConnectionManager,
        dead_letters: Arc<DeadLetterIndex>,
        timeout: Duration,
    ) -> Result<Collector, KafkaError> {
        let readers = KafkaReaders {
            metadata: kafka::reader(&KafkaConfig {
                client_id: format!("{}-metadata", kafka.client_id),
                ..kafka.clone()
            })?,
            offsets: OffsetReader::new(kafka.clone()),
            heads: HeadTimes::new(kafka)?,
        };
        Ok(Collector {
            keys: Keys::new(catalog.namespace()),
            catalog,
            kafka: Arc::new(Mutex::new(readers)),
            redis,
            timeout,
            windows: Mutex::default(),
            view: RwLock::new(Arc::new(ClusterView::default())),
            dead_letters,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The last view.
    pub fn current(&self) -> Arc<ClusterView> {
        self.view.reading().clone()
    }

    /// Refreshes every `every` until `stop`; `on_refresh` runs after each (metrics, history).
    pub async fn run(
        self: Arc<Self>,
        every: Duration,
        stop: CancellationToken,
        on_refresh: impl Fn(&ClusterView) + Send + 'static,
    ) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            let view = self.refresh().await;
            on_refresh(&view);
        }
    }

    /// Reads everything once and publishes the new view.
    pub async fn refresh(&self) -> Arc<ClusterView> {
        let started = std::time::Instant::now();
        let kafka = self.read_kafka().await;
        let groups: Vec<String> = self.catalog.topology().groups.keys().cloned().collect();
        let types: Vec<String> = self
            .catalog
            .events()
            .map(|e| e.name().to_string())
            .collect();
        let templates: Vec<String> = self.catalog.topology().channels.keys().cloned().collect();
        let mut redis = self.redis.clone();
        let reports = reports::read_groups(&mut redis, &self.keys, &groups).await;
        let events = reports::read_events(&mut redis, &self.keys, &types).await;
        let channels = reports::read_channels(&mut redis, &self.keys, &templates).await;
        let mut errors = Vec::new();
        let kafka = kafka.unwrap_or_else(|e| {
            errors.push(format!("kafka: {e}"));
            KafkaSnapshot::default()
        });
        let reports = reports.unwrap_or_else(|e| {
            errors.push(format!("redis: {e}"));
            HashMap::new()
        });
        let view = {
            let mut windows = self.windows.locked();
            view::build(
                view::Inputs {
                    catalog: &self.catalog,
                    kafka: &kafka,
                    reports: &reports,
                    events: &events.unwrap_or_default(),
                    channels: &channels.unwrap_or_default(),
                    dead_letters: &self.dead_letters.figures(),
                    now_ms: chrono::Utc::now().timestamp_millis(),
                    errors,
                    refresh_ms: started.elapsed().as_millis() as u64,
                },
                &mut windows,
            )
        };
        let view = Arc::new(view);
        *self.view.writing() = view.clone();
        view
    }

    async fn read_kafka(&self) -> Result<KafkaSnapshot, KafkaError> {
        let readers = self.kafka.clone();
        let catalog = self.catalog.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            let mut readers = readers.locked();
            read_kafka(&mut readers, &catalog, timeout)
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }
}

fn read_kafka(
    readers: &mut KafkaReaders,
    catalog: &Catalog,
    timeout: Duration,
) -> Result<KafkaSnapshot, KafkaError> {
    let metadata = readers.metadata.fetch_metadata(None, timeout)?;
    let topics: HashMap<String, (i32, usize)> = metadata
        .topics()
        .iter()
        .map(|t| {
            let replicas = t.partitions().first().map_or(0, |p| p.replicas().len());
            (
                t.name().to_string(),
                (t.partitions().len() as i32, replicas),
            )
        })
        .collect();
    let partitions: HashMap<String, i32> =
        topics.iter().map(|(t, (n, _))| (t.clone(), *n)).collect();
    let groups = members::describe_all(&readers.metadata, timeout)?;
    let mut watermarks = HashMap::new();
    let mut positions = HashMap::new();
    let mut heads = Vec::new();
    for group in catalog.topology().groups.values() {
        let topics = circulatory::consumer::lag::group_topics(catalog, group);
        let group_id = catalog.topic_name(&group.name);
        let read =
            readers
                .offsets
                .positions(&group_id, &topics, &partitions, &mut watermarks, timeout)?;
        heads.extend(
            read.iter()
                .filter(|p| p.role == TopicRole::Main && p.lag() > 0)
                .map(|p| (p.topic.clone(), p.partition, p.next())),
        );
        positions.insert(group.name.clone(), read);
    }
    heads.sort();
    heads.dedup();
    let heads = readers
        .heads
        .timestamps(&heads, timeout.min(Duration::from_secs(1)));
    Ok(KafkaSnapshot {
        topics,
        groups,
        positions,
        heads,
    })
}
