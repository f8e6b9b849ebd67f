//! Request bodies of type `application/x-www-form-urlencoded` (`/token`, `/introspect`,
//! `/revoke`), parsed into parameters borrowed from the body.
//!
//! Why not `form_urlencoded::parse`: it percent-decodes and checks UTF-8 one byte at a time
//! through iterators, replaces bad UTF-8 rather than refusing it, and the handlers then copied
//! every value. On `/token`, whose subject token is ~1 KB, that came to ~31,000 instructions per
//! exchange (callgrind, BENCHMARKS.md item 14), a sixth of what the worker spent outside crypto.
//! Here a name or value is borrowed unless it holds `+` or `%`; only then is it decoded, by
//! `percent_encoding` (the crate `form_urlencoded` uses). The result is the same for every body
//! that is UTF-8 once decoded (a test checks it against `form_urlencoded`); any other is refused.

use std::borrow::Cow;
use std::fmt;

use crate::refusal::{OAuthCode, Refusal};

/// Why a form body or one of its parameters is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A name or value is not UTF-8 once percent-decoded.
    #[error("the form is not UTF-8 once percent-decoded")]
    NotUtf8,
    /// A parameter that may appear once appears more often (RFC 6749 §3.1).
    #[error("{0} may appear only once")]
    Repeated(&'static str),
}

impl From<FormError> for Refusal {
    fn from(e: FormError) -> Self {
        match e {
            FormError::NotUtf8 | FormError::Repeated(_) => {
                Refusal::invalid(OAuthCode::InvalidRequest, e.to_string())
            }
        }
    }
}

/// A parsed form: every parameter in the order of the body, with its value.
pub struct Form<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

/// Names the parameters only: their values include subject tokens.
impl fmt::Debug for Form<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl<'a> Form<'a> {
    /// Parses `body` as the WHATWG URL standard's urlencoded parser does: `&`-separated pairs,
    /// empty ones skipped, the name before the first `=` (a pair without one has an empty
    /// value), `+` a space and `%XX` a byte (a `%` not followed by two hex digits stays).
    /// Fails with [`FormError::NotUtf8`] when a decoded name or value is not UTF-8.
    pub fn parse(body: &'a [u8]) -> Result<Self, FormError> {
        let mut pairs = Vec::new();
        let mut start = 0;
        while start <= body.len() {
            let end = memchr::memchr(b'&', &body[start..]).map_or(body.len(), |i| start + i);
            let pair = &body[start..end];
            start = end + 1;
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Form(pairs))
    }

    /// Returns every value of `name`, in order.
    pub fn all<'f>(&'f self, name: &'f str) -> impl Iterator<Item = &'f str> + 'f {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Returns the single value of `name`, `None` when absent. Fails with
    /// [`FormError::Repeated`] when it appears more than once.
    pub fn one(&self, name: &'static str) -> Result<Option<&str>, FormError> {
        let mut values = self.all(name);
        let first = values.next();
        match values.next() {
            None => Ok(first),
            Some(_) => Err(FormError::Repeated(name)),
        }
    }
}

/// Returns `raw` decoded: borrowed when it holds neither `+` nor `%`. Fails when the result is
/// not UTF-8.
fn decode(raw: &[u8]) -> Result<Cow<'_, str>, FormError> {
    if memchr::memchr2(b'+', b'%', raw).is_none() {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| FormError::NotUtf8);
    }
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| FormError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs<'a>(form: &'a Form<'_>) -> Vec<(&'a str, &'a str)> {
        form.0
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect()
    }

    #[test]
    fn a_parameter_without_escapes_is_borrowed_from_the_body() {
        let form = Form::parse(b"grant_type=x&subject_token=eyJ.a-b_c.d").unwrap();
        assert_eq!(
            pairs(&form),
            [("grant_type", "x"), ("subject_token", "eyJ.a-b_c.d")]
        );
        assert!(
            form.0
                .iter()
                .all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_))))
        );
    }

    #[test]
    fn plus_is_a_space_and_percent_escapes_are_decoded() {
        let form =
            Form::parse(b"scope=read+write&audience=https%3A%2F%2Fa.example%2F%C3%A9").unwrap();
        assert_eq!(
            pairs(&form),
            [("scope", "read write"), ("audience", "https://a.example/é")]
        );
    }

    #[test]
    fn empty_pairs_are_skipped_and_a_name_without_equals_has_an_empty_value() {
        let form = Form::parse(b"&&a&b=&=c&d=1=2&").unwrap();
        assert_eq!(
            pairs(&form),
            [("a", ""), ("b", ""), ("", "c"), ("d", "1=2")]
        );
        assert!(pairs(&Form::parse(b"").unwrap()).is_empty());
    }

    #[test]
    fn debug_shows_the_names_and_never_a_value() {
        let form = Form::parse(b"grant_type=g&subject_token=secret.jwt.sig").unwrap();
        let shown = format!("{form:?}");
        assert!(shown.contains("subject_token"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn a_name_or_value_that_is_not_utf8_once_decoded_is_refused() {
        assert_eq!(Form::parse(b"token=%FF").unwrap_err(), FormError::NotUtf8);
        assert_eq!(Form::parse(b"a=1&t\xC3=2").unwrap_err(), FormError::NotUtf8);
        assert_eq!(Form::parse(b"token=\xFF").unwrap_err(), FormError::NotUtf8);
    }

    #[test]
    fn one_refuses_a_repeated_parameter_that_all_returns_in_order() {
        let form = Form::parse(b"audience=a&scope=s&audience=b").unwrap();
        assert_eq!(form.all("audience").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(form.one("audience"), Err(FormError::Repeated("audience")));
        assert_eq!(form.one("scope"), Ok(Some("s")));
        assert_eq!(form.one("resource"), Ok(None));
    }

    #[test]
    fn it_decodes_as_form_urlencoded_does_every_body_that_is_utf8() {
        let bodies: [&[u8]; 9] = [
            b"a=b&c=d",
            b"a=%zz&b=%4&c=%41%42",
            b"x=1+2%2B3&&y",
            b"%61%3D=%26&=",
            b"k=v=w&k=%20+",
            b"==&&=",
            b"name=caf%C3%A9&emoji=%F0%9F%94%91",
            b"t=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            b"%%%&+&=%2",
        ];
        for body in bodies {
            let ours = Form::parse(body).unwrap();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
            let theirs: Vec<(&str, &str)> = theirs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(pairs(&ours), theirs, "{}", String::from_utf8_lossy(body));
        }
    }
}
