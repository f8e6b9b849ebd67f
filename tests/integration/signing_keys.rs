//! Signing keys and mint CAs as lists (`[signing] jwt_keys`, `mint_cas`): what loads and what
//! is refused; a real server started with two of each (both JWT keys in the JWKS, tokens signed
//! by the active one, a CRL served for each mint CA by its key identifier); and rotation by
//! reload on an injected clock, JWT keys and mint CAs.

use std::sync::Arc;

use serde_json::Value;
use tessera_core::clock::{Clock, ManualClock, SharedClock, SystemClock};
use tessera_core::domain::id;
use tessera_server::config::Config;
use tessera_testkit::dev::pki;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::common::{DEST, Env, Fixture, PURPOSE, https_get, mint, now, offset_now, post_form_as};

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

/// A server on `fx` whose clock only moves when the test says.
async fn start_on_manual_clock(fx: Fixture) -> (Env, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(now()));
    let env = Env::start_with_clock(fx, Arc::clone(&clock) as SharedClock).await;
    (env, clock)
}

/// Returns the kids the broker's JWKS publishes now.
async fn published(env: &Env) -> Vec<String> {
    let (status, _, body) = https_get(env, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_slice(&body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    keys.iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether introspection, by a relying party whose JWT-SVID is issued at the server's clock,
/// says `token` is active.
async fn introspects_active(env: &Env, clock: &ManualClock, token: &str) -> bool {
    let bearer = env
        .fx
        .material
        .jwt_svid_signer
        .svid(
            "spiffe://example.org/ns/ledger/sa/rp",
            "tessera",
            clock.unix_seconds(),
            120,
        )
        .unwrap();
    let reply = post_form_as(env, "/introspect", &[("token", token)], Some(&bearer)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["active"] == true
}

/// Mints a JWT for the dev workload living `ttl` seconds.
async fn mint_token(env: &Env, ttl: u32) -> (String, i64) {
    let reply = mint(&mut env.workload_client().await, DEST, PURPOSE, ttl, None)
        .await
        .unwrap();
    (reply.token, reply.expires_at)
}

/// Points `[signing]` at `keys` (path, active) and reloads; panics if the reload is refused.
async fn rotate_to(env: &Env, keys: &[(&std::path::Path, bool)]) {
    let list: Vec<String> = keys
        .iter()
        .map(|(path, active)| format!("{{ key = {}, active = {active} }}", quoted(path)))
        .collect();
    let ca = dev_ca(&env.fx);
    with_signing(&env.fx, &format!("jwt_keys = [{}]\n{ca}", list.join(", ")));
    let report = env.server.as_ref().unwrap().reload("test").await.unwrap();
    assert!(report.restart_required.is_empty(), "{report:?}");
}

#[tokio::test]
async fn keys_rotate_by_reload_without_an_unknown_kid_or_a_refused_token() {
    let fx = Fixture::new();
    let (a, b) = (fx.path("jwt-signing-key.pem"), second_jwt_key(&fx));
    let c = fx.path("jwt-signing-key-3.pem");
    let c_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&c, c_key.serialize_pem()).unwrap();
    let (mut env, clock) = start_on_manual_clock(fx).await;
    let t0 = clock.unix_seconds();
    let (old, old_exp) = mint_token(&env, 900).await;
    let kid_a = kid(&old);

    // B is published at once and signs after publish_before (10 min).
    rotate_to(&env, &[(&a, false), (&b, true)]).await;
    let kids = published(&env).await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert_eq!(kid(&mint_token(&env, 60).await.0), kid_a);
    clock.set(t0 + 599);
    assert_eq!(kid(&mint_token(&env, 60).await.0), kid_a);
    assert!(introspects_active(&env, &clock, &old).await);
    clock.set(t0 + 600);
    let (b_token, _) = mint_token(&env, 900).await;
    let kid_b = kid(&b_token);
    assert!(kids.contains(&kid_b) && kid_b != kid_a);
    assert!(introspects_active(&env, &clock, &old).await);

    // Both A and B removed, C active: B signs until C was published for 10 min.
    rotate_to(&env, &[(&c, true)]).await;
    clock.set(t0 + 1199);
    let (last_b, last_b_exp) = mint_token(&env, 900).await;
    assert_eq!(kid(&last_b), kid_b);
    clock.set(t0 + 1200);
    assert_ne!(kid(&mint_token(&env, 60).await.0), kid_b);
    clock.set(old_exp - 1);
    assert!(
        introspects_active(&env, &clock, &old).await,
        "A's token until it expires"
    );
    clock.set(last_b_exp - 1);
    assert!(
        introspects_active(&env, &clock, &last_b).await,
        "B's last token too"
    );

    // B leaves the JWKS once its last token expired (plus a minute of skew), not before.
    clock.set(last_b_exp + 60);
    assert!(published(&env).await.contains(&kid_b));
    clock.set(last_b_exp + 61);
    assert!(!published(&env).await.contains(&kid_b));
    // A was there at start: its tokens may live until start + MAX_GRANT_TTL (1 h).
    assert!(published(&env).await.contains(&kid_a));
    clock.set(t0 + 3600 + 61);
    assert_eq!(published(&env).await.len(), 1);
    env.shutdown().await;
}

/// Mints an X.509-SVID for the dev workload; returns the hex key id of the CA that signed it
/// (the leaf's AKI), or the refusal.
async fn x509_issuer(env: &Env) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let reply = env
        .workload_client()
        .await
        .mint_x509(tessera_proto::MintX509Request {
            csr: csr.der().to_vec(),
            destination: DEST.into(),
            purpose: PURPOSE.into(),
            ttl_seconds: 60,
        })
        .await
        .unwrap()
        .into_inner();
    let (_, leaf) = X509Certificate::from_der(&reply.cert_chain[0]).unwrap();
    leaf.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| id::hex(k.0))
            }
            _ => None,
        })
        .unwrap()
}

