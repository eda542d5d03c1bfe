//! JSON ⇄ Avro binary in one pass, without building an `apache_avro::types::Value`.
//!
//! A [`CompiledSchema`] is built once per Avro schema (named types resolved, record field tables
//! and encoded defaults ready) and then serves every event of that schema:
//!
//! - [`CompiledSchema::encode_json`] validates client JSON and writes its Avro binary encoding.
//!   It accepts and rejects exactly what [`json_to_avro`](super::json_to_avro) does, with the same
//!   [`FieldError`] list, and writes the bytes `json_to_avro` followed by `GenericDatumWriter`
//!   writes. The one liberty: map entries are written in the JSON object's order, where the
//!   `Value` path writes them in its `HashMap`'s (arbitrary) order.
//! - [`CompiledSchema::encode_json_keyed`] also returns a top-level string field (the partition
//!   key) as [`record_field_string`](super::record_field_string) reads it from the `Value`.
//! - [`CompiledSchema::decode_json`] reads Avro binary written with this schema straight into the
//!   JSON [`avro_to_json`](super::avro_to_json) renders from the decoded `Value`. Truncated or
//!   malformed input is an error; lengths are checked against the remaining input before anything
//!   is allocated.
//!
//! Why: per event, the `Value` path rebuilt the table of named types, allocated a `Value` tree,
//! validated it again in the writer and walked it once more to write it; decoding built a `Value`
//! tree only to turn it into JSON.
//!
//! [`CompiledSchema::new`] refuses schemas with types the event catalog does not use (fixed,
//! decimal, date and time-of-day logical types, ...) and arrays whose items can take no bytes
//! (their length could not be checked against the input): callers keep the `Value` path for those.
//!
//! Where the `Value` reader is lenient with a truncated value (it reads a missing boolean,
//! string or union index as null), the direct decoder reports [`DecodeError::Truncated`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use apache_avro::schema::{Name, ResolvedSchema, Schema, UuidSchema};
use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Number, Value as Json};

use super::{
    clip, is_storable_text, json_kind, named_types, FieldError, MAX_FIELD_ERRORS, NUL_REFUSED,
};

/// The schema uses something the compiled codec does not handle: the catalog refuses such a
/// schema, and a value written with one is undecodable (dead-lettered by a consumer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Avro codec cannot compile this schema: {0}")]
pub struct Unsupported(pub String);

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends before the value does.
    #[error("Avro value truncated at byte {offset}")]
    Truncated { offset: usize },
    /// The input is not an encoding of a value of the schema.
    #[error("invalid Avro value at byte {offset}: {reason}")]
    Invalid { offset: usize, reason: String },
}

/// Deepest nesting [`CompiledSchema::decode_json`] follows (only recursive schemas get near it):
/// bounds the decoder's stack use on hostile input.
pub const MAX_DECODE_DEPTH: usize = 512;

/// One Avro schema, prepared for [`encode_json`](Self::encode_json) and
/// [`decode_json`](Self::decode_json). Build it once per schema and share it.
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    nodes: Vec<Node>,
    root: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    /// Decoded, but never accepted from JSON: `json_to_avro` rejects it with this message.
    Bytes {
        rejected: String,
    },
    String,
    Uuid,
    TimestampMillis,
    TimestampMicros,
    Enum {
        symbols: Vec<String>,
        /// `symbols` joined for the error message.
        listed: String,
    },
    Array {
        items: usize,
    },
    Map {
        values: usize,
    },
    Record(Record),
    Union(Union),
    /// Placeholder while a named type is being compiled (never seen afterwards).
    Pending,
}

#[derive(Debug, Clone)]
struct Record {
    fields: Vec<Field>,
    /// Every name the schema's lookup table knows: field names map to their field, aliases to
    /// `None` (an alias is not an unknown field, but does not fill its field either).
    known: HashMap<String, Option<usize>>,
}

