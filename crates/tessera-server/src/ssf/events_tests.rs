//! SET shapes (RFC 8417 as SSF 1.0 profiles it, CAEP 1.0 events): typed header, the claims a
//! receiver needs and nothing it must not see, the subject of each rule, deterministic jtis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_core::clock::{SharedClock, SystemClock};
use tessera_core::domain::{CredentialKind, EvidenceKind, NewRule, Status};
use tessera_core::keys::SecretKey;
use tessera_core::mint::{JwtMinter, MintCa, X509Minter};

use super::*;
use crate::ssf::stream::{Delivery, StreamStatus};

const ISS: &str = "https://tessera.example.org";
const RP: &str = "spiffe://example.org/rp";
const NOW_MS: i64 = 1_700_000_000_123;

/// A mint CA whose subject is `O=Example, CN=Mint CA`.
fn mint_ca() -> X509Minter {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Mint CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ca = MintCa::new(
        &[cert.der().clone()],
        &SecretKey::from_pkcs8_der(key.serialize_der()),
    );
    X509Minter::new(ca.unwrap())
}

fn builder() -> SetBuilder {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let jwt = JwtMinter::new(ISS, &SecretKey::from_pkcs8_der(key.serialize_der())).unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    SetBuilder::new(
        Arc::new(JwtKeys::single(jwt, Arc::clone(&clock))),
        ISS.into(),
        Arc::new(MintCas::single(mint_ca(), clock)),
    )
}

fn stream(events: Vec<EventType>) -> StreamConfig {
    StreamConfig {
        aud: RP.into(),
        delivery: Delivery::Poll,
        events_requested: None,
        events_delivered: events,
        description: None,
        status: StreamStatus::Enabled,
        reason: None,
    }
}

fn rule(selector: Selector, value: &str) -> RevocationRule {
    RevocationRule {
        rule: NewRule {
            revocation_id: "rev-1".into(),
            selector,
            value: value.into(),
            effective_at: 1_700_000_000,
            effective_at_ms: Some(1_700_000_000_250),
            reason: "incident 7".into(),
            revoked_by: "spiffe://example.org/ops/admin".into(),
            scope: None,
        },
        sequence: 42,
    }
}

fn record(kind: CredentialKind) -> CredentialRecord {
    CredentialRecord {
        credential_id: "0a1b".into(),
        kind,
        workload: "spiffe://example.org/w".into(),
        owner: "team".into(),
        destination: "https://d".into(),
        purpose: "read".into(),
        grant: "g".into(),
        evidence_kind: EvidenceKind::JwtSvid,
        evidence_hash: "00".repeat(32),
        issued_at: 1_699_999_000,
        expires_at: 1_700_000_600,
        status: Status::Live,
        ci: None,
        status_list: None,
    }
}

fn part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn set_of(rule: &RevocationRule, record: Option<&CredentialRecord>) -> Option<NewSet> {
    let config = stream(EventType::SUPPORTED.to_vec());
    builder()
        .revocation(RevocationSet {
            stream_id: "s1",
            stream: &config,
            rule,
            record,
            now_ms: NOW_MS,
        })
        .unwrap()
}

#[test]
fn a_jwt_revocation_is_a_credential_change_about_its_jwt_id() {
    let set = set_of(
        &rule(Selector::CredentialId, "0a1b"),
        Some(&record(CredentialKind::Jwt)),
    )
    .unwrap();
    assert_eq!(part(&set.set, 0)["typ"], "secevent+jwt");
    assert_eq!((set.position, set.queued_at_ms), (42, NOW_MS));
    let claims = part(&set.set, 1);
    assert_eq!(
        claims,
        json!({
            "iss": ISS, "iat": 1_700_000_000, "jti": set.jti, "aud": RP, "txn": "rev-1",
            "sub_id": {"format": "jwt_id", "iss": ISS, "jti": "0a1b"},
            "events": {EventType::CredentialChange.uri(): {
                "change_type": "revoke", "credential_type": "jwt",
                "event_timestamp": 1_700_000_000, "reason_admin": {"en": "incident 7"},
            }},
        })
    );
}

