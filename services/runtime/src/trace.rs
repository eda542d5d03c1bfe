//! The trace index: where each event was written and what each group did with it, so an
//! operator finds an event by its id or correlation id without scanning a topic.
//!
//! Kept in Redis for a bounded window (24 h by default, the idempotency window), one hash per
//! event and one sorted set per correlation id:
//!
//! - `circ:<ns>:trace:event:<id>` (hash): `type`, `topic`, `partition`, `offset` (where the
//!   broker acknowledged it), `time_ms`, `source`, `correlation_id`; `cause` (the event whose
//!   handling emitted it); `caused:<child id>` = the child's type, one per event it caused;
//!   `step:<group>` = the last thing that group reported doing with it ([`Step`], JSON).
//! - `circ:<ns>:trace:correlation:<id>` (sorted set): the ids of the events carrying that
//!   correlation id, scored by their time, the newest [`CORRELATION_KEPT`] kept.
//!
//! Every write renews the key's expiry. Writers are the publisher (a record acknowledged by the
//! broker) and the consumer engine (a hand-off to a retry or dead-letter topic, success after a
//! failure, the events a handler emitted). A group's first-attempt success is not written: it is
//! the group's committed offset passing the event's offset, which Kafka already keeps.
//!
//! Writing never slows the pipeline: entries go through a bounded queue to one task that writes
//! them in pipelines, at most [`TraceSettings::max_per_sec`] a second. When the queue is full
//! (Redis slow or away, or a burst over the ceiling) entries are dropped and counted
//! (`circulatory_trace_dropped_total`): the index is a guide, the topics are the record.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Entries waiting to be written, at most.
pub const QUEUE_CAPACITY: usize = 16_384;
/// Entries written in one pipeline, at most.
const BATCH: usize = 512;
/// Event ids kept per correlation id (the newest).
pub const CORRELATION_KEPT: isize = 1_000;
/// Longest error message kept in a step.
const MAX_ERROR: usize = 512;
/// The default window: as long as an event id is remembered for idempotency.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The default ceiling on entries written per second by one process. Redis spends about 10 µs
/// on an event's entry, so this keeps the index under about 5 % of a Redis core per process;
/// past it entries are dropped (and counted), not queued.
pub const DEFAULT_MAX_PER_SEC: u32 = 5_000;

/// How long the index keeps entries and how fast one process may write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceSettings {
    /// Zero turns the index off.
    pub window: Duration,
    /// Entries per second at most; zero for no ceiling.
    pub max_per_sec: u32,
}

impl Default for TraceSettings {
    fn default() -> TraceSettings {
        TraceSettings {
            window: DEFAULT_WINDOW,
            max_per_sec: DEFAULT_MAX_PER_SEC,
        }
    }
}

/// An event the broker acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub id: String,
    pub event_type: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub time_ms: i64,
    pub source: String,
    pub correlation_id: Option<String>,
}

/// What a publisher knows of an event before the broker placed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub time_ms: i64,
    pub source: String,
    pub correlation_id: Option<String>,
}

impl Note {
    /// The entry for the event once acknowledged at `partition`/`offset`.
    pub fn written(
        self,
        id: &str,
        event_type: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Written {
        Written {
            id: id.to_string(),
            event_type: event_type.to_string(),
            topic: topic.to_string(),
            partition,
            offset,
            time_ms: self.time_ms,
            source: self.source,
            correlation_id: self.correlation_id,
        }
    }
}

/// What a group last did with an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub state: StepState,
    /// The attempt this step is about: the next attempt when retrying, the failed one when
    /// dead-lettered, the successful one when processed.
    pub attempt: u32,
    /// When a retry becomes due, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub due_ms: Option<i64>,
    /// The retry or dead-letter topic the event was handed to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// When the group reported it, ms since the epoch.
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Handed to a retry topic, to run again at `due_ms`.
    Retrying,
    /// Handed to the group's dead letters.
    DeadLettered,
    /// Handled successfully after an earlier failure or a replay.
    Processed,
}

