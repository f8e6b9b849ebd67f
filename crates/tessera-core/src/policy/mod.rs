//! Policy: deny by default. Matches an attested identity to a grant and yields what may be
//! minted: workload, owner, TTL. It never touches keys. [`Access`] holds the other access rules
//! (admins, RFC 7009 holders).
//!
//! A grant's `[grant.match]` names either a SPIFFE ID — exact, or a pattern whose last segment
//! is `*` (exactly one more path segment) or `**` (one or more), e.g.
//! `spiffe://example.org/ns/payments/*`, always within one trust domain — or a CI identity: an
//! exact `issuer`, plus a `subject` and `claims`, each an exact string or an anchored regular
//! expression ([`MatchValue`]).

mod access;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::attest::{CiIdentity, Principal};
use crate::domain::CredentialKind;
use crate::request::CredentialRequest;
use crate::spiffe_id::{SpiffeId, SpiffeIdError};

pub use self::access::{Access, AccessError};

/// The longest TTL any grant may allow: nothing minted lives longer, so a revocation rule can
/// be dropped this long (plus the CRL period) after it took effect.
pub const MAX_GRANT_TTL: Duration = Duration::from_secs(3600);

/// Who may act as a grant's workload: a SPIFFE ID, exact or by pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpiffePattern {
    Exact(SpiffeId),
    /// `prefix/*`: the prefix plus exactly one segment.
    OneSegment(SpiffeId),
    /// `prefix/**`: the prefix plus one or more segments.
    AnySegments(SpiffeId),
}

impl SpiffePattern {
    /// Returns the trust domain the pattern is confined to.
    pub fn trust_domain_name(&self) -> &str {
        match self {
            SpiffePattern::Exact(id)
            | SpiffePattern::OneSegment(id)
            | SpiffePattern::AnySegments(id) => id.trust_domain_name(),
        }
    }

    /// Returns true when `id` is matched.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            SpiffePattern::Exact(exact) => exact == id,
            SpiffePattern::OneSegment(prefix) => {
                below(prefix, id).is_some_and(|rest| !rest.contains('/'))
            }
            SpiffePattern::AnySegments(prefix) => below(prefix, id).is_some(),
        }
    }
}

/// The part of `id`'s path below `prefix` (without the joining `/`), if `id` is strictly below.
fn below<'a>(prefix: &SpiffeId, id: &'a SpiffeId) -> Option<&'a str> {
    if prefix.trust_domain_name() != id.trust_domain_name() {
        return None;
    }
    let rest = id.path().strip_prefix(prefix.path())?.strip_prefix('/')?;
    (!rest.is_empty()).then_some(rest)
}

impl FromStr for SpiffePattern {
    type Err = SpiffeIdError;

    /// Parses an exact SPIFFE ID, or one ending in `/*` or `/**`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(prefix) = s.strip_suffix("/**") {
            return Ok(SpiffePattern::AnySegments(prefix.parse()?));
        }
        if let Some(prefix) = s.strip_suffix("/*") {
            return Ok(SpiffePattern::OneSegment(prefix.parse()?));
        }
        Ok(SpiffePattern::Exact(s.parse()?))
    }
}

/// A string a claim or subject must equal, or an anchored regular expression it must match.
/// Two patterns are equal when they are written the same.
#[derive(Debug, Clone)]
pub enum MatchValue {
    Exact(String),
    /// Compiled as `^(?:pattern)$`.
    Pattern(regex::Regex),
}

impl PartialEq for MatchValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (MatchValue::Exact(a), MatchValue::Exact(b)) => a == b,
            (MatchValue::Pattern(a), MatchValue::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for MatchValue {}

impl MatchValue {
    /// Compiles a pattern anchored at both ends; fails with the regex error.
    pub fn pattern(pattern: &str) -> Result<Self, regex::Error> {
        // Compiled alone first, so `a)|(.*` cannot escape the anchors.
        regex::Regex::new(pattern)?;
        regex::Regex::new(&format!("^(?:{pattern})$")).map(MatchValue::Pattern)
    }

    /// Returns true when `value` equals or matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            MatchValue::Exact(exact) => exact == value,
            MatchValue::Pattern(re) => re.is_match(value),
        }
    }
}

/// Which CI identities may act as a grant's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiMatch {
    pub issuer: String,
    pub subject: Option<MatchValue>,
    /// Claim path → required value; claims compare as strings.
    pub claims: Vec<(String, MatchValue)>,
}

impl CiMatch {
    /// Returns true when `ci` is from the issuer and matches the subject and every claim.
    pub fn matches(&self, ci: &CiIdentity) -> bool {
        ci.issuer == self.issuer
            && self.subject.as_ref().is_none_or(|s| s.matches(&ci.subject))
            && self
                .claims
                .iter()
                .all(|(path, want)| ci.claim(path).is_some_and(|v| want.matches(&v)))
    }
}

/// Who may act as a grant's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantMatch {
    Spiffe(SpiffePattern),
    Ci(CiMatch),
}

