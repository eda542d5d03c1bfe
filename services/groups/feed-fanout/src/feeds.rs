//! Feeds in Redis: one sorted set per user, `circ:<namespace>:feed:<userId>`, member = post id,
//! score = feed time in epoch milliseconds, at most `max_length` members (the newest).
//!
//! Every write is idempotent, so a redelivered event changes nothing more: `ZADD GT` sets the same
//! member and score again (and never moves an item back in time when a post and its video both
//! arrive), the trim keeps the same newest members, `ZREM` of an absent member does nothing, and
//! a rebuild replaces the whole set in one MULTI/EXEC. Followers are written in pipelines of
//! `per_round_trip` followers, sent concurrently on the multiplexed connection.

use circulatory::consumer::HandlerError;
use circulatory::realtime::{self, RealtimeMessage};
use redis::aio::ConnectionManager;
use uuid::Uuid;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::redis_error;

/// The feed of `user`: `circ:<namespace or default>:feed:<userId>`, a sorted set of post ids
/// scored by feed time in epoch milliseconds; newest first is `ZREVRANGE key 0 n WITHSCORES`.
pub fn feed_key(deps: &Deps, user: &str) -> String {
    deps.redis_key(&format!("feed:{user}"))
}

/// The realtime channel of new items in `user`'s feed (not namespaced: channels are user-scoped).
pub fn updates_channel(user: &str) -> String {
    format!("feed:updates:{user}")
}

/// Adds `post` with `score` to each feed and trims each to `max_length`.
pub(crate) async fn add(
    redis: &ConnectionManager,
    keys: &[String],
    post: &str,
    score: i64,
    max_length: usize,
    per_round_trip: usize,
) -> Result<(), HandlerError> {
    // Ranks 0 .. -(max_length + 1) are everything but the `max_length` highest scores.
    let keep_from = -i64::try_from(max_length).unwrap_or(i64::MAX) - 1;
    run(redis, keys, per_round_trip, |pipe, key| {
        pipe.cmd("ZADD")
            .arg(key)
            .arg("GT")
            .arg(score)
            .arg(post)
            .ignore()
            .cmd("ZREMRANGEBYRANK")
            .arg(key)
            .arg(0)
            .arg(keep_from)
            .ignore();
    })
    .await
}

/// Removes `post` from each feed.
pub(crate) async fn remove(
    redis: &ConnectionManager,
    keys: &[String],
    post: &str,
    per_round_trip: usize,
) -> Result<(), HandlerError> {
    run(redis, keys, per_round_trip, |pipe, key| {
        pipe.cmd("ZREM").arg(key).arg(post).ignore();
    })
    .await
}

async fn run(
    redis: &ConnectionManager,
    keys: &[String],
    per_round_trip: usize,
    command: impl Fn(&mut redis::Pipeline, &str),
) -> Result<(), HandlerError> {
    let round_trips = keys.chunks(per_round_trip.max(1)).map(|keys| {
        let mut pipe = redis::pipe();
        for key in keys {
            command(&mut pipe, key);
        }
        let mut redis = redis.clone();
        async move { pipe.query_async::<()>(&mut redis).await }
    });
    futures::future::try_join_all(round_trips)
        .await
        .map_err(redis_error)?;
    Ok(())
}

/// Replaces the feed at `key` with `items` (post id, score) atomically.
pub(crate) async fn replace(
    redis: &ConnectionManager,
    key: &str,
    items: &[(String, i64)],
) -> Result<(), HandlerError> {
    let mut pipe = redis::pipe();
    pipe.atomic().del(key).ignore();
    for batch in items.chunks(500) {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(key);
        for (post, score) in batch {
            zadd.arg(*score).arg(post);
        }
        pipe.add_command(zadd).ignore();
    }
    let mut redis = redis.clone();
    pipe.query_async::<()>(&mut redis)
        .await
        .map_err(redis_error)
}

/// Tells each follower's realtime channel about a new feed item, `per_round_trip` channels per
/// round trip. Best effort, like every realtime message: a failure is logged, not retried.
pub(crate) async fn announce(
    redis: &ConnectionManager,
    followers: &[Uuid],
    message: &RealtimeMessage,
    per_round_trip: usize,
) {
    for batch in followers.chunks(per_round_trip.max(1)) {
        let channels: Vec<String> = batch
            .iter()
            .map(|f| updates_channel(&f.to_string()))
            .collect();
        let mut redis = redis.clone();
        if let Err(e) = realtime::publish(&mut redis, &channels, message).await {
            tracing::warn!(error = %e, "feed update broadcast failed");
            return;
        }
    }
}
