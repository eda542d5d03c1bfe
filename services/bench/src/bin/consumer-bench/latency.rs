//! End-to-end latency at fixed rates: single events POSTed to the ingest API on an open-loop
//! schedule, each with its own CloudEvents `subject`; a consumer group in this process records
//! when its handler ran for each subject. Both clocks are this process's monotonic clock, so
//! send → 202 → handler needs no clock synchronisation.

use circulatory::sync::MutexExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use circulatory::consumer::{Context, Event, HandlerError};
use clap::Args;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{sample, stats, Env};

#[derive(Debug, Args)]
pub(crate) struct LatencyArgs {
    /// The group to run; it must subscribe to `--event-type`.
    #[arg(long, default_value = "event-tracking")]
    group: String,
    #[arg(long, default_value = "like.added")]
    event_type: String,
    /// The ingest API under test, e.g. http://127.0.0.1:8080 (started with this namespace).
    #[arg(long)]
    ingest_url: String,
    /// HS256 secret of the ingest's tokens.
    #[arg(long, env = "CIRC_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Offered rates, events (requests) per second.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    rates: Vec<u32>,
    /// Seconds of load per rate.
    #[arg(long, default_value_t = 15)]
    duration_secs: u64,
    /// Repetitions of the whole set of rates.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Suffix of the consumer group id.
    #[arg(long)]
    run: String,
    /// How long to wait for the last events' handlers after the last request.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Requests outstanding at once; a send that would exceed it is skipped and counted.
    #[arg(long, default_value_t = 1024)]
    max_outstanding: usize,
    /// Directory for every sample of every run and rate, one TSV file each
    /// (`run<N>-<rate>.tsv`: ms since the first send, send → 202, send → handler).
    #[arg(long)]
    samples_dir: Option<std::path::PathBuf>,
}

/// When the handler first ran for each subject.
type Handled = Arc<Mutex<HashMap<String, Instant>>>;

struct Sample {
    subject: String,
    scheduled: Instant,
    sent: Instant,
    answered: Instant,
    status: u16,
}

struct Load<'a> {
    env: &'a Env,
    args: &'a LatencyArgs,
    client: reqwest::Client,
    url: String,
    token: String,
    handled: Handled,
}

/// The group's own runtime, shut down without blocking when the measurement ends (a runtime
/// cannot be dropped inside another one's tasks).
struct GroupRuntime(Option<tokio::runtime::Runtime>);

impl GroupRuntime {
    fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().expect("running").spawn(future)
    }
}

impl Drop for GroupRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

