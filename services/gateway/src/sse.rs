//! `GET /v1/realtime/sse?channels=a,b`: the Server-Sent Events transport, for clients that only
//! listen. Subscriptions are fixed at connection time (reconnect to change them).
//!
//! - Messages are unnamed events (`onmessage`), their data the same JSON as over WebSocket.
//! - Protocol frames (`connected`, `subscribed`, `error` for a refused channel) are `control`
//!   events.
//! - No channel at all → 400; every channel refused → 403 with the reasons (so EventSource does
//!   not reconnect in a loop); some refused → the stream starts with their error frames.
//! - Keep-alive comments every `sse_keepalive`; a dead peer fails a write and the stream ends.

use std::convert::Infallible;

use axum::extract::ws::Utf8Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::auth::{authenticate, problem, unauthorized};
use crate::hub::Outbound;
use crate::presence::platform;
use crate::session::{delivered, Session};
use crate::state::{Gateway, Transport};
use crate::ws::ConnectQuery;

fn control(frame: &Utf8Bytes) -> Event {
    Event::default().event("control").data(frame.as_str())
}

pub async fn stream(
    State(gateway): State<Gateway>,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
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
    let requested: Vec<&str> = query
        .channels
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if requested.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "name the channels to subscribe to: ?channels=a,b",
        );
    }
    if requested.len() > gateway.limits.max_subscriptions {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!(
                "at most {} channels per connection",
                gateway.limits.max_subscriptions
            ),
        );
    }
    let (mut session, queue) = match gateway
        .open(&claims, Transport::Sse, platform(query.platform.as_deref()))
        .await
    {
        Ok(opened) => opened,
        Err(refused) => return refused.into_response(&gateway.metrics),
    };
    let mut frames = vec![session.hello()];
    let mut refusals = Vec::new();
    let mut accepted = 0;
    for channel in requested {
        let reply = session.subscribe(channel, None).await;
        let value: serde_json::Value = serde_json::from_str(reply.as_str()).unwrap_or_default();
        if value["type"] == "subscribed" {
            accepted += 1;
        } else {
            refusals.push(value);
        }
        frames.push(reply);
    }
    if accepted == 0 {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": "none of the requested channels may be joined",
            "errors": refusals,
        });
        let mut response = (StatusCode::FORBIDDEN, body.to_string()).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
        return response;
    }
    let keepalive = gateway.limits.sse_keepalive;
    let initial = futures::stream::iter(
        frames
            .into_iter()
            .map(|frame| Ok::<_, Infallible>(control(&frame))),
    );
    let live = futures::stream::unfold(
        (gateway, session, queue),
        |(gateway, session, mut queue): (Gateway, Session, mpsc::Receiver<Outbound>)| async move {
            let closing = session.client().state.closing.clone();
            let next = tokio::select! {
                biased;
                _ = closing.cancelled() => None,
                _ = gateway.shutdown.cancelled() => None,
                next = queue.recv() => next,
            };
            let Some(next) = next else {
                let label = if session.closed_as_slow() {
                    "slow"
                } else {
                    "shutdown"
                };
                gateway
                    .metrics
                    .disconnects
                    .with_label_values(&[label])
                    .inc();
                return None;
            };
            let event = match next {
                Outbound::Control(frame) => control(&frame),
                Outbound::Ping => Event::default().comment("ping"),
                Outbound::Message(delivery) => {
                    delivered(&gateway, &delivery);
                    Event::default().data(delivery.frame.text.as_str())
                }
            };
            Some((Ok(event), (gateway, session, queue)))
        },
    );
    Sse::new(initial.chain(live))
        .keep_alive(KeepAlive::new().interval(keepalive))
        .into_response()
}
