//! transcoder against the real stack: an upload is probed, recorded and transcoded to playable
//! HLS once (a redelivered upload re-announces without encoding again), an invalid file is
//! reported as a failed transcode without retries, and an unreachable database ends in the dead
//! letters with the error.

use std::time::{Duration, Instant};

use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_transcoder::testing::{
    ffprobe, file_path, media_events, media_events_at_least, of_type, sample_clip, uploaded,
    ScratchStore,
};
use circulatory_group_transcoder::{register, TranscoderOptions, GROUP};
use circulatory_testkit::TestEnv;

const WITHIN: Duration = Duration::from_secs(60);

fn options(store: &ScratchStore) -> TranscoderOptions {
    TranscoderOptions {
        preset: "ultrafast".into(),
        segment: Duration::from_secs(2),
        ..TranscoderOptions::new(store.options())
    }
}

type VideoRow = (String, Option<i64>, Option<i32>, Option<i32>, Option<f64>);

async fn video(pool: &sqlx::PgPool, id: &str) -> Option<VideoRow> {
    sqlx::query_as("SELECT status, duration_ms, width, height, fps FROM videos WHERE id = $1::uuid")
        .bind(id)
        .fetch_optional(pool)
        .await
        .expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_is_probed_recorded_and_transcoded_to_hls_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let store = ScratchStore::new();
    let group = support::start(&env, &deps, GROUP, register, options(&store)).await;
    let publisher = env.publisher();

    let (video_id, author_id) = (uuid(), uuid());
    let key = format!("videos/{video_id}/original.mp4");
    let clip = sample_clip(854, 480, 3);
    store.put(&key, &clip);
    let upload_id = uuid();
    let started = Instant::now();
    publish_with_id(
        &env,
        &publisher,
        "video.uploaded",
        &upload_id,
        uploaded(&video_id, &author_id, &key, clip.len()),
    )
    .await;

    // uploaded, transcode.started, thumbnail.generation.started, transcode.completed.
    let events = media_events(&env, 4, WITHIN).await;
    eprintln!(
        "timing: upload to video.transcode.completed in {} ms (3 s clip, 2 renditions)",
        started.elapsed().as_millis()
    );
    let row = video(&deps.pool, &video_id).await.expect("videos row");
    assert_eq!(row.0, "PROCESSING");
    assert!((2900..=3100).contains(&row.1.expect("duration")), "{row:?}");
    assert_eq!((row.2, row.3), (Some(854), Some(480)));
    assert!((row.4.expect("fps") - 25.0).abs() < 0.01);

    let transcode = of_type(&events, "video.transcode.started");
    assert_eq!(transcode.len(), 1);
    let t = &transcode[0].data;
    assert_eq!(t["objectKey"], key.as_str());
    assert_eq!(t["targetRenditions"], serde_json::json!(["360p", "480p"]));
    assert_eq!(
        (t["sourceWidth"].as_i64(), t["sourceHeight"].as_i64()),
        (Some(854), Some(480))
    );
    let thumbnail = of_type(&events, "thumbnail.generation.started");
    assert_eq!(thumbnail.len(), 1);
    let th = &thumbnail[0].data;
    assert_eq!(th["frameCount"], 5);
    assert_eq!(
        (th["targetWidth"].as_i64(), th["targetHeight"].as_i64()),
        (Some(1600), Some(180))
    );

    let completed = of_type(&events, "video.transcode.completed");
    assert_eq!(completed.len(), 1);
    let c = &completed[0].data;
    let renditions = c["renditions"].as_array().expect("renditions");
    let names: Vec<&str> = renditions
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["480p", "360p"], "highest first");
    assert_eq!(
        (
            renditions[1]["width"].as_i64(),
            renditions[1]["height"].as_i64()
        ),
        (Some(640), Some(360))
    );
    let master_url = c["masterPlaylistUrl"].as_str().expect("master");
    assert!(
        master_url.ends_with(&format!("videos/{video_id}/hls/master.m3u8")),
        "{master_url}"
    );
    let master = file_path(master_url);
    assert_eq!(
        master,
        store.path_of(&format!("videos/{video_id}/hls/master.m3u8"))
    );
    for name in ["360p", "480p"] {
        let playlist = store.path_of(&format!("videos/{video_id}/hls/{name}/index.m3u8"));
        let text = std::fs::read_to_string(&playlist).expect("rendition playlist");
        assert!(
            text.contains("#EXT-X-ENDLIST") && text.contains("seg_000.ts"),
            "{text}"
        );
        assert!(playlist.with_file_name("seg_000.ts").exists());
    }
    // A player can read it: every rendition, with the source's duration.
    let probe = ffprobe(master_url).expect("ffprobe reads the master playlist");
    let mut sizes: Vec<(i64, i64)> = probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| (s["width"].as_i64().unwrap(), s["height"].as_i64().unwrap()))
        .collect();
    sizes.sort();
    assert_eq!(sizes, [(640, 360), (854, 480)]);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((duration - 3.0).abs() < 0.2, "{duration}");
    assert!(probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["codec_type"] == "audio"));

    // The same upload event again: the row stays, the same events are announced again (same
    // ids), and nothing is encoded a second time.
    let encoded_at = std::fs::metadata(&master).unwrap().modified().unwrap();
    publish_with_id(
        &env,
        &publisher,
        "video.uploaded",
        &upload_id,
        uploaded(&video_id, &author_id, &key, clip.len()),
    )
    .await;
    let again = media_events_at_least(&env, 8, WITHIN).await;
    let ids = |events: &[circulatory_group_transcoder::testing::MediaEvent], t: &str| {
        of_type(events, t)
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>()
    };
    for t in [
        "video.transcode.started",
        "thumbnail.generation.started",
        "video.transcode.completed",
    ] {
        let ids = ids(&again, t);
        assert_eq!(ids.len(), 2, "{t}");
        assert_eq!(ids[0], ids[1], "{t} announced with the same id");
    }
    assert_eq!(
        std::fs::metadata(&master).unwrap().modified().unwrap(),
        encoded_at
    );
    assert_eq!(
        video(&deps.pool, &video_id).await.expect("row").0,
        "PROCESSING"
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_file_is_reported_failed_without_retries() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let store = ScratchStore::new();
    let group = support::start(&env, &deps, GROUP, register, options(&store)).await;
    let publisher = env.publisher();

    let (video_id, author_id) = (uuid(), uuid());
    let key = format!("videos/{video_id}/original.mp4");
    let junk = b"this is not a video, just text with an .mp4 name".repeat(100);
    store.put(&key, &junk);
    publish_with_id(
        &env,
        &publisher,
        "video.uploaded",
        &uuid(),
        uploaded(&video_id, &author_id, &key, junk.len()),
    )
    .await;

    let events = media_events(&env, 2, WITHIN).await;
    let failed = of_type(&events, "video.transcode.failed");
    assert_eq!(failed.len(), 1, "{events:?}");
    let f = &failed[0].data;
    assert_eq!(f["videoId"], video_id.as_str());
    assert_eq!(f["errorKind"], "INVALID_SOURCE");
    assert_eq!(f["attempts"], 1);
    assert!(
        f["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not a readable media file"),
        "{f}"
    );
    let row = eventually("videos row", WITHIN, || async {
        video(&deps.pool, &video_id).await
    })
    .await;
    assert_eq!(row.0, "UPLOADED");
    assert_eq!(row.1, None);
    // A business outcome: nothing was retried or dead-lettered, nothing was started.
    env.wait_until_settled(GROUP, WITHIN).await;
    let catalog_group = env.catalog.group(GROUP).unwrap().clone();
    let retry = env
        .catalog
        .topic_name(&catalog_group.retry_topic_base(catalog_group.retry_delays[0]));
    let dlq = env
        .catalog
        .topic_name(&catalog_group.dead_letter_topic_base());
    assert!(circulatory_testkit::is_empty(&env.kafka, &retry).await);
    assert!(circulatory_testkit::is_empty(&env.kafka, &dlq).await);
    assert_eq!(
        circulatory_testkit::count_records(&env.kafka, &env.topic_of("video.uploaded")).await,
        2
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    let store = ScratchStore::new();
    let video_id = uuid();
    let key = format!("videos/{video_id}/original.mp4");
    let clip = sample_clip(320, 240, 1);
    store.put(&key, &clip);
    let dead = DatabaseOutage {
        group: GROUP,
        register,
        options: options(&store),
        event_type: "video.uploaded",
        data: uploaded(&video_id, &uuid(), &key, clip.len()),
    }
    .dead_letters(env)
    .await;
    // Nothing was announced for a video that could not be recorded.
    assert_eq!(
        circulatory_testkit::count_records(&dead.env.kafka, &dead.env.topic_of("video.uploaded"))
            .await,
        1
    );
}