/// Where a failed event was first read, so an event written by another producer is located too.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub event_type: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Written(Written),
    Step {
        id: String,
        group: String,
        step: Step,
        origin: Option<Location>,
    },
    Caused {
        parent: String,
        children: Vec<(String, String)>,
    },
}

/// One Redis command of an entry, before it is packed.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    Set(String, Vec<(String, String)>),
    SetIfAbsent(String, String, String),
    AddToCorrelation(String, i64, String),
    /// What [`coalesce`] makes of a batch's `AddToCorrelation`s on one key: (score, member).
    AddManyToCorrelation(String, Vec<(i64, String)>),
    Expire(String),
    TrimCorrelation(String),
}

/// Writes trace entries in the background. Cheap to clone; a disabled index ignores entries.
#[derive(Clone)]
pub struct TraceIndex {
    queue: Option<mpsc::Sender<Entry>>,
    dropped: prometheus::IntCounter,
}

impl std::fmt::Debug for TraceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceIndex")
            .field("enabled", &self.queue.is_some())
            .finish()
    }
}

/// The name of the counter of dropped entries.
pub const DROPPED_METRIC: &str = "circulatory_trace_dropped_total";

/// `circulatory_trace_dropped_total`, not registered.
pub fn dropped_counter() -> prometheus::IntCounter {
    prometheus::IntCounter::new(
        DROPPED_METRIC,
        "Trace index entries dropped because the writer's queue was full (Redis slow or away)",
    )
    .expect("valid metric")
}

/// The Redis keys of the trace index.
#[derive(Debug, Clone)]
pub struct TraceKeys {
    prefix: String,
}

impl TraceKeys {
    pub fn new(namespace: Option<&str>) -> TraceKeys {
        TraceKeys {
            prefix: crate::catalog::redis_key(namespace, "trace"),
        }
    }

    pub fn event(&self, id: &str) -> String {
        format!("{}:event:{id}", self.prefix)
    }

    pub fn correlation(&self, id: &str) -> String {
        format!("{}:correlation:{id}", self.prefix)
    }
}

impl TraceIndex {
    /// An index that writes nothing.
    pub fn disabled() -> TraceIndex {
        TraceIndex {
            queue: None,
            dropped: dropped_counter(),
        }
    }

    /// Starts the writer task; a zero window disables the index.
    pub fn spawn(
        redis: ConnectionManager,
        namespace: Option<&str>,
        settings: TraceSettings,
    ) -> TraceIndex {
        if settings.window.is_zero() {
            return TraceIndex::disabled();
        }
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer = Writer {
            redis,
            keys: TraceKeys::new(namespace),
            window: settings.window,
            max_per_sec: settings.max_per_sec,
        };
        tokio::spawn(writer.run(receiver));
        TraceIndex {
            queue: Some(queue),
            dropped: dropped_counter(),
        }
    }

    /// Counts dropped entries in `dropped` (a counter already registered elsewhere).
    pub fn counting(mut self, dropped: prometheus::IntCounter) -> TraceIndex {
        self.dropped = dropped;
        self
    }

    /// Adds `circulatory_trace_dropped_total` to `registry`.
    pub fn register(&self, registry: &prometheus::Registry) {
        crate::metrics::declare(registry).existing(DROPPED_METRIC, self.dropped.clone());
    }

    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    fn send(&self, entry: Entry) {
        if let Some(queue) = &self.queue {
            if queue.try_send(entry).is_err() {
                self.dropped.inc();
            }
        }
    }

    /// The broker acknowledged an event.
    pub fn written(&self, written: Written) {
        self.send(Entry::Written(written));
    }

    /// A group handed an event on, or handled it after a failure. `origin` locates an event
    /// that no Circulatory publisher wrote.
    pub fn step(&self, id: &str, group: &str, mut step: Step, origin: Option<Location>) {
        if let Some(error) = &mut step.error {
            truncate(error, MAX_ERROR);
        }
        self.send(Entry::Step {
            id: id.to_string(),
            group: group.to_string(),
            step,
            origin,
        });
    }

