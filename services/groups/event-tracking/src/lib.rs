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
use circulatory::events::{
    ContentEngagement, EventPayload, LikeAdded, LikeRemoved, SearchPerformed, ShareCreated,
    UserInterest, VideoViewed,
};
use circulatory_group_common::runner::Registered;
use sqlx::types::Uuid;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;
use circulatory_group_common::runner::NoOptions;

pub const GROUP: &str = "event-tracking";

/// The event types this group records.
pub const TRACKED: [&str; 7] = [
    VideoViewed::EVENT_TYPE,
    ContentEngagement::EVENT_TYPE,
    SearchPerformed::EVENT_TYPE,
    UserInterest::EVENT_TYPE,
    LikeAdded::EVENT_TYPE,
    LikeRemoved::EVENT_TYPE,
    ShareCreated::EVENT_TYPE,
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

impl TrackedEvent {
    /// Reads the columns from an event's payload; a payload that does not fit is permanent.
    pub fn of(event: &Event) -> Result<TrackedEvent, HandlerError> {
        Ok(match event.event_type() {
            VideoViewed::EVENT_TYPE => {
                let p: VideoViewed = event.payload()?;
                TrackedEvent {
                    user_id: p.viewer_id.map(|id| id.to_string()),
                    subject_kind: "VIDEO".into(),
                    subject_id: Some(p.video_id.to_string()),
                    author_id: Some(p.author_id.to_string()),
                    occurred_at: p.viewed_at,
                }
            }
            ContentEngagement::EVENT_TYPE => {
                let p: ContentEngagement = event.payload()?;
                TrackedEvent {
                    user_id: p.user_id.map(|id| id.to_string()),
                    subject_kind: p.content_kind.as_str().into(),
                    subject_id: Some(p.content_id.to_string()),
                    author_id: Some(p.author_id.to_string()),
                    occurred_at: p.occurred_at,
                }
            }
            SearchPerformed::EVENT_TYPE => {
                let p: SearchPerformed = event.payload()?;
                TrackedEvent {
                    user_id: Some(p.user_id.to_string()),
                    subject_kind: "SEARCH".into(),
                    subject_id: None,
                    author_id: None,
                    occurred_at: p.performed_at,
                }
            }
            UserInterest::EVENT_TYPE => {
                let p: UserInterest = event.payload()?;
                TrackedEvent {
                    user_id: Some(p.user_id.to_string()),
                    subject_kind: "CONTENT".into(),
                    subject_id: p.entity_id.map(|id| id.to_string()),
                    author_id: None,
                    occurred_at: p.observed_at,
                }
            }
            LikeAdded::EVENT_TYPE => {
                let p: LikeAdded = event.payload()?;
                TrackedEvent::on_post(p.user_id, p.post_id, p.post_author_id, p.liked_at)
            }
            LikeRemoved::EVENT_TYPE => {
                let p: LikeRemoved = event.payload()?;
                TrackedEvent::on_post(p.user_id, p.post_id, p.post_author_id, p.removed_at)
            }
            ShareCreated::EVENT_TYPE => {
                let p: ShareCreated = event.payload()?;
                TrackedEvent::on_post(p.user_id, p.post_id, p.post_author_id, p.created_at)
            }
            other => {
                return Err(HandlerError::permanent(format!(
                    "{other} is not tracked by {GROUP}"
                )))
            }
        })
    }

    /// like.added, like.removed and share.created: a user acting on a post.
    fn on_post(
        user_id: Uuid,
        post_id: Uuid,
        post_author_id: Uuid,
        at: DateTime<Utc>,
    ) -> TrackedEvent {
        TrackedEvent {
            user_id: Some(user_id.to_string()),
            subject_kind: "POST".into(),
            subject_id: Some(post_id.to_string()),
            author_id: Some(post_author_id.to_string()),
            occurred_at: at,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    use circulatory::consumer::testing::{event, event_of};
    use circulatory::events::{
        EngagementAction, EngagementContentKind, InterestSignal, SearchScope, ShareChannel,
        ViewPlatform, ViewSource,
    };

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn text(n: u128) -> Option<String> {
        Some(id(n).to_string())
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_796_358_334_123).expect("in range")
    }

    fn row(
        user: Option<String>,
        kind: &str,
        subject: Option<String>,
        author: Option<String>,
    ) -> TrackedEvent {
        TrackedEvent {
            user_id: user,
            subject_kind: kind.into(),
            subject_id: subject,
            author_id: author,
            occurred_at: at(),
        }
    }

    #[test]
    fn a_view_is_the_viewer_s_on_the_video() {
        let view = |viewer_id| VideoViewed {
            video_id: id(1),
            author_id: id(2),
            viewer_id,
            session_id: id(9),
            watch_time_ms: 5000,
            video_duration_ms: 10_000,
            completed: false,
            source: ViewSource::Feed,
            platform: ViewPlatform::Web,
            country_code: None,
            viewed_at: at(),
        };
        assert_eq!(
            TrackedEvent::of(&event_of(view(Some(id(3))))),
            Ok(row(text(3), "VIDEO", text(1), text(2)))
        );
        assert_eq!(
            TrackedEvent::of(&event_of(view(None))),
            Ok(row(None, "VIDEO", text(1), text(2))),
            "a signed-out view has no user"
        );
    }

    #[test]
    fn engagement_keeps_its_content_kind() {
        let engagement = ContentEngagement {
            content_id: id(1),
            content_kind: EngagementContentKind::Comment,
            author_id: id(2),
            user_id: Some(id(3)),
            action: EngagementAction::Click,
            dwell_time_ms: None,
            occurred_at: at(),
        };
        assert_eq!(
            TrackedEvent::of(&event_of(engagement)),
            Ok(row(text(3), "COMMENT", text(1), text(2)))
        );
    }

    #[test]
    fn searches_and_interests_name_the_user() {
        let search = SearchPerformed {
            user_id: id(3),
            query: "sunset".into(),
            scope: SearchScope::Videos,
            result_count: 3,
            performed_at: at(),
        };
        assert_eq!(
            TrackedEvent::of(&event_of(search)),
            Ok(row(text(3), "SEARCH", None, None))
        );
        let interest = UserInterest {
            user_id: id(3),
            signal: InterestSignal::Explicit,
            topics: vec!["travel".into()],
            weight: 0.8,
            entity_id: Some(id(1)),
            observed_at: at(),
        };
        assert_eq!(
            TrackedEvent::of(&event_of(interest)),
            Ok(row(text(3), "CONTENT", text(1), None))
        );
    }

    #[test]
    fn likes_unlikes_and_shares_are_on_the_post() {
        let expected = Ok(row(text(3), "POST", text(1), text(2)));
        let like = LikeAdded {
            post_id: id(1),
            user_id: id(3),
            post_author_id: id(2),
            liked_at: at(),
        };
        assert_eq!(TrackedEvent::of(&event_of(like)), expected);
        let unlike = LikeRemoved {
            post_id: id(1),
            user_id: id(3),
            post_author_id: id(2),
            removed_at: at(),
        };
        assert_eq!(TrackedEvent::of(&event_of(unlike)), expected);
        let share = ShareCreated {
            share_id: id(8),
            post_id: id(1),
            user_id: id(3),
            post_author_id: id(2),
            channel: ShareChannel::Repost,
            recipient_id: None,
            created_at: at(),
        };
        assert_eq!(TrackedEvent::of(&event_of(share)), expected);
    }

    #[test]
    fn untracked_types_and_unreadable_payloads_are_permanent() {
        let other = TrackedEvent::of(&event("post.created", serde_json::json!({})));
        assert!(
            matches!(other, Err(HandlerError::Permanent(_))),
            "{other:?}"
        );
        let broken = TrackedEvent::of(&event(
            "like.added",
            serde_json::json!({"postId": "p1", "userId": id(3), "postAuthorId": id(2),
                "likedAt": "2026-11-27T10:00:00Z"}),
        ));
        assert!(
            matches!(broken, Err(HandlerError::Permanent(_))),
            "{broken:?}"
        );
    }
}
