//! notifier against the real stack: a notification is stored once, broadcast in-app, handed to
//! the outbox on the channels the recipient allows, announced as `notification.sent` and marked
//! read; activity notifies the user concerned and never the actor; an unreachable database ends
//! in the dead letters.

use std::collections::BTreeSet;
use std::time::Duration;

use circulatory::realtime::RealtimeMessage;
use circulatory_group_common::deps::Deps;
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_notifier::derived::notification_id;
use circulatory_group_notifier::{notification_channel, register, GROUP};
use circulatory_testkit::{count_records, header, read_records, TestEnv};
use futures::StreamExt;
use rdkafka::message::{Message, OwnedMessage};
use serde_json::json;
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(30);

async fn decoded(env: &TestEnv, record: &OwnedMessage) -> serde_json::Value {
    let decoded = env
        .oracle
        .decode(record.payload().expect("a value"))
        .await
        .expect("decodable");
    circulatory::codec::avro_to_json(&decoded.value)
}

/// (kind, actor) of each notification of `user`, in kind order.
async fn inbox(deps: &Deps, user: &str) -> Vec<(String, Option<Uuid>, Uuid)> {
    sqlx::query_as(
        "SELECT kind, actor_id, id FROM notifications WHERE user_id = $1 ORDER BY kind, id",
    )
    .bind(Uuid::parse_str(user).unwrap())
    .fetch_all(&deps.pool)
    .await
    .expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_is_stored_once_delivered_on_allowed_channels_and_read() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let user = uuid();
    let user_id = Uuid::parse_str(&user).unwrap();
    // The recipient switched email off.
    sqlx::query(
        "INSERT INTO user_settings (user_id, push_enabled, email_enabled, created_at) \
         VALUES ($1, true, false, now())",
    )
    .bind(user_id)
    .execute(&deps.pool)
    .await
    .expect("settings");
    let client = redis::Client::open(support::redis_url()).expect("redis url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(notification_channel(user_id))
        .await
        .expect("subscribed");
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();

    let notification = uuid();
    let id = uuid();
    let created = json!({
        "notificationId": notification,
        "userId": user,
        "kind": "SYSTEM",
        "title": "Maintenance tonight",
        "body": "The app is read-only from 02:00 to 02:30 UTC.",
        "actorId": null,
        "entityId": null,
        "channels": ["IN_APP", "PUSH", "EMAIL"],
        "createdAt": "2026-11-27T10:00:00Z"
    });
    publish_with_id(
        &env,
        &publisher,
        "notification.created",
        &id,
        created.clone(),
    )
    .await;
    publish_with_id(&env, &publisher, "notification.created", &id, created).await;

    let message = tokio::time::timeout(WITHIN, pubsub.on_message().next())
        .await
        .expect("a broadcast in time")
        .expect("a message");
    assert_eq!(message.get_channel_name(), notification_channel(user_id));
    let message: RealtimeMessage =
        serde_json::from_str(&message.get_payload::<String>().expect("text")).expect("json");
    assert_eq!(message.event_type, "notification.sent");
    assert_eq!(message.data["notificationId"], json!(notification));
    assert_eq!(message.data["channel"], json!("IN_APP"));
    assert_eq!(message.data["title"], json!("Maintenance tonight"));

    // The topic holds the two notification.created and, per delivery of the event, one
    // notification.sent per channel (IN_APP, PUSH): the redelivery repeats the same ids.
    let topic = env.topic_of("notification.created");
    let records = read_records(&env.kafka, &topic, 6, WITHIN).await;
    let mut sent = Vec::new();
    for record in &records {
        if header(record, "ce_type").as_deref() == Some("notification.sent") {
            sent.push((header(record, "ce_id"), decoded(&env, record).await));
        }
    }
    assert_eq!(sent.len(), 4);
    let ids: BTreeSet<_> = sent.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 2, "a redelivery emits the same ids");
    let channels: BTreeSet<String> = sent
        .iter()
        .map(|(_, data)| data["channel"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        channels,
        BTreeSet::from(["IN_APP".to_string(), "PUSH".to_string()])
    );
    assert!(sent
        .iter()
        .all(|(_, data)| data["notificationId"] == json!(notification)
            && data["userId"] == json!(user)));

    let row: (String, Vec<String>, Vec<String>, Option<String>) = sqlx::query_as(
        "SELECT kind, channels, delivered_channels, read_at::text FROM notifications \
         WHERE id = $1",
    )
    .bind(Uuid::parse_str(&notification).unwrap())
    .fetch_one(&deps.pool)
    .await
    .expect("stored");
    assert_eq!(row.0, "SYSTEM");
    assert_eq!(row.1, vec!["IN_APP", "PUSH", "EMAIL"]);
    assert_eq!(row.2, vec!["IN_APP", "PUSH"]);
    assert_eq!(row.3, None);
    let outbox: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT channel, payload FROM notification_outbox WHERE notification_id = $1",
    )
    .bind(Uuid::parse_str(&notification).unwrap())
    .fetch_all(&deps.pool)
    .await
    .expect("query");
    assert_eq!(outbox.len(), 1, "one push delivery, none by email");
    assert_eq!(outbox[0].0, "PUSH");
    assert_eq!(outbox[0].1["title"], json!("Maintenance tonight"));

    // Reads: the earliest read time is kept.
    let mut last_read = String::new();
    for at in [
        "2026-11-27T10:05:00Z",
        "2026-11-27T10:01:00Z",
        "2026-11-27T10:09:00Z",
    ] {
        last_read = uuid();
        publish_with_id(
            &env,
            &publisher,
            "notification.read",
            &last_read,
            json!({"notificationId": notification, "userId": user, "readAt": at}),
        )
        .await;
    }
    // Keyed by the user: once the last read is handled, all are.
    eventually("the last read handled", WITHIN, || async {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT event_id FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
        )
        .bind(GROUP)
        .bind(&last_read)
        .fetch_optional(&deps.pool)
        .await
        .expect("query");
        row.map(|_| ())
    })
    .await;
    let (read_at,): (Option<String>,) = sqlx::query_as(
        "SELECT to_char(read_at AT TIME ZONE 'UTC', 'HH24:MI') FROM notifications WHERE id = $1",
    )
    .bind(Uuid::parse_str(&notification).unwrap())
    .fetch_one(&deps.pool)
    .await
    .expect("query");
    assert_eq!(read_at.as_deref(), Some("10:01"));
    // Nothing more was emitted since.
    assert_eq!(count_records(&env.kafka, &topic).await, 6 + 3);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activity_notifies_the_user_concerned_and_never_the_actor() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let (author, fan) = (uuid(), uuid());
    let (post, video, payment, comment) = (uuid(), uuid(), uuid(), uuid());

    // One's own like and comment come first on the post's key: when the fan's are handled, so
    // were they.
    env.publish(
        &publisher,
        "like.added",
        json!({"postId": post, "userId": author, "postAuthorId": author,
               "likedAt": "2026-11-27T10:00:00Z"}),
    )
    .await;
    let like = json!({"postId": post, "userId": fan, "postAuthorId": author,
                      "likedAt": "2026-11-27T10:01:00Z"});
    let like_id = uuid();
    publish_with_id(&env, &publisher, "like.added", &like_id, like.clone()).await;
    // The same like again, under its id and under a new one: one notification.
    publish_with_id(&env, &publisher, "like.added", &like_id, like.clone()).await;
    env.publish(&publisher, "like.added", like).await;
    for (id, by) in [(uuid(), &author), (comment.clone(), &fan)] {
        env.publish(
            &publisher,
            "comment.added",
            json!({"commentId": id, "postId": post, "authorId": by, "postAuthorId": author,
                   "parentCommentId": null, "text": "  What a sunset!  ", "mentions": [],
                   "createdAt": "2026-11-27T10:02:00Z"}),
        )
        .await;
    }
    env.publish(
        &publisher,
        "user.followed",
        json!({"followerId": fan, "followeeId": author, "followedAt": "2026-11-27T10:03:00Z"}),
    )
    .await;
    env.publish(
        &publisher,
        "payment.completed",
        json!({"paymentId": payment, "walletId": uuid(), "payeeWalletId": uuid(),
               "payerId": fan, "payeeId": author, "amountMinor": 1250, "currency": "USD",
               "kind": "TIP", "providerReference": null,
               "completedAt": "2026-11-27T10:04:00Z"}),
    )
    .await;
    env.publish(
        &publisher,
        "video.published",
        json!({"videoId": video, "authorId": author, "postId": uuid(), "caption": "Sunset",
               "hashtags": ["travel"], "mentions": [],
               "masterPlaylistUrl": "https://cdn.example/v/master.m3u8",
               "thumbnailUrl": "https://cdn.example/v/thumb.jpg", "durationMs": 15000,
               "publishedAt": "2026-11-27T10:05:00Z"}),
    )
    .await;

    let authors = eventually("five notifications for the author", WITHIN, || async {
        let rows = inbox(&deps, &author).await;
        (rows.len() >= 5).then_some(rows)
    })
    .await;
    let fan_id = Some(Uuid::parse_str(&fan).unwrap());
    assert_eq!(authors, {
        let mut expected = vec![
            (
                "COMMENT".to_string(),
                fan_id,
                notification_id(&format!("comment/{comment}")),
            ),
            (
                "FOLLOW".to_string(),
                fan_id,
                notification_id(&format!("follow/{fan}/{author}")),
            ),
            (
                "LIKE".to_string(),
                fan_id,
                notification_id(&format!("like/{post}/{fan}")),
            ),
            (
                "PAYMENT".to_string(),
                fan_id,
                notification_id(&format!("payment/{payment}/payee")),
            ),
            (
                "VIDEO_PUBLISHED".to_string(),
                None,
                notification_id(&format!("video-published/{video}")),
            ),
        ];
        expected.sort();
        expected
    });
    let receipt = eventually("the fan's receipt", WITHIN, || async {
        let rows = inbox(&deps, &fan).await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(
        receipt,
        vec![(
            "PAYMENT".to_string(),
            None,
            notification_id(&format!("payment/{payment}/payer"))
        )]
    );
    let texts: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT kind, title, body FROM notifications WHERE user_id = ANY($1) ORDER BY kind, title",
    )
    .bind(vec![
        Uuid::parse_str(&author).unwrap(),
        Uuid::parse_str(&fan).unwrap(),
    ])
    .fetch_all(&deps.pool)
    .await
    .expect("query");
    assert!(texts.contains(&(
        "COMMENT".into(),
        "New comment on your post".into(),
        "What a sunset!".into()
    )));
    assert!(texts.contains(&(
        "PAYMENT".into(),
        "Payment receipt".into(),
        "You paid 12.50 USD (tip).".into()
    )));
    assert!(texts.contains(&(
        "VIDEO_PUBLISHED".into(),
        "Your video is now live!".into(),
        "\u{201c}Sunset\u{201d} finished processing and is now live.".into()
    )));
    // Every notification was delivered: the video announcement on push and email too.
    let outbox: Vec<(String,)> = sqlx::query_as(
        "SELECT channel FROM notification_outbox WHERE notification_id = $1 ORDER BY channel",
    )
    .bind(notification_id(&format!("video-published/{video}")))
    .fetch_all(&deps.pool)
    .await
    .expect("query");
    assert_eq!(outbox, vec![("EMAIL".into(),), ("PUSH".into(),)]);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: NoOptions {},
        event_type: "notification.created",
        data: json!({
            "notificationId": uuid(),
            "userId": uuid(),
            "kind": "OTHER",
            "title": "t",
            "body": "b",
            "actorId": null,
            "entityId": null,
            "channels": ["IN_APP"],
            "createdAt": "2026-11-27T10:00:00Z"
        }),
    }
    .dead_letters(env)
    .await;
}