impl GrantMatch {
    /// Returns true when `principal` may act under the grant.
    pub fn matches(&self, principal: &Principal) -> bool {
        match (self, principal) {
            (GrantMatch::Spiffe(pattern), Principal::Spiffe(id)) => pattern.matches(id),
            (GrantMatch::Ci(ci_match), Principal::Ci(ci)) => ci_match.matches(ci),
            _ => false,
        }
    }
}

/// One checked `[[grant]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    /// Becomes `sub` (and `client_id`) of what is minted.
    pub workload: SpiffeId,
    pub owner: String,
    /// Last day (UTC) on which the grant may be used.
    pub expires: time::Date,
    pub destinations: Vec<String>,
    pub purposes: Vec<String>,
    pub credentials: Vec<CredentialKind>,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub matcher: GrantMatch,
}

impl Grant {
    /// Returns the first unix second at which the grant no longer applies.
    pub fn ends_at(&self) -> i64 {
        self.expires
            .next_day()
            .map_or(i64::MAX, |d| d.midnight().assume_utc().unix_timestamp())
    }
}

/// Why policy refused. Every variant is a permission denial; the message says what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("no grant allows {identity}")]
    NoGrant { identity: String },
    #[error("destination `{destination}` is not granted to {identity}")]
    Destination {
        identity: String,
        destination: String,
    },
    #[error("purpose `{purpose}` is not granted to {identity} for destination `{destination}`")]
    Purpose {
        identity: String,
        destination: String,
        purpose: String,
    },
    #[error(
        "credential kind `{kind}` is not granted to {identity} for `{destination}` / `{purpose}`"
    )]
    Kind {
        identity: String,
        destination: String,
        purpose: String,
        kind: CredentialKind,
    },
    #[error("grant `{grant}` of owner `{owner}` expired on {expires}: its owner must renew it")]
    GrantExpired {
        grant: String,
        owner: String,
        expires: time::Date,
    },
}

/// What policy allows for one request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub grant: Arc<Grant>,
    /// The TTL to mint with: requested, defaulted or clamped.
    pub ttl: Duration,
}

/// Parameters of [`Policy::decide`].
#[derive(Debug, Clone, Copy)]
pub struct DecideParams<'a> {
    pub identity: &'a Principal,
    pub request: &'a CredentialRequest,
    pub kind: CredentialKind,
    /// Unix seconds now.
    pub now: i64,
}

