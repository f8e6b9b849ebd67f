//! Every error a request can meet is classified once: these tables pin each variant to its
//! class (hence its gRPC code and HTTP status) and its OAuth error code.

use axum::http::StatusCode;
use tessera_core::attest::{AttestError, JwtSvidError, OidcError, X509SvidError};
use tessera_core::csr::CsrError;
use tessera_core::domain::CredentialKind;
use tessera_core::mint::MintError;
use tessera_core::policy::{AccessError, PolicyError};
use tessera_core::request::RequestError;
use tessera_ledger::LedgerError;
use tonic::Code;

use super::{Class, OAuthCode, Refusal};
use crate::api::oauth::http_status;
use crate::api::status::code;
use crate::issuer::IssueError;
use crate::rate_limit::RateLimited;
use crate::revoker::RevokeError;
use crate::watchers::{Pool, WatchRefusal};

fn rate_limited() -> RateLimited {
    RateLimited {
        caller: "spiffe://example.org/w".into(),
        action: "revocations",
        per_second: 10,
        burst: 20,
        retry_after_secs: 3,
    }
}

fn policy(e: PolicyError) -> IssueError {
    IssueError::Policy(e)
}

fn date() -> time::Date {
    time::macros::date!(2027 - 01 - 01)
}

#[test]
fn every_issue_error_variant_has_its_class_and_oauth_code() {
    use Class::*;
    use OAuthCode::*;
    let keys_down = OidcError::KeysUnavailable {
        issuer: "https://ci.example".into(),
        reason: "connect refused".into(),
    };
    let who = || "spiffe://example.org/w".to_owned();
    let cases: Vec<(IssueError, Class, OAuthCode)> = vec![
        (
            AttestError::NoCredentials.into(),
            Unauthenticated,
            InvalidRequest,
        ),
        (
            AttestError::MalformedAuthorization.into(),
            Unauthenticated,
            InvalidRequest,
        ),
        (
            AttestError::JwtSvid(JwtSvidError::NotCompact).into(),
            Unauthenticated,
            InvalidRequest,
        ),
        (
            AttestError::X509Svid(X509SvidError::Malformed).into(),
            Unauthenticated,
            InvalidRequest,
        ),
        (
            AttestError::Oidc(OidcError::NotCompact).into(),
            Unauthenticated,
            InvalidRequest,
        ),
        (
            AttestError::Oidc(keys_down).into(),
            Unavailable,
            TemporarilyUnavailable,
        ),
        (
            policy(PolicyError::NoGrant { identity: who() }),
            Denied,
            InvalidTarget,
        ),
        (
            policy(PolicyError::Destination {
                identity: who(),
                destination: "d".into(),
            }),
            Denied,
            InvalidTarget,
        ),
        (
            policy(PolicyError::Purpose {
                identity: who(),
                destination: "d".into(),
                purpose: "p".into(),
            }),
            Denied,
            InvalidScope,
        ),
        (
            policy(PolicyError::Kind {
                identity: who(),
                destination: "d".into(),
                purpose: "p".into(),
                kind: CredentialKind::X509,
            }),
            Denied,
            InvalidTarget,
        ),
        (
            policy(PolicyError::GrantExpired {
                grant: "g".into(),
                owner: "team".into(),
                expires: date(),
            }),
            Denied,
            InvalidTarget,
        ),
        (MintError::Key("bad".into()).into(), Internal, ServerError),
        (MintError::Sign.into(), Internal, ServerError),
        (MintError::Random.into(), Internal, ServerError),
        (
            MintError::CaExpired(1).into(),
            Unavailable,
            TemporarilyUnavailable,
        ),
        (
            LedgerError::BadRequest("too long".into()).into(),
            Invalid,
            InvalidRequest,
        ),
        (LedgerError::Replay.into(), Unauthenticated, InvalidRequest),
        (
            LedgerError::Closed.into(),
            Unavailable,
            TemporarilyUnavailable,
        ),
        (
            LedgerError::Storage("disk".into()).into(),
            Unavailable,
            TemporarilyUnavailable,
        ),
        (
            LedgerError::Corrupt("bytes".into()).into(),
            Unavailable,
            TemporarilyUnavailable,
        ),
        (
            LedgerError::Duplicate("id".into()).into(),
            Internal,
            ServerError,
        ),
        (IssueError::NoMintCa, Internal, ServerError),
    ];
    for (error, class, oauth) in cases {
        let refusal = Refusal::from(&error);
        assert_eq!((refusal.class, refusal.oauth), (class, oauth), "{error}");
        assert!(!refusal.message.is_empty(), "{error}");
    }
}

