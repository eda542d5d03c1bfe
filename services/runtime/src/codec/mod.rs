//! JSON ⇄ Avro, driven by the event's schema.
//!
//! Clients send plain JSON (`"amountMinor": 500`, `"createdAt": "2026-11-27T10:00:00Z"`), which is
//! checked against the Avro schema with *every* violation reported with a JSON Pointer path
//! (`/renditions/0/width`) and what was expected versus found. Unknown fields are rejected, so a
//! typo never silently drops data.
//!
//! - [`direct`] ([`CompiledSchema`]): the one codec of the services. It works straight between
//!   JSON and Avro binary with a schema compiled once; the catalog refuses a schema it cannot
//!   compile, and a consumer cannot decode a writer's schema it cannot compile.
//! - [`json_to_avro`], [`avro_to_json`], [`read_datum`], [`write_datum`]: the same contract
//!   through `apache_avro::types::Value`, `apache-avro`'s own reader and writer. No service
//!   encodes or decodes with them: they are the reference the differential tests
//!   (`tests/codec_direct.rs`) and the codec benchmark compare the compiled codec with, and the
//!   tests' oracle renders its values with [`avro_to_json`].

use std::collections::HashMap;

use apache_avro::schema::{Name, RecordSchema, Schema, UnionSchema, UuidSchema};
use apache_avro::types::Value;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};

pub mod direct;

pub use direct::{CompiledSchema, DecodeError, Unsupported};

/// One violation of the schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) into the event's `data`; empty for the root.
    pub path: String,
    pub message: String,
}

/// Most violations reported for one event; past this the client has enough to fix it.
pub const MAX_FIELD_ERRORS: usize = 32;

/// Why a string holding U+0000 is refused: Avro carries it, but PostgreSQL text (where the
/// consumer groups project events) cannot, so such an event could be accepted and then never
/// stored. Refusing it at the door keeps one client's byte from reaching a group at all.
pub const NUL_REFUSED: &str = "must not contain U+0000 (NUL): the pipeline's stores cannot keep it";

/// Whether a string may travel through the pipeline (see [`NUL_REFUSED`]).
pub fn is_storable_text(text: &str) -> bool {
    !text.as_bytes().contains(&0)
}

/// Converts `data` to an Avro value of `schema`, or lists what is wrong with it.
pub fn json_to_avro(schema: &Schema, data: &Json) -> Result<Value, Vec<FieldError>> {
    let mut converter = Converter {
        names: named_types(schema),
        errors: Vec::new(),
    };
    let value = converter.convert(schema, data, &mut String::new());
    match value {
        Some(value) if converter.errors.is_empty() => Ok(value),
        _ => Err(converter.errors),
    }
}

/// The named types (records, enums, fixed) declared in `schema`, by full name, so `Ref`s to
/// types declared earlier resolve.
pub fn named_types(schema: &Schema) -> HashMap<Name, &Schema> {
    let mut names = HashMap::new();
    collect_names(schema, &mut names);
    names
}

