//! Consumer processes killed, stopped and rebalanced for real: every event's effect lands exactly
//! once, and nothing is lost.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use circulatory_testkit::{header, read_records, sample_data, TestEnv};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://circulatory:circulatory@127.0.0.1:5432/circulatory".into())
}

fn spawn_consumer(env: &TestEnv, table: &str, handler_ms: u64) -> Child {
    consumer_command(env, table, handler_ms)
        .spawn()
        .expect("the test consumer starts")
}

/// A transactional instance that emits one `notification.created` per event.
fn spawn_transactional_emitter(env: &TestEnv, table: &str, handler_ms: u64) -> Child {
    consumer_command(env, table, handler_ms)
        .env("CIRC_TEST_EMIT", "notification.created")
        .env("CIRC_TEST_TRANSACTIONAL", "1")
        // Stable per instance slot: a restarted instance fences its dead predecessor at once.
        .env(
            "CIRC_TEST_TRANSACTIONAL_ID",
            format!("emitter-{}", env.namespace),
        )
        .spawn()
        .expect("the test consumer starts")
}

fn consumer_command(env: &TestEnv, table: &str, handler_ms: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_circ-test-consumer"));
    command
        .env("CIRC_NAMESPACE", &env.namespace)
        .env("CIRC_TEST_TABLE", table)
        .env("CIRC_TEST_HANDLER_MS", handler_ms.to_string())
        .env("DATABASE_URL", database_url())
        .env("CIRC_KAFKA_BOOTSTRAP", circulatory_testkit::bootstrap())
        .env("CIRC_REGISTRY_URL", circulatory_testkit::registry_url())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

async fn setup(env: &TestEnv) -> (PgPool, String) {
    env.create_group_topics("payments").await;
    let pool = circulatory::db::connect(&database_url(), 4)
        .await
        .expect("database");
    circulatory::db::migrate(&pool).await.expect("migrations");
    let table = format!("effects_{}", env.namespace);
    sqlx::query(&format!(
        "CREATE TABLE {table} (event_id TEXT PRIMARY KEY, applied INTEGER NOT NULL)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {table}_calls (event_id TEXT PRIMARY KEY, calls INTEGER NOT NULL)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    (pool, table)
}

async fn publish(env: &TestEnv, count: usize) -> Vec<String> {
    let publisher = env.publisher();
    let schema = env
        .catalog
        .event("payment.initiated")
        .unwrap()
        .schema_json
        .clone();
    let events = (0..count)
        .map(|_| {
            publisher
                .validate(circulatory::publisher::EventDraft {
                    event_type: "payment.initiated".into(),
                    data: sample_data(&schema),
                    ..Default::default()
                })
                .unwrap()
        })
        .collect();
    publisher
        .publish_all(events)
        .await
        .into_iter()
        .map(|r| r.expect("published").id)
        .collect()
}

async fn applied(pool: &PgPool, table: &str) -> (i64, i64) {
    sqlx::query_as::<_, (i64, Option<i64>)>(&format!(
        "SELECT count(*), sum(applied)::BIGINT FROM {table}"
    ))
    .fetch_one(pool)
    .await
    .map(|(rows, sum)| (rows, sum.unwrap_or(0)))
    .unwrap()
}

async fn wait_for_rows(pool: &PgPool, table: &str, rows: i64, within: Duration) -> (i64, i64) {
    let deadline = Instant::now() + within;
    loop {
        let now = applied(pool, table).await;
        if now.0 >= rows || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(child: &Child, signal: &str) {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_applies_every_effect_exactly_once() {
    let env = TestEnv::new();
    let (pool, table) = setup(&env).await;
    let ids = publish(&env, 400).await;

    let mut first = spawn_consumer(&env, &table, 5);
    let (rows, _) = wait_for_rows(&pool, &table, 60, Duration::from_secs(60)).await;
    assert!(rows >= 60, "the first process made progress");
    signal(&first, "KILL");
    first.wait().unwrap();
    let at_kill = applied(&pool, &table).await.0;
    assert!(
        at_kill < ids.len() as i64,
        "killed mid-stream ({at_kill} of {})",
        ids.len()
    );

    let mut second = spawn_consumer(&env, &table, 0);
    let (rows, sum) = wait_for_rows(&pool, &table, ids.len() as i64, Duration::from_secs(90)).await;
    // Let redeliveries (everything after the last commit before the kill) come through: the
    // group has committed every record it reads.
    env.wait_until_settled("payments", Duration::from_secs(60))
        .await;
    let (rows_after, sum_after) = applied(&pool, &table).await;
    signal(&second, "TERM");
    second.wait().unwrap();
    assert_eq!(rows, ids.len() as i64, "every event applied");
    assert_eq!(
        (rows_after, sum_after),
        (rows, sum),
        "nothing applied after the end"
    );
    assert_eq!(sum, ids.len() as i64, "each effect applied exactly once");
    let calls: i64 = sqlx::query_scalar(&format!("SELECT sum(calls)::BIGINT FROM {table}_calls"))
        .fetch_one(&pool)
        .await
        .unwrap();
    // Events handled but not yet committed when the process died were delivered again; the
    // processed_events row turned those second calls into no-ops.
    assert!(
        calls > sum,
        "the kill left redeliveries to absorb ({calls} calls for {sum} effects)"
    );
    let processed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE consumer_group = 'payments' AND topic = $1",
    )
    .bind(env.topic_of("payment.initiated"))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(processed, ids.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_rebalancing_under_load_lose_nothing() {
    let env = TestEnv::new();
    let (pool, table) = setup(&env).await;
    let mut a = spawn_consumer(&env, &table, 3);
    let mut total = publish(&env, 200).await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A second instance joins while the first is busy: partitions move (cooperative-sticky).
    let mut b = spawn_consumer(&env, &table, 3);
    total += publish(&env, 200).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The first leaves gracefully mid-stream: it finishes in-flight work and commits.
    signal(&a, "TERM");
    total += publish(&env, 200).await.len();
    assert!(a.wait().unwrap().success(), "a graceful stop exits 0");
    let (rows, sum) = wait_for_rows(&pool, &table, total as i64, Duration::from_secs(90)).await;
    env.wait_until_settled("payments", Duration::from_secs(60))
        .await;
    let after = applied(&pool, &table).await;
    signal(&b, "TERM");
    assert!(b.wait().unwrap().success());
    assert_eq!(rows, total as i64, "no event lost across rebalances");
    assert_eq!(sum, total as i64, "no effect applied twice");
    assert_eq!(after, (rows, sum), "nothing applied once settled");
}

/// Every committed record of `topic` (a `read_committed` reader), read until none came for
/// `quiet`, after at least `at_least` of them.
async fn read_committed(
    env: &TestEnv,
    topic: &str,
    at_least: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let mut records = read_records(&env.kafka, topic, at_least, Duration::from_secs(90)).await;
    let consumer: StreamConsumer = circulatory::kafka::reader(&env.kafka).expect("reader");
    let mut assignment = TopicPartitionList::new();
    let partitions = env
        .catalog
        .topic_specs(None)
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions)
        .expect("declared topic");
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut stream = consumer.stream();
    let mut again = Vec::new();
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(3), stream.next()).await
    {
        again.push(message.detach());
    }
    if again.len() > records.len() {
        records = again;
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_transactional_group_emits_each_event_exactly_once() {
    let env = TestEnv::new();
    let (pool, table) = setup(&env).await;
    let output = env.topic_of("notification.created");
    env.create_topics_if_missing(&[output.as_str()]).await;
    let ids = publish(&env, 300).await;

    let mut first = spawn_transactional_emitter(&env, &table, 10);
    let calls = |pool: PgPool, table: String| async move {
        sqlx::query_scalar::<_, Option<i64>>(&format!(
            "SELECT sum(calls)::BIGINT FROM {table}_calls"
        ))
        .fetch_one(&pool)
        .await
        .unwrap()
        .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls(pool.clone(), table.clone()).await < 80 {
        assert!(
            Instant::now() < deadline,
            "the first process made no progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Killed with a transaction open: its records were produced, not committed.
    signal(&first, "KILL");
    first.wait().unwrap();

    let mut second = spawn_transactional_emitter(&env, &table, 0);
    let records = read_committed(&env, &output, ids.len()).await;
    signal(&second, "TERM");
    assert!(second.wait().unwrap().success(), "a graceful stop exits 0");

    let mut emitted: Vec<String> = records
        .iter()
        .map(|r| header(r, "ce_id").expect("ce_id"))
        .collect();
    let total = emitted.len();
    emitted.sort();
    emitted.dedup();
    assert_eq!(emitted.len(), ids.len(), "one emitted event per input");
    assert_eq!(total, ids.len(), "no emitted event visible twice");
    let calls = calls(pool.clone(), table.clone()).await;
    assert!(
        calls > ids.len() as i64,
        "the kill left redeliveries ({calls} calls for {} events)",
        ids.len()
    );
}
