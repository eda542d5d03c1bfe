//! What a consumer group shares with the operators' console through Redis: its heartbeat, the
//! operator's pause switch, the flood guard's stop record and the published counts. Real
//! broker and Redis, a fresh namespace (topics, groups, keys) per test.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use circulatory::consumer::telemetry::GroupMetrics;
use circulatory::consumer::{
    ConsumerError, ConsumerGroup, Context, Event, GroupSettings, Handler, HandlerError,
};
use circulatory::publisher::{EventDraft, EventPublisher};
use circulatory_testkit::{sample_data, TestEnv};
use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use redis::aio::ConnectionManager;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A test-only group (`services/testkit/fixtures/groups.yaml`).
const GROUP: &str = "fixture-chat";

/// Counts calls per event id; fails every call, or emits one event per call.
#[derive(Clone)]
struct Counter {
    calls: Arc<Mutex<HashMap<String, usize>>>,
    fail: bool,
    emit: Option<(String, Value)>,
}

impl Counter {
    fn succeeding() -> Counter {
        Counter {
            calls: Arc::default(),
            fail: false,
            emit: None,
        }
    }

    fn failing() -> Counter {
        Counter {
            fail: true,
            ..Counter::succeeding()
        }
    }

    fn emitting(event_type: &str, data: Value) -> Counter {
        Counter {
            emit: Some((event_type.to_string(), data)),
            ..Counter::succeeding()
        }
    }

    fn calls(&self) -> HashMap<String, usize> {
        self.calls.lock().unwrap().clone()
    }

    fn total(&self) -> usize {
        self.calls().values().sum()
    }

