//! The published counts the ingest API adds to the operators' figures in Redis.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use support::api;

async fn figures(redis: &mut redis::aio::ConnectionManager, key: &str) -> HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(redis)
        .await
        .unwrap()
}

#[tokio::test]
async fn written_events_are_counted_per_type_and_refused_ones_are_not() {
    let api = api(&["like.added", "share.created"]).await;
    let single = api
        .post_json(&json!({"type": "like.added", "data": api.sample("like.added")}))
        .await;
    assert_eq!(single.status, StatusCode::ACCEPTED, "{}", single.body);
    let batch = api
        .post_json(&json!([
            {"type": "like.added", "data": api.sample("like.added")},
            {"type": "share.created", "data": api.sample("share.created")},
        ]))
        .await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.body);
    let mut invalid = api.sample("like.added");
    invalid["unexpected"] = json!("x");
    let refused = api
        .post_json(&json!({"type": "like.added", "data": invalid}))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);

    let mut redis = redis::Client::open(support::redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let likes = format!("circ:{}:stats:event:like.added", api.env.namespace);
    let shares = format!("circ:{}:stats:event:share.created", api.env.namespace);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (l, s) = (
            figures(&mut redis, &likes).await,
            figures(&mut redis, &shares).await,
        );
        if l.get("published") == Some(&2) && s.get("published") == Some(&1) {
            assert_eq!(l.get("published_by:ingest"), Some(&2), "{l:?}");
            assert_eq!(s.get("published_by:ingest"), Some(&1), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{l:?} {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Flushed once: nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(figures(&mut redis, &likes).await.get("published"), Some(&2));
}
