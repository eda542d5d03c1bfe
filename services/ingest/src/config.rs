//! The ingest API's configuration: flags with environment variables, every default shown in
//! `--help`, every problem reported before exiting with code 64.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use circulatory::process::flags::{self, CatalogFlags, DatabaseFlags, KafkaFlags, RedisFlags};
use clap::Parser;

/// Time kept, past the Redis timeout, for answering a request once its acknowledgements are in.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ingest",
    version,
    about = "Circulatory ingest API: publish domain events over HTTP.",
    // A flag given twice keeps the last value, so wrappers can append overrides.
    args_override_self = true
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CIRC_INGEST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub catalog: CatalogFlags,
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Redis (idempotency keys, ephemeral broadcasts).
    #[command(flatten)]
    pub redis: RedisFlags,
    /// How long a Redis command may take, before its request answers 503
    /// `redis_unavailable`. Longer than the stalls of a Redis that shares a busy disk (an AOF
    /// write waiting behind a broker's log recovery held commands past half a second on a
    /// saturated machine); a Redis that is down refuses at once, and the watcher knows within
    /// a second.
    #[arg(long, env = "CIRC_INGEST_REDIS_TIMEOUT", default_value = "2s",
        value_parser = flags::duration)]
    pub redis_timeout: Duration,
    /// PostgreSQL holding the projections behind the read routes (`GET /v1/videos/{id}`, feeds,
    /// notifications, wallets). Connected on first use: publishing never needs it.
    #[command(flatten)]
    pub database: DatabaseFlags,
    /// Most PostgreSQL connections of this process.
    #[arg(long, env = "CIRC_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
    /// HS256 secret for bearer tokens (at least 32 bytes).
    #[arg(long, env = "CIRC_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file with the RS256 public key for bearer tokens.
    #[arg(long, env = "CIRC_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` claim, if set.
    #[arg(long, env = "CIRC_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Largest request body for /v1/events, in bytes.
    #[arg(long, env = "CIRC_INGEST_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest single event (`data` serialized), in bytes.
    #[arg(long, env = "CIRC_INGEST_MAX_EVENT_BYTES", default_value_t = 256 * 1024)]
    pub max_event_bytes: usize,
    /// Most events in one batch.
    #[arg(long, env = "CIRC_INGEST_MAX_BATCH", default_value_t = 500)]
    pub max_batch: usize,
    /// Requests handled at once; beyond this, requests are shed with 503.
    #[arg(long, env = "CIRC_INGEST_MAX_CONCURRENCY", default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Bound on a whole request.
    #[arg(long, env = "CIRC_INGEST_REQUEST_TIMEOUT", default_value = "15s",
        value_parser = flags::duration)]
    pub request_timeout: Duration,
    /// How long a connection may take to send a request's headers, counted from when it starts
    /// waiting for them,: a client trickling its headers and an idle keep-alive
    /// connection are both closed past it.
    #[arg(long, env = "CIRC_INGEST_HEADER_TIMEOUT", default_value = "10s",
        value_parser = flags::duration)]
    pub header_timeout: Duration,
    /// How long reading a request body may take: a stalled body is a 408. For
    /// uploads, the longest wait for the next piece of the body.
    #[arg(long, env = "CIRC_INGEST_BODY_TIMEOUT", default_value = "10s",
        value_parser = flags::duration)]
    pub body_timeout: Duration,
    /// How long a request waits for the broker's acknowledgement of its events. Past it the answer is a 503 `kafka_unconfirmed`: the events may still be
    /// written, and a retry with the same ids (or Idempotency-Key) gets their outcome. Longer
    /// than a broker failover: with acks=all a dead broker holds back every partition it
    /// replicates until the controller fences it and shrinks the ISR (or elects a new leader),
    /// which held acknowledgements up to 9.5 s on a saturated three-broker cluster with a 4 s
    /// broker session (scripts/chaos); shorter than the request timeout.
    #[arg(long, env = "CIRC_INGEST_ACK_TIMEOUT", default_value = "10s",
        value_parser = flags::duration)]
    pub ack_timeout: Duration,
    /// How long the producer keeps trying a record; the event ids of a request
    /// answered `kafka_unconfirmed` stay claimed this long (plus a margin) so that a retry never
    /// writes an event a second time while the first attempt can still land.
    #[arg(
        long,
        env = "CIRC_INGEST_DELIVERY_TIMEOUT",
        default_value = "30s",
        value_parser = flags::duration
    )]
    pub delivery_timeout: Duration,
    /// How long the producer waits to fill a batch. Zero for the HTTP path: every
    /// request waits it out at low rates (5 ms measured 6 ms p50 at 1000 req/s, 1 ms 2 ms, 0 ms
    /// 1.2 ms), and under load records still share requests (they queue while earlier requests
    /// are in flight), with no loss of throughput measured.
    #[arg(long, env = "CIRC_INGEST_LINGER", default_value = "0ms",
        value_parser = flags::duration)]
    pub linger: Duration,
    /// Producer compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, env = "CIRC_INGEST_COMPRESSION", default_value = "zstd")]
    pub compression: String,
    /// How long an event id or Idempotency-Key is remembered.
    #[arg(
        long,
        env = "CIRC_INGEST_IDEMPOTENCY_WINDOW",
        default_value = "1d",
        value_parser = flags::duration
    )]
    pub idempotency_window: Duration,
    /// How long the trace index keeps where each accepted event was written, for
    /// operators tracing an event by id or correlation id; 0 turns it off.
    #[arg(long, env = "CIRC_TRACE_WINDOW", default_value = "1d",
        value_parser = flags::duration)]
    pub trace_window: Duration,
    /// Trace index entries this process writes per second at most (0: no ceiling); past it
    /// they are dropped and counted in circulatory_trace_dropped_total.
    #[arg(long, env = "CIRC_TRACE_MAX_PER_SEC", default_value_t = circulatory::trace::DEFAULT_MAX_PER_SEC)]
    pub trace_max_per_sec: u32,
    /// Events per second each client may publish (token bucket refill rate).
    #[arg(long, env = "CIRC_INGEST_RATE_PER_SEC", default_value_t = 2_000)]
    pub rate_per_sec: u32,
    /// Token bucket size: the burst a client may send at once.
    #[arg(long, env = "CIRC_INGEST_RATE_BURST", default_value_t = 4_000)]
    pub rate_burst: u32,
    /// Where uploaded videos are stored: a local folder, or `s3://bucket/prefix`
    /// (credentials and endpoint from the usual AWS_* variables).
    #[arg(long, env = "CIRC_OBJECT_STORE", default_value = ".stack/objects")]
    pub object_store: String,
    /// Largest video upload, in bytes (the seed's 1 GB).
    #[arg(
        long,
        env = "CIRC_INGEST_MAX_UPLOAD_BYTES",
        default_value_t = 1_000_000_000
    )]
    pub max_upload_bytes: u64,
    /// CloudEvents `source` of events published here.
    #[arg(
        long,
        env = "CIRC_INGEST_SOURCE",
        default_value = "/circulatory/ingest"
    )]
    pub source: String,
    /// How long shutdown waits for in-flight requests and the producer queue.
    #[arg(long, env = "CIRC_INGEST_DRAIN", default_value = "10s",
        value_parser = flags::duration)]
    pub drain: Duration,
}

