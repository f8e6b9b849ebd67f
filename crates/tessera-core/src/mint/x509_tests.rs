//! The X.509-SVID minter (`standards.md` §2, DESIGN.md "What is minted" and "Precise
//! semantics"), read back with x509-parser: one URI SAN, cA=false, critical keyUsage
//! digitalSignature, EKU serverAuth + clientAuth, positive serial, SKI/AKI, notBefore backdated
//! 60 s, notAfter = now + ttl, the 2.25 binding extension, and only the CSR's public key.

use rcgen::PublicKeyData;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate, X509Version};

use super::*;
use crate::attest::x509_svid::X509SvidVerifier;
use crate::test_pki::{Ca, NOW, TD, WORKLOAD};

const TTL: u64 = 300;
const DESTINATION: &str = "https://db.example.org";
const PURPOSE: &str = "read:orders";

fn minter(root: &Ca) -> X509Minter {
    X509Minter::new(MintCa::new(std::slice::from_ref(&root.cert), &root.secret_key()).unwrap())
}

/// Mints for a fresh CSR of `alg` at `now`; returns the result and the CSR key's SPKI.
fn mint_with(
    minter: &X509Minter,
    alg: &'static rcgen::SignatureAlgorithm,
    now: i64,
) -> (Result<MintedX509, MintError>, Vec<u8>) {
    let (csr, key) = crate::test_pki::csr(alg);
    let csr = VerifiedCsr::from_der(&csr).unwrap();
    let minted = minter.mint(MintX509Params {
        workload: &WORKLOAD.parse().unwrap(),
        destination: DESTINATION,
        purpose: PURPOSE,
        csr: &csr,
        ttl: Duration::from_secs(TTL),
        issued_ms: now * 1000,
    });
    (minted, key.subject_public_key_info())
}

fn sha256_160(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref()[..20].to_vec()
}

/// The DER content octets of `2.25.<BINDING_UUID>` (x509-parser prints arcs over 64 bits as hex,
/// so the OID is compared by its encoding).
fn binding_oid_content() -> Vec<u8> {
    let mut arc = crate::domain::BINDING_UUID;
    let mut base128 = vec![(arc & 0x7f) as u8];
    arc >>= 7;
    while arc > 0 {
        base128.push((arc & 0x7f) as u8 | 0x80);
        arc >>= 7;
    }
    base128.reverse();
    [vec![2 * 40 + 25], base128].concat()
}

#[test]
fn the_binding_oid_is_the_2_25_arc_of_the_documented_uuid() {
    let uuid = u128::from_str_radix(&"09c15247-e845-453b-9ded-52714c0be66d".replace('-', ""), 16);
    assert_eq!(uuid, Ok(crate::domain::BINDING_UUID));
    assert_eq!(
        crate::domain::BINDING_OID,
        format!("2.25.{}", crate::domain::BINDING_UUID)
    );
    assert_eq!(
        crate::der::oid(&[2, 25, crate::domain::BINDING_UUID])[2..],
        binding_oid_content()[..]
    );
}

