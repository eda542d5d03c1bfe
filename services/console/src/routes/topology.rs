//! `GET topology`: topics, groups and channels as `topics.yaml` declares them, beside what the
//! cluster has.

use axum::extract::State;
use axum::Json;
use circulatory::catalog::TopicKind;
use serde::Serialize;

use crate::auth::Viewer;
use crate::cluster::view::TopicState;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicEntry {
    pub name: String,
    /// `main`, `retry`, `dead_letter` or `replay`.
    pub kind: String,
    /// The domain (main topics) or the group (the others).
    pub owner: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
    pub retention_ms: i64,
    pub cleanup_policy: String,
    /// What the cluster has (`None`: the topic is missing).
    pub actual: Option<TopicState>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupEntry {
    pub name: String,
    pub description: String,
    pub subscribe: Vec<String>,
    pub topics: Vec<String>,
    pub max_attempts: u32,
    /// Delays before each retry, in ms.
    pub retry_delays_ms: Vec<u64>,
    pub timeout_ms: u64,
    pub max_in_flight: u32,
    pub lag_threshold: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelEntry {
    pub template: String,
    pub scope: String,
    pub description: String,
    /// Event types broadcast on it.
    pub events: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopologyView {
    pub topics: Vec<TopicEntry>,
    pub groups: Vec<GroupEntry>,
    pub channels: Vec<ChannelEntry>,
}

#[utoipa::path(get, path = "/admin/circulatory/topology", tag = "topology",
    responses((status = 200, description = "Derived from topics.yaml, with the cluster's actual topics", body = TopologyView)),
    security(("bearer" = [])))]
pub async fn topology(State(state): State<AppState>, Viewer(_): Viewer) -> Json<TopologyView> {
    let view = state.collector.current();
    let catalog = &state.catalog;
    let topics = catalog
        .topic_specs(None)
        .into_iter()
        .map(|spec| {
            let (kind, owner) = match &spec.kind {
                TopicKind::Main { domain, .. } => ("main", domain.clone()),
                TopicKind::Retry { group, .. } => ("retry", group.clone()),
                TopicKind::DeadLetter { group } => ("dead_letter", group.clone()),
                TopicKind::Replay { group } => ("replay", group.clone()),
            };
            TopicEntry {
                actual: view.topics.get(&spec.name).cloned(),
                retention_ms: spec.retention.as_kafka_ms(),
                cleanup_policy: spec.cleanup_policy.as_kafka().to_string(),
                name: spec.name,
                kind: kind.into(),
                owner,
                partitions: spec.partitions,
                replication_factor: spec.replication_factor,
                min_insync_replicas: spec.min_insync_replicas,
            }
        })
        .collect();
    let topology = catalog.topology();
    let groups = topology
        .groups
        .values()
        .map(|g| GroupEntry {
            name: g.name.clone(),
            description: g.description.clone(),
            subscribe: g.subscribe.clone(),
            topics: catalog.group_topics(g),
            max_attempts: g.max_attempts,
            retry_delays_ms: g
                .retry_delays
                .iter()
                .map(|d| d.as_millis() as u64)
                .collect(),
            timeout_ms: g.timeout.as_millis() as u64,
            max_in_flight: g.max_in_flight,
            lag_threshold: g.lag_threshold,
        })
        .collect();
    let channels = topology
        .channels
        .values()
        .map(|c| ChannelEntry {
            template: c.template.clone(),
            scope: format!("{:?}", c.scope).to_lowercase(),
            description: c.description.clone(),
            events: topology
                .routes
                .iter()
                .filter(|r| r.channel == c.template)
                .map(|r| r.event_type.clone())
                .collect(),
        })
        .collect();
    Json(TopologyView {
        topics,
        groups,
        channels,
    })
}
