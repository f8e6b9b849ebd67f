//! `[[grant]]` sections → [`Grant`]s.
use super::oidc::OidcIssuerConfig;
use super::*;

use tessera_core::policy::{CiMatch, GrantMatch, MatchValue};

/// What a grant is checked against.
pub(super) struct GrantContext<'a> {
    pub today: time::Date,
    pub known: &'a dyn Fn(&str) -> bool,
    pub issuers: &'a [OidcIssuerConfig],
    /// Loud warnings about grants that trust too much; the caller logs them.
    pub warnings: &'a mut Vec<String>,
    /// The same lint, by grant (what `Admin/ListGrants` and `tessera review` report).
    pub lint: &'a mut Vec<GrantWarning>,
}

/// The start-up lint about one grant: something that loads but deserves its owner's attention
/// (a CI grant that trusts too widely).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantWarning {
    /// The grant's name.
    pub grant: String,
    /// What is wrong and how to fix it (without the file or the grant's position).
    pub message: String,
}

/// Builds grant number `i`; fails naming the key that is missing or wrong.
pub(super) fn build(
    check: &Checker<'_>,
    i: usize,
    s: &file::GrantSection,
    cx: &mut GrantContext<'_>,
) -> Result<Grant, ConfigError> {
    let (today, known) = (cx.today, cx.known);
    let key = |k: &str| format!("grant[{i}].{k}");
    // A stable name, not a position: it is recorded with every credential and names the grant
    // to revoke, review and offboard, so reordering grants must not change it.
    let name = s.name.clone().ok_or_else(|| {
        check.invalid(
            key("name"),
            "is required: a stable, unique name for the grant (recorded with every credential)",
        )
    })?;
    if name.is_empty() || name.contains('/') || tessera_core::request::check_name(&name).is_err() {
        return Err(check.invalid(
            key("name"),
            format!("`{name}`: a grant name is 1 to 512 characters, without `/` or whitespace"),
        ));
    }
    let workload_text = s
        .workload
        .as_deref()
        .ok_or_else(|| check.invalid(key("workload"), "is required"))?;
    let workload: SpiffeId = workload_text
        .parse()
        .map_err(|e| check.invalid(key("workload"), format!("`{workload_text}`: {e}")))?;
    if !known(workload.trust_domain_name()) {
        return Err(check.invalid(
            key("workload"),
            format!("unknown trust domain `{}`", workload.trust_domain_name()),
        ));
    }
    let owner = s.owner.clone().filter(|o| !o.trim().is_empty());
    let owner = owner
        .ok_or_else(|| check.invalid(key("owner"), "is required: every grant has an owner"))?;
    let expires_text = s.expires.as_ref().map(|d| d.to_text());
    let expires_text = expires_text.ok_or_else(|| {
        check.invalid(
            key("expires"),
            "is required: grants are reviewed, not eternal",
        )
    })?;
    let expires = time::Date::parse(
        &expires_text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| {
        check.invalid(
            key("expires"),
            format!("`{expires_text}` is not a date like 2027-06-30"),
        )
    })?;
    // An expired grant does not stop start-up or a reload (a restart on the wrong day must
    // not take issuance down for everyone): it refuses its mints, naming itself and its owner.
    if expires < today {
        cx.warnings.push(format!(
            "{}: grant[{i}] `{name}` of owner `{owner}` expired on {expires}: it refuses mints \
             until its owner renews it",
            check.file.display(),
        ));
    }
    let destinations = non_empty_list(check, &key("destinations"), &s.destinations)?;
    let purposes = non_empty_list(check, &key("purposes"), &s.purposes)?;
    let credentials = credential_kinds(check, &key("credentials"), s.credentials.as_deref())?;
    let max_ttl = check.duration(&key("max_ttl"), s.max_ttl.as_deref(), DEFAULT_MAX_TTL)?;
    if max_ttl > MAX_GRANT_TTL || max_ttl.is_zero() {
        return Err(check.invalid(key("max_ttl"), "must be more than 0 and at most 1h"));
    }
    let default_ttl = check.duration(
        &key("default_ttl"),
        s.default_ttl.as_deref(),
        DEFAULT_TTL_CAP.min(max_ttl),
    )?;
    if default_ttl > max_ttl || default_ttl.is_zero() {
        return Err(check.invalid(
            key("default_ttl"),
            "must be more than 0 and at most max_ttl",
        ));
    }
    let section = s.matcher.as_ref().ok_or_else(|| {
        check.invalid(
            key("match"),
            "is required: say who may act as this workload",
        )
    })?;
    let matcher = match (&section.spiffe_id, &section.issuer) {
        (Some(_), None) => GrantMatch::Spiffe(matcher(
            check,
            &key("match.spiffe_id"),
            Some(section),
            known,
        )?),
        (None, Some(_)) => GrantMatch::Ci(ci_match(check, (i, &name), section, cx)?),
        _ => return Err(check.invalid(key("match"), "set exactly one of `spiffe_id` and `issuer`")),
    };
    if !workload.has_path() {
        return Err(check.invalid(
            key("workload"),
            "needs a path: a trust domain's own ID is not a workload",
        ));
    }
    Ok(Grant {
        name,
        workload,
        owner,
        expires,
        destinations,
        purposes,
        credentials,
        default_ttl,
        max_ttl,
        matcher,
    })
}