/// Points `[signing]` at the mint CAs `cas` (cert, key, active) and reloads.
async fn reload_cas(
    env: &Env,
    cas: &[(&std::path::Path, &std::path::Path, bool)],
) -> Result<(), String> {
    let list: Vec<String> = cas
        .iter()
        .map(|(cert, key, active)| {
            format!(
                "{{ cert = {}, key = {}, active = {active} }}",
                quoted(cert),
                quoted(key)
            )
        })
        .collect();
    let jwt = quoted(&env.fx.path("jwt-signing-key.pem"));
    with_signing(
        &env.fx,
        &format!("jwt_key = {jwt}\nmint_cas = [{}]", list.join(", ")),
    );
    let server = env.server.as_ref().unwrap();
    server
        .reload("test")
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn mint_cas_rotate_by_reload_and_a_ca_outside_the_bundle_is_refused() {
    let fx = Fixture::new();
    let (old_cert, old_key) = (fx.path("mint-ca.pem"), fx.path("mint-ca-key.pem"));
    let (new_cert, new_key) = second_mint_ca(&fx);
    let foreign = pki::ca(
        "foreign mint CA",
        Some("spiffe://example.org"),
        None,
        offset_now() - ::time::Duration::hours(1),
        offset_now() + ::time::Duration::days(1),
    )
    .unwrap();
    let (foreign_cert, foreign_key) = (fx.path("foreign.pem"), fx.path("foreign-key.pem"));
    std::fs::write(&foreign_cert, &foreign.cert_pem).unwrap();
    std::fs::write(&foreign_key, foreign.key_pem()).unwrap();
    let mut env = Env::start_fixture(fx).await;
    assert_eq!(x509_issuer(&env).await, key_id(&old_cert));

    reload_cas(
        &env,
        &[(&old_cert, &old_key, false), (&new_cert, &new_key, true)],
    )
    .await
    .unwrap();
    assert_eq!(x509_issuer(&env).await, key_id(&new_cert), "at once");

    // The old CA leaves the list; its certificates live on, so does its CRL.
    reload_cas(&env, &[(&new_cert, &new_key, true)])
        .await
        .unwrap();
    let old_crl = format!("/crl/{}", key_id(&old_cert));
    assert_eq!(https_get(&env, &old_crl).await.0, 200);

    let err = reload_cas(
        &env,
        &[
            (&new_cert, &new_key, false),
            (&foreign_cert, &foreign_key, true),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("signing.mint_cas[1]") && err.contains("example.org"),
        "{err}"
    );
    assert_eq!(
        x509_issuer(&env).await,
        key_id(&new_cert),
        "nothing changed"
    );
    env.shutdown().await;
}
