//! `search-indexer`: the full-text search index in PostgreSQL. Each post, comment and user is one
//! row of `search_documents` whose `document` (a generated `tsvector`, GIN-indexed) PostgreSQL
//! derives from its text; [`search`] ranks matches of a web-style query. A deleted post keeps an
//! empty tombstone row: it is never found again, nor are its comments, and a late or replayed
//! `post.created` cannot bring it back.

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Event, HandlerError};
use circulatory_groups::runner::Registered;
use serde::Deserialize;
use sqlx::PgPool;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;
use circulatory_groups::runner::NoOptions;

pub const GROUP: &str = "search-indexer";

/// Most results [`search`] returns, whatever the caller asks.
pub const MAX_LIMIT: i64 = 100;

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with("post.created", deps.clone(), |deps, e, _| async move {
            post_created(&deps, e).await
        })
        .handler_with("post.deleted", deps.clone(), |deps, e, _| async move {
            post_deleted(&deps, e).await
        })
        .handler_with("comment.added", deps.clone(), |deps, e, _| async move {
            comment_added(&deps, e).await
        })
        .handler_with("user.created", deps.clone(), |deps, e, _| async move {
            user_created(&deps, e).await
        }))
}

/// One document to index.
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostCreated {
    post_id: String,
    author_id: String,
    text: String,
    hashtags: Vec<String>,
    visibility: String,
    created_at: DateTime<Utc>,
}

async fn post_created(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: PostCreated = event.payload()?;
    let mut body = p.text;
    for tag in &p.hashtags {
        body.push_str(" #");
        body.push_str(tag);
    }
    Document {
        kind: "post",
        id: p.post_id,
        owner: p.author_id,
        parent_id: None,
        body,
        // Search is open to everyone: a post for followers only or private is never found.
        public: p.visibility == "PUBLIC",
        created_at: p.created_at,
    }
    .index(deps, &event)
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostDeleted {
    post_id: String,
    author_id: String,
    deleted_at: DateTime<Utc>,
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
            .bind(&p.post_id)
            .bind(&p.author_id)
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentAdded {
    comment_id: String,
    post_id: String,
    author_id: String,
    text: String,
    created_at: DateTime<Utc>,
}

async fn comment_added(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: CommentAdded = event.payload()?;
    Document {
        kind: "comment",
        id: p.comment_id,
        owner: p.author_id,
        parent_id: Some(p.post_id),
        body: p.text,
        public: true,
        created_at: p.created_at,
    }
    .index(deps, &event)
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserCreated {
    user_id: String,
    username: String,
    display_name: String,
    created_at: DateTime<Utc>,
}

/// A user is found by handle and display name (never by email or phone).
async fn user_created(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: UserCreated = event.payload()?;
    Document {
        kind: "user",
        id: p.user_id.clone(),
        owner: p.user_id,
        parent_id: None,
        body: format!("{} {}", p.username, p.display_name),
        public: true,
        created_at: p.created_at,
    }
    .index(deps, &event)
    .await
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
