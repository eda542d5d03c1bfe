//! Generates one Rust type per Avro record and enum in `schemas/<domain>/<event.type>.avsc`,
//! a module per domain, into `$OUT_DIR/events.rs`. A schema this generator cannot map fails the
//! build with the schema's path and the field.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn main() {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    println!("cargo:rerun-if-changed={}", schemas.display());
    let mut domains: BTreeMap<String, Vec<(String, PathBuf)>> = BTreeMap::new();
    for domain in sorted_entries(&schemas) {
        if !domain.is_dir() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", domain.display());
        let name = file_name(&domain);
        for file in sorted_entries(&domain) {
            if file.extension().is_some_and(|e| e == "avsc") {
                println!("cargo:rerun-if-changed={}", file.display());
                let event_type = file_name(&file).trim_end_matches(".avsc").to_string();
                domains
                    .entry(name.clone())
                    .or_default()
                    .push((event_type, file));
            }
        }
    }
    let mut out = String::new();
    let mut all = Vec::new();
    for (domain, files) in &domains {
        let mut module = Module::default();
        for (event_type, path) in files {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let schema: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            let at = path.display().to_string();
            let name = module.record(&schema, &at);
            let full = full_name(&schema);
            module
                .payloads
                .push((name.clone(), event_type.clone(), full));
            all.push((event_type.clone(), format!("{domain}::{name}")));
        }
        write_module(&mut out, domain, &module);
    }
    write_index(&mut out, &domains, &all);
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("events.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    entries
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 file name")
        .to_string()
}

