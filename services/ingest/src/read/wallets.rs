//! `GET /v1/wallets/{id}`: a user's wallet as the payments group keeps it: the `wallets` row (kind
//! USER) and its `ledger_entries`, newest first, paged on `entry_id`, each with its payment's kind
//! and the other side of the ledger pair.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    database, db_error, decode_cursor, encode_cursor, limit, path_id, query, require_owner_or_admin,
};
use crate::correlation::{respond, Correlation};
use crate::problem::ApiError;
use crate::state::AppState;

const CURSOR_TAG: &str = "w1";
const DEFAULT_ENTRIES: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct WalletQuery {
    pub entries: Option<String>,
    pub before: Option<String>,
}

/// A wallet, its balance and a page of its ledger.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wallet {
    pub wallet_id: String,
    pub owner_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Balance in minor units (e.g. cents).
    pub balance_minor: i64,
    /// Incremented on every balance change (the `version` of `wallet.updated`).
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub entries: Vec<LedgerEntry>,
    /// Cursor of the next (older) entries, for `before`; `null` on the last page.
    pub next: Option<String>,
}

/// One movement of the wallet.
#[derive(Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    #[serde(skip)]
    #[schema(ignore)]
    pub entry_id: i64,
    pub payment_id: String,
    /// TIP, PURCHASE, SUBSCRIPTION, PAYOUT, TOP_UP or OTHER.
    pub kind: String,
    /// DEBIT (money left the wallet) or CREDIT (money entered it).
    pub direction: String,
    pub amount_minor: i64,
    /// The balance right after this entry.
    pub balance_after_minor: i64,
    /// The other side of the pair: another wallet, or `external:<CURRENCY>` for top-ups and
    /// payouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterparty_wallet_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    wallet_id: String,
    user_id: Option<String>,
    currency: String,
    balance_minor: i64,
    version: i64,
    updated_at: DateTime<Utc>,
}

/// A wallet with its most recent ledger entries. Readable by its owner and admins.
#[utoipa::path(
    get,
    path = "/v1/wallets/{id}",
    tag = "wallets",
    params(
        ("id" = String, Path, description = "The wallet id (UUID)"),
        ("entries" = Option<i64>, Query, description = "Ledger entries per page, 1 to 100 (default 50)"),
        ("before" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "The wallet and a page of its ledger, newest first", body = Wallet),
        (status = 400, description = "Malformed id, entries or cursor", body = crate::problem::Problem),
        (status = 401, description = "No or invalid token", body = crate::problem::Problem),
        (status = 403, description = "Another user's wallet", body = crate::problem::Problem),
        (status = 404, description = "No such wallet", body = crate::problem::Problem),
        (status = 503, description = "PostgreSQL unavailable (Retry-After)", body = crate::problem::Problem),
    ),
    security(("bearer" = []))
)]
pub async fn wallet(
    State(state): State<AppState>,
    Extension(correlation): Extension<Correlation>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<WalletQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let claims = state.bearer(&headers)?;
        let id = path_id(id)?;
        let params = query(params)?;
        let entries = limit("entries", params.entries.as_deref(), DEFAULT_ENTRIES)?;
        let before = params
            .before
            .as_deref()
            .map(|c| {
                decode_cursor(CURSOR_TAG, c).and_then(|k| {
                    k.parse::<i64>().map_err(|_| {
                        ApiError::Malformed("`before` is not a cursor of this list".into())
                    })
                })
            })
            .transpose()?;
        // Wallet ids are stored as the events spelled them: canonical lowercase, or uppercase.
        let spellings = vec![id.to_string(), id.hyphenated().to_string().to_uppercase()];
        let row: Option<Row> = sqlx::query_as(
            "SELECT wallet_id, user_id, currency, balance_minor, version, updated_at \
             FROM wallets WHERE wallet_id = ANY($1) AND kind = 'USER' \
             ORDER BY wallet_id LIMIT 1",
        )
        .bind(&spellings)
        .fetch_optional(database(&state)?)
        .await
        .map_err(db_error)?;
        let row = row.ok_or_else(|| ApiError::NotFound(format!("no wallet {id}")))?;
        let owner = row.user_id.clone().unwrap_or_default();
        require_owner_or_admin(&claims, &owner, "a wallet")?;
        let mut items = ledger(&state, &row.wallet_id, before, entries + 1).await?;
        let page = usize::try_from(entries).unwrap_or(0);
        let next = if items.len() > page {
            items.truncate(page);
            items
                .last()
                .map(|e| encode_cursor(CURSOR_TAG, &e.entry_id.to_string()))
        } else {
            None
        };
        Ok(Json(Wallet {
            wallet_id: row.wallet_id,
            owner_id: owner,
            currency: row.currency,
            balance_minor: row.balance_minor,
            version: row.version,
            updated_at: row.updated_at,
            entries: items,
            next,
        }))
    }
    .await;
    respond(result, &correlation)
}

async fn ledger(
    state: &AppState,
    wallet: &str,
    before: Option<i64>,
    rows: i64,
) -> Result<Vec<LedgerEntry>, ApiError> {
    sqlx::query_as(
        "SELECT e.entry_id, e.payment_id, p.kind, e.direction, e.amount_minor, \
                e.balance_after_minor, o.wallet_id AS counterparty_wallet_id, e.created_at \
         FROM ledger_entries e \
         JOIN payments p ON p.payment_id = e.payment_id \
         LEFT JOIN ledger_entries o ON o.payment_id = e.payment_id AND o.direction <> e.direction \
         WHERE e.wallet_id = $1 AND ($2::bigint IS NULL OR e.entry_id < $2) \
         ORDER BY e.entry_id DESC LIMIT $3",
    )
    .bind(wallet)
    .bind(before)
    .bind(rows)
    .fetch_all(database(state)?)
    .await
    .map_err(db_error)
}
