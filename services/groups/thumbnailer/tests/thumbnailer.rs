//! thumbnailer against the real stack: a composite of five frames is stored and announced, a
//! missing source is retried then dead-lettered, and an impossible request is dead-lettered at
//! once.

use std::time::{Duration, Instant};

use circulatory_group_common::testing::{self as support, publish_with_id, uuid};
use circulatory_group_thumbnailer::{register, GROUP};
use circulatory_group_transcoder::testing::{
    ffprobe, file_path, media_events, of_type, sample_clip, ScratchStore,
};
use circulatory_testkit::{header, TestEnv};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(60);

fn started(video_id: &str, key: &str, frames: i32, width: i32, height: i32) -> serde_json::Value {
    json!({
        "videoId": video_id,
        "authorId": uuid(),
        "objectKey": key,
        "frameCount": frames,
        "targetWidth": width,
        "targetHeight": height,
        "startedAt": "2026-11-27T10:00:00.000Z"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_composite_of_five_frames_is_stored_and_announced() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let store = ScratchStore::new();
    let group = support::start(&env, &deps, GROUP, register, store.options()).await;
    let publisher = env.publisher();

    let video_id = uuid();
    let key = format!("videos/{video_id}/original.mp4");
    store.put(&key, &sample_clip(854, 480, 3));
    let begun = Instant::now();
    publish_with_id(
        &env,
        &publisher,
        "thumbnail.generation.started",
        &uuid(),
        started(&video_id, &key, 5, 1600, 180),
    )
    .await;

    let events = media_events(&env, 2, WITHIN).await;
    eprintln!(
        "timing: thumbnail.generation.started to completed in {} ms (3 s clip, 5 frames)",
        begun.elapsed().as_millis()
    );
    let completed = of_type(&events, "thumbnail.generation.completed");
    assert_eq!(completed.len(), 1, "{events:?}");
    let c = &completed[0].data;
    let object_key = format!("videos/{video_id}/thumbnail.jpg");
    assert_eq!(c["objectKey"], object_key.as_str());
    assert_eq!(
        (c["width"].as_i64(), c["height"].as_i64()),
        (Some(1600), Some(180))
    );
    let url = c["thumbnailUrl"].as_str().expect("url");
    assert_eq!(file_path(url), store.path_of(&object_key));

    // The stored image is one JPEG of the announced size.
    let probe = ffprobe(url).expect("ffprobe reads the thumbnail");
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "mjpeg");
    assert_eq!(
        (stream["width"].as_i64(), stream["height"].as_i64()),
        (Some(1600), Some(180))
    );
    // Five different moments: the tiles are not copies of one frame (the test pattern moves).
    let tiles: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            let output = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-i", url, "-vf"])
                .arg(format!("crop=320:180:{}:0,scale=32:18", i * 320))
                .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
                .output()
                .expect("ffmpeg runs");
            assert!(output.status.success());
            output.stdout
        })
        .collect();
    for pair in tiles.windows(2) {
        assert_ne!(pair[0], pair[1], "two neighbouring tiles are identical");
    }
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_source_is_retried_then_dead_lettered() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let store = ScratchStore::new();
    let group = support::start(&env, &deps, GROUP, register, store.options()).await;
    let publisher = env.publisher();
    let video_id = uuid();
    let id = uuid();
    publish_with_id(
        &env,
        &publisher,
        "thumbnail.generation.started",
        &id,
        started(
            &video_id,
            &format!("videos/{video_id}/original.mp4"),
            5,
            1600,
            180,
        ),
    )
    .await;
    // topics.yaml: 2 attempts, the retry after 10 s.
    let dead = support::dead_letters(&env, GROUP, 1, Duration::from_secs(45)).await;
    assert_eq!(header(&dead[0], "ce_id").as_deref(), Some(id.as_str()));
    assert_eq!(header(&dead[0], "circ_attempt").as_deref(), Some("2"));
    assert_eq!(
        header(&dead[0], "circ_error_class").as_deref(),
        Some("retryable")
    );
    let message = header(&dead[0], "circ_error_message").unwrap_or_default();
    assert!(message.contains("not found"), "{message}");
    assert!(!store
        .path_of(&format!("videos/{video_id}/thumbnail.jpg"))
        .exists());
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_impossible_request_is_dead_lettered_at_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let store = ScratchStore::new();
    let group = support::start(&env, &deps, GROUP, register, store.options()).await;
    let publisher = env.publisher();
    let video_id = uuid();
    let key = format!("videos/{video_id}/original.mp4");
    store.put(&key, &sample_clip(320, 240, 1));
    let id = uuid();
    publish_with_id(
        &env,
        &publisher,
        "thumbnail.generation.started",
        &id,
        started(&video_id, &key, 0, 1600, 180),
    )
    .await;
    let dead = support::dead_letters(&env, GROUP, 1, Duration::from_secs(20)).await;
    assert_eq!(header(&dead[0], "ce_id").as_deref(), Some(id.as_str()));
    assert_eq!(header(&dead[0], "circ_attempt").as_deref(), Some("1"));
    assert_eq!(
        header(&dead[0], "circ_error_class").as_deref(),
        Some("permanent")
    );
    group.stop().await;
}
