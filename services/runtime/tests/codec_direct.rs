//! The direct codec (`codec::CompiledSchema`) against the `Value` path (`json_to_avro` +
//! `GenericDatumWriter`, `GenericDatumReader` + `avro_to_json`) for every schema in `schemas/`:
//! same bytes, same JSON, same errors, and errors (never panics) on truncated or garbled bytes.
//! Needs no running services.

use std::collections::HashMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{Name, Schema, UuidSchema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use circulatory::catalog::{Catalog, CatalogPaths, EventType};
use circulatory::codec::{
    avro_to_json, json_to_avro, named_types, record_field_string, CompiledSchema, FieldError,
};
use circulatory_testkit::{repo_root, sample_data};
use serde_json::{json, Map, Value as Json};

fn catalog() -> Catalog {
    Catalog::load(&CatalogPaths::in_dir(repo_root())).unwrap_or_else(|e| panic!("{e}"))
}

/// Deterministic xorshift generator: the same documents on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Generates valid, varied documents: every union branch, omitted defaults, edge numbers,
/// every UUID spelling the parser accepts, timestamps as numbers and as strings with offsets.
struct Generator<'a> {
    names: HashMap<Name, &'a Schema>,
    rng: Rng,
    /// Set when a map got two or more entries: the `Value` path writes those in `HashMap` order.
    several_map_entries: bool,
}

const STRINGS: &[&str] = &[
    "",
    "sample",
    "ü ☃ 😀",
    "quote \" backslash \\ newline \n",
    "a/b~c",
    "USD",
];

impl<'a> Generator<'a> {
    fn value(&mut self, schema: &'a Schema, depth: usize) -> Json {
        match schema {
            Schema::Null => Json::Null,
            Schema::Boolean => json!(self.rng.below(2) == 0),
            Schema::Int => match self.rng.below(5) {
                0 => json!(i32::MIN),
                1 => json!(i32::MAX),
                2 => json!(0),
                _ => json!(self.rng.next() as i32 >> self.rng.below(31)),
            },
            Schema::Long => match self.rng.below(5) {
                0 => json!(i64::MIN),
                1 => json!(i64::MAX),
                2 => json!(-1),
                _ => json!(self.rng.next() as i64 >> self.rng.below(63)),
            },
            Schema::Float => json!(*self.rng.pick(&[0.0, 0.5, -1.25, 3.4e38, 1e-40, 0.1])),
            Schema::Double => json!(*self.rng.pick(&[0.0, -0.5, 1e300, 5e-324, 0.1, 42.0])),
            Schema::String => {
                if self.rng.below(6) == 0 {
                    json!("x".repeat(self.rng.below(300)))
                } else {
                    json!(*self.rng.pick(STRINGS))
                }
            }
            Schema::Uuid(UuidSchema::String) => {
                let id = uuid::Uuid::from_u128(u128::from(self.rng.next()) << 64 | 0x4000_8000);
                json!(match self.rng.below(5) {
                    0 => id.hyphenated().to_string().to_uppercase(),
                    1 => id.simple().to_string(),
                    2 => id.braced().to_string(),
                    3 => id.urn().to_string(),
                    _ => id.to_string(),
                })
            }
            Schema::TimestampMillis => match self.rng.below(4) {
                0 => json!((self.rng.next() as i64) % 100_000_000_000_000),
                1 => json!(*self.rng.pick(&[
                    "2026-11-27T10:00:00Z",
                    "2026-11-27T10:00:00.123456789+05:30",
                    "1969-12-31T23:59:59.999-01:00",
                    "0001-01-01T00:00:00Z",
                    "9999-12-31T23:59:59.999Z",
                ])),
                _ => json!("2026-11-27T10:00:00.123Z"),
            },
            Schema::Enum(e) => json!(self.rng.pick(&e.symbols)),
            Schema::Array(a) => {
                let n = if depth > 4 { 0 } else { self.rng.below(4) };
                Json::Array((0..n).map(|_| self.value(&a.items, depth + 1)).collect())
            }
            Schema::Map(m) => {
                let n = if depth > 4 { 0 } else { self.rng.below(4) };
                let mut out = Map::new();
                for _ in 0..n {
                    let key = format!("{}{}", self.rng.pick(STRINGS), self.rng.below(3));
                    let value = self.value(&m.types, depth + 1);
                    out.insert(key, value);
                }
                self.several_map_entries |= out.len() > 1;
                Json::Object(out)
            }
            Schema::Record(record) => {
                let mut out = Map::new();
                for field in &record.fields {
                    if field.default.is_some() && self.rng.below(4) == 0 {
                        continue;
                    }
                    out.insert(field.name.clone(), self.value(&field.schema, depth + 1));
                }
                Json::Object(out)
            }
            Schema::Union(union) => {
                let variants = union.variants();
                let variant = &variants[self.rng.below(variants.len())];
                self.value(variant, depth)
            }
            Schema::Ref { name } => {
                let resolved = self.names[name];
                self.value(resolved, depth)
            }
            other => panic!("no generator for {other:?}"),
        }
    }
}

