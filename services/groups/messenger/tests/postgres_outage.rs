//! PostgreSQL really stops while messenger runs: the failures are dependency failures, the
//! `postgres` breaker opens and the group parks the event (every partition paused) instead of
//! climbing the retry ladder into the dead letters; once PostgreSQL is back the group recovers by
//! itself and every message is stored, nothing dead-lettered. The outage lasts 10 s and the
//! breaker's growing cool-down has the parked messages stored within 5 s of PostgreSQL's return.
//!
//! This test stops the local stack's PostgreSQL (`scripts/stack stop postgres`), so it lives
//! alone in its own test binary; PostgreSQL is started again even if the test fails.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use circulatory::consumer::retry::header as retry_header;
use circulatory::consumer::GroupSettings;
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{self as support, eventually, publish_with_id, uuid};
use circulatory_group_messenger::{register, GROUP};
use circulatory_testkit::{count_records, header, read_records, TestEnv};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use uuid::Uuid;

fn stack_script() -> PathBuf {
    circulatory_testkit::repo_root().join("scripts/stack")
}

fn stack(args: &[&str]) -> std::io::Result<Output> {
    Command::new(stack_script()).args(args).output()
}

/// Starts PostgreSQL again when dropped, even if the test failed half-way.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        match stack(&["start", "postgres"]) {
            Ok(output) if output.status.success() => {}
            other => eprintln!("could not start PostgreSQL again: {other:?}"),
        }
    }
}

