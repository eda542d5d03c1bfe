//! No-op handler throughput: a fresh consumer group reads what `produce` wrote; the clock runs from
//! the start of `ConsumerGroup::run` until the N-th handler call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use circulatory::consumer::{Context, Event, GroupSettings, HandlerError};
use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Env;

#[derive(Debug, Args)]
pub(crate) struct ThroughputArgs {
    /// The group to run (its declared subscription, bounds and retry ladder).
    #[arg(long, default_value = "event-tracking")]
    group: String,
    /// Events to handle before the clock stops (what `produce` wrote).
    #[arg(long)]
    count: u64,
    /// Run the group with Kafka transactions (`ConsumerGroup::transactional`).
    #[arg(long)]
    transactional: bool,
    /// Suffix of the consumer group id, unique per measurement.
    #[arg(long)]
    run: String,
    /// Replaces the group's `max_in_flight` from the topology (per-process tuning).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Gives up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

struct Counter {
    target: u64,
    handled: AtomicU64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    done: CancellationToken,
}

pub(crate) async fn run(env: &Env, args: &ThroughputArgs) -> Result<serde_json::Value, String> {
    let counter = Arc::new(Counter {
        target: args.count,
        handled: AtomicU64::new(0),
        first: OnceLock::new(),
        last: OnceLock::new(),
        done: CancellationToken::new(),
    });
    let handler = {
        let counter = counter.clone();
        move |_event: Event, _ctx: Context| {
            let counter = counter.clone();
            async move {
                let n = counter.handled.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 {
                    let _ = counter.first.set(Instant::now());
                }
                if n == counter.target {
                    let _ = counter.last.set(Instant::now());
                    counter.done.cancel();
                }
                Ok::<(), HandlerError>(())
            }
        }
    };
    let (mut group, group_id) = env.group(&args.group, &args.run, handler)?;
    if args.transactional {
        group = group.transactional();
    }
    if let Some(max_in_flight) = args.max_in_flight {
        group = group.settings(GroupSettings {
            max_in_flight: Some(max_in_flight),
            ..GroupSettings::default()
        });
    }
    let shutdown = CancellationToken::new();
    let cpu_before = crate::cpu_seconds();
    let started = Instant::now();
    let mut task = tokio::spawn(group.run(shutdown.clone()));
    let finished_early = tokio::select! {
        _ = counter.done.cancelled() => None,
        _ = tokio::time::sleep(Duration::from_secs(args.timeout_secs)) => None,
        result = &mut task => Some(result),
    };
    let cpu_after = crate::cpu_seconds();
    let handled = counter.handled.load(Ordering::Relaxed);
    shutdown.cancel();
    let stop_started = Instant::now();
    let stopped = match finished_early {
        Some(result) => Some(result),
        None => tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .ok(),
    };
    let stop_seconds = stop_started.elapsed().as_secs_f64();
    let outcome = match stopped {
        Some(Ok(Ok(()))) => "stopped".to_string(),
        Some(Ok(Err(e))) => format!("failed: {e}"),
        Some(Err(e)) => format!("panicked: {e}"),
        None => "did not stop within 60 s".to_string(),
    };
    let (Some(first), Some(last)) = (counter.first.get(), counter.last.get()) else {
        return Err(format!(
            "{handled} of {} events handled in {} s (group {outcome})",
            args.count, args.timeout_secs
        ));
    };
    let total = last.duration_since(started).as_secs_f64();
    let after_first = last.duration_since(*first).as_secs_f64();
    Ok(json!({
        "group": args.group,
        "group_id": group_id,
        "transactional": args.transactional,
        "max_in_flight": args.max_in_flight,
        "count": args.count,
        "handled_at_stop": handled,
        "seconds": total,
        "records_per_s": args.count as f64 / total,
        "first_handled_s": first.duration_since(started).as_secs_f64(),
        "seconds_after_first": after_first,
        "records_per_s_after_first": (args.count - 1) as f64 / after_first,
        "cpu_seconds": cpu_after.zip(cpu_before).map(|(a, b)| a - b),
        "stop_seconds": stop_seconds,
        "outcome": outcome,
    }))
}
