//! The AsyncAPI 3.0 document of the pipeline, derived from the catalog (`topics.yaml` and the
//! Avro schemas): what data teams read to consume the topics with any Kafka client.
//!
//! - Every main topic is a channel (address, Kafka bindings: partitions, replicas, retention,
//!   cleanup policy); each group's retry rungs, dead letters and replay topic are channels too.
//! - Every stored event type is a message: its Avro schema as the payload, the CloudEvents and
//!   correlation headers, the partition key as the Kafka key, Confluent wire format (the schema
//!   id in the payload, subjects by TopicRecordNameStrategy). Records on retry, dead-letter and
//!   replay topics are the same events with the `circ_*` headers added (`<type>.forwarded`).
//! - Operations: the ingest API sends each main channel's types (`POST /v1/events`); each
//!   consumer group receives each type it subscribes to (with its group id), sends its failures
//!   to its retry and dead-letter channels and receives them back.

mod channels;
mod messages;
mod operations;

use serde_json::{json, Map, Value};

use crate::catalog::Catalog;

/// Where the document says the pipeline runs.
#[derive(Debug, Clone)]
pub struct Servers {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    pub kafka: String,
    /// The Confluent-compatible schema registry API.
    pub registry_url: String,
    /// The ingest API, `host:port`.
    pub ingest: String,
}

/// The binding version of every Kafka binding in the document.
const KAFKA_BINDING_VERSION: &str = "0.5.0";

/// The document, as JSON (serialise it as YAML or JSON).
pub fn document(catalog: &Catalog, servers: &Servers) -> Value {
    let channels = channels::all(catalog);
    let operations = operations::all(catalog, &channels);
    let mut channel_map = Map::new();
    for channel in &channels {
        channel_map.insert(channel.id.clone(), channel.to_json());
    }
    json!({
        "asyncapi": "3.0.0",
        "id": "urn:circulatory:events",
        "info": {
            "title": "Circulatory events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Domain events of the Circulatory pipeline, derived from topics.yaml \
                and schemas/. Values are Avro in Confluent wire format (magic byte 0, 4-byte \
                schema id, Avro binary); the CloudEvents attributes travel as record headers \
                (binary mode). Read with read_committed: groups that emit inside Kafka \
                transactions write records that only committed readers should see.",
        },
        "defaultContentType": crate::cloudevents::CONTENT_TYPE_AVRO,
        "servers": servers_json(catalog, servers),
        "channels": channel_map,
        "operations": operations,
        "components": {
            "messages": messages::all(catalog),
            "schemas": messages::header_schemas(),
        },
    })
}

fn servers_json(catalog: &Catalog, servers: &Servers) -> Value {
    let namespace = catalog
        .namespace()
        .map(|ns| format!(" Topics carry the namespace prefix `{ns}.`."))
        .unwrap_or_default();
    json!({
        "kafka": {
            "host": servers.kafka,
            "protocol": "kafka",
            "description": format!("The Kafka cluster.{namespace}"),
            "bindings": {
                "kafka": {
                    "schemaRegistryUrl": servers.registry_url,
                    "schemaRegistryVendor": "confluent",
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        },
        "ingest": {
            "host": servers.ingest,
            "protocol": "http",
            "description": "The ingest API: POST /v1/events validates events against their \
                schema and writes them to their topic (see /openapi.json).",
        }
    })
}

#[cfg(test)]
mod tests;
