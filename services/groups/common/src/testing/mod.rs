//! Runs a group's real handlers in-process against the real stack, in a fresh namespace.

mod outage;

pub use outage::{DatabaseOutage, DeadLettered};

use std::future::Future;
use std::time::{Duration, Instant};

use crate::deps::Deps;
use crate::runner::Register;
use circulatory::consumer::telemetry::GroupMetrics;
use circulatory::consumer::{ConsumerGroup, GroupSettings};
use circulatory_testkit::TestEnv;
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://circulatory:circulatory@127.0.0.1:5432/circulatory".into())
}

pub fn redis_url() -> String {
    std::env::var("CIRC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub async fn redis() -> ConnectionManager {
    let client = redis::Client::open(redis_url()).expect("redis url");
    ConnectionManager::new(client).await.expect("redis")
}

/// The handles a group binary would build, for this test's namespace.
pub async fn deps(env: &TestEnv) -> Deps {
    let pool = circulatory::db::connect(&database_url(), 8)
        .await
        .expect("postgres");
    circulatory::db::migrate(&pool).await.expect("migrations");
    Deps::new(env.catalog.clone(), pool, redis().await)
}

/// A group running in this process until stopped.
pub struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), circulatory::consumer::ConsumerError>>,
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("group task")
            .expect("group stopped cleanly");
    }
}

/// Test settings: short retries come from topics.yaml; a short breaker cool-down and drain.
pub fn settings() -> GroupSettings {
    GroupSettings {
        drain_timeout: Duration::from_secs(3),
        session_timeout: Duration::from_secs(6),
        ..GroupSettings::default()
    }
}

/// Creates the group's topics and starts it with `register`'s handlers.
pub async fn start<O>(
    env: &TestEnv,
    deps: &Deps,
    group: &str,
    register: Register<O>,
    options: O,
) -> Running {
    start_with(env, deps, group, register, options, settings()).await
}

pub async fn start_with<O>(
    env: &TestEnv,
    deps: &Deps,
    group: &str,
    register: Register<O>,
    options: O,
    settings: GroupSettings,
) -> Running {
    launch(env, deps, group, register, options, settings, None).await
}

/// Like [`start_with`], and returns the group's metrics (breaker, paused partitions, counts) for
/// the test to watch.
pub async fn start_observed<O>(
    env: &TestEnv,
    deps: &Deps,
    group: &str,
    register: Register<O>,
    options: O,
    settings: GroupSettings,
) -> (Running, GroupMetrics) {
    let metrics = GroupMetrics::new(&Default::default());
    let running = launch(
        env,
        deps,
        group,
        register,
        options,
        settings,
        Some(metrics.clone()),
    )
    .await;
    (running, metrics)
}

async fn launch<O>(
    env: &TestEnv,
    deps: &Deps,
    group: &str,
    register: Register<O>,
    options: O,
    settings: GroupSettings,
    metrics: Option<GroupMetrics>,
) -> Running {
    env.create_group_topics(group).await;
    let mut consumer = ConsumerGroup::new(
        env.catalog.clone(),
        group,
        env.kafka.clone(),
        env.registry.clone(),
    )
    .expect("group")
    .redis(deps.redis.clone())
    .settings(settings);
    if let Some(metrics) = metrics {
        consumer = consumer.metrics(metrics);
    }
    let consumer = register(consumer, deps, options).expect("the group accepts its options");
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));
    Running { stop, task }
}

/// Polls `check` until it returns `Some`, or fails the test after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Handles whose PostgreSQL is unreachable (a closed port): every database effect fails as a
/// dependency failure, so the group's retry and dead-letter path runs with its real handlers.
pub async fn deps_without_database(env: &TestEnv) -> Deps {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://nobody:nothing@127.0.0.1:1/none")
        .expect("lazy pool");
    Deps::new(env.catalog.clone(), pool, redis().await)
}

/// Publishes `data` as `event_type` with a chosen id (a redelivery is the same id again).
pub async fn publish_with_id(
    env: &TestEnv,
    publisher: &circulatory::publisher::EventPublisher,
    event_type: &str,
    id: &str,
    data: serde_json::Value,
) {
    let validated = publisher
        .validate(circulatory::publisher::EventDraft {
            event_type: event_type.into(),
            data,
            id: Some(id.into()),
            correlation_id: Some(format!("corr-{}", env.namespace)),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{event_type}: {e}"));
    publisher.publish(validated).await.expect("published");
}

/// Waits for `count` dead letters of `group` and returns them.
pub async fn dead_letters(
    env: &TestEnv,
    group: &str,
    count: usize,
    within: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    let topic = env.catalog.topic_name(
        &env.catalog
            .group(group)
            .expect("group")
            .dead_letter_topic_base(),
    );
    circulatory_testkit::read_records(&env.kafka, &topic, count, within).await
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
