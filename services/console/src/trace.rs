//! Tracing an event: where it is and, for every group subscribed to its type, what became of it.
//! No topic is scanned; each answer is derived from what is already kept:
//!
//! - **where**: the trace index (`circ:<ns>:trace:event:<id>`), written when the broker
//!   acknowledged the event (the ingest, or the group that emitted it), or, for an event another
//!   producer wrote, when a group first handed it to a retry or dead-letter topic;
//! - **retrying / dead-lettered / processed after a failure or replay**: the last step the group
//!   reported to the index (attempt, due time, topic, error);
//! - **dead letter decisions** (replayed, discarded, quarantined, edited): the console's
//!   dead-letter index, matched by event id;
//! - **processed** at the first attempt: the group's committed offset on the event's partition
//!   (Kafka's, from the console's last refresh, at most a couple of seconds old) is past the
//!   event's offset; **waiting** otherwise, with the number of records ahead of it;
//! - **caused**: the events emitted while handling it, reported by the emitting group.

use serde::Serialize;

use circulatory::trace::{Step, StepState, Traced};

use crate::dead_letters::index::Summary;

/// What one group did with the event.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupTrace {
    pub group: String,
    /// `processed`, `waiting`, `retrying`, `dead_lettered`, `replaying` (replayed from the dead
    /// letters, not run yet), `discarded`, `quarantined`, or `unknown` (not located).
    pub status: String,
    /// How the status was derived: `committed_offset` or `reported`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// When the next attempt is due, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at_ms: Option<i64>,
    /// The retry or dead-letter topic holding it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the group reported its last step, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_at_ms: Option<i64>,
    /// The group's committed offset on the event's partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed: Option<i64>,
    /// Records of the partition still ahead of it (waiting only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead: Option<i64>,
    /// The dead letter's id in the group's dead-letter list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
}

impl GroupTrace {
    fn new(group: &str, status: &str, source: &str) -> GroupTrace {
        GroupTrace {
            group: group.to_string(),
            status: status.to_string(),
            source: source.to_string(),
            attempt: None,
            due_at_ms: None,
            topic: None,
            error_class: None,
            error: None,
            reported_at_ms: None,
            committed: None,
            ahead: None,
            dead_letter: None,
        }
    }

    fn from_step(group: &str, status: &str, step: &Step) -> GroupTrace {
        GroupTrace {
            attempt: Some(step.attempt),
            due_at_ms: step.due_ms,
            topic: step.topic.clone(),
            error_class: step.error_class.clone(),
            error: step.error.clone(),
            reported_at_ms: Some(step.at_ms),
            ..GroupTrace::new(group, status, "reported")
        }
    }
}

/// What one group did with `traced`: its last reported step, else its committed offset
/// (`committed`, on the event's partition) against the event's offset. `letter` is the group's
/// dead letter for the event, if the dead-letter index holds one.
pub fn status_in(
    group: &str,
    traced: &Traced,
    committed: Option<i64>,
    letter: Option<&Summary>,
) -> GroupTrace {
    if let Some(step) = traced.steps.get(group) {
        let status = match step.state {
            StepState::Retrying => "retrying",
            StepState::Processed => "processed",
            StepState::DeadLettered => match letter.map(|l| l.state.as_str()) {
                Some("replayed") | Some("edited") => "replaying",
                Some("discarded") => "discarded",
                Some("quarantined") => "quarantined",
                _ => "dead_lettered",
            },
        };
        let mut out = GroupTrace::from_step(group, status, step);
        out.committed = committed;
        if step.state == StepState::DeadLettered {
            out.dead_letter = letter.map(|l| l.id.clone());
        }
        return out;
    }
    let Some(offset) = traced.offset else {
        return GroupTrace::new(group, "unknown", "reported");
    };
    let mut out = match committed {
        // The committed offset is the next record to read: past the event means handled.
        Some(position) if position > offset => {
            GroupTrace::new(group, "processed", "committed_offset")
        }
        Some(position) => GroupTrace {
            ahead: Some(offset - position),
            ..GroupTrace::new(group, "waiting", "committed_offset")
        },
        None => GroupTrace::new(group, "waiting", "committed_offset"),
    };
    out.committed = committed;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traced(offset: Option<i64>) -> Traced {
        Traced {
            id: "e".into(),
            offset,
            partition: Some(0),
            topic: Some("content.normal".into()),
            ..Traced::default()
        }
    }

    fn step(state: StepState) -> Step {
        Step {
            state,
            attempt: 3,
            due_ms: Some(9),
            topic: Some("g.retry.4s".into()),
            error_class: Some("retryable".into()),
            error: Some("boom".into()),
            at_ms: 5,
        }
    }

    fn letter(state: &str) -> Summary {
        Summary {
            id: "0-4".into(),
            group: "g".into(),
            partition: 0,
            offset: 4,
            event_id: Some("e".into()),
            event_type: None,
            reason: None,
            error_class: None,
            error: None,
            attempts: 1,
            replays: 0,
            dead_lettered_at_ms: None,
            origin: None,
            correlation_id: None,
            key: None,
            size_bytes: 0,
            state: state.into(),
        }
    }

    #[test]
    fn committed_past_the_offset_is_processed_at_or_before_it_is_waiting() {
        let t = traced(Some(10));
        assert_eq!(status_in("g", &t, Some(11), None).status, "processed");
        let waiting = status_in("g", &t, Some(10), None);
        assert_eq!(
            (waiting.status.as_str(), waiting.ahead),
            ("waiting", Some(0))
        );
        let behind = status_in("g", &t, Some(4), None);
        assert_eq!(behind.ahead, Some(6));
        assert_eq!(status_in("g", &t, None, None).status, "waiting");
    }

    #[test]
    fn a_reported_step_wins_over_the_committed_offset() {
        let mut t = traced(Some(10));
        t.steps.insert("g".into(), step(StepState::Retrying));
        let out = status_in("g", &t, Some(11), None);
        assert_eq!(out.status, "retrying");
        assert_eq!((out.attempt, out.due_at_ms), (Some(3), Some(9)));
        assert_eq!(out.source, "reported");
        // Another group is not affected by g's step.
        assert_eq!(status_in("h", &t, Some(11), None).status, "processed");
    }

    #[test]
    fn dead_letter_decisions_refine_a_dead_lettered_step() {
        let mut t = traced(Some(10));
        t.steps.insert("g".into(), step(StepState::DeadLettered));
        assert_eq!(status_in("g", &t, Some(11), None).status, "dead_lettered");
        let open = status_in("g", &t, Some(11), Some(&letter("open")));
        assert_eq!(
            (open.status.as_str(), open.dead_letter.as_deref()),
            ("dead_lettered", Some("0-4"))
        );
        for (state, status) in [
            ("replayed", "replaying"),
            ("edited", "replaying"),
            ("discarded", "discarded"),
            ("quarantined", "quarantined"),
        ] {
            assert_eq!(
                status_in("g", &t, Some(11), Some(&letter(state))).status,
                status
            );
        }
        t.steps.insert("g".into(), step(StepState::Processed));
        assert_eq!(
            status_in("g", &t, Some(11), Some(&letter("replayed"))).status,
            "processed"
        );
    }

    #[test]
    fn an_event_without_a_location_is_unknown() {
        assert_eq!(
            status_in("g", &traced(None), Some(3), None).status,
            "unknown"
        );
    }
}
