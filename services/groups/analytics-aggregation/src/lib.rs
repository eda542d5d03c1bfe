//! `analytics-aggregation`: live counters, creator statistics and trending in Redis, and periodic
//! rollups in PostgreSQL, from views, engagement, likes, shares and new posts.
//!
//! # Redis keys
//!
//! Every key is prefixed by [`Deps::redis_key`] (`circ:<namespace or default>:`):
//!
//! | Key | Type | Content |
//! |---|---|---|
//! | `analytics:content:<contentId>` | hash | `views`, `completions`, `watch_ms`, `likes`, `shares`, `engagements`, `engagement:<action>` (lowercase `EngagementAction`, e.g. `engagement:click`): counts since the first event; `author`: the content's author id. Video ids (views) and post ids (likes, shares) are both content ids. |
//! | `analytics:creator:<authorId>` | hash | `posts`, `views`, `watch_ms`, `likes`, `shares`, `engagements`: totals over the author's content. |
//! | `analytics:trending` | sorted set | member: content id; score: `log2(Σ weight · 2^((t_event − t0) / half_life))` with `t0` = [`TRENDING_EPOCH_MS`] and the half-life of `--trending-half-life`. Higher ranks hotter. The decayed weight of an item at time `now` is `2^(score − (now − t0) / half_life)`. |
//! | `seen:analytics-aggregation:<eventId>` | string | marker of an event already counted (expires after `--seen-ttl`). |
//!
//! Trending weights: a view 1 (2 when completed), a like 3, a share 5, an engagement by action
//! ([`engagement_weight`]). The score lives in log space so that it never overflows and no rescan
//! is needed as time passes: adding an event is a log-sum-exp of the stored score and the event's
//! term, an item with no new events simply falls behind newer ones. Changing the half-life changes
//! the scale of new terms: the key should then be rebuilt.
//!
//! Likes are counted as added (the group does not read `like.removed`).
//!
//! # Exactly once
//!
//! The Redis changes of one event run in one Lua script that first sets the event's `seen` marker
//! (`SET NX EX`) and changes nothing when it was already there, so a redelivery within the marker's
//! lifetime counts nothing twice. The PostgreSQL rollups (`content_stats_hourly` per content and
//! hour, `creator_stats_daily` per author and UTC day) go through `exactly_once` and are exact
//! whatever the delay.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Event, HandlerError};
use circulatory::events::{
    ContentEngagement, EngagementAction, EventPayload, LikeAdded, PostCreated, ShareCreated,
    VideoViewed,
};
use circulatory::process::flags;
use circulatory_group_common::runner::Registered;
use sqlx::PgConnection;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::{db, redis_error};

pub const GROUP: &str = "analytics-aggregation";

/// The fixed origin of trending scores: 2026-01-01T00:00:00Z.
pub const TRENDING_EPOCH_MS: i64 = 1_767_225_600_000;

/// Trending weight of a view, of a completed view, of a like and of a share.
pub const VIEW_WEIGHT: f64 = 1.0;
pub const COMPLETED_VIEW_WEIGHT: f64 = 2.0;
pub const LIKE_WEIGHT: f64 = 3.0;
pub const SHARE_WEIGHT: f64 = 5.0;

/// The group's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Half-life of trending scores (`6h`): an event this old weighs half a new one.
    #[arg(
        long,
        env = "CIRC_TRENDING_HALF_LIFE",
        default_value = "6h",
        value_parser = flags::whole_seconds
    )]
    pub trending_half_life: Duration,
    /// How long a counted event id is remembered in Redis (`24h`): redeliveries within this
    /// window are not counted twice.
    #[arg(
        long,
        env = "CIRC_ANALYTICS_SEEN_TTL",
        default_value = "24h",
        value_parser = flags::whole_seconds
    )]
    pub seen_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trending_half_life: Duration::from_secs(21_600),
            seen_ttl: Duration::from_secs(86_400),
        }
    }
}

