//! `tessera audit verify FILE [--config F]`: checks an audit log's hash chain and, given the
//! broker's configuration, that the file still ends at or after the line the ledger anchored
//! (lines deleted from the end leave a chain that verifies on its own).

use std::path::{Path, PathBuf};

use tessera_core::clock::SystemClock;
use tessera_server::audit::{check_anchor, log_id, verify as verify_chain};
use tessera_server::config::Config;
use tessera_server::metrics::Metrics;

/// Verifies `file`, and with `config` against the anchor its ledger holds; prints what was
/// checked. Fails naming the first broken line, a truncation, or why the ledger cannot be
/// read (an embedded ledger is locked while the broker runs).
pub fn verify(file: &Path, config: Option<PathBuf>) -> Result<(), String> {
    let shown = file.display();
    let lines = verify_chain(file).map_err(|e| format!("{shown}: {e}"))?;
    let Some(config) = config else {
        println!(
            "{shown}: chain intact, {lines} lines (not compared with the ledger: add --config)"
        );
        return Ok(());
    };
    let Some(log) = log_id(file).map_err(|e| format!("{shown}: {e}"))? else {
        println!("{shown}: empty");
        return Ok(());
    };
    let config = Config::load(&config, &SystemClock).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let anchor = runtime.block_on(async {
        let ledger = tessera_server::server::open_ledger(&config, &Metrics::new())
            .await
            .map_err(|e| format!("the ledger: {e}"))?;
        let anchor = ledger.audit_anchor(&log).await.map_err(|e| e.to_string());
        let _ = ledger.close().await;
        anchor
    })?;
    match anchor {
        Some(anchor) => {
            check_anchor(file, lines, &anchor).map_err(|e| format!("{shown}: {e}"))?;
            println!(
                "{shown}: chain intact, {lines} lines, up to the line the ledger anchored ({})",
                anchor.seq
            );
        }
        None => println!(
            "{shown}: chain intact, {lines} lines; the ledger holds no anchor for this log"
        ),
    }
    Ok(())
}
