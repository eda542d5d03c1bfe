//! The repository's own `topics.yaml` and `schemas/` load, and hold the project's conventions.

use std::path::PathBuf;
use std::time::Duration;

use circulatory::catalog::{Catalog, CatalogPaths, TopicKind};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn catalog() -> Catalog {
    Catalog::load(&CatalogPaths::in_dir(repo_root())).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_catalog_loads_and_covers_the_seed() {
    let catalog = catalog();
    let count = catalog.events().count();
    assert!(count >= 40, "only {count} event types");
    for seed_type in [
        "user.created",
        "user.verified",
        "user.followed",
        "user.blocked",
        "post.created",
        "post.deleted",
        "video.uploaded",
        "video.transcode.started",
        "video.transcode.completed",
        "comment.added",
        "like.added",
        "like.removed",
        "share.created",
        "feed.fanout",
        "feed.refresh",
        "notification.created",
        "notification.sent",
        "notification.read",
        "payment.initiated",
        "payment.completed",
        "payment.failed",
        "wallet.updated",
        "content.flagged",
        "content.moderation.reviewed",
        "user.muted",
        "video.viewed",
        "content.engagement",
        "search.performed",
        "user.interest",
        "user.vector.update",
        "video.embedding.generated",
        "recommendation.served",
        "message.sent",
        "message.delivered",
        "message.read",
        "typing.indicator",
        "admin.action",
        "system.health",
        "thumbnail.generation.started",
        "thumbnail.generation.completed",
        "video.transcode.failed",
        "user.unfollowed",
    ] {
        assert!(catalog.event(seed_type).is_some(), "{seed_type} missing");
    }
    let typing = catalog.event("typing.indicator").unwrap();
    assert!(typing.route.ephemeral && typing.topic.is_none());
    let payment = catalog.event("payment.initiated").unwrap();
    assert_eq!(payment.topic.as_deref(), Some("payments.critical"));
    assert_eq!(
        payment.subject().as_deref(),
        Some("payments.critical-circulatory.payments.PaymentInitiated")
    );
}

#[test]
fn seed_retry_defaults_hold() {
    let catalog = catalog();
    let secs = Duration::from_secs;
    let payments = catalog.group("payments").unwrap();
    assert_eq!(payments.max_attempts, 5);
    assert_eq!(payments.retry_delays, [secs(2), secs(4), secs(8), secs(16)]);
    for (group, attempts, timeout) in [
        ("notifier", 3, 30),
        ("transcoder", 2, 3600),
        ("thumbnailer", 2, 600),
        ("feed-fanout", 2, 120),
        ("event-tracking", 1, 30),
        ("analytics-aggregation", 2, 60),
        ("vector-embedding", 2, 600),
        ("vector-update", 1, 30),
        ("moderation", 2, 120),
        ("audit-log", 3, 60),
    ] {
        let g = catalog
            .group(group)
            .unwrap_or_else(|| panic!("{group} missing"));
        assert_eq!(
            (g.max_attempts, g.timeout),
            (attempts, secs(timeout)),
            "{group}"
        );
    }
}

#[test]
fn every_group_has_its_own_retry_and_dead_letter_topics() {
    let catalog = catalog().with_namespace(Some("t1")).unwrap();
    let specs = catalog.topic_specs(Some(1));
    for group in catalog.topology().groups.values() {
        let dlq = format!("t1.{}.dlq", group.name);
        assert!(specs.iter().any(|s| s.name == dlq), "{dlq}");
        let rungs = specs
            .iter()
            .filter(|s| matches!(&s.kind, TopicKind::Retry { group: g, .. } if *g == group.name))
            .count();
        assert_eq!(rungs, group.retry_delays.len(), "{}", group.name);
    }
    assert!(specs.iter().any(|s| s.name == "t1.payments.retry.16s"));
    assert!(specs
        .iter()
        .all(|s| s.replication_factor == 1 && s.min_insync_replicas == 1));
}

#[test]
fn a_broken_declaration_reports_every_mistake_at_once() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let error = Catalog::load(&CatalogPaths::in_dir(&fixture))
        .expect_err("the fixture is broken")
        .to_string();
    for expected in [
        "domains.shop.tier: unknown tier `urgent`",
        "events.order.placed: event type mapped twice",
        "events.order.shipped: schema missing: expected schemas/shop/order.shipped.avsc",
        "groups.fulfilment.subscribe: unknown event type `order.refunded`",
        "groups.fulfilment.retry_delays: the retry ladder must be strictly increasing",
        "events.order.placed.key: `customerId` is not a field of circulatory.shop.OrderPlaced",
        "order.cancelled.avsc: the Avro codec cannot compile this schema: an array whose items \
         may take no bytes",
    ] {
        assert!(
            error.contains(expected),
            "missing `{expected}` in:\n{error}"
        );
    }
}

/// Every generated payload type is its schema: the catalog's types and the generated ones are the
/// same set, and each type's example, written by serde, passes the compiled codec (the JSON a
/// handler emits is what the catalog validates) and reads back from the codec's JSON unchanged.
#[test]
fn every_generated_payload_round_trips_through_its_schema() {
    let catalog = catalog();
    let mut declared: Vec<&str> = catalog.events().map(|e| e.name()).collect();
    let mut generated = circulatory::events::EVENT_TYPES.to_vec();
    declared.sort_unstable();
    generated.sort_unstable();
    assert_eq!(declared, generated);
    for example in circulatory::events::examples() {
        let event = catalog.event(example.event_type).expect("declared");
        let codec = &event.codec;
        let mut bytes = Vec::new();
        codec
            .encode_json(&example.data, &mut bytes)
            .unwrap_or_else(|e| panic!("{}: {e:?}", example.event_type));
        let decoded = codec.decode_json(&bytes).expect("decodes");
        assert_eq!(decoded, example.data, "{}", example.event_type);
        assert_eq!(
            (example.reads_back)(decoded).ok(),
            Some(true),
            "{}",
            example.event_type
        );
    }
}
