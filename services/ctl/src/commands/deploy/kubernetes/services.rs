//! The manifests that are not consumer groups: namespace, settings, catalog, the setup Job,
//! the ingest API, the realtime gateway and the operators' console.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::pods::{self, Pod, CATALOG, CATALOG_DIR, SETTINGS};
use super::{Context, File};
use crate::cli::Global;
use crate::commands::Failure;

/// The ingest API's and the gateway's port inside their pods.
const INGEST_PORT: u16 = 8080;
const GATEWAY_PORT: u16 = 8090;
const CONSOLE_PORT: u16 = 8070;

pub(crate) fn all(context: &Context, catalog: Value) -> Vec<File> {
    let items = &context.catalog_items;
    let namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": context.args.kube_namespace},
    });
    let mut files = vec![
        File {
            path: "namespace.yaml".into(),
            documents: vec![namespace],
        },
        File {
            path: "settings.yaml".into(),
            documents: vec![settings(context)],
        },
        File {
            path: "catalog.yaml".into(),
            documents: vec![catalog],
        },
        File {
            path: "setup.yaml".into(),
            documents: vec![setup_job(context, items)],
        },
    ];
    for (name, port, listen_env, min, max) in [
        ("ingest", INGEST_PORT, "CIRC_INGEST_LISTEN", 2, 10),
        ("gateway", GATEWAY_PORT, "CIRC_GATEWAY_LISTEN", 2, 10),
    ] {
        let pod = Pod {
            name,
            component: "api",
            args: vec![name.to_string()],
            port,
            env: vec![pods::var(listen_env, format!("0.0.0.0:{port}"))],
            resources: ("250m", "256Mi", "2", "1Gi"),
            grace_secs: 30,
            catalog_items: items,
        };
        files.push(File {
            path: format!("{name}.yaml").into(),
            documents: api(context, &pod, min, max),
        });
    }
    files.push(File {
        path: "console.yaml".into(),
        documents: console(context, items),
    });
    files
}

/// Connection settings every process reads (`envFrom`); secrets stay in the `circulatory`
/// Secret.
fn settings(context: &Context) -> Value {
    let args = context.args;
    let mut data = BTreeMap::from([
        ("CIRC_KAFKA_BOOTSTRAP", args.kafka.clone()),
        ("CIRC_REGISTRY_URL", args.cluster_registry.clone()),
        ("CIRC_REDIS_URL", args.redis.clone()),
        ("CIRC_OBJECT_STORE", args.object_store.clone()),
        ("CIRC_TOPOLOGY", format!("{CATALOG_DIR}/topics.yaml")),
        ("CIRC_SCHEMAS", format!("{CATALOG_DIR}/schemas")),
        (
            "CIRC_MODERATION_RULES",
            "/etc/circulatory/moderation-rules.yaml".into(),
        ),
        ("CIRC_HANDLER_LISTEN", "0.0.0.0:9100".into()),
        ("CIRC_LOG", "info".into()),
    ]);
    if let Some(ns) = context.topic_namespace {
        data.insert("CIRC_NAMESPACE", ns.to_string());
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": context.metadata(SETTINGS, "config"),
        "data": data,
    })
}

/// `topics.yaml` and every schema, with the items that mount them as files.
pub(crate) fn catalog(
    context: &Context,
    global: &Global,
) -> Result<(Value, Vec<(String, String)>), Failure> {
    let mut data = BTreeMap::new();
    data.insert("topics.yaml".to_string(), read(&global.topology)?);
    let mut items = vec![("topics.yaml".to_string(), "topics.yaml".to_string())];
    let mut domains: Vec<_> = std::fs::read_dir(&global.schemas)?
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    domains.sort_by_key(|e| e.file_name());
    for domain in domains {
        let mut schemas: Vec<_> = std::fs::read_dir(domain.path())?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "avsc"))
            .collect();
        schemas.sort_by_key(|e| e.file_name());
        for schema in schemas {
            let file = schema.file_name().to_string_lossy().into_owned();
            let domain = domain.file_name().to_string_lossy().into_owned();
            let key = format!("{domain}.{file}");
            items.push((key.clone(), format!("schemas/{domain}/{file}")));
            data.insert(key, read(&schema.path())?);
        }
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": context.metadata(CATALOG, "config"),
        "data": data,
    });
    Ok((config, items))
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Data(format!("cannot read {}: {e}", path.display())))
}

/// Migrations, topics (as declared, replication factor included) and schemas, once per rollout.
fn setup_job(context: &Context, items: &[(String, String)]) -> Value {
    let pod = Pod {
        name: "setup",
        component: "setup",
        args: vec![],
        port: 9100,
        env: vec![],
        resources: ("100m", "128Mi", "1", "256Mi"),
        grace_secs: 30,
        catalog_items: items,
    };
    let mut template = pods::template(context, &pod);
    let container = &mut template["spec"]["containers"][0];
    container["command"] = json!(["/bin/sh", "-c"]);
    container["args"] = json!(["circ db migrate && circ topics apply && circ schemas register"]);
    let object = container.as_object_mut().expect("a container");
    for key in ["ports", "readinessProbe", "livenessProbe"] {
        object.remove(key);
    }
    template["spec"]["restartPolicy"] = json!("OnFailure");
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": context.metadata("circulatory-setup", "setup"),
        "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 86400, "template": template},
    })
}

/// The console: one replica, because its replay rate limit and its cluster-level series
/// (`/metrics`, read by the alerts) are per process; a second copy would double both.
fn console(context: &Context, items: &[(String, String)]) -> Vec<Value> {
    let pod = Pod {
        name: "console",
        component: "console",
        args: vec!["console".into()],
        port: CONSOLE_PORT,
        env: vec![pods::var(
            "CIRC_CONSOLE_LISTEN",
            format!("0.0.0.0:{CONSOLE_PORT}"),
        )],
        resources: ("100m", "128Mi", "1", "512Mi"),
        grace_secs: 30,
        catalog_items: items,
    };
    let mut documents = api(context, &pod, 1, 1);
    documents.truncate(2);
    documents[0]["spec"]["strategy"] = json!({"type": "Recreate"});
    documents
}

/// A Deployment, its Service and a CPU-based HorizontalPodAutoscaler.
fn api(context: &Context, pod: &Pod, min: u32, max: u32) -> Vec<Value> {
    let name = pod.name;
    let selector = json!({"app.kubernetes.io/name": name});
    vec![
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": context.metadata(name, pod.component),
            "spec": {
                "replicas": min,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": pods::template(context, pod),
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": context.metadata(name, pod.component),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": pod.port, "targetPort": "http"}],
            },
        }),
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": context.metadata(name, pod.component),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": min,
                "maxReplicas": max,
                "metrics": [{
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }],
            },
        }),
    ]
}
