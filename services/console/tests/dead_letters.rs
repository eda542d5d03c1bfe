//! Dead letters through the console against the real stack: listed with their metadata, retried
//! to the failed group only, discarded, bulk-retried after a dry run with the same count,
//! quarantined by the loop guard, edited and validated before anything is produced; each action
//! leaves an audit row.

mod support;

use std::time::Duration;

use circulatory::auth::AdminRole;
use circulatory_group_audit_log::{register as audit_log, GROUP as AUDIT_LOG};
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{self as groups, eventually};
use circulatory_testkit::{count_records, TestEnv};
use serde_json::{json, Value};
use support::{publish, token, Console, Controlled};

const GROUP: &str = "event-tracking";
/// Also reads `video.viewed`: it must never see a replay meant for `GROUP`.
const BYSTANDER: &str = "vector-update";
const TYPE: &str = "video.viewed";

async fn open_letters(console: &Console, token: &str, count: usize) -> Vec<Value> {
    let body = console
        .until(
            token,
            &format!("/admin/circulatory/dead-letters?group={GROUP}"),
            "open dead letters",
            |b| b["total"].as_u64() == Some(count as u64),
        )
        .await;
    body["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_retried_discarded_bulk_edited_and_guarded() {
    let env = TestEnv::new();
    let deps = groups::deps(&env).await;
    let audit = groups::start(&env, &deps, AUDIT_LOG, audit_log, NoOptions {}).await;
    let subject = Controlled::start(&env, GROUP, deps.redis.clone()).await;
    let bystander = Controlled::start(&env, BYSTANDER, deps.redis.clone()).await;
    let console = Console::start(&env, &["--max-replays", "2", "--replay-rate", "20"]).await;
    let sub = format!("ops-{}", env.namespace);
    let ops = token(&sub, true, AdminRole::Operator);

    // Three poison events: dead-lettered at once (one attempt), listed with their metadata.
    subject.break_it(true);
    let ids = publish(&env, TYPE, 3).await;
    bystander.wait_seen(3).await;
    let letters = open_letters(&console, &ops, 3).await;
    let first = &letters[0];
    assert_eq!(first["type"], TYPE);
    assert_eq!(first["errorClass"], "permanent");
    assert!(first["error"]
        .as_str()
        .unwrap()
        .contains("refused by the test"));
    assert_eq!(first["origin"]["topic"], env.topic_of(TYPE));
    assert!(ids.contains(&first["eventId"].as_str().unwrap().to_string()));

    // Details: decoded data and every circ_* header.
    let id = first["id"].as_str().unwrap().to_string();
    let (status, details) = console
        .get(
            &ops,
            &format!("/admin/circulatory/dead-letters/{GROUP}/{id}"),
        )
        .await;
    assert_eq!(status, 200, "{details}");
    assert!(details["data"].is_object(), "{details}");
    assert!(
        details["headers"]["circ_error_class"].is_string(),
        "{details}"
    );
    assert!(
        details["headers"]["circ_original_offset"].is_string(),
        "{details}"
    );

    // Retry one: processed by that group only; it leaves the open list.
    subject.break_it(false);
    let before_subject = subject.seen_ids().len();
    let (status, outcome) = console
        .post(
            &ops,
            &format!("/admin/circulatory/dead-letters/{GROUP}/{id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["state"], "replayed");
    assert_eq!(outcome["audited"], true);
    let seen = subject.wait_seen(before_subject + 1).await;
    assert_eq!(seen.last().unwrap().0, first["eventId"].as_str().unwrap());
    open_letters(&console, &ops, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        bystander.seen_ids().len(),
        3,
        "the replay reached another group"
    );

    // Discard one.
    let second = open_letters(&console, &ops, 2).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, outcome) = console
        .post(
            &ops,
            &format!("/admin/circulatory/dead-letters/{GROUP}/{second}/discard"),
            json!({"reason": "test data"}),
        )
        .await;
    assert_eq!(
        (status, outcome["state"].as_str()),
        (200, Some("discarded")),
        "{outcome}"
    );
    open_letters(&console, &ops, 1).await;
    // Acting twice on one letter is a conflict.
    let (status, _) = console
        .post(
            &ops,
            &format!("/admin/circulatory/dead-letters/{GROUP}/{second}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409);

    // Bulk: the dry run's count is what is then replayed.
    subject.break_it(true);
    publish(&env, TYPE, 4).await;
    open_letters(&console, &ops, 5).await;
    subject.break_it(false);
    let filter = json!({"group": GROUP, "type": TYPE});
    let (status, dry) = console
        .post(
            &ops,
            "/admin/circulatory/dead-letters/bulk",
            json!({"action": "retry", "filter": filter}),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["count"], 5);
    assert_eq!(dry["histogram"]["byErrorClass"]["permanent"], 5);
    // A stale count is refused.
    let (status, _) = console
        .post(
            &ops,
            "/admin/circulatory/dead-letters/bulk",
            json!({"action": "retry", "filter": filter, "dryRun": false, "expectCount": 4}),
        )
        .await;
    assert_eq!(status, 409);
    let before_subject = subject.seen_ids().len();
    let (status, started) = console
        .post(
            &ops,
            "/admin/circulatory/dead-letters/bulk",
            json!({"action": "retry", "filter": filter, "dryRun": false, "expectCount": 5}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let job_id = started["job"]["id"].as_str().unwrap().to_string();
    let job = console
        .until(
            &ops,
            &format!("/admin/circulatory/dead-letters/jobs/{job_id}"),
            "bulk job",
            |j| j["finished"] == true,
        )
        .await;
    assert_eq!(
        (job["replayed"].as_u64(), job["failed"].as_u64()),
        (Some(5), Some(0)),
        "{job}"
    );
    subject.wait_seen(before_subject + 5).await;
    open_letters(&console, &ops, 0).await;

    // The loop guard: a letter replayed twice already is quarantined, not replayed again.
    subject.break_it(true);
    let looping = publish(&env, TYPE, 1).await.remove(0);
    for round in 1..=2 {
        let letter = open_letters(&console, &ops, 1).await.remove(0);
        assert_eq!(letter["eventId"], looping.as_str());
        assert_eq!(letter["replays"], round - 1);
        let (status, outcome) = console
            .post(
                &ops,
                &format!(
                    "/admin/circulatory/dead-letters/{GROUP}/{}/retry",
                    letter["id"].as_str().unwrap()
                ),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{outcome}");
        // It fails again and comes back.
        console
            .until(
                &ops,
                &format!("/admin/circulatory/dead-letters?group={GROUP}"),
                "the letter back",
                |b| {
                    b["items"].as_array().is_some_and(|items| {
                        items
                            .iter()
                            .any(|i| i["eventId"] == looping.as_str() && i["replays"] == round)
                    })
                },
            )
            .await;
    }
    let letter = open_letters(&console, &ops, 1).await.remove(0);
    let replay_topic = env
        .catalog
        .topic_name(&env.catalog.group(GROUP).unwrap().replay_topic_base());
    let replays_before = count_records(&env.kafka, &replay_topic).await;
    let (status, refused) = console
        .post(
            &ops,
            &format!(
                "/admin/circulatory/dead-letters/{GROUP}/{}/retry",
                letter["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("quarantined"),
        "{refused}"
    );
    assert_eq!(
        count_records(&env.kafka, &replay_topic).await,
        replays_before
    );
    console
        .until(
            &ops,
            &format!("/admin/circulatory/dead-letters?group={GROUP}&state=quarantined"),
            "quarantined",
            |b| b["total"] == 1,
        )
        .await;

    // Edit and retry: an invalid payload is refused with its path and nothing is produced; a
    // valid one is replayed with the corrected data.
    publish(&env, TYPE, 1).await;
    let letter = open_letters(&console, &ops, 1).await.remove(0);
    let path = format!(
        "/admin/circulatory/dead-letters/{GROUP}/{}",
        letter["id"].as_str().unwrap()
    );
    let (_, details) = console.get(&ops, &path).await;
    let mut data = details["data"].clone();
    let object = data.as_object_mut().unwrap();
    let (field, original) = object
        .iter()
        .find(|(_, v)| v.is_string())
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    object.insert(field.clone(), json!(12345));
    let replays_before = count_records(&env.kafka, &replay_topic).await;
    let (status, invalid) = console
        .post(&ops, &format!("{path}/edit"), json!({"data": data}))
        .await;
    assert_eq!(status, 422, "{invalid}");
    assert_eq!(
        invalid["errors"][0]["path"],
        format!("/{field}"),
        "{invalid}"
    );
    assert_eq!(
        count_records(&env.kafka, &replay_topic).await,
        replays_before
    );
    subject.break_it(false);
    data[&field] = original;
    let before_subject = subject.seen_ids().len();
    let (status, edited) = console
        .post(&ops, &format!("{path}/edit"), json!({"data": data}))
        .await;
    assert_eq!(
        (status, edited["state"].as_str()),
        (200, Some("edited")),
        "{edited}"
    );
    let seen = subject.wait_seen(before_subject + 1).await;
    assert_eq!(seen.last().unwrap().1, data);

    // Every action left an audit row: 4 retries (one, twice for the loop, ...), discard, bulk, edit.
    let pool = deps.pool.clone();
    let admin = circulatory_console::audit::admin_id(&sub).to_string();
    let rows: Vec<(String, Option<String>)> =
        eventually("audit rows", Duration::from_secs(30), || {
            let (pool, admin) = (pool.clone(), admin.clone());
            async move {
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT action, target_ref FROM audit_log WHERE actor = $1 ORDER BY occurred_at",
            )
            .bind(&admin)
            .fetch_all(&pool)
            .await
            .ok()?;
                (rows.len() >= 6).then_some(rows)
            }
        })
        .await;
    let actions: Vec<&str> = rows.iter().map(|(a, _)| a.as_str()).collect();
    assert!(actions.contains(&"DLQ_DISCARD"), "{rows:?}");
    assert!(
        actions.iter().filter(|a| **a == "DLQ_REPLAY").count() >= 5,
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|(_, t)| t.as_deref() == Some(GROUP)),
        "the bulk action: {rows:?}"
    );

    drop(console);
    subject.stop().await;
    bystander.stop().await;
    audit.stop().await;
}
