//! Integration tests run against the real local stack (`scripts/stack up`). Each test gets its own
//! namespace, so its topics and registry subjects are fresh and tests never see each other's data.
//!
//! Connection settings come from the same variables the services read (`CIRC_KAFKA_BOOTSTRAP`,
//! `CIRC_REGISTRY_URL`), defaulting to the local stack's ports. Nothing here skips a test when the
//! stack is missing: a test that needs Kafka fails loudly without it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use circulatory::catalog::{Catalog, CatalogPaths};
use circulatory::consumer::lag::groups_lag;
use circulatory::kafka::{self, KafkaConfig};
use circulatory::registry::{RegistryConfig, SchemaRegistry};
use circulatory::topics::TopicAdmin;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

pub mod oracle;

use oracle::Oracle;

/// The repository root (where `topics.yaml` and `schemas/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn bootstrap() -> String {
    std::env::var("CIRC_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn registry_url() -> String {
    std::env::var("CIRC_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// A fresh namespace name: `t<12 hex>`.
pub fn fresh_namespace() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// How much faster [`TestEnv::with_fast_retries`] runs retry ladders.
pub const FAST_RETRY_FACTOR: u32 = 20;

/// One test's isolated view of the stack.
pub struct TestEnv {
    pub namespace: String,
    pub catalog: Arc<Catalog>,
    pub kafka: KafkaConfig,
    pub registry: Arc<SchemaRegistry>,
    /// Reads what the services wrote with an independent decoder ([`oracle`]).
    pub oracle: Arc<Oracle>,
}

impl TestEnv {
    /// The repository's catalog under a fresh namespace. No topic exists yet.
    pub fn new() -> TestEnv {
        let namespace = fresh_namespace();
        let catalog = Catalog::load(&CatalogPaths::in_dir(repo_root()))
            .unwrap_or_else(|e| panic!("{e}"))
            .with_namespace(Some(&namespace))
            .expect("valid namespace");
        let registry =
            SchemaRegistry::new(RegistryConfig::new(registry_url())).expect("registry client");
        TestEnv {
            kafka: KafkaConfig::new(bootstrap(), format!("test-{namespace}")),
            namespace,
            catalog: Arc::new(catalog),
            registry: Arc::new(registry),
            oracle: Arc::new(Oracle::new(&registry_url())),
        }
    }

    /// The repository's catalog plus the test-only groups of `fixtures/groups.yaml`
    /// (`fixture-chat`, `fixture-ladder`, ...): what engine tests run on instead of production
    /// groups.
    pub fn with_fixture_groups(mut self) -> TestEnv {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/groups.yaml");
        let catalog = (*self.catalog)
            .clone()
            .with_groups_from(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        self.catalog = Arc::new(catalog);
        self
    }

    /// Every production group's retry ladder runs [`FAST_RETRY_FACTOR`] times faster
    /// (1 s → 50 ms, 30 s → 1.5 s), with the same rungs and attempts. For tests that wait out
    /// retries and assert what the ladder led to, not how long it took.
    pub fn with_fast_retries(mut self) -> TestEnv {
        let catalog = (*self.catalog).clone().with_groups(|group| {
            for delay in &mut group.retry_delays {
                *delay = (*delay / FAST_RETRY_FACTOR).max(Duration::from_millis(10));
            }
        });
        self.catalog = Arc::new(catalog);
        self
    }

    /// Creates the named topics (as the catalog declares them, replication 1) and waits until
    /// they have leaders.
    pub async fn create_topics(&self, names: &[&str]) {
        let admin = TopicAdmin::new(&self.kafka, Duration::from_secs(15)).expect("admin client");
        let mut plan = admin
            .plan(&self.catalog, Some(1))
            .await
            .expect("cluster reachable");
        plan.create.retain(|t| names.contains(&t.name.as_str()));
        assert_eq!(plan.create.len(), names.len(), "unknown topic in {names:?}");
        plan.grow.clear();
        plan.drift.clear();
        plan.realign.clear();
        admin.apply(&plan, false).await.expect("topics created");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        admin
            .wait_until_ready(&names, Duration::from_secs(30))
            .await
            .expect("topics ready");
    }

    /// Creates every topic a group reads and writes: its main topics, retry rungs, dead letters.
    pub async fn create_group_topics(&self, group: &str) {
        let group = self.catalog.group(group).expect("a declared group").clone();
        let mut names = self.catalog.group_topics(&group);
        names.extend(
            group
                .retry_delays
                .iter()
                .map(|d| self.catalog.topic_name(&group.retry_topic_base(*d))),
        );
        names.push(self.catalog.topic_name(&group.dead_letter_topic_base()));
        names.push(self.catalog.topic_name(&group.replay_topic_base()));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.create_topics_if_missing(&names).await;
    }

    /// Like [`TestEnv::create_topics`], skipping topics that already exist.
    pub async fn create_topics_if_missing(&self, names: &[&str]) {
        let admin = TopicAdmin::new(&self.kafka, Duration::from_secs(15)).expect("admin client");
        let existing = admin.existing().await.expect("cluster reachable");
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !existing.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            self.create_topics(&missing).await;
        }
    }

    /// Waits until `group` has committed every record it reads (main topics, retry rungs,
    /// replay): the positive signal that all that was delivered has been handled, for a check
    /// that something did *not* happen (a redelivery changed nothing, no record went elsewhere).
    pub async fn wait_until_settled(&self, group: &str, within: Duration) {
        let group = self.catalog.group(group).expect("a declared group").clone();
        let deadline = Instant::now() + within;
        loop {
            let lags = groups_lag(
                &self.kafka,
                self.catalog.clone(),
                vec![group.clone()],
                Duration::from_secs(10),
            )
            .await
            .expect("cluster reachable");
            let lag = &lags[0];
            // What lies past a commit may be only a transaction's marker (a transactional
            // group's retries and emits end with one): not a record left to handle.
            let mut behind = Vec::new();
            for p in lag.partitions.iter().filter(|p| p.lag > 0) {
                let from = p.committed.unwrap_or(p.start);
                if record_from(&self.kafka, &p.topic, p.partition, from).await {
                    behind.push(format!("{}[{}] from {from}", p.topic, p.partition));
                }
            }
            if behind.is_empty() && lag.missing_topics.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not settled within {within:?}: records left in {behind:?}, missing \
                 topics {:?}",
                group.name,
                lag.missing_topics
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A publisher for this namespace.
    pub fn publisher(&self) -> circulatory::publisher::EventPublisher {
        let producer =
            kafka::producer(&self.kafka, &kafka::ProducerSettings::default()).expect("producer");
        circulatory::publisher::EventPublisher::new(
            self.catalog.clone(),
            self.registry.clone(),
            producer,
            "/tests",
        )
    }

    /// Publishes one event and waits for the broker's ack.
    pub async fn publish(
        &self,
        publisher: &circulatory::publisher::EventPublisher,
        event_type: &str,
        data: serde_json::Value,
    ) -> circulatory::publisher::Delivered {
        let validated = publisher
            .validate(circulatory::publisher::EventDraft {
                event_type: event_type.into(),
                data,
                correlation_id: Some(format!("corr-{}", self.namespace)),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{event_type}: {e}"));
        publisher.publish(validated).await.expect("published")
    }

    /// The namespaced topic of an event type.
    pub fn topic_of(&self, event_type: &str) -> String {
        self.catalog
            .event(event_type)
            .and_then(|e| e.topic.clone())
            .unwrap_or_else(|| panic!("{event_type} has no topic"))
    }
}

/// A test's topics are deleted when its environment goes away, so a long-lived local cluster
/// does not collect thousands of partitions (set `CIRC_KEEP_TEST_TOPICS` to keep them).
impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::env::var_os("CIRC_KEEP_TEST_TOPICS").is_some() {
            return;
        }
        let kafka = self.kafka.clone();
        let prefix = format!("{}.", self.namespace);
        // Drop cannot await, and may run inside a runtime: clean up from a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let (Ok(admin), Ok(reader)) =
                    (kafka::admin(&kafka), kafka::reader::<BaseConsumer>(&kafka))
                else {
                    return;
                };
                let Ok(metadata) = reader.fetch_metadata(None, Duration::from_secs(10)) else {
                    return;
                };
                let names: Vec<String> = metadata
                    .topics()
                    .iter()
                    .map(|t| t.name().to_string())
                    .filter(|n| n.starts_with(&prefix))
                    .collect();
                if names.is_empty() {
                    return;
                }
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let options = rdkafka::admin::AdminOptions::new()
                    .request_timeout(Some(Duration::from_secs(10)));
                let _ = admin.delete_topics(&refs, &options).await;
            });
        });
        let _ = cleanup.join();
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a record (a transaction's marker does not count) sits at `offset` or after in one
/// partition: the reader reports the end of the log when there is none.
async fn record_from(kafka: &KafkaConfig, topic: &str, partition: i32, offset: i64) -> bool {
    let mut kafka = kafka.clone();
    kafka
        .overrides
        .push(("enable.partition.eof".into(), "true".into()));
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = kafka::reader(&kafka).expect("reader");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, partition, Offset::Offset(offset))
            .expect("partition");
        reader.assign(&list).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(_)) => return true,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return false,
                _ => {}
            }
        }
        panic!("{topic}[{partition}]: neither a record nor the end from offset {offset}")
    })
    .await
    .expect("join")
}

