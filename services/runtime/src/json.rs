//! JSON from untrusted clients, parsed strictly: an object that names a member twice is refused
//! with the JSON Pointer of the repeated member, instead of the last one silently winning.
//!
//! Parsers disagree on duplicates (some keep the first, some the last), so a body that one
//! intermediary reads as `{"type": "like.added"}` could be read here as another type: refusing
//! duplicates removes that difference. Everything else is `serde_json`'s own parsing, recursion
//! limit included.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not acceptable JSON.
#[derive(Debug, thiserror::Error)]
pub enum StrictJsonError {
    #[error("{0}")]
    Syntax(serde_json::Error),
    /// `path` is the JSON Pointer (RFC 6901) of the member named twice.
    #[error("the member {path} appears more than once")]
    Duplicate { path: String },
}

/// Parses `bytes` as one JSON value, refusing duplicate object members.
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut state = State::default();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = ValueSeed { state: &mut state }.deserialize(&mut deserializer);
    let value = match parsed {
        Ok(value) => value,
        Err(error) => {
            return Err(match state.duplicate {
                Some(path) => StrictJsonError::Duplicate { path },
                None => StrictJsonError::Syntax(error),
            })
        }
    };
    deserializer.end().map_err(StrictJsonError::Syntax)?;
    Ok(value)
}

/// The path to the value being parsed, and the duplicate found, if any.
#[derive(Default)]
struct State {
    path: Vec<String>,
    duplicate: Option<String>,
}

impl State {
    fn pointer(&self, last: &str) -> String {
        let mut pointer = String::new();
        for segment in self.path.iter().map(String::as_str).chain([last]) {
            pointer.push('/');
            pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
        }
        pointer
    }
}

struct ValueSeed<'s> {
    state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            self.state.path.push(items.len().to_string());
            let item = seq.next_element_seed(ValueSeed {
                state: &mut *self.state,
            });
            self.state.path.pop();
            match item? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                self.state.duplicate = Some(self.state.pointer(&key));
                return Err(A::Error::custom("duplicate member"));
            }
            self.state.path.push(key);
            let value = map.next_value_seed(ValueSeed {
                state: &mut *self.state,
            });
            let key = self.state.path.pop().unwrap_or_default();
            members.insert(key, value?);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn duplicate(text: &str) -> String {
        match from_slice(text.as_bytes()) {
            Err(StrictJsonError::Duplicate { path }) => path,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn parses_like_serde_json() {
        for text in [
            r#"{"type": "a", "data": {"n": -1, "u": 18446744073709551615, "f": 1.5e3, "s": "\u00e9", "z": null, "b": [true, false, []], "o": {}}}"#,
            r#"[{"a": 1}, {"a": 2}]"#,
            "\"text\"",
            "  42 ",
        ] {
            let strict = from_slice(text.as_bytes()).unwrap();
            let plain: Value = serde_json::from_str(text).unwrap();
            assert_eq!(strict, plain, "{text}");
        }
        let ordered = from_slice(br#"{"z": 1, "a": 2}"#).unwrap();
        assert_eq!(
            ordered.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["z", "a"]
        );
    }

    #[test]
    fn a_repeated_member_is_refused_with_its_pointer() {
        assert_eq!(duplicate(r#"{"type": "a", "type": "b"}"#), "/type");
        assert_eq!(
            duplicate(r#"[{"type": "a"}, {"data": {"x": 1, "y": 2, "x": 3}}]"#),
            "/1/data/x"
        );
        assert_eq!(duplicate(r#"{"a/b": {"c~": 1, "c~": 2}}"#), "/a~1b/c~0");
        // The same name in different objects is fine.
        assert_eq!(
            from_slice(br#"{"a": {"x": 1}, "b": {"x": 1}}"#).unwrap(),
            json!({"a": {"x": 1}, "b": {"x": 1}})
        );
    }

    #[test]
    fn syntax_errors_trailing_text_and_deep_nesting_are_refused() {
        for text in ["{\"a\": ", "{} {}", "[1,]", ""] {
            assert!(
                matches!(from_slice(text.as_bytes()), Err(StrictJsonError::Syntax(_))),
                "{text}"
            );
        }
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert!(matches!(
            from_slice(deep.as_bytes()),
            Err(StrictJsonError::Syntax(_))
        ));
    }
}