fn full_name(schema: &Value) -> String {
    let name = schema["name"].as_str().unwrap_or_default();
    match schema["namespace"].as_str() {
        Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

/// The named types of one domain, in the order they are met.
#[derive(Default)]
struct Module {
    items: Vec<Item>,
    /// (Rust type, event type, Avro full name) of each file's top-level record.
    payloads: Vec<(String, String, String)>,
}

enum Item {
    Record {
        name: String,
        doc: Option<String>,
        fields: Vec<Field>,
    },
    Enum {
        name: String,
        doc: Option<String>,
        symbols: Vec<String>,
    },
}

struct Field {
    avro: String,
    rust: String,
    doc: Option<String>,
    ty: Type,
}

enum Type {
    Plain(&'static str),
    Named(String),
    Option(Box<Type>),
    Vec(Box<Type>),
    Map(Box<Type>),
}

impl Type {
    fn rust(&self) -> String {
        match self {
            Type::Plain(t) => t.to_string(),
            Type::Named(n) => n.clone(),
            Type::Option(t) => format!("Option<{}>", t.rust()),
            Type::Vec(t) => format!("Vec<{}>", t.rust()),
            Type::Map(t) => format!("BTreeMap<String, {}>", t.rust()),
        }
    }

    fn example(&self, field: &str) -> String {
        match self {
            Type::Plain("Uuid") => {
                "Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001)".into()
            }
            Type::Plain("DateTime<Utc>") => {
                "DateTime::<Utc>::from_timestamp_millis(1_764_806_400_123).expect(\"in range\")"
                    .into()
            }
            Type::Plain("String") => format!("{field:?}.to_string()"),
            Type::Plain("bool") => "true".into(),
            Type::Plain("f32" | "f64") => "1.5".into(),
            Type::Plain(_) => "7".into(),
            Type::Named(n) => format!("{n}::example()"),
            Type::Option(t) => format!("Some({})", t.example(field)),
            Type::Vec(t) => format!("vec![{}]", t.example(field)),
            Type::Map(t) => format!(
                "BTreeMap::from([(\"key\".to_string(), {})])",
                t.example(field)
            ),
        }
    }
}

impl Module {
    /// Adds the record `schema` and the named types inside it; returns its Rust name.
    fn record(&mut self, schema: &Value, at: &str) -> String {
        let name = short_name(schema, at);
        let at = format!("{at}: {name}");
        let fields = schema["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("{at}: a record needs `fields`"))
            .iter()
            .map(|f| {
                let avro = f["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: a field without a name"));
                let ty = self.ty(&f["type"], &format!("{at}.{avro}"));
                Field {
                    avro: avro.to_string(),
                    rust: rust_field(avro),
                    doc: f["doc"].as_str().map(str::to_string),
                    ty,
                }
            })
            .collect();
        self.items.push(Item::Record {
            name: name.clone(),
            doc: schema["doc"].as_str().map(str::to_string),
            fields,
        });
        name
    }

    fn ty(&mut self, schema: &Value, at: &str) -> Type {
        match schema {
            Value::String(s) => self.primitive(s, None, at),
            Value::Array(members) => {
                let others: Vec<&Value> = members.iter().filter(|m| *m != "null").collect();
                match (members.len(), others.as_slice()) {
                    (2, [one]) => Type::Option(Box::new(self.ty(one, at))),
                    _ => panic!("{at}: only unions of null and one type are supported"),
                }
            }
            Value::Object(o) => {
                let ty = o
                    .get("type")
                    .unwrap_or_else(|| panic!("{at}: a type without `type`"));
                match ty.as_str() {
                    Some("record") => {
                        let name = self.record(schema, at);
                        Type::Named(name)
                    }
                    Some("enum") => {
                        let name = short_name(schema, at);
                        let symbols = schema["symbols"]
                            .as_array()
                            .unwrap_or_else(|| panic!("{at}: an enum needs `symbols`"))
                            .iter()
                            .map(|s| s.as_str().expect("a symbol").to_string())
                            .collect();
                        self.items.push(Item::Enum {
                            name: name.clone(),
                            doc: schema["doc"].as_str().map(str::to_string),
                            symbols,
                        });
                        Type::Named(name)
                    }
                    Some("array") => Type::Vec(Box::new(self.ty(&schema["items"], at))),
                    Some("map") => Type::Map(Box::new(self.ty(&schema["values"], at))),
                    Some(p) => self.primitive(p, o.get("logicalType").and_then(Value::as_str), at),
                    None => self.ty(ty, at),
                }
            }
            _ => panic!("{at}: unreadable type {schema}"),
        }
    }

    fn primitive(&self, name: &str, logical: Option<&str>, at: &str) -> Type {
        match (name, logical) {
            ("string", Some("uuid")) => Type::Plain("Uuid"),
            ("long", Some("timestamp-millis" | "timestamp-micros")) => Type::Plain("DateTime<Utc>"),
            (_, Some(l)) => panic!("{at}: logical type `{l}` on `{name}` is not supported"),
            ("string", None) => Type::Plain("String"),
            ("int", None) => Type::Plain("i32"),
            ("long", None) => Type::Plain("i64"),
            ("float", None) => Type::Plain("f32"),
            ("double", None) => Type::Plain("f64"),
            ("boolean", None) => Type::Plain("bool"),
            (other, None) => {
                let short = other.rsplit('.').next().unwrap_or(other);
                let known = self.items.iter().any(|i| match i {
                    Item::Record { name, .. } | Item::Enum { name, .. } => name == short,
                });
                assert!(
                    known,
                    "{at}: type `{other}` is not supported or not defined before"
                );
                Type::Named(short.to_string())
            }
        }
    }
}

fn short_name(schema: &Value, at: &str) -> String {
    let name = schema["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{at}: a named type without `name`"));
    name.rsplit('.').next().unwrap_or(name).to_string()
}

/// `payeeWalletId` → `payee_wallet_id`.
fn rust_field(avro: &str) -> String {
    let mut out = String::new();
    for (i, c) in avro.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else",
        "enum", "extern", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move",
        "mut", "pub", "ref", "return", "static", "struct", "trait", "type", "unsafe", "use",
        "where", "while", "yield", "try",
    ];
    if KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

/// `TOP_UP` → `TopUp`, `ios` → `Ios`.
fn variant(symbol: &str) -> String {
    let mut out = String::new();
    for part in symbol.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

fn doc(out: &mut String, indent: &str, doc: &Option<String>) {
    if let Some(d) = doc {
        writeln!(out, "{indent}#[doc = {d:?}]").expect("write");
    }
}

fn write_module(out: &mut String, domain: &str, module: &Module) {
    writeln!(out, "/// The events of `schemas/{domain}/`.").expect("write");
    writeln!(
        out,
        "pub mod {domain} {{\n    #[allow(unused_imports)]\n    use crate::generated_prelude::*;\n"
    )
    .expect("write");
    for item in &module.items {
        match item {
            Item::Record {
                name,
                doc: d,
                fields,
            } => write_record(out, name, d, fields),
            Item::Enum {
                name,
                doc: d,
                symbols,
            } => write_enum(out, name, d, symbols),
        }
    }
    for (name, event_type, full) in &module.payloads {
        writeln!(
            out,
            "    impl crate::EventPayload for {name} {{\n        const EVENT_TYPE: &'static str = {event_type:?};\n        const SCHEMA_NAME: &'static str = {full:?};\n    }}\n\n    #[cfg(feature = \"examples\")]\n    impl crate::HasExample for {name} {{\n        fn example() -> {name} {{\n            {name}::example()\n        }}\n    }}\n"
        )
        .expect("write");
    }
    writeln!(out, "}}\n").expect("write");
}

fn write_record(out: &mut String, name: &str, d: &Option<String>, fields: &[Field]) {
    doc(out, "    ", d);
    writeln!(
        out,
        "    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\n    pub struct {name} {{"
    )
    .expect("write");
    for f in fields {
        doc(out, "        ", &f.doc);
        let default = if matches!(f.ty, Type::Option(_)) {
            ", default"
        } else {
            ""
        };
        writeln!(out, "        #[serde(rename = {:?}{default})]", f.avro).expect("write");
        writeln!(out, "        pub {}: {},", f.rust, f.ty.rust()).expect("write");
    }
    writeln!(out, "    }}\n").expect("write");
    writeln!(out, "    #[cfg(feature = \"examples\")]\n    impl {name} {{\n        /// A valid value, every optional field set.\n        pub fn example() -> {name} {{\n            {name} {{").expect("write");
    for f in fields {
        writeln!(
            out,
            "                {}: {},",
            f.rust,
            f.ty.example(&f.avro)
        )
        .expect("write");
    }
    writeln!(out, "            }}\n        }}\n    }}\n").expect("write");
}

fn write_enum(out: &mut String, name: &str, d: &Option<String>, symbols: &[String]) {
    doc(out, "    ", d);
    writeln!(out, "    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]\n    pub enum {name} {{").expect("write");
    for s in symbols {
        writeln!(
            out,
            "        #[serde(rename = {s:?})]\n        {},",
            variant(s)
        )
        .expect("write");
    }
    writeln!(out, "    }}\n\n    impl {name} {{").expect("write");
    let all: Vec<String> = symbols
        .iter()
        .map(|s| format!("{name}::{}", variant(s)))
        .collect();
    writeln!(out, "        /// Every symbol, in the schema's order.\n        pub const ALL: &'static [{name}] = &[{}];\n", all.join(", ")).expect("write");
    writeln!(out, "        /// The Avro symbol.\n        pub const fn as_str(self) -> &'static str {{\n            match self {{").expect("write");
    for s in symbols {
        writeln!(out, "                {name}::{} => {s:?},", variant(s)).expect("write");
    }
    writeln!(out, "            }}\n        }}\n").expect("write");
    let last = symbols.last().expect("an enum has symbols");
    writeln!(out, "        /// The last symbol (the first is often a default).\n        #[cfg(feature = \"examples\")]\n        pub fn example() -> {name} {{\n            {name}::{}\n        }}\n    }}\n", variant(last)).expect("write");
    writeln!(out, "    impl std::fmt::Display for {name} {{\n        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{\n            f.write_str(self.as_str())\n        }}\n    }}\n").expect("write");
    writeln!(out, "    impl std::str::FromStr for {name} {{\n        type Err = crate::UnknownSymbol;\n        fn from_str(s: &str) -> Result<{name}, crate::UnknownSymbol> {{\n            {name}::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| crate::UnknownSymbol {{ enum_name: {name:?}, symbol: s.to_string() }})\n        }}\n    }}\n").expect("write");
}

fn write_index(
    out: &mut String,
    domains: &BTreeMap<String, Vec<(String, PathBuf)>>,
    all: &[(String, String)],
) {
    for domain in domains.keys() {
        writeln!(out, "pub use {domain}::*;").expect("write");
    }
    let types: Vec<String> = all.iter().map(|(t, _)| format!("{t:?}")).collect();
    writeln!(out, "\n/// Every event type with a generated payload, sorted by domain then type.\npub const EVENT_TYPES: &[&str] = &[{}];\n", types.join(", ")).expect("write");
    writeln!(out, "/// One [`Example`] per event type.\n#[cfg(feature = \"examples\")]\npub fn examples() -> Vec<Example> {{\n    vec![").expect("write");
    for (_, path) in all {
        writeln!(out, "        Example::of::<{path}>(),").expect("write");
    }
    writeln!(out, "    ]\n}}").expect("write");
}
