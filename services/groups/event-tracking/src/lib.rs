//! `event-tracking`: the raw analytics trail. Every view, engagement, search, interest signal,
//! like, unlike and share becomes one row of `analytics_events` (the acting user, the entity acted
//! on, its author, when it happened, and the whole payload as JSONB), written exactly once per
//! event id and never changed. Aggregates are built elsewhere (`analytics-aggregation`) or by
//! queries over this table.
//!
//! topics.yaml gives this group a single attempt: a failure goes straight to its dead letters,
//! from where an operator replays it; replays and redeliveries add nothing twice.

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Event, HandlerError};
use circulatory_groups::runner::Registered;
use serde::Deserialize;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;
use circulatory_groups::runner::NoOptions;

pub const GROUP: &str = "event-tracking";

/// The event types this group records.
pub const TRACKED: [&str; 7] = [
    "video.viewed",
    "content.engagement",
    "search.performed",
    "user.interest",
    "like.added",
    "like.removed",
    "share.created",
];

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(TRACKED.iter().fold(consumer, |consumer, event_type| {
        consumer.handler_with(event_type, deps.clone(), |deps, e, _| async move {
            track(&deps, e).await
        })
    }))
}

/// What the columns of `analytics_events` hold for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedEvent {
    pub user_id: Option<String>,
    pub subject_kind: String,
    pub subject_id: Option<String>,
    pub author_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoViewed {
    video_id: String,
    author_id: String,
    viewer_id: Option<String>,
    viewed_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContentEngagement {
    content_id: String,
    content_kind: String,
    author_id: String,
    user_id: Option<String>,
    occurred_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchPerformed {
    user_id: String,
    performed_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserInterest {
    user_id: String,
    entity_id: Option<String>,
    observed_at: DateTime<Utc>,
}

/// like.added, like.removed and share.created: a user acting on a post.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostInteraction {
    post_id: String,
    user_id: String,
    post_author_id: String,
    #[serde(alias = "likedAt", alias = "removedAt", alias = "createdAt")]
    at: DateTime<Utc>,
}

impl TrackedEvent {
    /// Reads the columns from an event's payload; a payload that does not fit is permanent.
    pub fn of(event: &Event) -> Result<TrackedEvent, HandlerError> {
        Ok(match event.event_type() {
            "video.viewed" => {
                let p: VideoViewed = event.payload()?;
                TrackedEvent {
                    user_id: p.viewer_id,
                    subject_kind: "VIDEO".into(),
                    subject_id: Some(p.video_id),
                    author_id: Some(p.author_id),
                    occurred_at: p.viewed_at,
                }
            }
            "content.engagement" => {
                let p: ContentEngagement = event.payload()?;
                TrackedEvent {
                    user_id: p.user_id,
                    subject_kind: p.content_kind,
                    subject_id: Some(p.content_id),
                    author_id: Some(p.author_id),
                    occurred_at: p.occurred_at,
                }
            }
            "search.performed" => {
                let p: SearchPerformed = event.payload()?;
                TrackedEvent {
                    user_id: Some(p.user_id),
                    subject_kind: "SEARCH".into(),
                    subject_id: None,
                    author_id: None,
                    occurred_at: p.performed_at,
                }
            }
            "user.interest" => {
                let p: UserInterest = event.payload()?;
                TrackedEvent {
                    user_id: Some(p.user_id),
                    subject_kind: "CONTENT".into(),
                    subject_id: p.entity_id,
                    author_id: None,
                    occurred_at: p.observed_at,
                }
            }
            "like.added" | "like.removed" | "share.created" => {
                let p: PostInteraction = event.payload()?;
                TrackedEvent {
                    user_id: Some(p.user_id),
                    subject_kind: "POST".into(),
                    subject_id: Some(p.post_id),
                    author_id: Some(p.post_author_id),
                    occurred_at: p.at,
                }
            }
            other => {
                return Err(HandlerError::permanent(format!(
                    "{other} is not tracked by {GROUP}"
                )))
            }
        })
    }
}

async fn track(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let row = TrackedEvent::of(&event)?;
    let (event_id, event_type) = (event.id().to_string(), event.event_type().to_string());
    let payload = event.data.clone();
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            // The unique event id keeps the trail exact even after processed_events rows age out.
            sqlx::query(
                "INSERT INTO analytics_events (event_id, event_type, user_id, subject_kind, \
                                               subject_id, author_id, occurred_at, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event_id)
            .bind(event_type)
            .bind(row.user_id)
            .bind(row.subject_kind)
            .bind(row.subject_id)
            .bind(row.author_id)
            .bind(row.occurred_at)
            .bind(payload)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        })
    })
    .await
    .map(drop)
}
