//! `feed_posts`: the posts and published videos this group has seen. Written exactly once per
//! event (through `exactly_once`), read to decide whether a post belongs in feeds (visible and not
//! deleted) and to rebuild a feed from the posts of the people a user follows.

use chrono::{DateTime, Utc};
use circulatory::consumer::HandlerError;
use circulatory::events::{PostMediaType, PostVisibility};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use circulatory_group_common::effects::db;

/// A post as the feeds see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Post {
    pub(crate) post_id: Uuid,
    pub(crate) author_id: Uuid,
    pub(crate) media_type: PostMediaType,
    pub(crate) video_id: Option<Uuid>,
    pub(crate) visibility: PostVisibility,
    /// The feed score (epoch milliseconds of this time).
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) deleted: bool,
}

/// A `feed_posts` row as `load` reads it (ids as text).
type Row = (
    String,
    String,
    String,
    Option<String>,
    String,
    DateTime<Utc>,
    bool,
);

impl Post {
    /// Whether followers' feeds hold it (else the fan-out removes it).
    pub(crate) fn in_feeds(&self) -> bool {
        !self.deleted && self.visibility != PostVisibility::Private
    }

    pub(crate) fn score(&self) -> i64 {
        self.created_at.timestamp_millis()
    }

    /// The post of a row. The row was written from valid payloads, so a value that does not
    /// read is a broken row, which no retry mends.
    fn of_row(
        (post_id, author_id, media_type, video_id, visibility, created_at, deleted): Row,
    ) -> Result<Post, HandlerError> {
        let broken = |e: &dyn std::fmt::Display| {
            HandlerError::permanent(format!("feed_posts row of {post_id}: {e}"))
        };
        Ok(Post {
            post_id: stored_uuid(&post_id)?,
            author_id: stored_uuid(&author_id)?,
            media_type: media_type.parse().map_err(|e| broken(&e))?,
            video_id: video_id.as_deref().map(stored_uuid).transpose()?,
            visibility: visibility.parse().map_err(|e| broken(&e))?,
            created_at,
            deleted,
        })
    }
}

/// A uuid that PostgreSQL wrote as text (`uuid::text`).
pub(crate) fn stored_uuid(text: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(text).map_err(|e| HandlerError::permanent(format!("stored uuid `{text}`: {e}")))
}

pub(crate) async fn load(pool: &PgPool, post_id: Uuid) -> Result<Option<Post>, HandlerError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT post_id::text, author_id::text, media_type, video_id::text, visibility, \
                created_at, deleted \
         FROM feed_posts WHERE post_id = $1::uuid",
    )
    .bind(post_id)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    row.map(Post::of_row).transpose()
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
    .bind(post.post_id)
    .bind(post.author_id)
    .bind(post.media_type.as_str())
    .bind(post.video_id)
    .bind(post.visibility.as_str())
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
    .bind(post.post_id)
    .bind(post.author_id)
    .bind(post.video_id)
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
    post_id: Uuid,
    author_id: Uuid,
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
    user: Uuid,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(media_type: &str, video_id: Option<&str>, visibility: &str) -> Row {
        (
            "0192e3a4-0000-7000-8000-000000000001".into(),
            "0192e3a4-0000-7000-8000-000000000002".into(),
            media_type.into(),
            video_id.map(str::to_string),
            visibility.into(),
            DateTime::from_timestamp_millis(1_795_773_600_123).expect("in range"),
            false,
        )
    }

    #[test]
    fn a_row_reads_as_the_post_it_stores() {
        let post = Post::of_row(row(
            "VIDEO",
            Some("0192e3a4-0000-7000-8000-000000000003"),
            "FOLLOWERS",
        ))
        .expect("a valid row");
        assert_eq!(
            post.post_id,
            Uuid::from_u128(0x0192e3a4_0000_7000_8000_000000000001)
        );
        assert_eq!(post.media_type, PostMediaType::Video);
        assert_eq!(
            post.video_id,
            Some(Uuid::from_u128(0x0192e3a4_0000_7000_8000_000000000003))
        );
        assert_eq!(post.visibility, PostVisibility::Followers);
        assert_eq!(post.score(), 1_795_773_600_123);
        assert!(post.in_feeds());
        for broken in [
            row("PODCAST", None, "PUBLIC"),
            row("TEXT", None, "FRIENDS"),
            row("TEXT", Some("not-a-uuid"), "PUBLIC"),
        ] {
            assert!(!Post::of_row(broken).unwrap_err().is_retryable());
        }
    }

    #[test]
    fn deleted_and_private_posts_stay_out_of_feeds() {
        let post = Post::of_row(row("TEXT", None, "PUBLIC")).expect("a valid row");
        assert!(post.in_feeds());
        let private = Post {
            visibility: PostVisibility::Private,
            ..post.clone()
        };
        assert!(!private.in_feeds());
        let deleted = Post {
            deleted: true,
            ..post
        };
        assert!(!deleted.in_feeds());
    }
}