    /// Handling `parent` emitted `children` (id, type).
    pub fn caused(&self, parent: &str, children: Vec<(String, String)>) {
        if !children.is_empty() {
            self.send(Entry::Caused {
                parent: parent.to_string(),
                children,
            });
        }
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

struct Writer {
    redis: ConnectionManager,
    keys: TraceKeys,
    window: Duration,
    max_per_sec: u32,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Entry>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let started = std::time::Instant::now();
            let taken = receiver.recv_many(&mut batch, BATCH).await;
            if taken == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            let all = batch.drain(..).flat_map(|e| writes(&self.keys, e));
            for write in coalesce(all) {
                self.pack(&mut pipe, write);
            }
            if let Err(e) = pipe.query_async::<()>(&mut self.redis).await {
                tracing::warn!(error = %e, "trace index write failed");
            }
            // While the writer rests the queue fills, and what does not fit is dropped.
            let rest = rest_after(taken, started.elapsed(), self.max_per_sec);
            if !rest.is_zero() {
                tokio::time::sleep(rest).await;
            }
        }
    }

    fn pack(&self, pipe: &mut redis::Pipeline, write: Write) {
        let window_ms = self.window.as_millis() as u64;
        match write {
            Write::Set(key, fields) => {
                pipe.hset_multiple(key, &fields).ignore();
            }
            Write::SetIfAbsent(key, field, value) => {
                pipe.hset_nx(key, field, value).ignore();
            }
            Write::AddToCorrelation(key, score, member) => {
                pipe.zadd(key, member, score).ignore();
            }
            Write::AddManyToCorrelation(key, members) => {
                pipe.zadd_multiple(key, &members).ignore();
            }
            Write::Expire(key) => {
                pipe.cmd("PEXPIRE").arg(key).arg(window_ms).ignore();
            }
            Write::TrimCorrelation(key) => {
                pipe.zremrangebyrank(key, 0, -(CORRELATION_KEPT + 1))
                    .ignore();
            }
        }
    }
}

/// How long to rest after writing `entries` in `spent` to stay under `max_per_sec` (0: no
/// ceiling). Waiting for entries counts as spent: a quiet writer never rests.
fn rest_after(entries: usize, spent: Duration, max_per_sec: u32) -> Duration {
    if max_per_sec == 0 {
        return Duration::ZERO;
    }
    let owed = Duration::from_secs_f64(entries as f64 / max_per_sec as f64);
    owed.saturating_sub(spent)
}

