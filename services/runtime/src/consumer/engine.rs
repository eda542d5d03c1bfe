//! The engine of one consumer group: one Kafka consumer per process, handlers run concurrently
//! under the group's bounds, offsets committed only for finished work.
//!
//! Three kinds of actors share the work:
//!
//! - **The poll thread** owns polling. Rebalance callbacks run there, so a revocation can block
//!   (briefly, bounded by the drain deadline) until the revoked partitions' in-flight events are
//!   finished and their offsets committed, without stalling the async runtime.
//! - **The engine task** receives records, keeps per-key lanes, holds retry records until they are
//!   due, parks events while a circuit breaker is open, pauses partitions for backpressure, delay,
//!   breaker and priority, and decides what runs next.
//! - **Handler tasks** decode, run the handler under the group's timeout, send emitted events and
//!   broadcasts, route failures to the retry or dead-letter topic (awaiting the broker's ack), and
//!   only then mark the offset finished. So an offset is committed only when its event succeeded or
//!   was safely handed on: nothing accepted is lost.

use std::collections::BTreeMap;

// Per-event lookups (partitions, keys, event types) use a fast hasher: the keys come from
// the group's own topics and records, and no map grows beyond the records it holds.
use foldhash::{HashMap, HashMapExt, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Headers;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::consumer::breaker::{BreakerState, CircuitBreaker};
use crate::consumer::dependencies::Dependencies;
use crate::consumer::flood_guard::{Flood, FloodGuard};
use crate::consumer::handler::{Context, Event, Handler, HandlerError};
use crate::consumer::progress::{PartitionProgress, Tp};
use crate::consumer::record::{Record, TopicNames};
use crate::consumer::retry::{self, DeadLetterReason, Failure, NextStop, Origin, RetryState};
use crate::consumer::scheduler::{
    Clock, Command, Completion, Finish, Job, Limits, PauseReason, Scheduler, Tick, Work,
};
use crate::consumer::stats::{self, Accumulator, Control, Identity, Snapshot, StatsKeys, Tally};
use crate::consumer::telemetry::GroupMetrics;
use crate::consumer::trace_steps;
use crate::consumer::transactions::{self, Positions, Transactions};
use crate::kafka::{self, KafkaConfig, ProducerSettings};
use crate::publisher::{EventPublisher, OutboundRecord};
use crate::realtime::{self, RealtimeMessage};
use crate::registry::SchemaRegistry;
use crate::topology::{Group, Tier};
use crate::trace::TraceIndex;

/// Tuning of a consumer group process; the group's own bounds come from `topics.yaml`.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// How long shutdown and revocation wait for in-flight events. Shorter than the session
    /// timeout, so a slow handler never makes the group evict this member.
    pub drain_timeout: Duration,
    pub session_timeout: Duration,
    /// Consecutive dependency failures that open a breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker first waits before one trial; each failed trial makes the next
    /// wait longer, up to `breaker_cool_down`.
    pub breaker_first_cool_down: Duration,
    /// The longest an open breaker waits before one trial.
    pub breaker_cool_down: Duration,
    /// Share of the in-flight slots lower tiers keep (and are held to) while a higher tier has
    /// a backlog: the starvation guard.
    pub low_tier_min_share: f64,
    /// The dead-letter flood guard: over the last `flood_window` outcomes (at least
    /// `flood_min_events`), a dead-letter ratio at or above `flood_max_ratio` stops the group.
    pub flood_window: usize,
    pub flood_min_events: usize,
    pub flood_max_ratio: f64,
    /// Bound on records buffered between the poll thread and the engine.
    pub channel_capacity: usize,
    /// Events received and waiting for a handler slot (ready, or queued behind their key). At
    /// this bound the engine stops taking records from the client, whose bounded prefetch then
    /// stops fetching: memory stays bounded without pausing partitions (a pause makes the
    /// client drop what it prefetched, so the same records would be fetched again).
    pub max_waiting: usize,
    /// Replaces the group's `max_in_flight` from `topics.yaml` (per-process tuning).
    pub max_in_flight: Option<usize>,
    /// Replaces the group's handler `timeout` from `topics.yaml`.
    pub handler_timeout: Option<Duration>,
    /// Transactional groups: how often staged records and offsets commit. Emitted events
    /// become visible to `read_committed` readers at the next commit.
    pub transaction_interval: Duration,
    /// Transactional groups: the producer's `transactional.id`. A stable id per instance (a pod
    /// name) lets a restarted instance fence its predecessor and abort its open transaction at
    /// once; the default (group, host, process) relies on the transaction timeout instead.
    pub transactional_id: Option<String>,
    /// Static membership (Kafka's `group.instance.id`): a stable id per replica, unique in the
    /// group (a pod name). An instance restarted under the same id takes its partitions back at
    /// once instead of waiting for the session timeout to expire its predecessor, and a restart
    /// moves no partition. The other side: a member that stops and does not come back keeps its
    /// partitions unprocessed for the session timeout, also after a clean stop.
    pub instance_id: Option<String>,
    /// How long the trace index keeps what this group reports and how fast it may write
    /// ([`crate::trace`]); a zero window turns the group's reports off. Needs Redis.
    pub trace: crate::trace::TraceSettings,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            drain_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(30),
            breaker_threshold: 5,
            breaker_first_cool_down: Duration::from_secs(1),
            breaker_cool_down: Duration::from_secs(60),
            low_tier_min_share: 0.1,
            flood_window: 200,
            flood_min_events: 50,
            flood_max_ratio: 0.95,
            channel_capacity: 512,
            max_waiting: 4096,
            max_in_flight: None,
            handler_timeout: None,
            transaction_interval: Duration::from_millis(100),
            transactional_id: None,
            instance_id: None,
            trace: crate::trace::TraceSettings::default(),
        }
    }
}

/// Why a group stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("transaction: {0}")]
    Transaction(String),
    #[error(
        "dead-letter flood guard tripped: {dead} of the last {window} events were dead-lettered \
         (last error: {last_error}); the group stopped instead of dead-lettering the whole topic"
    )]
    DeadLetterFlood {
        dead: usize,
        window: usize,
        last_error: String,
    },
}

#[derive(Debug, Default)]
struct PartitionEntry {
    progress: PartitionProgress,
    in_flight: usize,
    revoking: bool,
    paused: HashSet<PauseReason>,
    /// Consumer lag from the client's statistics.
    lag: i64,
}

#[derive(Debug, Default)]
struct Table {
    partitions: HashMap<Tp, PartitionEntry>,
    /// The highest tier with a lag the client reported (refreshed with its statistics).
    lagging_tier: Option<Tier>,
}

