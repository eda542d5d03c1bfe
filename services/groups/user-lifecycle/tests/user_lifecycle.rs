//! user-lifecycle against the real stack: a new user gets a profile, settings and one welcome
//! notification; follows are counted once and the latest change of a pair wins whatever the
//! arrival order; blocks end follows both ways; an unreachable database ends in the dead letters.

use std::time::Duration;

use chrono::{DateTime, Utc};
use circulatory_group_common::deps::Deps;
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_user_lifecycle::{register, welcome_notification_id, GROUP};
use circulatory_testkit::{header, read_records, TestEnv};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::json;
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(30);

/// Waits until the group recorded `event_id` as processed.
async fn handled(deps: &Deps, event_id: &str) {
    eventually(&format!("event {event_id} handled"), WITHIN, || async {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT event_id FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
        )
        .bind(GROUP)
        .bind(event_id)
        .fetch_optional(&deps.pool)
        .await
        .expect("query");
        row.map(|_| ())
    })
    .await
}

async fn decoded(env: &TestEnv, record: &OwnedMessage) -> serde_json::Value {
    let decoded = env
        .oracle
        .decode(record.payload().expect("a value"))
        .await
        .expect("decodable");
    circulatory::codec::avro_to_json(&decoded.value)
}

/// (active, follower's following_count, followee's follower_count)
async fn follow_state(deps: &Deps, follower: &str, followee: &str) -> (bool, i64, i64) {
    let (follower, followee) = (
        Uuid::parse_str(follower).unwrap(),
        Uuid::parse_str(followee).unwrap(),
    );
    let active: Option<(bool,)> = sqlx::query_as(
        "SELECT active FROM user_follows WHERE follower_id = $1 AND followee_id = $2",
    )
    .bind(follower)
    .bind(followee)
    .fetch_optional(&deps.pool)
    .await
    .expect("query");
    let count = |user: Uuid, column: &'static str| {
        let pool = deps.pool.clone();
        async move {
            let row: Option<(i64,)> = sqlx::query_as(&format!(
                "SELECT {column} FROM user_profiles WHERE user_id = $1"
            ))
            .bind(user)
            .fetch_optional(&pool)
            .await
            .expect("query");
            row.map_or(0, |(n,)| n)
        }
    };
    (
        active.is_some_and(|(a,)| a),
        count(follower, "following_count").await,
        count(followee, "follower_count").await,
    )
}

fn follow(follower: &str, followee: &str, at: &str) -> serde_json::Value {
    json!({"followerId": follower, "followeeId": followee, "followedAt": at})
}

