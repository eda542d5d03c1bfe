//! The Redis subscription multiplexer: one pub/sub connection per gateway instance, shared by every
//! client of the instance.
//!
//! - Routes: Redis channel (or pattern) → the local clients listening to it. The first local
//!   listener makes the instance SUBSCRIBE (or PSUBSCRIBE); when the last one leaves, the instance
//!   UNSUBSCRIBEs, so Redis never sends what nobody here wants. A periodic pass reconciles what
//!   Redis has with what the routes want.
//! - Dispatch: each message is framed once and offered to every listener's bounded queue without
//!   waiting. A full queue is the slow-client policy's business (drop the message for that client,
//!   or close it); the dispatcher never blocks on a client, so one slow client cannot delay others
//!   or grow memory.
//! - Reconnection: when the connection drops, the hub reconnects with backoff and resubscribes
//!   everything routed. Messages published meanwhile are lost (pub/sub keeps nothing);
//!   `/readyz` reports the outage.

use circulatory::sync::{MutexExt, RwLockExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::SlowClientPolicy;
use crate::metrics::Metrics;
use crate::protocol::{message_frame, MessageFrame};
use crate::stats::ChannelCounters;

/// How long a subscription waits for Redis to confirm it.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How often routes and Redis subscriptions are reconciled in full.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);

pub type ClientId = u64;

/// What a client's writer sends.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A protocol frame (subscribed, error, pong...).
    Control(Utf8Bytes),
    /// A message from a channel.
    Message(Delivery),
    /// A WebSocket ping (the heartbeat).
    Ping,
}

/// A message for one client, with what its figures need once it is written.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub frame: MessageFrame,
    pub counters: Arc<ChannelCounters>,
    pub scope: &'static str,
}

/// Why the gateway is closing a client.
#[derive(Debug, Default)]
pub struct ClientState {
    /// Fired to make the connection close.
    pub closing: CancellationToken,
    /// Set when the slow-client policy closed it.
    pub slow: AtomicBool,
    /// Messages this client did not get.
    pub dropped: AtomicU64,
}

/// The hub's handle to one client: its bounded queue and its state.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    pub id: ClientId,
    pub queue: mpsc::Sender<Outbound>,
    pub state: Arc<ClientState>,
}

impl ClientHandle {
    /// Offers a message without waiting; applies the slow-client policy when the queue is full.
    fn offer(&self, delivery: Delivery, metrics: &Metrics, policy: SlowClientPolicy) {
        if self.state.closing.is_cancelled() {
            metrics
                .messages_dropped
                .with_label_values(&["closing"])
                .inc();
            return;
        }
        let counters = delivery.counters.clone();
        match self.queue.try_send(Outbound::Message(delivery)) {
            Ok(()) => {
                metrics.observe_queue_depth(self.queue.max_capacity() - self.queue.capacity());
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics
                    .messages_dropped
                    .with_label_values(&["queue_full"])
                    .inc();
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
                if policy == SlowClientPolicy::Disconnect {
                    self.state.slow.store(true, Ordering::Relaxed);
                    self.state.closing.cancel();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics
                    .messages_dropped
                    .with_label_values(&["closing"])
                    .inc();
            }
        }
    }
}

/// The local listeners of one Redis channel or pattern.
struct Route {
    pattern: bool,
    scope: &'static str,
    counters: Arc<ChannelCounters>,
    clients: HashMap<ClientId, ClientHandle>,
}

/// A request to bring Redis in line with the route of `key`; `done` is told once it is.
struct Reconcile {
    key: String,
    done: Option<oneshot::Sender<()>>,
}

/// The Redis subscription could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the realtime hub is unavailable")]
pub struct Unavailable;

struct Inner {
    routes: RwLock<HashMap<String, Route>>,
    /// What Redis has confirmed: key → is a pattern.
    subscribed: Mutex<HashMap<String, bool>>,
    commands: mpsc::UnboundedSender<Reconcile>,
    connected: AtomicBool,
    metrics: Arc<Metrics>,
    policy: SlowClientPolicy,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// What to listen on for one subscription.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub key: String,
    pub pattern: bool,
    pub scope: &'static str,
    pub counters: Arc<ChannelCounters>,
}

impl Hub {
    /// Starts the hub's connection task; it runs until `stop` fires.
    pub fn start(
        client: redis::Client,
        metrics: Arc<Metrics>,
        policy: SlowClientPolicy,
        stop: CancellationToken,
    ) -> Hub {
        let (commands, receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            routes: RwLock::new(HashMap::new()),
            subscribed: Mutex::new(HashMap::new()),
            commands,
            connected: AtomicBool::new(false),
            metrics,
            policy,
        });
        tokio::spawn(run(inner.clone(), client, receiver, stop));
        Hub { inner }
    }

