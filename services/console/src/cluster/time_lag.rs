//! Time lag: the age of the oldest record a group has not processed yet, per partition. It is the
//! timestamp of the record at the group's next offset, read with one fetch for all lagging
//! partitions at once and remembered per offset, so a partition costs a read only when its
//! group's position moved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use circulatory::kafka::{self, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Most partitions read in one refresh; the rest keep their last known age until the next.
const MAX_READS_PER_REFRESH: usize = 256;

/// A position in a partition: `(topic, partition, offset)`.
pub type At = (String, i32, i64);

/// Timestamps of records at known positions.
pub struct HeadTimes {
    reader: BaseConsumer,
    /// Timestamps (ms) of the heads read before, kept while they are asked for.
    known: HashMap<At, i64>,
}

impl HeadTimes {
    pub fn new(kafka: &KafkaConfig) -> Result<HeadTimes, KafkaError> {
        let reader: BaseConsumer = kafka::reader(&KafkaConfig {
            client_id: format!("{}-time-lag", kafka.client_id),
            ..kafka.clone()
        })?;
        Ok(HeadTimes {
            reader,
            known: HashMap::new(),
        })
    }

    /// The timestamp (ms) of the record at each requested position; a position whose record
    /// could not be read within `timeout` is missing from the answer. Positions in one
    /// partition (groups at different offsets) are read in successive rounds.
    pub fn timestamps(&mut self, heads: &[At], timeout: Duration) -> HashMap<At, i64> {
        let mut out: HashMap<At, i64> = HashMap::new();
        let mut missing: Vec<At> = Vec::new();
        for at in heads {
            match self.known.get(at) {
                Some(ts) => {
                    out.insert(at.clone(), *ts);
                }
                None if missing.len() < MAX_READS_PER_REFRESH => missing.push(at.clone()),
                None => {}
            }
        }
        let deadline = Instant::now() + timeout;
        while !missing.is_empty() && Instant::now() < deadline {
            // One position per partition this round.
            let mut round: HashMap<(String, i32), i64> = HashMap::new();
            missing.retain(|(t, p, o)| match round.entry((t.clone(), *p)) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(*o);
                    false
                }
                std::collections::hash_map::Entry::Occupied(_) => true,
            });
            for ((topic, partition), offset) in self.read_round(round, deadline) {
                out.insert((topic, partition, offset.0), offset.1);
            }
        }
        self.known = out.clone();
        out
    }

    /// Reads the record at one offset of each partition: `(topic, partition)` → `(offset, ts)`.
    fn read_round(
        &self,
        mut pending: HashMap<(String, i32), i64>,
        deadline: Instant,
    ) -> Vec<((String, i32), (i64, i64))> {
        let mut wanted = TopicPartitionList::new();
        for ((topic, partition), offset) in &pending {
            let _ = wanted.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        let mut read = Vec::new();
        if self.reader.assign(&wanted).is_err() {
            return read;
        }
        while !pending.is_empty() && Instant::now() < deadline {
            let Some(Ok(message)) = self.reader.poll(Duration::from_millis(100)) else {
                continue;
            };
            let key = (message.topic().to_string(), message.partition());
            // Compacted or removed records: the first record at or after the position is the
            // oldest waiting one.
            if pending.get(&key).is_some_and(|o| message.offset() >= *o) {
                let offset = pending.remove(&key).unwrap_or_default();
                if let Some(ts) = message.timestamp().to_millis() {
                    read.push((key, (offset, ts)));
                }
            }
        }
        let _ = self.reader.unassign();
        read
    }
}
