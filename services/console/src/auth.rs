//! Who may use the console: bearer tokens of the API (JWT) with the `admin` claim. The `role`
//! claim decides what an admin may do: a `viewer` reads, an `operator` also acts. The server
//! checks the role on every action; the page only hides what it could not do anyway.
//!
//! A browser signs in once (`POST /admin/session` with its token): the token goes into an
//! HttpOnly, SameSite=Strict cookie, and a second, readable cookie carries a random CSRF token.
//! A request authenticated by the cookie must echo that token in `X-CSRF-Token` to act (double
//! submit), and its `Origin`, when sent, must be this console. Requests with an `Authorization`
//! header carry no ambient credential and need neither.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use circulatory::auth::{AdminRole, AuthError, Claims, TokenVerifier};

use crate::problem::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "circ_console_session";
pub const CSRF_COOKIE: &str = "circ_console_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct Principal {
    pub claims: Claims,
    /// Authenticated by the session cookie (a browser), not by an `Authorization` header.
    pub by_cookie: bool,
}

impl Principal {
    pub fn sub(&self) -> &str {
        &self.claims.sub
    }

    pub fn role(&self) -> AdminRole {
        self.claims.role
    }
}

/// Any admin: may read.
pub struct Viewer(pub Principal);

/// An admin with the operator role, CSRF-checked when it came by cookie: may act.
pub struct Operator(pub Principal);

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn refusal(error: AuthError) -> ApiError {
    ApiError::Unauthenticated(error.to_string())
}

/// Verifies the request's token and requires the admin claim.
pub fn authenticate(verifier: &TokenVerifier, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let (token, by_cookie) = match bearer {
        Some(token) => (token, false),
        None => match cookie(headers, SESSION_COOKIE) {
            Some(token) => (token, true),
            None => return Err(refusal(AuthError::Missing)),
        },
    };
    let claims = verifier.verify(token.trim()).map_err(refusal)?;
    if !claims.admin {
        return Err(ApiError::Forbidden(
            "the console needs a token with the admin claim".into(),
        ));
    }
    Ok(Principal { claims, by_cookie })
}

/// The double-submit check and the origin check of a cookie-authenticated action.
pub fn check_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = cookie(headers, CSRF_COOKIE).filter(|v| !v.is_empty());
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match (expected, sent) {
        (Some(e), Some(s)) if constant_time_eq(e.as_bytes(), s.as_bytes()) => {}
        _ => {
            return Err(ApiError::Forbidden(
                "missing or wrong CSRF token (send the circ_console_csrf cookie's value in X-CSRF-Token)"
                    .into(),
            ))
        }
    }
    if let (Some(origin), Some(host)) = (
        headers.get(ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(HOST).and_then(|v| v.to_str().ok()),
    ) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host {
            return Err(ApiError::Forbidden(format!(
                "cross-origin action refused (origin {origin})"
            )));
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Requires the operator role, and the CSRF check when the request came by cookie.
pub fn operator(verifier: &TokenVerifier, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = authenticate(verifier, headers)?;
    if !principal.claims.may_operate() {
        return Err(ApiError::Forbidden(
            "this action needs the operator role; a viewer may only read".into(),
        ));
    }
    if principal.by_cookie {
        check_csrf(headers)?;
    }
    Ok(principal)
}

impl<S> FromRequestParts<S> for Viewer
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        authenticate(&state.verifier, &parts.headers).map(Viewer)
    }
}

impl<S> FromRequestParts<S> for Operator
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        operator(&state.verifier, &parts.headers).map(Operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; circ_console_csrf=xyz; b=2")]);
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }

    #[test]
    fn csrf_needs_the_echoed_token_and_a_same_origin() {
        let ok = headers(&[
            ("cookie", "circ_console_csrf=abc"),
            ("x-csrf-token", "abc"),
            ("host", "127.0.0.1:8070"),
            ("origin", "http://127.0.0.1:8070"),
        ]);
        assert!(check_csrf(&ok).is_ok());
        let missing = headers(&[("cookie", "circ_console_csrf=abc")]);
        assert!(check_csrf(&missing).is_err());
        let wrong = headers(&[("cookie", "circ_console_csrf=abc"), ("x-csrf-token", "abd")]);
        assert!(check_csrf(&wrong).is_err());
        let cross = headers(&[
            ("cookie", "circ_console_csrf=abc"),
            ("x-csrf-token", "abc"),
            ("host", "127.0.0.1:8070"),
            ("origin", "http://evil.example"),
        ]);
        assert!(check_csrf(&cross).is_err());
    }
}
