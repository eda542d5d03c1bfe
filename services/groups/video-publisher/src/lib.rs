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

use chrono::{DateTime, SecondsFormat, Utc};
use circulatory::consumer::{exactly_once, Applied, ConsumerGroup, Context, Event, HandlerError};
use circulatory_groups::runner::Registered;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;
use circulatory_groups::runner::NoOptions;

pub const GROUP: &str = "video-publisher";

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(
            "video.transcode.completed",
            deps.clone(),
            |deps, e, ctx| async move { transcode_completed(&deps, e, ctx).await },
        )
        .handler_with(
            "thumbnail.generation.completed",
            deps.clone(),
            |deps, e, ctx| async move { thumbnail_completed(&deps, e, ctx).await },
        )
        .handler_with(
            "video.transcode.failed",
            deps.clone(),
            |deps, e, _| async move { transcode_failed(&deps, e).await },
        ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TranscodeCompleted {
    video_id: uuid::Uuid,
    renditions: Vec<serde_json::Value>,
    master_playlist_url: String,
    duration_ms: i64,
    completed_at: DateTime<Utc>,
}

async fn transcode_completed(deps: &Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: TranscodeCompleted = event.payload()?;
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
            .bind(serde_json::Value::Array(p.renditions))
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThumbnailCompleted {
    video_id: uuid::Uuid,
    thumbnail_url: String,
    object_key: String,
    width: i32,
    height: i32,
    completed_at: DateTime<Utc>,
}

async fn thumbnail_completed(deps: &Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: ThumbnailCompleted = event.payload()?;
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TranscodeFailed {
    video_id: uuid::Uuid,
    error_kind: String,
    error_message: String,
    failed_at: DateTime<Utc>,
}

async fn transcode_failed(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: TranscodeFailed = event.payload()?;
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            let status = lock_video(tx, p.video_id).await?;
            if status == "PUBLISHED" {
                // A late failure report of a video that is live: the live video stands.
                tracing::warn!(video_id = %p.video_id, kind = p.error_kind, "failure after publication ignored");
                return Ok(());
            }
            sqlx::query(
                "UPDATE videos SET status = 'FAILED', failure_kind = $2, failure_reason = $3, \
                   failed_at = $4, updated_at = now() \
                 WHERE id = $1",
            )
            .bind(p.video_id)
            .bind(&p.error_kind)
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
    match applied {
        Applied::Now(true) => {}
        Applied::AlreadyDone if event.attempt > 1 => {}
        _ => return Ok(()),
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
    ctx.emit(
        "video.published",
        json!({
            "videoId": v.id,
            "authorId": v.author_id,
            "postId": v.post_id,
            "caption": v.caption,
            "hashtags": v.hashtags,
            "mentions": v.mentions,
            "masterPlaylistUrl": v.master_playlist_url.unwrap_or_default(),
            "thumbnailUrl": v.thumbnail_url.unwrap_or_default(),
            "durationMs": v.duration_ms.unwrap_or(0),
            "publishedAt": v.published_at.unwrap_or_else(Utc::now)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        }),
    );
    tracing::info!(video_id = %v.id, "video published");
    Ok(())
}
