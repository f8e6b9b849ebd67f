//! What a relying party needs to honour Tessera's revocations without asking on every request:
//! verify minted JWTs against the broker's JWKS, follow `Broker/WatchRevocations`, and refuse a
//! token as soon as a rule covering it arrives. Owner rules cannot be matched from a token's
//! claims (the owner is not in the token), so tokens an owner rule might cover are sent to
//! introspection instead, and so are all tokens while no revocation stream is open (the
//! replay of missed rules follows the opening of the stream within milliseconds).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use tessera_proto::RevocationEvent;
use tessera_proto::broker_client::BrokerClient;

/// Why a relying party cannot be set up from a JWKS.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("key `{kid}`: unsupported alg")]
    UnsupportedAlg { kid: String },
    #[error("key `{kid}`: {source}")]
    BadKey {
        kid: String,
        source: jsonwebtoken::errors::Error,
    },
    #[error("the JWKS has no usable key")]
    NoKey,
}

/// What to do with a presented token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Valid and not revoked: here are its claims.
    Accept(Value),
    /// Refused, and why.
    Refuse(String),
    /// Valid, but an owner rule may cover it: ask `POST /introspect`.
    Introspect(Value),
}

/// Verifies tokens for one destination and tracks revocations.
#[derive(Debug)]
pub struct RelyingParty {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    validation: Validation,
    rules: RwLock<HashMap<(String, String), i64>>,
    last_sequence: AtomicU64,
    /// True while a revocation stream is open: until then, a rule may be missing.
    following: std::sync::atomic::AtomicBool,
}

impl RelyingParty {
    /// Accepts tokens from `issuer` for `destination`, signed by keys of `jwks`. Fails when no
    /// key of the JWKS is usable.
    pub fn new(issuer: &str, destination: &str, jwks: &JwkSet) -> Result<Self, JwksError> {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let (Some(kid), Some(alg)) = (&jwk.common.key_id, jwk.common.key_algorithm) else {
                continue;
            };
            let alg: Algorithm = alg
                .to_string()
                .parse()
                .map_err(|_| JwksError::UnsupportedAlg { kid: kid.clone() })?;
            let key = DecodingKey::from_jwk(jwk).map_err(|source| JwksError::BadKey {
                kid: kid.clone(),
                source,
            })?;
            keys.insert(kid.clone(), (key, alg));
        }
        if keys.is_empty() {
            return Err(JwksError::NoKey);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[destination]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        Ok(RelyingParty {
            keys,
            validation,
            rules: RwLock::new(HashMap::new()),
            last_sequence: AtomicU64::new(0),
            following: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Applies one revocation event.
    pub fn apply(&self, event: &RevocationEvent) {
        if let Ok(mut rules) = self.rules.write() {
            let cut = rules
                .entry((event.selector.clone(), event.value.clone()))
                .or_insert(event.effective_at);
            *cut = (*cut).max(event.effective_at);
        }
        self.last_sequence
            .fetch_max(event.sequence, Ordering::AcqRel);
    }

    /// Returns true while a revocation stream is open.
    pub fn is_following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }

    /// Returns the last revocation sequence applied (resume a watch from it).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence.load(Ordering::Acquire)
    }

    /// Checks a presented token: signature, `typ`, `iss`, `aud`, `exp`, then the rules.
    pub fn check(&self, token: &str) -> Verdict {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(e) => return Verdict::Refuse(format!("not a JWT: {e}")),
        };
        if header.typ.as_deref() != Some("at+jwt") {
            return Verdict::Refuse("typ is not at+jwt".into());
        }
        let Some((key, alg)) = header.kid.as_deref().and_then(|kid| self.keys.get(kid)) else {
            return Verdict::Refuse("unknown kid".into());
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![*alg];
        let claims = match jsonwebtoken::decode::<Value>(token, key, &validation) {
            Ok(data) => data.claims,
            Err(e) => return Verdict::Refuse(format!("invalid: {e}")),
        };
        let iat = claims["iat"].as_i64().unwrap_or(i64::MAX);
        let Ok(rules) = self.rules.read() else {
            return Verdict::Introspect(claims);
        };
        for (selector, claim) in [
            ("credential_id", "jti"),
            ("workload", "sub"),
            ("destination", "aud"),
            ("purpose", "scope"),
        ] {
            let value = claims[claim].as_str().unwrap_or_default().to_owned();
            if rules
                .get(&(selector.to_owned(), value))
                .is_some_and(|cut| iat <= *cut)
            {
                return Verdict::Refuse(format!("revoked by {selector}"));
            }
        }
        let owner_rule = rules
            .iter()
            .any(|((selector, _), cut)| selector == "owner" && iat <= *cut);
        // Not following revocations (yet, or any more): a rule may be missing, so ask.
        if owner_rule || !self.following.load(Ordering::Acquire) {
            return Verdict::Introspect(claims);
        }
        Verdict::Accept(claims)
    }

    /// Follows `WatchRevocations` from the last applied sequence until the stream ends; returns
    /// why it ended (the caller reconnects and calls again).
    pub async fn follow(&self, client: &mut BrokerClient<tonic::transport::Channel>) -> String {
        let request = tessera_proto::WatchRevocationsRequest {
            since_sequence: self.last_sequence(),
        };
        let mut stream = match client.watch_revocations(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return status.message().to_owned(),
        };
        self.following.store(true, Ordering::Release);
        let why = loop {
            match stream.next().await {
                Some(Ok(event)) => self.apply(&event),
                Some(Err(status)) => break status.message().to_owned(),
                None => break "stream ended".into(),
            }
        };
        self.following.store(false, Ordering::Release);
        why
    }
}