fn collect_names<'a>(schema: &'a Schema, names: &mut HashMap<Name, &'a Schema>) {
    match schema {
        Schema::Record(record) if names.insert(record.name.clone(), schema).is_none() => {
            for field in &record.fields {
                collect_names(&field.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.clone(), schema);
        }
        Schema::Fixed(f) => {
            names.insert(f.name.clone(), schema);
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

struct Converter<'a> {
    names: HashMap<Name, &'a Schema>,
    errors: Vec<FieldError>,
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Appends one JSON Pointer segment, escaping `~` and `/`.
fn push_segment(path: &mut String, segment: &str) -> usize {
    let len = path.len();
    path.push('/');
    path.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    len
}

impl<'a> Converter<'a> {
    fn fail(&mut self, path: &str, message: impl Into<String>) -> Option<Value> {
        if self.errors.len() < MAX_FIELD_ERRORS {
            self.errors.push(FieldError {
                path: path.to_string(),
                message: message.into(),
            });
        }
        None
    }

    fn mismatch(&mut self, path: &str, expected: &str, found: &Json) -> Option<Value> {
        self.fail(
            path,
            format!("expected {expected}, found {}", json_kind(found)),
        )
    }

    fn convert(&mut self, schema: &'a Schema, data: &Json, path: &mut String) -> Option<Value> {
        match (schema, data) {
            (Schema::Null, Json::Null) => Some(Value::Null),
            (Schema::Boolean, Json::Bool(b)) => Some(Value::Boolean(*b)),
            (Schema::Int, Json::Number(n)) => {
                match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
                    Some(i) => Some(Value::Int(i)),
                    None => self.fail(path, format!("expected int (32-bit integer), found {n}")),
                }
            }
            (Schema::Long, Json::Number(n)) => match n.as_i64() {
                Some(i) => Some(Value::Long(i)),
                None => self.fail(path, format!("expected long (64-bit integer), found {n}")),
            },
            (Schema::Float, Json::Number(n)) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.is_finite() && f.abs() <= f32::MAX as f64 {
                    Some(Value::Float(f as f32))
                } else {
                    self.fail(path, format!("{n} is out of range for float"))
                }
            }
            (Schema::Double, Json::Number(n)) => n.as_f64().map(Value::Double),
            (Schema::String, Json::String(s)) if !is_storable_text(s) => {
                self.fail(path, NUL_REFUSED.to_string())
            }
            (Schema::String, Json::String(s)) => Some(Value::String(s.clone())),
            (Schema::Uuid(UuidSchema::String), Json::String(s)) => match uuid::Uuid::parse_str(s) {
                Ok(id) => Some(Value::Uuid(id)),
                Err(_) => self.fail(path, format!("expected a UUID, found \"{}\"", clip(s))),
            },
            (Schema::TimestampMillis, Json::Number(n)) => match n.as_i64() {
                Some(ms) => Some(Value::TimestampMillis(ms)),
                None => self.fail(path, "expected epoch milliseconds or an RFC 3339 time"),
            },
            (Schema::TimestampMillis, Json::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Some(Value::TimestampMillis(t.timestamp_millis())),
                Err(_) => self.fail(
                    path,
                    format!("expected an RFC 3339 time, found \"{}\"", clip(s)),
                ),
            },
            (Schema::TimestampMicros, Json::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Some(Value::TimestampMicros(t.timestamp_micros())),
                Err(_) => self.fail(path, "expected an RFC 3339 time"),
            },
            (Schema::TimestampMicros, Json::Number(n)) if n.is_i64() => {
                n.as_i64().map(Value::TimestampMicros)
            }
            (Schema::Enum(e), Json::String(s)) => match e.symbols.iter().position(|x| x == s) {
                Some(i) => Some(Value::Enum(i as u32, s.clone())),
                None => self.fail(
                    path,
                    format!("\"{}\" is not one of {}", clip(s), e.symbols.join(", ")),
                ),
            },
            (Schema::Array(array), Json::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = push_segment(path, &i.to_string());
                    out.extend(self.convert(&array.items, item, path));
                    path.truncate(len);
                }
                (out.len() == items.len()).then_some(Value::Array(out))
            }
            (Schema::Map(map), Json::Object(entries)) => {
                let mut out = HashMap::with_capacity(entries.len());
                for (key, item) in entries {
                    let len = push_segment(path, key);
                    if !is_storable_text(key) {
                        self.fail(path, format!("a map key {NUL_REFUSED}"));
                    } else if let Some(v) = self.convert(&map.types, item, path) {
                        out.insert(key.clone(), v);
                    }
                    path.truncate(len);
                }
                (out.len() == entries.len()).then_some(Value::Map(out))
            }
            (Schema::Record(record), Json::Object(fields)) => self.record(record, fields, path),
            (Schema::Union(union), _) => self.union(union, data, path),
            (Schema::Ref { name }, _) => match self.names.get(name).copied() {
                Some(resolved) => self.convert(resolved, data, path),
                None => self.fail(path, format!("schema refers to unknown type {name}")),
            },
            (Schema::Null, _) => self.mismatch(path, "null", data),
            (Schema::Boolean, _) => self.mismatch(path, "boolean", data),
            (Schema::Int | Schema::Long, _) => self.mismatch(path, "integer", data),
            (Schema::Float | Schema::Double, _) => self.mismatch(path, "number", data),
            (Schema::String | Schema::Uuid(_) | Schema::Enum(_), _) => {
                self.mismatch(path, "string", data)
            }
            (Schema::TimestampMillis | Schema::TimestampMicros, _) => {
                self.mismatch(path, "an RFC 3339 time string", data)
            }
            (Schema::Array(_), _) => self.mismatch(path, "array", data),
            (Schema::Map(_) | Schema::Record(_), _) => self.mismatch(path, "object", data),
            (other, _) => self.fail(
                path,
                format!("the schema type {other:?} is not accepted from JSON"),
            ),
        }
    }

    fn record(
        &mut self,
        record: &'a RecordSchema,
        fields: &Map<String, Json>,
        path: &mut String,
    ) -> Option<Value> {
        let mut ok = true;
        for key in fields.keys() {
            if !record.lookup.contains_key(key) {
                let len = push_segment(path, key);
                self.fail(path, "unknown field");
                path.truncate(len);
                ok = false;
            }
        }
        let mut out = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let len = push_segment(path, &field.name);
            let value = match (fields.get(&field.name), &field.default) {
                (Some(value), _) => self.convert(&field.schema, value, path),
                (None, Some(default)) => self.convert(&field.schema, default, path),
                (None, None) => self.fail(path, "missing required field"),
            };
            path.truncate(len);
            match value {
                Some(v) => out.push((field.name.clone(), v)),
                None => ok = false,
            }
        }
        ok.then_some(Value::Record(out))
    }

    fn union(&mut self, union: &'a UnionSchema, data: &Json, path: &mut String) -> Option<Value> {
        let variants = union.variants();
        if data.is_null() {
            return match variants.iter().position(|v| matches!(v, Schema::Null)) {
                Some(i) => Some(Value::Union(i as u32, Box::new(Value::Null))),
                None => self.fail(path, "null is not allowed here"),
            };
        }
        let candidates: Vec<(usize, &Schema)> = variants
            .iter()
            .enumerate()
            .filter(|(_, v)| !matches!(v, Schema::Null))
            .collect();
        // The common case, `["null", T]`: report T's errors directly.
        if let [(index, only)] = candidates.as_slice() {
            return self
                .convert(only, data, path)
                .map(|v| Value::Union(*index as u32, Box::new(v)));
        }
        for (index, variant) in candidates {
            let mut probe = Converter {
                names: self.names.clone(),
                errors: Vec::new(),
            };
            if let Some(v) = probe.convert(variant, data, &mut path.clone()) {
                if probe.errors.is_empty() {
                    return Some(Value::Union(index as u32, Box::new(v)));
                }
            }
        }
        self.fail(
            path,
            format!("{} matches no branch of the union", json_kind(data)),
        )
    }
}

