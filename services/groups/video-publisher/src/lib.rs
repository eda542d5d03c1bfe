//! `video-publisher`: publishes a video once both its HLS renditions and its thumbnail exist.
//!
//! `video.transcode.completed` and `thumbnail.generation.completed` are recorded on the video's
//! `videos` row, each in one transaction with the event's `processed_events` row and a lock on the
//! video row. The transaction that finds both present flips the status to PUBLISHED with
//! `published_at` and remembers its event's id: only that transaction emits `video.published`,
//! whatever order and however often the completions arrive (a retry of that same event after a
//! failed emission emits it again, with the same derived id). `video.transcode.failed` marks the
//! video FAILED with the reason. The author's notification and the followers' feeds follow from
//! `video.published` elsewhere (notifier, feed-fanout).

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, Applied, ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{
    EventPayload, ThumbnailGenerationCompleted, VideoPublished, VideoTranscodeCompleted,
    VideoTranscodeFailed,
};
use circulatory_group_common::runner::Registered;
use sqlx::PgConnection;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;
use circulatory_group_common::runner::NoOptions;

pub const GROUP: &str = "video-publisher";

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(
            VideoTranscodeCompleted::EVENT_TYPE,
            deps.clone(),
            |deps, e, ctx| async move { transcode_completed(&deps, e, ctx).await },
        )
        .handler_with(
            ThumbnailGenerationCompleted::EVENT_TYPE,
            deps.clone(),
            |deps, e, ctx| async move { thumbnail_completed(&deps, e, ctx).await },
        )
        .handler_with(
            VideoTranscodeFailed::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { transcode_failed(&deps, e).await },
        ))
}

/// The renditions as the `videos.renditions` column keeps them: the event's JSON array.
fn renditions_json(p: &VideoTranscodeCompleted) -> serde_json::Value {
    serde_json::to_value(&p.renditions).expect("renditions are JSON")
}

async fn transcode_completed(deps: &Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: VideoTranscodeCompleted = event.payload()?;
    let video_id = p.video_id;
    let event_id = event.id().to_string();
    let applied = exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            lock_video(tx, p.video_id).await?;
            sqlx::query(
                "UPDATE videos SET renditions = $2, master_playlist_url = $3, \
                   duration_ms = COALESCE(duration_ms, $4), transcoded_at = $5, updated_at = now() \
                 WHERE id = $1",
            )
            .bind(p.video_id)
            .bind(renditions_json(&p))
            .bind(&p.master_playlist_url)
            .bind(p.duration_ms)
            .bind(p.completed_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            publish_if_ready(tx, p.video_id, &event_id).await
        })
    })
    .await?;
    announce(deps, video_id, &event, &ctx, applied).await
}

async fn thumbnail_completed(deps: &Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: ThumbnailGenerationCompleted = event.payload()?;
    let video_id = p.video_id;
    let event_id = event.id().to_string();
    let applied = exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            lock_video(tx, p.video_id).await?;
            sqlx::query(
                "UPDATE videos SET thumbnail_url = $2, thumbnail_key = $3, thumbnail_width = $4, \
                   thumbnail_height = $5, thumbnailed_at = $6, updated_at = now() \
                 WHERE id = $1",
            )
            .bind(p.video_id)
            .bind(&p.thumbnail_url)
            .bind(&p.object_key)
            .bind(p.width)
            .bind(p.height)
            .bind(p.completed_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            publish_if_ready(tx, p.video_id, &event_id).await
        })
    })
    .await?;
    announce(deps, video_id, &event, &ctx, applied).await
}

async fn transcode_failed(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: VideoTranscodeFailed = event.payload()?;
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            let status = lock_video(tx, p.video_id).await?;
            if status == "PUBLISHED" {
                // A late failure report of a video that is live: the live video stands.
                tracing::warn!(video_id = %p.video_id, kind = %p.error_kind, "failure after publication ignored");
                return Ok(());
            }
            sqlx::query(
                "UPDATE videos SET status = 'FAILED', failure_kind = $2, failure_reason = $3, \
                   failed_at = $4, updated_at = now() \
                 WHERE id = $1",
            )
            .bind(p.video_id)
            .bind(p.error_kind.as_str())
            .bind(&p.error_message)
            .bind(p.failed_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        })
    })
    .await?;
    Ok(())
}

/// Locks the video's row for this transaction and returns its status. The transcoder records
/// the row before it starts any work, so a missing row is only a matter of time: retryable.
async fn lock_video(tx: &mut PgConnection, video_id: uuid::Uuid) -> Result<String, HandlerError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT status FROM videos WHERE id = $1 FOR UPDATE")
            .bind(video_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    row.map(|(status,)| status)
        .ok_or_else(|| HandlerError::retryable(format!("video {video_id} is not recorded yet")))
}

/// Publishes the (locked) video if it is still processing and has both renditions and a
/// thumbnail; returns whether this transaction did.
async fn publish_if_ready(
    tx: &mut PgConnection,
    video_id: uuid::Uuid,
    event_id: &str,
) -> Result<bool, HandlerError> {
    let flipped = sqlx::query(
        "UPDATE videos SET status = 'PUBLISHED', published_at = now(), published_by_event = $2, \
           updated_at = now() \
         WHERE id = $1 AND status = 'PROCESSING' \
           AND master_playlist_url IS NOT NULL AND thumbnail_url IS NOT NULL",
    )
    .bind(video_id)
    .bind(event_id)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(flipped == 1)
}

