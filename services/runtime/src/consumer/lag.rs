//! How far each consumer group is behind: per partition of every topic it reads, the committed
//! offset, the end of the log and the difference. Main topics give the backlog ("waiting"), retry
//! topics the events waiting for their delay ("delayed"), the replay topic replays not yet run.
//!
//! Read-only: the committed offsets are fetched with the group's id without joining the group, so
//! looking never disturbs the consumers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::kafka::KafkaConfig;
use crate::topology::Group;

/// What a topic is to the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicRole {
    Main,
    Retry,
    Replay,
}

/// One partition of one topic the group reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub role: TopicRole,
    pub partition: i32,
    /// `None` when the group never committed on this partition (it starts at the beginning).
    pub committed: Option<i64>,
    /// The log's first and next offsets (low and high watermarks).
    pub start: i64,
    pub end: i64,
    pub lag: i64,
}

/// A group's lag, by role and per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLag {
    pub group: String,
    /// The consumer group id on the cluster (namespace applied).
    pub group_id: String,
    pub waiting: i64,
    pub delayed: i64,
    pub replaying: i64,
    /// Topics the group reads that do not exist on the cluster.
    pub missing_topics: Vec<String>,
    pub partitions: Vec<PartitionLag>,
}

/// Every topic a group reads, with what it is to the group: its main topics, its retry rungs
/// and its replay topic.
pub fn group_topics(catalog: &Catalog, group: &Group) -> Vec<(String, TopicRole)> {
    let mut topics: Vec<(String, TopicRole)> = catalog
        .group_topics(group)
        .into_iter()
        .map(|t| (t, TopicRole::Main))
        .collect();
    topics.extend(group.retry_delays.iter().map(|d| {
        (
            catalog.topic_name(&group.retry_topic_base(*d)),
            TopicRole::Retry,
        )
    }));
    topics.push((
        catalog.topic_name(&group.replay_topic_base()),
        TopicRole::Replay,
    ));
    topics
}

/// The lag of each of `groups` (blocking Kafka calls run off the async runtime).
pub async fn groups_lag(
    kafka: &KafkaConfig,
    catalog: Arc<Catalog>,
    groups: Vec<Group>,
    timeout: Duration,
) -> Result<Vec<GroupLag>, KafkaError> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let metadata_client: BaseConsumer = crate::kafka::reader(&kafka)?;
        let metadata = metadata_client.fetch_metadata(None, timeout)?;
        let partitions: HashMap<String, i32> = metadata
            .topics()
            .iter()
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect();
        let mut watermarks: HashMap<(String, i32), (i64, i64)> = HashMap::new();
        let mut out = Vec::with_capacity(groups.len());
        for group in &groups {
            out.push(group_lag(
                &kafka,
                &catalog,
                group,
                &partitions,
                &mut watermarks,
                &metadata_client,
                timeout,
            )?);
        }
        Ok(out)
    })
    .await
    .map_err(|e| KafkaError::Subscription(format!("lag task: {e}")))?
}

fn group_lag(
    kafka: &KafkaConfig,
    catalog: &Catalog,
    group: &Group,
    partitions: &HashMap<String, i32>,
    watermarks: &mut HashMap<(String, i32), (i64, i64)>,
    client: &BaseConsumer,
    timeout: Duration,
) -> Result<GroupLag, KafkaError> {
    let group_id = catalog.topic_name(&group.name);
    let topics = group_topics(catalog, group);

    let mut list = TopicPartitionList::new();
    let mut missing_topics = Vec::new();
    for (topic, _) in &topics {
        match partitions.get(topic) {
            Some(count) => {
                for partition in 0..*count {
                    list.add_partition(topic, partition);
                }
            }
            None => missing_topics.push(topic.clone()),
        }
    }
    // A client with the group's id, never subscribed: it reads the group's commits only.
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", format!("{}-lag", kafka.client_id))
        .set("group.id", &group_id)
        .set("enable.auto.commit", "false");
    for (key, value) in &kafka.overrides {
        config.set(key, value);
    }
    let reader: BaseConsumer = config.create()?;
    let committed = if list.count() > 0 {
        reader.committed_offsets(list, timeout)?
    } else {
        list
    };

    let mut lag = GroupLag {
        group: group.name.clone(),
        group_id,
        waiting: 0,
        delayed: 0,
        replaying: 0,
        missing_topics,
        partitions: Vec::new(),
    };
    let roles: HashMap<&str, TopicRole> = topics.iter().map(|(t, r)| (t.as_str(), *r)).collect();
    for element in committed.elements() {
        let key = (element.topic().to_string(), element.partition());
        let (start, end) = match watermarks.get(&key) {
            Some(w) => *w,
            None => {
                let w = client.fetch_watermarks(&key.0, key.1, timeout)?;
                watermarks.insert(key.clone(), w);
                w
            }
        };
        let committed = match element.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        // Never committed: the group starts at the beginning of what is retained.
        let behind = (end - committed.unwrap_or(start).max(start)).max(0);
        let role = roles
            .get(key.0.as_str())
            .copied()
            .unwrap_or(TopicRole::Main);
        match role {
            TopicRole::Main => lag.waiting += behind,
            TopicRole::Retry => lag.delayed += behind,
            TopicRole::Replay => lag.replaying += behind,
        }
        lag.partitions.push(PartitionLag {
            topic: key.0,
            role,
            partition: key.1,
            committed,
            start,
            end,
            lag: behind,
        });
    }
    lag.partitions
        .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(lag)
}