/// A batch's writes with fewer commands: the events of one correlation id (a batch request
/// shares one) are added to its set in one command, and that set is trimmed and its expiry
/// renewed once, after them. Everything else keeps its order.
fn coalesce(writes: impl Iterator<Item = Write>) -> Vec<Write> {
    let mut out = Vec::new();
    let mut sets: Vec<(String, Vec<(i64, String)>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for write in writes {
        match write {
            Write::AddToCorrelation(key, score, member) => match index.get(&key) {
                Some(i) => sets[*i].1.push((score, member)),
                None => {
                    index.insert(key.clone(), sets.len());
                    sets.push((key, vec![(score, member)]));
                }
            },
            Write::TrimCorrelation(_) => {}
            Write::Expire(key) if index.contains_key(&key) => {}
            other => out.push(other),
        }
    }
    for (key, members) in sets {
        out.push(Write::AddManyToCorrelation(key.clone(), members));
        out.push(Write::TrimCorrelation(key.clone()));
        out.push(Write::Expire(key));
    }
    out
}

/// The commands one entry needs.
fn writes(keys: &TraceKeys, entry: Entry) -> Vec<Write> {
    match entry {
        Entry::Written(w) => {
            let key = keys.event(&w.id);
            let mut fields = vec![
                ("type".to_string(), w.event_type),
                ("topic".to_string(), w.topic),
                ("partition".to_string(), w.partition.to_string()),
                ("offset".to_string(), w.offset.to_string()),
                ("time_ms".to_string(), w.time_ms.to_string()),
                ("source".to_string(), w.source),
            ];
            let mut out = Vec::with_capacity(5);
            if let Some(correlation) = w.correlation_id {
                let set = keys.correlation(&correlation);
                fields.push(("correlation_id".to_string(), correlation));
                out.push(Write::AddToCorrelation(set.clone(), w.time_ms, w.id));
                out.push(Write::TrimCorrelation(set.clone()));
                out.push(Write::Expire(set));
            }
            out.insert(0, Write::Set(key.clone(), fields));
            out.push(Write::Expire(key));
            out
        }
        Entry::Step {
            id,
            group,
            step,
            origin,
        } => {
            let key = keys.event(&id);
            let json = serde_json::to_string(&step).expect("serializable");
            let mut out = vec![Write::Set(
                key.clone(),
                vec![(format!("step:{group}"), json)],
            )];
            if let Some(origin) = origin {
                for (field, value) in [
                    ("type", origin.event_type),
                    ("topic", origin.topic),
                    ("partition", origin.partition.to_string()),
                    ("offset", origin.offset.to_string()),
                ] {
                    out.push(Write::SetIfAbsent(key.clone(), field.into(), value));
                }
            }
            out.push(Write::Expire(key));
            out
        }
        Entry::Caused { parent, children } => {
            let key = keys.event(&parent);
            let mut out = Vec::with_capacity(2 + 2 * children.len());
            for (id, _) in &children {
                let child = keys.event(id);
                out.push(Write::Set(
                    child.clone(),
                    vec![("cause".to_string(), parent.clone())],
                ));
                out.push(Write::Expire(child));
            }
            let fields = children
                .into_iter()
                .map(|(id, event_type)| (format!("caused:{id}"), event_type))
                .collect();
            out.push(Write::Set(key.clone(), fields));
            out.push(Write::Expire(key));
            out
        }
    }
}

/// What the index knows of one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traced {
    pub id: String,
    pub event_type: Option<String>,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub time_ms: Option<i64>,
    pub source: Option<String>,
    pub correlation_id: Option<String>,
    /// The event whose handling emitted this one.
    pub cause: Option<String>,
    /// The events this one caused: id → type.
    pub caused: BTreeMap<String, String>,
    /// What each group reported: group → step.
    pub steps: BTreeMap<String, Step>,
}

impl Traced {
    /// Reads a trace hash; None when the index holds nothing for `id`.
    pub fn from_fields(id: &str, fields: &BTreeMap<String, String>) -> Option<Traced> {
        if fields.is_empty() {
            return None;
        }
        let text = |name: &str| fields.get(name).cloned();
        let mut traced = Traced {
            id: id.to_string(),
            event_type: text("type"),
            topic: text("topic"),
            partition: text("partition").and_then(|v| v.parse().ok()),
            offset: text("offset").and_then(|v| v.parse().ok()),
            time_ms: text("time_ms").and_then(|v| v.parse().ok()),
            source: text("source"),
            correlation_id: text("correlation_id"),
            cause: text("cause"),
            ..Traced::default()
        };
        for (field, value) in fields {
            if let Some(child) = field.strip_prefix("caused:") {
                traced.caused.insert(child.to_string(), value.clone());
            } else if let Some(group) = field.strip_prefix("step:") {
                if let Ok(step) = serde_json::from_str(value) {
                    traced.steps.insert(group.to_string(), step);
                }
            }
        }
        Some(traced)
    }
}

/// Reads the trace index.
#[derive(Clone)]
pub struct TraceReader {
    redis: ConnectionManager,
    keys: Arc<TraceKeys>,
}

impl TraceReader {
    pub fn new(redis: ConnectionManager, namespace: Option<&str>) -> TraceReader {
        TraceReader {
            redis,
            keys: Arc::new(TraceKeys::new(namespace)),
        }
    }

