//! The mint CA ring on an injected clock, with configurations loaded from files as a reload
//! loads them: the active CA signs at once, a retired CA keeps its CRL until its last
//! certificate has expired and left the CRL, and a reload that would leave live certificates
//! (or the new CA's) unverifiable is refused with nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use tessera_core::clock::{Clock, ManualClock, SharedClock};
use tessera_core::csr::VerifiedCsr;
use tessera_core::domain::id;
use tessera_core::mint::crl::CRL_VALIDITY_SECS;
use tessera_core::mint::{MintX509Params, MintedX509};
use tessera_core::spiffe_id::SpiffeId;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{MintCas, SigningError, max_grant_ttl_secs};
use crate::config::Config;

const START: i64 = 1_800_000_000;

/// A self-signed CA, its PEM and its key's PEM.
struct Ca {
    cert_pem: String,
    key_pem: String,
    key_id: String,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.use_authority_key_identifier_extension = false;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
    let key_id = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => {
                Some(id::hex(ski.0))
            }
            _ => None,
        })
        .unwrap();
    Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_id,
    }
}

/// A directory of CA files and the configurations a test loads from it.
struct Files {
    dir: tempfile::TempDir,
    cas: Vec<Ca>,
}

impl Files {
    fn new(n: usize) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let cas: Vec<Ca> = (0..n).map(|i| ca(&format!("Mint CA {i}"))).collect();
        for (i, ca) in cas.iter().enumerate() {
            std::fs::write(dir.path().join(format!("ca{i}.pem")), &ca.cert_pem).unwrap();
            std::fs::write(dir.path().join(format!("ca{i}-key.pem")), &ca.key_pem).unwrap();
        }
        let jwt = rcgen::KeyPair::generate().unwrap().serialize_pem();
        std::fs::write(dir.path().join("jwt.pem"), jwt).unwrap();
        Files { dir, cas }
    }

    /// Returns the config listing CAs `listed` (the first one active) with a bundle of the CAs
    /// `trusted`, loaded at `now`.
    fn config(&self, listed: &[usize], trusted: &[usize], now: i64) -> Config {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        let bundle: String = trusted
            .iter()
            .map(|i| self.cas[*i].cert_pem.clone())
            .collect();
        std::fs::write(self.dir.path().join("bundle.pem"), bundle).unwrap();
        let entries: Vec<String> = listed
            .iter()
            .enumerate()
            .map(|(n, i)| {
                format!(
                    "{{ cert = {:?}, key = {:?}, active = {} }}",
                    path(&format!("ca{i}.pem")),
                    path(&format!("ca{i}-key.pem")),
                    n == 0
                )
            })
            .collect();
        let toml = format!(
            r#"
[server]
tls_cert = {ca0:?}
tls_key = {ca0_key:?}

[signing]
jwt_key = {jwt:?}
mint_cas = [{entries}]

[[trust_domain]]
name = "example.org"
x509_bundle = {bundle:?}

[[grant]]
name = "api"
workload = "spiffe://example.org/ns/a/sa/api"
owner = "team"
expires = "2099-01-01"
destinations = ["https://db.example.org"]
purposes = ["read"]
credentials = ["x509"]
[grant.match]
spiffe_id = "spiffe://example.org/ns/a/sa/api"
"#,
            ca0 = path("ca0.pem"),
            ca0_key = path("ca0-key.pem"),
            jwt = path("jwt.pem"),
            entries = entries.join(", "),
            bundle = path("bundle.pem"),
        );
        let file = self.dir.path().join("tessera.toml");
        std::fs::write(&file, toml).unwrap();
        Config::load(&file, &ManualClock::at(now)).unwrap()
    }
}

struct Ring {
    files: Files,
    cas: MintCas,
    clock: Arc<ManualClock>,
}

impl Ring {
    /// Starts with CAs `listed` (the first active), every CA trusted.
    fn start(n: usize, listed: &[usize]) -> Ring {
        let files = Files::new(n);
        let clock = Arc::new(ManualClock::at(START));
        let all: Vec<usize> = (0..n).collect();
        let config = files.config(listed, &all, START);
        let cas = MintCas::new(
            &config.signing,
            &config.x509_trust(),
            Arc::clone(&clock) as SharedClock,
        )
        .unwrap();
        Ring { files, cas, clock }
    }

    fn reload(&self, listed: &[usize], trusted: &[usize]) -> Result<(), SigningError> {
        let now_ms = self.clock.unix_millis();
        let config = self.files.config(listed, trusted, now_ms / 1000);
        let prepared = self
            .cas
            .prepare(&config.signing, &config.x509_trust(), now_ms)?;
        self.cas.commit(prepared, now_ms);
        Ok(())
    }

    /// Mints a certificate living `ttl` seconds from now.
    fn mint(&self, ttl: u64) -> MintedX509 {
        let workload: SpiffeId = "spiffe://example.org/ns/a/sa/api".parse().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let csr = VerifiedCsr::from_der(csr.der()).unwrap();
        self.cas
            .signer()
            .unwrap()
            .mint(MintX509Params {
                workload: &workload,
                destination: "https://db.example.org",
                purpose: "read",
                csr: &csr,
                ttl: Duration::from_secs(ttl),
                issued_ms: self.clock.unix_millis(),
            })
            .unwrap()
    }

