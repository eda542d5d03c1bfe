//! The Kubernetes manifests: a namespace, the settings and the catalog as ConfigMaps, a setup
//! Job (migrations, topics, schemas), the ingest API and the gateway (Deployment, Service, HPA),
//! the console (one replica and its Service), and per consumer group a StatefulSet (stable pod names are stable instance ids: static
//! membership) with a KEDA ScaledObject scaling it on the lag of its main topics.

mod groups;
mod pods;
mod services;

use std::path::{Path, PathBuf};

use circulatory::catalog::Catalog;
use serde_json::{json, Value};

use crate::cli::{Global, KubernetesArgs};
use crate::commands::Failure;

/// One file of the output: its path under the output folder and its documents.
pub(crate) struct File {
    pub(crate) path: PathBuf,
    pub(crate) documents: Vec<Value>,
}

/// What every manifest needs to know besides the catalog.
pub(crate) struct Context<'a> {
    pub(crate) args: &'a KubernetesArgs,
    /// The topic namespace (`CIRC_NAMESPACE`), if any.
    pub(crate) topic_namespace: Option<&'a str>,
    /// The catalog ConfigMap's keys and the paths they are mounted at.
    pub(crate) catalog_items: Vec<(String, String)>,
}

impl Context<'_> {
    pub(crate) fn metadata(&self, name: &str, component: &str) -> Value {
        json!({
            "name": name,
            "namespace": self.args.kube_namespace,
            "labels": labels(name, component),
        })
    }
}

pub(crate) fn labels(name: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "circulatory",
        "app.kubernetes.io/component": component,
    })
}

/// Every file, in a stable order.
pub(crate) fn manifests(
    catalog: &Catalog,
    args: &KubernetesArgs,
    global: &Global,
) -> Result<Vec<File>, Failure> {
    let mut context = Context {
        args,
        topic_namespace: global.namespace.as_deref(),
        catalog_items: Vec::new(),
    };
    let (catalog_file, items) = services::catalog(&context, global)?;
    context.catalog_items = items;
    let mut files = services::all(&context, catalog_file);
    for group in catalog.topology().groups.values() {
        files.push(groups::file(&context, catalog, group));
    }
    files.push(kustomization(&files));
    Ok(files)
}

fn kustomization(files: &[File]) -> File {
    let resources: Vec<String> = files
        .iter()
        .map(|f| f.path.to_string_lossy().into_owned())
        .collect();
    File {
        path: "kustomization.yaml".into(),
        documents: vec![json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
        })],
    }
}

const HEADER: &str = "# Written by `circ deploy kubernetes` from topics.yaml and schemas/; edit those and run it again.\n";

/// The text of a file: its documents as YAML, separated by `---`.
pub(crate) fn render(file: &File) -> Result<String, Failure> {
    let mut text = String::from(HEADER);
    for (i, document) in file.documents.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        text.push_str(&serde_yaml::to_string(document)?);
    }
    Ok(text)
}

/// Writes the files, replacing the YAML files already in `out` (and its `groups/`), so that a
/// group removed from the catalog loses its manifest.
pub(crate) fn write(out: &Path, files: &[File]) -> Result<(), Failure> {
    for folder in [out.to_path_buf(), out.join("groups")] {
        if let Ok(entries) = std::fs::read_dir(&folder) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|e| e == "yaml") {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
    }
    for file in files {
        let path = out.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, render(file)?)?;
    }
    Ok(())
}
