//! Pausing a running group from the console: its instances take nothing while events arrive,
//! the group's page shows the pause applied, and after resuming every event is processed once.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use circulatory_testkit::TestEnv;
use serde_json::json;
use support::{operator, publish, redis, Console, Controlled};

const GROUP: &str = "event-tracking";
const TYPE: &str = "like.added";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_group_processes_nothing_and_resumes_losing_nothing() {
    let env = TestEnv::new();
    let console = Console::start(&env, &[]).await;
    let ops = operator();
    let group = Controlled::start(&env, GROUP, redis().await).await;
    let page = format!("/admin/circulatory/queues/{GROUP}");
    console
        .until(&ops, &page, "an instance", |b| {
            b["instances"].as_array().is_some_and(|i| i.len() == 1)
        })
        .await;
    let before = publish(&env, TYPE, 3).await;
    group.wait_seen(3).await;

    let (status, body) = console
        .post(
            &ops,
            &format!("{page}/pause"),
            json!({"reason": "incident 42"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let paused = console
        .until(&ops, &page, "the pause applied", |b| {
            b["instances"][0]["operatorPaused"] == true && b["health"]["status"] == "paused"
        })
        .await;
    assert_eq!(paused["control"]["reason"], "incident 42");
    let during = publish(&env, TYPE, 10).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(group.seen_ids().len(), 3, "a paused group processed events");
    console
        .until(&ops, &page, "records waiting", |b| b["waiting"] == 10)
        .await;

    let (status, _) = console
        .post(&ops, &format!("{page}/resume"), json!({}))
        .await;
    assert_eq!(status, 200);
    let seen = group.wait_seen(13).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<String> = group.seen_ids();
    assert_eq!(ids.len(), 13, "processed more than once: {seen:?}");
    let unique: HashSet<&String> = ids.iter().collect();
    let expected: HashSet<&String> = before.iter().chain(&during).collect();
    assert_eq!(unique, expected);
    console
        .until(&ops, &page, "running again", |b| {
            b["control"].is_null() && b["instances"][0]["operatorPaused"] == false
        })
        .await;
    group.stop().await;
}
