//! `transcoder`: probes uploaded videos and transcodes them to HLS.
//!
//! - `video.uploaded`: the source is probed with `ffprobe`, the video is recorded in `videos`
//!   (status PROCESSING with duration, size and frame rate), and `video.transcode.started` and
//!   `thumbnail.generation.started` are emitted. A file that is not a usable video is recorded as
//!   UPLOADED and reported with `video.transcode.failed` (a business outcome, not an error to retry);
//!   a source object that is not there (yet) is retried.
//! - `video.transcode.started`: one `ffmpeg` run writes every rendition the source allows (360p,
//!   480p, 720p) and a master playlist to `videos/<id>/hls/`, then `video.transcode.completed`
//!   names them. An encoder failure is retried; on the last attempt it is reported with
//!   `video.transcode.failed` instead. `ffmpeg` runs as a child process killed on timeout or when
//!   the handler is dropped; at most `max_in_flight` (2) run at once per process.
//!
//! Redeliveries: the upload's row is written once and its events are announced again with the
//! same ids (consumers deduplicate them), so a lost emission never strands a video; a finished
//! transcode (its `processed_events` row) is announced again without encoding twice.
//!
//! [`media`] (object store, scratch folders, probing, bounded tool runs) is shared with the
//! thumbnailer.

pub mod hls;
pub mod media;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Context, Event, HandlerError};
use circulatory_groups::runner::Registered;
use serde::Deserialize;
use serde_json::json;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;

use crate::hls::{Encoding, Rendition};
use crate::media::{Media, MediaOptions, Probe, ProbeError, ToolError};

pub const GROUP: &str = "transcoder";

/// Frames sampled into a video's composite thumbnail.
pub const THUMBNAIL_FRAMES: i32 = 5;
/// Height of each frame of the composite thumbnail.
pub const THUMBNAIL_FRAME_HEIGHT: i32 = 180;

/// The transcoder's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TranscoderOptions {
    #[command(flatten)]
    pub media: MediaOptions,
    /// x264 preset: faster presets trade file size for encoding time.
    #[arg(long, env = "CIRC_TRANSCODE_PRESET", default_value = "veryfast")]
    pub preset: String,
    /// Target HLS segment length in seconds.
    #[arg(long, env = "CIRC_HLS_SEGMENT_SECS", default_value_t = 4)]
    pub segment_secs: u32,
}

impl TranscoderOptions {
    pub fn new(media: MediaOptions) -> TranscoderOptions {
        TranscoderOptions {
            media,
            preset: "veryfast".into(),
            segment_secs: 4,
        }
    }
}

/// What both handlers share.
#[derive(Clone)]
struct Transcoder {
    deps: Deps,
    media: Media,
    encoding: Encoding,
    /// How long one encoder run may take: under the group's handler timeout, so an overlong run
    /// is ended (and reported on the last attempt) by this code rather than by the engine.
    encode_limit: Duration,
    max_attempts: u32,
}

