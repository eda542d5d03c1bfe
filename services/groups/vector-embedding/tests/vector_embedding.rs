//! vector-embedding against the real stack: embeddings are stored and replaced by newer ones,
//! redeliveries change nothing, published videos become recommendable, an invalid embedding is
//! dead-lettered at once, and an unreachable database is retried then dead-lettered.

use std::time::Duration;

use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_vector_embedding::{register, GROUP};
use circulatory_testkit::{header, TestEnv};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

fn embedding(video: &str, vector: &[f32], at: &str) -> serde_json::Value {
    json!({
        "videoId": video, "authorId": uuid(), "model": "clip-v1", "dimensions": vector.len(),
        "vector": vector, "generatedAt": at
    })
}

async fn stored(pool: &sqlx::PgPool, video: &str) -> Option<(i32, Vec<f32>, i32)> {
    sqlx::query_as(
        "SELECT dimensions, vector, version FROM video_embeddings \
         WHERE video_id = $1 AND model = 'clip-v1'",
    )
    .bind(video)
    .fetch_optional(pool)
    .await
    .expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embeddings_are_stored_once_and_published_videos_become_candidates() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let video = uuid();

    // One key (the video) keeps these in order: the first generation twice (a redelivery), then
    // a newer generation, then an older one arriving late.
    let first = uuid();
    for _ in 0..2 {
        let data = embedding(&video, &[0.25, -0.5, 1.0], "2026-11-27T10:00:00Z");
        publish_with_id(&env, &publisher, "video.embedding.generated", &first, data).await;
    }
    let data = embedding(&video, &[0.5, 0.5, 0.0], "2026-11-27T11:00:00Z");
    publish_with_id(&env, &publisher, "video.embedding.generated", &uuid(), data).await;
    let (late, data) = (
        uuid(),
        embedding(&video, &[9.0, 9.0, 9.0], "2026-11-27T09:00:00Z"),
    );
    publish_with_id(&env, &publisher, "video.embedding.generated", &late, data).await;
    let (post, author) = (uuid(), uuid());
    publish_with_id(
        &env,
        &publisher,
        "video.published",
        &uuid(),
        json!({
            "videoId": video, "authorId": author, "postId": post, "caption": "sunset",
            "hashtags": ["travel", "egypt"], "mentions": [],
            "masterPlaylistUrl": "https://cdn.example/v/master.m3u8",
            "thumbnailUrl": "https://cdn.example/v/thumb.jpg", "durationMs": 8000,
            "publishedAt": "2026-11-27T10:30:00Z"
        }),
    )
    .await;

    let candidate: (String, Vec<String>, i64, String, Vec<f32>) =
        eventually("a recommendation candidate", WITHIN, || async {
            sqlx::query_as(
                "SELECT post_id, hashtags, duration_ms, model, vector \
                 FROM recommendation_candidates WHERE video_id = $1 AND author_id = $2",
            )
            .bind(&video)
            .bind(&author)
            .fetch_optional(&deps.pool)
            .await
            .expect("query")
        })
        .await;
    assert_eq!(candidate.0, post);
    assert_eq!(candidate.1, vec!["travel".to_string(), "egypt".into()]);
    assert_eq!(candidate.2, 8000);
    assert_eq!(candidate.3, "clip-v1");
    // The late embedding is the last of its partition: once it is handled, all are.
    eventually("the late embedding handled", WITHIN, || async {
        sqlx::query_as::<_, (i32,)>(
            "SELECT 1 FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
        )
        .bind(GROUP)
        .bind(&late)
        .fetch_optional(&deps.pool)
        .await
        .expect("query")
    })
    .await;
    // The redelivery replaced nothing (version 2: one replacement), the late one was ignored.
    assert_eq!(
        stored(&deps.pool, &video).await,
        Some((3, vec![0.5, 0.5, 0.0], 2))
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedding_of_the_wrong_dimension_is_dead_lettered_at_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let (id, video) = (uuid(), uuid());
    let mut data = embedding(&video, &[0.25, -0.5], "2026-11-27T10:00:00Z");
    data["dimensions"] = json!(3);
    publish_with_id(&env, &publisher, "video.embedding.generated", &id, data).await;
    let dead = support::dead_letters(&env, GROUP, 1, WITHIN).await;
    assert_eq!(header(&dead[0], "ce_id").as_deref(), Some(id.as_str()));
    assert_eq!(header(&dead[0], "circ_attempt").as_deref(), Some("1"));
    assert_eq!(
        header(&dead[0], "circ_error_class").as_deref(),
        Some("permanent")
    );
    assert_eq!(
        header(&dead[0], "circ_dlq_reason").as_deref(),
        Some("permanent")
    );
    let message = header(&dead[0], "circ_error_message").unwrap_or_default();
    assert!(message.contains("dimensions says 3"), "{message}");
    assert_eq!(stored(&deps.pool, &video).await, None);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: NoOptions {},
        event_type: "video.embedding.generated",
        data: embedding(&uuid(), &[0.25, -0.5], "2026-11-27T10:00:00Z"),
    }
    .dead_letters(env)
    .await;
}
