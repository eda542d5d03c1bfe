//! "User creates a video post", the seed's STEP 1–7 walk-through, against a live pipeline.
//!
//! Set-up: an author and their followers are created through `POST /v1/events` (`user.created`,
//! `user.followed`), and the scenario waits until user-lifecycle has projected the follow graph
//! (feed-fanout reads followers from it). A Redis subscriber joins each follower's
//! `feed:updates:{userId}` and the author's `notification:sent:{userId}`, and a Kafka tail starts
//! at the end of the media topic, both before anything is uploaded.
//!
//! Then a generated clip goes through `POST /v1/videos` and everything that follows is observed
//! where it lands, with its time since the upload was sent:
//!
//! | STEP | seed | observed |
//! |---|---|---|
//! | 1–3 | request, middleware, handler | the 202 and its latency, the echoed correlation and request ids, the stored original, `video.uploaded` on Kafka |
//! | 4–5 | routing, `handleVideoUploaded` | transcoder's `videos` row (PROCESSING with the probe), `video.transcode.started` and `thumbnail.generation.started` |
//! | 6 | parallel workers | `thumbnail.generation.completed`, `video.transcode.completed`, both recorded on the row |
//! | 7 | completion | status PUBLISHED and `video.published`, the author's "Your video is now live!" row and in-app message, the post in every follower's feed and their `feed:updates` message |
//!
//! Finally the master playlist is read back with `ffprobe`, and the thumbnail too. A step that
//! does not happen within the plan's time fails the run with what is missing and which group
//! owes it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _};
use chrono::{DateTime, SecondsFormat, Utc};
use circulatory::catalog::{Catalog, CatalogPaths};
use circulatory::kafka::KafkaConfig;
use circulatory_group_common::deps::Deps;
use circulatory_group_feed_fanout::{feed_key, updates_channel};
use circulatory_group_notifier::notification_channel;
use redis::aio::ConnectionManager;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::clip::{self, ClipSpec};
use crate::ingest::{IngestClient, Upload, UploadReply};
use crate::observe::{Realtime, Received, Record, Tail};
use crate::report::{Step, Timing};

/// The title of the author's notification (notifier, `video.published`).
pub const LIVE_TITLE: &str = "Your video is now live!";
/// The notification kind of a published video.
pub const LIVE_KIND: &str = "VIDEO_PUBLISHED";

/// Where the pipeline is.
#[derive(Debug, Clone)]
pub struct Connect {
    pub ingest_url: String,
    /// A bearer token allowed to publish `user.*` and `video.uploaded`.
    pub token: String,
    pub topology: PathBuf,
    pub schemas: PathBuf,
    /// The deployment's namespace (topics, Redis keys); `None` for the default one.
    pub namespace: Option<String>,
    pub bootstrap: String,
    pub redis_url: String,
    pub database_url: String,
    /// The local object-store folder, to check the stored original (`None`: not checked).
    pub object_store: Option<PathBuf>,
}

/// Open connections to a pipeline.
pub struct Target {
    pub ingest: IngestClient,
    /// The catalog (namespaced), PostgreSQL and Redis, as the groups see them.
    pub deps: Deps,
    pub kafka: KafkaConfig,
    pub redis_url: String,
    pub object_store: Option<PathBuf>,
}

