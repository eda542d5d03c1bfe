//! What the running instances report about themselves through Redis (see
//! `circulatory::consumer::stats` and the gateway's `stats`): cumulative figures per group,
//! event type and channel, each instance's heartbeat, operator commands and flood-guard stops.
//! Read for every group and type in two pipelined round trips; no key is ever scanned for.

use std::collections::{BTreeMap, HashMap};

use circulatory::consumer::durations::DurationHistogram;
use redis::aio::ConnectionManager;
use serde::Serialize;

/// Cumulative processing figures (a group's or an event type's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub duration_ms_sum: u64,
    pub duration_count: u64,
    #[serde(skip)]
    pub durations: DurationHistogram,
    /// Events of this type written to Kafka (event types only), and by whom.
    pub published: u64,
    pub published_by: BTreeMap<String, u64>,
}

impl Counts {
    fn from_hash(hash: &HashMap<String, String>) -> Counts {
        let n = |f: &str| hash.get(f).and_then(|v| v.parse().ok()).unwrap_or(0);
        Counts {
            completed: n("completed"),
            failed: n("failed"),
            retried: n("retried"),
            dead_lettered: n("dead_lettered"),
            duration_ms_sum: n("duration_ms_sum"),
            duration_count: n("duration_count"),
            durations: DurationHistogram::from_fields(hash),
            published: n("published"),
            published_by: hash
                .iter()
                .filter_map(|(k, v)| {
                    let source = k.strip_prefix("published_by:")?;
                    Some((source.to_string(), v.parse().ok()?))
                })
                .collect(),
        }
    }

    /// Mean duration of successful handling, in ms.
    pub fn avg_duration_ms(&self) -> f64 {
        if self.duration_count == 0 {
            0.0
        } else {
            self.duration_ms_sum as f64 / self.duration_count as f64
        }
    }

    /// Share of finished attempts that succeeded (1 when nothing ran yet).
    pub fn success_rate(&self) -> f64 {
        let attempts = self.completed + self.failed;
        if attempts == 0 {
            1.0
        } else {
            self.completed as f64 / attempts as f64
        }
    }
}

/// One instance's heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    pub instance: String,
    pub host: String,
    pub pid: Option<u32>,
    pub client_id: String,
    pub started_at_ms: Option<i64>,
    pub updated_at_ms: Option<i64>,
    /// Handler calls running now.
    pub active: u64,
    /// Records behind, by the client's own count.
    pub waiting: i64,
    /// Events held for a retry delay or an open breaker.
    pub delayed: u64,
    pub partitions: Vec<String>,
    /// `<topic>:<partition>` → why it is paused.
    pub paused_partitions: BTreeMap<String, Vec<String>>,
    /// Dependency → `closed`, `open` or `half_open`.
    pub breakers: BTreeMap<String, String>,
    pub operator_paused: bool,
}

impl Heartbeat {
    fn from_hash(id: &str, hash: &HashMap<String, String>) -> Heartbeat {
        let text = |f: &str| hash.get(f).cloned().unwrap_or_default();
        Heartbeat {
            instance: hash.get("instance").cloned().unwrap_or_else(|| id.into()),
            host: text("host"),
            pid: hash.get("pid").and_then(|v| v.parse().ok()),
            client_id: text("client_id"),
            started_at_ms: hash.get("started_at_ms").and_then(|v| v.parse().ok()),
            updated_at_ms: hash.get("updated_at_ms").and_then(|v| v.parse().ok()),
            active: hash.get("active").and_then(|v| v.parse().ok()).unwrap_or(0),
            waiting: hash
                .get("waiting")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            delayed: hash
                .get("delayed")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            partitions: json_field(hash, "partitions").unwrap_or_default(),
            paused_partitions: json_field(hash, "paused_partitions").unwrap_or_default(),
            breakers: json_field(hash, "breakers").unwrap_or_default(),
            operator_paused: hash.get("operator_paused").is_some_and(|v| v == "1"),
        }
    }
}

fn json_field<T: serde::de::DeserializeOwned>(
    hash: &HashMap<String, String>,
    field: &str,
) -> Option<T> {
    hash.get(field).and_then(|v| serde_json::from_str(v).ok())
}

