//! `feed-fanout`: followers' feeds in Redis (key layout: [`feed_key`]).
//!
//! - `post.created` / `video.published` → the post is recorded in `feed_posts` (exactly once) and
//!   added to the feeds of the author's current followers (PRIVATE posts are not fanned out).
//! - `post.deleted` → the post is marked deleted in `feed_posts` and removed from those feeds.
//! - `feed.fanout` → one chunk of followers: the post is added to their feeds, or removed when
//!   `feed_posts` says it is deleted by now, so chunks still in flight after a deletion undo
//!   themselves instead of bringing the post back.
//! - `feed.refresh` → one user's feed rebuilt from the newest visible posts of the people they
//!   follow.
//!
//! Bounded work per call: the handler of a post writes the first `--fanout-chunk-size` followers
//! itself and, when there are more, emits up to `--fanout-chunks-per-call` `feed.fanout` events
//! with the next followers (read in one page after the last follower written). The last chunk of
//! such a batch continues from its last follower with the next batch, so an audience of any size
//! is covered by calls that each read and write a bounded number of followers. Chunks of one post
//! share its partition key (`postId`), so a post's additions and removals apply in order.
//!
//! Realtime: when the post's audience is at most `--feed-realtime-max-audience` followers, each
//! follower's `feed:updates:{userId}` channel is told about the new item; larger audiences get no
//! per-follower broadcast (their clients read the feed when they next look).

mod feeds;
mod follows;
mod posts;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Context, Event, HandlerError};
use circulatory::realtime::RealtimeMessage;
use circulatory_groups::runner::Registered;
use serde::Deserialize;
use serde_json::json;

use circulatory_groups::deps::Deps;

pub use feeds::{feed_key, updates_channel};
pub use follows::{follower_count, followers};
use posts::Post;

pub const GROUP: &str = "feed-fanout";

/// The group's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FeedOptions {
    /// Most items kept in a user's feed; older ones are trimmed.
    #[arg(long, env = "CIRC_FEED_MAX_LENGTH", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub feed_max_length: u32,
    /// Followers written per handler call; the rest go out as feed.fanout chunks of this size.
    #[arg(long, env = "CIRC_FANOUT_CHUNK_SIZE", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub fanout_chunk_size: u32,
    /// feed.fanout chunks one handler call emits at most; the last one continues the fan-out.
    #[arg(long, env = "CIRC_FANOUT_CHUNKS_PER_CALL", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub fanout_chunks_per_call: u32,
    /// Followers per Redis round trip.
    #[arg(long, env = "CIRC_FEED_PIPELINE_SIZE", default_value_t = 250,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub feed_pipeline_size: u32,
    /// Audiences up to this many followers also get a realtime message on each follower's
    /// feed:updates:{userId} channel (0: never).
    #[arg(long, env = "CIRC_FEED_REALTIME_MAX_AUDIENCE", default_value_t = 1000)]
    pub feed_realtime_max_audience: u64,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            feed_max_length: 500,
            fanout_chunk_size: 1000,
            fanout_chunks_per_call: 16,
            feed_pipeline_size: 250,
            feed_realtime_max_audience: 1000,
        }
    }
}

impl FeedOptions {
    fn chunk_size(&self) -> usize {
        self.fanout_chunk_size.max(1) as usize
    }

    fn chunks_per_call(&self) -> usize {
        self.fanout_chunks_per_call.max(1) as usize
    }

    fn pipeline_size(&self) -> usize {
        self.feed_pipeline_size.max(1) as usize
    }
}

/// What every handler shares.
struct Fanout {
    deps: Deps,
    options: FeedOptions,
}

