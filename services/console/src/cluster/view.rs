//! The view every page, API route and metric reads, assembled from one refresh.

use std::collections::{BTreeMap, HashMap};

use circulatory::catalog::Catalog;
use circulatory::consumer::durations::DurationHistogram;
use circulatory::consumer::lag::TopicRole;
use serde::Serialize;

use super::members::{match_instances, Member};
use super::reports::{ChannelCounts, Control, Counts, GroupReports, Heartbeat, Stopped};
use super::KafkaSnapshot;
use crate::dead_letters::index::DlqFigures;
use crate::verdict::{judge, Facts, Sample, Verdict, Window};

/// One partition a group reads.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionView {
    pub topic: String,
    /// `main`, `retry` or `replay`.
    pub role: String,
    pub partition: i32,
    /// `None` when the group never committed here.
    pub committed: Option<i64>,
    pub start: i64,
    pub end: i64,
    pub lag: i64,
    /// Age of the oldest record waiting (main topics), in seconds.
    pub time_lag_seconds: Option<f64>,
    /// Why the owning instance paused it (empty when it runs).
    pub paused: Vec<String>,
    /// The member that owns it: instance id, else client id.
    pub owner: Option<String>,
}

/// A paused partition, for the overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PausedPartition {
    pub partition: String,
    pub reasons: Vec<String>,
    pub instance: String,
}

/// One consumer group: the seed's figures, Kafka's view and the instances' reports.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub group: String,
    /// The consumer group id on the cluster.
    pub group_id: String,
    pub description: String,
    pub subscribe: Vec<String>,
    /// Handler calls running now (sum over instances).
    pub active: u64,
    /// Records waiting on the main topics (end offset − committed offset, from Kafka).
    pub waiting: i64,
    /// Records waiting in the retry topics.
    pub delayed: i64,
    /// Replays not run yet.
    pub replaying: i64,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    /// Mean duration of a successful handler call, in ms.
    pub avg_duration: f64,
    /// Median and 99th percentile of successful handler calls since the counters started, ms,
    /// estimated from fixed buckets; null before the first. Per minute: the history.
    pub duration_p50_ms: Option<f64>,
    pub duration_p99_ms: Option<f64>,
    /// Successful handler calls by duration, since the start.
    #[serde(skip)]
    pub durations: DurationHistogram,
    /// Percent of finished attempts that succeeded.
    pub success_rate: f64,
    pub dlq: DlqFigures,
    /// Age of the oldest record waiting on a main topic, in seconds (0 when none waits).
    pub time_lag_seconds: f64,
    /// Kafka's group state.
    pub state: String,
    pub members: Vec<Member>,
    pub instances: Vec<Heartbeat>,
    /// Dependency → worst state over the instances.
    pub breakers: BTreeMap<String, String>,
    pub paused_partitions: Vec<PausedPartition>,
    pub control: Option<Control>,
    pub stopped: Option<Stopped>,
    pub health: Verdict,
    /// Per partition (the group's page; left out of the overview).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionView>,
}

/// One event type's figures (the seed's `/events` shape).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    #[serde(rename = "type")]
    pub event_type: String,
    pub domain: String,
    pub topic: Option<String>,
    /// Groups subscribed to it.
    pub groups: Vec<String>,
    pub published: u64,
    /// Publisher (`ingest` or a group) → events written.
    pub published_by: BTreeMap<String, u64>,
    /// Handled successfully (summed over the subscribed groups).
    pub processed: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    pub avg_duration: f64,
    pub duration_p50_ms: Option<f64>,
    pub duration_p99_ms: Option<f64>,
    #[serde(skip)]
    pub durations: DurationHistogram,
    pub success_rate: f64,
}

/// One channel template's figures (the seed's `/realtime` shape).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub channel: String,
    pub scope: String,
    pub subscribers: i64,
    pub messages: u64,
    /// Publish → written to the client, in ms.
    pub avg_latency: f64,
    pub received: u64,
    pub dropped: u64,
}

/// A topic as the cluster has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TopicState {
    pub partitions: i32,
    pub replicas: usize,
}

/// Everything from one refresh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub taken_at_ms: i64,
    /// How long the refresh took.
    pub refresh_ms: u64,
    /// What could not be read (the figures from it are missing, not zero).
    pub errors: Vec<String>,
    pub groups: Vec<GroupView>,
    pub events: Vec<EventView>,
    pub channels: Vec<ChannelView>,
    pub topics: BTreeMap<String, TopicState>,
}

