//! `feed_posts`: the posts and published videos this group has seen. Written exactly once per
//! event (through `exactly_once`), read to decide whether a post belongs in feeds (visible and not
//! deleted) and to rebuild a feed from the posts of the people a user follows.

use chrono::{DateTime, Utc};
use circulatory::consumer::HandlerError;
use sqlx::{PgConnection, PgPool};

use circulatory_groups::effects::db;

/// A post as the feeds see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Post {
    pub(crate) post_id: String,
    pub(crate) author_id: String,
    pub(crate) media_type: String,
    pub(crate) video_id: Option<String>,
    pub(crate) visibility: String,
    /// The feed score (epoch milliseconds of this time).
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) deleted: bool,
}

impl Post {
    /// Whether followers' feeds hold it (else the fan-out removes it).
    pub(crate) fn in_feeds(&self) -> bool {
        !self.deleted && self.visibility != "PRIVATE"
    }

    pub(crate) fn score(&self) -> i64 {
        self.created_at.timestamp_millis()
    }
}

pub(crate) async fn load(pool: &PgPool, post_id: &str) -> Result<Option<Post>, HandlerError> {
    sqlx::query_as(
        "SELECT post_id::text, author_id::text, media_type, video_id::text, visibility, \
                created_at, deleted \
         FROM feed_posts WHERE post_id = $1::uuid",
    )
    .bind(post_id)
    .fetch_optional(pool)
    .await
    .map_err(db)
}

/// A post was created: post.created is authoritative for media type and visibility; the feed
/// time is the latest of createdAt and a video's publishedAt.
pub(crate) async fn created(tx: &mut PgConnection, post: &Post) -> Result<(), HandlerError> {
    sqlx::query(
        "INSERT INTO feed_posts (post_id, author_id, media_type, video_id, visibility, created_at) \
         VALUES ($1::uuid, $2::uuid, $3, $4::uuid, $5, $6) \
         ON CONFLICT (post_id) DO UPDATE SET \
           media_type = EXCLUDED.media_type, \
           video_id = COALESCE(feed_posts.video_id, EXCLUDED.video_id), \
           visibility = EXCLUDED.visibility, \
           created_at = GREATEST(feed_posts.created_at, EXCLUDED.created_at), \
           updated_at = now()",
    )
    .bind(&post.post_id)
    .bind(&post.author_id)
    .bind(&post.media_type)
    .bind(&post.video_id)
    .bind(&post.visibility)
    .bind(post.created_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// A video went live, presented by `post_id`. Without a post.created yet, the post is PUBLIC.
pub(crate) async fn video_published(
    tx: &mut PgConnection,
    post: &Post,
) -> Result<(), HandlerError> {
    sqlx::query(
        "INSERT INTO feed_posts (post_id, author_id, media_type, video_id, visibility, created_at) \
         VALUES ($1::uuid, $2::uuid, 'VIDEO', $3::uuid, 'PUBLIC', $4) \
         ON CONFLICT (post_id) DO UPDATE SET \
           media_type = 'VIDEO', \
           video_id = EXCLUDED.video_id, \
           created_at = GREATEST(feed_posts.created_at, EXCLUDED.created_at), \
           updated_at = now()",
    )
    .bind(&post.post_id)
    .bind(&post.author_id)
    .bind(&post.video_id)
    .bind(post.created_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// A post was deleted; a deletion that arrives first leaves a tombstone, so a late creation or
/// publication never brings the post back.
pub(crate) async fn deleted(
    tx: &mut PgConnection,
    post_id: &str,
    author_id: &str,
    deleted_at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    sqlx::query(
        "INSERT INTO feed_posts (post_id, author_id, media_type, visibility, created_at, deleted, \
                                 deleted_at) \
         VALUES ($1::uuid, $2::uuid, 'OTHER', 'PUBLIC', $3, true, $3) \
         ON CONFLICT (post_id) DO UPDATE SET \
           deleted = true, \
           deleted_at = COALESCE(feed_posts.deleted_at, EXCLUDED.deleted_at), \
           updated_at = now()",
    )
    .bind(post_id)
    .bind(author_id)
    .bind(deleted_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// The `limit` newest visible posts of the people `user` follows: (post id, score).
pub(crate) async fn recent_from_followees(
    pool: &PgPool,
    user: &str,
    limit: usize,
) -> Result<Vec<(String, i64)>, HandlerError> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT p.post_id::text, p.created_at \
         FROM user_follows f JOIN feed_posts p ON p.author_id = f.followee_id \
         WHERE f.follower_id = $1::uuid AND f.active \
           AND NOT p.deleted AND p.visibility <> 'PRIVATE' \
         ORDER BY p.created_at DESC, p.post_id LIMIT $2",
    )
    .bind(user)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|(id, at)| (id, at.timestamp_millis()))
        .collect())
}
