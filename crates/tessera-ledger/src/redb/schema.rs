//! Opening a ledger file: creates missing tables, checks the schema version and upgrades
//! older files in one write transaction.
//!
//! Versions: 1 lacked the `issued` index; 2 lacked `live_counts` and `x509_expiry`, and kept
//! records and events as JSON (an `issued` or `expired` event copied its record); 3 keeps them
//! in the compact encoding of [`super::codec`]; up to 3, replay guards were also kept in a table
//! keyed by the guard alone, and 4 keeps them only by (expiry, key).

use std::collections::HashMap;
use std::ops::Bound;

use ::redb::{Database, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::codec;
use super::{
    CREDENTIALS, EVENTS, EXPIRED_CURSOR_ID, EXPIRY, ISSUED, LAST_SEQUENCE_KEY, LEGACY_REPLAY,
    LIVE_COUNTS, META, REPLAY_EXPIRY, RULES, SCHEMA_VERSION, SCHEMA_VERSION_KEY, STATUS_EXPIRY,
    StorageContext, X509_EXPIRY, decode,
};
use crate::{COUNTED, CredentialKind, CredentialRecord, Event, LedgerError};

const OP: &str = "initialising the ledger schema";

/// Creates the tables, checks the schema version (upgrading versions 1 to 3) and returns the
/// last event sequence. Fails with `Corrupt` on an unknown version or an undecodable record
/// met while upgrading, `Storage` when the file cannot be written.
pub(super) fn init_schema(db: &Database) -> Result<u64, LedgerError> {
    let txn = db.begin_write().ctx(OP)?;
    let last_sequence;
    {
        for table in [EXPIRY, REPLAY_EXPIRY, ISSUED, X509_EXPIRY, STATUS_EXPIRY] {
            txn.open_table(table).ctx(OP)?;
        }
        txn.open_table(RULES).ctx(OP)?;
        txn.open_table(EVENTS).ctx(OP)?;
        txn.open_table(LIVE_COUNTS).ctx(OP)?;
        txn.open_table(EXPIRED_CURSOR_ID).ctx(OP)?;
        super::signals::create_tables(&txn)?;
        super::acks::create_tables(&txn)?;
        super::anchors::create_tables(&txn)?;
        super::usage::create_tables(&txn)?;
        let empty = txn.open_table(CREDENTIALS).ctx(OP)?.is_empty().ctx(OP)?;
        let mut meta = txn.open_table(META).ctx(OP)?;
        let found = meta.get(SCHEMA_VERSION_KEY).ctx(OP)?.map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {}
            Some(old @ 1..=3) => {
                if old < 3 {
                    upgrade(&txn, old)?;
                }
                move_replay_guards(&txn)?;
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

/// Copies the replay guards of a schema 3 (or older) file into [`REPLAY_EXPIRY`], where every
/// guard its writer stored already is (it wrote both tables), and deletes the old table.
/// Fails with `Storage` when the file cannot be read or written.
fn move_replay_guards(txn: &WriteTransaction) -> Result<(), LedgerError> {
    tracing::info!(
        to = SCHEMA_VERSION,
        "upgrading the ledger schema (moves the replay guards to their table by expiry)"
    );
    {
        let legacy = txn.open_table(LEGACY_REPLAY).ctx(OP)?;
        let mut guards = txn.open_table(REPLAY_EXPIRY).ctx(OP)?;
        for entry in legacy.iter().ctx(OP)? {
            let (key, expires_at) = entry.ctx(OP)?;
            guards
                .insert((expires_at.value(), key.value()), ())
                .ctx(OP)?;
        }
    }
    txn.delete_table(LEGACY_REPLAY).ctx(OP)?;
    Ok(())
}

/// Records (or events) re-encoded per step of an upgrade.
const CHUNK: usize = 10_000;

/// Brings a version `from` file to the current version inside `txn`: re-encodes records and
/// events from JSON to the compact encoding (an `issued`/`expired` event then names its
/// credential instead of copying it) and fills the indexes and counts older versions lacked.
/// Reads every record and event once. Fails with `Corrupt` on one it cannot decode.
fn upgrade(txn: &WriteTransaction, from: u64) -> Result<(), LedgerError> {
    tracing::info!(
        from,
        to = SCHEMA_VERSION,
        "upgrading the ledger schema (reads every record once)"
    );
    let mut counts: HashMap<(i64, u8, String), u64> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let chunk = json_chunk(txn, after.as_deref())?;
        let Some((last, _)) = chunk.last() else { break };
        after = Some(last.clone());
        upgrade_records(txn, from, &chunk, &mut counts)?;
    }
    let mut live_counts = txn.open_table(LIVE_COUNTS).ctx(OP)?;
    for ((expires_at, code, value), n) in counts {
        live_counts
            .insert((expires_at, code, value.as_str()), n)
            .ctx(OP)?;
    }
    upgrade_events(txn)
}

/// Returns up to [`CHUNK`] stored (id, bytes) after `after`, in id order.
fn json_chunk(
    txn: &WriteTransaction,
    after: Option<&str>,
) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
    let credentials = txn.open_table(CREDENTIALS).ctx(OP)?;
    let range = match after {
        Some(after) => credentials.range::<&str>((Bound::Excluded(after), Bound::Unbounded)),
        None => credentials.range::<&str>(..),
    }
    .ctx(OP)?;
    let mut out = Vec::new();
    for entry in range.take(CHUNK) {
        let (id, bytes) = entry.ctx(OP)?;
        out.push((id.value().to_owned(), bytes.value().to_vec()));
    }
    Ok(out)
}

/// Re-encodes `chunk` (JSON records) and indexes and counts each.
fn upgrade_records(
    txn: &WriteTransaction,
    from: u64,
    chunk: &[(String, Vec<u8>)],
    counts: &mut HashMap<(i64, u8, String), u64>,
) -> Result<(), LedgerError> {
    let mut credentials = txn.open_table(CREDENTIALS).ctx(OP)?;
    let mut issued = txn.open_table(ISSUED).ctx(OP)?;
    let mut x509 = txn.open_table(X509_EXPIRY).ctx(OP)?;
    for (id, json) in chunk {
        let record: CredentialRecord = decode(&format!("credential {id}"), json)?;
        let id = id.as_str();
        credentials
            .insert(id, codec::encode_record(&record).as_slice())
            .ctx(OP)?;
        if from < 2 {
            issued.insert((record.issued_at, id), ()).ctx(OP)?;
        }
        if record.kind == CredentialKind::X509 {
            x509.insert((record.expires_at, id), ()).ctx(OP)?;
        }
        for selector in COUNTED {
            let value = selector.value_of(&record).to_owned();
            *counts
                .entry((record.expires_at, selector.code(), value))
                .or_default() += 1;
        }
    }
    Ok(())
}

/// Re-encodes every stored event from JSON, [`CHUNK`] at a time.
fn upgrade_events(txn: &WriteTransaction) -> Result<(), LedgerError> {
    let mut events = txn.open_table(EVENTS).ctx(OP)?;
    let mut next = 0u64;
    loop {
        let mut chunk = Vec::new();
        for entry in events.range(next..).ctx(OP)?.take(CHUNK) {
            let (sequence, bytes) = entry.ctx(OP)?;
            chunk.push((sequence.value(), bytes.value().to_vec()));
        }
        let Some((last, _)) = chunk.last() else {
            return Ok(());
        };
        next = last.saturating_add(1);
        for (sequence, json) in &chunk {
            let event: Event = decode(&format!("event {sequence}"), json)?;
            let bytes = match (&event.credential, &event.revocation) {
                (Some(c), _) => {
                    codec::encode_credential_event(event.kind, event.at, &c.credential_id)
                }
                (None, Some(rule)) => codec::encode_rule_event(event.at, rule)?,
                (None, None) => {
                    return Err(LedgerError::Corrupt(format!(
                        "event {sequence} names neither a credential nor a rule"
                    )));
                }
            };
            events.insert(*sequence, bytes.as_slice()).ctx(OP)?;
        }
        if chunk.len() < CHUNK {
            return Ok(());
        }
    }
}
