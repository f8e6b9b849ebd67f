//! What a relying party needs to honour Tessera's revocations without asking on every request:
//! verify minted JWTs against the broker's JWKS and against how they were presented (the client
//! certificate a `cnf`-bound token is bound to, the endpoint's purpose), follow
//! `Broker/WatchRevocations`, and refuse a token as soon as a rule covering it arrives.
//!
//! Tokens are sent to introspection ([`Verdict::Introspect`]) whenever a rule covering them may
//! be missing here: while no revocation stream is open, while an opened stream still replays
//! the rules committed before it opened (until its caught-up marker), and when an owner rule
//! (which cannot be matched from a token's claims) may cover them.
//!
//! Without a revocation stream, [`status_list`] reads a token's status offline from the
//! broker's Token Status Lists instead (at most one list `ttl` late).
//!
//! Rules are dropped once nothing they cover can still be valid (minted tokens live at most
//! [`MAX_GRANT_TTL`]), so memory and the cost of a check stay bounded by the revocations of the
//! last hour, whatever the history.

mod follow;
mod rules;
pub mod status_list;
mod verify;

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use tessera_core::clock::SharedClock;
use tessera_core::domain::id;
use tessera_core::policy::MAX_GRANT_TTL;
use tessera_proto::RevocationEvent;

pub use self::follow::StreamEnd;
use self::rules::{Coverage, Rules};
use self::verify::{LEEWAY_SECS, Verifier};

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

/// Why a presented token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a JWT: {0}")]
    NotAJwt(String),
    #[error("typ is not at+jwt")]
    NotAnAccessToken,
    #[error("unknown kid")]
    UnknownKey,
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("the token is bound to a client certificate and none was presented")]
    CertificateMissing,
    #[error("the token is bound to another client certificate")]
    CertificateMismatch,
    #[error("the token's cnf has no x5t#S256")]
    UnsupportedConfirmation,
    #[error("the token's scope is not this endpoint's purpose")]
    WrongScope,
    #[error("revoked by {0}")]
    Revoked(&'static str),
}

/// What to do with a presented token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Valid and not revoked: here are its claims.
    Accept(Value),
    /// Refused, and why.
    Refuse(Refusal),
    /// Valid, but a rule covering it may be unknown here: ask `POST /introspect`.
    Introspect(Value),
}

/// What the relying party knows about how a token was presented to it.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    /// The client certificate (DER) the peer presented on this connection, if any.
    pub peer_certificate: Option<&'a [u8]>,
    /// The purpose the endpoint serves: the token's `scope` must be exactly this.
    pub purpose: &'a str,
}

impl<'a> Presentation<'a> {
    /// Returns a presentation without a client certificate, at an endpoint serving `purpose`.
    pub fn bearer(purpose: &'a str) -> Self {
        Presentation {
            peer_certificate: None,
            purpose,
        }
    }

    /// Returns a presentation over mTLS with the peer's `certificate` (DER), at an endpoint
    /// serving `purpose`.
    pub fn mtls(certificate: &'a [u8], purpose: &'a str) -> Self {
        Presentation {
            peer_certificate: Some(certificate),
            purpose,
        }
    }
}

/// Verifies tokens for one destination and tracks revocations.
#[derive(Debug)]
pub struct RelyingParty {
    verifier: Verifier,
    clock: SharedClock,
    rules: RwLock<Rules>,
    last_sequence: AtomicU64,
    /// True once the open revocation stream has replayed every rule committed before it opened;
    /// false otherwise (a rule may be missing).
    following: AtomicBool,
}

impl RelyingParty {
    /// Accepts tokens from `issuer` for `destination`, signed by keys of `jwks`, judging their
    /// lifetime and the age of rules by `clock`. Fails when a key of the JWKS has an unsupported
    /// `alg` or cannot be read, or no key is usable.
    pub fn new(
        issuer: &str,
        destination: &str,
        jwks: &JwkSet,
        clock: SharedClock,
    ) -> Result<Self, JwksError> {
        Ok(RelyingParty {
            verifier: Verifier::new(issuer, destination, jwks)?,
            clock,
            rules: RwLock::new(Rules::default()),
            last_sequence: AtomicU64::new(0),
            following: AtomicBool::new(false),
        })
    }

