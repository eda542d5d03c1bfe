//! The consumer runtime against the real broker, a fresh namespace (topics, groups) per test.
//! Every test runs on the test-only groups of `services/testkit/fixtures/groups.yaml`
//! (`fixture-chat`, `fixture-ladder`, ...), never on a production group.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use circulatory::consumer::retry::header as retry_header;
use circulatory::consumer::telemetry::GroupMetrics;
use circulatory::consumer::{ConsumerGroup, Context, Event, GroupSettings, Handler, HandlerError};
use circulatory_testkit::{header, is_empty, read_records, sample_data, TestEnv};
use futures::future::BoxFuture;
use rdkafka::message::Message;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What a handler saw.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    event_type: String,
    key: String,
    attempt: u32,
    at: Instant,
    data: Value,
}

type Behaviour = Arc<dyn Fn(&Event) -> Result<(), HandlerError> + Send + Sync>;

/// Records every call, then answers with `behaviour`, optionally after a pause.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Calls running now, and the most ever running at once.
    running: Arc<Mutex<(usize, usize)>>,
    behaviour: Behaviour,
    pause: Arc<dyn Fn(&Event) -> Duration + Send + Sync>,
}

impl Recorder {
    fn new(
        behaviour: impl Fn(&Event) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Recorder {
        Recorder {
            seen: Arc::default(),
            running: Arc::default(),
            behaviour: Arc::new(behaviour),
            pause: Arc::new(|_| Duration::ZERO),
        }
    }

    fn succeeding() -> Recorder {
        Recorder::new(|_| Ok(()))
    }

    fn with_pause(
        mut self,
        pause: impl Fn(&Event) -> Duration + Send + Sync + 'static,
    ) -> Recorder {
        self.pause = Arc::new(pause);
        self
    }

    fn max_concurrent(&self) -> usize {
        self.running.lock().unwrap().1
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize, within: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if seen.len() >= count {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "saw {} of {count} calls within {within:?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Handler for Recorder {
    fn handle(&self, event: Event, _ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
        let this = self.clone();
        Box::pin(async move {
            {
                let mut running = this.running.lock().unwrap();
                running.0 += 1;
                running.1 = running.1.max(running.0);
            }
            let pause = (this.pause)(&event);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            this.seen.lock().unwrap().push(Seen {
                id: event.id().to_string(),
                event_type: event.event_type().to_string(),
                key: String::from_utf8_lossy(event.key.as_deref().unwrap_or_default()).into_owned(),
                attempt: event.attempt,
                at: Instant::now(),
                data: event.data.clone(),
            });
            this.running.lock().unwrap().0 -= 1;
            (this.behaviour)(&event)
        })
    }
}

/// A running group; stops (draining) on drop of the token.
struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), circulatory::consumer::ConsumerError>>,
}

impl Running {
    async fn stop(self) -> Result<(), circulatory::consumer::ConsumerError> {
        self.stop.cancel();
        self.task.await.expect("group task")
    }
}

fn start(env: &TestEnv, group: &str, recorder: &Recorder, settings: GroupSettings) -> Running {
    start_with_metrics(env, group, recorder, settings, None)
}

fn start_with_metrics(
    env: &TestEnv,
    group: &str,
    recorder: &Recorder,
    settings: GroupSettings,
    metrics: Option<GroupMetrics>,
) -> Running {
    let mut consumer = ConsumerGroup::new(
        env.catalog.clone(),
        group,
        env.kafka.clone(),
        env.registry.clone(),
    )
    .unwrap()
    .settings(settings);
    if let Some(metrics) = metrics {
        consumer = consumer.metrics(metrics);
    }
    for event_type in &env.catalog.group(group).unwrap().subscribe {
        consumer = consumer.handler(event_type, recorder.clone());
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));
    Running { stop, task }
}

/// Publishes `count` samples of a type concurrently (one batch of broker round trips).
async fn publish_many(
    env: &TestEnv,
    publisher: &circulatory::publisher::EventPublisher,
    event_type: &str,
    count: usize,
) {
    let events = (0..count)
        .map(|_| {
            publisher
                .validate(circulatory::publisher::EventDraft {
                    event_type: event_type.into(),
                    data: sample(env, event_type),
                    ..Default::default()
                })
                .unwrap()
        })
        .collect();
    for result in publisher.publish_all(events).await {
        result.unwrap();
    }
}

/// A fresh namespace with the fixture groups.
fn fixture_env() -> TestEnv {
    TestEnv::new().with_fixture_groups()
}

