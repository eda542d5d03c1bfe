//! `thumbnailer`: one composite thumbnail per video.
//!
//! `thumbnail.generation.started` → frames at 20, 40, 60, 80 and 100 % of the video (the last one
//! just before the end; `frameCount` frames in general) → side by side in one JPEG of the
//! requested size (`ffmpeg` tile filter) → `videos/<id>/thumbnail.jpg` in the object store →
//! `thumbnail.generation.completed` with its URL and key. A source that is missing (yet) or an
//! encoder failure is retried; a request no image can satisfy is permanent.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use circulatory::consumer::{ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{EventPayload, ThumbnailGenerationCompleted, ThumbnailGenerationStarted};
use circulatory_group_common::runner::Registered;
use circulatory_group_transcoder::media::{self, Media, MediaOptions, Probe, ProbeError};

use circulatory_group_common::deps::Deps;

pub const GROUP: &str = "thumbnailer";

/// Bounds of a request: more frames or pixels than this is not a thumbnail.
const MAX_FRAMES: i32 = 20;
const MAX_SIDE: i32 = 8192;

#[derive(Clone)]
struct Thumbnailer {
    media: Media,
    /// How long one encoder run may take (under the group's handler timeout).
    limit: Duration,
}

pub fn register(consumer: ConsumerGroup, deps: &Deps, options: MediaOptions) -> Registered {
    let timeout = deps
        .catalog
        .group(GROUP)
        .map_or(Duration::from_secs(600), |g| g.timeout);
    let thumbnailer = Thumbnailer {
        media: Media::new(&options),
        limit: timeout.mul_f64(0.9),
    };
    Ok(consumer.handler_with(
        ThumbnailGenerationStarted::EVENT_TYPE,
        thumbnailer,
        |t, e, ctx| async move { t.generation_started(e, ctx).await },
    ))
}

/// The composite: `frames` tiles of `tile_width`x`height`, side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub frames: i32,
    pub tile_width: i32,
    pub height: i32,
}

impl Layout {
    /// The layout for a requested size; tiles get even sizes, so the width may shrink a little.
    pub fn new(frames: i32, width: i32, height: i32) -> Result<Layout, String> {
        if !(1..=MAX_FRAMES).contains(&frames) {
            return Err(format!(
                "frameCount {frames} is not within 1..={MAX_FRAMES}"
            ));
        }
        if !(2..=MAX_SIDE).contains(&height) || !(2 * frames..=MAX_SIDE).contains(&width) {
            return Err(format!("a {width}x{height} thumbnail of {frames} frames"));
        }
        Ok(Layout {
            frames,
            tile_width: media::even(f64::from(width / frames)),
            height: media::even(f64::from(height)),
        })
    }

    pub fn width(&self) -> i32 {
        self.tile_width * self.frames
    }
}

/// Seconds at which frames are taken: `i / frames` of the video for i = 1..=frames, the last one
/// moved just before the end (a frame must still follow it).
pub fn frame_times(probe: &Probe, frames: i32) -> Vec<f64> {
    let duration = probe.video_duration_ms.unwrap_or(probe.duration_ms) as f64 / 1000.0;
    let frame = probe.fps.map_or(0.04, |fps| 1.0 / fps);
    let end_margin = (2.0 * frame).max(0.1).min(duration / 10.0);
    let last = (duration - end_margin).max(0.0);
    (1..=frames)
        .map(|i| (duration * f64::from(i) / f64::from(frames)).min(last))
        .collect()
}

/// `ffmpeg` arguments: one fast input seek per frame, each frame fitted into its tile, the
/// tiles side by side in one JPEG.
pub fn ffmpeg_args(source: &Path, times: &[f64], layout: Layout, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["-nostdin", "-v", "error", "-y"].map(String::from).to_vec();
    for t in times {
        args.extend([
            "-ss".into(),
            format!("{t:.3}"),
            "-i".into(),
            source.display().to_string(),
        ]);
    }
    let (w, h) = (layout.tile_width, layout.height);
    let mut graph: String = (0..times.len())
        .map(|i| {
            format!(
                "[{i}:v]trim=end_frame=1,scale={w}:{h}:force_original_aspect_ratio=decrease,\
                 pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,setpts=PTS-STARTPTS[f{i}];"
            )
        })
        .collect();
    graph.push_str(
        &(0..times.len())
            .map(|i| format!("[f{i}]"))
            .collect::<String>(),
    );
    graph.push_str(&format!(
        "concat=n={}:v=1:a=0,tile={}x1[out]",
        times.len(),
        times.len()
    ));
    args.extend([
        "-filter_complex".into(),
        graph,
        "-map".into(),
        "[out]".into(),
        "-frames:v".into(),
        "1".into(),
        "-q:v".into(),
        "3".into(),
        out.display().to_string(),
    ]);
    args
}