    async fn wait_for_ids(&self, ids: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let calls = self.calls();
            if ids.iter().all(|id| calls.contains_key(id)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "handled {} of {} events within {within:?}",
                ids.iter().filter(|id| calls.contains_key(*id)).count(),
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Handler for Counter {
    fn handle(&self, event: Event, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(event.id().to_string())
            .or_default() += 1;
        let result = if self.fail {
            Err(HandlerError::permanent(
                "the message store rejects everything",
            ))
        } else {
            if let Some((event_type, data)) = &self.emit {
                ctx.emit_json(event_type, data.clone());
            }
            Ok(())
        };
        Box::pin(async move { result })
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ConsumerError>>,
}

impl Running {
    async fn stop(self) -> Result<(), ConsumerError> {
        self.stop.cancel();
        self.task.await.expect("group task")
    }
}

async fn redis() -> ConnectionManager {
    let url = std::env::var("CIRC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url)
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap()
}

fn start(
    env: &TestEnv,
    redis: &ConnectionManager,
    handler: &Counter,
    settings: GroupSettings,
    metrics: GroupMetrics,
) -> Running {
    let mut consumer = ConsumerGroup::new(
        env.catalog.clone(),
        GROUP,
        env.kafka.clone(),
        env.registry.clone(),
    )
    .unwrap()
    .redis(redis.clone())
    .settings(settings)
    .metrics(metrics);
    for event_type in &env.catalog.group(GROUP).unwrap().subscribe {
        consumer = consumer.handler(event_type, handler.clone());
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));
    Running { stop, task }
}

fn metrics() -> GroupMetrics {
    GroupMetrics::new(&prometheus::Registry::new())
}

/// Publishes `count` `message.sent` events together; their ids.
async fn publish(env: &TestEnv, publisher: &EventPublisher, count: usize) -> Vec<String> {
    let schema = &env.catalog.event("message.sent").unwrap().schema_json;
    let events = (0..count)
        .map(|_| {
            publisher
                .validate(EventDraft {
                    event_type: "message.sent".into(),
                    data: sample_data(schema),
                    ..Default::default()
                })
                .unwrap()
        })
        .collect();
    publisher
        .publish_all(events)
        .await
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect()
}

fn key(env: &TestEnv, suffix: &str) -> String {
    format!("circ:{}:{suffix}", env.namespace)
}

fn heartbeat_key(env: &TestEnv, instance: &str) -> String {
    key(env, &format!("stats:group:{GROUP}:instance:{instance}"))
}

async fn hash(redis: &ConnectionManager, key: &str) -> HashMap<String, String> {
    let mut redis = redis.clone();
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut redis)
        .await
        .unwrap()
}

/// Waits until the hash at `key` satisfies `ok`; its last value.
async fn wait_for_hash(
    redis: &ConnectionManager,
    key: &str,
    within: Duration,
    ok: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let fields = hash(redis, key).await;
        if ok(&fields) {
            return fields;
        }
        assert!(
            Instant::now() < deadline,
            "{key} within {within:?}: {fields:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn json(fields: &HashMap<String, String>, name: &str) -> Value {
    serde_json::from_str(&fields[name]).unwrap_or_else(|e| panic!("{name}: {e}: {fields:?}"))
}

/// Every topic the group reads: main topics, retry rungs, replay.
fn group_topics(env: &TestEnv) -> BTreeSet<String> {
    let group = env.catalog.group(GROUP).unwrap().clone();
    let mut topics: BTreeSet<String> = env.catalog.group_topics(&group).into_iter().collect();
    for delay in &group.retry_delays {
        topics.insert(env.catalog.topic_name(&group.retry_topic_base(*delay)));
    }
    topics.insert(env.catalog.topic_name(&group.replay_topic_base()));
    topics
}

/// The topics named by a heartbeat's `partitions`.
fn topics_of(partitions: &Value) -> BTreeSet<String> {
    partitions
        .as_array()
        .expect("an array")
        .iter()
        .map(|p| {
            let (topic, partition) = p.as_str().unwrap().rsplit_once(':').unwrap();
            partition.parse::<i32>().expect("a partition number");
            topic.to_string()
        })
        .collect()
}

/// The client ids of the Kafka group's members.
async fn member_client_ids(env: &TestEnv, group_id: &str) -> Vec<String> {
    let reader: BaseConsumer = circulatory::kafka::reader(&env.kafka).unwrap();
    let group_id = group_id.to_string();
    tokio::task::spawn_blocking(move || {
        let list = reader
            .fetch_group_list(Some(&group_id), Duration::from_secs(10))
            .unwrap();
        list.groups()
            .iter()
            .flat_map(|g| g.members().iter().map(|m| m.client_id().to_string()))
            .collect()
    })
    .await
    .unwrap()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_heartbeat_says_who_the_instance_is_and_what_it_holds() {
    let env = TestEnv::new().with_fixture_groups();
    env.create_group_topics(GROUP).await;
    let output = env.topic_of("notification.created");
    env.create_topics_if_missing(&[output.as_str()]).await;
    let redis = redis().await;
    let publisher = env.publisher();
    let ids = publish(&env, &publisher, 4).await;
    let notification = sample_data(
        &env.catalog
            .event("notification.created")
            .unwrap()
            .schema_json,
    );
    let handler = Counter::emitting("notification.created", notification);
    let settings = GroupSettings {
        instance_id: Some("pod-a".into()),
        ..GroupSettings::default()
    };
    let started_ms = now_ms();
    let running = start(&env, &redis, &handler, settings, metrics());
    handler.wait_for_ids(&ids, Duration::from_secs(30)).await;

    let topics = group_topics(&env);
    let heartbeat = heartbeat_key(&env, "pod-a");
    let beat = wait_for_hash(&redis, &heartbeat, Duration::from_secs(5), |f| {
        f.get("partitions")
            .and_then(|p| serde_json::from_str(p).ok())
            .is_some_and(|p| topics_of(&p) == topics)
    })
    .await;
    let group_id = env.catalog.topic_name(GROUP);
    assert_eq!(beat["instance"], "pod-a");
    assert!(!beat["host"].is_empty());
    assert_eq!(beat["pid"], std::process::id().to_string());
    assert_eq!(beat["client_id"], format!("{group_id}-pod-a"));
    let started: i64 = beat["started_at_ms"].parse().unwrap();
    let updated: i64 = beat["updated_at_ms"].parse().unwrap();
    assert!(started >= started_ms && started <= updated, "{beat:?}");
    assert!(
        updated <= now_ms() && updated > now_ms() - 5_000,
        "{beat:?}"
    );
    assert_eq!(beat["operator_paused"], "0");
    assert_eq!(json(&beat, "breakers"), serde_json::json!({}));
    let paused = json(&beat, "paused_partitions");
    let paused = paused.as_object().expect("an object");
    assert_eq!(beat["paused"], paused.len().to_string());
    for reasons in paused.values() {
        for reason in reasons.as_array().expect("reasons") {
            let reason = reason.as_str().unwrap();
            assert!(
                [
                    "delay",
                    "backpressure",
                    "breaker",
                    "shutdown",
                    "full",
                    "operator"
                ]
                .contains(&reason),
                "{reason}"
            );
        }
    }
    for field in ["active", "waiting", "delayed"] {
        beat[field].parse::<i64>().expect(field);
    }
    let mut conn = redis.clone();
    let ttl: i64 = redis::cmd("TTL")
        .arg(&heartbeat)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=15).contains(&ttl), "ttl {ttl}");

    // The Kafka group's member is the heartbeat's client id.
    let members = member_client_ids(&env, &group_id).await;
    assert_eq!(members, [beat["client_id"].clone()]);

    // What the group emitted is counted as published by it.
    let emitted = key(&env, "stats:event:notification.created");
    let figures = wait_for_hash(&redis, &emitted, Duration::from_secs(5), |f| {
        f.get("published").map(String::as_str) == Some("4")
    })
    .await;
    assert_eq!(figures["published_by:fixture-chat"], "4", "{figures:?}");
    running.stop().await.unwrap();
}

/// Sets or clears the console's pause switch of the group.
async fn set_pause(env: &TestEnv, redis: &ConnectionManager, paused: bool) {
    let mut conn = redis.clone();
    let control = key(env, &format!("control:group:{GROUP}"));
    if paused {
        let _: () = redis::cmd("HSET")
            .arg(&control)
            .arg("paused")
            .arg("1")
            .arg("by")
            .arg("alice")
            .arg("at_ms")
            .arg(now_ms())
            .arg("reason")
            .arg("database migration")
            .query_async(&mut conn)
            .await
            .unwrap();
    } else {
        let _: () = redis::cmd("DEL")
            .arg(&control)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// While paused, nothing new runs for `observe`; then resumed, everything runs exactly once.
async fn paused_then_resumed(
    env: &TestEnv,
    redis: &ConnectionManager,
    handler: &Counter,
    ids: &[String],
    before: usize,
    observe: Duration,
) {
    tokio::time::sleep(observe).await;
    assert_eq!(handler.total(), before, "nothing runs while paused");
    let beat = hash(redis, &heartbeat_key(env, "pod-p")).await;
    assert_eq!(beat["operator_paused"], "1", "{beat:?}");
    let paused = json(&beat, "paused_partitions");
    let partitions = json(&beat, "partitions");
    assert_eq!(
        paused.as_object().unwrap().len(),
        partitions.as_array().unwrap().len(),
        "every assigned partition is paused: {beat:?}"
    );
    assert!(paused
        .as_object()
        .unwrap()
        .values()
        .all(|r| r.as_array().unwrap().contains(&Value::from("operator"))));

    set_pause(env, redis, false).await;
    handler.wait_for_ids(ids, Duration::from_secs(10)).await;
    wait_for_hash(
        redis,
        &heartbeat_key(env, "pod-p"),
        Duration::from_secs(4),
        |f| f.get("operator_paused").map(String::as_str) == Some("0"),
    )
    .await;
    env.wait_until_settled(GROUP, Duration::from_secs(15)).await;
    let calls = handler.calls();
    assert!(
        ids.iter().all(|id| calls.get(id) == Some(&1)),
        "each event exactly once: {calls:?}"
    );
    assert_eq!(handler.total(), before + ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_pause_holds_every_event_until_it_is_lifted() {
    let env = TestEnv::new().with_fixture_groups();
    env.create_group_topics(GROUP).await;
    let redis = redis().await;
    let publisher = env.publisher();
    let handler = Counter::succeeding();
    let settings = GroupSettings {
        instance_id: Some("pod-p".into()),
        ..GroupSettings::default()
    };

    // Started under a pause: the group joins, its partitions stay paused.
    set_pause(&env, &redis, true).await;
    let running = start(&env, &redis, &handler, settings, metrics());
    let first = publish(&env, &publisher, 5).await;
    wait_for_hash(
        &redis,
        &heartbeat_key(&env, "pod-p"),
        Duration::from_secs(15),
        |f| f.get("partitions").is_some_and(|p| p != "[]"),
    )
    .await;
    paused_then_resumed(&env, &redis, &handler, &first, 0, Duration::from_secs(2)).await;

    // Paused while running: the pause is picked up within about a second.
    set_pause(&env, &redis, true).await;
    wait_for_hash(
        &redis,
        &heartbeat_key(&env, "pod-p"),
        Duration::from_secs(4),
        |f| f.get("operator_paused").map(String::as_str) == Some("1"),
    )
    .await;
    let second = publish(&env, &publisher, 10).await;
    paused_then_resumed(&env, &redis, &handler, &second, 5, Duration::from_secs(3)).await;
    running.stop().await.unwrap();
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_stop_is_recorded_counted_and_cleared_by_the_next_run() {
    let env = TestEnv::new().with_fixture_groups();
    env.create_group_topics(GROUP).await;
    let redis = redis().await;
    let publisher = env.publisher();
    publish(&env, &publisher, 30).await;
    let registry = prometheus::Registry::new();
    let group_metrics = GroupMetrics::new(&registry);
    let settings = GroupSettings {
        flood_window: 20,
        flood_min_events: 10,
        flood_max_ratio: 0.9,
        ..GroupSettings::default()
    };
    let before_ms = now_ms();
    let running = start(
        &env,
        &redis,
        &Counter::failing(),
        settings.clone(),
        group_metrics.clone(),
    );
    let result = tokio::time::timeout(Duration::from_secs(30), running.task)
        .await
        .expect("the guard stops the group")
        .unwrap();
    let error = result.expect_err("stopped by the guard").to_string();
    assert!(error.contains("flood guard"), "{error}");

    let stopped = key(&env, &format!("stats:group:{GROUP}:stopped"));
    let record = hash(&redis, &stopped).await;
    assert_eq!(record.get("reason"), Some(&error), "{record:?}");
    let at: i64 = record["at_ms"].parse().unwrap();
    assert!(at >= before_ms && at <= now_ms(), "{record:?}");
    assert_eq!(
        record["instance"],
        format!("{}-{}", hostname(), std::process::id())
    );
    let mut conn = redis.clone();
    let ttl: i64 = redis::cmd("TTL")
        .arg(&stopped)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "the record does not expire");
    assert_eq!(group_metrics.flood_guard_stops.get(), 1);
    let exported = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "circulatory_flood_guard_stops_total")
        .expect("registered with the group's metrics");
    assert_eq!(exported.get_metric()[0].get_counter().get_value(), 1.0);

    // The group runs again: its first flush removes the record.
    let again = start(&env, &redis, &Counter::succeeding(), settings, metrics());
    wait_for_hash(&redis, &stopped, Duration::from_secs(10), |f| f.is_empty()).await;
    again.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_replay_count_travels_through_retries_back_to_the_dead_letters() {
    use circulatory::consumer::retry::{self, header as retry_header};
    use circulatory_testkit::{header, read_records};
    use rdkafka::message::Message;

    let env = TestEnv::new().with_fixture_groups();
    env.create_group_topics(GROUP).await;
    let redis = redis().await;
    let publisher = env.publisher();
    let ids = publish(&env, &publisher, 1).await;
    // The first delivery is dead-lettered at once; after the replay every attempt fails and
    // climbs the retry ladder (1 s, 2 s) to the dead letters again.
    let calls: Arc<Mutex<usize>> = Arc::default();
    let mut consumer = ConsumerGroup::new(
        env.catalog.clone(),
        GROUP,
        env.kafka.clone(),
        env.registry.clone(),
    )
    .unwrap()
    .redis(redis.clone());
    for event_type in &env.catalog.group(GROUP).unwrap().subscribe {
        let calls = calls.clone();
        consumer = consumer.handler(event_type, move |_event: Event, _ctx: Context| {
            let mut calls = calls.lock().unwrap();
            *calls += 1;
            let result = if *calls == 1 {
                Err(HandlerError::permanent("rejected"))
            } else {
                Err(HandlerError::retryable("still down"))
            };
            async move { result }
        });
    }
    let stop = CancellationToken::new();
    let running = Running {
        stop: stop.clone(),
        task: tokio::spawn(consumer.run(stop)),
    };
    let dlq = env.catalog.topic_name(&format!("{GROUP}.dlq"));
    let first = read_records(&env.kafka, &dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(header(&first[0], retry_header::REPLAYS), None);

    let group = env.catalog.group(GROUP).unwrap().clone();
    let replay_topic = env.catalog.topic_name(&group.replay_topic_base());
    let producer =
        circulatory::kafka::producer(&env.kafka, &circulatory::kafka::ProducerSettings::default())
            .unwrap();
    let mut record = rdkafka::producer::FutureRecord::to(&replay_topic)
        .headers(retry::headers_for_replay(first[0].headers()))
        .payload(first[0].payload().unwrap());
    if let Some(key) = first[0].key() {
        record = record.key(key);
    }
    producer.send(record, Duration::from_secs(5)).await.unwrap();

    let letters = read_records(&env.kafka, &dlq, 2, Duration::from_secs(15)).await;
    running.stop().await.unwrap();
    let again = &letters[1];
    assert_eq!(header(again, "ce_id").as_deref(), Some(ids[0].as_str()));
    assert_eq!(
        header(again, retry_header::DLQ_REASON).as_deref(),
        Some("exhausted")
    );
    assert_eq!(header(again, retry_header::ATTEMPT).as_deref(), Some("3"));
    assert_eq!(
        header(again, retry_header::REPLAYS).as_deref(),
        Some("1"),
        "carried from the replay topic through both retry rungs"
    );
    assert_eq!(*calls.lock().unwrap(), 4);
}
