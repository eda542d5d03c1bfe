//! The console's index of dead letters: a background reader follows every group's `<group>.dlq`
//! topic from its start and keeps a summary of each record (headers only, never the payload),
//! newest kept past a bound per group; operators' decisions are reloaded from
//! `dead_letter_resolutions` every few seconds. Lists and counts read this index: no request
//! ever scans a topic. Details and actions fetch the one record they need.

use circulatory::sync::RwLockExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use circulatory::catalog::Catalog;
use circulatory::consumer::dead_letters::DeadLetter;
use circulatory::kafka::{self, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use sqlx::PgPool;

/// Characters of an error message kept in a summary.
const MAX_ERROR_CHARS: usize = 512;
/// Characters of a key kept in a summary.
const MAX_KEY_CHARS: usize = 128;
/// How often new dead-letter partitions are looked for.
const METADATA_EVERY: Duration = Duration::from_secs(15);

/// Where a dead letter came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OriginView {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One dead letter, without its payload.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `<partition>-<offset>` in the group's dead-letter topic.
    pub id: String,
    pub group: String,
    pub partition: i32,
    pub offset: i64,
    pub event_id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// `exhausted` (retries used up), `permanent`, `undecodable`, ...
    pub reason: Option<String>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub attempts: u32,
    pub replays: u32,
    pub dead_lettered_at_ms: Option<i64>,
    pub origin: Option<OriginView>,
    pub correlation_id: Option<String>,
    pub key: Option<String>,
    pub size_bytes: usize,
    /// `open`, or the decision taken: `replayed`, `discarded`, `quarantined`, `edited`.
    pub state: String,
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

impl Summary {
    pub fn of(group: &str, letter: &DeadLetter) -> Summary {
        let header = |name: &str| {
            letter.record.headers().and_then(|h| {
                h.iter()
                    .filter(|h| h.key == name)
                    .last()
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        Summary {
            id: letter.id.clone(),
            group: group.to_string(),
            partition: letter.partition,
            offset: letter.offset,
            event_id: letter.event_id.clone(),
            event_type: letter.event_type.clone(),
            reason: letter.reason.clone(),
            error_class: letter.error_class.clone(),
            error: letter
                .error_message
                .as_deref()
                .map(|e| truncate(e, MAX_ERROR_CHARS)),
            attempts: letter.attempt,
            replays: letter.replays,
            dead_lettered_at_ms: letter.dead_lettered_at_ms,
            origin: letter.origin.as_ref().map(|o| OriginView {
                topic: o.topic.clone(),
                partition: o.partition,
                offset: o.offset,
            }),
            correlation_id: header(circulatory::cloudevents::header::CORRELATION_ID),
            key: letter
                .record
                .key()
                .map(|k| truncate(&String::from_utf8_lossy(k), MAX_KEY_CHARS)),
            size_bytes: letter.record.payload().map_or(0, <[u8]>::len),
            state: "open".into(),
        }
    }
}

/// One group's letters.
#[derive(Debug, Default)]
pub struct GroupLetters {
    pub topic: String,
    /// Oldest first.
    pub letters: VecDeque<Summary>,
    /// Records read from the topic, including those past the bound.
    pub total: u64,
}

/// Counts for the queue views and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DlqFigures {
    /// Letters nobody decided on yet.
    pub open: u64,
    pub quarantined: u64,
    /// Every record ever written to the group's dead-letter topic (still retained).
    pub total: u64,
    pub oldest_open_at_ms: Option<i64>,
}

/// The index, shared by the reader and the routes.
pub struct DeadLetterIndex {
    groups: RwLock<HashMap<String, GroupLetters>>,
    /// `(topic, partition, offset)` → decision.
    resolutions: RwLock<HashMap<(String, i32, i64), String>>,
    max_per_group: usize,
    /// Set once every partition was read up to the end seen at start.
    caught_up: AtomicBool,
}

impl DeadLetterIndex {
    pub fn new(catalog: &Catalog, max_per_group: usize) -> DeadLetterIndex {
        let groups = catalog
            .topology()
            .groups
            .values()
            .map(|g| {
                (
                    g.name.clone(),
                    GroupLetters {
                        topic: catalog.topic_name(&g.dead_letter_topic_base()),
                        ..GroupLetters::default()
                    },
                )
            })
            .collect();
        DeadLetterIndex {
            groups: RwLock::new(groups),
            resolutions: RwLock::default(),
            max_per_group: max_per_group.max(1),
            caught_up: AtomicBool::new(false),
        }
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    fn topic_groups(&self) -> HashMap<String, String> {
        self.groups
            .reading()
            .iter()
            .map(|(g, l)| (l.topic.clone(), g.clone()))
            .collect()
    }

    pub fn topic_of(&self, group: &str) -> Option<String> {
        self.groups.reading().get(group).map(|l| l.topic.clone())
    }

    fn add(&self, group: &str, letter: &DeadLetter) {
        let mut groups = self.groups.writing();
        if let Some(g) = groups.get_mut(group) {
            g.total += 1;
            g.letters.push_back(Summary::of(group, letter));
            while g.letters.len() > self.max_per_group {
                g.letters.pop_front();
            }
        }
    }

    /// Records a decision at once (the reload confirms it later).
    pub fn set_resolution(&self, topic: &str, partition: i32, offset: i64, action: &str) {
        self.resolutions
            .writing()
            .insert((topic.to_string(), partition, offset), action.to_string());
    }

    fn state_of(&self, topic: &str, s: &Summary) -> String {
        self.resolutions
            .reading()
            .get(&(topic.to_string(), s.partition, s.offset))
            .cloned()
            .unwrap_or_else(|| "open".into())
    }

    /// Every summary of `group` (all groups when `None`) with its current state, newest first,
    /// kept by `keep`.
    pub fn select(&self, group: Option<&str>, keep: impl Fn(&Summary) -> bool) -> Vec<Summary> {
        let groups = self.groups.reading();
        let mut out: Vec<Summary> = groups
            .iter()
            .filter(|(g, _)| group.is_none_or(|want| want == g.as_str()))
            .flat_map(|(_, l)| {
                l.letters.iter().map(|s| {
                    let mut s = s.clone();
                    s.state = self.state_of(&l.topic, &s);
                    s
                })
            })
            .filter(|s| keep(s))
            .collect();
        out.sort_by(|a, b| {
            (b.dead_lettered_at_ms, &b.group, b.partition, b.offset).cmp(&(
                a.dead_lettered_at_ms,
                &a.group,
                a.partition,
                a.offset,
            ))
        });
        out
    }

    /// One letter's summary.
    pub fn get(&self, group: &str, id: &str) -> Option<Summary> {
        self.select(Some(group), |s| s.id == id).pop()
    }

    pub fn figures(&self) -> HashMap<String, DlqFigures> {
        let groups = self.groups.reading();
        groups
            .iter()
            .map(|(g, l)| {
                let mut f = DlqFigures {
                    total: l.total,
                    ..DlqFigures::default()
                };
                for s in &l.letters {
                    match self.state_of(&l.topic, s).as_str() {
                        "open" => {
                            f.open += 1;
                            f.oldest_open_at_ms = match (f.oldest_open_at_ms, s.dead_lettered_at_ms)
                            {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                        }
                        "quarantined" => f.quarantined += 1,
                        _ => {}
                    }
                }
                (g.clone(), f)
            })
            .collect()
    }

    /// Reloads every decision from PostgreSQL.
    pub async fn reload_resolutions(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let topics: Vec<String> = self.topic_groups().into_keys().collect();
        let rows: Vec<(String, i32, i64, String)> = sqlx::query_as(
            "SELECT dlq_topic, dlq_partition, dlq_offset, action \
             FROM dead_letter_resolutions WHERE dlq_topic = ANY($1)",
        )
        .bind(&topics)
        .fetch_all(pool)
        .await?;
        let fresh: HashMap<(String, i32, i64), String> = rows
            .into_iter()
            .map(|(t, p, o, a)| ((t, p, o), a))
            .collect();
        *self.resolutions.writing() = fresh;
        Ok(())
    }

    /// Follows every dead-letter topic until `stop` is set (run on a thread of its own).
    pub fn follow(self: Arc<Self>, kafka: KafkaConfig, stop: Arc<AtomicBool>) {
        let reader: BaseConsumer = match kafka::reader(&KafkaConfig {
            client_id: format!("{}-dead-letters", kafka.client_id),
            ..kafka
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "dead-letter reader");
                return;
            }
        };
        let by_topic = self.topic_groups();
        let mut assigned: HashMap<(String, i32), i64> = HashMap::new();
        let mut last_metadata: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if last_metadata.is_none_or(|t| t.elapsed() >= METADATA_EVERY) {
                last_metadata = Some(Instant::now());
                assign_new(&reader, &by_topic, &mut assigned);
            }
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    if let Some(group) = by_topic.get(&key.0) {
                        self.add(group, &DeadLetter::from_record(m.detach()));
                    }
                    if assigned
                        .get(&key)
                        .is_some_and(|end| m_offset_reached(&m, *end))
                    {
                        assigned.insert(key, -1);
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "dead-letter reader"),
                None => {}
            }
            if !self.caught_up() && assigned.values().all(|end| *end < 0) {
                self.caught_up.store(true, Ordering::Relaxed);
            }
        }
    }
}

fn m_offset_reached(m: &rdkafka::message::BorrowedMessage<'_>, end: i64) -> bool {
    end >= 0 && m.offset() + 1 >= end
}

/// Adds partitions not read yet, from their start; remembers each one's end at that moment
/// (`-1` once reached) to know when the index caught up.
fn assign_new(
    reader: &BaseConsumer,
    by_topic: &HashMap<String, String>,
    assigned: &mut HashMap<(String, i32), i64>,
) {
    let Ok(metadata) = reader.fetch_metadata(None, Duration::from_secs(5)) else {
        return;
    };
    let mut add = TopicPartitionList::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| by_topic.contains_key(t.name()))
    {
        for p in topic.partitions() {
            let key = (topic.name().to_string(), p.id());
            if assigned.contains_key(&key) {
                continue;
            }
            let end = reader
                .fetch_watermarks(&key.0, key.1, Duration::from_secs(5))
                .map(|(low, high)| if high > low { high } else { -1 })
                .unwrap_or(-1);
            let _ = add.add_partition_offset(&key.0, key.1, Offset::Beginning);
            assigned.insert(key, end);
        }
    }
    if add.count() > 0 {
        if let Err(e) = reader.incremental_assign(&add) {
            tracing::warn!(error = %e, "dead-letter reader: assign");
        }
    }
}