impl Target {
    /// Loads the catalog and connects to PostgreSQL and Redis; each failure says which.
    pub async fn connect(connect: &Connect) -> anyhow::Result<Target> {
        let catalog = Catalog::load(&CatalogPaths {
            topology: connect.topology.clone(),
            schemas: connect.schemas.clone(),
        })
        .map_err(|e| anyhow::anyhow!("catalog: {e}"))?
        .with_namespace(connect.namespace.as_deref())
        .map_err(|e| anyhow::anyhow!("catalog: {e}"))?;
        let pool = circulatory::db::connect(&connect.database_url, 4)
            .await
            .with_context(|| format!("PostgreSQL at {}", redact(&connect.database_url)))?;
        let client = redis::Client::open(connect.redis_url.as_str()).context("redis url")?;
        let redis = tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client))
            .await
            .map_err(|_| anyhow::anyhow!("Redis at {}: no answer", connect.redis_url))?
            .with_context(|| format!("Redis at {}", connect.redis_url))?;
        Ok(Target {
            ingest: IngestClient::new(&connect.ingest_url, &connect.token)?,
            deps: Deps::new(std::sync::Arc::new(catalog), pool, redis),
            kafka: KafkaConfig::new(
                connect.bootstrap.clone(),
                format!("circulatory-scenario-{}", Uuid::new_v4().simple()),
            ),
            redis_url: connect.redis_url.clone(),
            object_store: connect.object_store.clone(),
        })
    }
}

/// A database URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// What to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub followers: usize,
    pub clip: ClipSpec,
    pub caption: String,
    pub hashtags: String,
    /// How long the set-up and, separately, the processing after the upload may take.
    pub within: Duration,
    /// Pause between two looks at PostgreSQL and Redis.
    pub poll: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            followers: 3,
            clip: ClipSpec::default(),
            caption: "Check out this amazing sunset!".into(),
            hashtags: "#travel #sunset #egypt".into(),
            within: Duration::from_secs(120),
            poll: Duration::from_millis(25),
        }
    }
}

/// The `videos` row as the scenario reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VideoRow {
    pub status: String,
    pub author_id: Uuid,
    pub post_id: Uuid,
    pub source_key: String,
    pub size_bytes: i64,
    pub caption: Option<String>,
    pub hashtags: Vec<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_ms: Option<i64>,
    /// `renditions` as JSON text.
    pub renditions: Option<String>,
    pub master_playlist_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub thumbnail_width: Option<i32>,
    pub thumbnail_height: Option<i32>,
    pub failure_kind: Option<String>,
    pub failure_reason: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
}

impl VideoRow {
    /// The rendition names, highest first.
    pub fn rendition_names(&self) -> Vec<String> {
        self.renditions
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    }
}

/// The author's notification row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub entity_id: Option<Uuid>,
    pub delivered_channels: Vec<String>,
}

/// What `ffprobe` says about the master playlist.
#[derive(Debug, Clone)]
pub struct PlaylistProbe {
    /// Video streams (one per rendition) as width x height.
    pub video: Vec<(i64, i64)>,
    pub audio_streams: usize,
    pub duration_secs: Option<f64>,
}

/// Everything observed, with times since the upload was sent.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub author: Uuid,
    pub followers: Vec<Uuid>,
    pub clip_bytes: usize,
    pub correlation_id: String,
    pub upload: UploadReply,
    pub video_id: Uuid,
    pub video: VideoRow,
    /// Size of the stored original, when the object store was checked.
    pub stored_original: Option<u64>,
    pub playlist: PlaylistProbe,
    /// The thumbnail's size as `ffprobe` reads it.
    pub thumbnail: (i64, i64),
    pub notification: NotificationRow,
    /// Each follower's feed score of the post (epoch milliseconds).
    pub feed_scores: Vec<(Uuid, f64)>,
    /// Messages received on each follower's feed:updates channel about this video.
    pub feed_messages: Vec<Received>,
    /// The author's notification:sent message about this video.
    pub author_message: Received,
    /// The media topic's records of this video: type and producer time since the upload.
    pub media_events: Vec<(String, Option<Duration>)>,
    pub steps: Vec<Step>,
}

impl Outcome {
    /// The first producer time of a media event type, since the upload.
    pub fn media_event(&self, event_type: &str) -> Option<Duration> {
        self.media_events
            .iter()
            .find(|(t, _)| t == event_type)
            .and_then(|(_, at)| *at)
    }
}

