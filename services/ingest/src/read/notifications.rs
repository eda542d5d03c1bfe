//! `GET /v1/users/{id}/notifications`: a user's in-app inbox as the notifier group keeps it in
//! `notifications`, newest first, paged on `(created_at, id)` (the `notifications_by_user` index).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    database, db_error, decode_cursor, encode_cursor, limit, path_id, query, require_owner_or_admin,
};
use crate::correlation::{respond, Correlation};
use crate::problem::ApiError;
use crate::state::AppState;

const CURSOR_TAG: &str = "n1";
const DEFAULT_LIMIT: i64 = 20;

#[derive(Debug, Default, Deserialize)]
pub struct NotificationsQuery {
    pub limit: Option<String>,
    pub before: Option<String>,
    pub unread: Option<String>,
}

/// One page of an inbox.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationsPage {
    pub items: Vec<Notification>,
    /// Cursor of the next (older) page, for `before`; `null` on the last page.
    pub next: Option<String>,
    /// Unread notifications of the user in all (not only this page).
    pub unread: i64,
}

/// One notification.
#[derive(Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// FOLLOW, LIKE, COMMENT, MENTION, SHARE, MESSAGE, PAYMENT, VIDEO_PROCESSING,
    /// VIDEO_PUBLISHED, MODERATION, SYSTEM or OTHER.
    pub kind: String,
    pub title: String,
    pub body: String,
    /// The user whose action caused it.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub actor_id: Option<Uuid>,
    /// What it links to: a post, comment, video, payment, conversation...
    #[schema(value_type = Option<String>, format = "uuid")]
    pub entity_id: Option<Uuid>,
    /// Channels it asked for: IN_APP, PUSH, EMAIL.
    pub channels: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// `null` while unread.
    pub read_at: Option<DateTime<Utc>>,
}

/// The user's notifications, newest first, with the unread count. Readable by the user and
/// admins.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/notifications",
    tag = "users",
    params(
        ("id" = String, Path, description = "The user id (UUID)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 100 (default 20)"),
        ("before" = Option<String>, Query, description = "The `next` cursor of the previous page"),
        ("unread" = Option<bool>, Query, description = "`true`: unread only; `false`: read only; absent: all"),
    ),
    responses(
        (status = 200, description = "A page of notifications, newest first", body = NotificationsPage),
        (status = 400, description = "Malformed id, limit, cursor or unread flag", body = crate::problem::Problem),
        (status = 401, description = "No or invalid token", body = crate::problem::Problem),
        (status = 403, description = "Another user's notifications", body = crate::problem::Problem),
        (status = 503, description = "PostgreSQL unavailable (Retry-After)", body = crate::problem::Problem),
    ),
    security(("bearer" = []))
)]
pub async fn notifications(
    State(state): State<AppState>,
    Extension(correlation): Extension<Correlation>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<NotificationsQuery>, QueryRejection>,
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
        let unread = match params.unread.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(ApiError::Malformed("`unread` must be true or false".into())),
        };
        require_owner_or_admin(&claims, &user.to_string(), "notifications")?;
        let (mut items, unread_count) = tokio::try_join!(
            list(&state, user, before, unread, limit + 1),
            count_unread(&state, user)
        )?;
        let next = if items.len() > usize::try_from(limit).unwrap_or(0) {
            items.truncate(usize::try_from(limit).unwrap_or(0));
            items.last().map(|n| {
                encode_cursor(
                    CURSOR_TAG,
                    &format!("{}:{}", n.created_at.timestamp_micros(), n.id),
                )
            })
        } else {
            None
        };
        Ok(Json(NotificationsPage {
            items,
            next,
            unread: unread_count,
        }))
    }
    .await;
    respond(result, &correlation)
}

async fn list(
    state: &AppState,
    user: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    unread: Option<bool>,
    rows: i64,
) -> Result<Vec<Notification>, ApiError> {
    let mut sql = String::from(
        "SELECT id, kind, title, body, actor_id, entity_id, channels, created_at, read_at \
         FROM notifications WHERE user_id = $1",
    );
    if before.is_some() {
        sql.push_str(" AND (created_at, id) < ($3, $4)");
    }
    match unread {
        Some(true) => sql.push_str(" AND read_at IS NULL"),
        Some(false) => sql.push_str(" AND read_at IS NOT NULL"),
        None => {}
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT $2");
    let mut q = sqlx::query_as::<_, Notification>(&sql)
        .bind(user)
        .bind(rows);
    if let Some((created_at, id)) = before {
        q = q.bind(created_at).bind(id);
    }
    q.fetch_all(database(state)?).await.map_err(db_error)
}

async fn count_unread(state: &AppState, user: Uuid) -> Result<i64, ApiError> {
    sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
        .bind(user)
        .fetch_one(database(state)?)
        .await
        .map_err(db_error)
}

/// `<created_at in microseconds>:<id>` of a cursor.
fn parse_keyset(keyset: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    keyset
        .split_once(':')
        .and_then(|(micros, id)| {
            let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
            Some((at, Uuid::parse_str(id).ok()?))
        })
        .ok_or_else(|| ApiError::Malformed("`before` is not a cursor of this list".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keysets_parse() {
        let id = Uuid::new_v4();
        let (at, parsed) = parse_keyset(&format!("1764000000123456:{id}")).unwrap();
        assert_eq!(at.timestamp_micros(), 1_764_000_000_123_456);
        assert_eq!(parsed, id);
        assert!(parse_keyset("1764000000123456").is_err());
        assert!(parse_keyset("x:y").is_err());
        assert!(parse_keyset(&format!("soon:{id}")).is_err());
    }
}
