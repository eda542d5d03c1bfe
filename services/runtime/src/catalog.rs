//! The event catalog: the topology joined with the Avro schemas in `schemas/`.
//!
//! This is the one place that knows, for every event type, its topic (with the optional
//! namespace prefix), partition key, registry subject and parsed schema, and that derives the
//! full list of topics (main, retry, dead-letter). Everything else asks the catalog.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apache_avro::schema::{RecordSchema, UuidSchema};
use apache_avro::Schema;

use crate::codec::CompiledSchema;
use crate::topology::{
    ChannelRoute, CleanupPolicy, EventRoute, Group, Problems, Retention, Tier, Topology,
    TopologyError, SCHEMA_NAMESPACE_ROOT,
};

/// One event type, ready to validate, encode and route.
#[derive(Debug, Clone)]
pub struct EventType {
    pub route: EventRoute,
    /// Kafka topic with the namespace applied; `None` for ephemeral types.
    pub topic: Option<String>,
    /// Avro full name, e.g. `circulatory.payments.PaymentInitiated`.
    pub full_name: String,
    pub schema: Arc<Schema>,
    /// The schema compiled for direct JSON ⇄ Avro binary conversion: the only codec values of
    /// this type are encoded and decoded with. A schema it cannot compile fails the catalog.
    pub codec: Arc<CompiledSchema>,
    /// The schema as JSON (the `.avsc` file), for the catalog endpoint and the registry.
    pub schema_json: Arc<serde_json::Value>,
    /// The same, minified once: the text registered and handed to the encoder per event.
    schema_text: Arc<str>,
    /// Realtime channels this type is broadcast on.
    pub channels: Vec<ChannelRoute>,
}

impl EventType {
    pub fn name(&self) -> &str {
        &self.route.event_type
    }

    /// Registry subject under TopicRecordNameStrategy: `<topic>-<full name>`.
    pub fn subject(&self) -> Option<String> {
        self.topic
            .as_ref()
            .map(|topic| format!("{topic}-{}", self.full_name))
    }

    /// Minified schema text as registered.
    pub fn schema_text(&self) -> &str {
        &self.schema_text
    }
}

/// What a topic is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicKind {
    /// `<domain>.<tier>`: where events are published.
    Main { domain: String, tier: Tier },
    /// `<group>.retry.<delay>`: one rung of a group's retry ladder.
    Retry { group: String, delay: Duration },
    /// `<group>.dlq`: a group's dead letters.
    DeadLetter { group: String },
    /// `<group>.replay`: dead letters sent back to their group by an operator.
    Replay { group: String },
}

/// A topic as it should exist on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub kind: TopicKind,
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
    pub retention: Retention,
    pub cleanup_policy: CleanupPolicy,
}

impl TopicSpec {
    /// The topic-level configs the project manages (anything else is left alone).
    pub fn configs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cleanup.policy", self.cleanup_policy.as_kafka().to_string()),
            ("retention.ms", self.retention.as_kafka_ms().to_string()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
        ]
    }
}

/// Where the declaration lives.
#[derive(Debug, Clone)]
pub struct CatalogPaths {
    pub topology: PathBuf,
    pub schemas: PathBuf,
}