/// Reads `count` records from the start of `topic` (all partitions), failing after `deadline`.
pub async fn read_records(
    kafka: &KafkaConfig,
    topic: &str,
    count: usize,
    deadline: Duration,
) -> Vec<OwnedMessage> {
    let metadata_client: Arc<BaseConsumer> = Arc::new(kafka::reader(kafka).expect("reader"));
    let metadata = kafka::fetch_metadata(metadata_client, Some(topic.to_string()), deadline)
        .await
        .expect("metadata");
    let consumer: StreamConsumer = kafka::reader(kafka).expect("reader");
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            assignment
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("offset");
        }
    }
    assert!(assignment.count() > 0, "topic {topic} has no partitions");
    consumer.assign(&assignment).expect("assign");
    let started = Instant::now();
    let mut out = Vec::new();
    let mut stream = consumer.stream();
    while out.len() < count {
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(Ok(message))) => out.push(message.detach()),
            Ok(Some(Err(e))) => panic!("kafka error while reading {topic}: {e}"),
            Ok(None) | Err(_) => panic!(
                "read {} of {count} record(s) from {topic} within {deadline:?}",
                out.len()
            ),
        }
    }
    out
}

/// How long until the server at the other end closes `stream` (what it sends meanwhile is read
/// and dropped); `None` if it is still open after `limit`.
pub async fn closed_after(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut sink = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

/// Whether `topic` holds no record at all.
pub async fn is_empty(kafka: &KafkaConfig, topic: &str) -> bool {
    count_records(kafka, topic).await == 0
}

/// Records in `topic` (sum of high watermarks).
pub async fn count_records(kafka: &KafkaConfig, topic: &str) -> i64 {
    let consumer: Arc<BaseConsumer> = Arc::new(kafka::reader(kafka).expect("reader"));
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .map(|partition| {
                consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .sum()
    })
    .await
    .expect("join")
}

/// Value of a record header as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    message.headers().and_then(|headers| {
        headers
            .iter()
            .filter(|h| h.key == name)
            .last()
            .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
    })
}

