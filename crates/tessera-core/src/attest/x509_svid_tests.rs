//! X509-SVID rules (`standards.md` §2): the leaf rules, path validation against the bundle of
//! the SVID's own trust domain, EKU per usage, minted credentials, `tls_client_ca`, the peer's
//! `x5t#S256`, and unusable roots.

use rcgen::{ExtendedKeyUsagePurpose as Eku, IsCa, KeyUsagePurpose as Ku};
use rustls::pki_types::CertificateDer;

use super::*;
use crate::test_pki::{Ca, Leaf, NOW, TD, WORKLOAD};

fn domain(name: &str, roots: Vec<CertificateDer<'static>>) -> TrustDomainBundle {
    TrustDomainBundle {
        name: name.parse().expect("trust domain"),
        x509_roots: roots,
        jwt_keys: Vec::new(),
        max_jwt_svid_lifetime: crate::attest::jwt_svid::DEFAULT_MAX_LIFETIME,
    }
}

fn verifier_for(ca: &Ca) -> X509SvidVerifier {
    X509SvidVerifier::new(&[domain(TD, vec![ca.cert.clone()])], None).expect("verifier")
}

/// The chain webpki reported, when refused by path validation against `TD`'s bundle.
fn chain_reason(err: &X509SvidError) -> Option<&str> {
    match err {
        X509SvidError::Chain { domain, reason } if domain == TD => Some(reason),
        _ => None,
    }
}

type Check = fn(&X509SvidError) -> bool;

struct Case {
    name: &'static str,
    change: fn(&mut Leaf),
    /// `None`: the leaf is accepted.
    refused: Option<Check>,
}

