//! A group's health, judged from Kafka's view (lag, offsets, members) cross-checked against the
//! instances' own heartbeats, over a sliding window of samples as Burrow does. Pure: time comes
//! in with the samples.
//!
//! In order of precedence:
//! - `stopped`: the flood guard stopped the group (a stop record is present);
//! - `paused`: an operator paused it;
//! - `no_members`: records wait and no consumer is in the group;
//! - `no_heartbeat`: a member is in Kafka's group but no instance reports for it (a hung
//!   process, or one that cannot reach Redis);
//! - `stalled`: over the whole window records waited, the committed offsets did not move and the
//!   lag did not fall;
//! - `lagging`: the lag grew over the whole window;
//! - `idle`: nothing waits and nobody consumes;
//! - `ok`.

use std::collections::VecDeque;

use serde::Serialize;

/// How long a trend must hold before it counts.
pub const WINDOW_MS: i64 = 60_000;
/// Samples kept per group (older ones leave first).
const MAX_SAMPLES: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Idle,
    Lagging,
    Stalled,
    NoMembers,
    NoHeartbeat,
    Stopped,
    Paused,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::Idle,
        Status::Lagging,
        Status::Stalled,
        Status::NoMembers,
        Status::NoHeartbeat,
        Status::Stopped,
        Status::Paused,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Idle => "idle",
            Status::Lagging => "lagging",
            Status::Stalled => "stalled",
            Status::NoMembers => "no_members",
            Status::NoHeartbeat => "no_heartbeat",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        }
    }
}

/// The judgement and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verdict {
    pub status: Status,
    pub reasons: Vec<String>,
}

/// One observation of a group's main topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: i64,
    pub lag: i64,
    /// Sum of the next offsets over the main topics' partitions: it moves when the group commits.
    pub position: i64,
}

/// A group's recent samples.
#[derive(Debug, Default, Clone)]
pub struct Window {
    samples: VecDeque<Sample>,
}

impl Window {
    pub fn push(&mut self, sample: Sample) {
        self.samples.push_back(sample);
        while self.samples.len() > MAX_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|s| sample.at_ms - s.at_ms > 5 * WINDOW_MS)
        {
            self.samples.pop_front();
        }
    }

    /// The samples of the last `WINDOW_MS`, when they span the whole of it.
    fn span(&self) -> Option<impl Iterator<Item = &Sample>> {
        let last = self.samples.back()?;
        let first_in = self
            .samples
            .iter()
            .rposition(|s| last.at_ms - s.at_ms >= WINDOW_MS)?;
        Some(self.samples.iter().skip(first_in))
    }
}

/// What the judgement looks at besides the window.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub lag: i64,
    pub members: usize,
    /// Members Kafka lists that no heartbeat accounts for (their member or client ids).
    pub silent_members: Vec<String>,
    pub stopped: Option<String>,
    pub paused_by: Option<String>,
}

