//! The gateway on a real socket, against clients that hold connections open without a request:
//! each is closed within the header bound, an upgraded WebSocket is not, and refusals outside
//! the routes are problem documents.

mod support;

use circulatory_testkit::closed_after;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn silent_partial_and_idle_connections_are_closed_but_a_websocket_is_not() {
    let namespace = circulatory_testkit::fresh_namespace();
    let gateway = support::start(&namespace, &["--header-timeout", "800ms"]).await;
    let limit = Duration::from_millis(800 + 1500);

    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    let mut partial = TcpStream::connect(gateway.addr).await.unwrap();
    partial
        .write_all(b"GET /v1/realtime HTTP/1.1\r\nhost: gw\r\nupgr")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(gateway.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut ws = gateway.ws(&support::uuid()).await;

    for (what, stream) in [
        ("silent", &mut silent),
        ("partial headers", &mut partial),
        ("idle keep-alive", &mut idle),
    ] {
        let closed = closed_after(stream, limit).await;
        assert!(closed.is_some(), "a {what} connection stayed open");
    }
    // Past the header bound, the upgraded connection still answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send_json(&serde_json::json!({"type": "ping"}))
        .await
        .expect("the WebSocket is open");
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next_control())
        .await
        .expect("a pong within 5 s")
        .expect("a frame");
    assert_eq!(pong["type"], "pong", "{pong}");
    gateway.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_documents() {
    let namespace = circulatory_testkit::fresh_namespace();
    let gateway = support::start(&namespace, &[]).await;
    for (request, status) in [
        ("GET /v1/nothing HTTP/1.1", 404),
        ("DELETE /v1/realtime/sse HTTP/1.1", 405),
        ("ZZZ1 /healthz HTTP/1.1", 405),
    ] {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(format!("{request}\r\nhost: gw\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request}: {answer}"
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{request}: {answer}"
        );
    }
    gateway.stop().await;
}