#[test]
fn a_minted_leaf_follows_the_x509_svid_profile() {
    let root = Ca::root("example.org root");
    let (minted, csr_spki) = mint_with(&minter(&root), &rcgen::PKCS_ECDSA_P256_SHA256, NOW);
    let minted = minted.unwrap();
    assert_eq!(minted.chain.len(), 2);
    assert_eq!(minted.chain[1], root.cert.to_vec());
    let (rest, leaf) = X509Certificate::from_der(&minted.chain[0]).unwrap();
    assert!(rest.is_empty());
    let (_, ca) = X509Certificate::from_der(&root.cert).unwrap();

    assert_eq!(leaf.version(), X509Version::V3);
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
    assert!(leaf.subject().iter_organization().next().is_some());
    leaf.verify_signature(Some(ca.public_key())).unwrap();

    // Only the CSR's key is taken: its SANs, CA request and key usages are not.
    assert_eq!(leaf.public_key().raw, csr_spki.as_slice());
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names, vec![GeneralName::URI(WORKLOAD)]);

    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    let ku = leaf.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert_eq!(ku.value.flags, 1, "digitalSignature only: {}", ku.value);
    let eku = leaf.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth && eku.value.client_auth);
    assert!(!eku.value.any && eku.value.other.is_empty() && !eku.value.code_signing);

    // SKI per RFC 7093 method 1; AKI names the CA's SKI.
    let ski = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ski, sha256_160(&leaf.public_key().subject_public_key.data));
    let ca_ski = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(aki.0, ca_ski.as_slice());

    // Positive 17-byte serial led by the issue millisecond, hex = credential id.
    let serial = leaf.raw_serial();
    assert_eq!(serial.len(), 17);
    assert!(serial[0] & 0x80 == 0);
    assert_eq!(
        crate::domain::id::embedded_ms(&minted.serial_hex),
        Some(minted.issued_at * 1000)
    );
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(minted.serial_hex, hex);

    assert_eq!(leaf.validity().not_before.timestamp(), NOW - 60);
    assert_eq!(leaf.validity().not_after.timestamp(), NOW + TTL as i64);
    assert_eq!(
        (minted.issued_at, minted.expires_at),
        (NOW, NOW + TTL as i64)
    );

    // The binding: non-critical, SEQUENCE { UTF8String destination, UTF8String purpose }.
    let binding = leaf
        .extensions()
        .iter()
        .find(|e| e.oid.as_bytes() == binding_oid_content().as_slice())
        .unwrap();
    assert!(!binding.critical);
    let mut want = vec![0x30, (4 + DESTINATION.len() + PURPOSE.len()) as u8];
    want.extend([0x0c, DESTINATION.len() as u8]);
    want.extend(DESTINATION.as_bytes());
    want.extend([0x0c, PURPOSE.len() as u8]);
    want.extend(PURPOSE.as_bytes());
    assert_eq!(binding.value, want.as_slice());

    // Nothing else: BC, KU, EKU, AKI, SKI, SAN, binding; no CRL DP or AIA (standards §10.4).
    let mut oids: Vec<String> = leaf
        .extensions()
        .iter()
        .map(
            |e| match e.oid.as_bytes() == binding_oid_content().as_slice() {
                true => "binding".to_owned(),
                false => e.oid.to_id_string(),
            },
        )
        .collect();
    oids.sort();
    let mut want = vec![
        "2.5.29.19",
        "2.5.29.15",
        "2.5.29.37",
        "2.5.29.35",
        "2.5.29.14",
        "2.5.29.17",
        "binding",
    ];
    want.sort_unstable();
    assert_eq!(oids, want);
}

#[test]
fn leaves_for_every_accepted_csr_key_verify_as_svids_at_a_relying_party() {
    let root = Ca::root("example.org root");
    let minter = minter(&root);
    let verifier = X509SvidVerifier::for_bundle(TD, std::slice::from_ref(&root.cert)).unwrap();
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let (minted, spki) = mint_with(&minter, alg, NOW);
        let minted = minted.unwrap();
        let chain: Vec<rustls::pki_types::CertificateDer<'_>> = minted
            .chain
            .iter()
            .map(|c| rustls::pki_types::CertificateDer::from(c.as_slice()))
            .collect();
        let peer = verifier.verify(&chain, NOW).unwrap();
        assert_eq!(peer.identity.as_str(), WORKLOAD);
        let (_, leaf) = X509Certificate::from_der(&minted.chain[0]).unwrap();
        assert_eq!(leaf.public_key().raw, spki.as_slice(), "{alg:?}");
    }
}

