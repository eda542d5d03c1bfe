//! The read API: what clients read back from the projections the consumer groups keep
//! (PostgreSQL tables, Redis feeds). The API never writes them; it only authorizes and pages.
//!
//! Common rules: a bearer token is required (401); ids in paths are UUIDs and page sizes are
//! 1..=100 (400 otherwise); a user's own resources are readable by that user (`sub` equal to the
//! id) or an admin (403 otherwise). Pages are newest first, with an opaque `next` cursor (base64url
//! of the keyset of the last item) to pass back as `before`; `next` is `null` on the last page.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use circulatory::auth::Claims;
use serde::Deserialize;
use uuid::Uuid;

use crate::problem::{code, ApiError};
use crate::state::AppState;

pub mod feed;
pub mod notifications;
pub mod videos;
pub mod wallets;

/// Largest page of any list.
pub const MAX_LIMIT: i64 = 100;
/// Longest cursor accepted (the longest a route issues is well below).
const MAX_CURSOR_LEN: usize = 512;

/// The id of a path: a UUID, or 400.
pub(crate) fn path_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::Malformed(e.body_text()))?;
    Uuid::parse_str(&raw).map_err(|_| ApiError::Malformed(format!("`{raw}` is not a UUID")))
}

/// The query string, or 400 when it cannot be decoded.
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::Malformed(e.body_text()))
}

/// Paging parameters shared by the lists.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub before: Option<String>,
}

/// A page size `name` from the query: `default` when absent, 1..=100 otherwise, else 400.
pub(crate) fn limit(name: &str, raw: Option<&str>, default: i64) -> Result<i64, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::Malformed(format!("`{name}` must be an integer from 1 to {MAX_LIMIT}"))
        })
}

/// Cursors: `<tag>:<keyset>` in base64url without padding. The tag ties a cursor to the list that
/// issued it, so one list's cursor given to another is a 400, not a wrong page.
pub(crate) fn encode_cursor(tag: &str, keyset: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}:{keyset}"))
}

/// The keyset of a cursor issued with `tag`, or 400.
pub(crate) fn decode_cursor(tag: &str, cursor: &str) -> Result<String, ApiError> {
    let malformed = || ApiError::Malformed("`before` is not a cursor of this list".into());
    if cursor.is_empty() || cursor.len() > MAX_CURSOR_LEN {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    text.strip_prefix(tag)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::to_string)
        .ok_or_else(malformed)
}

/// Whether the bearer is `owner` (a user id; compared as UUIDs when both parse) or an admin.
pub(crate) fn is_owner_or_admin(claims: &Claims, owner: &str) -> bool {
    if claims.admin {
        return true;
    }
    match (Uuid::parse_str(&claims.sub), Uuid::parse_str(owner)) {
        (Ok(sub), Ok(owner)) => sub == owner,
        _ => claims.sub == owner,
    }
}

/// 403 unless the bearer is `owner` or an admin.
pub(crate) fn require_owner_or_admin(
    claims: &Claims,
    owner: &str,
    what: &str,
) -> Result<(), ApiError> {
    if is_owner_or_admin(claims, owner) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only its owner or an admin may read {what}"
        )))
    }
}

/// The read store; while the health watcher knows it is unreachable, an immediate 503 rather
/// than a wait for the pool's timeout.
pub(crate) fn database(state: &AppState) -> Result<&sqlx::PgPool, ApiError> {
    if state.health.database_up() {
        Ok(&state.db)
    } else {
        Err(ApiError::unavailable(
            "the read store is unavailable; retry later",
            code::DATABASE_UNAVAILABLE,
            "postgres unreachable (health watcher)",
        ))
    }
}

/// A PostgreSQL failure: 503 when the database is unreachable or overloaded (the client may
/// retry), 500 otherwise. The details are logged, never returned.
pub(crate) fn db_error(error: sqlx::Error) -> ApiError {
    let transient = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|c| {
            // Connection exceptions, insufficient resources, operator intervention (shutdown,
            // statement timeout).
            c.starts_with("08") || c.starts_with("53") || c.starts_with("57")
        }),
        _ => false,
    };
    if transient {
        ApiError::unavailable(
            "the read store is unavailable; retry later",
            code::DATABASE_UNAVAILABLE,
            error,
        )
    } else {
        ApiError::Internal(format!("database: {error}"))
    }
}

/// A Redis failure: 503, the client may retry.
pub(crate) fn redis_error(error: redis::RedisError) -> ApiError {
    ApiError::unavailable(
        "the feed store is unavailable; retry later",
        code::REDIS_UNAVAILABLE,
        error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, admin: bool) -> Claims {
        let mut claims = circulatory::auth::claims_for(sub, std::time::Duration::from_secs(60));
        claims.admin = admin;
        claims
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit("limit", None, 20).unwrap(), 20);
        assert_eq!(limit("limit", Some("1"), 20).unwrap(), 1);
        assert_eq!(limit("limit", Some("100"), 20).unwrap(), 100);
        for bad in ["0", "101", "-1", "ten", "", "1.5"] {
            assert!(limit("limit", Some(bad), 20).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_list() {
        let cursor = encode_cursor("n1", "1764000000000000:8f0c");
        assert!(!cursor.contains(['+', '/', '=']));
        assert_eq!(
            decode_cursor("n1", &cursor).unwrap(),
            "1764000000000000:8f0c"
        );
        assert!(decode_cursor("w1", &cursor).is_err());
        assert!(decode_cursor("n1", "!!!").is_err());
        assert!(decode_cursor("n1", "").is_err());
        assert!(decode_cursor("n1", &"A".repeat(600)).is_err());
    }

    #[test]
    fn owners_and_admins_may_read() {
        let user = "7d4f8f7e-3c1b-4c55-a0f7-1b5e2f6c9a10";
        assert!(is_owner_or_admin(&claims(user, false), user));
        assert!(is_owner_or_admin(
            &claims(&user.to_uppercase(), false),
            user
        ));
        assert!(!is_owner_or_admin(
            &claims("9d4f8f7e-3c1b-4c55-a0f7-1b5e2f6c9a10", false),
            user
        ));
        assert!(!is_owner_or_admin(&claims("someone", false), user));
        assert!(is_owner_or_admin(&claims("someone", true), user));
    }
}