/// State shared by the poll thread, the engine and handler tasks.
struct Shared {
    table: Mutex<Table>,
    changed: Condvar,
    breakers: Mutex<Dependencies>,
    /// Priority tier of each main topic.
    tiers: HashMap<String, Tier>,
    drain_timeout: Duration,
    metrics: GroupMetrics,
    /// Set for transactional groups.
    transactions: Option<Arc<Transactions>>,
    /// The engine applies an operator pause: partitions assigned meanwhile pause at once.
    operator_paused: AtomicBool,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn breakers(&self) -> std::sync::MutexGuard<'_, Dependencies> {
        self.breakers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Positions for Shared {
    fn snapshot(&self, take: &mut dyn FnMut()) -> Vec<(Tp, i64)> {
        let table = self.table();
        take();
        table
            .partitions
            .iter()
            .filter_map(|(tp, e)| e.progress.commit_position().map(|p| (tp.clone(), p)))
            .collect()
    }
}

impl Shared {
    fn update_paused_gauge(&self) {
        let paused = self
            .table()
            .partitions
            .values()
            .filter(|e| !e.paused.is_empty())
            .count();
        self.metrics.paused.set(paused as i64);
    }

    fn assigned(&self) -> Vec<Tp> {
        self.table().partitions.keys().cloned().collect()
    }
}

/// Adds or removes one reason to pause each partition; the client pauses a partition with any
/// reason and resumes it when none is left. Used by the engine and the poll thread.
fn set_pause(shared: &Shared, consumer: &GroupConsumer, tps: &[Tp], reason: PauseReason, on: bool) {
    let mut change = TopicPartitionList::new();
    {
        let mut table = shared.table();
        for tp in tps {
            let Some(entry) = table.partitions.get_mut(tp) else {
                continue;
            };
            let was_running = entry.paused.is_empty();
            if on {
                entry.paused.insert(reason);
            } else {
                entry.paused.remove(&reason);
            }
            if was_running != entry.paused.is_empty() {
                change.add_partition(&tp.0, tp.1);
            }
        }
    }
    if change.count() == 0 {
        return;
    }
    let result = if on {
        consumer.pause(&change)
    } else {
        consumer.resume(&change)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "pause/resume");
    }
    shared.update_paused_gauge();
}

