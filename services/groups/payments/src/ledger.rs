//! Deciding a payment: which accounts it moves money between, whether it may, and the ledger
//! writes when it does.
//!
//! Concurrency: wallets are locked with `SELECT ... FOR UPDATE` in wallet-id order, so two
//! payments touching the same wallets always lock them in the same order and never deadlock. A
//! wallet created on demand is inserted (`ON CONFLICT DO NOTHING`) before any lock is taken, so
//! a transaction waiting on another's insert holds no lock the other could need. The balance
//! check happens under those locks; the `wallets_balance_not_negative` CHECK backs it up.

use chrono::{DateTime, Utc};
use circulatory::consumer::HandlerError;
use circulatory::events::{PaymentFailureReason, PaymentInitiated, PaymentKind};
use sqlx::PgConnection;

use circulatory_group_common::effects::db;

/// The account of the outside world for `currency`: debited by top-ups, credited by payouts.
pub fn external_account(currency: &str) -> String {
    format!("external:{currency}")
}

/// One side of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// A user's wallet; `owner` is who it must belong to (when known), and who owns it when it is
    /// created by this credit.
    Wallet { id: String, owner: Option<String> },
    /// The outside world in one currency; may go negative.
    External { id: String },
}

impl Account {
    fn id(&self) -> &str {
        match self {
            Account::Wallet { id, .. } | Account::External { id } => id,
        }
    }
}

/// Where a payment moves money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub debit: Account,
    pub credit: Account,
}

/// Why a payment fails: its reason and a short description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: PaymentFailureReason,
    pub message: String,
}

impl Failure {
    fn new(reason: PaymentFailureReason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

impl Transfer {
    /// The transfer a payment asks for, or why its data cannot be a transfer.
    pub fn of(p: &PaymentInitiated) -> Result<Transfer, Failure> {
        if p.amount_minor <= 0 {
            return Err(Failure::new(
                PaymentFailureReason::Other,
                "amountMinor must be positive",
            ));
        }
        if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Failure::new(
                PaymentFailureReason::Other,
                format!("`{}` is not an ISO 4217 currency code", p.currency),
            ));
        }
        let own_wallet = Account::Wallet {
            id: p.wallet_id.to_string(),
            owner: Some(p.payer_id.to_string()),
        };
        let external = Account::External {
            id: external_account(&p.currency),
        };
        match p.kind {
            PaymentKind::TopUp | PaymentKind::Payout => {
                if p.payee_wallet_id.is_some() {
                    return Err(Failure::new(
                        PaymentFailureReason::Other,
                        format!(
                            "{} moves money of walletId only: payeeWalletId must be null",
                            p.kind
                        ),
                    ));
                }
                Ok(if p.kind == PaymentKind::TopUp {
                    Transfer {
                        debit: external,
                        credit: own_wallet,
                    }
                } else {
                    Transfer {
                        debit: own_wallet,
                        credit: external,
                    }
                })
            }
            _ => {
                let Some(payee_wallet) = p.payee_wallet_id else {
                    return Err(Failure::new(
                        PaymentFailureReason::Other,
                        format!("a {} payment needs payeeWalletId", p.kind),
                    ));
                };
                if payee_wallet == p.wallet_id {
                    return Err(Failure::new(
                        PaymentFailureReason::Other,
                        "payer and payee wallets are the same",
                    ));
                }
                Ok(Transfer {
                    debit: own_wallet,
                    credit: Account::Wallet {
                        id: payee_wallet.to_string(),
                        owner: p.payee_id.map(|u| u.to_string()),
                    },
                })
            }
        }
    }
}

/// A locked account row.
#[derive(Debug, sqlx::FromRow)]
struct Locked {
    wallet_id: String,
    user_id: Option<String>,
    currency: String,
    balance_minor: i64,
}