impl ClusterView {
    pub fn group(&self, name: &str) -> Option<&GroupView> {
        self.groups.iter().find(|g| g.group == name)
    }
}

pub struct Inputs<'a> {
    pub catalog: &'a Catalog,
    pub kafka: &'a KafkaSnapshot,
    pub reports: &'a HashMap<String, GroupReports>,
    pub events: &'a HashMap<String, Counts>,
    pub channels: &'a HashMap<String, ChannelCounts>,
    pub dead_letters: &'a HashMap<String, DlqFigures>,
    pub now_ms: i64,
    pub errors: Vec<String>,
    pub refresh_ms: u64,
}

pub fn build(inputs: Inputs<'_>, windows: &mut HashMap<String, Window>) -> ClusterView {
    let mut groups = Vec::new();
    for group in inputs.catalog.topology().groups.values() {
        groups.push(group_view(&inputs, windows, group));
    }
    let events = event_views(&inputs);
    let channels = inputs
        .catalog
        .topology()
        .channels
        .values()
        .map(|c| {
            let n = inputs
                .channels
                .get(&c.template)
                .cloned()
                .unwrap_or_default();
            ChannelView {
                channel: c.template.clone(),
                scope: format!("{:?}", c.scope).to_lowercase(),
                subscribers: n.subscribers,
                messages: n.messages,
                avg_latency: if n.latency_count == 0 {
                    0.0
                } else {
                    n.latency_ms_sum as f64 / n.latency_count as f64
                },
                received: n.received,
                dropped: n.dropped,
            }
        })
        .collect();
    ClusterView {
        taken_at_ms: inputs.now_ms,
        refresh_ms: inputs.refresh_ms,
        errors: inputs.errors.clone(),
        groups,
        events,
        channels,
        topics: inputs
            .kafka
            .topics
            .iter()
            .map(|(t, (partitions, replicas))| {
                (
                    t.clone(),
                    TopicState {
                        partitions: *partitions,
                        replicas: *replicas,
                    },
                )
            })
            .collect(),
    }
}

fn role_name(role: TopicRole) -> &'static str {
    match role {
        TopicRole::Main => "main",
        TopicRole::Retry => "retry",
        TopicRole::Replay => "replay",
    }
}

/// Worse breaker states win: open over half-open over closed.
fn worse(a: &str, b: &str) -> bool {
    let rank = |s: &str| match s {
        "open" => 2,
        "half_open" => 1,
        _ => 0,
    };
    rank(b) > rank(a)
}

