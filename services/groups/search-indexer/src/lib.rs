//! `search-indexer`: the full-text search index in PostgreSQL. Each post, comment and user is one
//! row of `search_documents` whose `document` (a generated `tsvector`, GIN-indexed) PostgreSQL
//! derives from its text; [`search`] ranks matches of a web-style query. A deleted post keeps an
//! empty tombstone row: it is never found again, nor are its comments, and a late or replayed
//! `post.created` cannot bring it back.

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Event, HandlerError};
use circulatory::events::{
    CommentAdded, EventPayload, PostCreated, PostDeleted, PostVisibility, UserCreated,
};
use circulatory_group_common::runner::Registered;
use sqlx::PgPool;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;
use circulatory_group_common::runner::NoOptions;

pub const GROUP: &str = "search-indexer";

/// Most results [`search`] returns, whatever the caller asks.
pub const MAX_LIMIT: i64 = 100;

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(
            PostCreated::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { post_created(&deps, e).await },
        )
        .handler_with(
            PostDeleted::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { post_deleted(&deps, e).await },
        )
        .handler_with(
            CommentAdded::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { comment_added(&deps, e).await },
        )
        .handler_with(
            UserCreated::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { user_created(&deps, e).await },
        ))
}

/// One document to index.
#[derive(Debug, Clone, PartialEq)]
struct Document {
    kind: &'static str,
    id: String,
    owner: String,
    parent_id: Option<String>,
    body: String,
    public: bool,
    created_at: DateTime<Utc>,
}

impl Document {
    /// Adds the document; an existing one keeps its state (a deleted post stays deleted).
    async fn index(self, deps: &Deps, event: &Event) -> Result<(), HandlerError> {
        exactly_once(&deps.pool, GROUP, event, move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO search_documents \
                       (kind, id, owner, parent_id, body, public, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (kind, id) DO UPDATE \
                       SET owner = EXCLUDED.owner, parent_id = EXCLUDED.parent_id, \
                           body = EXCLUDED.body, public = EXCLUDED.public, \
                           created_at = EXCLUDED.created_at, \
                           indexed_at = now() \
                     WHERE NOT search_documents.deleted",
                )
                .bind(self.kind)
                .bind(&self.id)
                .bind(&self.owner)
                .bind(&self.parent_id)
                .bind(&self.body)
                .bind(self.public)
                .bind(self.created_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Ok(())
            })
        })
        .await
        .map(drop)
    }
}

/// A post's document: its text and its hashtags (`#tag`, as typed).
fn post_document(p: PostCreated) -> Document {
    let mut body = p.text;
    for tag in &p.hashtags {
        body.push_str(" #");
        body.push_str(tag);
    }
    Document {
        kind: "post",
        id: p.post_id.to_string(),
        owner: p.author_id.to_string(),
        parent_id: None,
        body,
        // Search is open to everyone: a post for followers only or private is never found.
        public: matches!(p.visibility, PostVisibility::Public),
        created_at: p.created_at,
    }
}

async fn post_created(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: PostCreated = event.payload()?;
    post_document(p).index(deps, &event).await
}

/// Marks the post deleted and empties its text (its row stays as a tombstone, even when the
/// deletion arrives before the post itself).
async fn post_deleted(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: PostDeleted = event.payload()?;
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO search_documents \
                   (kind, id, owner, body, created_at, deleted, deleted_at) \
                 VALUES ('post', $1, $2, '', $3, true, $3) \
                 ON CONFLICT (kind, id) DO UPDATE \
                   SET body = '', deleted = true, \
                       deleted_at = COALESCE(search_documents.deleted_at, EXCLUDED.deleted_at), \
                       indexed_at = now()",
            )
            .bind(p.post_id.to_string())
            .bind(p.author_id.to_string())
            .bind(p.deleted_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        })
    })
    .await
    .map(drop)
}

/// A comment's document, under its post (found only while the post is).
fn comment_document(p: CommentAdded) -> Document {
    Document {
        kind: "comment",
        id: p.comment_id.to_string(),
        owner: p.author_id.to_string(),
        parent_id: Some(p.post_id.to_string()),
        body: p.text,
        public: true,
        created_at: p.created_at,
    }
}

async fn comment_added(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: CommentAdded = event.payload()?;
    comment_document(p).index(deps, &event).await
}

