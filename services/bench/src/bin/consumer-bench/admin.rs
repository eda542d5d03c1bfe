//! The namespace's topics: created as the catalog declares them, deleted with its consumer groups
//! at the end of a run.

use std::sync::Arc;
use std::time::Duration;

use circulatory::kafka;
use circulatory::topics::{TopicAdmin, TopicPlan};
use clap::Args;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

use crate::Env;

/// Creates the topics of groups and extra topics in the namespace.
#[derive(Debug, Args)]
pub(crate) struct SetupArgs {
    /// Groups whose topics to create (main topics, retry rungs, dead letters, replay).
    #[arg(long, value_delimiter = ',', required = true)]
    groups: Vec<String>,
    /// Extra topics as `NAME:PARTITIONS` (the namespace is prefixed), e.g. for Kafka's own tools.
    #[arg(long = "extra")]
    extra: Vec<String>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn setup(env: &Env, args: &SetupArgs) -> Result<serde_json::Value, String> {
    let mut names = Vec::new();
    let mut groups = serde_json::Map::new();
    for name in &args.groups {
        let group = env
            .catalog
            .group(name)
            .ok_or_else(|| format!("no group `{name}` in the topology"))?;
        let main = env.catalog.group_topics(group);
        names.extend(main.iter().cloned());
        names.extend(
            group
                .retry_delays
                .iter()
                .map(|d| env.catalog.topic_name(&group.retry_topic_base(*d))),
        );
        names.push(env.catalog.topic_name(&group.dead_letter_topic_base()));
        names.push(env.catalog.topic_name(&group.replay_topic_base()));
        groups.insert(
            name.clone(),
            json!({
                "subscribe": group.subscribe,
                "main_topics": main,
                "retry_delays_ms": group.retry_delays.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
                "max_attempts": group.max_attempts,
                "max_in_flight": group.max_in_flight,
            }),
        );
    }
    names.sort();
    names.dedup();
    let specs: Vec<_> = env
        .catalog
        .topic_specs(Some(1))
        .into_iter()
        .filter(|s| names.contains(&s.name))
        .collect();
    if specs.len() != names.len() {
        return Err(format!(
            "the catalog declares {} of the {} topics",
            specs.len(),
            names.len()
        ));
    }
    let mut created: Vec<serde_json::Value> = specs
        .iter()
        .map(|s| json!({"name": s.name, "partitions": s.partitions}))
        .collect();
    let topic_admin = TopicAdmin::new(&env.kafka, TIMEOUT).map_err(|e| e.to_string())?;
    topic_admin
        .apply(
            &TopicPlan {
                create: specs,
                ..TopicPlan::default()
            },
            false,
        )
        .await
        .map_err(|e| e.to_string())?;

    let mut extra = Vec::new();
    for spec in &args.extra {
        let (base, partitions) = spec
            .rsplit_once(':')
            .and_then(|(n, p)| p.parse::<i32>().ok().map(|p| (n, p)))
            .ok_or_else(|| format!("--extra `{spec}`: expected NAME:PARTITIONS"))?;
        extra.push((env.catalog.topic_name(base), partitions));
    }
    if !extra.is_empty() {
        let admin = kafka::admin(&env.kafka).map_err(|e| e.to_string())?;
        let topics: Vec<NewTopic> = extra
            .iter()
            .map(|(name, partitions)| {
                NewTopic::new(name, *partitions, TopicReplication::Fixed(1))
                    .set("min.insync.replicas", "1")
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(TIMEOUT))
            .operation_timeout(Some(TIMEOUT));
        for result in admin
            .create_topics(&topics, &options)
            .await
            .map_err(|e| e.to_string())?
        {
            result.map_err(|(name, code)| format!("create {name}: {code}"))?;
        }
        for (name, partitions) in &extra {
            names.push(name.clone());
            created.push(json!({"name": name, "partitions": partitions}));
        }
    }
    topic_admin
        .wait_until_ready(&names, TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({"namespace": env.namespace, "topics": created, "groups": groups}))
}

/// Deletes every topic and consumer group whose name starts with `<namespace>.`.
pub(crate) async fn cleanup(env: &Env) -> Result<serde_json::Value, String> {
    let prefix = format!("{}.", env.namespace);
    let reader: Arc<BaseConsumer> =
        Arc::new(kafka::reader::<BaseConsumer>(&env.kafka).map_err(|e| e.to_string())?);
    let metadata = kafka::fetch_metadata(reader.clone(), None, TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let topics: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let list_reader = reader.clone();
    let group_prefix = prefix.clone();
    let groups: Vec<String> = tokio::task::spawn_blocking(move || {
        list_reader.fetch_group_list(None, TIMEOUT).map(|list| {
            list.groups()
                .iter()
                .map(|g| g.name().to_string())
                .filter(|n| n.starts_with(&group_prefix))
                .collect()
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let admin = kafka::admin(&env.kafka).map_err(|e| e.to_string())?;
    let options = AdminOptions::new()
        .request_timeout(Some(TIMEOUT))
        .operation_timeout(Some(TIMEOUT));
    let mut failures = Vec::new();
    if !groups.is_empty() {
        let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
        for result in admin
            .delete_groups(&refs, &options)
            .await
            .map_err(|e| e.to_string())?
        {
            if let Err((name, code)) = result {
                failures.push(format!("group {name}: {code}"));
            }
        }
    }
    if !topics.is_empty() {
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        for result in admin
            .delete_topics(&refs, &options)
            .await
            .map_err(|e| e.to_string())?
        {
            if let Err((name, code)) = result {
                failures.push(format!("topic {name}: {code}"));
            }
        }
    }
    Ok(json!({
        "namespace": env.namespace,
        "topics_deleted": topics.len() - failures.iter().filter(|f| f.starts_with("topic")).count(),
        "groups_deleted": groups.len() - failures.iter().filter(|f| f.starts_with("group")).count(),
        "failures": failures,
    }))
}
