//! Security Event Tokens (RFC 8417, profiled by SSF 1.0 §4): one event per SET, header
//! `typ: secevent+jwt`, signed with the minting key; claims `iss`, `iat`, `jti`, `aud` (the
//! stream's receiver), `txn` (the revocation id), `sub_id`, `events`; never `sub` or `exp`.
//!
//! A rule on one credential becomes a CAEP `credential-change` (`change_type: revoke`); a rule
//! on a selector becomes a CAEP `session-revoked` whose complex `sub_id` names the selector
//! (README, "Shared Signals", shows each shape). The jti of a revocation's SET is derived from
//! (stream, revocation id), so queueing it twice (two replicas, or a replay after a restart)
//! queues it once.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tessera_core::domain::{CredentialKind, CredentialRecord, RevocationRule, Selector};
use tessera_core::mint::MintError;
use tessera_core::policy::MAX_GRANT_TTL;
use tessera_ledger::NewSet;

use super::stream::{EventType, StreamConfig};
use crate::signing::{JwtKeys, MintCas};

/// The JOSE `typ` of every SET.
pub const TYP: &str = "secevent+jwt";
/// The members a session-revoked `sub_id` may carry, one per selector; receivers that cannot
/// process them must discard the event (published as `critical_subject_members`).
/// `tessera_grant` is for the `grant` selector: a grant's name, or `<grant>/<part>=<value>`
/// for the part of a grant a reload took away (offboarding).
pub const SUBJECT_MEMBERS: [&str; 5] = [
    "tessera_workload",
    "tessera_destination",
    "tessera_purpose",
    "tessera_owner",
    "tessera_grant",
];

/// Parameters of [`SetBuilder::revocation`].
#[derive(Debug, Clone, Copy)]
pub struct RevocationSet<'a> {
    pub stream_id: &'a str,
    pub stream: &'a StreamConfig,
    pub rule: &'a RevocationRule,
    /// The revoked credential of a `credential_id` rule (its kind decides the event's shape).
    pub record: Option<&'a CredentialRecord>,
    /// Unix milliseconds now.
    pub now_ms: i64,
}

/// Parameters of [`SetBuilder::verification`].
#[derive(Debug, Clone, Copy)]
pub struct VerificationSet<'a> {
    pub stream_id: &'a str,
    pub stream: &'a StreamConfig,
    /// The receiver's `state`, echoed.
    pub state: Option<&'a str>,
    /// Where it goes in the stream's order (the last event sequence).
    pub position: u64,
    pub now_ms: i64,
}

/// How long after signing a SET its key stays published: SETs carry no `exp` (the SSF profile
/// forbids it, `standards.md` §9.2), and a receiver verifies a SET when it is delivered, which
/// may be well after the revocation (a receiver down for a while). As long as a minted
/// credential may live.
const SET_VERIFIABLE_SECS: i64 = MAX_GRANT_TTL.as_secs() as i64;

/// Builds and signs SETs.
pub struct SetBuilder {
    jwt: Arc<JwtKeys>,
    issuer: String,
    /// The mint CAs: the `x509_issuer` of an X.509 credential change is the subject (RFC 4514)
    /// of the CA that was active when the certificate was issued.
    cas: Arc<MintCas>,
}

impl fmt::Debug for SetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetBuilder")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Returns the jti of the SET announcing revocation `revocation_id` on `stream_id`: 128 bits of
/// SHA-256 over both, in hex.
pub fn revocation_jti(stream_id: &str, revocation_id: &str) -> String {
    let input = format!("tessera-ssf\0{stream_id}\0{revocation_id}");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
    tessera_core::domain::id::hex(&digest.as_ref()[..16])
}

/// Returns the `sub_id` and the event of a rule on one credential.
fn credential_change(
    record: &CredentialRecord,
    issuer: &str,
    x509_issuer: Option<&str>,
) -> (Value, Map<String, Value>) {
    let mut event = Map::new();
    event.insert("change_type".into(), json!("revoke"));
    let sub_id = match record.kind {
        CredentialKind::Jwt => {
            event.insert("credential_type".into(), json!("jwt"));
            json!({"format": "jwt_id", "iss": issuer, "jti": record.credential_id})
        }
        CredentialKind::X509 => {
            event.insert("credential_type".into(), json!("x509"));
            if let Some(dn) = x509_issuer {
                event.insert("x509_issuer".into(), json!(dn));
            }
            event.insert("x509_serial".into(), json!(record.credential_id));
            json!({"format": "uri", "uri": record.workload})
        }
    };
    (sub_id, event)
}

/// Returns the complex `sub_id` of a rule on a selector other than one credential.
fn selector_subject(selector: Selector, value: &str) -> Value {
    let (member, id) = match selector {
        Selector::Workload => ("tessera_workload", json!({"format": "uri", "uri": value})),
        Selector::Destination => (
            "tessera_destination",
            json!({"format": "opaque", "id": value}),
        ),
        Selector::Purpose => ("tessera_purpose", json!({"format": "opaque", "id": value})),
        Selector::Owner => ("tessera_owner", json!({"format": "opaque", "id": value})),
        Selector::Grant => ("tessera_grant", json!({"format": "opaque", "id": value})),
        // Not reached: a rule on one credential is a credential-change (see `revocation`).
        Selector::CredentialId => (
            "tessera_credential_id",
            json!({"format": "opaque", "id": value}),
        ),
    };
    json!({"format": "complex", member: id})
}

