//! The rules of `agent.toml`, each with the refusal it gets.

use super::*;

const EXAMPLE: &str = include_str!("../../agent.example.toml");

fn parse(text: &str) -> Result<AgentConfig, AgentConfigError> {
    AgentConfig::parse(Path::new("/etc/tessera/agent.toml"), text, None)
}

fn minimal(attest: &str, credential: &str) -> String {
    format!(
        "[broker]\ngrpc = \"https://b:8443\"\nca = \"ca.pem\"\n[attest]\n{attest}\n[[credential]]\n{credential}\n"
    )
}

const JWT: &str = "kind = \"jwt\"\ndestination = \"https://d\"\npurpose = \"p\"\nfile = \"t.jwt\"";

fn refusal(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_example_file_parses_with_every_key_it_shows() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.credentials.len(), 2);
    assert_eq!(c.broker.ca, Path::new("/etc/tessera/certs-dev/tls-ca.pem"));
    assert!(matches!(c.attest, Attest::SvidFiles { .. }));
    let audit = &c.credentials[1];
    assert!(matches!(
        audit.output,
        Output::X509 {
            bundle: Some(_),
            ..
        }
    ));
    let signal = EXAMPLE
        .replace("# signal = ", "signal = ")
        .replace("# pid_file", "pid_file");
    let sent = parse(&signal).unwrap().credentials[1]
        .after_renewal
        .signal
        .clone();
    assert_eq!(
        sent,
        Some((Signal::Hup, PathBuf::from("/run/audit-client.pid")))
    );
    assert_eq!(c.credentials[0].request.ttl, Some(Duration::from_secs(300)));
    // Every key of every table appears in the example (commented or not).
    for key in [
        "grpc",
        "ca",
        "server_name",
        "x509_svid_cert",
        "x509_svid_key",
        "workload_api",
        "token_file",
        "addr",
        "name",
        "kind",
        "destination",
        "purpose",
        "ttl",
        "file",
        "command",
        "cert_file",
        "key_file",
        "bundle_file",
        "signal",
        "pid_file",
    ] {
        assert!(
            EXAMPLE.contains(&format!("{key} = ")),
            "the example lacks `{key}`"
        );
    }
}

#[test]
fn an_unknown_key_is_refused_naming_it() {
    let text = minimal("token_file = \"t\"", &format!("{JWT}\nrenew_at = 0.5"));
    assert!(refusal(&text).contains("renew_at"));
}

#[test]
fn exactly_one_way_to_attest_is_required() {
    let none = minimal("", JWT);
    assert!(refusal(&none).contains("exactly one"));
    let two = minimal("token_file = \"t\"\nworkload_api = \"unix:///s\"", JWT);
    assert!(refusal(&two).contains("exactly one"));
    let half = minimal("x509_svid_cert = \"c.pem\"", JWT);
    assert!(refusal(&half).contains("both x509_svid_cert and x509_svid_key"));
}

#[test]
fn workload_api_env_reads_spiffe_endpoint_socket_and_fails_without_it() {
    let text = minimal("workload_api = \"env\"", JWT);
    assert!(refusal(&text).contains("SPIFFE_ENDPOINT_SOCKET is not set"));
    let c = AgentConfig::parse(
        Path::new("a.toml"),
        &text,
        Some("unix:///run/a.sock".into()),
    )
    .unwrap();
    assert_eq!(c.attest, Attest::WorkloadApi("unix:///run/a.sock".into()));
    assert!(refusal(&minimal("workload_api = \"tcp://x\"", JWT)).contains("unix:///path"));
}

#[test]
fn each_kind_names_its_own_files() {
    let jwt_with_cert = format!("{JWT}\ncert_file = \"c.pem\"");
    assert!(refusal(&minimal("token_file = \"t\"", &jwt_with_cert)).contains("credential[0].file"));
    let x509_without_key =
        "kind = \"x509\"\ndestination = \"d\"\npurpose = \"p\"\ncert_file = \"c\"";
    assert!(refusal(&minimal("token_file = \"t\"", x509_without_key)).contains("key_file"));
    let bad_kind = JWT.replace("\"jwt\"", "\"ssh\"");
    assert!(refusal(&minimal("token_file = \"t\"", &bad_kind)).contains("not jwt or x509"));
}

#[test]
fn a_bad_destination_ttl_or_signal_is_refused_naming_the_credential() {
    let dest = JWT.replace("https://d", "");
    assert!(refusal(&minimal("token_file = \"t\"", &dest)).contains("credential[0].destination"));
    let ttl = format!("{JWT}\nttl = \"soon\"");
    assert!(refusal(&minimal("token_file = \"t\"", &ttl)).contains("credential[0].ttl"));
    let signal = format!("{JWT}\nsignal = \"SIGKILL\"\npid_file = \"p\"");
    assert!(refusal(&minimal("token_file = \"t\"", &signal)).contains("SIGHUP, SIGUSR1, SIGUSR2"));
    let alone = format!("{JWT}\nsignal = \"SIGHUP\"");
    assert!(refusal(&minimal("token_file = \"t\"", &alone)).contains("go together"));
}

#[test]
fn no_credential_or_one_file_written_twice_is_refused() {
    let text = "[broker]\ngrpc = \"https://b\"\nca = \"ca.pem\"\n[attest]\ntoken_file = \"t\"\n";
    assert!(refusal(text).contains("at least one"));
    let twice = minimal(
        "token_file = \"t\"",
        &format!("{JWT}\n[[credential]]\n{JWT}"),
    );
    assert!(refusal(&twice).contains("written twice"));
}