fn sample(env: &TestEnv, event_type: &str) -> Value {
    sample_data(&env.catalog.event(event_type).unwrap().schema_json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_handled_once_and_offsets_committed() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let publisher = env.publisher();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            env.publish(&publisher, "message.sent", sample(&env, "message.sent"))
                .await
                .id,
        );
    }
    let recorder = Recorder::succeeding();
    let running = start(&env, "fixture-chat", &recorder, GroupSettings::default());
    let seen = recorder.wait_for(20, Duration::from_secs(30)).await;
    running.stop().await.unwrap();
    let mut handled: Vec<String> = seen.iter().map(|s| s.id.clone()).collect();
    handled.sort();
    ids.sort();
    assert_eq!(handled, ids);
    assert!(seen.iter().all(|s| s.attempt == 1 && s.data.is_object()));

    // A new process of the same group starts after the committed offsets: nothing again.
    let again = Recorder::succeeding();
    let running = start(&env, "fixture-chat", &again, GroupSettings::default());
    let extra = env
        .publish(&publisher, "message.sent", sample(&env, "message.sent"))
        .await;
    let seen = again.wait_for(1, Duration::from_secs(30)).await;
    // Settled: every record of the topic is behind the group's commits, so a redelivery of the
    // first 20 would have been handled by now.
    env.wait_until_settled("fixture-chat", Duration::from_secs(15))
        .await;
    running.stop().await.unwrap();
    assert_eq!(again.seen().len(), 1, "only the new event: {:?}", seen);
    assert_eq!(seen[0].id, extra.id);
}