impl Config {
    /// Every problem with the configuration, not just the first.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.jwt_secret.is_none() && self.jwt_public_key_file.is_none() {
            problems.push("set CIRC_JWT_SECRET (HS256) or CIRC_JWT_PUBLIC_KEY_FILE (RS256)".into());
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            problems.push("CIRC_JWT_SECRET must be at least 32 bytes".into());
        }
        if let Some(path) = &self.jwt_public_key_file {
            if !path.is_file() {
                problems.push(format!(
                    "CIRC_JWT_PUBLIC_KEY_FILE {} is not a file",
                    path.display()
                ));
            }
        }
        if self.max_event_bytes > self.max_body_bytes {
            problems.push("the largest event cannot exceed the largest body".into());
        }
        if self.db_max_connections == 0 {
            problems.push("the database pool needs at least one connection".into());
        }
        problems.extend(self.database.problem());
        if self.max_batch == 0 || self.max_concurrency == 0 || self.rate_per_sec == 0 {
            problems.push("batch size, concurrency and rate must be positive".into());
        }
        if (self.rate_burst as usize) < self.max_batch {
            problems.push("the rate burst must allow at least one full batch".into());
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.compression.as_str()) {
            problems.push(format!("unknown compression `{}`", self.compression));
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            problems.push("the header and body timeouts must be positive".into());
        }
        if self.body_timeout >= self.request_timeout {
            problems.push("the body timeout must be shorter than the request timeout".into());
        }
        if self.redis_timeout.is_zero() || self.redis_timeout >= self.request_timeout {
            problems.push(
                "the redis timeout must be positive and shorter than the request timeout".into(),
            );
        }
        if self.ack_timeout.is_zero() || self.ack_timeout >= self.request_timeout {
            problems.push(
                "the ack timeout must be positive and shorter than the request timeout".into(),
            );
        }
        if self.delivery_timeout < self.ack_timeout {
            problems.push("the delivery timeout must be at least the ack timeout".into());
        }
        problems
    }

    /// See [`crate::state::Limits::ack_budget`].
    pub fn ack_budget(&self) -> Duration {
        self.request_timeout
            .saturating_sub(self.redis_timeout + ANSWER_MARGIN)
            .max(Duration::from_millis(1))
    }
}
