//! Errors as RFC 9457 `application/problem+json`. Internal details are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem at one place of a submitted payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// JSON Pointer into the payload, e.g. `/amountMinor`.
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

/// What can go wrong with a console request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The action conflicts with the item's state (a quarantined letter, a stale dry run).
    #[error("{0}")]
    Conflict(String),
    #[error("{detail}")]
    Invalid {
        detail: String,
        errors: Vec<FieldProblem>,
    },
    #[error("{0}")]
    TooManyRequests(String),
    /// A dependency (Kafka, PostgreSQL, Redis, the registry) failed; the cause is logged.
    #[error("{what} is unavailable")]
    Unavailable { what: &'static str, cause: String },
}

impl ApiError {
    pub fn unavailable(what: &'static str, cause: impl std::fmt::Display) -> ApiError {
        ApiError::Unavailable {
            what,
            cause: cause.to_string(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Unavailable { what, cause } = &self {
            tracing::warn!(dependency = what, error = %cause, "console request failed");
        }
        let errors = match &self {
            ApiError::Invalid { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        let body = Problem {
            problem_type: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