/// The consumer's context: rebalance callbacks and statistics, on the poll thread.
pub(crate) struct GroupContext {
    shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut table = self.shared.table();
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if let Some(entry) = table
                    .partitions
                    .get_mut(&(Arc::from(topic.as_str()), *partition))
                {
                    entry.lag = p.consumer_lag.max(0);
                    self.shared
                        .metrics
                        .lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(entry.lag);
                }
            }
        }
        table.lagging_tier = table
            .partitions
            .iter()
            .filter(|(_, e)| e.lag > 0)
            .filter_map(|(tp, _)| self.shared.tiers.get(&*tp.0).copied())
            .min();
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let revoked: Vec<Tp> = list
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        let deadline = Instant::now() + self.shared.drain_timeout;
        let mut table = self.shared.table();
        for tp in &revoked {
            if let Some(entry) = table.partitions.get_mut(tp) {
                entry.revoking = true;
            }
        }
        // Let in-flight work of the revoked partitions finish (handler tasks run on the async
        // runtime, not on this thread), then commit what is finished.
        while revoked
            .iter()
            .any(|tp| table.partitions.get(tp).is_some_and(|e| e.in_flight > 0))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    "revocation: in-flight events did not finish within the drain timeout"
                );
                break;
            }
            table = self
                .shared
                .changed
                .wait_timeout(table, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if let Some(transactions) = self.shared.transactions.clone() {
            // The revoked partitions' staged records and positions commit in one transaction
            // before the next owner starts from them.
            drop(table);
            if !transactions.flush(deadline.max(Instant::now() + Duration::from_secs(1))) {
                tracing::warn!("revocation: the final transaction did not commit in time");
            }
            let mut table = self.shared.table();
            for tp in &revoked {
                table.partitions.remove(tp);
            }
            tracing::info!(partitions = revoked.len(), "partitions revoked");
            return;
        }
        let mut commit = TopicPartitionList::new();
        for tp in &revoked {
            if let Some(position) = table
                .partitions
                .get(tp)
                .and_then(|e| e.progress.commit_position())
            {
                let _ = commit.add_partition_offset(&tp.0, tp.1, Offset::Offset(position));
            }
            table.partitions.remove(tp);
        }
        drop(table);
        if commit.count() > 0 {
            if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                tracing::warn!(error = %e, "revocation: commit failed");
            }
        }
        tracing::info!(partitions = revoked.len(), "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned: Vec<Tp> = list
                    .elements()
                    .iter()
                    .map(|e| (Arc::from(e.topic()), e.partition()))
                    .collect();
                {
                    let mut table = self.shared.table();
                    for tp in &assigned {
                        table.partitions.entry(tp.clone()).or_default();
                    }
                }
                // Under an operator pause, new partitions start paused (the engine's tick
                // re-applies the pause too, which settles a race with a resume).
                if self.shared.operator_paused.load(Ordering::Acquire) {
                    set_pause(
                        &self.shared,
                        consumer,
                        &assigned,
                        PauseReason::Operator,
                        true,
                    );
                }
                tracing::info!(partitions = list.count(), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

pub(crate) type GroupConsumer = BaseConsumer<GroupContext>;

/// Everything a handler task needs.
struct Runtime {
    catalog: Arc<Catalog>,
    group: Group,
    group_name: Arc<str>,
    source: Arc<str>,
    handlers: HashMap<String, Registered>,
    registry: Arc<SchemaRegistry>,
    producer: FutureProducer,
    publisher: EventPublisher,
    redis: Option<ConnectionManager>,
    consumer: Arc<GroupConsumer>,
    shared: Arc<Shared>,
    stats: Mutex<Accumulator>,
}

impl Runtime {
    fn tally(&self, event_type: &str, tally: Tally, duration: Duration) {
        self.stats().record(event_type, tally, duration);
    }

    /// Counts events the group emitted, for the figures' `published_by:<group>`.
    fn count_published<'a>(&self, event_types: impl IntoIterator<Item = &'a str>) {
        let mut stats = self.stats();
        for event_type in event_types {
            stats.record_published(event_type);
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handler with its event type's metrics, resolved once (not per event).
struct Registered {
    handler: Arc<dyn Handler>,
    duration: prometheus::Histogram,
    processed: prometheus::IntCounter,
    failed: prometheus::IntCounter,
}

impl Registered {
    fn new(handler: Arc<dyn Handler>, metrics: &GroupMetrics, event_type: &str) -> Registered {
        Registered {
            handler,
            duration: metrics.duration.with_label_values(&[event_type]),
            processed: metrics.processed.with_label_values(&[event_type]),
            failed: metrics.failed.with_label_values(&[event_type]),
        }
    }
}

/// What a handler task reports back to the engine.
enum Outcome {
    /// Finished: succeeded, skipped, retried or dead-lettered. The offset is marked finished.
    Done {
        dead_lettered: bool,
        error: Option<String>,
        /// Transactional groups: the records this event produced, committed with its offset.
        records: Vec<OutboundRecord>,
    },
    /// A dependency's breaker is open: the event waits in memory, its offset stays pending.
    Parked { dependency: String },
}

/// Builds and runs one consumer group.
pub struct ConsumerGroup {
    catalog: Arc<Catalog>,
    group: Group,
    handlers: HashMap<String, Arc<dyn Handler>>,
    kafka: KafkaConfig,
    registry: Arc<SchemaRegistry>,
    redis: Option<ConnectionManager>,
    settings: GroupSettings,
    metrics: Option<GroupMetrics>,
    transactional: bool,
}

impl ConsumerGroup {
    /// A group declared in the catalog's topology.
    pub fn new(
        catalog: Arc<Catalog>,
        group: &str,
        kafka: KafkaConfig,
        registry: Arc<SchemaRegistry>,
    ) -> Result<ConsumerGroup, ConsumerError> {
        let group = catalog
            .group(group)
            .cloned()
            .ok_or_else(|| ConsumerError::Config(format!("no group `{group}` in the topology")))?;
        Ok(ConsumerGroup {
            catalog,
            group,
            handlers: HashMap::new(),
            kafka,
            registry,
            redis: None,
            settings: GroupSettings::default(),
            metrics: None,
            transactional: false,
        })
    }

    /// Registers the handler of one subscribed event type.
    pub fn handler(mut self, event_type: &str, handler: impl Handler) -> Self {
        self.handlers
            .insert(event_type.to_string(), Arc::new(handler));
        self
    }

    /// Redis for realtime broadcasts requested by handlers.
    pub fn redis(mut self, redis: ConnectionManager) -> Self {
        self.redis = Some(redis);
        self
    }

    pub fn settings(mut self, settings: GroupSettings) -> Self {
        self.settings = settings;
        self
    }

    /// For groups whose only effects are Kafka records: emitted events, retry and dead-letter
    /// hand-offs and the consumed offsets commit atomically in Kafka transactions.
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// Metrics registered by the caller (so a binary serves them on /metrics).
    pub fn metrics(mut self, metrics: GroupMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The group's name, as consumers and topics know it (namespace applied).
    pub fn group_id(&self) -> String {
        self.catalog.topic_name(&self.group.name)
    }

    fn check(&self) -> Result<(), ConsumerError> {
        let mut problems = Vec::new();
        for event_type in &self.group.subscribe {
            if !self.handlers.contains_key(event_type) {
                problems.push(format!("no handler for subscribed type `{event_type}`"));
            }
        }
        for event_type in self.handlers.keys() {
            if !self.group.subscribe.contains(event_type) {
                problems.push(format!(
                    "a handler for `{event_type}`, which the group does not subscribe to"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConsumerError::Config(problems.join("; ")))
        }
    }

    /// Runs until `shutdown` is cancelled (then drains and commits) or the flood guard trips.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        self.check()?;
        let group_id = self.group_id();
        let main_topics = self.catalog.group_topics(&self.group);
        // Retry rungs and the replay topic: records that already failed once, read before the
        // main topics and run when due (replays are due at once).
        let retry_topics: Vec<String> = self
            .group
            .retry_delays
            .iter()
            .map(|d| self.catalog.topic_name(&self.group.retry_topic_base(*d)))
            .chain(std::iter::once(
                self.catalog.topic_name(&self.group.replay_topic_base()),
            ))
            .collect();
        let tiers: HashMap<String, Tier> = self
            .group
            .subscribe
            .iter()
            .filter_map(|t| self.catalog.event(t))
            .filter_map(|e| e.topic.clone().map(|topic| (topic, e.route.tier)))
            .collect();

        let metrics = self
            .metrics
            .unwrap_or_else(|| GroupMetrics::new(&prometheus::Registry::new()));
        let shared = Arc::new(Shared {
            table: Mutex::default(),
            tiers: tiers.clone(),
            changed: Condvar::new(),
            breakers: Mutex::new(Dependencies::new(CircuitBreaker::new(
                self.settings.breaker_threshold,
                self.settings.breaker_first_cool_down,
                self.settings.breaker_cool_down,
            ))),
            drain_timeout: self.settings.drain_timeout,
            metrics,
            transactions: self
                .transactional
                .then(|| Transactions::new(self.settings.transaction_interval)),
            operator_paused: AtomicBool::new(false),
        });
        let identity = Arc::new(identity(&self.kafka, &group_id, &self.settings));
        let stats_keys = StatsKeys::new(
            self.catalog.namespace(),
            &self.group.name,
            &identity.instance,
        );
        let control = Arc::new(Control::default());
        let operator_paused = initial_control(self.redis.clone(), &stats_keys, &control).await;
        shared
            .operator_paused
            .store(operator_paused, Ordering::Release);
        let consumer = Arc::new(create_consumer(
            &self.kafka,
            &group_id,
            &identity.client_id,
            &self.settings,
            shared.clone(),
        )?);
        let topics: Vec<&str> = main_topics
            .iter()
            .chain(&retry_topics)
            .map(String::as_str)
            .collect();
        let trace = match &self.redis {
            Some(redis) => {
                TraceIndex::spawn(redis.clone(), self.catalog.namespace(), self.settings.trace)
                    .counting(shared.metrics.trace_dropped.clone())
            }
            None => TraceIndex::disabled(),
        };
        let committer = match &shared.transactions {
            Some(txns) => {
                // A stable instance is a stable transactional id: its restart fences the
                // predecessor and aborts its open transaction at once.
                let transactional_id =
                    match (&self.settings.transactional_id, &self.settings.instance_id) {
                        (Some(id), _) => id.clone(),
                        (None, Some(instance)) => format!("{group_id}-{instance}"),
                        (None, None) => format!("{group_id}-{}-{}", hostname(), std::process::id()),
                    };
                let producer = kafka::producer(
                    &self.kafka,
                    &ProducerSettings {
                        transactional_id: Some(transactional_id),
                        ..ProducerSettings::default()
                    },
                )?;
                Some(transactions::spawn_committer(
                    txns.clone(),
                    producer,
                    consumer.clone(),
                    shared.clone(),
                    trace.clone(),
                ))
            }
            None => None,
        };
        consumer.subscribe(&topics)?;

        let producer_settings = ProducerSettings::default();
        let producer = kafka::producer(&self.kafka, &producer_settings)?;
        let source: Arc<str> = Arc::from(format!("/circulatory/{}", self.group.name));
        let publisher = EventPublisher::new(
            self.catalog.clone(),
            self.registry.clone(),
            producer.clone(),
            source.to_string(),
        )
        // Until the producer itself gives up: a record reported timed out while still in flight
        // would be retried by the handler and could be written twice.
        .with_publish_timeout(producer_settings.delivery_timeout + Duration::from_secs(1))
        .with_trace(trace);
        let mut group = self.group.clone();
        if let Some(timeout) = self.settings.handler_timeout {
            group.timeout = timeout;
        }
        let runtime = Arc::new(Runtime {
            catalog: self.catalog.clone(),
            group_name: Arc::from(self.group.name.as_str()),
            group,
            source,
            handlers: self
                .handlers
                .into_iter()
                .map(|(event_type, handler)| {
                    let registered = Registered::new(handler, &shared.metrics, &event_type);
                    (event_type, registered)
                })
                .collect(),
            registry: self.registry,
            producer,
            publisher,
            redis: self.redis,
            consumer: consumer.clone(),
            shared: shared.clone(),
            stats: Mutex::default(),
        });

        let (tx, rx) = mpsc::channel(self.settings.channel_capacity.div_ceil(POLL_BATCH).max(1));
        let stop_polling = Arc::new(AtomicBool::new(false));
        let poller = spawn_poll_thread(consumer.clone(), shared.clone(), tx, stop_polling.clone());
        let limits = Limits {
            max_in_flight: self
                .settings
                .max_in_flight
                .unwrap_or(self.group.max_in_flight as usize),
            low_tier_min_share: self.settings.low_tier_min_share,
            max_waiting: self.settings.max_waiting,
            tiers,
            retry_topics: retry_topics.iter().cloned().collect(),
            stores_offsets: shared.transactions.is_none(),
        };
        let flood_guard = FloodGuard::new(
            self.settings.flood_window,
            self.settings.flood_min_events,
            self.settings.flood_max_ratio,
        );
        let mut engine = Engine {
            runtime,
            rx,
            in_flight: JoinSet::new(),
            scheduler: Scheduler::new(limits, flood_guard, operator_paused),
            drain_timeout: self.settings.drain_timeout,
            stats_keys,
            identity,
            control,
            clear_stop: Arc::new(AtomicBool::new(true)),
            next_stats_flush: Instant::now() + STATS_INTERVAL,
        };
        tracing::info!(
            group = %group_id,
            topics = ?topics,
            instance = %engine.identity.instance,
            client_id = %engine.identity.client_id,
            "consumer group started"
        );
        let result = engine.run(shutdown).await;
        if let Err(error @ ConsumerError::DeadLetterFlood { .. }) = &result {
            engine.record_stop(error).await;
        }
        engine.drain().await;
        if let (Some(txns), Some(committer)) = (shared.transactions.clone(), committer) {
            let deadline = Instant::now() + engine.drain_timeout;
            let _ = tokio::task::spawn_blocking(move || {
                if !txns.flush(deadline) {
                    tracing::warn!("shutdown: the final transaction did not commit");
                }
                txns.stop();
                let _ = committer.join();
            })
            .await;
        }
        stop_polling.store(true, Ordering::Relaxed);
        // Unblock the poll thread if it waits on a full channel.
        engine.rx.close();
        while engine.rx.try_recv().is_ok() {}
        let commit_consumer = consumer.clone();
        let transactional = shared.transactions.is_some();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = poller.join();
            if !transactional {
                if let Err(e) = commit_consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(error = %e, "final commit");
                }
            }
            commit_consumer.unsubscribe();
        })
        .await;
        tracing::info!(group = %group_id, "consumer group stopped");
        result
    }
}

/// Who this instance is: its static instance id (else `<host>-<pid>`) and the consumer's
/// client id, distinct per instance so the group's member list matches heartbeats.
fn identity(kafka: &KafkaConfig, group_id: &str, settings: &GroupSettings) -> Identity {
    let host = hostname();
    let pid = std::process::id();
    let instance = settings
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("{host}-{pid}"));
    let client_id = kafka
        .overrides
        .iter()
        .rev()
        .find(|(key, _)| key == "client.id")
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| format!("{group_id}-{instance}"));
    Identity {
        instance,
        host,
        pid,
        client_id,
        started_at_ms: now_ms(),
    }
}

/// How long the first read of the operator's control may take before the group starts anyway.
const CONTROL_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the operator's control once before consuming, so an instance started under a pause
/// processes nothing. Unreachable Redis: the group runs (and keeps asking on every flush).
async fn initial_control(
    redis: Option<ConnectionManager>,
    keys: &StatsKeys,
    control: &Control,
) -> bool {
    let Some(mut redis) = redis else {
        return false;
    };
    match tokio::time::timeout(CONTROL_READ_TIMEOUT, stats::read_control(&mut redis, keys)).await {
        Ok(Ok(state)) => {
            if state.paused {
                tracing::info!(
                    by = %state.by,
                    reason = %state.reason,
                    "operator pause applied: the group starts paused"
                );
            }
            let paused = state.paused;
            control.set(state);
            paused
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not read the operator control; running");
            false
        }
        Err(_) => {
            tracing::warn!("the operator control did not answer in time; running");
            false
        }
    }
}

fn create_consumer(
    kafka: &KafkaConfig,
    group_id: &str,
    client_id: &str,
    settings: &GroupSettings,
    shared: Arc<Shared>,
) -> Result<GroupConsumer, ConsumerError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", client_id)
        .set("group.id", group_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        // Transactional groups commit offsets inside their transactions only.
        .set(
            "enable.auto.commit",
            if shared.transactions.is_some() {
                "false"
            } else {
                "true"
            },
        )
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored only for finished work, never by the client on delivery.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set("statistics.interval.ms", "500")
        .set("enable.partition.eof", "false")
        // Bounded prefetch: at most this much is buffered in the client. Together with the
        // engine's own bound (`max_waiting`) this is all a group process holds; 32 MiB keeps a
        // fetch in flight while the engine drains the previous one.
        .set("queued.max.messages.kbytes", "32768")
        // When that prefetch is full the client waits this long before fetching again (1 s by
        // default): the engine drains 32 MiB far sooner, and waiting a second left the group idle
        // for most of it (measured: 160k records/s with the default, 240k with 10 ms).
        .set("fetch.queue.backoff.ms", "10");
    if let Some(instance) = &settings.instance_id {
        config.set("group.instance.id", instance);
    }
    for (key, value) in &kafka.overrides {
        config.set(key, value);
    }
    Ok(config.create_with_context(GroupContext { shared })?)
}

/// Most records the poll thread hands over at once.
const POLL_BATCH: usize = 64;

/// How long the poll thread waits for room in the channel before it pauses every partition and
/// goes on polling without records.
const FULL_WAIT: Duration = Duration::from_millis(500);

/// Polls on a dedicated thread; records go to the engine in batches over a bounded channel, so
/// a busy topic costs one wake-up per batch rather than one per record.
///
/// The thread never stops polling: rebalance callbacks run inside `poll`, and a member that does
/// not poll within `max.poll.interval.ms` is evicted from the group. When the engine takes no
/// records for [`FULL_WAIT`] (slow handlers with a deep backlog), every partition is paused and
/// polling goes on, without records, until the held batch is handed over.
fn spawn_poll_thread(
    consumer: Arc<GroupConsumer>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Vec<Record>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("circ-poll".into())
        .spawn(move || {
            let mut topics = TopicNames::default();
            let mut held: Option<Vec<Record>> = None;
            let mut paused = false;
            while !stop.load(Ordering::Relaxed) {
                if let Some(mut batch) = held.take() {
                    // The timer is created inside `block_on`, where the runtime is entered.
                    let room = runtime
                        .block_on(async { tokio::time::timeout(FULL_WAIT, tx.reserve()).await });
                    match room {
                        Ok(Ok(permit)) => {
                            permit.send(batch);
                            if paused {
                                let all = shared.assigned();
                                set_pause(&shared, &consumer, &all, PauseReason::Full, false);
                                paused = false;
                            }
                        }
                        Ok(Err(_)) => return,
                        Err(_) => {
                            // Again each time: partitions assigned meanwhile pause too.
                            let all = shared.assigned();
                            set_pause(&shared, &consumer, &all, PauseReason::Full, true);
                            paused = true;
                            // Serves callbacks; a record already handed out before the pause
                            // still belongs to the batch.
                            if let Some(Ok(message)) = consumer.poll(Duration::ZERO) {
                                batch.push(Record::copy(&message, &mut topics));
                            }
                            held = Some(batch);
                        }
                    }
                    continue;
                }
                let mut batch = Vec::new();
                let mut wait = Duration::from_millis(100);
                while batch.len() < POLL_BATCH {
                    match consumer.poll(wait) {
                        Some(Ok(message)) => batch.push(Record::copy(&message, &mut topics)),
                        Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                        None => break,
                    }
                    // Take what the client already has, without waiting for more.
                    wait = Duration::ZERO;
                }
                if !batch.is_empty() {
                    held = Some(batch);
                }
            }
        })
        .expect("spawn the poll thread")
}

/// The async shell around the [`Scheduler`]: feeds it records, completions and ticks, and
/// executes its commands against the client, the handler tasks and Redis.
struct Engine {
    runtime: Arc<Runtime>,
    rx: mpsc::Receiver<Vec<Record>>,
    in_flight: JoinSet<Completion<Record>>,
    scheduler: Scheduler<Record>,
    drain_timeout: Duration,
    stats_keys: StatsKeys,
    identity: Arc<Identity>,
    /// The operator's control as last read from Redis.
    control: Arc<Control>,
    /// A flood guard stop record may be left from an earlier run: deleted by the first flush
    /// that succeeds.
    clear_stop: Arc<AtomicBool>,
    next_stats_flush: Instant,
}

/// How often the operators' figures are flushed (and the operator's control read).
const STATS_INTERVAL: Duration = Duration::from_secs(1);

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn clock() -> Clock {
    Clock {
        now: Instant::now(),
        wall_ms: now_ms(),
    }
}

impl Work for Record {
    fn lane_key(&self) -> Vec<u8> {
        match self.key() {
            Some(key) if !key.is_empty() => key.to_vec(),
            // Keyless records have no order to keep: each is its own lane.
            _ => format!("\u{0}offset:{}", self.offset()).into_bytes(),
        }
    }

    fn due_at_ms(&self) -> i64 {
        self.retry_state().due_at_ms.unwrap_or(0)
    }
}

impl Engine {
    async fn run(&mut self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        // One timer for the whole run: due retries, breaker trials and stats must not wait for
        // a pause in the traffic.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    match done {
                        Ok(completion) => self.on_completion(completion)?,
                        Err(e) => tracing::error!(error = %e, "handler task failed"),
                    }
                }
                // Full: records stay in the client (bounded prefetch) until there is room.
                batch = self.rx.recv(), if self.scheduler.has_room() => match batch {
                    Some(batch) => self.on_batch(batch)?,
                    None => return Ok(()),
                },
                _ = tick.tick() => {
                    if let Some(failure) =
                        self.runtime.shared.transactions.as_ref().and_then(|t| t.failure())
                    {
                        return Err(ConsumerError::Transaction(failure));
                    }
                    self.on_tick()?;
                }
            }
        }
    }

    /// Executes the scheduler's commands, in order, until none is left.
    fn execute(&mut self) -> Result<(), ConsumerError> {
        while let Some(command) = self.scheduler.next_command() {
            match command {
                Command::Start { job, trial } => self.start(job, trial),
                Command::Pause { tps, reason } => self.set_pause(&tps, reason, true),
                Command::Resume { tps, reason } => self.set_pause(&tps, reason, false),
                Command::StoreOffsets(tps) => self.store_positions(tps),
                Command::Stop(Flood {
                    dead,
                    window,
                    last_error,
                }) => {
                    let error = ConsumerError::DeadLetterFlood {
                        dead,
                        window,
                        last_error,
                    };
                    tracing::error!(error = %error, "stopping the group");
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    fn set_pause(&self, tps: &[Tp], reason: PauseReason, on: bool) {
        set_pause(
            &self.runtime.shared,
            &self.runtime.consumer,
            tps,
            reason,
            on,
        );
    }

    /// Records of partitions owned and not being revoked go to the scheduler; the others are
    /// the next owner's to read.
    fn on_batch(&mut self, batch: Vec<Record>) -> Result<(), ConsumerError> {
        let mut accepted = Vec::with_capacity(batch.len());
        {
            let mut table = self.runtime.shared.table();
            for message in batch {
                let tp: Tp = (message.topic_name().clone(), message.partition());
                if let Some(entry) = table.partitions.get_mut(&tp).filter(|e| !e.revoking) {
                    entry.progress.received(message.offset());
                    accepted.push((tp, message));
                }
            }
        }
        self.scheduler.on_records(accepted, clock());
        self.execute()
    }

    fn start(&mut self, job: Job<Record>, trial: bool) {
        let owned = {
            let mut table = self.runtime.shared.table();
            match table.partitions.get_mut(&job.tp) {
                Some(entry) if !entry.revoking => {
                    entry.in_flight += 1;
                    true
                }
                _ => false,
            }
        };
        if !owned {
            // Revoked while it waited: the next owner runs it.
            self.scheduler.on_not_started(job, trial);
            return;
        }
        self.runtime.shared.metrics.in_flight.inc();
        let runtime = self.runtime.clone();
        self.in_flight.spawn(async move {
            let outcome = process(&runtime, &job.tp, &job.work).await;
            let (finish, records) = match outcome {
                Outcome::Done {
                    dead_lettered,
                    error,
                    records,
                } => (
                    Finish::Done {
                        dead_lettered,
                        error,
                    },
                    Some(records),
                ),
                Outcome::Parked { dependency } => (Finish::Parked { dependency }, None),
            };
            let revoked = finish_offset(&runtime, &job.tp, job.work.offset(), records);
            runtime.shared.metrics.in_flight.dec();
            Completion {
                job,
                trial,
                revoked,
                finish,
            }
        });
    }

    fn on_completion(&mut self, completion: Completion<Record>) -> Result<(), ConsumerError> {
        if let Finish::Parked { dependency } = &completion.finish {
            tracing::warn!(dependency = %dependency, "breaker open: event parked, group paused");
        }
        {
            let mut breakers = self.runtime.shared.breakers();
            self.scheduler
                .on_completion(completion, clock(), &mut breakers);
        }
        self.execute()
    }

    /// Stores the commit positions of partitions with newly finished offsets, all in one call
    /// into the client (which commits stored positions every second), instead of one per event.
    fn store_positions(&self, tps: Vec<Tp>) {
        let mut list = TopicPartitionList::new();
        {
            let table = self.runtime.shared.table();
            for tp in tps {
                let position = table
                    .partitions
                    .get(&tp)
                    .filter(|e| !e.revoking)
                    .and_then(|e| e.progress.commit_position());
                if let Some(position) = position {
                    let _ = list.add_partition_offset(&tp.0, tp.1, Offset::Offset(position));
                }
            }
        }
        if list.count() > 0 {
            if let Err(e) = self.runtime.consumer.store_offsets(&list) {
                tracing::debug!(error = %e, "store offsets");
            }
        }
    }

    fn on_tick(&mut self) -> Result<(), ConsumerError> {
        let (assigned, lagging_tier) = {
            let table = self.runtime.shared.table();
            let assigned: Vec<Tp> = table
                .partitions
                .iter()
                .filter(|(_, e)| !e.revoking)
                .map(|(tp, _)| tp.clone())
                .collect();
            (assigned, table.lagging_tier)
        };
        let was_paused = self.scheduler.operator_paused();
        let operator_paused = self.control.paused();
        {
            let breakers = self.runtime.shared.breakers();
            let tick = Tick {
                clock: clock(),
                assigned: &assigned,
                lagging_tier,
                operator_paused,
            };
            self.scheduler.on_tick(tick, &breakers);
        }
        if operator_paused != was_paused {
            self.operator_pause_changed(operator_paused);
        }
        self.execute()?;
        self.update_breaker_gauge();
        // A fixed rate: the control is read once a second, however the ticks fall.
        let now = Instant::now();
        if now >= self.next_stats_flush {
            self.next_stats_flush = (self.next_stats_flush + STATS_INTERVAL).max(now);
            self.flush_stats();
        }
        Ok(())
    }

    /// The operator's pause was applied or lifted: partitions assigned from now on follow it.
    fn operator_pause_changed(&self, paused: bool) {
        self.runtime
            .shared
            .operator_paused
            .store(paused, Ordering::Release);
        let state = self.control.last();
        let group = &*self.runtime.group_name;
        if paused {
            tracing::info!(group, by = %state.by, reason = %state.reason, "operator pause applied");
        } else {
            tracing::info!(group, by = %state.by, reason = %state.reason, "operator pause lifted");
        }
    }

    /// Writes the flood guard's stop record and counts the stop, before the group returns.
    async fn record_stop(&self, error: &ConsumerError) {
        self.runtime.shared.metrics.flood_guard_stops.inc();
        // The record is this run's: no later flush (the drain's) may delete it.
        self.clear_stop.store(false, Ordering::Relaxed);
        let Some(mut redis) = self.runtime.redis.clone() else {
            return;
        };
        let reason = error.to_string();
        let write = stats::record_stop(&mut redis, &self.stats_keys, &reason, now_ms());
        match tokio::time::timeout(CONTROL_READ_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record the flood guard stop"),
            Err(_) => tracing::warn!("recording the flood guard stop timed out"),
        }
    }

    /// Sends the operators' figures to Redis in the background (never blocks the engine); the
    /// operator's control comes back on the same round trip. When Redis does not answer, the
    /// last known control stays.
    fn flush_stats(&self) {
        let Some(mut redis) = self.runtime.redis.clone() else {
            return;
        };
        let (counts, published) = {
            let mut stats = self.runtime.stats();
            (stats.take(), stats.take_published())
        };
        let clear_stop = self.clear_stop.clone();
        let request = stats::Flush {
            counts,
            published,
            snapshot: self.snapshot(),
            clear_stop: clear_stop.load(Ordering::Relaxed),
        };
        let cleared = request.clear_stop;
        let keys = self.stats_keys.clone();
        let identity = self.identity.clone();
        let control = self.control.clone();
        tokio::spawn(async move {
            match stats::flush(&mut redis, &keys, &identity, request).await {
                Ok(state) => {
                    control.set(state);
                    if cleared {
                        clear_stop.store(false, Ordering::Relaxed);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "stats flush failed"),
            }
        });
    }

    /// This instance's heartbeat figures.
    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            active: self.scheduler.running(),
            delayed: self.scheduler.delayed(),
            operator_paused: self.scheduler.operator_paused(),
            updated_at_ms: now_ms(),
            breakers: self.breaker_states(),
            ..Snapshot::default()
        };
        let table = self.runtime.shared.table();
        for (tp, entry) in &table.partitions {
            let name = format!("{}:{}", tp.0, tp.1);
            snapshot.waiting += entry.lag;
            if !entry.paused.is_empty() {
                let mut reasons: Vec<&'static str> =
                    entry.paused.iter().map(|r| r.as_str()).collect();
                reasons.sort_unstable();
                snapshot.paused_partitions.insert(name.clone(), reasons);
            }
            snapshot.partitions.push(name);
        }
        drop(table);
        snapshot.paused = snapshot.paused_partitions.len();
        snapshot.partitions.sort_unstable();
        snapshot
    }

    fn breaker_states(&self) -> BTreeMap<String, &'static str> {
        let now = Instant::now();
        self.runtime
            .shared
            .breakers()
            .states(now)
            .map(|(dependency, state)| {
                let state = match state {
                    BreakerState::Closed => "closed",
                    BreakerState::HalfOpen { .. } => "half_open",
                    BreakerState::Open { .. } => "open",
                };
                (dependency.to_string(), state)
            })
            .collect()
    }

    fn update_breaker_gauge(&self) {
        let now = Instant::now();
        let breakers = self.runtime.shared.breakers();
        for (dependency, state) in breakers.states(now) {
            let value = match state {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen { .. } => 1,
                BreakerState::Open { .. } => 2,
            };
            self.runtime
                .shared
                .metrics
                .breaker
                .with_label_values(&[dependency])
                .set(value);
        }
    }

    /// Stops fetching and waits (bounded) for in-flight events; what is held but not started is
    /// left uncommitted, so the next owner reads it again.
    async fn drain(&mut self) {
        let all = self.runtime.shared.assigned();
        self.flush_stats();
        self.set_pause(&all, PauseReason::Shutdown, true);
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline, self.in_flight.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        left = self.in_flight.len(),
                        "drain timeout: in-flight events will be redelivered"
                    );
                    self.in_flight.abort_all();
                    break;
                }
            }
        }
        if self.runtime.shared.transactions.is_none() {
            self.store_positions(all);
        }
    }
}

