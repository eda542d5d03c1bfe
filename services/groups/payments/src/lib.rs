mod ledger;

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{
    EventPayload, PaymentCompleted, PaymentFailed, PaymentInitiated, WalletUpdated,
};
use circulatory_group_common::runner::Registered;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;
use circulatory_group_common::runner::NoOptions;

pub use ledger::{external_account, Account, Failure, Transfer};

pub const GROUP: &str = "payments";

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(
            PaymentInitiated::EVENT_TYPE,
            deps.clone(),
            |deps, e, ctx| async move { payment_initiated(&deps, e, ctx).await },
        )
        .handler_with(
            PaymentCompleted::EVENT_TYPE,
            deps.clone(),
            |deps, e, ctx| async move { payment_completed(&deps, e, ctx).await },
        ))
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
    .bind(payment.payment_id.to_string())
    .bind(&event_id)
    .fetch_optional(&deps.pool)
    .await
    .map_err(db)?;
    match decided {
        Some(row) => row.outcome()?.emit(&ctx),
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

/// The outcome event of a decided payment.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Completed(PaymentCompleted),
    Failed(PaymentFailed),
}

impl Outcome {
    /// Emits it with the payment as subject, at the decision's time.
    fn emit(self, ctx: &Context) {
        match self {
            Outcome::Completed(c) => {
                let (subject, at) = (c.payment_id.to_string(), c.completed_at);
                ctx.emit_at(c, Some(subject), at);
            }
            Outcome::Failed(f) => {
                let (subject, at) = (f.payment_id.to_string(), f.failed_at);
                ctx.emit_at(f, Some(subject), at);
            }
        }
    }
}

/// A stored column read back as the type it was written from; unreadable is permanent (the row
/// cannot be announced as the catalog requires).
fn column<T>(payment_id: &str, name: &str, text: &str) -> Result<T, HandlerError>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse().map_err(|e| {
        HandlerError::permanent(format!("payment {payment_id}: stored {name} `{text}`: {e}"))
    })
}

fn optional_column<T>(
    payment_id: &str,
    name: &str,
    text: Option<&str>,
) -> Result<Option<T>, HandlerError>
where
    T: FromStr,
    T::Err: Display,
{
    text.map(|t| column(payment_id, name, t)).transpose()
}

impl PaymentRow {
    /// The event announcing this decision: `payment.completed` or `payment.failed`, at the
    /// decision's time.
    fn outcome(self) -> Result<Outcome, HandlerError> {
        let id = self.payment_id.as_str();
        let payment_id = column(id, "payment_id", id)?;
        let wallet_id = column(id, "wallet_id", &self.wallet_id)?;
        let payee_wallet_id =
            optional_column(id, "payee_wallet_id", self.payee_wallet_id.as_deref())?;
        let payer_id = column(id, "payer_id", &self.payer_id)?;
        let payee_id = optional_column(id, "payee_id", self.payee_id.as_deref())?;
        if self.status == "COMPLETED" {
            Ok(Outcome::Completed(PaymentCompleted {
                payment_id,
                wallet_id,
                payee_wallet_id,
                payer_id,
                payee_id,
                amount_minor: self.amount_minor,
                currency: self.currency,
                kind: column(id, "kind", &self.kind)?,
                provider_reference: None,
                completed_at: self.decided_at,
            }))
        } else {
            let reason = self.failure_reason.as_deref().unwrap_or_default();
            Ok(Outcome::Failed(PaymentFailed {
                payment_id,
                wallet_id,
                payee_wallet_id,
                payer_id,
                payee_id,
                amount_minor: self.amount_minor,
                currency: self.currency,
                kind: column(id, "kind", &self.kind)?,
                reason: column(id, "failure_reason", reason)?,
                error_message: self.error_message,
                failed_at: self.decided_at,
            }))
        }
    }
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
    let payment_id = completed.payment_id.to_string();
    let changes: Vec<WalletChange> = sqlx::query_as(
        "SELECT l.wallet_id, w.user_id, l.direction, l.amount_minor, l.currency, \
                l.balance_after_minor, l.wallet_version, l.created_at \
         FROM ledger_entries l JOIN wallets w ON w.wallet_id = l.wallet_id \
         WHERE l.payment_id = $1 AND w.kind = 'USER' \
         ORDER BY l.wallet_id",
    )
    .bind(&payment_id)
    .fetch_all(&deps.pool)
    .await
    .map_err(db)?;
    if changes.is_empty() {
        // Either unknown to the ledger or failed there: the balances did not change, and a
        // completion the ledger never saw needs an operator, not a silent success.
        let status: Option<(String,)> =
            sqlx::query_as("SELECT status FROM payments WHERE payment_id = $1")
                .bind(&payment_id)
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
        let update = change.wallet_updated(&payment_id, &completed)?;
        ctx.emit_at(update, Some(change.wallet_id), change.created_at);
    }
    Ok(())
}

