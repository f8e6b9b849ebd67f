//! The stream configuration rules of SSF 1.0 §8.1.1: receiver-supplied members parsed once,
//! create / update / replace semantics, transmitter-supplied members that must match, and the
//! receiver's secret shown only to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::*;

const ISS: &str = "https://tessera.example.org";
const AUD: &str = "spiffe://example.org/rp";

fn request(body: Value) -> StreamRequest {
    StreamRequest::parse(body.to_string().as_bytes()).unwrap()
}

fn push_request(url: &str) -> StreamRequest {
    request(json!({"delivery": {"method": PUSH, "endpoint_url": url,
        "authorization_header": "Bearer s3cret"}}))
}

fn render(config: &StreamConfig, show_secret: bool) -> Value {
    config.to_json(RenderParams {
        stream_id: "s1",
        issuer: ISS,
        min_verification_interval: 10,
        show_secret,
    })
}

#[test]
fn a_push_endpoint_must_be_an_https_url_with_a_host() {
    for bad in [
        "http://r.example.org/e",
        "https:///e",
        "https://user@r.example.org/e",
        "https://r.example.org/e#frag",
        "not a url",
    ] {
        let err = StreamConfig::create(&push_request(bad), AUD).unwrap_err();
        assert!(matches!(err, StreamError::EndpointUrl(_)), "{bad}: {err}");
    }
    let long = format!("https://r.example.org/{}", "a".repeat(2100));
    assert!(StreamConfig::create(&push_request(&long), AUD).is_err());
    assert!(StreamConfig::create(&push_request("https://r.example.org:8443/e?x=1"), AUD).is_ok());
}

#[test]
fn a_stream_without_delivery_is_polled_and_gets_every_supported_event() {
    let config = StreamConfig::create(&StreamRequest::parse(b"").unwrap(), AUD).unwrap();
    assert_eq!(config.delivery, Delivery::Poll);
    assert_eq!(config.events_delivered, EventType::SUPPORTED.to_vec());
    assert_eq!(config.status, StreamStatus::Enabled);
    let shown = render(&config, true);
    assert_eq!(
        shown["delivery"]["endpoint_url"],
        format!("{ISS}/ssf/poll/s1")
    );
    assert_eq!(
        (shown["iss"].as_str(), shown["aud"].as_str()),
        (Some(ISS), Some(AUD))
    );
}

#[test]
fn unknown_event_uris_are_ignored_but_one_must_be_supported() {
    let session = EventType::SessionRevoked.uri();
    let some = request(json!({"events_requested": ["urn:example:x", session]}));
    let config = StreamConfig::create(&some, AUD).unwrap();
    assert_eq!(config.events_delivered, [EventType::SessionRevoked]);
    assert_eq!(
        render(&config, false)["events_requested"],
        json!(["urn:example:x", session])
    );
    for none in [
        json!({"events_requested": ["urn:example:x"]}),
        json!({"events_requested": []}),
    ] {
        let err = StreamConfig::create(&request(none), AUD).unwrap_err();
        assert_eq!(err, StreamError::NoSupportedEvent);
    }
}

#[test]
fn unsupported_methods_bad_headers_and_bad_json_are_refused() {
    let smoke = request(json!({"delivery": {"method": "urn:example:smoke"}}));
    assert!(matches!(
        StreamConfig::create(&smoke, AUD),
        Err(StreamError::Method(_))
    ));
    let no_url = request(json!({"delivery": {"method": PUSH}}));
    assert_eq!(
        StreamConfig::create(&no_url, AUD),
        Err(StreamError::MissingEndpointUrl)
    );
    let header = request(json!({"delivery": {"method": PUSH,
        "endpoint_url": "https://r.example.org", "authorization_header": "a\nb"}}));
    assert_eq!(
        StreamConfig::create(&header, AUD),
        Err(StreamError::AuthorizationHeader)
    );
    assert!(matches!(
        StreamRequest::parse(b"[1]"),
        Err(StreamError::Json(_))
    ));
    assert!(matches!(
        StreamRequest::parse(br#"{"description": 7}"#),
        Err(StreamError::Json(_))
    ));
}

#[test]
fn patch_keeps_missing_members_and_replace_deletes_them() {
    let mut created = push_request("https://r.example.org/e");
    created.description = Some("first".into());
    let config = StreamConfig::create(&created, AUD).unwrap();
    let patched = config
        .patch(
            &request(json!({"stream_id": "s1", "description": "second"})),
            ISS,
        )
        .unwrap();
    assert_eq!(patched.description.as_deref(), Some("second"));
    assert_eq!(patched.delivery, config.delivery);
    let replaced = config
        .replace(
            &request(json!({"stream_id": "s1", "description": "third"})),
            ISS,
        )
        .unwrap();
    assert_eq!(
        replaced.delivery,
        Delivery::Poll,
        "a missing delivery is deleted"
    );
    assert_eq!(replaced.description.as_deref(), Some("third"));
    assert_eq!(replaced.aud, AUD);
}

#[test]
fn transmitter_supplied_members_may_be_sent_only_with_their_current_value() {
    let config = StreamConfig::create(&StreamRequest::default(), AUD).unwrap();
    let current = render(&config, true);
    let mut echo = current.clone();
    echo["description"] = json!("read, modified, written back");
    assert!(config.replace(&request(echo), ISS).is_ok());
    for (member, value) in [
        ("iss", json!("https://elsewhere.example.org")),
        ("aud", json!("spiffe://example.org/other")),
        ("events_supported", json!([EventType::SessionRevoked.uri()])),
        ("events_delivered", json!([])),
    ] {
        let mut body = current.clone();
        body[member] = value;
        let err = config.patch(&request(body), ISS).unwrap_err();
        assert!(
            matches!(err, StreamError::Mismatch(m) if m == member),
            "{member}: {err}"
        );
    }
}

#[test]
fn the_authorization_header_is_shown_only_to_the_receiver_that_set_it() {
    let config = StreamConfig::create(&push_request("https://r.example.org/e"), AUD).unwrap();
    assert_eq!(
        render(&config, true)["delivery"]["authorization_header"],
        "Bearer s3cret"
    );
    assert_eq!(
        render(&config, false)["delivery"]["authorization_header"],
        "***"
    );
    assert!(!format!("{config:?}").contains("s3cret"));
    let stored = serde_json::to_string(&config).unwrap();
    assert_eq!(
        serde_json::from_str::<StreamConfig>(&stored).unwrap(),
        config
    );
}

#[test]
fn statuses_parse_from_their_names_only() {
    for status in [
        StreamStatus::Enabled,
        StreamStatus::Paused,
        StreamStatus::Disabled,
    ] {
        assert_eq!(status.as_str().parse::<StreamStatus>(), Ok(status));
    }
    assert_eq!("Enabled".parse::<StreamStatus>(), Err(StreamError::Status));
}

#[test]
fn push_hosts_allow_listed_names_and_names_under_a_listed_domain_only() {
    let hosts = PushHosts::new(&["Receiver.example.org".into(), "*.corp.example".into()]);
    assert!(hosts.allows("receiver.example.org"));
    assert!(hosts.allows("siem.corp.example"));
    assert!(hosts.allows("a.b.corp.example"));
    assert!(
        !hosts.allows("corp.example"),
        "the domain itself is not under it"
    );
    assert!(!hosts.allows("evilcorp.example"));
    assert!(!hosts.allows("other.example.org"));
    assert!(!PushHosts::default().allows("receiver.example.org"));
    let url: EndpointUrl = "https://SIEM.corp.example:8443/events".parse().unwrap();
    assert_eq!(url.host().as_deref(), Some("siem.corp.example"));
}