/// Marks an offset finished; the engine stores the partition's commit position on its next tick.
/// A transactional group stages the event's records instead, under the same lock, for the next
/// transaction.
///
/// `records` is `None` for a parked event: it left the handler slot but is not finished. Returns
/// whether the partition is being revoked (or is gone).
fn finish_offset(
    runtime: &Runtime,
    tp: &Tp,
    offset: i64,
    records: Option<Vec<OutboundRecord>>,
) -> bool {
    let mut table = runtime.shared.table();
    let Some(entry) = table.partitions.get_mut(tp) else {
        return true;
    };
    entry.in_flight = entry.in_flight.saturating_sub(1);
    if let Some(records) = records {
        entry.progress.finished(offset);
        if let Some(transactions) = &runtime.shared.transactions {
            transactions.stage(records);
        }
    }
    // Only a revocation waits for in-flight events (a notification is a system call).
    if entry.revoking {
        runtime.shared.changed.notify_all();
    }
    entry.revoking
}

/// One event, start to finish: decode, handle, emit, or route the failure.
/// Failure routing and effects are boxed where they are awaited: every event's task stays
/// small (it is moved into the runtime's task cell), the paths most events skip pay for the box.
async fn process(runtime: &Runtime, tp: &Tp, message: &Record) -> Outcome {
    let started = Instant::now();
    let state = message.retry_state();
    let origin = state.origin.clone().unwrap_or(Origin {
        topic: tp.0.to_string(),
        partition: tp.1,
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
    });
    let event = match decode(runtime, message, &state, &origin).await {
        Ok(Some(event)) => event,
        // A type of the topic this group does not subscribe to.
        Ok(None) => {
            return Outcome::Done {
                dead_lettered: false,
                error: None,
                records: Vec::new(),
            }
        }
        Err(Decode::Poison(reason)) => {
            return Box::pin(route_failure(
                runtime,
                message,
                &state,
                &origin,
                "undecodable",
                &reason,
                None,
            ))
            .await
        }
        Err(Decode::Transient(reason)) => {
            // The registry is unreachable: the record is fine, the lookup is not.
            return Box::pin(route_failure(
                runtime,
                message,
                &state,
                &origin,
                "dependency",
                &reason,
                Some(true),
            ))
            .await;
        }
    };
    let Some((event_type, registered)) = runtime.handlers.get_key_value(event.event_type()) else {
        return Outcome::Done {
            dead_lettered: false,
            error: None,
            records: Vec::new(),
        };
    };
    let ctx = Context::new(
        runtime.group_name.clone(),
        runtime.source.clone(),
        event.metadata.clone(),
    );
    let span = tracing::info_span!(
        "event",
        group = %runtime.group_name,
        event_type = %event_type,
        event_id = %event.metadata.id,
        correlation_id = event.metadata.correlation_id.as_deref().unwrap_or(""),
        topic = %tp.0,
        partition = tp.1,
        offset = message.offset(),
        attempt = state.attempt,
    );
    let result = tracing::Instrument::instrument(
        tokio::time::timeout(
            runtime.group.timeout,
            registered.handler.handle(event, ctx.clone()),
        ),
        span,
    )
    .await
    .unwrap_or_else(|_| {
        Err(HandlerError::Retryable(format!(
            "timed out after {:?}",
            runtime.group.timeout
        )))
    });
    let result = match result {
        Ok(()) => Box::pin(apply_effects(runtime, &ctx)).await,
        Err(e) => Err(e),
    };
    let mut records = Vec::new();
    let result = result.map(|staged| records = staged);
    let elapsed = started.elapsed();
    registered.duration.observe(elapsed.as_secs_f64());
    match result {
        Ok(()) => {
            runtime.shared.breakers().succeeded(event_type);
            registered.processed.inc();
            runtime.tally(event_type, Tally::Completed, elapsed);
            trace_steps::processed(
                runtime.publisher.trace(),
                &runtime.group_name,
                message,
                &state,
                now_ms(),
            );
            Outcome::Done {
                dead_lettered: false,
                error: None,
                records,
            }
        }
        Err(error) => {
            registered.failed.inc();
            if let HandlerError::Dependency { dependency, .. } = &error {
                let state =
                    runtime
                        .shared
                        .breakers()
                        .failed(event_type, dependency, Instant::now());
                if !matches!(state, BreakerState::Closed) {
                    return Outcome::Parked {
                        dependency: dependency.clone(),
                    };
                }
            }
            Box::pin(route_failure(
                runtime,
                message,
                &state,
                &origin,
                error.class(),
                &error.to_string(),
                Some(error.is_retryable()),
            ))
            .await
        }
    }
}