#[test]
fn an_x509_revocation_names_the_mint_ca_and_the_serial() {
    let set = set_of(
        &rule(Selector::CredentialId, "0a1b"),
        Some(&record(CredentialKind::X509)),
    )
    .unwrap();
    let claims = part(&set.set, 1);
    assert_eq!(
        claims["sub_id"],
        json!({"format": "uri", "uri": "spiffe://example.org/w"})
    );
    let event = &claims["events"][EventType::CredentialChange.uri()];
    assert_eq!(event["credential_type"], "x509");
    assert_eq!(event["x509_issuer"], "CN=Mint CA,O=Example");
    assert_eq!(event["x509_serial"], "0a1b");
}

#[test]
fn a_selector_revocation_is_a_session_revoked_with_a_complex_subject() {
    for (selector, member, id) in [
        (
            Selector::Workload,
            "tessera_workload",
            json!({"format": "uri", "uri": "v"}),
        ),
        (
            Selector::Destination,
            "tessera_destination",
            json!({"format": "opaque", "id": "v"}),
        ),
        (
            Selector::Purpose,
            "tessera_purpose",
            json!({"format": "opaque", "id": "v"}),
        ),
        (
            Selector::Owner,
            "tessera_owner",
            json!({"format": "opaque", "id": "v"}),
        ),
    ] {
        let claims = part(&set_of(&rule(selector, "v"), None).unwrap().set, 1);
        assert_eq!(claims["sub_id"], json!({"format": "complex", member: id}));
        let event = &claims["events"][EventType::SessionRevoked.uri()];
        assert_eq!(event["event_timestamp"], 1_700_000_000);
        assert_eq!(event["tessera_effective_at_ms"], 1_700_000_000_250_i64);
        assert!(claims.get("sub").is_none() && claims.get("exp").is_none());
    }
}

#[test]
fn no_set_for_an_event_type_not_delivered_or_a_swept_credential() {
    let config = stream(vec![EventType::SessionRevoked]);
    let rule = rule(Selector::CredentialId, "0a1b");
    let jwt = record(CredentialKind::Jwt);
    let params = RevocationSet {
        stream_id: "s1",
        stream: &config,
        rule: &rule,
        record: Some(&jwt),
        now_ms: NOW_MS,
    };
    assert!(builder().revocation(params).unwrap().is_none());
    assert!(set_of(&rule, None).is_none());
}

#[test]
fn the_jti_of_a_revocation_depends_only_on_stream_and_revocation() {
    let rule = rule(Selector::Owner, "team");
    let (a, b) = (set_of(&rule, None).unwrap(), set_of(&rule, None).unwrap());
    assert_eq!(a.jti, b.jti);
    assert_ne!(a.set, b.set, "signed independently");
    assert_eq!(a.jti, revocation_jti("s1", "rev-1"));
    assert_ne!(revocation_jti("s2", "rev-1"), a.jti);
    assert_eq!(a.jti.len(), 32);
}

#[test]
fn a_verification_set_echoes_the_state_about_the_stream() {
    let config = stream(Vec::new());
    let set = builder()
        .verification(VerificationSet {
            stream_id: "s1",
            stream: &config,
            state: Some("xyz"),
            position: 9,
            now_ms: NOW_MS,
        })
        .unwrap();
    let claims = part(&set.set, 1);
    assert_eq!(claims["sub_id"], json!({"format": "opaque", "id": "s1"}));
    assert_eq!(
        claims["events"][EventType::Verification.uri()],
        json!({"state": "xyz"})
    );
    assert_eq!(set.position, 9);
}

#[test]
fn the_x509_issuer_is_the_ca_subject_in_rfc4514_order() {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example, Inc");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Mint CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(
        rfc4514_subject(cert.der()).as_deref(),
        Some("CN=Mint CA,O=Example\\, Inc")
    );
    assert_eq!(rfc4514_subject(b"not a certificate"), None);
}
