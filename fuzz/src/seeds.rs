//! The seed corpus, built from the fixtures the tests use (`tessera-testkit`): valid inputs of
//! every target and the malformed ones the tests refuse, so the fuzzer starts past the parsers'
//! front doors. `seed_corpus` writes them under `corpus/<target>/`.

use prost::Message;
use serde_json::{Value, json};
use tessera_proto as proto;
use tessera_testkit::fixtures::{self, CI_AUDIENCE};
use tessera_testkit::pki::{self, JwtSvidSigner, LeafSpec};
use time::OffsetDateTime;

use crate::{AUDIENCE, KID, NOW, TRUST_DOMAIN, encode_chain, forged, signed};

/// The CI issuers `ci_token` trusts: GitHub, GitLab and Kubernetes profiles, in that order, on
/// closed local ports (a key refresh fails at once).
pub const CI_ISSUERS: [&str; 3] = [
    "https://127.0.0.1:9/github",
    "https://127.0.0.1:9/gitlab",
    "https://127.0.0.1:9/k8s",
];

/// Returns every target's seeds as (target, input) pairs.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, inputs: Vec<Vec<u8>>| {
        out.extend(inputs.into_iter().map(|i| (target, i)));
    };
    add("jwt_svid", jwt_svid());
    add("ci_token", ci_token());
    add("introspect", introspect());
    add("token_form", token_form());
    add("csr", csrs());
    add("x509_svid", x509_chains());
    add("names", names());
    add("proto_requests", proto_requests());
    add("config_toml", configs());
    out
}

fn es256() -> Value {
    json!({"alg": "ES256", "kid": KID, "typ": "JWT"})
}

fn jwt_svid() -> Vec<Vec<u8>> {
    let sub = format!("spiffe://{TRUST_DOMAIN}/ns/payments/sa/api");
    let good = json!({"sub": sub, "aud": [AUDIENCE], "iat": NOW, "exp": NOW + 300});
    let mut out = vec![
        signed(&es256(), &good),
        signed(
            &es256(),
            &json!({"sub": sub, "aud": AUDIENCE, "exp": NOW + 300}),
        ),
        signed(
            &es256(),
            &json!({"sub": sub, "aud": [AUDIENCE], "exp": 1e18}),
        ),
        signed(
            &es256(),
            &json!({"sub": "spiffe://other.example/w", "aud": [AUDIENCE], "exp": NOW + 60}),
        ),
        signed(&json!({"alg": "RS256", "kid": KID}), &good),
        signed(&json!({"alg": "none"}), &good),
        signed(
            &json!({"alg": "ES256", "kid": KID, "typ": "JOSE", "crit": ["x"]}),
            &good,
        ),
        forged("a.b.c"),
        forged("eyJhbGciOiJub25lIn0.e30."),
    ];
    if let Ok(other) = JwtSvidSigner::generate(KID).and_then(|s| s.svid(&sub, AUDIENCE, NOW, 300)) {
        out.push(forged(&other));
    }
    out
}

fn ci_token() -> Vec<Vec<u8>> {
    let [github, gitlab, k8s] = CI_ISSUERS;
    let rs = json!({"alg": "RS256", "kid": KID, "typ": "JWT"});
    vec![
        signed(&es256(), &fixtures::github_claims(github, NOW, "jti-1")),
        signed(&rs, &fixtures::github_claims(github, NOW, "jti-2")),
        signed(
            &es256(),
            &json!({
                "iss": gitlab, "aud": CI_AUDIENCE, "iat": NOW, "exp": NOW + 300,
                "sub": "project_path:group/project:ref_type:branch:ref:main",
                "project_path": "group/project", "pipeline_id": 1234, "namespace_path": "group",
            }),
        ),
        signed(
            &es256(),
            &json!({
                "iss": k8s, "aud": [CI_AUDIENCE], "iat": NOW, "exp": NOW + 600,
                "sub": "system:serviceaccount:payments:deployer",
                "kubernetes.io": {
                    "namespace": "payments",
                    "serviceaccount": {"name": "deployer", "uid": "sa-uid"},
                    "pod": {"name": "deployer-7f9", "uid": "pod-uid"},
                },
            }),
        ),
        signed(
            &es256(),
            &json!({"iss": "kubernetes/serviceaccount", "sub": "x", "aud": "y"}),
        ),
        forged("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovLzEyNy4wLjAuMTo5L2dpdGh1YiJ9.AAAA"),
    ]
}

fn introspect() -> Vec<Vec<u8>> {
    let claims = json!({
        "iss": "https://tessera.fuzz.example", "sub": format!("spiffe://{TRUST_DOMAIN}/w"),
        "aud": "https://api.example", "scope": "read", "iat": NOW, "exp": NOW + 300,
        "jti": "AAGUuDNSAAAAAAAAAAAAAAAAAAAAAA", "client_id": "tessera",
    });
    vec![
        signed(&es256(), &claims),
        signed(&es256(), &json!({"exp": NOW - 1})),
        forged("token=a.b.c"),
        forged("token=&token=x"),
        forged("token_type_hint=access_token&token=eyJhbGciOiJFUzI1NiJ9.e30.AA"),
    ]
}

