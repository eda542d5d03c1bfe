//! The follow graph, as the fan-out reads it. The graph belongs to user-lifecycle
//! (`user_follows (follower_id UUID, followee_id UUID, active BOOLEAN, ...)`, one row per pair,
//! `active` while the follow holds); this module is the only place that knows its shape.
//!
//! Followers are paged in follower-id order with the last id of a page as the cursor: a cursor
//! stays meaningful while the graph changes (no offsets to shift), and the index
//! `user_follows_followers_by_id (followee_id, follower_id) WHERE active` serves each page.

use circulatory::consumer::HandlerError;
use sqlx::PgPool;
use uuid::Uuid;

use circulatory_group_common::effects::db;

use crate::posts::stored_uuid;

/// Up to `limit` current followers of `author` whose id is greater than `after` (all when
/// `None`), in id order.
pub async fn followers(
    pool: &PgPool,
    author: Uuid,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Vec<Uuid>, HandlerError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT follower_id::text AS id FROM user_follows \
         WHERE followee_id = $1::uuid AND active AND follower_id > $2::uuid \
         ORDER BY follower_id LIMIT $3",
    )
    .bind(author)
    // Below every uuid: the cursor of the first page.
    .bind(after.unwrap_or(Uuid::nil()))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    ids.iter().map(|id| stored_uuid(id)).collect()
}

/// How many followers `author` has now.
pub async fn follower_count(pool: &PgPool, author: Uuid) -> Result<u64, HandlerError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_follows WHERE followee_id = $1::uuid AND active",
    )
    .bind(author)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    Ok(count.unsigned_abs())
}