#[test]
fn internal_causes_are_logged_but_never_told_to_the_caller() {
    let refusal = Refusal::from(&IssueError::Ledger(LedgerError::Storage(
        "/var/lib/tessera/ledger.redb: I/O error".into(),
    )));
    assert!(!refusal.message.contains("/var/lib"), "{refusal:?}");
    assert!(
        refusal
            .cause
            .as_deref()
            .is_some_and(|c| c.contains("/var/lib"))
    );
    let refusal = Refusal::from(&MintError::Key("PKCS#8 parse error at byte 7".into()));
    assert_eq!(refusal.message, "signing failed");
}

#[test]
fn revoke_access_request_csr_and_load_errors_have_their_class() {
    use Class::*;
    let cases: Vec<(Refusal, Class, OAuthCode)> = vec![
        (
            Refusal::from(&RevokeError::NotFound("x".into())),
            NotFound,
            OAuthCode::InvalidRequest,
        ),
        (
            Refusal::from(&RevokeError::Ledger(LedgerError::Closed)),
            Unavailable,
            OAuthCode::TemporarilyUnavailable,
        ),
        (
            Refusal::from(&RevokeError::Random(MintError::Random)),
            Internal,
            OAuthCode::ServerError,
        ),
        (
            Refusal::from(&AccessError::NotAdmin { caller: "x".into() }),
            Denied,
            OAuthCode::UnauthorizedClient,
        ),
        (
            Refusal::from(&AccessError::NotHolder),
            Denied,
            OAuthCode::UnauthorizedClient,
        ),
        (
            Refusal::from(&AccessError::CiToken { action: "x" }),
            Unauthenticated,
            OAuthCode::InvalidClient,
        ),
        (
            Refusal::from(&RequestError::Missing { field: "purpose" }),
            Invalid,
            OAuthCode::InvalidRequest,
        ),
        (
            Refusal::from(&CsrError::Empty),
            Invalid,
            OAuthCode::InvalidRequest,
        ),
        (
            Refusal::from(crate::limits::Overloaded::Requests),
            Overloaded,
            OAuthCode::TemporarilyUnavailable,
        ),
        (
            Refusal::from(&WatchRefusal::PoolFull {
                pool: Pool::Events,
                max: 1,
            }),
            Overloaded,
            OAuthCode::TemporarilyUnavailable,
        ),
        (
            Refusal::from(&WatchRefusal::IdentityFull {
                pool: Pool::Revocations,
                identity: "spiffe://example.org/w".into(),
                max: 1,
            }),
            Overloaded,
            OAuthCode::TemporarilyUnavailable,
        ),
        (
            Refusal::from(&WatchRefusal::ReplaysBusy { resume: 7 }),
            Overloaded,
            OAuthCode::TemporarilyUnavailable,
        ),
        (
            Refusal::from(&WatchRefusal::BeyondLast { since: 9, last: 7 }),
            OutOfRange,
            OAuthCode::InvalidRequest,
        ),
        (
            Refusal::from(&rate_limited()),
            RateLimited,
            OAuthCode::SlowDown,
        ),
    ];
    for (refusal, class, oauth) in cases {
        assert_eq!(
            (refusal.class, refusal.oauth),
            (class, oauth),
            "{refusal:?}"
        );
    }
}

