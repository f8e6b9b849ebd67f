//! A stream's configuration (SSF 1.0 §8.1.1): what the receiver supplies (delivery, events
//! requested, description) parsed and checked once into a [`StreamConfig`], what the transmitter
//! supplies (iss, aud, events supported and delivered, the poll URL) derived from it, and the
//! create (POST), update (PATCH) and replace (PUT) rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The push delivery method (RFC 8935).
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// The poll delivery method (RFC 8936).
pub const POLL: &str = "urn:ietf:rfc:8936";
/// Longest `endpoint_url`, `description` and `authorization_header` accepted.
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 1024;
const MAX_HEADER: usize = 4096;
/// Most `events_requested` entries, and the longest one.
const MAX_EVENTS: usize = 64;
const MAX_EVENT_URI: usize = 512;

/// Why a stream request is refused (each is HTTP 400: the receiver can fix it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the body is not a stream configuration: {0}")]
    Json(String),
    #[error("`stream_id` is required")]
    MissingStreamId,
    #[error("delivery method `{0}` is not supported: use `{PUSH}` (push) or `{POLL}` (poll)")]
    Method(String),
    #[error("`delivery.endpoint_url` is required for push delivery")]
    MissingEndpointUrl,
    #[error("`delivery.endpoint_url` {0}")]
    EndpointUrl(&'static str),
    #[error("`delivery.authorization_header` must be 1 to {MAX_HEADER} visible ASCII characters")]
    AuthorizationHeader,
    #[error(
        "`events_requested` names no event this transmitter supports: {}",
        supported_list()
    )]
    NoSupportedEvent,
    #[error("`{field}` is longer than {max}")]
    TooLong { field: &'static str, max: usize },
    #[error("`{0}` is supplied by the transmitter and does not match its value")]
    Mismatch(&'static str),
    #[error("`status` must be `enabled`, `paused` or `disabled`")]
    Status,
}

fn supported_list() -> String {
    EventType::SUPPORTED.map(EventType::uri).join(", ")
}

/// The event types this transmitter knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// CAEP credential-change: one credential was revoked.
    CredentialChange,
    /// CAEP session-revoked: every credential a selector matches was revoked.
    SessionRevoked,
    /// SSF verification: sent when the receiver asks (always allowed).
    Verification,
}

impl EventType {
    /// The event types a receiver can request (verification is always delivered).
    pub const SUPPORTED: [EventType; 2] = [EventType::CredentialChange, EventType::SessionRevoked];

    /// The event type URI.
    pub fn uri(self) -> &'static str {
        match self {
            EventType::CredentialChange => {
                "https://schemas.openid.net/secevent/caep/event-type/credential-change"
            }
            EventType::SessionRevoked => {
                "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
            }
            EventType::Verification => {
                "https://schemas.openid.net/secevent/ssf/event-type/verification"
            }
        }
    }

    /// Returns the requestable event type with this URI, if any.
    fn requestable(uri: &str) -> Option<EventType> {
        EventType::SUPPORTED.into_iter().find(|e| e.uri() == uri)
    }
}

/// An `https` URL with a host and no fragment or user info, at most 2048 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// Returns the URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EndpointUrl {
    type Err = StreamError;

    /// Parses a push endpoint; fails saying what is wrong with it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_URL {
            return Err(StreamError::EndpointUrl("is longer than 2048 bytes"));
        }
        let uri: axum::http::Uri = s
            .parse()
            .map_err(|_| StreamError::EndpointUrl("is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(StreamError::EndpointUrl("must be an https URL"));
        }
        let authority = uri
            .authority()
            .ok_or(StreamError::EndpointUrl("names no host"))?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(StreamError::EndpointUrl("must name a host and no user"));
        }
        if s.contains('#') {
            return Err(StreamError::EndpointUrl("must not have a fragment"));
        }
        Ok(EndpointUrl(s.to_owned()))
    }
}

