//! video-publisher against the real stack: a video is published exactly once when both its
//! renditions and its thumbnail are recorded (whatever the duplicates), a failed transcode marks
//! it FAILED, an unreachable database ends in the dead letters; and the whole media pipeline
//! (transcoder, thumbnailer, video-publisher in one process) takes an upload live.

use std::time::{Duration, Instant};

use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_transcoder::testing::{
    ffprobe, file_path, media_events, media_events_at_least, media_topic, of_type, sample_clip,
    uploaded, ScratchStore,
};
use circulatory_group_transcoder::TranscoderOptions;
use circulatory_group_video_publisher::{register, GROUP};
use circulatory_testkit::TestEnv;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(60);

/// The row the transcoder records for a probed upload.
async fn processing_video(pool: &sqlx::PgPool, video_id: &str, author_id: &str) {
    sqlx::query(
        "INSERT INTO videos (id, author_id, post_id, status, source_key, original_filename, \
           content_type, size_bytes, caption, hashtags, mentions, duration_ms, width, height, \
           fps, uploaded_at) \
         VALUES ($1::uuid, $2::uuid, $1::uuid, 'PROCESSING', 'videos/x/original.mp4', 'x.mp4', \
           'video/mp4', 1000, 'Sunset', ARRAY['travel'], ARRAY[$2::uuid], 3000, 854, 480, 25, now())",
    )
    .bind(video_id)
    .bind(author_id)
    .execute(pool)
    .await
    .expect("videos row");
}

fn transcode_completed(video_id: &str, author_id: &str) -> serde_json::Value {
    json!({
        "videoId": video_id,
        "authorId": author_id,
        "renditions": [
            {"name": "480p", "width": 854, "height": 480, "bitrateKbps": 1400,
             "playlistUrl": format!("file:///o/videos/{video_id}/hls/480p/index.m3u8")},
            {"name": "360p", "width": 640, "height": 360, "bitrateKbps": 800,
             "playlistUrl": format!("file:///o/videos/{video_id}/hls/360p/index.m3u8")}
        ],
        "masterPlaylistUrl": format!("file:///o/videos/{video_id}/hls/master.m3u8"),
        "durationMs": 3000,
        "completedAt": "2026-11-27T10:01:00.000Z"
    })
}

fn thumbnail_completed(video_id: &str, author_id: &str) -> serde_json::Value {
    json!({
        "videoId": video_id,
        "authorId": author_id,
        "thumbnailUrl": format!("file:///o/videos/{video_id}/thumbnail.jpg"),
        "objectKey": format!("videos/{video_id}/thumbnail.jpg"),
        "width": 1600,
        "height": 180,
        "completedAt": "2026-11-27T10:00:30.000Z"
    })
}

