//! `compose/kubernetes/` is what `circ deploy kubernetes` writes now, and its autoscalers follow
//! the catalog: one KEDA trigger per main topic a group reads (never its retry topics), at most
//! as many replicas as the widest of those topics has partitions, the group's `lag_threshold`.
//! (`scripts/interop/test_kubernetes_manifests.py` validates the same files for Kubernetes.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use circulatory::catalog::{Catalog, CatalogPaths};
use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generate(out: &Path) {
    let root = root();
    let output = Command::new(env!("CARGO_BIN_EXE_circ"))
        .args(["deploy", "kubernetes", "--out"])
        .arg(out)
        .arg("--topology")
        .arg(root.join("topics.yaml"))
        .arg("--schemas")
        .arg(root.join("schemas"))
        // What the environment says of the local stack must not leak into the manifests.
        .env("CIRC_REGISTRY_URL", "http://127.0.0.1:1/elsewhere")
        .env("CIRC_KAFKA_BOOTSTRAP", "127.0.0.1:1")
        .env_remove("CIRC_NAMESPACE")
        .output()
        .expect("circ runs");
    assert!(output.status.success(), "{output:?}");
}

/// Every file under `dir`, by path relative to it.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for sub in ["", "groups"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten().filter(|e| e.path().is_file()) {
            let name = Path::new(sub).join(entry.file_name());
            let text = std::fs::read_to_string(entry.path()).unwrap();
            files.insert(name.to_string_lossy().into_owned(), text);
        }
    }
    files
}

fn fresh() -> (PathBuf, BTreeMap<String, String>) {
    let out = std::env::temp_dir().join(format!("circ-k8s-{}", uuid::Uuid::new_v4()));
    generate(&out);
    let files = tree(&out);
    std::fs::remove_dir_all(&out).ok();
    (out, files)
}

#[test]
fn compose_kubernetes_is_what_circ_deploy_kubernetes_writes() {
    let (_, generated) = fresh();
    let committed = tree(&root().join("compose/kubernetes"));
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "run `circ deploy kubernetes`"
    );
    for (path, text) in &generated {
        assert!(
            committed[path] == *text,
            "compose/kubernetes/{path} is stale: run `circ deploy kubernetes`"
        );
    }
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .collect()
}

#[test]
fn each_group_scales_on_its_main_topics_up_to_their_partitions() {
    let catalog = Catalog::load(&CatalogPaths::in_dir(root())).unwrap();
    let (_, files) = fresh();
    let specs = catalog.topic_specs(None);
    for group in catalog.topology().groups.values() {
        let docs = documents(&files[&format!("groups/{}.yaml", group.name)]);
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Service", "StatefulSet", "ScaledObject"]);
        let scaled = &docs[2]["spec"];
        let topics: Vec<&str> = scaled["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["metadata"]["topic"].as_str().unwrap())
            .collect();
        let main = catalog.group_topics(group);
        assert_eq!(topics, main, "{}", group.name);
        let widest = main
            .iter()
            .map(|t| specs.iter().find(|s| &s.name == t).unwrap().partitions)
            .max()
            .unwrap();
        assert_eq!(scaled["maxReplicaCount"], widest, "{}", group.name);
        for trigger in scaled["triggers"].as_array().unwrap() {
            assert_eq!(trigger["metadata"]["consumerGroup"], group.name.as_str());
            assert_eq!(
                trigger["metadata"]["lagThreshold"],
                group.lag_threshold.to_string()
            );
        }
        // The pod's name is its instance id: static membership across restarts.
        let env = &docs[1]["spec"]["template"]["spec"]["containers"][0]["env"];
        let instance = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "CIRC_INSTANCE_ID")
            .expect("CIRC_INSTANCE_ID");
        assert_eq!(
            instance["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
    }
}

#[test]
fn the_catalog_config_map_holds_the_topology_and_every_schema() {
    let (_, files) = fresh();
    let config = &documents(&files["catalog.yaml"])[0];
    let topology = std::fs::read_to_string(root().join("topics.yaml")).unwrap();
    assert_eq!(config["data"]["topics.yaml"], topology.as_str());
    let catalog = Catalog::load(&CatalogPaths::in_dir(root())).unwrap();
    for event in catalog.events() {
        let key = format!("{}.{}.avsc", event.route.domain, event.name());
        assert!(config["data"].get(&key).is_some(), "{key} missing");
    }
}

#[test]
fn the_console_runs_once_behind_a_service() {
    let (_, files) = fresh();
    let docs = documents(&files["console.yaml"]);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
    let spec = &docs[0]["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "Recreate");
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["args"][0], "console");
    let listen = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "CIRC_CONSOLE_LISTEN")
        .expect("CIRC_CONSOLE_LISTEN");
    assert_eq!(listen["value"], "0.0.0.0:8070");
    assert_eq!(docs[1]["spec"]["ports"][0]["port"], 8070);
    let kustomization = documents(&files["kustomization.yaml"]);
    let resources = kustomization[0]["resources"].as_array().unwrap();
    assert!(resources.iter().any(|r| r == "console.yaml"));
}
