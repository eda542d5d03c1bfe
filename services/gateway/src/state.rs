//! What every connection shares, built once from the configuration, and how a connection is
//! admitted.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use circulatory::auth::{Claims, TokenVerifier};
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::auth::problem;
use crate::channels::ChannelPolicy;
use crate::hub::{ClientHandle, ClientState, Hub, Outbound};
use crate::metrics::Metrics;
use crate::presence::{Heartbeat, Presence};
use crate::session::Session;
use crate::stats::ChannelStats;

/// Bounds and timings of connections.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_subscriptions: usize,
    pub queue_len: usize,
    pub max_frame_bytes: usize,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub write_timeout: Duration,
    pub sse_keepalive: Duration,
    /// Time allowed for a request's headers, idle keep-alive included.
    pub header_timeout: Duration,
}

pub struct Shared {
    pub instance: String,
    pub limits: Limits,
    pub policy: ChannelPolicy,
    pub verifier: TokenVerifier,
    pub hub: Hub,
    pub presence: Arc<Presence>,
    pub stats: Arc<ChannelStats>,
    pub metrics: Arc<Metrics>,
    pub redis: ConnectionManager,
    pub connections: Arc<Semaphore>,
    pub max_connections: usize,
    pub next_connection: AtomicU64,
    /// Fired at shutdown: every connection closes.
    pub shutdown: CancellationToken,
    /// Stops the background tasks (hub, presence, stats) after the connections are gone.
    pub stop_background: CancellationToken,
}

/// Cheap to clone: handlers get an `Arc`.
#[derive(Clone)]
pub struct Gateway(pub Arc<Shared>);

impl Deref for Gateway {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// At the connection bound.
    Capacity,
    /// Redis is unreachable: presence cannot be recorded, messages cannot arrive.
    Unavailable,
}

impl Refused {
    pub fn into_response(self, metrics: &Metrics) -> Response {
        let (reason, detail) = match self {
            Refused::Capacity => ("capacity", "the gateway is at capacity; retry later"),
            Refused::Unavailable => (
                "unavailable",
                "the realtime hub is unavailable; retry later",
            ),
        };
        metrics
            .connections_refused
            .with_label_values(&[reason])
            .inc();
        problem(StatusCode::SERVICE_UNAVAILABLE, detail)
    }
}

/// Which transport a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "ws",
            Transport::Sse => "sse",
        }
    }
}

impl Gateway {
    /// Admits a connection of an authenticated user: takes a connection slot, records presence,
    /// and returns the session with the receiving end of its bounded queue.
    pub async fn open(
        &self,
        claims: &Claims,
        transport: Transport,
        platform: &'static str,
    ) -> Result<(Session, mpsc::Receiver<Outbound>), Refused> {
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Capacity)?;
        if !self.hub.is_connected() {
            return Err(Refused::Unavailable);
        }
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let heartbeat = Arc::new(match transport {
            Transport::WebSocket => Heartbeat::default(),
            Transport::Sse => Heartbeat::always(),
        });
        heartbeat.beat();
        if let Err(e) = self
            .presence
            .connect(id, &claims.sub, platform, heartbeat.clone())
            .await
        {
            tracing::warn!(error = %e, "presence not recorded; connection refused");
            return Err(Refused::Unavailable);
        }
        let (queue, receiver) = mpsc::channel(self.limits.queue_len);
        let client = ClientHandle {
            id,
            queue,
            state: Arc::new(ClientState::default()),
        };
        self.metrics
            .connections
            .with_label_values(&[transport.label()])
            .inc();
        self.metrics
            .connections_total
            .with_label_values(&[transport.label()])
            .inc();
        let session = Session::new(
            self.clone(),
            client,
            claims.sub.clone(),
            transport,
            heartbeat,
            permit,
        );
        Ok((session, receiver))
    }

    /// Whether connections may be admitted.
    pub fn ready(&self) -> bool {
        self.hub.is_connected() && !self.shutdown.is_cancelled()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.connections.available_permits()
    }
}