async fn status(pool: &sqlx::PgPool, video_id: &str) -> Option<String> {
    sqlx::query_as::<_, (String,)>("SELECT status FROM videos WHERE id = $1::uuid")
        .bind(video_id)
        .fetch_optional(pool)
        .await
        .expect("query")
        .map(|(s,)| s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_video_is_published_exactly_once_when_both_outputs_are_recorded() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let (video_id, author_id) = (uuid(), uuid());
    processing_video(&deps.pool, &video_id, &author_id).await;

    // The thumbnail alone publishes nothing.
    let thumbnail_id = uuid();
    publish_with_id(
        &env,
        &publisher,
        "thumbnail.generation.completed",
        &thumbnail_id,
        thumbnail_completed(&video_id, &author_id),
    )
    .await;
    let thumbnailed = eventually("thumbnail recorded", WITHIN, || async {
        sqlx::query_as::<_, (Option<String>, String)>(
            "SELECT thumbnail_url, status FROM videos WHERE id = $1::uuid",
        )
        .bind(&video_id)
        .fetch_one(&deps.pool)
        .await
        .ok()
        .filter(|(url, _)| url.is_some())
    })
    .await;
    assert_eq!(thumbnailed.1, "PROCESSING");

    // Each completion delivered twice (same ids), then a second transcode of the same video (a
    // new id) after publication: one video.published in all.
    let transcode_id = uuid();
    for (event_type, id, data) in [
        (
            "video.transcode.completed",
            &transcode_id,
            transcode_completed(&video_id, &author_id),
        ),
        (
            "thumbnail.generation.completed",
            &thumbnail_id,
            thumbnail_completed(&video_id, &author_id),
        ),
        (
            "video.transcode.completed",
            &transcode_id,
            transcode_completed(&video_id, &author_id),
        ),
    ] {
        publish_with_id(&env, &publisher, event_type, id, data).await;
    }
    let events = media_events(&env, 5, WITHIN).await;
    publish_with_id(
        &env,
        &publisher,
        "video.transcode.completed",
        &uuid(),
        transcode_completed(&video_id, &author_id),
    )
    .await;
    let published = of_type(&events, "video.published");
    assert_eq!(published.len(), 1, "{events:?}");
    let p = &published[0].data;
    assert_eq!(p["videoId"], video_id.as_str());
    assert_eq!(p["authorId"], author_id.as_str());
    assert_eq!(p["postId"], video_id.as_str());
    assert_eq!(p["caption"], "Sunset");
    assert_eq!(p["hashtags"], json!(["travel"]));
    assert_eq!(p["mentions"], json!([author_id]));
    assert_eq!(
        p["masterPlaylistUrl"],
        format!("file:///o/videos/{video_id}/hls/master.m3u8")
    );
    assert_eq!(
        p["thumbnailUrl"],
        format!("file:///o/videos/{video_id}/thumbnail.jpg")
    );
    assert_eq!(p["durationMs"], 3000);

    // published_at as text: only compared, never interpreted.
    let row: (
        String,
        Option<String>,
        Option<String>,
        serde_json::Value,
        Option<i32>,
    ) = eventually("published row", WITHIN, || async {
        sqlx::query_as(
            "SELECT status, published_at::text, published_by_event, renditions, thumbnail_width \
                 FROM videos WHERE id = $1::uuid",
        )
        .bind(&video_id)
        .fetch_optional(&deps.pool)
        .await
        .expect("query")
    })
    .await;
    assert_eq!(row.0, "PUBLISHED");
    assert!(row.1.is_some());
    assert_eq!(row.2.as_deref(), Some(transcode_id.as_str()));
    assert_eq!(row.3[0]["name"], "480p");
    assert_eq!(row.4, Some(1600));

    // Let the late duplicate be handled: still one video.published, the row unchanged.
    env.wait_until_settled(GROUP, WITHIN).await;
    let all = media_events_at_least(&env, 6, WITHIN).await;
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(of_type(&all, "video.published").len(), 1);
    let published_at: Option<String> = sqlx::query_as::<_, (Option<String>,)>(
        "SELECT published_at::text FROM videos WHERE id = $1::uuid",
    )
    .bind(&video_id)
    .fetch_one(&deps.pool)
    .await
    .expect("query")
    .0;
    assert_eq!(published_at, row.1);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_transcode_marks_the_video_failed() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let (video_id, author_id) = (uuid(), uuid());
    processing_video(&deps.pool, &video_id, &author_id).await;
    publish_with_id(
        &env,
        &publisher,
        "video.transcode.failed",
        &uuid(),
        json!({
            "videoId": video_id,
            "authorId": author_id,
            "errorKind": "INTERNAL",
            "errorMessage": "ffmpeg failed (exit status: 1)",
            "attempts": 2,
            "failedAt": "2026-11-27T10:02:00.000Z"
        }),
    )
    .await;
    // A thumbnail finishing afterwards does not publish a failed video.
    publish_with_id(
        &env,
        &publisher,
        "thumbnail.generation.completed",
        &uuid(),
        thumbnail_completed(&video_id, &author_id),
    )
    .await;
    let row = eventually("failed and thumbnailed", WITHIN, || async {
        sqlx::query_as::<_, (String, Option<String>, Option<String>, Option<String>)>(
            "SELECT status, failure_kind, failure_reason, thumbnail_url FROM videos WHERE id = $1::uuid",
        )
        .bind(&video_id)
        .fetch_one(&deps.pool)
        .await
        .ok()
        .filter(|r| r.3.is_some())
    })
    .await;
    assert_eq!(row.0, "FAILED");
    assert_eq!(row.1.as_deref(), Some("INTERNAL"));
    assert_eq!(row.2.as_deref(), Some("ffmpeg failed (exit status: 1)"));
    env.wait_until_settled(GROUP, WITHIN).await;
    assert_eq!(
        circulatory_testkit::count_records(&env.kafka, &media_topic(&env)).await,
        2
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: NoOptions {},
        event_type: "video.transcode.completed",
        data: transcode_completed(&uuid(), &uuid()),
    }
    .dead_letters(env)
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_goes_live_through_transcoder_thumbnailer_and_publisher() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let store = ScratchStore::new();
    let transcoder = support::start(
        &env,
        &deps,
        circulatory_group_transcoder::GROUP,
        circulatory_group_transcoder::register,
        TranscoderOptions {
            preset: "ultrafast".into(),
            segment: Duration::from_secs(2),
            ..TranscoderOptions::new(store.options())
        },
    )
    .await;
    let thumbnailer = support::start(
        &env,
        &deps,
        circulatory_group_thumbnailer::GROUP,
        circulatory_group_thumbnailer::register,
        store.options(),
    )
    .await;
    let video_publisher = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();

    // A good upload and a broken one.
    let (video_id, author_id, broken_id) = (uuid(), uuid(), uuid());
    let key = format!("videos/{video_id}/original.mp4");
    let clip = sample_clip(854, 480, 3);
    store.put(&key, &clip);
    let broken_key = format!("videos/{broken_id}/original.mp4");
    store.put(&broken_key, b"\x00\x00\x00\x18ftypmp42 truncated upload");
    let begun = Instant::now();
    env.publish(
        &publisher,
        "video.uploaded",
        uploaded(&video_id, &author_id, &key, clip.len()),
    )
    .await;
    env.publish(
        &publisher,
        "video.uploaded",
        uploaded(&broken_id, &author_id, &broken_key, 30),
    )
    .await;

    eventually("published", WITHIN, || async {
        (status(&deps.pool, &video_id).await.as_deref() == Some("PUBLISHED")).then_some(())
    })
    .await;
    eprintln!(
        "timing: upload to PUBLISHED in {} ms (3 s 854x480 clip, three groups)",
        begun.elapsed().as_millis()
    );
    eventually("failed", WITHIN, || async {
        (status(&deps.pool, &broken_id).await.as_deref() == Some("FAILED")).then_some(())
    })
    .await;

    // Good: uploaded, transcode.started, thumbnail.generation.started, transcode.completed,
    // thumbnail.generation.completed, video.published. Broken: uploaded, transcode.failed.
    let events = media_events_at_least(&env, 8, WITHIN).await;
    for group in [
        circulatory_group_transcoder::GROUP,
        circulatory_group_thumbnailer::GROUP,
        GROUP,
    ] {
        env.wait_until_settled(group, WITHIN).await;
    }
    assert_eq!(
        circulatory_testkit::count_records(&env.kafka, &media_topic(&env)).await,
        8
    );
    let published = of_type(&events, "video.published");
    assert_eq!(published.len(), 1, "{events:?}");
    let p = &published[0].data;
    assert_eq!(p["videoId"], video_id.as_str());
    assert_eq!(p["caption"], "Sunset over the Nile");
    assert!((2900..=3100).contains(&p["durationMs"].as_i64().unwrap()));
    let failed = of_type(&events, "video.transcode.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data["videoId"], broken_id.as_str());

    // What the read side serves: playable HLS and the composite thumbnail.
    let master = p["masterPlaylistUrl"].as_str().unwrap();
    assert!(
        ffprobe(master).is_some(),
        "master playlist unreadable: {master}"
    );
    let thumbnail = ffprobe(p["thumbnailUrl"].as_str().unwrap()).expect("thumbnail readable");
    assert_eq!(
        (
            thumbnail["streams"][0]["width"].as_i64(),
            thumbnail["streams"][0]["height"].as_i64()
        ),
        (Some(1600), Some(180))
    );
    assert!(file_path(p["thumbnailUrl"].as_str().unwrap()).starts_with(&store.dir));
    let row: (serde_json::Value, Option<String>, Option<i64>, Option<i32>, Option<i32>) =
        sqlx::query_as(
            "SELECT renditions, thumbnail_url, duration_ms, width, height FROM videos WHERE id = $1::uuid",
        )
        .bind(&video_id)
        .fetch_one(&deps.pool)
        .await
        .expect("row");
    let names: Vec<&str> = row
        .0
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["480p", "360p"]);
    assert_eq!(row.1.as_deref(), p["thumbnailUrl"].as_str());
    assert_eq!((row.3, row.4), (Some(854), Some(480)));
    let reason: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT failure_kind, failure_reason FROM videos WHERE id = $1::uuid")
            .bind(&broken_id)
            .fetch_one(&deps.pool)
            .await
            .expect("row");
    assert_eq!(reason.0.as_deref(), Some("INVALID_SOURCE"));
    assert!(reason.1.is_some());

    video_publisher.stop().await;
    thumbnailer.stop().await;
    transcoder.stop().await;
}