impl Load<'_> {
    fn body(&self, subject: &str) -> serde_json::Value {
        let schema = &self
            .env
            .catalog
            .event(&self.args.event_type)
            .expect("checked at start")
            .schema_json;
        json!({"type": self.args.event_type, "subject": subject, "data": sample::data(schema)})
    }

    /// Sends `rate` requests per second for `duration`, each at its scheduled time (open loop).
    async fn send(&self, prefix: &str, rate: u32, duration: Duration) -> (Vec<Sample>, u64) {
        let n = (rate as f64 * duration.as_secs_f64()).round() as u64;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let outstanding = Arc::new(Semaphore::new(self.args.max_outstanding));
        let mut tasks = JoinSet::new();
        let mut skipped = 0u64;
        let start = Instant::now() + Duration::from_millis(20);
        for i in 0..n {
            let subject = format!("{prefix}-{i}");
            let body = self.body(&subject);
            let scheduled = start + interval.mul_f64(i as f64);
            tokio::time::sleep_until(scheduled.into()).await;
            let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                skipped += 1;
                continue;
            };
            let request = self
                .client
                .post(&self.url)
                .bearer_auth(&self.token)
                .json(&body);
            tasks.spawn(async move {
                let sent = Instant::now();
                let status = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                let answered = Instant::now();
                drop(permit);
                Sample {
                    subject,
                    scheduled,
                    sent,
                    answered,
                    status,
                }
            });
        }
        let mut samples = Vec::with_capacity(n as usize);
        while let Some(done) = tasks.join_next().await {
            if let Ok(sample) = done {
                samples.push(sample);
            }
        }
        (samples, skipped)
    }

    /// Waits (bounded) until the handler ran for every accepted subject.
    async fn wait_handled(&self, samples: &[Sample]) {
        let deadline = Instant::now() + Duration::from_secs(self.args.drain_secs);
        while Instant::now() < deadline {
            let missing = {
                let handled = self.handled.locked();
                samples
                    .iter()
                    .any(|s| s.status == 202 && !handled.contains_key(&s.subject))
            };
            if !missing {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn measure(&self, run: u32, rate: u32) -> serde_json::Value {
        let duration = Duration::from_secs(self.args.duration_secs);
        let (samples, skipped) = self.send(&format!("r{run}-{rate}"), rate, duration).await;
        self.wait_handled(&samples).await;
        let handled = self.handled.locked();
        let mut statuses: HashMap<String, u64> = HashMap::new();
        let (mut http, mut send_done, mut ack_done, mut scheduled_done, mut lag) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut missing = 0u64;
        for s in &samples {
            *statuses.entry(s.status.to_string()).or_default() += 1;
            lag.push(ms(s.sent, s.scheduled));
            if s.status != 202 {
                continue;
            }
            http.push(ms(s.answered, s.sent));
            match handled.get(&s.subject) {
                Some(done) => {
                    send_done.push(ms(*done, s.sent));
                    ack_done.push(ms(*done, s.answered));
                    scheduled_done.push(ms(*done, s.scheduled));
                }
                None => missing += 1,
            }
        }
        let first = samples.iter().map(|s| s.sent).min();
        if let (Some(dir), Some(first)) = (&self.args.samples_dir, first) {
            // Wall clock of the first send, to line samples up with other processes' logs.
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0
                - ms(Instant::now(), first);
            let mut tsv = format!(
                "# first send at unix ms {unix_ms:.0}\nsince_first_ms\tsend_to_202_ms\tsend_to_handler_ms\n"
            );
            for s in samples.iter().filter(|s| s.status == 202) {
                let done = handled.get(&s.subject).map(|d| ms(*d, s.sent));
                tsv.push_str(&format!(
                    "{:.3}\t{:.3}\t{}\n",
                    ms(s.sent, first),
                    ms(s.answered, s.sent),
                    done.map_or_else(|| "-".into(), |d| format!("{d:.3}"))
                ));
            }
            let path = dir.join(format!("run{run}-{rate}.tsv"));
            if let Err(e) = std::fs::write(&path, tsv) {
                eprintln!(
                    "consumer-bench latency: cannot write {}: {e}",
                    path.display()
                );
            }
        }
        let last = samples.iter().map(|s| s.sent).max();
        let achieved = match (first, last) {
            (Some(f), Some(l)) if l > f => (samples.len() as f64 - 1.0) / (l - f).as_secs_f64(),
            _ => 0.0,
        };
        json!({
            "run": run,
            "rate": rate,
            "duration_s": self.args.duration_secs,
            "sent": samples.len(),
            "skipped_overload": skipped,
            "achieved_rate": achieved,
            "statuses": statuses,
            "handled": send_done.len(),
            "missing": missing,
            "ms": {
                "send_to_202": stats::summary(&http),
                "202_to_handler": stats::summary(&ack_done),
                "send_to_handler": stats::summary(&send_done),
                "scheduled_to_handler": stats::summary(&scheduled_done),
                "send_lag": stats::summary(&lag),
            },
        })
    }
}

pub(crate) async fn run(env: &Env, args: &LatencyArgs) -> Result<serde_json::Value, String> {
    let declared = env
        .catalog
        .group(&args.group)
        .ok_or_else(|| format!("no group `{}`", args.group))?;
    if !declared.subscribe.contains(&args.event_type) {
        return Err(format!(
            "{} does not subscribe to {}",
            args.group, args.event_type
        ));
    }
    if args.rates.contains(&0) || args.duration_secs == 0 {
        return Err("rates and duration must be positive".into());
    }
    let handled: Handled = Arc::default();
    let handler = {
        let handled = handled.clone();
        move |event: Event, _ctx: Context| {
            let handled = handled.clone();
            async move {
                let now = Instant::now();
                if let Some(subject) = event.metadata.subject {
                    handled.locked().entry(subject).or_insert(now);
                }
                Ok::<(), HandlerError>(())
            }
        }
    };
    let (group, group_id) = env.group(&args.group, &args.run, handler)?;
    let shutdown = CancellationToken::new();
    // The group runs on a runtime of its own, as in a group binary: the load generator's tasks
    // (the clock of every sample) never wait behind the engine's on one runtime's workers.
    let group_runtime = GroupRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("group-worker")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?,
    ));
    let task = group_runtime.spawn(group.run(shutdown.clone()));

    let mut claims = circulatory::auth::claims_for("consumer-bench", Duration::from_secs(7200));
    claims.events = vec!["*".into()];
    let token = circulatory::auth::mint_hs256(args.jwt_secret.as_bytes(), &claims)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(args.max_outstanding)
        .build()
        .map_err(|e| e.to_string())?;
    let load = Load {
        env,
        args,
        client,
        url: format!("{}/v1/events", args.ingest_url.trim_end_matches('/')),
        token,
        handled: handled.clone(),
    };

    // Warm-up: until the group has its partitions and handled an event, then a short load at the
    // lowest rate (connections, caches); none of it is recorded.
    let ready_deadline = Instant::now() + Duration::from_secs(120);
    let mut probe = 0u32;
    loop {
        let (samples, _) = load
            .send(&format!("probe{probe}"), 10, Duration::from_millis(100))
            .await;
        if let Some(s) = samples.iter().find(|s| s.status != 202) {
            shutdown.cancel();
            return Err(format!("the ingest answered {} to a probe", s.status));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = handled.locked().keys().any(|k| k.starts_with("probe"));
        if seen {
            break;
        }
        if Instant::now() > ready_deadline || task.is_finished() {
            shutdown.cancel();
            return Err("the group handled no event within 120 s".into());
        }
        probe += 1;
    }
    let lowest = args.rates.iter().copied().min().unwrap_or(100);
    let (warm, _) = load.send("warm", lowest, Duration::from_secs(3)).await;
    load.wait_handled(&warm).await;

    let mut results = Vec::new();
    for run in 1..=args.runs {
        for rate in &args.rates {
            if task.is_finished() {
                break;
            }
            let result = load.measure(run, *rate).await;
            eprintln!("consumer-bench latency: {result}");
            results.push(result);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    shutdown.cancel();
    let outcome = match tokio::time::timeout(Duration::from_secs(60), task).await {
        Ok(Ok(Ok(()))) => "stopped".to_string(),
        Ok(Ok(Err(e))) => format!("failed: {e}"),
        Ok(Err(e)) => format!("panicked: {e}"),
        Err(_) => "did not stop within 60 s".to_string(),
    };

    Ok(json!({
        "group": args.group,
        "group_id": group_id,
        "event_type": args.event_type,
        "rates": args.rates,
        "duration_s": args.duration_secs,
        "runs": args.runs,
        "outcome": outcome,
        "results": results,
    }))
}