fn unfollow(follower: &str, followee: &str, at: &str) -> serde_json::Value {
    json!({"followerId": follower, "followeeId": followee, "unfollowedAt": at})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_user_gets_a_profile_settings_and_one_welcome() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let notifications = env.topic_of("notification.created");
    env.create_topics_if_missing(&[&notifications]).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();

    let user = uuid();
    let created = |display_name: &str| {
        json!({
            "userId": user,
            "username": format!("u{}", &user[..8]),
            "displayName": display_name,
            "email": "amira@example.com",
            "phoneNumber": null,
            "signupMethod": "EMAIL",
            "locale": "ar-EG",
            "countryCode": "EG",
            "referrerId": null,
            "createdAt": "2026-11-27T10:00:00Z"
        })
    };
    let id = uuid();
    publish_with_id(&env, &publisher, "user.created", &id, created("Amira")).await;
    // The same event id again: handled as already done, so even a different body changes nothing.
    publish_with_id(&env, &publisher, "user.created", &id, created("Changed")).await;

    // Both deliveries emit the welcome, with the same event id.
    let emitted = read_records(&env.kafka, &notifications, 2, WITHIN).await;
    let ids: Vec<Option<String>> = emitted.iter().map(|r| header(r, "ce_id")).collect();
    assert_eq!(ids[0], ids[1], "a redelivery emits the same event id");
    for record in &emitted {
        assert_eq!(
            header(record, "ce_type").as_deref(),
            Some("notification.created")
        );
    }
    let welcome = decoded(&env, &emitted[0]).await;
    let user_id = Uuid::parse_str(&user).unwrap();
    assert_eq!(
        welcome["notificationId"],
        json!(welcome_notification_id(user_id).to_string())
    );
    assert_eq!(welcome["userId"], json!(user));
    assert_eq!(welcome["kind"], json!("SYSTEM"));
    assert_eq!(welcome["channels"], json!(["IN_APP", "EMAIL"]));
    assert_eq!(welcome["createdAt"], json!("2026-11-27T10:00:00.000Z"));

    let profile: (Option<String>, Option<String>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT display_name, locale, created_at FROM user_profiles WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(&deps.pool)
    .await
    .expect("a profile");
    assert_eq!(profile.0.as_deref(), Some("Amira"));
    assert_eq!(profile.1.as_deref(), Some("ar-EG"));
    assert!(profile.2.is_some());
    let settings: (bool, bool, Option<String>) = sqlx::query_as(
        "SELECT push_enabled, email_enabled, locale FROM user_settings WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(&deps.pool)
    .await
    .expect("settings");
    assert_eq!(settings, (true, true, Some("ar-EG".into())));
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follows_count_once_and_the_latest_change_of_a_pair_wins() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let (a, b) = (uuid(), uuid());
    // All keyed by the follower: handled in this order.
    let steps: [(&str, serde_json::Value, (bool, i64, i64)); 6] = [
        (
            "user.followed",
            follow(&a, &b, "2026-11-27T10:00:00Z"),
            (true, 1, 1),
        ),
        // An unfollow older than the follow arrives late: ignored.
        (
            "user.unfollowed",
            unfollow(&a, &b, "2026-11-27T09:00:00Z"),
            (true, 1, 1),
        ),
        (
            "user.unfollowed",
            unfollow(&a, &b, "2026-11-27T10:05:00Z"),
            (false, 0, 0),
        ),
        // A follow older than the unfollow arrives late: ignored.
        (
            "user.followed",
            follow(&a, &b, "2026-11-27T10:03:00Z"),
            (false, 0, 0),
        ),
        // An unfollow of a pair that no longer follows: nothing to count.
        (
            "user.unfollowed",
            unfollow(&a, &b, "2026-11-27T10:06:00Z"),
            (false, 0, 0),
        ),
        (
            "user.followed",
            follow(&a, &b, "2026-11-27T10:10:00Z"),
            (true, 1, 1),
        ),
    ];
    let first = uuid();
    for (i, (event_type, data, expected)) in steps.into_iter().enumerate() {
        let id = if i == 0 { first.clone() } else { uuid() };
        publish_with_id(&env, &publisher, event_type, &id, data).await;
        handled(&deps, &id).await;
        assert_eq!(
            follow_state(&deps, &a, &b).await,
            expected,
            "after step {i} ({event_type})"
        );
    }
    // The first follow delivered again: already done, the counts stay.
    let last = uuid();
    publish_with_id(
        &env,
        &publisher,
        "user.followed",
        &first,
        follow(&a, &b, "2026-11-27T10:00:00Z"),
    )
    .await;
    publish_with_id(
        &env,
        &publisher,
        "user.verified",
        &last,
        json!({"userId": a, "verificationKind": "EMAIL", "verifiedAt": "2026-11-27T10:20:00Z"}),
    )
    .await;
    // Both keyed by the same user: once the verification is handled, so is the redelivery.
    handled(&deps, &last).await;
    assert_eq!(follow_state(&deps, &a, &b).await, (true, 1, 1));
    let since: (Option<DateTime<Utc>>,) = sqlx::query_as(
        "SELECT created_at FROM user_follows WHERE follower_id = $1 AND followee_id = $2",
    )
    .bind(Uuid::parse_str(&a).unwrap())
    .bind(Uuid::parse_str(&b).unwrap())
    .fetch_one(&deps.pool)
    .await
    .expect("query");
    assert_eq!(
        since.0.map(|t| t.to_rfc3339()),
        Some("2026-11-27T10:10:00+00:00".into())
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocks_end_follows_both_ways_and_verifications_reach_the_profile() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let notifications = env.topic_of("notification.created");
    env.create_topics_if_missing(&[&notifications]).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let (a, b) = (uuid(), uuid());

    // Verifications before the user.created: a profile row waits for the identity.
    for (kind, at) in [
        ("EMAIL", "2026-11-27T09:00:00Z"),
        ("PHONE", "2026-11-27T09:30:00Z"),
        ("EMAIL", "2026-11-27T09:40:00Z"),
    ] {
        env.publish(
            &publisher,
            "user.verified",
            json!({"userId": a, "verificationKind": kind, "verifiedAt": at}),
        )
        .await;
    }
    let (f1, f2) = (uuid(), uuid());
    publish_with_id(
        &env,
        &publisher,
        "user.followed",
        &f1,
        follow(&a, &b, "2026-11-27T10:00:00Z"),
    )
    .await;
    publish_with_id(
        &env,
        &publisher,
        "user.followed",
        &f2,
        follow(&b, &a, "2026-11-27T10:01:00Z"),
    )
    .await;
    handled(&deps, &f1).await;
    handled(&deps, &f2).await;
    assert_eq!(follow_state(&deps, &a, &b).await, (true, 1, 1));
    assert_eq!(follow_state(&deps, &b, &a).await, (true, 1, 1));

    let block = uuid();
    publish_with_id(
        &env,
        &publisher,
        "user.blocked",
        &block,
        json!({"userId": a, "blockedUserId": b, "blockedAt": "2026-11-27T11:00:00Z"}),
    )
    .await;
    handled(&deps, &block).await;
    assert_eq!(follow_state(&deps, &a, &b).await, (false, 0, 0));
    assert_eq!(follow_state(&deps, &b, &a).await, (false, 0, 0));

    // A follow after the block is ignored.
    let refollow = uuid();
    publish_with_id(
        &env,
        &publisher,
        "user.followed",
        &refollow,
        follow(&b, &a, "2026-11-27T12:00:00Z"),
    )
    .await;
    handled(&deps, &refollow).await;
    assert_eq!(follow_state(&deps, &b, &a).await, (false, 0, 0));
    let blocks: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2",
    )
    .bind(Uuid::parse_str(&a).unwrap())
    .bind(Uuid::parse_str(&b).unwrap())
    .fetch_one(&deps.pool)
    .await
    .expect("query");
    assert_eq!(blocks.0, 1);

    let created = uuid();
    publish_with_id(
        &env,
        &publisher,
        "user.created",
        &created,
        json!({
            "userId": a,
            "username": format!("u{}", &a[..8]),
            "displayName": "Omar",
            "email": null,
            "phoneNumber": "+201000000000",
            "signupMethod": "PHONE",
            "locale": null,
            "countryCode": "EG",
            "referrerId": null,
            "createdAt": "2026-11-27T08:00:00Z"
        }),
    )
    .await;
    handled(&deps, &created).await;
    let profile: (Option<String>, Vec<String>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT display_name, verified_kinds, verified_at FROM user_profiles WHERE user_id = $1",
    )
    .bind(Uuid::parse_str(&a).unwrap())
    .fetch_one(&deps.pool)
    .await
    .expect("a profile");
    assert_eq!(profile.0.as_deref(), Some("Omar"));
    assert_eq!(profile.1, vec!["EMAIL".to_string(), "PHONE".to_string()]);
    assert_eq!(
        profile.2.map(|t| t.to_rfc3339()),
        Some("2026-11-27T09:40:00+00:00".into())
    );
    let settings: (bool,) =
        sqlx::query_as("SELECT email_enabled FROM user_settings WHERE user_id = $1")
            .bind(Uuid::parse_str(&a).unwrap())
            .fetch_one(&deps.pool)
            .await
            .expect("settings");
    assert!(!settings.0, "no email address, no email notifications");
    // Without an email address the welcome is in-app only.
    let welcome = read_records(&env.kafka, &notifications, 1, WITHIN).await;
    assert_eq!(
        decoded(&env, &welcome[0]).await["channels"],
        json!(["IN_APP"])
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
        event_type: "user.followed",
        data: follow(&uuid(), &uuid(), "2026-11-27T10:00:00Z"),
    }
    .dead_letters(env)
    .await;
}