impl Thumbnailer {
    async fn generation_started(&self, event: Event, ctx: Context) -> Result<(), HandlerError> {
        let p: ThumbnailGenerationStarted = event.payload()?;
        let layout = Layout::new(p.frame_count, p.target_width, p.target_height)
            .map_err(HandlerError::permanent)?;
        let scratch = self.media.scratch("thumbnail").await?;
        let source = scratch.join("source");
        self.media.download(&p.object_key, &source).await?;
        let probe = match media::probe(&source).await {
            Ok(probe) => probe,
            Err(ProbeError::Invalid(reason)) => {
                return Err(HandlerError::permanent(format!(
                    "{} is not a usable video: {reason}",
                    p.object_key
                )))
            }
            Err(ProbeError::Tool(e)) => return Err(e.retryable()),
        };
        let times = frame_times(&probe, layout.frames);
        let image = scratch.join("thumbnail.jpg");
        let started = Instant::now();
        media::run_tool(
            "ffmpeg",
            &ffmpeg_args(&source, &times, layout, &image),
            self.limit,
        )
        .await
        .map_err(|e| e.retryable())?;
        tracing::info!(
            video_id = %p.video_id,
            frames = layout.frames,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "thumbnail composed"
        );
        let key = format!("videos/{}/thumbnail.jpg", p.video_id);
        self.media.upload(&image, &key).await?;
        drop(scratch);
        ctx.emit(ThumbnailGenerationCompleted {
            video_id: p.video_id,
            author_id: p.author_id,
            thumbnail_url: self.media.url(&key),
            object_key: key,
            width: layout.width(),
            height: layout.height,
            completed_at: Utc::now(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(duration_ms: i64, fps: Option<f64>) -> Probe {
        Probe {
            duration_ms,
            width: 854,
            height: 480,
            fps,
            video_codec: "h264".into(),
            has_audio: true,
            video_duration_ms: None,
        }
    }

    #[test]
    fn frames_are_spread_to_just_before_the_end() {
        let times = frame_times(&probe(3000, Some(25.0)), 5);
        assert_eq!(&times[..4], &[0.6, 1.2, 1.8, 2.4]);
        assert!((times[4] - 2.9).abs() < 1e-9, "{times:?}");
        // A very short video: the margin shrinks with it.
        let times = frame_times(&probe(200, None), 5);
        assert!(times.iter().all(|t| *t >= 0.0 && *t < 0.2), "{times:?}");
    }

    #[test]
    fn layouts_are_even_and_bounded() {
        let layout = Layout::new(5, 1600, 180).expect("layout");
        assert_eq!(
            (layout.tile_width, layout.height, layout.width()),
            (320, 180, 1600)
        );
        assert_eq!(Layout::new(5, 1603, 181).expect("layout").width(), 1600);
        assert!(Layout::new(0, 100, 100).is_err());
        assert!(Layout::new(5, 8, 100).is_err());
        assert!(Layout::new(5, 1600, 100_000).is_err());
    }

    #[test]
    fn one_run_tiles_every_frame() {
        let layout = Layout::new(2, 640, 180).expect("layout");
        let args = ffmpeg_args(Path::new("in"), &[1.0, 2.0], layout, Path::new("out.jpg"));
        let joined = args.join(" ");
        assert!(joined.contains("-ss 1.000 -i in -ss 2.000 -i in"));
        assert!(joined.contains("[f0][f1]concat=n=2:v=1:a=0,tile=2x1[out]"));
        assert!(joined.ends_with("out.jpg"));
    }
}
