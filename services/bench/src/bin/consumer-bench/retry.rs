//! Retry delay accuracy: the handler fails the first attempt of every event (retryable) and
//! succeeds on the second; lateness = second attempt − first failure − the ladder's first delay.
//! Times are wall-clock milliseconds, the precision of the `circ_due_at` header the engine
//! schedules by, so a second attempt before its due time shows as a negative lateness.

use circulatory::sync::MutexExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use circulatory::consumer::{Context, Event, HandlerError};
use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{sample, stats, Env};

#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// The group to run: the first rung of its retry ladder is the delay measured.
    #[arg(long, default_value = "messenger")]
    group: String,
    /// The type whose first attempts fail (one the group subscribes to).
    #[arg(long, default_value = "message.sent")]
    event_type: String,
    /// Events published.
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// Events published per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Suffix of the consumer group id.
    #[arg(long)]
    run: String,
    /// Seconds between starting the group and the first publish (0: publish at once, while the
    /// group joins).
    #[arg(long, default_value_t = 0)]
    settle_secs: u64,
    /// Gives up this many seconds after the last publish.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

#[derive(Default)]
struct Attempts {
    /// Event id → wall-clock ms when its first attempt failed.
    failed: HashMap<String, i64>,
    /// Event id → wall-clock ms when its second attempt started, and where it was read (retry
    /// topic partition and offset).
    second: HashMap<String, (i64, i32, i64)>,
    /// Attempts beyond the first two (redeliveries, a third rung).
    other: u64,
}

pub(crate) async fn run(env: &Env, args: &RetryArgs) -> Result<serde_json::Value, String> {
    let declared = env
        .catalog
        .group(&args.group)
        .ok_or_else(|| format!("no group `{}`", args.group))?
        .clone();
    if !declared.subscribe.contains(&args.event_type) {
        return Err(format!(
            "{} does not subscribe to {}",
            args.group, args.event_type
        ));
    }
    let delay = *declared
        .retry_delays
        .first()
        .ok_or_else(|| format!("{} has no retry ladder", args.group))?;
    if declared.max_attempts < 2 {
        return Err(format!("{} makes a single attempt", args.group));
    }
    let attempts: Arc<Mutex<Attempts>> = Arc::default();
    let handler = {
        let attempts = attempts.clone();
        let failing = args.event_type.clone();
        move |event: Event, _ctx: Context| {
            let attempts = attempts.clone();
            let failing = failing.clone();
            async move {
                let now = chrono::Utc::now().timestamp_millis();
                if event.event_type() != failing {
                    return Ok(());
                }
                let mut attempts = attempts.locked();
                match event.attempt {
                    1 => {
                        attempts.failed.entry(event.id().to_string()).or_insert(now);
                        Err(HandlerError::retryable("the first attempt fails"))
                    }
                    2 => {
                        attempts.second.entry(event.id().to_string()).or_insert((
                            now,
                            event.partition,
                            event.offset,
                        ));
                        Ok(())
                    }
                    _ => {
                        attempts.other += 1;
                        Ok(())
                    }
                }
            }
        }
    };
    let (group, group_id) = env.group(&args.group, &args.run, handler)?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(group.run(shutdown.clone()));

    let event = env
        .catalog
        .event(&args.event_type)
        .ok_or_else(|| format!("unknown type {}", args.event_type))?
        .clone();
    let publisher = env.publisher()?;
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let start = Instant::now();
    let mut ids = Vec::with_capacity(args.count as usize);
    for i in 0..args.count {
        tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()).await;
        let validated = publisher
            .validate(circulatory::publisher::EventDraft {
                event_type: args.event_type.clone(),
                data: sample::data(&event.schema_json),
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
        let delivered = publisher
            .publish(validated)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        ids.push(delivered.id);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    while Instant::now() < deadline && !task.is_finished() {
        let all = {
            let attempts = attempts.locked();
            ids.iter().all(|id| attempts.second.contains_key(id))
        };
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let outcome = match tokio::time::timeout(Duration::from_secs(60), task).await {
        Ok(Ok(Ok(()))) => "stopped".to_string(),
        Ok(Ok(Err(e))) => format!("failed: {e}"),
        Ok(Err(e)) => format!("panicked: {e}"),
        Err(_) => "did not stop within 60 s".to_string(),
    };
    let attempts = attempts.locked();
    let delay_ms = delay.as_millis() as i64;
    let mut lateness = Vec::new();
    let mut early = Vec::new();
    let mut missing = 0u64;
    // Lateness by position in its retry partition (0 = the partition's first record), to show
    // whether it builds up along a partition.
    let mut by_partition: HashMap<i32, Vec<(i64, f64)>> = HashMap::new();
    for id in &ids {
        match (attempts.failed.get(id), attempts.second.get(id)) {
            (Some(failed), Some((second, partition, offset))) => {
                let late = second - failed - delay_ms;
                if late < 0 {
                    early.push(json!({"id": id, "lateness_ms": late}));
                }
                lateness.push(late as f64);
                by_partition
                    .entry(*partition)
                    .or_default()
                    .push((*offset, late as f64));
            }
            _ => missing += 1,
        }
    }
    let mut by_position: Vec<Vec<f64>> = Vec::new();
    for records in by_partition.values_mut() {
        records.sort_by_key(|(offset, _)| *offset);
        for (k, (_, late)) in records.iter().enumerate() {
            if by_position.len() <= k {
                by_position.push(Vec::new());
            }
            by_position[k].push(*late);
        }
    }
    let by_position: Vec<serde_json::Value> = by_position
        .iter()
        .map(|values| stats::summary(values)["p50"].clone())
        .collect();
    Ok(json!({
        "group": args.group,
        "group_id": group_id,
        "event_type": args.event_type,
        "delay_ms": delay_ms,
        "settle_secs": args.settle_secs,
        "published": ids.len(),
        "first_failures": attempts.failed.len(),
        "second_attempts": attempts.second.len(),
        "other_attempts": attempts.other,
        "missing": missing,
        "early": early.len(),
        "early_events": early,
        "lateness_ms": stats::summary(&lateness),
        "lateness_p50_ms_by_position_in_partition": by_position,
        "outcome": outcome,
    }))
}
