//! Bearer tokens (JWT) shared by every HTTP surface: the ingest API, the realtime gateway and the
//! console verify them; `circ token` mints development tokens.
//!
//! Claims name the principal (`sub`), what it may publish (`events` patterns and `domains`) and
//! whether it may use admin routes (`admin`). HS256 (a shared secret) and RS256 (a public key) are
//! both accepted, so a deployment can move from one to the other without downtime; a token signed
//! with any other algorithm (`none`, HS384, ES256, ...) or with an algorithm whose key is not
//! configured is refused.
//!
//! Time claims (RFC 7519 §4.1.4–4.1.6), each with the same small leeway for clock skew: `exp` is
//! required and must not have passed; `nbf`, when present, must have been reached; `iat`, when
//! present, must not be in the future.

use crate::sync::MutexExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The principal: a client (service) id, or a user id for end-user tokens.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, seconds since the epoch: the token is refused until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Event types this principal may publish: exact names, `prefix.*`, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Domains whose every event type this principal may publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Access to admin routes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// What an admin may do on the console: `viewer` (read only, the default) or `operator`
    /// (may also act: replay, discard, pause).
    #[serde(default, skip_serializing_if = "AdminRole::is_viewer")]
    pub role: AdminRole,
    /// May act for other users (a trusted backend): name another user as the author of what it
    /// publishes. Without it, a user token (`sub` = the user's id) acts only as itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_behalf: bool,
}

/// An admin's role on the console; the server enforces it on every action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    #[default]
    Viewer,
    Operator,
}

impl AdminRole {
    fn is_viewer(&self) -> bool {
        *self == AdminRole::Viewer
    }
}

impl Claims {
    /// Whether the bearer may act on the console (an admin with the operator role).
    pub fn may_operate(&self) -> bool {
        self.admin && self.role == AdminRole::Operator
    }

    /// Whether the bearer may publish `event_type` of `domain`.
    pub fn may_publish(&self, event_type: &str, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain || d == "*")
            || self
                .events
                .iter()
                .any(|pattern| matches_pattern(pattern, event_type))
    }
}

/// `*` matches everything, `video.*` every type starting with `video.`, anything else itself.
pub fn matches_pattern(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) if prefix.ends_with('.') => event_type.starts_with(prefix),
        _ => pattern == event_type,
    }
}

/// Why a token was refused. The message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    /// `nbf` not reached yet, or `iat` in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("invalid token")]
    Invalid,
    /// The algorithms this verifier accepts are named, so the client can fix its signer.
    #[error("the token's algorithm is not accepted (accepted: {0})")]
    Algorithm(&'static str),
}

/// Tokens kept verified at once; past this the cache starts over (bounded memory).
const VERIFIED_CACHE_CAPACITY: usize = 4096;

/// Keys accepted for verification.
#[derive(Clone)]
pub struct TokenVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    issuer: Option<String>,
    leeway: Duration,
    /// Tokens whose signature was already verified, with their claims: a client sends the same
    /// token with every request, and checking the signature each time costs more than the rest
    /// of the request's authentication. Expiry is still checked on every use.
    verified: Arc<Mutex<HashMap<String, Claims>>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenVerifier {
    /// At least one of `hs256_secret` and `rs256_public_pem` is required.
    pub fn new(
        hs256_secret: Option<&[u8]>,
        rs256_public_pem: Option<&[u8]>,
        issuer: Option<String>,
    ) -> Result<TokenVerifier, String> {
        if hs256_secret.is_none() && rs256_public_pem.is_none() {
            return Err("configure an HS256 secret or an RS256 public key".into());
        }
        if hs256_secret.is_some_and(|s| s.len() < 32) {
            return Err("the HS256 secret must be at least 32 bytes".into());
        }
        let rs256 = rs256_public_pem
            .map(DecodingKey::from_rsa_pem)
            .transpose()
            .map_err(|e| format!("invalid RS256 public key: {e}"))?;
        Ok(TokenVerifier {
            hs256: hs256_secret.map(DecodingKey::from_secret),
            rs256,
            issuer,
            leeway: Duration::from_secs(30),
            verified: Arc::default(),
        })
    }

    /// Verifies signature, expiry (with a small leeway) and issuer; returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let cached = self.verified.locked().get(token).cloned();
        if let Some(claims) = cached {
            return if claims.exp + self.leeway.as_secs() >= now_secs() {
                Ok(claims)
            } else {
                Err(AuthError::Expired)
            };
        }
        let claims = self.verify_signature(token)?;
        // `exp` and `nbf` are checked with the signature; `iat` here. A token valid only later
        // is never cached, so the cached path needs only the expiry.
        if claims
            .iat
            .is_some_and(|iat| iat > now_secs() + self.leeway.as_secs())
        {
            return Err(AuthError::NotYetValid);
        }
        let mut verified = self.verified.locked();
        if verified.len() >= VERIFIED_CACHE_CAPACITY {
            verified.clear();
        }
        verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Invalid)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or(AuthError::Algorithm(self.accepted_algorithms()))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::Invalid,
            })
    }

    /// The algorithms a token may be signed with, as configured.
    pub fn accepted_algorithms(&self) -> &'static str {
        match (self.hs256.is_some(), self.rs256.is_some()) {
            (true, true) => "HS256, RS256",
            (true, false) => "HS256",
            _ => "RS256",
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Claims valid for `ttl` from now.
pub fn claims_for(sub: impl Into<String>, ttl: Duration) -> Claims {
    let now = now_secs();
    Claims {
        sub: sub.into(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        nbf: None,
        iss: None,
        events: Vec::new(),
        domains: Vec::new(),
        admin: false,
        role: AdminRole::Viewer,
        on_behalf: false,
    }
}

/// Signs claims with an HS256 secret (development tokens, tests).
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, String> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| e.to_string())
}

