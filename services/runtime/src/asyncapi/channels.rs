//! Channels: one per topic the catalog declares, main topics and each group's retry rungs,
//! dead letters and replay topic.

use serde_json::{json, Map, Value};

use crate::catalog::{Catalog, TopicKind, TopicSpec};
use crate::duration::Canonical;

use super::messages::{forwarded_id, message_id};
use super::KAFKA_BINDING_VERSION;

/// One channel and the ids of the component messages it carries.
#[derive(Debug, Clone)]
pub(super) struct Channel {
    /// The channel's id: the topic's name without the namespace.
    pub(super) id: String,
    pub(super) spec: TopicSpec,
    pub(super) description: String,
    /// Ids under `components.messages`.
    pub(super) messages: Vec<String>,
}

impl Channel {
    pub(super) fn to_json(&self) -> Value {
        let mut messages = Map::new();
        for id in &self.messages {
            messages.insert(
                id.clone(),
                json!({"$ref": format!("#/components/messages/{id}")}),
            );
        }
        json!({
            "address": self.spec.name,
            "title": self.id,
            "description": self.description,
            "messages": messages,
            "servers": [{"$ref": "#/servers/kafka"}],
            "bindings": {"kafka": bindings(&self.spec)},
        })
    }
}

fn bindings(spec: &TopicSpec) -> Value {
    json!({
        "topic": spec.name,
        "partitions": spec.partitions,
        "replicas": spec.replication_factor,
        "topicConfiguration": {
            "cleanup.policy": [spec.cleanup_policy.as_kafka()],
            "retention.ms": spec.retention.as_kafka_ms(),
        },
        "bindingVersion": KAFKA_BINDING_VERSION,
    })
}

/// Every channel, main topics first, in the catalog's order.
pub(super) fn all(catalog: &Catalog) -> Vec<Channel> {
    catalog
        .topic_specs(None)
        .into_iter()
        .map(|spec| channel(catalog, spec))
        .collect()
}

fn channel(catalog: &Catalog, spec: TopicSpec) -> Channel {
    let id = base_name(catalog, &spec.name);
    let (description, messages) = match &spec.kind {
        TopicKind::Main { domain, tier } => {
            let description = catalog
                .topology()
                .domains
                .get(domain)
                .map_or_else(String::new, |d| d.description.clone());
            let messages = catalog
                .events()
                .filter(|e| e.topic.as_deref() == Some(spec.name.as_str()))
                .map(|e| message_id(e.name()))
                .collect();
            (
                format!("{description} (domain `{domain}`, tier `{tier}`)"),
                messages,
            )
        }
        TopicKind::Retry { group, delay } => (
            format!(
                "Retry rung of `{group}`: events whose attempt failed, due {} later \
                 (`circ_due_at`); only `{group}` reads it.",
                Canonical(*delay)
            ),
            forwarded(catalog, group),
        ),
        TopicKind::DeadLetter { group } => (
            format!(
                "Dead letters of `{group}`: events that exhausted their attempts, failed \
                 permanently or could not be decoded, with why in `circ_error_*`."
            ),
            forwarded(catalog, group),
        ),
        TopicKind::Replay { group } => (
            format!(
                "Dead letters sent back to `{group}` only by an operator (`circ dlq replay`), run \
                 at once with the attempt count reset."
            ),
            forwarded(catalog, group),
        ),
    };
    Channel {
        id,
        spec,
        description,
        messages,
    }
}

/// The forwarded variants of the stored types a group subscribes to.
fn forwarded(catalog: &Catalog, group: &str) -> Vec<String> {
    let Some(group) = catalog.group(group) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = group
        .subscribe
        .iter()
        .filter(|t| catalog.event(t).is_some_and(|e| e.topic.is_some()))
        .map(|t| forwarded_id(t))
        .collect();
    ids.sort();
    ids
}

/// A topic's name without the catalog's namespace prefix.
pub(super) fn base_name(catalog: &Catalog, topic: &str) -> String {
    match catalog.namespace() {
        Some(ns) => topic
            .strip_prefix(&format!("{ns}."))
            .unwrap_or(topic)
            .to_string(),
        None => topic.to_string(),
    }
}
