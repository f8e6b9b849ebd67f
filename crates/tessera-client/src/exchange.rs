//! RFC 8693 token exchange against `<broker>/token`: a CI job or pod trades its OIDC ID token
//! for a credential of one destination and purpose, and keeps no secret.

use rustls::pki_types::CertificateDer;
use tessera_core::exchange::{GRANT_TYPE, ID_TOKEN};
use tessera_core::http_client::{HttpError, HttpsClient};

/// Why an exchange did not yield a token.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url} answered HTTP {status} without a JSON body")]
    NotJson { url: String, status: u16 },
    #[error("exchange refused: {error} ({description})")]
    Refused { error: String, description: String },
}

/// Parameters of [`exchange`].
#[derive(Debug, Clone, Copy)]
pub struct ExchangeParams<'a> {
    /// The broker's HTTPS base URL, e.g. `https://tessera.example.org:8444`.
    pub server: &'a str,
    /// Extra roots to trust for the broker's certificate (the Mozilla roots are always trusted).
    pub roots: &'a [CertificateDer<'static>],
    /// The OIDC ID token (or JWT-SVID) to exchange.
    pub subject_token: &'a str,
    pub destination: &'a str,
    pub purpose: &'a str,
}

/// The credential an exchange returned.
#[derive(Clone, PartialEq, Eq)]
pub struct Exchanged {
    pub access_token: String,
    pub expires_in: i64,
}

impl std::fmt::Debug for Exchanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanged")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Posts the exchange and returns the access token. Fails when the broker cannot be reached,
/// answers something that is not OAuth JSON, or refuses (with its `error` and description).
pub async fn exchange(p: ExchangeParams<'_>) -> Result<Exchanged, ExchangeError> {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", GRANT_TYPE)
        .append_pair("subject_token", p.subject_token.trim())
        .append_pair("subject_token_type", ID_TOKEN)
        .append_pair("audience", p.destination)
        .append_pair("scope", p.purpose)
        .finish();
    let url = format!("{}/token", p.server.trim_end_matches('/'));
    let response = HttpsClient::new(p.roots)?.post_form(&url, form).await?;
    let body: serde_json::Value =
        serde_json::from_slice(&response.body).map_err(|_| ExchangeError::NotJson {
            url: url.clone(),
            status: response.status,
        })?;
    let text = |name: &str| body.get(name).and_then(|v| v.as_str());
    match text("access_token") {
        Some(token) if response.status == 200 => Ok(Exchanged {
            access_token: token.to_owned(),
            expires_in: body
                .get("expires_in")
                .and_then(|v| v.as_i64())
                .unwrap_or_default(),
        }),
        _ => Err(ExchangeError::Refused {
            error: text("error").unwrap_or("unknown error").to_owned(),
            description: text("error_description")
                .unwrap_or("no description")
                .to_owned(),
        }),
    }
}
