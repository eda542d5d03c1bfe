//! Serving an axum router on a listener with the connection bounds `axum::serve` leaves unset.
//!
//! hyper starts a connection's header timer whenever the connection waits for a request head:
//! at accept and again after each response. So one bound covers a client that sends its
//! headers a byte at a time and a keep-alive connection left idle; either is closed when it
//! runs out. Without it, a thousand such sockets hold their memory and file descriptors for as
//! long as their clients like. Bodies are bounded by the handlers, which know their limits.
//!
//! HTTP/1.1 only, with upgrades (WebSocket). Detecting HTTP/2 with prior knowledge, as
//! `axum::serve` does, means waiting for the client's first bytes before any timer runs: a
//! client that connects and says nothing would hold its socket forever. TLS and HTTP/2 end at
//! the load balancer in front. Each request carries `ConnectInfo<SocketAddr>`, which also tells
//! a request read from a socket from one built in-process. On shutdown the listener closes,
//! then in-flight requests finish.

use std::future::Future;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Bounds on each connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a connection may take to deliver a request head, counted from when it starts
    /// waiting for one: a slow header and an idle keep-alive connection are both closed past it.
    pub header_timeout: Duration,
    /// Disables Nagle's algorithm on accepted sockets (small, latency-bound frames).
    pub nodelay: bool,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            nodelay: false,
        }
    }
}

/// Pause after a failed accept (file descriptors exhausted, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` until `shutdown` resolves, then stops accepting and waits for the requests
/// in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // Each connection holds a clone of `alive`; once all are dropped, `all_closed` ends.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let closing = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if limits.nodelay {
            let _ = stream.set_nodelay(true);
        }
        // Every request carries its peer, as `into_make_service_with_connect_info` would.
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let service = TowerToHyperService::new(service);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let (alive, closing) = (alive.clone(), closing.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // A client that goes away or breaks the protocol ends its own connection only.
            tokio::select! {
                _ = connection.as_mut() => {}
                () = closing.cancelled() => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    closing.cancel();
    drop(alive);
    let _ = all_closed.recv().await;
    Ok(())
}