fn old_encode(schema: &Schema, data: &Json) -> Result<Vec<u8>, Vec<FieldError>> {
    let value = json_to_avro(schema, data)?;
    Ok(GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap())
}

fn old_value(schema: &Schema, bytes: &[u8]) -> Result<Value, apache_avro::Error> {
    GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut &bytes[..])
}

fn new_encode(compiled: &CompiledSchema, data: &Json) -> Result<Vec<u8>, Vec<FieldError>> {
    let mut out = b"prefix".to_vec();
    match compiled.encode_json(data, &mut out) {
        Ok(()) => {
            assert_eq!(&out[..6], b"prefix");
            Ok(out[6..].to_vec())
        }
        Err(errors) => {
            assert_eq!(out, b"prefix", "the buffer is left as it was on error");
            Err(errors)
        }
    }
}

/// (a), (b) and the partition key for one valid document.
fn check_valid(event: &EventType, compiled: &CompiledSchema, data: &Json, several: bool) {
    let schema = &event.schema;
    let name = event.name();
    let old = old_encode(schema, data).unwrap_or_else(|e| panic!("{name}: {data}: {e:?}"));
    let new = new_encode(compiled, data).unwrap_or_else(|e| panic!("{name}: {data}: {e:?}"));
    if several {
        // Map entries in a different order: the same value, the same length.
        assert_eq!(new.len(), old.len(), "{name}: {data}");
        assert_eq!(
            old_value(schema, &new).unwrap(),
            old_value(schema, &old).unwrap(),
            "{name}: {data}"
        );
    } else {
        assert_eq!(new, old, "{name}: {data}");
    }
    let value = old_value(schema, &new).unwrap();
    let expected = avro_to_json(&value);
    assert_eq!(compiled.decode_json(&new).unwrap(), expected, "{name}");
    assert_eq!(compiled.decode_json_prefix(&new).unwrap().1, new.len());

    let converted = json_to_avro(schema, data).unwrap();
    let Schema::Record(record) = schema.as_ref() else {
        panic!("{name}: not a record")
    };
    let keys = record
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .chain(event.route.partition_key.as_deref())
        .chain(["noSuchField"]);
    for field in keys {
        let mut out = Vec::new();
        let key = compiled
            .encode_json_keyed(data, &mut out, Some(field))
            .unwrap();
        assert_eq!(
            key,
            record_field_string(&converted, field),
            "{name}.{field}"
        );
        assert_eq!(out, new, "{name}: keyed encoding");
    }
}

