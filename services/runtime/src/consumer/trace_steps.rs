//! What the engine reports to the trace index ([`crate::trace`]): an event handed to a retry or
//! dead-letter topic, an event handled after a failure or a replay, and the events a handler
//! emitted. First-attempt successes are not reported: the committed offset says it.

use std::time::Duration;

use crate::cloudevents::header;
use crate::consumer::record::Record;
use crate::consumer::retry::{self, NextStop, Origin, RetryState};
use crate::trace::{Location, Step, StepState, TraceIndex};

/// The `ce_id` of a record, if it carries one (the last occurrence, as everywhere else).
fn event_id(message: &Record) -> Option<String> {
    let id = message.headers()?.last(header::ID)??;
    Some(String::from_utf8_lossy(id).into_owned())
}

/// A failed event was handed to `stop`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn handed_on(
    trace: &TraceIndex,
    group: &str,
    message: &Record,
    event_type: &str,
    origin: &Origin,
    stop: &NextStop,
    state: &RetryState,
    (class, error): (&str, &str),
    now_ms: i64,
) {
    if !trace.is_enabled() {
        return;
    }
    let Some(id) = event_id(message) else {
        return;
    };
    let step = match stop {
        NextStop::Retry {
            topic,
            attempt,
            delay,
        } => Step {
            state: StepState::Retrying,
            attempt: *attempt,
            due_ms: Some(now_ms + delay_ms(*delay)),
            topic: Some(topic.clone()),
            error_class: Some(class.to_string()),
            error: Some(error.to_string()),
            at_ms: now_ms,
        },
        NextStop::DeadLetter { topic, .. } => Step {
            state: StepState::DeadLettered,
            attempt: state.attempt.max(1),
            due_ms: None,
            topic: Some(topic.clone()),
            error_class: Some(class.to_string()),
            error: Some(error.to_string()),
            at_ms: now_ms,
        },
    };
    let location = Location {
        event_type: event_type.to_string(),
        topic: origin.topic.clone(),
        partition: origin.partition,
        offset: origin.offset,
    };
    trace.step(&id, group, step, Some(location));
}

fn delay_ms(delay: Duration) -> i64 {
    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)
}

/// An event succeeded; reported only when an earlier attempt failed or it was replayed (a
/// first success is the committed offset passing it).
pub(crate) fn processed(
    trace: &TraceIndex,
    group: &str,
    message: &Record,
    state: &RetryState,
    now_ms: i64,
) {
    if !trace.is_enabled() || (state.attempt <= 1 && retry::replays(message.headers()) == 0) {
        return;
    }
    if let Some(id) = event_id(message) {
        let step = Step {
            state: StepState::Processed,
            attempt: state.attempt.max(1),
            due_ms: None,
            topic: None,
            error_class: None,
            error: None,
            at_ms: now_ms,
        };
        trace.step(&id, group, step, None);
    }
}
