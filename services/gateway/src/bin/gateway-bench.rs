//! `gateway-bench`: the realtime benchmark's load generator (driven by scripts/bench/realtime/run).
//!
//! - `fanout`: opens `--sockets` WebSocket clients on a gateway (or, with `--raw`, plain Redis
//!   subscribers), spread over `--channels` channels, publishes on Redis at `--rate` messages/s
//!   for `--duration` s, and measures publish → receipt latency (the publisher's wall clock is in
//!   each message, so the figure includes Redis, the gateway and the client) and deliveries/s.
//! - `throughput`: one subscriber, `--messages` published back to back (pipelined); measures the
//!   messages/s it receives.
//!
//! Prints one JSON object per run on stdout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use circulatory::auth::{claims_for, mint_hs256};
use circulatory::realtime::RealtimeMessage;
use circulatory_gateway::client::{Frame, Options, WsClient};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use serde_json::json;

#[derive(Parser)]
#[command(name = "gateway-bench", about = "Realtime gateway load generator.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Fanout(FanoutArgs),
    Throughput(ThroughputArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// The gateway (host:port).
    #[arg(long, default_value = "127.0.0.1:8090")]
    gateway: SocketAddr,
    /// Redis, where messages are published.
    #[arg(long, env = "CIRC_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// HS256 secret the gateway verifies tokens with.
    #[arg(long, env = "CIRC_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Subscribe with plain Redis subscribers instead of gateway clients (the ceiling).
    #[arg(long)]
    raw: bool,
    /// Bytes of padding in each message's data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Channels the sockets are spread over (1: every socket gets every message).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Messages published per second (over all channels).
    #[arg(long, default_value_t = 10)]
    rate: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
}

#[derive(Args)]
struct ThroughputArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// PUBLISH commands per pipeline.
    #[arg(long, default_value_t = 200)]
    batch: usize,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Latencies in microseconds, 1 µs buckets up to 1 s, the rest in the last bucket.
struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: (0..1_000_001).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, micros: u64) {
        let i = micros.min(1_000_000) as usize;
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    fn percentile(&self, p: f64) -> f64 {
        let total = self.count.load(Ordering::Relaxed);
        if total == 0 {
            return f64::NAN;
        }
        let target = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= target {
                return i as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

/// Reads `sentNs` from a message's data and records the latency.
fn observe(histogram: &Histogram, text: &str) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    let Some(sent) = value["data"]["sentNs"].as_u64() else {
        return false;
    };
    histogram.record(now_ns().saturating_sub(sent) / 1000);
    true
}

fn message(seq: u64, pad: &str) -> String {
    let m = RealtimeMessage::new(
        "comment.added",
        &seq.to_string(),
        chrono::Utc::now(),
        json!({"seq": seq, "sentNs": now_ns(), "pad": pad}),
    );
    serde_json::to_string(&m).expect("json")
}

fn token(secret: &str, user: &str) -> String {
    mint_hs256(
        secret.as_bytes(),
        &claims_for(user, Duration::from_secs(3600)),
    )
    .expect("token")
}

/// A gateway client subscribed to `channel`, reading until `stop`.
async fn gateway_client(common: &Common, channel: &str) -> anyhow::Result<WsClient> {
    let user = uuid::Uuid::new_v4().to_string();
    let options = Options {
        bearer: Some(token(&common.jwt_secret, &user)),
        recv_buffer: None,
    };
    let mut client = WsClient::connect(common.gateway, "/v1/realtime", &options)
        .await?
        .map_err(|r| anyhow::anyhow!("not upgraded: {} {}", r.status, r.body))?;
    let hello = client.next_json().await?;
    anyhow::ensure!(hello["type"] == "connected", "unexpected {hello}");
    let reply = client.subscribe(channel).await?;
    anyhow::ensure!(reply["type"] == "subscribed", "unexpected {reply}");
    Ok(client)
}

async fn read_gateway(mut client: WsClient, histogram: Arc<Histogram>, received: Arc<AtomicU64>) {
    loop {
        match client.next_frame().await {
            Ok(Frame::Text(text)) => {
                if observe(&histogram, &text) {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Frame::Close(..)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn raw_subscriber(
    redis: &str,
    channel: &str,
    histogram: Arc<Histogram>,
    received: Arc<AtomicU64>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client = redis::Client::open(redis)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(tokio::spawn(async move {
        let mut stream = pubsub.into_on_message();
        while let Some(message) = stream.next().await {
            if let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) {
                if observe(&histogram, text) {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }))
}

async fn fanout(args: FanoutArgs) -> anyhow::Result<serde_json::Value> {
    let common = &args.common;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let channels: Vec<String> = (0..args.channels.max(1))
        .map(|i| format!("comment:added:bench-{}-{i}", &run[..8]))
        .collect();
    let histogram = Arc::new(Histogram::new());
    let received = Arc::new(AtomicU64::new(0));
    let connect_started = Instant::now();
    let mut tasks = Vec::new();
    if common.raw {
        for i in 0..args.sockets {
            let channel = &channels[i % channels.len()];
            tasks.push(
                raw_subscriber(&common.redis, channel, histogram.clone(), received.clone()).await?,
            );
        }
    } else {
        let clients: Vec<anyhow::Result<WsClient>> = futures::stream::iter(0..args.sockets)
            .map(|i| {
                let channel = channels[i % channels.len()].clone();
                async move { gateway_client(common, &channel).await }
            })
            .buffer_unordered(args.connect_concurrency.max(1))
            .collect()
            .await;
        for client in clients {
            tasks.push(tokio::spawn(read_gateway(
                client?,
                histogram.clone(),
                received.clone(),
            )));
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let redis = redis::Client::open(common.redis.as_str())?;
    let mut publisher = redis.get_multiplexed_async_connection().await?;
    let pad = "x".repeat(common.payload);
    let total = args.rate * args.duration;
    let started = Instant::now();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while published < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
        if due <= published {
            continue;
        }
        let mut pipe = redis::pipe();
        for seq in published..due {
            let channel = &channels[(seq as usize) % channels.len()];
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(message(seq, &pad))
                .ignore();
        }
        let _: () = pipe.query_async(&mut publisher).await?;
        published = due;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    // Per channel, every subscriber of that channel should get each of its messages.
    let per_channel = args.sockets as f64 / channels.len() as f64;
    let expected = (published as f64 * per_channel).round() as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for task in &tasks {
        task.abort();
    }
    let delivered = received.load(Ordering::Relaxed);
    Ok(json!({
        "mode": if common.raw { "raw" } else { "gateway" },
        "scenario": "fanout",
        "sockets": args.sockets,
        "channels": channels.len(),
        "rate": args.rate,
        "duration_s": args.duration,
        "payload_bytes": common.payload,
        "connect_s": connect_secs,
        "published": published,
        "publish_s": publish_secs,
        "expected": expected,
        "delivered": delivered,
        "lost": expected.saturating_sub(delivered),
        "deliveries_per_s": delivered as f64 / elapsed.max(publish_secs),
        "p50_ms": histogram.percentile(0.50),
        "p90_ms": histogram.percentile(0.90),
        "p99_ms": histogram.percentile(0.99),
        "max_ms": histogram.max.load(Ordering::Relaxed) as f64 / 1000.0,
    }))
}

async fn throughput(args: ThroughputArgs) -> anyhow::Result<serde_json::Value> {
    let common = &args.common;
    let channel = format!(
        "comment:added:bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let histogram = Arc::new(Histogram::new());
    let received = Arc::new(AtomicU64::new(0));
    let task = if common.raw {
        raw_subscriber(&common.redis, &channel, histogram.clone(), received.clone()).await?
    } else {
        let client = gateway_client(common, &channel).await?;
        tokio::spawn(read_gateway(client, histogram.clone(), received.clone()))
    };
    let redis = redis::Client::open(common.redis.as_str())?;
    let mut publisher = redis.get_multiplexed_async_connection().await?;
    let pad = "x".repeat(common.payload);
    let started = Instant::now();
    let mut seq = 0;
    while seq < args.messages {
        let end = (seq + args.batch as u64).min(args.messages);
        let mut pipe = redis::pipe();
        for s in seq..end {
            pipe.cmd("PUBLISH")
                .arg(&channel)
                .arg(message(s, &pad))
                .ignore();
        }
        let _: () = pipe.query_async(&mut publisher).await?;
        seq = end;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    // Done when everything arrived, or nothing more came for a second.
    let mut last = 0;
    let mut last_change = Instant::now();
    let mut done_at = Instant::now();
    loop {
        let now = received.load(Ordering::Relaxed);
        if now >= args.messages {
            done_at = Instant::now();
            break;
        }
        if now != last {
            last = now;
            last_change = Instant::now();
            done_at = last_change;
        } else if last_change.elapsed() > Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    let delivered = received.load(Ordering::Relaxed);
    let secs = done_at.duration_since(started).as_secs_f64();
    Ok(json!({
        "mode": if common.raw { "raw" } else { "gateway" },
        "scenario": "throughput",
        "messages": args.messages,
        "payload_bytes": common.payload,
        "publish_s": publish_secs,
        "delivered": delivered,
        "lost": args.messages.saturating_sub(delivered),
        "seconds": secs,
        "messages_per_s": delivered as f64 / secs,
        "p50_ms": histogram.percentile(0.50),
        "p99_ms": histogram.percentile(0.99),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fanout(args) => fanout(args).await?,
        Command::Throughput(args) => throughput(args).await?,
    };
    println!("{result}");
    Ok(())
}