#[test]
fn each_leaf_rule_refuses_its_violation_and_nothing_else() {
    let cases = [
        Case {
            name: "a_valid_svid_is_accepted",
            change: |_| {},
            refused: None,
        },
        Case {
            name: "a_leaf_with_two_uri_sans_is_refused",
            change: |l| l.uris.push("spiffe://example.org/other".into()),
            refused: Some(|e| *e == X509SvidError::UriSanCount(2)),
        },
        Case {
            name: "a_leaf_without_a_uri_san_is_refused",
            change: |l| {
                l.uris.clear();
                l.dns.push("payments.example.org".into());
            },
            refused: Some(|e| *e == X509SvidError::UriSanCount(0)),
        },
        Case {
            name: "a_leaf_with_dns_sans_beside_its_spiffe_id_is_accepted",
            change: |l| l.dns.push("payments.example.org".into()),
            refused: None,
        },
        Case {
            name: "a_uri_san_that_is_not_spiffe_is_refused",
            change: |l| l.uris = vec!["https://example.org/ns/prod".into()],
            refused: Some(|e| matches!(e, X509SvidError::NotSpiffe(s) if s.contains("https://"))),
        },
        Case {
            name: "a_uri_san_with_an_uppercase_trust_domain_is_refused",
            change: |l| l.uris = vec!["spiffe://Example.org/ns/prod".into()],
            refused: Some(|e| matches!(e, X509SvidError::NotSpiffe(_))),
        },
        Case {
            name: "a_uri_san_with_a_dot_segment_is_refused",
            change: |l| l.uris = vec!["spiffe://example.org/ns/../admin".into()],
            refused: Some(|e| matches!(e, X509SvidError::NotSpiffe(_))),
        },
        Case {
            name: "a_spiffe_id_without_a_path_is_refused",
            change: |l| l.uris = vec!["spiffe://example.org".into()],
            refused: Some(|e| *e == X509SvidError::NoPath("spiffe://example.org".into())),
        },
        Case {
            name: "a_leaf_with_ca_true_is_refused",
            change: |l| l.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
            refused: Some(|e| *e == X509SvidError::LeafIsCa),
        },
        Case {
            name: "a_leaf_without_basic_constraints_is_not_a_ca_and_is_accepted",
            change: |l| l.is_ca = IsCa::NoCa,
            refused: None,
        },
        Case {
            name: "a_leaf_without_key_usage_is_refused",
            change: |l| l.key_usages.clear(),
            refused: Some(|e| *e == X509SvidError::NoKeyUsage),
        },
        Case {
            name: "a_leaf_without_digital_signature_is_refused",
            change: |l| l.key_usages = vec![Ku::KeyEncipherment],
            refused: Some(|e| *e == X509SvidError::NoDigitalSignature),
        },
        Case {
            name: "a_leaf_with_key_cert_sign_is_refused",
            change: |l| l.key_usages.push(Ku::KeyCertSign),
            refused: Some(|e| *e == X509SvidError::SigningUsage),
        },
        Case {
            name: "a_leaf_with_crl_sign_is_refused",
            change: |l| l.key_usages.push(Ku::CrlSign),
            refused: Some(|e| *e == X509SvidError::SigningUsage),
        },
        Case {
            name: "a_leaf_with_key_encipherment_and_key_agreement_is_accepted",
            change: |l| {
                l.key_usages.push(Ku::KeyEncipherment);
                l.key_usages.push(Ku::KeyAgreement);
            },
            refused: None,
        },
        Case {
            name: "a_leaf_of_an_unconfigured_trust_domain_is_refused",
            change: |l| l.uris = vec!["spiffe://other.org/ns/prod".into()],
            refused: Some(|e| *e == X509SvidError::UntrustedDomain("other.org".into())),
        },
        Case {
            name: "an_expired_leaf_is_refused_by_path_validation",
            change: |l| {
                l.not_before = NOW - 7200;
                l.not_after = NOW - 1;
            },
            refused: Some(|e| chain_reason(e).is_some_and(|r| r.starts_with("CertExpired"))),
        },
        Case {
            name: "a_leaf_not_yet_valid_is_refused_by_path_validation",
            change: |l| {
                l.not_before = NOW + 60;
                l.not_after = NOW + 3600;
            },
            refused: Some(|e| chain_reason(e).is_some_and(|r| r.starts_with("CertNotValidYet"))),
        },
        Case {
            name: "a_leaf_with_only_server_auth_is_refused_as_a_client",
            change: |l| l.ekus = vec![Eku::ServerAuth],
            refused: Some(|e| {
                chain_reason(e).is_some_and(|r| r.starts_with("RequiredEkuNotFound"))
            }),
        },
        Case {
            name: "a_leaf_with_only_client_auth_is_accepted_as_a_client",
            change: |l| l.ekus = vec![Eku::ClientAuth],
            refused: None,
        },
        Case {
            name: "a_leaf_without_eku_is_accepted",
            change: |l| l.ekus.clear(),
            refused: None,
        },
    ];
    let ca = Ca::root("example.org root");
    let verifier = verifier_for(&ca);
    for case in cases {
        let mut leaf = Leaf::svid(WORKLOAD);
        (case.change)(&mut leaf);
        let cert = ca.issue(&leaf);
        let result = verifier.verify(&[cert], NOW);
        match (case.refused, result) {
            (None, Ok(peer)) => assert_eq!(peer.identity.as_str(), leaf.uris[0], "{}", case.name),
            (Some(check), Err(e)) => assert!(check(&e), "{}: wrong refusal {e:?}", case.name),
            (None, Err(e)) => panic!("{}: refused with {e:?}", case.name),
            (Some(_), Ok(peer)) => panic!("{}: accepted as {}", case.name, peer.identity),
        }
    }
}

#[test]
fn a_leaf_signed_by_another_ca_is_refused() {
    let trusted = Ca::root("example.org root");
    // Same name, different key: only the signature tells them apart.
    let impostor = Ca::root("example.org root");
    let cert = impostor.issue(&Leaf::svid(WORKLOAD));
    let err = verifier_for(&trusted).verify(&[cert], NOW).unwrap_err();
    assert!(
        chain_reason(&err).is_some_and(|r| r.starts_with("InvalidSignatureForPublicKey")),
        "{err:?}"
    );
}

#[test]
fn a_leaf_is_verified_against_the_bundle_of_its_own_trust_domain_only() {
    let ours = Ca::root("example.org root");
    let theirs = Ca::root("other.org root");
    let verifier = X509SvidVerifier::new(
        &[
            domain(TD, vec![ours.cert.clone()]),
            domain("other.org", vec![theirs.cert.clone()]),
        ],
        None,
    )
    .unwrap();
    // other.org's CA vouching for an example.org workload.
    let cert = theirs.issue(&Leaf::svid(WORKLOAD));
    let err = verifier.verify(&[cert], NOW).unwrap_err();
    assert!(
        chain_reason(&err).is_some_and(|r| r.starts_with("UnknownIssuer")),
        "{err:?}"
    );
    let cert = theirs.issue(&Leaf::svid("spiffe://other.org/w"));
    assert_eq!(
        verifier.verify(&[cert], NOW).unwrap().identity.as_str(),
        "spiffe://other.org/w"
    );
}

