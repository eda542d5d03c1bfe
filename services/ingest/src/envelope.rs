//! Reading a request body into events: the plain envelope `{type, data, id?, subject?, time?}`,
//! CloudEvents structured mode (`application/cloudevents+json`), and batches of either.
//! Pure functions, unit-tested without a server.

use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::problem::{code, ApiError, EventProblem};

/// What the `Content-Type` header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`: one plain envelope, or an array of them.
    Json,
    /// `application/cloudevents+json`: one structured CloudEvent.
    CloudEvent,
    /// `application/cloudevents-batch+json`: an array of structured CloudEvents.
    CloudEventBatch,
}

/// The media type of the request (parameters such as `charset=utf-8` allowed), or 415.
pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/cloudevents+json" => Ok(BodyKind::CloudEvent),
        "application/cloudevents-batch+json" => Ok(BodyKind::CloudEventBatch),
        "" => Err(ApiError::UnsupportedMediaType(
            "Content-Type is required: application/json, application/cloudevents+json or application/cloudevents-batch+json".into(),
        )),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "`{other}` is not accepted: use application/json, application/cloudevents+json or application/cloudevents-batch+json"
        ))),
    }
}

/// One event as the client described it, before schema validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub event_type: String,
    pub data: Value,
    pub id: Option<String>,
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    /// CloudEvents `source` (structured mode only).
    pub source: Option<String>,
    /// CloudEvents `traceparent` extension, if the event carries its own.
    pub traceparent: Option<String>,
}

/// The body's events, and whether it was a batch.
pub fn split(kind: BodyKind, body: Value) -> Result<(Vec<Value>, bool), ApiError> {
    match (kind, body) {
        (BodyKind::Json, Value::Object(o)) => Ok((vec![Value::Object(o)], false)),
        (BodyKind::Json | BodyKind::CloudEventBatch, Value::Array(items)) => Ok((items, true)),
        (BodyKind::CloudEvent, Value::Object(o)) => Ok((vec![Value::Object(o)], false)),
        (BodyKind::CloudEvent, _) => Err(ApiError::Malformed(
            "a structured CloudEvent is a JSON object".into(),
        )),
        (BodyKind::CloudEventBatch, _) => Err(ApiError::Malformed(
            "a CloudEvents batch is a JSON array".into(),
        )),
        (BodyKind::Json, _) => Err(ApiError::Malformed(
            "the body is an event object or an array of events".into(),
        )),
    }
}

fn problem(index: usize, path: &str, message: impl Into<String>) -> EventProblem {
    EventProblem {
        index,
        path: path.to_string(),
        message: message.into(),
    }
}

/// Reads one event of the body; `structured` selects the CloudEvents form.
pub fn parse(index: usize, item: Value, structured: bool) -> Result<Envelope, Vec<EventProblem>> {
    let Value::Object(mut fields) = item else {
        return Err(vec![problem(index, "", "an event is a JSON object")]);
    };
    let mut problems = Vec::new();
    let mut take_string =
        |fields: &mut Map<String, Value>, name: &str, required: bool| -> Option<String> {
            match fields.remove(name) {
                Some(Value::String(s)) if !s.is_empty() => Some(s),
                Some(Value::Null) | None if !required => None,
                None | Some(Value::Null) => {
                    problems.push(problem(
                        index,
                        &format!("/{name}"),
                        "missing required attribute",
                    ));
                    None
                }
                Some(_) => {
                    problems.push(problem(
                        index,
                        &format!("/{name}"),
                        "must be a non-empty string",
                    ));
                    None
                }
            }
        };
    let (event_type, id, subject, time_text, source, traceparent) = if structured {
        let spec = take_string(&mut fields, "specversion", true);
        let id = take_string(&mut fields, "id", true);
        let source = take_string(&mut fields, "source", true);
        let event_type = take_string(&mut fields, "type", true);
        let subject = take_string(&mut fields, "subject", false);
        let time = take_string(&mut fields, "time", false);
        let content_type = take_string(&mut fields, "datacontenttype", false);
        let traceparent = take_string(&mut fields, "traceparent", false);
        fields.remove("dataschema");
        fields.remove("tracestate");
        if traceparent
            .as_deref()
            .is_some_and(|t| !circulatory::cloudevents::is_valid_traceparent(t))
        {
            problems.push(problem(
                index,
                "/traceparent",
                "must be a W3C traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>",
            ));
        }
        if spec.as_deref().is_some_and(|s| s != "1.0") {
            problems.push(problem(
                index,
                "/specversion",
                "only CloudEvents 1.0 is accepted",
            ));
        }
        if let Some(ct) = content_type {
            let media = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if media != "application/json" {
                problems.push(problem(
                    index,
                    "/datacontenttype",
                    "`data` must be application/json",
                ));
            }
        }
        if fields.contains_key("data_base64") {
            fields.remove("data_base64");
            problems.push(problem(
                index,
                "/data_base64",
                "binary data is not accepted; send `data` as JSON",
            ));
        }
        (event_type, id, subject, time, source, traceparent)
    } else {
        let event_type = take_string(&mut fields, "type", true);
        let id = take_string(&mut fields, "id", false);
        let subject = take_string(&mut fields, "subject", false);
        let time = take_string(&mut fields, "time", false);
        (event_type, id, subject, time, None, None)
    };
    let data = fields.remove("data");
    if data.is_none() {
        problems.push(problem(index, "/data", "missing required attribute"));
    }
    for unknown in fields.keys() {
        problems.push(problem(index, &format!("/{unknown}"), "unknown attribute"));
    }
    let time = time_text.and_then(|text| match DateTime::parse_from_rfc3339(&text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            problems.push(problem(index, "/time", "must be an RFC 3339 time"));
            None
        }
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Envelope {
        event_type: event_type.unwrap_or_default(),
        data: data.unwrap_or(Value::Null),
        id,
        subject,
        time,
        source,
        traceparent,
    })
}

