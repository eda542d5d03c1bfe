//! `GET /v1/users/{id}/feed`: a user's feed as feed-fanout keeps it in Redis, one sorted set per
//! user at `circ:<namespace or default>:feed:<userId>` (member = post id, score = feed time in
//! epoch milliseconds), newest first.
//!
//! Order is score descending, then member descending (Redis' own order for equal scores), and the
//! cursor is that pair, so a page never repeats or skips an item while the feed changes. A member
//! may outlive its post for a moment (a deletion racing a late fan-out): members that
//! `feed_posts` marks deleted are left out, reading further to fill the page.

use std::collections::HashSet;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    database, db_error, decode_cursor, encode_cursor, limit, path_id, query, redis_error,
    require_owner_or_admin, PageQuery,
};
use crate::correlation::{respond, Correlation};
use crate::problem::ApiError;
use crate::state::AppState;

const CURSOR_TAG: &str = "f1";
/// Default page size.
const DEFAULT_LIMIT: i64 = 20;
/// Rounds of reading past deleted members before answering a short page (with a cursor).
const MAX_ROUNDS: usize = 8;

/// One page of a feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    /// Cursor of the next (older) page, for `before`; `null` on the last page.
    pub next: Option<String>,
}

/// A post in a feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedItem {
    pub post_id: String,
    /// Feed time: the post's creation, or its video's publication when later.
    pub added_at: Option<DateTime<Utc>>,
}

/// A member and its score.
type Entry = (String, f64);

/// The Redis key of `user`'s feed, as feed-fanout writes it.
pub fn feed_key(namespace: Option<&str>, user: &Uuid) -> String {
    circulatory::catalog::redis_key(namespace, &format!("feed:{user}"))
}

/// The user's feed, newest first. Readable by the user and admins.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/feed",
    tag = "users",
    params(
        ("id" = String, Path, description = "The user id (UUID)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 100 (default 20)"),
        ("before" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of the feed, newest first", body = FeedPage),
        (status = 400, description = "Malformed id, limit or cursor", body = crate::problem::Problem),
        (status = 401, description = "No or invalid token", body = crate::problem::Problem),
        (status = 403, description = "Another user's feed", body = crate::problem::Problem),
        (status = 503, description = "Redis or PostgreSQL unavailable (Retry-After)", body = crate::problem::Problem),
    ),
    security(("bearer" = []))
)]
pub async fn feed(
    State(state): State<AppState>,
    Extension(correlation): Extension<Correlation>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let claims = state.bearer(&headers)?;
        let user = path_id(id)?;
        let params = query(params)?;
        let limit = limit("limit", params.limit.as_deref(), DEFAULT_LIMIT)?;
        let before = params
            .before
            .as_deref()
            .map(|c| decode_cursor(CURSOR_TAG, c).and_then(|k| parse_keyset(&k)))
            .transpose()?;
        require_owner_or_admin(&claims, &user.to_string(), "a feed")?;
        let key = feed_key(state.catalog.namespace(), &user);
        page(&state, &key, before, limit).await.map(Json)
    }
    .await;
    respond(result, &correlation)
}

async fn page(
    state: &AppState,
    key: &str,
    before: Option<Entry>,
    limit: i64,
) -> Result<FeedPage, ApiError> {
    // One more than the page, to know whether another page follows.
    let want = usize::try_from(limit).unwrap_or(1) + 1;
    let mut visible: Vec<Entry> = Vec::with_capacity(want);
    let mut position = before;
    let mut exhausted = false;
    for _ in 0..MAX_ROUNDS {
        let need = want - visible.len();
        let batch = read_after(state, key, position.as_ref(), need).await?;
        let got = batch.len();
        if let Some(last) = batch.last() {
            position = Some(last.clone());
        }
        let deleted = deleted_posts(state, &batch).await?;
        visible.extend(batch.into_iter().filter(|(m, _)| !deleted.contains(m)));
        if got < need {
            exhausted = true;
            break;
        }
        if visible.len() >= want {
            break;
        }
    }
    let next = if visible.len() >= want {
        visible.truncate(want - 1);
        visible.last().cloned()
    } else if exhausted {
        None
    } else {
        // Many deleted members in a row: a short page, continuing where the reading stopped.
        position
    };
    Ok(FeedPage {
        items: visible
            .into_iter()
            .map(|(post_id, score)| FeedItem {
                added_at: DateTime::from_timestamp_millis(score as i64),
                post_id,
            })
            .collect(),
        next: next.map(|(member, score)| encode_cursor(CURSOR_TAG, &format!("{score}:{member}"))),
    })
}

