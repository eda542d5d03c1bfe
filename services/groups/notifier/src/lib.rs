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

use chrono::{DateTime, SecondsFormat, Utc};
use circulatory::consumer::{exactly_once, Applied, ConsumerGroup, Context, Event, HandlerError};
use circulatory_groups::runner::Registered;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;
use circulatory_groups::runner::NoOptions;

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
            "notification.created",
            (deps.clone(), adapters),
            |(deps, adapters), e, ctx| notification_created(deps, adapters, e, ctx),
        )
        .handler_with("notification.read", deps.clone(), |deps, e, _| {
            notification_read(deps, e)
        })
        .handler("comment.added", derived::comment_added)
        .handler("like.added", derived::like_added)
        .handler("user.followed", derived::user_followed)
        .handler("payment.completed", derived::payment_completed)
        .handler("video.published", derived::video_published)
}

/// The realtime channel of a user's delivered notifications (topics.yaml `realtime`).
pub fn notification_channel(user_id: Uuid) -> String {
    format!("notification:sent:{user_id}")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationCreated {
    notification_id: Uuid,
    user_id: Uuid,
    kind: String,
    title: String,
    body: String,
    actor_id: Option<Uuid>,
    entity_id: Option<Uuid>,
    channels: Vec<String>,
    created_at: DateTime<Utc>,
}

async fn notification_created(
    deps: Deps,
    adapters: Adapters,
    event: Event,
    ctx: Context,
) -> Result<(), HandlerError> {
    let p: NotificationCreated = event.payload()?;
    // Unknown channel names read as IN_APP, as the schema says.
    let requested: Vec<Channel> = p
        .channels
        .iter()
        .map(|c| Channel::parse(c).unwrap_or(Channel::InApp))
        .collect();
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
    let sent_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    for channel in channels {
        if let Some(adapter) = adapters.for_channel(channel) {
            adapter
                .deliver(&Delivery {
                    notification_id: p.notification_id,
                    user_id: p.user_id,
                    channel,
                    kind: p.kind.clone(),
                    title: p.title.clone(),
                    body: p.body.clone(),
                    actor_id: p.actor_id,
                    entity_id: p.entity_id,
                })
                .await?;
        }
        let sent = json!({
            "notificationId": p.notification_id.to_string(),
            "userId": p.user_id.to_string(),
            "kind": p.kind,
            "title": p.title,
            "body": p.body,
            "actorId": p.actor_id.map(|id| id.to_string()),
            "entityId": p.entity_id.map(|id| id.to_string()),
            "channel": channel.as_str(),
            "sentAt": sent_at,
        });
        if channel == Channel::InApp {
            ctx.broadcast(
                notification_channel(p.user_id),
                "notification.sent",
                sent.clone(),
            );
        }
        ctx.emit("notification.sent", sent);
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
    let requested: Vec<&str> = n.channels.iter().map(String::as_str).collect();
    let delivered: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, title, body, actor_id, entity_id, channels, \
                                    delivered_channels, created_at, event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(n.notification_id)
    .bind(n.user_id)
    .bind(&n.kind)
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationRead {
    notification_id: Uuid,
    user_id: Uuid,
    read_at: DateTime<Utc>,
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
