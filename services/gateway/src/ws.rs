//! `GET /v1/realtime`: the WebSocket transport.
//!
//! The token is checked and the connection admitted before the upgrade (401 / 503 are plain HTTP
//! answers). Then two halves run until either ends:
//!
//! - the reader handles client commands and pings the client every `ping_interval`; a client
//!   silent for `pong_timeout` (no pong, no frame) is dropped as stale;
//! - the writer drains the bounded queue onto the socket; a write blocked for `write_timeout`
//!   drops the client, and so does the slow-client policy when the queue overflowed.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::{authenticate, unauthorized};
use crate::hub::Outbound;
use crate::presence::platform;
use crate::protocol;
use crate::session::{delivered, Session};
use crate::state::{Gateway, Transport};

/// Query parameters of a connection (both transports).
#[derive(Debug, Default, Deserialize)]
pub struct ConnectQuery {
    /// The bearer token, for clients that cannot set headers.
    pub access_token: Option<String>,
    /// `web`, `ios` or `android`, reported with `user.online`.
    pub platform: Option<String>,
    /// SSE only: channels to subscribe to, comma-separated.
    pub channels: Option<String>,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The client closed or the socket failed.
    Client,
    /// No pong or frame within the pong timeout.
    Stale,
    /// The queue overflowed (slow-client policy).
    Slow,
    /// A write blocked past the write timeout.
    WriteTimeout,
    /// The gateway is shutting down.
    Shutdown,
}

impl Ended {
    /// Close code and reason sent to the client, and the metric label (none when the client left).
    fn close(self) -> Option<(u16, &'static str, &'static str)> {
        match self {
            Ended::Client => None,
            Ended::Stale => Some((1001, "heartbeat timeout", "stale")),
            Ended::Slow => Some((1013, "client too slow; reconnect", "slow")),
            Ended::WriteTimeout => Some((1013, "write timeout", "write_timeout")),
            Ended::Shutdown => Some((1001, "gateway shutting down", "shutdown")),
        }
    }
}

pub async fn upgrade(
    State(gateway): State<Gateway>,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let claims = match authenticate(&gateway.verifier, &headers, query.access_token.as_deref()) {
        Ok(claims) => claims,
        Err(e) => {
            gateway
                .metrics
                .connections_refused
                .with_label_values(&["unauthorized"])
                .inc();
            return unauthorized(e);
        }
    };
    let (session, queue) = match gateway
        .open(
            &claims,
            Transport::WebSocket,
            platform(query.platform.as_deref()),
        )
        .await
    {
        Ok(opened) => opened,
        Err(refused) => return refused.into_response(&gateway.metrics),
    };
    let max_frame = gateway.limits.max_frame_bytes;
    // Client frames are small commands: a small read buffer (the default is 128 KiB per socket,
    // which 10k sockets turn into over a gigabyte). Writes are flushed per batch, so the write
    // buffer only needs to coalesce one batch of small frames.
    ws.max_message_size(max_frame)
        .max_frame_size(max_frame)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| run(gateway, socket, session, queue))
}

async fn run(
    gateway: Gateway,
    socket: WebSocket,
    mut session: Session,
    mut queue: mpsc::Receiver<Outbound>,
) {
    let (mut sink, stream) = socket.split();
    let hello = session.hello();
    if sink.send(Message::Text(hello)).await.is_err() {
        return;
    }
    let ended = {
        let closing = session.client().state.closing.clone();
        let writer = write(&gateway, &mut sink, &mut queue, closing);
        let reader = read(&gateway, stream, &mut session);
        tokio::select! {
            ended = writer => ended,
            ended = reader => ended,
        }
    };
    let ended = if session.closed_as_slow() {
        Ended::Slow
    } else {
        ended
    };
    if let Some((code, reason, label)) = ended.close() {
        gateway
            .metrics
            .disconnects
            .with_label_values(&[label])
            .inc();
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(
            gateway
                .limits
                .write_timeout
                .min(std::time::Duration::from_secs(1)),
            sink.send(close),
        )
        .await;
    }
}

/// Per-socket read buffer, in bytes.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes coalesced before a write to the socket.
const WRITE_BUFFER: usize = 16 * 1024;

/// Frames written to the socket with one flush, at most.
const WRITE_BATCH: usize = 64;

/// Drains the queue onto the socket: whatever is waiting (up to [`WRITE_BATCH`] frames) goes out
/// with one flush, so a busy client costs one write per batch instead of one per message.
async fn write(
    gateway: &Gateway,
    sink: &mut SplitSink<WebSocket, Message>,
    queue: &mut mpsc::Receiver<Outbound>,
    closing: CancellationToken,
) -> Ended {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let next = tokio::select! {
            biased;
            _ = closing.cancelled() => return Ended::Slow,
            _ = gateway.shutdown.cancelled() => return Ended::Shutdown,
            next = queue.recv() => next,
        };
        let Some(first) = next else {
            return Ended::Client;
        };
        batch.push(first);
        while batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let send = async {
            for outbound in &batch {
                let message = match outbound {
                    Outbound::Control(text) => Message::Text(text.clone()),
                    Outbound::Ping => Message::Ping(Default::default()),
                    Outbound::Message(delivery) => Message::Text(delivery.frame.text.clone()),
                };
                sink.feed(message).await?;
            }
            sink.flush().await
        };
        let sent = tokio::select! {
            sent = tokio::time::timeout(gateway.limits.write_timeout, send) => sent,
            _ = closing.cancelled() => return Ended::Slow,
            _ = gateway.shutdown.cancelled() => return Ended::Shutdown,
        };
        match sent {
            Ok(Ok(())) => {
                for outbound in batch.drain(..) {
                    if let Outbound::Message(delivery) = outbound {
                        delivered(gateway, &delivery);
                    }
                }
            }
            Ok(Err(_)) => return Ended::Client,
            Err(_) => return Ended::WriteTimeout,
        }
    }
}

/// Handles client frames and keeps the heartbeat.
async fn read(
    gateway: &Gateway,
    mut stream: SplitStream<WebSocket>,
    session: &mut Session,
) -> Ended {
    let mut ping = tokio::time::interval(gateway.limits.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else {
                    return Ended::Client;
                };
                session.heartbeat().beat();
                let reply = match frame {
                    Message::Text(text) => session.handle(text.as_str()).await,
                    Message::Binary(_) => protocol::error(
                        "bad_request",
                        "binary frames are not supported; send JSON text frames",
                        None,
                        None,
                    ),
                    Message::Close(_) => return Ended::Client,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if !session.reply(reply).await {
                    return Ended::Slow;
                }
            }
            _ = ping.tick() => {
                if session.heartbeat().age() > gateway.limits.pong_timeout {
                    return Ended::Stale;
                }
                // A full queue means the client is behind already; the pong timeout still applies.
                let _ = session.client().queue.try_send(Outbound::Ping);
            }
        }
    }
}
