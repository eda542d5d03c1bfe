//! `circ lag`: each group's backlog from its committed offsets, without joining the group.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use circulatory::catalog::Catalog;
use circulatory::consumer::lag::{groups_lag, GroupLag};

use crate::cli::{Global, LagArgs};
use crate::commands::{kafka_config, print_json, timeout, Failure, Outcome};

pub(crate) async fn run(global: &Global, catalog: Catalog, args: LagArgs) -> Outcome {
    let groups = if args.groups.is_empty() {
        let mut all: Vec<_> = catalog.topology().groups.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    } else {
        let mut chosen = Vec::new();
        for name in &args.groups {
            let group = catalog
                .group(name)
                .ok_or_else(|| Failure::Usage(format!("no group `{name}` in the topology")))?;
            chosen.push(group.clone());
        }
        chosen
    };
    let lags = groups_lag(
        &kafka_config(global),
        Arc::new(catalog),
        groups,
        timeout(global),
    )
    .await
    .map_err(|e| Failure::Unavailable(anyhow!("kafka: {e}")))?;
    if args.json {
        for lag in &lags {
            print_json(lag)?;
        }
    } else {
        print_table(&lags, args.partitions);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(lags: &[GroupLag], partitions: bool) {
    let width = lags.iter().map(|l| l.group.len()).max().unwrap_or(5).max(5);
    println!(
        "{:<width$}  {:>10}  {:>10}  {:>10}",
        "GROUP", "WAITING", "DELAYED", "REPLAYING"
    );
    for lag in lags {
        let missing = if lag.missing_topics.is_empty() {
            String::new()
        } else {
            format!("  (missing: {})", lag.missing_topics.join(", "))
        };
        println!(
            "{:<width$}  {:>10}  {:>10}  {:>10}{missing}",
            lag.group, lag.waiting, lag.delayed, lag.replaying
        );
        if partitions {
            for p in lag.partitions.iter().filter(|p| p.end > p.start) {
                let committed = p
                    .committed
                    .map_or_else(|| "-".to_string(), |c| c.to_string());
                println!(
                    "  {}[{}]  committed {committed}  end {}  lag {}",
                    p.topic, p.partition, p.end, p.lag
                );
            }
        }
    }
}
