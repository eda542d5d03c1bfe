//! `demo`: the seed's "user creates a video post" walk-through (STEP 1–7) against a running
//! pipeline, printing what happens as it happens and the STEP table at the end.
//!
//! Exit codes: 0 every step happened, 69 the pipeline is not up (nothing was sent), 1 a step
//! failed or did not happen in time, 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use circulatory::auth::{claims_for, mint_hs256};
use circulatory_scenarios::clip::ClipSpec;
use circulatory_scenarios::ingest::{root_cause, IngestClient};
use circulatory_scenarios::video_post::{self, Connect, Plan, Target};
use clap::Parser;

/// The consumer groups the scenario goes through and where `scripts/up` serves their /readyz.
const GROUPS: &[&str] = &[
    "user-lifecycle=127.0.0.1:9101",
    "feed-fanout=127.0.0.1:9102",
    "notifier=127.0.0.1:9103",
    "transcoder=127.0.0.1:9105",
    "thumbnailer=127.0.0.1:9106",
    "video-publisher=127.0.0.1:9107",
    "realtime-bridge=127.0.0.1:9114",
];

/// "User creates a video post" against the running pipeline (scripts/up): creates an author and
/// followers through POST /v1/events, uploads a generated clip through POST /v1/videos, then
/// follows it through transcoding, thumbnailing, publication, the author's notification, the
/// followers' feeds and their realtime messages, timing each step (STEP 1–7 of the seed).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The ingest API.
    #[arg(long, env = "CIRC_INGEST_URL", default_value = "http://127.0.0.1:8080")]
    ingest_url: String,
    /// A bearer token allowed to publish user.* and video.uploaded (default: one minted with the
    /// JWT secret).
    #[arg(long, env = "CIRC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The HS256 secret the ingest API verifies tokens with.
    #[arg(long, env = "CIRC_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Where scripts/up keeps that secret, read when neither --token nor --jwt-secret is given.
    #[arg(long, default_value = ".stack/jwt-secret")]
    jwt_secret_file: PathBuf,
    /// The topology file.
    #[arg(long, env = "CIRC_TOPOLOGY", default_value = "topics.yaml")]
    topology: PathBuf,
    /// The Avro schemas folder.
    #[arg(long, env = "CIRC_SCHEMAS", default_value = "schemas")]
    schemas: PathBuf,
    /// The pipeline's namespace (topic prefix and Redis key namespace); none for scripts/up.
    #[arg(long, env = "CIRC_NAMESPACE")]
    namespace: Option<String>,
    /// Kafka bootstrap servers (the media topic is tailed for the event timeline).
    #[arg(long, env = "CIRC_KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Redis (feeds, realtime channels).
    #[arg(long, env = "CIRC_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// PostgreSQL (the groups' projections).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://circulatory:circulatory@127.0.0.1:5432/circulatory",
        hide_env_values = true
    )]
    database_url: String,
    /// The ingest API's object store, to check the stored original (a local folder; an s3://
    /// store is not checked).
    #[arg(long, env = "CIRC_OBJECT_STORE", default_value = ".stack/objects")]
    object_store: String,
    /// How many followers the author gets.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    followers: u32,
    /// The clip's width.
    #[arg(long, default_value_t = 854)]
    width: u32,
    /// The clip's height.
    #[arg(long, default_value_t = 480)]
    height: u32,
    /// The clip's length in seconds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=60))]
    seconds: u32,
    /// How long the set-up, and then the processing after the upload, may take.
    #[arg(long, default_value = "3m", value_parser = circulatory::process::flags::duration)]
    timeout: Duration,
    /// A consumer group that must be ready first, as NAME=HOST:PORT of its /readyz (repeat;
    /// default: the groups of this scenario where scripts/up serves them).
    #[arg(long = "group", value_name = "NAME=HOST:PORT", default_values_t = GROUPS.iter().map(|g| g.to_string()))]
    groups: Vec<String>,
    /// Skip the groups' /readyz check (groups running without their endpoints).
    #[arg(long)]
    no_group_check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let token = match token(&args) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("demo: {e:#}");
            return ExitCode::from(69);
        }
    };
    if let Err(problems) = pipeline_up(&args, &token).await {
        eprintln!("demo: the pipeline is not up:");
        for problem in problems {
            eprintln!("  - {problem}");
        }
        eprintln!("Start it with scripts/up (it starts the ingest API and every consumer group).");
        return ExitCode::from(69);
    }
    let object_store =
        (!args.object_store.contains("://")).then(|| PathBuf::from(&args.object_store));
    let target = match Target::connect(&Connect {
        ingest_url: args.ingest_url.clone(),
        token,
        topology: args.topology.clone(),
        schemas: args.schemas.clone(),
        namespace: args.namespace.clone(),
        bootstrap: args.bootstrap.clone(),
        redis_url: args.redis.clone(),
        database_url: args.database_url.clone(),
        object_store,
    })
    .await
    {
        Ok(target) => target,
        Err(e) => {
            eprintln!("demo: the pipeline is not up: {e:#}");
            eprintln!("Start it with scripts/up.");
            return ExitCode::from(69);
        }
    };
    let plan = Plan {
        followers: args.followers as usize,
        clip: ClipSpec {
            width: args.width,
            height: args.height,
            seconds: args.seconds,
        },
        within: args.timeout,
        ..Plan::default()
    };
    println!(
        "User creates a video post — against {} (namespace {})",
        args.ingest_url,
        args.namespace.as_deref().unwrap_or("default")
    );
    let outcome = video_post::run(&target, &plan, &mut |line| println!("{line}")).await;
    match outcome {
        Ok(outcome) => {
            println!();
            print!("{}", outcome.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: FAILED: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The token: given, or minted with the secret (given or read from its file).
fn token(args: &Args) -> anyhow::Result<String> {
    if let Some(token) = &args.token {
        return Ok(token.clone());
    }
    let secret = match &args.jwt_secret {
        Some(secret) => secret.clone(),
        None => std::fs::read_to_string(&args.jwt_secret_file)
            .with_context(|| {
                format!(
                    "no --token or --jwt-secret, and the secret file {} cannot be read \
                     (scripts/up creates it)",
                    args.jwt_secret_file.display()
                )
            })?
            .trim()
            .to_string(),
    };
    let mut claims = claims_for("scenario-demo", Duration::from_secs(3600));
    claims.events = vec!["user.*".into(), "video.uploaded".into()];
    // The scenario's app uploads for the users it creates.
    claims.on_behalf = true;
    mint_hs256(secret.as_bytes(), &claims).map_err(|e| anyhow::anyhow!("minting a token: {e}"))
}

/// Whether the ingest API and the scenario's groups answer /readyz; every problem at once.
async fn pipeline_up(args: &Args, token: &str) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    match IngestClient::new(&args.ingest_url, token) {
        Ok(ingest) => {
            if let Err(e) = ingest.ready().await {
                problems.push(format!("the ingest API at {} {e}", args.ingest_url));
            }
        }
        Err(e) => problems.push(format!("{e:#}")),
    }
    if !args.no_group_check {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| vec![e.to_string()])?;
        for group in &args.groups {
            let Some((name, address)) = group.split_once('=') else {
                problems.push(format!("--group {group}: expected NAME=HOST:PORT"));
                continue;
            };
            let url = format!("http://{address}/readyz");
            match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => problems.push(format!(
                    "consumer group {name} is not ready ({url} answered {})",
                    response.status().as_u16()
                )),
                Err(e) => problems.push(format!(
                    "consumer group {name} does not answer at {url} ({})",
                    root_cause(&e)
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
