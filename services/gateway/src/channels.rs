//! Who may subscribe to what. The channel templates and their scopes come from the
//! `realtime.channels` section of `topics.yaml`; nothing here names a channel.
//!
//! - `public` channels (`post:created`) and `entity` channels (`comment:added:{postId}`): any
//!   authenticated user.
//! - `user` channels (`notification:sent:{userId}`): only the user whose id fills the parameter
//!   (the token's `sub`).
//! - Patterns: `*` in place of an entity id (`comment:added:*`) when the pattern policy allows it;
//!   never for user channels, whose pattern would be everyone's private stream.
//!
//! Entity ids are restricted to a safe alphabet, so a concrete channel can never act as a Redis
//! glob and a pattern is exactly what was authorized.

use std::sync::Arc;

use circulatory::topology::{ChannelScope, Topology};

use crate::config::PatternPolicy;

/// The longest channel name a client may ask for.
pub const MAX_CHANNEL_LEN: usize = 256;
/// The longest entity id inside a channel name.
pub const MAX_PARAM_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// One declared channel template.
#[derive(Debug, Clone)]
pub struct Template {
    /// As declared, e.g. `comment:added:{postId}`: the name the figures are kept under.
    pub name: Arc<str>,
    pub scope: ChannelScope,
    segments: Vec<Segment>,
}

impl Template {
    fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }
}

/// An authorized subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The Redis channel (or glob pattern) to listen on, as the client asked for it.
    pub channel: String,
    pub pattern: bool,
    /// The template the channel belongs to.
    pub template: Arc<str>,
    pub scope: ChannelScope,
}

/// Why a subscription was refused. The message is safe to show to the client: it never says
/// anything about other users or what their channels carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("channel names are `:`-separated segments of letters, digits, `-`, `_`, `.` or `@`, at most {MAX_CHANNEL_LEN} characters")]
    Invalid,
    #[error("no such channel")]
    Unknown,
    #[error("this channel belongs to another user")]
    Forbidden,
    #[error("patterns are not allowed on this channel")]
    PatternNotAllowed,
}

impl Refusal {
    /// The machine-readable code in error frames.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid_channel",
            Refusal::Unknown => "unknown_channel",
            Refusal::Forbidden => "forbidden",
            Refusal::PatternNotAllowed => "pattern_not_allowed",
        }
    }
}

/// The channel templates of the topology and the rules above.
#[derive(Debug, Clone)]
pub struct ChannelPolicy {
    templates: Vec<Template>,
    patterns: PatternPolicy,
}

fn valid_param(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_PARAM_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

impl ChannelPolicy {
    pub fn from_topology(topology: &Topology, patterns: PatternPolicy) -> ChannelPolicy {
        let templates = topology
            .channels
            .values()
            .map(|channel| Template {
                name: Arc::from(channel.template.as_str()),
                scope: channel.scope,
                segments: channel
                    .template
                    .split(':')
                    .map(|segment| {
                        if segment.starts_with('{') && segment.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(segment.to_string())
                        }
                    })
                    .collect(),
            })
            .collect();
        ChannelPolicy {
            templates,
            patterns,
        }
    }

    /// Every declared template.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// Whether `user` may subscribe to `requested`; what to listen on if so.
    pub fn authorize(&self, user: &str, requested: &str) -> Result<Grant, Refusal> {
        if requested.is_empty() || requested.len() > MAX_CHANNEL_LEN {
            return Err(Refusal::Invalid);
        }
        let segments: Vec<&str> = requested.split(':').collect();
        let (template, values) = self.template_for(&segments)?;
        let pattern = values.contains(&"*");
        if pattern {
            let allowed =
                self.patterns == PatternPolicy::Entity && template.scope == ChannelScope::Entity;
            if !allowed {
                return Err(Refusal::PatternNotAllowed);
            }
        } else if template.scope == ChannelScope::User && values.iter().any(|v| *v != user) {
            return Err(Refusal::Forbidden);
        }
        Ok(Grant {
            channel: requested.to_string(),
            pattern,
            template: template.name.clone(),
            scope: template.scope,
        })
    }

    /// The template a concrete channel or pattern belongs to, with its parameter values.
    fn template_for<'a>(&self, segments: &[&'a str]) -> Result<(&Template, Vec<&'a str>), Refusal> {
        for segment in segments {
            if *segment != "*" && !valid_param(segment) {
                return Err(Refusal::Invalid);
            }
        }
        let mut best: Option<(&Template, Vec<&'a str>)> = None;
        for template in &self.templates {
            if template.segments.len() != segments.len() {
                continue;
            }
            let mut values = Vec::new();
            let matches = template
                .segments
                .iter()
                .zip(segments)
                .all(|(expected, got)| match expected {
                    Segment::Literal(text) => text == got,
                    Segment::Param => {
                        values.push(*got);
                        true
                    }
                });
            let better = best
                .as_ref()
                .is_none_or(|(b, _)| template.literal_count() > b.literal_count());
            if matches && better {
                best = Some((template, values));
            }
        }
        best.ok_or(Refusal::Unknown)
    }

    /// The template a concrete channel belongs to (for figures), without authorization.
    pub fn template_of(&self, channel: &str) -> Option<&Template> {
        let segments: Vec<&str> = channel.split(':').collect();
        self.template_for(&segments).ok().map(|(t, _)| t)
    }
}

