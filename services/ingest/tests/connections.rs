//! The ingest API on a real socket, against clients that hold connections open: slow headers,
//! slow bodies and idle keep-alive connections are closed within their bounds, a body announced
//! past the limit is refused before it is sent, a request without `Host` is refused, and while a
//! thousand such connections are open, valid requests are answered as usual. The API's made-up
//! methods and paths add no metric series.

mod support;

use circulatory_testkit::closed_after;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{bearer, configured, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// An API served on 127.0.0.1, stopped when dropped.
struct Served {
    address: SocketAddr,
    stop: CancellationToken,
    _env: circulatory_testkit::TestEnv,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(extra: &[&str]) -> Served {
    let (env, config, _) = configured(&["like.added"], extra).await;
    let service = circulatory_ingest::build(&config)
        .await
        .expect("service builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        circulatory_ingest::serve(listener, service, &config, async move {
            stopped.cancelled().await
        })
        .await
        .expect("serves");
    });
    Served {
        address,
        stop,
        _env: env,
    }
}

/// One valid event's request, as bytes on the wire.
fn publish_request(event: &Value, keep_alive: bool) -> Vec<u8> {
    let body = event.to_string();
    format!(
        "POST /v1/events HTTP/1.1\r\nhost: ingest\r\ncontent-type: application/json\r\n\
         authorization: {}\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n{body}",
        bearer(&token("tests", &["*"])),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    )
    .into_bytes()
}

fn like(env_sample: &Value) -> Value {
    json!({"type": "like.added", "data": env_sample})
}

/// Reads one response: its status and body.
async fn response(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&bytes, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]).to_string();
                return (status, body);
            }
        }
        let n = stream.read(&mut chunk).await.expect("readable");
        assert!(
            n > 0,
            "closed before a full response: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn sample() -> Value {
    let env = circulatory_testkit::TestEnv::new();
    let schema = &env.catalog.event("like.added").unwrap().schema_json;
    circulatory_testkit::sample_data(schema)
}

#[tokio::test]
async fn slow_headers_slow_bodies_and_idle_connections_are_closed_within_their_bounds() {
    let served = serve(&["--header-timeout", "1s", "--body-timeout", "1s"]).await;
    let bound = Duration::from_millis(1000);
    let margin = Duration::from_millis(1500);

    // Headers trickled a byte at a time: the bound is on the whole head, not between bytes.
    let trickle_started = Instant::now();
    let mut trickle = TcpStream::connect(served.address).await.unwrap();
    let head = b"POST /v1/events HTTP/1.1\r\nhost: ingest\r\nx-pad: ";
    trickle.write_all(head).await.unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"a").await.is_err() {
                break;
            }
        }
        trickle
    });
    let mut trickle = writer.await.unwrap();
    let closed = closed_after(&mut trickle, Duration::from_millis(100)).await;
    assert!(
        closed.is_some() && trickle_started.elapsed() < bound + margin,
        "a trickle of headers was open for {:?}",
        trickle_started.elapsed()
    );

    // Headers that stop half way.
    let mut partial = TcpStream::connect(served.address).await.unwrap();
    partial
        .write_all(b"GET /v1/catalog HTTP/1.1\r\nho")
        .await
        .unwrap();
    let closed = closed_after(&mut partial, bound + margin).await;
    assert!(
        closed.is_some_and(|t| t >= bound - Duration::from_millis(100)),
        "{closed:?}"
    );

    // An idle keep-alive connection, after one request.
    let mut idle = TcpStream::connect(served.address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: ingest\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut idle).await.0, 200);
    let closed = closed_after(&mut idle, bound + margin).await;
    assert!(
        closed.is_some(),
        "an idle keep-alive connection stayed open"
    );

    // A body that stalls is a 408 problem at the body bound, not a held slot.
    let mut stalled = TcpStream::connect(served.address).await.unwrap();
    let started = Instant::now();
    stalled
        .write_all(
            format!(
                "POST /v1/events HTTP/1.1\r\nhost: ingest\r\ncontent-type: application/json\r\n\
                 authorization: {}\r\ncontent-length: 1000\r\n\r\n{{\"type\"",
                bearer(&token("tests", &["*"]))
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (status, body) = response(&mut stalled).await;
    assert_eq!(status, 408, "{body}");
    assert!(
        started.elapsed() < bound + margin,
        "{:?}",
        started.elapsed()
    );
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["error_code"], 40801);
    assert!(problem["instance"].is_string());

    // A body announced past the limit is refused before it is sent.
    let mut huge = TcpStream::connect(served.address).await.unwrap();
    let started = Instant::now();
    huge.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nhost: ingest\r\ncontent-type: application/json\r\n\
             authorization: {}\r\ncontent-length: 52428800\r\n\r\n",
            bearer(&token("tests", &["*"]))
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, body) = response(&mut huge).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "413 after {:?}",
        started.elapsed()
    );

    // HTTP/1.1 without Host is refused, as a problem document.
    let mut hostless = TcpStream::connect(served.address).await.unwrap();
    hostless
        .write_all(b"GET /v1/catalog HTTP/1.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = response(&mut hostless).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Host"), "{body}");
}

