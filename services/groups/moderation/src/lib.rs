//! `moderation`: screens the text of posts and comments against configurable rules and flags what
//! matches (`content.flagged`, one per category); keeps the review queue (one open item per
//! content, its flags aggregated); records moderation decisions and enforces them: a takedown of a
//! post emits `post.deleted`, a mute emits `user.muted` with its end, an approval dismisses the
//! item.
//!
//! Emissions come only from the delivery whose transaction changed state, so a duplicate delivery
//! emits nothing. A retry after a committed transaction (the earlier attempt failed while
//! emitting) emits the same events again: their ids and payloads are derived from the cause alone,
//! so consumers deduplicate them.

pub mod rules;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use circulatory::catalog::Catalog;
use circulatory::consumer::{exactly_once, Applied, ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{
    CommentAdded, ContentFlagged, ContentModerationReviewed, EventPayload, FlagReason, FlagSource,
    FlaggedContentKind, ModerationDecision, ModerationPolicy, PostCreated, PostDeleted,
    PostDeletionReason, ReviewedContentKind, UserMuteReason, UserMuted,
};
use circulatory_group_common::runner::{RegisterError, Registered};
use sqlx::PgConnection;
use uuid::Uuid;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;

use crate::rules::{flags_by_category, CategoryFlag, Hit, Rules};

pub const GROUP: &str = "moderation";

/// The group's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Screening rules (YAML): word and phrase lists and regexes, each with a category and a
    /// severity. An invalid file stops the group at start (exit 64).
    #[arg(
        long = "rules",
        env = "CIRC_MODERATION_RULES",
        default_value = "services/groups/moderation/rules.yaml"
    )]
    pub rules: PathBuf,
    /// How long a MUTE_AUTHOR decision mutes when it gives no `muteUntil` (e.g. 24h, 7d).
    #[arg(
        long = "default-mute",
        env = "CIRC_MODERATION_DEFAULT_MUTE",
        default_value = "24h",
        value_parser = circulatory::duration::parse
    )]
    pub default_mute: Duration,
}

