//! `notifier`: stores and delivers notifications, and creates them from activity.
//!
//! - `notification.created` → a `notifications` row (the inbox, id = the notification id), then
//!   delivery on each chosen channel: in-app is a realtime broadcast on
//!   `notification:sent:{userId}`, push and email go through their [`delivery::Deliver`] adapter;
//!   each delivery emits `notification.sent`.
//! - `notification.read` → `read_at` on the row (the earliest read wins).
//! - `comment.added`, `like.added`, `user.followed`, `payment.completed`, `video.published` →
//!   a `notification.created` for the user concerned ([`derived`]), never for one's own action.
//!
//! The inbox row commits exactly once with the event (`processed_events`); deliveries and emitted
//! events come after the commit and are at least once: when an attempt fails after the commit,
//! the retry finds the event processed, reads the channels chosen then and hands the same
//! deliveries over again (adapters are idempotent, emitted ids are the same).

pub mod delivery;
pub mod derived;

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, Applied, ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{
    CommentAdded, EventPayload, LikeAdded, NotificationCreated, NotificationKind, NotificationRead,
    NotificationSent, NotificationSentKind, PaymentCompleted, UserFollowed, VideoPublished,
};
use circulatory_group_common::runner::Registered;
use sqlx::PgConnection;
use uuid::Uuid;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;
use circulatory_group_common::runner::NoOptions;

use crate::delivery::{choose_channels, Adapters, Channel, Delivery, Preferences};

pub const GROUP: &str = "notifier";

/// The group with push and email delivered through the outbox.
pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(register_with(
        consumer,
        deps,
        Adapters::outbox(deps.pool.clone()),
    ))
}

/// The group with the given channel adapters.
pub fn register_with(consumer: ConsumerGroup, deps: &Deps, adapters: Adapters) -> ConsumerGroup {
    consumer
        .handler_with(
            NotificationCreated::EVENT_TYPE,
            (deps.clone(), adapters),
            |(deps, adapters), e, ctx| notification_created(deps, adapters, e, ctx),
        )
        .handler_with(NotificationRead::EVENT_TYPE, deps.clone(), |deps, e, _| {
            notification_read(deps, e)
        })
        .handler(CommentAdded::EVENT_TYPE, derived::comment_added)
        .handler(LikeAdded::EVENT_TYPE, derived::like_added)
        .handler(UserFollowed::EVENT_TYPE, derived::user_followed)
        .handler(PaymentCompleted::EVENT_TYPE, derived::payment_completed)
        .handler(VideoPublished::EVENT_TYPE, derived::video_published)
}

/// The realtime channel of a user's delivered notifications (topics.yaml `realtime`).
pub fn notification_channel(user_id: Uuid) -> String {
    format!("notification:sent:{user_id}")
}

/// The kind of a notification, as `notification.sent` names it (the same symbols).
fn sent_kind(kind: NotificationKind) -> NotificationSentKind {
    match kind {
        NotificationKind::Follow => NotificationSentKind::Follow,
        NotificationKind::Like => NotificationSentKind::Like,
        NotificationKind::Comment => NotificationSentKind::Comment,
        NotificationKind::Mention => NotificationSentKind::Mention,
        NotificationKind::Share => NotificationSentKind::Share,
        NotificationKind::Message => NotificationSentKind::Message,
        NotificationKind::Payment => NotificationSentKind::Payment,
        NotificationKind::VideoProcessing => NotificationSentKind::VideoProcessing,
        NotificationKind::VideoPublished => NotificationSentKind::VideoPublished,
        NotificationKind::Moderation => NotificationSentKind::Moderation,
        NotificationKind::System => NotificationSentKind::System,
        NotificationKind::Other => NotificationSentKind::Other,
    }
}

/// The `notification.sent` of `n`'s delivery on `channel` at `sent_at`.
fn sent_event(
    n: &NotificationCreated,
    channel: Channel,
    sent_at: DateTime<Utc>,
) -> NotificationSent {
    NotificationSent {
        notification_id: n.notification_id,
        user_id: n.user_id,
        kind: sent_kind(n.kind),
        title: n.title.clone(),
        body: n.body.clone(),
        actor_id: n.actor_id,
        entity_id: n.entity_id,
        channel: channel.sent(),
        sent_at,
    }
}

