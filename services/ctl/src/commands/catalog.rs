//! `circ catalog`: what may be published, where it goes.

use std::process::ExitCode;

use circulatory::catalog::Catalog;
use serde_json::json;

use super::{print_json, Outcome};

pub(crate) fn run(catalog: &Catalog, as_json: bool) -> Outcome {
    if as_json {
        let events: Vec<_> = catalog
            .events()
            .map(|e| {
                json!({
                    "type": e.name(),
                    "domain": e.route.domain,
                    "tier": e.route.tier,
                    "topic": e.topic,
                    "partitionKey": e.route.partition_key,
                    "ephemeral": e.route.ephemeral,
                    "dataOnly": e.route.data_only,
                    "subject": e.subject(),
                    "description": e.route.description,
                    "schema": *e.schema_json,
                })
            })
            .collect();
        print_json(&events)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<30} {:<26} {:<16} FLAGS", "TYPE", "TOPIC", "KEY");
    for event in catalog.events() {
        let mut flags = Vec::new();
        if event.route.ephemeral {
            flags.push("ephemeral");
        }
        if event.route.data_only {
            flags.push("data-only");
        }
        println!(
            "{:<30} {:<26} {:<16} {}",
            event.name(),
            event.topic.as_deref().unwrap_or("(redis only)"),
            event.route.partition_key.as_deref().unwrap_or("-"),
            flags.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}
