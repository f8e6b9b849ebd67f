//! Building blocks for development and test material: CAs, SVIDs, server certificates and
//! JWT-SVIDs, all made with rcgen and aws-lc-rs. DEV AND TEST ONLY: nothing here is used to serve.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// An error while making dev material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Other(String),
}

/// A certificate with its private key. `Debug` prints the certificate subject only.
pub struct Certified {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub key: KeyPair,
    params: CertificateParams,
}

impl fmt::Debug for Certified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certified")
            .field("key", &"...")
            .finish_non_exhaustive()
    }
}

impl Certified {
    /// Returns an rcgen issuer that signs with this certificate's key.
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Returns the private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// What an SVID or server certificate should look like; the defaults make a valid X509-SVID leaf.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    pub is_ca: bool,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A valid X509-SVID leaf for `uri`, valid from `not_before` to `not_after`.
    pub fn svid(uri: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        LeafSpec {
            uris: vec![uri.to_owned()],
            dns: Vec::new(),
            ips: Vec::new(),
            is_ca: false,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            not_before,
            not_after,
        }
    }
}

/// Returns a random positive 128-bit serial.
pub fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| PkiError::Other("random generator failed".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn base_params(
    cn: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn uri_san(uri: &str) -> Result<SanType, PkiError> {
    Ok(SanType::URI(uri.try_into().map_err(|_| {
        PkiError::Other(format!("bad URI SAN {uri}"))
    })?))
}

/// Makes a CA: self-signed when `parent` is `None`, else signed by it. `uri` is an optional
/// SPIFFE trust domain ID (`spiffe://example.org`) to put in the SAN.
pub fn ca(
    cn: &str,
    uri: Option<&str>,
    parent: Option<&Certified>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Certified, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = base_params(cn, not_before, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if let Some(uri) = uri {
        params.subject_alt_names = vec![uri_san(uri)?];
    }
    let cert = match parent {
        Some(parent) => params.signed_by(&key, &parent.issuer())?,
        None => params.self_signed(&key)?,
    };
    Ok(Certified {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key,
        params,
    })
}

/// Issues a leaf per `spec`, signed by `issuer`.
pub fn leaf(spec: &LeafSpec, issuer: &Certified) -> Result<Certified, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cn = spec
        .uris
        .first()
        .or(spec.dns.first())
        .cloned()
        .unwrap_or_else(|| "leaf".into());
    let mut params = base_params(&cn, spec.not_before, spec.not_after)?;
    params.is_ca = if spec.is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = spec.key_usages.clone();
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    for uri in &spec.uris {
        params.subject_alt_names.push(uri_san(uri)?);
    }
    for dns in &spec.dns {
        let name = dns
            .as_str()
            .try_into()
            .map_err(|_| PkiError::Other(format!("bad DNS SAN {dns}")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &spec.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let cert = params.signed_by(&key, &issuer.issuer())?;
    Ok(Certified {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key,
        params,
    })
}

/// A P-256 key that signs JWT-SVIDs, with its bundle `kid`.
pub struct JwtSvidSigner {
    key: EcdsaKeyPair,
    pkcs8_pem: String,
    pub kid: String,
}

impl fmt::Debug for JwtSvidSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvidSigner")
            .field("kid", &self.kid)
            .field("key", &"...")
            .finish()
    }
}

impl JwtSvidSigner {
    /// Generates a new signer with the given `kid`.
    pub fn generate(kid: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Self::from_pkcs8_pem(&key.serialize_pem(), kid)
    }

    /// Loads a signer from a PKCS#8 P-256 PEM key.
    pub fn from_pkcs8_pem(pem: &str, kid: &str) -> Result<Self, PkiError> {
        use rustls::pki_types::PrivatePkcs8KeyDer;
        use rustls::pki_types::pem::PemObject;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::Other(e.to_string()))?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der())
                .map_err(|_| PkiError::Other("not a P-256 PKCS#8 key".into()))?;
        Ok(JwtSvidSigner {
            key,
            pkcs8_pem: pem.to_owned(),
            kid: kid.to_owned(),
        })
    }

    /// Returns the private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.pkcs8_pem
    }

    /// Returns the public key as a SPIFFE bundle JWK (`use: jwt-svid`, `kid`).
    pub fn bundle_jwk(&self) -> serde_json::Value {
        let point = self.key.public_key().as_ref();
        let x = point.get(1..33).unwrap_or_default();
        let y = point.get(33..65).unwrap_or_default();
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "jwt-svid", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        })
    }

    /// Returns the public key as an ordinary ES256 signing JWK (`use: sig`), for JWKS that are
    /// not SPIFFE bundles (a fake OIDC issuer, an OAuth client).
    pub fn signing_jwk(&self) -> serde_json::Value {
        let mut jwk = self.bundle_jwk();
        jwk["use"] = "sig".into();
        jwk["alg"] = "ES256".into();
        jwk
    }

    /// Signs `claims` with header `{"alg":"ES256","kid":..,"typ":"JWT"}`.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, PkiError> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` under an arbitrary `header` (tests use this for malformed tokens).
    pub fn sign_with_header(
        &self,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> Result<String, PkiError> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| PkiError::Other("signing failed".into()))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }

    /// Signs a JWT-SVID for `sub` with audience `aud`, issued at `now`, valid for `ttl_secs`.
    pub fn svid(&self, sub: &str, aud: &str, now: i64, ttl_secs: i64) -> Result<String, PkiError> {
        self.sign(&serde_json::json!({"sub": sub, "aud": [aud], "iat": now, "exp": now + ttl_secs}))
    }
}

/// Returns `der` as a PEM block with `label` (e.g. `CERTIFICATE`).
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
