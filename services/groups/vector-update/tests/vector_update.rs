//! vector-update against the real stack: views and interest signals move the user's vector by the
//! moving average (checked against a computed expectation), a redelivered view does not move it
//! twice, a view of a video without an embedding is counted only, every change is observable as
//! `user.vector.update` in Kafka, served recommendations are recorded, and an unreachable
//! database sends the event straight to the dead letters (a single attempt).

use std::time::Duration;

use circulatory::codec::avro_to_json;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_vector_update::{register, Options, GROUP};
use circulatory_testkit::{header, read_records, TestEnv};
use rdkafka::Message;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);
const MODEL: &str = "clip-v1";

async fn insert_embedding(pool: &sqlx::PgPool, video: &str, vector: &[f32]) {
    sqlx::query(
        "INSERT INTO video_embeddings (video_id, model, author_id, dimensions, vector, \
                                       generated_at) \
         VALUES ($1, $2, $3, $4, $5, now())",
    )
    .bind(video)
    .bind(MODEL)
    .bind(uuid())
    .bind(vector.len() as i32)
    .bind(vector)
    .execute(pool)
    .await
    .expect("embedding inserted");
}

/// (signals, vector) of a user in MODEL.
async fn user_vector(pool: &sqlx::PgPool, user: &str) -> Option<(i64, Vec<f32>)> {
    sqlx::query_as("SELECT signals, vector FROM user_vectors WHERE user_id = $1 AND model = $2")
        .bind(user)
        .bind(MODEL)
        .fetch_optional(pool)
        .await
        .expect("query")
}

async fn after_signals(pool: &sqlx::PgPool, user: &str, signals: i64) -> Vec<f32> {
    eventually(&format!("{signals} signal(s)"), WITHIN, || async {
        user_vector(pool, user)
            .await
            .filter(|(n, _)| *n >= signals)
            .map(|(_, v)| v)
    })
    .await
}

fn view(video: &str, viewer: &str, watch_ms: i64, completed: bool) -> serde_json::Value {
    json!({
        "videoId": video, "authorId": uuid(), "viewerId": viewer, "sessionId": uuid(),
        "watchTimeMs": watch_ms, "videoDurationMs": 10000, "completed": completed,
        "source": "RECOMMENDATION", "platform": "ANDROID", "countryCode": null,
        "viewedAt": "2026-11-27T10:00:00Z"
    })
}

/// The expectation, computed apart from the group's code: v + rate · (e − v) per component.
fn ema(v: &[f32], e: &[f32], rate: f64) -> Vec<f64> {
    v.iter()
        .zip(e)
        .map(|(v, e)| f64::from(*v) + rate * (f64::from(*e) - f64::from(*v)))
        .collect()
}

fn assert_close(actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (f64::from(*a) - e).abs() < 1e-6,
            "{actual:?} vs {expected:?}"
        );
    }
}