pub fn register(consumer: ConsumerGroup, deps: &Deps, options: TranscoderOptions) -> Registered {
    let group = deps.catalog.group(GROUP);
    let timeout = group.map_or(Duration::from_secs(3600), |g| g.timeout);
    let transcoder = Transcoder {
        deps: deps.clone(),
        media: Media::new(&options.media),
        encoding: Encoding {
            preset: options.preset,
            segment_secs: options.segment_secs,
        },
        encode_limit: timeout.mul_f64(0.9),
        max_attempts: group.map_or(1, |g| g.max_attempts),
    };
    Ok(consumer
        .handler_with(
            "video.uploaded",
            transcoder.clone(),
            |t, e, ctx| async move { t.video_uploaded(e, ctx).await },
        )
        .handler_with(
            "video.transcode.started",
            transcoder,
            |t, e, ctx| async move { t.transcode_started(e, ctx).await },
        ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoUploaded {
    video_id: uuid::Uuid,
    author_id: uuid::Uuid,
    object_key: String,
    original_filename: String,
    content_type: String,
    size_bytes: i64,
    caption: Option<String>,
    hashtags: Vec<String>,
    mentions: Vec<uuid::Uuid>,
    uploaded_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TranscodeStarted {
    video_id: uuid::Uuid,
    author_id: uuid::Uuid,
    object_key: String,
    target_renditions: Vec<String>,
    source_duration_ms: Option<i64>,
    source_width: Option<i32>,
    source_height: Option<i32>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Transcoder {
    async fn video_uploaded(&self, event: Event, ctx: Context) -> Result<(), HandlerError> {
        let p: VideoUploaded = event.payload()?;
        let scratch = self.media.scratch("probe").await?;
        let source = scratch.join("source");
        self.media.download(&p.object_key, &source).await?;
        let probe = match media::probe(&source).await {
            Ok(probe) => Ok(probe),
            Err(ProbeError::Invalid(reason)) => Err(reason),
            Err(ProbeError::Tool(e)) => return Err(e.retryable()),
        };
        drop(scratch);

        let status = if probe.is_ok() {
            "PROCESSING"
        } else {
            "UPLOADED"
        };
        let row = probe.as_ref().ok().cloned();
        let video_id = p.video_id;
        let (author_id, key) = (p.author_id, p.object_key.clone());
        exactly_once(&self.deps.pool, GROUP, &event, move |tx| {
            Box::pin(async move {
                // One row per video: the first upload event wins; a second one is a duplicate.
                sqlx::query(
                    "INSERT INTO videos (id, author_id, post_id, status, source_key, \
                       original_filename, content_type, size_bytes, caption, hashtags, mentions, \
                       duration_ms, width, height, fps, video_codec, has_audio, uploaded_at) \
                     VALUES ($1, $2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                       $15, $16, $17) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(p.video_id)
                .bind(p.author_id)
                .bind(status)
                .bind(&p.object_key)
                .bind(&p.original_filename)
                .bind(&p.content_type)
                .bind(p.size_bytes)
                .bind(&p.caption)
                .bind(&p.hashtags)
                .bind(&p.mentions)
                .bind(row.as_ref().map(|r| r.duration_ms))
                .bind(row.as_ref().map(|r| r.width))
                .bind(row.as_ref().map(|r| r.height))
                .bind(row.as_ref().and_then(|r| r.fps))
                .bind(row.as_ref().map(|r| r.video_codec.clone()))
                .bind(row.as_ref().map(|r| r.has_audio))
                .bind(p.uploaded_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Ok(())
            })
        })
        .await?;

        // Emitted on a redelivery too: the ids are derived from this event's, so consumers see
        // the same events again and deduplicate them.
        match probe {
            Ok(probe) => {
                let renditions = hls::ladder(probe.width, probe.height);
                ctx.emit(
                    "video.transcode.started",
                    json!({
                        "videoId": video_id,
                        "authorId": author_id,
                        "objectKey": key,
                        "targetRenditions": renditions.iter().map(|r| &r.name).collect::<Vec<_>>(),
                        "sourceDurationMs": probe.duration_ms,
                        "sourceWidth": probe.width,
                        "sourceHeight": probe.height,
                        "startedAt": now(),
                    }),
                );
                let (width, height) = thumbnail_size(&probe);
                ctx.emit(
                    "thumbnail.generation.started",
                    json!({
                        "videoId": video_id,
                        "authorId": author_id,
                        "objectKey": key,
                        "frameCount": THUMBNAIL_FRAMES,
                        "targetWidth": width,
                        "targetHeight": height,
                        "startedAt": now(),
                    }),
                );
            }
            Err(reason) => {
                tracing::info!(video_id = %video_id, reason, "upload is not a usable video");
                emit_failed(
                    &ctx,
                    video_id,
                    author_id,
                    "INVALID_SOURCE",
                    &reason,
                    event.attempt,
                );
            }
        }
        Ok(())
    }

    async fn transcode_started(&self, event: Event, ctx: Context) -> Result<(), HandlerError> {
        let p: TranscodeStarted = event.payload()?;
        // Already settled (a late redelivery): encoding again would change nothing.
        let status: Option<(String,)> = sqlx::query_as("SELECT status FROM videos WHERE id = $1")
            .bind(p.video_id)
            .fetch_optional(&self.deps.pool)
            .await
            .map_err(db)?;
        if let Some((status,)) = &status {
            if status == "PUBLISHED" || status == "FAILED" {
                tracing::info!(video_id = %p.video_id, status, "video already settled");
                return Ok(());
            }
        }

        // A redelivery of a run that finished: its outputs are in place; announce them again
        // (the same event id, so the publisher ignores it) instead of encoding twice.
        let finished: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
        )
        .bind(GROUP)
        .bind(event.id())
        .fetch_optional(&self.deps.pool)
        .await
        .map_err(db)?;
        if let (Some(_), Some(width), Some(height), Some(duration_ms)) = (
            finished,
            p.source_width,
            p.source_height,
            p.source_duration_ms,
        ) {
            let renditions = hls::select(width, height, &p.target_renditions);
            self.emit_completed(&ctx, &p, &renditions, duration_ms);
            return Ok(());
        }

        let scratch = self.media.scratch("transcode").await?;
        let source = scratch.join("source");
        self.media.download(&p.object_key, &source).await?;
        let probe = match media::probe(&source).await {
            Ok(probe) => probe,
            Err(ProbeError::Invalid(reason)) => {
                emit_failed(
                    &ctx,
                    p.video_id,
                    p.author_id,
                    "INVALID_SOURCE",
                    &reason,
                    event.attempt,
                );
                return Ok(());
            }
            Err(ProbeError::Tool(e)) => return Err(e.retryable()),
        };
        let renditions = hls::select(probe.width, probe.height, &p.target_renditions);
        let out = scratch.join("hls");
        for r in &renditions {
            tokio::fs::create_dir_all(out.join(&r.name))
                .await
                .map_err(|e| HandlerError::retryable(format!("scratch folder: {e}")))?;
        }
        let args = hls::ffmpeg_args(&source, &out, &renditions, probe.has_audio, &self.encoding);
        let started = Instant::now();
        if let Err(e) = media::run_tool("ffmpeg", &args, self.encode_limit).await {
            let kind = match e {
                ToolError::TimedOut { .. } => "TIMEOUT",
                _ => "INTERNAL",
            };
            if event.attempt >= self.max_attempts {
                emit_failed(
                    &ctx,
                    p.video_id,
                    p.author_id,
                    kind,
                    &e.to_string(),
                    event.attempt,
                );
                return Ok(());
            }
            return Err(e.retryable());
        }
        tracing::info!(
            video_id = %p.video_id,
            renditions = renditions.len(),
            source_ms = probe.duration_ms,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "transcoded to HLS"
        );

        let prefix = format!("videos/{}/hls", p.video_id);
        // Renditions first, the master playlist last: once it exists, everything it names does.
        for r in &renditions {
            let mut files = tokio::fs::read_dir(out.join(&r.name))
                .await
                .map_err(|e| HandlerError::retryable(format!("encoder output: {e}")))?;
            while let Some(file) = files
                .next_entry()
                .await
                .map_err(|e| HandlerError::retryable(format!("encoder output: {e}")))?
            {
                let name = file.file_name().to_string_lossy().into_owned();
                self.media
                    .upload(&file.path(), &format!("{prefix}/{}/{name}", r.name))
                    .await?;
            }
        }
        let master_key = format!("{prefix}/{}", hls::MASTER);
        self.media
            .upload(&out.join(hls::MASTER), &master_key)
            .await?;
        drop(scratch);
        // Records that this run finished (see the redelivery check above).
        exactly_once(&self.deps.pool, GROUP, &event, |_| {
            Box::pin(async { Ok(()) })
        })
        .await?;
        self.emit_completed(&ctx, &p, &renditions, probe.duration_ms);
        Ok(())
    }

    fn emit_completed(
        &self,
        ctx: &Context,
        p: &TranscodeStarted,
        renditions: &[Rendition],
        duration_ms: i64,
    ) {
        let prefix = format!("videos/{}/hls", p.video_id);
        let highest_first: Vec<serde_json::Value> = renditions
            .iter()
            .rev()
            .map(|r| self.rendition_json(&prefix, r))
            .collect();
        ctx.emit(
            "video.transcode.completed",
            json!({
                "videoId": p.video_id,
                "authorId": p.author_id,
                "renditions": highest_first,
                "masterPlaylistUrl": self.media.url(&format!("{prefix}/{}", hls::MASTER)),
                "durationMs": duration_ms,
                "completedAt": now(),
            }),
        );
    }

    fn rendition_json(&self, prefix: &str, r: &Rendition) -> serde_json::Value {
        json!({
            "name": r.name,
            "width": r.width,
            "height": r.height,
            "bitrateKbps": r.bitrate_kbps,
            "playlistUrl": self.media.url(&format!("{prefix}/{}/index.m3u8", r.name)),
        })
    }
}

/// The composite thumbnail's size: [`THUMBNAIL_FRAMES`] frames side by side, each
/// [`THUMBNAIL_FRAME_HEIGHT`] high (less for a smaller source) with the source's aspect ratio.
fn thumbnail_size(probe: &Probe) -> (i32, i32) {
    let height = media::even(f64::from(THUMBNAIL_FRAME_HEIGHT.min(probe.height)));
    let frame_width =
        media::even(f64::from(height) * f64::from(probe.width) / f64::from(probe.height));
    (frame_width * THUMBNAIL_FRAMES, height)
}

fn emit_failed(
    ctx: &Context,
    video_id: uuid::Uuid,
    author_id: uuid::Uuid,
    kind: &str,
    message: &str,
    attempts: u32,
) {
    let message: String = message.chars().take(1000).collect();
    ctx.emit(
        "video.transcode.failed",
        json!({
            "videoId": video_id,
            "authorId": author_id,
            "errorKind": kind,
            "errorMessage": message,
            "attempts": attempts,
            "failedAt": now(),
        }),
    );
}