/// An operator's pause command for a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Control {
    pub paused: bool,
    pub by: String,
    pub at_ms: i64,
    pub reason: String,
}

/// The flood guard's record of stopping a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stopped {
    pub reason: String,
    pub at_ms: i64,
    pub instance: String,
}

/// Everything one group's instances report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupReports {
    pub counts: Counts,
    pub heartbeats: Vec<Heartbeat>,
    pub control: Option<Control>,
    pub stopped: Option<Stopped>,
}

/// One channel template's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelCounts {
    pub subscribers: i64,
    pub received: u64,
    pub messages: u64,
    pub latency_ms_sum: u64,
    pub latency_count: u64,
    pub dropped: u64,
}

/// Redis key names under one namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    stats: String,
    control: String,
}

impl Keys {
    pub fn new(namespace: Option<&str>) -> Keys {
        Keys {
            stats: circulatory::catalog::redis_key(namespace, "stats"),
            control: circulatory::catalog::redis_key(namespace, "control"),
        }
    }

    pub fn group(&self, group: &str) -> String {
        format!("{}:group:{group}", self.stats)
    }

    pub fn instances(&self, group: &str) -> String {
        format!("{}:group:{group}:instances", self.stats)
    }

    pub fn instance(&self, group: &str, instance: &str) -> String {
        format!("{}:group:{group}:instance:{instance}", self.stats)
    }

    pub fn stopped(&self, group: &str) -> String {
        format!("{}:group:{group}:stopped", self.stats)
    }

    pub fn control(&self, group: &str) -> String {
        format!("{}:group:{group}", self.control)
    }

    pub fn event(&self, event_type: &str) -> String {
        format!("{}:event:{event_type}", self.stats)
    }

    pub fn channel(&self, template: &str) -> String {
        format!("{}:channel:{template}", self.stats)
    }
}

type Hash = HashMap<String, String>;

/// Reads the reports of `groups`.
pub async fn read_groups(
    redis: &mut ConnectionManager,
    keys: &Keys,
    groups: &[String],
) -> redis::RedisResult<HashMap<String, GroupReports>> {
    let mut pipe = redis::pipe();
    for g in groups {
        pipe.hgetall(keys.group(g))
            .smembers(keys.instances(g))
            .hgetall(keys.control(g))
            .hgetall(keys.stopped(g));
    }
    let replies: Vec<redis::Value> = pipe.query_async(redis).await?;
    let mut out = HashMap::new();
    let mut members: Vec<(String, String)> = Vec::new();
    for (g, chunk) in groups.iter().zip(replies.chunks(4)) {
        let counts: Hash = redis::from_redis_value(chunk[0].clone()).unwrap_or_default();
        let instances: Vec<String> = redis::from_redis_value(chunk[1].clone()).unwrap_or_default();
        let control: Hash = redis::from_redis_value(chunk[2].clone()).unwrap_or_default();
        let stopped: Hash = redis::from_redis_value(chunk[3].clone()).unwrap_or_default();
        members.extend(instances.into_iter().map(|i| (g.clone(), i)));
        out.insert(
            g.clone(),
            GroupReports {
                counts: Counts::from_hash(&counts),
                heartbeats: Vec::new(),
                control: control_of(&control),
                stopped: stopped_of(&stopped),
            },
        );
    }
    if members.is_empty() {
        return Ok(out);
    }
    let mut pipe = redis::pipe();
    for (g, i) in &members {
        pipe.hgetall(keys.instance(g, i));
    }
    let hashes: Vec<Hash> = pipe.query_async(redis).await?;
    let mut gone = redis::pipe();
    let mut any_gone = false;
    for ((g, i), hash) in members.iter().zip(hashes) {
        if hash.is_empty() {
            // The heartbeat expired: the instance is gone.
            gone.srem(keys.instances(g), i).ignore();
            any_gone = true;
        } else if let Some(reports) = out.get_mut(g) {
            reports.heartbeats.push(Heartbeat::from_hash(i, &hash));
        }
    }
    if any_gone {
        let _: redis::RedisResult<()> = gone.query_async(redis).await;
    }
    for reports in out.values_mut() {
        reports
            .heartbeats
            .sort_by(|a, b| a.instance.cmp(&b.instance));
    }
    Ok(out)
}

