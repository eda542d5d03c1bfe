//! The hostile corpus, generated from the catalog: for every event type, every top-level field
//! dropped, nulled, of the wrong type, duplicated, and given the values its logical type refuses
//! (bad UUIDs, times and symbols, integers out of range, U+0000 in text), plus the envelope,
//! CloudEvents, header and token attacks, each with the status, error code and pointer it must
//! get back.

use circulatory::auth::{claims_for, mint_hs256, Claims};
use circulatory::catalog::EventType;
use serde_json::{json, Value};
use std::time::Duration;

/// One hostile request and the refusal it must get.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) status: u16,
    pub(crate) error_code: u64,
    /// `(index, path)` that must be among `errors[]`.
    pub(crate) errors: Vec<(u64, String)>,
    /// Text the detail or one error message must contain.
    pub(crate) mentions: Option<&'static str>,
}

/// Tokens the corpus uses, minted once.
pub(crate) struct Tokens {
    pub(crate) all: String,
    pub(crate) none_allowed: String,
    pub(crate) not_yet_valid: String,
    pub(crate) issued_in_future: String,
}

impl Tokens {
    pub(crate) fn new(secret: &[u8]) -> Tokens {
        let now = claims_for("x", Duration::ZERO).exp;
        let mint = |edit: &dyn Fn(&mut Claims)| {
            let mut claims = claims_for("hostile-tests", Duration::from_secs(3600));
            claims.events = vec!["*".into()];
            edit(&mut claims);
            mint_hs256(secret, &claims).unwrap()
        };
        Tokens {
            all: mint(&|_| {}),
            none_allowed: mint(&|c| c.events = vec!["nothing.*".into()]),
            not_yet_valid: mint(&|c| {
                c.nbf = Some(now + 10 * 365 * 86_400);
                c.exp = now + 11 * 365 * 86_400;
            }),
            issued_in_future: mint(&|c| c.iat = Some(now + 86_400)),
        }
    }
}

/// A valid payload for `event` whose every UUID is `marker`, so a broadcast that should never
/// have happened can be recognised on Redis.
pub(crate) fn valid_data(event: &EventType, marker: &str) -> Value {
    fn mark(value: &mut Value, marker: &str) {
        match value {
            Value::String(s) if uuid::Uuid::try_parse(s).is_ok() => *s = marker.to_string(),
            Value::Array(items) => items.iter_mut().for_each(|v| mark(v, marker)),
            Value::Object(fields) => fields.values_mut().for_each(|v| mark(v, marker)),
            _ => {}
        }
    }
    let mut data = circulatory_testkit::sample_data(&event.schema_json);
    mark(&mut data, marker);
    data
}

/// What an Avro field type accepts, as far as the corpus needs to know.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Uuid,
    Timestamp,
    Int,
    Long,
    Double,
    Boolean,
    Enum,
    Array,
    Map,
    Record,
}

/// The kind of a field type, and whether it accepts null.
fn kind(schema: &Value) -> Option<(Kind, bool)> {
    match schema {
        Value::String(t) => primitive(t, None).map(|k| (k, false)),
        Value::Array(branches) => {
            let nullable = branches.iter().any(|b| b == "null");
            let other: Vec<&Value> = branches.iter().filter(|b| *b != "null").collect();
            match other.as_slice() {
                [only] => kind(only).map(|(k, _)| (k, nullable)),
                _ => None,
            }
        }
        Value::Object(o) => {
            let t = o.get("type")?;
            if t.is_object() {
                return kind(t);
            }
            let logical = o.get("logicalType").and_then(Value::as_str);
            match t.as_str()? {
                "enum" => Some((Kind::Enum, false)),
                "array" => Some((Kind::Array, false)),
                "map" => Some((Kind::Map, false)),
                "record" => Some((Kind::Record, false)),
                other => primitive(other, logical).map(|k| (k, false)),
            }
        }
        _ => None,
    }
}

