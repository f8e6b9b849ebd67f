//! Operator commands: `tessera revoke`, `tessera ls`, `tessera watch` — gRPC over mTLS with an
//! admin X509-SVID (dev defaults from `certs-dev/`).

use std::path::PathBuf;

use clap::Args;
use futures::StreamExt;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{ListCredentialsRequest, RevokeRequest, WatchEventsRequest};
use tonic::transport::Channel;

/// How to reach the broker as an admin.
#[derive(Debug, Args)]
pub struct Connection {
    /// Broker gRPC URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    server: String,
    /// Admin X509-SVID certificate (PEM).
    #[arg(long, default_value = "certs-dev/admin.pem")]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, default_value = "certs-dev/admin-key.pem")]
    key: PathBuf,
    /// CA of the broker's TLS certificate (PEM).
    #[arg(long, default_value = "certs-dev/tls-ca.pem")]
    ca: PathBuf,
    /// Name the broker's certificate is checked against.
    #[arg(long, default_value = "localhost")]
    server_name: String,
}

/// What to revoke: exactly one selector.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SelectorArgs {
    #[arg(long)]
    credential_id: Option<String>,
    #[arg(long)]
    workload: Option<String>,
    #[arg(long)]
    destination: Option<String>,
    #[arg(long)]
    purpose: Option<String>,
    #[arg(long)]
    owner: Option<String>,
    /// A grant's name, or part of it: `NAME/destination=D`, `NAME/purpose=P`, `NAME/kind=jwt`.
    #[arg(long)]
    grant: Option<String>,
}

/// Filters of `tessera ls`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, default_value = "")]
    workload: String,
    #[arg(long, default_value = "")]
    owner: String,
    #[arg(long, default_value = "")]
    destination: String,
    #[arg(long, default_value = "")]
    purpose: String,
    /// The grant the credentials were minted under.
    #[arg(long, default_value = "")]
    grant: String,
    /// jwt or x509.
    #[arg(long, default_value = "")]
    kind: String,
    /// live, revoked or expired.
    #[arg(long, default_value = "")]
    status: String,
    /// Most rows to show.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) type Result<T> = std::result::Result<T, String>;

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

