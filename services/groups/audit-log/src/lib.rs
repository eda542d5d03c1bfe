//! `audit-log`: the append-only audit trail. Admin actions and mutes become rows of `audit_log`;
//! health checks update `component_health` and add a trail row only when a component's status
//! changes (a steady stream of HEALTHY checks is not an audit event).

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Event, HandlerError};
use circulatory::events::{AdminAction, EventPayload, SystemHealth, UserMuted};
use circulatory_group_common::runner::Registered;
use sqlx::PgConnection;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;
use circulatory_group_common::runner::NoOptions;

pub const GROUP: &str = "audit-log";

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(
            AdminAction::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { admin_action(&deps, e).await },
        )
        .handler_with(
            UserMuted::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { user_muted(&deps, e).await },
        )
        .handler_with(
            SystemHealth::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { system_health(&deps, e).await },
        ))
}

async fn admin_action(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let trail = Trail::of_admin_action(event.payload()?);
    append_once(deps, &event, trail).await
}

async fn user_muted(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let trail = Trail::of_mute(event.payload()?);
    append_once(deps, &event, trail).await
}

/// Appends `trail` for `event`, once per event.
async fn append_once(deps: &Deps, event: &Event, trail: Trail) -> Result<(), HandlerError> {
    let (event_id, event_type) = (event.id().to_string(), event.event_type().to_string());
    exactly_once(&deps.pool, GROUP, event, move |tx| {
        Box::pin(async move { trail.append(tx, &event_id, &event_type).await })
    })
    .await
    .map(drop)
}

async fn system_health(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: SystemHealth = event.payload()?;
    let (event_id, event_type) = (event.id().to_string(), event.event_type().to_string());
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            let instance = p.instance.clone().unwrap_or_default();
            let details = serde_json::to_value(&p.details).unwrap_or_default();
            // Only a newer check replaces the known state (checks may arrive out of order across
            // partitions); the previous status tells whether this is a change.
            let previous: Option<(String,)> = sqlx::query_as(
                "SELECT status FROM component_health WHERE component = $1 AND instance = $2 \
                 FOR UPDATE",
            )
            .bind(&p.component)
            .bind(&instance)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            let updated = sqlx::query(
                "INSERT INTO component_health (component, instance, status, details, checked_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (component, instance) DO UPDATE \
                   SET status = EXCLUDED.status, details = EXCLUDED.details, \
                       checked_at = EXCLUDED.checked_at \
                 WHERE component_health.checked_at < EXCLUDED.checked_at",
            )
            .bind(&p.component)
            .bind(&instance)
            .bind(p.status.as_str())
            .bind(&details)
            .bind(p.checked_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if updated == 1 {
                let previous = previous.as_ref().map(|(s,)| s.as_str());
                if let Some(trail) = Trail::of_health_change(&p, previous) {
                    trail.append(tx, &event_id, &event_type).await?;
                }
            }
            Ok(())
        })
    })
    .await
    .map(drop)
}

/// One row of the trail.
#[derive(Debug, Clone, PartialEq)]
struct Trail {
    actor: Option<String>,
    action: &'static str,
    target_kind: Option<&'static str>,
    target_ref: Option<String>,
    reason: Option<String>,
    details: serde_json::Value,
    occurred_at: DateTime<Utc>,
}

impl Trail {
    fn of_admin_action(p: AdminAction) -> Trail {
        Trail {
            actor: Some(p.admin_id.to_string()),
            action: p.action.as_str(),
            target_kind: Some(p.target_kind.as_str()),
            target_ref: p.target_ref,
            reason: p.reason,
            details: serde_json::to_value(&p.details).unwrap_or_default(),
            occurred_at: p.performed_at,
        }
    }

    fn of_mute(p: UserMuted) -> Trail {
        Trail {
            actor: p.muted_by.map(|id| id.to_string()),
            action: "USER_MUTE",
            target_kind: Some("USER"),
            target_ref: Some(p.user_id.to_string()),
            reason: Some(p.reason.as_str().into()),
            details: serde_json::json!({ "until": p.until, "contentId": p.content_id }),
            occurred_at: p.muted_at,
        }
    }

    /// The trail row of health check `p` replacing a check of status `previous` (`None`: the
    /// component's first check), or none when the status stays the same.
    fn of_health_change(p: &SystemHealth, previous: Option<&str>) -> Option<Trail> {
        if previous == Some(p.status.as_str()) {
            return None;
        }
        let instance = p.instance.as_deref().unwrap_or_default();
        Some(Trail {
            actor: None,
            action: "HEALTH_CHANGE",
            target_kind: Some("COMPONENT"),
            target_ref: Some(if instance.is_empty() {
                p.component.clone()
            } else {
                format!("{}/{instance}", p.component)
            }),
            reason: Some(format!("{} -> {}", previous.unwrap_or("NONE"), p.status)),
            details: serde_json::to_value(&p.details).unwrap_or_default(),
            occurred_at: p.checked_at,
        })
    }

