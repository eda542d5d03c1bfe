//! `bare-http`: the HTTP+JSON ceiling of the ingest API, without Kafka, auth or validation.
//!
//! One route, `POST /v1/events`: read the body (bounded like the ingest's 1 MiB default), parse it
//! as JSON, answer 202 with a small JSON body. `GET /readyz` answers 200 so scripts can wait for
//! it. Same runtime as the ingest (`#[tokio::main]`, one worker per core). Used by
//! `scripts/bench/ingest`; not part of any test.

use std::net::SocketAddr;

use axum::body::{to_bytes, Body};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(
    name = "bare-http",
    about = "Bare axum POST handler: the HTTP+JSON ceiling for the ingest benchmark."
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "BARE_HTTP_LISTEN", default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Largest request body, in bytes (the ingest's default limit).
    #[arg(long, env = "BARE_HTTP_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let limit = args.max_body_bytes;
    let app = Router::new()
        .route("/v1/events", post(move |body: Body| accept(body, limit)))
        .route("/readyz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("bare-http listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// Reads at most `limit` bytes (413 beyond), parses JSON (400 when invalid), answers 202.
async fn accept(body: Body, limit: usize) -> Response {
    let Ok(bytes) = to_bytes(body, limit).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => {
            let events = value.as_array().map_or(1, Vec::len);
            (StatusCode::ACCEPTED, Json(json!({ "accepted": events }))).into_response()
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
