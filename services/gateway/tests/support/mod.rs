//! In-process gateways on the real Redis, each in a fresh namespace, with real network clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use circulatory::auth::{claims_for, mint_hs256};
use circulatory::realtime::{self, RealtimeMessage};
use circulatory_gateway::client::{HttpReply, Options, SseClient, WsClient};
use circulatory_gateway::config::Config;
use circulatory_gateway::state::Gateway;
use clap::Parser;
use http_body_util::BodyExt;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;
use tower::ServiceExt;

pub(crate) const SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub(crate) fn redis_url() -> String {
    std::env::var("CIRC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub(crate) async fn redis() -> ConnectionManager {
    redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .expect("redis reachable")
}

/// A fresh id (user, post, conversation).
pub(crate) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn token(sub: &str) -> String {
    mint_hs256(
        SECRET.as_bytes(),
        &claims_for(sub, Duration::from_secs(600)),
    )
    .unwrap()
}

/// One running gateway.
pub(crate) struct Instance {
    pub(crate) gateway: Gateway,
    pub(crate) addr: SocketAddr,
    pub(crate) namespace: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts a gateway in `namespace` with extra flags.
pub(crate) async fn start(namespace: &str, extra: &[&str]) -> Instance {
    let root = circulatory_testkit::repo_root();
    let mut args: Vec<String> = [
        "gateway",
        "--namespace",
        namespace,
        "--redis",
        &redis_url(),
        "--jwt-secret",
        SECRET,
        "--topology",
        root.join("topics.yaml").to_str().unwrap(),
        "--schemas",
        root.join("schemas").to_str().unwrap(),
        "--stats-flush",
        "200ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_parse_from(args).expect("valid flags");
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    let gateway = circulatory_gateway::build(&config)
        .await
        .expect("gateway builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = gateway.clone();
    let task = tokio::spawn(async move {
        circulatory_gateway::serve(listener, served, Duration::from_secs(2), async {
            let _ = stopped.await;
        })
        .await
        .expect("gateway serves");
    });
    Instance {
        gateway,
        addr,
        namespace: namespace.to_string(),
        stop: Some(stop),
        task: Some(task),
    }
}

impl Instance {
    /// Shuts the gateway down and waits until it has closed everything.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// A WebSocket connection of `user`, past its `connected` frame.
    pub(crate) async fn ws(&self, user: &str) -> WsClient {
        self.ws_with(user, "", &Options::default()).await
    }

    pub(crate) async fn ws_with(&self, user: &str, query: &str, options: &Options) -> WsClient {
        let options = Options {
            bearer: Some(token(user)),
            ..options.clone()
        };
        let path = format!("/v1/realtime{query}");
        let mut client = WsClient::connect(self.addr, &path, &options)
            .await
            .expect("tcp")
            .unwrap_or_else(|reply| panic!("not upgraded: {} {}", reply.status, reply.body));
        let hello = client.next_json().await.expect("connected frame");
        assert_eq!(hello["type"], "connected");
        assert_eq!(hello["user"], user);
        client
    }

    /// A WebSocket attempt with raw options (no token, a bad token...).
    pub(crate) async fn ws_raw(
        &self,
        path: &str,
        options: &Options,
    ) -> Result<WsClient, HttpReply> {
        WsClient::connect(self.addr, path, options)
            .await
            .expect("tcp")
    }

    pub(crate) async fn sse(&self, user: &str, channels: &str) -> Result<SseClient, HttpReply> {
        let options = Options {
            bearer: Some(token(user)),
            ..Options::default()
        };
        SseClient::connect(
            self.addr,
            &format!("/v1/realtime/sse?channels={channels}"),
            &options,
        )
        .await
        .expect("tcp")
    }

    /// GET on the router, as JSON (or text).
    pub(crate) async fn get(
        &self,
        path: &str,
        bearer: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::get(path);
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = circulatory_gateway::app(self.gateway.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        (status, body)
    }

    /// The value of a metric line (`name{labels}`) in /metrics, 0 when absent.
    pub(crate) fn metric(&self, series: &str) -> f64 {
        let text = self.gateway.metrics.render();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub(crate) fn presence_key(&self, user: &str) -> String {
        format!("circ:{}:presence:{user}", self.namespace)
    }
}

/// Publishes one realtime message on `channel` as the other services do; returns its id.
pub(crate) async fn publish(channel: &str, event_type: &str, data: serde_json::Value) -> String {
    let mut redis = redis().await;
    let id = uuid();
    let message = RealtimeMessage::new(event_type, &id, chrono::Utc::now(), data);
    realtime::publish(&mut redis, &[channel.to_string()], &message)
        .await
        .expect("published");
    id
}

/// Polls `check` until it returns `Some`, for up to `within`.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscribers Redis counts on a channel (one per gateway instance, however many clients).
pub(crate) async fn numsub(channel: &str) -> i64 {
    let mut redis = redis().await;
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut redis)
        .await
        .unwrap();
    count
}

/// The next message (dotted type) of `client`, skipping protocol frames, within `within`.
pub(crate) async fn next_message(
    client: &mut WsClient,
    within: Duration,
) -> Option<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let value = client.next_json_within(left).await?.ok()?;
        if value["type"].as_str().unwrap_or_default().contains('.') {
            return Some(value);
        }
    }
}

/// Waits for a presence message of `event_type` about `user` on `client` (other tests share the
/// public presence channels, so other users' messages are skipped).
pub(crate) async fn presence_message(
    client: &mut WsClient,
    event_type: &str,
    user: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let value = next_message(client, left)
            .await
            .unwrap_or_else(|| panic!("no {event_type} for {user}"));
        if value["type"] == event_type && value["data"]["userId"] == user {
            return value;
        }
    }
}