fn non_empty_list(
    check: &Checker<'_>,
    key: &str,
    items: &[String],
) -> Result<Vec<String>, ConfigError> {
    if items.is_empty() {
        return Err(check.invalid(key, "must list at least one value"));
    }
    if let Some(bad) = items
        .iter()
        .find(|v| tessera_core::request::check_name(v).is_err())
    {
        return Err(check.invalid(
            key,
            format!("`{bad}` is empty, too long or has spaces or control characters"),
        ));
    }
    Ok(items.to_vec())
}

fn credential_kinds(
    check: &Checker<'_>,
    key: &str,
    names: Option<&[String]>,
) -> Result<Vec<CredentialKind>, ConfigError> {
    let Some(names) = names else {
        return Ok(vec![CredentialKind::Jwt]);
    };
    if names.is_empty() {
        return Err(check.invalid(key, "must list at least one of `jwt`, `x509`"));
    }
    names
        .iter()
        .map(|n| {
            n.parse()
                .map_err(|_| check.invalid(key, format!("`{n}` is not `jwt` or `x509`")))
        })
        .collect()
}

fn matcher(
    check: &Checker<'_>,
    key: &str,
    section: Option<&file::MatchSection>,
    known: &dyn Fn(&str) -> bool,
) -> Result<SpiffePattern, ConfigError> {
    let text = section
        .and_then(|m| m.spiffe_id.as_deref())
        .ok_or_else(|| check.invalid(key, "is required: say who may act as this workload"))?;
    let pattern: SpiffePattern = text
        .parse()
        .map_err(|e| check.invalid(key, format!("`{text}`: {e}")))?;
    if !known(pattern.trust_domain_name()) {
        return Err(check.invalid(
            key,
            format!("unknown trust domain `{}`", pattern.trust_domain_name()),
        ));
    }
    Ok(pattern)
}

fn match_value(
    check: &Checker<'_>,
    key: &str,
    text: &file::MatchText,
) -> Result<MatchValue, ConfigError> {
    match text {
        file::MatchText::Exact(exact) => Ok(MatchValue::Exact(exact.clone())),
        file::MatchText::Pattern { pattern } => MatchValue::pattern(pattern)
            .map_err(|e| check.invalid(key, format!("pattern `{pattern}` does not compile: {e}"))),
    }
}

/// Builds the CI match of grant number `i` named `name`: the issuer must be configured, and a
/// subject or a claim must narrow it. Adds a warning when a stranger's token on the same
/// platform would match.
fn ci_match(
    check: &Checker<'_>,
    (i, name): (usize, &str),
    m: &file::MatchSection,
    cx: &mut GrantContext<'_>,
) -> Result<CiMatch, ConfigError> {
    let key = |k: &str| format!("grant[{i}].match.{k}");
    let issuer = m.issuer.clone().unwrap_or_default();
    let config = cx
        .issuers
        .iter()
        .find(|o| o.verify.issuer == issuer)
        .ok_or_else(|| {
            check.invalid(
                key("issuer"),
                format!("`{issuer}` is not a configured [[oidc_issuer]]"),
            )
        })?;
    if m.subject.is_none() && m.claims.is_empty() {
        return Err(check.invalid(
            key("issuer"),
            "a CI grant must also match `subject` or `claims`: the issuer alone trusts every job of every tenant",
        ));
    }
    let subject = m
        .subject
        .as_ref()
        .map(|t| match_value(check, &key("subject"), t))
        .transpose()?;
    let claims = m
        .claims
        .iter()
        .map(|(name, t)| {
            Ok((
                name.clone(),
                match_value(check, &key(&format!("claims.{name}")), t)?,
            ))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let profile = config.verify.profile;
    let exact = |v: &MatchValue| matches!(v, MatchValue::Exact(_));
    let pinned = subject.as_ref().is_some_and(exact)
        || claims
            .iter()
            .any(|(name, v)| profile.tenant_claims().contains(&name.as_str()) && exact(v));
    if !pinned {
        let message = format!(
            "trusts wildcard CI identities: neither `subject` nor a tenant claim ({}) is matched \
             exactly, so a token from `{issuer}` with subject `{}` (any repository of any owner) \
             could match; pin the owner or repository, preferably by its *_id claim",
            profile.tenant_claims().join(", "),
            profile.stranger_subject(),
        );
        cx.warnings.push(format!(
            "{}: grant[{i}] `{name}` {message}",
            check.file.display()
        ));
        cx.lint.push(GrantWarning {
            grant: name.to_owned(),
            message,
        });
    }
    Ok(CiMatch {
        issuer,
        subject,
        claims,
    })
}