/// A sample payload for every event type: required fields only, values of the right shape.
pub fn sample_data(schema: &serde_json::Value) -> serde_json::Value {
    sample_value(schema, "")
}

fn sample_value(schema: &serde_json::Value, name: &str) -> serde_json::Value {
    use serde_json::{json, Value};
    match schema {
        Value::String(t) => sample_primitive(t, None, name),
        Value::Array(branches) => {
            let non_null = branches
                .iter()
                .find(|b| *b != "null")
                .expect("a non-null branch");
            sample_value(non_null, name)
        }
        Value::Object(o) => {
            let t = o.get("type").and_then(Value::as_str).unwrap_or("");
            match t {
                "record" => {
                    let mut out = serde_json::Map::new();
                    for field in o["fields"].as_array().expect("fields") {
                        let field_name = field["name"].as_str().expect("name");
                        out.insert(field_name.into(), sample_value(&field["type"], field_name));
                    }
                    Value::Object(out)
                }
                "enum" => o["symbols"][0].clone(),
                "array" => json!([sample_value(&o["items"], name)]),
                "map" => json!({ "k": sample_value(&o["values"], name) }),
                _ if o.get("type").is_some_and(Value::is_object) => sample_value(&o["type"], name),
                _ => sample_primitive(t, o.get("logicalType").and_then(Value::as_str), name),
            }
        }
        _ => Value::Null,
    }
}

fn sample_primitive(t: &str, logical: Option<&str>, name: &str) -> serde_json::Value {
    use serde_json::json;
    match (t, logical) {
        ("string", Some("uuid")) => json!(uuid::Uuid::new_v4().to_string()),
        ("long", Some("timestamp-millis")) => json!("2026-11-27T10:00:00.123Z"),
        ("string", _) if name == "currency" => json!("USD"),
        ("string", _) => json!(format!("sample {name}")),
        ("int", _) => json!(7),
        ("long", _) => json!(1234),
        ("float" | "double", _) => json!(0.5),
        ("boolean", _) => json!(true),
        _ => serde_json::Value::Null,
    }
}
