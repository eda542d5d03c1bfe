//! The Confluent-compatible schema registry: registration and compatibility for operators, and
//! the Confluent wire format (`0x00`, 4-byte big-endian schema id, Avro binary) for producers and
//! consumers. The registry calls of the wire format go through `schema_registry_converter`'s
//! client; the values themselves are encoded and decoded by the compiled codec only
//! ([`crate::codec::CompiledSchema`]).
//!
//! - Producing: the first value of a (topic, type) registers the writer's schema under
//!   `<topic>-<full name>` (or finds its id); later values are framed with that id directly.
//! - Consuming ([`SchemaRegistry::decode_json`]): the writer's schema is fetched by id once,
//!   parsed by `apache-avro` and compiled; a schema the codec cannot compile makes its values
//!   undecodable, with the reason.
//!
//! One cache holds both (ids by topic and type, writers by id). An id and the schema behind it
//! never change, so they may be kept; failures are never cached; and the whole cache is dropped
//! every `refresh_interval` so a registry that lost its state (an in-memory registry restarted)
//! is picked up without restarting the service.

use crate::sync::RwLockExt;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, get_schema_by_subject, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::Deserialize;
use serde_json::json;

use crate::catalog::EventType;
use crate::codec::CompiledSchema;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Compatibility the project requires of every subject.
pub const COMPATIBILITY: &str = "FULL_TRANSITIVE";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or answered with a server error: try again later.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
    /// The registry refused the request (incompatible or invalid schema, unknown id, ...).
    #[error("schema registry refused: {0}")]
    Refused(String),
    /// The bytes are not a Confluent wire-format Avro value this registry can decode.
    #[error("undecodable value: {0}")]
    Undecodable(String),
}

impl RegistryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable(_))
    }
}

/// Settings for [`SchemaRegistry::new`].
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub url: String,
    /// Bound on every registry call, so a hung registry becomes an error, not a hung request.
    pub timeout: Duration,
    /// How long cached lookups are trusted before they are rebuilt.
    pub refresh_interval: Duration,
}

impl RegistryConfig {
    pub fn new(url: impl Into<String>) -> RegistryConfig {
        RegistryConfig {
            url: url.into().trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(300),
        }
    }
}

/// Result of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compatibility {
    pub compatible: bool,
    /// The registry's reasons when incompatible.
    pub messages: Vec<String>,
}

/// What the registry told this process: schema ids for producing, writers' schemas for
/// consuming. Rebuilt empty every refresh interval.
#[derive(Default)]
struct Cache {
    /// Schema ids the registry gave each (topic, event type) writer's schema: once known, values
    /// are framed directly (magic byte, id, Avro binary).
    ids: RwLock<SchemaIds>,
    /// Writers' schemas by id, compiled for decoding straight to JSON.
    writers: RwLock<HashMap<u32, Arc<Writer>>>,
}

/// A writer's schema fetched by id, compiled.
struct Writer {
    full_name: Option<String>,
    compiled: CompiledSchema,
}

/// A decoded wire-format value as plain JSON (the catalog's JSON form of Avro values).
#[derive(Debug, Clone)]
pub struct DecodedJson {
    pub schema_id: u32,
    /// Avro full name of the writer's record.
    pub full_name: Option<String>,
    pub data: serde_json::Value,
}

/// The schema id of a wire-format value.
fn wire_schema_id(bytes: &[u8]) -> Result<u32, RegistryError> {
    match bytes {
        [0, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(RegistryError::Undecodable(
            "not Confluent wire format (magic byte 0 and a 4-byte schema id)".into(),
        )),
    }
}

/// Topic → event type → schema id.
type SchemaIds = HashMap<String, HashMap<String, u32>>;

pub struct SchemaRegistry {
    config: RegistryConfig,
    http: reqwest::Client,
    /// The converter's client settings, for the wire format's registry calls.
    settings: SrSettings,
    /// The cache and when it was started.
    cache: RwLock<(Instant, Arc<Cache>)>,
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.config.url)
            .finish()
    }
}

fn converter_error(e: SRCError) -> RegistryError {
    let text = match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    };
    if e.retriable {
        RegistryError::Unavailable(text)
    } else {
        RegistryError::Refused(text)
    }
}

