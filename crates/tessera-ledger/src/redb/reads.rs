//! Reads of the redb ledger beyond single lookups: the persisted live counts and live X.509
//! records (at start-up), and events with their credential resolved.

use ::redb::{Database, ReadableDatabase, ReadableTable};

use super::codec::{self, StoredEvent};
use super::{CREDENTIALS, LIVE_COUNTS, STATUS_EXPIRY, StorageContext, X509_EXPIRY};
use crate::{CredentialRecord, Event, EventKind, LedgerError, LiveCounts, Selector, StatusScan};

/// Returns the counts of credentials expiring after `now`. Fails with `Corrupt` on a selector
/// code no selector has, `Storage` when the table cannot be read.
pub(super) fn live_counts(db: &Database, now: i64) -> Result<LiveCounts, LedgerError> {
    const OP: &str = "reading live counts";
    let txn = db.begin_read().ctx(OP)?;
    let table = txn.open_table(LIVE_COUNTS).ctx(OP)?;
    let mut counts = LiveCounts::new();
    for entry in table.range((now.saturating_add(1), 0u8, "")..).ctx(OP)? {
        let (key, n) = entry.ctx(OP)?;
        let (expires_at, code, value) = key.value();
        let selector = Selector::from_code(code).ok_or_else(|| {
            LedgerError::Corrupt(format!("live count with unknown selector code {code}"))
        })?;
        counts.add(selector, value, expires_at, n.value());
    }
    Ok(counts)
}

/// Returns the records of X.509 credentials expiring after `after`, in expiry order (one that
/// was swept meanwhile is skipped). Fails with `Corrupt` on an undecodable record.
pub(super) fn x509_records(
    db: &Database,
    after: i64,
) -> Result<Vec<CredentialRecord>, LedgerError> {
    const OP: &str = "reading live X.509 credentials";
    let txn = db.begin_read().ctx(OP)?;
    let index = txn.open_table(X509_EXPIRY).ctx(OP)?;
    let credentials = txn.open_table(CREDENTIALS).ctx(OP)?;
    let mut out = Vec::new();
    for entry in index.range((after.saturating_add(1), "")..).ctx(OP)? {
        let (key, _) = entry.ctx(OP)?;
        let (_, id) = key.value();
        if let Some(bytes) = credentials.get(id).ctx(OP)? {
            out.push(codec::decode_record(id, bytes.value())?);
        }
    }
    Ok(out)
}

/// Returns one page of the records with a status list entry that `scan` asks for (one that was
/// swept meanwhile is skipped). Fails with `Corrupt` on an undecodable record.
pub(super) fn status_list_records(
    db: &Database,
    scan: &StatusScan,
) -> Result<Vec<CredentialRecord>, LedgerError> {
    use std::ops::Bound;
    const OP: &str = "reading credentials with a status list entry";
    let txn = db.begin_read().ctx(OP)?;
    let index = txn.open_table(STATUS_EXPIRY).ctx(OP)?;
    let credentials = txn.open_table(CREDENTIALS).ctx(OP)?;
    let first = (scan.expires_after.saturating_add(1), "");
    let range = match &scan.after {
        Some((at, id)) if (*at, id.as_str()) >= first => index
            .range::<(i64, &str)>((Bound::Excluded((*at, id.as_str())), Bound::Unbounded))
            .ctx(OP)?,
        _ => index.range(first..).ctx(OP)?,
    };
    let mut out = Vec::new();
    for entry in range.take(scan.limit) {
        let (key, _) = entry.ctx(OP)?;
        let (_, id) = key.value();
        if let Some(bytes) = credentials.get(id).ctx(OP)? {
            out.push(codec::decode_record(id, bytes.value())?);
        }
    }
    Ok(out)
}

/// Returns the event `stored` under `sequence` with its credential read from `credentials`: an
/// `issued` or `expired` event whose credential has been swept since carries `None` (such an
/// event is itself about to be swept). Fails with `Corrupt` on an undecodable record.
pub(super) fn resolve_event(
    credentials: &impl ReadableTable<&'static str, &'static [u8]>,
    sequence: u64,
    stored: StoredEvent,
) -> Result<Event, LedgerError> {
    const OP: &str = "reading an event's credential";
    let (kind, at, credential, revocation) = match stored {
        StoredEvent::Credential(kind, at, id) => {
            let credential = match credentials.get(id.as_str()).ctx(OP)? {
                Some(bytes) => Some(codec::decode_record(&id, bytes.value())?),
                None => None,
            };
            (kind, at, credential, None)
        }
        StoredEvent::Revoked(at, rule) => (EventKind::Revoked, at, None, Some(*rule)),
    };
    Ok(Event {
        sequence,
        kind,
        at,
        credential,
        revocation,
        committed: None,
    })
}
