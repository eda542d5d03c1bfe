//! Test support for the media groups (feature `testing`): sample clips made with `ffmpeg`, a
//! scratch object store folder, `ffprobe` of outputs, and the media topic's events decoded.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use circulatory_testkit::TestEnv;
use rdkafka::message::Message;
use serde_json::{json, Value};

use crate::media::{MediaOptions, Store};

/// A local object store in its own temporary folder, removed when dropped.
pub struct ScratchStore {
    pub dir: PathBuf,
    pub store: Store,
}

impl ScratchStore {
    pub fn new() -> ScratchStore {
        let dir =
            std::env::temp_dir().join(format!("circ-objects-{}", uuid::Uuid::new_v4().simple()));
        let store = Store::open(&dir.display().to_string()).expect("scratch object store");
        ScratchStore { dir, store }
    }

    /// Media flags pointing at this store (URLs are `file://` URLs into its folder).
    pub fn options(&self) -> MediaOptions {
        MediaOptions::new(self.store.clone())
    }

    /// Where object `key` lives on disk.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Stores `bytes` as object `key`, as the ingest service's upload would.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.path_of(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("object folder");
        std::fs::write(path, bytes).expect("object written");
    }
}

impl Default for ScratchStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `width`x`height` test pattern with a sine tone, `seconds` long, H.264/AAC in MP4.
pub fn sample_clip(width: u32, height: u32, seconds: u32) -> Vec<u8> {
    let file =
        std::env::temp_dir().join(format!("circ-clip-{}.mp4", uuid::Uuid::new_v4().simple()));
    let started = Instant::now();
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={width}x{height}:rate=25"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t"])
        .arg(seconds.to_string())
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&file)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made no sample clip");
    let bytes = std::fs::read(&file).expect("sample clip");
    let _ = std::fs::remove_file(&file);
    eprintln!(
        "timing: sample clip {width}x{height} {seconds}s made in {} ms",
        started.elapsed().as_millis()
    );
    bytes
}

/// `ffprobe` of a file or URL (format and streams), or `None` when it cannot read it.
pub fn ffprobe(target: &str) -> Option<Value> {
    let output = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            target,
        ])
        .output()
        .expect("ffprobe runs");
    if !output.status.success() {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

/// The `video.uploaded` payload of a stored object.
pub fn uploaded(video_id: &str, author_id: &str, key: &str, size: usize) -> Value {
    json!({
        "videoId": video_id,
        "authorId": author_id,
        "objectKey": key,
        "originalFilename": "clip.mp4",
        "contentType": "video/mp4",
        "sizeBytes": size,
        "caption": "Sunset over the Nile",
        "hashtags": ["travel", "sunset"],
        "mentions": [],
        "uploadedAt": "2026-11-27T10:00:00.000Z"
    })
}

/// One decoded record of the media topic.
#[derive(Debug, Clone)]
pub struct MediaEvent {
    pub event_type: String,
    pub id: String,
    pub data: Value,
}

/// The media topic of this environment (every media event type shares it).
pub fn media_topic(env: &TestEnv) -> String {
    env.topic_of("video.uploaded")
}

/// Waits for `count` records of the media topic and decodes them.
pub async fn media_events(env: &TestEnv, count: usize, within: Duration) -> Vec<MediaEvent> {
    let records =
        circulatory_testkit::read_records(&env.kafka, &media_topic(env), count, within).await;
    let mut events = Vec::with_capacity(records.len());
    for record in records {
        let decoded = env
            .oracle
            .decode(record.payload().expect("value"))
            .await
            .expect("decodable");
        events.push(MediaEvent {
            event_type: circulatory_testkit::header(&record, "ce_type").expect("ce_type"),
            id: circulatory_testkit::header(&record, "ce_id").expect("ce_id"),
            data: circulatory::codec::avro_to_json(&decoded.value),
        });
    }
    events
}

/// Waits until the media topic holds at least `count` records, then decodes all of them.
pub async fn media_events_at_least(
    env: &TestEnv,
    count: usize,
    within: Duration,
) -> Vec<MediaEvent> {
    let topic = media_topic(env);
    let deadline = Instant::now() + within;
    loop {
        let total = circulatory_testkit::count_records(&env.kafka, &topic).await;
        if total >= count as i64 {
            return media_events(env, total as usize, Duration::from_secs(20)).await;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {total} of {count} records within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The events of one type.
pub fn of_type<'a>(events: &'a [MediaEvent], event_type: &str) -> Vec<&'a MediaEvent> {
    events
        .iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

/// A `file://` URL as a local path.
pub fn file_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").expect("a file:// URL"))
}
