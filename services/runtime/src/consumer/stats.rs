//! Figures for the operators' views (the seed's `/admin/circulatory/queues` and `/events`), kept
//! in Redis where every instance adds to them and any console reads them, and the operator's
//! pause switch, read back on the same round trip:
//!
//! - `circ:<ns>:stats:group:<group>` (hash, cumulative): `completed`, `failed`, `retried`,
//!   `dead_lettered`, `duration_ms_sum`, `duration_count`, and the histogram of successful
//!   handling durations, `duration_le:<ms>` ([`super::durations`]).
//! - `circ:<ns>:stats:event:<type>` (hash, cumulative, all groups): the same fields, plus
//!   `published` and `published_by:<source>` (`ingest`, or the group that emitted the event).
//! - `circ:<ns>:stats:group:<group>:instance:<instance>` (hash, expires 15 s after the last
//!   flush): the instance's heartbeat. `active` (running), `waiting` (lag), `delayed` (held for a
//!   retry or a breaker), `paused` (partitions), `instance`, `host`, `pid`, `client_id` (the
//!   consumer's Kafka client id), `started_at_ms`, `updated_at_ms`, `partitions` (JSON array of
//!   `"<topic>:<partition>"`), `paused_partitions` (JSON object: partition → reasons),
//!   `breakers` (JSON object: dependency → `closed`, `open` or `half_open`), `operator_paused`
//!   (`"1"` while this instance applies the operator's pause, else `"0"`).
//! - `circ:<ns>:stats:group:<group>:stopped` (hash, no expiry): written when the dead-letter
//!   flood guard stopped an instance (`reason`, `at_ms`, `instance`); an instance started after
//!   that deletes it once it runs.
//! - `circ:<ns>:control:group:<group>` (hash, written by the console): `paused` = `"1"`, `by`,
//!   `at_ms`, `reason`. Absent (or `paused` other than `"1"`): the group runs.
//!
//! Counts accumulate in memory and are flushed once a second with one pipeline, so the hot path
//! never waits on Redis.

use crate::sync::MutexExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::durations::DurationHistogram;

/// How long a write or read of the operator's control may take before the group goes on
/// without it (the first read, the flood guard's stop record).
pub(crate) const CONTROL_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a heartbeat outlives its last flush.
const HEARTBEAT_TTL_SECS: u64 = 15;

/// Deletes the stop record (KEYS[1]) if it is older than ARGV[1] (this instance's start): a
/// stop recorded since, by this instance or another, stays.
const CLEAR_OLDER_STOP: &str = "local at = tonumber(redis.call('HGET', KEYS[1], 'at_ms')) \
    if at == nil or at < tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end \
    return 0";

/// The `published_by:<source>` of events accepted by the ingest API.
pub const INGEST_SOURCE: &str = "ingest";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub duration_ms_sum: u64,
    pub duration_count: u64,
    pub durations: DurationHistogram,
}

impl Counts {
    fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("completed", self.completed),
            ("failed", self.failed),
            ("retried", self.retried),
            ("dead_lettered", self.dead_lettered),
            ("duration_ms_sum", self.duration_ms_sum),
            ("duration_count", self.duration_count),
        ]
    }

    fn add(&mut self, other: &Counts) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.duration_ms_sum += other.duration_ms_sum;
        self.duration_count += other.duration_count;
        self.durations.add(&other.durations);
    }
}

/// What happened to one event, for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    Completed,
    Retried,
    DeadLettered,
}

/// Who an instance is, fixed for its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The static instance id, or `<host>-<pid>`.
    pub instance: String,
    pub host: String,
    pub pid: u32,
    /// The consumer's Kafka `client.id` (as the group's member list shows it).
    pub client_id: String,
    pub started_at_ms: i64,
}

