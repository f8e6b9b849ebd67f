//! Opening a ledger file: creates missing tables, checks the schema version and upgrades
//! older files in one write transaction.
//!
//! Versions: 1 lacked the `issued` index; 2 lacked `live_counts` and `x509_expiry`.

use std::collections::HashMap;

use ::redb::{Database, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::{
    CREDENTIALS, EVENTS, EXPIRY, ISSUED, LAST_SEQUENCE_KEY, LIVE_COUNTS, META, REPLAY,
    REPLAY_EXPIRY, RULES, SCHEMA_VERSION, SCHEMA_VERSION_KEY, StorageContext, X509_EXPIRY, decode,
};
use crate::ledger::{COUNTED, CredentialKind, CredentialRecord, LedgerError};

const OP: &str = "initialising the ledger schema";

/// Creates the tables, checks the schema version (upgrading versions 1 and 2) and returns the
/// last event sequence. Fails with `Corrupt` on an unknown version or an undecodable record
/// met while upgrading, `Storage` when the file cannot be written.
pub(super) fn init_schema(db: &Database) -> Result<u64, LedgerError> {
    let txn = db.begin_write().ctx(OP)?;
    let last_sequence;
    {
        for table in [EXPIRY, REPLAY_EXPIRY, ISSUED, X509_EXPIRY] {
            txn.open_table(table).ctx(OP)?;
        }
        txn.open_table(REPLAY).ctx(OP)?;
        txn.open_table(RULES).ctx(OP)?;
        txn.open_table(EVENTS).ctx(OP)?;
        txn.open_table(LIVE_COUNTS).ctx(OP)?;
        let empty = txn.open_table(CREDENTIALS).ctx(OP)?.is_empty().ctx(OP)?;
        let mut meta = txn.open_table(META).ctx(OP)?;
        let found = meta.get(SCHEMA_VERSION_KEY).ctx(OP)?.map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {}
            Some(old @ (1 | 2)) => {
                upgrade(&txn, old)?;
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION).ctx(OP)?;
            }
            Some(other) => {
                return Err(LedgerError::Corrupt(format!(
                    "schema version {other} found, this build reads versions 1 to {SCHEMA_VERSION}"
                )));
            }
            None if empty => {
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION).ctx(OP)?;
            }
            None => {
                return Err(LedgerError::Corrupt(
                    "schema version missing from a ledger that holds records".to_owned(),
                ));
            }
        }
        last_sequence = meta
            .get(LAST_SEQUENCE_KEY)
            .ctx(OP)?
            .map_or(0, |v| v.value());
    }
    txn.commit().ctx(OP)?;
    Ok(last_sequence)
}

/// Brings a version `from` file to the current version inside `txn`: fills the indexes and
/// counts older versions lacked from the stored records. Reads every record once. Fails with
/// `Corrupt` on a record it cannot decode.
fn upgrade(txn: &WriteTransaction, from: u64) -> Result<(), LedgerError> {
    tracing::info!(
        from,
        to = SCHEMA_VERSION,
        "upgrading the ledger schema (reads every record once)"
    );
    let credentials = txn.open_table(CREDENTIALS).ctx(OP)?;
    let mut issued = txn.open_table(ISSUED).ctx(OP)?;
    let mut x509 = txn.open_table(X509_EXPIRY).ctx(OP)?;
    let mut counts: HashMap<(i64, u8, String), u64> = HashMap::new();
    for entry in credentials.iter().ctx(OP)? {
        let (id, bytes) = entry.ctx(OP)?;
        let record: CredentialRecord = decode("credential", bytes.value())?;
        let id = id.value();
        if from < 2 {
            issued.insert((record.issued_at, id), ()).ctx(OP)?;
        }
        if record.kind == CredentialKind::X509 {
            x509.insert((record.expires_at, id), ()).ctx(OP)?;
        }
        for selector in COUNTED {
            let key = (
                record.expires_at,
                selector.code(),
                selector.value_of(&record).to_owned(),
            );
            *counts.entry(key).or_default() += 1;
        }
    }
    let mut live_counts = txn.open_table(LIVE_COUNTS).ctx(OP)?;
    for ((expires_at, code, value), n) in counts {
        live_counts
            .insert((expires_at, code, value.as_str()), n)
            .ctx(OP)?;
    }
    Ok(())
}
