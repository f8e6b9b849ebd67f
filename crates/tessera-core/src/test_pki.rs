//! Test fixtures made in code: a CA, intermediates and leaves with chosen SANs, extensions and
//! validity (rcgen), and a mint CA with its signing key. Never committed files.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::keys::SecretKey;

/// The fixed "now" of every test, in unix seconds (2025-06-15T14:40:00Z).
pub(crate) const NOW: i64 = 1_750_000_000;
/// The trust domain the fixtures' workloads live in.
pub(crate) const TD: &str = "example.org";
/// A workload SPIFFE ID of [`TD`].
pub(crate) const WORKLOAD: &str = "spiffe://example.org/ns/prod/sa/payments";

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("test time in range")
}

/// A certificate authority: its DER certificate and the issuer (params + key) that signs with it.
pub(crate) struct Ca {
    pub cert: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn ca_params(name: &str, not_before: i64, not_after: i64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = at(not_before);
    params.not_after = at(not_after);
    params
}

impl Ca {
    /// A self-signed P-256 root valid from a day before [`NOW`] to a year after.
    pub fn root(name: &str) -> Ca {
        Ca::root_valid(name, NOW - 86_400, NOW + 365 * 86_400)
    }

    /// A self-signed P-256 root valid from `not_before` to `not_after`.
    pub fn root_valid(name: &str, not_before: i64, not_after: i64) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params = ca_params(name, not_before, not_after);
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca {
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA signed by this one, with the same validity as a root.
    pub fn intermediate(&self, name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = ca_params(name, NOW - 86_400, NOW + 365 * 86_400);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("intermediate");
        Ca {
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs a leaf built from `spec` with a fresh P-256 key.
    pub fn issue(&self, spec: &Leaf) -> CertificateDer<'static> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "workload");
        params.subject_alt_names = spec
            .uris
            .iter()
            .map(|u| SanType::URI(u.as_str().try_into().expect("ia5 uri")))
            .chain(
                spec.dns
                    .iter()
                    .map(|d| SanType::DnsName(d.as_str().try_into().expect("ia5 dns"))),
            )
            .collect();
        params.is_ca = spec.is_ca;
        params.key_usages = spec.key_usages.clone();
        params.extended_key_usages = spec.ekus.clone();
        params.not_before = at(spec.not_before);
        params.not_after = at(spec.not_after);
        params.use_authority_key_identifier_extension = true;
        params
            .signed_by(&key, &self.issuer)
            .expect("leaf")
            .der()
            .clone()
    }

    /// The CA's key as a [`SecretKey`] (PKCS#8), e.g. for a [`crate::mint::MintCa`].
    pub fn secret_key(&self) -> SecretKey {
        SecretKey::from_pkcs8_der(self.key_der.clone())
    }
}

/// What a leaf certificate holds. [`Leaf::svid`] is a valid X509-SVID; tests change one field.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub is_ca: IsCa,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    pub not_before: i64,
    pub not_after: i64,
}

impl Leaf {
    /// A valid X509-SVID for `id`: cA=false, digitalSignature, serverAuth + clientAuth, valid
    /// from a minute before [`NOW`] for an hour.
    pub fn svid(id: &str) -> Leaf {
        Leaf {
            uris: vec![id.to_owned()],
            dns: Vec::new(),
            is_ca: IsCa::ExplicitNoCa,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            ekus: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            not_before: NOW - 60,
            not_after: NOW + 3600,
        }
    }
}

/// A PKCS#10 CSR (DER) for a fresh key of `alg`, carrying SANs and a CA request that a
/// minter must ignore.
pub(crate) fn csr(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, KeyPair) {
    let key = KeyPair::generate_for(alg).expect("key");
    let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).expect("csr params");
    params.subject_alt_names.push(SanType::URI(
        "spiffe://evil.example/admin".try_into().expect("uri"),
    ));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let der = params.serialize_request(&key).expect("csr").der().to_vec();
    (der, key)
}