impl SetBuilder {
    /// Signs SETs as `issuer` with the signer of `jwt` at the time; names the issuers of X.509
    /// certificates from `cas`.
    pub fn new(jwt: Arc<JwtKeys>, issuer: String, cas: Arc<MintCas>) -> Self {
        SetBuilder { jwt, issuer, cas }
    }

    /// Returns the subject (RFC 4514) of the CA that issued the certificate of `record`, as far
    /// as this process knows, or `None` without a mint CA.
    fn x509_issuer(&self, record: &CredentialRecord) -> Option<String> {
        let issued_ms =
            tessera_core::domain::id::issued_ms(&record.credential_id, record.issued_at);
        let ca = self.cas.issuer_at(issued_ms)?;
        rfc4514_subject(ca.chain().first()?)
    }

    /// Signs `claims` as a SET with the key that signs now.
    fn sign(&self, claims: &Value, now_ms: i64) -> Result<String, MintError> {
        let valid_until = now_ms.div_euclid(1000).saturating_add(SET_VERIFIABLE_SECS);
        self.jwt.signer().sign_claims(TYP, claims, valid_until)
    }

    /// Returns the SET announcing `p.rule` on the stream, or `None` when the stream did not ask
    /// for its event type, or the rule names one credential whose record is gone (it expired
    /// and was swept: nothing is left to revoke). Fails only when signing fails.
    pub fn revocation(&self, p: RevocationSet<'_>) -> Result<Option<NewSet>, MintError> {
        let rule = &p.rule.rule;
        let (kind, sub_id, mut event) = match (rule.selector, p.record) {
            (Selector::CredentialId, None) => return Ok(None),
            (Selector::CredentialId, Some(record)) => {
                let x509_issuer = match record.kind {
                    CredentialKind::X509 => self.x509_issuer(record),
                    CredentialKind::Jwt => None,
                };
                let (sub_id, event) =
                    credential_change(record, &self.issuer, x509_issuer.as_deref());
                (EventType::CredentialChange, sub_id, event)
            }
            (selector, _) => {
                let mut event = Map::new();
                let effective_at_ms = rule.cutoff_ms();
                event.insert("tessera_effective_at_ms".into(), json!(effective_at_ms));
                let subject = selector_subject(selector, &rule.value);
                (EventType::SessionRevoked, subject, event)
            }
        };
        if !p.stream.events_delivered.contains(&kind) {
            return Ok(None);
        }
        event.insert("event_timestamp".into(), json!(rule.effective_at));
        event.insert("reason_admin".into(), json!({"en": rule.reason}));
        let jti = revocation_jti(p.stream_id, &rule.revocation_id);
        let claims = json!({
            "iss": self.issuer,
            "iat": p.now_ms.div_euclid(1000),
            "jti": jti,
            "aud": p.stream.aud,
            "txn": rule.revocation_id,
            "sub_id": sub_id,
            "events": { kind.uri(): event },
        });
        Ok(Some(NewSet {
            stream_id: p.stream_id.to_owned(),
            jti,
            position: p.rule.sequence,
            set: self.sign(&claims, p.now_ms)?,
            queued_at_ms: p.now_ms,
        }))
    }

    /// Returns a verification SET (SSF 1.0 §8.1.4.1) echoing `p.state`, with a random jti.
    /// Fails when the random generator or the signer fails.
    pub fn verification(&self, p: VerificationSet<'_>) -> Result<NewSet, MintError> {
        let jti = tessera_core::mint::random_hex::<16>()?;
        let mut event = Map::new();
        if let Some(state) = p.state {
            event.insert("state".into(), json!(state));
        }
        let claims = json!({
            "iss": self.issuer,
            "iat": p.now_ms.div_euclid(1000),
            "jti": jti,
            "aud": p.stream.aud,
            "sub_id": {"format": "opaque", "id": p.stream_id},
            "events": { EventType::Verification.uri(): event },
        });
        Ok(NewSet {
            stream_id: p.stream_id.to_owned(),
            jti,
            position: p.position,
            set: self.sign(&claims, p.now_ms)?,
            queued_at_ms: p.now_ms,
        })
    }
}

/// Returns the subject of the X.509 certificate `der` as an RFC 4514 string (last RDN first),
/// or `None` when it does not parse.
pub fn rfc4514_subject(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type();
                    let key = x509_parser::objects::oid2abbrev(oid, registry)
                        .map_or_else(|_| oid.to_id_string(), str::to_owned);
                    let value = attr.as_str().map_or_else(|_| "#".to_owned(), escape_dn);
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    Some(rdns.join(","))
}

/// Escapes an attribute value as RFC 4514 §2.4 says.
fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
