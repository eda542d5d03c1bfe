//! Errors as RFC 9457 `application/problem+json`, with a Confluent-style `error_code` and
//! per-event `errors[]`. This is the only place an error becomes a response: internal details are
//! logged here with the request id and never sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem with one event of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventProblem {
    /// Position of the event in the request (0 for a single event).
    pub index: usize,
    /// JSON Pointer into that event, e.g. `/data/amountMinor`.
    pub path: String,
    pub message: String,
}

/// The error body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Confluent REST Proxy style: HTTP status × 100 + a reason number.
    pub error_code: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<EventProblem>,
    /// The request id, to quote when asking about this error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// Everything that can go wrong with a request, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    /// Malformed at named places of the body (a member given twice).
    #[error("{detail}")]
    MalformedAt {
        detail: String,
        errors: Vec<EventProblem>,
    },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Unknown event types, schema violations: the request is understood but not acceptable.
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        error_code: u32,
        errors: Vec<EventProblem>,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    /// A dependency (Kafka, registry, Redis, PostgreSQL) is unavailable or the service is
    /// overloaded; the `internal` text is logged, never returned.
    #[error("{public}")]
    Unavailable {
        public: String,
        error_code: u32,
        retry_after_secs: u64,
        internal: String,
    },
    #[error("internal error")]
    Internal(String),
}

/// Error codes (status × 100 + reason).
pub mod code {
    pub const MALFORMED: u32 = 40001;
    pub const UNAUTHENTICATED: u32 = 40101;
    pub const FORBIDDEN: u32 = 40301;
    pub const NOT_FOUND: u32 = 40401;
    pub const METHOD_NOT_ALLOWED: u32 = 40501;
    pub const REQUEST_TIMEOUT: u32 = 40801;
    pub const TOO_LARGE: u32 = 41301;
    pub const UNSUPPORTED_MEDIA_TYPE: u32 = 41501;
    pub const UNKNOWN_TYPE: u32 = 42201;
    pub const INVALID_ENVELOPE: u32 = 42202;
    pub const IDEMPOTENCY_MISMATCH: u32 = 42203;
    pub const SCHEMA_VIOLATION: u32 = 42206;
    pub const CONFLICT: u32 = 40901;
    pub const RATE_LIMITED: u32 = 42901;
    pub const INTERNAL: u32 = 50001;
    pub const KAFKA_UNAVAILABLE: u32 = 50301;
    pub const REGISTRY_UNAVAILABLE: u32 = 50302;
    pub const REDIS_UNAVAILABLE: u32 = 50303;
    pub const OVERLOADED: u32 = 50304;
    pub const STORAGE_UNAVAILABLE: u32 = 50305;
    pub const DATABASE_UNAVAILABLE: u32 = 50306;
    /// The broker had not acknowledged the events by the ack timeout; they may still be written.
    pub const KAFKA_UNCONFIRMED: u32 = 50307;
}

impl ApiError {
    pub fn unprocessable(
        detail: impl Into<String>,
        error_code: u32,
        errors: Vec<EventProblem>,
    ) -> Self {
        ApiError::Unprocessable {
            detail: detail.into(),
            error_code,
            errors,
        }
    }

    /// What the log should say of this error: the internal cause where there is one (never sent
    /// to the client), the public message otherwise.
    pub fn log_detail(&self) -> String {
        match self {
            ApiError::Unavailable { internal, .. } | ApiError::Internal(internal) => {
                internal.clone()
            }
            other => other.to_string(),
        }
    }

