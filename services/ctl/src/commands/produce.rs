//! `circ produce <type> --data <json>`: the same path as the ingest API, from a shell.

use std::process::ExitCode;
use std::sync::Arc;

use circulatory::catalog::Catalog;
use circulatory::kafka::{self, ProducerSettings};
use circulatory::publisher::{EventDraft, EventPublisher, PublishError, ValidationError};

use super::{kafka_config, print_json, registry, Failure, Outcome};
use crate::cli::{Global, ProduceArgs};

pub(crate) async fn run(global: &Global, catalog: Catalog, args: ProduceArgs) -> Outcome {
    let data: serde_json::Value = serde_json::from_str(&args.data)
        .map_err(|e| Failure::Data(format!("--data is not JSON: {e}")))?;
    let producer = kafka::producer(&kafka_config(global), &ProducerSettings::default())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let publisher = EventPublisher::new(
        Arc::new(catalog),
        registry(global)?,
        producer,
        "/circulatory/circ",
    );
    let validated = publisher
        .validate(EventDraft {
            event_type: args.event_type,
            data,
            id: args.id,
            subject: args.subject,
            correlation_id: args.correlation_id,
            ..EventDraft::default()
        })
        .map_err(|e| Failure::Data(describe(&e)))?;
    match publisher.publish(validated).await {
        Ok(delivered) => {
            print_json(&delivered)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ PublishError::Ephemeral(_)) => Err(Failure::Usage(e.to_string())),
        Err(e) if e.is_transient() => Err(Failure::Unavailable(e.into())),
        Err(e) => Err(Failure::Other(e.into())),
    }
}

fn describe(error: &ValidationError) -> String {
    match error {
        ValidationError::Schema { errors, .. } => {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "  {}: {}",
                        if e.path.is_empty() { "/" } else { &e.path },
                        e.message
                    )
                })
                .collect();
            format!("{error}\n{}", lines.join("\n"))
        }
        other => other.to_string(),
    }
}
