//! `circ topics plan|apply`: make the cluster match the catalog.
//!
//! The plan lists topics to create, partition counts to raise, managed configs that drifted, and
//! what cannot be fixed in place (fewer partitions than the cluster has, a different replication
//! factor). Apply creates, grows and re-aligns; it deletes only with `prune`, and only topics whose
//! names have the project's shape in this catalog's namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::catalog::{Catalog, TopicSpec};
use crate::kafka::{self, KafkaConfig};
use crate::topology::Tier;

/// A topic as it is on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingTopic {
    pub partitions: i32,
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDrift {
    pub topic: String,
    pub key: String,
    pub actual: Option<String>,
    pub wanted: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicPlan {
    pub create: Vec<TopicSpec>,
    /// `(topic, current, wanted)` partition counts to raise.
    pub grow: Vec<(String, i32, i32)>,
    pub drift: Vec<ConfigDrift>,
    /// The full managed config of each drifted topic, as apply will set it.
    pub realign: Vec<(String, Vec<(String, String)>)>,
    /// Differences that cannot be applied in place: shrinking, replication factor changes.
    pub warnings: Vec<String>,
    /// Topics of the project's shape in this namespace that the catalog no longer declares.
    pub undeclared: Vec<String>,
    pub unchanged: usize,
}

impl TopicPlan {
    /// Whether applying would change nothing (warnings and undeclared topics aside).
    pub fn is_noop(&self) -> bool {
        self.create.is_empty() && self.grow.is_empty() && self.drift.is_empty()
    }
}

/// Compares the wanted topics with what exists (pure, so it is unit-tested without a cluster).
pub fn diff(
    wanted: &[TopicSpec],
    existing: &BTreeMap<String, ExistingTopic>,
    is_managed_name: impl Fn(&str) -> bool,
) -> TopicPlan {
    let mut plan = TopicPlan::default();
    let wanted_names: BTreeSet<&str> = wanted.iter().map(|t| t.name.as_str()).collect();
    for spec in wanted {
        let Some(current) = existing.get(&spec.name) else {
            plan.create.push(spec.clone());
            continue;
        };
        let mut changed = false;
        if current.partitions < spec.partitions {
            plan.grow
                .push((spec.name.clone(), current.partitions, spec.partitions));
            changed = true;
        } else if current.partitions > spec.partitions {
            plan.warnings.push(format!(
                "{}: has {} partitions, the catalog says {} (partitions cannot be removed)",
                spec.name, current.partitions, spec.partitions
            ));
        }
        if current.replication_factor != spec.replication_factor {
            plan.warnings.push(format!(
                "{}: replication factor is {}, the catalog says {} (reassign partitions to change it)",
                spec.name, current.replication_factor, spec.replication_factor
            ));
        }
        let configs = spec.configs();
        let drift_before = plan.drift.len();
        for (key, value) in &configs {
            let actual = current.configs.get(*key);
            if actual != Some(value) {
                plan.drift.push(ConfigDrift {
                    topic: spec.name.clone(),
                    key: key.to_string(),
                    actual: actual.cloned(),
                    wanted: value.clone(),
                });
            }
        }
        if plan.drift.len() > drift_before {
            plan.realign.push((
                spec.name.clone(),
                configs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ));
            changed = true;
        }
        if !changed {
            plan.unchanged += 1;
        }
    }
    plan.undeclared = existing
        .keys()
        .filter(|name| !wanted_names.contains(name.as_str()) && is_managed_name(name))
        .cloned()
        .collect();
    plan
}

/// Whether `name` has the shape of a topic this catalog would own: `<domain>.<tier>`,
/// `<group>.retry.<delay>`, `<group>.dlq` or `<group>.replay`, under the catalog's namespace.
pub fn is_managed_name(catalog: &Catalog, name: &str) -> bool {
    let rest = match catalog.namespace() {
        Some(ns) => match name.strip_prefix(ns).and_then(|r| r.strip_prefix('.')) {
            Some(rest) => rest,
            None => return false,
        },
        None => name,
    };
    let parts: Vec<&str> = rest.split('.').collect();
    match parts.as_slice() {
        [group, "dlq" | "replay"] => !group.is_empty(),
        [domain, tier] => {
            catalog.topology().domains.contains_key(*domain) && tier.parse::<Tier>().is_ok()
        }
        [group, "retry", delay] => !group.is_empty() && crate::duration::parse(delay).is_ok(),
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Failed(String),
}

/// Topic management against one cluster.
pub struct TopicAdmin {
    admin: AdminClient<DefaultClientContext>,
    metadata: Arc<rdkafka::consumer::BaseConsumer>,
    timeout: Duration,
}

impl TopicAdmin {
    pub fn new(kafka: &KafkaConfig, timeout: Duration) -> Result<TopicAdmin, TopicsError> {
        Ok(TopicAdmin {
            admin: kafka::admin(kafka)?,
            metadata: Arc::new(kafka::reader(kafka)?),
            timeout,
        })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Every topic on the cluster (internal ones excluded) with partitions, RF and configs.
    pub async fn existing(&self) -> Result<BTreeMap<String, ExistingTopic>, TopicsError> {
        let metadata = kafka::fetch_metadata(self.metadata.clone(), None, self.timeout).await?;
        let mut topics: BTreeMap<String, ExistingTopic> = metadata
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__") && t.error().is_none())
            .map(|t| {
                let replication_factor = t
                    .partitions()
                    .iter()
                    .map(|p| p.replicas().len() as i32)
                    .max()
                    .unwrap_or(0);
                (
                    t.name().to_string(),
                    ExistingTopic {
                        partitions: t.partitions().len() as i32,
                        replication_factor,
                        configs: BTreeMap::new(),
                    },
                )
            })
            .collect();
        let names: Vec<String> = topics.keys().cloned().collect();
        for chunk in names.chunks(100) {
            let specifiers: Vec<ResourceSpecifier> =
                chunk.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
            let results = self
                .admin
                .describe_configs(specifiers.iter(), &self.options())
                .await?;
            for (name, result) in chunk.iter().zip(results) {
                let resource =
                    result.map_err(|code| TopicsError::Failed(format!("{name}: {code}")))?;
                if let Some(topic) = topics.get_mut(name) {
                    topic.configs = resource
                        .entries
                        .into_iter()
                        .filter_map(|e| e.value.map(|v| (e.name, v)))
                        .collect();
                }
            }
        }
        Ok(topics)
    }

    pub async fn plan(
        &self,
        catalog: &Catalog,
        replication_factor: Option<i32>,
    ) -> Result<TopicPlan, TopicsError> {
        let existing = self.existing().await?;
        Ok(diff(
            &catalog.topic_specs(replication_factor),
            &existing,
            |name| is_managed_name(catalog, name),
        ))
    }

    /// Applies a plan; `prune` also deletes the plan's undeclared topics.
    pub async fn apply(&self, plan: &TopicPlan, prune: bool) -> Result<(), TopicsError> {
        let mut failures = Vec::new();
        let configs: Vec<Vec<(&'static str, String)>> =
            plan.create.iter().map(TopicSpec::configs).collect();
        let new_topics: Vec<NewTopic> = plan
            .create
            .iter()
            .zip(&configs)
            .map(|(spec, configs)| {
                configs.iter().fold(
                    NewTopic::new(
                        &spec.name,
                        spec.partitions,
                        TopicReplication::Fixed(spec.replication_factor),
                    ),
                    |topic, (key, value)| topic.set(key, value),
                )
            })
            .collect();
        if !new_topics.is_empty() {
            for result in self
                .admin
                .create_topics(&new_topics, &self.options())
                .await?
            {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => failures.push(format!("create {name}: {code}")),
                }
            }
        }
        let growth: Vec<NewPartitions> = plan
            .grow
            .iter()
            .map(|(name, _, wanted)| NewPartitions::new(name, *wanted as usize))
            .collect();
        if !growth.is_empty() {
            for result in self
                .admin
                .create_partitions(&growth, &self.options())
                .await?
            {
                if let Err((name, code)) = result {
                    failures.push(format!("grow {name}: {code}"));
                }
            }
        }
        // AlterConfigs (non-incremental) replaces a topic's whole dynamic config, hence the full
        // managed set per drifted topic.
        let alters: Vec<AlterConfig> = plan
            .realign
            .iter()
            .map(|(topic, entries)| {
                entries.iter().fold(
                    AlterConfig::new(ResourceSpecifier::Topic(topic)),
                    |alter, (key, value)| alter.set(key, value),
                )
            })
            .collect();
        if !alters.is_empty() {
            for result in self.admin.alter_configs(&alters, &self.options()).await? {
                if let Err((specifier, code)) = result {
                    failures.push(format!("configure {specifier:?}: {code}"));
                }
            }
        }
        if prune && !plan.undeclared.is_empty() {
            let names: Vec<&str> = plan.undeclared.iter().map(String::as_str).collect();
            for result in self.admin.delete_topics(&names, &self.options()).await? {
                if let Err((name, code)) = result {
                    failures.push(format!("delete {name}: {code}"));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(TopicsError::Failed(failures.join("; ")))
        }
    }

    /// Waits until every named topic has leaders for all partitions (after creation, metadata
    /// takes a moment to propagate).
    pub async fn wait_until_ready(
        &self,
        topics: &[String],
        deadline: Duration,
    ) -> Result<(), TopicsError> {
        let started = std::time::Instant::now();
        loop {
            let metadata = kafka::fetch_metadata(self.metadata.clone(), None, self.timeout).await?;
            let ready: BTreeSet<&str> = metadata
                .topics()
                .iter()
                .filter(|t| {
                    t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
                .map(|t| t.name())
                .collect();
            let missing: Vec<&String> = topics
                .iter()
                .filter(|t| !ready.contains(t.as_str()))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if started.elapsed() > deadline {
                return Err(TopicsError::Failed(format!(
                    "topics not ready after {deadline:?}: {missing:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::TopicKind;
    use crate::topology::{CleanupPolicy, Retention};

    fn spec(name: &str, partitions: i32) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            kind: TopicKind::DeadLetter { group: "g".into() },
            partitions,
            replication_factor: 1,
            min_insync_replicas: 1,
            retention: Retention::For(Duration::from_secs(60)),
            cleanup_policy: CleanupPolicy::Delete,
        }
    }

    fn existing(partitions: i32, retention_ms: &str) -> ExistingTopic {
        ExistingTopic {
            partitions,
            replication_factor: 1,
            configs: [
                ("cleanup.policy", "delete"),
                ("retention.ms", retention_ms),
                ("min.insync.replicas", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }

    #[test]
    fn plan_creates_grows_and_reports_drift() {
        let wanted = [
            spec("a.dlq", 3),
            spec("b.dlq", 6),
            spec("c.dlq", 2),
            spec("d.dlq", 1),
        ];
        let cluster: BTreeMap<String, ExistingTopic> = [
            ("b.dlq", existing(3, "60000")),
            ("c.dlq", existing(4, "60000")),
            ("d.dlq", existing(1, "1000")),
            ("old.dlq", existing(1, "60000")),
            ("someone.elses", existing(1, "60000")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let plan = diff(&wanted, &cluster, |n| n.ends_with(".dlq"));
        assert_eq!(
            plan.create.iter().map(|t| &t.name).collect::<Vec<_>>(),
            ["a.dlq"]
        );
        assert_eq!(plan.grow, [("b.dlq".to_string(), 3, 6)]);
        assert_eq!(plan.drift.len(), 1);
        assert_eq!(plan.drift[0].key, "retention.ms");
        assert_eq!(plan.realign[0].0, "d.dlq");
        assert_eq!(plan.realign[0].1.len(), 3, "all managed keys are re-sent");
        assert!(plan.warnings[0].contains("cannot be removed"));
        assert_eq!(plan.undeclared, ["old.dlq"]);
        assert_eq!(plan.unchanged, 1);
        assert!(!plan.is_noop());
    }

    #[test]
    fn a_matching_cluster_is_a_noop() {
        let wanted = [spec("a.dlq", 3)];
        let cluster = [("a.dlq".to_string(), existing(3, "60000"))]
            .into_iter()
            .collect();
        let plan = diff(&wanted, &cluster, |_| true);
        assert!(plan.is_noop());
        assert_eq!(plan.unchanged, 1);
    }
}
