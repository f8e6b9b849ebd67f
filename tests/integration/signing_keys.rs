//! Signing keys and mint CAs as lists (`[signing] jwt_keys`, `mint_cas`): what loads and what
//! is refused, and a real server started with two of each: both JWT keys in the JWKS, tokens
//! signed by the active one, and a CRL served for each mint CA by its key identifier.

use serde_json::Value;
use tessera_core::clock::SystemClock;
use tessera_core::domain::id;
use tessera_server::config::Config;
use tessera_testkit::dev::pki;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::common::{DEST, Env, Fixture, PURPOSE, https_get, mint, offset_now};

/// Replaces the body of the `[signing]` section of the fixture's config with `signing`.
fn with_signing(fx: &Fixture, signing: &str) {
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let start = text.find("[signing]\n").unwrap() + "[signing]\n".len();
    let end = start + text[start..].find("\n\n").unwrap();
    let text = format!("{}{signing}{}", &text[..start], &text[end..]);
    std::fs::write(&fx.config_path, text).unwrap();
}

/// Returns the `ca_cert` and `ca_key` lines of the fixture's mint CA.
fn dev_ca(fx: &Fixture) -> String {
    format!(
        "ca_cert = {}\nca_key = {}",
        quoted(&fx.path("mint-ca.pem")),
        quoted(&fx.path("mint-ca-key.pem"))
    )
}

/// Returns `path` as a TOML basic string (Rust's escapes of a path are TOML's).
fn quoted(path: &std::path::Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Writes a second JWT key (Ed25519) beside the fixture's; returns its path.
fn second_jwt_key(fx: &Fixture) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let path = fx.path("jwt-signing-key-2.pem");
    std::fs::write(&path, key.serialize_pem()).unwrap();
    path
}

/// Writes a second mint CA under the fixture's trust domain root; returns (cert, key) paths.
fn second_mint_ca(fx: &Fixture) -> (std::path::PathBuf, std::path::PathBuf) {
    let ca = pki::ca(
        "Tessera second mint CA",
        Some("spiffe://example.org"),
        Some(&fx.material.spiffe_ca),
        offset_now() - ::time::Duration::hours(1),
        offset_now() + ::time::Duration::days(30),
    )
    .unwrap();
    let (cert, key) = (fx.path("mint-ca-2.pem"), fx.path("mint-ca-2-key.pem"));
    std::fs::write(&cert, &ca.cert_pem).unwrap();
    std::fs::write(&key, ca.key_pem()).unwrap();
    (cert, key)
}

/// Returns the lowercase hex subject key identifier of the PEM certificate at `path`.
fn key_id(path: &std::path::Path) -> String {
    let pem = std::fs::read(path).unwrap();
    let der = tessera_core::keys::certificates_from_pem(&pem, path).unwrap();
    let (_, cert) = X509Certificate::from_der(&der[0]).unwrap();
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(id::hex(ski.0)),
            _ => None,
        })
        .unwrap()
}

/// Loads the fixture's config after `signing` replaced its keys; returns the error message.
fn refused(signing: &str) -> String {
    let fx = Fixture::new();
    with_signing(&fx, signing);
    Config::load(&fx.config_path, &SystemClock)
        .expect_err("config should be refused")
        .to_string()
}

/// The `kid` in the header of a compact JWS.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[test]
fn jwt_key_and_jwt_keys_together_are_refused_naming_the_key() {
    let m = refused("jwt_key = \"a.pem\"\njwt_keys = [{ key = \"b.pem\", active = true }]");
    assert!(
        m.contains("signing.jwt_keys") && m.contains("not both"),
        "{m}"
    );
}

#[test]
fn a_key_list_needs_exactly_one_active_key() {
    let fx = Fixture::new();
    let key = quoted(&fx.path("jwt-signing-key.pem"));
    let other = quoted(&second_jwt_key(&fx));
    for (list, needle) in [
        (
            format!("[{{ key = {key} }}, {{ key = {other} }}]"),
            "none is",
        ),
        (
            format!("[{{ key = {key}, active = true }}, {{ key = {other}, active = true }}]"),
            "not 2",
        ),
        ("[]".to_owned(), "at least one"),
        (
            format!("[{{ key = {key}, active = true }}, {{ key = {key} }}]"),
            "signing.jwt_keys[1]",
        ),
    ] {
        with_signing(&fx, &format!("jwt_keys = {list}\n{}", dev_ca(&fx)));
        let m = Config::load(&fx.config_path, &SystemClock)
            .expect_err("refused")
            .to_string();
        assert!(m.contains("signing.jwt_keys") && m.contains(needle), "{m}");
    }
}

