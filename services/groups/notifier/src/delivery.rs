//! Delivery channels. In-app delivery is the notifier's own (the inbox row and the realtime
//! broadcast); push and email go through a [`Deliver`] adapter each. The default adapter,
//! [`Outbox`], writes the delivery to `notification_outbox`, from where a relay hands it to the
//! provider; a provider adapter (FCM/APNs, SMTP, ...) implements [`Deliver`] and replaces it.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use circulatory::consumer::HandlerError;
use circulatory::events::{NotificationChannel, NotificationKind, NotificationSentChannel};
use circulatory_group_common::effects::db;

/// A delivery channel (`NotificationChannel` in the schemas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    InApp,
    Push,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "IN_APP",
            Channel::Push => "PUSH",
            Channel::Email => "EMAIL",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        match text {
            "IN_APP" => Some(Channel::InApp),
            "PUSH" => Some(Channel::Push),
            "EMAIL" => Some(Channel::Email),
            _ => None,
        }
    }

    /// The channel as `notification.sent` names it.
    pub fn sent(self) -> NotificationSentChannel {
        match self {
            Channel::InApp => NotificationSentChannel::InApp,
            Channel::Push => NotificationSentChannel::Push,
            Channel::Email => NotificationSentChannel::Email,
        }
    }
}

impl From<NotificationChannel> for Channel {
    fn from(channel: NotificationChannel) -> Channel {
        match channel {
            NotificationChannel::InApp => Channel::InApp,
            NotificationChannel::Push => Channel::Push,
            NotificationChannel::Email => Channel::Email,
        }
    }
}

/// One notification to hand to one channel.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub channel: Channel,
    pub kind: NotificationKind,
    pub title: String,
    pub body: String,
    pub actor_id: Option<Uuid>,
    pub entity_id: Option<Uuid>,
}

/// Hands a notification to one channel's provider.
///
/// A delivery is at least once: after a failure, or when its event is delivered again, the same
/// delivery is handed over again, so an adapter must be idempotent on `(notification_id,
/// channel)` (an idempotency key at the provider, or a unique row as [`Outbox`] does). An error
/// fails the event, which is retried on the group's ladder.
pub trait Deliver: Send + Sync + 'static {
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// The default adapter: one `notification_outbox` row per notification and channel.
#[derive(Clone)]
pub struct Outbox {
    pool: PgPool,
}

impl Outbox {
    pub fn new(pool: PgPool) -> Outbox {
        Outbox { pool }
    }
}

impl Deliver for Outbox {
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let payload = serde_json::to_value(delivery).map_err(HandlerError::permanent)?;
            sqlx::query(
                "INSERT INTO notification_outbox (notification_id, channel, user_id, payload) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (notification_id, channel) DO NOTHING",
            )
            .bind(delivery.notification_id)
            .bind(delivery.channel.as_str())
            .bind(delivery.user_id)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }
}

/// The adapter of each external channel.
#[derive(Clone)]
pub struct Adapters {
    pub push: Arc<dyn Deliver>,
    pub email: Arc<dyn Deliver>,
}

impl Adapters {
    /// Push and email both through the outbox.
    pub fn outbox(pool: PgPool) -> Adapters {
        let outbox = Arc::new(Outbox::new(pool));
        Adapters {
            push: outbox.clone(),
            email: outbox,
        }
    }

    /// The adapter of an external channel; in-app has none.
    pub fn for_channel(&self, channel: Channel) -> Option<&Arc<dyn Deliver>> {
        match channel {
            Channel::InApp => None,
            Channel::Push => Some(&self.push),
            Channel::Email => Some(&self.email),
        }
    }
}

/// A recipient's channel switches (`user_settings`); a user without settings gets every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preferences {
    pub push: bool,
    pub email: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            push: true,
            email: true,
        }
    }
}

/// The channels a notification goes out on: those it asks for that the recipient has not
/// switched off, in a fixed order, without repeats. The inbox always holds the notification, so
/// when nothing else is left it is delivered in-app.
pub fn choose_channels(requested: &[Channel], preferences: Preferences) -> Vec<Channel> {
    let mut chosen: Vec<Channel> = requested
        .iter()
        .copied()
        .filter(|c| match c {
            Channel::InApp => true,
            Channel::Push => preferences.push,
            Channel::Email => preferences.email,
        })
        .collect();
    chosen.sort();
    chosen.dedup();
    if chosen.is_empty() {
        chosen.push(Channel::InApp);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switched_off_channels_are_dropped_and_in_app_is_the_fallback() {
        let all = Preferences::default();
        let quiet = Preferences {
            push: false,
            email: false,
        };
        assert_eq!(
            choose_channels(&[Channel::Email, Channel::InApp, Channel::Email], all),
            vec![Channel::InApp, Channel::Email]
        );
        assert_eq!(
            choose_channels(&[Channel::Push, Channel::Email], quiet),
            vec![Channel::InApp]
        );
        assert_eq!(choose_channels(&[], all), vec![Channel::InApp]);
        assert_eq!(
            choose_channels(&[Channel::Push, Channel::InApp], quiet),
            vec![Channel::InApp]
        );
    }

    #[test]
    fn channels_keep_their_schema_symbol() {
        for channel in NotificationChannel::ALL {
            let ours = Channel::from(*channel);
            assert_eq!(ours.as_str(), channel.as_str());
            assert_eq!(ours.sent().as_str(), channel.as_str());
            assert_eq!(Channel::parse(channel.as_str()), Some(ours));
        }
    }
}
