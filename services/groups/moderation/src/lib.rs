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

use chrono::{DateTime, Utc};
use circulatory::catalog::Catalog;
use circulatory::consumer::{exactly_once, Applied, ConsumerGroup, Context, Event, HandlerError};
use circulatory_groups::runner::{RegisterError, Registered};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;

use crate::rules::{flags_by_category, Hit, Rules};

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
        .handler_with("post.created", m.clone(), |m, e, ctx| async move {
            post_created(&m, e, ctx).await
        })
        .handler_with("comment.added", m.clone(), |m, e, ctx| async move {
            comment_added(&m, e, ctx).await
        })
        .handler_with("content.flagged", m.clone(), |m, e, _| async move {
            content_flagged(&m, e).await
        })
        .handler_with("content.moderation.reviewed", m, |m, e, ctx| async move {
            reviewed(&m, e, ctx).await
        }))
}

/// Loads the rules file: its categories must be reasons of `content.flagged`, and its regexes
/// must compile in PostgreSQL.
pub fn load_rules(deps: &Deps, path: &std::path::Path) -> Result<Rules, String> {
    let categories = enum_symbols(&deps.catalog, "content.flagged", "reason");
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostCreated {
    post_id: String,
    author_id: String,
    text: String,
    hashtags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentAdded {
    comment_id: String,
    author_id: String,
    text: String,
}

/// Content to screen.
struct Screened {
    content_id: String,
    kind: &'static str,
    author_id: String,
    text: String,
}

async fn post_created(m: &Moderation, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: PostCreated = event.payload()?;
    let mut text = p.text;
    for tag in &p.hashtags {
        text.push_str(" #");
        text.push_str(tag);
    }
    let content = Screened {
        content_id: p.post_id,
        kind: "POST",
        author_id: p.author_id,
        text,
    };
    screen(m, &event, &ctx, content).await
}

async fn comment_added(m: &Moderation, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: CommentAdded = event.payload()?;
    let content = Screened {
        content_id: p.comment_id,
        kind: "COMMENT",
        author_id: p.author_id,
        text: p.text,
    };
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
    for flag in flags_by_category(&hits) {
        let seed = format!("{GROUP}/screen/{}/{}", event.id(), flag.category);
        let flag_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes());
        ctx.emit(
            "content.flagged",
            json!({
                "flagId": flag_id.to_string(),
                "contentId": content.content_id,
                "contentKind": content.kind,
                "authorId": content.author_id,
                "reporterId": null,
                "source": "AUTOMATED",
                "reason": flag.category,
                "details": flag.details,
                "score": flag.severity.score(),
                // The screening is of the content as published: the cause's time, so a
                // re-emission carries the same payload.
                "flaggedAt": event.metadata.time,
            }),
        );
    }
    Ok(())
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContentFlagged {
    flag_id: String,
    content_id: String,
    content_kind: String,
    author_id: String,
    reporter_id: Option<String>,
    source: String,
    reason: String,
    details: Option<String>,
    score: Option<f64>,
    flagged_at: DateTime<Utc>,
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
            .bind(&f.flag_id)
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
    .bind(&f.content_id)
    .bind(&f.content_kind)
    .bind(&f.author_id)
    .bind(&f.reason)
    .bind(&f.source)
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
    .bind(&f.flag_id)
    .bind(item_id)
    .bind(&f.content_id)
    .bind(&f.reason)
    .bind(&f.source)
    .bind(&f.reporter_id)
    .bind(&f.details)
    .bind(f.score)
    .bind(f.flagged_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reviewed {
    review_id: String,
    content_id: String,
    content_kind: String,
    author_id: String,
    flag_id: Option<String>,
    reviewer_id: Option<String>,
    decision: String,
    policy: Option<String>,
    mute_until: Option<DateTime<Utc>>,
    notes: Option<String>,
    reviewed_at: DateTime<Utc>,
}

/// What a decision causes downstream.
struct Enforcement {
    event_type: &'static str,
    data: serde_json::Value,
}

/// The event a decision emits, if any; derived from the review alone.
fn enforcement(r: &Reviewed) -> Result<Option<Enforcement>, HandlerError> {
    match r.decision.as_str() {
        "APPROVE" => Ok(None),
        "TAKEDOWN" if r.content_kind == "POST" => Ok(Some(Enforcement {
            event_type: "post.deleted",
            data: json!({
                "postId": r.content_id,
                "authorId": r.author_id,
                "reason": "MODERATION_TAKEDOWN",
                "deletedBy": r.reviewer_id,
                "deletedAt": r.reviewed_at,
            }),
        })),
        // No catalog event removes other kinds of content: the decision is recorded and the
        // item closed; the owning service reads the decision.
        "TAKEDOWN" => Ok(None),
        "MUTE_AUTHOR" => {
            let Some(until) = r.mute_until else {
                return Err(HandlerError::permanent("MUTE_AUTHOR without an end"));
            };
            if until <= r.reviewed_at {
                return Err(HandlerError::permanent(format!(
                    "muteUntil {until} is not after reviewedAt {}",
                    r.reviewed_at
                )));
            }
            Ok(Some(Enforcement {
                event_type: "user.muted",
                data: json!({
                    "userId": r.author_id,
                    "until": until,
                    "reason": r.policy.as_deref().unwrap_or("OTHER"),
                    "mutedBy": r.reviewer_id,
                    "contentId": r.content_id,
                    "mutedAt": r.reviewed_at,
                }),
            }))
        }
        other => Err(HandlerError::permanent(format!(
            "unknown decision `{other}`"
        ))),
    }
}

/// Records the decision, closes the content's open item and enforces the decision.
async fn reviewed(m: &Moderation, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let mut r: Reviewed = event.payload()?;
    if r.decision == "MUTE_AUTHOR" && r.mute_until.is_none() {
        r.mute_until = Some(r.reviewed_at + m.default_mute);
    }
    let enforce = enforcement(&r)?;
    let enforced_type = enforce.as_ref().map(|e| e.event_type);
    let (review_id, event_id) = (r.review_id.clone(), event.id().to_string());
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
        ctx.emit(e.event_type, e.data);
    }
    Ok(())
}

/// Whether this review was recorded now (false: the same review arrived before as another event).
async fn record_decision(
    tx: &mut PgConnection,
    r: &Reviewed,
    enforcement: Option<&str>,
    event_id: &str,
) -> Result<bool, HandlerError> {
    let known: Option<(String,)> =
        sqlx::query_as("SELECT review_id FROM moderation_decisions WHERE review_id = $1")
            .bind(&r.review_id)
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
    .bind(&r.content_id)
    .bind(&r.decision)
    .bind(&r.review_id)
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
    .bind(&r.review_id)
    .bind(event_id)
    .bind(&r.content_id)
    .bind(&r.content_kind)
    .bind(&r.author_id)
    .bind(item.map(|(id,)| id))
    .bind(&r.flag_id)
    .bind(&r.reviewer_id)
    .bind(&r.decision)
    .bind(&r.policy)
    .bind(r.mute_until)
    .bind(&r.notes)
    .bind(enforcement)
    .bind(r.reviewed_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(true)
}