#[test]
fn an_entry_with_an_unknown_member_is_refused() {
    let m = refused("jwt_keys = [{ key = \"a.pem\", activ = true }]");
    assert!(m.contains("unknown field `activ`"), "{m}");
}

#[test]
fn mint_cas_beside_ca_cert_are_refused_naming_the_key() {
    let fx = Fixture::new();
    let key = quoted(&fx.path("jwt-signing-key.pem"));
    with_signing(
        &fx,
        &format!(
            "jwt_key = {key}\n{}\nmint_cas = [{{ cert = \"c.pem\", key = \"k.pem\", active = true }}]",
            dev_ca(&fx)
        ),
    );
    let m = Config::load(&fx.config_path, &SystemClock)
        .expect_err("refused")
        .to_string();
    assert!(
        m.contains("signing.mint_cas") && m.contains("not both"),
        "{m}"
    );
}

#[test]
fn a_publish_before_that_is_not_a_duration_is_refused_and_a_short_one_warns() {
    let fx = Fixture::new();
    let key = quoted(&fx.path("jwt-signing-key.pem"));
    let ca = dev_ca(&fx);
    with_signing(
        &fx,
        &format!("jwt_key = {key}\npublish_before = \"soon\"\n{ca}"),
    );
    let m = Config::load(&fx.config_path, &SystemClock)
        .expect_err("refused")
        .to_string();
    assert!(m.contains("signing.publish_before"), "{m}");
    with_signing(
        &fx,
        &format!("jwt_key = {key}\npublish_before = \"1m\"\n{ca}"),
    );
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert_eq!(config.signing.publish_before.as_secs(), 60);
    assert!(
        config.warnings.iter().any(|w| w.contains("publish_before")),
        "{:?}",
        config.warnings
    );
}

#[tokio::test]
async fn a_server_with_two_jwt_keys_publishes_both_and_signs_with_the_active_one() {
    let fx = Fixture::new();
    let old = quoted(&fx.path("jwt-signing-key.pem"));
    let new = quoted(&second_jwt_key(&fx));
    let ca = dev_ca(&fx);
    with_signing(
        &fx,
        &format!("jwt_keys = [{{ key = {old} }}, {{ key = {new}, active = true }}]\n{ca}"),
    );
    let mut env = Env::start_fixture(fx).await;
    let (status, _, body) = https_get(&env, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_slice(&body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{jwks}");
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, ["EdDSA", "ES256"], "the signing key first");
    let reply = mint(&mut env.workload_client().await, DEST, PURPOSE, 60, None)
        .await
        .unwrap();
    assert_eq!(kid(&reply.token), keys[0]["kid"].as_str().unwrap());
    let (_, _, body) = https_get(&env, "/.well-known/openid-configuration").await;
    let discovery: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["EdDSA", "ES256"])
    );
    assert!(crate::revocation::active(&env, &reply.token).await);
    env.shutdown().await;
}

#[tokio::test]
async fn each_mint_ca_serves_its_crl_by_key_identifier() {
    let fx = Fixture::new();
    let jwt = quoted(&fx.path("jwt-signing-key.pem"));
    let (first_cert, first_key) = (fx.path("mint-ca.pem"), fx.path("mint-ca-key.pem"));
    let (second_cert, second_key) = second_mint_ca(&fx);
    with_signing(
        &fx,
        &format!(
            "jwt_key = {jwt}\nmint_cas = [\n  {{ cert = {}, key = {} }},\n  \
             {{ cert = {}, key = {}, active = true }},\n]",
            quoted(&first_cert),
            quoted(&first_key),
            quoted(&second_cert),
            quoted(&second_key),
        ),
    );
    let mut env = Env::start_fixture(fx).await;
    for cert in [&first_cert, &second_cert] {
        let (status, content_type, body) = https_get(&env, &format!("/crl/{}", key_id(cert))).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/pkix-crl")
        );
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&body).unwrap();
        let pem = std::fs::read(cert).unwrap();
        let der = tessera_core::keys::certificates_from_pem(&pem, cert).unwrap();
        let (_, ca) = X509Certificate::from_der(&der[0]).unwrap();
        assert_eq!(crl.issuer(), ca.subject());
        crl.verify_signature(ca.public_key()).unwrap();
    }
    let (_, _, active) = https_get(&env, "/crl").await;
    let (_, crl) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&active).unwrap();
    assert_eq!(crl.issuer().to_string(), "CN=Tessera second mint CA");
    assert_eq!(https_get(&env, "/crl/00ff").await.0, 404);
    env.shutdown().await;
}
