use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::catalog::{CatalogPaths, TopicKind};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn servers() -> Servers {
    Servers {
        kafka: "127.0.0.1:9092".into(),
        registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
        ingest: "127.0.0.1:8080".into(),
    }
}

fn repo_document() -> (Catalog, Value) {
    let catalog = Catalog::load(&CatalogPaths::in_dir(repo_root())).expect("the catalog");
    let doc = document(&catalog, &servers());
    (catalog, doc)
}

#[test]
fn every_topic_is_a_channel_with_its_kafka_bindings() {
    let (catalog, doc) = repo_document();
    let channels = doc["channels"].as_object().unwrap();
    let specs = catalog.topic_specs(None);
    assert_eq!(channels.len(), specs.len());
    for spec in specs {
        let channel = &channels[&spec.name];
        assert_eq!(channel["address"], spec.name.as_str());
        let kafka = &channel["bindings"]["kafka"];
        assert_eq!(kafka["partitions"], spec.partitions);
        assert_eq!(kafka["replicas"], spec.replication_factor);
        assert_eq!(
            kafka["topicConfiguration"]["retention.ms"],
            spec.retention.as_kafka_ms()
        );
    }
}

#[test]
fn every_stored_type_is_a_message_with_its_avro_schema_and_key() {
    let (catalog, doc) = repo_document();
    let messages = doc["components"]["messages"].as_object().unwrap();
    let mut stored = 0;
    for event in catalog.events() {
        let Some(topic) = &event.topic else {
            assert!(
                !messages.contains_key(event.name()),
                "ephemeral types never reach Kafka"
            );
            continue;
        };
        stored += 1;
        let message = &messages[event.name()];
        assert_eq!(message["payload"]["schema"], *event.schema_json);
        assert_eq!(
            message["payload"]["schemaFormat"],
            "application/vnd.apache.avro;version=1.9.0"
        );
        let binding = &message["bindings"]["kafka"];
        assert_eq!(binding["schemaIdPayloadEncoding"], "confluent");
        assert_eq!(
            binding.get("key").is_some(),
            event.route.partition_key.is_some()
        );
        let on_channel = &doc["channels"][topic]["messages"][event.name()]["$ref"];
        assert_eq!(
            on_channel,
            &format!("#/components/messages/{}", event.name())
        );
    }
    assert_eq!(
        messages.len(),
        2 * stored,
        "each type and its forwarded variant"
    );
}

#[test]
fn every_group_receives_each_stored_type_it_subscribes_to_under_its_group_id() {
    let (catalog, doc) = repo_document();
    let operations = doc["operations"].as_object().unwrap();
    for group in catalog.topology().groups.values() {
        for event_type in &group.subscribe {
            let id = format!("{}.receive.{event_type}", group.name);
            match catalog.event(event_type).and_then(|e| e.topic.as_ref()) {
                Some(topic) => {
                    let op = &operations[&id];
                    assert_eq!(op["action"], "receive");
                    assert_eq!(op["channel"]["$ref"], format!("#/channels/{topic}"));
                    assert_eq!(
                        op["bindings"]["kafka"]["groupId"]["enum"][0],
                        group.name.as_str()
                    );
                }
                None => assert!(!operations.contains_key(&id)),
            }
        }
        for base in [group.dead_letter_topic_base(), group.replay_topic_base()] {
            assert!(doc["channels"].get(&base).is_some(), "{base}");
        }
        assert!(operations.contains_key(&format!("send.{}", group.dead_letter_topic_base())));
        assert!(operations.contains_key(&format!("receive.{}", group.replay_topic_base())));
    }
}

#[test]
fn every_reference_resolves() {
    let (_, doc) = repo_document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 100);
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("local reference");
        let parts: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        let mut at = &doc;
        for part in &parts {
            at = at
                .get(part)
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
        }
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn a_namespace_changes_addresses_and_group_ids_not_ids() {
    let catalog = Catalog::load(&CatalogPaths::in_dir(repo_root()))
        .unwrap()
        .with_namespace(Some("staging"))
        .unwrap();
    let doc = document(&catalog, &servers());
    assert_eq!(
        doc["channels"]["payments.critical"]["address"],
        "staging.payments.critical"
    );
    assert_eq!(
        doc["operations"]["payments.receive.payment.initiated"]["bindings"]["kafka"]["groupId"]
            ["enum"][0],
        "staging.payments"
    );
}

/// The repository's declaration copied to a temporary folder, with one more event type.
fn with_extra_type(dir: &Path) {
    let root = repo_root();
    std::fs::create_dir_all(dir.join("schemas/interactions")).unwrap();
    copy_tree(&root.join("schemas"), &dir.join("schemas"));
    let topology = std::fs::read_to_string(root.join("topics.yaml")).unwrap();
    let extra = "events:\n  bookmark.added:\n    domain: interactions\n    record: BookmarkAdded\n    \
                 key: postId\n    data_only: true\n    description: \"A user bookmarked a post.\"\n";
    std::fs::write(
        dir.join("topics.yaml"),
        topology.replacen("events:\n", extra, 1),
    )
    .unwrap();
    let schema = r#"{"type": "record", "name": "BookmarkAdded", "namespace": "circulatory.interactions",
        "doc": "A user bookmarked a post.",
        "fields": [{"name": "postId", "type": "string", "doc": "The post."},
                   {"name": "userId", "type": "string", "doc": "Who bookmarked it."}]}"#;
    std::fs::write(dir.join("schemas/interactions/bookmark.added.avsc"), schema).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_new_type_in_the_topology_is_a_new_message_without_other_edits() {
    let dir = std::env::temp_dir().join(format!("circ-asyncapi-{}", uuid::Uuid::new_v4()));
    with_extra_type(&dir);
    let catalog = Catalog::load(&CatalogPaths::in_dir(&dir)).expect("the extended catalog");
    let doc = document(&catalog, &servers());
    let (_, before) = repo_document();
    std::fs::remove_dir_all(&dir).ok();
    let message = &doc["components"]["messages"]["bookmark.added"];
    assert_eq!(message["title"], "BookmarkAdded");
    let channel = catalog
        .event("bookmark.added")
        .unwrap()
        .topic
        .clone()
        .unwrap();
    assert!(doc["channels"][&channel]["messages"]
        .get("bookmark.added")
        .is_some());
    let count = |d: &Value| d["components"]["messages"].as_object().unwrap().len();
    assert_eq!(count(&doc), count(&before) + 2);
    assert!(matches!(
        catalog
            .topic_specs(None)
            .iter()
            .find(|s| s.name == channel)
            .unwrap()
            .kind,
        TopicKind::Main { .. }
    ));
}
