//! The payload of every event type, one Rust type per Avro record in `schemas/`, generated when
//! this crate builds (`build.rs`): a schema change that breaks a handler fails to compile.
//!
//! - Each `schemas/<domain>/<event.type>.avsc` gives a struct in module `<domain>` (re-exported
//!   at the root) implementing [`EventPayload`], its event type as [`EventPayload::EVENT_TYPE`].
//! - Nested records are structs of their own; Avro enums are Rust enums (`TOP_UP` is
//!   `TopUp`, with `as_str`, `Display`, `FromStr` and `ALL`); `["null", T]` is `Option<T>`;
//!   `uuid` strings are [`uuid::Uuid`], `timestamp-millis` is `DateTime<Utc>`; arrays are `Vec`,
//!   maps `BTreeMap<String, _>`.
//! - Serde reads and writes the JSON form of Avro values that the codec speaks (camelCase field
//!   names as in the schema, enums as their symbol, timestamps as RFC 3339, `null` for absent
//!   optional fields), so a payload read from a delivery and one handed to an emit are the JSON
//!   the catalog validates.

/// What the generated modules use.
mod generated_prelude {
    pub(crate) use std::collections::BTreeMap;

    pub(crate) use chrono::{DateTime, Utc};
    pub(crate) use serde::{Deserialize, Serialize};
    pub(crate) use uuid::Uuid;
}

include!(concat!(env!("OUT_DIR"), "/events.rs"));

/// The payload of one event type.
pub trait EventPayload:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
    /// The event type (`ce_type`): the schema file's name.
    const EVENT_TYPE: &'static str;
    /// The Avro record's full name.
    const SCHEMA_NAME: &'static str;
}

/// A string that is none of an enum's symbols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSymbol {
    pub enum_name: &'static str,
    pub symbol: String,
}

impl std::fmt::Display for UnknownSymbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` is not a symbol of {}", self.symbol, self.enum_name)
    }
}

impl std::error::Error for UnknownSymbol {}

/// A valid value of a type (feature `examples`): every optional field set, every array and map
/// with one element, the last symbol of every enum.
#[cfg(feature = "examples")]
pub trait HasExample {
    fn example() -> Self;
}

/// One event type's example as JSON, and a check that the JSON reads back as the same value.
#[cfg(feature = "examples")]
pub struct Example {
    pub event_type: &'static str,
    pub data: serde_json::Value,
    /// Reads `data` back into the type: `Ok(true)` when it equals the example.
    pub reads_back: fn(serde_json::Value) -> Result<bool, serde_json::Error>,
}

#[cfg(feature = "examples")]
impl Example {
    pub fn of<T: EventPayload + HasExample + PartialEq>() -> Example {
        Example {
            event_type: T::EVENT_TYPE,
            data: serde_json::to_value(T::example()).expect("a generated payload is JSON"),
            reads_back: |data| Ok(serde_json::from_value::<T>(data)? == T::example()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_has_a_type_named_by_its_event_type() {
        assert_eq!(PaymentCompleted::EVENT_TYPE, "payment.completed");
        assert_eq!(
            PaymentCompleted::SCHEMA_NAME,
            "circulatory.payments.PaymentCompleted"
        );
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas"))
            .expect("schemas/")
            .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("a domain"))
            .count();
        assert_eq!(EVENT_TYPES.len(), files);
        let mut sorted = EVENT_TYPES.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), EVENT_TYPES.len());
    }

    #[test]
    fn the_json_form_is_the_codecs() {
        let json = serde_json::json!({
            "paymentId": "0192e3a4-0000-7000-8000-000000000001",
            "walletId": "0192e3a4-0000-7000-8000-000000000002",
            "payerId": "0192e3a4-0000-7000-8000-000000000003",
            "amountMinor": 250,
            "currency": "USD",
            "kind": "TOP_UP",
            "completedAt": "2026-12-04T04:25:34.123Z"
        });
        let p: PaymentCompleted = serde_json::from_value(json).expect("reads");
        assert_eq!(p.kind, PaymentCompletedKind::TopUp);
        assert_eq!(p.payee_wallet_id, None, "an absent optional field is None");
        assert_eq!(p.completed_at.timestamp_millis(), 1_796_358_334_123);
        let back = serde_json::to_value(&p).expect("writes");
        assert_eq!(back["kind"], "TOP_UP");
        assert_eq!(back["payeeWalletId"], serde_json::Value::Null);
        assert_eq!(back["completedAt"], "2026-12-04T04:25:34.123Z");
        assert_eq!(back["paymentId"], "0192e3a4-0000-7000-8000-000000000001");
    }

    #[test]
    fn enums_parse_and_print_their_symbols() {
        assert_eq!("TOP_UP".parse(), Ok(PaymentCompletedKind::TopUp));
        assert_eq!(PaymentCompletedKind::TopUp.to_string(), "TOP_UP");
        let err = "top_up".parse::<PaymentCompletedKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`top_up` is not a symbol of PaymentCompletedKind"
        );
        assert_eq!(PaymentCompletedKind::ALL.len(), 6);
    }

    #[test]
    fn a_wrong_field_type_is_refused() {
        let json = serde_json::json!({"paymentId": "not-a-uuid"});
        assert!(serde_json::from_value::<PaymentCompleted>(json).is_err());
    }
}