    /// Whether the pub/sub connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Adds a client to a route; returns once Redis delivers the route's messages here.
    pub async fn subscribe(
        &self,
        spec: &RouteSpec,
        client: &ClientHandle,
    ) -> Result<(), Unavailable> {
        {
            let mut routes = self.inner.routes.writing();
            routes
                .entry(spec.key.clone())
                .or_insert_with(|| Route {
                    pattern: spec.pattern,
                    scope: spec.scope,
                    counters: spec.counters.clone(),
                    clients: HashMap::new(),
                })
                .clients
                .insert(client.id, client.clone());
        }
        let confirmed = self.inner.subscribed.locked().contains_key(&spec.key);
        if confirmed {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let sent = self.inner.commands.send(Reconcile {
            key: spec.key.clone(),
            done: Some(done),
        });
        let ok = sent.is_ok()
            && matches!(
                tokio::time::timeout(CONFIRM_TIMEOUT, wait).await,
                Ok(Ok(()))
            );
        if ok {
            Ok(())
        } else {
            self.unsubscribe(&spec.key, client.id);
            Err(Unavailable)
        }
    }

    /// Removes a client from a route; the last one out makes the instance unsubscribe.
    pub fn unsubscribe(&self, key: &str, client: ClientId) {
        let emptied = {
            let mut routes = self.inner.routes.writing();
            match routes.get_mut(key) {
                Some(route) => {
                    route.clients.remove(&client);
                    if route.clients.is_empty() {
                        routes.remove(key);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if emptied {
            let _ = self.inner.commands.send(Reconcile {
                key: key.to_string(),
                done: None,
            });
        }
    }

    /// Channels and patterns Redis currently delivers to this instance.
    pub fn redis_subscriptions(&self) -> usize {
        self.inner.subscribed.locked().len()
    }

    /// Local listeners of a key.
    pub fn listeners(&self, key: &str) -> usize {
        self.inner
            .routes
            .reading()
            .get(key)
            .map_or(0, |r| r.clients.len())
    }
}

/// Keeps a pub/sub connection up, resubscribing after every reconnection.
async fn run(
    inner: Arc<Inner>,
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Reconcile>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let connection = tokio::select! {
            c = client.get_async_pubsub() => c,
            _ = stop.cancelled() => return,
        };
        let (mut sink, stream) = match connection {
            Ok(pubsub) => pubsub.split(),
            Err(e) => {
                tracing::warn!(error = %e, "redis pub/sub connection failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        inner.subscribed.locked().clear();
        if let Err(e) = reconcile_all(&inner, &mut sink).await {
            tracing::warn!(error = %e, "redis resubscription failed; reconnecting");
            continue;
        }
        backoff = Duration::from_millis(100);
        inner.connected.store(true, Ordering::Relaxed);
        inner.metrics.redis_reconnects.inc();
        tracing::info!("redis pub/sub connected");
        let mut dispatcher = tokio::spawn(dispatch(inner.clone(), stream));
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => {
                    dispatcher.abort();
                    inner.connected.store(false, Ordering::Relaxed);
                    return;
                }
                _ = &mut dispatcher => break,
                command = commands.recv() => match command {
                    Some(Reconcile { key, done }) => {
                        let result = reconcile_one(&inner, &mut sink, &key).await;
                        if result.is_ok() {
                            if let Some(done) = done {
                                let _ = done.send(());
                            }
                        }
                        result
                    }
                    None => return,
                },
                _ = tick.tick() => reconcile_all(&inner, &mut sink).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "redis subscription command failed; reconnecting");
                break;
            }
        }
        dispatcher.abort();
        inner.connected.store(false, Ordering::Relaxed);
        tracing::warn!("redis pub/sub connection lost; reconnecting");
    }
}

/// Subscribes or unsubscribes `key` so Redis matches its route.
async fn reconcile_one(inner: &Inner, sink: &mut PubSubSink, key: &str) -> redis::RedisResult<()> {
    let wanted = inner.routes.reading().get(key).map(|r| r.pattern);
    let have = inner.subscribed.locked().get(key).copied();
    match (wanted, have) {
        (Some(pattern), None) => {
            if pattern {
                sink.psubscribe(key).await?;
            } else {
                sink.subscribe(key).await?;
            }
            inner.subscribed.locked().insert(key.to_string(), pattern);
        }
        (None, Some(pattern)) => {
            if pattern {
                sink.punsubscribe(key).await?;
            } else {
                sink.unsubscribe(key).await?;
            }
            inner.subscribed.locked().remove(key);
        }
        _ => {}
    }
    inner
        .metrics
        .redis_subscriptions
        .set(inner.subscribed.locked().len() as i64);
    Ok(())
}

/// Every key either routed or subscribed, brought in line.
async fn reconcile_all(inner: &Inner, sink: &mut PubSubSink) -> redis::RedisResult<()> {
    let mut keys: Vec<String> = inner.routes.reading().keys().cloned().collect();
    keys.extend(inner.subscribed.locked().keys().cloned());
    keys.sort();
    keys.dedup();
    for key in keys {
        reconcile_one(inner, sink, &key).await?;
    }
    Ok(())
}

/// Frames each message once and offers it to the route's clients.
async fn dispatch(inner: Arc<Inner>, mut stream: PubSubStream) {
    while let Some(message) = stream.next().await {
        inner.metrics.messages_received.inc();
        let channel = message.get_channel_name();
        let pattern: Option<String> = if message.from_pattern() {
            message.get_pattern().ok()
        } else {
            None
        };
        let key = pattern.as_deref().unwrap_or(channel);
        let Some(frame) = message_frame(channel, message.get_payload_bytes()) else {
            inner.metrics.messages_malformed.inc();
            continue;
        };
        let routes = inner.routes.reading();
        let Some(route) = routes.get(key) else {
            continue;
        };
        route.counters.received.fetch_add(1, Ordering::Relaxed);
        for client in route.clients.values() {
            client.offer(
                Delivery {
                    frame: frame.clone(),
                    counters: route.counters.clone(),
                    scope: route.scope,
                },
                &inner.metrics,
                inner.policy,
            );
        }
    }
}
