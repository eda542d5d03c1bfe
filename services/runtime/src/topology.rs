//! The topology declared in `topics.yaml`: domains and their tiers, the topics derived from them,
//! every event type's routing, every consumer group's subscriptions and retry ladder, and the
//! realtime channels.
//!
//! Parsing happens in two steps. Serde reads the file's shape (an unknown key or a wrong type is
//! reported with its line). Validation then walks the whole declaration and collects **every**
//! problem before failing, so an operator fixes a broken file in one pass. Checks that need the
//! Avro schemas (partition keys, channel parameters) live in [`crate::catalog`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::duration::{self, Canonical};

/// Priority tier of a topic. Declaration order is priority order: `Critical` is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Critical,
    High,
    Normal,
    Low,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Critical, Tier::High, Tier::Normal, Tier::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::High => "high",
            Tier::Normal => "normal",
            Tier::Low => "low",
        }
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|tier| tier.as_str() == text)
            .ok_or_else(|| {
                format!("unknown tier `{text}` (expected critical, high, normal or low)")
            })
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kafka `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn as_kafka(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

impl FromStr for CleanupPolicy {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.replace(' ', "").as_str() {
            "delete" => Ok(CleanupPolicy::Delete),
            "compact" => Ok(CleanupPolicy::Compact),
            "compact,delete" | "delete,compact" => Ok(CleanupPolicy::CompactDelete),
            _ => Err(format!(
                "unknown cleanup policy `{text}` (expected delete, compact or compact,delete)"
            )),
        }
    }
}

/// Topic retention: a duration, or kept forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    For(Duration),
    Infinite,
}

impl Retention {
    /// The value of Kafka's `retention.ms`.
    pub fn as_kafka_ms(self) -> i64 {
        match self {
            Retention::For(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Retention::Infinite => -1,
        }
    }
}

impl FromStr for Retention {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "infinite" {
            return Ok(Retention::Infinite);
        }
        duration::parse(text).map(Retention::For)
    }
}

/// One problem found in the declaration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted location in `topics.yaml` or a schema path, e.g. `groups.payments.retry_delays`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Collects problems while a declaration is validated.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            location: location.into(),
            message: message.into(),
        });
    }

    /// Parses `text` with `parse`; on failure records the problem and returns `None`.
    fn parse<T>(
        &mut self,
        location: impl Into<String>,
        text: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.add(location, message);
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file's shape, as serde reads it.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    version: u32,
    defaults: RawDefaults,
    #[serde(deserialize_with = "entries")]
    domains: Vec<(String, RawDomain)>,
    #[serde(deserialize_with = "entries")]
    events: Vec<(String, RawEvent)>,
    #[serde(deserialize_with = "entries")]
    groups: Vec<(String, RawGroup)>,
    #[serde(default)]
    realtime: RawRealtime,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    partitions: i32,
    replication_factor: i32,
    min_insync_replicas: i32,
    retention: String,
    cleanup_policy: String,
    timeout: String,
    max_in_flight: u32,
    retry_retention: String,
    dlq_retention: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    #[serde(default)]
    description: String,
    tier: String,
    partitions: Option<i32>,
    retention: Option<String>,
    cleanup_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    domain: String,
    record: String,
    key: Option<String>,
    #[serde(default)]
    description: String,
    tier: Option<String>,
    #[serde(default)]
    ephemeral: bool,
    #[serde(default)]
    data_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    description: String,
    subscribe: Vec<String>,
    max_attempts: u32,
    #[serde(default)]
    retry_delays: Vec<String>,
    timeout: Option<String>,
    max_in_flight: Option<u32>,
    lag_threshold: Option<u32>,
    time_lag_objective: Option<String>,
}

/// A document holding only `groups:`, in the form `topics.yaml` gives them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroups {
    #[serde(deserialize_with = "entries")]
    groups: Vec<(String, RawGroup)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRealtime {
    #[serde(default, deserialize_with = "entries")]
    channels: Vec<(String, RawChannel)>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    scope: String,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    event: String,
    channel: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// Reads a YAML mapping as an ordered list of entries, keeping duplicate keys so that validation
/// can report them (a map type would silently keep the last one).
fn entries<'de, D, V>(deserializer: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Entries<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Entries(std::marker::PhantomData))
}

// ---------------------------------------------------------------------------------------------
// The validated topology.

/// Defaults applied where a domain or group does not say otherwise.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
    pub retention: Retention,
    pub cleanup_policy: CleanupPolicy,
    pub timeout: Duration,
    pub max_in_flight: u32,
    pub retry_retention: Retention,
    pub dlq_retention: Retention,
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub name: String,
    pub description: String,
    pub tier: Tier,
    pub partitions: i32,
    pub retention: Retention,
    pub cleanup_policy: CleanupPolicy,
}

/// An event type's routing, as declared (schema-independent).
#[derive(Debug, Clone)]
pub struct EventRoute {
    pub event_type: String,
    pub domain: String,
    /// Avro record name without namespace, e.g. `PaymentInitiated`.
    pub record: String,
    pub partition_key: Option<String>,
    pub description: String,
    pub tier: Tier,
    pub ephemeral: bool,
    pub data_only: bool,
}

impl EventRoute {
    /// Avro full name: `circulatory.<domain>.<Record>`.
    pub fn record_full_name(&self) -> String {
        format!("{}.{}.{}", SCHEMA_NAMESPACE_ROOT, self.domain, self.record)
    }

    /// Topic name before any namespace prefix; `None` for ephemeral types, which never reach Kafka.
    pub fn base_topic(&self) -> Option<String> {
        (!self.ephemeral).then(|| format!("{}.{}", self.domain, self.tier))
    }
}

/// The root of every record namespace: `circulatory.<domain>`.
pub const SCHEMA_NAMESPACE_ROOT: &str = "circulatory";

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub subscribe: Vec<String>,
    pub max_attempts: u32,
    /// Delay before attempt `n + 2` (the first retry waits `retry_delays[0]`).
    pub retry_delays: Vec<Duration>,
    pub timeout: Duration,
    pub max_in_flight: u32,
    /// Records waiting per replica that make an autoscaler add one (KEDA's `lagThreshold`).
    pub lag_threshold: u32,
    /// The most the oldest record waiting on a main topic may age before an alert fires.
    pub time_lag_objective: Duration,
}

/// The autoscaling target when a group does not declare `lag_threshold`.
pub const DEFAULT_LAG_THRESHOLD: u32 = 100;

/// The time-lag objective when a group does not declare `time_lag_objective`.
pub const DEFAULT_TIME_LAG_OBJECTIVE: Duration = Duration::from_secs(300);

impl Group {
    /// Base name of the retry topic for one delay of the ladder: `<group>.retry.<delay>`.
    pub fn retry_topic_base(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.name, Canonical(delay))
    }

    /// Base name of the dead-letter topic: `<group>.dlq`.
    pub fn dead_letter_topic_base(&self) -> String {
        format!("{}.dlq", self.name)
    }

    /// Base name of the replay topic: `<group>.replay`, where dead letters are sent back to this
    /// group only, to run at once with the attempt count reset.
    pub fn replay_topic_base(&self) -> String {
        format!("{}.replay", self.name)
    }
}

/// Who may subscribe to a realtime channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelScope {
    /// Any authenticated user.
    Public,
    /// Any authenticated user, one channel per entity (`comment:added:{postId}`).
    Entity,
    /// Only the user whose id fills the channel's parameter.
    User,
}

impl FromStr for ChannelScope {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "public" => Ok(ChannelScope::Public),
            "entity" => Ok(ChannelScope::Entity),
            "user" => Ok(ChannelScope::User),
            _ => Err(format!(
                "unknown channel scope `{text}` (expected public, entity or user)"
            )),
        }
    }
}

/// A channel template such as `comment:added:{postId}`.
#[derive(Debug, Clone)]
pub struct Channel {
    pub template: String,
    pub scope: ChannelScope,
    pub description: String,
    /// Parameter names in order of appearance.
    pub params: Vec<String>,
}

impl Channel {
    /// Fills the template's parameters with `value_of(param)`.
    pub fn render(&self, mut value_of: impl FnMut(&str) -> Option<String>) -> Option<String> {
        let mut out = String::with_capacity(self.template.len() + 16);
        for segment in self.template.split(':') {
            if !out.is_empty() {
                out.push(':');
            }
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(param) => out.push_str(&value_of(param)?),
                None => out.push_str(segment),
            }
        }
        Some(out)
    }
}

/// Event type → channel; `params` maps channel parameters to event fields.
#[derive(Debug, Clone)]
pub struct ChannelRoute {
    pub event_type: String,
    pub channel: String,
    pub params: BTreeMap<String, String>,
}

impl ChannelRoute {
    /// The event field that fills a channel parameter.
    pub fn field_for<'a>(&'a self, param: &'a str) -> &'a str {
        self.params.get(param).map(String::as_str).unwrap_or(param)
    }
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub defaults: Defaults,
    pub domains: BTreeMap<String, Domain>,
    pub events: BTreeMap<String, EventRoute>,
    pub groups: BTreeMap<String, Group>,
    pub channels: BTreeMap<String, Channel>,
    pub routes: Vec<ChannelRoute>,
}

/// Why a topology could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{} problem(s) in the topology:\n{}", .0.len(), format_problems(.0))]
    Invalid(Vec<Problem>),
}

pub(crate) fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_kebab(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `video.transcode.completed`: at least two lowercase segments joined by dots.
pub fn is_event_type_name(name: &str) -> bool {
    let segments: Vec<&str> = name.split('.').collect();
    segments.len() >= 2
        && segments.iter().all(|s| {
            s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

fn is_pascal(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Parameter names of a channel template, or why it is malformed.
fn channel_params(template: &str) -> Result<Vec<String>, String> {
    let mut params = Vec::new();
    for segment in template.split(':') {
        if let Some(inner) = segment.strip_prefix('{') {
            let param = inner
                .strip_suffix('}')
                .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
                .ok_or_else(|| format!("malformed parameter `{segment}` in `{template}`"))?;
            params.push(param.to_string());
        } else if segment.is_empty()
            || !segment
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "channel `{template}` must be lowercase segments joined by `:`"
            ));
        }
    }
    Ok(params)
}

impl Topology {
    /// Parses and validates a topology. On success every name, reference and number is valid;
    /// on failure all problems found are returned together.
    pub fn from_yaml(path: &str, text: &str) -> Result<Topology, TopologyError> {
        let (topology, problems) = Self::from_yaml_partial(path, text)?;
        if problems.0.is_empty() {
            Ok(topology)
        } else {
            Err(TopologyError::Invalid(problems.0))
        }
    }

    /// Like [`Topology::from_yaml`], but returns what is valid along with the problems, so that
    /// callers that add their own checks (the catalog) can report everything at once.
    pub(crate) fn from_yaml_partial(
        path: &str,
        text: &str,
    ) -> Result<(Topology, Problems), TopologyError> {
        let raw: RawTopology = serde_yaml::from_str(text).map_err(|e| TopologyError::Syntax {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut problems = Problems::default();
        if raw.version != 1 {
            problems.add(
                "version",
                format!("unsupported version {} (expected 1)", raw.version),
            );
        }
        let defaults = validate_defaults(&raw.defaults, &mut problems);
        let domains = validate_domains(&raw.domains, &defaults, &mut problems);
        let events = validate_events(&raw.events, &domains, &mut problems);
        let groups = validate_groups(&raw.groups, &events, &defaults, &mut problems);
        check_coverage(&events, &groups, &mut problems);
        let (channels, routes) = validate_realtime(&raw.realtime, &events, &mut problems);
        Ok((
            Topology {
                defaults,
                domains,
                events,
                groups,
                channels,
                routes,
            },
            problems,
        ))
    }

    /// The same topology with the groups of `text` added: a document holding only `groups:`, in
    /// the form `topics.yaml` gives them, checked against this topology's events. A name the
    /// topology already declares is refused. This is how a test declares groups of its own
    /// (millisecond retry ladders, any subscription) over the real events.
    pub fn with_groups_from_yaml(
        mut self,
        path: &str,
        text: &str,
    ) -> Result<Topology, TopologyError> {
        let raw: RawGroups = serde_yaml::from_str(text).map_err(|e| TopologyError::Syntax {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut problems = Problems::default();
        let groups = validate_groups(&raw.groups, &self.events, &self.defaults, &mut problems);
        for name in groups.keys().filter(|n| self.groups.contains_key(*n)) {
            problems.add(
                format!("groups.{name}"),
                "the topology already declares this group",
            );
        }
        if !problems.0.is_empty() {
            return Err(TopologyError::Invalid(problems.0));
        }
        self.groups.extend(groups);
        Ok(self)
    }

    /// Partition count of a main topic: its domain's.
    pub fn partitions_of_domain(&self, domain: &str) -> i32 {
        self.domains
            .get(domain)
            .map_or(self.defaults.partitions, |d| d.partitions)
    }
}

fn validate_defaults(raw: &RawDefaults, problems: &mut Problems) -> Defaults {
    let retention = |problems: &mut Problems, key: &str, text: &str| {
        problems
            .parse(format!("defaults.{key}"), text, str::parse::<Retention>)
            .unwrap_or(Retention::For(Duration::from_secs(7 * 86_400)))
    };
    if raw.partitions < 1 {
        problems.add("defaults.partitions", "must be at least 1");
    }
    if raw.replication_factor < 1 {
        problems.add("defaults.replication_factor", "must be at least 1");
    }
    if raw.min_insync_replicas < 1 || raw.min_insync_replicas > raw.replication_factor {
        problems.add(
            "defaults.min_insync_replicas",
            "must be between 1 and the replication factor",
        );
    }
    if raw.max_in_flight < 1 {
        problems.add("defaults.max_in_flight", "must be at least 1");
    }
    Defaults {
        partitions: raw.partitions.max(1),
        replication_factor: raw.replication_factor.max(1),
        min_insync_replicas: raw.min_insync_replicas.max(1),
        retention: retention(problems, "retention", &raw.retention),
        cleanup_policy: problems
            .parse(
                "defaults.cleanup_policy",
                &raw.cleanup_policy,
                str::parse::<CleanupPolicy>,
            )
            .unwrap_or(CleanupPolicy::Delete),
        timeout: problems
            .parse("defaults.timeout", &raw.timeout, duration::parse)
            .unwrap_or(Duration::from_secs(30)),
        max_in_flight: raw.max_in_flight.max(1),
        retry_retention: retention(problems, "retry_retention", &raw.retry_retention),
        dlq_retention: retention(problems, "dlq_retention", &raw.dlq_retention),
    }
}

fn validate_domains(
    raw: &[(String, RawDomain)],
    defaults: &Defaults,
    problems: &mut Problems,
) -> BTreeMap<String, Domain> {
    let mut domains = BTreeMap::new();
    for (name, domain) in raw {
        let at = format!("domains.{name}");
        if !is_kebab(name) || name.contains('-') {
            problems.add(&at, "domain names are lowercase letters and digits");
        }
        if domains.contains_key(name) {
            problems.add(&at, "domain declared twice");
            continue;
        }
        if domain.partitions.is_some_and(|p| p < 1) {
            problems.add(format!("{at}.partitions"), "must be at least 1");
        }
        // Invalid values are reported and replaced by defaults, so that the domain still exists and
        // its events are not reported again as belonging to an unknown domain.
        let tier = problems
            .parse(format!("{at}.tier"), &domain.tier, str::parse::<Tier>)
            .unwrap_or(Tier::Normal);
        let retention = domain
            .retention
            .as_deref()
            .and_then(|r| problems.parse(format!("{at}.retention"), r, str::parse::<Retention>))
            .unwrap_or(defaults.retention);
        let cleanup_policy = domain
            .cleanup_policy
            .as_deref()
            .and_then(|c| problems.parse(format!("{at}.cleanup_policy"), c, str::parse))
            .unwrap_or(defaults.cleanup_policy);
        domains.insert(
            name.clone(),
            Domain {
                name: name.clone(),
                description: domain.description.clone(),
                tier,
                partitions: domain.partitions.unwrap_or(defaults.partitions).max(1),
                retention,
                cleanup_policy,
            },
        );
    }
    domains
}

fn validate_events(
    raw: &[(String, RawEvent)],
    domains: &BTreeMap<String, Domain>,
    problems: &mut Problems,
) -> BTreeMap<String, EventRoute> {
    let mut events: BTreeMap<String, EventRoute> = BTreeMap::new();
    let mut records: BTreeMap<String, String> = BTreeMap::new();
    for (name, event) in raw {
        let at = format!("events.{name}");
        if !is_event_type_name(name) {
            problems.add(
                &at,
                "event types are lowercase dotted names such as `video.uploaded`",
            );
        }
        if events.contains_key(name) {
            problems.add(&at, "event type mapped twice");
            continue;
        }
        if !is_pascal(&event.record) {
            problems.add(
                format!("{at}.record"),
                format!("`{}` is not a PascalCase Avro record name", event.record),
            );
        }
        let full_record = format!("{}.{}", event.domain, event.record);
        if let Some(other) = records.insert(full_record.clone(), name.clone()) {
            problems.add(
                format!("{at}.record"),
                format!("record `{full_record}` is already the schema of `{other}`"),
            );
        }
        let domain_tier = match domains.get(&event.domain) {
            Some(domain) => domain.tier,
            None => {
                problems.add(
                    format!("{at}.domain"),
                    format!("unknown domain `{}`", event.domain),
                );
                Tier::Normal
            }
        };
        let tier = event
            .tier
            .as_deref()
            .and_then(|text| problems.parse(format!("{at}.tier"), text, str::parse::<Tier>))
            .unwrap_or(domain_tier);
        if event.ephemeral && event.data_only {
            problems.add(
                &at,
                "an ephemeral type never reaches Kafka, so it cannot be data_only",
            );
        }
        if !event.ephemeral && event.key.is_none() {
            problems.add(
                format!("{at}.key"),
                "a partition key is required for types that go to Kafka",
            );
        }
        events.insert(
            name.clone(),
            EventRoute {
                event_type: name.clone(),
                domain: event.domain.clone(),
                record: event.record.clone(),
                partition_key: event.key.clone(),
                description: event.description.clone(),
                tier,
                ephemeral: event.ephemeral,
                data_only: event.data_only,
            },
        );
    }
    events
}

fn validate_groups(
    raw: &[(String, RawGroup)],
    events: &BTreeMap<String, EventRoute>,
    defaults: &Defaults,
    problems: &mut Problems,
) -> BTreeMap<String, Group> {
    let mut groups = BTreeMap::new();
    for (name, group) in raw {
        let at = format!("groups.{name}");
        if !is_kebab(name) {
            problems.add(&at, "group names are kebab-case (`feed-fanout`)");
        }
        if groups.contains_key(name) {
            problems.add(&at, "group declared twice");
            continue;
        }
        if group.subscribe.is_empty() {
            problems.add(
                format!("{at}.subscribe"),
                "a group subscribes to at least one type",
            );
        }
        let mut seen = BTreeSet::new();
        for event_type in &group.subscribe {
            if !seen.insert(event_type) {
                problems.add(
                    format!("{at}.subscribe"),
                    format!("`{event_type}` is listed twice"),
                );
            }
            match events.get(event_type) {
                None => problems.add(
                    format!("{at}.subscribe"),
                    format!("unknown event type `{event_type}`"),
                ),
                Some(event) if event.ephemeral => problems.add(
                    format!("{at}.subscribe"),
                    format!("`{event_type}` is ephemeral (Redis only) and cannot be consumed"),
                ),
                Some(_) => {}
            }
        }
        if group.max_attempts < 1 {
            problems.add(format!("{at}.max_attempts"), "must be at least 1");
        }
        let delays: Vec<Duration> = group
            .retry_delays
            .iter()
            .filter_map(|d| problems.parse(format!("{at}.retry_delays"), d, duration::parse))
            .collect();
        if delays.windows(2).any(|w| w[1] <= w[0]) {
            problems.add(
                format!("{at}.retry_delays"),
                "the retry ladder must be strictly increasing",
            );
        }
        if delays.iter().any(Duration::is_zero) {
            problems.add(
                format!("{at}.retry_delays"),
                "a retry delay must be positive",
            );
        }
        let expected = group.max_attempts.saturating_sub(1) as usize;
        if group.retry_delays.len() != expected {
            problems.add(
                format!("{at}.retry_delays"),
                format!(
                    "{} attempts need {expected} retry delay(s), found {}",
                    group.max_attempts,
                    group.retry_delays.len()
                ),
            );
        }
        let timeout = match &group.timeout {
            Some(text) => problems.parse(format!("{at}.timeout"), text, duration::parse),
            None => Some(defaults.timeout),
        };
        if timeout.is_some_and(|t| t.is_zero()) {
            problems.add(format!("{at}.timeout"), "must be positive");
        }
        if group.max_in_flight == Some(0) {
            problems.add(format!("{at}.max_in_flight"), "must be at least 1");
        }
        if group.lag_threshold == Some(0) {
            problems.add(format!("{at}.lag_threshold"), "must be at least 1");
        }
        let time_lag_objective = match &group.time_lag_objective {
            Some(text) => problems.parse(format!("{at}.time_lag_objective"), text, duration::parse),
            None => Some(DEFAULT_TIME_LAG_OBJECTIVE),
        };
        if time_lag_objective.is_some_and(|t| t < Duration::from_secs(1)) {
            problems.add(format!("{at}.time_lag_objective"), "must be at least 1s");
        }
        groups.insert(
            name.clone(),
            Group {
                name: name.clone(),
                description: group.description.clone(),
                subscribe: group.subscribe.clone(),
                max_attempts: group.max_attempts.max(1),
                retry_delays: delays,
                timeout: timeout.unwrap_or(defaults.timeout),
                max_in_flight: group.max_in_flight.unwrap_or(defaults.max_in_flight).max(1),
                lag_threshold: group.lag_threshold.unwrap_or(DEFAULT_LAG_THRESHOLD).max(1),
                time_lag_objective: time_lag_objective.unwrap_or(DEFAULT_TIME_LAG_OBJECTIVE),
            },
        );
    }
    groups
}

/// Every type that reaches Kafka is consumed by a group or explicitly published for data teams.
fn check_coverage(
    events: &BTreeMap<String, EventRoute>,
    groups: &BTreeMap<String, Group>,
    problems: &mut Problems,
) {
    let consumed: BTreeSet<&str> = groups
        .values()
        .flat_map(|g| g.subscribe.iter().map(String::as_str))
        .collect();
    for event in events.values().filter(|e| !e.ephemeral) {
        let is_consumed = consumed.contains(event.event_type.as_str());
        if event.data_only && is_consumed {
            problems.add(
                format!("events.{}.data_only", event.event_type),
                "marked data_only but a group subscribes to it",
            );
        } else if !event.data_only && !is_consumed {
            problems.add(
                format!("events.{}", event.event_type),
                "no group consumes this type; subscribe a group or mark it `data_only: true`",
            );
        }
    }
}

fn validate_realtime(
    raw: &RawRealtime,
    events: &BTreeMap<String, EventRoute>,
    problems: &mut Problems,
) -> (BTreeMap<String, Channel>, Vec<ChannelRoute>) {
    let mut channels = BTreeMap::new();
    for (template, channel) in &raw.channels {
        let at = format!("realtime.channels.{template}");
        if channels.contains_key(template) {
            problems.add(&at, "channel declared twice");
            continue;
        }
        let params = match channel_params(template) {
            Ok(params) => params,
            Err(message) => {
                problems.add(&at, message);
                continue;
            }
        };
        let Some(scope) = problems.parse(format!("{at}.scope"), &channel.scope, str::parse) else {
            continue;
        };
        match (scope, params.len()) {
            (ChannelScope::Public, 0) | (ChannelScope::Entity | ChannelScope::User, 1) => {}
            (ChannelScope::Public, _) => {
                problems.add(&at, "a public channel has no parameters");
            }
            (_, _) => problems.add(&at, "entity and user channels have exactly one parameter"),
        }
        channels.insert(
            template.clone(),
            Channel {
                template: template.clone(),
                scope,
                description: channel.description.clone(),
                params,
            },
        );
    }
    let mut routes = Vec::new();
    for (index, route) in raw.routes.iter().enumerate() {
        let at = format!("realtime.routes[{index}]");
        if !events.contains_key(&route.event) {
            problems.add(&at, format!("unknown event type `{}`", route.event));
        }
        match channels.get(&route.channel) {
            None => problems.add(&at, format!("undeclared channel `{}`", route.channel)),
            Some(channel) => {
                for param in route.params.keys() {
                    if !channel.params.contains(param) {
                        problems.add(
                            &at,
                            format!("`{param}` is not a parameter of `{}`", route.channel),
                        );
                    }
                }
            }
        }
        routes.push(ChannelRoute {
            event_type: route.event.clone(),
            channel: route.channel.clone(),
            params: route.params.clone(),
        });
    }
    (channels, routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
version: 1
defaults:
  partitions: 6
  replication_factor: 3
  min_insync_replicas: 2
  retention: 7d
  cleanup_policy: delete
  timeout: 30s
  max_in_flight: 64
  retry_retention: 7d
  dlq_retention: 30d
domains:
  payments: { tier: critical, partitions: 12, retention: 30d }
  messaging: { tier: high }
events:
  payment.initiated: { domain: payments, record: PaymentInitiated, key: walletId }
  payment.failed: { domain: payments, record: PaymentFailed, key: walletId, data_only: true }
  typing.indicator: { domain: messaging, record: TypingIndicator, ephemeral: true }
groups:
  payments:
    subscribe: [payment.initiated]
    max_attempts: 5
    retry_delays: [2s, 4s, 8s, 16s]
realtime:
  channels:
    "user:typing:{conversationId}": { scope: entity }
  routes:
    - { event: typing.indicator, channel: "user:typing:{conversationId}" }
"#;

    #[test]
    fn a_valid_topology_loads_with_defaults_applied() {
        let topology = Topology::from_yaml("t.yaml", VALID).expect("valid");
        let payments = &topology.groups["payments"];
        assert_eq!(payments.timeout, Duration::from_secs(30));
        assert_eq!(
            payments.retry_topic_base(Duration::from_secs(4)),
            "payments.retry.4s"
        );
        assert_eq!(payments.dead_letter_topic_base(), "payments.dlq");
        let event = &topology.events["payment.initiated"];
        assert_eq!(event.base_topic().as_deref(), Some("payments.critical"));
        assert_eq!(
            event.record_full_name(),
            "circulatory.payments.PaymentInitiated"
        );
        assert_eq!(topology.events["typing.indicator"].base_topic(), None);
        assert_eq!(topology.partitions_of_domain("payments"), 12);
        assert_eq!(topology.partitions_of_domain("messaging"), 6);
    }

    #[test]
    fn a_group_may_declare_its_autoscaling_lag_threshold() {
        let topology = Topology::from_yaml("t.yaml", VALID).expect("valid");
        assert_eq!(
            topology.groups["payments"].lag_threshold,
            DEFAULT_LAG_THRESHOLD
        );
        let text = VALID.replace("max_attempts: 5", "max_attempts: 5\n    lag_threshold: 20");
        let topology = Topology::from_yaml("t.yaml", &text).expect("valid");
        assert_eq!(topology.groups["payments"].lag_threshold, 20);
        let text = VALID.replace("max_attempts: 5", "max_attempts: 5\n    lag_threshold: 0");
        let err = Topology::from_yaml("t.yaml", &text).unwrap_err();
        assert!(err.to_string().contains("lag_threshold"), "{err}");
    }

    #[test]
    fn a_group_may_declare_its_time_lag_objective() {
        let topology = Topology::from_yaml("t.yaml", VALID).expect("valid");
        assert_eq!(
            topology.groups["payments"].time_lag_objective,
            DEFAULT_TIME_LAG_OBJECTIVE
        );
        let with = |objective: &str| {
            VALID.replace(
                "max_attempts: 5",
                &format!("max_attempts: 5\n    time_lag_objective: {objective}"),
            )
        };
        let topology = Topology::from_yaml("t.yaml", &with("30s")).expect("valid");
        assert_eq!(
            topology.groups["payments"].time_lag_objective,
            Duration::from_secs(30)
        );
        for bad in ["0s", "500ms", "soon"] {
            let err = Topology::from_yaml("t.yaml", &with(bad)).unwrap_err();
            assert!(
                err.to_string().contains("time_lag_objective"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn an_unknown_key_is_a_syntax_error_with_its_line() {
        let text = VALID.replace("max_attempts: 5", "max_attempts: 5\n    retries: 3");
        let err = Topology::from_yaml("t.yaml", &text).unwrap_err();
        assert!(matches!(err, TopologyError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("retries"), "{err}");
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = VALID
            .replace("tier: critical", "tier: urgent")
            .replace("[2s, 4s, 8s, 16s]", "[2s, 8s, 4s, 16s]")
            .replace("subscribe: [payment.initiated]", "subscribe: [payment.initiated, payment.refunded]")
            .replace(
                "  typing.indicator:",
                "  payment.initiated: { domain: payments, record: Other, key: walletId }\n  typing.indicator:",
            );
        let Err(TopologyError::Invalid(problems)) = Topology::from_yaml("t.yaml", &text) else {
            panic!("expected problems");
        };
        let text = format_problems(&problems);
        assert!(
            text.contains("domains.payments.tier: unknown tier `urgent`"),
            "{text}"
        );
        assert!(text.contains("strictly increasing"), "{text}");
        assert!(
            text.contains("unknown event type `payment.refunded`"),
            "{text}"
        );
        assert!(
            text.contains("events.payment.initiated: event type mapped twice"),
            "{text}"
        );
    }

    #[test]
    fn ladder_length_must_match_attempts() {
        let text = VALID.replace("[2s, 4s, 8s, 16s]", "[2s, 4s]");
        let err = Topology::from_yaml("t.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("5 attempts need 4 retry delay(s), found 2"),
            "{err}"
        );
    }

    #[test]
    fn groups_from_another_document_join_the_topology_checked_like_its_own() {
        let topology = Topology::from_yaml("t.yaml", VALID).expect("valid");
        let extra =
            "groups:\n  fast:\n    subscribe: [payment.initiated]\n    max_attempts: 3\n    \
                     retry_delays: [50ms, 100ms]\n";
        let joined = topology
            .clone()
            .with_groups_from_yaml("extra.yaml", extra)
            .expect("valid groups");
        let fast = &joined.groups["fast"];
        assert_eq!(
            fast.retry_delays,
            [Duration::from_millis(50), Duration::from_millis(100)]
        );
        assert_eq!(fast.timeout, Duration::from_secs(30), "defaults apply");
        assert!(joined.groups.contains_key("payments"));

        let clash =
            "groups:\n  payments:\n    subscribe: [payment.initiated]\n    max_attempts: 1\n";
        let err = topology
            .clone()
            .with_groups_from_yaml("extra.yaml", clash)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already declares this group"), "{err}");
        let unknown = "groups:\n  fast:\n    subscribe: [typing.indicator, nope.never]\n    max_attempts: 1\n";
        let err = topology
            .with_groups_from_yaml("extra.yaml", unknown)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is ephemeral"), "{err}");
        assert!(err.contains("unknown event type `nope.never`"), "{err}");
    }

    #[test]
    fn uncovered_and_misrouted_types_are_reported() {
        let text = VALID.replace(", data_only: true", "").replace(
            "channel: \"user:typing:{conversationId}\" }",
            "channel: \"user:typing:{id}\" }",
        );
        let err = Topology::from_yaml("t.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("events.payment.failed: no group consumes this type"),
            "{err}"
        );
        assert!(
            err.contains("undeclared channel `user:typing:{id}`"),
            "{err}"
        );
    }

    #[test]
    fn channels_render_from_fields() {
        let channel = Channel {
            template: "comment:added:{postId}".into(),
            scope: ChannelScope::Entity,
            description: String::new(),
            params: vec!["postId".into()],
        };
        assert_eq!(
            channel
                .render(|p| (p == "postId").then(|| "p1".to_string()))
                .as_deref(),
            Some("comment:added:p1")
        );
        assert_eq!(channel.render(|_| None), None);
        assert!(channel_params("Bad:{x}").is_err());
        assert_eq!(channel_params("a:{b}:c").unwrap(), vec!["b".to_string()]);
    }
}
