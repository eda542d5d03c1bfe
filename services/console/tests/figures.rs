//! The console's figures against the real stack: they move as events flow, lag per partition is
//! what a Kafka client reads, members come and go with instances, time lag grows while a group
//! is stopped, and `circ lag` (the same library) agrees.

mod support;

use std::sync::Arc;
use std::time::Duration;

use circulatory::consumer::lag::groups_lag;
use circulatory_testkit::TestEnv;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use support::{operator, publish, redis, Console, Controlled};

const GROUP: &str = "event-tracking";
const TYPE: &str = "search.performed";

fn queue(body: &Value) -> &Value {
    &body[GROUP]
}

/// Committed offsets and log ends read directly, per main-topic partition.
fn kafka_lag(env: &TestEnv) -> Vec<(i32, i64)> {
    let topic = env.topic_of(TYPE);
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &env.kafka.bootstrap_servers)
        .set("group.id", env.catalog.topic_name(GROUP));
    let client: BaseConsumer = config.create().unwrap();
    let partitions = env
        .catalog
        .topic_specs(Some(1))
        .into_iter()
        .find(|s| s.name == topic)
        .unwrap()
        .partitions;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(&topic, p);
    }
    let committed = client
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| {
            let (low, high) = client
                .fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
                .unwrap();
            let next = match e.offset() {
                Offset::Offset(o) => o.max(low),
                _ => low,
            };
            (e.partition(), high - next)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn figures_follow_the_events_and_agree_with_kafka() {
    let env = TestEnv::new();
    let console = Console::start(&env, &[]).await;
    let ops = operator();
    let group = Controlled::start(&env, GROUP, redis().await).await;
    // A member appears when an instance starts.
    console
        .until(&ops, "/admin/circulatory/queues", "a member", |b| {
            queue(b)["members"].as_array().is_some_and(|m| m.len() == 1)
                && queue(b)["instances"]
                    .as_array()
                    .is_some_and(|i| i.len() == 1)
        })
        .await;

    // N events: the group's completed and the type's processed grow by N.
    publish(&env, TYPE, 7).await;
    group.wait_seen(7).await;
    console
        .until(&ops, "/admin/circulatory/queues", "completed", |b| {
            queue(b)["completed"] == 7 && queue(b)["waiting"] == 0
        })
        .await;
    let events = console
        .until(&ops, "/admin/circulatory/events", "processed", |b| {
            b[TYPE]["processed"] == 7
        })
        .await;
    // Durations are kept as a histogram: percentiles exist once calls finished, in order.
    let (_, queues) = console.get(&ops, "/admin/circulatory/queues").await;
    for figures in [queue(&queues), &events[TYPE]] {
        let p50 = figures["durationP50Ms"].as_f64().expect("p50");
        let p99 = figures["durationP99Ms"].as_f64().expect("p99");
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= 1_000.0, "{figures}");
    }

    // A failing handler moves failed and dead-lettered.
    group.break_it(true);
    publish(&env, TYPE, 2).await;
    let body = console
        .until(&ops, "/admin/circulatory/queues", "failures", |b| {
            queue(b)["failed"] == 2 && queue(b)["deadLettered"] == 2
        })
        .await;
    assert_eq!(queue(&body)["completed"], 7);
    console
        .until(
            &ops,
            "/admin/circulatory/queues",
            "open dead letters",
            |b| queue(b)["dlq"]["open"] == 2,
        )
        .await;

    // Stopped: the member leaves; records wait, and their age grows.
    group.stop().await;
    console
        .until(&ops, "/admin/circulatory/queues", "no member", |b| {
            queue(b)["members"].as_array().is_some_and(|m| m.is_empty())
        })
        .await;
    publish(&env, TYPE, 5).await;
    let first = console
        .until(
            &ops,
            &format!("/admin/circulatory/queues/{GROUP}"),
            "lag",
            |b| b["waiting"] == 5 && b["timeLagSeconds"].as_f64().unwrap_or(0.0) > 0.0,
        )
        .await;
    assert_eq!(
        first["health"]["status"], "no_members",
        "{}",
        first["health"]
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, later) = console
        .get(&ops, &format!("/admin/circulatory/queues/{GROUP}"))
        .await;
    assert!(
        later["timeLagSeconds"].as_f64().unwrap()
            >= first["timeLagSeconds"].as_f64().unwrap() + 1.0,
        "time lag did not grow: {} then {}",
        first["timeLagSeconds"],
        later["timeLagSeconds"]
    );

    // Per partition, lag is end offset minus committed offset as a Kafka client reads them.
    let topic = env.topic_of(TYPE);
    let mut expected = kafka_lag(&env);
    expected.sort();
    let mut shown: Vec<(i32, i64)> = later["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["topic"] == topic.as_str())
        .map(|p| {
            (
                p["partition"].as_i64().unwrap() as i32,
                p["lag"].as_i64().unwrap(),
            )
        })
        .collect();
    shown.sort();
    assert_eq!(shown, expected);
    assert_eq!(expected.iter().map(|(_, l)| l).sum::<i64>(), 5);

    // `circ lag` reads the same.
    let declared = env.catalog.group(GROUP).unwrap().clone();
    let lag = groups_lag(
        &env.kafka,
        Arc::new((*env.catalog).clone()),
        vec![declared],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(later["waiting"].as_i64(), Some(lag[0].waiting));
    assert_eq!(later["delayed"].as_i64(), Some(lag[0].delayed));

    // The exporter-style series say the same.
    let metrics = console
        .http
        .get(console.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let group_id = env.catalog.topic_name(GROUP);
    assert!(
        metrics.contains(&format!(
            "kafka_consumergroup_lag_sum{{consumergroup=\"{group_id}\",topic=\"{topic}\"}} 5"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "circulatory_group_lag_records{{group=\"{GROUP}\",role=\"main\"}} 5"
    )));
    assert!(metrics.contains(&format!(
        "kafka_consumergroup_members{{consumergroup=\"{group_id}\"}} 0"
    )));
    assert!(metrics.contains(&format!(
        "circulatory_group_status{{group=\"{GROUP}\",status=\"no_members\"}} 1"
    )));
    assert!(metrics.contains(&format!("circulatory_dlq_open{{group=\"{GROUP}\"}} 2")));
}
