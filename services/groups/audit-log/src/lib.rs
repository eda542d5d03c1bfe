//! `audit-log`: the append-only audit trail. Admin actions and mutes become rows of `audit_log`;
//! health checks update `component_health` and add a trail row only when a component's status
//! changes (a steady stream of HEALTHY checks is not an audit event).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Event, HandlerError};
use circulatory_groups::runner::Registered;
use serde::Deserialize;
use sqlx::PgConnection;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;
use circulatory_groups::runner::NoOptions;

pub const GROUP: &str = "audit-log";

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with("admin.action", deps.clone(), |deps, e, _| async move {
            admin_action(&deps, e).await
        })
        .handler_with("user.muted", deps.clone(), |deps, e, _| async move {
            user_muted(&deps, e).await
        })
        .handler_with("system.health", deps.clone(), |deps, e, _| async move {
            system_health(&deps, e).await
        }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdminAction {
    admin_id: String,
    action: String,
    target_kind: String,
    target_ref: Option<String>,
    reason: Option<String>,
    details: BTreeMap<String, String>,
    performed_at: DateTime<Utc>,
}

async fn admin_action(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: AdminAction = event.payload()?;
    let trail = Trail {
        actor: Some(p.admin_id),
        action: p.action,
        target_kind: Some(p.target_kind),
        target_ref: p.target_ref,
        reason: p.reason,
        details: serde_json::to_value(&p.details).unwrap_or_default(),
        occurred_at: p.performed_at,
    };
    let (event_id, event_type) = (event.id().to_string(), event.event_type().to_string());
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { trail.append(tx, &event_id, &event_type).await })
    })
    .await
    .map(drop)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserMuted {
    user_id: String,
    until: DateTime<Utc>,
    reason: String,
    muted_by: Option<String>,
    content_id: Option<String>,
    muted_at: DateTime<Utc>,
}

async fn user_muted(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: UserMuted = event.payload()?;
    let trail = Trail {
        actor: p.muted_by,
        action: "USER_MUTE".into(),
        target_kind: Some("USER".into()),
        target_ref: Some(p.user_id),
        reason: Some(p.reason),
        details: serde_json::json!({ "until": p.until, "contentId": p.content_id }),
        occurred_at: p.muted_at,
    };
    let (event_id, event_type) = (event.id().to_string(), event.event_type().to_string());
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { trail.append(tx, &event_id, &event_type).await })
    })
    .await
    .map(drop)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SystemHealth {
    component: String,
    status: String,
    instance: Option<String>,
    details: BTreeMap<String, String>,
    checked_at: DateTime<Utc>,
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
            .bind(&p.status)
            .bind(&details)
            .bind(p.checked_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            let changed = previous.as_ref().map(|(s,)| s.as_str()) != Some(p.status.as_str());
            if updated == 1 && changed {
                Trail {
                    actor: None,
                    action: "HEALTH_CHANGE".into(),
                    target_kind: Some("COMPONENT".into()),
                    target_ref: Some(if instance.is_empty() {
                        p.component.clone()
                    } else {
                        format!("{}/{instance}", p.component)
                    }),
                    reason: Some(format!(
                        "{} -> {}",
                        previous.map(|(s,)| s).unwrap_or_else(|| "NONE".into()),
                        p.status
                    )),
                    details,
                    occurred_at: p.checked_at,
                }
                .append(tx, &event_id, &event_type)
                .await?;
            }
            Ok(())
        })
    })
    .await
    .map(drop)
}

/// One row of the trail.
struct Trail {
    actor: Option<String>,
    action: String,
    target_kind: Option<String>,
    target_ref: Option<String>,
    reason: Option<String>,
    details: serde_json::Value,
    occurred_at: DateTime<Utc>,
}

impl Trail {
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