fn clip(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// Avro binary of `value` (the general path, for schemas [`CompiledSchema`] does not take).
pub fn write_datum(schema: &Schema, value: Value) -> Result<Vec<u8>, String> {
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(value))
        .map_err(|e| e.to_string())
}

/// Reads one Avro binary datum of `schema` (the general path).
pub fn read_datum(schema: &Schema, bytes: &[u8]) -> Result<Value, String> {
    apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|reader| reader.read_value(&mut &bytes[..]))
        .map_err(|e| e.to_string())
}

/// Renders an Avro value as plain JSON: unions unwrapped, enums as symbols, timestamps as
/// RFC 3339 (UTC, milliseconds), UUIDs as strings.
pub fn avro_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => Json::from(*i),
        Value::Long(i) | Value::TimeMicros(i) => Json::from(*i),
        Value::Float(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::Double(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) | Value::Enum(_, s) => Json::String(s.clone()),
        Value::Uuid(id) => Json::String(id.to_string()),
        Value::TimestampMillis(ms) | Value::LocalTimestampMillis(ms) => {
            timestamp(DateTime::from_timestamp_millis(*ms), *ms)
        }
        Value::TimestampMicros(us) | Value::LocalTimestampMicros(us) => {
            timestamp(DateTime::from_timestamp_micros(*us), *us)
        }
        Value::TimestampNanos(ns) | Value::LocalTimestampNanos(ns) => {
            timestamp(Some(DateTime::from_timestamp_nanos(*ns)), *ns)
        }
        Value::Union(_, inner) => avro_to_json(inner),
        Value::Array(items) => Json::Array(items.iter().map(avro_to_json).collect()),
        Value::Map(entries) => {
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Json::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), avro_to_json(v)))
                    .collect(),
            )
        }
        Value::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), avro_to_json(v)))
                .collect(),
        ),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => {
            Json::Array(bytes.iter().map(|b| Json::from(*b)).collect())
        }
        other => Json::String(format!("{other:?}")),
    }
}

fn timestamp(time: Option<DateTime<Utc>>, raw: i64) -> Json {
    match time {
        Some(t) => Json::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => Json::from(raw),
    }
}

