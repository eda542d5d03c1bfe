//! What the media groups share: the object store holding sources and outputs, a scratch folder
//! per job, probing with `ffprobe`, and running `ffmpeg` as a bounded child process.
//!
//! Sources and outputs live in the same object store as the ingest service's uploads
//! (`CIRC_OBJECT_STORE`: a local folder, or `s3://bucket[/prefix]`). Published URLs are the object
//! key under a public base (`CIRC_MEDIA_PUBLIC_URL`); without one, a local store's URLs are
//! `file://` URLs of its folder and an S3 store's are its `s3://` location.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use circulatory::consumer::HandlerError;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// The dependency name of object-store failures (its circuit breaker).
pub const OBJECT_STORE: &str = "object-store";

/// Flags of the groups that read and write media.
#[derive(Debug, Clone, clap::Args)]
pub struct MediaOptions {
    /// Where videos are stored: a local folder, or `s3://bucket/prefix` (credentials and endpoint
    /// from the usual AWS_* variables). The same store the ingest service uploads to.
    #[arg(long, env = "CIRC_OBJECT_STORE", default_value = ".stack/objects", value_parser = Store::open)]
    pub object_store: Store,
    /// Base of the published URLs of outputs (e.g. a CDN origin); an output's URL is
    /// `<base>/<object key>`. Default: the store's own location (`file://` or `s3://`).
    #[arg(long, env = "CIRC_MEDIA_PUBLIC_URL")]
    pub media_public_url: Option<String>,
    /// Folder for per-job scratch files (downloads, ffmpeg outputs). Default: the system's.
    #[arg(long, env = "CIRC_MEDIA_WORK_DIR")]
    pub media_work_dir: Option<PathBuf>,
}

impl MediaOptions {
    pub fn new(object_store: Store) -> MediaOptions {
        MediaOptions {
            object_store,
            media_public_url: None,
            media_work_dir: None,
        }
    }
}

/// An opened object store and where it is.
#[derive(Debug, Clone)]
pub struct Store {
    pub objects: Arc<dyn ObjectStore>,
    pub location: String,
}

impl Store {
    /// A local folder (created if missing), or `s3://bucket[/prefix]` configured from AWS_*.
    pub fn open(location: &str) -> Result<Store, String> {
        let objects: Arc<dyn ObjectStore> = if location.starts_with("s3://") {
            Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(|e| format!("object store {location}: {e}"))?,
            )
        } else {
            std::fs::create_dir_all(location)
                .map_err(|e| format!("object store folder {location}: {e}"))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(location)
                    .map_err(|e| format!("object store folder {location}: {e}"))?,
            )
        };
        Ok(Store {
            objects,
            location: location.to_string(),
        })
    }

    /// Where URLs point when no public base is configured.
    fn default_public_base(&self) -> String {
        if self.location.contains("://") {
            return self.location.trim_end_matches('/').to_string();
        }
        let folder = Path::new(&self.location);
        let absolute = std::fs::canonicalize(folder).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|cwd| cwd.join(folder))
                .unwrap_or_else(|_| folder.to_path_buf())
        });
        format!("file://{}", absolute.display())
    }
}

/// The handles a media handler uses: the store, the URL base, the scratch folder.
#[derive(Debug, Clone)]
pub struct Media {
    pub objects: Arc<dyn ObjectStore>,
    public_base: String,
    work_dir: PathBuf,
}

impl Media {
    pub fn new(options: &MediaOptions) -> Media {
        let public_base = options
            .media_public_url
            .as_deref()
            .map(|b| b.trim_end_matches('/').to_string())
            .unwrap_or_else(|| options.object_store.default_public_base());
        Media {
            objects: options.object_store.objects.clone(),
            public_base,
            work_dir: options
                .media_work_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        }
    }

    /// The published URL of an object.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }

