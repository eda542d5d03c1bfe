//! Browser sessions: sign in with a token (kept in an HttpOnly cookie), see who is signed in,
//! sign out. See `crate::auth` for the CSRF scheme.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::{authenticate, cookie, Viewer, CSRF_COOKIE, SESSION_COOKIE};
use crate::problem::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    /// A bearer token with the admin claim.
    pub token: String,
}

/// Who is signed in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub sub: String,
    /// `viewer` or `operator`.
    pub role: String,
    /// Whether actions are allowed (the server checks again on each one).
    pub may_act: bool,
    /// Echo it in `X-CSRF-Token` on actions.
    pub csrf: Option<String>,
}

fn cookie_header(name: &str, value: &str, http_only: bool, max_age: u64) -> HeaderValue {
    let http_only = if http_only { "; HttpOnly" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; SameSite=Strict; Max-Age={max_age}{http_only}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[utoipa::path(post, path = "/admin/session", tag = "session",
    request_body(content = SignIn, description = "The token to sign in with"),
    responses((status = 200, description = "Signed in: session and CSRF cookies set", body = Session),
              (status = 401, description = "Invalid token"), (status = 403, description = "Not an admin")))]
pub async fn sign_in(
    State(state): State<AppState>,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", body.token.trim())).map_err(|_| {
            ApiError::BadRequest("the token has characters a header cannot carry".into())
        })?,
    );
    let principal = authenticate(&state.verifier, &headers)?;
    let lifetime = principal
        .claims
        .exp
        .saturating_sub(chrono::Utc::now().timestamp().max(0) as u64);
    let csrf = uuid::Uuid::new_v4().simple().to_string();
    let session = Session {
        sub: principal.sub().to_string(),
        role: format!("{:?}", principal.role()).to_lowercase(),
        may_act: principal.claims.may_operate(),
        csrf: Some(csrf.clone()),
    };
    let mut response = Json(session).into_response();
    let h = response.headers_mut();
    h.append(
        SET_COOKIE,
        cookie_header(SESSION_COOKIE, body.token.trim(), true, lifetime),
    );
    h.append(
        SET_COOKIE,
        cookie_header(CSRF_COOKIE, &csrf, false, lifetime),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/admin/session", tag = "session",
    responses((status = 200, description = "The signed-in admin", body = Session), (status = 401, description = "Not signed in")),
    security(("bearer" = [])))]
pub async fn current(Viewer(who): Viewer, headers: HeaderMap) -> Json<Session> {
    Json(Session {
        sub: who.sub().to_string(),
        role: format!("{:?}", who.role()).to_lowercase(),
        may_act: who.claims.may_operate(),
        csrf: cookie(&headers, CSRF_COOKIE).map(str::to_string),
    })
}

#[utoipa::path(delete, path = "/admin/session", tag = "session",
    responses((status = 204, description = "Signed out: cookies cleared")))]
pub async fn sign_out() -> Response {
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.append(SET_COOKIE, cookie_header(SESSION_COOKIE, "", true, 0));
    h.append(SET_COOKIE, cookie_header(CSRF_COOKIE, "", false, 0));
    response
}
