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
use circulatory::events::{
    EventPayload, FeedFanout, FeedRefresh, PostCreated, PostDeleted, PostMediaType, PostVisibility,
    VideoPublished,
};
use circulatory::realtime::RealtimeMessage;
use circulatory_group_common::runner::Registered;
use serde_json::json;
use uuid::Uuid;

use circulatory_group_common::deps::Deps;

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
        .handler_with(PostCreated::EVENT_TYPE, fanout.clone(), post_created)
        .handler_with(VideoPublished::EVENT_TYPE, fanout.clone(), video_published)
        .handler_with(PostDeleted::EVENT_TYPE, fanout.clone(), post_deleted)
        .handler_with(FeedFanout::EVENT_TYPE, fanout.clone(), feed_fanout)
        .handler_with(FeedRefresh::EVENT_TYPE, fanout.clone(), feed_refresh))
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
    fanout.start(&event, &ctx, post.post_id).await
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
        media_type: PostMediaType::Video,
        video_id: Some(v.video_id),
        visibility: PostVisibility::Public,
        created_at: v.published_at,
        deleted: false,
    };
    let record = post.clone();
    exactly_once(&fanout.deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { posts::video_published(tx, &record).await })
    })
    .await?;
    fanout.start(&event, &ctx, post.post_id).await
}

async fn post_deleted(fanout: Arc<Fanout>, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let d: PostDeleted = event.payload()?;
    let (post_id, author_id, deleted_at) = (d.post_id, d.author_id, d.deleted_at);
    exactly_once(&fanout.deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { posts::deleted(tx, post_id, author_id, deleted_at).await })
    })
    .await?;
    fanout.start(&event, &ctx, d.post_id).await
}

async fn feed_fanout(fanout: Arc<Fanout>, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let chunk: FeedFanout = event.payload()?;
    // The post as recorded decides between adding and removing; a chunk of a post this group
    // never saw (another producer) adds it with the chunk's own time.
    let post = posts::load(&fanout.deps.pool, chunk.post_id)
        .await?
        .unwrap_or(Post {
            post_id: chunk.post_id,
            author_id: chunk.author_id,
            media_type: PostMediaType::Other,
            video_id: None,
            visibility: PostVisibility::Public,
            created_at: chunk.created_at,
            deleted: false,
        });
    let audience = u64::try_from(chunk.chunk_count)
        .unwrap_or(0)
        .saturating_mul(chunk.follower_ids.len() as u64);
    fanout
        .sync(&event, &post, &chunk.follower_ids, audience)
        .await?;
    if let Some((after, index, count)) = continuation(&fanout.options, &chunk) {
        fanout.emit_chunks(&ctx, &post, after, index, count).await?;
    }
    Ok(())
}

/// Where the fan-out goes on after `chunk`: the last chunk of a full batch continues with the
/// next batch, after its greatest follower, as (after, first index, chunk count).
fn continuation(options: &FeedOptions, chunk: &FeedFanout) -> Option<(Uuid, usize, usize)> {
    let batch = options.chunks_per_call();
    let index = usize::try_from(chunk.chunk_index).unwrap_or(0);
    if index > 0 && index % batch == 0 && chunk.follower_ids.len() >= options.chunk_size() {
        let last = chunk.follower_ids.iter().max()?;
        let count = usize::try_from(chunk.chunk_count).unwrap_or(0);
        Some((*last, index + 1, count))
    } else {
        None
    }
}

async fn feed_refresh(fanout: Arc<Fanout>, event: Event, _: Context) -> Result<(), HandlerError> {
    let r: FeedRefresh = event.payload()?;
    let items = posts::recent_from_followees(
        &fanout.deps.pool,
        r.user_id,
        fanout.options.feed_max_length as usize,
    )
    .await?;
    feeds::replace(
        &fanout.deps.redis,
        &feed_key(&fanout.deps, &r.user_id.to_string()),
        &items,
    )
    .await
}

impl Fanout {
    /// Brings the first chunk of the author's followers in line with the post and emits
    /// feed.fanout chunks for the rest.
    async fn start(&self, event: &Event, ctx: &Context, post_id: Uuid) -> Result<(), HandlerError> {
        let pool = &self.deps.pool;
        let Some(post) = posts::load(pool, post_id).await? else {
            return Ok(());
        };
        // A private post never reached any feed; a deleted one is removed wherever it is.
        if !post.deleted && post.visibility == PostVisibility::Private {
            return Ok(());
        }
        let size = self.options.chunk_size();
        let mut first = followers(pool, post.author_id, None, size + 1).await?;
        let more = first.len() > size;
        first.truncate(size);
        let audience = if more {
            follower_count(pool, post.author_id).await?
        } else {
            first.len() as u64
        };
        self.sync(event, &post, &first, audience).await?;
        if let (true, Some(last)) = (more, first.last()) {
            let count = usize::try_from(audience.div_ceil(size as u64)).unwrap_or(usize::MAX);
            self.emit_chunks(ctx, &post, *last, 1, count).await?;
        }
        Ok(())
    }

