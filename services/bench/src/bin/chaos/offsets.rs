//! Partition offsets of a set of topics: the end offsets before the first event of a run (where
//! the read-back starts), and again when verifying (where it may stop).

use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(20);

/// One partition and an offset in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartitionOffset {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// A client for metadata and watermarks only (it never joins a group).
pub(crate) fn metadata_client(bootstrap: &str) -> Result<BaseConsumer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "circ-chaos-offsets")
        .create()
        .map_err(|e| format!("kafka client: {e}"))
}

/// The high watermark of every partition of `topics`.
pub(crate) fn end_offsets(
    client: &BaseConsumer,
    topics: &[String],
) -> Result<Vec<PartitionOffset>, String> {
    let mut out = Vec::new();
    for topic in topics {
        let metadata = client
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let partitions = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len())
            .ok_or_else(|| format!("topic {topic} does not exist"))?;
        for partition in 0..partitions as i32 {
            let (_, high) = client
                .fetch_watermarks(topic, partition, TIMEOUT)
                .map_err(|e| format!("watermarks of {topic}/{partition}: {e}"))?;
            out.push(PartitionOffset {
                topic: topic.clone(),
                partition,
                offset: high,
            });
        }
    }
    Ok(out)
}

pub(crate) fn save(path: &Path, offsets: &[PartitionOffset]) -> Result<(), String> {
    let text = serde_json::to_string_pretty(offsets).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn load(path: &Path) -> Result<Vec<PartitionOffset>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