enum Decode {
    Poison(String),
    Transient(String),
}

async fn decode(
    runtime: &Runtime,
    message: &Record,
    state: &RetryState,
    origin: &Origin,
) -> Result<Option<Event>, Decode> {
    let metadata = message
        .metadata()
        .map_err(|e| Decode::Poison(format!("headers: {e}")))?;
    if !runtime.group.subscribe.contains(&metadata.event_type) {
        return Ok(None);
    }
    let payload = message
        .payload()
        .ok_or_else(|| Decode::Poison("the record has no value".into()))?;
    let decoded = runtime.registry.decode_json(payload).await.map_err(|e| {
        if e.is_transient() {
            Decode::Transient(e.to_string())
        } else {
            Decode::Poison(e.to_string())
        }
    })?;
    let expected = runtime
        .catalog
        .event(&metadata.event_type)
        .map(|e| e.full_name.clone());
    if decoded.full_name.is_some() && decoded.full_name != expected {
        return Err(Decode::Poison(format!(
            "`{}` carries a {} record",
            metadata.event_type,
            decoded.full_name.unwrap_or_default()
        )));
    }
    Ok(Some(Event {
        data: decoded.data,
        key: message.key().map(<[u8]>::to_vec),
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        origin: origin.clone(),
        attempt: state.attempt,
        metadata,
    }))
}