    /// One event, if the index still holds it.
    pub async fn event(&self, id: &str) -> redis::RedisResult<Option<Traced>> {
        let mut redis = self.redis.clone();
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.event(id))
            .query_async(&mut redis)
            .await?;
        Ok(Traced::from_fields(id, &fields))
    }

    /// The ids of the events carrying `correlation_id`, oldest first, at most `limit`.
    pub async fn correlated(
        &self,
        correlation_id: &str,
        limit: usize,
    ) -> redis::RedisResult<Vec<String>> {
        let mut redis = self.redis.clone();
        redis::cmd("ZRANGE")
            .arg(self.keys.correlation(correlation_id))
            .arg(0)
            .arg(limit.max(1) as isize - 1)
            .query_async(&mut redis)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(correlation: Option<&str>) -> Written {
        Written {
            id: "e1".into(),
            event_type: "post.created".into(),
            topic: "content.normal".into(),
            partition: 3,
            offset: 42,
            time_ms: 1_000,
            source: "/ingest".into(),
            correlation_id: correlation.map(str::to_string),
        }
    }

    /// Applies writes to an in-memory hash, as Redis would.
    fn apply(writes: Vec<Write>, hashes: &mut BTreeMap<String, BTreeMap<String, String>>) {
        for write in writes {
            match write {
                Write::Set(key, fields) => hashes.entry(key).or_default().extend(fields),
                Write::SetIfAbsent(key, field, value) => {
                    hashes.entry(key).or_default().entry(field).or_insert(value);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn a_written_event_reads_back_with_its_location_and_correlation() {
        let keys = TraceKeys::new(Some("t"));
        let out = writes(&keys, Entry::Written(written(Some("c1"))));
        assert!(out.contains(&Write::AddToCorrelation(
            keys.correlation("c1"),
            1_000,
            "e1".into()
        )));
        assert!(out.contains(&Write::TrimCorrelation(keys.correlation("c1"))));
        assert!(out.contains(&Write::Expire(keys.correlation("c1"))));
        assert!(out.contains(&Write::Expire(keys.event("e1"))));
        let mut hashes = BTreeMap::new();
        apply(out, &mut hashes);
        let traced = Traced::from_fields("e1", &hashes[&keys.event("e1")]).unwrap();
        assert_eq!(traced.topic.as_deref(), Some("content.normal"));
        assert_eq!((traced.partition, traced.offset), (Some(3), Some(42)));
        assert_eq!(traced.correlation_id.as_deref(), Some("c1"));
        assert_eq!(traced.event_type.as_deref(), Some("post.created"));
    }

    #[test]
    fn the_writer_rests_only_to_stay_under_its_ceiling() {
        let ms = Duration::from_millis;
        // 512 entries at 20,000/s are owed 25.6 ms: written in 5 ms, it rests the rest.
        let rest = rest_after(512, ms(5), 20_000);
        assert!(rest.abs_diff(Duration::from_micros(20_600)) < Duration::from_micros(1));
        // Entries that trickled in slower than the ceiling, or no ceiling: no rest.
        assert_eq!(rest_after(10, ms(5), 20_000), Duration::ZERO);
        assert_eq!(rest_after(512, ms(1), 0), Duration::ZERO);
        // Over a second of full batches the ceiling holds: 40 batches of 512 owe 1.024 s.
        let total: Duration = (0..40)
            .map(|_| rest_after(512, ms(2), 20_000) + ms(2))
            .sum();
        assert!(total >= ms(1_024), "{total:?}");
    }

    #[test]
    fn a_batch_adds_to_each_correlation_set_once() {
        let keys = TraceKeys::new(None);
        let entries = (0..3).map(|i| {
            let mut w = written(Some(if i < 2 { "c1" } else { "c2" }));
            w.id = format!("e{i}");
            w.time_ms = i;
            Entry::Written(w)
        });
        let out = coalesce(entries.flat_map(|e| writes(&keys, e)));
        let (c1, c2) = (keys.correlation("c1"), keys.correlation("c2"));
        let count = |w: &Write| out.iter().filter(|x| *x == w).count();
        assert_eq!(
            count(&Write::AddManyToCorrelation(
                c1.clone(),
                vec![(0, "e0".into()), (1, "e1".into())]
            )),
            1
        );
        assert_eq!(
            count(&Write::AddManyToCorrelation(
                c2.clone(),
                vec![(2, "e2".into())]
            )),
            1
        );
        for set in [&c1, &c2] {
            assert_eq!(count(&Write::TrimCorrelation(set.clone())), 1);
            assert_eq!(count(&Write::Expire(set.clone())), 1);
        }
        // Each event keeps its own hash and expiry; trimming follows the additions.
        for i in 0..3 {
            assert_eq!(count(&Write::Expire(keys.event(&format!("e{i}")))), 1);
        }
        let added = out
            .iter()
            .position(|w| matches!(w, Write::AddManyToCorrelation(k, _) if *k == c1));
        let trimmed = out
            .iter()
            .position(|w| *w == Write::TrimCorrelation(c1.clone()));
        assert!(added < trimmed);
        assert!(!out.iter().any(|w| matches!(w, Write::AddToCorrelation(..))));
    }

    #[test]
    fn no_correlation_means_no_correlation_set() {
        let keys = TraceKeys::new(None);
        let out = writes(&keys, Entry::Written(written(None)));
        assert!(!out
            .iter()
            .any(|w| matches!(w, Write::AddToCorrelation(..) | Write::TrimCorrelation(_))));
    }

    #[test]
    fn steps_and_children_join_the_event_and_origin_never_overwrites_the_location() {
        let keys = TraceKeys::new(None);
        let mut hashes = BTreeMap::new();
        apply(writes(&keys, Entry::Written(written(None))), &mut hashes);
        let step = Step {
            state: StepState::Retrying,
            attempt: 2,
            due_ms: Some(5_000),
            topic: Some("g.retry.2s".into()),
            error_class: Some("retryable".into()),
            error: Some("boom".into()),
            at_ms: 3_000,
        };
        let origin = Location {
            event_type: "post.created".into(),
            topic: "elsewhere".into(),
            partition: 9,
            offset: 9,
        };
        apply(
            writes(
                &keys,
                Entry::Step {
                    id: "e1".into(),
                    group: "g".into(),
                    step: step.clone(),
                    origin: Some(origin),
                },
            ),
            &mut hashes,
        );
        apply(
            writes(
                &keys,
                Entry::Caused {
                    parent: "e1".into(),
                    children: vec![("e2".into(), "feed.updated".into())],
                },
            ),
            &mut hashes,
        );
        let traced = Traced::from_fields("e1", &hashes[&keys.event("e1")]).unwrap();
        assert_eq!(traced.topic.as_deref(), Some("content.normal"));
        assert_eq!(traced.steps["g"], step);
        assert_eq!(traced.caused["e2"], "feed.updated");
        let child = Traced::from_fields("e2", &hashes[&keys.event("e2")]).unwrap();
        assert_eq!(child.cause.as_deref(), Some("e1"));
    }

    #[test]
    fn a_step_alone_locates_an_event_from_another_producer() {
        let keys = TraceKeys::new(None);
        let mut hashes = BTreeMap::new();
        let step = Step {
            state: StepState::DeadLettered,
            attempt: 1,
            due_ms: None,
            topic: Some("g.dlq".into()),
            error_class: Some("permanent".into()),
            error: None,
            at_ms: 1,
        };
        let origin = Location {
            event_type: "post.created".into(),
            topic: "content.normal".into(),
            partition: 1,
            offset: 7,
        };
        apply(
            writes(
                &keys,
                Entry::Step {
                    id: "x".into(),
                    group: "g".into(),
                    step,
                    origin: Some(origin),
                },
            ),
            &mut hashes,
        );
        let traced = Traced::from_fields("x", &hashes[&keys.event("x")]).unwrap();
        assert_eq!((traced.partition, traced.offset), (Some(1), Some(7)));
        assert_eq!(traced.steps["g"].state, StepState::DeadLettered);
    }

    #[test]
    fn nothing_stored_is_none_and_long_errors_are_cut_on_a_char_boundary() {
        assert_eq!(Traced::from_fields("x", &BTreeMap::new()), None);
        let mut text = "é".repeat(400);
        truncate(&mut text, MAX_ERROR);
        assert!(text.len() <= MAX_ERROR && text.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn a_disabled_index_accepts_and_drops_nothing() {
        let index = TraceIndex::disabled();
        index.written(written(None));
        assert!(!index.is_enabled());
        assert_eq!(index.dropped.get(), 0);
    }
}