impl EndpointUrl {
    /// Returns the URL's host, lowercased (parsed again: the URL was checked when made).
    pub fn host(&self) -> Option<String> {
        let uri: axum::http::Uri = self.0.parse().ok()?;
        uri.host()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    }
}

/// Which hosts receivers that are not admins may have SETs pushed to (`[ssf] push_hosts`):
/// exact names, or `*.suffix` for any name under a domain. Empty: none (they poll, or an
/// admin creates the push stream) — so a workload cannot make the broker POST to any URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushHosts(Vec<String>);

impl PushHosts {
    /// Returns the allowlist of `patterns`, lowercased.
    pub fn new(patterns: &[String]) -> Self {
        PushHosts(patterns.iter().map(|p| p.to_ascii_lowercase()).collect())
    }

    /// Returns true when `host` (lowercase) is listed or under a listed `*.` domain.
    pub fn allows(&self, host: &str) -> bool {
        self.0
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|name| name.len() > 1 && name.ends_with('.')),
                None => pattern == host,
            })
    }
}

impl TryFrom<String> for EndpointUrl {
    type Error = StreamError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<EndpointUrl> for String {
    fn from(url: EndpointUrl) -> String {
        url.0
    }
}

/// The `Authorization` header value a receiver asks pushes to carry. `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AuthorizationHeader(String);

impl AuthorizationHeader {
    /// Returns the header value, for sending it to the receiver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthorizationHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationHeader(***)")
    }
}

impl FromStr for AuthorizationHeader {
    type Err = StreamError;

    /// Accepts 1 to 4096 visible ASCII characters and spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let visible = s.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
        if s.trim().is_empty() || s.len() > MAX_HEADER || !visible {
            return Err(StreamError::AuthorizationHeader);
        }
        Ok(AuthorizationHeader(s.to_owned()))
    }
}

impl TryFrom<String> for AuthorizationHeader {
    type Error = StreamError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AuthorizationHeader> for String {
    fn from(header: AuthorizationHeader) -> String {
        header.0
    }
}

/// How SETs reach the receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method")]
pub enum Delivery {
    /// RFC 8935: the transmitter POSTs each SET to `endpoint_url`.
    #[serde(rename = "urn:ietf:rfc:8935")]
    Push {
        endpoint_url: EndpointUrl,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization_header: Option<AuthorizationHeader>,
    },
    /// RFC 8936: the receiver polls `<issuer>/ssf/poll/<stream_id>`.
    #[serde(rename = "urn:ietf:rfc:8936")]
    Poll,
}

/// A stream's status (SSF 1.0 §8.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    /// SETs are delivered.
    Enabled,
    /// SETs are held (queued) and delivered once enabled again.
    Paused,
    /// SETs are neither delivered nor held.
    Disabled,
}

impl StreamStatus {
    /// `enabled`, `paused` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Enabled => "enabled",
            StreamStatus::Paused => "paused",
            StreamStatus::Disabled => "disabled",
        }
    }
}

impl FromStr for StreamStatus {
    type Err = StreamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enabled" => Ok(StreamStatus::Enabled),
            "paused" => Ok(StreamStatus::Paused),
            "disabled" => Ok(StreamStatus::Disabled),
            _ => Err(StreamError::Status),
        }
    }
}

/// A stream's configuration as stored (the ledger keeps it as JSON beside the stream id and
/// owner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// The receiver's SPIFFE ID: the SETs' `aud`.
    pub aud: String,
    pub delivery: Delivery,
    /// As the receiver sent it (unknown URIs included); `None` requests every supported event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_requested: Option<Vec<String>>,
    pub events_delivered: Vec<EventType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: StreamStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The `delivery` member of a request.
#[derive(Debug, Deserialize)]
struct DeliveryRequest {
    method: String,
    endpoint_url: Option<String>,
    authorization_header: Option<String>,
}

/// A create, update or replace request body. Unknown members are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct StreamRequest {
    pub stream_id: Option<String>,
    delivery: Option<DeliveryRequest>,
    events_requested: Option<Vec<String>>,
    description: Option<String>,
    iss: Option<Value>,
    aud: Option<Value>,
    events_supported: Option<Vec<String>>,
    events_delivered: Option<Vec<String>>,
}