/// Sends what the handler emitted (awaiting acks) and its broadcasts (best effort). A
/// transactional group gets the encoded records back, to commit with the offset. Broadcasts
/// carry the correlation id of the handled event and ids stable across its redeliveries
/// ([`realtime::broadcast_ids`]: the event's own id for a message relaying it).
async fn apply_effects(
    runtime: &Runtime,
    ctx: &Context,
) -> Result<Vec<OutboundRecord>, HandlerError> {
    let cause = ctx.cause();
    let (emitted, broadcasts) = ctx.take_effects();
    if emitted.is_empty() && broadcasts.is_empty() {
        return Ok(Vec::new());
    }
    let trace = runtime.publisher.trace();
    let children: Vec<(String, String)> = if trace.is_enabled() {
        emitted
            .iter()
            .filter_map(|d| Some((d.id.clone()?, d.event_type.clone())))
            .collect()
    } else {
        Vec::new()
    };
    let mut validated = Vec::with_capacity(emitted.len());
    for draft in emitted {
        let event = runtime
            .publisher
            .validate(draft)
            .map_err(|e| HandlerError::permanent(format!("emitted event: {e}")))?;
        validated.push(event);
    }
    let mut staged = Vec::new();
    if runtime.shared.transactions.is_some() {
        for event in validated {
            let record = runtime
                .publisher
                .encode(event)
                .await
                .map_err(|e| HandlerError::retryable(format!("emitting: {e}")))?;
            staged.push(record);
        }
        runtime.count_published(staged.iter().map(|r| r.event_type.as_str()));
    } else {
        let results = runtime.publisher.publish_all(validated).await;
        // Each acknowledged record counts, also when a sibling failed (a retry sends it again).
        runtime.count_published(
            results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|d| d.event_type.as_str()),
        );
        for result in results {
            result.map_err(|e| HandlerError::retryable(format!("emitting: {e}")))?;
        }
    }
    trace.caused(&cause.id, children);
    if let (Some(redis), false) = (&runtime.redis, broadcasts.is_empty()) {
        let mut redis = redis.clone();
        let named: Vec<(&str, &str)> = broadcasts
            .iter()
            .map(|b| (b.channel.as_str(), b.event_type.as_str()))
            .collect();
        let ids = realtime::broadcast_ids(&runtime.group_name, cause, &named);
        for (broadcast, id) in broadcasts.into_iter().zip(ids) {
            let message = RealtimeMessage::new(
                &broadcast.event_type,
                &id,
                chrono::Utc::now(),
                broadcast.data,
            )
            .with_correlation_id(cause.correlation_id.clone());
            if let Err(e) = realtime::publish(&mut redis, &[broadcast.channel], &message).await {
                tracing::warn!(error = %e, "broadcast failed");
            }
        }
    }
    Ok(staged)
}

