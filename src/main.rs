//! The `tessera` binary: `serve`, `dev certs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tessera::clock::{Clock, SharedClock, SystemClock};
use tessera::config::Config;
use tessera::dev::DevMaterial;

/// Tessera: short-lived credentials for attested workloads.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the broker.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, conflicts_with = "dev")]
        config: Option<PathBuf>,
        /// Uses the committed dev material: `certs-dev/tessera.toml`, ledger in `tessera-data/`.
        #[arg(long)]
        dev: bool,
    },
    /// Development helpers.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
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
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, dev } => serve(config, dev),
        Command::Dev {
            command: DevCommand::Certs { out },
        } => dev_certs(&out),
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
        let server = tessera::server::start(config, clock)
            .await
            .map_err(|e| e.to_string())?;
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        server.wait().await.map_err(|e| e.to_string())
    })
}

async fn wait_for_signal() {
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
