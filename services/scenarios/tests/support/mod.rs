//! The pipeline of the video-post scenario in this process, on the real stack, in one fresh
//! namespace: the ingest API served on a local port (as `ingest` serves it) and the groups
//! user-lifecycle, transcoder, thumbnailer, video-publisher, feed-fanout, notifier and
//! realtime-bridge with their real handlers. The API and the media groups share one object-store
//! folder, as `scripts/up` has them share `.stack/objects`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use circulatory::auth::{claims_for, mint_hs256};
use circulatory_group_common::deps::Deps;
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{self as support, Running};
use circulatory_group_feed_fanout::FeedOptions;
use circulatory_group_transcoder::testing::ScratchStore;
use circulatory_group_transcoder::TranscoderOptions;
use circulatory_ingest::config::Config;
use circulatory_scenarios::video_post::{Connect, Target};
use circulatory_testkit::TestEnv;
use clap::Parser;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const SECRET: &str = "scenario-secret-scenario-secret-0123456789";

pub(crate) struct Pipeline {
    pub(crate) env: TestEnv,
    pub(crate) deps: Deps,
    pub(crate) store: ScratchStore,
    pub(crate) ingest: SocketAddr,
    groups: Vec<Running>,
    stop_ingest: oneshot::Sender<()>,
    ingest_task: JoinHandle<anyhow::Result<()>>,
}

impl Pipeline {
    /// Starts the groups (each creates its topics), then the ingest API.
    pub(crate) async fn start() -> Pipeline {
        let env = TestEnv::new();
        let deps = support::deps(&env).await;
        let store = ScratchStore::new();
        let groups = vec![
            support::start(
                &env,
                &deps,
                circulatory_group_user_lifecycle::GROUP,
                circulatory_group_user_lifecycle::register,
                NoOptions {},
            )
            .await,
            support::start(
                &env,
                &deps,
                circulatory_group_transcoder::GROUP,
                circulatory_group_transcoder::register,
                TranscoderOptions {
                    preset: "ultrafast".into(),
                    segment: Duration::from_secs(2),
                    ..TranscoderOptions::new(store.options())
                },
            )
            .await,
            support::start(
                &env,
                &deps,
                circulatory_group_thumbnailer::GROUP,
                circulatory_group_thumbnailer::register,
                store.options(),
            )
            .await,
            support::start(
                &env,
                &deps,
                circulatory_group_video_publisher::GROUP,
                circulatory_group_video_publisher::register,
                NoOptions {},
            )
            .await,
            support::start(
                &env,
                &deps,
                circulatory_group_feed_fanout::GROUP,
                circulatory_group_feed_fanout::register,
                FeedOptions::default(),
            )
            .await,
            support::start(
                &env,
                &deps,
                circulatory_group_notifier::GROUP,
                circulatory_group_notifier::register,
                NoOptions {},
            )
            .await,
            support::start(
                &env,
                &deps,
                circulatory_group_realtime_bridge::GROUP,
                circulatory_group_realtime_bridge::register,
                NoOptions {},
            )
            .await,
        ];

        let root = circulatory_testkit::repo_root();
        let config = Config::try_parse_from([
            "ingest",
            "--namespace",
            &env.namespace,
            "--bootstrap",
            &circulatory_testkit::bootstrap(),
            "--registry",
            &circulatory_testkit::registry_url(),
            "--redis",
            &support::redis_url(),
            "--jwt-secret",
            SECRET,
            "--object-store",
            store.dir.to_str().expect("utf-8 path"),
            "--topology",
            root.join("topics.yaml").to_str().expect("utf-8 path"),
            "--schemas",
            root.join("schemas").to_str().expect("utf-8 path"),
        ])
        .expect("valid flags");
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        let service = circulatory_ingest::build(&config)
            .await
            .expect("ingest builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let ingest = listener.local_addr().expect("address");
        let (stop_ingest, stopped) = oneshot::channel::<()>();
        let ingest_task = tokio::spawn(async move {
            circulatory_ingest::serve(listener, service, &config, async {
                let _ = stopped.await;
            })
            .await
        });
        Pipeline {
            env,
            deps,
            store,
            ingest,
            groups,
            stop_ingest,
            ingest_task,
        }
    }

    pub(crate) fn ingest_url(&self) -> String {
        format!("http://{}", self.ingest)
    }

    /// A token allowed what the scenario publishes.
    pub(crate) fn token(&self) -> String {
        let mut claims = claims_for("scenario-tests", Duration::from_secs(600));
        claims.events = vec!["user.*".into(), "video.uploaded".into()];
        // The scenario's app uploads for the users it creates.
        claims.on_behalf = true;
        // The scenario's app uploads for the users it creates.
        claims.on_behalf = true;
        mint_hs256(SECRET.as_bytes(), &claims).expect("token")
    }

    /// Where the scenario connects to reach this pipeline.
    pub(crate) fn connect(&self) -> Connect {
        let root = circulatory_testkit::repo_root();
        Connect {
            ingest_url: self.ingest_url(),
            token: self.token(),
            topology: root.join("topics.yaml"),
            schemas: root.join("schemas"),
            namespace: Some(self.env.namespace.clone()),
            bootstrap: circulatory_testkit::bootstrap(),
            redis_url: support::redis_url(),
            database_url: support::database_url(),
            object_store: Some(self.store.dir.clone()),
        }
    }

    pub(crate) async fn target(&self) -> Target {
        Target::connect(&self.connect())
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Stops the API (draining it) and every group.
    pub(crate) async fn stop(self) {
        let _ = self.stop_ingest.send(());
        self.ingest_task
            .await
            .expect("ingest task")
            .expect("ingest stopped cleanly");
        for group in self.groups {
            group.stop().await;
        }
    }
}
