//! Operations: what the ingest API sends and what each consumer group receives and sends.

use serde_json::{json, Map, Value};

use crate::catalog::{Catalog, TopicKind};

use super::channels::Channel;
use super::messages::message_id;
use super::KAFKA_BINDING_VERSION;

/// Every operation, by id.
pub(super) fn all(catalog: &Catalog, channels: &[Channel]) -> Map<String, Value> {
    let mut operations = Map::new();
    for channel in channels {
        if let TopicKind::Main { .. } = channel.spec.kind {
            operations.insert(format!("ingest.publish.{}", channel.id), publish(channel));
        }
    }
    for group in catalog.topology().groups.values() {
        let group_id = catalog.topic_name(&group.name);
        for event_type in &group.subscribe {
            let Some(channel) = channels.iter().find(|c| {
                matches!(c.spec.kind, TopicKind::Main { .. })
                    && c.messages.contains(&message_id(event_type))
            }) else {
                continue;
            };
            operations.insert(
                format!("{}.receive.{event_type}", group.name),
                operation(
                    "receive",
                    channel,
                    &[message_id(event_type)],
                    &format!(
                        "`{}` handles `{event_type}`: {}",
                        group.name, group.description
                    ),
                    Some(&group_id),
                ),
            );
        }
        for channel in channels.iter().filter(|c| owned_by(c, &group.name)) {
            for &(action, what) in failure_path(&channel.spec.kind) {
                let description = format!("`{}` {what} `{}`.", group.name, channel.id);
                let group_id = (action == "receive").then_some(group_id.as_str());
                operations.insert(
                    format!("{action}.{}", channel.id),
                    operation(action, channel, &channel.messages, &description, group_id),
                );
            }
        }
    }
    operations
}

/// What a group does with one of its own topics.
fn failure_path(kind: &TopicKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        TopicKind::Retry { .. } => &[
            ("send", "sends failed attempts due later to"),
            ("receive", "runs the attempts that are due from"),
        ],
        TopicKind::DeadLetter { .. } => &[("send", "dead-letters what it cannot process to")],
        TopicKind::Replay { .. } => &[("receive", "runs what operators send back from")],
        TopicKind::Main { .. } => &[],
    }
}

fn owned_by(channel: &Channel, group: &str) -> bool {
    match &channel.spec.kind {
        TopicKind::Retry { group: g, .. }
        | TopicKind::DeadLetter { group: g }
        | TopicKind::Replay { group: g } => g == group,
        TopicKind::Main { .. } => false,
    }
}

fn publish(channel: &Channel) -> Value {
    let mut op = operation(
        "send",
        channel,
        &channel.messages,
        "The ingest API writes these types here once they match their schema \
         (POST /v1/events); the answer comes after the broker acknowledged (acks=all).",
        None,
    );
    op["bindings"] = json!({"http": {"method": "POST", "bindingVersion": "0.3.0"}});
    op
}

fn operation(
    action: &str,
    channel: &Channel,
    messages: &[String],
    description: &str,
    group_id: Option<&str>,
) -> Value {
    let refs: Vec<Value> = messages
        .iter()
        .map(|m| json!({"$ref": format!("#/channels/{}/messages/{m}", channel.id)}))
        .collect();
    let mut op = json!({
        "action": action,
        "channel": {"$ref": format!("#/channels/{}", channel.id)},
        "description": description,
        "messages": refs,
    });
    if let Some(group_id) = group_id {
        op["bindings"] = json!({
            "kafka": {
                "groupId": {"type": "string", "enum": [group_id]},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        });
    }
    op
}