    async fn append(
        self,
        tx: &mut PgConnection,
        event_id: &str,
        event_type: &str,
    ) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO audit_log (event_id, event_type, actor, action, target_kind, target_ref, \
                                    reason, details, occurred_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(event_id)
        .bind(event_type)
        .bind(self.actor)
        .bind(self.action)
        .bind(self.target_kind)
        .bind(self.target_ref)
        .bind(self.reason)
        .bind(self.details)
        .bind(self.occurred_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    use circulatory::events::{AdminActionKind, AdminTargetKind, HealthStatus, UserMuteReason};
    use serde_json::json;
    use sqlx::types::Uuid;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn an_admin_action_is_its_admin_s_action_on_its_target() {
        let admin = Uuid::from_u128(7);
        let trail = Trail::of_admin_action(AdminAction {
            action_id: Uuid::from_u128(1),
            admin_id: admin,
            action: AdminActionKind::UserBan,
            target_kind: AdminTargetKind::DeadLetter,
            target_ref: Some("dlq/3".into()),
            reason: Some("spam wave".into()),
            details: BTreeMap::from([("ticket".to_string(), "T-1".to_string())]),
            performed_at: at("2026-11-27T10:00:00Z"),
        });
        assert_eq!(
            trail,
            Trail {
                actor: Some("00000000-0000-0000-0000-000000000007".into()),
                action: "USER_BAN",
                target_kind: Some("DEAD_LETTER"),
                target_ref: Some("dlq/3".into()),
                reason: Some("spam wave".into()),
                details: json!({"ticket": "T-1"}),
                occurred_at: at("2026-11-27T10:00:00Z"),
            }
        );
    }

    #[test]
    fn a_mute_is_a_user_mute_of_the_user_until_its_end() {
        let mute = UserMuted {
            user_id: Uuid::from_u128(2),
            until: at("2026-11-28T10:00:00Z"),
            reason: UserMuteReason::HateSpeech,
            muted_by: Some(Uuid::from_u128(3)),
            content_id: Some(Uuid::from_u128(4)),
            muted_at: at("2026-11-27T10:05:00Z"),
        };
        let trail = Trail::of_mute(mute.clone());
        assert_eq!(trail.action, "USER_MUTE");
        assert_eq!(trail.target_kind, Some("USER"));
        assert_eq!(trail.target_ref, Some(mute.user_id.to_string()));
        assert_eq!(trail.actor, Some(Uuid::from_u128(3).to_string()));
        assert_eq!(trail.reason.as_deref(), Some("HATE_SPEECH"));
        assert_eq!(
            trail.details,
            json!({
                "until": "2026-11-28T10:00:00Z",
                "contentId": "00000000-0000-0000-0000-000000000004"
            })
        );
        assert_eq!(trail.occurred_at, mute.muted_at);
        let by_nobody = Trail::of_mute(UserMuted {
            muted_by: None,
            content_id: None,
            ..mute
        });
        assert_eq!(by_nobody.actor, None);
        assert_eq!(by_nobody.details["contentId"], serde_json::Value::Null);
    }

    fn check(status: HealthStatus, instance: Option<&str>) -> SystemHealth {
        SystemHealth {
            component: "group:feed".into(),
            status,
            instance: instance.map(str::to_string),
            details: BTreeMap::from([("lag".to_string(), "12".to_string())]),
            checked_at: at("2026-11-27T10:00:00Z"),
        }
    }

    #[test]
    fn only_a_change_of_health_status_is_a_trail_row() {
        let healthy = check(HealthStatus::Healthy, None);
        assert_eq!(Trail::of_health_change(&healthy, Some("HEALTHY")), None);
        let first = Trail::of_health_change(&healthy, None).expect("a change");
        assert_eq!(first.reason.as_deref(), Some("NONE -> HEALTHY"));
        assert_eq!(first.target_ref.as_deref(), Some("group:feed"));
        assert_eq!(
            (first.action, first.target_kind),
            ("HEALTH_CHANGE", Some("COMPONENT"))
        );
        assert_eq!(first.actor, None);
        assert_eq!(first.details, json!({"lag": "12"}));
        assert_eq!(first.occurred_at, healthy.checked_at);
        let degraded = check(HealthStatus::Degraded, Some("pod-1"));
        let change = Trail::of_health_change(&degraded, Some("HEALTHY")).expect("a change");
        assert_eq!(change.reason.as_deref(), Some("HEALTHY -> DEGRADED"));
        assert_eq!(change.target_ref.as_deref(), Some("group:feed/pod-1"));
        let unnamed = check(HealthStatus::Degraded, Some(""));
        let change = Trail::of_health_change(&unnamed, None).expect("a change");
        assert_eq!(change.target_ref.as_deref(), Some("group:feed"));
    }
}