fn primitive(t: &str, logical: Option<&str>) -> Option<Kind> {
    Some(match (t, logical) {
        ("string", Some("uuid")) => Kind::Uuid,
        ("long", Some("timestamp-millis" | "timestamp-micros")) => Kind::Timestamp,
        ("string", _) => Kind::Text,
        ("int", _) => Kind::Int,
        ("long", _) => Kind::Long,
        ("float" | "double", _) => Kind::Double,
        ("boolean", _) => Kind::Boolean,
        _ => return None,
    })
}

/// A value of another JSON kind than the field takes.
fn wrong_kind(kind: Kind) -> Value {
    match kind {
        Kind::Text | Kind::Uuid | Kind::Enum => json!(12345),
        Kind::Timestamp => json!(true),
        Kind::Int | Kind::Long | Kind::Double => json!("7"),
        Kind::Boolean => json!("true"),
        Kind::Array => json!({"not": "a list"}),
        Kind::Map | Kind::Record => json!(["not", "an", "object"]),
    }
}

/// Values of the right JSON kind that the field's type still refuses, with what the refusal
/// must mention.
fn refused_values(kind: Kind) -> Vec<(&'static str, Value, Option<&'static str>)> {
    match kind {
        Kind::Text => vec![
            ("a NUL in text", json!("a\u{0}b"), Some("U+0000")),
            ("only a NUL", json!("\u{0}"), Some("U+0000")),
        ],
        Kind::Uuid => vec![
            ("a malformed UUID", json!("w-1"), None),
            ("a UUID with a NUL", json!("\u{0}"), None),
        ],
        Kind::Timestamp => vec![
            ("a time that is not RFC 3339", json!("yesterday"), None),
            ("a fractional epoch", json!(1.5), None),
        ],
        Kind::Int => vec![
            ("an int past 2^31", json!(2_147_483_648u64), None),
            ("a fractional int", json!(1.5), None),
        ],
        Kind::Long => vec![
            ("a long past 2^64", json!(1e20), None),
            ("a fractional long", json!(2.5), None),
        ],
        Kind::Enum => vec![("an unknown symbol", json!("NOT_A_SYMBOL"), None)],
        Kind::Double | Kind::Boolean | Kind::Array | Kind::Map | Kind::Record => Vec::new(),
    }
}

/// The JSON text of `object` with `member` given a second time.
fn with_duplicate(object: &Value, member: &str, again: &Value) -> String {
    let text = object.to_string();
    let open = text.strip_suffix('}').expect("an object");
    let separator = if open.ends_with('{') { "" } else { "," };
    format!("{open}{separator}{}:{again}}}", json!(member))
}

pub(crate) struct Builder<'a> {
    pub(crate) tokens: &'a Tokens,
    pub(crate) cases: Vec<Case>,
}