impl Record {
    /// Index of the field named `key`, searched from `from` on (wrapping around).
    fn position(&self, key: &str, from: usize) -> Option<usize> {
        let n = self.fields.len();
        (0..n)
            .map(|i| (from + i) % n)
            .find(|&i| self.fields[i].name == key)
    }
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    /// `name` as an escaped JSON Pointer segment.
    segment: String,
    node: usize,
    default: Option<Json>,
    /// `default`, encoded once when it is valid.
    default_bytes: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Union {
    /// Node of every branch, by branch index.
    branches: Vec<usize>,
    /// Index of the first `null` branch.
    null_branch: Option<usize>,
    /// (branch index, node) of every branch that is not `null`, in order.
    candidates: Vec<(usize, usize)>,
}

impl CompiledSchema {
    /// Prepares `schema`, or says why the direct codec cannot handle it.
    pub fn new(schema: &Schema) -> Result<CompiledSchema, Unsupported> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| Unsupported(format!("{e}")))?;
        let mut compiler = Compiler {
            names: named_types(schema),
            resolved: resolved.get_names(),
            nodes: Vec::new(),
            compiled: HashMap::new(),
        };
        let root = compiler.compile(schema, None)?;
        let mut compiled = CompiledSchema {
            nodes: compiler.nodes,
            root,
        };
        for index in 0..compiled.nodes.len() {
            if let Node::Array { items } = compiled.nodes[index] {
                if compiled.min_size(items, &mut Vec::new()) == 0 {
                    return Err(Unsupported(
                        "an array whose items may take no bytes".to_string(),
                    ));
                }
            }
        }
        compiled.encode_defaults();
        Ok(compiled)
    }

    /// Validates `data` like [`json_to_avro`](super::json_to_avro) and appends its Avro binary
    /// encoding to `out`. On error `out` is left as it was.
    pub fn encode_json(&self, data: &Json, out: &mut Vec<u8>) -> Result<(), Vec<FieldError>> {
        self.encode_json_keyed(data, out, None).map(|_| ())
    }

    /// [`encode_json`](Self::encode_json), also returning the top-level field `key_field` as
    /// [`record_field_string`](super::record_field_string) reads it from the `Value`: the string
    /// (UUIDs in canonical form, as encoded), `None` for other types, null or an unknown field.
    pub fn encode_json_keyed(
        &self,
        data: &Json,
        out: &mut Vec<u8>,
        key_field: Option<&str>,
    ) -> Result<Option<String>, Vec<FieldError>> {
        let start = out.len();
        let mut encoder = Encoder {
            schema: self,
            errors: Vec::new(),
            probing: 0,
            path: Vec::new(),
            capture: None,
        };
        let key = match (&self.nodes[self.root], key_field) {
            (Node::Record(record), Some(name)) => record
                .fields
                .iter()
                .position(|f| f.name == name)
                .map(|i| (i, record.fields[i].node)),
            _ => None,
        };
        let ok = match key {
            Some((field, _)) => encoder.encode_root_record(data, out, field),
            None => encoder.encode(self.root, data, out),
        };
        if !ok {
            out.truncate(start);
            return Err(encoder.errors);
        }
        Ok(match (key, encoder.capture) {
            (Some((_, node)), Some((from, to))) => self.key_string(node, &out[from..to]),
            _ => None,
        })
    }

    /// Decodes one value written with this schema into the JSON
    /// [`avro_to_json`](super::avro_to_json) gives for it. Bytes after the value are ignored, as
    /// `apache_avro::from_avro_datum` does.
    pub fn decode_json(&self, bytes: &[u8]) -> Result<Json, DecodeError> {
        self.decode_json_prefix(bytes).map(|(json, _)| json)
    }

    /// [`decode_json`](Self::decode_json), also returning how many bytes the value took.
    pub fn decode_json_prefix(&self, bytes: &[u8]) -> Result<(Json, usize), DecodeError> {
        let mut reader = Reader::new(bytes);
        let json = self.decode(self.root, &mut reader, 0)?;
        Ok((json, reader.pos))
    }

    /// Fewest bytes a value of `node` takes (0 on a cycle, which only makes it a lower bound).
    fn min_size(&self, node: usize, visiting: &mut Vec<usize>) -> usize {
        match &self.nodes[node] {
            Node::Null | Node::Pending => 0,
            Node::Float => 4,
            Node::Double => 8,
            Node::Record(record) => {
                if visiting.contains(&node) {
                    return 0;
                }
                visiting.push(node);
                let size = record
                    .fields
                    .iter()
                    .map(|f| self.min_size(f.node, visiting))
                    .sum();
                visiting.pop();
                size
            }
            _ => 1,
        }
    }

    /// Encodes every valid field default once.
    fn encode_defaults(&mut self) {
        let mut encoded = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let Node::Record(record) = node else { continue };
            for (position, field) in record.fields.iter().enumerate() {
                let Some(default) = &field.default else {
                    continue;
                };
                let mut bytes = Vec::new();
                let mut encoder = Encoder {
                    schema: self,
                    errors: Vec::new(),
                    probing: 0,
                    path: Vec::new(),
                    capture: None,
                };
                if encoder.encode(field.node, default, &mut bytes) {
                    encoded.push((index, position, bytes));
                }
            }
        }
        for (index, position, bytes) in encoded {
            if let Node::Record(record) = &mut self.nodes[index] {
                record.fields[position].default_bytes = Some(bytes);
            }
        }
    }

    /// The partition key from the encoded bytes of a top-level field.
    fn key_string(&self, node: usize, bytes: &[u8]) -> Option<String> {
        let mut reader = Reader::new(bytes);
        let node = match &self.nodes[node] {
            Node::Union(union) => {
                let index = usize::try_from(reader.long().ok()?).ok()?;
                *union.branches.get(index)?
            }
            _ => node,
        };
        match self.nodes[node] {
            Node::String | Node::Uuid => reader.string().ok().map(str::to_string),
            _ => None,
        }
    }

    fn decode(&self, node: usize, r: &mut Reader<'_>, depth: usize) -> Result<Json, DecodeError> {
        if depth > MAX_DECODE_DEPTH {
            return Err(r.invalid(format!("nested deeper than {MAX_DECODE_DEPTH} levels")));
        }
        Ok(match &self.nodes[node] {
            Node::Null => Json::Null,
            Node::Boolean => {
                let at = r.pos;
                match r.byte()? {
                    0 => Json::Bool(false),
                    1 => Json::Bool(true),
                    other => {
                        return Err(DecodeError::Invalid {
                            offset: at,
                            reason: format!("{other} is not a boolean"),
                        })
                    }
                }
            }
            Node::Int => Json::from(r.int()?),
            Node::Long => Json::from(r.long()?),
            Node::Float => {
                let raw = r.take(4)?;
                let f = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                Number::from_f64(f64::from(f)).map_or(Json::Null, Json::Number)
            }
            Node::Double => {
                let raw = r.take(8)?;
                let mut le = [0u8; 8];
                le.copy_from_slice(raw);
                Number::from_f64(f64::from_le_bytes(le)).map_or(Json::Null, Json::Number)
            }
            Node::Bytes { .. } => {
                let len = r.len()?;
                Json::Array(r.take(len)?.iter().map(|b| Json::from(*b)).collect())
            }
            Node::String => Json::String(r.string()?.to_string()),
            Node::Uuid => {
                let at = r.pos;
                let text = r.string()?;
                if is_canonical_uuid(text) {
                    return Ok(Json::String(text.to_string()));
                }
                match uuid::Uuid::try_parse(text) {
                    Ok(id) => {
                        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                        Json::String(id.hyphenated().encode_lower(&mut buf).to_string())
                    }
                    Err(_) => {
                        return Err(DecodeError::Invalid {
                            offset: at,
                            reason: "not a UUID".to_string(),
                        })
                    }
                }
            }
            Node::TimestampMillis => {
                let ms = r.long()?;
                timestamp_millis_json(ms)
            }
            Node::TimestampMicros => {
                let us = r.long()?;
                match DateTime::from_timestamp_micros(us) {
                    Some(t) => Json::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
                    None => Json::from(us),
                }
            }
            Node::Enum { symbols, .. } => {
                let at = r.pos;
                let index = r.int()?;
                match usize::try_from(index).ok().and_then(|i| symbols.get(i)) {
                    Some(symbol) => Json::String(symbol.clone()),
                    None => {
                        return Err(DecodeError::Invalid {
                            offset: at,
                            reason: format!("enum index {index} of {} symbols", symbols.len()),
                        })
                    }
                }
            }
            Node::Array { items } => {
                let mut out = Vec::new();
                // Every item takes at least one byte (checked when compiling).
                let item_size = std::mem::size_of::<apache_avro::types::Value>();
                loop {
                    let count = r.next_block(out.len(), item_size)?;
                    if count == 0 {
                        break;
                    }
                    out.reserve_exact(count);
                    for _ in 0..count {
                        out.push(self.decode(*items, r, depth + 1)?);
                    }
                }
                Json::Array(out)
            }
            Node::Map { values } => {
                // Sorted by key, the later of equal keys winning: as `avro_to_json` renders the
                // decoder's `HashMap`.
                let mut out = BTreeMap::new();
                // Every entry takes at least its key's length byte.
                let entry_size = std::mem::size_of::<(String, apache_avro::types::Value)>();
                loop {
                    let count = r.next_block(out.len(), entry_size)?;
                    if count == 0 {
                        break;
                    }
                    for _ in 0..count {
                        let key = r.string()?.to_string();
                        let value = self.decode(*values, r, depth + 1)?;
                        out.insert(key, value);
                    }
                }
                Json::Object(out.into_iter().collect())
            }
            Node::Record(record) => {
                let mut out = Map::with_capacity(record.fields.len());
                for field in &record.fields {
                    let value = self.decode(field.node, r, depth + 1)?;
                    out.insert(field.name.clone(), value);
                }
                Json::Object(out)
            }
            Node::Union(union) => {
                let at = r.pos;
                let index = r.long()?;
                match usize::try_from(index)
                    .ok()
                    .and_then(|i| union.branches.get(i))
                {
                    Some(branch) => self.decode(*branch, r, depth + 1)?,
                    None => {
                        return Err(DecodeError::Invalid {
                            offset: at,
                            reason: format!("union branch {index} of {}", union.branches.len()),
                        })
                    }
                }
            }
            Node::Pending => return Err(r.invalid("unresolved schema".to_string())),
        })
    }
}

