//! A consumer group: a StatefulSet (its pods' stable names are their Kafka instance ids, so a
//! restarted pod takes its partitions back at once), the headless Service it needs, and a KEDA
//! ScaledObject adding replicas as its main topics' lag grows.
//!
//! The scaler watches the main topics only, one trigger each: lag on a `<group>.retry.<delay>`
//! topic is there by design (records wait until due) and must not add pods. More replicas than
//! the widest main topic has partitions would idle, so that is the most.

use circulatory::catalog::Catalog;
use circulatory::topology::Group;
use serde_json::{json, Value};

use super::pods::{self, Pod};
use super::{Context, File};

const METRICS_PORT: u16 = 9100;

pub(crate) fn file(context: &Context, catalog: &Catalog, group: &Group) -> File {
    let name = group.name.as_str();
    let pod = Pod {
        name,
        component: "consumer-group",
        args: vec![name.to_string()],
        port: METRICS_PORT,
        env: vec![pods::pod_name("CIRC_INSTANCE_ID")],
        resources: ("100m", "128Mi", "1", "512Mi"),
        // The drain timeout is 10 s (CIRC_DRAIN_TIMEOUT).
        grace_secs: 30,
        catalog_items: &context.catalog_items,
    };
    File {
        path: format!("groups/{name}.yaml").into(),
        documents: vec![
            headless_service(context, name),
            stateful_set(context, &pod),
            scaled_object(context, catalog, group),
        ],
    }
}

fn headless_service(context: &Context, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": context.metadata(name, "consumer-group"),
        "spec": {
            "clusterIP": "None",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": METRICS_PORT, "targetPort": "http"}],
        },
    })
}

fn stateful_set(context: &Context, pod: &Pod) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": context.metadata(pod.name, pod.component),
        "spec": {
            "serviceName": pod.name,
            "replicas": 1,
            // Pods start and stop together: a scale-up does not wait for each pod in turn.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app.kubernetes.io/name": pod.name}},
            "template": pods::template(context, pod),
        },
    })
}

fn scaled_object(context: &Context, catalog: &Catalog, group: &Group) -> Value {
    let topics = catalog.group_topics(group);
    let specs = catalog.topic_specs(None);
    let partitions = topics
        .iter()
        .filter_map(|t| specs.iter().find(|s| &s.name == t))
        .map(|s| s.partitions)
        .max()
        .unwrap_or(1);
    let triggers: Vec<Value> = topics
        .iter()
        .map(|topic| {
            json!({
                "type": "kafka",
                "metadata": {
                    "bootstrapServers": context.args.kafka,
                    "consumerGroup": catalog.topic_name(&group.name),
                    "topic": topic,
                    "lagThreshold": group.lag_threshold.to_string(),
                    "offsetResetPolicy": "earliest",
                    "allowIdleConsumers": "false",
                },
            })
        })
        .collect();
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": context.metadata(&group.name, "consumer-group"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": group.name},
            "minReplicaCount": 1,
            "maxReplicaCount": partitions,
            "pollingInterval": 15,
            // Scale down slowly: each pod removed leaves its partitions unprocessed for the
            // session timeout (static membership) before the others take them.
            "cooldownPeriod": 300,
            "triggers": triggers,
        },
    })
}