pub fn register(consumer: ConsumerGroup, deps: &Deps, options: Options) -> Registered {
    let state = (deps.clone(), options);
    Ok([
        VideoViewed::EVENT_TYPE,
        ContentEngagement::EVENT_TYPE,
        LikeAdded::EVENT_TYPE,
        ShareCreated::EVENT_TYPE,
        PostCreated::EVENT_TYPE,
    ]
    .into_iter()
    .fold(consumer, |consumer, event_type| {
        consumer.handler_with(
            event_type,
            state.clone(),
            |(deps, options), e, _| async move { aggregate(&deps, &options, e).await },
        )
    }))
}

/// The trending weight of an engagement action (0: not counted in trending).
pub fn engagement_weight(action: EngagementAction) -> f64 {
    match action {
        EngagementAction::Save => 4.0,
        EngagementAction::Click | EngagementAction::Dwell | EngagementAction::ProfileVisit => 0.5,
        EngagementAction::Impression | EngagementAction::Hide | EngagementAction::Other => 0.0,
    }
}

/// The log-space term an event of `weight` at `at` adds to a trending score.
pub fn trending_term(weight: f64, at: DateTime<Utc>, half_life_secs: u64) -> f64 {
    let elapsed = (at.timestamp_millis() - TRENDING_EPOCH_MS) as f64;
    elapsed / (half_life_secs as f64 * 1000.0) + weight.log2()
}

/// What one event adds: Redis counters and trending, and the PostgreSQL rollups.
#[derive(Debug, Default, PartialEq)]
struct Aggregate {
    content: Option<String>,
    author: Option<String>,
    at: Option<DateTime<Utc>>,
    trending_weight: f64,
    /// Content counters (Redis hash fields and rollup columns share these deltas).
    deltas: Deltas,
    /// An extra content counter (`engagement:<action>`).
    detail: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Deltas {
    posts: i64,
    views: i64,
    completions: i64,
    watch_ms: i64,
    engagements: i64,
    likes: i64,
    shares: i64,
}

impl Aggregate {
    fn of(event: &Event) -> Result<Aggregate, HandlerError> {
        Ok(match event.event_type() {
            VideoViewed::EVENT_TYPE => {
                let p: VideoViewed = event.payload()?;
                if p.watch_time_ms < 0 {
                    return Err(HandlerError::permanent(format!(
                        "video.viewed: negative watchTimeMs {}",
                        p.watch_time_ms
                    )));
                }
                Aggregate {
                    content: Some(p.video_id.to_string()),
                    author: Some(p.author_id.to_string()),
                    at: Some(p.viewed_at),
                    trending_weight: if p.completed {
                        COMPLETED_VIEW_WEIGHT
                    } else {
                        VIEW_WEIGHT
                    },
                    deltas: Deltas {
                        views: 1,
                        completions: i64::from(p.completed),
                        watch_ms: p.watch_time_ms,
                        ..Deltas::default()
                    },
                    detail: None,
                }
            }
            ContentEngagement::EVENT_TYPE => {
                let p: ContentEngagement = event.payload()?;
                Aggregate {
                    content: Some(p.content_id.to_string()),
                    author: Some(p.author_id.to_string()),
                    at: Some(p.occurred_at),
                    trending_weight: engagement_weight(p.action),
                    deltas: Deltas {
                        engagements: 1,
                        ..Deltas::default()
                    },
                    detail: Some(format!("engagement:{}", p.action.as_str().to_lowercase())),
                }
            }
            LikeAdded::EVENT_TYPE => {
                let p: LikeAdded = event.payload()?;
                Aggregate::on_post(p.post_id, p.post_author_id, p.liked_at, true)
            }
            ShareCreated::EVENT_TYPE => {
                let p: ShareCreated = event.payload()?;
                Aggregate::on_post(p.post_id, p.post_author_id, p.created_at, false)
            }
            PostCreated::EVENT_TYPE => {
                let p: PostCreated = event.payload()?;
                Aggregate {
                    content: Some(p.post_id.to_string()),
                    author: Some(p.author_id.to_string()),
                    at: Some(p.created_at),
                    trending_weight: 0.0,
                    deltas: Deltas {
                        posts: 1,
                        ..Deltas::default()
                    },
                    detail: None,
                }
            }
            other => {
                return Err(HandlerError::permanent(format!(
                    "{other} is not aggregated by {GROUP}"
                )))
            }
        })
    }