#[test]
fn a_trust_domain_with_an_empty_x509_bundle_trusts_no_svid() {
    let ca = Ca::root("example.org root");
    let verifier = X509SvidVerifier::new(&[domain(TD, Vec::new())], None).unwrap();
    let err = verifier
        .verify(&[ca.issue(&Leaf::svid(WORKLOAD))], NOW)
        .unwrap_err();
    assert_eq!(err, X509SvidError::UntrustedDomain(TD.into()));
}

#[test]
fn a_leaf_verifies_through_its_intermediate_and_not_without_it() {
    let root = Ca::root("example.org root");
    let intermediate = root.intermediate("example.org intermediate");
    let leaf = intermediate.issue(&Leaf::svid(WORKLOAD));
    let verifier = verifier_for(&root);
    let peer = verifier
        .verify(&[leaf.clone(), intermediate.cert.clone()], NOW)
        .unwrap();
    assert_eq!(peer.identity.as_str(), WORKLOAD);
    let err = verifier.verify(&[leaf], NOW).unwrap_err();
    assert!(
        chain_reason(&err).is_some_and(|r| r.starts_with("UnknownIssuer")),
        "{err:?}"
    );
}

#[test]
fn the_usage_decides_which_eku_is_required() {
    let ca = Ca::root("example.org root");
    let verifier = verifier_for(&ca);
    let server_only = ca.issue(&Leaf {
        ekus: vec![Eku::ServerAuth],
        ..Leaf::svid(WORKLOAD)
    });
    let client_only = ca.issue(&Leaf {
        ekus: vec![Eku::ClientAuth],
        ..Leaf::svid(WORKLOAD)
    });
    assert!(
        verifier
            .verify_for(std::slice::from_ref(&server_only), NOW, Usage::ServerAuth)
            .is_ok()
    );
    let err = verifier
        .verify_for(std::slice::from_ref(&client_only), NOW, Usage::ServerAuth)
        .unwrap_err();
    assert!(
        chain_reason(&err).is_some_and(|r| r.starts_with("RequiredEkuNotFound")),
        "{err:?}"
    );
    assert!(
        verifier
            .verify_for(&[client_only], NOW, Usage::ClientAuth)
            .is_ok()
    );
}

#[test]
fn an_empty_chain_or_garbage_is_malformed() {
    let verifier = verifier_for(&Ca::root("example.org root"));
    assert_eq!(verifier.verify(&[], NOW), Err(X509SvidError::Malformed));
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    assert_eq!(
        verifier.verify(&[garbage], NOW),
        Err(X509SvidError::Malformed)
    );
}

#[test]
fn the_peer_carries_the_x5t_s256_and_hash_of_the_leaf_and_expires_with_it() {
    use base64::Engine;
    let ca = Ca::root("example.org root");
    let leaf = ca.issue(&Leaf::svid(WORKLOAD));
    let peer = verifier_for(&ca)
        .verify(std::slice::from_ref(&leaf), NOW)
        .unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf);
    let expected_x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    let expected_hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(peer.x5t_s256, expected_x5t);
    assert_eq!(peer.x5t_s256.len(), 43);
    assert_eq!(peer.evidence_hash, expected_hex);
    assert_eq!(peer.not_after, NOW + 3600);

    let attestation = peer.attestation(NOW).unwrap();
    assert_eq!(
        attestation.principal,
        Principal::Spiffe(WORKLOAD.parse().unwrap())
    );
    assert_eq!(attestation.evidence_kind, EvidenceKind::X509Svid);
    assert_eq!(
        attestation.cnf_x5t_s256.as_deref(),
        Some(expected_x5t.as_str())
    );
    assert_eq!(attestation.one_time, None);
    // A connection may outlive its certificate: the last valid second, then refused.
    assert!(peer.attestation(NOW + 3600).is_ok());
    assert_eq!(
        peer.attestation(NOW + 3601),
        Err(X509SvidError::Expired(NOW + 3600))
    );
}

#[test]
fn tls_client_ca_is_a_second_root_every_svid_must_also_chain_to() {
    let ca = Ca::root("example.org root");
    let other = Ca::root("client ca");
    let leaf = ca.issue(&Leaf::svid(WORKLOAD));
    let domains = [domain(TD, vec![ca.cert.clone()])];

    let both = X509SvidVerifier::new(&domains, Some(&[other.cert.clone(), ca.cert.clone()]));
    assert!(
        both.unwrap()
            .verify(std::slice::from_ref(&leaf), NOW)
            .is_ok()
    );

    let elsewhere =
        X509SvidVerifier::new(&domains, Some(std::slice::from_ref(&other.cert))).unwrap();
    let err = elsewhere.verify(&[leaf], NOW).unwrap_err();
    assert!(
        matches!(&err, X509SvidError::ClientCa(r) if r.starts_with("UnknownIssuer")),
        "{err:?}"
    );
}