/// This instance's point-in-time figures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub active: usize,
    pub waiting: i64,
    pub delayed: usize,
    pub paused: usize,
    /// Assigned partitions, `"<topic>:<partition>"`.
    pub partitions: Vec<String>,
    /// Paused partitions and why (lowercase reasons).
    pub paused_partitions: BTreeMap<String, Vec<&'static str>>,
    /// Breaker state per dependency: `closed`, `open`, `half_open`.
    pub breakers: BTreeMap<String, &'static str>,
    pub operator_paused: bool,
    pub updated_at_ms: i64,
}

impl Snapshot {
    /// The heartbeat hash's fields, as written.
    pub fn fields(&self, identity: &Identity) -> Vec<(&'static str, String)> {
        let json = |value: serde_json::Value| value.to_string();
        vec![
            ("active", self.active.to_string()),
            ("waiting", self.waiting.to_string()),
            ("delayed", self.delayed.to_string()),
            ("paused", self.paused.to_string()),
            ("instance", identity.instance.clone()),
            ("host", identity.host.clone()),
            ("pid", identity.pid.to_string()),
            ("client_id", identity.client_id.clone()),
            ("started_at_ms", identity.started_at_ms.to_string()),
            ("updated_at_ms", self.updated_at_ms.to_string()),
            ("partitions", json(serde_json::json!(self.partitions))),
            (
                "paused_partitions",
                json(serde_json::json!(self.paused_partitions)),
            ),
            ("breakers", json(serde_json::json!(self.breakers))),
            (
                "operator_paused",
                if self.operator_paused { "1" } else { "0" }.to_string(),
            ),
        ]
    }
}

#[derive(Debug, Default)]
pub struct Accumulator {
    by_type: HashMap<String, Counts>,
    published: HashMap<String, u64>,
}

impl Accumulator {
    pub fn record(&mut self, event_type: &str, tally: Tally, duration: Duration) {
        let counts = self.by_type.entry(event_type.to_string()).or_default();
        match tally {
            Tally::Completed => counts.completed += 1,
            Tally::Retried => {
                counts.failed += 1;
                counts.retried += 1
            }
            Tally::DeadLettered => {
                counts.failed += 1;
                counts.dead_lettered += 1
            }
        }
        // The average duration is that of successful handling.
        if tally == Tally::Completed {
            counts.duration_ms_sum += duration.as_millis() as u64;
            counts.duration_count += 1;
            counts.durations.record(duration);
        }
    }

    /// Counts one event the group emitted (acknowledged, or staged in its transaction).
    pub fn record_published(&mut self, event_type: &str) {
        add_count(&mut self.published, event_type, 1);
    }

    /// Takes what accumulated since the last flush.
    pub fn take(&mut self) -> HashMap<String, Counts> {
        std::mem::take(&mut self.by_type)
    }

    /// Takes the published counts since the last flush.
    pub fn take_published(&mut self) -> HashMap<String, u64> {
        std::mem::take(&mut self.published)
    }
}

fn add_count(counts: &mut HashMap<String, u64>, event_type: &str, count: u64) {
    match counts.get_mut(event_type) {
        Some(n) => *n += count,
        None => {
            counts.insert(event_type.to_string(), count);
        }
    }
}

/// Published events per type, shared by request handlers (one short lock per request) and
/// drained by a flusher.
#[derive(Debug, Default)]
pub struct Published {
    by_type: Mutex<HashMap<String, u64>>,
}

impl Published {
    pub fn add(&self, event_type: &str, count: u64) {
        if count > 0 {
            add_count(&mut self.lock(), event_type, count);
        }
    }

    /// Takes what accumulated since the last flush.
    pub fn take(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.by_type.locked()
    }
}

/// Redis keys of one group.
#[derive(Debug, Clone)]
pub struct StatsKeys {
    root: String,
    prefix: String,
    group: String,
    instance: String,
}