impl CatalogPaths {
    /// `<root>/topics.yaml` and `<root>/schemas`.
    pub fn in_dir(root: impl AsRef<Path>) -> CatalogPaths {
        let root = root.as_ref();
        CatalogPaths {
            topology: root.join("topics.yaml"),
            schemas: root.join("schemas"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    topology: Arc<Topology>,
    namespace: Option<String>,
    /// Shared: a validated event carries its type without copying it.
    events: BTreeMap<String, Arc<EventType>>,
}

impl Catalog {
    /// Loads and validates `topics.yaml` and every schema, reporting all problems at once.
    pub fn load(paths: &CatalogPaths) -> Result<Catalog, TopologyError> {
        let path = paths.topology.display().to_string();
        let text =
            std::fs::read_to_string(&paths.topology).map_err(|source| TopologyError::Io {
                path: path.clone(),
                source,
            })?;
        let (topology, mut problems) = Topology::from_yaml_partial(&path, &text)?;
        let schemas = read_schema_files(&paths.schemas, &mut problems);
        let events = join_schemas(&topology, schemas, &mut problems);
        if !problems.0.is_empty() {
            return Err(TopologyError::Invalid(problems.0));
        }
        Ok(Catalog {
            topology: Arc::new(topology),
            namespace: None,
            events,
        })
    }

    /// The same catalog with every topic name prefixed by `<namespace>.`: isolated environments
    /// (one per test, per tenant) on a shared cluster and registry.
    pub fn with_namespace(mut self, namespace: Option<&str>) -> Result<Catalog, String> {
        let namespace = namespace.filter(|n| !n.is_empty());
        if let Some(ns) = namespace {
            let valid = ns.len() <= 64
                && ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(format!(
                    "namespace `{ns}` must be at most 64 letters, digits, `-` or `_`"
                ));
            }
        }
        self.namespace = namespace.map(str::to_string);
        for event in self.events.values_mut() {
            let event = Arc::make_mut(event);
            event.topic = event
                .route
                .base_topic()
                .map(|base| apply_namespace(self.namespace.as_deref(), &base));
        }
        Ok(self)
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The same catalog with the groups declared in `path` added (a document holding only
    /// `groups:`; see [`Topology::with_groups_from_yaml`]): a test's groups of its own over the
    /// real events and schemas.
    pub fn with_groups_from(mut self, path: &Path) -> Result<Catalog, TopologyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
            path: shown.clone(),
            source,
        })?;
        let topology = (*self.topology)
            .clone()
            .with_groups_from_yaml(&shown, &text)?;
        self.topology = Arc::new(topology);
        Ok(self)
    }

    /// The same catalog with each consumer group changed by `change`: a fixture's millisecond
    /// retry ladder, say. Topic names follow (a rung of 50 ms is `<group>.retry.50ms`).
    pub fn with_groups(mut self, change: impl FnMut(&mut Group)) -> Catalog {
        Arc::make_mut(&mut self.topology)
            .groups
            .values_mut()
            .for_each(change);
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn event(&self, event_type: &str) -> Option<&EventType> {
        self.events.get(event_type).map(Arc::as_ref)
    }

    /// The event type as a shared handle (cheap to keep with every event of that type).
    pub fn event_shared(&self, event_type: &str) -> Option<Arc<EventType>> {
        self.events.get(event_type).cloned()
    }

    pub fn events(&self) -> impl Iterator<Item = &EventType> {
        self.events.values().map(Arc::as_ref)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.topology.groups.get(name)
    }

    /// A topic name with this catalog's namespace applied.
    pub fn topic_name(&self, base: &str) -> String {
        apply_namespace(self.namespace.as_deref(), base)
    }

    /// Every topic the cluster should have: main topics, then each group's retry rungs,
    /// dead-letter and replay topics. `replication_factor` overrides the declared one (local single-broker
    /// runs); min ISR is capped by it.
    pub fn topic_specs(&self, replication_factor: Option<i32>) -> Vec<TopicSpec> {
        let defaults = &self.topology.defaults;
        let rf = replication_factor
            .unwrap_or(defaults.replication_factor)
            .max(1);
        let min_isr = defaults.min_insync_replicas.min(rf);
        let mut specs: BTreeMap<String, TopicSpec> = BTreeMap::new();
        for event in self.events.values() {
            let (Some(topic), Some(domain)) =
                (&event.topic, self.topology.domains.get(&event.route.domain))
            else {
                continue;
            };
            specs.entry(topic.clone()).or_insert_with(|| TopicSpec {
                name: topic.clone(),
                kind: TopicKind::Main {
                    domain: domain.name.clone(),
                    tier: event.route.tier,
                },
                partitions: domain.partitions,
                replication_factor: rf,
                min_insync_replicas: min_isr,
                retention: domain.retention,
                cleanup_policy: domain.cleanup_policy,
            });
        }
        let mut derived = Vec::new();
        for group in self.topology.groups.values() {
            // Retry and dead-letter topics get as many partitions as the widest topic the group
            // reads, so a retry rung is never the group's bottleneck.
            let partitions = self
                .group_topics(group)
                .iter()
                .filter_map(|t| specs.get(t).map(|s| s.partitions))
                .max()
                .unwrap_or(defaults.partitions);
            let spec = |name: String, kind, retention| TopicSpec {
                name,
                kind,
                partitions,
                replication_factor: rf,
                min_insync_replicas: min_isr,
                retention,
                cleanup_policy: CleanupPolicy::Delete,
            };
            for delay in &group.retry_delays {
                derived.push(spec(
                    self.topic_name(&group.retry_topic_base(*delay)),
                    TopicKind::Retry {
                        group: group.name.clone(),
                        delay: *delay,
                    },
                    defaults.retry_retention,
                ));
            }
            derived.push(spec(
                self.topic_name(&group.dead_letter_topic_base()),
                TopicKind::DeadLetter {
                    group: group.name.clone(),
                },
                defaults.dlq_retention,
            ));
            derived.push(spec(
                self.topic_name(&group.replay_topic_base()),
                TopicKind::Replay {
                    group: group.name.clone(),
                },
                defaults.retry_retention,
            ));
        }
        specs.into_values().chain(derived).collect()
    }

    /// The main topics a group reads, in priority order (highest tier first).
    pub fn group_topics(&self, group: &Group) -> Vec<String> {
        let mut topics: Vec<(Tier, String)> = group
            .subscribe
            .iter()
            .filter_map(|t| self.events.get(t))
            .filter_map(|e| e.topic.clone().map(|topic| (e.route.tier, topic)))
            .collect();
        topics.sort();
        topics.dedup();
        topics.into_iter().map(|(_, topic)| topic).collect()
    }

    /// Registry subjects of every type that reaches Kafka, with their event type.
    pub fn subjects(&self) -> Vec<(String, &EventType)> {
        self.events
            .values()
            .filter_map(|e| e.subject().map(|s| (s, e.as_ref())))
            .collect()
    }
}

fn apply_namespace(namespace: Option<&str>, base: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}.{base}"),
        None => base.to_string(),
    }
}