/// First times each outcome was seen, since the upload.
#[derive(Debug, Default)]
struct Seen {
    row: Option<Duration>,
    thumbnail: Option<Duration>,
    renditions: Option<Duration>,
    published: Option<Duration>,
    notification: Option<Duration>,
    feeds: Vec<Option<Duration>>,
    feed_messages: Vec<Option<Received>>,
    author_message: Option<Received>,
}

/// Runs the scenario; `progress` gets one line per thing seen, as it happens.
pub async fn run(
    target: &Target,
    plan: &Plan,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Outcome> {
    ensure!(
        plan.followers >= 1,
        "the scenario needs at least one follower"
    );
    let pool = &target.deps.pool;
    let mut steps = Vec::new();

    // Set-up: the clip, the people, the subscriptions.
    let started = Instant::now();
    let clip = clip::generate(plan.clip).await?;
    let spec = plan.clip;
    steps.push(Step::new(
        "0",
        format!(
            "clip generated: {} s {}x{} H.264/AAC MP4, {}",
            spec.seconds,
            spec.width,
            spec.height,
            kib(clip.len() as u64)
        ),
        Timing::Took(started.elapsed()),
    ));
    progress(&steps[steps.len() - 1].line());

    let author = Uuid::new_v4();
    let followers: Vec<Uuid> = (0..plan.followers).map(|_| Uuid::new_v4()).collect();
    let events = people(author, &followers);
    let started = Instant::now();
    target
        .ingest
        .ready()
        .await
        .map_err(|e| anyhow::anyhow!("the ingest API at {} {e}", target.ingest.base_url()))?;
    let answers = target
        .ingest
        .publish(&events)
        .await
        .context("creating the author and the followers")?;
    ensure!(
        answers.len() == events.len(),
        "POST /v1/events answered {} results for {} events",
        answers.len(),
        events.len()
    );
    steps.push(Step::new(
        "0",
        format!(
            "author + {} followers: {} user.created + {} user.followed via POST /v1/events → 202",
            followers.len(),
            followers.len() + 1,
            followers.len()
        ),
        Timing::Took(started.elapsed()),
    ));
    progress(&steps[steps.len() - 1].line());

    let started = Instant::now();
    wait_for_graph(pool, author, &followers, plan).await?;
    steps.push(Step::new(
        "0",
        format!(
            "user-lifecycle projected {} profiles and {} follows (author follower_count = {})",
            followers.len() + 1,
            followers.len(),
            followers.len()
        ),
        Timing::Took(started.elapsed()),
    ));
    progress(&steps[steps.len() - 1].line());

    let mut channels: Vec<String> = followers
        .iter()
        .map(|f| updates_channel(&f.to_string()))
        .collect();
    channels.push(notification_channel(author));
    let realtime = Realtime::subscribe(&target.redis_url, &channels).await?;
    let media_topic = target
        .deps
        .catalog
        .event("video.uploaded")
        .and_then(|e| e.topic.clone())
        .context("video.uploaded has no topic in the catalog")?;
    let tail = Tail::start(&target.kafka, &media_topic).await?;
    steps.push(Step::new(
        "0",
        format!(
            "subscribed to feed:updates:{{follower}} x{} and notification:sent:{{author}}; tailing {media_topic}",
            followers.len()
        ),
        Timing::None,
    ));
    progress(&steps[steps.len() - 1].line());

    // STEP 1–3: the upload.
    let correlation_id = format!("video-post-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let author_text = author.to_string();
    let upload = Upload {
        clip: &clip,
        filename: "sunset.mp4",
        content_type: "video/mp4",
        caption: &plan.caption,
        hashtags: &plan.hashtags,
        author_id: &author_text,
        correlation_id: &correlation_id,
    };
    let sent_at_ms = epoch_ms();
    let t0 = Instant::now();
    let reply = target.ingest.upload(&upload).await?;
    if reply.status != 202 {
        bail!(
            "STEP 1: POST /v1/videos answered {} (expected 202): {}{}",
            reply.status,
            reply.body,
            crate::ingest::token_hint(reply.status)
        );
    }
    let video_id = reply.body["videoId"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .with_context(|| format!("STEP 3: the 202 carries no videoId: {}", reply.body))?;
    progress(&format!(
        "{}  POST /v1/videos → 202 {} (video {video_id})",
        at(reply.latency),
        reply.body["status"].as_str().unwrap_or("?")
    ));

    // STEP 4–7: watch until everything has happened.
    let deadline = t0 + plan.within;
    let mut seen = Seen {
        feeds: vec![None; followers.len()],
        feed_messages: vec![None; followers.len()],
        ..Seen::default()
    };
    let mut printed_records = 0;
    let mut post_id: Option<Uuid> = None;
    let mut video: Option<VideoRow>;
    loop {
        let now = t0.elapsed();
        video = load_video(pool, video_id).await?;
        if let Some(row) = &video {
            post_id = Some(row.post_id);
            if seen.row.is_none() {
                seen.row = Some(now);
                progress(&format!(
                    "{}  transcoder: videos row {} ({}x{}, {} ms)",
                    at(now),
                    row.status,
                    row.width.unwrap_or(0),
                    row.height.unwrap_or(0),
                    row.duration_ms.unwrap_or(0)
                ));
            }
            if row.status == "FAILED" || (row.status == "UPLOADED" && row.failure_kind.is_some()) {
                bail!(
                    "STEP 6: video {video_id} FAILED: {} — {}",
                    row.failure_kind.as_deref().unwrap_or("?"),
                    row.failure_reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                );
            }
            if seen.thumbnail.is_none() && row.thumbnail_url.is_some() {
                seen.thumbnail = Some(now);
                progress(&format!(
                    "{}  video-publisher recorded the thumbnail",
                    at(now)
                ));
            }
            if seen.renditions.is_none() && row.master_playlist_url.is_some() {
                seen.renditions = Some(now);
                progress(&format!(
                    "{}  video-publisher recorded the renditions ({})",
                    at(now),
                    row.rendition_names().join(", ")
                ));
            }
            if seen.published.is_none() && row.status == "PUBLISHED" {
                seen.published = Some(now);
                progress(&format!("{}  video-publisher: status PUBLISHED", at(now)));
            }
        }
        if seen.published.is_some()
            && seen.notification.is_none()
            && load_notification(pool, author, video_id).await?.is_some()
        {
            seen.notification = Some(now);
            progress(&format!(
                "{}  notifier: \"{LIVE_TITLE}\" stored for the author",
                at(now)
            ));
        }
        if let (Some(post), true) = (post_id, seen.published.is_some()) {
            for (i, follower) in followers.iter().enumerate() {
                if seen.feeds[i].is_none() && feed_score(target, *follower, post).await?.is_some() {
                    seen.feeds[i] = Some(now);
                    progress(&format!(
                        "{}  feed-fanout: post in the feed of follower {}",
                        at(now),
                        i + 1
                    ));
                }
            }
        }
        for message in realtime.received() {
            let Some(m) = &message.message else { continue };
            let about_video = m.data["videoId"].as_str() == Some(&video_id.to_string())
                || m.data["entityId"].as_str() == Some(&video_id.to_string());
            if !about_video {
                continue;
            }
            if let Some(i) = followers
                .iter()
                .position(|f| message.channel == updates_channel(&f.to_string()))
            {
                if seen.feed_messages[i].is_none() && m.event_type == "video.published" {
                    progress(&format!(
                        "{}  realtime: {} received {}",
                        at(message.at.saturating_duration_since(t0)),
                        message.channel,
                        m.event_type
                    ));
                    seen.feed_messages[i] = Some(message.clone());
                }
            } else if message.channel == notification_channel(author)
                && seen.author_message.is_none()
                && m.event_type == "notification.sent"
                && m.data["kind"].as_str() == Some(LIVE_KIND)
            {
                progress(&format!(
                    "{}  realtime: {} received \"{}\"",
                    at(message.at.saturating_duration_since(t0)),
                    message.channel,
                    m.data["title"].as_str().unwrap_or("")
                ));
                seen.author_message = Some(message.clone());
            }
        }
        let records = tail.records();
        for record in records.iter().skip(printed_records) {
            if record.key.as_deref() == Some(&video_id.to_string()) {
                progress(&format!(
                    "{}  kafka {media_topic}: {}",
                    at(since(record, sent_at_ms).unwrap_or_default()),
                    record.event_type.as_deref().unwrap_or("?")
                ));
            }
        }
        printed_records = records.len();

        let missing = missing(&seen, &followers);
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let status = video
                .as_ref()
                .map(|v| format!("the videos row says {}", v.status))
                .unwrap_or_else(|| "there is no videos row".into());
            bail!(
                "not within {:?} of the upload ({status}): {}",
                plan.within,
                missing.join("; ")
            );
        }
        tokio::time::sleep(plan.poll).await;
    }
    let video = video.context("videos row")?;
    let post = video.post_id;

    // What the read side serves, read back.
    let master = video
        .master_playlist_url
        .clone()
        .context("no master playlist URL")?;
    let playlist = probe_playlist(&master)
        .await
        .with_context(|| format!("STEP 7: ffprobe cannot read the master playlist {master}"))?;
    let thumbnail_url = video.thumbnail_url.clone().context("no thumbnail URL")?;
    let thumbnail = probe_image(&thumbnail_url)
        .await
        .with_context(|| format!("STEP 6: ffprobe cannot read the thumbnail {thumbnail_url}"))?;
    let stored_original = match &target.object_store {
        Some(dir) => Some(stored_size(dir, &video.source_key).await?),
        None => None,
    };
    let notification = load_notification(pool, author, video_id)
        .await?
        .context("notification row")?;
    let mut feed_scores = Vec::new();
    for follower in &followers {
        let score = feed_score(target, *follower, post)
            .await?
            .context("feed score")?;
        feed_scores.push((*follower, score));
    }

    // The media events of this video, once video.published is among them (it was committed
    // before feed-fanout could act on it, so it is at most a fetch away).
    let tail_deadline = Instant::now() + Duration::from_secs(10);
    let media_events = loop {
        let events: Vec<(String, Option<Duration>)> = tail
            .records()
            .iter()
            .filter(|r| r.key.as_deref() == Some(&video_id.to_string()))
            .map(|r| {
                (
                    r.event_type.clone().unwrap_or_default(),
                    since(r, sent_at_ms),
                )
            })
            .collect();
        if events.iter().any(|(t, _)| t == "video.published") || Instant::now() > tail_deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let feed_messages: Vec<Received> = seen.feed_messages.iter().flatten().cloned().collect();
    let author_message = seen.author_message.clone().context("author message")?;
    let mut outcome = Outcome {
        author,
        followers,
        clip_bytes: clip.len(),
        correlation_id,
        upload: reply,
        video_id,
        video,
        stored_original,
        playlist,
        thumbnail,
        notification,
        feed_scores,
        feed_messages,
        author_message,
        media_events,
        steps,
    };
    let table = crate::report::steps(&outcome, &seen_times(&seen, t0));
    outcome.steps.extend(table);
    Ok(outcome)
}

/// Observation times handed to the report.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub row: Option<Duration>,
    pub thumbnail: Option<Duration>,
    pub renditions: Option<Duration>,
    pub published: Option<Duration>,
    pub notification: Option<Duration>,
    /// When the last follower's feed held the post.
    pub feeds: Option<Duration>,
    /// When the last follower's feed:updates message arrived.
    pub feed_messages: Option<Duration>,
    pub author_message: Option<Duration>,
}

fn seen_times(seen: &Seen, t0: Instant) -> Observed {
    Observed {
        row: seen.row,
        thumbnail: seen.thumbnail,
        renditions: seen.renditions,
        published: seen.published,
        notification: seen.notification,
        feeds: seen.feeds.iter().flatten().max().copied(),
        feed_messages: seen
            .feed_messages
            .iter()
            .flatten()
            .map(|m| m.at.saturating_duration_since(t0))
            .max(),
        author_message: seen
            .author_message
            .as_ref()
            .map(|m| m.at.saturating_duration_since(t0)),
    }
}

/// What has not happened yet, with the group that owes it.
fn missing(seen: &Seen, followers: &[Uuid]) -> Vec<String> {
    let mut missing = Vec::new();
    if seen.row.is_none() {
        missing.push("no videos row (transcoder handles video.uploaded)".to_string());
    }
    if seen.thumbnail.is_none() {
        missing.push(
            "no thumbnail recorded (thumbnailer, then video-publisher on thumbnail.generation.completed)"
                .into(),
        );
    }
    if seen.renditions.is_none() {
        missing.push(
            "no renditions recorded (transcoder, then video-publisher on video.transcode.completed)"
                .into(),
        );
    }
    if seen.published.is_none() {
        missing.push("not PUBLISHED (video-publisher)".into());
    }
    if seen.notification.is_none() {
        missing.push(format!(
            "no \"{LIVE_TITLE}\" notification row for the author (notifier on video.published)"
        ));
    }
    for (i, follower) in followers.iter().enumerate() {
        if seen.feeds[i].is_none() {
            missing.push(format!(
                "post not in the feed of follower {follower} (feed-fanout on video.published)"
            ));
        }
        if seen.feed_messages[i].is_none() {
            missing.push(format!(
                "no video.published message on {} (feed-fanout)",
                updates_channel(&follower.to_string())
            ));
        }
    }
    if seen.author_message.is_none() {
        missing.push(
            "no notification.sent message for the author (notifier's in-app delivery)".into(),
        );
    }
    missing
}

/// `user.created` for everyone, then each follower's `user.followed` of the author.
fn people(author: Uuid, followers: &[Uuid]) -> Vec<Value> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let user = |id: Uuid, name: &str| {
        let handle = format!("{name}_{}", &id.simple().to_string()[..8]);
        json!({
            "type": "user.created",
            "data": {
                "userId": id.to_string(),
                "username": handle,
                "displayName": name,
                "email": format!("{handle}@example.com"),
                "signupMethod": "EMAIL",
                "locale": "ar-EG",
                "countryCode": "EG",
                "createdAt": now,
            }
        })
    };
    let mut events = vec![user(author, "Ahmed")];
    for (i, follower) in followers.iter().enumerate() {
        events.push(user(*follower, &format!("follower{}", i + 1)));
    }
    for follower in followers {
        events.push(json!({
            "type": "user.followed",
            "data": {
                "followerId": follower.to_string(),
                "followeeId": author.to_string(),
                "followedAt": now,
            }
        }));
    }
    events
}

/// Waits until every profile exists and every follow is active, as feed-fanout will read them.
async fn wait_for_graph(
    pool: &PgPool,
    author: Uuid,
    followers: &[Uuid],
    plan: &Plan,
) -> anyhow::Result<()> {
    let mut everyone = followers.to_vec();
    everyone.push(author);
    let deadline = Instant::now() + plan.within;
    loop {
        let profiles: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM user_profiles WHERE user_id = ANY($1) AND created_at IS NOT NULL",
        )
        .bind(&everyone)
        .fetch_one(pool)
        .await
        .context("reading user_profiles")?;
        let follows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM user_follows \
             WHERE followee_id = $1 AND follower_id = ANY($2) AND active",
        )
        .bind(author)
        .bind(followers)
        .fetch_one(pool)
        .await
        .context("reading user_follows")?;
        if profiles == everyone.len() as i64 && follows == followers.len() as i64 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "set-up: user-lifecycle projected {profiles} of {} profiles and {follows} of {} \
                 follows within {:?}",
                everyone.len(),
                followers.len(),
                plan.within
            );
        }
        tokio::time::sleep(plan.poll.max(Duration::from_millis(50))).await;
    }
}

