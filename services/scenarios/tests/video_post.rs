//! "User creates a video post" (the seed's STEP 1–7) against the real stack: the ingest API and
//! the seven groups it goes through run in this process in one fresh namespace. The scenario
//! creates the people over HTTP, uploads a generated 3 s 854x480 clip with `POST /v1/videos` and
//! follows it to the followers' feeds; this test then checks each outcome again at its source
//! and prints the STEP table (`cargo test -p circulatory-scenarios -- --nocapture`).

mod support;

use std::time::Duration;

use circulatory_group_feed_fanout::{feed_key, updates_channel};
use circulatory_group_notifier::notification_channel;
use circulatory_group_transcoder::testing::{ffprobe, file_path};
use circulatory_scenarios::report::Timing;
use circulatory_scenarios::video_post::{self, Plan, LIVE_KIND, LIVE_TITLE};

/// The seed's target for the upload answer is 50 ms; this machine is shared with other builds
/// and tests, so the bound asserted is looser (the real figure is printed).
const UPLOAD_BOUND: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_creates_a_video_post() {
    let pipeline = support::Pipeline::start().await;
    let target = pipeline.target().await;
    let plan = Plan::default();
    let outcome = video_post::run(&target, &plan, &mut |line| println!("{line}"))
        .await
        .unwrap_or_else(|e| panic!("the scenario failed: {e:#}"));
    println!("\n{}", outcome.table());
    let pool = &pipeline.deps.pool;
    let video_id = outcome.video_id.to_string();
    let author = outcome.author.to_string();

    // STEP 1–3: 202 quickly, correlation kept, original stored, form recorded.
    assert_eq!(outcome.upload.status, 202, "{}", outcome.upload.body);
    assert_eq!(outcome.upload.body["status"], "PROCESSING");
    assert_eq!(
        outcome.upload.body["message"],
        "Video queued for processing"
    );
    println!(
        "upload answered in {} ms (seed target < 50 ms, asserted < {} ms)",
        outcome.upload.latency.as_millis(),
        UPLOAD_BOUND.as_millis()
    );
    assert!(
        outcome.upload.latency < UPLOAD_BOUND,
        "POST /v1/videos took {:?}",
        outcome.upload.latency
    );
    assert_eq!(
        outcome.upload.correlation_id.as_deref(),
        Some(outcome.correlation_id.as_str())
    );
    assert!(outcome.upload.request_id.is_some());
    let key = format!("videos/{video_id}/original.mp4");
    assert_eq!(outcome.video.source_key, key);
    let original = std::fs::metadata(pipeline.store.path_of(&key)).expect("original stored");
    assert_eq!(original.len(), outcome.clip_bytes as u64);
    assert_eq!(outcome.video.size_bytes, outcome.clip_bytes as i64);
    assert_eq!(
        outcome.video.caption.as_deref(),
        Some("Check out this amazing sunset!")
    );
    assert_eq!(outcome.video.hashtags, ["travel", "sunset", "egypt"]);

    // STEP 4–7 on Kafka: each media event of the video, in causal order, published once.
    let first = |t: &str| {
        outcome
            .media_event(t)
            .unwrap_or_else(|| panic!("no {t} on the media topic: {:?}", outcome.media_events))
    };
    let uploaded = first("video.uploaded");
    let transcode_started = first("video.transcode.started");
    let thumbnail_started = first("thumbnail.generation.started");
    let transcoded = first("video.transcode.completed");
    let thumbnailed = first("thumbnail.generation.completed");
    let published = first("video.published");
    assert!(uploaded <= transcode_started && uploaded <= thumbnail_started);
    assert!(transcode_started <= transcoded && thumbnail_started <= thumbnailed);
    assert!(transcoded <= published && thumbnailed <= published);
    let published_count = outcome
        .media_events
        .iter()
        .filter(|(t, _)| t == "video.published")
        .count();
    assert_eq!(published_count, 1, "{:?}", outcome.media_events);

    // The videos row, read again: PUBLISHED with HLS renditions and a thumbnail.
    let row: (
        String,
        String,
        Option<i32>,
        Option<i32>,
        Option<i64>,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT status, renditions::text, width, height, duration_ms, master_playlist_url, \
               thumbnail_url FROM videos WHERE id = $1::uuid AND author_id = $2::uuid",
    )
    .bind(&video_id)
    .bind(&author)
    .fetch_one(pool)
    .await
    .expect("videos row");
    assert_eq!(row.0, "PUBLISHED");
    let renditions: serde_json::Value = serde_json::from_str(&row.1).expect("renditions");
    let names: Vec<&str> = renditions
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["480p", "360p"]);
    assert_eq!((row.2, row.3), (Some(854), Some(480)));
    assert!((2900..=3100).contains(&row.4.expect("duration")), "{row:?}");

    // The master playlist is playable HLS: ffprobe sees both renditions and the audio.
    let master = ffprobe(&row.5).unwrap_or_else(|| panic!("ffprobe cannot read {}", row.5));
    let mut sizes: Vec<(i64, i64)> = master["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| (s["width"].as_i64().unwrap(), s["height"].as_i64().unwrap()))
        .collect();
    sizes.sort();
    sizes.dedup();
    assert_eq!(sizes, [(640, 360), (854, 480)]);
    assert_eq!(outcome.playlist.video, [(854, 480), (640, 360)]);
    assert!(outcome.playlist.audio_streams >= 1);
    assert!(file_path(&row.5).starts_with(&pipeline.store.dir));

    // The thumbnail exists in the same store and is the composite the row describes.
    let thumbnail = file_path(&row.6);
    assert!(thumbnail.starts_with(&pipeline.store.dir), "{thumbnail:?}");
    assert!(thumbnail.is_file(), "{thumbnail:?}");
    assert_eq!(
        (
            Some(outcome.thumbnail.0 as i32),
            Some(outcome.thumbnail.1 as i32)
        ),
        (
            outcome.video.thumbnail_width,
            outcome.video.thumbnail_height
        )
    );
    assert_eq!(outcome.thumbnail.1, 180);

    // STEP 7: the author's notification, exactly one, delivered in-app.
    let notifications: Vec<(String, String, Option<uuid::Uuid>, Vec<String>)> = sqlx::query_as(
        "SELECT title, body, entity_id, delivered_channels FROM notifications \
         WHERE user_id = $1::uuid AND kind = $2",
    )
    .bind(&author)
    .bind(LIVE_KIND)
    .fetch_all(pool)
    .await
    .expect("notifications");
    assert_eq!(notifications.len(), 1, "{notifications:?}");
    let (title, body, entity, channels) = &notifications[0];
    assert_eq!(title, LIVE_TITLE);
    assert!(body.contains("Check out this amazing sunset!"), "{body}");
    assert_eq!(entity.map(|e| e.to_string()), Some(video_id.clone()));
    assert!(channels.iter().any(|c| c == "IN_APP"), "{channels:?}");

    // STEP 7: every follower's feed holds the video's post (feed-fanout writes the post id,
    // which for a video is the video id), scored by its publication time; the author's own
    // feed does not.
    assert_eq!(outcome.video.post_id, outcome.video_id);
    let published_ms = outcome
        .video
        .published_at
        .expect("published_at")
        .timestamp_millis();
    let mut redis = pipeline.deps.redis.clone();
    for follower in &outcome.followers {
        let feed: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(feed_key(&pipeline.deps, &follower.to_string()))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut redis)
            .await
            .expect("feed");
        assert_eq!(
            feed,
            [(video_id.clone(), published_ms)],
            "follower {follower}"
        );
    }
    let own: i64 = redis::cmd("ZCARD")
        .arg(feed_key(&pipeline.deps, &author))
        .query_async(&mut redis)
        .await
        .expect("author's feed");
    assert_eq!(own, 0);

    // STEP 7 realtime: each follower got video.published on their own channel, the author got
    // the in-app notification.
    assert_eq!(outcome.feed_messages.len(), outcome.followers.len());
    for follower in &outcome.followers {
        let received: Vec<_> = outcome
            .feed_messages
            .iter()
            .filter(|m| m.channel == updates_channel(&follower.to_string()))
            .collect();
        assert_eq!(received.len(), 1, "follower {follower}");
        let message = received[0].message.as_ref().expect("a realtime message");
        assert_eq!(message.event_type, "video.published");
        assert_eq!(message.data["postId"], video_id.as_str());
        assert_eq!(message.data["videoId"], video_id.as_str());
        assert_eq!(message.data["authorId"], author.as_str());
    }
    assert_eq!(
        outcome.author_message.channel,
        notification_channel(outcome.author)
    );
    let message = outcome
        .author_message
        .message
        .as_ref()
        .expect("a realtime message");
    assert_eq!(message.event_type, "notification.sent");
    assert_eq!(message.data["title"], LIVE_TITLE);
    assert_eq!(message.data["userId"], author.as_str());
    assert_eq!(message.data["entityId"], video_id.as_str());
    assert_eq!(message.data["channel"], "IN_APP");

    // Every STEP 1–7 line has its time.
    for step in outcome
        .steps
        .iter()
        .filter(|s| s.step != "0" && s.step != "✓")
    {
        assert!(
            matches!(step.timing, Timing::At(_)),
            "no time for {}",
            step.line()
        );
    }

    drop(target);
    pipeline.stop().await;
}
