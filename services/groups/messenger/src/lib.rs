//! `messenger`: direct messages and their receipts.
//!
//! - `message.sent` → a `messages` row (status SENT) and a realtime broadcast of the message on
//!   the recipient's `message:received:{recipientId}`; when the recipient is offline, a
//!   `notification.created` (kind MESSAGE) for them.
//! - `message.delivered` / `message.read` → the message's status, which only moves forward
//!   (SENT < DELIVERED < READ); a read covers the earlier unread messages of that sender in the
//!   conversation too. A receipt that moves a status forward is broadcast to the sender on
//!   `message:received:{senderId}` (topics.yaml has no receipt channel).
//!
//! Presence is the realtime gateway's: the Redis key `circ:<namespace>:presence:<userId>` exists
//! while the user is online. The decision taken when a message is stored is kept on its row, so
//! a redelivery emits the same notification or none, whatever the presence is by then.

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, Applied, ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{
    EventPayload, MessageDelivered, MessageRead, MessageSent, NotificationChannel,
    NotificationCreated, NotificationKind,
};
use circulatory_group_common::runner::Registered;
use sqlx::PgConnection;
use uuid::Uuid;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::{db, redis_error};
use circulatory_group_common::runner::NoOptions;

pub const GROUP: &str = "messenger";

/// Most earlier messages one read receipt marks read; older unread ones stay as they are.
const READ_BATCH: i64 = 500;

/// Longest excerpt of a message in its notification, in characters.
const PREVIEW_CHARS: usize = 100;

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(MessageSent::EVENT_TYPE, deps.clone(), message_sent)
        .handler_with(
            MessageDelivered::EVENT_TYPE,
            deps.clone(),
            message_delivered,
        )
        .handler_with(MessageRead::EVENT_TYPE, deps.clone(), message_read))
}

/// The realtime channel of what a user receives (topics.yaml `realtime`).
pub fn received_channel(user_id: Uuid) -> String {
    format!("message:received:{user_id}")
}

/// Id of the notification about a message received while offline.
pub fn offline_notification_id(message_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("circulatory/notification/message/{message_id}").as_bytes(),
    )
}

/// The notification of `m`'s recipient when they were offline as it was stored.
fn offline_notification(m: &MessageSent) -> NotificationCreated {
    NotificationCreated {
        notification_id: offline_notification_id(m.message_id),
        user_id: m.recipient_id,
        kind: NotificationKind::Message,
        title: "New message".into(),
        body: preview(&m.body, PREVIEW_CHARS),
        actor_id: Some(m.sender_id),
        entity_id: Some(m.conversation_id),
        channels: vec![NotificationChannel::InApp, NotificationChannel::Push],
        created_at: m.sent_at,
    }
}

async fn message_sent(deps: Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: MessageSent = event.payload()?;
    let offline = !online(&deps, p.recipient_id).await?;
    let (row, event_id) = (p.clone(), event.id().to_string());
    let stored = exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { store(tx, &row, offline, &event_id).await })
    })
    .await?;
    let offline = match stored {
        Applied::Now(true) => offline,
        // Another event with this message id stored it and does the rest.
        Applied::Now(false) => return Ok(()),
        // Stored by an earlier delivery of this event, which may have failed after the commit:
        // do the rest again, with the decision taken then.
        Applied::AlreadyDone => {
            let row: Option<(bool,)> = sqlx::query_as(
                "SELECT recipient_was_offline FROM messages WHERE id = $1 AND event_id = $2",
            )
            .bind(p.message_id)
            .bind(event.id())
            .fetch_optional(&deps.pool)
            .await
            .map_err(db)?;
            match row {
                Some((offline,)) => offline,
                None => return Ok(()),
            }
        }
    };
    ctx.broadcast(
        received_channel(p.recipient_id),
        MessageSent::EVENT_TYPE,
        event.data.clone(),
    );
    if offline {
        ctx.emit(offline_notification(&p));
    }
    Ok(())
}

/// Whether the user has a live presence key.
async fn online(deps: &Deps, user_id: Uuid) -> Result<bool, HandlerError> {
    let mut redis = deps.redis.clone();
    redis::cmd("EXISTS")
        .arg(deps.redis_key(&format!("presence:{user_id}")))
        .query_async::<bool>(&mut redis)
        .await
        .map_err(redis_error)
}

