//! Adding a group is its crate plus its `topics.yaml` entry; every place a person or a script
//! reads the list of groups is checked here against the topology: the crate folder and its
//! binary, `scripts/pipeline.sh` (what `scripts/up` starts, with its port), the Compose file and
//! the README's table of groups. (Kubernetes and monitoring are written by `circ deploy` from
//! the topology, and checked against it by the `circ` tests.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use circulatory::catalog::{Catalog, CatalogPaths};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn declared_groups() -> BTreeSet<String> {
    let catalog = Catalog::load(&CatalogPaths::in_dir(repo_root())).expect("the catalog");
    catalog.topology().groups.keys().cloned().collect()
}

/// `"name:port"` entries of the `SERVICES` array in `scripts/pipeline.sh`, in order.
fn pipeline_services() -> Vec<(String, String)> {
    let script = read("scripts/pipeline.sh");
    let start = script.find("SERVICES=(").expect("a SERVICES array");
    let end = start + script[start..].find("\n)").expect("the end of SERVICES");
    script[start..end]
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().strip_prefix('"')?.strip_suffix('"'))
        .map(|spec| {
            let (name, port) = spec.split_once(':').expect("name:port");
            (name.to_string(), port.to_string())
        })
        .collect()
}

/// The README's table of groups: name → port.
fn readme_groups() -> BTreeMap<String, String> {
    read("README.md")
        .lines()
        .skip_while(|l| !l.starts_with("| Group (binary) | Port |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string())
        })
        .collect()
}

#[test]
fn every_group_folder_is_a_declared_group_with_its_binary() {
    let declared = declared_groups();
    let mut folders = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join("services/groups")).expect("services/groups") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "common" {
            continue;
        }
        let manifest = read(&format!("services/groups/{name}/Cargo.toml"));
        assert!(
            manifest.contains(&format!("[[bin]]\nname = \"{name}\"")),
            "services/groups/{name}: the binary is not named {name}"
        );
        let lib = read(&format!("services/groups/{name}/src/lib.rs"));
        assert!(
            lib.contains(&format!("pub const GROUP: &str = \"{name}\";")),
            "services/groups/{name}: GROUP is not \"{name}\""
        );
        folders.insert(name);
    }
    assert_eq!(
        folders, declared,
        "group folders against the groups of topics.yaml"
    );
}

/// The `name` of a crate's `[package]` (its first line after the section header).
fn package_name(manifest: &str) -> String {
    let text = read(manifest);
    let package = text
        .split_once("[package]\n")
        .expect("a [package] section")
        .1;
    let line = package.lines().next().unwrap_or_default();
    line.strip_prefix("name = \"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{manifest}: [package] does not start with its name"))
        .to_string()
}

#[test]
fn every_crate_is_named_after_its_folder() {
    let mut crates = 0;
    for (folder, prefix) in [
        ("services", "circulatory-"),
        ("services/groups", "circulatory-group-"),
    ] {
        for entry in std::fs::read_dir(repo_root().join(folder)).expect(folder) {
            let name = entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .to_string();
            let manifest = format!("{folder}/{name}/Cargo.toml");
            if !repo_root().join(&manifest).exists() {
                continue;
            }
            assert_eq!(
                package_name(&manifest),
                format!("{prefix}{name}"),
                "{manifest}"
            );
            crates += 1;
        }
    }
    assert!(crates > 20, "only {crates} crates found");
}

#[test]
fn scripts_up_starts_every_group_on_a_port_of_its_own() {
    let services = pipeline_services();
    let groups: BTreeSet<String> = services
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| !["ingest", "gateway", "console"].contains(&name.as_str()))
        .collect();
    assert_eq!(groups, declared_groups(), "scripts/pipeline.sh SERVICES");
    let ports: BTreeSet<&String> = services.iter().map(|(_, port)| port).collect();
    assert_eq!(
        ports.len(),
        services.len(),
        "a port is used twice: {services:?}"
    );
    assert_eq!(
        services.len(),
        groups.len() + 3,
        "a service is listed twice: {services:?}"
    );
}

#[test]
fn the_readme_lists_every_group_with_its_port() {
    let ports: BTreeMap<String, String> = pipeline_services().into_iter().collect();
    let readme = readme_groups();
    assert_eq!(
        readme.keys().cloned().collect::<BTreeSet<_>>(),
        declared_groups(),
        "the README's table of groups"
    );
    for (group, port) in &readme {
        assert_eq!(
            Some(port),
            ports.get(group),
            "{group}: README and scripts/pipeline.sh disagree"
        );
    }
}

#[test]
fn compose_runs_every_group_once() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read("compose/docker-compose.yml")).expect("YAML");
    let services = compose["services"].as_mapping().expect("services");
    let declared = declared_groups();
    let mut running = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().expect("a service name");
        let command = service["command"].as_sequence();
        let first = command.and_then(|c| c.first()).and_then(|c| c.as_str());
        if let Some(binary) = first.filter(|b| declared.contains(*b)) {
            assert_eq!(name, binary, "the service running {binary} is named {name}");
            running.insert(binary.to_string());
        }
    }
    assert_eq!(
        running, declared,
        "groups run by compose/docker-compose.yml"
    );
}
