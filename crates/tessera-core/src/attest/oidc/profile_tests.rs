//! Platform shapes (`standards.md` §8.2–8.7): GitHub `repo:OWNER/REPO:…` (with `%3A` escaping and
//! the immutable `OWNER@ID/REPO@ID` form) and its repository claims, GitLab `project_path:…`,
//! Kubernetes `system:serviceaccount:…` matching `kubernetes.io`, and generic.

use serde_json::{Map, Value, json};

use super::*;

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn github_claims() -> Value {
    json!({"repository": "octo-org/octo-repo", "repository_owner": "octo-org", "run_id": "42"})
}

fn gitlab_claims() -> Value {
    json!({"project_path": "group/project", "pipeline_id": 1234})
}

fn k8s_claims() -> Value {
    json!({"kubernetes.io": {
        "namespace": "payments",
        "serviceaccount": {"name": "deployer", "uid": "sa-uid"},
        "pod": {"name": "deployer-7f9", "uid": "pod-uid"},
    }})
}

struct Case {
    name: &'static str,
    profile: Profile,
    sub: &'static str,
    claims: Value,
    /// `Ok(run id)`, or `Err(a phrase of the refusal's reason)`.
    want: Result<Option<&'static str>, &'static str>,
}

fn with(mut claims: Value, f: impl FnOnce(&mut Map<String, Value>)) -> Value {
    f(claims.as_object_mut().unwrap());
    claims
}

fn cases() -> Vec<Case> {
    use Profile::*;
    let case = |name, profile, sub, claims, want| Case {
        name,
        profile,
        sub,
        claims,
        want,
    };
    vec![
        case(
            "a_github_branch_sub_is_accepted_with_its_run_id",
            Github,
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            github_claims(),
            Ok(Some("42")),
        ),
        case(
            "a_github_environment_sub_with_an_escaped_colon_is_accepted",
            Github,
            "repo:octo-org/octo-repo:environment:prod%3Aeu",
            github_claims(),
            Ok(Some("42")),
        ),
        case(
            "a_github_pull_request_sub_is_accepted",
            Github,
            "repo:octo-org/octo-repo:pull_request",
            github_claims(),
            Ok(Some("42")),
        ),
        case(
            "the_immutable_github_sub_with_owner_and_repo_ids_is_accepted",
            Github,
            "repo:octo-org@1001/octo-repo@2002:ref:refs/tags/v1",
            github_claims(),
            Ok(Some("42")),
        ),
        case(
            "a_numeric_github_run_id_is_read_as_text",
            Github,
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            with(github_claims(), |c| {
                drop(c.insert("run_id".into(), json!(42)))
            }),
            Ok(Some("42")),
        ),
        case(
            "a_github_sub_without_the_repo_prefix_is_refused",
            Github,
            "octo-org/octo-repo:ref:refs/heads/main",
            github_claims(),
            Err("does not start with `repo:`"),
        ),
        case(
            "a_github_sub_without_a_context_is_refused",
            Github,
            "repo:octo-org/octo-repo",
            github_claims(),
            Err("is not `repo:<owner>/<repo>:<context>`"),
        ),
        case(
            "a_github_sub_naming_an_owner_without_a_repo_is_refused",
            Github,
            "repo:octo-org:ref:refs/heads/main",
            github_claims(),
            Err("is not `repo:<owner>/<repo>:<context>`"),
        ),
        case(
            "a_github_sub_with_an_empty_owner_is_refused",
            Github,
            "repo:/octo-repo:ref:refs/heads/main",
            github_claims(),
            Err("is not `repo:<owner>/<repo>:<context>`"),
        ),
        case(
            "a_github_sub_with_an_empty_context_is_refused",
            Github,
            "repo:octo-org/octo-repo:",
            github_claims(),
            Err("is not `repo:<owner>/<repo>:<context>`"),
        ),
        case(
            "a_github_token_without_repository_is_refused",
            Github,
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            with(github_claims(), |c| drop(c.remove("repository"))),
            Err("claim `repository` is missing"),
        ),
        case(
            "a_github_token_with_an_empty_repository_owner_is_refused",
            Github,
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            with(github_claims(), |c| {
                drop(c.insert("repository_owner".into(), json!("")))
            }),
            Err("claim `repository_owner` is missing"),
        ),
        case(
            "a_gitlab_sub_is_accepted_with_its_pipeline",
            Gitlab,
            "project_path:group/project:ref_type:branch:ref:main",
            gitlab_claims(),
            Ok(Some("1234")),
        ),
        case(
            "a_gitlab_sub_without_project_path_is_refused",
            Gitlab,
            "repo:group/project:ref_type:branch:ref:main",
            gitlab_claims(),
            Err("does not start with `project_path:`"),
        ),
        case(
            "a_gitlab_token_without_the_project_path_claim_is_refused",
            Gitlab,
            "project_path:group/project:ref_type:branch:ref:main",
            with(gitlab_claims(), |c| drop(c.remove("project_path"))),
            Err("claim `project_path` is missing"),
        ),
        case(
            "a_kubernetes_sub_matching_its_claims_is_accepted_with_the_pod_uid",
            Kubernetes,
            "system:serviceaccount:payments:deployer",
            k8s_claims(),
            Ok(Some("pod-uid")),
        ),
        case(
            "a_kubernetes_token_without_a_pod_has_no_run_id",
            Kubernetes,
            "system:serviceaccount:payments:deployer",
            with(k8s_claims(), |c| {
                drop(c["kubernetes.io"].as_object_mut().unwrap().remove("pod"))
            }),
            Ok(None),
        ),
        case(
            "a_kubernetes_sub_of_another_namespace_is_refused",
            Kubernetes,
            "system:serviceaccount:kube-system:deployer",
            k8s_claims(),
            Err("of its claims"),
        ),
        case(
            "a_kubernetes_sub_of_another_service_account_is_refused",
            Kubernetes,
            "system:serviceaccount:payments:default",
            k8s_claims(),
            Err("of its claims"),
        ),
        case(
            "a_kubernetes_token_without_kubernetes_io_is_refused",
            Kubernetes,
            "system:serviceaccount:payments:deployer",
            json!({}),
            Err("claim `kubernetes.io` is missing"),
        ),
        case(
            "a_kubernetes_token_without_a_namespace_is_refused",
            Kubernetes,
            "system:serviceaccount:payments:deployer",
            with(k8s_claims(), |c| {
                drop(
                    c["kubernetes.io"]
                        .as_object_mut()
                        .unwrap()
                        .remove("namespace"),
                )
            }),
            Err("`kubernetes.io.namespace` is missing"),
        ),
        case(
            "a_kubernetes_token_without_a_service_account_name_is_refused",
            Kubernetes,
            "system:serviceaccount:payments:deployer",
            with(k8s_claims(), |c| {
                drop(
                    c["kubernetes.io"]["serviceaccount"]
                        .as_object_mut()
                        .unwrap()
                        .remove("name"),
                )
            }),
            Err("`kubernetes.io.serviceaccount.name` is missing"),
        ),
        case(
            "a_generic_token_accepts_any_sub_and_has_no_run_id",
            Generic,
            "anything at all",
            json!({"run_id": "42"}),
            Ok(None),
        ),
    ]
}

