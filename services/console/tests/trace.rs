//! Tracing an event through the console against the real stack: one `video.viewed` read by three
//! groups is processed by one at the first attempt, retried then processed (emitting a child
//! event) by another, and dead-lettered by the third; the trace shows exactly that, by event id
//! and by correlation id, without reading a topic.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use circulatory::consumer::{Context, Event, HandlerError};
use circulatory::trace::{TraceIndex, TraceSettings};
use circulatory_group_common::testing as groups;
use circulatory_testkit::TestEnv;
use serde_json::Value;
use support::{sample, test_group, viewer, Console, Controlled};
use tokio_util::sync::CancellationToken;

const TYPE: &str = "video.viewed";
/// Reads it and succeeds at once.
const FIRST_TIME: &str = "event-tracking";
/// Fails it once (retryable), then succeeds and emits [`CHILD`].
const SECOND_TIME: &str = "analytics-aggregation";
/// Refuses it: one attempt, dead-lettered.
const REFUSING: &str = "vector-update";
const CHILD: &str = "feed.refresh";

fn group_of<'a>(trace: &'a Value, group: &str) -> &'a Value {
    trace["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == group)
        .unwrap_or_else(|| panic!("{group} missing from {trace}"))
}

/// A group that fails every event's first attempt and emits one child on the second.
fn retry_then_emit(
    env: &TestEnv,
    redis: redis::aio::ConnectionManager,
) -> (Arc<AtomicU32>, CancellationToken) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut consumer = test_group(env, SECOND_TIME, redis);
    let child = sample(env, CHILD);
    for event_type in &env.catalog.group(SECOND_TIME).unwrap().subscribe {
        let (calls, child) = (calls.clone(), child.clone());
        consumer = consumer.handler(event_type, move |e: Event, ctx: Context| {
            let (calls, child) = (calls.clone(), child.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if e.attempt == 1 {
                    return Err(HandlerError::retryable("first attempts fail in this test"));
                }
                ctx.emit_json(CHILD, child);
                Ok(())
            }
        });
    }
    let stop = CancellationToken::new();
    tokio::spawn(consumer.run(stop.clone()));
    (calls, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_is_traced_through_every_group_that_reads_it() {
    let env = TestEnv::new();
    let deps = groups::deps(&env).await;
    let first = Controlled::start(&env, FIRST_TIME, deps.redis.clone()).await;
    let refusing = Controlled::start(&env, REFUSING, deps.redis.clone()).await;
    refusing.break_it(true);
    env.create_group_topics(SECOND_TIME).await;
    env.create_topics_if_missing(&[&env.topic_of(CHILD)]).await;
    let (calls, stop_second) = retry_then_emit(&env, deps.redis.clone());
    let console = Console::start(&env, &[]).await;
    let token = viewer();

    // Published as the ingest does: acknowledged, then indexed.
    let publisher = env.publisher().with_trace(TraceIndex::spawn(
        deps.redis.clone(),
        env.catalog.namespace(),
        TraceSettings {
            window: Duration::from_secs(600),
            ..TraceSettings::default()
        },
    ));
    let delivered = env.publish(&publisher, TYPE, sample(&env, TYPE)).await;
    let id = delivered.id.clone();
    let path = format!("/admin/circulatory/trace/{id}");

    // While the second group waits out its retry delay: retrying, attempt 2, with a due time.
    let retrying = console
        .until(&token, &path, "the second group retrying", |t| {
            t["groups"].as_array().is_some_and(|groups| {
                groups
                    .iter()
                    .any(|g| g["group"] == SECOND_TIME && g["status"] == "retrying")
            })
        })
        .await;
    assert_eq!(retrying["topic"], delivered.topic, "{retrying}");
    assert_eq!(retrying["partition"], delivered.partition, "{retrying}");
    assert_eq!(retrying["offset"], delivered.offset, "{retrying}");
    assert_eq!(retrying["type"], TYPE);
    let step = group_of(&retrying, SECOND_TIME);
    assert_eq!(step["attempt"], 2, "{step}");
    assert!(step["dueAtMs"].as_i64().unwrap() > step["reportedAtMs"].as_i64().unwrap());
    assert!(
        step["topic"].as_str().unwrap().contains(".retry."),
        "{step}"
    );

    // Then exactly: processed by two groups (one after its retry), dead-lettered in the third.
    let done = console
        .until(&token, &path, "every group settled", |t| {
            t["groups"].as_array().is_some_and(|groups| {
                let status = |g: &str| {
                    groups
                        .iter()
                        .find(|x| x["group"] == g)
                        .map(|x| x["status"].clone())
                };
                status(FIRST_TIME) == Some("processed".into())
                    && status(SECOND_TIME) == Some("processed".into())
                    && status(REFUSING) == Some("dead_lettered".into())
            })
        })
        .await;
    let groups_seen: Vec<&str> = done["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups_seen.len(),
        3,
        "only the groups reading {TYPE}: {done}"
    );
    assert_eq!(group_of(&done, FIRST_TIME)["source"], "committed_offset");
    assert_eq!(group_of(&done, SECOND_TIME)["source"], "reported");
    assert_eq!(group_of(&done, SECOND_TIME)["attempt"], 2);
    let refused = group_of(&done, REFUSING);
    assert_eq!(refused["errorClass"], "permanent", "{refused}");
    assert!(refused["topic"].as_str().unwrap().ends_with(".dlq"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(first.seen_ids(), vec![id.clone()]);

    // The event it caused, linked both ways.
    let caused = done["caused"].as_array().unwrap();
    assert_eq!(caused.len(), 1, "{done}");
    assert_eq!(caused[0]["type"], CHILD);
    let child_id = caused[0]["id"].as_str().unwrap().to_string();
    let child = console
        .until(
            &token,
            &format!("/admin/circulatory/trace/{child_id}"),
            "the child located",
            |t| t["offset"].is_i64(),
        )
        .await;
    assert_eq!(child["cause"]["id"], id.as_str(), "{child}");
    assert_eq!(child["cause"]["type"], TYPE);
    assert_eq!(child["topic"], env.topic_of(CHILD));
    assert_eq!(child["source"], format!("/circulatory/{SECOND_TIME}"));

    // By correlation id: the event and its child, oldest first.
    let correlation = done["correlationId"].as_str().unwrap().to_string();
    let (status, found) = console
        .get(&token, &format!("/admin/circulatory/trace?q={correlation}"))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["matched"], "correlation");
    let ids: Vec<&str> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str(), child_id.as_str()], "{found}");
    let (status, by_id) = console
        .get(&token, &format!("/admin/circulatory/trace?q={id}"))
        .await;
    assert_eq!((status, by_id["matched"].clone()), (200, "id".into()));

    // What the index does not hold is a 404; an empty query a 400.
    let (status, _) = console
        .get(&token, "/admin/circulatory/trace/never-published")
        .await;
    assert_eq!(status, 404);
    let (status, _) = console.get(&token, "/admin/circulatory/trace?q=%20").await;
    assert_eq!(status, 400);

    stop_second.cancel();
    first.stop().await;
    refusing.stop().await;
}
