//! Committed offsets and log ends of every partition a group reads, from long-lived clients (one
//! per group, never subscribed: a client with the group's id reads its commits without joining
//! it, so looking never disturbs the consumers).

use std::collections::HashMap;
use std::time::Duration;

use circulatory::consumer::lag::TopicRole;
use circulatory::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

/// One partition's position for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub role: TopicRole,
    pub partition: i32,
    /// `None` when the group never committed here (it starts at the log's start).
    pub committed: Option<i64>,
    pub start: i64,
    pub end: i64,
}

impl Position {
    /// Records not yet processed.
    pub fn lag(&self) -> i64 {
        (self.end - self.next()).max(0)
    }

    /// The offset the group reads next.
    pub fn next(&self) -> i64 {
        self.committed.unwrap_or(self.start).max(self.start)
    }
}

/// Reads positions; keeps one client per group between calls.
pub struct OffsetReader {
    kafka: KafkaConfig,
    clients: HashMap<String, BaseConsumer>,
}

impl OffsetReader {
    pub fn new(kafka: KafkaConfig) -> OffsetReader {
        OffsetReader {
            kafka,
            clients: HashMap::new(),
        }
    }

    fn client(&mut self, group_id: &str) -> Result<&BaseConsumer, KafkaError> {
        if !self.clients.contains_key(group_id) {
            let mut config = rdkafka::ClientConfig::new();
            config
                .set("bootstrap.servers", &self.kafka.bootstrap_servers)
                .set("client.id", format!("{}-offsets", self.kafka.client_id))
                .set("group.id", group_id)
                .set("enable.auto.commit", "false");
            for (key, value) in &self.kafka.overrides {
                config.set(key, value);
            }
            self.clients.insert(group_id.to_string(), config.create()?);
        }
        Ok(&self.clients[group_id])
    }

    /// Positions of `topics` (those that exist: `partitions` gives each one's count) for the
    /// group `group_id`. `watermarks` caches log ends across groups within one refresh.
    pub fn positions(
        &mut self,
        group_id: &str,
        topics: &[(String, TopicRole)],
        partitions: &HashMap<String, i32>,
        watermarks: &mut HashMap<(String, i32), (i64, i64)>,
        timeout: Duration,
    ) -> Result<Vec<Position>, KafkaError> {
        let mut list = TopicPartitionList::new();
        for (topic, _) in topics {
            for partition in 0..partitions.get(topic).copied().unwrap_or(0) {
                list.add_partition(topic, partition);
            }
        }
        if list.count() == 0 {
            return Ok(Vec::new());
        }
        let client = self.client(group_id)?;
        let committed = client.committed_offsets(list, timeout)?;
        let roles: HashMap<&str, TopicRole> =
            topics.iter().map(|(t, r)| (t.as_str(), *r)).collect();
        let mut out = Vec::with_capacity(committed.count());
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
            out.push(Position {
                role: roles
                    .get(key.0.as_str())
                    .copied()
                    .unwrap_or(TopicRole::Main),
                topic: key.0,
                partition: key.1,
                committed: match element.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                },
                start,
                end,
            });
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_log_start() {
        let p = |committed, start, end| Position {
            topic: "t".into(),
            role: TopicRole::Main,
            partition: 0,
            committed,
            start,
            end,
        };
        assert_eq!(p(Some(5), 0, 9).lag(), 4);
        assert_eq!(p(None, 3, 9).lag(), 6);
        // Retention removed records the group never read: they are no longer waiting.
        assert_eq!(p(Some(1), 4, 9).lag(), 5);
        assert_eq!(p(Some(9), 0, 9).lag(), 0);
    }
}
