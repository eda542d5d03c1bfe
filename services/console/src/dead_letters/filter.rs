//! Which dead letters a list or a bulk action covers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::index::Summary;
use crate::problem::ApiError;

/// Query of a list or a bulk action; absent fields match everything.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Deserialize,
    Serialize,
    utoipa::ToSchema,
    utoipa::IntoParams,
)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct Filter {
    pub group: Option<String>,
    /// Event type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    pub error_class: Option<String>,
    /// Case-insensitive text searched in the error message and the event id.
    pub text: Option<String>,
    /// RFC 3339 time or epoch ms: dead-lettered at or after.
    pub since: Option<String>,
    /// RFC 3339 time or epoch ms: dead-lettered at or before.
    pub until: Option<String>,
    /// `open` (default), `replayed`, `discarded`, `quarantined`, `edited` or `all`.
    pub state: Option<String>,
}

fn parse_time(field: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .or_else(|| {
                    chrono::DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.timestamp_millis())
                })
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "`{field}` must be an RFC 3339 time or epoch milliseconds"
                    ))
                })
        })
        .transpose()
}

/// A filter checked once, ready to match.
#[derive(Debug, Clone)]
pub struct Compiled {
    filter: Filter,
    since: Option<i64>,
    until: Option<i64>,
    text: Option<String>,
    state: String,
}

const STATES: [&str; 6] = [
    "open",
    "replayed",
    "discarded",
    "quarantined",
    "edited",
    "all",
];

impl Filter {
    pub fn compile(&self) -> Result<Compiled, ApiError> {
        let state = self.state.clone().unwrap_or_else(|| "open".into());
        if !STATES.contains(&state.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "`state` must be one of {}",
                STATES.join(", ")
            )));
        }
        Ok(Compiled {
            since: parse_time("since", &self.since)?,
            until: parse_time("until", &self.until)?,
            text: self
                .text
                .as_ref()
                .filter(|t| !t.is_empty())
                .map(|t| t.to_lowercase()),
            state,
            filter: self.clone(),
        })
    }
}

impl Compiled {
    pub fn group(&self) -> Option<&str> {
        self.filter.group.as_deref().filter(|g| !g.is_empty())
    }

    /// The same filter restricted to open letters (what actions apply to).
    pub fn open_only(mut self) -> Compiled {
        self.state = "open".into();
        self
    }

    pub fn matches(&self, s: &Summary) -> bool {
        let f = &self.filter;
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_deref()
                .filter(|w| !w.is_empty())
                .is_none_or(|w| have.as_deref() == Some(w))
        };
        (self.state == "all" || s.state == self.state)
            && eq(&f.event_type, &s.event_type)
            && eq(&f.error_class, &s.error_class)
            && self
                .since
                .is_none_or(|t| s.dead_lettered_at_ms.is_some_and(|at| at >= t))
            && self
                .until
                .is_none_or(|t| s.dead_lettered_at_ms.is_some_and(|at| at <= t))
            && self.text.as_ref().is_none_or(|needle| {
                s.error
                    .as_deref()
                    .is_some_and(|e| e.to_lowercase().contains(needle))
                    || s.event_id
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase().contains(needle))
            })
    }
}

/// How many letters fail for which reason: by error class, and the most frequent messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Histogram {
    pub by_error_class: BTreeMap<String, u64>,
    pub by_type: BTreeMap<String, u64>,
    /// The ten most frequent error messages (first 120 characters) with their counts.
    pub top_errors: Vec<(String, u64)>,
}

pub fn histogram(letters: &[Summary]) -> Histogram {
    let mut h = Histogram::default();
    let mut messages: BTreeMap<String, u64> = BTreeMap::new();
    for s in letters {
        *h.by_error_class
            .entry(s.error_class.clone().unwrap_or_else(|| "unknown".into()))
            .or_default() += 1;
        *h.by_type
            .entry(s.event_type.clone().unwrap_or_else(|| "unknown".into()))
            .or_default() += 1;
        let message: String = s.error.as_deref().unwrap_or("").chars().take(120).collect();
        *messages.entry(message).or_default() += 1;
    }
    let mut top: Vec<(String, u64)> = messages.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    h.top_errors = top;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, class: &str, error: &str, at: i64, state: &str) -> Summary {
        Summary {
            id: id.into(),
            group: "g".into(),
            partition: 0,
            offset: 0,
            event_id: Some(format!("e-{id}")),
            event_type: Some("payment.initiated".into()),
            reason: Some("exhausted".into()),
            error_class: Some(class.into()),
            error: Some(error.into()),
            attempts: 5,
            replays: 0,
            dead_lettered_at_ms: Some(at),
            origin: None,
            correlation_id: None,
            key: None,
            size_bytes: 10,
            state: state.into(),
        }
    }

    #[test]
    fn filters_match_state_class_text_and_time() {
        let letters = [
            summary("0-1", "permanent", "Wallet not found", 1_000, "open"),
            summary("0-2", "dependency", "connection refused", 2_000, "open"),
            summary("0-3", "permanent", "wallet frozen", 3_000, "replayed"),
        ];
        let pick = |f: Filter| {
            let c = f.compile().unwrap();
            letters
                .iter()
                .filter(|s| c.matches(s))
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(Filter::default()), ["0-1", "0-2"]);
        assert_eq!(
            pick(Filter {
                state: Some("all".into()),
                text: Some("WALLET".into()),
                ..Filter::default()
            }),
            ["0-1", "0-3"]
        );
        assert_eq!(
            pick(Filter {
                error_class: Some("dependency".into()),
                ..Filter::default()
            }),
            ["0-2"]
        );
        assert_eq!(
            pick(Filter {
                since: Some("1500".into()),
                state: Some("all".into()),
                ..Filter::default()
            }),
            ["0-2", "0-3"]
        );
        assert_eq!(
            pick(Filter {
                until: Some("1970-01-01T00:00:01.500Z".into()),
                ..Filter::default()
            }),
            ["0-1"]
        );
        assert!(Filter {
            state: Some("gone".into()),
            ..Filter::default()
        }
        .compile()
        .is_err());
        assert!(Filter {
            since: Some("yesterday".into()),
            ..Filter::default()
        }
        .compile()
        .is_err());
    }

    #[test]
    fn the_histogram_counts_reasons() {
        let letters = [
            summary("0-1", "permanent", "Wallet not found", 1, "open"),
            summary("0-2", "permanent", "Wallet not found", 2, "open"),
            summary("0-3", "dependency", "timeout", 3, "open"),
        ];
        let h = histogram(&letters);
        assert_eq!(h.by_error_class["permanent"], 2);
        assert_eq!(h.top_errors[0], ("Wallet not found".to_string(), 2));
        assert_eq!(h.by_type["payment.initiated"], 3);
    }
}
