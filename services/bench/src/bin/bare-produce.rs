//! `bare-produce`: the floor of "HTTP → Kafka with an acknowledgement" on a machine, to measure
//! the ingest against.
//!
//! One route, `POST /v1/events`: read the body (bounded like the ingest's 1 MiB default), produce
//! it unchanged as one record's value, with no key, to one topic, and answer 202 once the broker
//! acknowledged it (503 if it did not). No auth, no JSON parsing, no validation, no Avro, no
//! headers, no idempotency store, no trace index: what the ingest does beyond this is its cost.
//! The producer is the ingest's (`circulatory::kafka::producer`: `acks=all`, idempotent, the
//! same compression, linger and delivery timeout), and so are the runtime and the allocator.
//! `GET /readyz` answers 200. Used by `scripts/bench/peers/run`; not part of any test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use circulatory::kafka::{self, KafkaConfig, ProducerSettings};
use circulatory::process::{flags, KafkaFlags};
use clap::Parser;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The ingest's allocator, for the same reason (`services/ingest/src/main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "bare-produce",
    about = "Bare axum handler producing the body to Kafka: the HTTP → Kafka floor."
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "BARE_PRODUCE_LISTEN", default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// The topic every body is produced to.
    #[arg(long, env = "BARE_PRODUCE_TOPIC")]
    topic: String,
    #[command(flatten)]
    kafka: KafkaFlags,
    /// Largest request body, in bytes (the ingest's default limit).
    #[arg(long, env = "BARE_PRODUCE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// The producer's linger (the ingest's default on its HTTP path).
    #[arg(long, env = "CIRC_INGEST_LINGER", default_value = "0ms", value_parser = flags::duration)]
    linger: Duration,
    /// The producer's compression (the ingest's default).
    #[arg(long, env = "CIRC_INGEST_COMPRESSION", default_value = "zstd")]
    compression: String,
    /// How long a record may take to be acknowledged (the ingest's default).
    #[arg(long, env = "CIRC_INGEST_DELIVERY_TIMEOUT", default_value = "30s", value_parser = flags::duration)]
    delivery_timeout: Duration,
}

struct Target {
    producer: FutureProducer,
    topic: String,
    limit: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let settings = ProducerSettings {
        delivery_timeout: args.delivery_timeout,
        linger: args.linger,
        compression: args.compression.clone(),
        ..ProducerSettings::default()
    };
    let kafka = KafkaConfig::new(args.kafka.bootstrap.clone(), "bare-produce");
    let target = Arc::new(Target {
        producer: kafka::producer(&kafka, &settings)?,
        topic: args.topic,
        limit: args.max_body_bytes,
    });
    let app = Router::new()
        .route(
            "/v1/events",
            post(move |body: Body| produce(target.clone(), body)),
        )
        .route("/readyz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("bare-produce listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Reads at most `limit` bytes (413 beyond), produces them, answers 202 after the ack.
async fn produce(target: Arc<Target>, body: Body) -> StatusCode {
    let Ok(bytes) = to_bytes(body, target.limit).await else {
        return StatusCode::PAYLOAD_TOO_LARGE;
    };
    let record = FutureRecord::<(), [u8]>::to(&target.topic).payload(&bytes);
    match target.producer.send(record, Duration::ZERO).await {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
