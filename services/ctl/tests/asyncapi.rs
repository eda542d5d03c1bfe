//! `circ asyncapi` writes a document the AsyncAPI project's own parser accepts without an
//! error, Avro payloads included, in YAML and in JSON alike. The parser is the npm package
//! `@asyncapi/parser` with `@asyncapi/avro-schema-parser` (scripts/asyncapi/package.json),
//! installed by scripts/test; `CIRC_ASYNCAPI_NODE_MODULES` says where.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn node_modules() -> PathBuf {
    let path = std::env::var_os("CIRC_ASYNCAPI_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME");
            PathBuf::from(home).join(".cache/circulatory/node/asyncapi/node_modules")
        });
    assert!(
        path.join("@asyncapi/parser").is_dir(),
        "the AsyncAPI parser is not installed in {} (scripts/test installs it)",
        path.display()
    );
    path
}

fn document(format: &str) -> String {
    let root = root();
    let output = Command::new(env!("CARGO_BIN_EXE_circ"))
        .args(["asyncapi", "--format", format])
        .arg("--topology")
        .arg(root.join("topics.yaml"))
        .arg("--schemas")
        .arg(root.join("schemas"))
        .output()
        .expect("circ runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Runs the AsyncAPI parser on `text`, written to a temporary file named `<name>.<extension>`.
fn parse(text: &str, name: &str, extension: &str) -> std::process::Output {
    let file = std::env::temp_dir().join(format!("{name}-{}.{extension}", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let output = Command::new("node")
        .arg(root().join("scripts/asyncapi/validate.cjs"))
        .arg(&file)
        .env("NODE_PATH", node_modules())
        .output()
        .expect("node runs");
    std::fs::remove_file(&file).ok();
    output
}

fn validate(text: &str, extension: &str) -> String {
    let output = parse(text, "circ-asyncapi", extension);
    let diagnostics = String::from_utf8_lossy(&output.stdout).into_owned();
    let summary = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{diagnostics}\n{summary}");
    summary
}

#[test]
fn the_document_is_valid_for_the_asyncapi_parser_in_json_and_yaml() {
    let json = document("json");
    let yaml = document("yaml");
    let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let from_yaml: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(from_json, from_yaml, "both formats hold the same document");
    let summary = validate(&json, "json");
    assert!(summary.contains("valid:"), "{summary}");
    validate(&yaml, "yaml");
}

#[test]
fn a_broken_document_is_refused_by_the_same_check() {
    let mut doc: serde_json::Value = serde_json::from_str(&document("json")).unwrap();
    doc["components"]["messages"]["like.added"]["payload"]["schema"]["type"] = "recordx".into();
    let output = parse(&doc.to_string(), "circ-asyncapi-bad", "json");
    assert!(!output.status.success(), "an invalid Avro schema passed");
}