impl WalletChange {
    /// The `wallet.updated` of this entry of `completed`'s payment (`payment_id`, as stored).
    fn wallet_updated(
        &self,
        payment_id: &str,
        completed: &PaymentCompleted,
    ) -> Result<WalletUpdated, HandlerError> {
        let sign = if self.direction == "DEBIT" { -1 } else { 1 };
        Ok(WalletUpdated {
            wallet_id: column(payment_id, "wallet_id", &self.wallet_id)?,
            user_id: column(payment_id, "user_id", &self.user_id)?,
            balance_minor: self.balance_after_minor,
            change_minor: sign * self.amount_minor,
            currency: self.currency.clone(),
            last_payment_id: completed.payment_id,
            version: self.wallet_version,
            updated_at: self.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use circulatory::events::{PaymentCompletedKind, PaymentFailedKind, PaymentFailureReason};
    use sqlx::types::Uuid;

    const PAYMENT: &str = "0192e3a4-0000-7000-8000-000000000001";
    const WALLET: &str = "0192e3a4-0000-7000-8000-000000000002";
    const PAYEE_WALLET: &str = "0192e3a4-0000-7000-8000-000000000003";
    const PAYER: &str = "0192e3a4-0000-7000-8000-000000000004";
    const PAYEE: &str = "0192e3a4-0000-7000-8000-000000000005";

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_796_358_334_123).expect("in range")
    }

    fn row(status: &str, kind: &str, failure_reason: Option<&str>) -> PaymentRow {
        PaymentRow {
            payment_id: PAYMENT.into(),
            status: status.into(),
            kind: kind.into(),
            wallet_id: WALLET.into(),
            payee_wallet_id: Some(PAYEE_WALLET.into()),
            payer_id: PAYER.into(),
            payee_id: Some(PAYEE.into()),
            amount_minor: 300,
            currency: "USD".into(),
            failure_reason: failure_reason.map(str::to_string),
            error_message: failure_reason.map(|_| "wallet holds 100 USD".to_string()),
            decided_at: at(),
        }
    }

    fn uuid(text: &str) -> Uuid {
        text.parse().expect("a uuid")
    }

    #[test]
    fn a_completed_row_is_announced_as_payment_completed() {
        let Outcome::Completed(c) = row("COMPLETED", "TIP", None).outcome().expect("readable")
        else {
            panic!("not a completion");
        };
        assert_eq!(
            c,
            PaymentCompleted {
                payment_id: uuid(PAYMENT),
                wallet_id: uuid(WALLET),
                payee_wallet_id: Some(uuid(PAYEE_WALLET)),
                payer_id: uuid(PAYER),
                payee_id: Some(uuid(PAYEE)),
                amount_minor: 300,
                currency: "USD".into(),
                kind: PaymentCompletedKind::Tip,
                provider_reference: None,
                completed_at: at(),
            }
        );
    }

    #[test]
    fn a_failed_row_is_announced_with_its_reason() {
        let outcome = PaymentRow {
            payee_wallet_id: None,
            payee_id: None,
            ..row("FAILED", "TOP_UP", Some("INSUFFICIENT_FUNDS"))
        }
        .outcome()
        .expect("readable");
        let Outcome::Failed(f) = outcome else {
            panic!("not a failure");
        };
        assert_eq!(f.kind, PaymentFailedKind::TopUp);
        assert_eq!(f.reason, PaymentFailureReason::InsufficientFunds);
        assert_eq!(f.error_message.as_deref(), Some("wallet holds 100 USD"));
        assert_eq!((f.payee_wallet_id, f.payee_id), (None, None));
        assert_eq!(f.failed_at, at());
        assert_eq!(f.payment_id, uuid(PAYMENT));
    }

    #[test]
    fn an_unreadable_row_is_a_permanent_error() {
        for bad in [
            row("COMPLETED", "BRIBE", None),
            row("FAILED", "TIP", None),
            row("FAILED", "TIP", Some("BAD_LUCK")),
            PaymentRow {
                payer_id: "not-a-uuid".into(),
                ..row("COMPLETED", "TIP", None)
            },
        ] {
            let err = bad.outcome().expect_err("unreadable");
            assert!(!err.is_retryable(), "{err}");
            assert!(err.to_string().contains(PAYMENT), "{err}");
        }
    }

    #[test]
    fn a_wallet_update_carries_the_signed_change_and_the_state_after_it() {
        let Outcome::Completed(completed) = row("COMPLETED", "TIP", None).outcome().expect("ok")
        else {
            panic!("not a completion");
        };
        let change = |direction: &str| WalletChange {
            wallet_id: PAYEE_WALLET.into(),
            user_id: PAYEE.into(),
            direction: direction.into(),
            amount_minor: 300,
            currency: "USD".into(),
            balance_after_minor: 700,
            wallet_version: 4,
            created_at: at(),
        };
        let credit = change("CREDIT")
            .wallet_updated(PAYMENT, &completed)
            .expect("readable");
        assert_eq!(
            credit,
            WalletUpdated {
                wallet_id: uuid(PAYEE_WALLET),
                user_id: uuid(PAYEE),
                balance_minor: 700,
                change_minor: 300,
                currency: "USD".into(),
                last_payment_id: uuid(PAYMENT),
                version: 4,
                updated_at: at(),
            }
        );
        let debit = change("DEBIT")
            .wallet_updated(PAYMENT, &completed)
            .expect("readable");
        assert_eq!(debit.change_minor, -300);
    }
}