    pub fn unavailable(public: &str, error_code: u32, internal: impl std::fmt::Display) -> Self {
        ApiError::Unavailable {
            public: public.to_string(),
            error_code,
            retry_after_secs: 5,
            internal: internal.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) | ApiError::MalformedAt { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_code(&self) -> u32 {
        match self {
            ApiError::Malformed(_) | ApiError::MalformedAt { .. } => code::MALFORMED,
            ApiError::Unauthenticated(_) => code::UNAUTHENTICATED,
            ApiError::Forbidden(_) => code::FORBIDDEN,
            ApiError::NotFound(_) => code::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => code::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => code::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => code::TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => code::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { error_code, .. } => *error_code,
            ApiError::Conflict(_) => code::CONFLICT,
            ApiError::RateLimited { .. } => code::RATE_LIMITED,
            ApiError::Unavailable { error_code, .. } => *error_code,
            ApiError::Internal(_) => code::INTERNAL,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) | ApiError::MalformedAt { .. } => "Malformed request",
            ApiError::Unauthenticated(_) => "Unauthenticated",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::RequestTimeout(_) => "Request timeout",
            ApiError::TooLarge(_) => "Payload too large",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::Unprocessable { .. } => "Unprocessable event",
            ApiError::Conflict(_) => "Conflict",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::Unavailable { .. } => "Service unavailable",
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// The response, with `instance` set to the request id.
    pub fn into_problem_response(self, request_id: Option<&str>) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Unavailable {
                retry_after_secs,
                internal,
                ..
            } => {
                tracing::warn!(request_id, error = %internal, "dependency unavailable");
                Some(*retry_after_secs)
            }
            ApiError::Internal(internal) => {
                tracing::error!(request_id, error = %internal, "internal error");
                None
            }
            _ => None,
        };
        let challenge = match &self {
            ApiError::Unauthenticated(reason) => Some(bearer_challenge(reason)),
            _ => None,
        };
        let detail = match &self {
            ApiError::Internal(_) => {
                "the request could not be completed; quote the request id".to_string()
            }
            other => other.to_string(),
        };
        let problem = Problem {
            problem_type: format!("https://circulatory.dev/problems/{}", self.error_code()),
            title: self.title().to_string(),
            status: status.as_u16(),
            detail,
            error_code: self.error_code(),
            errors: match self {
                ApiError::Unprocessable { errors, .. } | ApiError::MalformedAt { errors, .. } => {
                    errors
                }
                _ => Vec::new(),
            },
            instance: request_id.map(str::to_string),
        };
        let unattributed = problem
            .instance
            .is_none()
            .then(|| Unattributed(problem.clone()));
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(unattributed) = unattributed {
            response.extensions_mut().insert(unattributed);
        }
        if matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
        ) {
            // The rest of the body may never come (or is not wanted): the connection cannot
            // carry another request, so it is closed once the answer is out.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// A problem rendered without a request id; the correlation middleware adds it (`instance`)
/// on the way out, for errors raised where the id is not at hand (load shedding, fallbacks).
#[derive(Debug, Clone)]
pub struct Unattributed(pub Problem);

/// `WWW-Authenticate` for a 401 (RFC 6750 §3): the scheme, and `invalid_token` when a token was
/// presented but refused.
fn bearer_challenge(reason: &str) -> HeaderValue {
    if reason == circulatory::auth::AuthError::Missing.to_string() {
        return HeaderValue::from_static("Bearer realm=\"circulatory\"");
    }
    let description: String = reason
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect();
    HeaderValue::from_str(&format!(
        "Bearer realm=\"circulatory\", error=\"invalid_token\", error_description=\"{description}\""
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static("Bearer realm=\"circulatory\", error=\"invalid_token\"")
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The request id is attached by the correlation middleware, which fills `instance` in
        // for responses that lack it ([`Unattributed`]).
        self.into_problem_response(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_gets_the_internal_cause_and_the_client_does_not() {
        let error = ApiError::unavailable(
            "the event log is unavailable; retry later",
            code::KAFKA_UNAVAILABLE,
            "kafka: Message production error: UnknownTopic",
        );
        assert_eq!(
            error.log_detail(),
            "kafka: Message production error: UnknownTopic"
        );
        assert_eq!(
            error.to_string(),
            "the event log is unavailable; retry later"
        );
        let internal = ApiError::Internal("registry answered 500".into());
        assert_eq!(internal.log_detail(), "registry answered 500");
        assert_eq!(internal.to_string(), "internal error");
        let malformed = ApiError::Malformed("the body is empty".into());
        assert_eq!(malformed.log_detail(), malformed.to_string());
    }
}
