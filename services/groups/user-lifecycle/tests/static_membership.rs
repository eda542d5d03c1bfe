//! Static membership: a replica killed with SIGKILL (no goodbye to the group coordinator) and
//! started again under the same `CIRC_INSTANCE_ID` takes its partitions back at once, instead of
//! waiting for the coordinator to expire the dead member after the 30 s session timeout.
//!
//! The group runs as its real binary in a child process, so the kill is a real one.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use circulatory_group_common::deps::Deps;
use circulatory_group_common::testing::{self as support, eventually, publish_with_id, uuid};
use circulatory_group_user_lifecycle::GROUP;
use circulatory_testkit::{repo_root, TestEnv};
use serde_json::json;

/// A running replica, killed with SIGKILL when dropped (also when the test fails).
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The group binary, as a replica with a stable instance id (session timeout: the default 30 s).
fn replica(env: &TestEnv, instance: &str) -> Replica {
    let root = repo_root();
    let child = Command::new(env!("CARGO_BIN_EXE_user-lifecycle"))
        .env("CIRC_NAMESPACE", &env.namespace)
        .env("CIRC_INSTANCE_ID", instance)
        .env("CIRC_TOPOLOGY", root.join("topics.yaml"))
        .env("CIRC_SCHEMAS", root.join("schemas"))
        .env("CIRC_KAFKA_BOOTSTRAP", circulatory_testkit::bootstrap())
        .env("CIRC_REGISTRY_URL", circulatory_testkit::registry_url())
        .env("CIRC_REDIS_URL", support::redis_url())
        .env("DATABASE_URL", support::database_url())
        .env("CIRC_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the group binary starts");
    Replica(child)
}

/// Publishes one new user and returns how long until the group had processed it.
async fn processed_after_publish(env: &TestEnv, deps: &Deps, within: Duration) -> Duration {
    let publisher = env.publisher();
    let user = uuid();
    let id = uuid();
    let started = Instant::now();
    let data = json!({
        "userId": user,
        "username": format!("u{}", &user[..8]),
        "displayName": "Static",
        "email": "static@example.com",
        "phoneNumber": null,
        "signupMethod": "EMAIL",
        "locale": "en-GB",
        "countryCode": "GB",
        "referrerId": null,
        "createdAt": "2026-12-02T10:00:00Z"
    });
    publish_with_id(env, &publisher, "user.created", &id, data).await;
    eventually(&format!("event {id} processed"), within, || async {
        sqlx::query_as::<_, (String,)>(
            "SELECT event_id FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
        )
        .bind(GROUP)
        .bind(&id)
        .fetch_optional(&deps.pool)
        .await
        .expect("query")
        .map(|_| ())
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_and_restarted_under_its_instance_id_resumes_within_seconds() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    env.create_group_topics(GROUP).await;
    let notifications = env.topic_of("notification.created");
    env.create_topics_if_missing(&[&notifications]).await;
    let instance = format!("{GROUP}-0");

    let first = replica(&env, &instance);
    processed_after_publish(&env, &deps, Duration::from_secs(60)).await;
    drop(first);

    let restarted_at = Instant::now();
    let second = replica(&env, &instance);
    processed_after_publish(&env, &deps, Duration::from_secs(25)).await;
    let resumed = restarted_at.elapsed();
    drop(second);
    // Without static membership the dead member holds its partitions for the whole session
    // timeout (30 s); the target is 5 s from the restart, process start included.
    assert!(
        resumed < Duration::from_secs(5),
        "processing resumed {resumed:?} after the restart"
    );
    eprintln!("processing resumed {resumed:?} after the restart");
}