/// Reads a top-level string (or UUID) field of a record: partition keys, channel parameters.
pub fn record_field_string(value: &Value, field: &str) -> Option<String> {
    let Value::Record(fields) = value else {
        return None;
    };
    fields
        .iter()
        .find(|(name, _)| name == field)
        .and_then(|(_, v)| match v {
            Value::String(s) => Some(s.clone()),
            Value::Uuid(id) => Some(id.to_string()),
            Value::Union(_, inner) => match inner.as_ref() {
                Value::String(s) => Some(s.clone()),
                Value::Uuid(id) => Some(id.to_string()),
                _ => None,
            },
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(&json!({
            "type": "record", "name": "VideoTranscodeCompleted", "namespace": "circulatory.media",
            "fields": [
                {"name": "videoId", "type": {"type": "string", "logicalType": "uuid"}},
                {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["OK", "FAILED"]}},
                {"name": "completedAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "durationMs", "type": "long"},
                {"name": "width", "type": "int"},
                {"name": "caption", "type": ["null", "string"], "default": null},
                {"name": "tags", "type": {"type": "array", "items": "string"}},
                {"name": "renditions", "type": {"type": "array", "items": {
                    "type": "record", "name": "Rendition",
                    "fields": [{"name": "name", "type": "string"}, {"name": "height", "type": "int"}]}}},
                {"name": "meta", "type": {"type": "map", "values": "string"}}
            ]
        }))
        .unwrap()
    }

    fn valid() -> Json {
        json!({
            "videoId": "0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a10",
            "status": "OK",
            "completedAt": "2026-11-27T10:00:00.250Z",
            "durationMs": 61000,
            "width": 1280,
            "tags": ["a", "b"],
            "renditions": [{"name": "720p", "height": 720}],
            "meta": {"codec": "h264"}
        })
    }

    #[test]
    fn valid_json_round_trips_through_avro_binary() {
        let schema = schema();
        let value = json_to_avro(&schema, &valid()).unwrap();
        let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap();
        let back = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut bytes.as_slice())
            .unwrap();
        let mut expected = valid();
        expected["caption"] = Json::Null;
        let json = avro_to_json(&back);
        assert_eq!(json["completedAt"], "2026-11-27T10:00:00.250Z");
        assert_eq!(json["caption"], Json::Null);
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&json[key], value, "field {key}");
        }
    }

    #[test]
    fn a_nul_anywhere_in_text_is_refused_with_its_path_by_both_encoders() {
        let schema = schema();
        let mut data = valid();
        data["caption"] = json!("a\u{0}b");
        data["tags"] = json!(["ok", "\u{0}"]);
        data["renditions"][0]["name"] = json!("720\u{0}p");
        data["meta"] = json!({"k\u{0}": "v", "codec": "h\u{0}"});
        let mut expected = vec![
            "/caption",
            "/tags/1",
            "/renditions/0/name",
            "/meta/k\u{0}",
            "/meta/codec",
        ];
        expected.sort();
        let paths = |errors: Vec<FieldError>| {
            assert!(
                errors.iter().all(|e| e.message.contains("U+0000")),
                "{errors:?}"
            );
            let mut paths: Vec<String> = errors.into_iter().map(|e| e.path).collect();
            paths.sort();
            paths
        };
        assert_eq!(paths(json_to_avro(&schema, &data).unwrap_err()), expected);
        let compiled = CompiledSchema::new(&schema).unwrap();
        let direct = compiled.encode_json(&data, &mut Vec::new()).unwrap_err();
        assert_eq!(paths(direct), expected);
        // Other control characters are data like any other.
        let mut fine = valid();
        fine["caption"] = json!("tab\tand\u{1}");
        assert!(json_to_avro(&schema, &fine).is_ok());
        assert!(compiled.encode_json(&fine, &mut Vec::new()).is_ok());
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let mut data = valid();
        data["videoId"] = json!("not-a-uuid");
        data["status"] = json!("DONE");
        data["width"] = json!("wide");
        data["durationMs"] = json!(null);
        data["renditions"][0]["height"] = json!(1.5);
        data["extra"] = json!(1);
        data.as_object_mut().unwrap().remove("tags");
        let errors = json_to_avro(&schema(), &data).unwrap_err();
        let by_path: HashMap<_, _> = errors
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(by_path["/extra"], "unknown field");
        assert!(by_path["/videoId"].contains("expected a UUID"));
        assert_eq!(by_path["/status"], "\"DONE\" is not one of OK, FAILED");
        assert_eq!(by_path["/width"], "expected integer, found string");
        assert_eq!(by_path["/durationMs"], "expected integer, found null");
        assert!(by_path["/renditions/0/height"].contains("expected int"));
        assert_eq!(by_path["/tags"], "missing required field");
        assert_eq!(errors.len(), 7);
    }

    #[test]
    fn out_of_range_integers_are_rejected() {
        let mut data = valid();
        data["width"] = json!(1u64 << 40);
        let errors = json_to_avro(&schema(), &data).unwrap_err();
        assert_eq!(errors[0].path, "/width");
        assert!(errors[0].message.contains("32-bit"));
    }

    #[test]
    fn epoch_millis_are_accepted_for_timestamps() {
        let mut data = valid();
        data["completedAt"] = json!(1_764_237_600_000i64);
        let value = json_to_avro(&schema(), &data).unwrap();
        assert_eq!(
            avro_to_json(&value)["completedAt"],
            "2025-11-27T10:00:00.000Z"
        );
    }

    #[test]
    fn pointer_segments_are_escaped() {
        let mut path = String::new();
        push_segment(&mut path, "a/b~c");
        assert_eq!(path, "/a~1b~0c");
    }

    #[test]
    fn string_fields_are_read_for_keys() {
        let value = json_to_avro(&schema(), &valid()).unwrap();
        assert_eq!(
            record_field_string(&value, "videoId").as_deref(),
            Some("0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a10")
        );
        assert_eq!(record_field_string(&value, "width"), None);
    }
}