    /// like.added (`like`) and share.created: counted on the post and its author.
    fn on_post(
        post_id: sqlx::types::Uuid,
        post_author_id: sqlx::types::Uuid,
        at: DateTime<Utc>,
        like: bool,
    ) -> Aggregate {
        Aggregate {
            content: Some(post_id.to_string()),
            author: Some(post_author_id.to_string()),
            at: Some(at),
            trending_weight: if like { LIKE_WEIGHT } else { SHARE_WEIGHT },
            deltas: Deltas {
                likes: i64::from(like),
                shares: i64::from(!like),
                ..Deltas::default()
            },
            detail: None,
        }
    }
}

/// Sets the event's marker, then applies the operations, atomically; nothing when the marker was
/// already set. KEYS[1] is the marker; ARGV[1] its lifetime; then groups of four arguments:
/// operation (`hincr`, `hset`, `decay`), index into KEYS, field or member, value.
static COUNT_ONCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local i = 2
while i + 3 <= #ARGV do
  local op, key, field, value = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'hincr' then
    redis.call('HINCRBY', key, field, value)
  elseif op == 'hset' then
    redis.call('HSET', key, field, value)
  elseif op == 'decay' then
    local term = tonumber(value)
    local old = redis.call('ZSCORE', key, field)
    if old then
      old = tonumber(old)
      local hi, lo = math.max(old, term), math.min(old, term)
      term = hi + math.log(1 + math.pow(2, lo - hi)) / math.log(2)
    end
    redis.call('ZADD', key, string.format('%.17g', term), field)
  end
  i = i + 4
end
return 1
"#,
    )
});

async fn aggregate(deps: &Deps, options: &Options, event: Event) -> Result<(), HandlerError> {
    let aggregate = Aggregate::of(&event)?;
    count_in_redis(deps, options, event.id(), &aggregate).await?;
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { roll_up(tx, &aggregate).await })
    })
    .await
    .map(drop)
}

async fn count_in_redis(
    deps: &Deps,
    options: &Options,
    event_id: &str,
    a: &Aggregate,
) -> Result<(), HandlerError> {
    let mut keys = vec![deps.redis_key(&format!("seen:{GROUP}:{event_id}"))];
    let mut ops: Vec<(&str, usize, String, String)> = Vec::new();
    let d = a.deltas;
    let counters = |prefix: &str| {
        [
            ("posts", d.posts),
            ("views", d.views),
            ("completions", d.completions),
            ("watch_ms", d.watch_ms),
            ("engagements", d.engagements),
            ("likes", d.likes),
            ("shares", d.shares),
        ]
        .into_iter()
        .filter(|(field, by)| *by != 0 && (prefix == "content" || *field != "completions"))
        .map(|(field, by)| (field.to_string(), by))
        .collect::<Vec<_>>()
    };
    if let Some(content) = &a.content {
        keys.push(deps.redis_key(&format!("analytics:content:{content}")));
        let k = keys.len();
        for (field, by) in counters("content")
            .into_iter()
            .filter(|(field, _)| field != "posts")
        {
            ops.push(("hincr", k, field, by.to_string()));
        }
        if let Some(detail) = &a.detail {
            ops.push(("hincr", k, detail.clone(), "1".into()));
        }
        if let Some(author) = &a.author {
            ops.push(("hset", k, "author".into(), author.clone()));
        }
        if a.trending_weight > 0.0 {
            if let Some(at) = a.at {
                keys.push(deps.redis_key("analytics:trending"));
                let term =
                    trending_term(a.trending_weight, at, options.trending_half_life.as_secs());
                ops.push(("decay", keys.len(), content.clone(), format!("{term:.17e}")));
            }
        }
    }
    if let Some(author) = &a.author {
        keys.push(deps.redis_key(&format!("analytics:creator:{author}")));
        let k = keys.len();
        for (field, by) in counters("creator") {
            ops.push(("hincr", k, field, by.to_string()));
        }
    }
    let mut invocation = COUNT_ONCE.prepare_invoke();
    for key in &keys {
        invocation.key(key);
    }
    invocation.arg(options.seen_ttl.as_secs());
    for (op, key, field, value) in &ops {
        invocation.arg(*op).arg(*key).arg(field).arg(value);
    }
    let mut redis = deps.redis.clone();
    let _applied: i64 = invocation
        .invoke_async(&mut redis)
        .await
        .map_err(redis_error)?;
    Ok(())
}