    fn key_id(&self, i: usize) -> &str {
        &self.files.cas[i].key_id
    }

    /// Whether `/crl/<key id of CA i>` is served now.
    fn serves_crl_of(&self, i: usize) -> bool {
        let crl = self.cas.crl(
            Some(self.key_id(i)),
            self.clock.unix_seconds(),
            0,
            &Vec::new,
        );
        crl.map(Result::unwrap).is_some()
    }

    fn set(&self, at: i64) {
        self.clock.set(at);
    }
}

/// The key identifier (hex) of the issuer of a minted certificate.
fn issuer_key_id(minted: &MintedX509) -> String {
    let (_, leaf) = X509Certificate::from_der(&minted.chain[0]).unwrap();
    leaf.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| id::hex(k.0))
            }
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_new_active_ca_signs_at_once_after_a_reload() {
    let ring = Ring::start(2, &[0]);
    assert_eq!(issuer_key_id(&ring.mint(300)), ring.key_id(0));
    ring.reload(&[1, 0], &[0, 1]).unwrap();
    assert_eq!(issuer_key_id(&ring.mint(300)), ring.key_id(1));
    assert_eq!(ring.cas.key_ids(), [ring.key_id(1), ring.key_id(0)]);
}

#[test]
fn the_crl_without_a_key_id_is_the_active_cas() {
    let ring = Ring::start(2, &[0]);
    ring.reload(&[1], &[0, 1]).unwrap();
    let der = ring.cas.crl(None, START, 0, &Vec::new).unwrap().unwrap();
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    assert_eq!(crl.issuer().to_string(), "CN=Mint CA 1");
    assert!(
        ring.serves_crl_of(0),
        "the retired CA's CRL at /crl/<key id>"
    );
    assert!(ring.cas.crl(Some("00ff"), START, 0, &Vec::new).is_none());
}

#[test]
fn a_retired_ca_keeps_its_crl_until_its_last_certificate_expired_and_left_the_crl() {
    let ring = Ring::start(3, &[0]);
    ring.reload(&[1], &[0, 1, 2]).unwrap();
    ring.set(START + 10);
    let last = ring.mint(900);
    ring.reload(&[2], &[0, 1, 2]).unwrap();
    let leaves = last.expires_at + CRL_VALIDITY_SECS;
    ring.set(leaves);
    assert!(ring.serves_crl_of(1));
    ring.set(leaves + 1);
    assert!(!ring.serves_crl_of(1));
    assert!(ring.serves_crl_of(2));
}

#[test]
fn a_ca_present_at_start_is_assumed_to_have_certificates_for_the_longest_grant_ttl() {
    let ring = Ring::start(2, &[0]);
    ring.reload(&[1], &[0, 1]).unwrap();
    let leaves = START + max_grant_ttl_secs() + CRL_VALIDITY_SECS;
    ring.set(leaves);
    assert!(ring.serves_crl_of(0));
    ring.set(leaves + 1);
    assert!(!ring.serves_crl_of(0));
}

#[test]
fn a_reload_whose_active_ca_does_not_chain_to_the_bundle_is_refused_and_changes_nothing() {
    let ring = Ring::start(2, &[0]);
    let err = ring.reload(&[1, 0], &[0]).unwrap_err();
    assert!(
        matches!(&err, SigningError::SelfTest { key, domain, .. }
            if key == "signing.mint_cas[0]" && domain == "example.org"),
        "{err}"
    );
    assert_eq!(issuer_key_id(&ring.mint(300)), ring.key_id(0));
}

#[test]
fn a_reload_that_would_strand_live_certificates_is_refused_naming_the_ca() {
    let ring = Ring::start(2, &[0]);
    ring.reload(&[1], &[0, 1]).unwrap();
    // CA 0 (present at start) may have certificates until START + MAX_GRANT_TTL.
    let err = ring.reload(&[1], &[1]).unwrap_err().to_string();
    assert!(
        err.contains("Mint CA 0") && err.contains(ring.key_id(0)) && err.contains("example.org"),
        "{err}"
    );
    ring.set(START + max_grant_ttl_secs() + 1);
    ring.reload(&[1], &[1]).unwrap();
}

#[test]
fn the_issuer_of_a_certificate_is_the_ca_that_was_active_when_it_was_issued() {
    let ring = Ring::start(2, &[0]);
    ring.set(START + 100);
    ring.reload(&[1], &[0, 1]).unwrap();
    let name = |ms: i64| {
        let ca = ring.cas.issuer_at(ms).unwrap();
        let (_, cert) = X509Certificate::from_der(&ca.chain()[0]).unwrap();
        cert.subject().to_string()
    };
    assert_eq!(
        name((START - 3600) * 1000),
        "CN=Mint CA 0",
        "before the start"
    );
    assert_eq!(name((START + 99) * 1000), "CN=Mint CA 0");
    assert_eq!(name((START + 100) * 1000), "CN=Mint CA 1");
}

#[test]
fn a_listed_ca_outside_the_bundle_stops_start_up_naming_its_entry() {
    let files = Files::new(2);
    let config = files.config(&[0, 1], &[0], START);
    let clock: SharedClock = Arc::new(ManualClock::at(START));
    let err = MintCas::new(&config.signing, &config.x509_trust(), clock)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("signing.mint_cas[1]:"), "{err}");
}