pub fn register(consumer: ConsumerGroup, deps: &Deps, options: FeedOptions) -> Registered {
    let fanout = Arc::new(Fanout {
        deps: deps.clone(),
        options,
    });
    Ok(consumer
        .handler_with("post.created", fanout.clone(), post_created)
        .handler_with("video.published", fanout.clone(), video_published)
        .handler_with("post.deleted", fanout.clone(), post_deleted)
        .handler_with("feed.fanout", fanout.clone(), feed_fanout)
        .handler_with("feed.refresh", fanout.clone(), feed_refresh))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostCreated {
    post_id: String,
    author_id: String,
    media_type: String,
    video_id: Option<String>,
    visibility: String,
    created_at: DateTime<Utc>,
}

async fn post_created(fanout: Arc<Fanout>, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: PostCreated = event.payload()?;
    let post = Post {
        post_id: p.post_id,
        author_id: p.author_id,
        media_type: p.media_type,
        video_id: p.video_id,
        visibility: p.visibility,
        created_at: p.created_at,
        deleted: false,
    };
    let record = post.clone();
    exactly_once(&fanout.deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { posts::created(tx, &record).await })
    })
    .await?;
    fanout.start(&event, &ctx, &post.post_id).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoPublished {
    video_id: String,
    author_id: String,
    post_id: String,
    published_at: DateTime<Utc>,
}

async fn video_published(
    fanout: Arc<Fanout>,
    event: Event,
    ctx: Context,
) -> Result<(), HandlerError> {
    let v: VideoPublished = event.payload()?;
    let post = Post {
        post_id: v.post_id,
        author_id: v.author_id,
        media_type: "VIDEO".into(),
        video_id: Some(v.video_id),
        visibility: "PUBLIC".into(),
        created_at: v.published_at,
        deleted: false,
    };
    let record = post.clone();
    exactly_once(&fanout.deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { posts::video_published(tx, &record).await })
    })
    .await?;
    fanout.start(&event, &ctx, &post.post_id).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostDeleted {
    post_id: String,
    author_id: String,
    deleted_at: DateTime<Utc>,
}

async fn post_deleted(fanout: Arc<Fanout>, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let d: PostDeleted = event.payload()?;
    let (post_id, author_id) = (d.post_id.clone(), d.author_id.clone());
    exactly_once(&fanout.deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { posts::deleted(tx, &post_id, &author_id, d.deleted_at).await })
    })
    .await?;
    fanout.start(&event, &ctx, &d.post_id).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedFanout {
    post_id: String,
    author_id: String,
    follower_ids: Vec<String>,
    chunk_index: i32,
    chunk_count: i32,
    created_at: DateTime<Utc>,
}