/// RFC 3339 in UTC with milliseconds, as `avro_to_json` renders `timestamp-millis`; the raw number
/// when out of chrono's range.
fn timestamp_millis_json(ms: i64) -> Json {
    const DAY_MS: i64 = 86_400_000;
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return match DateTime::from_timestamp_millis(ms) {
            Some(t) => Json::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => Json::from(ms),
        };
    }
    let (hour, minute, second, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let mut text = [0u8; 24];
    let mut put = |at: usize, value: i64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            text[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, hour, 2);
    put(14, minute, 2);
    put(17, second, 2);
    put(20, milli, 3);
    for (at, separator) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        text[at] = separator;
    }
    Json::String(String::from_utf8_lossy(&text).into_owned())
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Compiler<'s, 'r> {
    /// Named types as `json_to_avro` resolves `Ref`s.
    names: HashMap<Name, &'s Schema>,
    /// Named types as the Avro writer and reader resolve `Ref`s.
    resolved: &'r HashMap<Name, &'s Schema>,
    nodes: Vec<Node>,
    /// Schema (by address) → node, so named types are compiled once and may refer to themselves.
    compiled: HashMap<*const Schema, usize>,
}

impl<'s> Compiler<'s, '_> {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn compile(
        &mut self,
        schema: &'s Schema,
        namespace: Option<&str>,
    ) -> Result<usize, Unsupported> {
        if let Some(index) = self.compiled.get(&(schema as *const Schema)) {
            return Ok(*index);
        }
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes {
                rejected: format!("the schema type {schema:?} is not accepted from JSON"),
            },
            Schema::String => Node::String,
            Schema::Uuid(UuidSchema::String) => Node::Uuid,
            Schema::TimestampMillis => Node::TimestampMillis,
            Schema::TimestampMicros => Node::TimestampMicros,
            Schema::Enum(e) => Node::Enum {
                symbols: e.symbols.clone(),
                listed: e.symbols.join(", "),
            },
            Schema::Array(array) => Node::Array {
                items: self.compile(&array.items, namespace)?,
            },
            Schema::Map(map) => Node::Map {
                values: self.compile(&map.types, namespace)?,
            },
            Schema::Union(union) => {
                let mut branches = Vec::new();
                for variant in union.variants() {
                    branches.push(self.compile(variant, namespace)?);
                }
                let variants = union.variants();
                Node::Union(Union {
                    null_branch: variants.iter().position(|v| matches!(v, Schema::Null)),
                    candidates: variants
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| !matches!(v, Schema::Null))
                        .map(|(i, _)| (i, branches[i]))
                        .collect(),
                    branches,
                })
            }
            Schema::Record(record) => {
                // Registered before its fields, so a field may refer back to the record.
                let index = self.push(Node::Pending);
                self.compiled.insert(schema as *const Schema, index);
                let inner = record
                    .name
                    .fully_qualified_name(namespace)
                    .namespace()
                    .map(str::to_string);
                let mut fields = Vec::with_capacity(record.fields.len());
                for field in &record.fields {
                    fields.push(Field {
                        name: field.name.clone(),
                        segment: field.name.replace('~', "~0").replace('/', "~1"),
                        node: self.compile(&field.schema, inner.as_deref())?,
                        default: field.default.clone(),
                        default_bytes: None,
                    });
                }
                let mut known: HashMap<String, Option<usize>> =
                    record.lookup.keys().map(|k| (k.clone(), None)).collect();
                for (i, field) in record.fields.iter().enumerate() {
                    known.insert(field.name.clone(), Some(i));
                }
                self.nodes[index] = Node::Record(Record { fields, known });
                return Ok(index);
            }
            Schema::Ref { name } => {
                let target = self.names.get(name).copied();
                let qualified = name.fully_qualified_name(namespace);
                let written = self.resolved.get(qualified.as_ref()).copied();
                let (Some(target), Some(written)) = (target, written) else {
                    return Err(Unsupported(format!("unresolved reference to {name}")));
                };
                // The converter and the Avro writer must agree on what the name means.
                if !std::ptr::eq(target, written) && target != written {
                    return Err(Unsupported(format!("ambiguous reference to {name}")));
                }
                let ref_namespace = qualified.namespace().map(str::to_string);
                if ref_namespace.as_deref() != name.namespace() {
                    return Err(Unsupported(format!("unqualified reference to {name}")));
                }
                let index = self.compile(target, ref_namespace.as_deref())?;
                self.compiled.insert(schema as *const Schema, index);
                return Ok(index);
            }
            other => {
                return Err(Unsupported(format!(
                    "schema type {:?}",
                    apache_avro::schema::SchemaKind::from(other)
                )))
            }
        };
        let index = self.push(node);
        self.compiled.insert(schema as *const Schema, index);
        Ok(index)
    }
}