    /// Adds the post to (or removes it from) the feeds of `followers`.
    async fn sync(
        &self,
        event: &Event,
        post: &Post,
        followers: &[Uuid],
        audience: u64,
    ) -> Result<(), HandlerError> {
        if followers.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = followers
            .iter()
            .map(|f| feed_key(&self.deps, &f.to_string()))
            .collect();
        let redis = &self.deps.redis;
        let per_round_trip = self.options.pipeline_size();
        let member = post.post_id.to_string();
        if !post.in_feeds() {
            return feeds::remove(redis, &keys, &member, per_round_trip).await;
        }
        feeds::add(
            redis,
            &keys,
            &member,
            post.score(),
            self.options.feed_max_length as usize,
            per_round_trip,
        )
        .await?;
        if audience <= self.options.feed_realtime_max_audience {
            // The causing event's id: a redelivery repeats the same message, which clients
            // recognise.
            let message = RealtimeMessage::new(
                feed_item_kind(post),
                event.id(),
                Utc::now(),
                feed_item(post),
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
        after: Uuid,
        first_index: usize,
        chunk_count: usize,
    ) -> Result<(), HandlerError> {
        let size = self.options.chunk_size();
        let batch = self.options.chunks_per_call();
        let next = followers(
            &self.deps.pool,
            post.author_id,
            Some(after),
            size.saturating_mul(batch),
        )
        .await?;
        for chunk in chunks(post, &next, size, first_index, chunk_count) {
            ctx.emit(chunk);
        }
        Ok(())
    }
}

/// The feed.fanout chunks of `followers`, `size` followers each, numbered from `first_index`; a
/// chunk count never below the chunks numbered so far.
fn chunks(
    post: &Post,
    followers: &[Uuid],
    size: usize,
    first_index: usize,
    chunk_count: usize,
) -> Vec<FeedFanout> {
    followers
        .chunks(size.max(1))
        .enumerate()
        .map(|(offset, chunk)| {
            let index = first_index + offset;
            let count = chunk_count.max(index + 1);
            FeedFanout {
                post_id: post.post_id,
                author_id: post.author_id,
                follower_ids: chunk.to_vec(),
                chunk_index: i32::try_from(index).unwrap_or(i32::MAX),
                chunk_count: i32::try_from(count).unwrap_or(i32::MAX),
                created_at: post.created_at,
            }
        })
        .collect()
}

/// The event type a new feed item is announced as on `feed:updates`.
fn feed_item_kind(post: &Post) -> &'static str {
    if post.media_type == PostMediaType::Video {
        VideoPublished::EVENT_TYPE
    } else {
        PostCreated::EVENT_TYPE
    }
}

/// The data of a `feed:updates` message: the new item (a realtime message, not an event).
fn feed_item(post: &Post) -> serde_json::Value {
    json!({
        "postId": post.post_id,
        "authorId": post.author_id,
        "videoId": post.video_id,
        "createdAt": millis(post.created_at),
    })
}

fn millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(media_type: PostMediaType) -> Post {
        Post {
            post_id: Uuid::from_u128(1),
            author_id: Uuid::from_u128(2),
            media_type,
            video_id: None,
            visibility: PostVisibility::Public,
            created_at: DateTime::from_timestamp_millis(1_795_773_600_123).expect("in range"),
            deleted: false,
        }
    }

    fn ids(range: std::ops::Range<u128>) -> Vec<Uuid> {
        range.map(Uuid::from_u128).collect()
    }

    #[test]
    fn followers_are_cut_into_numbered_chunks_of_the_post() {
        let p = post(PostMediaType::Text);
        let chunks = chunks(&p, &ids(10..15), 2, 3, 4);
        let shape: Vec<(i32, i32, usize)> = chunks
            .iter()
            .map(|c| (c.chunk_index, c.chunk_count, c.follower_ids.len()))
            .collect();
        // The count grows when the audience outgrew the estimate.
        assert_eq!(shape, vec![(3, 4, 2), (4, 5, 2), (5, 6, 1)]);
        assert_eq!(chunks[1].follower_ids, ids(12..14));
        assert!(chunks.iter().all(|c| c.post_id == p.post_id
            && c.author_id == p.author_id
            && c.created_at == p.created_at));
        assert!(super::chunks(&p, &[], 2, 1, 1).is_empty());
    }

    #[test]
    fn the_last_full_chunk_of_a_batch_continues_after_its_greatest_follower() {
        let options = FeedOptions {
            fanout_chunk_size: 3,
            fanout_chunks_per_call: 2,
            ..FeedOptions::default()
        };
        let chunk = |index: i32, followers: Vec<Uuid>| FeedFanout {
            post_id: Uuid::from_u128(1),
            author_id: Uuid::from_u128(2),
            follower_ids: followers,
            chunk_index: index,
            chunk_count: 7,
            created_at: Utc::now(),
        };
        let unordered = vec![
            Uuid::from_u128(30),
            Uuid::from_u128(32),
            Uuid::from_u128(31),
        ];
        assert_eq!(
            continuation(&options, &chunk(4, unordered.clone())),
            Some((Uuid::from_u128(32), 5, 7))
        );
        // Not the last of its batch, a short (final) chunk, or index 0.
        assert_eq!(continuation(&options, &chunk(3, unordered.clone())), None);
        assert_eq!(continuation(&options, &chunk(4, ids(30..32))), None);
        assert_eq!(continuation(&options, &chunk(0, unordered)), None);
    }

    #[test]
    fn a_new_feed_item_is_announced_as_its_post_or_video() {
        assert_eq!(
            feed_item_kind(&post(PostMediaType::Video)),
            "video.published"
        );
        assert_eq!(feed_item_kind(&post(PostMediaType::Image)), "post.created");
        let video = Post {
            video_id: Some(Uuid::from_u128(3)),
            ..post(PostMediaType::Video)
        };
        assert_eq!(
            feed_item(&video),
            json!({
                "postId": "00000000-0000-0000-0000-000000000001",
                "authorId": "00000000-0000-0000-0000-000000000002",
                "videoId": "00000000-0000-0000-0000-000000000003",
                "createdAt": "2026-11-27T10:00:00.123Z",
            })
        );
        assert_eq!(
            feed_item(&post(PostMediaType::Text))["videoId"],
            json!(null)
        );
    }
}