/// A user is found by handle and display name (never by email or phone).
fn user_document(p: UserCreated) -> Document {
    Document {
        kind: "user",
        id: p.user_id.to_string(),
        owner: p.user_id.to_string(),
        parent_id: None,
        body: format!("{} {}", p.username, p.display_name),
        public: true,
        created_at: p.created_at,
    }
}

async fn user_created(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: UserCreated = event.payload()?;
    user_document(p).index(deps, &event).await
}

/// One search result.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Hit {
    /// `post`, `comment` or `user`.
    pub kind: String,
    pub id: String,
    pub owner: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub rank: f32,
}

/// Documents matching `query` (web search syntax: words, `"a phrase"`, `or`, `-word`), best
/// ranked first, newest first among equals; at most `limit` (1 to [`MAX_LIMIT`]). Only public
/// documents are returned, never deleted posts nor the comments of deleted posts.
pub async fn search(pool: &PgPool, query: &str, limit: i64) -> Result<Vec<Hit>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.kind, d.id, d.owner, d.body, d.created_at, \
                ts_rank(d.document, q.query) AS rank \
         FROM search_documents d, websearch_to_tsquery('simple', $1) AS q(query) \
         WHERE d.document @@ q.query \
           AND d.public AND NOT d.deleted \
           AND NOT EXISTS ( \
             SELECT 1 FROM search_documents p \
             WHERE d.kind = 'comment' AND p.kind = 'post' AND p.id = d.parent_id AND p.deleted) \
         ORDER BY rank DESC, d.created_at DESC, d.kind, d.id \
         LIMIT $2",
    )
    .bind(query)
    .bind(limit.clamp(1, MAX_LIMIT))
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    use circulatory::events::{PostMediaType, UserSignupMethod};

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_796_358_334_123).expect("in range")
    }

    fn post(visibility: PostVisibility) -> PostCreated {
        PostCreated {
            post_id: uuid(1),
            author_id: uuid(2),
            text: "Sunset over the Nile".into(),
            hashtags: vec!["travel".into(), "sunset".into()],
            mentions: vec![],
            media_type: PostMediaType::Text,
            video_id: None,
            visibility,
            created_at: at(),
        }
    }

    fn uuid(n: u128) -> sqlx::types::Uuid {
        sqlx::types::Uuid::from_u128(n)
    }

    #[test]
    fn a_post_is_found_by_its_text_and_hashtags_when_public() {
        let d = post_document(post(PostVisibility::Public));
        assert_eq!(d.kind, "post");
        assert_eq!(d.id, "00000000-0000-0000-0000-000000000001");
        assert_eq!(d.owner, "00000000-0000-0000-0000-000000000002");
        assert_eq!(d.parent_id, None);
        assert_eq!(d.body, "Sunset over the Nile #travel #sunset");
        assert!(d.public);
        assert_eq!(d.created_at, at());
        assert!(!post_document(post(PostVisibility::Followers)).public);
        assert!(!post_document(post(PostVisibility::Private)).public);
    }

    #[test]
    fn a_comment_hangs_under_its_post() {
        let d = comment_document(CommentAdded {
            comment_id: uuid(3),
            post_id: uuid(1),
            author_id: uuid(4),
            post_author_id: uuid(2),
            parent_comment_id: None,
            text: "Beautiful".into(),
            mentions: vec![],
            created_at: at(),
        });
        assert_eq!(d.kind, "comment");
        assert_eq!(d.id, uuid(3).to_string());
        assert_eq!(d.owner, uuid(4).to_string());
        assert_eq!(d.parent_id, Some(uuid(1).to_string()));
        assert_eq!(d.body, "Beautiful");
        assert!(d.public);
    }

    #[test]
    fn a_user_is_found_by_handle_and_name_only() {
        let d = user_document(UserCreated {
            user_id: uuid(5),
            username: "amira".into(),
            display_name: "Amira Haddad".into(),
            email: Some("amira@example.com".into()),
            phone_number: Some("+201000000000".into()),
            signup_method: UserSignupMethod::Email,
            locale: None,
            country_code: None,
            referrer_id: None,
            created_at: at(),
        });
        assert_eq!(d.kind, "user");
        assert_eq!(d.id, uuid(5).to_string());
        assert_eq!(d.owner, d.id, "a user owns their own document");
        assert_eq!(d.body, "amira Amira Haddad");
        assert!(d.public);
    }
}
