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

use chrono::Utc;
use circulatory::consumer::{exactly_once, ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{
    EventPayload, ThumbnailGenerationStarted, TranscodeErrorKind, VideoTranscodeCompleted,
    VideoTranscodeFailed, VideoTranscodeStarted, VideoUploaded,
};
use circulatory::process::flags;
use circulatory_group_common::runner::Registered;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;

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
    /// Target HLS segment length (`4s`), in whole seconds, at least one.
    #[arg(
        long = "hls-segment",
        env = "CIRC_HLS_SEGMENT",
        default_value = "4s",
        value_parser = flags::whole_seconds
    )]
    pub segment: Duration,
}

impl TranscoderOptions {
    pub fn new(media: MediaOptions) -> TranscoderOptions {
        TranscoderOptions {
            media,
            preset: "veryfast".into(),
            segment: Duration::from_secs(4),
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
            segment_secs: options.segment.as_secs() as u32,
        },
        encode_limit: timeout.mul_f64(0.9),
        max_attempts: group.map_or(1, |g| g.max_attempts),
    };
    Ok(consumer
        .handler_with(
            VideoUploaded::EVENT_TYPE,
            transcoder.clone(),
            |t, e, ctx| async move { t.video_uploaded(e, ctx).await },
        )
        .handler_with(
            VideoTranscodeStarted::EVENT_TYPE,
            transcoder,
            |t, e, ctx| async move { t.transcode_started(e, ctx).await },
        ))
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
                ctx.emit(VideoTranscodeStarted {
                    video_id,
                    author_id,
                    object_key: key.clone(),
                    target_renditions: renditions.into_iter().map(|r| r.name).collect(),
                    source_duration_ms: Some(probe.duration_ms),
                    source_width: Some(probe.width),
                    source_height: Some(probe.height),
                    started_at: Utc::now(),
                });
                let (width, height) = thumbnail_size(&probe);
                ctx.emit(ThumbnailGenerationStarted {
                    video_id,
                    author_id,
                    object_key: key,
                    frame_count: THUMBNAIL_FRAMES,
                    target_width: width,
                    target_height: height,
                    started_at: Utc::now(),
                });
            }
            Err(reason) => {
                tracing::info!(video_id = %video_id, reason, "upload is not a usable video");
                emit_failed(
                    &ctx,
                    video_id,
                    author_id,
                    TranscodeErrorKind::InvalidSource,
                    &reason,
                    event.attempt,
                );
            }
        }
        Ok(())
    }

    async fn transcode_started(&self, event: Event, ctx: Context) -> Result<(), HandlerError> {
        let p: VideoTranscodeStarted = event.payload()?;
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
                    TranscodeErrorKind::InvalidSource,
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
                ToolError::TimedOut { .. } => TranscodeErrorKind::Timeout,
                _ => TranscodeErrorKind::Internal,
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
        p: &VideoTranscodeStarted,
        renditions: &[Rendition],
        duration_ms: i64,
    ) {
        ctx.emit(completed(
            |key| self.media.url(key),
            p,
            renditions,
            duration_ms,
        ));
    }
}

/// The `video.transcode.completed` of `p`'s `renditions` (lowest first, as the ladder gives
/// them; announced highest first), `url` giving an object's public URL.
fn completed(
    url: impl Fn(&str) -> String,
    p: &VideoTranscodeStarted,
    renditions: &[Rendition],
    duration_ms: i64,
) -> VideoTranscodeCompleted {
    let prefix = format!("videos/{}/hls", p.video_id);
    VideoTranscodeCompleted {
        video_id: p.video_id,
        author_id: p.author_id,
        renditions: renditions
            .iter()
            .rev()
            .map(|r| circulatory::events::Rendition {
                name: r.name.clone(),
                width: r.width,
                height: r.height,
                bitrate_kbps: r.bitrate_kbps,
                playlist_url: url(&format!("{prefix}/{}/index.m3u8", r.name)),
            })
            .collect(),
        master_playlist_url: url(&format!("{prefix}/{}", hls::MASTER)),
        duration_ms,
        completed_at: Utc::now(),
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
    kind: TranscodeErrorKind,
    message: &str,
    attempts: u32,
) {
    ctx.emit(failed(video_id, author_id, kind, message, attempts));
}

/// The `video.transcode.failed` of a video, its message cut to 1000 characters.
fn failed(
    video_id: uuid::Uuid,
    author_id: uuid::Uuid,
    kind: TranscodeErrorKind,
    message: &str,
    attempts: u32,
) -> VideoTranscodeFailed {
    VideoTranscodeFailed {
        video_id,
        author_id,
        error_kind: kind,
        error_message: message.chars().take(1000).collect(),
        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
        failed_at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(labels: &[&str]) -> VideoTranscodeStarted {
        VideoTranscodeStarted {
            video_id: uuid::Uuid::from_u128(1),
            author_id: uuid::Uuid::from_u128(2),
            object_key: "videos/1/original.mp4".into(),
            target_renditions: labels.iter().map(|l| l.to_string()).collect(),
            source_duration_ms: Some(3000),
            source_width: Some(1280),
            source_height: Some(720),
            started_at: Utc::now(),
        }
    }

    #[test]
    fn a_completed_transcode_names_its_renditions_highest_first() {
        let p = started(&["360p", "720p"]);
        let renditions = hls::select(1280, 720, &p.target_renditions);
        let c = completed(|key| format!("file:///s/{key}"), &p, &renditions, 2990);
        let names: Vec<&str> = c.renditions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["720p", "360p"]);
        assert_eq!((c.renditions[0].width, c.renditions[0].height), (1280, 720));
        assert_eq!(c.renditions[0].bitrate_kbps, 2800);
        let id = p.video_id;
        assert_eq!(
            c.renditions[1].playlist_url,
            format!("file:///s/videos/{id}/hls/360p/index.m3u8")
        );
        assert_eq!(
            c.master_playlist_url,
            format!("file:///s/videos/{id}/hls/master.m3u8")
        );
        assert_eq!((c.video_id, c.author_id), (p.video_id, p.author_id));
        assert_eq!(c.duration_ms, 2990);
        let json = serde_json::to_value(&c).expect("JSON");
        assert_eq!(json["renditions"][0]["bitrateKbps"], 2800);
    }

    #[test]
    fn a_failure_keeps_its_kind_and_a_bounded_message() {
        let f = failed(
            uuid::Uuid::from_u128(1),
            uuid::Uuid::from_u128(2),
            TranscodeErrorKind::Timeout,
            &"é".repeat(1500),
            3,
        );
        assert_eq!(f.error_kind, TranscodeErrorKind::Timeout);
        assert_eq!(f.error_message.chars().count(), 1000);
        assert_eq!(f.attempts, 3);
        let json = serde_json::to_value(&f).expect("JSON");
        assert_eq!(json["errorKind"], "TIMEOUT");
    }

    #[test]
    fn the_composite_thumbnail_keeps_the_aspect_ratio_without_upscaling() {
        let probe = |width, height| Probe {
            duration_ms: 1000,
            width,
            height,
            fps: Some(25.0),
            video_codec: "h264".into(),
            has_audio: false,
            video_duration_ms: None,
        };
        assert_eq!(thumbnail_size(&probe(854, 480)), (1600, 180));
        assert_eq!(thumbnail_size(&probe(1080, 1920)), (500, 180));
        assert_eq!(thumbnail_size(&probe(320, 120)), (1600, 120));
    }
}
