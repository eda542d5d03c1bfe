//! Tuning of a consumer group process: the bounds, timeouts and guards it runs with.

use std::time::Duration;

/// Tuning of a consumer group process; the group's own bounds come from `topics.yaml`.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// How long shutdown and revocation wait for in-flight events. Shorter than the session
    /// timeout, so a slow handler never makes the group evict this member.
    pub drain_timeout: Duration,
    pub session_timeout: Duration,
    /// Consecutive dependency failures that open a breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker first waits before one trial; each failed trial makes the next
    /// wait longer, up to `breaker_cool_down`.
    pub breaker_first_cool_down: Duration,
    /// The longest an open breaker waits before one trial.
    pub breaker_cool_down: Duration,
    /// Share of the in-flight slots lower tiers keep (and are held to) while a higher tier has
    /// a backlog: the starvation guard.
    pub low_tier_min_share: f64,
    /// The dead-letter flood guard: over the last `flood_window` outcomes (at least
    /// `flood_min_events`), a dead-letter ratio at or above `flood_max_ratio` stops the group.
    pub flood_window: usize,
    pub flood_min_events: usize,
    pub flood_max_ratio: f64,
    /// Bound on records buffered between the poll thread and the engine.
    pub channel_capacity: usize,
    /// Events received and waiting for a handler slot (ready, or queued behind their key). At
    /// this bound the engine stops taking records from the client, whose bounded prefetch then
    /// stops fetching: memory stays bounded without pausing partitions (a pause makes the
    /// client drop what it prefetched, so the same records would be fetched again).
    pub max_waiting: usize,
    /// Replaces the group's `max_in_flight` from `topics.yaml` (per-process tuning).
    pub max_in_flight: Option<usize>,
    /// Replaces the group's handler `timeout` from `topics.yaml`.
    pub handler_timeout: Option<Duration>,
    /// Transactional groups: how often staged records and offsets commit. Emitted events
    /// become visible to `read_committed` readers at the next commit.
    pub transaction_interval: Duration,
    /// Transactional groups: the producer's `transactional.id`. A stable id per instance (a pod
    /// name) lets a restarted instance fence its predecessor and abort its open transaction at
    /// once; the default (group, host, process) relies on the transaction timeout instead.
    pub transactional_id: Option<String>,
    /// Static membership (Kafka's `group.instance.id`): a stable id per replica, unique in the
    /// group (a pod name). An instance restarted under the same id takes its partitions back at
    /// once instead of waiting for the session timeout to expire its predecessor, and a restart
    /// moves no partition. The other side: a member that stops and does not come back keeps its
    /// partitions unprocessed for the session timeout, also after a clean stop.
    pub instance_id: Option<String>,
    /// How long the trace index keeps what this group reports and how fast it may write
    /// ([`crate::trace`]); a zero window turns the group's reports off. Needs Redis.
    pub trace: crate::trace::TraceSettings,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            drain_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(30),
            breaker_threshold: 5,
            breaker_first_cool_down: Duration::from_secs(1),
            breaker_cool_down: Duration::from_secs(60),
            low_tier_min_share: 0.1,
            flood_window: 200,
            flood_min_events: 50,
            flood_max_ratio: 0.95,
            channel_capacity: 512,
            max_waiting: 4096,
            max_in_flight: None,
            handler_timeout: None,
            transaction_interval: Duration::from_millis(100),
            transactional_id: None,
            instance_id: None,
            trace: crate::trace::TraceSettings::default(),
        }
    }
}
