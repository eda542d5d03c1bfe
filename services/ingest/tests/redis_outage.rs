//! Redis goes away under the ingest API. A crash (kill -9) does not make it forget the
//! idempotency window: an id acknowledged before the crash is still a replay after it (the
//! stack's Redis logs every write and fsyncs each second). While Redis is down, a request that
//! needs it (an event id to remember, an ephemeral broadcast) is a 503 at once, not a wait for a
//! timeout, and an event that needs only Kafka is still published. This test stops the local
//! stack's Redis, so it lives alone in its own test binary; Redis is started again even if the
//! test fails.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use support::{api, Api};

fn stack(args: &[&str]) -> std::process::Output {
    let script: PathBuf = circulatory_testkit::repo_root().join("scripts/stack");
    Command::new(script)
        .args(args)
        .output()
        .expect("scripts/stack runs")
}

/// Starts Redis again when dropped, even if the test failed half-way.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let output = stack(&["start", "redis"]);
        if !output.status.success() {
            eprintln!("could not start Redis again: {output:?}");
        }
    }
}

fn redis_pid() -> i32 {
    let file = circulatory_testkit::repo_root().join(".stack/run/redis.pid");
    std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no Redis pid in {}", file.display()))
}

/// Waits until `/readyz` reports Redis as `up`.
async fn until_redis(api: &Api, up: bool) -> Duration {
    let started = Instant::now();
    loop {
        let ready = api.get("/readyz").await;
        if ready.body["redis"] == up {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "redis never reported {}: {}",
            if up { "up" } else { "down" },
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_redis_crash_keeps_the_idempotency_window_and_an_outage_fails_fast() {
    let _restart = RestartOnDrop;
    let api = api(&["comment.added", "like.added"]).await;
    let id = uuid::Uuid::new_v4().to_string();
    let data = api.sample("comment.added");
    let first = api
        .post_json(&json!({"type": "comment.added", "id": id, "data": data}))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);

    // A crash, after the one-second fsync bound.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Command::new("kill")
        .args(["-9", &redis_pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    until_redis(&api, false).await;
    let output = stack(&["start", "redis"]);
    assert!(output.status.success(), "{output:?}");
    until_redis(&api, true).await;

    let replay = api
        .post_json(&json!({"type": "comment.added", "id": id, "data": data}))
        .await;
    assert_eq!(
        replay.status,
        StatusCode::OK,
        "the id acknowledged before the crash is remembered: {}",
        replay.body
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body["offset"], first.body["offset"]);
    let mut other = data.clone();
    other["text"] = json!("another text under the same id");
    let mismatch = api
        .post_json(&json!({"type": "comment.added", "id": id, "data": other}))
        .await;
    assert_eq!(
        mismatch.body["error_code"], 42203,
        "the same id with another payload is refused: {}",
        mismatch.body
    );
    let topic = api.env.topic_of("comment.added");
    assert_eq!(
        circulatory_testkit::count_records(&api.env.kafka, &topic).await,
        1,
        "written once"
    );

    // An outage: what needs Redis fails fast, what needs only Kafka goes on.
    let output = stack(&["stop", "redis"]);
    assert!(output.status.success(), "{output:?}");
    until_redis(&api, false).await;
    let started = Instant::now();
    let refused = api
        .post_json(
            &json!({"type": "like.added", "id": uuid::Uuid::new_v4().to_string(),
                           "data": api.sample("like.added")}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error_code"], 50303);
    assert!(refused.header("retry-after").is_some());
    assert!(took < Duration::from_millis(500), "answered after {took:?}");
    let typing = api
        .post_json(&json!({"type": "typing.indicator", "data": api.sample("typing.indicator")}))
        .await;
    assert_eq!(
        typing.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        typing.body
    );
    assert_eq!(typing.body["error_code"], 50303);
    let without_id = api
        .post_json(&json!({"type": "like.added", "data": api.sample("like.added")}))
        .await;
    assert_eq!(
        without_id.status,
        StatusCode::ACCEPTED,
        "an event without an id needs only Kafka: {}",
        without_id.body
    );

    let output = stack(&["start", "redis"]);
    assert!(output.status.success(), "{output:?}");
    let back = until_redis(&api, true).await;
    let again = api
        .post_json(
            &json!({"type": "like.added", "id": uuid::Uuid::new_v4().to_string(),
                           "data": api.sample("like.added")}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::ACCEPTED,
        "after {back:?}: {}",
        again.body
    );
}