/// Inserts the message; false when a message with this id already exists.
async fn store(
    tx: &mut PgConnection,
    m: &MessageSent,
    recipient_offline: bool,
    event_id: &str,
) -> Result<bool, HandlerError> {
    let inserted = sqlx::query(
        "INSERT INTO messages (id, conversation_id, sender_id, recipient_id, body, \
                               reply_to_message_id, status, sent_at, recipient_was_offline, \
                               event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, 'SENT', $7, $8, $9) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(m.message_id)
    .bind(m.conversation_id)
    .bind(m.sender_id)
    .bind(m.recipient_id)
    .bind(&m.body)
    .bind(m.reply_to_message_id)
    .bind(m.sent_at)
    .bind(recipient_offline)
    .bind(event_id)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(inserted == 1)
}

/// A stored message, locked for a receipt.
struct Stored {
    conversation_id: Uuid,
    sender_id: Uuid,
    recipient_id: Uuid,
    status: String,
    sent_at: DateTime<Utc>,
}

/// Locks the receipt's message and checks the receipt names its conversation and participants.
async fn lock_message(
    tx: &mut PgConnection,
    message_id: Uuid,
    conversation_id: Uuid,
    sender_id: Uuid,
    recipient_id: Uuid,
) -> Result<Stored, HandlerError> {
    let row: Option<(Uuid, Uuid, Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT conversation_id, sender_id, recipient_id, status, sent_at FROM messages \
         WHERE id = $1 FOR UPDATE",
    )
    .bind(message_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    // Its message.sent may still be on its way (or in a retry): try later.
    let (conversation, sender, recipient, status, sent_at) = row.ok_or_else(|| {
        HandlerError::retryable(format!("message {message_id} is not stored yet"))
    })?;
    if (conversation, sender, recipient) != (conversation_id, sender_id, recipient_id) {
        return Err(HandlerError::permanent(format!(
            "the receipt does not match message {message_id}'s conversation and participants"
        )));
    }
    Ok(Stored {
        conversation_id: conversation,
        sender_id: sender,
        recipient_id: recipient,
        status,
        sent_at,
    })
}

async fn message_delivered(deps: Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: MessageDelivered = event.payload()?;
    let sender = p.sender_id;
    let advanced = exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            let stored = lock_message(
                tx,
                p.message_id,
                p.conversation_id,
                p.sender_id,
                p.recipient_id,
            )
            .await?;
            // A late receipt still records the earliest delivery time, never a status change back.
            sqlx::query(
                "UPDATE messages \
                 SET status = CASE WHEN status = 'SENT' THEN 'DELIVERED' ELSE status END, \
                     delivered_at = LEAST(delivered_at, $2) \
                 WHERE id = $1",
            )
            .bind(p.message_id)
            .bind(p.delivered_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(stored.status == "SENT")
        })
    })
    .await?;
    if advanced == Applied::Now(true) {
        receipt(&ctx, &event, sender);
    }
    Ok(())
}

async fn message_read(deps: Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: MessageRead = event.payload()?;
    let sender = p.sender_id;
    let advanced = exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            let stored = lock_message(
                tx,
                p.message_id,
                p.conversation_id,
                p.sender_id,
                p.reader_id,
            )
            .await?;
            // This message and the sender's earlier unread ones in the conversation, newest
            // first, at most READ_BATCH of them.
            let marked = sqlx::query(
                "UPDATE messages \
                 SET status = 'READ', read_at = $5, delivered_at = LEAST(delivered_at, $5) \
                 WHERE id IN ( \
                     SELECT id FROM messages \
                     WHERE conversation_id = $1 AND sender_id = $2 AND recipient_id = $3 \
                       AND sent_at <= $4 AND status <> 'READ' \
                     ORDER BY sent_at DESC \
                     LIMIT $6 \
                     FOR UPDATE)",
            )
            .bind(stored.conversation_id)
            .bind(stored.sender_id)
            .bind(stored.recipient_id)
            .bind(stored.sent_at)
            .bind(p.read_at)
            .bind(READ_BATCH)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            Ok(marked > 0)
        })
    })
    .await?;
    if advanced == Applied::Now(true) {
        receipt(&ctx, &event, sender);
    }
    Ok(())
}

/// Tells the sender about a receipt (the receipt event as it came), on the channel of what they
/// receive.
fn receipt(ctx: &Context, event: &Event, sender: Uuid) {
    ctx.broadcast(
        received_channel(sender),
        event.event_type(),
        event.data.clone(),
    );
}

/// `text` trimmed, cut to `max_chars` characters with an ellipsis.
fn preview(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((cut, _)) => {
            let head: String = text[..cut]
                .chars()
                .take(max_chars.saturating_sub(1))
                .collect();
            format!("{}\u{2026}", head.trim_end())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_on_characters() {
        assert_eq!(preview(" hi ", 10), "hi");
        assert_eq!(preview("abcdefghijkl", 5), "abcd\u{2026}");
    }

    #[test]
    fn offline_notification_ids_follow_the_message() {
        let message = Uuid::new_v4();
        assert_eq!(
            offline_notification_id(message),
            offline_notification_id(message)
        );
        assert_ne!(
            offline_notification_id(message),
            offline_notification_id(Uuid::new_v4())
        );
    }

    #[test]
    fn an_offline_recipient_is_notified_of_the_message_by_its_sender() {
        let sent_at = DateTime::from_timestamp_millis(1_795_773_600_123).expect("in range");
        let m = MessageSent {
            message_id: Uuid::from_u128(1),
            conversation_id: Uuid::from_u128(2),
            sender_id: Uuid::from_u128(3),
            recipient_id: Uuid::from_u128(4),
            body: format!("  {}  ", "x".repeat(150)),
            reply_to_message_id: None,
            sent_at,
        };
        let n = offline_notification(&m);
        assert_eq!(n.notification_id, offline_notification_id(m.message_id));
        assert_eq!(n.user_id, m.recipient_id);
        assert_eq!(n.kind, NotificationKind::Message);
        assert_eq!(n.title, "New message");
        assert_eq!(n.body, format!("{}\u{2026}", "x".repeat(PREVIEW_CHARS - 1)));
        assert_eq!(n.actor_id, Some(m.sender_id));
        assert_eq!(n.entity_id, Some(m.conversation_id));
        assert_eq!(
            n.channels,
            vec![NotificationChannel::InApp, NotificationChannel::Push]
        );
        assert_eq!(n.created_at, sent_at);
    }
}