#[test]
fn each_class_renders_to_one_grpc_code_and_one_http_status() {
    let table = [
        (
            Class::Invalid,
            Code::InvalidArgument,
            StatusCode::BAD_REQUEST,
            StatusCode::BAD_REQUEST,
        ),
        (
            Class::Unauthenticated,
            Code::Unauthenticated,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Class::Denied,
            Code::PermissionDenied,
            StatusCode::BAD_REQUEST,
            StatusCode::BAD_REQUEST,
        ),
        (
            Class::NotFound,
            Code::NotFound,
            StatusCode::BAD_REQUEST,
            StatusCode::BAD_REQUEST,
        ),
        (
            Class::OutOfRange,
            Code::OutOfRange,
            StatusCode::BAD_REQUEST,
            StatusCode::BAD_REQUEST,
        ),
        (
            Class::RateLimited,
            Code::ResourceExhausted,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
        ),
        (
            Class::Overloaded,
            Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            Class::Unavailable,
            Code::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            Class::Internal,
            Code::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];
    for (class, grpc, token_endpoint, client_auth_endpoint) in table {
        assert_eq!(code(class), grpc, "{class:?}");
        assert_eq!(http_status(class, false), token_endpoint, "{class:?}");
        assert_eq!(http_status(class, true), client_auth_endpoint, "{class:?}");
    }
}

#[test]
fn an_oauth_rendering_carries_the_code_the_description_and_retry_after_on_503() {
    use http_body_util::BodyExt;
    let metrics = crate::metrics::Metrics::new();
    let response = crate::api::oauth::render(Refusal::from(&LedgerError::Closed), &metrics, false);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = futures::executor::block_on(response.into_body().collect())
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "temporarily_unavailable");
    assert!(
        json["error_description"]
            .as_str()
            .unwrap()
            .contains("retry")
    );
    assert!(
        metrics
            .encode()
            .contains("tessera_refused_total{reason=\"unavailable\"} 1")
    );
}

#[test]
fn a_rate_limited_caller_gets_429_slow_down_with_its_retry_after_and_is_counted() {
    use http_body_util::BodyExt;
    let metrics = crate::metrics::Metrics::new();
    let response = crate::api::oauth::render(Refusal::from(&rate_limited()), &metrics, true);
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3");
    let body = futures::executor::block_on(response.into_body().collect())
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "slow_down");
    assert!(
        json["error_description"]
            .as_str()
            .unwrap()
            .contains("spiffe://example.org/w"),
        "{json}"
    );
    assert!(
        metrics
            .encode()
            .contains("tessera_refused_total{reason=\"rate_limited\"} 1")
    );
}

#[test]
fn shared_signals_errors_have_their_class_and_ssf_http_status() {
    use crate::ssf::error::SsfError;
    use crate::ssf::reply;
    use crate::ssf::stream::StreamError;
    let cases: Vec<(SsfError, Class, u16)> = vec![
        (StreamError::MissingStreamId.into(), Class::Invalid, 400),
        (SsfError::Disabled, Class::Invalid, 400),
        (SsfError::NotPolled, Class::Invalid, 400),
        (SsfError::UnknownStream("s".into()), Class::NotFound, 404),
        (SsfError::OwnerFull(10), Class::Overloaded, 429),
        (SsfError::Full(1000), Class::Overloaded, 429),
        (SsfError::TooSoon(10), Class::Overloaded, 429),
        (
            SsfError::Corrupt("s".into(), "eof".into()),
            Class::Internal,
            500,
        ),
        (
            LedgerError::Storage("down".into()).into(),
            Class::Unavailable,
            503,
        ),
        (MintError::Sign.into(), Class::Internal, 500),
    ];
    for (error, class, status) in cases {
        let refusal = Refusal::from(&error);
        assert_eq!(refusal.class, class, "{error}");
        assert_eq!(reply::http_status(class).as_u16(), status, "{error}");
    }
    assert_eq!(
        reply::http_status(Class::Unauthenticated),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(reply::http_status(Class::Denied), StatusCode::FORBIDDEN);
}

/// What a tracing subscriber wrote, shared with the test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_refusal_quoting_10_kb_of_the_callers_bytes_logs_a_short_marked_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let huge = "a".repeat(10 * 1024);
    let quoted = Refusal::new(
        Class::Unauthenticated,
        OAuthCode::InvalidRequest,
        format!("issuer `{huge}` is not a configured OIDC issuer"),
    );
    let with_cause = Refusal::from(&LedgerError::Storage(huge));
    tracing::subscriber::with_default(subscriber, || {
        let metrics = crate::metrics::Metrics::new();
        quoted.observe(&metrics);
        with_cause.observe(&metrics);
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        assert!(line.len() < 1024, "{} bytes: {line}", line.len());
        assert!(line.contains("…[truncated, "), "{line}");
    }
}
