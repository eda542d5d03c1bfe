//! The bounded load: single events POSTed on an open-loop schedule (each at its time, whatever
//! the answers before it), at most `--max-in-flight` outstanding (a send that would exceed it is
//! skipped and counted), no client retries. Runs until SIGTERM/SIGINT or `--max-secs`, then
//! waits for the outstanding answers and writes `outcomes.jsonl`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bodies::{Bodies, Planned};
use crate::outcome::{self, Outcome};
use crate::{now_ms, offsets, Env};

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// The ingest API, e.g. http://127.0.0.1:18080.
    #[arg(long)]
    ingest_url: String,
    /// Bearer token for the ingest.
    #[arg(long, env = "CHAOS_TOKEN", hide_env_values = true)]
    token: String,
    /// Events (requests) per second.
    #[arg(long, default_value_t = 300)]
    rate: u32,
    /// Requests outstanding at once.
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
    /// Stop by itself after this long.
    #[arg(long, default_value_t = 180)]
    max_secs: u64,
    /// Event types sent, in turn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "user.created,payment.initiated"
    )]
    types: Vec<String>,
    /// Client-side bound of one request (the ingest's own request timeout is 15 s).
    #[arg(long, default_value_t = 20)]
    request_timeout_secs: u64,
}

pub(crate) async fn run(env: &Env, args: &LoadArgs) -> Result<Value, String> {
    if args.rate == 0 {
        return Err("--rate must be positive".into());
    }
    let bodies = Bodies::new(&args.types)?;
    record_start_offsets(env, &args.types).await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(args.request_timeout_secs))
        .pool_max_idle_per_host(args.max_in_flight)
        // Sooner than the ingest closes an idle connection (its 10 s header timeout): a request
        // sent as the server closes is reset unread, which a client without retries counts as
        // unanswered.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let stop = stop_on_signal(Duration::from_secs(args.max_secs));
    let started_ms = now_ms();
    std::fs::write(env.dir.join("load-started"), format!("{started_ms:.0}\n"))
        .map_err(|e| e.to_string())?;
    let (mut tasks, skipped) = fire(args, &client, bodies, &stop).await;
    let stopped_ms = now_ms();
    let mut outcomes = Vec::with_capacity(tasks.len());
    while let Some(done) = tasks.join_next().await {
        outcomes.extend(done.ok());
    }
    outcomes.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    outcome::write_all(&env.dir.join("outcomes.jsonl"), &outcomes)?;
    let acknowledged = outcomes.iter().filter(|o| o.acknowledged()).count();
    Ok(json!({
        "started_ms": started_ms,
        "stopped_ms": stopped_ms,
        "rate": args.rate,
        "sent": outcomes.len(),
        "skipped": skipped,
        "acknowledged": acknowledged,
        "not_acknowledged": outcomes.len() - acknowledged,
    }))
}

/// Sends on schedule until `stop`: the requests' tasks, and how many sends the in-flight bound
/// skipped.
async fn fire(
    args: &LoadArgs,
    client: &reqwest::Client,
    mut bodies: Bodies,
    stop: &CancellationToken,
) -> (JoinSet<Outcome>, u64) {
    let url = format!("{}/v1/events", args.ingest_url.trim_end_matches('/'));
    let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut skipped = 0u64;
    for i in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()) => {}
        }
        let planned = bodies.next();
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let request = client
            .post(&url)
            .bearer_auth(&args.token)
            .json(&planned.body);
        tasks.spawn(async move {
            let outcome = send(request, planned).await;
            drop(permit);
            outcome
        });
    }
    (tasks, skipped)
}

/// The end offsets of the run's topics (the types' topics and the groups' dead letters), before
/// the first event: the read-back starts there.
async fn record_start_offsets(env: &Env, types: &[String]) -> Result<(), String> {
    let mut topics = types
        .iter()
        .map(|t| env.topic_of(t))
        .collect::<Result<Vec<_>, _>>()?;
    topics.extend(env.groups.iter().filter_map(|g| env.dead_letter_topic(g)));
    topics.sort();
    topics.dedup();
    let bootstrap = env.bootstrap.clone();
    let start = tokio::task::spawn_blocking(move || {
        let client = offsets::metadata_client(&bootstrap)?;
        offsets::end_offsets(&client, &topics)
    })
    .await
    .map_err(|e| e.to_string())??;
    offsets::save(&env.dir.join("start-offsets.json"), &start)
}

/// Cancelled on SIGTERM, SIGINT or after `limit`.
fn stop_on_signal(limit: Duration) -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = circulatory::process::shutdown_signal() => {}
            _ = tokio::time::sleep(limit) => {}
        }
        token.cancel();
    });
    stop
}

/// One request and what came of it.
async fn send(request: reqwest::RequestBuilder, planned: Planned) -> Outcome {
    let sent_ms = now_ms();
    let mut outcome = Outcome {
        id: planned.id,
        event_type: planned.event_type.to_string(),
        entity: planned.entity,
        sent_ms,
        done_ms: sent_ms,
        status: 0,
        error_code: None,
        error: None,
        partition: None,
        offset: None,
    };
    match request.send().await {
        Ok(response) => {
            outcome.status = response.status().as_u16();
            let body: Option<Value> = response.json().await.ok();
            let field = |name: &str| body.as_ref().and_then(|b| b.get(name)).cloned();
            outcome.error_code = field("error_code").and_then(|v| v.as_u64());
            outcome.partition = field("partition")
                .and_then(|v| v.as_i64())
                .map(|p| p as i32);
            outcome.offset = field("offset").and_then(|v| v.as_i64());
        }
        Err(e) => outcome.error = Some(error_text(&e)),
    }
    outcome.done_ms = now_ms();
    outcome
}

/// A transport error with its causes, e.g. "error sending request: operation timed out".
fn error_text(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