/// Produces a failed record to its next stop and waits for the broker's ack. `retryable` None
/// means undecodable (straight to the dead letters).
async fn route_failure(
    runtime: &Runtime,
    message: &Record,
    state: &RetryState,
    origin: &Origin,
    class: &str,
    reason: &str,
    retryable: Option<bool>,
) -> Outcome {
    let stop = match retryable {
        None => NextStop::DeadLetter {
            topic: runtime
                .catalog
                .topic_name(&runtime.group.dead_letter_topic_base()),
            reason: DeadLetterReason::Poison,
        },
        Some(retryable) => {
            retry::next_stop(&runtime.catalog, &runtime.group, state.attempt, retryable)
        }
    };
    let failure = Failure {
        group: &runtime.group_name,
        class,
        message: reason,
        now_ms: now_ms(),
    };
    let headers = retry::headers_for(message.headers(), state, origin, &failure, &stop);
    let (topic, dead_lettered) = match &stop {
        NextStop::Retry { topic, .. } => (topic.clone(), false),
        NextStop::DeadLetter { topic, .. } => (topic.clone(), true),
    };
    let event_type = headers
        .iter()
        .find(|h| h.key == crate::cloudevents::header::TYPE)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| "unknown".into());
    let mut records = Vec::new();
    if runtime.shared.transactions.is_some() {
        // The hand-off commits with the offset, in the group's next transaction.
        records.push(OutboundRecord {
            topic: topic.clone(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: headers.clone(),
            id: String::new(),
            event_type: event_type.clone(),
            note: None,
        });
    }
    // The hand-off must succeed before the offset may be committed: retry until it does (or the
    // task is aborted at shutdown, leaving the offset uncommitted for redelivery).
    let mut backoff = Duration::from_millis(100);
    while records.is_empty() {
        let mut record = rdkafka::producer::FutureRecord::to(&topic)
            .headers(headers.clone())
            .payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match runtime
            .producer
            .send(
                record,
                rdkafka::util::Timeout::After(Duration::from_secs(5)),
            )
            .await
        {
            Ok(_) => break,
            Err((e, _)) => {
                tracing::warn!(error = %e, topic = %topic, "could not hand a failed event on; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    trace_steps::handed_on(
        runtime.publisher.trace(),
        &runtime.group_name,
        message,
        &event_type,
        origin,
        &stop,
        state,
        (class, reason),
        failure.now_ms,
    );
    let metrics = &runtime.shared.metrics;
    runtime.tally(
        &event_type,
        if dead_lettered {
            Tally::DeadLettered
        } else {
            Tally::Retried
        },
        Duration::ZERO,
    );
    if dead_lettered {
        metrics
            .dead_lettered
            .with_label_values(&[&event_type])
            .inc();
        tracing::warn!(topic = %topic, error_class = class, error = reason, "event dead-lettered");
    } else {
        metrics.retried.with_label_values(&[&event_type]).inc();
    }
    Outcome::Done {
        dead_lettered,
        error: Some(reason.to_string()),
        records,
    }
}