impl Builder<'_> {
    fn push(
        &mut self,
        name: String,
        body: impl Into<Vec<u8>>,
        status: u16,
        error_code: u64,
        errors: Vec<(u64, String)>,
    ) -> &mut Case {
        self.cases.push(Case {
            name,
            method: "POST",
            path: "/v1/events",
            headers: vec![
                ("content-type", "application/json".into()),
                ("authorization", format!("Bearer {}", self.tokens.all)),
            ],
            body: body.into(),
            status,
            error_code,
            errors,
            mentions: None,
        });
        self.cases.last_mut().expect("just pushed")
    }

    /// Every case for one event type.
    pub(crate) fn event_type(&mut self, event: &EventType, data: &Value) {
        let name = event.name();
        let envelope = |data: Value| json!({"type": name, "data": data}).to_string();
        let fields = event.schema_json["fields"].as_array().expect("a record");
        for field in fields {
            let field_name = field["name"].as_str().expect("a name");
            let pointer = format!("/data/{field_name}");
            let Some((kind, nullable)) = kind(&field["type"]) else {
                continue;
            };
            let has_default = field.get("default").is_some();
            let with = |value: Value| {
                let mut changed = data.clone();
                changed[field_name] = value;
                envelope(changed)
            };
            let mut cases: Vec<(String, String, Option<&'static str>)> = Vec::new();
            if !has_default && !nullable {
                let mut dropped = data.clone();
                dropped.as_object_mut().unwrap().remove(field_name);
                cases.push((
                    format!("{name}: {field_name} missing"),
                    envelope(dropped),
                    None,
                ));
            }
            if !nullable {
                cases.push((
                    format!("{name}: {field_name} null"),
                    with(Value::Null),
                    None,
                ));
            }
            cases.push((
                format!("{name}: {field_name} of the wrong type"),
                with(wrong_kind(kind)),
                None,
            ));
            for (what, value, mentions) in refused_values(kind) {
                cases.push((
                    format!("{name}: {field_name} {what}"),
                    with(value),
                    mentions,
                ));
            }
            for (case_name, body, mentions) in cases {
                self.push(case_name, body, 422, 42206, vec![(0, pointer.clone())])
                    .mentions = mentions;
            }
            // The same member twice: which one would an intermediary read?
            let again = data.get(field_name).cloned().unwrap_or(Value::Null);
            let duplicated = format!(
                "{{\"type\":{},\"data\":{}}}",
                json!(name),
                with_duplicate(data, field_name, &again)
            );
            self.push(
                format!("{name}: {field_name} given twice"),
                duplicated.clone(),
                400,
                40001,
                vec![(0, pointer.clone())],
            );
            self.push(
                format!("{name}: {field_name} given twice in a batch"),
                format!("[{},{duplicated}]", envelope(data.clone())),
                400,
                40001,
                vec![(1, pointer)],
            );
        }
        self.envelope_cases(event, data);
    }

    fn envelope_cases(&mut self, event: &EventType, data: &Value) {
        let name = event.name();
        let valid = json!({"type": name, "data": data});
        let unknown_member = format!("/data/unexpected{}", event.route.domain);
        let mut extra = data.clone();
        extra[&unknown_member[6..]] = json!(1);
        self.push(
            format!("{name}: unknown data member"),
            json!({"type": name, "data": extra}).to_string(),
            422,
            42206,
            vec![(0, unknown_member)],
        );
        self.push(
            format!("{name}: data not an object"),
            json!({"type": name, "data": "text"}).to_string(),
            422,
            42206,
            vec![(0, "/data".into())],
        );
        self.push(
            format!("{name}: no data"),
            json!({"type": name}).to_string(),
            422,
            42202,
            vec![(0, "/data".into())],
        );
        self.push(
            format!("{name}: unknown envelope attribute"),
            json!({"type": name, "data": data, "priority": "urgent"}).to_string(),
            422,
            42202,
            vec![(0, "/priority".into())],
        );
        self.push(
            format!("{name}: type given twice"),
            with_duplicate(&valid, "type", &json!("admin.action")),
            400,
            40001,
            vec![(0, "/type".into())],
        );
        self.push(
            format!("{name}: data given twice"),
            with_duplicate(&valid, "data", &json!({})),
            400,
            40001,
            vec![(0, "/data".into())],
        );
        self.push(
            format!("{name}: id with a control character"),
            json!({"type": name, "data": data, "id": "a\u{7}b"}).to_string(),
            422,
            42206,
            vec![(0, "/id".into())],
        );
        let mut dropped = data.clone();
        if let Some(first_required) = first_required_field(event) {
            dropped.as_object_mut().unwrap().remove(&first_required);
            self.push(
                format!("{name}: one invalid event refuses the batch"),
                json!([valid, {"type": name, "data": dropped}]).to_string(),
                422,
                42206,
                vec![(1, format!("/data/{first_required}"))],
            );
        }
        self.cloudevent_cases(event, data);
        self.refusals_before_the_body(event, &valid);
    }

    fn cloudevent_cases(&mut self, event: &EventType, data: &Value) {
        let name = event.name();
        let structured = |traceparent: Value| {
            json!({"specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(), "source": "/hostile",
                   "type": name, "datacontenttype": "application/json",
                   "traceparent": traceparent, "data": data})
            .to_string()
        };
        for (what, traceparent) in [
            ("garbage", json!("garbage")),
            ("a control character", json!("00-\u{1}")),
            (
                "100 KiB",
                json!(format!("00-{}-00f067aa0ba902b7-01", "a".repeat(100 * 1024))),
            ),
            (
                "an all-zero trace id",
                json!("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            ),
            ("a number", json!(7)),
        ] {
            let case = self.push(
                format!("{name}: structured CloudEvent with traceparent {what}"),
                structured(traceparent),
                422,
                42202,
                vec![(0, "/traceparent".into())],
            );
            case.headers[0].1 = "application/cloudevents+json".into();
        }
    }

    /// Refusals that come before the body is read: tokens and headers.
    fn refusals_before_the_body(&mut self, event: &EventType, valid: &Value) {
        let name = event.name();
        let body = valid.to_string();
        let tokens = [
            (
                "not allowed this type",
                &self.tokens.none_allowed,
                403,
                40301,
            ),
            (
                "valid only in ten years",
                &self.tokens.not_yet_valid,
                401,
                40101,
            ),
            ("issued tomorrow", &self.tokens.issued_in_future, 401, 40101),
        ];
        let mut cases = Vec::new();
        for (what, token, status, code) in tokens {
            cases.push((
                format!("{name}: a token {what}"),
                token.clone(),
                status,
                code,
            ));
        }
        for (case_name, token, status, code) in cases {
            let case = self.push(case_name, body.clone(), status, code, Vec::new());
            case.headers[1].1 = format!("Bearer {token}");
        }
        for header in [
            "authorization",
            "content-type",
            "x-correlation-id",
            "idempotency-key",
            "traceparent",
        ] {
            let case = self.push(
                format!("{name}: {header} given twice"),
                body.clone(),
                400,
                40001,
                Vec::new(),
            );
            let value = match header {
                "authorization" => case.headers[1].1.clone(),
                "content-type" => "application/json".to_string(),
                "traceparent" => "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                _ => "key-1".to_string(),
            };
            if !matches!(header, "authorization" | "content-type") {
                case.headers.push((header, value.clone()));
            }
            case.headers.push((header, value));
            case.mentions = Some("more than once");
        }
    }
}

fn first_required_field(event: &EventType) -> Option<String> {
    event.schema_json["fields"]
        .as_array()?
        .iter()
        .find(|f| f.get("default").is_none() && kind(&f["type"]).is_some_and(|(_, n)| !n))
        .and_then(|f| f["name"].as_str())
        .map(str::to_string)
}

/// Cases that concern the service rather than a type: routes, methods, algorithms.
pub(crate) fn service_cases(tokens: &Tokens, secret: &[u8]) -> Vec<Case> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = json!({"sub": "hostile-tests", "exp": claims_for("x", Duration::from_secs(600)).exp, "events": ["*"]});
    let unsigned = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    let base =
        |name: &str, method: &'static str, path: &'static str, status: u16, code: u64| Case {
            name: name.to_string(),
            method,
            path,
            headers: vec![
                ("content-type", "application/json".into()),
                ("authorization", format!("Bearer {}", tokens.all)),
            ],
            body: Vec::new(),
            status,
            error_code: code,
            errors: Vec::new(),
            mentions: None,
        };
    let mut cases = vec![
        base("an unknown route", "GET", "/v1/nothing-here", 404, 40401),
        base(
            "an unknown route under admin",
            "POST",
            "/admin/x",
            404,
            40401,
        ),
        base("GET on the publish route", "GET", "/v1/events", 405, 40501),
        base("DELETE on the catalog", "DELETE", "/v1/catalog", 405, 40501),
        base("a made-up method", "ZZZ1", "/v1/events", 405, 40501),
        base("a made-up method on no route", "ZZZ2", "/x", 404, 40401),
    ];
    for (what, token) in [("alg none", unsigned), ("HS384", hs384)] {
        let mut case = base(
            &format!("a token signed with {what}"),
            "POST",
            "/v1/events",
            401,
            40101,
        );
        case.body = b"{}".to_vec();
        case.headers[1].1 = format!("Bearer {token}");
        cases.push(case);
    }
    cases
}