async fn load_video(pool: &PgPool, video_id: Uuid) -> anyhow::Result<Option<VideoRow>> {
    sqlx::query_as(
        "SELECT status, author_id, post_id, source_key, size_bytes, caption, hashtags, width, \
           height, duration_ms, renditions::text AS renditions, master_playlist_url, \
           thumbnail_url, thumbnail_width, thumbnail_height, failure_kind, failure_reason, \
           published_at \
         FROM videos WHERE id = $1",
    )
    .bind(video_id)
    .fetch_optional(pool)
    .await
    .context("reading videos")
}

async fn load_notification(
    pool: &PgPool,
    author: Uuid,
    video_id: Uuid,
) -> anyhow::Result<Option<NotificationRow>> {
    sqlx::query_as(
        "SELECT id, kind, title, body, entity_id, delivered_channels FROM notifications \
         WHERE user_id = $1 AND kind = $2 AND entity_id = $3",
    )
    .bind(author)
    .bind(LIVE_KIND)
    .bind(video_id)
    .fetch_optional(pool)
    .await
    .context("reading notifications")
}

/// The post's score in a follower's feed (feed-fanout's sorted set), if it is there.
async fn feed_score(target: &Target, follower: Uuid, post: Uuid) -> anyhow::Result<Option<f64>> {
    let mut redis = target.deps.redis.clone();
    redis::cmd("ZSCORE")
        .arg(feed_key(&target.deps, &follower.to_string()))
        .arg(post.to_string())
        .query_async(&mut redis)
        .await
        .context("reading a feed from Redis")
}

