//! Reads of a whole redb ledger as it is stored, for moving it elsewhere
//! ([`crate::copy_redb_to_postgres`]): what the [`crate::Ledger`] trait does not show — replay
//! guards, events naming their credential by id (also once it is swept), the live counts as
//! persisted, and the expiry cursor.

use ::redb::{ReadableDatabase, ReadableTable};

use super::codec::{self, StoredEvent};
use super::{
    EVENTS, EXPIRED_CURSOR_ID, EXPIRED_CURSOR_KEY, LIVE_COUNTS, META, REPLAY_EXPIRY, RedbLedger,
    StorageContext,
};
use crate::{EventRow, LedgerError, LiveCountRow, ReplayGuard, Selector};

impl RedbLedger {
    /// Returns every stored replay guard, in order of expiry. Fails with `Storage` when the
    /// table cannot be read.
    pub async fn replay_guards(&self) -> Result<Vec<ReplayGuard>, LedgerError> {
        const OP: &str = "reading replay guards";
        self.read(|db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(REPLAY_EXPIRY).ctx(OP)?;
            let mut out = Vec::new();
            for entry in table.iter().ctx(OP)? {
                let (key, _) = entry.ctx(OP)?;
                let (expires_at, key) = key.value();
                out.push(ReplayGuard {
                    key: key.to_owned(),
                    expires_at,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Returns up to `limit` events with a sequence greater than `since`, in order, as stored:
    /// an `issued` or `expired` one names its credential (whether or not it is swept), a
    /// `revoked` one carries its rule. Fails with `Corrupt` on an undecodable event.
    pub async fn event_rows(&self, since: u64, limit: usize) -> Result<Vec<EventRow>, LedgerError> {
        const OP: &str = "reading events";
        self.read(move |db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(EVENTS).ctx(OP)?;
            let mut out = Vec::new();
            for entry in table.range(since.saturating_add(1)..).ctx(OP)?.take(limit) {
                let (sequence, bytes) = entry.ctx(OP)?;
                let sequence = sequence.value();
                out.push(match codec::decode_event(sequence, bytes.value())? {
                    StoredEvent::Credential(kind, at, id) => EventRow {
                        sequence,
                        kind,
                        at,
                        credential_id: Some(id),
                        rule: None,
                    },
                    StoredEvent::Revoked(at, rule) => EventRow {
                        sequence,
                        kind: crate::EventKind::Revoked,
                        at,
                        credential_id: None,
                        rule: Some(*rule),
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    /// Returns every persisted live count, in key order, including those of buckets that
    /// ended but were not yet dropped by an expiry. Fails with `Corrupt` on an unknown
    /// selector code.
    pub async fn live_count_rows(&self) -> Result<Vec<LiveCountRow>, LedgerError> {
        const OP: &str = "reading live counts";
        self.read(|db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(LIVE_COUNTS).ctx(OP)?;
            let mut out = Vec::new();
            for entry in table.iter().ctx(OP)? {
                let (key, n) = entry.ctx(OP)?;
                let (expires_at, code, value) = key.value();
                let selector = Selector::from_code(code).ok_or_else(|| {
                    LedgerError::Corrupt(format!("live count with unknown selector code {code}"))
                })?;
                out.push(LiveCountRow {
                    expires_at,
                    selector,
                    value: value.to_owned(),
                    n: n.value(),
                });
            }
            Ok(out)
        })
        .await
    }

    /// Returns the expiry cursor (at, id): every credential whose (`expires_at`, id) is at or
    /// before it has had its `expired` event (or was recorded already expired, and never gets
    /// one); id is empty when the last expiry was not cut short by its limit, and the cursor
    /// (0, "") before the first expiry. Fails with `Storage` when the metadata cannot be read.
    pub async fn expired_cursor(&self) -> Result<(i64, String), LedgerError> {
        const OP: &str = "reading the expiry cursor";
        self.read(|db| {
            let txn = db.begin_read().ctx(OP)?;
            let meta = txn.open_table(META).ctx(OP)?;
            let cursor = meta
                .get(EXPIRED_CURSOR_KEY)
                .ctx(OP)?
                .map_or(0, |v| v.value());
            let ids = txn.open_table(EXPIRED_CURSOR_ID).ctx(OP)?;
            let id = ids
                .get(EXPIRED_CURSOR_KEY)
                .ctx(OP)?
                .map(|v| v.value().to_owned())
                .unwrap_or_default();
            Ok((i64::try_from(cursor).unwrap_or(i64::MAX), id))
        })
        .await
    }
}
