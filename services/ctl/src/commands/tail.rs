//! `circ tail <topic>`: decoded records as JSON lines, with headers, without joining a group.

use std::process::ExitCode;
use std::sync::Arc;

use circulatory::cloudevents::headers_as_text;
use circulatory::kafka;
use circulatory::registry::SchemaRegistry;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Map, Value};

use super::{kafka_config, registry, timeout, Failure, Outcome};
use crate::cli::{Global, TailArgs};

pub(crate) async fn run(global: &Global, args: TailArgs) -> Outcome {
    let config = kafka_config(global);
    let metadata_client: Arc<BaseConsumer> =
        Arc::new(kafka::reader(&config).map_err(|e| Failure::Usage(e.to_string()))?);
    let metadata =
        kafka::fetch_metadata(metadata_client, Some(args.topic.clone()), timeout(global))
            .await
            .map_err(|e| Failure::Unavailable(e.into()))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == args.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Failure::Usage(format!(
            "topic `{}` does not exist",
            args.topic
        )));
    }
    let consumer: StreamConsumer =
        kafka::reader(&config).map_err(|e| Failure::Usage(e.to_string()))?;
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment.add_partition_offset(&args.topic, partition, start)?;
    }
    consumer.assign(&assignment)?;
    let registry = registry(global)?;
    let idle = args.idle;
    let mut stream = consumer.stream();
    let mut printed = 0u64;
    while args.max.is_none_or(|max| printed < max) {
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => stream.next().await,
        };
        let Some(result) = next else { break };
        let message = result.map_err(|e| Failure::Unavailable(e.into()))?;
        println!("{}", render(&message, &registry).await);
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

async fn render(message: &BorrowedMessage<'_>, registry: &SchemaRegistry) -> Value {
    let headers: Map<String, Value> = headers_as_text(message.headers())
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut line = json!({
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": message.timestamp().to_millis(),
        "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
    });
    match message.payload() {
        None => line["data"] = Value::Null,
        Some(payload) => match registry.decode_json(payload).await {
            Ok(decoded) => {
                line["schemaId"] = json!(decoded.schema_id);
                line["record"] = json!(decoded.full_name);
                line["data"] = decoded.data;
            }
            Err(e) => line["error"] = json!(e.to_string()),
        },
    }
    line
}