/// Signs claims with an RS256 private key in PEM.
pub fn mint_rs256(private_pem: &[u8], claims: &Claims) -> Result<String, String> {
    let key = EncodingKey::from_rsa_pem(private_pem).map_err(|e| e.to_string())?;
    encode(&Header::new(Algorithm::RS256), claims, &key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

    #[test]
    fn patterns() {
        assert!(matches_pattern("*", "video.uploaded"));
        assert!(matches_pattern("video.*", "video.transcode.completed"));
        assert!(!matches_pattern("video.*", "videos.x"));
        assert!(matches_pattern("post.created", "post.created"));
        assert!(!matches_pattern("post.created", "post.deleted"));
    }

    #[test]
    fn a_minted_token_verifies_and_carries_permissions() {
        let mut claims = claims_for("feed-service", Duration::from_secs(60));
        claims.events = vec!["post.*".into()];
        claims.domains = vec!["payments".into()];
        let token = mint_hs256(SECRET, &claims).unwrap();
        let verifier = TokenVerifier::new(Some(SECRET), None, None).unwrap();
        let verified = verifier.verify(&token).unwrap();
        assert_eq!(verified, claims);
        assert!(verified.may_publish("post.created", "content"));
        assert!(verified.may_publish("payment.initiated", "payments"));
        assert!(!verified.may_publish("comment.added", "content"));
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires() {
        let mut verifier = TokenVerifier::new(Some(SECRET), None, None).unwrap();
        verifier.leeway = Duration::ZERO;
        let claims = claims_for("client", Duration::from_secs(1));
        let token = mint_hs256(SECRET, &claims).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), claims);
        assert!(verifier.verified.locked().contains_key(&token));
        assert_eq!(verifier.verify(&token).unwrap(), claims);
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(verifier.verify(&token), Err(AuthError::Expired));
        // A forged token never reaches the cache.
        let forged = mint_hs256(b"another-secret-of-at-least-32-bytes!", &claims).unwrap();
        assert_eq!(verifier.verify(&forged), Err(AuthError::Invalid));
        assert!(!verifier.verified.locked().contains_key(&forged));
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let verifier = TokenVerifier::new(Some(SECRET), None, None).unwrap();
        let mut claims = claims_for("c", Duration::from_secs(60));
        claims.exp = now_secs() - 3600;
        let expired = mint_hs256(SECRET, &claims).unwrap();
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));
        let forged = mint_hs256(
            b"another-secret-of-at-least-32-bytes!",
            &claims_for("c", Duration::from_secs(60)),
        )
        .unwrap();
        assert_eq!(verifier.verify(&forged), Err(AuthError::Invalid));
        assert_eq!(verifier.verify("not.a.jwt"), Err(AuthError::Invalid));
    }

    #[test]
    fn a_token_valid_only_later_is_refused_until_then() {
        let verifier = TokenVerifier::new(Some(SECRET), None, None).unwrap();
        let ten_years = 10 * 365 * 24 * 3600;
        let mut later = claims_for("c", Duration::from_secs(ten_years + 60));
        later.nbf = Some(now_secs() + ten_years);
        let token = mint_hs256(SECRET, &later).unwrap();
        assert_eq!(verifier.verify(&token), Err(AuthError::NotYetValid));
        assert!(!verifier.verified.locked().contains_key(&token));
        // Within the leeway, clock skew is forgiven.
        let mut skewed = claims_for("c", Duration::from_secs(60));
        skewed.nbf = Some(now_secs() + 10);
        assert!(verifier
            .verify(&mint_hs256(SECRET, &skewed).unwrap())
            .is_ok());
        let mut reached = claims_for("c", Duration::from_secs(60));
        reached.nbf = Some(now_secs() - 60);
        assert!(verifier
            .verify(&mint_hs256(SECRET, &reached).unwrap())
            .is_ok());
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let verifier = TokenVerifier::new(Some(SECRET), None, None).unwrap();
        let mut future = claims_for("c", Duration::from_secs(7200));
        future.iat = Some(now_secs() + 3600);
        let token = mint_hs256(SECRET, &future).unwrap();
        assert_eq!(verifier.verify(&token), Err(AuthError::NotYetValid));
        let mut skewed = claims_for("c", Duration::from_secs(60));
        skewed.iat = Some(now_secs() + 10);
        assert!(verifier
            .verify(&mint_hs256(SECRET, &skewed).unwrap())
            .is_ok());
    }

    #[test]
    fn other_algorithms_are_refused_and_the_accepted_ones_named() {
        let verifier = TokenVerifier::new(Some(SECRET), None, None).unwrap();
        let claims = claims_for("c", Duration::from_secs(60));
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let refused = verifier.verify(&hs384).unwrap_err();
        assert_eq!(refused, AuthError::Algorithm("HS256"));
        assert!(refused.to_string().contains("accepted: HS256"));
        // `alg: none` with no signature.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert!(verifier.verify(&none).is_err());
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(TokenVerifier::new(Some(b"short"), None, None).is_err());
        assert!(TokenVerifier::new(None, None, None).is_err());
    }
}
