//! Reads the run's records back: a `read_committed` consumer assigned every partition from the
//! offsets recorded before the run's first event up to each partition's end now, collecting
//! every record's CloudEvents `ce_id` with where it was found.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::offsets::{self, PartitionOffset};

/// Where one copy of an event was found.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// Every record read, by event id.
#[derive(Debug, Default)]
pub(crate) struct Readback {
    pub(crate) by_id: HashMap<String, Vec<Copy>>,
    /// `ce_type` of each id (the first copy's).
    pub(crate) types: HashMap<String, String>,
    pub(crate) records: u64,
    /// Records without a `ce_id` header.
    pub(crate) without_id: u64,
}

impl Readback {
    /// Copies of `id` in `topic`.
    pub(crate) fn copies_in(&self, id: &str, topic: &str) -> usize {
        self.by_id
            .get(id)
            .map_or(0, |c| c.iter().filter(|c| c.topic == topic).count())
    }
}

/// Reads from `start` to the partitions' current ends; fails past `timeout`.
pub(crate) fn read(
    bootstrap: &str,
    start: &[PartitionOffset],
    timeout: Duration,
) -> Result<Readback, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("circ-chaos-verify-{}", std::process::id()),
        )
        .set("client.id", "circ-chaos-verify")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| format!("kafka consumer: {e}"))?;
    let mut topics: Vec<String> = start.iter().map(|p| p.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    let ends: HashMap<(String, i32), i64> = offsets::end_offsets(&consumer, &topics)?
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.offset))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut pending = HashMap::new();
    for p in start {
        let end = ends
            .get(&(p.topic.clone(), p.partition))
            .copied()
            .unwrap_or(0);
        if end > p.offset {
            assignment
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(p.offset))
                .map_err(|e| e.to_string())?;
            pending.insert((p.topic.clone(), p.partition), end);
        }
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let mut out = Readback::default();
    let deadline = Instant::now() + timeout;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "read-back not done after {timeout:?}: {} partitions short of their end",
                pending.len()
            ));
        }
        poll_batch(&consumer, &mut out)?;
        drop_done(&consumer, &mut pending)?;
    }
    Ok(out)
}

/// Takes what the consumer has, for up to about half a second.
fn poll_batch(consumer: &BaseConsumer, out: &mut Readback) -> Result<(), String> {
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        match consumer.poll(Duration::from_millis(100)) {
            None => break,
            Some(Err(e)) => return Err(format!("read-back: {e}")),
            Some(Ok(message)) => {
                out.records += 1;
                let Some(id) = header(&message, "ce_id") else {
                    out.without_id += 1;
                    continue;
                };
                if let Some(ce_type) = header(&message, "ce_type") {
                    out.types.entry(id.clone()).or_insert(ce_type);
                }
                out.by_id.entry(id).or_default().push(Copy {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                });
            }
        }
    }
    Ok(())
}

/// Forgets the partitions whose position reached the end (transaction markers included).
fn drop_done(
    consumer: &BaseConsumer,
    pending: &mut HashMap<(String, i32), i64>,
) -> Result<(), String> {
    let positions = consumer.position().map_err(|e| e.to_string())?;
    for elem in positions.elements() {
        let key = (elem.topic().to_string(), elem.partition());
        if let (Some(end), Offset::Offset(at)) = (pending.get(&key), elem.offset()) {
            if at >= *end {
                pending.remove(&key);
            }
        }
    }
    Ok(())
}

fn header(message: &impl Message, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