    /// A fresh scratch folder, removed when dropped (also when a timed-out handler is dropped).
    pub async fn scratch(&self, label: &str) -> Result<Scratch, HandlerError> {
        let path = self
            .work_dir
            .join(format!("circ-{label}-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|e| HandlerError::retryable(format!("scratch folder: {e}")))?;
        Ok(Scratch { path })
    }

    /// Copies object `key` into `file`. A missing object is retryable (it may still be on its way
    /// in an eventually consistent store); other store failures count toward its breaker.
    pub async fn download(&self, key: &str, file: &Path) -> Result<u64, HandlerError> {
        let location = object_path(key)?;
        let result = self.objects.get(&location).await.map_err(store_error)?;
        let mut stream = result.into_stream();
        let mut out = tokio::fs::File::create(file)
            .await
            .map_err(|e| HandlerError::retryable(format!("scratch file: {e}")))?;
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(store_error)?;
            size += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .map_err(|e| HandlerError::retryable(format!("scratch file: {e}")))?;
        }
        out.flush()
            .await
            .map_err(|e| HandlerError::retryable(format!("scratch file: {e}")))?;
        Ok(size)
    }

    /// Stores a local file as object `key`.
    pub async fn upload(&self, file: &Path, key: &str) -> Result<(), HandlerError> {
        let location = object_path(key)?;
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| HandlerError::retryable(format!("reading {}: {e}", file.display())))?;
        self.objects
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// An object key from an event; a malformed one is invalid data (permanent).
pub fn object_path(key: &str) -> Result<ObjectPath, HandlerError> {
    ObjectPath::parse(key)
        .map_err(|e| HandlerError::permanent(format!("object key `{key}`: {e}")))
        .and_then(|p| {
            if p.as_ref().is_empty() {
                Err(HandlerError::permanent("empty object key"))
            } else {
                Ok(p)
            }
        })
}

/// A missing object is retryable; any other failure is the store's.
pub fn store_error(error: object_store::Error) -> HandlerError {
    match error {
        object_store::Error::NotFound { path, .. } => {
            HandlerError::retryable(format!("object {path} not found"))
        }
        other => HandlerError::dependency(OBJECT_STORE, other),
    }
}

/// A per-job folder, removed with everything in it when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            let _ = std::fs::remove_dir_all(&path);
        };
        // Off the async worker threads when a runtime is there (a large output folder).
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(remove);
            }
            Err(_) => remove(),
        }
    }
}

/// Why a media tool run failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The tool could not be started (not installed, no resources).
    #[error("cannot start {tool}: {message}")]
    Spawn { tool: String, message: String },
    /// It ran longer than allowed and was killed.
    #[error("{tool} killed after {limit:?}")]
    TimedOut { tool: String, limit: Duration },
    /// It exited with an error; `stderr` holds the end of its diagnostics.
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
}

impl ToolError {
    /// As a handler error: retrying may help (resources, a transient failure).
    pub fn retryable(self) -> HandlerError {
        HandlerError::retryable(self)
    }
}

/// Longest part of a tool's diagnostics kept in errors and events.
const STDERR_TAIL: usize = 600;

/// Runs `tool` with `args` as a child process, killed when `limit` passes or when the calling
/// future is dropped (a handler timeout): no orphaned encoders. Returns its standard output.
pub async fn run_tool(tool: &str, args: &[String], limit: Duration) -> Result<Vec<u8>, ToolError> {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(tool);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|e| ToolError::Spawn {
        tool: tool.into(),
        message: e.to_string(),
    })?;
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(ToolError::Spawn {
                tool: tool.into(),
                message: e.to_string(),
            })
        }
        // Dropping the wait drops the child, which kills it.
        Err(_) => {
            return Err(ToolError::TimedOut {
                tool: tool.into(),
                limit,
            })
        }
    };
    tracing::debug!(
        tool,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "tool finished"
    );
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    let tail: String = if stderr.len() > STDERR_TAIL {
        let start = stderr
            .char_indices()
            .map(|(i, _)| i)
            .find(|i| *i >= stderr.len() - STDERR_TAIL)
            .unwrap_or(0);
        format!("...{}", &stderr[start..])
    } else {
        stderr.to_string()
    };
    Err(ToolError::Failed {
        tool: tool.into(),
        status: output.status.to_string(),
        stderr: tail,
    })
}

/// What probing a source found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub duration_ms: i64,
    /// Display size: coded size with a 90/270 degree rotation applied.
    pub width: i32,
    pub height: i32,
    pub fps: Option<f64>,
    pub video_codec: String,
    pub has_audio: bool,
    /// Duration of the video stream alone when known (it may end before the audio).
    pub video_duration_ms: Option<i64>,
}

impl Probe {
    /// The shorter side: what a rendition label like 720p refers to, in both orientations.
    pub fn short_side(&self) -> i32 {
        self.width.min(self.height)
    }
}

/// Probing failed: either the file is not a usable video (a permanent business failure) or
/// the probe itself could not run (retryable).
#[derive(Debug)]
pub enum ProbeError {
    Invalid(String),
    Tool(ToolError),
}