/// Up to `count` members after `after` in feed order (score, then member, descending).
async fn read_after(
    state: &AppState,
    key: &str,
    after: Option<&Entry>,
    count: usize,
) -> Result<Vec<Entry>, ApiError> {
    if !state.health.redis_up() {
        return Err(ApiError::unavailable(
            "the feed store is unavailable; retry later",
            crate::problem::code::REDIS_UNAVAILABLE,
            "redis unreachable (health watcher)",
        ));
    }
    let mut redis = state.redis.clone();
    let Some((member, score)) = after else {
        return redis::cmd("ZREVRANGEBYSCORE")
            .arg(key)
            .arg("+inf")
            .arg("-inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut redis)
            .await
            .map_err(redis_error);
    };
    // Members sharing the cursor's score come first (those ordered after it), then lower scores.
    let (ties, lower): (Vec<String>, Vec<Entry>) = redis::pipe()
        .cmd("ZRANGEBYSCORE")
        .arg(key)
        .arg(score_arg(*score))
        .arg(score_arg(*score))
        .cmd("ZREVRANGEBYSCORE")
        .arg(key)
        .arg(format!("({}", score_arg(*score)))
        .arg("-inf")
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(0)
        .arg(count)
        .query_async(&mut redis)
        .await
        .map_err(redis_error)?;
    let mut entries: Vec<Entry> = ties
        .into_iter()
        .filter(|m| m.as_str() < member.as_str())
        .rev()
        .map(|m| (m, *score))
        .collect();
    entries.extend(lower);
    entries.truncate(count);
    Ok(entries)
}

/// A score as Redis reads it back exactly (Rust's shortest round-trip form; `inf` for infinities).
fn score_arg(score: f64) -> String {
    format!("{score}")
}

/// The members of `batch` that `feed_posts` marks deleted.
async fn deleted_posts(state: &AppState, batch: &[Entry]) -> Result<HashSet<String>, ApiError> {
    let ids: Vec<Uuid> = batch
        .iter()
        .filter_map(|(m, _)| Uuid::parse_str(m).ok())
        .collect();
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let deleted: Vec<(Uuid,)> =
        sqlx::query_as("SELECT post_id FROM feed_posts WHERE post_id = ANY($1) AND deleted")
            .bind(&ids)
            .fetch_all(database(state)?)
            .await
            .map_err(db_error)?;
    let deleted: HashSet<Uuid> = deleted.into_iter().map(|(id,)| id).collect();
    Ok(batch
        .iter()
        .filter(|(m, _)| Uuid::parse_str(m).is_ok_and(|id| deleted.contains(&id)))
        .map(|(m, _)| m.clone())
        .collect())
}

/// `<score>:<member>` of a cursor.
fn parse_keyset(keyset: &str) -> Result<Entry, ApiError> {
    keyset
        .split_once(':')
        .and_then(|(score, member)| {
            let score: f64 = score.parse().ok()?;
            (!score.is_nan() && !member.is_empty()).then(|| (member.to_string(), score))
        })
        .ok_or_else(|| ApiError::Malformed("`before` is not a cursor of this list".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keysets_round_trip_exactly() {
        for score in [1_764_000_000_123.0, 0.5, -3.0, f64::INFINITY] {
            let text = format!("{}:{}", score_arg(score), "post:with:colons");
            assert_eq!(
                parse_keyset(&text).unwrap(),
                ("post:with:colons".to_string(), score)
            );
        }
        assert_eq!(score_arg(1_764_000_000_123.0), "1764000000123");
        assert!(parse_keyset("NaN:x").is_err());
        assert!(parse_keyset("12:").is_err());
        assert!(parse_keyset("twelve:x").is_err());
    }

    #[test]
    fn the_key_is_the_one_feed_fanout_writes() {
        let user = Uuid::nil();
        assert_eq!(feed_key(None, &user), format!("circ:default:feed:{user}"));
        assert_eq!(feed_key(Some("t1"), &user), format!("circ:t1:feed:{user}"));
    }
}