/// The label of a scope in metrics and frames.
pub fn scope_label(scope: ChannelScope) -> &'static str {
    match scope {
        ChannelScope::Public => "public",
        ChannelScope::Entity => "entity",
        ChannelScope::User => "user",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
version: 1
defaults: { partitions: 1, replication_factor: 1, min_insync_replicas: 1, retention: 1d, cleanup_policy: delete, timeout: 1s, max_in_flight: 1, retry_retention: 1d, dlq_retention: 1d }
domains:
  users: { description: "u", tier: high }
events:
  user.online: { domain: users, record: UserOnline, key: userId, description: "o", ephemeral: true }
groups: {}
realtime:
  channels:
    "user:online": { scope: public, description: "p" }
    "post:created": { scope: public, description: "p" }
    "user:typing:{conversationId}": { scope: entity, description: "e" }
    "comment:added:{postId}": { scope: entity, description: "e" }
    "notification:sent:{userId}": { scope: user, description: "u" }
    "feed:updates:{userId}": { scope: user, description: "u" }
  routes:
    - { event: user.online, channel: "user:online" }
"#;

    fn policy(patterns: PatternPolicy) -> ChannelPolicy {
        let topology = Topology::from_yaml("t.yaml", YAML).unwrap();
        ChannelPolicy::from_topology(&topology, patterns)
    }

    #[test]
    fn public_and_entity_channels_are_open_to_anyone() {
        let p = policy(PatternPolicy::Entity);
        let grant = p.authorize("alice", "post:created").unwrap();
        assert_eq!(grant.template.as_ref(), "post:created");
        assert_eq!(grant.scope, ChannelScope::Public);
        assert!(!grant.pattern);
        let grant = p.authorize("alice", "comment:added:p-42").unwrap();
        assert_eq!(grant.template.as_ref(), "comment:added:{postId}");
        assert_eq!(grant.channel, "comment:added:p-42");
        assert_eq!(grant.scope, ChannelScope::Entity);
    }

    #[test]
    fn user_channels_only_for_their_user() {
        let p = policy(PatternPolicy::Entity);
        assert!(p.authorize("alice", "notification:sent:alice").is_ok());
        assert_eq!(
            p.authorize("alice", "notification:sent:bob"),
            Err(Refusal::Forbidden)
        );
        assert_eq!(
            p.authorize("alice", "feed:updates:*"),
            Err(Refusal::PatternNotAllowed)
        );
    }

    #[test]
    fn patterns_only_on_entity_channels_when_allowed() {
        let p = policy(PatternPolicy::Entity);
        let grant = p.authorize("alice", "comment:added:*").unwrap();
        assert!(grant.pattern);
        assert_eq!(grant.channel, "comment:added:*");
        assert_eq!(grant.template.as_ref(), "comment:added:{postId}");
        assert_eq!(
            policy(PatternPolicy::None).authorize("alice", "comment:added:*"),
            Err(Refusal::PatternNotAllowed)
        );
        // `*` in a literal position matches no template.
        assert_eq!(p.authorize("alice", "comment:*:p1"), Err(Refusal::Unknown));
        assert_eq!(p.authorize("alice", "*"), Err(Refusal::Unknown));
    }

    #[test]
    fn glob_characters_and_junk_are_invalid() {
        let p = policy(PatternPolicy::Entity);
        for bad in [
            "comment:added:p?",
            "comment:added:[ab]",
            "comment:added:p*",
            "comment:added:a\\b",
            "comment:added:",
            "",
            "comment:added:a b",
        ] {
            assert_eq!(p.authorize("alice", bad), Err(Refusal::Invalid), "{bad}");
        }
        let long = format!("comment:added:{}", "x".repeat(MAX_PARAM_LEN + 1));
        assert_eq!(p.authorize("alice", &long), Err(Refusal::Invalid));
    }

    #[test]
    fn unknown_channels_are_refused() {
        let p = policy(PatternPolicy::Entity);
        assert_eq!(p.authorize("alice", "secret:stuff"), Err(Refusal::Unknown));
        assert_eq!(
            p.authorize("alice", "post:created:x"),
            Err(Refusal::Unknown)
        );
        assert_eq!(p.authorize("alice", "user:typing"), Err(Refusal::Unknown));
    }

    #[test]
    fn concrete_channels_map_to_their_template() {
        let p = policy(PatternPolicy::Entity);
        assert_eq!(
            p.template_of("user:typing:c1").map(|t| t.name.as_ref()),
            Some("user:typing:{conversationId}")
        );
        assert_eq!(
            p.template_of("user:online").map(|t| t.name.as_ref()),
            Some("user:online")
        );
        assert!(p.template_of("nope").is_none());
    }
}