/// Open files this test needs: a thousand client sockets and the server's thousand.
const HELD: usize = 1000;

fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(usize::MAX)
}

#[tokio::test]
async fn valid_requests_are_answered_as_usual_while_a_thousand_connections_are_held() {
    assert!(
        open_files_limit() >= 2 * HELD + 500,
        "this test holds {} sockets; raise the open files limit (ulimit -n)",
        2 * HELD
    );
    let served = serve(&["--header-timeout", "6s", "--body-timeout", "6s"]).await;
    let event = like(&sample());

    let baseline = latencies(served.address, &event, 30).await;

    let mut held = Vec::with_capacity(HELD);
    for n in 0..HELD {
        let mut stream = TcpStream::connect(served.address).await.unwrap();
        match n % 3 {
            // Half a request head.
            0 => stream.write_all(b"POST /v1/events HTTP/1.1\r\nhost: in").await.unwrap(),
            // A body announced and never sent.
            1 => stream
                .write_all(
                    format!(
                        "POST /v1/events HTTP/1.1\r\nhost: ingest\r\ncontent-type: application/json\r\n\
                         authorization: {}\r\ncontent-length: 500\r\n\r\n[",
                        bearer(&token("tests", &["*"]))
                    )
                    .as_bytes(),
                )
                .await
                .unwrap(),
            // Connected, silent.
            _ => {}
        }
        held.push(stream);
    }
    let opened = Instant::now();

    let during = latencies(served.address, &event, 30).await;
    assert!(
        opened.elapsed() < Duration::from_secs(5),
        "the valid requests took until the held connections' bound: {:?}",
        opened.elapsed()
    );
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (before, now) = (median(baseline), median(during.clone()));
    let worst = during.iter().max().copied().unwrap_or_default();
    eprintln!("median before {before:?}, with {HELD} held connections {now:?}, worst {worst:?}");
    assert!(
        now < before * 5 + Duration::from_millis(20) && worst < Duration::from_millis(500),
        "valid requests slowed down: median {before:?} -> {now:?}, worst {worst:?}"
    );

    // Every held connection is closed by its bound (6 s), none left open.
    let waited = Instant::now();
    let deadline = opened + Duration::from_secs(15);
    let mut still_open = 0;
    for stream in &mut held {
        let left = deadline.saturating_duration_since(Instant::now());
        if closed_after(stream, left).await.is_none() {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "held connections outlived their bound");
    eprintln!(
        "all held connections closed {:?} after opening",
        opened.elapsed()
    );
    let _ = waited;
}

/// Each of `count` valid publishes on its own connection: how long until its 202.
async fn latencies(address: SocketAddr, event: &Value, count: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(&publish_request(event, false))
            .await
            .unwrap();
        let (status, body) = response(&mut stream).await;
        assert_eq!(status, 202, "{body}");
        out.push(started.elapsed());
    }
    out
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_metric_series() {
    let served = serve(&[]).await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("circulatory_http_"))
            .count()
    };
    let request = |method: String, path: String| async move {
        let mut stream = TcpStream::connect(served.address).await.unwrap();
        stream
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nhost: ingest\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        response(&mut stream).await
    };
    // One of each kind first: the label values `other` and `unmatched` may appear once, and
    // the scrape itself is counted after it answers.
    request("ZZZ0".into(), "/zero".into()).await;
    request("ZZZ0".into(), "/v1/events".into()).await;
    request("GET".into(), "/metrics".into()).await;
    let (_, before) = request("GET".into(), "/metrics".into()).await;
    for n in 0..50 {
        let (status, body) = request(format!("M{n}X"), format!("/made/up/{n}")).await;
        assert!(status == 404 || status == 405, "{status} {body}");
        assert!(body.contains("error_code"), "{body}");
        request(format!("M{n}Y"), "/v1/events".into()).await;
    }
    let (_, after) = request("GET".into(), "/metrics".into()).await;
    assert_eq!(
        series(&before),
        series(&after),
        "made-up requests added series"
    );
    assert!(!after.contains("M1X") && !after.contains("/made/up"));
}