/// Decides payment `p` (carried by event `event_id`) on `tx` and records the outcome in
/// `payments`; a payment id decided before (by any event) changes nothing.
pub(crate) async fn decide(
    tx: &mut PgConnection,
    event_id: &str,
    p: &PaymentInitiated,
) -> Result<(), HandlerError> {
    let known: Option<(String,)> =
        sqlx::query_as("SELECT event_id FROM payments WHERE payment_id = $1")
            .bind(p.payment_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    if known.is_some() {
        return Ok(());
    }
    // Milliseconds: the outcome events carry this time and must say the same when re-emitted.
    let decided_at =
        DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now);
    let outcome = match Transfer::of(p) {
        Ok(transfer) => settle(tx, p, &transfer).await?.map(|()| transfer),
        Err(failure) => Err(failure),
    };
    let (status, failure) = match &outcome {
        Ok(_) => ("COMPLETED", None),
        Err(failure) => ("FAILED", Some(failure)),
    };
    let recorded = sqlx::query(
        "INSERT INTO payments (payment_id, event_id, status, kind, wallet_id, payee_wallet_id, \
                               payer_id, payee_id, amount_minor, currency, reference, note, \
                               failure_reason, error_message, initiated_at, decided_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (payment_id) DO NOTHING",
    )
    .bind(p.payment_id.to_string())
    .bind(event_id)
    .bind(status)
    .bind(p.kind.as_str())
    .bind(p.wallet_id.to_string())
    .bind(p.payee_wallet_id.map(|u| u.to_string()))
    .bind(p.payer_id.to_string())
    .bind(p.payee_id.map(|u| u.to_string()))
    .bind(p.amount_minor)
    .bind(&p.currency)
    .bind(&p.reference)
    .bind(&p.note)
    .bind(failure.map(|f| f.reason.as_str()))
    .bind(failure.map(|f| f.message.as_str()))
    .bind(p.initiated_at)
    .bind(decided_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    // A concurrent event with the same payment id (another key) decided first.
    if recorded == 0 {
        return Ok(());
    }
    if let Ok(transfer) = outcome {
        for (account, direction, change) in [
            (&transfer.debit, "DEBIT", -p.amount_minor),
            (&transfer.credit, "CREDIT", p.amount_minor),
        ] {
            sqlx::query(
                "WITH changed AS ( \
                   UPDATE wallets SET balance_minor = balance_minor + $3, version = version + 1, \
                                      last_payment_id = $1, updated_at = $6 \
                   WHERE wallet_id = $2 RETURNING balance_minor, version) \
                 INSERT INTO ledger_entries (payment_id, wallet_id, direction, amount_minor, \
                                             currency, balance_after_minor, wallet_version, \
                                             created_at) \
                 SELECT $1, $2, $4, $5, $7, balance_minor, version, $6 FROM changed",
            )
            .bind(p.payment_id.to_string())
            .bind(account.id())
            .bind(change)
            .bind(direction)
            .bind(p.amount_minor)
            .bind(decided_at)
            .bind(&p.currency)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
    }
    Ok(())
}

/// Locks the transfer's accounts and checks it may happen; `Ok(Err(_))` is a decided failure.
async fn settle(
    tx: &mut PgConnection,
    p: &PaymentInitiated,
    transfer: &Transfer,
) -> Result<Result<(), Failure>, HandlerError> {
    // Accounts created on demand: the credited wallet (when its owner is known) and an external
    // account on either side. Inserted in id order, before any row lock.
    let mut created: Vec<(&str, &str, Option<&str>)> = Vec::new();
    for account in [&transfer.debit, &transfer.credit] {
        match account {
            Account::External { id } => created.push((id, "EXTERNAL", None)),
            Account::Wallet {
                id,
                owner: Some(owner),
            } if account == &transfer.credit => created.push((id, "USER", Some(owner))),
            Account::Wallet { .. } => {}
        }
    }
    created.sort();
    for (id, kind, owner) in created {
        sqlx::query(
            "INSERT INTO wallets (wallet_id, kind, user_id, currency) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (wallet_id) DO NOTHING",
        )
        .bind(id)
        .bind(kind)
        .bind(owner)
        .bind(&p.currency)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    let ids = vec![
        transfer.debit.id().to_string(),
        transfer.credit.id().to_string(),
    ];
    let locked: Vec<Locked> = sqlx::query_as(
        "SELECT wallet_id, user_id, currency, balance_minor FROM wallets \
         WHERE wallet_id = ANY($1) ORDER BY wallet_id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let find = |account: &Account| locked.iter().find(|row| row.wallet_id == account.id());

    let Some(debit) = find(&transfer.debit) else {
        return Ok(Err(Failure::new(
            PaymentFailureReason::InsufficientFunds,
            format!("wallet {} has no funds", transfer.debit.id()),
        )));
    };
    let Some(credit) = find(&transfer.credit) else {
        return Ok(Err(Failure::new(
            PaymentFailureReason::Other,
            format!(
                "wallet {} does not exist and payeeId is null",
                transfer.credit.id()
            ),
        )));
    };
    for (account, row) in [(&transfer.debit, debit), (&transfer.credit, credit)] {
        if let Account::Wallet {
            id,
            owner: Some(owner),
        } = account
        {
            if row.user_id.as_deref() != Some(owner.as_str()) {
                return Ok(Err(Failure::new(
                    PaymentFailureReason::Other,
                    format!("wallet {id} does not belong to user {owner}"),
                )));
            }
        }
        if row.currency != p.currency {
            return Ok(Err(Failure::new(
                PaymentFailureReason::Other,
                format!(
                    "wallet {} holds {}, the payment is in {}",
                    row.wallet_id, row.currency, p.currency
                ),
            )));
        }
    }
    if matches!(transfer.debit, Account::Wallet { .. }) && debit.balance_minor < p.amount_minor {
        return Ok(Err(Failure::new(
            PaymentFailureReason::InsufficientFunds,
            format!(
                "wallet {} holds {} {}, the payment needs {}",
                debit.wallet_id, debit.balance_minor, p.currency, p.amount_minor
            ),
        )));
    }
    if debit.balance_minor.checked_sub(p.amount_minor).is_none()
        || credit.balance_minor.checked_add(p.amount_minor).is_none()
    {
        return Ok(Err(Failure::new(
            PaymentFailureReason::LimitExceeded,
            "the balance would exceed the representable range",
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use sqlx::types::Uuid;

    /// Wallet `n` (1, 2, ...) and user `10 + n`.
    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn payment(kind: PaymentKind, payee_wallet: Option<u128>, amount: i64) -> PaymentInitiated {
        PaymentInitiated {
            payment_id: id(100),
            wallet_id: id(1),
            payee_wallet_id: payee_wallet.map(id),
            payer_id: id(11),
            payee_id: Some(id(12)),
            amount_minor: amount,
            currency: "USD".into(),
            kind,
            reference: None,
            note: None,
            initiated_at: Utc::now(),
        }
    }

    fn wallet(n: u128, owner: u128) -> Account {
        Account::Wallet {
            id: id(n).to_string(),
            owner: Some(id(owner).to_string()),
        }
    }

    #[test]
    fn kinds_map_to_transfers() {
        let external = Account::External {
            id: "external:USD".into(),
        };
        assert_eq!(
            Transfer::of(&payment(PaymentKind::TopUp, None, 5)),
            Ok(Transfer {
                debit: external.clone(),
                credit: wallet(1, 11)
            })
        );
        assert_eq!(
            Transfer::of(&payment(PaymentKind::Payout, None, 5)),
            Ok(Transfer {
                debit: wallet(1, 11),
                credit: external
            })
        );
        for kind in [
            PaymentKind::Tip,
            PaymentKind::Purchase,
            PaymentKind::Subscription,
            PaymentKind::Other,
        ] {
            assert_eq!(
                Transfer::of(&payment(kind, Some(2), 5)),
                Ok(Transfer {
                    debit: wallet(1, 11),
                    credit: wallet(2, 12)
                }),
                "{kind}"
            );
        }
        assert_eq!(
            wallet(1, 11),
            Account::Wallet {
                id: "00000000-0000-0000-0000-000000000001".into(),
                owner: Some("00000000-0000-0000-0000-00000000000b".into()),
            },
            "wallet and owner ids are the uuids' text, as stored"
        );
    }

    #[test]
    fn invalid_payments_are_failures_with_a_reason() {
        for p in [
            payment(PaymentKind::Tip, Some(2), 0),
            payment(PaymentKind::Tip, Some(2), -3),
            payment(PaymentKind::Tip, None, 5),
            payment(PaymentKind::Tip, Some(1), 5),
            payment(PaymentKind::TopUp, Some(2), 5),
            PaymentInitiated {
                currency: "usd".into(),
                ..payment(PaymentKind::Tip, Some(2), 5)
            },
        ] {
            let failure = Transfer::of(&p).expect_err("invalid");
            assert_eq!(failure.reason, PaymentFailureReason::Other, "{p:?}");
            assert!(!failure.message.is_empty());
        }
        let failure = Transfer::of(&payment(PaymentKind::Payout, Some(2), 5)).expect_err("invalid");
        assert_eq!(
            failure.message,
            "PAYOUT moves money of walletId only: payeeWalletId must be null"
        );
    }
}
