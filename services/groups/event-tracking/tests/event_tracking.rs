//! event-tracking against the real stack: every tracked type is recorded once with its user,
//! subject and author, a redelivered event adds nothing, and an unreachable database sends the
//! event straight to the dead letters (a single attempt).

use std::time::Duration;

use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_event_tracking::{register, GROUP};
use circulatory_testkit::TestEnv;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

type Row = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
);

/// (event_id, event_type, user, subject kind, subject id, author, occurred_at) of `user`'s rows.
async fn rows(pool: &sqlx::PgPool, user: &str) -> Vec<Row> {
    sqlx::query_as(
        "SELECT event_id, event_type, user_id, subject_kind, subject_id, author_id, \
                to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') \
         FROM analytics_events WHERE user_id = $1 ORDER BY event_type",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_tracked_type_is_recorded_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();

    let (user, author, video, post) = (uuid(), uuid(), uuid(), uuid());
    let at = "2026-11-27T10:00:00Z";
    let events = vec![
        (
            "video.viewed",
            json!({
                "videoId": video, "authorId": author, "viewerId": user, "sessionId": uuid(),
                "watchTimeMs": 5000, "videoDurationMs": 10000, "completed": false,
                "source": "FEED", "platform": "WEB", "countryCode": "EG", "viewedAt": at
            }),
        ),
        (
            "content.engagement",
            json!({
                "contentId": post, "contentKind": "POST", "authorId": author, "userId": user,
                "action": "CLICK", "dwellTimeMs": null, "occurredAt": at
            }),
        ),
        (
            "search.performed",
            json!({
                "userId": user, "query": "sunset", "scope": "VIDEOS", "resultCount": 3,
                "performedAt": at
            }),
        ),
        (
            "user.interest",
            json!({
                "userId": user, "signal": "EXPLICIT", "topics": ["travel"], "weight": 0.8,
                "entityId": video, "observedAt": at
            }),
        ),
        (
            "like.added",
            json!({"postId": post, "userId": user, "postAuthorId": author, "likedAt": at}),
        ),
        (
            "like.removed",
            json!({"postId": post, "userId": user, "postAuthorId": author, "removedAt": at}),
        ),
        (
            "share.created",
            json!({
                "shareId": uuid(), "postId": post, "userId": user, "postAuthorId": author,
                "channel": "REPOST", "recipientId": null, "createdAt": at
            }),
        ),
    ];
    let mut ids = Vec::new();
    for (event_type, data) in &events {
        let id = uuid();
        publish_with_id(&env, &publisher, event_type, &id, data.clone()).await;
        ids.push((event_type.to_string(), id));
    }
    // Every event again (a producer retry, a replay): nothing more is recorded.
    for ((event_type, data), (_, id)) in events.iter().zip(&ids) {
        publish_with_id(&env, &publisher, event_type, id, data.clone()).await;
    }

    let recorded = eventually("seven rows", WITHIN, || async {
        let rows = rows(&deps.pool, &user).await;
        (rows.len() >= 7).then_some(rows)
    })
    .await;
    env.wait_until_settled(GROUP, WITHIN).await;
    assert_eq!(
        rows(&deps.pool, &user).await,
        recorded,
        "a duplicate was recorded"
    );

    let id_of = |t: &str| ids.iter().find(|(et, _)| et == t).unwrap().1.clone();
    let row = |t: &str, kind: &str, subject: Option<&str>, author: Option<&str>| {
        (
            id_of(t),
            t.to_string(),
            Some(user.clone()),
            kind.to_string(),
            subject.map(str::to_string),
            author.map(str::to_string),
            "2026-11-27T10:00:00".to_string(),
        )
    };
    assert_eq!(
        recorded,
        vec![
            row("content.engagement", "POST", Some(&post), Some(&author)),
            row("like.added", "POST", Some(&post), Some(&author)),
            row("like.removed", "POST", Some(&post), Some(&author)),
            row("search.performed", "SEARCH", None, None),
            row("share.created", "POST", Some(&post), Some(&author)),
            row("user.interest", "CONTENT", Some(&video), None),
            row("video.viewed", "VIDEO", Some(&video), Some(&author)),
        ]
    );
    // The payload is kept whole.
    let (query,): (Option<String>,) =
        sqlx::query_as("SELECT payload->>'query' FROM analytics_events WHERE event_id = $1")
            .bind(id_of("search.performed"))
            .fetch_one(&deps.pool)
            .await
            .expect("query");
    assert_eq!(query.as_deref(), Some("sunset"));
    // The trail refuses changes.
    let update = sqlx::query("UPDATE analytics_events SET event_type = 'x' WHERE user_id = $1")
        .bind(&user)
        .execute(&deps.pool)
        .await;
    assert!(update.is_err(), "analytics_events accepted an update");
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_goes_straight_to_the_dead_letters() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: NoOptions {},
        event_type: "like.added",
        data: json!({
            "postId": uuid(), "userId": uuid(), "postAuthorId": uuid(),
            "likedAt": "2026-11-27T10:00:00Z"
        }),
    }
    .dead_letters(env)
    .await;
}