/// The size of the stored original in a local object store.
async fn stored_size(dir: &Path, key: &str) -> anyhow::Result<u64> {
    let path = dir.join(key);
    let metadata = tokio::fs::metadata(&path).await.with_context(|| {
        format!(
            "STEP 3: the original is not in the object store: {}",
            path.display()
        )
    })?;
    Ok(metadata.len())
}

async fn ffprobe(target: &str) -> anyhow::Result<Value> {
    let output = tokio::process::Command::new("ffprobe")
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
        .await
        .context("ffprobe could not be started")?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    serde_json::from_slice(&output.stdout).context("ffprobe output")
}

async fn probe_playlist(url: &str) -> anyhow::Result<PlaylistProbe> {
    let probe = ffprobe(url).await?;
    let streams = probe["streams"].as_array().cloned().unwrap_or_default();
    let mut video: Vec<(i64, i64)> = streams
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .filter_map(|s| Some((s["width"].as_i64()?, s["height"].as_i64()?)))
        .collect();
    video.sort_by(|a, b| b.cmp(a));
    video.dedup();
    Ok(PlaylistProbe {
        video,
        audio_streams: streams
            .iter()
            .filter(|s| s["codec_type"] == "audio")
            .count(),
        duration_secs: probe["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok()),
    })
}

async fn probe_image(url: &str) -> anyhow::Result<(i64, i64)> {
    let probe = ffprobe(url).await?;
    let stream = &probe["streams"][0];
    match (stream["width"].as_i64(), stream["height"].as_i64()) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => bail!("no image stream"),
    }
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A record's producer time since the upload was sent (zero if it predates it by clock skew).
fn since(record: &Record, sent_at_ms: i64) -> Option<Duration> {
    record
        .timestamp_ms
        .map(|ts| Duration::from_millis(u64::try_from(ts - sent_at_ms).unwrap_or(0)))
}

/// `+1 234 ms`, right-aligned for the progress lines.
fn at(d: Duration) -> String {
    format!("{:>9}", format!("+{}", crate::report::ms(d)))
}

/// A byte count in KiB.
pub fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}