impl Options {
    /// The given rules file and the default mute length.
    pub fn with_rules(rules: impl Into<PathBuf>) -> Options {
        Options {
            rules: rules.into(),
            default_mute: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the handlers share besides the connections.
#[derive(Clone)]
struct Moderation {
    deps: Deps,
    rules: Arc<Rules>,
    default_mute: chrono::Duration,
}

/// Adds the handlers. The rules are loaded and checked first: an invalid file is refused (the
/// runner exits 64, a configuration error) before anything is consumed.
pub fn register(consumer: ConsumerGroup, deps: &Deps, options: Options) -> Registered {
    let rules = load_rules(deps, &options.rules).map_err(|e| RegisterError(e.to_string()))?;
    tracing::info!(
        group = GROUP,
        rules = rules.rules().len(),
        path = %options.rules.display(),
        "moderation rules loaded"
    );
    let m = Moderation {
        deps: deps.clone(),
        rules: Arc::new(rules),
        default_mute: chrono::Duration::from_std(options.default_mute)
            .unwrap_or_else(|_| chrono::Duration::days(1)),
    };
    Ok(consumer
        .handler_with(PostCreated::EVENT_TYPE, m.clone(), |m, e, ctx| async move {
            post_created(&m, e, ctx).await
        })
        .handler_with(
            CommentAdded::EVENT_TYPE,
            m.clone(),
            |m, e, ctx| async move { comment_added(&m, e, ctx).await },
        )
        .handler_with(
            ContentFlagged::EVENT_TYPE,
            m.clone(),
            |m, e, _| async move { content_flagged(&m, e).await },
        )
        .handler_with(
            ContentModerationReviewed::EVENT_TYPE,
            m,
            |m, e, ctx| async move { reviewed(&m, e, ctx).await },
        ))
}

/// Loads the rules file: its categories must be reasons of `content.flagged` (in the catalog and
/// in [`FlagReason`]), and its regexes must compile in PostgreSQL.
pub fn load_rules(deps: &Deps, path: &std::path::Path) -> Result<Rules, String> {
    let mut categories = enum_symbols(&deps.catalog, ContentFlagged::EVENT_TYPE, "reason");
    categories.retain(|c| c.parse::<FlagReason>().is_ok());
    if categories.is_empty() {
        return Err("the catalog's content.flagged has no `reason` enum".into());
    }
    let rules = Rules::load(path, &categories)?;
    check_patterns(deps, &rules)?;
    Ok(rules)
}

/// Symbols of an enum field of an event type's schema (empty when there is none).
fn enum_symbols(catalog: &Catalog, event_type: &str, field: &str) -> BTreeSet<String> {
    let Some(event) = catalog.event(event_type) else {
        return BTreeSet::new();
    };
    let fields = event.schema_json["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    fields
        .iter()
        .filter(|f| f["name"] == field)
        .filter_map(|f| f["type"]["symbols"].as_array().cloned())
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Compiles every regex in PostgreSQL once, at start. `register` is synchronous, so this blocks
/// the (multi-threaded) runtime's thread briefly; when the database cannot answer now, the check
/// is left to the first use (a failure there is retried like any database failure).
fn check_patterns(deps: &Deps, rules: &Rules) -> Result<(), String> {
    let patterns = rules.patterns();
    if patterns.is_empty() {
        return Ok(());
    }
    let handle = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => h,
        _ => {
            tracing::warn!(
                group = GROUP,
                "regexes not checked at start (no multi-threaded runtime)"
            );
            return Ok(());
        }
    };
    let pool = deps.pool.clone();
    tokio::task::block_in_place(move || {
        handle.block_on(async move {
            for (index, pattern) in &patterns {
                let checked = sqlx::query("SELECT '' ~* $1")
                    .bind(pattern)
                    .execute(&pool)
                    .await;
                match checked {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("2201B") => {
                        return Err(format!(
                            "rule {}: invalid regex `{pattern}`: {}",
                            rules.rules()[*index].name,
                            e.message()
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(group = GROUP, error = %e, "regexes not checked at start");
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    })
}

/// Content to screen.
struct Screened {
    content_id: Uuid,
    kind: FlaggedContentKind,
    author_id: Uuid,
    text: String,
}

impl Screened {
    /// A post: its text and its hashtags.
    fn post(p: PostCreated) -> Screened {
        let mut text = p.text;
        for tag in &p.hashtags {
            text.push_str(" #");
            text.push_str(tag);
        }
        Screened {
            content_id: p.post_id,
            kind: FlaggedContentKind::Post,
            author_id: p.author_id,
            text,
        }
    }

    fn comment(p: CommentAdded) -> Screened {
        Screened {
            content_id: p.comment_id,
            kind: FlaggedContentKind::Comment,
            author_id: p.author_id,
            text: p.text,
        }
    }
}

async fn post_created(m: &Moderation, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let content = Screened::post(event.payload()?);
    screen(m, &event, &ctx, content).await
}

async fn comment_added(m: &Moderation, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let content = Screened::comment(event.payload()?);
    screen(m, &event, &ctx, content).await
}

/// Matches the content against the rules and flags it once per matched category.
async fn screen(
    m: &Moderation,
    event: &Event,
    ctx: &Context,
    content: Screened,
) -> Result<(), HandlerError> {
    let mut hits = m.rules.match_terms(&content.text);
    hits.extend(regex_hits(m, &content.text).await?);
    // The event's processed_events row: a duplicate delivery flags nothing again.
    let applied = exactly_once(&m.deps.pool, GROUP, event, |_| Box::pin(async { Ok(()) })).await?;
    if !should_emit(&applied, event) || hits.is_empty() {
        return Ok(());
    }
    let flags = flags_by_category(&hits)
        .into_iter()
        .map(|flag| flag_of(event, &content, flag))
        .collect::<Result<Vec<_>, _>>()?;
    for flag in flags {
        ctx.emit(flag);
    }
    Ok(())
}

/// The automated `content.flagged` of `content` screened by `event`, for one category. Its id
/// and time derive from the cause alone (the screening is of the content as published), so a
/// re-emission carries the same payload.
fn flag_of(
    event: &Event,
    content: &Screened,
    flag: CategoryFlag,
) -> Result<ContentFlagged, HandlerError> {
    // The rules' categories were checked at start to be reasons.
    let reason: FlagReason = flag
        .category
        .parse()
        .map_err(|e| HandlerError::permanent(format!("rule category: {e}")))?;
    let seed = format!("{GROUP}/screen/{}/{}", event.id(), flag.category);
    Ok(ContentFlagged {
        flag_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, seed.as_bytes()),
        content_id: content.content_id,
        content_kind: content.kind,
        author_id: content.author_id,
        reporter_id: None,
        source: FlagSource::Automated,
        reason,
        details: Some(flag.details),
        score: Some(flag.severity.score()),
        flagged_at: event.metadata.time,
    })
}

/// Whether this delivery emits: the one that changed state, or a retry after a committed change
/// (the earlier attempt failed after its commit, i.e. while emitting).
fn should_emit<T>(applied: &Applied<T>, event: &Event) -> bool {
    match applied {
        Applied::Now(_) => true,
        Applied::AlreadyDone => event.attempt > 1,
    }
}

/// The rules' regexes that match `text`, evaluated by PostgreSQL (case-insensitive).
async fn regex_hits(m: &Moderation, text: &str) -> Result<Vec<Hit>, HandlerError> {
    let patterns = m.rules.patterns();
    if patterns.is_empty() || text.is_empty() {
        return Ok(Vec::new());
    }
    let sources: Vec<String> = patterns.iter().map(|(_, p)| p.clone()).collect();
    let matched: Vec<(i64,)> = sqlx::query_as(
        "SELECT p.i FROM unnest($2::text[]) WITH ORDINALITY AS p(pattern, i) \
         WHERE $1 ~* p.pattern ORDER BY p.i",
    )
    .bind(text)
    .bind(&sources)
    .fetch_all(&m.deps.pool)
    .await
    .map_err(db)?;
    Ok(matched
        .into_iter()
        .filter_map(|(i,)| patterns.get(usize::try_from(i - 1).ok()?))
        .filter_map(|(rule, pattern)| m.rules.regex_hit(*rule, pattern))
        .collect())
}

/// Adds the flag to the content's open review item (opening one when there is none).
async fn content_flagged(m: &Moderation, event: Event) -> Result<(), HandlerError> {
    let f: ContentFlagged = event.payload()?;
    if let Some(score) = f.score {
        if !(0.0..=1.0).contains(&score) {
            return Err(HandlerError::permanent(format!(
                "score {score} is outside 0..1"
            )));
        }
    }
    exactly_once(&m.deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { queue_flag(tx, &f).await })
    })
    .await?;
    Ok(())
}

async fn queue_flag(tx: &mut PgConnection, f: &ContentFlagged) -> Result<(), HandlerError> {
    // The same flag under another event id counts once.
    let known: Option<(String,)> =
        sqlx::query_as("SELECT flag_id FROM moderation_flags WHERE flag_id = $1")
            .bind(f.flag_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    if known.is_some() {
        return Ok(());
    }
    let (item_id,): (i64,) = sqlx::query_as(
        "INSERT INTO moderation_queue \
           (content_id, content_kind, author_id, flag_count, reasons, sources, max_score, \
            first_flagged_at, last_flagged_at) \
         VALUES ($1, $2, $3, 1, ARRAY[$4], ARRAY[$5], $6, $7, $7) \
         ON CONFLICT (content_id) WHERE status = 'OPEN' DO UPDATE SET \
           flag_count = moderation_queue.flag_count + 1, \
           reasons = ARRAY(SELECT DISTINCT r FROM unnest(moderation_queue.reasons || EXCLUDED.reasons) r ORDER BY r), \
           sources = ARRAY(SELECT DISTINCT s FROM unnest(moderation_queue.sources || EXCLUDED.sources) s ORDER BY s), \
           max_score = GREATEST(moderation_queue.max_score, EXCLUDED.max_score), \
           first_flagged_at = LEAST(moderation_queue.first_flagged_at, EXCLUDED.first_flagged_at), \
           last_flagged_at = GREATEST(moderation_queue.last_flagged_at, EXCLUDED.last_flagged_at), \
           updated_at = now() \
         RETURNING id",
    )
    .bind(f.content_id.to_string())
    .bind(f.content_kind.as_str())
    .bind(f.author_id.to_string())
    .bind(f.reason.as_str())
    .bind(f.source.as_str())
    .bind(f.score)
    .bind(f.flagged_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO moderation_flags \
           (flag_id, item_id, content_id, reason, source, reporter_id, details, score, flagged_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(f.flag_id.to_string())
    .bind(item_id)
    .bind(f.content_id.to_string())
    .bind(f.reason.as_str())
    .bind(f.source.as_str())
    .bind(f.reporter_id.map(|id| id.to_string()))
    .bind(&f.details)
    .bind(f.score)
    .bind(f.flagged_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// What a decision causes downstream.
#[derive(Debug, Clone, PartialEq)]
enum Enforcement {
    PostDeleted(PostDeleted),
    UserMuted(UserMuted),
}

impl Enforcement {
    /// The emitted event type (recorded with the decision).
    fn event_type(&self) -> &'static str {
        match self {
            Enforcement::PostDeleted(_) => PostDeleted::EVENT_TYPE,
            Enforcement::UserMuted(_) => UserMuted::EVENT_TYPE,
        }
    }

    fn emit(self, ctx: &Context) {
        match self {
            Enforcement::PostDeleted(e) => ctx.emit(e),
            Enforcement::UserMuted(e) => ctx.emit(e),
        };
    }
}

/// The mute reason of a policy (the same symbols).
fn mute_reason(policy: ModerationPolicy) -> UserMuteReason {
    match policy {
        ModerationPolicy::Spam => UserMuteReason::Spam,
        ModerationPolicy::Harassment => UserMuteReason::Harassment,
        ModerationPolicy::HateSpeech => UserMuteReason::HateSpeech,
        ModerationPolicy::Violence => UserMuteReason::Violence,
        ModerationPolicy::Nudity => UserMuteReason::Nudity,
        ModerationPolicy::SelfHarm => UserMuteReason::SelfHarm,
        ModerationPolicy::Misinformation => UserMuteReason::Misinformation,
        ModerationPolicy::Copyright => UserMuteReason::Copyright,
        ModerationPolicy::Impersonation => UserMuteReason::Impersonation,
        ModerationPolicy::Other => UserMuteReason::Other,
    }
}

/// The event a decision emits, if any; derived from the review alone.
fn enforcement(r: &ContentModerationReviewed) -> Result<Option<Enforcement>, HandlerError> {
    match r.decision {
        ModerationDecision::Approve => Ok(None),
        ModerationDecision::Takedown if r.content_kind == ReviewedContentKind::Post => {
            Ok(Some(Enforcement::PostDeleted(PostDeleted {
                post_id: r.content_id,
                author_id: r.author_id,
                reason: PostDeletionReason::ModerationTakedown,
                deleted_by: r.reviewer_id,
                deleted_at: r.reviewed_at,
            })))
        }
        // No catalog event removes other kinds of content: the decision is recorded and the
        // item closed; the owning service reads the decision.
        ModerationDecision::Takedown => Ok(None),
        ModerationDecision::MuteAuthor => {
            let Some(until) = r.mute_until else {
                return Err(HandlerError::permanent("MUTE_AUTHOR without an end"));
            };
            if until <= r.reviewed_at {
                return Err(HandlerError::permanent(format!(
                    "muteUntil {until} is not after reviewedAt {}",
                    r.reviewed_at
                )));
            }
            Ok(Some(Enforcement::UserMuted(UserMuted {
                user_id: r.author_id,
                until,
                reason: r.policy.map_or(UserMuteReason::Other, mute_reason),
                muted_by: r.reviewer_id,
                content_id: Some(r.content_id),
                muted_at: r.reviewed_at,
            })))
        }
    }
}

/// Records the decision, closes the content's open item and enforces the decision.
async fn reviewed(m: &Moderation, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let mut r: ContentModerationReviewed = event.payload()?;
    if r.decision == ModerationDecision::MuteAuthor && r.mute_until.is_none() {
        r.mute_until = Some(r.reviewed_at + m.default_mute);
    }
    let enforce = enforcement(&r)?;
    let enforced_type = enforce.as_ref().map(Enforcement::event_type);
    let (review_id, event_id) = (r.review_id.to_string(), event.id().to_string());
    let applied = exactly_once(&m.deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { record_decision(tx, &r, enforced_type, &event_id).await })
    })
    .await?;
    let emit = match applied {
        Applied::Now(recorded) => recorded,
        // A retry after the commit: emit again only if this event recorded the decision.
        Applied::AlreadyDone if event.attempt > 1 => {
            let mine: Option<(String,)> = sqlx::query_as(
                "SELECT review_id FROM moderation_decisions WHERE review_id = $1 AND event_id = $2",
            )
            .bind(&review_id)
            .bind(event.id())
            .fetch_optional(&m.deps.pool)
            .await
            .map_err(db)?;
            mine.is_some()
        }
        Applied::AlreadyDone => false,
    };
    if let (true, Some(e)) = (emit, enforce) {
        e.emit(&ctx);
    }
    Ok(())
}

/// Whether this review was recorded now (false: the same review arrived before as another event).
async fn record_decision(
    tx: &mut PgConnection,
    r: &ContentModerationReviewed,
    enforcement: Option<&str>,
    event_id: &str,
) -> Result<bool, HandlerError> {
    let known: Option<(String,)> =
        sqlx::query_as("SELECT review_id FROM moderation_decisions WHERE review_id = $1")
            .bind(r.review_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    if known.is_some() {
        return Ok(false);
    }
    let item: Option<(i64,)> = sqlx::query_as(
        "UPDATE moderation_queue SET status = 'CLOSED', decision = $2, review_id = $3, \
                reviewed_at = $4, updated_at = now() \
         WHERE content_id = $1 AND status = 'OPEN' RETURNING id",
    )
    .bind(r.content_id.to_string())
    .bind(r.decision.as_str())
    .bind(r.review_id.to_string())
    .bind(r.reviewed_at)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO moderation_decisions \
           (review_id, event_id, content_id, content_kind, author_id, item_id, flag_id, \
            reviewer_id, decision, policy, mute_until, notes, enforcement, reviewed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(r.review_id.to_string())
    .bind(event_id)
    .bind(r.content_id.to_string())
    .bind(r.content_kind.as_str())
    .bind(r.author_id.to_string())
    .bind(item.map(|(id,)| id))
    .bind(r.flag_id.map(|id| id.to_string()))
    .bind(r.reviewer_id.map(|id| id.to_string()))
    .bind(r.decision.as_str())
    .bind(r.policy.map(ModerationPolicy::as_str))
    .bind(r.mute_until)
    .bind(&r.notes)
    .bind(enforcement)
    .bind(r.reviewed_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::{DateTime, Utc};
    use circulatory::consumer::testing;
    use circulatory::events::{PostMediaType, PostVisibility};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_796_358_334_000 + millis).expect("in range")
    }

    fn post(text: &str, hashtags: &[&str]) -> PostCreated {
        PostCreated {
            post_id: id(1),
            author_id: id(2),
            text: text.into(),
            hashtags: hashtags.iter().map(|t| t.to_string()).collect(),
            mentions: vec![],
            media_type: PostMediaType::Text,
            video_id: None,
            visibility: PostVisibility::Public,
            created_at: at(0),
        }
    }

    const RULES: &str = r#"
rules:
  - name: spam
    category: SPAM
    severity: medium
    words: [viagra]
  - name: threats
    category: HARASSMENT
    severity: high
    phrases: ["I will find you"]
"#;

    fn flags(event: &Event, content: &Screened) -> Vec<ContentFlagged> {
        let categories = ["SPAM", "HARASSMENT"].map(String::from).into();
        let rules = Rules::parse(RULES, &categories).expect("valid");
        flags_by_category(&rules.match_terms(&content.text))
            .into_iter()
            .map(|flag| flag_of(event, content, flag).expect("a reason"))
            .collect()
    }

    #[test]
    fn a_post_is_screened_with_its_hashtags_and_flagged_once_per_category() {
        let p = post("I will find you", &["viagra"]);
        let event = testing::event_of(p.clone());
        let content = Screened::post(p);
        assert_eq!(content.text, "I will find you #viagra");
        let flagged = flags(&event, &content);
        let reasons: Vec<FlagReason> = flagged.iter().map(|f| f.reason).collect();
        assert_eq!(reasons, [FlagReason::Harassment, FlagReason::Spam]);
        let spam = &flagged[1];
        assert_eq!((spam.content_id, spam.author_id), (id(1), id(2)));
        assert_eq!(spam.content_kind, FlaggedContentKind::Post);
        assert_eq!(spam.source, FlagSource::Automated);
        assert_eq!(spam.reporter_id, None);
        assert_eq!(spam.score, Some(0.6));
        assert_eq!(spam.details.as_deref(), Some("spam (medium): viagra"));
        assert_eq!(spam.flagged_at, event.metadata.time);
        assert_ne!(flagged[0].flag_id, spam.flag_id);
        // A re-emission for the same event carries the same flags; another event, other ids.
        assert_eq!(flags(&event, &content), flagged);
        let other = testing::event_of(post("I will find you", &["viagra"]));
        assert_ne!(flags(&other, &content)[1].flag_id, spam.flag_id);
        let json = serde_json::to_value(spam).expect("JSON");
        assert_eq!(json["reason"], "SPAM");
        assert_eq!(json["contentKind"], "POST");
    }

    #[test]
    fn a_comment_is_screened_as_a_comment() {
        let comment = CommentAdded {
            comment_id: id(5),
            post_id: id(1),
            author_id: id(6),
            post_author_id: id(2),
            parent_comment_id: None,
            text: "cheap VIAGRA".into(),
            mentions: vec![],
            created_at: at(0),
        };
        let event = testing::event_of(comment.clone());
        let flagged = flags(&event, &Screened::comment(comment));
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].content_kind, FlaggedContentKind::Comment);
        assert_eq!(
            (flagged[0].content_id, flagged[0].author_id),
            (id(5), id(6))
        );
    }

    #[test]
    fn an_unknown_category_is_refused_not_flagged() {
        let content = Screened::post(post("x", &[]));
        let flag = CategoryFlag {
            category: "NOPE".into(),
            severity: rules::Severity::Low,
            details: String::new(),
        };
        let err = flag_of(&testing::event_of(post("x", &[])), &content, flag).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }

    fn review(
        decision: ModerationDecision,
        kind: ReviewedContentKind,
    ) -> ContentModerationReviewed {
        ContentModerationReviewed {
            review_id: id(10),
            content_id: id(1),
            content_kind: kind,
            author_id: id(2),
            flag_id: Some(id(11)),
            reviewer_id: Some(id(12)),
            decision,
            policy: Some(ModerationPolicy::HateSpeech),
            mute_until: None,
            notes: None,
            reviewed_at: at(0),
        }
    }

    #[test]
    fn a_takedown_deletes_posts_only() {
        let post = review(ModerationDecision::Takedown, ReviewedContentKind::Post);
        let deleted = enforcement(&post).expect("valid").expect("enforced");
        assert_eq!(deleted.event_type(), "post.deleted");
        assert_eq!(
            deleted,
            Enforcement::PostDeleted(PostDeleted {
                post_id: id(1),
                author_id: id(2),
                reason: PostDeletionReason::ModerationTakedown,
                deleted_by: Some(id(12)),
                deleted_at: at(0),
            })
        );
        for kind in [ReviewedContentKind::Comment, ReviewedContentKind::Video] {
            let r = review(ModerationDecision::Takedown, kind);
            assert_eq!(enforcement(&r), Ok(None), "{kind}");
        }
        let approve = review(ModerationDecision::Approve, ReviewedContentKind::Post);
        assert_eq!(enforcement(&approve), Ok(None));
    }

    #[test]
    fn a_mute_mutes_the_author_until_its_end_for_the_policy() {
        let mute = ContentModerationReviewed {
            mute_until: Some(at(3_600_000)),
            ..review(ModerationDecision::MuteAuthor, ReviewedContentKind::Comment)
        };
        let muted = enforcement(&mute).expect("valid").expect("enforced");
        assert_eq!(muted.event_type(), "user.muted");
        assert_eq!(
            muted,
            Enforcement::UserMuted(UserMuted {
                user_id: id(2),
                until: at(3_600_000),
                reason: UserMuteReason::HateSpeech,
                muted_by: Some(id(12)),
                content_id: Some(id(1)),
                muted_at: at(0),
            })
        );
        let no_policy = ContentModerationReviewed {
            policy: None,
            ..mute.clone()
        };
        let Some(Enforcement::UserMuted(m)) = enforcement(&no_policy).expect("valid") else {
            panic!("not a mute");
        };
        assert_eq!(m.reason, UserMuteReason::Other);
        for until in [None, Some(at(0)), Some(at(-1))] {
            let bad = ContentModerationReviewed {
                mute_until: until,
                ..mute.clone()
            };
            let err = enforcement(&bad).expect_err("refused");
            assert!(!err.is_retryable(), "{err}");
        }
    }

    #[test]
    fn every_policy_is_the_mute_reason_of_the_same_symbol() {
        for policy in ModerationPolicy::ALL {
            assert_eq!(mute_reason(*policy).as_str(), policy.as_str());
        }
    }
}