impl StatsKeys {
    pub fn new(namespace: Option<&str>, group: &str, instance: &str) -> StatsKeys {
        StatsKeys {
            root: crate::catalog::redis_prefix(namespace),
            prefix: crate::catalog::redis_key(namespace, "stats"),
            group: group.to_string(),
            instance: instance.to_string(),
        }
    }

    pub fn group(&self) -> String {
        format!("{}:group:{}", self.prefix, self.group)
    }

    pub fn event(&self, event_type: &str) -> String {
        format!("{}:event:{event_type}", self.prefix)
    }

    pub fn instance(&self) -> String {
        format!("{}:instance:{}", self.group(), self.instance)
    }

    /// The set of this group's instances that reported.
    pub fn instances(&self) -> String {
        format!("{}:instances", self.group())
    }

    /// The flood guard's stop record.
    pub fn stopped(&self) -> String {
        format!("{}:stopped", self.group())
    }

    /// The operator's switch.
    pub fn control(&self) -> String {
        format!("{}:control:group:{}", self.root, self.group)
    }
}

/// The key of an event type's figures.
pub fn event_key(namespace: Option<&str>, event_type: &str) -> String {
    format!(
        "{}:event:{event_type}",
        crate::catalog::redis_key(namespace, "stats")
    )
}

/// What the control hash says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorControl {
    pub paused: bool,
    pub by: String,
    pub reason: String,
    pub at_ms: Option<i64>,
}

impl OperatorControl {
    /// Reads the hash's fields (none: the key is absent, the group runs).
    pub fn from_fields(fields: &HashMap<String, String>) -> OperatorControl {
        let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
        OperatorControl {
            paused: fields.get("paused").is_some_and(|v| v == "1"),
            by: text("by"),
            reason: text("reason"),
            at_ms: fields.get("at_ms").and_then(|v| v.parse().ok()),
        }
    }
}

/// The last operator control read, shared between the flush tasks (writers) and the engine.
#[derive(Debug, Default)]
pub struct Control {
    paused: AtomicBool,
    last: Mutex<OperatorControl>,
}

impl Control {
    pub fn set(&self, control: OperatorControl) {
        self.paused.store(control.paused, Ordering::Release);
        *self.last.locked() = control;
    }

    /// Whether the operator wants the group paused.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn last(&self) -> OperatorControl {
        self.last.locked().clone()
    }
}

/// One flush: counts since the last one, the heartbeat, and whether to clear a stop record.
#[derive(Debug, Default)]
pub struct Flush {
    pub counts: HashMap<String, Counts>,
    pub published: HashMap<String, u64>,
    pub snapshot: Snapshot,
    pub clear_stop: bool,
}

/// Writes accumulated counts and the instance heartbeat and reads the operator's control, in
/// one round trip.
pub async fn flush(
    redis: &mut ConnectionManager,
    keys: &StatsKeys,
    identity: &Identity,
    flush: Flush,
) -> redis::RedisResult<OperatorControl> {
    let mut pipe = redis::pipe();
    add_counts(&mut pipe, keys, &flush.counts);
    add_published(&mut pipe, |t| keys.event(t), &keys.group, &flush.published);
    let instance = keys.instance();
    let hset = pipe.cmd("HSET").arg(&instance);
    for (field, value) in flush.snapshot.fields(identity) {
        hset.arg(field).arg(value);
    }
    hset.ignore();
    pipe.cmd("EXPIRE")
        .arg(&instance)
        .arg(HEARTBEAT_TTL_SECS)
        .ignore();
    // The index readers use instead of scanning keys; an expired heartbeat leaves it stale
    // until a reader drops it.
    pipe.cmd("SADD")
        .arg(keys.instances())
        .arg(&keys.instance)
        .ignore();
    if flush.clear_stop {
        pipe.cmd("EVAL")
            .arg(CLEAR_OLDER_STOP)
            .arg(1)
            .arg(keys.stopped())
            .arg(identity.started_at_ms)
            .ignore();
    }
    pipe.cmd("HGETALL").arg(keys.control());
    let (control,): (HashMap<String, String>,) = pipe.query_async(redis).await?;
    Ok(OperatorControl::from_fields(&control))
}

