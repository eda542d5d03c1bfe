//! The pod template every Circulatory process shares: one image, the settings and secrets as
//! environment, the catalog mounted from its ConfigMap, probes on the process's own endpoints,
//! bounded resources, and a grace period longer than the process's drain.

use serde_json::{json, Value};

use super::{labels, Context};

/// Where the catalog ConfigMap is mounted.
pub(crate) const CATALOG_DIR: &str = "/etc/circulatory/catalog";
pub(crate) const SETTINGS: &str = "circulatory-settings";
pub(crate) const CATALOG: &str = "circulatory-catalog";
/// The Secret the operator creates: `database-url` and `jwt-secret`.
pub(crate) const SECRET: &str = "circulatory";

/// One process as a pod.
pub(crate) struct Pod<'a> {
    pub(crate) name: &'a str,
    pub(crate) component: &'a str,
    pub(crate) args: Vec<String>,
    pub(crate) port: u16,
    pub(crate) env: Vec<Value>,
    /// (cpu request, memory request, cpu limit, memory limit)
    pub(crate) resources: (&'a str, &'a str, &'a str, &'a str),
    /// Longer than the process's drain, so SIGTERM ends in a clean stop, not a SIGKILL.
    pub(crate) grace_secs: u32,
    /// The schema items of the catalog ConfigMap (key, path).
    pub(crate) catalog_items: &'a [(String, String)],
}

pub(crate) fn template(context: &Context, pod: &Pod) -> Value {
    let (cpu, memory, cpu_limit, memory_limit) = pod.resources;
    let items: Vec<Value> = pod
        .catalog_items
        .iter()
        .map(|(key, path)| json!({"key": key, "path": path}))
        .collect();
    json!({
        "metadata": {"labels": labels(pod.name, pod.component)},
        "spec": {
            "terminationGracePeriodSeconds": pod.grace_secs,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "fsGroup": 10001},
            "containers": [{
                "name": pod.name,
                "image": context.args.image,
                "args": pod.args,
                "ports": [{"name": "http", "containerPort": pod.port}],
                "envFrom": [{"configMapRef": {"name": SETTINGS}}],
                "env": env(pod),
                "readinessProbe": probe("/readyz", 5),
                "livenessProbe": probe("/healthz", 10),
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"cpu": cpu_limit, "memory": memory_limit},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "catalog", "mountPath": CATALOG_DIR, "readOnly": true},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }],
            "volumes": [
                {"name": "catalog", "configMap": {"name": CATALOG, "items": items}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            ],
        }
    })
}

fn env(pod: &Pod) -> Vec<Value> {
    let mut env = vec![
        secret("DATABASE_URL", "database-url"),
        secret("CIRC_JWT_SECRET", "jwt-secret"),
    ];
    env.extend(pod.env.iter().cloned());
    env
}

fn secret(name: &str, key: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}})
}

/// An environment variable set to the pod's own name (a stable instance id in a StatefulSet).
pub(crate) fn pod_name(name: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
}

pub(crate) fn var(name: &str, value: impl Into<String>) -> Value {
    json!({"name": name, "value": value.into()})
}

fn probe(path: &str, period: u32) -> Value {
    json!({
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": 3,
    })
}