fn group_view(
    inputs: &Inputs<'_>,
    windows: &mut HashMap<String, Window>,
    group: &circulatory::topology::Group,
) -> GroupView {
    let catalog = inputs.catalog;
    let group_id = catalog.topic_name(&group.name);
    let reports = inputs.reports.get(&group.name).cloned().unwrap_or_default();
    let description = inputs
        .kafka
        .groups
        .get(&group_id)
        .cloned()
        .unwrap_or_default();
    let instance_ids: Vec<String> = reports
        .heartbeats
        .iter()
        .map(|h| h.instance.clone())
        .collect();
    let mut members = description.members.clone();
    match_instances(&mut members, &instance_ids);
    let owner_of: HashMap<&str, String> = members
        .iter()
        .flat_map(|m| {
            let who = m.instance.clone().unwrap_or_else(|| m.client_id.clone());
            m.partitions.iter().map(move |p| (p.as_str(), who.clone()))
        })
        .collect();
    let paused_of: HashMap<&str, (&Vec<String>, &str)> = reports
        .heartbeats
        .iter()
        .flat_map(|h| {
            h.paused_partitions
                .iter()
                .map(move |(p, r)| (p.as_str(), (r, h.instance.as_str())))
        })
        .collect();
    let positions = inputs.kafka.positions.get(&group.name);
    let mut partitions = Vec::new();
    let (mut waiting, mut delayed, mut replaying, mut position_sum) = (0, 0, 0, 0);
    let mut time_lag_seconds: f64 = 0.0;
    for p in positions.into_iter().flatten() {
        let lag = p.lag();
        let name = format!("{}:{}", p.topic, p.partition);
        let time_lag = (p.role == TopicRole::Main && lag > 0)
            .then(|| {
                inputs
                    .kafka
                    .heads
                    .get(&(p.topic.clone(), p.partition, p.next()))
            })
            .flatten()
            .map(|ts| ((inputs.now_ms - ts).max(0)) as f64 / 1000.0);
        match p.role {
            TopicRole::Main => {
                waiting += lag;
                position_sum += p.next();
                time_lag_seconds = time_lag_seconds.max(time_lag.unwrap_or(0.0));
            }
            TopicRole::Retry => delayed += lag,
            TopicRole::Replay => replaying += lag,
        }
        partitions.push(PartitionView {
            topic: p.topic.clone(),
            role: role_name(p.role).into(),
            partition: p.partition,
            committed: p.committed,
            start: p.start,
            end: p.end,
            lag,
            time_lag_seconds: time_lag,
            paused: paused_of
                .get(name.as_str())
                .map(|(r, _)| (*r).clone())
                .unwrap_or_default(),
            owner: owner_of.get(name.as_str()).cloned(),
        });
    }
    let mut breakers: BTreeMap<String, String> = BTreeMap::new();
    for h in &reports.heartbeats {
        for (dependency, state) in &h.breakers {
            let entry = breakers
                .entry(dependency.clone())
                .or_insert_with(|| state.clone());
            if worse(entry, state) {
                *entry = state.clone();
            }
        }
    }
    let paused_partitions = reports
        .heartbeats
        .iter()
        .flat_map(|h| {
            h.paused_partitions.iter().map(|(p, r)| PausedPartition {
                partition: p.clone(),
                reasons: r.clone(),
                instance: h.instance.clone(),
            })
        })
        .collect();
    let silent_members = members
        .iter()
        .filter(|m| {
            m.instance.is_none()
                && !reports
                    .heartbeats
                    .iter()
                    .any(|h| h.client_id == m.client_id)
        })
        .map(|m| m.member_id.clone())
        .collect();
    let window = windows.entry(group.name.clone()).or_default();
    if positions.is_some() {
        window.push(Sample {
            at_ms: inputs.now_ms,
            lag: waiting,
            position: position_sum,
        });
    }
    let health = judge(
        &Facts {
            lag: waiting,
            members: members.len(),
            silent_members,
            stopped: reports.stopped.as_ref().map(|s| s.reason.clone()),
            paused_by: reports.control.as_ref().map(|c| c.by.clone()),
        },
        window,
    );
    let counts = &reports.counts;
    GroupView {
        group: group.name.clone(),
        group_id,
        description: group.description.clone(),
        subscribe: group.subscribe.clone(),
        active: reports.heartbeats.iter().map(|h| h.active).sum(),
        waiting,
        delayed,
        replaying,
        completed: counts.completed,
        failed: counts.failed,
        retried: counts.retried,
        dead_lettered: counts.dead_lettered,
        avg_duration: counts.avg_duration_ms(),
        duration_p50_ms: counts.durations.quantile(0.5),
        duration_p99_ms: counts.durations.quantile(0.99),
        durations: counts.durations,
        success_rate: counts.success_rate() * 100.0,
        dlq: inputs
            .dead_letters
            .get(&group.name)
            .cloned()
            .unwrap_or_default(),
        time_lag_seconds,
        state: if description.state.is_empty() {
            "Unknown".into()
        } else {
            description.state.clone()
        },
        members,
        instances: reports.heartbeats.clone(),
        breakers,
        paused_partitions,
        control: reports.control.clone(),
        stopped: reports.stopped.clone(),
        health,
        partitions,
    }
}

fn event_views(inputs: &Inputs<'_>) -> Vec<EventView> {
    let topology = inputs.catalog.topology();
    let mut views: Vec<EventView> = inputs
        .catalog
        .events()
        .map(|e| {
            let c = inputs.events.get(e.name()).cloned().unwrap_or_default();
            EventView {
                event_type: e.name().to_string(),
                domain: e.route.domain.clone(),
                topic: e.topic.clone(),
                groups: topology
                    .groups
                    .values()
                    .filter(|g| g.subscribe.iter().any(|t| t == e.name()))
                    .map(|g| g.name.clone())
                    .collect(),
                published: c.published,
                published_by: c.published_by.clone(),
                processed: c.completed,
                failed: c.failed,
                dead_lettered: c.dead_lettered,
                avg_duration: c.avg_duration_ms(),
                duration_p50_ms: c.durations.quantile(0.5),
                duration_p99_ms: c.durations.quantile(0.99),
                durations: c.durations,
                success_rate: c.success_rate() * 100.0,
            }
        })
        .collect();
    views.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    views
}