/// The published video as `video.published` carries it.
#[derive(Debug, sqlx::FromRow)]
struct Published {
    id: uuid::Uuid,
    author_id: uuid::Uuid,
    post_id: uuid::Uuid,
    caption: Option<String>,
    hashtags: Vec<String>,
    mentions: Vec<uuid::Uuid>,
    master_playlist_url: Option<String>,
    thumbnail_url: Option<String>,
    duration_ms: Option<i64>,
    published_at: Option<DateTime<Utc>>,
}

/// Emits `video.published` when this event's transaction published the video. A retry of that
/// event finds its effects committed: its earlier attempt failed after the commit (e.g. the
/// emission did not reach Kafka), so it emits again, with the same derived id. A plain duplicate
/// delivery (first attempt, already processed) emits nothing.
async fn announce(
    deps: &Deps,
    video_id: uuid::Uuid,
    event: &Event,
    ctx: &Context,
    applied: Applied<bool>,
) -> Result<(), HandlerError> {
    if !should_announce(&applied, event.attempt) {
        return Ok(());
    }
    let video: Option<Published> = sqlx::query_as(
        "SELECT id, author_id, post_id, caption, hashtags, mentions, master_playlist_url, \
           thumbnail_url, duration_ms, published_at \
         FROM videos WHERE id = $1 AND published_by_event = $2",
    )
    .bind(video_id)
    .bind(event.id())
    .fetch_optional(&deps.pool)
    .await
    .map_err(db)?;
    let Some(v) = video else {
        return Ok(());
    };
    let id = v.id;
    ctx.emit(v.published());
    tracing::info!(video_id = %id, "video published");
    Ok(())
}

/// Whether this delivery emits `video.published`: its transaction published the video now, or
/// it is a retry of the event that did (the earlier attempt may have failed to emit).
fn should_announce(applied: &Applied<bool>, attempt: u32) -> bool {
    match applied {
        Applied::Now(published) => *published,
        Applied::AlreadyDone => attempt > 1,
    }
}

impl Published {
    /// The `video.published` of the row.
    fn published(self) -> VideoPublished {
        VideoPublished {
            video_id: self.id,
            author_id: self.author_id,
            post_id: self.post_id,
            caption: self.caption,
            hashtags: self.hashtags,
            mentions: self.mentions,
            master_playlist_url: self.master_playlist_url.unwrap_or_default(),
            thumbnail_url: self.thumbnail_url.unwrap_or_default(),
            duration_ms: self.duration_ms.unwrap_or(0),
            published_at: self.published_at.unwrap_or_else(Utc::now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use circulatory::events::Rendition;

    fn row() -> Published {
        Published {
            id: uuid::Uuid::from_u128(1),
            author_id: uuid::Uuid::from_u128(2),
            post_id: uuid::Uuid::from_u128(1),
            caption: Some("Sunset".into()),
            hashtags: vec!["travel".into()],
            mentions: vec![uuid::Uuid::from_u128(3)],
            master_playlist_url: Some("file:///o/master.m3u8".into()),
            thumbnail_url: Some("file:///o/thumbnail.jpg".into()),
            duration_ms: Some(3000),
            published_at: DateTime::from_timestamp_millis(1_796_358_334_123),
        }
    }

    #[test]
    fn only_the_publishing_event_or_its_retry_announces() {
        assert!(should_announce(&Applied::Now(true), 1));
        assert!(!should_announce(&Applied::Now(false), 1));
        assert!(!should_announce(&Applied::Now(false), 3));
        assert!(
            !should_announce(&Applied::AlreadyDone, 1),
            "a plain duplicate announces nothing"
        );
        assert!(should_announce(&Applied::AlreadyDone, 2));
    }

    #[test]
    fn the_published_video_carries_the_row() {
        let v = row().published();
        assert_eq!(v.video_id, uuid::Uuid::from_u128(1));
        assert_eq!(v.author_id, uuid::Uuid::from_u128(2));
        assert_eq!(v.post_id, v.video_id);
        assert_eq!(v.caption.as_deref(), Some("Sunset"));
        assert_eq!(v.hashtags, ["travel"]);
        assert_eq!(v.mentions, [uuid::Uuid::from_u128(3)]);
        assert_eq!(v.master_playlist_url, "file:///o/master.m3u8");
        assert_eq!(v.thumbnail_url, "file:///o/thumbnail.jpg");
        assert_eq!(v.duration_ms, 3000);
        assert_eq!(v.published_at.timestamp_millis(), 1_796_358_334_123);
        let json = serde_json::to_value(&v).expect("JSON");
        assert_eq!(json["publishedAt"], "2026-12-04T04:25:34.123Z");
        assert_eq!(json["mentions"][0], "00000000-0000-0000-0000-000000000003");
    }

    #[test]
    fn renditions_are_stored_as_the_event_s_json() {
        let p = VideoTranscodeCompleted {
            video_id: uuid::Uuid::from_u128(1),
            author_id: uuid::Uuid::from_u128(2),
            renditions: vec![Rendition {
                name: "480p".into(),
                width: 854,
                height: 480,
                bitrate_kbps: 1400,
                playlist_url: "file:///o/480p/index.m3u8".into(),
            }],
            master_playlist_url: "file:///o/master.m3u8".into(),
            duration_ms: 3000,
            completed_at: Utc::now(),
        };
        assert_eq!(
            renditions_json(&p),
            serde_json::json!([{"name": "480p", "width": 854, "height": 480,
                "bitrateKbps": 1400, "playlistUrl": "file:///o/480p/index.m3u8"}])
        );
    }
}