async fn roll_up(tx: &mut PgConnection, a: &Aggregate) -> Result<(), HandlerError> {
    let Some(at) = a.at else { return Ok(()) };
    let d = a.deltas;
    if let (Some(content), true) = (&a.content, d.posts == 0) {
        let hour = at
            .duration_trunc(TimeDelta::hours(1))
            .map_err(HandlerError::permanent)?;
        sqlx::query(
            "INSERT INTO content_stats_hourly (content_id, bucket_start, author_id, views, \
                 completions, watch_time_ms, engagements, likes, shares) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (content_id, bucket_start) DO UPDATE SET \
                 author_id = COALESCE(EXCLUDED.author_id, content_stats_hourly.author_id), \
                 views = content_stats_hourly.views + EXCLUDED.views, \
                 completions = content_stats_hourly.completions + EXCLUDED.completions, \
                 watch_time_ms = content_stats_hourly.watch_time_ms + EXCLUDED.watch_time_ms, \
                 engagements = content_stats_hourly.engagements + EXCLUDED.engagements, \
                 likes = content_stats_hourly.likes + EXCLUDED.likes, \
                 shares = content_stats_hourly.shares + EXCLUDED.shares, \
                 updated_at = now()",
        )
        .bind(content)
        .bind(hour)
        .bind(&a.author)
        .bind(d.views)
        .bind(d.completions)
        .bind(d.watch_ms)
        .bind(d.engagements)
        .bind(d.likes)
        .bind(d.shares)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    if let Some(author) = &a.author {
        let day: NaiveDate = at.date_naive();
        sqlx::query(
            "INSERT INTO creator_stats_daily (author_id, day, posts, views, watch_time_ms, \
                 engagements, likes, shares) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (author_id, day) DO UPDATE SET \
                 posts = creator_stats_daily.posts + EXCLUDED.posts, \
                 views = creator_stats_daily.views + EXCLUDED.views, \
                 watch_time_ms = creator_stats_daily.watch_time_ms + EXCLUDED.watch_time_ms, \
                 engagements = creator_stats_daily.engagements + EXCLUDED.engagements, \
                 likes = creator_stats_daily.likes + EXCLUDED.likes, \
                 shares = creator_stats_daily.shares + EXCLUDED.shares, \
                 updated_at = now()",
        )
        .bind(author)
        .bind(day)
        .bind(d.posts)
        .bind(d.views)
        .bind(d.watch_ms)
        .bind(d.engagements)
        .bind(d.likes)
        .bind(d.shares)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use circulatory::consumer::testing::{event, event_of};
    use circulatory::events::{
        EngagementContentKind, PostMediaType, PostVisibility, ShareChannel, ViewPlatform,
        ViewSource,
    };
    use sqlx::types::Uuid;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_796_358_334_123).expect("in range")
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn view(watch_time_ms: i64, completed: bool) -> VideoViewed {
        VideoViewed {
            video_id: id(1),
            author_id: id(2),
            viewer_id: None,
            session_id: id(9),
            watch_time_ms,
            video_duration_ms: 8000,
            completed,
            source: ViewSource::Feed,
            platform: ViewPlatform::Ios,
            country_code: None,
            viewed_at: at(),
        }
    }

    #[test]
    fn a_view_counts_on_the_video_and_its_author() {
        let a = Aggregate::of(&event_of(view(8000, true))).expect("aggregate");
        assert_eq!(a.content, Some(id(1).to_string()));
        assert_eq!(a.author, Some(id(2).to_string()));
        assert_eq!(a.at, Some(at()));
        assert_eq!(a.trending_weight, COMPLETED_VIEW_WEIGHT);
        assert_eq!(
            a.deltas,
            Deltas {
                views: 1,
                completions: 1,
                watch_ms: 8000,
                ..Deltas::default()
            }
        );
        let partial = Aggregate::of(&event_of(view(2000, false))).expect("aggregate");
        assert_eq!(partial.trending_weight, VIEW_WEIGHT);
        assert_eq!(
            (partial.deltas.completions, partial.deltas.watch_ms),
            (0, 2000)
        );
        let negative = Aggregate::of(&event_of(view(-1, false)));
        assert!(matches!(negative, Err(HandlerError::Permanent(_))));
    }

    #[test]
    fn engagement_is_weighted_and_detailed_by_action() {
        let engagement = |action| ContentEngagement {
            content_id: id(3),
            content_kind: EngagementContentKind::Post,
            author_id: id(2),
            user_id: None,
            action,
            dwell_time_ms: None,
            occurred_at: at(),
        };
        let save = Aggregate::of(&event_of(engagement(EngagementAction::Save))).expect("save");
        assert_eq!(save.trending_weight, 4.0);
        assert_eq!(save.detail.as_deref(), Some("engagement:save"));
        assert_eq!(save.deltas.engagements, 1);
        let visit =
            Aggregate::of(&event_of(engagement(EngagementAction::ProfileVisit))).expect("visit");
        assert_eq!(visit.trending_weight, 0.5);
        assert_eq!(visit.detail.as_deref(), Some("engagement:profile_visit"));
        assert_eq!(engagement_weight(EngagementAction::Impression), 0.0);
        assert_eq!(engagement_weight(EngagementAction::Hide), 0.0);
    }

    #[test]
    fn likes_shares_and_posts_count_on_the_post() {
        let like = Aggregate::of(&event_of(LikeAdded {
            post_id: id(3),
            user_id: id(4),
            post_author_id: id(2),
            liked_at: at(),
        }))
        .expect("like");
        let share = Aggregate::of(&event_of(ShareCreated {
            share_id: id(5),
            post_id: id(3),
            user_id: id(4),
            post_author_id: id(2),
            channel: ShareChannel::ExternalApp,
            recipient_id: None,
            created_at: at(),
        }))
        .expect("share");
        let post = Aggregate::of(&event_of(PostCreated {
            post_id: id(3),
            author_id: id(2),
            text: "sunset".into(),
            hashtags: vec![],
            mentions: vec![],
            media_type: PostMediaType::Text,
            video_id: None,
            visibility: PostVisibility::Public,
            created_at: at(),
        }))
        .expect("post");
        for a in [&like, &share, &post] {
            assert_eq!(a.content, Some(id(3).to_string()));
            assert_eq!(a.author, Some(id(2).to_string()));
            assert_eq!(a.at, Some(at()));
        }
        assert_eq!(
            (like.trending_weight, like.deltas.likes, like.deltas.shares),
            (LIKE_WEIGHT, 1, 0)
        );
        assert_eq!(
            (
                share.trending_weight,
                share.deltas.likes,
                share.deltas.shares
            ),
            (SHARE_WEIGHT, 0, 1)
        );
        assert_eq!((post.trending_weight, post.deltas.posts), (0.0, 1));
        let unlike = Aggregate::of(&event("like.removed", serde_json::json!({})));
        assert!(matches!(unlike, Err(HandlerError::Permanent(_))));
    }

    #[test]
    fn a_term_grows_by_one_per_half_life() {
        let t0 = DateTime::from_timestamp_millis(TRENDING_EPOCH_MS).unwrap();
        assert_eq!(trending_term(1.0, t0, 3600), 0.0);
        let later = t0 + TimeDelta::hours(2);
        assert!((trending_term(4.0, later, 3600) - 4.0).abs() < 1e-12);
    }
}
