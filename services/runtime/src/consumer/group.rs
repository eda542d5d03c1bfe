//! Building and starting a consumer group: its handlers, clients, identity and first control.

// Per-event lookups (partitions, keys, event types) use a fast hasher: the keys come from
// the group's own topics and records, and no map grows beyond the records it holds.
use foldhash::{HashMap, HashMapExt};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::consumer::breaker::CircuitBreaker;
use crate::consumer::clock::now_ms;
use crate::consumer::dependencies::Dependencies;
use crate::consumer::engine::Engine;
use crate::consumer::error::ConsumerError;
use crate::consumer::flood_guard::FloodGuard;
use crate::consumer::handler::{Context, Event, Handler, HandlerError};
use crate::consumer::partitions::Shared;
use crate::consumer::poll::{spawn_poll_thread, POLL_BATCH};
use crate::consumer::rebalance::create_consumer;
use crate::consumer::scheduler::{Limits, Scheduler};
use crate::consumer::settings::GroupSettings;
use crate::consumer::stats::{self, Control, Identity, StatsKeys, CONTROL_READ_TIMEOUT};
use crate::consumer::task::{Registered, Runtime};
use crate::consumer::telemetry::GroupMetrics;
use crate::consumer::transactions::{self, Transactions};
use crate::kafka::{self, KafkaConfig, ProducerSettings};
use crate::publisher::EventPublisher;
use crate::registry::SchemaRegistry;
use crate::topology::{Group, Tier};
use crate::trace::TraceIndex;

/// Builds and runs one consumer group.
pub struct ConsumerGroup {
    pub(super) catalog: Arc<Catalog>,
    pub(super) group: Group,
    pub(super) handlers: HashMap<String, Arc<dyn Handler>>,
    pub(super) kafka: KafkaConfig,
    pub(super) registry: Arc<SchemaRegistry>,
    pub(super) redis: Option<ConnectionManager>,
    pub(super) settings: GroupSettings,
    pub(super) metrics: Option<GroupMetrics>,
    pub(super) transactional: bool,
    pub(super) joined: Arc<AtomicBool>,
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
            joined: Arc::default(),
        })
    }

    /// True once the group has joined its consumer group and holds its assignment (its
    /// partitions; none when there are more members than partitions), false again when
    /// [`ConsumerGroup::run`] returns: what a group binary's `/readyz` reports.
    pub fn joined(&self) -> Arc<AtomicBool> {
        self.joined.clone()
    }

    /// Registers the handler of one subscribed event type.
    pub fn handler(mut self, event_type: &str, handler: impl Handler) -> Self {
        self.handlers
            .insert(event_type.to_string(), Arc::new(handler));
        self
    }

    /// Registers the handler of one subscribed event type with state its calls share: each call
    /// gets its own clone of `state` (a struct of cheap handles, or an `Arc`), so a handler is a
    /// plain `async fn(state, event, ctx)` and `register` clones nothing by hand.
    pub fn handler_with<S, F, Fut>(self, event_type: &str, state: S, handle: F) -> Self
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, Event, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handler(event_type, move |event, ctx| {
            handle(state.clone(), event, ctx)
        })
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

    pub(super) fn check(&self) -> Result<(), ConsumerError> {
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
        let _leaving = ClearOnDrop(self.joined.clone());
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
            joined: self.joined.clone(),
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
        let scheduler = Scheduler::new(limits, flood_guard, operator_paused);
        tracing::info!(
            group = %group_id,
            topics = ?topics,
            instance = %identity.instance,
            client_id = %identity.client_id,
            "consumer group started"
        );
        let mut engine = Engine::new(
            runtime,
            rx,
            scheduler,
            self.settings.drain_timeout,
            stats_keys,
            identity,
            control,
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

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Who this instance is: its static instance id (else `<host>-<pid>`) and the consumer's
/// client id, distinct per instance so the group's member list matches heartbeats.
pub(super) fn identity(kafka: &KafkaConfig, group_id: &str, settings: &GroupSettings) -> Identity {
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

/// Reads the operator's control once before consuming, so an instance started under a pause
/// processes nothing. Unreachable Redis: the group runs (and keeps asking on every flush).
pub(super) async fn initial_control(
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

/// Clears the group's `joined` flag however `run` ends.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
