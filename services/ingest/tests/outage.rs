//! Kafka stops: the API answers 503 with Retry-After within a bounded time (never a hung
//! request), at once once its watcher knows, and recovers by itself when the broker is back. This test stops the local stack's
//! broker, so it lives alone in its own test binary.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use support::api_with;

/// Shorter than the default, so that the requests answered before the watcher knows do not
/// make the test wait for long.
const ACK_TIMEOUT_MS: u64 = 3_000;

fn stack_script() -> PathBuf {
    circulatory_testkit::repo_root().join("scripts/stack")
}

/// Restarts whatever `scripts/stack up` would, even if the test failed half-way.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let status = Command::new(stack_script()).arg("up").output();
        if !status.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("could not restart the stack: {status:?}");
        }
    }
}

fn kafka_pids() -> Vec<i32> {
    let run = circulatory_testkit::repo_root().join(".stack/run");
    (1..=3)
        .filter_map(|n| std::fs::read_to_string(run.join(format!("kafka-{n}.pid"))).ok())
        .filter_map(|text| text.lines().next().and_then(|l| l.trim().parse().ok()))
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[tokio::test]
async fn kafka_down_is_a_quick_503_and_the_api_recovers_by_itself() {
    let ack_timeout = format!("{ACK_TIMEOUT_MS}ms");
    let api = api_with(&["post.created"], &["--ack-timeout", &ack_timeout]).await;
    let event = json!({"type": "post.created", "data": api.sample("post.created")});
    assert_eq!(api.post_json(&event).await.status, StatusCode::ACCEPTED);

    let pids = kafka_pids();
    assert!(
        !pids.is_empty(),
        "no Kafka pid file under .stack/run: is the local stack up?"
    );
    let _restart = RestartOnDrop;
    for pid in &pids {
        Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while pids.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "Kafka did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every request answers within the ack timeout plus slack. Until the watcher concludes
    // Kafka is down (three failed probes, no acknowledgement for 3 s) a request may wait that long
    // and get 50307 (not acknowledged, may still be written); then 50301 comes at once.
    let mut saw_503 = false;
    for _ in 0..10 {
        let started = Instant::now();
        let reply = api.post_json(&event).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_millis(ACK_TIMEOUT_MS + 2_000),
            "a request hung for {elapsed:?}"
        );
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(reply.header("retry-after").is_some());
            let detail = reply.body["detail"].as_str().unwrap();
            assert!(
                !detail.contains("127.0.0.1") && !detail.contains("Broker"),
                "internals leaked: {detail}"
            );
            if reply.body["error_code"] == 50307 {
                continue;
            }
            assert_eq!(reply.body["error_code"], 50301, "{}", reply.body);
            assert!(
                elapsed < Duration::from_secs(1),
                "Kafka known down, yet the answer took {elapsed:?}"
            );
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(saw_503, "no 503 while Kafka was down");
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["kafka"], false);

    let restarted =
        tokio::task::spawn_blocking(|| Command::new(stack_script()).arg("up").output().unwrap())
            .await
            .unwrap();
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    // Recovered: events are accepted again and /readyz says so. The health watcher probes
    // the dependencies one after the other, so readiness may follow the first 202 by a probe.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = api.post_json(&event).await;
        if reply.status == StatusCode::ACCEPTED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 60 s: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    loop {
        let ready = api.get("/readyz").await;
        if ready.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events accepted, but /readyz still {} after 60 s: {}",
            ready.status,
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