impl SchemaRegistry {
    pub fn new(config: RegistryConfig) -> Result<SchemaRegistry, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .no_proxy()
            .build()
            .map_err(|e| RegistryError::Refused(e.to_string()))?;
        let settings = SrSettings::new_builder(config.url.clone())
            .set_timeout(config.timeout)
            .no_proxy()
            .build()
            .map_err(converter_error)?;
        Ok(SchemaRegistry {
            config,
            http,
            settings,
            cache: RwLock::new((Instant::now(), Arc::default())),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// The current cache, started afresh when older than the refresh interval.
    fn cache(&self) -> Arc<Cache> {
        {
            let (built, cache) = &*self.cache.reading();
            if built.elapsed() < self.config.refresh_interval {
                return cache.clone();
            }
        }
        let mut current = self.cache.writing();
        if current.0.elapsed() >= self.config.refresh_interval {
            *current = (Instant::now(), Arc::default());
        }
        current.1.clone()
    }

    /// Frames `datum` (the Avro binary of a value validated against the event's schema) in wire
    /// format under the subject `<topic>-<full name>`. The writer's schema is registered if the
    /// subject lacks it, as Confluent serializers do; the subject's compatibility rule still
    /// applies.
    pub async fn encode(&self, event: &EventType, datum: &[u8]) -> Result<Vec<u8>, RegistryError> {
        let topic = event.topic.clone().ok_or_else(|| {
            RegistryError::Refused(format!("`{}` is ephemeral and has no topic", event.name()))
        })?;
        let cache = self.cache();
        let known = cache
            .ids
            .reading()
            .get(&topic)
            .and_then(|types| types.get(event.name()))
            .copied();
        let id = match known {
            Some(id) => id,
            // First value of this type: register the schema (or find its id).
            None => {
                let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
                    topic.clone(),
                    SuppliedSchema::new(
                        Some(event.full_name.clone()),
                        SchemaType::Avro,
                        event.schema_text().to_string(),
                    ),
                );
                let registered = get_schema_by_subject(&self.settings, &strategy)
                    .await
                    .map_err(converter_error)?;
                cache
                    .ids
                    .writing()
                    .entry(topic)
                    .or_default()
                    .insert(event.name().to_string(), registered.id);
                registered.id
            }
        };
        let mut bytes = Vec::with_capacity(5 + datum.len());
        bytes.push(0);
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(datum);
        Ok(bytes)
    }

    /// Decodes a wire-format value straight to plain JSON with the writer's schema (fetched by
    /// id once, then compiled).
    pub async fn decode_json(&self, bytes: &[u8]) -> Result<DecodedJson, RegistryError> {
        let schema_id = wire_schema_id(bytes)?;
        let writer = self.writer(schema_id).await?;
        let data = writer
            .compiled
            .decode_json(&bytes[5..])
            .map_err(|e| RegistryError::Undecodable(format!("schema {schema_id}: {e}")))?;
        Ok(DecodedJson {
            schema_id,
            full_name: writer.full_name.clone(),
            data,
        })
    }

    async fn writer(&self, id: u32) -> Result<Arc<Writer>, RegistryError> {
        let cache = self.cache();
        if let Some(writer) = cache.writers.reading().get(&id).cloned() {
            return Ok(writer);
        }
        // Boxed: the fetch (an HTTP call) is rare and would make every decode's future large.
        Box::pin(self.fetch_writer(id, cache)).await
    }

    async fn fetch_writer(&self, id: u32, cache: Arc<Cache>) -> Result<Arc<Writer>, RegistryError> {
        // One fetch at a time: the first records of a new schema arrive together.
        let _fetching = self.fetching.lock().await;
        if let Some(writer) = cache.writers.reading().get(&id).cloned() {
            return Ok(writer);
        }
        let registered =
            get_schema_by_id(id, &self.settings)
                .await
                .map_err(|e| match converter_error(e) {
                    RegistryError::Refused(text) => {
                        RegistryError::Undecodable(format!("schema {id}: {text}"))
                    }
                    other => other,
                })?;
        let undecodable = |e: String| RegistryError::Undecodable(format!("schema {id}: {e}"));
        let schema = apache_avro::Schema::parse_str(&registered.schema)
            .map_err(|e| undecodable(e.to_string()))?;
        let writer = Arc::new(Writer {
            full_name: schema.name().map(|n| n.fullname(None)),
            compiled: CompiledSchema::new(&schema).map_err(|e| undecodable(e.to_string()))?,
        });
        cache.writers.writing().insert(id, writer.clone());
        Ok(writer)
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, serde_json::Value), RegistryError> {
        let response = request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let status = response.status();
        let body = response
            .json::<serde_json::Value>()
            .await
            .unwrap_or(serde_json::Value::Null);
        if status.is_server_error() {
            return Err(RegistryError::Unavailable(format!("{status}: {body}")));
        }
        Ok((status, body))
    }

    fn refused(status: reqwest::StatusCode, body: &serde_json::Value) -> RegistryError {
        let message = body
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        RegistryError::Refused(format!("{status}: {message}"))
    }

    fn subject_url(&self, subject: &str) -> String {
        format!("{}/subjects/{}", self.config.url, encode_path(subject))
    }

    /// Readiness: the registry answers its subject list.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let (status, body) = self
            .call(self.http.get(format!("{}/subjects", self.config.url)))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(RegistryError::Unavailable(format!("{status}: {body}")))
        }
    }

    /// Sets the compatibility level of one subject, or the global default when `subject` is `None`.
    pub async fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: &str,
    ) -> Result<(), RegistryError> {
        let url = match subject {
            Some(s) => format!("{}/config/{}", self.config.url, encode_path(s)),
            None => format!("{}/config", self.config.url),
        };
        let (status, body) = self
            .call(
                self.http
                    .put(url)
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(json!({ "compatibility": level }).to_string()),
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::refused(status, &body))
        }
    }

    /// Registers `schema` under `subject` and returns its id (the existing id if already there).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let (status, body) = self
            .call(
                self.http
                    .post(format!("{}/versions", self.subject_url(subject)))
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(json!({ "schemaType": "AVRO", "schema": schema }).to_string()),
            )
            .await?;
        match body.get("id").and_then(|id| id.as_u64()) {
            Some(id) if status.is_success() => u32::try_from(id)
                .map_err(|_| RegistryError::Refused(format!("schema id {id} out of range"))),
            _ => Err(Self::refused(status, &body)),
        }
    }

    /// The id under which exactly this schema is registered in `subject`, if it is.
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<u32>, RegistryError> {
        let (status, body) = self
            .call(
                self.http
                    .post(self.subject_url(subject))
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(json!({ "schemaType": "AVRO", "schema": schema }).to_string()),
            )
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        match body.get("id").and_then(|id| id.as_u64()) {
            Some(id) if status.is_success() => Ok(u32::try_from(id).ok()),
            _ => Err(Self::refused(status, &body)),
        }
    }

    /// Whether `schema` may be registered under `subject` given the subject's compatibility
    /// level. A subject with no versions accepts anything.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Compatibility, RegistryError> {
        #[derive(Deserialize)]
        struct Answer {
            is_compatible: bool,
            #[serde(default)]
            messages: Vec<serde_json::Value>,
        }
        let url = format!(
            "{}/compatibility/subjects/{}/versions/latest?verbose=true",
            self.config.url,
            encode_path(subject)
        );
        let (status, body) = self
            .call(
                self.http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(json!({ "schemaType": "AVRO", "schema": schema }).to_string()),
            )
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Compatibility {
                compatible: true,
                messages: Vec::new(),
            });
        }
        if !status.is_success() {
            return Err(Self::refused(status, &body));
        }
        let answer: Answer = serde_json::from_value(body.clone())
            .map_err(|_| RegistryError::Refused(format!("unexpected answer: {body}")))?;
        Ok(Compatibility {
            compatible: answer.is_compatible,
            messages: answer
                .messages
                .into_iter()
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                .collect(),
        })
    }

    /// Every subject the registry holds.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let (status, body) = self
            .call(self.http.get(format!("{}/subjects", self.config.url)))
            .await?;
        if !status.is_success() {
            return Err(Self::refused(status, &body));
        }
        serde_json::from_value(body).map_err(|e| RegistryError::Refused(e.to_string()))
    }
}

/// Percent-encodes a path segment (subjects contain dots and dashes, which are safe, but a
/// namespace could bring anything the registry allows).
fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(
            encode_path("payments.critical-circulatory.payments.X"),
            "payments.critical-circulatory.payments.X"
        );
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
    }
}