#[test]
fn root_subjects_lists_client_ca_and_bundle_roots() {
    let ca = Ca::root("example.org root");
    let other = Ca::root("client ca");
    let verifier = X509SvidVerifier::new(
        &[domain(TD, vec![ca.cert.clone()])],
        Some(std::slice::from_ref(&other.cert)),
    )
    .unwrap();
    let subjects = verifier.root_subjects();
    assert_eq!(subjects.len(), 2);
    let name_of = |der: &CertificateDer<'_>| {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let raw = cert.subject().as_raw();
        // Without the SEQUENCE header (short length form for these small names).
        raw[2..].to_vec()
    };
    assert_eq!(subjects[0], name_of(&other.cert));
    assert_eq!(subjects[1], name_of(&ca.cert));
}

#[test]
fn an_unusable_root_is_a_bundle_error_naming_its_position() {
    let ca = Ca::root("example.org root");
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    let err = X509SvidVerifier::new(&[domain(TD, vec![ca.cert.clone(), garbage.clone()])], None)
        .unwrap_err();
    assert!(
        matches!(&err, BundleError::X509Root { domain, index: 2, .. } if domain == TD),
        "{err:?}"
    );

    let err = X509SvidVerifier::new(
        &[domain(TD, vec![ca.cert.clone()])],
        Some(std::slice::from_ref(&garbage)),
    )
    .unwrap_err();
    assert!(
        matches!(&err, BundleError::ClientCa { index: 1, .. }),
        "{err:?}"
    );

    let err = X509SvidVerifier::for_bundle(TD, &[garbage]).unwrap_err();
    assert!(
        matches!(&err, BundleError::X509Root { domain, index: 1, .. } if domain == TD),
        "{err:?}"
    );
}

/// A certificate minted by Tessera (with the 2.25 binding extension) for `WORKLOAD`, and the root
/// of the mint CA.
fn minted() -> (Vec<Vec<u8>>, Ca) {
    use crate::mint::{MintCa, MintX509Params, X509Minter};
    let root = Ca::root("example.org root");
    let mint_ca = root.intermediate("tessera mint ca");
    let ca = MintCa::new(
        &[mint_ca.cert.clone(), root.cert.clone()],
        &mint_ca.secret_key(),
    )
    .unwrap();
    let (csr, _key) = crate::test_pki::csr(&rcgen::PKCS_ECDSA_P256_SHA256);
    let csr = crate::csr::VerifiedCsr::from_der(&csr).unwrap();
    let minted = X509Minter::new(ca)
        .mint(MintX509Params {
            workload: &WORKLOAD.parse().unwrap(),
            destination: "https://db.example.org",
            purpose: "read",
            csr: &csr,
            ttl: Duration::from_secs(300),
            issued_ms: NOW * 1000,
        })
        .unwrap();
    (minted.chain, root)
}

#[test]
fn a_tessera_minted_certificate_is_refused_as_evidence() {
    let (chain, root) = minted();
    let chain: Vec<CertificateDer<'_>> = chain.into_iter().map(CertificateDer::from).collect();
    assert_eq!(
        verifier_for(&root).verify(&chain, NOW),
        Err(X509SvidError::MintedCredential)
    );
}

#[test]
fn a_tessera_minted_certificate_is_accepted_by_a_relying_party_verifier() {
    let (chain, root) = minted();
    let chain: Vec<CertificateDer<'_>> = chain.into_iter().map(CertificateDer::from).collect();
    let verifier = X509SvidVerifier::for_bundle(TD, std::slice::from_ref(&root.cert)).unwrap();
    assert_eq!(
        verifier.verify(&chain, NOW).unwrap().identity.as_str(),
        WORKLOAD
    );
    assert!(verifier.verify_for(&chain, NOW, Usage::ServerAuth).is_ok());
    // A relying party verifier trusts only its one domain.
    let other =
        X509SvidVerifier::for_bundle("other.org", std::slice::from_ref(&root.cert)).unwrap();
    assert_eq!(
        other.verify(&chain, NOW),
        Err(X509SvidError::UntrustedDomain(TD.into()))
    );
}
