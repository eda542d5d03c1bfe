//! `circ topics plan|apply`.

use std::process::ExitCode;

use circulatory::catalog::Catalog;
use circulatory::process::Exit;
use circulatory::topics::{TopicAdmin, TopicPlan, TopicsError};

use super::{kafka_config, timeout, Failure, Outcome};
use crate::cli::{Global, TopicsAction};

fn unavailable(e: TopicsError) -> Failure {
    match e {
        TopicsError::Kafka(e) => Failure::Unavailable(e.into()),
        other => Failure::Other(other.into()),
    }
}

pub(crate) async fn run(global: &Global, catalog: &Catalog, action: TopicsAction) -> Outcome {
    let admin = TopicAdmin::new(&kafka_config(global), timeout(global)).map_err(unavailable)?;
    let (settings, apply, prune) = match &action {
        TopicsAction::Plan(settings) => (settings, false, false),
        TopicsAction::Apply { settings, prune } => (settings, true, *prune),
    };
    let plan = admin
        .plan(catalog, settings.replication_factor)
        .await
        .map_err(unavailable)?;
    print_plan(&plan, prune);
    if !apply {
        return Ok(if plan.is_noop() {
            Exit::Ok.into()
        } else {
            Exit::Differs.into()
        });
    }
    let deletes = prune && !plan.undeclared.is_empty();
    if plan.is_noop() && !deletes {
        println!("nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    admin.apply(&plan, prune).await.map_err(unavailable)?;
    let created: Vec<String> = plan.create.iter().map(|t| t.name.clone()).collect();
    admin
        .wait_until_ready(&created, timeout(global) * 2)
        .await
        .map_err(unavailable)?;
    println!(
        "applied: {} created, {} grown, {} realigned{}",
        plan.create.len(),
        plan.grow.len(),
        plan.realign.len(),
        if prune {
            format!(", {} deleted", plan.undeclared.len())
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &TopicPlan, prune: bool) {
    for topic in &plan.create {
        println!(
            "+ create {} (partitions {}, replication {}, retention.ms {})",
            topic.name,
            topic.partitions,
            topic.replication_factor,
            topic.retention.as_kafka_ms()
        );
    }
    for (name, from, to) in &plan.grow {
        println!("~ grow   {name} partitions {from} -> {to}");
    }
    for drift in &plan.drift {
        println!(
            "~ config {} {}: {} -> {}",
            drift.topic,
            drift.key,
            drift.actual.as_deref().unwrap_or("(unset)"),
            drift.wanted
        );
    }
    for name in &plan.undeclared {
        if prune {
            println!("- delete {name}");
        } else {
            println!("? undeclared {name} (kept; --prune deletes it)");
        }
    }
    for warning in &plan.warnings {
        println!("! {warning}");
    }
    println!(
        "{} to create, {} to grow, {} drifted, {} unchanged",
        plan.create.len(),
        plan.grow.len(),
        plan.drift.len(),
        plan.unchanged
    );
}