pub fn judge(facts: &Facts, window: &Window) -> Verdict {
    let verdict = |status, reason: String| Verdict {
        status,
        reasons: vec![reason],
    };
    if let Some(reason) = &facts.stopped {
        return verdict(
            Status::Stopped,
            format!("flood guard stopped the group: {reason}"),
        );
    }
    if let Some(by) = &facts.paused_by {
        return verdict(Status::Paused, format!("paused by {by}"));
    }
    if facts.lag > 0 && facts.members == 0 {
        return verdict(
            Status::NoMembers,
            format!("lag and no members: {} records wait", facts.lag),
        );
    }
    if !facts.silent_members.is_empty() {
        return verdict(
            Status::NoHeartbeat,
            format!(
                "member in Kafka but no heartbeat: {}",
                facts.silent_members.join(", ")
            ),
        );
    }
    if let Some(span) = window.span() {
        let span: Vec<&Sample> = span.collect();
        let (first, last) = (span[0], span[span.len() - 1]);
        let seconds = (last.at_ms - first.at_ms) / 1000;
        if span.iter().all(|s| s.lag > 0)
            && first.position == last.position
            && last.lag >= first.lag
        {
            return verdict(
                Status::Stalled,
                format!(
                    "stalled: lag not falling and offsets not moving for {seconds} s ({} records wait)",
                    last.lag
                ),
            );
        }
        if span.windows(2).all(|w| w[1].lag >= w[0].lag) && last.lag > first.lag {
            return verdict(
                Status::Lagging,
                format!("lag growing: {} → {} in {seconds} s", first.lag, last.lag),
            );
        }
    }
    if facts.lag == 0 && facts.members == 0 {
        return verdict(Status::Idle, "nothing waits and no consumer runs".into());
    }
    Verdict {
        status: Status::Ok,
        reasons: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(points: &[(i64, i64, i64)]) -> Window {
        let mut w = Window::default();
        for (at_s, lag, position) in points {
            w.push(Sample {
                at_ms: at_s * 1000,
                lag: *lag,
                position: *position,
            });
        }
        w
    }

    fn running(lag: i64) -> Facts {
        Facts {
            lag,
            members: 2,
            ..Facts::default()
        }
    }

    #[test]
    fn a_group_keeping_up_is_ok_and_an_empty_one_idle() {
        let w = window(&[(0, 5, 100), (30, 2, 140), (60, 3, 190)]);
        assert_eq!(judge(&running(3), &w).status, Status::Ok);
        let idle = Facts::default();
        assert_eq!(judge(&idle, &Window::default()).status, Status::Idle);
    }

    #[test]
    fn lag_without_members_is_named() {
        let v = judge(
            &Facts {
                lag: 7,
                ..Facts::default()
            },
            &Window::default(),
        );
        assert_eq!(v.status, Status::NoMembers);
        assert!(v.reasons[0].contains("lag and no members"));
    }

    #[test]
    fn a_member_without_heartbeat_is_named() {
        let facts = Facts {
            silent_members: vec!["payments-1".into()],
            ..running(0)
        };
        let v = judge(&facts, &Window::default());
        assert_eq!(v.status, Status::NoHeartbeat);
        assert!(v.reasons[0].contains("payments-1"));
    }

    #[test]
    fn offsets_not_moving_under_lag_is_a_stall_once_the_window_is_full() {
        let short = window(&[(0, 10, 100), (30, 10, 100)]);
        assert_eq!(judge(&running(10), &short).status, Status::Ok);
        let full = window(&[(0, 10, 100), (30, 12, 100), (61, 12, 100)]);
        let v = judge(&running(12), &full);
        assert_eq!(v.status, Status::Stalled);
        assert!(v.reasons[0].contains("offsets not moving"));
        // Offsets moved: not a stall, though the lag grows.
        let moving = window(&[(0, 10, 100), (30, 12, 150), (61, 14, 200)]);
        assert_eq!(judge(&running(14), &moving).status, Status::Lagging);
    }

    #[test]
    fn lag_falling_at_any_point_is_not_growth() {
        let w = window(&[(0, 10, 100), (30, 8, 150), (61, 14, 200)]);
        assert_eq!(judge(&running(14), &w).status, Status::Ok);
    }

    #[test]
    fn stop_and_pause_take_precedence() {
        let facts = Facts {
            stopped: Some("dead-letter flood".into()),
            paused_by: Some("ops".into()),
            ..Facts::default()
        };
        assert_eq!(judge(&facts, &Window::default()).status, Status::Stopped);
        let paused = Facts {
            paused_by: Some("ops".into()),
            lag: 5,
            ..Facts::default()
        };
        assert_eq!(judge(&paused, &Window::default()).status, Status::Paused);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut w = Window::default();
        for s in 0..1000 {
            w.push(Sample {
                at_ms: s * 1000,
                lag: 0,
                position: 0,
            });
        }
        assert!(w.samples.len() <= MAX_SAMPLES);
        assert!(w.samples.front().unwrap().at_ms >= (999 - 300) * 1000);
    }
}