/// Probes a local file with `ffprobe`.
pub async fn probe(file: &Path) -> Result<Probe, ProbeError> {
    let args = [
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([file.display().to_string()])
    .collect::<Vec<_>>();
    let stdout = match run_tool("ffprobe", &args, Duration::from_secs(60)).await {
        Ok(stdout) => stdout,
        // ffprobe ran and refused the file.
        Err(ToolError::Failed { stderr, .. }) => {
            return Err(ProbeError::Invalid(if stderr.is_empty() {
                "not a readable media file".into()
            } else {
                format!("not a readable media file: {stderr}")
            }))
        }
        Err(e) => return Err(ProbeError::Tool(e)),
    };
    parse_probe(&stdout).map_err(ProbeError::Invalid)
}

#[derive(Debug, Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Debug, Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<i32>,
    height: Option<i32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
    #[serde(default)]
    disposition: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

/// The probe of `ffprobe -print_format json -show_format -show_streams` output, or why the file
/// is not a usable video.
pub fn parse_probe(json: &[u8]) -> Result<Probe, String> {
    let output: ProbeOutput =
        serde_json::from_slice(json).map_err(|e| format!("unreadable probe: {e}"))?;
    let video = output
        .streams
        .iter()
        .filter(|s| s.codec_type.as_deref() == Some("video"))
        // Cover art is a one-picture "video" stream.
        .find(|s| s.disposition.get("attached_pic").copied().unwrap_or(0) == 0)
        .ok_or("no video stream")?;
    let (width, height) = match (video.width, video.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err("the video stream has no frame size".into()),
    };
    let rotation = video
        .side_data_list
        .iter()
        .find_map(|d| d.get("rotation").and_then(serde_json::Value::as_f64))
        .or_else(|| video.tags.get("rotate").and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    let quarter_turn = (rotation.abs().round() as i64 / 90) % 2 == 1;
    let (width, height) = if quarter_turn {
        (height, width)
    } else {
        (width, height)
    };
    let seconds = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0)
    };
    let video_duration = seconds(&video.duration);
    let duration = output
        .format
        .as_ref()
        .and_then(|f| seconds(&f.duration))
        .or(video_duration)
        .ok_or("unknown duration")?;
    let fps = [&video.avg_frame_rate, &video.r_frame_rate]
        .into_iter()
        .filter_map(|r| r.as_deref().and_then(rate))
        .next();
    Ok(Probe {
        duration_ms: (duration * 1000.0).round() as i64,
        width,
        height,
        fps,
        video_codec: video.codec_name.clone().unwrap_or_default(),
        has_audio: output
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio")),
        video_duration_ms: video_duration.map(|d| (d * 1000.0).round() as i64),
    })
}

/// `30000/1001` → 29.97; `0/0` → none.
fn rate(text: &str) -> Option<f64> {
    let (n, d) = text.split_once('/').unwrap_or((text, "1"));
    let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

/// Rounds down to an even number (x264 needs even frame sizes), at least 2.
pub fn even(value: f64) -> i32 {
    ((value / 2.0).floor() as i32 * 2).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_size_rotation_rate_and_duration() {
        let json = br#"{"streams": [
            {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
             "avg_frame_rate": "30000/1001", "duration": "9.9",
             "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]},
            {"codec_type": "audio", "codec_name": "aac"}],
            "format": {"duration": "10.0105"}}"#;
        let probe = parse_probe(json).expect("probe");
        assert_eq!((probe.width, probe.height), (1080, 1920));
        assert_eq!(probe.duration_ms, 10011);
        assert_eq!(probe.video_duration_ms, Some(9900));
        assert!((probe.fps.expect("fps") - 29.97).abs() < 0.01);
        assert!(probe.has_audio);
        assert_eq!(probe.short_side(), 1080);
    }

    #[tokio::test]
    async fn an_overlong_run_is_killed() {
        let marker = std::env::temp_dir().join(format!("circ-kill-{}", uuid::Uuid::new_v4()));
        let script = format!("sleep 1; touch {}", marker.display());
        let started = Instant::now();
        let result = run_tool(
            "sh",
            &["-c".to_string(), script],
            Duration::from_millis(200),
        )
        .await;
        assert!(
            matches!(result, Err(ToolError::TimedOut { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(900));
        // Killed, not left running: it never reaches its last command.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the tool kept running after its limit");
    }

    #[tokio::test]
    async fn a_failing_run_reports_its_diagnostics() {
        let result = run_tool(
            "sh",
            &[
                "-c".to_string(),
                "echo broken input >&2; exit 3".to_string(),
            ],
            Duration::from_secs(5),
        )
        .await;
        match result {
            Err(ToolError::Failed { stderr, status, .. }) => {
                assert_eq!(stderr, "broken input");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run_tool("no-such-tool-here", &[], Duration::from_secs(1)).await,
            Err(ToolError::Spawn { .. })
        ));
    }

    #[test]
    fn refuses_files_without_a_usable_video_stream() {
        let audio_only = br#"{"streams": [{"codec_type": "audio"}], "format": {"duration": "3"}}"#;
        assert_eq!(parse_probe(audio_only), Err("no video stream".to_string()));
        let cover_art = br#"{"streams": [{"codec_type": "video", "width": 10, "height": 10,
            "disposition": {"attached_pic": 1}}], "format": {"duration": "3"}}"#;
        assert!(parse_probe(cover_art).is_err());
        let no_duration = br#"{"streams": [{"codec_type": "video", "width": 10, "height": 10}],
            "format": {}}"#;
        assert_eq!(
            parse_probe(no_duration),
            Err("unknown duration".to_string())
        );
        assert!(parse_probe(b"garbage").is_err());
    }
}