    /// Applies one revocation event, then drops the rules nothing valid can be covered by any
    /// more. A caught-up marker carries no rule: it only advances [`Self::last_sequence`].
    pub fn apply(&self, event: &RevocationEvent) {
        if !event.caught_up
            && let Ok(mut rules) = self.rules.write()
        {
            rules.insert(&event.selector, &event.value, cutoff_ms(event));
            rules.prune(self.prune_before());
        }
        self.last_sequence
            .fetch_max(event.sequence, Ordering::AcqRel);
    }

    /// Drops the rules nothing valid can be covered by any more: those in effect more than the
    /// longest token lifetime (plus the clock leeway) ago. Returns how many were dropped.
    /// [`Self::apply`] does this already; call it to shrink a relying party that hears of no
    /// new rule.
    pub fn prune(&self) -> usize {
        let before = self.prune_before();
        self.rules
            .write()
            .map_or(0, |mut rules| rules.prune(before))
    }

    /// Returns how many rules are held (all owner rules count as one).
    pub fn rule_count(&self) -> usize {
        self.rules.read().map_or(0, |rules| rules.len())
    }

    /// Returns the cut-off (unix milliseconds) before which a rule covers nothing that can
    /// still be accepted.
    fn prune_before(&self) -> i64 {
        let max_ttl = i64::try_from(MAX_GRANT_TTL.as_secs()).unwrap_or(i64::MAX);
        self.clock
            .unix_seconds()
            .saturating_sub(max_ttl)
            .saturating_sub(LEEWAY_SECS)
            .saturating_mul(1000)
    }

    /// Returns true while a revocation stream is open and has replayed every rule committed
    /// before it opened.
    pub fn is_following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }

    /// Returns the last revocation sequence applied (resume a watch from it).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence.load(Ordering::Acquire)
    }

    /// Checks a token as `presented`: signature, `typ`, `iss`, `aud`, `iat`, `exp`, `nbf`, the
    /// certificate binding (`cnf`), `scope` against the endpoint's purpose, then the rules.
    /// Returns [`Verdict::Introspect`] when a rule covering the token may be unknown here (not
    /// up to date with the broker, or an owner rule).
    pub fn check(&self, token: &str, presented: Presentation<'_>) -> Verdict {
        let (claims, iat) = match self.verifier.verify(token, self.clock.unix_seconds()) {
            Ok(verified) => verified,
            Err(refusal) => return Verdict::Refuse(refusal),
        };
        if let Err(refusal) = verify::presented(&claims, &presented) {
            return Verdict::Refuse(refusal);
        }
        let Ok(rules) = self.rules.read() else {
            return Verdict::Introspect(claims);
        };
        let jti = claims["jti"].as_str().unwrap_or_default();
        match rules.coverage(&claims, id::issued_ms(jti, iat)) {
            Coverage::Revoked(selector) => Verdict::Refuse(Refusal::Revoked(selector.as_str())),
            Coverage::Unknown => Verdict::Introspect(claims),
            // Not up to date with the broker (yet, or any more): a rule may be missing, so ask.
            Coverage::None if !self.is_following() => Verdict::Introspect(claims),
            Coverage::None => Verdict::Accept(claims),
        }
    }
}

/// Returns the cut-off of `event` in unix milliseconds; a broker from before millisecond
/// cut-offs sends only seconds, which cover their whole second.
pub(crate) fn cutoff_ms(event: &RevocationEvent) -> i64 {
    match event.effective_at_ms {
        0 => event.effective_at.saturating_mul(1000).saturating_add(999),
        ms => ms,
    }
}

#[cfg(test)]
mod tests;