#[test]
fn each_platform_shape_rule_refuses_its_violation_and_nothing_else() {
    for case in cases() {
        let got = case.profile.check(case.sub, &object(case.claims));
        match (case.want, got) {
            (Ok(run_id), Ok(got)) => assert_eq!(got.as_deref(), run_id, "{}", case.name),
            (Err(phrase), Err(OidcError::Profile { profile, reason })) => {
                assert_eq!(profile, case.profile, "{}", case.name);
                assert!(reason.contains(phrase), "{}: reason `{reason}`", case.name);
            }
            (want, got) => panic!("{}: want {want:?}, got {got:?}", case.name),
        }
    }
}

#[test]
fn profiles_parse_from_their_names_and_print_them() {
    for p in [
        Profile::Github,
        Profile::Gitlab,
        Profile::Kubernetes,
        Profile::Generic,
    ] {
        assert_eq!(p.to_string().parse::<Profile>(), Ok(p));
    }
    assert!("GitHub".parse::<Profile>().is_err());
}

#[test]
fn the_stranger_subject_of_each_platform_passes_its_shape_check() {
    // Config load warns about grants that would accept these; they must look genuine.
    let claims = [
        (Profile::Github, github_claims()),
        (Profile::Gitlab, gitlab_claims()),
        (
            Profile::Kubernetes,
            json!({"kubernetes.io": {"namespace": "zz-stranger", "serviceaccount": {"name": "default"}}}),
        ),
        (Profile::Generic, json!({})),
    ];
    for (profile, claims) in claims {
        assert!(
            profile
                .check(profile.stranger_subject(), &object(claims))
                .is_ok(),
            "{profile}"
        );
    }
}
