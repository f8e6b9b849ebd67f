//! What the fuzz targets share: the fixed time they verify at, a one-thread runtime, the framing
//! of their inputs, and the fixtures they verify against (keys and CAs made here, from code).
//!
//! A token input is one mode byte and text. An even mode byte makes the text the token itself
//! (a forger's bytes: no such token may ever be accepted). An odd one makes the text a JSON
//! header, a newline and JSON claims, which the target signs with its own trusted key, so the
//! checks after the signature (claims, lifetimes, platform profiles) are fuzzed too.

pub mod seeds;

use std::future::Future;
use std::sync::OnceLock;

use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tessera_testkit::pki::JwtSvidSigner;

/// The unix time every target verifies at (2027-01-15).
pub const NOW: i64 = 1_800_000_000;
/// The `kid` of the trusted signer.
pub const KID: &str = "fuzz";
/// The trust domain whose bundle the targets trust.
pub const TRUST_DOMAIN: &str = "fuzz.example";
/// The audience JWT-SVIDs and CI tokens must name.
pub const AUDIENCE: &str = "tessera";

/// A fuzzed token: the text as a forger sent it, or a header and claims the target signs.
#[derive(Debug)]
pub enum TokenInput {
    Forged(String),
    Signed { header: Value, claims: Value },
}

/// Splits a token input; returns `None` for bytes that are not one (not UTF-8, no newline or no
/// JSON in signed mode), which the targets skip.
pub fn token_input(data: &[u8]) -> Option<TokenInput> {
    let (mode, rest) = data.split_first()?;
    let text = std::str::from_utf8(rest).ok()?;
    if mode % 2 == 0 {
        return Some(TokenInput::Forged(text.to_owned()));
    }
    let (header, claims) = text.split_once('\n')?;
    Some(TokenInput::Signed {
        header: serde_json::from_str(header).ok()?,
        claims: serde_json::from_str(claims).ok()?,
    })
}

/// Encodes a forged token input (for the seed corpus).
pub fn forged(token: &str) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(token.as_bytes());
    out
}

/// Encodes a signed token input (for the seed corpus).
pub fn signed(header: &Value, claims: &Value) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(format!("{header}\n{claims}").as_bytes());
    out
}

/// The trusted P-256 signer (`kid` [`KID`]), made once per process.
pub fn signer() -> &'static JwtSvidSigner {
    static SIGNER: OnceLock<JwtSvidSigner> = OnceLock::new();
    SIGNER.get_or_init(|| JwtSvidSigner::generate(KID).expect("P-256 key"))
}

/// Returns the token a [`TokenInput`] stands for: forged text as is, or signed by [`signer`].
pub fn token(input: &TokenInput) -> Option<String> {
    match input {
        TokenInput::Forged(text) => Some(text.clone()),
        TokenInput::Signed { header, claims } => signer().sign_with_header(header, claims).ok(),
    }
}

/// Runs `future` to completion on this thread's runtime (timers and sockets enabled).
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
    }
    RUNTIME.with(|rt| rt.block_on(future))
}

/// Splits a chain input: certificates, each a big-endian `u16` length and that many bytes; a
/// short tail is one more certificate.
pub fn chain(mut data: &[u8]) -> Vec<CertificateDer<'static>> {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        let (cert, tail) = rest.split_at(len);
        out.push(CertificateDer::from(cert.to_vec()));
        data = tail;
    }
    if !data.is_empty() {
        out.push(CertificateDer::from(data.to_vec()));
    }
    out
}

/// Encodes a chain input (for the seed corpus).
pub fn encode_chain(certs: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for cert in certs {
        let len = u16::try_from(cert.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(cert);
    }
    out
}