/// `joined` is what a group binary's `/readyz` reports: false until the member holds its
/// assignment, true while it runs, false once `run` has returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_is_joined_once_it_holds_its_partitions_until_it_stops() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let recorder = Recorder::succeeding();
    let mut consumer = ConsumerGroup::new(
        env.catalog.clone(),
        "fixture-chat",
        env.kafka.clone(),
        env.registry.clone(),
    )
    .unwrap();
    for event_type in &env.catalog.group("fixture-chat").unwrap().subscribe {
        consumer = consumer.handler(event_type, recorder.clone());
    }
    let joined = consumer.joined();
    assert!(!joined.load(Ordering::Acquire), "joined before it ran");
    let stop = CancellationToken::new();
    let running = Running {
        stop: stop.clone(),
        task: tokio::spawn(consumer.run(stop)),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !joined.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "never joined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Joined means assigned: an event published now is handled without waiting for a join.
    let publisher = env.publisher();
    let delivered = env
        .publish(&publisher, "message.sent", sample(&env, "message.sent"))
        .await;
    let seen = recorder.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(seen[0].id, delivered.id);
    running.stop().await.unwrap();
    assert!(
        !joined.load(Ordering::Acquire),
        "still joined after it stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_key_order_holds_under_concurrency() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let publisher = env.publisher();
    let conversations: Vec<String> = (0..4).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..60 {
        let conversation = &conversations[i % conversations.len()];
        let mut data = sample(&env, "message.sent");
        data["conversationId"] = Value::String(conversation.clone());
        let delivered = env.publish(&publisher, "message.sent", data).await;
        expected
            .entry(conversation.clone())
            .or_default()
            .push(delivered.id);
    }
    // Varying handler times: without per-key lanes, later events would overtake earlier ones.
    let recorder =
        Recorder::succeeding().with_pause(|e| Duration::from_millis((e.offset as u64 * 7919) % 40));
    let running = start(&env, "fixture-chat", &recorder, GroupSettings::default());
    let seen = recorder.wait_for(60, Duration::from_secs(60)).await;
    running.stop().await.unwrap();
    let mut actual: HashMap<String, Vec<String>> = HashMap::new();
    for s in &seen {
        actual.entry(s.key.clone()).or_default().push(s.id.clone());
    }
    assert_eq!(actual, expected);
    // The order held while keys ran side by side, never two of one key at once.
    let concurrent = recorder.max_concurrent();
    assert!(
        (2..=conversations.len()).contains(&concurrent),
        "{concurrent} calls ran at once, with {} keys",
        conversations.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_never_runs_before_its_delay() {
    let env = fixture_env();
    env.create_group_topics("fixture-ladder").await;
    let ladder = env
        .catalog
        .group("fixture-ladder")
        .unwrap()
        .retry_delays
        .clone();
    let publisher = env.publisher();
    let delivered = env
        .publish(&publisher, "message.sent", sample(&env, "message.sent"))
        .await;
    // Fails twice, succeeds on the third attempt: the two rungs of the ladder (1 s, then 2 s).
    let recorder = Recorder::new(|e| {
        if e.attempt < 3 {
            Err(HandlerError::retryable("not yet"))
        } else {
            Ok(())
        }
    });
    let running = start(&env, "fixture-ladder", &recorder, GroupSettings::default());
    let seen = recorder.wait_for(3, Duration::from_secs(30)).await;
    running.stop().await.unwrap();
    assert!(seen.iter().all(|s| s.id == delivered.id));
    assert_eq!(
        seen.iter().map(|s| s.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let late = Duration::from_millis(1500);
    for (rung, (pair, delay)) in seen.windows(2).zip(&ladder).enumerate() {
        let waited = pair[1].at.duration_since(pair[0].at);
        assert!(waited >= *delay, "retry {} after {waited:?}", rung + 1);
        assert!(
            waited < *delay + late,
            "retry {} late: {waited:?}",
            rung + 1
        );
    }
    let dlq = env.catalog.topic_name("fixture-ladder.dlq");
    assert!(is_empty(&env.kafka, &dlq).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exhausted_attempts_go_to_the_dead_letters_with_their_story() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let publisher = env.publisher();
    let delivered = env
        .publish(&publisher, "message.read", sample(&env, "message.read"))
        .await;
    let recorder = Recorder::new(|_| Err(HandlerError::retryable("recipient store timeout")));
    let running = start(&env, "fixture-chat", &recorder, GroupSettings::default());
    let dlq = env.catalog.topic_name("fixture-chat.dlq");
    let records = read_records(&env.kafka, &dlq, 1, Duration::from_secs(30)).await;
    running.stop().await.unwrap();
    let record = &records[0];
    assert_eq!(recorder.seen().len(), 3, "max_attempts is 3");
    assert_eq!(
        header(record, "ce_id").as_deref(),
        Some(delivered.id.as_str())
    );
    assert_eq!(
        header(record, retry_header::DLQ_REASON).as_deref(),
        Some("exhausted")
    );
    assert_eq!(header(record, retry_header::ATTEMPT).as_deref(), Some("3"));
    assert_eq!(
        header(record, retry_header::GROUP).as_deref(),
        Some("fixture-chat")
    );
    assert_eq!(
        header(record, retry_header::ORIGINAL_TOPIC),
        Some(delivered.topic.clone())
    );
    assert_eq!(
        header(record, retry_header::ORIGINAL_OFFSET),
        Some(delivered.offset.to_string())
    );
    assert_eq!(
        header(record, retry_header::ORIGINAL_PARTITION),
        Some(delivered.partition.to_string())
    );
    assert_eq!(
        header(record, retry_header::ERROR_CLASS).as_deref(),
        Some("retryable")
    );
    assert_eq!(
        header(record, retry_header::ERROR_MESSAGE).as_deref(),
        Some("recipient store timeout")
    );
    assert!(header(record, retry_header::FIRST_FAILURE_AT).is_some());
    assert!(header(record, retry_header::DEAD_LETTERED_AT).is_some());
    let value = env.oracle.decode(record.payload().unwrap()).await.unwrap();
    assert_eq!(
        value.full_name.as_deref(),
        Some("circulatory.messaging.MessageRead")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permanent_failures_and_poison_go_straight_to_the_dead_letters_and_the_group_keeps_going() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let publisher = env.publisher();
    let bad = env
        .publish(
            &publisher,
            "message.delivered",
            sample(&env, "message.delivered"),
        )
        .await;
    // Poison: right headers, a value that is not wire format.
    let topic = env.topic_of("message.sent");
    let raw = circulatory::kafka::producer(&env.kafka, &Default::default()).unwrap();
    let headers = circulatory::cloudevents::EventMetadata {
        id: "poison-1".into(),
        source: "/tests".into(),
        event_type: "message.sent".into(),
        time: chrono::Utc::now(),
        subject: None,
        traceparent: None,
        tracestate: None,
        correlation_id: None,
        request_id: None,
    }
    .to_headers();
    raw.send(
        rdkafka::producer::FutureRecord::to(&topic)
            .key("k")
            .payload("{not avro")
            .headers(headers),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let good = env
        .publish(&publisher, "message.sent", sample(&env, "message.sent"))
        .await;

    let bad_id = bad.id.clone();
    let recorder = Recorder::new(move |e| {
        if e.id() == bad_id {
            Err(HandlerError::permanent(
                "message belongs to no conversation",
            ))
        } else {
            Ok(())
        }
    });
    let started = Instant::now();
    let running = start(&env, "fixture-chat", &recorder, GroupSettings::default());
    let dlq = env.catalog.topic_name("fixture-chat.dlq");
    let records = read_records(&env.kafka, &dlq, 2, Duration::from_secs(30)).await;
    recorder.wait_for(2, Duration::from_secs(10)).await;
    running.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "no retry ladder was climbed"
    );
    let reasons: HashMap<String, String> = records
        .iter()
        .map(|r| {
            (
                header(r, "ce_id").unwrap(),
                header(r, retry_header::DLQ_REASON).unwrap(),
            )
        })
        .collect();
    assert_eq!(reasons.get(&bad.id).map(String::as_str), Some("permanent"));
    assert_eq!(reasons.get("poison-1").map(String::as_str), Some("poison"));
    assert!(
        recorder.seen().iter().any(|s| s.id == good.id),
        "the group kept going"
    );
    let retry = env.catalog.topic_name("fixture-chat.retry.100ms");
    assert!(is_empty(&env.kafka, &retry).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_group_never_disturbs_another_group_on_the_same_topic() {
    let env = fixture_env();
    env.create_group_topics("fixture-shared-a").await;
    env.create_group_topics("fixture-shared-b").await;
    let publisher = env.publisher();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            env.publish(&publisher, "comment.added", sample(&env, "comment.added"))
                .await
                .id,
        );
    }
    let failing = Recorder::new(|_| Err(HandlerError::retryable("classifier down")));
    let healthy = Recorder::succeeding();
    let a = start(&env, "fixture-shared-a", &failing, GroupSettings::default());
    let b = start(&env, "fixture-shared-b", &healthy, GroupSettings::default());
    // fixture-shared-a: 2 attempts, then its own dead letters.
    let dlq = env.catalog.topic_name("fixture-shared-a.dlq");
    read_records(&env.kafka, &dlq, 5, Duration::from_secs(40)).await;
    env.wait_until_settled("fixture-shared-b", Duration::from_secs(15))
        .await;
    env.wait_until_settled("fixture-shared-a", Duration::from_secs(15))
        .await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    let mut handled: Vec<String> = healthy.seen().iter().map(|s| s.id.clone()).collect();
    handled.sort();
    ids.sort();
    assert_eq!(handled, ids, "fixture-shared-b saw each event exactly once");
    assert_eq!(failing.seen().len(), 10);
    for topic in [
        "fixture-shared-b.retry.100ms",
        "fixture-shared-b.retry.200ms",
        "fixture-shared-b.dlq",
    ] {
        assert!(
            is_empty(&env.kafka, &env.catalog.topic_name(topic)).await,
            "{topic} got records"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_critical_backlog_is_served_before_a_lower_tier_which_still_moves() {
    let env = fixture_env();
    env.create_group_topics("fixture-tiers").await;
    let publisher = env.publisher();
    publish_many(&env, &publisher, "like.added", 400).await;
    // Four slots, so the tiers compete for them; each event takes 20 ms.
    let recorder = Recorder::succeeding().with_pause(|_| Duration::from_millis(20));
    let settings = GroupSettings {
        max_in_flight: Some(4),
        ..GroupSettings::default()
    };
    let running = start(&env, "fixture-tiers", &recorder, settings);
    recorder.wait_for(20, Duration::from_secs(30)).await;
    // A critical backlog arrives while the normal tier is being worked through.
    let arrived = Instant::now();
    publish_many(&env, &publisher, "payment.completed", 40).await;
    let seen = recorder.wait_for(440, Duration::from_secs(90)).await;
    running.stop().await.unwrap();
    let after: Vec<&Seen> = seen.iter().filter(|s| s.at >= arrived).collect();
    let critical_at = |nth: usize| {
        after
            .iter()
            .enumerate()
            .filter(|(_, s)| s.event_type == "payment.completed")
            .nth(nth)
            .map(|(i, _)| i)
            .expect("critical events were handled")
    };
    // The critical records take a moment to reach the broker and the next fetch; the normal
    // tier goes on meanwhile. Served in arrival order instead, they would wait for the whole
    // remaining backlog (about 380 events).
    let first = critical_at(0);
    // The window in which 90 % of the critical events were served (a straggler whose record
    // reached the broker late does not stretch it).
    let ninetieth = critical_at(35);
    let window = &after[first..=ninetieth];
    let normal_during = window
        .iter()
        .filter(|s| s.event_type == "like.added")
        .count();
    // Without priorities the 40 critical events would queue behind the whole normal backlog
    // (about 380 events). With them, the lower tier keeps its one slot of four at most.
    let order: String = after
        .iter()
        .map(|s| {
            if s.event_type == "like.added" {
                'n'
            } else {
                'C'
            }
        })
        .collect();
    assert!(
        first <= 150,
        "{first} normal events ran before the first critical one: {order}"
    );
    assert!(
        normal_during <= 36 / 3 + 4,
        "{normal_during} normal events ran while the critical backlog was served: {order}"
    );
    assert!(
        normal_during >= 1,
        "the lower tier kept moving (minimum share): {order}"
    );
    assert!(
        recorder.max_concurrent() <= 4,
        "{} calls ran at once",
        recorder.max_concurrent()
    );
    assert!(recorder.max_concurrent() >= 3, "calls overlapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_breaker_pauses_the_group_then_a_trial_closes_it() {
    let env = fixture_env();
    env.create_group_topics("fixture-ladder").await;
    let publisher = env.publisher();
    for _ in 0..10 {
        env.publish(&publisher, "message.sent", sample(&env, "message.sent"))
            .await;
    }
    let healthy_after = Arc::new(Mutex::new(None::<Instant>));
    let flag = healthy_after.clone();
    let recorder = Recorder::new(move |_| match *flag.lock().unwrap() {
        Some(t) if Instant::now() >= t => Ok(()),
        _ => Err(HandlerError::dependency(
            "message-store",
            "connection refused",
        )),
    });
    *healthy_after.lock().unwrap() = Some(Instant::now() + Duration::from_secs(3));
    let settings = GroupSettings {
        breaker_threshold: 2,
        breaker_cool_down: Duration::from_secs(2),
        ..GroupSettings::default()
    };
    let running = start(&env, "fixture-ladder", &recorder, settings);
    // Everything eventually succeeds once the dependency is back.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let ok = recorder
            .seen()
            .iter()
            .filter(|s| s.at >= healthy_after.lock().unwrap().unwrap())
            .count();
        if ok >= 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all events succeeded after recovery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await.unwrap();
    let failures_before = recorder
        .seen()
        .iter()
        .filter(|s| s.at < healthy_after.lock().unwrap().unwrap())
        .count();
    // Open after 2 failures; while open only single trials run, instead of every event failing
    // through the retry ladder.
    assert!(
        failures_before <= 2 + 10,
        "{failures_before} calls while the dependency was down"
    );
    let retry = env.catalog.topic_name("fixture-ladder.retry.1s");
    let dlq = env.catalog.topic_name("fixture-ladder.dlq");
    assert!(
        is_empty(&env.kafka, &dlq).await,
        "nothing was dead-lettered"
    );
    assert!(
        circulatory_testkit::count_records(&env.kafka, &retry).await <= 2,
        "retries stopped once the breaker opened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_flood_guard_stops_a_group_that_dead_letters_everything() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let publisher = env.publisher();
    publish_many(&env, &publisher, "message.sent", 400).await;
    let recorder =
        Recorder::new(|_| Err(HandlerError::permanent("schema drift in the message store")));
    let settings = GroupSettings {
        flood_window: 20,
        flood_min_events: 10,
        flood_max_ratio: 0.9,
        ..GroupSettings::default()
    };
    let running = start(&env, "fixture-chat", &recorder, settings);
    let result = tokio::time::timeout(Duration::from_secs(30), running.task)
        .await
        .expect("the group stops by itself")
        .unwrap();
    let error = result.expect_err("stopped by the guard").to_string();
    assert!(error.contains("flood guard"), "{error}");
    assert!(
        error.contains("schema drift in the message store"),
        "{error}"
    );
    let dead =
        circulatory_testkit::count_records(&env.kafka, &env.catalog.topic_name("fixture-chat.dlq"))
            .await;
    // The guard trips after 10 outcomes; what was already running (at most the in-flight bound,
    // 64 for this group) still finishes, the rest of the 400 stays in the topic.
    assert!(
        (10..=100).contains(&dead),
        "{dead} of 400 were dead-lettered before the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_figures_are_shared_in_redis() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let publisher = env.publisher();
    let mut failing = Vec::new();
    for i in 0..7 {
        let delivered = env
            .publish(&publisher, "message.sent", sample(&env, "message.sent"))
            .await;
        if i % 3 == 0 {
            failing.push(delivered.id);
        }
    }
    let recorder = Recorder::new(move |e| {
        if failing.iter().any(|id| id == e.id()) {
            Err(HandlerError::permanent("rejected"))
        } else {
            Ok(())
        }
    });
    let redis_url =
        std::env::var("CIRC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = redis::Client::open(redis_url)
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let mut consumer = ConsumerGroup::new(
        env.catalog.clone(),
        "fixture-chat",
        env.kafka.clone(),
        env.registry.clone(),
    )
    .unwrap()
    .redis(redis.clone());
    for event_type in &env.catalog.group("fixture-chat").unwrap().subscribe {
        consumer = consumer.handler(event_type, recorder.clone());
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));
    recorder.wait_for(7, Duration::from_secs(30)).await;
    let mut conn = redis.clone();
    let instances = format!("circ:{}:stats:group:fixture-chat:instance:*", env.namespace);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(&instances)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(found.len() <= 1, "one live instance: {found:?}");
        if found.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no instance reported its snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
    // The last flush runs in the background as the group stops: wait until all seven outcomes
    // are counted, then check that each was counted once.
    let key = format!("circ:{}:stats:group:fixture-chat", env.namespace);
    let deadline = Instant::now() + Duration::from_secs(5);
    let group = loop {
        let group: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let counted =
            group.get("completed").unwrap_or(&0) + group.get("dead_lettered").unwrap_or(&0);
        if counted >= 7 || Instant::now() >= deadline {
            break group;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(group.get("completed"), Some(&4), "{group:?}");
    assert_eq!(group.get("failed"), Some(&3), "{group:?}");
    assert_eq!(group.get("dead_lettered"), Some(&3), "{group:?}");
    assert_eq!(group.get("duration_count"), Some(&4), "{group:?}");
    let event: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("circ:{}:stats:event:message.sent", env.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(event.get("completed"), Some(&4), "{event:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_that_overruns_its_timeout_is_retried() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let publisher = env.publisher();
    let delivered = env
        .publish(&publisher, "message.sent", sample(&env, "message.sent"))
        .await;
    // The first attempt hangs; the retry returns at once.
    let recorder = Recorder::succeeding().with_pause(|e| {
        if e.attempt == 1 {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        }
    });
    let settings = GroupSettings {
        handler_timeout: Some(Duration::from_millis(300)),
        ..GroupSettings::default()
    };
    let started = Instant::now();
    let running = start(&env, "fixture-chat", &recorder, settings);
    let retry = env.catalog.topic_name("fixture-chat.retry.100ms");
    let records = read_records(&env.kafka, &retry, 1, Duration::from_secs(20)).await;
    let seen = recorder.wait_for(1, Duration::from_secs(20)).await;
    running.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the hung attempt was not waited for"
    );
    assert_eq!(seen[0].id, delivered.id);
    assert_eq!(
        seen[0].attempt, 2,
        "the timed-out first attempt never completed"
    );
    let record = &records[0];
    assert_eq!(
        header(record, retry_header::ERROR_CLASS).as_deref(),
        Some("retryable")
    );
    assert!(header(record, retry_header::ERROR_MESSAGE)
        .unwrap()
        .contains("timed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transactional_group_commits_emits_hand_offs_and_offsets_together() {
    let env = fixture_env();
    env.create_group_topics("fixture-chat").await;
    let output = env.topic_of("notification.created");
    env.create_topics_if_missing(&[output.as_str()]).await;
    let publisher = env.publisher();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(
            env.publish(&publisher, "message.sent", sample(&env, "message.sent"))
                .await
                .id,
        );
    }
    let (bad, flaky) = (ids[0].clone(), ids[1].clone());
    let notification = sample(&env, "notification.created");
    let group = |calls: Arc<Mutex<Vec<(String, u32)>>>| {
        let mut consumer = ConsumerGroup::new(
            env.catalog.clone(),
            "fixture-chat",
            env.kafka.clone(),
            env.registry.clone(),
        )
        .unwrap()
        .transactional();
        for event_type in &env.catalog.group("fixture-chat").unwrap().subscribe {
            let (calls, bad, flaky, notification) = (
                calls.clone(),
                bad.clone(),
                flaky.clone(),
                notification.clone(),
            );
            consumer = consumer.handler(event_type, move |event: Event, ctx: Context| {
                calls
                    .lock()
                    .unwrap()
                    .push((event.id().to_string(), event.attempt));
                let result = if event.id() == bad {
                    Err(HandlerError::permanent("no such conversation"))
                } else if event.id() == flaky && event.attempt == 1 {
                    Err(HandlerError::retryable("try again"))
                } else {
                    ctx.emit_json("notification.created", notification.clone());
                    Ok(())
                };
                async move { result }
            });
        }
        let stop = CancellationToken::new();
        Running {
            stop: stop.clone(),
            task: tokio::spawn(consumer.run(stop)),
        }
    };
    let calls = Arc::new(Mutex::new(Vec::new()));
    let running = group(calls.clone());
    // Nine succeed (one of them on its second attempt, after the first rung): nine emitted.
    let emitted = read_records(&env.kafka, &output, 9, Duration::from_secs(40)).await;
    let dead = read_records(
        &env.kafka,
        &env.catalog.topic_name("fixture-chat.dlq"),
        1,
        Duration::from_secs(10),
    )
    .await;
    running.stop().await.unwrap();
    assert_eq!(header(&dead[0], "ce_id").as_deref(), Some(bad.as_str()));
    let mut emitted_ids: Vec<String> = emitted
        .iter()
        .map(|r| header(r, "ce_id").unwrap())
        .collect();
    emitted_ids.sort();
    emitted_ids.dedup();
    assert_eq!(emitted_ids.len(), 9);
    assert!(calls
        .lock()
        .unwrap()
        .iter()
        .any(|(id, attempt)| *id == flaky && *attempt == 2));

    // The offsets committed with the records: a new process starts after them.
    let again = Arc::new(Mutex::new(Vec::new()));
    let running = group(again.clone());
    let extra = env
        .publish(&publisher, "message.sent", sample(&env, "message.sent"))
        .await;
    read_records(&env.kafka, &output, 10, Duration::from_secs(30)).await;
    env.wait_until_settled("fixture-chat", Duration::from_secs(15))
        .await;
    running.stop().await.unwrap();
    let seen: Vec<String> = again
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(seen, vec![extra.id]);
}

/// Slow handlers with a deep backlog fill the engine. The poll thread must go on polling
/// (rebalances run inside `poll`, and a member that stops polling is evicted), so it pauses every
/// partition instead of blocking, and resumes them once the engine takes records again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_engine_pauses_its_partitions_and_keeps_polling() {
    let env = fixture_env();
    env.create_group_topics("fixture-tiers").await;
    let publisher = env.publisher();
    publish_many(&env, &publisher, "like.added", 150).await;
    // 30 ms a call: a batch of about 17 records or more keeps the engine from taking the next one
    // for the poll thread's 500 ms, so the partitions pause whatever the batches' sizes.
    let recorder = Recorder::succeeding().with_pause(|_| Duration::from_millis(30));
    let metrics = GroupMetrics::new(&prometheus::Registry::new());
    let paused = metrics.paused.clone();
    let settings = GroupSettings {
        max_in_flight: Some(1),
        max_waiting: 2,
        channel_capacity: 1,
        ..GroupSettings::default()
    };
    let running = start_with_metrics(&env, "fixture-tiers", &recorder, settings, Some(metrics));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut most_paused = 0;
    // Sampled every 2 ms, so that a pause lifted soon after it began is not missed.
    while recorder.seen().len() < 150 && Instant::now() < deadline {
        most_paused = most_paused.max(paused.get());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Nothing left to hold: the poll thread hands its batch over and resumes every partition.
    let resumed_by = Instant::now() + Duration::from_secs(5);
    while paused.get() > 0 && Instant::now() < resumed_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let paused_at_the_end = paused.get();
    running.stop().await.unwrap();
    let seen = recorder.seen();
    let mut ids: Vec<&str> = seen.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 150, "every event handled");
    assert_eq!(seen.len(), 150, "each once");
    assert!(
        most_paused > 0,
        "the partitions were never paused while the engine was full"
    );
    assert_eq!(
        paused_at_the_end, 0,
        "resumed once the engine took records again"
    );
}

/// The dependency is down long enough to open the breaker; when the half-open trial runs, the
/// dependency is back but the trial event itself is refused for good. That event goes to the dead
/// letters (a permanent failure is not the dependency's fault), and the group goes on: the events
/// that arrived while it was paused, and the retries of those that opened the breaker, are all
/// handled within seconds of the cool-down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_breaker_trial_that_fails_for_good_is_dead_lettered_and_the_group_goes_on() {
    const OPENING: usize = 3;
    const LATER: usize = 5;
    let env = fixture_env();
    env.create_group_topics("fixture-ladder").await;
    let publisher = env.publisher();
    let mut opening = Vec::new();
    for _ in 0..OPENING {
        let delivered = env
            .publish(&publisher, "message.sent", sample(&env, "message.sent"))
            .await;
        opening.push(delivered.id);
    }
    // Calls run one at a time (max_in_flight 1), so the third dependency failure is the one that
    // opens the breaker, and its event is the one parked for the trial.
    #[derive(Default)]
    struct Script {
        calls: usize,
        trial: Option<String>,
    }
    let script = Arc::new(Mutex::new(Script::default()));
    let shared = script.clone();
    let recorder = Recorder::new(move |e| {
        let mut script = shared.lock().unwrap();
        script.calls += 1;
        if script.calls <= OPENING {
            if script.calls == OPENING {
                script.trial = Some(e.id().to_string());
            }
            return Err(HandlerError::dependency(
                "message-store",
                "connection refused",
            ));
        }
        if script.trial.as_deref() == Some(e.id()) {
            Err(HandlerError::permanent("the conversation no longer exists"))
        } else {
            Ok(())
        }
    });
    let metrics = GroupMetrics::new(&prometheus::Registry::new());
    let breaker = metrics.breaker.with_label_values(&["message-store"]);
    let paused = metrics.paused.clone();
    // The cool-down (300 ms) is shorter than the first rung (1 s): the trial runs before
    // the retries of the first two events come back.
    let cool_down = Duration::from_millis(300);
    let settings = GroupSettings {
        breaker_threshold: OPENING as u32,
        breaker_cool_down: cool_down,
        max_in_flight: Some(1),
        ..GroupSettings::default()
    };
    let running = start_with_metrics(&env, "fixture-ladder", &recorder, settings, Some(metrics));
    recorder.wait_for(OPENING, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while breaker.get() == 0 {
        assert!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened_at = Instant::now();
    // Published while the group is paused for the breaker: they wait in Kafka.
    let mut later = Vec::new();
    for _ in 0..LATER {
        let delivered = env
            .publish(&publisher, "message.sent", sample(&env, "message.sent"))
            .await;
        later.push(delivered.id);
    }
    let trial = script.lock().unwrap().trial.clone().expect("a trial event");
    let dlq = env.catalog.topic_name("fixture-ladder.dlq");
    let records = read_records(&env.kafka, &dlq, 1, Duration::from_secs(15)).await;
    assert_eq!(
        header(&records[0], "ce_id").as_deref(),
        Some(trial.as_str())
    );
    assert_eq!(
        header(&records[0], retry_header::ERROR_CLASS).as_deref(),
        Some("permanent")
    );
    assert_eq!(
        header(&records[0], retry_header::DLQ_REASON).as_deref(),
        Some("permanent")
    );
    // Every other event succeeds: the two retried openers and the five that came later.
    let expected: Vec<String> = opening
        .iter()
        .filter(|id| **id != trial)
        .chain(&later)
        .cloned()
        .collect();
    let within = cool_down + Duration::from_secs(10);
    let succeeded = |seen: &[Seen]| -> Vec<String> {
        let mut ids: Vec<String> = seen
            .iter()
            .skip(OPENING)
            .filter(|s| s.id != trial)
            .map(|s| s.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    loop {
        let done = succeeded(&recorder.seen());
        if expected.iter().all(|id| done.contains(id)) {
            break;
        }
        let missing: Vec<&String> = expected.iter().filter(|id| !done.contains(id)).collect();
        assert!(
            opened_at.elapsed() < within,
            "the group did not go on after the failed trial: {} of {} events still unhandled \
             {within:?} after the breaker opened ({missing:?}); breaker gauge {}, {} partition(s) \
             paused",
            missing.len(),
            expected.len(),
            breaker.get(),
            paused.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed_by = Instant::now() + Duration::from_secs(5);
    while (breaker.get() != 0 || paused.get() != 0) && Instant::now() < resumed_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (breaker_at_the_end, paused_at_the_end) = (breaker.get(), paused.get());
    running.stop().await.unwrap();
    let seen = recorder.seen();
    // The trial really was the half-open trial: the first call after the three failures, before
    // any success could close the breaker.
    assert_eq!(
        seen[OPENING].id, trial,
        "the call after the breaker opened was not the trial"
    );
    assert_eq!(
        seen.iter().filter(|s| s.id == trial).count(),
        2,
        "the trial event ran once more, as the trial, and was not retried"
    );
    assert_eq!(breaker_at_the_end, 0, "the breaker closed");
    assert_eq!(paused_at_the_end, 0, "every partition resumed");
    assert_eq!(
        circulatory_testkit::count_records(&env.kafka, &dlq).await,
        1,
        "only the trial event was dead-lettered"
    );
}