/// A schema file: `schemas/<domain>/<event.type>.avsc`.
struct SchemaFile {
    domain: String,
    event_type: String,
    path: PathBuf,
    json: serde_json::Value,
    schema: Schema,
}

fn read_schema_files(dir: &Path, problems: &mut Problems) -> Vec<SchemaFile> {
    let mut files = Vec::new();
    let domains = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.add(dir.display().to_string(), format!("cannot read: {e}"));
            return files;
        }
    };
    let mut paths: Vec<PathBuf> = domains
        .flatten()
        .filter(|d| d.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
        .collect();
    paths.sort();
    for path in paths {
        let at = path.display().to_string();
        let (Some(domain), Some(event_type)) = (
            path.parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str()),
            path.file_stem().and_then(|n| n.to_str()),
        ) else {
            problems.add(&at, "unexpected file name");
            continue;
        };
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                serde_json::from_str::<serde_json::Value>(&text).map_err(|e| e.to_string())
            })
            .and_then(|json| {
                Schema::parse(&json)
                    .map(|schema| (json, schema))
                    .map_err(|e| format!("invalid Avro schema: {e}"))
            });
        match parsed {
            Ok((json, schema)) => files.push(SchemaFile {
                domain: domain.to_string(),
                event_type: event_type.to_string(),
                path,
                json,
                schema,
            }),
            Err(message) => problems.add(at, message),
        }
    }
    files
}

