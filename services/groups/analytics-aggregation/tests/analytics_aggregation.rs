//! analytics-aggregation against the real stack: counters, creator statistics and rollups from
//! real events, redeliveries counted once, trending ranked by the decay, and an unreachable
//! database retried then dead-lettered without counting twice in Redis.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use circulatory_group_analytics_aggregation::{register, trending_term, Options, GROUP};
use circulatory_group_common::deps::Deps;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_testkit::TestEnv;
use redis::AsyncCommands;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

/// content, hour, views, completions, watch time, engagements, likes, shares.
type Hourly = (String, String, i64, i64, i64, i64, i64, i64);

async fn hash(deps: &Deps, suffix: &str) -> HashMap<String, String> {
    let mut redis = deps.redis.clone();
    redis
        .hgetall(deps.redis_key(suffix))
        .await
        .expect("redis hgetall")
}

fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn like(post: &str, author: &str, at: &str) -> serde_json::Value {
    json!({"postId": post, "userId": uuid(), "postAuthorId": author, "likedAt": at})
}

fn view(video: &str, author: &str, watch_ms: i64, completed: bool) -> serde_json::Value {
    json!({
        "videoId": video, "authorId": author, "viewerId": uuid(), "sessionId": uuid(),
        "watchTimeMs": watch_ms, "videoDurationMs": 8000, "completed": completed,
        "source": "FEED", "platform": "IOS", "countryCode": null,
        "viewedAt": "2026-11-27T10:15:00Z"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_creator_stats_and_rollups_count_each_event_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, Options::default()).await;
    let publisher = env.publisher();
    let (author, video, post) = (uuid(), uuid(), uuid());
    let at = "2026-11-27T10:30:00Z";

    let first_view = uuid();
    let events = [
        (
            "post.created",
            uuid(),
            json!({
                "postId": post, "authorId": author, "text": "sunset", "hashtags": ["travel"],
                "mentions": [], "mediaType": "TEXT", "videoId": null, "visibility": "PUBLIC",
                "createdAt": at
            }),
        ),
        (
            "video.viewed",
            first_view.clone(),
            view(&video, &author, 8000, true),
        ),
        // The same view again (a redelivery): counted once.
        (
            "video.viewed",
            first_view,
            view(&video, &author, 8000, true),
        ),
        ("video.viewed", uuid(), view(&video, &author, 2000, false)),
        ("like.added", uuid(), like(&post, &author, at)),
        (
            "share.created",
            uuid(),
            json!({
                "shareId": uuid(), "postId": post, "userId": uuid(), "postAuthorId": author,
                "channel": "EXTERNAL_APP", "recipientId": null, "createdAt": at
            }),
        ),
        (
            "content.engagement",
            uuid(),
            json!({
                "contentId": post, "contentKind": "POST", "authorId": author, "userId": null,
                "action": "SAVE", "dwellTimeMs": null, "occurredAt": at
            }),
        ),
    ];
    for (event_type, id, data) in &events {
        publish_with_id(&env, &publisher, event_type, id, data.clone()).await;
    }

    let creator = fields(&[
        ("posts", "1"),
        ("views", "2"),
        ("watch_ms", "10000"),
        ("likes", "1"),
        ("shares", "1"),
        ("engagements", "1"),
    ]);
    let creator_key = format!("analytics:creator:{author}");
    eventually("creator totals", WITHIN, || async {
        let stats = hash(&deps, &creator_key).await;
        (stats.len() == creator.len() && stats.get("views").map(String::as_str) == Some("2"))
            .then_some(())
    })
    .await;
    // Let the duplicate be handled too, then check it counted nothing.
    env.wait_until_settled(GROUP, WITHIN).await;
    assert_eq!(hash(&deps, &creator_key).await, creator);
    assert_eq!(
        hash(&deps, &format!("analytics:content:{video}")).await,
        fields(&[
            ("views", "2"),
            ("completions", "1"),
            ("watch_ms", "10000"),
            ("author", &author),
        ])
    );
    assert_eq!(
        hash(&deps, &format!("analytics:content:{post}")).await,
        fields(&[
            ("likes", "1"),
            ("shares", "1"),
            ("engagements", "1"),
            ("engagement:save", "1"),
            ("author", &author),
        ])
    );
    let mut redis = deps.redis.clone();
    let trending: Vec<String> = redis
        .zrevrange(deps.redis_key("analytics:trending"), 0, -1)
        .await
        .expect("zrevrange");
    // post: like 3 + share 5 + save 4 at 10:30; video: 2 + 1 at 10:15.
    assert_eq!(trending, vec![post.clone(), video.clone()]);

    let hourly: Vec<Hourly> = sqlx::query_as(
        "SELECT content_id, to_char(bucket_start AT TIME ZONE 'UTC', 'HH24:MI'), views, \
                completions, watch_time_ms, engagements, likes, shares \
         FROM content_stats_hourly WHERE author_id = $1 ORDER BY views",
    )
    .bind(&author)
    .fetch_all(&deps.pool)
    .await
    .expect("query");
    assert_eq!(
        hourly,
        vec![
            (post.clone(), "10:00".into(), 0, 0, 0, 1, 1, 1),
            (video.clone(), "10:00".into(), 2, 1, 10000, 0, 0, 0),
        ]
    );
    let daily: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT day::text, posts, views, watch_time_ms, engagements, likes, shares \
         FROM creator_stats_daily WHERE author_id = $1",
    )
    .bind(&author)
    .fetch_all(&deps.pool)
    .await
    .expect("query");
    assert_eq!(daily, vec![("2026-11-27".into(), 1, 2, 10000, 1, 1, 1)]);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trending_ranks_by_time_decayed_weight() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let options = Options {
        trending_half_life: std::time::Duration::from_secs(3600),
        ..Options::default()
    };
    let group = support::start(&env, &deps, GROUP, register, options).await;
    let publisher = env.publisher();
    let (recent, old, popular, author) = (uuid(), uuid(), uuid(), uuid());

    // recent: one like at 12:00, sent twice (a redelivery adds nothing).
    // old: one like two half-lives earlier, worth a quarter of it.
    // popular: three likes one half-life earlier, worth 1.5 times it.
    let recent_like = uuid();
    for _ in 0..2 {
        let data = like(&recent, &author, "2026-11-27T12:00:00Z");
        publish_with_id(&env, &publisher, "like.added", &recent_like, data).await;
    }
    let data = like(&old, &author, "2026-11-27T10:00:00Z");
    publish_with_id(&env, &publisher, "like.added", &uuid(), data).await;
    for _ in 0..3 {
        let data = like(&popular, &author, "2026-11-27T11:00:00Z");
        publish_with_id(&env, &publisher, "like.added", &uuid(), data).await;
    }

    let key = deps.redis_key("analytics:trending");
    eventually("five likes counted", WITHIN, || async {
        let stats = hash(&deps, &format!("analytics:creator:{author}")).await;
        (stats.get("likes").map(String::as_str) == Some("5")).then_some(())
    })
    .await;
    env.wait_until_settled(GROUP, WITHIN).await;
    let mut redis = deps.redis.clone();
    let ranked: Vec<(String, f64)> = redis
        .zrevrange_withscores(&key, 0, -1)
        .await
        .expect("zrevrange");
    let members: Vec<&str> = ranked.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        members,
        vec![popular.as_str(), recent.as_str(), old.as_str()]
    );
    let score = |member: &str| ranked.iter().find(|(m, _)| m == member).unwrap().1;
    let noon: DateTime<Utc> = "2026-11-27T12:00:00Z".parse().unwrap();
    // Scores are log2 of the decayed weights: exact differences follow from the half-life.
    assert!((score(&recent) - trending_term(3.0, noon, 3600)).abs() < 1e-9);
    assert!(
        (score(&recent) - score(&old) - 2.0).abs() < 1e-9,
        "{ranked:?}"
    );
    assert!(
        (score(&popular) - score(&recent) - 1.5f64.log2()).abs() < 1e-9,
        "{ranked:?}"
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered_counting_once() {
    let env = TestEnv::new().with_fast_retries();
    let (post, author) = (uuid(), uuid());
    let dead = DatabaseOutage {
        group: GROUP,
        register,
        options: Options::default(),
        event_type: "like.added",
        data: like(&post, &author, "2026-11-27T10:00:00Z"),
    }
    .dead_letters(env)
    .await;
    // Redis counted the like on the first attempt only.
    let content = hash(&dead.deps, &format!("analytics:content:{post}")).await;
    assert_eq!(content.get("likes").map(String::as_str), Some("1"));
    let creator = hash(&dead.deps, &format!("analytics:creator:{author}")).await;
    assert_eq!(creator.get("likes").map(String::as_str), Some("1"));
}
