//! What each CI platform's tokens look like (`standards.md` §8). A profile checks the shape of
//! `sub` and the claims grants rely on, and names the run the token belongs to.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::OidcError;

/// The platform an issuer belongs to. Any profile may have any issuer URL (GitHub Enterprise,
/// self-hosted GitLab, every Kubernetes cluster has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    Github,
    Gitlab,
    Kubernetes,
    Generic,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Github => "github",
            Profile::Gitlab => "gitlab",
            Profile::Kubernetes => "kubernetes",
            Profile::Generic => "generic",
        })
    }
}

impl FromStr for Profile {
    type Err = String;

    /// Parses `github`, `gitlab`, `kubernetes` or `generic`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "github" => Ok(Profile::Github),
            "gitlab" => Ok(Profile::Gitlab),
            "kubernetes" => Ok(Profile::Kubernetes),
            "generic" => Ok(Profile::Generic),
            other => Err(format!(
                "`{other}` is not one of github, gitlab, kubernetes, generic"
            )),
        }
    }
}

fn string<'a>(claims: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    claims
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Profile {
    /// Checks `sub` and claims against the platform's format; returns the run id (GitHub
    /// `run_id`, GitLab `pipeline_id`, Kubernetes pod uid) when there is one.
    pub fn check(
        self,
        sub: &str,
        claims: &Map<String, Value>,
    ) -> Result<Option<String>, OidcError> {
        let fail = |reason: &str| OidcError::Profile {
            profile: self,
            reason: reason.to_owned(),
        };
        match self {
            Profile::Github => {
                // repo:OWNER/REPO:..., or the immutable repo:OWNER@ID/REPO@ID:... form.
                let rest = sub
                    .strip_prefix("repo:")
                    .ok_or_else(|| fail("sub does not start with `repo:`"))?;
                // `:` inside values is escaped as `%3A`, so the first `:` ends `<owner>/<repo>`.
                let shaped = rest.split_once(':').is_some_and(|(repo, context)| {
                    let named = repo.split_once('/').is_some_and(|(owner, name)| {
                        !owner.is_empty() && !name.is_empty() && !name.contains('/')
                    });
                    named && !context.is_empty()
                });
                if !shaped {
                    return Err(fail("sub is not `repo:<owner>/<repo>:<context>`"));
                }
                for key in ["repository", "repository_owner"] {
                    string(claims, key)
                        .ok_or_else(|| fail(&format!("claim `{key}` is missing")))?;
                }
                Ok(claims.get("run_id").and_then(value_text))
            }
            Profile::Gitlab => {
                if !sub.starts_with("project_path:") {
                    return Err(fail("sub does not start with `project_path:`"));
                }
                string(claims, "project_path")
                    .ok_or_else(|| fail("claim `project_path` is missing"))?;
                Ok(claims.get("pipeline_id").and_then(value_text))
            }
            Profile::Kubernetes => {
                let k8s = claims.get("kubernetes.io").and_then(Value::as_object);
                let k8s = k8s.ok_or_else(|| fail("claim `kubernetes.io` is missing"))?;
                let namespace = string(k8s, "namespace")
                    .ok_or_else(|| fail("`kubernetes.io.namespace` is missing"))?;
                let sa = k8s.get("serviceaccount").and_then(Value::as_object);
                let sa = sa
                    .and_then(|s| string(s, "name"))
                    .ok_or_else(|| fail("`kubernetes.io.serviceaccount.name` is missing"))?;
                if sub != format!("system:serviceaccount:{namespace}:{sa}") {
                    return Err(fail(
                        "sub is not `system:serviceaccount:<namespace>:<name>` of its claims",
                    ));
                }
                let pod = k8s.get("pod").and_then(Value::as_object);
                Ok(pod.and_then(|p| string(p, "uid")).map(str::to_owned))
            }
            Profile::Generic => Ok(None),
        }
    }

    /// The claims that name a tenant (owner, project, namespace) on this platform: a grant that
    /// does not match one of them, or `sub`, exactly may trust strangers.
    pub fn tenant_claims(self) -> &'static [&'static str] {
        match self {
            Profile::Github => &[
                "repository_owner_id",
                "repository_id",
                "repository_owner",
                "repository",
            ],
            Profile::Gitlab => &[
                "namespace_id",
                "project_id",
                "namespace_path",
                "project_path",
            ],
            Profile::Kubernetes => &[
                "kubernetes.io.namespace",
                "kubernetes.io.serviceaccount.name",
            ],
            Profile::Generic => &[],
        }
    }

    /// A subject an attacker could obtain on this platform (their own repository, project or
    /// namespace), used at config load to warn about grants that would accept it.
    pub fn stranger_subject(self) -> &'static str {
        match self {
            Profile::Github => "repo:zz-stranger/zz-repo:ref:refs/heads/main",
            Profile::Gitlab => "project_path:zz-stranger/zz-project:ref_type:branch:ref:main",
            Profile::Kubernetes => "system:serviceaccount:zz-stranger:default",
            Profile::Generic => "zz-stranger",
        }
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