pub(crate) async fn connect(c: &Connection) -> Result<AdminClient<Channel>> {
    let channel = tessera_client::mint::connect(tessera_client::mint::ConnectParams {
        url: c.server.clone(),
        ca_pem: read(&c.ca)?,
        server_name: c.server_name.clone(),
        identity: Some((read(&c.cert)?, read(&c.key)?)),
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(AdminClient::new(channel))
}

pub(crate) fn status(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// `tessera revoke`: prints the revocation id, its sequence and how many credentials it covers.
pub fn revoke(c: Connection, s: SelectorArgs, reason: String) -> Result<()> {
    let selector = match s {
        SelectorArgs {
            credential_id: Some(v),
            ..
        } => Selector::CredentialId(v),
        SelectorArgs {
            workload: Some(v), ..
        } => Selector::Workload(v),
        SelectorArgs {
            destination: Some(v),
            ..
        } => Selector::Destination(v),
        SelectorArgs {
            purpose: Some(v), ..
        } => Selector::Purpose(v),
        SelectorArgs { owner: Some(v), .. } => Selector::Owner(v),
        SelectorArgs { grant: Some(v), .. } => Selector::Grant(v),
        _ => {
            return Err(
                "give one of --credential-id, --workload, --destination, --purpose, --owner, \
                 --grant"
                    .into(),
            );
        }
    };
    runtime()?.block_on(async {
        let mut admin = connect(&c).await?;
        let reply = admin
            .revoke(RevokeRequest {
                selector: Some(selector),
                reason,
            })
            .await
            .map_err(status)?
            .into_inner();
        println!(
            "revoked: revocation_id={} sequence={} credentials_revoked={}",
            reply.revocation_id, reply.sequence, reply.credentials_revoked
        );
        Ok(())
    })
}

/// `tessera ls`: a table (or JSON lines) of credentials, newest first.
pub fn ls(c: Connection, a: ListArgs) -> Result<()> {
    runtime()?.block_on(async {
        let mut admin = connect(&c).await?;
        let mut request = ListCredentialsRequest {
            workload: a.workload,
            owner: a.owner,
            destination: a.destination,
            purpose: a.purpose,
            grant: a.grant,
            kind: a.kind,
            status: a.status,
            page_size: a.limit.min(1000),
            page_token: String::new(),
        };
        if !a.json {
            let header = [
                "CREDENTIAL",
                "KIND",
                "STATUS",
                "EXPIRES",
                "OWNER",
                "GRANT",
                "WORKLOAD",
                "DESTINATION",
                "PURPOSE",
            ];
            println!(
                "{:<34} {:<4} {:<8} {:<20} {:<16} {:<16} {:<44} {:<28} {}",
                header[0],
                header[1],
                header[2],
                header[3],
                header[4],
                header[5],
                header[6],
                header[7],
                header[8]
            );
        }
        let mut shown = 0;
        loop {
            let page = admin
                .list_credentials(request.clone())
                .await
                .map_err(status)?
                .into_inner();
            for cred in &page.credentials {
                if shown == a.limit {
                    return Ok(());
                }
                shown += 1;
                if a.json {
                    println!("{}", credential_json(cred));
                } else {
                    let expires = time::OffsetDateTime::from_unix_timestamp(cred.expires_at)
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    let expires: String = expires.chars().take(19).collect();
                    println!(
                        "{:<34} {:<4} {:<8} {:<20} {:<16} {:<16} {:<44} {:<28} {}",
                        cred.credential_id,
                        cred.kind,
                        cred.status,
                        expires,
                        cred.owner,
                        cred.grant,
                        cred.workload,
                        cred.destination,
                        cred.purpose
                    );
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(());
            }
            request.page_token = page.next_page_token;
        }
    })
}

fn credential_json(c: &tessera_proto::Credential) -> serde_json::Value {
    serde_json::json!({
        "credential_id": c.credential_id, "kind": c.kind, "workload": c.workload, "owner": c.owner,
        "destination": c.destination, "purpose": c.purpose, "issued_at": c.issued_at,
        "expires_at": c.expires_at, "status": c.status, "grant": c.grant,
    })
}

/// `tessera watch`: prints events as they happen (after replaying those after `since`).
pub fn watch(c: Connection, since: u64, json: bool) -> Result<()> {
    runtime()?.block_on(async {
        let mut admin = connect(&c).await?;
        let mut stream = admin
            .watch_events(WatchEventsRequest {
                since_sequence: since,
            })
            .await
            .map_err(status)?
            .into_inner();
        while let Some(event) = stream.next().await {
            let e = event.map_err(status)?;
            if json {
                let value = serde_json::json!({
                    "sequence": e.sequence, "kind": e.kind, "at": e.at,
                    "credential": e.credential.as_ref().map(credential_json),
                    "revocation": e.revocation.as_ref().map(|r| serde_json::json!({
                        "revocation_id": r.revocation_id, "selector": r.selector, "value": r.value,
                        "effective_at": r.effective_at, "effective_at_ms": r.effective_at_ms,
                        "reason": r.reason})),
                });
                println!("{value}");
            } else if let Some(r) = &e.revocation {
                println!(
                    "#{} revoked  {}={} ({}) id={}",
                    e.sequence, r.selector, r.value, r.reason, r.revocation_id
                );
            } else if let Some(cred) = &e.credential {
                println!(
                    "#{} {:<8} {} {} {} -> {} [{}]",
                    e.sequence,
                    e.kind,
                    cred.kind,
                    cred.credential_id,
                    cred.workload,
                    cred.destination,
                    cred.purpose
                );
            }
        }
        Ok(())
    })
}

/// `tessera reload`: asks the broker to reload its configuration file; prints the generation
/// in force, what was offboarded and what needs a restart (one JSON object with `json`).
/// Fails with the broker's reason when the file is invalid (nothing changed then).
pub fn reload(c: Connection, json: bool) -> Result<()> {
    runtime()?.block_on(async {
        let mut admin = connect(&c).await?;
        let reply = admin
            .reload(tessera_proto::ReloadRequest {})
            .await
            .map_err(status)?
            .into_inner();
        if json {
            let offboarded: Vec<_> = reply
                .offboarded
                .iter()
                .map(|o| {
                    serde_json::json!({"grant": o.grant, "reason": o.reason,
                    "revocation_id": o.revocation_id, "credentials_revoked": o.credentials_revoked})
                })
                .collect();
            let out = serde_json::json!({"generation": reply.generation, "offboarded": offboarded,
                "restart_required": reply.restart_required, "warnings": reply.warnings});
            println!("{out}");
            return Ok(());
        }
        println!("configuration reloaded: generation {}", reply.generation);
        for o in &reply.offboarded {
            println!(
                "revoked {} ({} live credentials, rule {}): {}",
                o.grant, o.credentials_revoked, o.revocation_id, o.reason
            );
        }
        for key in &reply.restart_required {
            println!("changed, applies at the next restart: {key}");
        }
        for warning in &reply.warnings {
            println!("warning: {warning}");
        }
        Ok(())
    })
}