#[test]
fn every_catalog_schema_compiles_and_agrees_on_valid_documents() {
    let catalog = catalog();
    let mut checked = 0;
    for event in catalog.events() {
        let compiled =
            CompiledSchema::new(&event.schema).unwrap_or_else(|e| panic!("{}: {e}", event.name()));
        check_valid(event, &compiled, &sample_data(&event.schema_json), false);
        let mut generator = Generator {
            names: named_types(&event.schema),
            rng: Rng(0x5EED ^ (checked as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            several_map_entries: false,
        };
        for _ in 0..300 {
            generator.several_map_entries = false;
            let data = generator.value(&event.schema, 0);
            let several = generator.several_map_entries;
            check_valid(event, &compiled, &data, several);
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} schemas");
}

fn pointer(parent: &str, segment: &str) -> String {
    format!("{parent}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

fn resolve<'a>(schema: &'a Schema, names: &HashMap<Name, &'a Schema>) -> &'a Schema {
    match schema {
        Schema::Ref { name } => names[name],
        other => other,
    }
}

/// Every (JSON Pointer, schema) of a valid document, unions looked through when they have one
/// non-null branch.
fn locations<'a>(
    schema: &'a Schema,
    data: &Json,
    at: &str,
    names: &HashMap<Name, &'a Schema>,
    out: &mut Vec<(String, &'a Schema)>,
) {
    let schema = resolve(schema, names);
    out.push((at.to_string(), schema));
    match (schema, data) {
        (Schema::Record(record), Json::Object(fields)) => {
            for field in &record.fields {
                if let Some(value) = fields.get(&field.name) {
                    locations(&field.schema, value, &pointer(at, &field.name), names, out);
                }
            }
        }
        (Schema::Array(array), Json::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                locations(&array.items, item, &pointer(at, &i.to_string()), names, out);
            }
        }
        (Schema::Map(map), Json::Object(entries)) => {
            for (key, item) in entries {
                locations(&map.types, item, &pointer(at, key), names, out);
            }
        }
        (Schema::Union(union), _) if !data.is_null() => {
            let non_null: Vec<_> = union
                .variants()
                .iter()
                .filter(|v| !matches!(v, Schema::Null))
                .collect();
            if let [only] = non_null[..] {
                // The union's own location was pushed; the branch's mutations come from here.
                out.pop();
                locations(only, data, at, names, out);
                out.push((at.to_string(), schema));
            }
        }
        _ => {}
    }
}

/// Documents that are wrong at `at` (a value of `schema`) in the ways clients get things wrong.
fn mutations(doc: &Json, at: &str, schema: &Schema) -> Vec<Json> {
    let mut bad: Vec<Json> = vec![
        json!(null),
        json!(true),
        json!("text"),
        json!(1.5),
        json!(1_u64 << 40),
        json!(u64::MAX),
        json!(-1),
        json!([]),
        json!({}),
        json!([{"bogus": true}]),
    ];
    match schema {
        Schema::Int => bad.extend([json!(2_147_483_648_i64), json!(-2_147_483_649_i64)]),
        Schema::Float => bad.extend([json!(1e39), json!(-3.5e38)]),
        Schema::Uuid(_) => bad.extend([
            json!("not-a-uuid"),
            json!("0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a1"),
            json!("0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a10-".repeat(3)),
        ]),
        Schema::TimestampMillis => bad.extend([
            json!("yesterday"),
            json!("2026-13-01T00:00:00Z"),
            json!("2026-11-27 10:00:00"),
            json!(-0.5),
        ]),
        Schema::Enum(e) => bad.extend([
            json!("NOT_A_SYMBOL"),
            json!(e.symbols[0].to_lowercase()),
            json!(""),
        ]),
        _ => {}
    }
    let mut out: Vec<Json> = bad
        .into_iter()
        .map(|value| {
            let mut doc = doc.clone();
            *doc.pointer_mut(at).unwrap() = value;
            doc
        })
        .collect();
    let target = doc.pointer(at).unwrap();
    match (schema, target) {
        (Schema::Record(record), Json::Object(_)) => {
            for field in &record.fields {
                let mut missing = doc.clone();
                let object = missing.pointer_mut(at).unwrap().as_object_mut().unwrap();
                if object.remove(&field.name).is_some() {
                    out.push(missing);
                }
            }
            for extra in ["zzUnknown", "a/b~c", ""] {
                let mut doc = doc.clone();
                doc.pointer_mut(at).unwrap()[extra] = json!(1);
                out.push(doc);
            }
        }
        (Schema::Array(_), Json::Array(items)) => {
            let mut doc = doc.clone();
            let array = doc.pointer_mut(at).unwrap().as_array_mut().unwrap();
            array.push(json!({"bogus": [1, 2]}));
            array.push(json!(null));
            if !items.is_empty() {
                array.insert(0, json!(3.25));
            }
            out.push(doc);
        }
        _ => {}
    }
    out
}

#[test]
fn every_catalog_schema_reports_the_same_errors() {
    let catalog = catalog();
    let mut messages: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut invalid = 0;
    let mut capped = 0;
    for (n, event) in catalog.events().enumerate() {
        let schema = &event.schema;
        let compiled = CompiledSchema::new(schema).unwrap();
        let names = named_types(schema);
        let mut generator = Generator {
            names: names.clone(),
            rng: Rng(0xBAD ^ (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            several_map_entries: false,
        };
        let mut docs = vec![(sample_data(&event.schema_json), false)];
        for _ in 0..3 {
            generator.several_map_entries = false;
            let doc = generator.value(schema, 0);
            docs.push((doc, generator.several_map_entries));
        }
        for (doc, several) in &docs {
            let mut places = Vec::new();
            locations(schema, doc, "", &names, &mut places);
            let mut all_at_once = doc.clone();
            for (at, at_schema) in &places {
                for mutated in mutations(doc, at, at_schema) {
                    let old = old_encode(schema, &mutated);
                    let new = new_encode(&compiled, &mutated);
                    if old.is_ok() && new.is_ok() && *several {
                        continue;
                    }
                    assert_eq!(new, old, "{}: {mutated}", event.name());
                    if let Err(errors) = old {
                        invalid += 1;
                        messages.extend(errors.into_iter().map(|e| e.message));
                    }
                }
                // Many violations in one document, past the cap.
                match all_at_once.pointer_mut(at) {
                    Some(Json::Object(object)) => {
                        for i in 0..20 {
                            object.insert(format!("unknown{i}"), json!(i));
                        }
                    }
                    Some(Json::Array(_)) | None => {}
                    Some(leaf) => *leaf = json!([true]),
                }
            }
            let old = old_encode(schema, &all_at_once);
            assert_eq!(new_encode(&compiled, &all_at_once), old, "{}", event.name());
            if old.as_ref().err().is_some_and(|e| e.len() == 32) {
                capped += 1;
            }
        }
    }
    assert!(invalid > 10_000, "only {invalid} invalid documents");
    assert!(capped > 0, "no document hit the error cap");
    for expected in [
        "unknown field",
        "missing required field",
        "expected a UUID",
        "expected int (32-bit integer)",
        "expected long (64-bit integer)",
        "expected an RFC 3339 time",
        "expected epoch milliseconds or an RFC 3339 time",
        "expected integer",
        "expected string",
        "expected object",
        "expected array",
        "\"NOT_A_SYMBOL\" is not one of",
        "is out of range for float",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "no `{expected}` among {messages:?}"
        );
    }
}

#[test]
fn truncated_and_garbled_bytes_are_errors_never_panics() {
    let catalog = catalog();
    let mut rng = Rng(0xFEED_F00D);
    let mut agreed = 0;
    for event in catalog.events() {
        let schema = &event.schema;
        let compiled = CompiledSchema::new(schema).unwrap();
        let mut generator = Generator {
            names: named_types(schema),
            rng: Rng(rng.next() | 1),
            several_map_entries: false,
        };
        for _ in 0..5 {
            let data = generator.value(schema, 0);
            let mut bytes = Vec::new();
            compiled.encode_json(&data, &mut bytes).unwrap();
            for len in 0..bytes.len() {
                assert!(
                    compiled.decode_json(&bytes[..len]).is_err(),
                    "{}: prefix of {len} of {} bytes decoded",
                    event.name(),
                    bytes.len()
                );
            }
            // Flipped bytes: an error, or exactly what the Avro reader makes of them.
            for _ in 0..200 {
                let mut garbled = bytes.clone();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(garbled.len());
                    garbled[at] = rng.next() as u8;
                }
                if let Ok(json) = compiled.decode_json(&garbled) {
                    let value = old_value(schema, &garbled).unwrap();
                    assert_eq!(json, avro_to_json(&value), "{}", event.name());
                    agreed += 1;
                }
            }
        }
        for _ in 0..300 {
            let len = rng.below(80);
            let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Ok(json) = compiled.decode_json(&random) {
                let value = old_value(schema, &random).unwrap();
                assert_eq!(json, avro_to_json(&value), "{}", event.name());
            }
        }
        // Hostile length prefixes: a string, an array and a map claiming far more than is there.
        for hostile in [
            vec![0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            vec![0x80, 0x80, 0x80, 0x80, 0x10],
            vec![0x7F; 64],
            vec![0xFF; 64],
        ] {
            let _ = compiled.decode_json(&hostile);
        }
    }
    assert!(agreed > 100, "only {agreed} garbled values decoded");
}