fn join_schemas(
    topology: &Topology,
    files: Vec<SchemaFile>,
    problems: &mut Problems,
) -> BTreeMap<String, Arc<EventType>> {
    let mut by_type: BTreeMap<String, SchemaFile> = BTreeMap::new();
    for file in files {
        match topology.events.get(&file.event_type) {
            Some(route) if route.domain == file.domain => {
                by_type.insert(file.event_type.clone(), file);
            }
            Some(route) => problems.add(
                file.path.display().to_string(),
                format!(
                    "`{}` belongs to domain `{}`: move it to schemas/{}/",
                    file.event_type, route.domain, route.domain
                ),
            ),
            None => problems.add(
                file.path.display().to_string(),
                format!("no event type `{}` in the topology", file.event_type),
            ),
        }
    }
    let mut events = BTreeMap::new();
    for route in topology.events.values() {
        let at = format!("events.{}", route.event_type);
        let Some(file) = by_type.remove(&route.event_type) else {
            problems.add(
                &at,
                format!(
                    "schema missing: expected schemas/{}/{}.avsc",
                    route.domain, route.event_type
                ),
            );
            continue;
        };
        let full_name = route.record_full_name();
        let Schema::Record(record) = &file.schema else {
            problems.add(
                file.path.display().to_string(),
                "the top level must be a record",
            );
            continue;
        };
        if record.name.fullname(None) != full_name {
            problems.add(
                file.path.display().to_string(),
                format!(
                    "record is `{}`, the topology expects `{full_name}` (namespace {}.{})",
                    record.name.fullname(None),
                    SCHEMA_NAMESPACE_ROOT,
                    route.domain
                ),
            );
        }
        check_documented(record, &file.path.display().to_string(), problems);
        if let Some(key) = &route.partition_key {
            if let Err(message) = require_identifier_field(record, key) {
                problems.add(format!("{at}.key"), message);
            }
        }
        let channels: Vec<ChannelRoute> = topology
            .routes
            .iter()
            .filter(|r| r.event_type == route.event_type)
            .cloned()
            .collect();
        for channel_route in &channels {
            if let Some(channel) = topology.channels.get(&channel_route.channel) {
                for param in &channel.params {
                    let field = channel_route.field_for(param);
                    if let Err(message) = require_identifier_field(record, field) {
                        problems.add(
                            format!("realtime.routes[{}]", channel_route.channel),
                            format!("parameter `{param}` of `{}`: {message}", route.event_type),
                        );
                    }
                }
            }
        }
        let codec = match CompiledSchema::new(&file.schema) {
            Ok(codec) => Arc::new(codec),
            Err(unsupported) => {
                problems.add(
                    at.clone(),
                    format!("{}: {unsupported}", file.path.display()),
                );
                continue;
            }
        };
        events.insert(
            route.event_type.clone(),
            Arc::new(EventType {
                topic: route.base_topic(),
                full_name,
                codec,
                schema: Arc::new(file.schema.clone()),
                schema_text: Arc::from(file.json.to_string()),
                schema_json: Arc::new(file.json),
                channels,
                route: route.clone(),
            }),
        );
    }
    events
}

/// A partition key or channel parameter: a top-level, required string (or uuid) field.
fn require_identifier_field(record: &RecordSchema, field: &str) -> Result<(), String> {
    let Some(index) = record.lookup.get(field) else {
        return Err(format!(
            "`{field}` is not a field of {}",
            record.name.fullname(None)
        ));
    };
    match &record.fields[*index].schema {
        Schema::String | Schema::Uuid(UuidSchema::String) => Ok(()),
        _ => Err(format!(
            "`{field}` must be a required string field of {}",
            record.name.fullname(None)
        )),
    }
}

/// Every record (top level and nested) and every field carries a `doc`.
fn check_documented(record: &RecordSchema, at: &str, problems: &mut Problems) {
    let mut seen = BTreeSet::new();
    check_documented_inner(record, at, problems, &mut seen);
}

fn check_documented_inner(
    record: &RecordSchema,
    at: &str,
    problems: &mut Problems,
    seen: &mut BTreeSet<String>,
) {
    let name = record.name.fullname(None);
    if !seen.insert(name.clone()) {
        return;
    }
    if record.doc.as_deref().unwrap_or("").trim().is_empty() {
        problems.add(at, format!("record `{name}` has no doc"));
    }
    for field in &record.fields {
        if field.doc.as_deref().unwrap_or("").trim().is_empty() {
            problems.add(at, format!("field `{name}.{}` has no doc", field.name));
        }
        visit_records(&field.schema, &mut |nested| {
            check_documented_inner(nested, at, problems, seen)
        });
    }
}

fn visit_records(schema: &Schema, visit: &mut dyn FnMut(&RecordSchema)) {
    match schema {
        Schema::Record(record) => visit(record),
        Schema::Array(array) => visit_records(&array.items, visit),
        Schema::Map(map) => visit_records(&map.types, visit),
        Schema::Union(union) => union
            .variants()
            .iter()
            .for_each(|v| visit_records(v, visit)),
        _ => {}
    }
}

/// The prefix of every Redis key of a deployment: `circ:<namespace>` (`default` without one).
pub fn redis_prefix(namespace: Option<&str>) -> String {
    format!("circ:{}", namespace.unwrap_or("default"))
}

/// A Redis key of a deployment: `circ:<namespace>:<suffix>`.
pub fn redis_key(namespace: Option<&str>, suffix: &str) -> String {
    format!("{}:{suffix}", redis_prefix(namespace))
}