/// One step of the JSON Pointer of the value being encoded; rendered only for an error.
#[derive(Clone, Copy)]
enum Segment<'a> {
    /// A record field, escaped already.
    Field(&'a str),
    Index(usize),
    /// An object key as the client sent it.
    Key(&'a str),
}

struct Encoder<'a> {
    schema: &'a CompiledSchema,
    errors: Vec<FieldError>,
    /// Above 0 while trying union branches: failures there are not reported.
    probing: usize,
    path: Vec<Segment<'a>>,
    /// Where the captured top-level field was written in the output.
    capture: Option<(usize, usize)>,
}

/// Whether `text` is a UUID in the form `Uuid::to_string` writes (hyphenated, lowercase): then
/// parsing and writing it back gives the same text, and both can be skipped.
fn is_canonical_uuid(text: &str) -> bool {
    fn hex(group: &[u8]) -> bool {
        group.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
    let b = text.as_bytes();
    b.len() == 36
        && b[8] == b'-'
        && b[13] == b'-'
        && b[18] == b'-'
        && b[23] == b'-'
        && hex(&b[..8])
        && hex(&b[9..13])
        && hex(&b[14..18])
        && hex(&b[19..23])
        && hex(&b[24..])
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7F {
        out.push(((z as u8) & 0x7F) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    write_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

impl<'a> Encoder<'a> {
    fn render_path(&self) -> String {
        let mut path = String::new();
        for segment in &self.path {
            path.push('/');
            match segment {
                Segment::Field(escaped) => path.push_str(escaped),
                Segment::Index(i) => {
                    let _ = write!(path, "{i}");
                }
                Segment::Key(key) => path.push_str(&key.replace('~', "~0").replace('/', "~1")),
            }
        }
        path
    }

    /// Records a violation at the current path (unless probing or capped); always `false`.
    fn fail(&mut self, message: impl FnOnce() -> String) -> bool {
        if self.probing == 0 && self.errors.len() < MAX_FIELD_ERRORS {
            self.errors.push(FieldError {
                path: self.render_path(),
                message: message(),
            });
        }
        false
    }

    fn mismatch(&mut self, expected: &str, found: &Json) -> bool {
        self.fail(|| format!("expected {expected}, found {}", json_kind(found)))
    }

    /// The top-level record, noting where field `capture` is written.
    fn encode_root_record(&mut self, data: &'a Json, out: &mut Vec<u8>, capture: usize) -> bool {
        let schema = self.schema;
        match (&schema.nodes[schema.root], data) {
            (Node::Record(record), Json::Object(fields)) => {
                self.record(record, fields, out, Some(capture))
            }
            _ => self.encode(schema.root, data, out),
        }
    }

    /// Appends `data` as a value of `node`; `false` (with the violations recorded) when invalid.
    fn encode(&mut self, node: usize, data: &'a Json, out: &mut Vec<u8>) -> bool {
        let schema = self.schema;
        match (&schema.nodes[node], data) {
            (Node::Null, Json::Null) => true,
            (Node::Boolean, Json::Bool(b)) => {
                out.push(u8::from(*b));
                true
            }
            (Node::Int, Json::Number(n)) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
                Some(i) => {
                    write_long(out, i64::from(i));
                    true
                }
                None => self.fail(|| format!("expected int (32-bit integer), found {n}")),
            },
            (Node::Long, Json::Number(n)) => match n.as_i64() {
                Some(i) => {
                    write_long(out, i);
                    true
                }
                None => self.fail(|| format!("expected long (64-bit integer), found {n}")),
            },
            (Node::Float, Json::Number(n)) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.is_finite() && f.abs() <= f32::MAX as f64 {
                    out.extend_from_slice(&(f as f32).to_le_bytes());
                    true
                } else {
                    self.fail(|| format!("{n} is out of range for float"))
                }
            }
            (Node::Double, Json::Number(n)) => match n.as_f64() {
                Some(f) => {
                    out.extend_from_slice(&f.to_le_bytes());
                    true
                }
                None => false,
            },
            (Node::String, Json::String(s)) if !is_storable_text(s) => {
                self.fail(|| NUL_REFUSED.to_string())
            }
            (Node::String, Json::String(s)) => {
                write_str(out, s);
                true
            }
            (Node::Uuid, Json::String(s)) if is_canonical_uuid(s) => {
                write_str(out, s);
                true
            }
            (Node::Uuid, Json::String(s)) => match uuid::Uuid::try_parse(s) {
                Ok(id) => {
                    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                    write_str(out, id.hyphenated().encode_lower(&mut buf));
                    true
                }
                Err(_) => self.fail(|| format!("expected a UUID, found \"{}\"", clip(s))),
            },
            (Node::TimestampMillis, Json::Number(n)) => match n.as_i64() {
                Some(ms) => {
                    write_long(out, ms);
                    true
                }
                None => self.fail(|| "expected epoch milliseconds or an RFC 3339 time".into()),
            },
            (Node::TimestampMillis, Json::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => {
                    write_long(out, t.timestamp_millis());
                    true
                }
                Err(_) => self.fail(|| format!("expected an RFC 3339 time, found \"{}\"", clip(s))),
            },
            (Node::TimestampMicros, Json::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => {
                    write_long(out, t.timestamp_micros());
                    true
                }
                Err(_) => self.fail(|| "expected an RFC 3339 time".into()),
            },
            (Node::TimestampMicros, Json::Number(n)) if n.is_i64() => match n.as_i64() {
                Some(us) => {
                    write_long(out, us);
                    true
                }
                None => false,
            },
            (Node::Enum { symbols, listed }, Json::String(s)) => {
                match symbols.iter().position(|x| x == s) {
                    Some(i) => {
                        write_long(out, i as i64);
                        true
                    }
                    None => self.fail(|| format!("\"{}\" is not one of {listed}", clip(s))),
                }
            }
            (Node::Array { items }, Json::Array(values)) => {
                if !values.is_empty() {
                    write_long(out, values.len() as i64);
                }
                let mut ok = true;
                for (i, item) in values.iter().enumerate() {
                    self.path.push(Segment::Index(i));
                    ok &= self.encode(*items, item, out);
                    self.path.pop();
                }
                out.push(0);
                ok
            }
            (Node::Map { values }, Json::Object(entries)) => {
                if !entries.is_empty() {
                    write_long(out, entries.len() as i64);
                }
                let mut ok = true;
                for (key, item) in entries {
                    write_str(out, key);
                    self.path.push(Segment::Key(key));
                    ok &= if is_storable_text(key) {
                        self.encode(*values, item, out)
                    } else {
                        self.fail(|| format!("a map key {NUL_REFUSED}"))
                    };
                    self.path.pop();
                }
                out.push(0);
                ok
            }
            (Node::Record(record), Json::Object(fields)) => self.record(record, fields, out, None),
            (Node::Union(union), _) => self.union(union, data, out),
            (Node::Null, _) => self.mismatch("null", data),
            (Node::Boolean, _) => self.mismatch("boolean", data),
            (Node::Int | Node::Long, _) => self.mismatch("integer", data),
            (Node::Float | Node::Double, _) => self.mismatch("number", data),
            (Node::String | Node::Uuid | Node::Enum { .. }, _) => self.mismatch("string", data),
            (Node::TimestampMillis | Node::TimestampMicros, _) => {
                self.mismatch("an RFC 3339 time string", data)
            }
            (Node::Array { .. }, _) => self.mismatch("array", data),
            (Node::Map { .. } | Node::Record(_), _) => self.mismatch("object", data),
            (Node::Bytes { rejected }, _) => self.fail(|| rejected.clone()),
            (Node::Pending, _) => self.fail(|| "unresolved schema".into()),
        }
    }

    fn record(
        &mut self,
        record: &'a Record,
        fields: &'a Map<String, Json>,
        out: &mut Vec<u8>,
        capture: Option<usize>,
    ) -> bool {
        let mut ok = true;
        // The value of every field, found in one pass over the object: objects usually list the
        // fields in schema order, so the search starts after the previous match.
        const SMALL: usize = 32;
        let small = record.fields.len() <= SMALL;
        let mut slots: [Option<&'a Json>; SMALL] = [None; SMALL];
        let mut next = 0;
        for (key, value) in fields {
            let position = if small {
                record.position(key, next)
            } else {
                record.known.get(key.as_str()).copied().flatten()
            };
            match position {
                Some(i) => {
                    if small {
                        slots[i] = Some(value);
                    }
                    next = i + 1;
                }
                None if record.known.contains_key(key.as_str()) => {}
                None => {
                    self.path.push(Segment::Key(key));
                    self.fail(|| "unknown field".into());
                    self.path.pop();
                    ok = false;
                }
            }
        }
        for (position, field) in record.fields.iter().enumerate() {
            let start = out.len();
            self.path.push(Segment::Field(&field.segment));
            let given = if small {
                slots[position]
            } else {
                fields.get(&field.name)
            };
            let good = match (given, &field.default_bytes, &field.default) {
                (Some(value), _, _) => self.encode(field.node, value, out),
                (None, Some(bytes), _) => {
                    out.extend_from_slice(bytes);
                    true
                }
                (None, None, Some(default)) => self.encode(field.node, default, out),
                (None, None, None) => self.fail(|| "missing required field".into()),
            };
            self.path.pop();
            if capture == Some(position) {
                self.capture = Some((start, out.len()));
            }
            ok &= good;
        }
        ok
    }

    fn union(&mut self, union: &'a Union, data: &'a Json, out: &mut Vec<u8>) -> bool {
        if data.is_null() {
            return match union.null_branch {
                Some(i) => {
                    write_long(out, i as i64);
                    true
                }
                None => self.fail(|| "null is not allowed here".into()),
            };
        }
        // The common case, `["null", T]`: T's errors are reported directly.
        if let [(index, only)] = union.candidates[..] {
            write_long(out, index as i64);
            return self.encode(only, data, out);
        }
        for &(index, variant) in &union.candidates {
            let mark = out.len();
            write_long(out, index as i64);
            self.probing += 1;
            let ok = self.encode(variant, data, out);
            self.probing -= 1;
            if ok {
                return true;
            }
            out.truncate(mark);
        }
        self.fail(|| format!("{} matches no branch of the union", json_kind(data)))
    }
}

/// Bytes being decoded.
struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
    /// The Avro library's allocation bound, applied as its reader does.
    max_allocation: usize,
}

impl<'b> Reader<'b> {
    fn new(bytes: &'b [u8]) -> Reader<'b> {
        Reader {
            bytes,
            pos: 0,
            max_allocation: apache_avro::util::max_allocation_bytes(
                apache_avro::util::DEFAULT_MAX_ALLOCATION_BYTES,
            ),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated {
            offset: self.bytes.len(),
        }
    }

    fn invalid(&self, reason: String) -> DecodeError {
        DecodeError::Invalid {
            offset: self.pos,
            reason,
        }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.pos).ok_or_else(|| self.truncated())?;
        self.pos += 1;
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<&'b [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.truncated());
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    /// A variable-length integer of at most 10 bytes, read as the Avro library reads it.
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in 0..10 {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7F) << (shift * 7);
            if byte >> 7 == 0 {
                return Ok(value);
            }
        }
        Err(self.invalid("integer longer than 10 bytes".to_string()))
    }

    fn long(&mut self) -> Result<i64, DecodeError> {
        let z = self.varint()?;
        Ok(if z & 1 == 0 {
            (z >> 1) as i64
        } else {
            !(z >> 1) as i64
        })
    }

    fn int(&mut self) -> Result<i32, DecodeError> {
        let at = self.pos;
        let long = self.long()?;
        i32::try_from(long).map_err(|_| DecodeError::Invalid {
            offset: at,
            reason: format!("{long} is out of range for int"),
        })
    }

    /// A length prefix: not negative, within the allocation bound and the remaining input.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let long = self.long()?;
        let len = usize::try_from(long).map_err(|_| DecodeError::Invalid {
            offset: at,
            reason: format!("negative length {long}"),
        })?;
        if len > self.max_allocation {
            return Err(DecodeError::Invalid {
                offset: at,
                reason: format!("length {len} exceeds {}", self.max_allocation),
            });
        }
        if len > self.remaining() {
            return Err(self.truncated());
        }
        Ok(len)
    }

    fn string(&mut self) -> Result<&'b str, DecodeError> {
        let len = self.len()?;
        let at = self.pos;
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Invalid {
            offset: at,
            reason: "string is not UTF-8".to_string(),
        })
    }

    /// Item count of the next array or map block (0 at the end); a negative count is followed by
    /// the block's size in bytes.
    fn block_len(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let raw = self.long()?;
        let count = match raw {
            0 => return Ok(0),
            n if n < 0 => {
                self.long()?;
                n.checked_neg()
            }
            n => Some(n),
        };
        match count.and_then(|c| usize::try_from(c).ok()) {
            Some(count) if count <= self.max_allocation => Ok(count),
            _ => Err(DecodeError::Invalid {
                offset: at,
                reason: format!("block count {raw}"),
            }),
        }
    }

    /// The item count of the next array or map block (0 at the end), once the input can hold that
    /// many items of at least one byte each and `held` plus them stays within the allocation
    /// bound.
    fn next_block(&mut self, held: usize, item_size: usize) -> Result<usize, DecodeError> {
        let count = self.block_len()?;
        if count > self.remaining() {
            return Err(self.truncated());
        }
        if count > 0 {
            self.check_collection(held + count, item_size)?;
        }
        Ok(count)
    }

    /// The Avro library's bound on a collection of `total` items of `item_size` bytes.
    fn check_collection(&self, total: usize, item_size: usize) -> Result<(), DecodeError> {
        match total.checked_mul(item_size) {
            Some(bytes) if bytes <= self.max_allocation => Ok(()),
            _ => Err(self.invalid(format!("{total} items exceed the allocation bound"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{avro_to_json, json_to_avro, record_field_string};
    use super::*;
    use apache_avro::types::Value;
    use serde_json::json;

    fn old_encode(schema: &Schema, data: &Json) -> Result<Vec<u8>, Vec<FieldError>> {
        let value = json_to_avro(schema, data)?;
        Ok(
            apache_avro::writer::datum::GenericDatumWriter::builder(schema)
                .build()
                .unwrap()
                .write_value_to_vec(value)
                .unwrap(),
        )
    }

    fn old_decode(schema: &Schema, bytes: &[u8]) -> Json {
        let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
            .build()
            .unwrap()
            .read_value(&mut &bytes[..])
            .unwrap();
        avro_to_json(&value)
    }

    fn new_encode(compiled: &CompiledSchema, data: &Json) -> Result<Vec<u8>, Vec<FieldError>> {
        let mut out = vec![0xAA];
        let result = compiled.encode_json(data, &mut out);
        match result {
            Ok(()) => Ok(out[1..].to_vec()),
            Err(errors) => {
                assert_eq!(out, vec![0xAA], "the buffer is restored on error");
                Err(errors)
            }
        }
    }

    /// Both paths agree on `data`: same bytes or same errors, and the same decoded JSON.
    fn agree(schema: &Schema, data: &Json) {
        let compiled = CompiledSchema::new(schema).unwrap();
        let old = old_encode(schema, data);
        let new = new_encode(&compiled, data);
        assert_eq!(new, old, "{data}");
        if let Ok(bytes) = new {
            assert_eq!(
                compiled.decode_json(&bytes).unwrap(),
                old_decode(schema, &bytes)
            );
        }
    }

    /// Every construct the direct codec handles, including a multi-branch union, a named type
    /// used again by reference, bytes, an alias and escaped pointer segments.
    fn rich_schema() -> Schema {
        Schema::parse(&json!({
            "type": "record", "name": "Rich", "namespace": "circulatory.test",
            "fields": [
                {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
                {"name": "maybeId", "type": ["null", {"type": "string", "logicalType": "uuid"}], "default": null},
                {"name": "flag", "type": "boolean"},
                {"name": "count", "type": "int"},
                {"name": "total", "type": "long", "aliases": ["sum"]},
                {"name": "ratio", "type": "float"},
                {"name": "score", "type": "double"},
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "atMicros", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}], "default": null},
                {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"], "default": "A"}},
                {"name": "otherKind", "type": "Kind", "default": "B"},
                {"name": "small", "type": ["null", "int"], "default": null},
                {"name": "either", "type": ["null", "string", "long", "Kind"], "default": null},
                {"name": "blob", "type": ["null", "bytes"], "default": null},
                {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
                {"name": "counts", "type": {"type": "map", "values": "long"}, "default": {}},
                {"name": "parts", "type": {"type": "array", "items": {
                    "type": "record", "name": "Part",
                    "fields": [
                        {"name": "name", "type": "string"},
                        {"name": "size", "type": ["null", "int"], "default": null}
                    ]}}, "default": []},
                {"name": "main", "type": ["null", "Part"], "default": null},
                {"name": "nothing", "type": "null", "default": null},
                {"name": "choice", "type": ["string", "long"], "default": "x"}
            ]
        }))
        .unwrap()
    }

    fn rich() -> Json {
        json!({
            "id": "0B0C3F0E8E4C4A579A511F2D7F8F5A10",
            "maybeId": "{0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a11}",
            "flag": true,
            "count": -2147483648,
            "total": 9223372036854775807i64,
            "ratio": 0.1,
            "score": -1.5e300,
            "at": "2026-11-27T10:00:00.250+02:00",
            "atMicros": "1969-12-31T23:59:59.999999Z",
            "kind": "C",
            "small": 5,
            "either": 17,
            "tags": ["x", "ü", ""],
            "counts": {"k": -1},
            "parts": [{"name": "p1"}, {"name": "p2", "size": 3}],
            "main": {"name": "m", "size": null}
        })
    }

    #[test]
    fn valid_documents_give_the_same_bytes_and_json() {
        let schema = rich_schema();
        agree(&schema, &rich());
        let mut data = rich();
        data["either"] = json!("text");
        data["at"] = json!(-1);
        data["atMicros"] = json!(-1);
        data["tags"] = json!([]);
        data["counts"] = json!({});
        data["parts"] = json!([]);
        data["main"] = Json::Null;
        data["ratio"] = json!(3.4e38);
        agree(&schema, &data);
        data["either"] = json!("B");
        data["count"] = json!(2147483647);
        data["total"] = json!(i64::MIN);
        agree(&schema, &data);
        let mut minimal = rich();
        for optional in [
            "maybeId", "atMicros", "small", "either", "tags", "counts", "parts", "main",
        ] {
            minimal.as_object_mut().unwrap().remove(optional);
        }
        agree(&schema, &minimal);
    }

    #[test]
    fn invalid_documents_give_the_same_errors() {
        let schema = rich_schema();
        let mutations: Vec<(&str, Json)> = vec![
            ("id", json!("not-a-uuid")),
            ("id", json!(null)),
            ("id", json!(12)),
            ("maybeId", json!("x")),
            ("flag", json!("true")),
            ("count", json!(2147483648u64)),
            ("count", json!(1.5)),
            ("total", json!(u64::MAX)),
            ("total", json!(1e3)),
            ("ratio", json!(1e39)),
            ("ratio", json!("1")),
            ("score", json!(true)),
            ("at", json!("yesterday")),
            ("at", json!(1.5)),
            ("at", json!(u64::MAX)),
            ("at", json!([])),
            ("atMicros", json!("soon")),
            ("atMicros", json!(u64::MAX)),
            ("atMicros", json!(1.5)),
            ("kind", json!("D")),
            ("kind", json!(null)),
            ("otherKind", json!("x".repeat(100))),
            ("small", json!("five")),
            ("either", json!(1.5)),
            ("either", json!({})),
            ("blob", json!([1, 2])),
            ("blob", json!("AQI=")),
            ("tags", json!(["a", 1, null])),
            ("tags", json!({})),
            ("counts", json!({"a/b": "x", "c~": 1.5, "ok": 1})),
            ("parts", json!([{"name": 1}, {"size": "x", "extra": 1}, 7])),
            ("main", json!({"name": "m", "size": 1.5})),
            ("main", json!("m")),
            ("nothing", json!(0)),
            ("choice", json!(null)),
            ("choice", json!(1.5)),
            ("choice", json!(-3)),
            ("unknown", json!(1)),
            ("x/y~z", json!(1)),
            ("sum", json!(1)),
        ];
        for (field, value) in &mutations {
            let mut data = rich();
            data[*field] = value.clone();
            agree(&schema, &data);
        }
        let mut all = rich();
        for (field, value) in &mutations {
            all[*field] = value.clone();
        }
        agree(&schema, &all);
        let mut missing = rich();
        missing.as_object_mut().unwrap().remove("id");
        missing.as_object_mut().unwrap().remove("count");
        agree(&schema, &missing);
        agree(&schema, &json!([]));
        agree(&schema, &json!(null));
        let mut many = rich();
        for i in 0..50 {
            many[format!("extra{i}")] = json!(i);
        }
        let errors = new_encode(&CompiledSchema::new(&schema).unwrap(), &many).unwrap_err();
        assert_eq!(errors.len(), MAX_FIELD_ERRORS);
        agree(&schema, &many);
    }

    #[test]
    fn field_order_and_record_width_do_not_matter() {
        let schema = rich_schema();
        let reversed: Map<String, Json> = rich()
            .as_object()
            .unwrap()
            .iter()
            .rev()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut reversed = Json::Object(reversed);
        agree(&schema, &reversed);
        reversed["sum"] = json!(1);
        reversed["zz"] = json!(1);
        reversed.as_object_mut().unwrap().remove("flag");
        agree(&schema, &reversed);

        let fields: Vec<Json> = (0..40)
            .map(|i| json!({"name": format!("f{i}"), "type": ["null", "int"], "default": null}))
            .collect();
        let wide =
            Schema::parse(&json!({"type": "record", "name": "Wide", "fields": fields})).unwrap();
        let mut data = Map::new();
        for i in (0..40).rev().step_by(3) {
            data.insert(format!("f{i}"), json!(i));
        }
        agree(&wide, &Json::Object(data.clone()));
        data.insert("f7".into(), json!("seven"));
        data.insert("f40".into(), json!(40));
        agree(&wide, &Json::Object(data));
    }

    #[test]
    fn canonical_uuids_are_recognised() {
        let id = uuid::Uuid::from_u128(0x0b0c_3f0e_8e4c_4a57_9a51_1f2d_7f8f_5a10);
        assert!(is_canonical_uuid(&id.to_string()));
        for other in [
            id.to_string().to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            "0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a1g".to_string(),
            "0b0c3f0e-8e4c-4a57-9a51+1f2d7f8f5a10".to_string(),
            "0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a100".to_string(),
        ] {
            assert!(!is_canonical_uuid(&other), "{other}");
        }
    }

    #[test]
    fn maps_with_several_entries_decode_to_the_same_json() {
        let schema = rich_schema();
        let compiled = CompiledSchema::new(&schema).unwrap();
        let mut data = rich();
        data["counts"] = json!({"z": 1, "a": 2, "m": 3});
        let mut bytes = Vec::new();
        compiled.encode_json(&data, &mut bytes).unwrap();
        let old = old_encode(&schema, &data).unwrap();
        assert_eq!(bytes.len(), old.len());
        assert_eq!(old_decode(&schema, &bytes), old_decode(&schema, &old));
        let json = compiled.decode_json(&bytes).unwrap();
        assert_eq!(json, old_decode(&schema, &bytes));
        let keys: Vec<_> = json["counts"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "m", "z"]);
    }

    #[test]
    fn duplicate_map_keys_keep_the_last_value() {
        let schema = Schema::parse(&json!({"type": "map", "values": "int"})).unwrap();
        let compiled = CompiledSchema::new(&schema).unwrap();
        // Two blocks: {"b": 1, "a": 2}, then {"b": 3} as a negative count with its byte size.
        let bytes = [4, 2, b'b', 2, 2, b'a', 4, 1, 6, 2, b'b', 6, 0];
        let json = compiled.decode_json(&bytes).unwrap();
        assert_eq!(json, old_decode(&schema, &bytes));
        assert_eq!(json, json!({"a": 2, "b": 3}));
    }

    #[test]
    fn stored_strings_decode_like_the_avro_reader() {
        let schema = Schema::parse(&json!({"type": "record", "name": "R", "fields": [
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "flag", "type": "boolean"},
            {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["A", "B"]}}
        ]}))
        .unwrap();
        let compiled = CompiledSchema::new(&schema).unwrap();
        let record = |id: &[u8], rest: &[u8]| {
            let mut bytes = Vec::new();
            write_long(&mut bytes, id.len() as i64);
            bytes.extend_from_slice(id);
            bytes.extend_from_slice(rest);
            bytes
        };
        // Another producer's spelling of a UUID reads back in canonical form.
        for id in [
            "0B0C3F0E-8E4C-4A57-9A51-1F2D7F8F5A10",
            "0b0c3f0e8e4c4a579a511f2d7f8f5a10",
            "urn:uuid:0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a10",
        ] {
            let bytes = record(id.as_bytes(), &[1, 2]);
            let json = compiled.decode_json(&bytes).unwrap();
            assert_eq!(json, old_decode(&schema, &bytes));
            assert_eq!(json["id"], "0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a10");
        }
        let id = b"0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a10";
        for bad in [
            record(b"not-a-uuid", &[1, 2]),
            record(b"0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a1\xff", &[1, 2]),
            record(id, &[2, 2]),
            record(id, &[1, 4]),
            record(id, &[1, 1]),
            record(id, &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            assert!(compiled.decode_json(&bad).is_err());
            let old = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
                .build()
                .unwrap()
                .read_value(&mut &bad[..]);
            assert!(old.is_err());
        }
    }

    #[test]
    fn a_compiled_schema_is_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<CompiledSchema>();
    }

    #[test]
    fn special_floats_render_as_null() {
        let schema = Schema::parse(&json!({"type": "array", "items": "float"})).unwrap();
        let compiled = CompiledSchema::new(&schema).unwrap();
        let mut bytes = vec![6];
        for f in [f32::NAN, f32::INFINITY, 0.1f32] {
            bytes.extend_from_slice(&f.to_le_bytes());
        }
        bytes.push(0);
        let json = compiled.decode_json(&bytes).unwrap();
        assert_eq!(json, old_decode(&schema, &bytes));
        assert_eq!(json[0], Json::Null);
    }

    #[test]
    fn timestamps_render_like_chrono() {
        let mut samples = vec![
            0,
            -1,
            1,
            999,
            -999,
            1_764_237_600_000,
            -62_135_596_800_000, // year 1
            -62_167_219_200_000, // year 0
            -62_167_219_200_001,
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            253_402_300_800_000,
            i64::MAX,
            i64::MIN,
            8_210_298_412_800_000,
            -8_334_632_851_200_001,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push((x as i64) % 400_000_000_000_000);
            samples.push((x as i64) >> (x % 60));
        }
        for ms in samples {
            assert_eq!(
                timestamp_millis_json(ms),
                avro_to_json(&Value::TimestampMillis(ms)),
                "{ms}"
            );
        }
    }

    #[test]
    fn keys_are_read_like_record_field_string() {
        let schema = rich_schema();
        let compiled = CompiledSchema::new(&schema).unwrap();
        let mut data = rich();
        for either in [json!("text"), json!(5), json!(null)] {
            data["either"] = either;
            let value = json_to_avro(&schema, &data).unwrap();
            for field in ["id", "maybeId", "either", "count", "kind", "main", "nope"] {
                let mut out = Vec::new();
                let key = compiled
                    .encode_json_keyed(&data, &mut out, Some(field))
                    .unwrap();
                assert_eq!(key, record_field_string(&value, field), "{field}");
            }
        }
        let mut out = Vec::new();
        let key = compiled.encode_json_keyed(&rich(), &mut out, Some("id"));
        assert_eq!(
            key.unwrap().as_deref(),
            Some("0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a10")
        );
    }

    #[test]
    fn recursive_types_are_followed() {
        let schema = Schema::parse(&json!({
            "type": "record", "name": "Node", "namespace": "circulatory.test",
            "fields": [
                {"name": "label", "type": "string"},
                {"name": "next", "type": ["null", "Node"], "default": null},
                {"name": "children", "type": {"type": "array", "items": "Node"}, "default": []}
            ]
        }))
        .unwrap();
        let data = json!({"label": "a", "next": {"label": "b", "next": {"label": "c"}},
            "children": [{"label": "d", "children": [{"label": "e", "next": {"label": 1}}]}]});
        agree(&schema, &data);
        let mut ok = data.clone();
        ok["children"][0]["children"][0]["next"]["label"] = json!("f");
        agree(&schema, &ok);
    }

    #[test]
    fn unsupported_schemas_are_refused() {
        for schema in [
            json!({"type": "fixed", "name": "F", "size": 4}),
            json!({"type": "int", "logicalType": "date"}),
            json!({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}),
            json!({"type": "array", "items": "null"}),
        ] {
            let schema = Schema::parse(&schema).unwrap();
            assert!(CompiledSchema::new(&schema).is_err(), "{schema:?}");
        }
    }

    #[test]
    fn truncated_and_malformed_input_is_an_error() {
        let schema = rich_schema();
        let compiled = CompiledSchema::new(&schema).unwrap();
        let mut bytes = Vec::new();
        compiled.encode_json(&rich(), &mut bytes).unwrap();
        for len in 0..bytes.len() {
            assert!(compiled.decode_json(&bytes[..len]).is_err(), "prefix {len}");
        }
        let (_, used) = compiled.decode_json_prefix(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        // A huge string length, a negative length, an 11-byte varint, a bad union branch.
        for bad in [
            vec![0xFE, 0xFF, 0xFF, 0xFF, 0x0F],
            vec![0x01],
            vec![0xFF; 11],
        ] {
            assert!(compiled.decode_json(&bad).is_err());
        }
        let mut bad_branch = bytes.clone();
        bad_branch[37] = 9; // maybeId's branch index
        assert!(compiled.decode_json(&bad_branch).is_err());
    }
}