fn as_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|x| *x as f32).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn views_and_interests_move_the_vector_by_a_moving_average() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let updates_topic = env.topic_of("user.vector.update");
    env.create_topics_if_missing(&[&updates_topic]).await;
    let rate = 0.5;
    let options = Options {
        vector_learning_rate: rate,
    };
    let group = support::start(&env, &deps, GROUP, register, options).await;
    let publisher = env.publisher();

    let (user, other, v1, v2, v3) = (uuid(), uuid(), uuid(), uuid(), uuid());
    let e1: Vec<f32> = vec![0.5, -0.25, 1.0];
    let e2: Vec<f32> = vec![-1.0, 0.75, 0.25];
    insert_embedding(&deps.pool, &v1, &e1).await;
    insert_embedding(&deps.pool, &v2, &e2).await;

    // 1. A completed view: the first signal sets the vector to the embedding.
    publish_with_id(
        &env,
        &publisher,
        "video.viewed",
        &uuid(),
        view(&v1, &user, 10000, true),
    )
    .await;
    let first = after_signals(&deps.pool, &user, 1).await;
    assert_eq!(first, e1);

    // 2. A quarter watched: strength 0.25.
    let second_id = uuid();
    let second_view = view(&v2, &user, 2500, false);
    publish_with_id(
        &env,
        &publisher,
        "video.viewed",
        &second_id,
        second_view.clone(),
    )
    .await;
    let second = after_signals(&deps.pool, &user, 2).await;
    let expected_second = ema(&first, &e2, rate * 0.25);
    assert_close(&second, &expected_second);

    // 3. The same view again, then another user's view of the same video (same key, so handled
    //    after it): the redelivery moved nothing.
    publish_with_id(&env, &publisher, "video.viewed", &second_id, second_view).await;
    publish_with_id(
        &env,
        &publisher,
        "video.viewed",
        &uuid(),
        view(&v2, &other, 10000, true),
    )
    .await;
    assert_eq!(after_signals(&deps.pool, &other, 1).await, e2);
    assert_eq!(
        user_vector(&deps.pool, &user).await,
        Some((2, second.clone()))
    );

    // 4. Disinterest in the first video (weight −0.5): the vector moves away from it.
    publish_with_id(
        &env,
        &publisher,
        "user.interest",
        &uuid(),
        json!({
            "userId": user, "signal": "HIDE", "topics": [], "weight": -0.5, "entityId": v1,
            "observedAt": "2026-11-27T10:05:00Z"
        }),
    )
    .await;
    let third = after_signals(&deps.pool, &user, 3).await;
    let expected_third = ema(&second, &e1, rate * -0.5);
    assert_close(&third, &expected_third);

    // 5. A video without an embedding: counted, the vector stays.
    publish_with_id(
        &env,
        &publisher,
        "video.viewed",
        &uuid(),
        view(&v3, &user, 9000, false),
    )
    .await;
    let (views,): (i64,) = eventually("the unembedded view counted", WITHIN, || async {
        sqlx::query_as("SELECT views FROM unembedded_video_views WHERE video_id = $1")
            .bind(&v3)
            .fetch_optional(&deps.pool)
            .await
            .expect("query")
    })
    .await;
    assert_eq!(views, 1);
    assert_eq!(
        user_vector(&deps.pool, &user).await,
        Some((3, third.clone()))
    );

    // Every change is in Kafka: the user's three (the redelivered view re-emits its change with
    // the same id and content) and the other user's one.
    let records = read_records(&env.kafka, &updates_topic, 5, WITHIN).await;
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for record in &records {
        assert_eq!(
            header(record, "ce_type").as_deref(),
            Some("user.vector.update")
        );
        let decoded = env
            .oracle
            .decode(record.payload().expect("a value"))
            .await
            .expect("decodable");
        let data = avro_to_json(&decoded.value);
        assert_eq!(data["model"], MODEL);
        assert_eq!(data["dimensions"], 3);
        let vector: Vec<f32> = serde_json::from_value(data["vector"].clone()).expect("floats");
        let entry = (
            header(record, "ce_id").expect("an id"),
            vector,
            data.clone(),
        );
        if data["userId"] == json!(user) {
            mine.push(entry);
        } else {
            assert_eq!(data["userId"], json!(other));
            theirs.push(entry);
        }
    }
    // One key per user: in order.
    let vectors: Vec<&Vec<f32>> = mine.iter().map(|(_, v, _)| v).collect();
    assert_eq!(vectors, vec![&first, &second, &second, &third]);
    assert_eq!(mine[1].0, mine[2].0, "a re-emission keeps its id");
    assert_eq!(mine[1].2, mine[2].2, "a re-emission keeps its content");
    assert_ne!(mine[0].0, mine[1].0);
    assert_ne!(mine[2].0, mine[3].0);
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].1, e2);
    assert_close(&third, &expected_third);
    assert_eq!(third, as_f32(&expected_third));
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn served_recommendations_are_recorded_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, Options::default()).await;
    let publisher = env.publisher();
    let (user, id, recommendation) = (uuid(), uuid(), uuid());
    let (a, b) = (uuid(), uuid());
    let data = json!({
        "recommendationId": recommendation, "userId": user, "surface": "FOR_YOU",
        "model": "ranker-v3",
        "items": [
            {"videoId": a, "rank": 0, "score": 0.75},
            {"videoId": b, "rank": 1, "score": 0.5}
        ],
        "servedAt": "2026-11-27T10:00:00Z"
    });
    for _ in 0..2 {
        publish_with_id(&env, &publisher, "recommendation.served", &id, data.clone()).await;
    }
    let row: (String, String, i32, serde_json::Value) =
        eventually("the served list", WITHIN, || async {
            sqlx::query_as(
                "SELECT surface, model, item_count, items FROM recommendations_served \
                 WHERE recommendation_id = $1 AND event_id = $2 AND user_id = $3",
            )
            .bind(&recommendation)
            .bind(&id)
            .bind(&user)
            .fetch_optional(&deps.pool)
            .await
            .expect("query")
        })
        .await;
    assert_eq!(
        row,
        (
            "FOR_YOU".into(),
            "ranker-v3".into(),
            2,
            json!([
                {"videoId": a, "rank": 0, "score": 0.75},
                {"videoId": b, "rank": 1, "score": 0.5}
            ])
        )
    );
    env.wait_until_settled(GROUP, WITHIN).await;
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM recommendations_served WHERE user_id = $1")
            .bind(&user)
            .fetch_one(&deps.pool)
            .await
            .expect("query");
    assert_eq!(count, 1);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_goes_straight_to_the_dead_letters() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: Options::default(),
        event_type: "video.viewed",
        data: view(&uuid(), &uuid(), 5000, false),
    }
    .dead_letters(env)
    .await;
}
