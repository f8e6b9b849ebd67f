//! `tessera dev certs`: every key and certificate a development broker needs, and a config that
//! uses them. DEV ONLY — the keys are committed in `certs-dev/` and are public.

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

pub use crate::pki;
pub use crate::pki::{Certified, JwtSvidSigner, LeafSpec, PkiError};

/// The dev trust domain.
pub const TRUST_DOMAIN: &str = "example.org";
/// The sample workload's SPIFFE ID.
pub const WORKLOAD_ID: &str = "spiffe://example.org/ns/payments/sa/api";
/// The sample admin's SPIFFE ID.
pub const ADMIN_ID: &str = "spiffe://example.org/ops/admin";
/// `kid` of the dev JWT-SVID signing key in the bundle.
pub const JWT_SVID_KID: &str = "example-org-jwt-1";

/// All dev material, in memory.
#[derive(Debug)]
pub struct DevMaterial {
    pub tls_ca: Certified,
    pub server: Certified,
    pub spiffe_ca: Certified,
    pub mint_ca: Certified,
    pub workload: Certified,
    pub admin: Certified,
    pub jwt_svid_signer: JwtSvidSigner,
    pub jwt_signing_key_pem: String,
    pub ci_issuer_key_pem: String,
    pub not_after: OffsetDateTime,
}

impl DevMaterial {
    /// Generates fresh material valid from `now` (minus an hour) for ten years.
    pub fn generate(now: OffsetDateTime) -> Result<Self, PkiError> {
        let nb = now - Duration::hours(1);
        let na = now + Duration::days(3650);
        let tls_ca = pki::ca("Tessera dev TLS CA", None, None, nb, na)?;
        let mut server_spec = LeafSpec::svid("spiffe://example.org/tessera", nb, na);
        server_spec.uris.clear();
        server_spec.dns = vec!["localhost".into()];
        server_spec.ips = vec![
            std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
        ];
        server_spec
            .key_usages
            .push(rcgen::KeyUsagePurpose::KeyEncipherment);
        let server = pki::leaf(&server_spec, &tls_ca)?;
        let td = format!("spiffe://{TRUST_DOMAIN}");
        let spiffe_ca = pki::ca("example.org SPIFFE root CA", Some(&td), None, nb, na)?;
        let mint_ca = pki::ca("Tessera dev mint CA", Some(&td), Some(&spiffe_ca), nb, na)?;
        let workload = pki::leaf(&LeafSpec::svid(WORKLOAD_ID, nb, na), &spiffe_ca)?;
        let admin = pki::leaf(&LeafSpec::svid(ADMIN_ID, nb, na), &spiffe_ca)?;
        let jwt_svid_signer = JwtSvidSigner::generate(JWT_SVID_KID)?;
        let jwt_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let ci_key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
        Ok(DevMaterial {
            tls_ca,
            server,
            spiffe_ca,
            mint_ca,
            workload,
            admin,
            jwt_svid_signer,
            jwt_signing_key_pem: jwt_key.serialize_pem(),
            ci_issuer_key_pem: ci_key.serialize_pem(),
            not_after: na,
        })
    }

    /// Returns the SPIFFE JWKS bundle of the dev trust domain: the JWT-SVID key (`use: jwt-svid`)
    /// and the X.509 root (`use: x509-svid`, `x5c`).
    pub fn spiffe_jwks(&self) -> serde_json::Value {
        use base64::Engine;
        let x5c = base64::engine::general_purpose::STANDARD.encode(&self.spiffe_ca.cert_der);
        let mut x509 = serde_json::json!({"use": "x509-svid", "x5c": [x5c]});
        if let (Some(obj), Ok(jwk)) = (x509.as_object_mut(), jwk_of_cert(&self.spiffe_ca.cert_der))
        {
            obj.extend(jwk);
        }
        serde_json::json!({"keys": [self.jwt_svid_signer.bundle_jwk(), x509], "spiffe_sequence": 1})
    }