async fn stack_async(args: &'static [&'static str]) {
    let output = tokio::task::spawn_blocking(move || stack(args))
        .await
        .expect("join")
        .expect("scripts/stack runs");
    assert!(
        output.status.success(),
        "scripts/stack {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn sent(id: &str, body: &str) -> serde_json::Value {
    json!({"messageId": id, "conversationId": uuid(), "senderId": uuid(), "recipientId": uuid(),
           "body": body, "replyToMessageId": null, "sentAt": "2026-11-27T10:00:00Z"})
}

async fn stored(deps: &circulatory_group_common::deps::Deps, message_id: &str) -> bool {
    sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM messages WHERE id = $1")
        .bind(Uuid::parse_str(message_id).unwrap())
        .fetch_one(&deps.pool)
        .await
        .map(|(n,)| n == 1)
        .unwrap_or(false)
}

/// Partitions the group is assigned (it is the only member): its main topics, retry rungs and
/// replay topic.
async fn group_partitions(env: &TestEnv) -> i64 {
    let group = env.catalog.group(GROUP).unwrap().clone();
    let mut topics = env.catalog.group_topics(&group);
    topics.extend(
        group
            .retry_delays
            .iter()
            .map(|d| env.catalog.topic_name(&group.retry_topic_base(*d))),
    );
    topics.push(env.catalog.topic_name(&group.replay_topic_base()));
    let reader: BaseConsumer = circulatory::kafka::reader(&env.kafka).expect("reader");
    tokio::task::spawn_blocking(move || {
        let metadata = reader
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|n| n == t.name()))
            .map(|t| t.partitions().len() as i64)
            .sum()
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_down_opens_the_breaker_parks_the_events_and_the_group_recovers_by_itself() {
    const THRESHOLD: u32 = 3;
    const OUTAGE: Duration = Duration::from_secs(10);
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    env.create_topics_if_missing(&[&env.topic_of("notification.created")])
        .await;
    env.create_group_topics(GROUP).await;
    let partitions = group_partitions(&env).await;
    assert!(partitions > 0);
    // The production cool-downs: 1 s, growing 1.5 times per failed trial, up to 60 s.
    let settings = GroupSettings {
        breaker_threshold: THRESHOLD,
        breaker_first_cool_down: Duration::from_secs(1),
        breaker_cool_down: Duration::from_secs(60),
        ..support::settings()
    };
    let (group, metrics) =
        support::start_observed(&env, &deps, GROUP, register, NoOptions {}, settings).await;
    let breaker = metrics.breaker.with_label_values(&["postgres"]);
    let paused = metrics.paused.clone();
    let failed = metrics.failed.with_label_values(&["message.sent"]);
    let publisher = env.publisher();

    // Warm up: the group is assigned and stores messages.
    let warm_up = uuid();
    publish_with_id(
        &env,
        &publisher,
        "message.sent",
        &uuid(),
        sent(&warm_up, "hi"),
    )
    .await;
    eventually(
        "the first message stored",
        Duration::from_secs(30),
        || async { stored(&deps, &warm_up).await.then_some(()) },
    )
    .await;

    let _restart = RestartOnDrop;
    stack_async(&["stop", "postgres"]).await;
    assert!(
        sqlx::query("SELECT 1").execute(&deps.pool).await.is_err(),
        "PostgreSQL still answers"
    );
    let down_at = Instant::now();
    let mut phases = Vec::new();

    // As many messages as the breaker's threshold: the first failures go to the retry topic as
    // dependency failures, the one that opens the breaker is parked.
    let mut messages = Vec::new();
    for i in 0..THRESHOLD {
        let message_id = uuid();
        publish_with_id(
            &env,
            &publisher,
            "message.sent",
            &uuid(),
            sent(&message_id, &format!("while the database is down {i}")),
        )
        .await;
        messages.push(message_id);
    }
    eventually(
        "the postgres breaker open",
        Duration::from_secs(30),
        || async { (breaker.get() == 2).then_some(()) },
    )
    .await;
    eventually(
        "every partition paused for the breaker",
        Duration::from_secs(10),
        || async { (paused.get() == partitions).then_some(()) },
    )
    .await;
    phases.push(("breaker open, partitions paused", down_at.elapsed()));
    // The failures before the breaker opened were handed to the first retry rung, as
    // dependency failures of postgres.
    let retry = env.catalog.topic_name(
        &env.catalog
            .group(GROUP)
            .unwrap()
            .retry_topic_base(env.catalog.group(GROUP).unwrap().retry_delays[0]),
    );
    let retried = read_records(
        &env.kafka,
        &retry,
        THRESHOLD as usize - 1,
        Duration::from_secs(10),
    )
    .await;
    for record in &retried {
        assert_eq!(
            header(record, retry_header::ERROR_CLASS).as_deref(),
            Some("dependency")
        );
        let message = header(record, retry_header::ERROR_MESSAGE).unwrap_or_default();
        assert!(message.starts_with("postgres:"), "{message}");
    }
    // Trials run after each cool-down and fail while PostgreSQL is down; the parked events stay
    // parked, well past the point where the retry ladder (1 s, 2 s, 3 attempts) would have
    // dead-lettered them.
    let failure = header(&retried[0], retry_header::ERROR_MESSAGE).unwrap_or_default();
    let before_trials = failed.get();
    eventually(
        "two more trials failed while the database is down",
        Duration::from_secs(20),
        || async { (failed.get() >= before_trials + 2).then_some(()) },
    )
    .await;
    let dlq = env
        .catalog
        .topic_name(&env.catalog.group(GROUP).unwrap().dead_letter_topic_base());
    assert_eq!(
        count_records(&env.kafka, &dlq).await,
        0,
        "an event was dead-lettered while the database was down"
    );
    assert!(
        breaker.get() > 0,
        "the breaker closed while the database was down"
    );
    assert_eq!(paused.get(), partitions, "a partition resumed");
    phases.push(("two trials failed", down_at.elapsed()));
    // A 10 s outage: the target is processing again within 5 s of PostgreSQL's return.
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    let outage = down_at.elapsed();

    stack_async(&["start", "postgres"]).await;
    let up_at = Instant::now();
    for message_id in &messages {
        eventually(
            &format!("message {message_id} stored after the outage"),
            Duration::from_secs(30),
            || async { stored(&deps, message_id).await.then_some(()) },
        )
        .await;
    }
    let recovered_in = up_at.elapsed();
    assert!(
        recovered_in < Duration::from_secs(5),
        "the parked messages were stored {recovered_in:?} after PostgreSQL was back"
    );
    eventually(
        "the breaker closed and every partition resumed",
        Duration::from_secs(10),
        || async { (breaker.get() == 0 && paused.get() == 0).then_some(()) },
    )
    .await;
    // And the group goes on as usual.
    let after = uuid();
    publish_with_id(
        &env,
        &publisher,
        "message.sent",
        &uuid(),
        sent(&after, "back"),
    )
    .await;
    eventually(
        "a message after the outage stored",
        Duration::from_secs(10),
        || async { stored(&deps, &after).await.then_some(()) },
    )
    .await;
    group.stop().await;
    assert_eq!(
        count_records(&env.kafka, &dlq).await,
        0,
        "nothing was dead-lettered"
    );
    assert_eq!(
        metrics
            .dead_lettered
            .with_label_values(&["message.sent"])
            .get(),
        0
    );
    eprintln!(
        "outage {outage:?} ({phases:?}; {} failed calls, first failure \"{failure}\"), \
         stored {recovered_in:?} after PostgreSQL was started",
        failed.get()
    );
}
