//! Who is connecting: the same bearer tokens (JWT) as the ingest API, from the `Authorization:
//! Bearer` header or, for browsers (whose WebSocket and EventSource APIs cannot set headers), the
//! `access_token` query parameter.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use circulatory::auth::{AuthError, Claims, TokenVerifier};

/// Verifies the request's token; the header wins over the query parameter.
pub fn authenticate(
    verifier: &TokenVerifier,
    headers: &HeaderMap,
    access_token: Option<&str>,
) -> Result<Claims, AuthError> {
    // Two Authorization headers could be read differently by another hop: refuse both.
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(AuthError::Invalid);
    }
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let token = from_header
        .or(access_token)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)?;
    verifier.verify(token)
}

/// An RFC 9457 problem document.
pub fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// 401 for a refused token, with the reason (safe to show).
pub fn unauthorized(error: AuthError) -> Response {
    problem(StatusCode::UNAUTHORIZED, &error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use circulatory::auth::{claims_for, mint_hs256};
    use std::time::Duration;

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

    #[test]
    fn header_or_query_token() {
        let verifier = TokenVerifier::new(Some(SECRET), None, None).unwrap();
        let token = mint_hs256(SECRET, &claims_for("u1", Duration::from_secs(60))).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            authenticate(&verifier, &headers, None),
            Err(AuthError::Missing)
        );
        assert_eq!(
            authenticate(&verifier, &headers, Some(&token)).unwrap().sub,
            "u1"
        );
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        assert_eq!(
            authenticate(&verifier, &headers, Some("garbage"))
                .unwrap()
                .sub,
            "u1"
        );
        assert_eq!(
            authenticate(&verifier, &HeaderMap::new(), Some("garbage")),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_token_valid_only_later_or_given_twice_is_refused() {
        let verifier = TokenVerifier::new(Some(SECRET), None, None).unwrap();
        let mut later = claims_for("u1", Duration::from_secs(7200));
        later.nbf = Some(later.exp - 3600);
        let token = mint_hs256(SECRET, &later).unwrap();
        assert_eq!(
            authenticate(&verifier, &HeaderMap::new(), Some(&token)),
            Err(AuthError::NotYetValid)
        );
        let good = mint_hs256(SECRET, &claims_for("u1", Duration::from_secs(60))).unwrap();
        let mut headers = HeaderMap::new();
        headers.append(
            header::AUTHORIZATION,
            format!("Bearer {good}").parse().unwrap(),
        );
        headers.append(
            header::AUTHORIZATION,
            format!("Bearer {good}").parse().unwrap(),
        );
        assert_eq!(
            authenticate(&verifier, &headers, None),
            Err(AuthError::Invalid)
        );
    }
}