#[test]
fn serials_differ_between_leaves() {
    let root = Ca::root("example.org root");
    let minter = minter(&root);
    let a = mint_with(&minter, &rcgen::PKCS_ECDSA_P256_SHA256, NOW)
        .0
        .unwrap();
    let b = mint_with(&minter, &rcgen::PKCS_ECDSA_P256_SHA256, NOW)
        .0
        .unwrap();
    assert_ne!(a.serial_hex, b.serial_hex);
}

#[test]
fn validity_stays_within_the_ca_and_an_expired_ca_refuses_to_mint() {
    let root = Ca::root_valid("short-lived root", NOW - 10, NOW + 100);
    let minter = minter(&root);
    let (minted, _) = mint_with(&minter, &rcgen::PKCS_ECDSA_P256_SHA256, NOW);
    let minted = minted.unwrap();
    let (_, leaf) = X509Certificate::from_der(&minted.chain[0]).unwrap();
    assert_eq!(leaf.validity().not_before.timestamp(), NOW - 10);
    assert_eq!(leaf.validity().not_after.timestamp(), NOW + 100);
    assert_eq!(minted.expires_at, NOW + 100);
    assert_eq!(minter.expiry(NOW, Duration::from_secs(TTL)), NOW + 100);

    let (late, _) = mint_with(&minter, &rcgen::PKCS_ECDSA_P256_SHA256, NOW + 100);
    assert_eq!(late.unwrap_err(), MintError::CaExpired(NOW + 100));
}

/// Returns a CSR for an RSA 2048 key whose SPKI algorithm parameters are `parameters` instead
/// of NULL, signed by that key (so it verifies), and the key.
fn rsa_csr_with_spki_parameters(parameters: &[u8]) -> (Vec<u8>, rcgen::KeyPair) {
    use rcgen::SigningKey;
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let rsa_encryption = der::oid(&[1, 2, 840, 113_549, 1, 1, 1]);
    let spki = der::sequence(&[
        &der::sequence(&[&rsa_encryption, parameters]),
        &der::bit_string(key.der_bytes()),
    ]);
    let info = der::sequence(&[
        &der::small_integer(0),
        &der::sequence(&[]),
        &spki,
        &der::tlv(0xa0, &[]),
    ]);
    let sha256_with_rsa = der::oid(&[1, 2, 840, 113_549, 1, 1, 11]);
    let signature_algorithm = der::sequence(&[&sha256_with_rsa, &der::tlv(tag::NULL, &[])]);
    let signature = der::bit_string(&key.sign(&info).unwrap());
    (
        der::sequence(&[&info, &signature_algorithm, &signature]),
        key,
    )
}

#[test]
fn a_payload_in_the_csrs_key_parameters_does_not_reach_the_signed_leaf() {
    let payload = vec![0x5a; 8800];
    let (csr, key) = rsa_csr_with_spki_parameters(&der::tlv(tag::OCTET_STRING, &payload));
    let csr = VerifiedCsr::from_der(&csr).unwrap();
    assert_eq!(csr.key_type(), crate::csr::KeyType::Rsa { bits: 2048 });
    let root = Ca::root("example.org root");
    let minted = minter(&root)
        .mint(MintX509Params {
            workload: &WORKLOAD.parse().unwrap(),
            destination: DESTINATION,
            purpose: PURPOSE,
            csr: &csr,
            ttl: Duration::from_secs(TTL),
            issued_ms: NOW * 1000,
        })
        .unwrap();
    let (_, leaf) = X509Certificate::from_der(&minted.chain[0]).unwrap();
    assert!(
        !minted.chain[0].windows(64).any(|w| w == &payload[..64]),
        "the payload is in the leaf"
    );
    // rcgen writes the canonical form: rsaEncryption, NULL parameters, RSAPublicKey.
    let canonical = key.subject_public_key_info();
    let spki = leaf.public_key().raw;
    assert!(
        spki == canonical.as_slice(),
        "leaf SPKI is {} bytes, not the {} of the canonical encoding",
        spki.len(),
        canonical.len()
    );
}
