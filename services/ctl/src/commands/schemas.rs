//! `circ schemas check|register`: keep the registry in step with `schemas/`.

use std::process::ExitCode;

use circulatory::catalog::Catalog;
use circulatory::registry::{RegistryError, SchemaRegistry, COMPATIBILITY};

use super::{Failure, Outcome};
use crate::cli::SchemasAction;

fn failure(e: RegistryError) -> Failure {
    if e.is_transient() {
        Failure::Unavailable(e.into())
    } else {
        Failure::Other(e.into())
    }
}

pub(crate) async fn run(
    catalog: &Catalog,
    registry: &SchemaRegistry,
    action: SchemasAction,
) -> Outcome {
    let mut rejected = 0usize;
    if matches!(action, SchemasAction::Register) {
        registry
            .set_compatibility(None, COMPATIBILITY)
            .await
            .map_err(failure)?;
    }
    let subjects = catalog.subjects();
    for (subject, event) in &subjects {
        let schema = event.schema_text();
        match action {
            SchemasAction::Check => {
                let verdict = registry
                    .check_compatibility(subject, schema)
                    .await
                    .map_err(failure)?;
                if verdict.compatible {
                    println!("ok       {subject}");
                } else {
                    rejected += 1;
                    println!("rejected {subject}: {}", verdict.messages.join("; "));
                }
            }
            SchemasAction::Register => {
                registry
                    .set_compatibility(Some(subject), COMPATIBILITY)
                    .await
                    .map_err(failure)?;
                match registry.register(subject, schema).await {
                    Ok(id) => println!("id {id:<6} {subject}"),
                    Err(RegistryError::Refused(reason)) => {
                        rejected += 1;
                        println!("rejected {subject}: {reason}");
                    }
                    Err(e) => return Err(failure(e)),
                }
            }
        }
    }
    if rejected > 0 {
        return Err(Failure::Data(format!(
            "{rejected} of {} schema(s) rejected by the registry",
            subjects.len()
        )));
    }
    println!(
        "{} schema(s) {}",
        subjects.len(),
        match action {
            SchemasAction::Check => "compatible",
            SchemasAction::Register => "registered with FULL_TRANSITIVE compatibility",
        }
    );
    Ok(ExitCode::SUCCESS)
}