async fn feed_fanout(fanout: Arc<Fanout>, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let chunk: FeedFanout = event.payload()?;
    // The post as recorded decides between adding and removing; a chunk of a post this group
    // never saw (another producer) adds it with the chunk's own time.
    let post = posts::load(&fanout.deps.pool, &chunk.post_id)
        .await?
        .unwrap_or_else(|| Post {
            post_id: chunk.post_id.clone(),
            author_id: chunk.author_id.clone(),
            media_type: "OTHER".into(),
            video_id: None,
            visibility: "PUBLIC".into(),
            created_at: chunk.created_at,
            deleted: false,
        });
    let audience = u64::try_from(chunk.chunk_count)
        .unwrap_or(0)
        .saturating_mul(chunk.follower_ids.len() as u64);
    fanout
        .sync(&event, &post, &chunk.follower_ids, audience)
        .await?;
    // The last chunk of a full batch continues with the next batch.
    let batch = fanout.options.chunks_per_call();
    let index = usize::try_from(chunk.chunk_index).unwrap_or(0);
    if index > 0 && index % batch == 0 && chunk.follower_ids.len() >= fanout.options.chunk_size() {
        if let Some(last) = chunk.follower_ids.iter().max() {
            let count = usize::try_from(chunk.chunk_count).unwrap_or(0);
            fanout
                .emit_chunks(&ctx, &post, last, index + 1, count)
                .await?;
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedRefresh {
    user_id: String,
}

async fn feed_refresh(fanout: Arc<Fanout>, event: Event, _: Context) -> Result<(), HandlerError> {
    let r: FeedRefresh = event.payload()?;
    let items = posts::recent_from_followees(
        &fanout.deps.pool,
        &r.user_id,
        fanout.options.feed_max_length as usize,
    )
    .await?;
    feeds::replace(
        &fanout.deps.redis,
        &feed_key(&fanout.deps, &r.user_id),
        &items,
    )
    .await
}

impl Fanout {
    /// Brings the first chunk of the author's followers in line with the post and emits
    /// feed.fanout chunks for the rest.
    async fn start(&self, event: &Event, ctx: &Context, post_id: &str) -> Result<(), HandlerError> {
        let pool = &self.deps.pool;
        let Some(post) = posts::load(pool, post_id).await? else {
            return Ok(());
        };
        // A private post never reached any feed; a deleted one is removed wherever it is.
        if !post.deleted && post.visibility == "PRIVATE" {
            return Ok(());
        }
        let size = self.options.chunk_size();
        let mut first = followers(pool, &post.author_id, None, size + 1).await?;
        let more = first.len() > size;
        first.truncate(size);
        let audience = if more {
            follower_count(pool, &post.author_id).await?
        } else {
            first.len() as u64
        };
        self.sync(event, &post, &first, audience).await?;
        if let (true, Some(last)) = (more, first.last()) {
            let count = usize::try_from(audience.div_ceil(size as u64)).unwrap_or(usize::MAX);
            self.emit_chunks(ctx, &post, last, 1, count).await?;
        }
        Ok(())
    }

    /// Adds the post to (or removes it from) the feeds of `followers`.
    async fn sync(
        &self,
        event: &Event,
        post: &Post,
        followers: &[String],
        audience: u64,
    ) -> Result<(), HandlerError> {
        if followers.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = followers.iter().map(|f| feed_key(&self.deps, f)).collect();
        let redis = &self.deps.redis;
        let per_round_trip = self.options.pipeline_size();
        if !post.in_feeds() {
            return feeds::remove(redis, &keys, &post.post_id, per_round_trip).await;
        }
        feeds::add(
            redis,
            &keys,
            &post.post_id,
            post.score(),
            self.options.feed_max_length as usize,
            per_round_trip,
        )
        .await?;
        if audience <= self.options.feed_realtime_max_audience {
            let kind = if post.media_type == "VIDEO" {
                "video.published"
            } else {
                "post.created"
            };
            // The causing event's id: a redelivery repeats the same message, which clients
            // recognise.
            let message = RealtimeMessage::new(
                kind,
                event.id(),
                Utc::now(),
                json!({
                    "postId": post.post_id,
                    "authorId": post.author_id,
                    "videoId": post.video_id,
                    "createdAt": millis(post.created_at),
                }),
            );
            feeds::announce(redis, followers, &message, per_round_trip).await;
        }
        Ok(())
    }

    /// Emits feed.fanout chunks `first_index`, `first_index + 1`, ... with the followers after
    /// `after`, at most one batch of them.
    async fn emit_chunks(
        &self,
        ctx: &Context,
        post: &Post,
        after: &str,
        first_index: usize,
        chunk_count: usize,
    ) -> Result<(), HandlerError> {
        let size = self.options.chunk_size();
        let batch = self.options.chunks_per_call();
        let next = followers(
            &self.deps.pool,
            &post.author_id,
            Some(after),
            size.saturating_mul(batch),
        )
        .await?;
        for (offset, chunk) in next.chunks(size).enumerate() {
            let index = first_index + offset;
            let count = chunk_count.max(index + 1);
            ctx.emit(
                "feed.fanout",
                json!({
                    "postId": post.post_id,
                    "authorId": post.author_id,
                    "followerIds": chunk,
                    "chunkIndex": i32::try_from(index).unwrap_or(i32::MAX),
                    "chunkCount": i32::try_from(count).unwrap_or(i32::MAX),
                    "createdAt": millis(post.created_at),
                }),
            );
        }
        Ok(())
    }
}

fn millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
