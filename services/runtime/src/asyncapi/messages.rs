//! Messages: one per stored event type, and its forwarded variant as it travels on a group's
//! retry, dead-letter and replay topics (the same record with the `circ_*` headers added).

use serde_json::{json, Map, Value};

use crate::catalog::{Catalog, EventType};
use crate::cloudevents::{header as ce, CONTENT_TYPE_AVRO};
use crate::consumer::retry::header as circ;

use super::KAFKA_BINDING_VERSION;

const AVRO_FORMAT: &str = "application/vnd.apache.avro;version=1.9.0";
const EVENT_HEADERS: &str = "EventHeaders";
const FORWARDED_HEADERS: &str = "ForwardedHeaders";

pub(super) fn message_id(event_type: &str) -> String {
    event_type.to_string()
}

pub(super) fn forwarded_id(event_type: &str) -> String {
    format!("{event_type}.forwarded")
}

/// Both messages of every type that reaches Kafka.
pub(super) fn all(catalog: &Catalog) -> Map<String, Value> {
    let mut messages = Map::new();
    for event in catalog.events().filter(|e| e.topic.is_some()) {
        messages.insert(message_id(event.name()), message(event, EVENT_HEADERS, ""));
        messages.insert(
            forwarded_id(event.name()),
            message(
                event,
                FORWARDED_HEADERS,
                " As forwarded to a group's retry, dead-letter or replay topic.",
            ),
        );
    }
    messages
}

fn message(event: &EventType, headers: &str, note: &str) -> Value {
    let route = &event.route;
    let mut kafka = json!({
        "schemaIdLocation": "payload",
        "schemaIdPayloadEncoding": "confluent",
        "schemaLookupStrategy": "TopicRecordNameStrategy",
        "bindingVersion": KAFKA_BINDING_VERSION,
    });
    if let Some(field) = &route.partition_key {
        kafka["key"] = json!({
            "type": "string",
            "description": format!("The event's `{field}` (UTF-8): its partition key, so events of one `{field}` keep their order."),
        });
    }
    json!({
        "name": event.name(),
        "title": route.record,
        "summary": format!("{}{note}", route.description),
        "description": format!(
            "Avro record `{}`; registry subject `{}`.",
            event.full_name,
            event.subject().unwrap_or_default()
        ),
        "contentType": CONTENT_TYPE_AVRO,
        "headers": {"$ref": format!("#/components/schemas/{headers}")},
        "correlationId": {
            "description": "Shared by every event one request or one causing event led to.",
            "location": format!("$message.header#/{}", ce::CORRELATION_ID),
        },
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": *event.schema_json},
        "bindings": {"kafka": kafka},
    })
}

/// The header schemas the messages refer to.
pub(super) fn header_schemas() -> Map<String, Value> {
    let text = |description: &str| json!({"type": "string", "description": description});
    let event = json!({
        "type": "object",
        "description": "CloudEvents 1.0 Kafka binding, binary mode, plus correlation headers.",
        "required": [ce::SPEC_VERSION, ce::ID, ce::SOURCE, ce::TYPE, ce::TIME, ce::CONTENT_TYPE],
        "properties": {
            ce::SPEC_VERSION: {"type": "string", "const": crate::cloudevents::SPEC_VERSION},
            ce::ID: text("Event id, unique per source; consumers deduplicate by it."),
            ce::SOURCE: text("Who published it: /circulatory/ingest or /circulatory/<group>."),
            ce::TYPE: text("The event type, e.g. payment.initiated."),
            ce::TIME: text("When it happened, RFC 3339."),
            ce::SUBJECT: text("What it is about, when the publisher said."),
            ce::CONTENT_TYPE: {"type": "string", "const": CONTENT_TYPE_AVRO},
            ce::TRACEPARENT: text("W3C trace context."),
            ce::TRACESTATE: text("W3C trace state."),
            ce::CORRELATION_ID: text("Shared by every event one request led to."),
            ce::REQUEST_ID: text("The ingest request that published it."),
        },
    });
    let circ_text = |d: &str| text(d);
    let forwarded = json!({
        "allOf": [
            {"$ref": format!("#/components/schemas/{EVENT_HEADERS}")},
            {
                "type": "object",
                "description": "Written by the group whose attempt failed.",
                "properties": {
                    circ::ATTEMPT: circ_text("The attempt that comes next (1 was the delivery from the main topic)."),
                    circ::DUE_AT: circ_text("When the next attempt is due, RFC 3339 (retry topics)."),
                    circ::FIRST_FAILURE_AT: circ_text("When the first attempt failed."),
                    circ::GROUP: circ_text("The consumer group that failed it."),
                    circ::ORIGINAL_TOPIC: circ_text("Where the event was first read."),
                    circ::ORIGINAL_PARTITION: circ_text("Its partition there."),
                    circ::ORIGINAL_OFFSET: circ_text("Its offset there."),
                    circ::ORIGINAL_TIMESTAMP: circ_text("Its timestamp there (ms)."),
                    circ::ERROR_CLASS: circ_text("retryable, permanent, dependency or undecodable."),
                    circ::ERROR_MESSAGE: circ_text("The last error, at most 1024 bytes."),
                    circ::DEAD_LETTERED_AT: circ_text("When it was dead-lettered (dead-letter topics)."),
                    circ::DLQ_REASON: circ_text("Why it was dead-lettered: exhausted, permanent, poison or unhandled."),
                },
            }
        ]
    });
    let mut schemas = Map::new();
    schemas.insert(EVENT_HEADERS.into(), event);
    schemas.insert(FORWARDED_HEADERS.into(), forwarded);
    schemas
}
