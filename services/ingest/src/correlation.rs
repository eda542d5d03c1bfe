//! Correlation: every request gets an `X-Request-ID` (generated) and an `X-Correlation-ID`
//! (the client's, validated, or generated), both echoed on the response and carried into Kafka
//! headers; a valid W3C `traceparent` is kept, otherwise a new trace is started.

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use circulatory::cloudevents::is_valid_traceparent;

use crate::problem::{ApiError, Unattributed};

pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest correlation id accepted.
pub const MAX_CORRELATION_ID_LEN: usize = 128;

/// The ids of one request, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct Correlation {
    pub request_id: String,
    pub correlation_id: String,
    pub traceparent: String,
    pub tracestate: Option<String>,
}

/// Letters, digits and `-_.:`, 1 to 128 characters: safe in logs, headers and Kafka headers.
pub fn is_valid_correlation_id(value: &str) -> bool {
    (1..=MAX_CORRELATION_ID_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// Headers that must appear at most once: given twice, one hop could read the first and
/// another the last, so the request is refused rather than guessed at.
const SINGLETON_HEADERS: [HeaderName; 7] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::HOST,
    CORRELATION_ID,
    TRACEPARENT,
    HeaderName::from_static("idempotency-key"),
];

fn refuse_repeated_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    for name in &SINGLETON_HEADERS {
        let mut values = headers.get_all(name).iter();
        if values.next().is_some() && values.next().is_some() {
            return Err(ApiError::Malformed(format!(
                "the {name} header appears more than once; send it once"
            )));
        }
    }
    Ok(())
}

fn correlation_from(headers: &HeaderMap, request_id: &str) -> Result<Correlation, ApiError> {
    refuse_repeated_headers(headers)?;
    let correlation_id = match headers.get(&CORRELATION_ID) {
        None => uuid::Uuid::new_v4().to_string(),
        Some(value) => match value.to_str() {
            Ok(text) if is_valid_correlation_id(text) => text.to_string(),
            _ => {
                return Err(ApiError::Malformed(format!(
                    "X-Correlation-ID must be 1 to {MAX_CORRELATION_ID_LEN} letters, digits, '-', '_', '.' or ':'"
                )))
            }
        },
    };
    let traceparent = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_traceparent(v))
        .map(str::to_string);
    let tracestate = traceparent.as_ref().and_then(|_| {
        headers
            .get(&TRACESTATE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 512)
            .map(str::to_string)
    });
    Ok(Correlation {
        request_id: request_id.to_string(),
        correlation_id,
        traceparent: traceparent.unwrap_or_else(new_traceparent),
        tracestate,
    })
}

/// Middleware: assigns the ids, rejects a bad correlation id with 400, echoes both ids, and puts
/// the request id into problem bodies that lack one.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::now_v7().to_string();
    let checked =
        refuse_hostless(&request).and_then(|()| correlation_from(request.headers(), &request_id));
    let mut response = match checked {
        Ok(correlation) => {
            let span = tracing::info_span!(
                "request",
                request_id = %correlation.request_id,
                correlation_id = %correlation.correlation_id,
                method = %request.method(),
                path = %request.uri().path(),
            );
            let echo = correlation.correlation_id.clone();
            request.extensions_mut().insert(correlation);
            let mut response = tracing::Instrument::instrument(next.run(request), span).await;
            if let Ok(value) = HeaderValue::from_str(&echo) {
                response.headers_mut().insert(CORRELATION_ID, value);
            }
            response
        }
        Err(error) => error.into_problem_response(Some(&request_id)),
    };
    attribute(&mut response, &request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Fills the request id into a problem rendered without one.
fn attribute(response: &mut Response, request_id: &str) {
    if let Some(Unattributed(mut problem)) = response.extensions_mut().remove::<Unattributed>() {
        problem.instance = Some(request_id.to_string());
        if let Ok(body) = serde_json::to_vec(&problem) {
            response.headers_mut().remove(header::CONTENT_LENGTH);
            *response.body_mut() = axum::body::Body::from(body);
        }
    }
}

/// An HTTP/1.1 request read from a socket must name its host (RFC 9112 §3.2). Requests built
/// in-process (tests) carry no peer address and are not held to it.
fn refuse_hostless(request: &Request) -> Result<(), ApiError> {
    let from_socket = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .is_some();
    if from_socket
        && request.version() == axum::http::Version::HTTP_11
        && !request.headers().contains_key(header::HOST)
    {
        return Err(ApiError::Malformed(
            "an HTTP/1.1 request must carry a Host header".into(),
        ));
    }
    Ok(())
}

/// A handler's result as a response; errors become problems carrying the request id.
pub fn respond<T: IntoResponse>(
    result: Result<T, ApiError>,
    correlation: &Correlation,
) -> Response {
    match result {
        Ok(ok) => ok.into_response(),
        Err(error) => error.into_problem_response(Some(&correlation.request_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_bounded_and_plain() {
        assert!(is_valid_correlation_id("corr_9f7c2e1a"));
        assert!(is_valid_correlation_id("a:b.c-d_e"));
        assert!(!is_valid_correlation_id(""));
        assert!(!is_valid_correlation_id("has space"));
        assert!(!is_valid_correlation_id("new\nline"));
        assert!(!is_valid_correlation_id(&"x".repeat(129)));
    }

    #[test]
    fn a_singleton_header_given_twice_is_refused() {
        let mut headers = HeaderMap::new();
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert!(correlation_from(&headers, "r").is_ok());
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert!(matches!(
            correlation_from(&headers, "r"),
            Err(ApiError::Malformed(m)) if m.contains("authorization")
        ));
        let mut headers = HeaderMap::new();
        headers.append("tracestate", HeaderValue::from_static("a=1"));
        headers.append("tracestate", HeaderValue::from_static("b=2"));
        assert!(
            correlation_from(&headers, "r").is_ok(),
            "tracestate may be split"
        );
    }

    #[test]
    fn a_missing_or_invalid_traceparent_starts_a_new_trace() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        let c = correlation_from(&headers, "r").unwrap();
        assert!(is_valid_traceparent(&c.traceparent));
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert(TRACEPARENT, HeaderValue::from_static(given));
        assert_eq!(correlation_from(&headers, "r").unwrap().traceparent, given);
    }
}