/// 422 for envelope problems.
pub fn envelope_error(problems: Vec<EventProblem>) -> ApiError {
    ApiError::unprocessable(
        "the request has events that are not valid envelopes",
        code::INVALID_ENVELOPE,
        problems,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    #[test]
    fn media_types() {
        let mut headers = HeaderMap::new();
        assert!(matches!(
            body_kind(&headers),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(body_kind(&headers).unwrap(), BodyKind::Json);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(body_kind(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents-batch+json"),
        );
        assert_eq!(body_kind(&headers).unwrap(), BodyKind::CloudEventBatch);
    }

    #[test]
    fn a_plain_envelope() {
        let envelope = parse(
            0,
            json!({"type": "post.created", "data": {"a": 1}, "id": "e1", "time": "2026-11-27T10:00:00Z"}),
            false,
        )
        .unwrap();
        assert_eq!(envelope.event_type, "post.created");
        assert_eq!(envelope.id.as_deref(), Some("e1"));
        assert!(envelope.time.is_some());
    }

    #[test]
    fn envelope_problems_are_all_listed() {
        let problems = parse(
            3,
            json!({"type": 5, "extra": true, "time": "yesterday"}),
            false,
        )
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["/type", "/data", "/extra", "/time"]);
        assert!(problems.iter().all(|p| p.index == 3));
    }

    #[test]
    fn a_structured_cloudevent() {
        let envelope = parse(
            0,
            json!({"specversion": "1.0", "id": "x", "source": "/app", "type": "like.added",
                   "datacontenttype": "application/json", "data": {}}),
            true,
        )
        .unwrap();
        assert_eq!(envelope.source.as_deref(), Some("/app"));
        let problems = parse(
            0,
            json!({"specversion": "0.3", "type": "t", "data_base64": "AA=="}),
            true,
        )
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(
            paths.contains(&"/specversion")
                && paths.contains(&"/id")
                && paths.contains(&"/data_base64")
        );
    }

    #[test]
    fn a_structured_traceparent_must_be_w3c() {
        let event = |traceparent: &str| {
            json!({"specversion": "1.0", "id": "x", "source": "/app", "type": "like.added",
                   "traceparent": traceparent, "data": {}})
        };
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse(0, event(valid), true).unwrap().traceparent.as_deref(),
            Some(valid)
        );
        let huge = format!("00-{}-00f067aa0ba902b7-01", "a".repeat(100_000));
        for bad in [
            "garbage",
            "00-zz-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
            &huge,
        ] {
            let problems = parse(0, event(bad), true).unwrap_err();
            assert_eq!(
                problems[0].path,
                "/traceparent",
                "{}",
                &bad[..bad.len().min(40)]
            );
        }
    }

    #[test]
    fn shapes() {
        assert!(split(BodyKind::Json, json!([{}, {}])).unwrap().1);
        assert!(!split(BodyKind::Json, json!({})).unwrap().1);
        assert!(split(BodyKind::Json, json!("x")).is_err());
        assert!(split(BodyKind::CloudEvent, json!([])).is_err());
        assert!(split(BodyKind::CloudEventBatch, json!({})).is_err());
    }
}