fn token_form() -> Vec<Vec<u8>> {
    let base = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
        &subject_token=eyJhbGciOiJFUzI1NiJ9.e30.AA\
        &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token";
    [
        format!("{base}&audience=https%3A%2F%2Fapi.example&scope=deploy"),
        format!("{base}&resource=https%3A%2F%2Fapi.example&audience=https%3A%2F%2Fapi.example"),
        format!("{base}&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"),
        format!("{base}&actor_token=x&actor_token_type=y"),
        format!("{base}&scope=a+b"),
        "grant_type=password&username=u".to_owned(),
        String::new(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn csrs() -> Vec<Vec<u8>> {
    let algs = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_RSA_SHA256,
    ];
    algs.into_iter()
        .filter_map(|alg| {
            let key = rcgen::KeyPair::generate_for(alg).ok()?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
            let uri = format!("spiffe://{TRUST_DOMAIN}/w").try_into().ok()?;
            params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
            Some(params.serialize_request(&key).ok()?.der().to_vec())
        })
        .collect()
}

fn x509_chains() -> Vec<Vec<u8>> {
    let Ok(now) = OffsetDateTime::from_unix_timestamp(NOW) else {
        return Vec::new();
    };
    let day = time::Duration::days(1);
    let uri = format!("spiffe://{TRUST_DOMAIN}");
    let Ok(ca) = pki::ca("fuzz CA", Some(&uri), None, now - day, now + day) else {
        return Vec::new();
    };
    let Ok(mid) = pki::ca(
        "fuzz intermediate",
        Some(&uri),
        Some(&ca),
        now - day,
        now + day,
    ) else {
        return Vec::new();
    };
    let svid = LeafSpec::svid(&format!("{uri}/w"), now - day, now + day);
    let mut two = svid.clone();
    two.uris.push(format!("{uri}/other"));
    let leaves: Vec<_> = [svid.clone(), two]
        .iter()
        .filter_map(|spec| pki::leaf(spec, &mid).ok())
        .collect();
    let mut out: Vec<Vec<u8>> = leaves
        .iter()
        .map(|leaf| encode_chain(&[&leaf.cert_der, &mid.cert_der]))
        .collect();
    out.push(encode_chain(&[&ca.cert_der]));
    out
}

fn names() -> Vec<Vec<u8>> {
    [
        "spiffe://example.org/ns/payments/sa/api",
        "spiffe://example.org",
        "spiffe://EXAMPLE.org/a/../b",
        "reports-cron",
        "reports-cron/destination=https://api.example",
        "reports-cron/kind=x509",
        "jwt",
        "https://api.example\nread\n300",
        "Bearer abc.def.ghi",
        "30d",
        "1h30m",
        "64KiB",
    ]
    .into_iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn tagged(tag: u8, message: &impl Message) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(message.encode_to_vec());
    out
}

fn proto_requests() -> Vec<Vec<u8>> {
    use proto::revoke_request::Selector;
    let csr = csrs().into_iter().next().unwrap_or_default();
    let revoke = |selector: Selector| proto::RevokeRequest {
        selector: Some(selector),
        reason: "compromised".into(),
    };
    vec![
        tagged(
            0,
            &proto::MintJwtRequest {
                destination: "https://api.example".into(),
                purpose: "read".into(),
                ttl_seconds: 300,
            },
        ),
        tagged(
            1,
            &proto::MintX509Request {
                csr,
                destination: "spiffe://example.org/db".into(),
                purpose: "connect".into(),
                ttl_seconds: 600,
            },
        ),
        tagged(
            2,
            &revoke(Selector::Workload("spiffe://example.org/w".into())),
        ),
        tagged(
            2,
            &revoke(Selector::Grant("reports-cron/purpose=read".into())),
        ),
        tagged(
            3,
            &proto::ListCredentialsRequest {
                kind: "jwt".into(),
                status: "live".into(),
                page_size: 100,
                grant: "reports-cron".into(),
                ..Default::default()
            },
        ),
        tagged(4, &proto::WatchRevocationsRequest { since_sequence: 7 }),
        tagged(
            5,
            &proto::AcknowledgeRevocationsRequest {
                revocation_ids: vec!["r-1".into(), "r-2".into()],
            },
        ),
        tagged(
            6,
            &proto::GetRevocationRequest {
                revocation_id: "r-1".into(),
            },
        ),
    ]
}

fn configs() -> Vec<Vec<u8>> {
    let mut out = vec![
        include_str!("../../certs-dev/tessera.toml")
            .as_bytes()
            .to_vec(),
        include_str!("../../tessera.example.toml")
            .as_bytes()
            .to_vec(),
    ];
    let ca = std::path::Path::new("ca.pem");
    let dev = include_str!("../../certs-dev/tessera.toml");
    out.push(format!("{dev}\n{}", fixtures::ci_broker_config(CI_ISSUERS[0], ca)).into_bytes());
    out
}
