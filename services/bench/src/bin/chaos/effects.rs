//! The consumer groups' effects in PostgreSQL for the run's events: applied once per event (a
//! `processed_events` row and the group's own rows), the payments ledger balanced, and when
//! processing paused and resumed around the fault.

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::marks::round3;

/// The run's events of one group's type that the topic holds: (event id, entity id).
pub(crate) type Events = [(String, String)];

fn ids(events: &Events) -> Vec<String> {
    events.iter().map(|(id, _)| id.clone()).collect()
}

fn count_err(e: sqlx::Error) -> String {
    format!("postgres: {e}")
}

/// `processed_events` rows of `group` for these events.
pub(crate) async fn processed(pool: &PgPool, group: &str, events: &Events) -> Result<i64, String> {
    sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE consumer_group = $1 AND event_id = ANY($2)",
    )
    .bind(group)
    .bind(ids(events))
    .fetch_one(pool)
    .await
    .map_err(count_err)
}

/// user-lifecycle: one `user_profiles` row per `user.created`.
pub(crate) async fn user_rows(pool: &PgPool, events: &Events) -> Result<Value, String> {
    let users: Vec<Uuid> = events
        .iter()
        .filter_map(|(_, user)| user.parse().ok())
        .collect();
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_profiles WHERE user_id = ANY($1)")
            .bind(&users)
            .fetch_one(pool)
            .await
            .map_err(count_err)?;
    Ok(json!({"user_profiles": rows}))
}

/// payments: each payment decided once, a DEBIT/CREDIT pair per completed one, and the whole
/// ledger consistent (every payment's pair nets to 0, each currency's balances sum to 0, each
/// wallet's balance is the sum of its entries).
pub(crate) async fn ledger(pool: &PgPool, events: &Events) -> Result<Value, String> {
    let payment_ids: Vec<String> = events.iter().map(|(_, p)| p.clone()).collect();
    let (decided, completed): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'COMPLETED') FROM payments \
         WHERE event_id = ANY($1)",
    )
    .bind(ids(events))
    .fetch_one(pool)
    .await
    .map_err(count_err)?;
    let entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_entries WHERE payment_id = ANY($1)")
            .bind(&payment_ids)
            .fetch_one(pool)
            .await
            .map_err(count_err)?;
    let unbalanced = scalar(pool, UNBALANCED_PAYMENTS).await?;
    let currencies = scalar(pool, CURRENCIES_NOT_ZERO).await?;
    let wallets = scalar(pool, WALLETS_OFF_LEDGER).await?;
    Ok(json!({
        "payments_decided": decided,
        "payments_completed": completed,
        "ledger_entries": entries,
        "ledger_entries_expected": 2 * completed,
        "unbalanced_payments": unbalanced,
        "currencies_not_summing_to_zero": currencies,
        "wallets_off_their_entries": wallets,
        "ledger_balanced": entries == 2 * completed && unbalanced == 0 && currencies == 0 && wallets == 0,
    }))
}

const UNBALANCED_PAYMENTS: &str = "SELECT count(*) FROM (SELECT payment_id FROM ledger_entries \
     GROUP BY payment_id HAVING count(*) <> 2 \
     OR sum(CASE WHEN direction = 'CREDIT' THEN amount_minor ELSE -amount_minor END) <> 0) x";
const CURRENCIES_NOT_ZERO: &str = "SELECT count(*) FROM (SELECT currency FROM wallets \
     GROUP BY currency HAVING sum(balance_minor) <> 0) x";
const WALLETS_OFF_LEDGER: &str = "SELECT count(*) FROM wallets w WHERE w.balance_minor <> \
     COALESCE((SELECT sum(CASE WHEN direction = 'CREDIT' THEN amount_minor ELSE -amount_minor END) \
               FROM ledger_entries l WHERE l.wallet_id = w.wallet_id), 0)";

async fn scalar(pool: &PgPool, sql: &str) -> Result<i64, String> {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .map_err(count_err)
}

/// Seconds from `after_ms` to the first event `group` processed after it.
pub(crate) async fn resumed_after(
    pool: &PgPool,
    group: &str,
    after_ms: f64,
) -> Result<Option<f64>, String> {
    let first: Option<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM min(processed_at)) * 1000)::float8 FROM processed_events \
         WHERE consumer_group = $1 AND processed_at > to_timestamp($2 / 1000.0)",
    )
    .bind(group)
    .bind(after_ms)
    .fetch_one(pool)
    .await
    .map_err(count_err)?;
    Ok(first.map(|t| round3((t - after_ms) / 1000.0)))
}

/// The longest time `group` processed nothing between `from_ms` and `to_ms` (seconds), the
/// stretch from `from_ms` to its first event included.
pub(crate) async fn longest_pause(
    pool: &PgPool,
    group: &str,
    from_ms: f64,
    to_ms: f64,
) -> Result<Option<f64>, String> {
    let pause: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(gap))::float8 FROM ( \
           SELECT processed_at - lag(processed_at) OVER (ORDER BY processed_at) AS gap \
           FROM (SELECT processed_at FROM processed_events \
                 WHERE consumer_group = $1 \
                   AND processed_at BETWEEN to_timestamp($2 / 1000.0) AND to_timestamp($3 / 1000.0) \
                 UNION ALL SELECT to_timestamp($2 / 1000.0)) t) g",
    )
    .bind(group)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_one(pool)
    .await
    .map_err(count_err)?;
    Ok(pause.map(round3))
}
