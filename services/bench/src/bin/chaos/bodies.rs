//! The events the load sends: each with a fresh event id (so the verifier can follow every one)
//! and data whose effect in PostgreSQL is one row per event.
//!
//! - `user.created`: a new user each time (key `userId`): one `user_profiles` row.
//! - `payment.initiated`: a new payment id each time, on a small pool of wallets (key
//!   `walletId`), so several payments share a wallet's lane: mostly top-ups, some tips from one
//!   pool wallet to another (which may fail for insufficient funds: a decision too).

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// Wallets per run; each has a fixed owner.
const WALLETS: usize = 32;

/// One event to send: its envelope and what the verifier needs to find its effect.
pub(crate) struct Planned {
    pub(crate) id: String,
    pub(crate) event_type: &'static str,
    /// The user id (user.created) or payment id (payment.initiated).
    pub(crate) entity: String,
    pub(crate) body: Value,
}

/// Makes the events of one run, cycling through the requested types.
pub(crate) struct Bodies {
    types: Vec<&'static str>,
    wallets: Vec<(Uuid, Uuid)>,
    made: u64,
}

impl Bodies {
    pub(crate) fn new(types: &[String]) -> Result<Bodies, String> {
        let types = types
            .iter()
            .map(|t| match t.as_str() {
                "user.created" => Ok("user.created"),
                "payment.initiated" => Ok("payment.initiated"),
                other => Err(format!(
                    "--types: `{other}` is not supported (user.created, payment.initiated)"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if types.is_empty() {
            return Err("--types: at least one type".into());
        }
        let wallets = (0..WALLETS)
            .map(|_| (Uuid::new_v4(), Uuid::new_v4()))
            .collect();
        Ok(Bodies {
            types,
            wallets,
            made: 0,
        })
    }

    pub(crate) fn next(&mut self) -> Planned {
        let n = self.made;
        self.made += 1;
        let event_type = self.types[(n % self.types.len() as u64) as usize];
        let id = Uuid::new_v4().to_string();
        let (entity, data) = match event_type {
            "user.created" => user_created(),
            _ => self.payment_initiated(n),
        };
        let body = json!({"type": event_type, "id": id, "data": data});
        Planned {
            id,
            event_type,
            entity,
            body,
        }
    }

    fn payment_initiated(&self, n: u64) -> (String, Value) {
        let payment_id = Uuid::new_v4().to_string();
        let pick = |k: u64| self.wallets[(k % WALLETS as u64) as usize];
        let (wallet, owner) = pick(n / 2);
        let tip = n % 8 == 1;
        let (payee_wallet, payee) = if tip {
            let (w, o) = pick(n / 2 + 1);
            (json!(w.to_string()), json!(o.to_string()))
        } else {
            (Value::Null, Value::Null)
        };
        let data = json!({
            "paymentId": payment_id,
            "walletId": wallet.to_string(),
            "payeeWalletId": payee_wallet,
            "payerId": owner.to_string(),
            "payeeId": payee,
            "amountMinor": if tip { 50 } else { 100 + (n % 7) as i64 * 10 },
            "currency": "USD",
            "kind": if tip { "TIP" } else { "TOP_UP" },
            "reference": null,
            "note": null,
            "initiatedAt": now(),
        });
        (payment_id, data)
    }
}

fn user_created() -> (String, Value) {
    let user = Uuid::new_v4();
    let data = json!({
        "userId": user.to_string(),
        "username": format!("chaos_{}", user.simple()),
        "displayName": "Chaos Suite",
        "email": null,
        "phoneNumber": null,
        "signupMethod": "EMAIL",
        "locale": null,
        "countryCode": null,
        "referrerId": null,
        "createdAt": now(),
    });
    (user.to_string(), data)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
