//! The `tessera` binary: `serve`, the operator commands, `bench`, `dev certs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod agent;
mod audit;
mod evidence;
mod grants;
mod huge_pages;
mod ledger;
mod ops;
mod review;

use clap::{Parser, Subcommand};
use tessera_core::clock::{Clock, SharedClock, SystemClock};
use tessera_server::config::Config;
use tessera_testkit::dev::DevMaterial;

/// The allocator of the binary's Rust code: mimalloc, which costs redb's page buffers (a fresh
/// 4 KiB one for each page a ledger commit dirties) and the request path less than glibc's
/// malloc (BENCHMARKS.md, issue 16). aws-lc's C code still allocates with malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tessera: short-lived credentials for attested workloads.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Keeps a workload's credentials fresh in files (see agent.example.toml).
    Agent {
        /// Agent configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs the broker.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, conflicts_with = "dev")]
        config: Option<PathBuf>,
        /// Uses the committed dev material: `certs-dev/tessera.toml`, ledger in `tessera-data/`.
        #[arg(long)]
        dev: bool,
    },
    /// Checks a configuration as start-up does (keys, bundles, the mint CA self-test, TLS) and
    /// exits, binding nothing and opening no ledger.
    Check {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Exchanges a CI OIDC token (or JWT-SVID) for a credential (RFC 8693) and prints it.
    Exchange {
        /// Broker HTTPS base URL, e.g. https://tessera.example.org:8444.
        #[arg(long)]
        server: String,
        /// File holding the subject token.
        #[arg(
            long,
            conflicts_with = "token_env",
            required_unless_present = "token_env"
        )]
        token_file: Option<PathBuf>,
        /// Environment variable holding the subject token.
        #[arg(long)]
        token_env: Option<String>,
        /// Destination (the minted token's `aud`).
        #[arg(long)]
        destination: String,
        /// Purpose (the minted token's `scope`).
        #[arg(long)]
        purpose: String,
        /// Extra root CA (PEM) for reaching the broker.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Revokes credentials by one selector (admin).
    Revoke {
        #[command(flatten)]
        selector: ops::SelectorArgs,
        /// Why (recorded with the rule).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        connection: ops::Connection,
    },
    /// Makes the broker read its configuration file again, as SIGHUP does (admin): prints the
    /// generation now in force, what was offboarded and what needs a restart.
    Reload {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ops::Connection,
    },
    /// Revocations: the evidence that access is gone (admin).
    Revocation {
        #[command(subcommand)]
        command: RevocationCommand,
    },
    /// Lists credentials, newest first (admin).
    Ls {
        #[command(flatten)]
        filters: ops::ListArgs,
        #[command(flatten)]
        connection: ops::Connection,
    },
    /// Lists the grants in force with their owners, usage, live credentials and what they
    /// allow but never issued (admin).
    Grants {
        /// Print JSON lines (one object per grant).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ops::Connection,
    },
    /// Reviews the grants: unused ones, parts never used, expiring or expired ones, CI grants
    /// that trust too widely, owners with nothing live (admin). Exits 1 when it finds
    /// something, 0 on a clean review, 2 when it cannot review.
    Review {
        #[command(flatten)]
        options: review::ReviewArgs,
        #[command(flatten)]
        connection: ops::Connection,
    },
    /// Prints events (issued, revoked, expired) as they happen (admin).
    Watch {
        /// Replay events after this sequence first (0: all retained).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ops::Connection,
    },
    /// Open-loop load generator against a running broker (or the peer in `bench/peer/`),
    /// with the crypto ceiling measured in the same run.
    #[cfg(feature = "bench")]
    Bench(Box<tessera_bench::BenchArgs>),
    /// Ledger maintenance: PostgreSQL schema migrations, moving an embedded ledger there.
    Ledger {
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Development helpers.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RevocationCommand {
    /// Shows a rule, what it covered, until when access could last, and who enforced it.
    Show {
        /// The revocation id (from `tessera revoke` or a watch stream).
        id: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ops::Connection,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks the hash chain of an audit log; names the first broken line.
    Verify {
        /// The audit log (JSON lines).
        file: PathBuf,
        /// The broker's configuration: also check the file against the line its ledger
        /// anchored (detects lines deleted from the end). An embedded ledger must not be in
        /// use by a running broker.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Regenerates every dev key and certificate, and the dev config.
    Certs {
        /// Output directory.
        #[arg(long, default_value = "certs-dev")]
        out: PathBuf,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn main() -> ExitCode {
    // First, before the heap grows, so that none of it is faulted in as huge pages.
    let huge_pages = huge_pages::disable();
    init_logging();
    if let Err(e) = huge_pages {
        tracing::warn!(error = %e, "turning transparent huge pages off failed: running with them");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        // Its own exit codes: 1 means findings, 2 an error.
        Command::Review {
            options,
            connection,
        } => return review::run(connection, options),
        Command::Grants { json, connection } => grants::list(connection, json),
        Command::Serve { config, dev } => serve(config, dev),
        Command::Agent { config } => agent(&config),
        Command::Check { config } => check(&config),
        #[cfg(feature = "bench")]
        Command::Bench(args) => tessera_bench::run(&args).map_err(|e| e.to_string()),
        Command::Dev {
            command: DevCommand::Certs { out },
        } => dev_certs(&out),
        Command::Ledger { command } => ledger::run(command).map_err(|e| e.to_string()),
        Command::Audit {
            command: AuditCommand::Verify { file, config },
        } => audit::verify(&file, config),
        Command::Revoke {
            selector,
            reason,
            connection,
        } => ops::revoke(connection, selector, reason),
        Command::Revocation {
            command:
                RevocationCommand::Show {
                    id,
                    json,
                    connection,
                },
        } => evidence::show(connection, id, json),
        Command::Reload { json, connection } => ops::reload(connection, json),
        Command::Ls {
            filters,
            connection,
        } => ops::ls(connection, filters),
        Command::Watch {
            since,
            json,
            connection,
        } => ops::watch(connection, since, json),
        Command::Exchange {
            server,
            token_file,
            token_env,
            destination,
            purpose,
            ca,
        } => exchange(ExchangeParams {
            server,
            token_file,
            token_env,
            destination,
            purpose,
            ca,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tessera: {message}");
            ExitCode::FAILURE
        }
    }
}

fn dev_certs(out: &std::path::Path) -> Result<(), String> {
    let now = time::OffsetDateTime::from_unix_timestamp(SystemClock.unix_seconds())
        .map_err(|e| e.to_string())?;
    let material = DevMaterial::generate(now).map_err(|e| e.to_string())?;
    let written = material
        .write(out)
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `tessera check`: prints what the configuration holds and its warnings, or why it does not
/// load (naming the file and key), as `serve` would refuse it. Trust domains whose bundles come
/// from a Workload API are checked with the bundles it sends now.
fn check(path: &std::path::Path) -> Result<(), String> {
    let clock: SharedClock = Arc::new(SystemClock);
    let mut config = Config::load(path, clock.as_ref()).map_err(|e| e.to_string())?;
    if !config.workload_api.is_empty() {
        let runtime =
            tokio::runtime::Runtime::new().map_err(|e| format!("starting the runtime: {e}"))?;
        config = runtime
            .block_on(tessera_server::workload_api::configure_once(&config))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    tessera_server::server::check(&config, &clock)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "{}: ok ({} grants, {} trust domains, {} OIDC issuers, {} admins)",
        path.display(),
        config.grants.len(),
        config.trust_domains.len(),
        config.oidc_issuers.len(),
        config.admin_ids.len()
    );
    Ok(())
}

fn agent(config: &std::path::Path) -> Result<(), String> {
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("starting the runtime: {e}"))?;
    let clock: SharedClock = Arc::new(SystemClock);
    runtime
        .block_on(agent::run(config, clock))
        .map_err(|e| e.to_string())
}

fn serve(config: Option<PathBuf>, dev: bool) -> Result<(), String> {
    let path = match (config, dev) {
        (Some(path), false) => path,
        (None, true) => PathBuf::from("certs-dev/tessera.toml"),
        _ => {
            return Err(
                "say which configuration to use: `serve --config FILE` or `serve --dev`".into(),
            );
        }
    };
    if dev && !path.exists() {
        return Err(format!(
            "{} not found: run from the repository root, or regenerate it with `tessera dev certs`",
            path.display()
        ));
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let config = Config::load(&path, clock.as_ref()).map_err(|e| e.to_string())?;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        // Listened for before start-up: SIGHUP's default action ends the process.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let server = tessera_server::server::start(config, clock)
            .await
            .map_err(|e| e.to_string())?;
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        match hangup {
            Ok(hangup) => {
                tokio::spawn(reload_on_hangup(hangup, server.reloader()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reload with `tessera reload`")
            }
        }
        server.wait().await.map_err(|e| e.to_string())
    })
}

/// Reloads the configuration on every SIGHUP; a refused reload is logged and audited by the
/// reloader, and the configuration in force keeps serving.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    reloader: std::sync::Arc<tessera_server::reload::Reloader>,
) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        // Errors are logged and audited by the reloader.
        let _ = reloader.reload("SIGHUP").await;
    }
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Arguments of `tessera exchange`.
struct ExchangeParams {
    server: String,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    destination: String,
    purpose: String,
    ca: Option<PathBuf>,
}

/// Posts an RFC 8693 exchange to `<server>/token` and prints the access token; fails with the
/// server's OAuth error description, or why the request could not be made.
fn exchange(p: ExchangeParams) -> Result<(), String> {
    let token = match (&p.token_file, &p.token_env) {
        (Some(path), _) => {
            std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?
        }
        (None, Some(var)) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
        }
        (None, None) => return Err("give --token-file or --token-env".into()),
    };
    let roots = match &p.ca {
        Some(path) => tessera_core::keys::certificates(path).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let exchanged = runtime
        .block_on(tessera_client::exchange::exchange(
            tessera_client::exchange::ExchangeParams {
                server: &p.server,
                roots: &roots,
                subject_token: &token,
                destination: &p.destination,
                purpose: &p.purpose,
            },
        ))
        .map_err(|e| e.to_string())?;
    println!("{}", exchanged.access_token);
    Ok(())
}