async fn notification_created(
    deps: Deps,
    adapters: Adapters,
    event: Event,
    ctx: Context,
) -> Result<(), HandlerError> {
    let p: NotificationCreated = event.payload()?;
    // Unknown channel names read as IN_APP, as the schema says (the codec does it).
    let requested: Vec<Channel> = p.channels.iter().copied().map(Channel::from).collect();
    let (row, event_id) = (p.clone(), event.id().to_string());
    let stored = exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            let channels = choose_channels(&requested, preferences(tx, row.user_id).await?);
            let inserted = store(tx, &row, &channels, &event_id).await?;
            Ok(inserted.then_some(channels))
        })
    })
    .await?;
    let channels = match stored {
        Applied::Now(Some(channels)) => channels,
        // Another event with this notification id stored it; that event delivers it.
        Applied::Now(None) => return Ok(()),
        Applied::AlreadyDone => match stored_channels(&deps, &p, event.id()).await? {
            Some(channels) => channels,
            None => return Ok(()),
        },
    };
    // Avro timestamps carry milliseconds: the broadcast says what the event does.
    let sent_at =
        DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now);
    for channel in channels {
        if let Some(adapter) = adapters.for_channel(channel) {
            adapter
                .deliver(&Delivery {
                    notification_id: p.notification_id,
                    user_id: p.user_id,
                    channel,
                    kind: p.kind,
                    title: p.title.clone(),
                    body: p.body.clone(),
                    actor_id: p.actor_id,
                    entity_id: p.entity_id,
                })
                .await?;
        }
        let sent = sent_event(&p, channel, sent_at);
        if channel == Channel::InApp {
            ctx.broadcast(
                notification_channel(p.user_id),
                NotificationSent::EVENT_TYPE,
                serde_json::to_value(&sent).expect("a generated payload is JSON"),
            );
        }
        ctx.emit(sent);
    }
    Ok(())
}

/// The recipient's channel switches, from the settings user-lifecycle keeps.
async fn preferences(tx: &mut PgConnection, user_id: Uuid) -> Result<Preferences, HandlerError> {
    let row: Option<(bool, bool)> =
        sqlx::query_as("SELECT push_enabled, email_enabled FROM user_settings WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    Ok(
        row.map_or_else(Preferences::default, |(push, email)| Preferences {
            push,
            email,
        }),
    )
}

/// Inserts the inbox row; false when a row with this notification id already exists.
async fn store(
    tx: &mut PgConnection,
    n: &NotificationCreated,
    channels: &[Channel],
    event_id: &str,
) -> Result<bool, HandlerError> {
    let requested: Vec<&str> = n.channels.iter().map(|c| c.as_str()).collect();
    let delivered: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, title, body, actor_id, entity_id, channels, \
                                    delivered_channels, created_at, event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(n.notification_id)
    .bind(n.user_id)
    .bind(n.kind.as_str())
    .bind(&n.title)
    .bind(&n.body)
    .bind(n.actor_id)
    .bind(n.entity_id)
    .bind(&requested)
    .bind(&delivered)
    .bind(n.created_at)
    .bind(event_id)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(inserted == 1)
}

/// The channels chosen when this event stored the notification; None when another event did.
async fn stored_channels(
    deps: &Deps,
    n: &NotificationCreated,
    event_id: &str,
) -> Result<Option<Vec<Channel>>, HandlerError> {
    let row: Option<(Vec<String>,)> = sqlx::query_as(
        "SELECT delivered_channels FROM notifications WHERE id = $1 AND event_id = $2",
    )
    .bind(n.notification_id)
    .bind(event_id)
    .fetch_optional(&deps.pool)
    .await
    .map_err(db)?;
    Ok(row.map(|(names,)| names.iter().filter_map(|c| Channel::parse(c)).collect()))
}

async fn notification_read(deps: Deps, event: Event) -> Result<(), HandlerError> {
    let p: NotificationRead = event.payload()?;
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            let owner: Option<(Uuid,)> =
                sqlx::query_as("SELECT user_id FROM notifications WHERE id = $1 FOR UPDATE")
                    .bind(p.notification_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            match owner {
                // Its notification.created may still be on its way (or in a retry): try later.
                None => {
                    return Err(HandlerError::retryable(format!(
                        "notification {} is not stored yet",
                        p.notification_id
                    )))
                }
                Some((owner,)) if owner != p.user_id => {
                    return Err(HandlerError::permanent(format!(
                        "notification {} belongs to another user",
                        p.notification_id
                    )))
                }
                Some(_) => {}
            }
            sqlx::query("UPDATE notifications SET read_at = LEAST(read_at, $2) WHERE id = $1")
                .bind(p.notification_id)
                .bind(p.read_at)
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

    use circulatory::events::{NotificationChannel, NotificationSentChannel};

    #[test]
    fn a_delivery_is_announced_with_the_notification_s_kind_and_its_channel() {
        for kind in NotificationKind::ALL {
            assert_eq!(sent_kind(*kind).as_str(), kind.as_str());
        }
        let n = NotificationCreated {
            notification_id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(2),
            kind: NotificationKind::Like,
            title: "New like".into(),
            body: "Your post got a new like.".into(),
            actor_id: Some(Uuid::from_u128(3)),
            entity_id: None,
            channels: vec![NotificationChannel::InApp, NotificationChannel::Push],
            created_at: Utc::now(),
        };
        let at = DateTime::from_timestamp_millis(1_795_773_600_123).expect("in range");
        assert_eq!(
            sent_event(&n, Channel::Push, at),
            NotificationSent {
                notification_id: n.notification_id,
                user_id: n.user_id,
                kind: NotificationSentKind::Like,
                title: "New like".into(),
                body: "Your post got a new like.".into(),
                actor_id: n.actor_id,
                entity_id: None,
                channel: NotificationSentChannel::Push,
                sent_at: at,
            }
        );
    }
}
