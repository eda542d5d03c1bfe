//! Valid event data for any catalog type, generated from its Avro schema (the API's JSON form):
//! uuids are fresh per event, so partition keys spread over partitions and per-key lanes the way
//! real traffic does.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// One valid `data` object for a record schema (the `.avsc` JSON).
pub(crate) fn data(schema: &Value) -> Value {
    value(schema, &mut HashMap::new())
}

fn value(schema: &Value, named: &mut HashMap<String, Value>) -> Value {
    match schema {
        // A union: null when allowed, else its first branch.
        Value::Array(branches) => {
            if branches.iter().any(|b| b == "null") {
                Value::Null
            } else {
                branches.first().map_or(Value::Null, |b| value(b, named))
            }
        }
        Value::String(name) => match named.get(name).cloned() {
            Some(schema) => value(&schema, named),
            None => primitive(name),
        },
        Value::Object(object) => {
            if let Some(name) = object.get("name").and_then(Value::as_str) {
                named.insert(name.to_string(), schema.clone());
                if let Some(ns) = object.get("namespace").and_then(Value::as_str) {
                    named.insert(format!("{ns}.{name}"), schema.clone());
                }
            }
            match object.get("logicalType").and_then(Value::as_str) {
                Some("uuid") => return json!(uuid::Uuid::new_v4().to_string()),
                Some("timestamp-millis" | "timestamp-micros") => {
                    return json!(
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    )
                }
                _ => {}
            }
            match object.get("type") {
                Some(Value::String(kind)) if kind == "record" => {
                    let mut out = Map::new();
                    for field in object
                        .get("fields")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let (Some(name), Some(kind)) =
                            (field.get("name").and_then(Value::as_str), field.get("type"))
                        {
                            out.insert(name.to_string(), value(kind, named));
                        }
                    }
                    Value::Object(out)
                }
                Some(Value::String(kind)) if kind == "enum" => object
                    .get("symbols")
                    .and_then(|s| s.get(0))
                    .cloned()
                    .unwrap_or(Value::Null),
                Some(Value::String(kind)) if kind == "array" => json!([]),
                Some(Value::String(kind)) if kind == "map" => json!({}),
                Some(kind) => value(kind, named),
                None => Value::Null,
            }
        }
        _ => Value::Null,
    }
}

fn primitive(name: &str) -> Value {
    match name {
        "boolean" => json!(true),
        "int" => json!(7),
        "long" => json!(42_000),
        "float" | "double" => json!(1.5),
        "string" => json!("bench"),
        "bytes" => json!(""),
        _ => Value::Null,
    }
}