/// Reads the operator's control alone (at start, before the first flush).
pub async fn read_control(
    redis: &mut ConnectionManager,
    keys: &StatsKeys,
) -> redis::RedisResult<OperatorControl> {
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.control())
        .query_async(redis)
        .await?;
    Ok(OperatorControl::from_fields(&fields))
}

/// Writes the flood guard's stop record (kept until an instance runs again).
pub async fn record_stop(
    redis: &mut ConnectionManager,
    keys: &StatsKeys,
    reason: &str,
    at_ms: i64,
) -> redis::RedisResult<()> {
    redis::cmd("HSET")
        .arg(keys.stopped())
        .arg("reason")
        .arg(reason)
        .arg("at_ms")
        .arg(at_ms)
        .arg("instance")
        .arg(&keys.instance)
        .query_async(redis)
        .await
}

/// Adds published counts of `source` to the event types' figures (one flush of the ingest API).
pub async fn flush_published(
    redis: &mut ConnectionManager,
    namespace: Option<&str>,
    source: &str,
    counts: &HashMap<String, u64>,
) -> redis::RedisResult<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    add_published(&mut pipe, |t| event_key(namespace, t), source, counts);
    pipe.query_async(redis).await
}

fn add_counts(pipe: &mut redis::Pipeline, keys: &StatsKeys, counts: &HashMap<String, Counts>) {
    let mut total = Counts::default();
    for (event_type, c) in counts {
        increment(pipe, &keys.event(event_type), c);
        total.add(c);
    }
    increment(pipe, &keys.group(), &total);
}

/// Adds the non-zero figures of `counts` to the hash at `key`.
fn increment(pipe: &mut redis::Pipeline, key: &str, counts: &Counts) {
    let fields = counts.fields().map(|(f, v)| (f.to_string(), v));
    for (field, value) in fields.into_iter().chain(counts.durations.fields()) {
        if value > 0 {
            pipe.cmd("HINCRBY").arg(key).arg(field).arg(value).ignore();
        }
    }
}

fn add_published(
    pipe: &mut redis::Pipeline,
    event_key: impl Fn(&str) -> String,
    source: &str,
    counts: &HashMap<String, u64>,
) {
    let by_source = published_by(source);
    for (event_type, count) in counts.iter().filter(|(_, n)| **n > 0) {
        let key = event_key(event_type);
        pipe.cmd("HINCRBY")
            .arg(&key)
            .arg("published")
            .arg(*count)
            .ignore();
        pipe.cmd("HINCRBY")
            .arg(&key)
            .arg(&by_source)
            .arg(*count)
            .ignore();
    }
}