fn control_of(hash: &Hash) -> Option<Control> {
    (hash.get("paused").map(String::as_str) == Some("1")).then(|| Control {
        paused: true,
        by: hash.get("by").cloned().unwrap_or_default(),
        at_ms: hash.get("at_ms").and_then(|v| v.parse().ok()).unwrap_or(0),
        reason: hash.get("reason").cloned().unwrap_or_default(),
    })
}

fn stopped_of(hash: &Hash) -> Option<Stopped> {
    (!hash.is_empty()).then(|| Stopped {
        reason: hash.get("reason").cloned().unwrap_or_default(),
        at_ms: hash.get("at_ms").and_then(|v| v.parse().ok()).unwrap_or(0),
        instance: hash.get("instance").cloned().unwrap_or_default(),
    })
}

/// Reads the figures of `event_types`.
pub async fn read_events(
    redis: &mut ConnectionManager,
    keys: &Keys,
    event_types: &[String],
) -> redis::RedisResult<HashMap<String, Counts>> {
    let mut pipe = redis::pipe();
    for t in event_types {
        pipe.hgetall(keys.event(t));
    }
    let hashes: Vec<Hash> = pipe.query_async(redis).await?;
    Ok(event_types
        .iter()
        .cloned()
        .zip(hashes.iter().map(Counts::from_hash))
        .collect())
}

/// Reads the figures of `templates`.
pub async fn read_channels(
    redis: &mut ConnectionManager,
    keys: &Keys,
    templates: &[String],
) -> redis::RedisResult<HashMap<String, ChannelCounts>> {
    let mut pipe = redis::pipe();
    for t in templates {
        pipe.hgetall(keys.channel(t));
    }
    let hashes: Vec<Hash> = pipe.query_async(redis).await?;
    Ok(templates
        .iter()
        .cloned()
        .zip(hashes.iter().map(|h| {
            let n = |f: &str| h.get(f).and_then(|v| v.parse().ok()).unwrap_or(0);
            ChannelCounts {
                subscribers: h
                    .get("subscribers")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0i64)
                    .max(0),
                received: n("received"),
                messages: n("messages"),
                latency_ms_sum: n("latency_ms_sum"),
                latency_count: n("latency_count"),
                dropped: n("dropped"),
            }
        }))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_hash_decodes_with_its_json_fields() {
        let hash: Hash = [
            ("instance", "payments-0"),
            ("host", "node-1"),
            ("pid", "42"),
            ("active", "3"),
            ("waiting", "10"),
            (
                "partitions",
                r#"["payments.critical:0","payments.critical:1"]"#,
            ),
            (
                "paused_partitions",
                r#"{"payments.critical:1":["breaker"]}"#,
            ),
            ("breakers", r#"{"postgres":"open"}"#),
            ("operator_paused", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let hb = Heartbeat::from_hash("x", &hash);
        assert_eq!(hb.instance, "payments-0");
        assert_eq!(hb.pid, Some(42));
        assert_eq!(hb.partitions.len(), 2);
        assert_eq!(hb.paused_partitions["payments.critical:1"], ["breaker"]);
        assert_eq!(hb.breakers["postgres"], "open");
        assert!(hb.operator_paused);
        assert_eq!(hb.waiting, 10);
    }

    #[test]
    fn counts_give_the_seed_averages() {
        let hash: Hash = [
            ("completed", "8"),
            ("failed", "2"),
            ("duration_ms_sum", "40"),
            ("duration_count", "8"),
            ("published", "5"),
            ("published_by:ingest", "4"),
            ("published_by:feed-fanout", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = Counts::from_hash(&hash);
        assert_eq!(c.avg_duration_ms(), 5.0);
        assert_eq!(c.success_rate(), 0.8);
        assert_eq!(c.published_by["ingest"], 4);
        assert_eq!(Counts::default().success_rate(), 1.0);
    }
}
