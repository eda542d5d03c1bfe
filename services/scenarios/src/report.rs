//! The STEP table: one line per step of the seed's walk-through, with its time since the upload
//! was sent (set-up lines, STEP 0, say how long they took instead).

use std::fmt::Write as _;
use std::time::Duration;

use crate::video_post::{kib, Observed, Outcome};

/// When a step happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Since the upload was sent.
    At(Duration),
    /// How long a set-up step took.
    Took(Duration),
    /// A check without a time of its own.
    None,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Step {
    /// The seed's step number (`0`: set-up; `✓`: a read-back check).
    pub step: String,
    pub what: String,
    pub timing: Timing,
}

impl Step {
    pub fn new(step: &str, what: impl Into<String>, timing: Timing) -> Step {
        Step {
            step: step.to_string(),
            what: what.into(),
            timing,
        }
    }

    /// The step as one table line.
    pub fn line(&self) -> String {
        let time = match self.timing {
            Timing::At(d) => format!("+{}", ms(d)),
            Timing::Took(d) => format!("took {}", ms(d)),
            Timing::None => String::new(),
        };
        format!("STEP {:<2} {time:>14}  {}", self.step, self.what)
    }

    /// The time since the upload, for steps that have one.
    pub fn at(&self) -> Option<Duration> {
        match self.timing {
            Timing::At(d) => Some(d),
            _ => None,
        }
    }
}

/// `1234 ms`.
pub fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// The whole table, with a title.
pub fn table(title: &str, steps: &[Step]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "{}", "-".repeat(title.chars().count().clamp(72, 120)));
    for step in steps {
        let _ = writeln!(out, "{}", step.line());
    }
    out
}

impl Outcome {
    /// The STEP 0–7 table of this run.
    pub fn table(&self) -> String {
        table(
            &format!(
                "User creates a video post: video {}, author {}, {} followers (times since the upload was sent)",
                self.video_id,
                self.author,
                self.followers.len()
            ),
            &self.steps,
        )
    }
}

/// The STEP 1–7 lines of a finished run (the set-up lines are recorded as they happen).
pub(crate) fn steps(o: &Outcome, seen: &Observed) -> Vec<Step> {
    let when = |d: Option<Duration>| d.map_or(Timing::None, Timing::At);
    let latency = o.upload.latency;
    let v = &o.video;
    let renditions = v.rendition_names();
    let started = o
        .media_event("video.transcode.started")
        .max(o.media_event("thumbnail.generation.started"));
    let stored = match o.stored_original {
        Some(size) => format!("{} stored as {}", kib(size), v.source_key),
        None => format!("stored as {}", v.source_key),
    };
    let channels = o.notification.delivered_channels.join(", ");
    let video = o.video_id.to_string();
    vec![
        Step::new(
            "1",
            format!(
                "POST /v1/videos ({} s {}x{} clip, {}) → {} {} (seed target < 50 ms)",
                v.duration_ms.unwrap_or(0) as f64 / 1000.0,
                v.width.unwrap_or(0),
                v.height.unwrap_or(0),
                kib(o.clip_bytes as u64),
                o.upload.status,
                o.upload.body["status"].as_str().unwrap_or("?")
            ),
            Timing::At(latency),
        ),
        Step::new(
            "2",
            format!(
                "middleware: X-Correlation-ID {} kept, X-Request-ID {} assigned",
                o.upload.correlation_id.as_deref().unwrap_or("(missing)"),
                o.upload.request_id.as_deref().unwrap_or("(missing)")
            ),
            Timing::At(latency),
        ),
        Step::new(
            "3",
            format!("handler: original {stored}; video.uploaded produced"),
            when(o.media_event("video.uploaded")),
        ),
        Step::new(
            "4",
            format!(
                "transcoder took video.uploaded: probed, videos row PROCESSING ({}x{}, {} ms)",
                v.width.unwrap_or(0),
                v.height.unwrap_or(0),
                v.duration_ms.unwrap_or(0)
            ),
            when(seen.row),
        ),
        Step::new(
            "5",
            "video.transcode.started + thumbnail.generation.started produced together",
            when(started),
        ),
        Step::new(
            "6",
            format!(
                "thumbnailer: {}x{} composite → thumbnail.generation.completed",
                v.thumbnail_width.unwrap_or(0),
                v.thumbnail_height.unwrap_or(0)
            ),
            when(o.media_event("thumbnail.generation.completed")),
        ),
        Step::new(
            "6",
            format!(
                "transcoder: HLS {} → video.transcode.completed",
                renditions.join(", ")
            ),
            when(o.media_event("video.transcode.completed")),
        ),
        Step::new(
            "7",
            "video-publisher: both outputs recorded → status PUBLISHED, video.published produced",
            when(o.media_event("video.published").or(seen.published)),
        ),
        Step::new(
            "7",
            format!(
                "notifier: \"{}\" stored for the author ({channels})",
                o.notification.title
            ),
            when(seen.notification),
        ),
        Step::new(
            "7",
            format!(
                "in-app: notification:sent:{{author}} received {} \"{}\"",
                o.author_message
                    .message
                    .as_ref()
                    .map_or("?", |m| m.event_type.as_str()),
                o.author_message
                    .message
                    .as_ref()
                    .and_then(|m| m.data["title"].as_str())
                    .unwrap_or("?")
            ),
            when(seen.author_message),
        ),
        Step::new(
            "7",
            format!(
                "feed-fanout: post {} in {}/{} followers' feeds",
                v.post_id,
                o.feed_scores.len(),
                o.followers.len()
            ),
            when(seen.feeds),
        ),
        Step::new(
            "7",
            format!(
                "realtime: feed:updates:{{follower}} received video.published {}/{}",
                o.feed_messages.len(),
                o.followers.len()
            ),
            when(seen.feed_messages),
        ),
        Step::new(
            "✓",
            format!(
                "ffprobe reads the master playlist: {} renditions ({}), {} audio, {:.1} s; video {video}",
                o.playlist.video.len(),
                o.playlist
                    .video
                    .iter()
                    .map(|(w, h)| format!("{w}x{h}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                o.playlist.audio_streams,
                o.playlist.duration_secs.unwrap_or(0.0)
            ),
            Timing::None,
        ),
        Step::new(
            "✓",
            format!(
                "ffprobe reads the thumbnail: {}x{}",
                o.thumbnail.0, o.thumbnail.1
            ),
            Timing::None,
        ),
    ]
}