    /// Writes every file into `dir` (created if missing); `dir` as written is also the prefix
    /// of the paths in the generated `tessera.toml`. Fails on the first file that cannot be written.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let jwks =
            serde_json::to_string_pretty(&self.spiffe_jwks()).map_err(std::io::Error::other)?;
        let files: Vec<(&str, String)> = vec![
            ("README.md", readme()),
            ("tls-ca.pem", self.tls_ca.cert_pem.clone()),
            ("server.pem", self.server.cert_pem.clone()),
            ("server-key.pem", self.server.key_pem()),
            ("spiffe-bundle.pem", self.spiffe_ca.cert_pem.clone()),
            ("spiffe-ca-key.pem", self.spiffe_ca.key_pem()),
            ("spiffe-jwks.json", jwks),
            (
                "jwt-svid-key.pem",
                self.jwt_svid_signer.key_pem().to_owned(),
            ),
            ("workload.pem", self.workload.cert_pem.clone()),
            ("workload-key.pem", self.workload.key_pem()),
            ("admin.pem", self.admin.cert_pem.clone()),
            ("admin-key.pem", self.admin.key_pem()),
            ("jwt-signing-key.pem", self.jwt_signing_key_pem.clone()),
            ("mint-ca.pem", self.mint_ca.cert_pem.clone()),
            ("mint-ca-key.pem", self.mint_ca.key_pem()),
            ("ci-issuer-key.pem", self.ci_issuer_key_pem.clone()),
            (
                "tessera.toml",
                self.config_toml(
                    dir,
                    "127.0.0.1:8443",
                    "127.0.0.1:8444",
                    Path::new("tessera-data/ledger.redb"),
                ),
            ),
        ];
        let mut written = Vec::new();
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::write(&path, content)?;
            written.push(path);
        }
        Ok(written)
    }

    /// Returns a config using the files written by [`DevMaterial::write`] into `dir`.
    pub fn config_toml(
        &self,
        dir: &Path,
        grpc_addr: &str,
        http_addr: &str,
        ledger: &Path,
    ) -> String {
        let p = |name: &str| toml_str(&dir.join(name).to_string_lossy());
        let expires = self.not_after.date();
        format!(
            r#"# DEV ONLY: generated by `tessera dev certs`. Every key it names is public.
[server]
grpc_addr = "{grpc_addr}"
http_addr = "{http_addr}"
tls_cert = {server}
tls_key = {server_key}
issuer = "https://{http_addr}"
audience = "tessera"

[ledger]
path = {ledger}

[signing]
jwt_key = {jwt_key}
ca_cert = {mint_ca}
ca_key = {mint_ca_key}

[[trust_domain]]
name = "{TRUST_DOMAIN}"
x509_bundle = {bundle}
jwt_bundle = {jwks}

[admin]
spiffe_ids = ["{ADMIN_ID}"]

[[grant]]
name = "payments-api"
workload = "{WORKLOAD_ID}"
owner = "team-payments"
expires = "{expires}"
destinations = ["https://ledger.example.org", "https://audit.example.org"]
purposes = ["ledger:write", "ledger:read"]
credentials = ["jwt", "x509"]
default_ttl = "5m"
max_ttl = "15m"
[grant.match]
spiffe_id = "{WORKLOAD_ID}"
"#,
            server = p("server.pem"),
            server_key = p("server-key.pem"),
            ledger = toml_str(&ledger.to_string_lossy()),
            jwt_key = p("jwt-signing-key.pem"),
            mint_ca = p("mint-ca.pem"),
            mint_ca_key = p("mint-ca-key.pem"),
            bundle = p("spiffe-bundle.pem"),
            jwks = p("spiffe-jwks.json"),
        )
    }
}

/// Quotes `s` as a TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Returns the EC public JWK members (`kty`, `crv`, `x`, `y`) of a P-256 certificate.
/// Fails when `der` is not a certificate.
fn jwk_of_cert(
    der: &[u8],
) -> Result<
    serde_json::Map<String, serde_json::Value>,
    x509_parser::nom::Err<x509_parser::error::X509Error>,
> {
    use base64::Engine;
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)?;
    let point: &[u8] = &cert.public_key().subject_public_key.data;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut map = serde_json::Map::new();
    map.insert("kty".into(), "EC".into());
    map.insert("crv".into(), "P-256".into());
    map.insert("x".into(), b64(point.get(1..33).unwrap_or_default()).into());
    map.insert(
        "y".into(),
        b64(point.get(33..65).unwrap_or_default()).into(),
    );
    Ok(map)
}

fn readme() -> String {
    "# certs-dev — DEV ONLY\n\n\
     Every private key in this directory is committed and therefore public. Use this material only\n\
     for local development and tests; never trust it anywhere else.\n\n\
     Regenerate all of it with `cargo run -- dev certs` (or `tessera dev certs --out certs-dev`).\n\n\
     | file | what it is |\n|---|---|\n\
     | `tls-ca.pem` | CA of the broker's TLS server certificate (clients trust this) |\n\
     | `server.pem`, `server-key.pem` | TLS server certificate for 127.0.0.1, ::1 and localhost |\n\
     | `spiffe-bundle.pem`, `spiffe-ca-key.pem` | X.509 root CA of trust domain `example.org` |\n\
     | `spiffe-jwks.json` | SPIFFE bundle of `example.org`: JWT-SVID key and X.509 root |\n\
     | `jwt-svid-key.pem` | signs sample JWT-SVIDs (`kid` example-org-jwt-1) |\n\
     | `workload.pem`, `workload-key.pem` | X509-SVID of spiffe://example.org/ns/payments/sa/api |\n\
     | `admin.pem`, `admin-key.pem` | X509-SVID of spiffe://example.org/ops/admin |\n\
     | `jwt-signing-key.pem` | ES256 key that signs minted JWTs |\n\
     | `mint-ca.pem`, `mint-ca-key.pem` | CA (under the example.org root) that signs minted X.509-SVIDs |\n\
     | `ci-issuer-key.pem` | RS256 key of a dev CI OIDC issuer |\n\
     | `tessera.toml` | the config `tessera serve --dev` uses |\n"
        .to_owned()
}
