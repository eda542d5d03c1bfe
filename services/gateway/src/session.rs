//! One client connection, whatever its transport: its subscriptions (authorized against the
//! channel policy, bounded in number), its queue, its heartbeat. Dropping the session releases
//! everything: its routes in the hub, its connection slot, its presence.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use tokio::sync::OwnedSemaphorePermit;

use crate::channels::{scope_label, Grant};
use crate::hub::{ClientHandle, Delivery, Outbound, RouteSpec};
use crate::presence::Heartbeat;
use crate::protocol::{self, Command};
use crate::state::{Gateway, Transport};
use crate::stats::ChannelCounters;

struct Subscription {
    grant: Grant,
    counters: Arc<ChannelCounters>,
}

impl Subscription {
    fn labels(&self) -> [&'static str; 2] {
        [
            scope_label(self.grant.scope),
            if self.grant.pattern {
                "pattern"
            } else {
                "exact"
            },
        ]
    }
}

pub struct Session {
    gateway: Gateway,
    client: ClientHandle,
    user: String,
    transport: Transport,
    heartbeat: Arc<Heartbeat>,
    subscriptions: HashMap<String, Subscription>,
    _slot: OwnedSemaphorePermit,
}

impl Session {
    pub(crate) fn new(
        gateway: Gateway,
        client: ClientHandle,
        user: String,
        transport: Transport,
        heartbeat: Arc<Heartbeat>,
        slot: OwnedSemaphorePermit,
    ) -> Session {
        Session {
            gateway,
            client,
            user,
            transport,
            heartbeat,
            subscriptions: HashMap::new(),
            _slot: slot,
        }
    }

    pub fn id(&self) -> u64 {
        self.client.id
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn client(&self) -> &ClientHandle {
        &self.client
    }

    pub fn heartbeat(&self) -> &Heartbeat {
        &self.heartbeat
    }

    /// The first frame a client gets.
    pub fn hello(&self) -> Utf8Bytes {
        protocol::connected(
            &format!("{}:{}", self.gateway.instance, self.client.id),
            &self.user,
            self.gateway.limits.ping_interval.as_millis() as u64,
        )
    }

    /// Handles one client frame; returns the reply.
    pub async fn handle(&mut self, text: &str) -> Utf8Bytes {
        match Command::parse(text) {
            Ok(Command::Subscribe { channel, id }) => self.subscribe(&channel, id.as_deref()).await,
            Ok(Command::Unsubscribe { channel, id }) => self.unsubscribe(&channel, id.as_deref()),
            Ok(Command::Ping { id }) => protocol::pong(id.as_deref()),
            Err(bad) => {
                self.refused("bad_request");
                protocol::error("bad_request", &bad.0, None, None)
            }
        }
    }

    fn refused(&self, code: &str) {
        self.gateway
            .metrics
            .subscriptions_refused
            .with_label_values(&[code])
            .inc();
    }

    /// Subscribes to a channel or pattern if the policy allows it; replies `subscribed` once
    /// messages will arrive, or an error frame saying why not.
    pub async fn subscribe(&mut self, channel: &str, id: Option<&str>) -> Utf8Bytes {
        if self.subscriptions.contains_key(channel) {
            return protocol::subscribed(channel, id);
        }
        if self.subscriptions.len() >= self.gateway.limits.max_subscriptions {
            self.refused("too_many_subscriptions");
            let message = format!(
                "at most {} subscriptions per connection",
                self.gateway.limits.max_subscriptions
            );
            return protocol::error("too_many_subscriptions", &message, Some(channel), id);
        }
        let grant = match self.gateway.policy.authorize(&self.user, channel) {
            Ok(grant) => grant,
            Err(refusal) => {
                self.refused(refusal.code());
                return protocol::error(refusal.code(), &refusal.to_string(), Some(channel), id);
            }
        };
        let Some(counters) = self.gateway.stats.counters(&grant.template) else {
            self.refused("unknown_channel");
            return protocol::error("unknown_channel", "no such channel", Some(channel), id);
        };
        let spec = RouteSpec {
            key: grant.channel.clone(),
            pattern: grant.pattern,
            scope: scope_label(grant.scope),
            counters: counters.clone(),
        };
        if self
            .gateway
            .hub
            .subscribe(&spec, &self.client)
            .await
            .is_err()
        {
            self.refused("unavailable");
            return protocol::error(
                "unavailable",
                "the realtime hub is unavailable; retry later",
                Some(channel),
                id,
            );
        }
        let subscription = Subscription { grant, counters };
        self.gateway
            .metrics
            .subscriptions
            .with_label_values(&subscription.labels())
            .inc();
        subscription
            .counters
            .subscribers
            .fetch_add(1, Ordering::Relaxed);
        self.subscriptions.insert(channel.to_string(), subscription);
        protocol::subscribed(channel, id)
    }

    pub fn unsubscribe(&mut self, channel: &str, id: Option<&str>) -> Utf8Bytes {
        if let Some(subscription) = self.subscriptions.remove(channel) {
            self.release(channel, &subscription);
        }
        protocol::unsubscribed(channel, id)
    }

    fn release(&self, key: &str, subscription: &Subscription) {
        self.gateway.hub.unsubscribe(key, self.client.id);
        self.gateway
            .metrics
            .subscriptions
            .with_label_values(&subscription.labels())
            .dec();
        subscription
            .counters
            .subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Puts a control frame in the client's queue, waiting for room unless the connection closes.
    pub async fn reply(&self, frame: Utf8Bytes) -> bool {
        tokio::select! {
            sent = self.client.queue.send(Outbound::Control(frame)) => sent.is_ok(),
            _ = self.client.state.closing.cancelled() => false,
        }
    }

    /// Whether the slow-client policy closed this connection.
    pub fn closed_as_slow(&self) -> bool {
        self.client.state.slow.load(Ordering::Relaxed)
    }
}

/// Records a message written to a client: figures and the publish → delivery latency.
pub fn delivered(gateway: &Gateway, delivery: &Delivery) {
    let latency_ms = delivery
        .frame
        .published_ms
        .map(|published| (Utc::now().timestamp_millis() - published).max(0) as u64);
    if let Some(ms) = latency_ms {
        gateway.metrics.delivery_latency.observe(ms as f64 / 1000.0);
    }
    delivery.counters.delivered(latency_ms);
    gateway
        .metrics
        .messages_delivered
        .with_label_values(&[delivery.scope])
        .inc();
}

impl Drop for Session {
    fn drop(&mut self) {
        self.client.state.closing.cancel();
        let subscriptions = std::mem::take(&mut self.subscriptions);
        for (key, subscription) in &subscriptions {
            self.release(key, subscription);
        }
        self.gateway
            .metrics
            .connections
            .with_label_values(&[self.transport.label()])
            .dec();
        let presence = self.gateway.presence.clone();
        let id = self.client.id;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = presence.disconnect(id).await {
                    tracing::warn!(error = %e, "presence: could not record a disconnect");
                }
            });
        }
    }
}