/// The grants, indexed for the hot path: exact SPIFFE IDs by hash, patterns scanned.
#[derive(Clone, Default)]
pub struct Policy {
    exact: HashMap<SpiffeId, Vec<Arc<Grant>>>,
    patterns: Vec<Arc<Grant>>,
    /// Every grant, in configuration order.
    all: Vec<Arc<Grant>>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("exact", &self.exact.len())
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl Policy {
    /// Builds the index over `grants`.
    pub fn new(grants: Vec<Grant>) -> Self {
        let mut policy = Policy::default();
        for grant in grants {
            let grant = Arc::new(grant);
            policy.all.push(Arc::clone(&grant));
            match &grant.matcher {
                GrantMatch::Spiffe(SpiffePattern::Exact(id)) => {
                    policy.exact.entry(id.clone()).or_default().push(grant)
                }
                _ => policy.patterns.push(grant),
            }
        }
        policy
    }

    /// Returns every grant, in configuration order.
    pub fn grants(&self) -> &[Arc<Grant>] {
        &self.all
    }

    /// Returns the grant named `name`, if any.
    pub fn grant(&self, name: &str) -> Option<&Arc<Grant>> {
        self.all.iter().find(|g| g.name == name)
    }

    /// Returns the grant allowing this request and the TTL to mint with. Fails with the most
    /// specific reason: no grant for the identity, then destination, purpose, kind, expiry.
    pub fn decide(&self, p: DecideParams<'_>) -> Result<Decision, PolicyError> {
        let exact = match p.identity {
            Principal::Spiffe(id) => self.exact.get(id).map(Vec::as_slice).unwrap_or_default(),
            Principal::Ci(_) => &[],
        };
        let patterns = self
            .patterns
            .iter()
            .filter(|g| g.matcher.matches(p.identity));
        let candidates: Vec<&Arc<Grant>> = exact.iter().chain(patterns).collect();
        let identity = || p.identity.to_string();
        let req = p.request;
        if candidates.is_empty() {
            return Err(PolicyError::NoGrant {
                identity: identity(),
            });
        }
        let by_dest: Vec<_> = candidates
            .into_iter()
            .filter(|g| g.destinations.contains(&req.destination))
            .collect();
        if by_dest.is_empty() {
            return Err(PolicyError::Destination {
                identity: identity(),
                destination: req.destination.clone(),
            });
        }
        let by_purpose: Vec<_> = by_dest
            .into_iter()
            .filter(|g| g.purposes.contains(&req.purpose))
            .collect();
        if by_purpose.is_empty() {
            return Err(PolicyError::Purpose {
                identity: identity(),
                destination: req.destination.clone(),
                purpose: req.purpose.clone(),
            });
        }
        let by_kind: Vec<_> = by_purpose
            .into_iter()
            .filter(|g| g.credentials.contains(&p.kind))
            .collect();
        let Some(first) = by_kind.first() else {
            return Err(PolicyError::Kind {
                identity: identity(),
                destination: req.destination.clone(),
                purpose: req.purpose.clone(),
                kind: p.kind,
            });
        };
        let grant = by_kind
            .iter()
            .find(|g| g.ends_at() > p.now)
            .ok_or_else(|| PolicyError::GrantExpired {
                grant: first.name.clone(),
                owner: first.owner.clone(),
                expires: first.expires,
            })?;
        let ttl = req.ttl.unwrap_or(grant.default_ttl).min(grant.max_ttl);
        Ok(Decision {
            grant: Arc::clone(grant),
            ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(matcher: &str) -> Grant {
        Grant {
            name: "g".into(),
            workload: "spiffe://example.org/w".parse().unwrap(),
            owner: "team".into(),
            expires: time::macros::date!(2030 - 01 - 01),
            destinations: vec!["https://d".into()],
            purposes: vec!["read".into()],
            credentials: vec![CredentialKind::Jwt],
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(600),
            matcher: GrantMatch::Spiffe(matcher.parse().unwrap()),
        }
    }

    fn decide(
        policy: &Policy,
        id: &str,
        dest: &str,
        purpose: &str,
        kind: CredentialKind,
        ttl: u32,
    ) -> Result<Decision, PolicyError> {
        let identity = Principal::Spiffe(id.parse().unwrap());
        let request = CredentialRequest::parse(dest, purpose, ttl).unwrap();
        policy.decide(DecideParams {
            identity: &identity,
            request: &request,
            kind,
            now: 1_800_000_000,
        })
    }

    #[test]
    fn patterns_match_one_or_many_segments_within_the_trust_domain() {
        let one: SpiffePattern = "spiffe://example.org/ns/*".parse().unwrap();
        let many: SpiffePattern = "spiffe://example.org/ns/**".parse().unwrap();
        let id = |s: &str| s.parse::<SpiffeId>().unwrap();
        assert!(one.matches(&id("spiffe://example.org/ns/a")));
        assert!(!one.matches(&id("spiffe://example.org/ns/a/b")));
        assert!(!one.matches(&id("spiffe://example.org/ns")));
        assert!(!one.matches(&id("spiffe://example.org/nsx/a")));
        assert!(many.matches(&id("spiffe://example.org/ns/a/b")));
        assert!(!many.matches(&id("spiffe://other.org/ns/a")));
    }

    #[test]
    fn denies_by_default_and_names_what_is_missing() {
        let policy = Policy::new(vec![grant("spiffe://example.org/caller")]);
        let me = "spiffe://example.org/caller";
        assert!(matches!(
            decide(
                &policy,
                "spiffe://example.org/other",
                "https://d",
                "read",
                CredentialKind::Jwt,
                0
            ),
            Err(PolicyError::NoGrant { .. })
        ));
        assert!(matches!(
            decide(&policy, me, "https://x", "read", CredentialKind::Jwt, 0),
            Err(PolicyError::Destination { .. })
        ));
        assert!(matches!(
            decide(&policy, me, "https://d", "write", CredentialKind::Jwt, 0),
            Err(PolicyError::Purpose { .. })
        ));
        assert!(matches!(
            decide(&policy, me, "https://d", "read", CredentialKind::X509, 0),
            Err(PolicyError::Kind { .. })
        ));
    }

    #[test]
    fn defaults_and_clamps_the_ttl() {
        let policy = Policy::new(vec![grant("spiffe://example.org/caller")]);
        let me = "spiffe://example.org/caller";
        let d = decide(&policy, me, "https://d", "read", CredentialKind::Jwt, 0).unwrap();
        assert_eq!(d.ttl, Duration::from_secs(300));
        let d = decide(&policy, me, "https://d", "read", CredentialKind::Jwt, 60).unwrap();
        assert_eq!(d.ttl, Duration::from_secs(60));
        let d = decide(
            &policy,
            me,
            "https://d",
            "read",
            CredentialKind::Jwt,
            86_400,
        )
        .unwrap();
        assert_eq!(d.ttl, Duration::from_secs(600));
        assert_eq!(d.grant.workload.as_str(), "spiffe://example.org/w");
    }

    #[test]
    fn patterns_stay_anchored_and_cannot_escape_the_anchors() {
        let p = MatchValue::pattern("repo:acme/.+").unwrap();
        assert!(p.matches("repo:acme/app"));
        assert!(!p.matches("xrepo:acme/app"));
        assert!(MatchValue::pattern("acme)|(.*").is_err());
    }

    #[test]
    fn refuses_a_grant_past_its_expiry_date() {
        let mut g = grant("spiffe://example.org/caller");
        g.expires = time::macros::date!(2020 - 01 - 01);
        let policy = Policy::new(vec![g]);
        let r = decide(
            &policy,
            "spiffe://example.org/caller",
            "https://d",
            "read",
            CredentialKind::Jwt,
            0,
        );
        assert!(matches!(r, Err(PolicyError::GrantExpired { .. })));
    }
}
