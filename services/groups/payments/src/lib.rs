//! `payments`: the wallet ledger.
//!
//! - `payment.initiated` is decided once per payment id, in one PostgreSQL transaction with the
//!   event's `processed_events` row: either a balanced DEBIT/CREDIT pair of `ledger_entries` and
//!   the two balances updated (then `payment.completed` is emitted), or no money moves and
//!   `payment.failed` is emitted with a reason (insufficient funds, invalid data, ...). Both
//!   outcomes are recorded in `payments`, so a payment id takes effect at most once.
//! - `payment.completed` emits one `wallet.updated` per user wallet of the payment, with the
//!   balance and version right after it (read from the ledger, so a redelivery says the same).
//!
//! Money enters through `TOP_UP` (debits the `external:<CURRENCY>` account, credits `walletId`)
//! and leaves through `PAYOUT` (debits `walletId`, credits the external account); every other
//! kind moves money from `walletId` to `payeeWalletId`. A credited wallet is created on its first
//! credit, owned by the payer (TOP_UP) or `payeeId`, in the payment's currency.
//!
//! Emitted ids derive from the causing event, so a redelivered event emits the same ids; the
//! outcome is re-read from `payments`, so it is emitted again even when the first attempt
//! committed and then failed to produce. Tables and columns: `migrations/*_payments_ledger.sql`.

mod ledger;

use chrono::{DateTime, SecondsFormat, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Context, Event, HandlerError};
use circulatory_groups::runner::Registered;
use serde::Deserialize;
use serde_json::json;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;
use circulatory_groups::runner::NoOptions;

pub use ledger::{external_account, Account, Failure, Transfer};

pub const GROUP: &str = "payments";

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(
            "payment.initiated",
            deps.clone(),
            |deps, e, ctx| async move { payment_initiated(&deps, e, ctx).await },
        )
        .handler_with(
            "payment.completed",
            deps.clone(),
            |deps, e, ctx| async move { payment_completed(&deps, e, ctx).await },
        ))
}

/// The `payment.initiated` payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentInitiated {
    pub payment_id: String,
    pub wallet_id: String,
    pub payee_wallet_id: Option<String>,
    pub payer_id: String,
    pub payee_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub kind: String,
    pub reference: Option<String>,
    pub note: Option<String>,
    pub initiated_at: DateTime<Utc>,
}

async fn payment_initiated(deps: &Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let payment: PaymentInitiated = event.payload()?;
    let event_id = event.id().to_string();
    let (p, id) = (payment.clone(), event_id.clone());
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move { ledger::decide(tx, &id, &p).await })
    })
    .await?;
    // Whether decided now or by an earlier delivery of this event, the outcome is the stored
    // one. Another event carrying the same payment id decided nothing and emits nothing.
    let decided: Option<PaymentRow> = sqlx::query_as(
        "SELECT payment_id, status, kind, wallet_id, payee_wallet_id, payer_id, payee_id, \
                amount_minor, currency, failure_reason, error_message, decided_at \
         FROM payments WHERE payment_id = $1 AND event_id = $2",
    )
    .bind(&payment.payment_id)
    .bind(&event_id)
    .fetch_optional(&deps.pool)
    .await
    .map_err(db)?;
    match decided {
        Some(row) => row.emit(&ctx),
        None => tracing::info!(
            payment_id = %payment.payment_id,
            "payment id already decided by another event: nothing emitted"
        ),
    }
    Ok(())
}

/// A decided payment, as stored.
#[derive(Debug, sqlx::FromRow)]
struct PaymentRow {
    payment_id: String,
    status: String,
    kind: String,
    wallet_id: String,
    payee_wallet_id: Option<String>,
    payer_id: String,
    payee_id: Option<String>,
    amount_minor: i64,
    currency: String,
    failure_reason: Option<String>,
    error_message: Option<String>,
    decided_at: DateTime<Utc>,
}

impl PaymentRow {
    fn emit(self, ctx: &Context) {
        let at = self.decided_at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut data = json!({
            "paymentId": self.payment_id,
            "walletId": self.wallet_id,
            "payeeWalletId": self.payee_wallet_id,
            "payerId": self.payer_id,
            "payeeId": self.payee_id,
            "amountMinor": self.amount_minor,
            "currency": self.currency,
            "kind": self.kind,
        });
        let fields = data.as_object_mut().expect("an object");
        let event_type = if self.status == "COMPLETED" {
            fields.insert("providerReference".into(), serde_json::Value::Null);
            fields.insert("completedAt".into(), at.into());
            "payment.completed"
        } else {
            fields.insert("reason".into(), self.failure_reason.into());
            fields.insert("errorMessage".into(), self.error_message.into());
            fields.insert("failedAt".into(), at.into());
            "payment.failed"
        };
        ctx.emit_at(event_type, data, Some(self.payment_id), self.decided_at);
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentCompleted {
    payment_id: String,
}

/// One ledger entry of a user wallet, with the wallet's state right after it.
#[derive(Debug, sqlx::FromRow)]
struct WalletChange {
    wallet_id: String,
    user_id: String,
    direction: String,
    amount_minor: i64,
    currency: String,
    balance_after_minor: i64,
    wallet_version: i64,
    created_at: DateTime<Utc>,
}

async fn payment_completed(deps: &Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let completed: PaymentCompleted = event.payload()?;
    let changes: Vec<WalletChange> = sqlx::query_as(
        "SELECT l.wallet_id, w.user_id, l.direction, l.amount_minor, l.currency, \
                l.balance_after_minor, l.wallet_version, l.created_at \
         FROM ledger_entries l JOIN wallets w ON w.wallet_id = l.wallet_id \
         WHERE l.payment_id = $1 AND w.kind = 'USER' \
         ORDER BY l.wallet_id",
    )
    .bind(&completed.payment_id)
    .fetch_all(&deps.pool)
    .await
    .map_err(db)?;
    if changes.is_empty() {
        // Either unknown to the ledger or failed there: the balances did not change, and a
        // completion the ledger never saw needs an operator, not a silent success.
        let status: Option<(String,)> =
            sqlx::query_as("SELECT status FROM payments WHERE payment_id = $1")
                .bind(&completed.payment_id)
                .fetch_optional(&deps.pool)
                .await
                .map_err(db)?;
        return match status {
            Some((status,)) if status == "COMPLETED" => Ok(()),
            Some((status,)) => Err(HandlerError::permanent(format!(
                "payment {} is {status} in the ledger",
                completed.payment_id
            ))),
            None => Err(HandlerError::permanent(format!(
                "payment {} is not in the ledger",
                completed.payment_id
            ))),
        };
    }
    for change in changes {
        let sign = if change.direction == "DEBIT" { -1 } else { 1 };
        ctx.emit_at(
            "wallet.updated",
            json!({
                "walletId": change.wallet_id,
                "userId": change.user_id,
                "balanceMinor": change.balance_after_minor,
                "changeMinor": sign * change.amount_minor,
                "currency": change.currency,
                "lastPaymentId": completed.payment_id,
                "version": change.wallet_version,
                "updatedAt": change.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            }),
            Some(change.wallet_id.clone()),
            change.created_at,
        );
    }
    Ok(())
}