impl StreamRequest {
    /// Parses a JSON body; fails when it is not a JSON object of the expected member types.
    pub fn parse(body: &[u8]) -> Result<StreamRequest, StreamError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(StreamRequest::default());
        }
        serde_json::from_slice(body).map_err(|e| StreamError::Json(e.to_string()))
    }

    /// Returns `stream_id`; fails when it is missing.
    pub fn stream_id(&self) -> Result<&str, StreamError> {
        self.stream_id
            .as_deref()
            .ok_or(StreamError::MissingStreamId)
    }
}

/// Returns the delivery a request asks for (poll when it names none).
fn delivery(request: Option<&DeliveryRequest>) -> Result<Delivery, StreamError> {
    let Some(d) = request else {
        return Ok(Delivery::Poll);
    };
    match d.method.as_str() {
        POLL => Ok(Delivery::Poll),
        PUSH => Ok(Delivery::Push {
            endpoint_url: d
                .endpoint_url
                .as_deref()
                .ok_or(StreamError::MissingEndpointUrl)?
                .parse()?,
            authorization_header: d
                .authorization_header
                .as_deref()
                .map(str::parse)
                .transpose()?,
        }),
        other => Err(StreamError::Method(other.chars().take(200).collect())),
    }
}

/// Returns the events to deliver for `requested` (every supported one for `None`); fails when
/// it names none this transmitter supports, or is too large.
fn delivered(requested: Option<&[String]>) -> Result<Vec<EventType>, StreamError> {
    let Some(requested) = requested else {
        return Ok(EventType::SUPPORTED.to_vec());
    };
    if requested.len() > MAX_EVENTS {
        return Err(StreamError::TooLong {
            field: "events_requested",
            max: MAX_EVENTS,
        });
    }
    if requested.iter().any(|uri| uri.len() > MAX_EVENT_URI) {
        return Err(StreamError::TooLong {
            field: "events_requested[]",
            max: MAX_EVENT_URI,
        });
    }
    // Unknown URIs are ignored (SSF 1.0 §8.1.1), but at least one must be known.
    let known: Vec<EventType> = EventType::SUPPORTED
        .into_iter()
        .filter(|e| {
            requested
                .iter()
                .any(|uri| EventType::requestable(uri) == Some(*e))
        })
        .collect();
    if known.is_empty() {
        return Err(StreamError::NoSupportedEvent);
    }
    Ok(known)
}

fn description(text: Option<&String>) -> Result<Option<String>, StreamError> {
    match text {
        Some(t) if t.chars().count() > MAX_DESCRIPTION => Err(StreamError::TooLong {
            field: "description",
            max: MAX_DESCRIPTION,
        }),
        other => Ok(other.cloned()),
    }
}

impl StreamConfig {
    /// Returns the configuration of a new stream of receiver `aud` from a create request
    /// (transmitter-supplied members are ignored). Fails when a receiver-supplied member is
    /// invalid.
    pub fn create(request: &StreamRequest, aud: &str) -> Result<StreamConfig, StreamError> {
        Ok(StreamConfig {
            aud: aud.to_owned(),
            delivery: delivery(request.delivery.as_ref())?,
            events_delivered: delivered(request.events_requested.as_deref())?,
            events_requested: request.events_requested.clone(),
            description: description(request.description.as_ref())?,
            status: StreamStatus::Enabled,
            reason: None,
        })
    }

    /// Applies a PATCH: members present replace the current ones, missing ones stay. Fails
    /// when a member is invalid or a transmitter-supplied one does not match (nothing changes).
    pub fn patch(
        &self,
        request: &StreamRequest,
        issuer: &str,
    ) -> Result<StreamConfig, StreamError> {
        self.check_transmitter_members(request, issuer)?;
        let mut next = self.clone();
        if let Some(d) = &request.delivery {
            next.delivery = delivery(Some(d))?;
        }
        if let Some(requested) = &request.events_requested {
            next.events_delivered = delivered(Some(requested))?;
            next.events_requested = Some(requested.clone());
        }
        if request.description.is_some() {
            next.description = description(request.description.as_ref())?;
        }
        Ok(next)
    }

