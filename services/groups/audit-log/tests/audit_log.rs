//! audit-log against the real stack: admin actions and mutes are appended once, health changes
//! are recorded only when the status changes, and an unreachable database ends in the dead
//! letters with the error.

use std::time::Duration;

use circulatory_group_audit_log::{register, GROUP};
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_testkit::TestEnv;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

fn admin_action(target: &str) -> serde_json::Value {
    json!({
        "actionId": uuid(),
        "adminId": uuid(),
        "action": "USER_BAN",
        "targetKind": "USER",
        "targetRef": target,
        "reason": "spam wave",
        "details": {"ticket": "T-1"},
        "performedAt": "2026-11-27T10:00:00Z"
    })
}

async fn trail_rows(pool: &sqlx::PgPool, target: &str) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT event_type, action, reason FROM audit_log WHERE target_ref = $1 ORDER BY event_type",
    )
    .bind(target)
    .fetch_all(pool)
    .await
    .expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_actions_and_mutes_are_appended_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();

    let user = uuid();
    let action_id = uuid();
    publish_with_id(
        &env,
        &publisher,
        "admin.action",
        &action_id,
        admin_action(&user),
    )
    .await;
    // The same event again (a producer retry or a replay): nothing more is appended.
    publish_with_id(
        &env,
        &publisher,
        "admin.action",
        &action_id,
        admin_action(&user),
    )
    .await;
    publish_with_id(
        &env,
        &publisher,
        "user.muted",
        &uuid(),
        json!({
            "userId": user,
            "until": "2026-11-28T10:00:00Z",
            "reason": "SPAM",
            "mutedBy": null,
            "contentId": null,
            "mutedAt": "2026-11-27T10:05:00Z"
        }),
    )
    .await;

    let rows = eventually("two trail rows", WITHIN, || async {
        let rows = trail_rows(&deps.pool, &user).await;
        (rows.len() >= 2).then_some(rows)
    })
    .await;
    // Different topics: no order between the two. Let the duplicate be handled too, then check
    // it added nothing.
    env.wait_until_settled(GROUP, WITHIN).await;
    let rows_after = trail_rows(&deps.pool, &user).await;
    assert_eq!(rows_after, rows);
    assert_eq!(
        rows,
        vec![
            (
                "admin.action".into(),
                "USER_BAN".into(),
                Some("spam wave".into())
            ),
            ("user.muted".into(), "USER_MUTE".into(), Some("SPAM".into())),
        ]
    );
    // The table refuses changes.
    let update = sqlx::query("UPDATE audit_log SET action = 'X' WHERE target_ref = $1")
        .bind(&user)
        .execute(&deps.pool)
        .await;
    assert!(update.is_err(), "audit_log accepted an update");
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_changes_are_recorded_only_when_the_status_changes() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let component = format!("group:{}", env.namespace);
    for (status, at) in [
        ("HEALTHY", "2026-11-27T10:00:00Z"),
        ("HEALTHY", "2026-11-27T10:00:10Z"),
        ("UNHEALTHY", "2026-11-27T10:00:20Z"),
    ] {
        // One key per component keeps the checks in order.
        env.publish(
            &publisher,
            "system.health",
            json!({
                "component": component,
                "status": status,
                "instance": null,
                "details": {"latencyMs": "3"},
                "checkedAt": at
            }),
        )
        .await;
    }
    let status = eventually("UNHEALTHY recorded", WITHIN, || async {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT status FROM component_health WHERE component = $1")
                .bind(&component)
                .fetch_optional(&deps.pool)
                .await
                .expect("query");
        row.filter(|(s,)| s == "UNHEALTHY")
    })
    .await;
    assert_eq!(status.0, "UNHEALTHY");
    let reasons: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT reason FROM audit_log WHERE target_ref = $1 ORDER BY id")
            .bind(&component)
            .fetch_all(&deps.pool)
            .await
            .expect("query");
    assert_eq!(
        reasons,
        vec![
            (Some("NONE -> HEALTHY".into()),),
            (Some("HEALTHY -> UNHEALTHY".into()),)
        ]
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: NoOptions {},
        event_type: "admin.action",
        data: admin_action(&uuid()),
    }
    .dead_letters(env)
    .await;
}