/// The field counting what one source published.
pub fn published_by(source: &str) -> String {
    format!("published_by:{source}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_accumulate_per_type_and_are_taken_once() {
        let mut acc = Accumulator::default();
        acc.record("a", Tally::Completed, Duration::from_millis(10));
        acc.record("a", Tally::Retried, Duration::from_millis(20));
        acc.record("b", Tally::DeadLettered, Duration::from_millis(5));
        acc.record_published("c");
        acc.record_published("c");
        let taken = acc.take();
        assert_eq!(
            taken["a"],
            Counts {
                completed: 1,
                failed: 1,
                retried: 1,
                dead_lettered: 0,
                duration_ms_sum: 10,
                duration_count: 1,
                durations: {
                    let mut h = DurationHistogram::default();
                    h.record(Duration::from_millis(10));
                    h
                },
            }
        );
        assert_eq!(taken["b"].dead_lettered, 1);
        assert!(acc.take().is_empty());
        assert_eq!(acc.take_published(), HashMap::from([("c".to_string(), 2)]));
        assert!(acc.take_published().is_empty());
        let keys = StatsKeys::new(Some("t1"), "payments", "host-1");
        assert_eq!(keys.group(), "circ:t1:stats:group:payments");
        assert_eq!(
            keys.event("payment.initiated"),
            "circ:t1:stats:event:payment.initiated"
        );
        assert_eq!(
            event_key(Some("t1"), "payment.initiated"),
            keys.event("payment.initiated")
        );
        assert_eq!(
            keys.instance(),
            "circ:t1:stats:group:payments:instance:host-1"
        );
        assert_eq!(keys.stopped(), "circ:t1:stats:group:payments:stopped");
        assert_eq!(keys.control(), "circ:t1:control:group:payments");
        assert_eq!(published_by("ingest"), "published_by:ingest");
    }

    #[test]
    fn the_heartbeat_encodes_lists_and_maps_as_json() {
        let identity = Identity {
            instance: "pod-0".into(),
            host: "node-a".into(),
            pid: 42,
            client_id: "payments-pod-0".into(),
            started_at_ms: 1_000,
        };
        let snapshot = Snapshot {
            active: 2,
            waiting: 7,
            delayed: 1,
            paused: 1,
            partitions: vec!["t.a:0".into(), "t.a:1".into()],
            paused_partitions: BTreeMap::from([("t.a:1".into(), vec!["delay", "operator"])]),
            breakers: BTreeMap::from([("postgres".into(), "half_open")]),
            operator_paused: true,
            updated_at_ms: 2_000,
        };
        let fields: HashMap<&str, String> = snapshot.fields(&identity).into_iter().collect();
        let expected = [
            ("active", "2"),
            ("waiting", "7"),
            ("delayed", "1"),
            ("paused", "1"),
            ("instance", "pod-0"),
            ("host", "node-a"),
            ("pid", "42"),
            ("client_id", "payments-pod-0"),
            ("started_at_ms", "1000"),
            ("updated_at_ms", "2000"),
            ("partitions", r#"["t.a:0","t.a:1"]"#),
            ("paused_partitions", r#"{"t.a:1":["delay","operator"]}"#),
            ("breakers", r#"{"postgres":"half_open"}"#),
            ("operator_paused", "1"),
        ];
        assert_eq!(fields.len(), expected.len());
        for (field, value) in expected {
            assert_eq!(fields[field], value, "{field}");
        }
        let idle = Snapshot::default().fields(&identity);
        let idle: HashMap<&str, String> = idle.into_iter().collect();
        assert_eq!(idle["partitions"], "[]");
        assert_eq!(idle["paused_partitions"], "{}");
        assert_eq!(idle["breakers"], "{}");
        assert_eq!(idle["operator_paused"], "0");
    }

    #[test]
    fn only_paused_one_pauses() {
        let fields = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            OperatorControl::from_fields(&HashMap::new()),
            OperatorControl::default()
        );
        let paused = OperatorControl::from_fields(&fields(&[
            ("paused", "1"),
            ("by", "alice"),
            ("at_ms", "5"),
            ("reason", "db migration"),
        ]));
        assert_eq!(
            paused,
            OperatorControl {
                paused: true,
                by: "alice".into(),
                reason: "db migration".into(),
                at_ms: Some(5),
            }
        );
        assert!(!OperatorControl::from_fields(&fields(&[("paused", "0")])).paused);
        assert!(!OperatorControl::from_fields(&fields(&[("paused", "true")])).paused);
        let control = Control::default();
        assert!(!control.paused());
        control.set(paused.clone());
        assert!(control.paused());
        assert_eq!(control.last(), paused);
    }

    #[test]
    fn published_counts_add_up_and_are_taken_once() {
        let published = Published::default();
        published.add("a", 2);
        published.add("a", 3);
        published.add("b", 0);
        assert_eq!(published.take(), HashMap::from([("a".to_string(), 5)]));
        assert!(published.take().is_empty());
    }
}
