//! The contract every group that writes to PostgreSQL keeps when its database is unreachable,
//! checked the same way for each: the group's real handler fails as a dependency failure of
//! PostgreSQL, the engine climbs the group's whole retry ladder (as `topics.yaml` declares it,
//! run [`FAST_RETRY_FACTOR`](circulatory_testkit::FAST_RETRY_FACTOR) times faster), and the event
//! reaches the group's dead letters with that story. Each group's test names its own event and
//! then checks what is its own (nothing emitted, Redis counted once, ...).

use std::time::Duration;

use circulatory::consumer::GroupSettings;
use circulatory_testkit::{header, TestEnv};
use rdkafka::message::OwnedMessage;

use super::{dead_letters, deps_without_database, publish_with_id, settings, start_with, uuid};
use crate::deps::Deps;
use crate::runner::Register;

/// One group and the event it is given while its database is down.
pub struct DatabaseOutage<'a, O> {
    pub group: &'a str,
    pub register: Register<O>,
    pub options: O,
    pub event_type: &'a str,
    pub data: serde_json::Value,
}

/// What the outage left, for the group's own checks (the group has stopped).
pub struct DeadLettered {
    pub env: TestEnv,
    pub deps: Deps,
    /// The id the event was published with.
    pub id: String,
    pub letter: OwnedMessage,
}

impl<O> DatabaseOutage<'_, O> {
    /// Runs the group in `env` (made with [`TestEnv::with_fast_retries`]) with an unreachable
    /// database, publishes the event and checks its dead letter against the group's topology.
    pub async fn dead_letters(self, env: TestEnv) -> DeadLettered {
        let deps = deps_without_database(&env).await;
        let declared = env
            .catalog
            .group(self.group)
            .expect("a declared group")
            .clone();
        // One event fails `max_attempts` times in a row: the breaker must not open first, or
        // the event would be parked instead of climbing the ladder.
        let settings = GroupSettings {
            breaker_threshold: declared.max_attempts + 1,
            ..settings()
        };
        let running = start_with(
            &env,
            &deps,
            self.group,
            self.register,
            self.options,
            settings,
        )
        .await;
        let publisher = env.publisher();
        let id = uuid();
        publish_with_id(&env, &publisher, self.event_type, &id, self.data).await;
        let ladder: Duration = declared.retry_delays.iter().sum();
        let within = ladder * 2 + Duration::from_secs(30);
        let letter = dead_letters(&env, self.group, 1, within).await.remove(0);
        running.stop().await;

        let header = |name: &str| header(&letter, name).unwrap_or_default();
        assert_eq!(header("ce_id"), id);
        assert_eq!(header("ce_type"), self.event_type);
        assert_eq!(header("circ_group"), self.group);
        assert_eq!(header("circ_original_topic"), env.topic_of(self.event_type));
        assert_eq!(
            header("circ_attempt"),
            declared.max_attempts.to_string(),
            "every attempt of the ladder ran"
        );
        assert_eq!(header("circ_dlq_reason"), "exhausted");
        assert_eq!(header("circ_error_class"), "dependency");
        let message = header("circ_error_message");
        assert!(message.starts_with("postgres:"), "{message}");
        DeadLettered {
            env,
            deps,
            id,
            letter,
        }
    }
}