    /// Applies a PUT: receiver-supplied members missing from the request are deleted (delivery
    /// falls back to poll). Fails as [`StreamConfig::patch`] does.
    pub fn replace(
        &self,
        request: &StreamRequest,
        issuer: &str,
    ) -> Result<StreamConfig, StreamError> {
        self.check_transmitter_members(request, issuer)?;
        Ok(StreamConfig {
            status: self.status,
            reason: self.reason.clone(),
            ..StreamConfig::create(request, &self.aud)?
        })
    }

    /// Fails naming the first transmitter-supplied member present in `request` whose value
    /// differs from this stream's.
    fn check_transmitter_members(
        &self,
        request: &StreamRequest,
        issuer: &str,
    ) -> Result<(), StreamError> {
        if request.iss.as_ref().is_some_and(|iss| iss != issuer) {
            return Err(StreamError::Mismatch("iss"));
        }
        let aud_matches = |aud: &Value| match aud {
            Value::String(s) => *s == self.aud,
            Value::Array(items) => items.len() == 1 && items[0] == self.aud.as_str(),
            _ => false,
        };
        if request.aud.as_ref().is_some_and(|aud| !aud_matches(aud)) {
            return Err(StreamError::Mismatch("aud"));
        }
        let same_set = |given: &[String], expected: &[EventType]| {
            given.len() == expected.len()
                && expected.iter().all(|e| given.iter().any(|g| g == e.uri()))
        };
        if let Some(supported) = &request.events_supported
            && !same_set(supported, &EventType::SUPPORTED)
        {
            return Err(StreamError::Mismatch("events_supported"));
        }
        if let Some(delivered) = &request.events_delivered
            && !same_set(delivered, &self.events_delivered)
        {
            return Err(StreamError::Mismatch("events_delivered"));
        }
        Ok(())
    }

    /// Returns the configuration as SSF JSON for `stream_id`. The authorization header is
    /// shown only when `show_secret` (to the receiver that set it).
    pub fn to_json(&self, p: RenderParams<'_>) -> Value {
        let delivery = match &self.delivery {
            Delivery::Push {
                endpoint_url,
                authorization_header,
            } => {
                let mut d = json!({"method": PUSH, "endpoint_url": endpoint_url.as_str()});
                if let (Some(header), Some(obj)) = (authorization_header, d.as_object_mut()) {
                    let shown = if p.show_secret {
                        header.expose()
                    } else {
                        "***"
                    };
                    obj.insert("authorization_header".into(), json!(shown));
                }
                d
            }
            Delivery::Poll => json!({
                "method": POLL,
                "endpoint_url": format!("{}/ssf/poll/{}", p.issuer, p.stream_id),
            }),
        };
        let mut out = json!({
            "stream_id": p.stream_id,
            "iss": p.issuer,
            "aud": self.aud,
            "delivery": delivery,
            "events_supported": EventType::SUPPORTED.map(EventType::uri),
            "events_delivered": self.events_delivered.iter().map(|e| e.uri()).collect::<Vec<_>>(),
            "min_verification_interval": p.min_verification_interval,
        });
        if let Some(obj) = out.as_object_mut() {
            if let Some(requested) = &self.events_requested {
                obj.insert("events_requested".into(), json!(requested));
            }
            if let Some(description) = &self.description {
                obj.insert("description".into(), json!(description));
            }
        }
        out
    }
}

/// Parameters of [`StreamConfig::to_json`].
#[derive(Debug, Clone, Copy)]
pub struct RenderParams<'a> {
    pub stream_id: &'a str,
    pub issuer: &'a str,
    pub min_verification_interval: u64,
    pub show_secret: bool,
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
