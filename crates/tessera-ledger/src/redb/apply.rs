//! One batch of the `ledger-writer`, applied inside a write transaction: records with their
//! indexes, replay guards, live counts and usage, rules, expiry events and sweeps, each write
//! appending its event with the next sequence. Applying the same jobs to the same state gives
//! the same result, which is what lets the journal replay a batch after a crash.

use std::collections::HashMap;
use std::ops::Bound;

use ::redb::{Key, ReadableTable, Table, TableDefinition, TableHandle, Value, WriteTransaction};

use super::codec;
use super::job::{Job, PendingRecord};
use super::{
    CREDENTIALS, EVENTS, EXPIRED_CURSOR_ID, EXPIRED_CURSOR_KEY, EXPIRY, ISSUED, JOURNAL_FRAME_KEY,
    LAST_SEQUENCE_KEY, LIVE_COUNTS, META, REPLAY_EXPIRY, RULES, STATUS_EXPIRY, StorageContext,
    X509_EXPIRY,
};
use crate::usage::UsageBatch;
use crate::{
    COUNTED, CredentialKind, CredentialRecord, Event, EventKind, LedgerError, NewRule,
    RevocationRule, SweepParams, USAGE_DAYS_KEPT, utc_day,
};

/// The tables one batch writes, and the events it produces. The tables most batches leave
/// alone are opened on first use ([`LazyTable`]).
struct Batch<'t> {
    credentials: Table<'t, &'static str, &'static [u8]>,
    expiry: Table<'t, (i64, &'static str), ()>,
    issued: Table<'t, (i64, &'static str), ()>,
    /// Replay guards by (expires_at, key): time-ordered, so a batch's guards dirty the
    /// table's last leaf rather than one random leaf each (see [`super::REPLAY_EXPIRY`]).
    replay_expiry: LazyTable<'t, (i64, &'static str), ()>,
    rules: LazyTable<'t, &'static str, &'static [u8]>,
    events: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    cursor_id: LazyTable<'t, &'static str, &'static str>,
    live_counts: Table<'t, (i64, u8, &'static str), u64>,
    x509: LazyTable<'t, (i64, &'static str), ()>,
    status: LazyTable<'t, (i64, &'static str), ()>,
    /// Live counts added by this batch's records, written once per key by `flush_counts`.
    counts: HashMap<(i64, u8, String), u64>,
    /// Usage added by this batch's records, written once per key by `usage::flush`.
    usage: UsageBatch,
    last_sequence: u64,
    emitted: Vec<Event>,
}

/// A table a batch opens on its first use. Opening one is a lookup in redb's table tree and a
/// check of the table's stored type (~5,700 instructions by callgrind, BENCHMARKS.md item 16),
/// so a batch of JWT mints does not open the replay, rule, cursor and X.509 tables.
struct LazyTable<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    definition: TableDefinition<'static, K, V>,
    table: Option<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> LazyTable<'t, K, V> {
    fn new(txn: &'t WriteTransaction, definition: TableDefinition<'static, K, V>) -> Self {
        LazyTable {
            txn,
            definition,
            table: None,
        }
    }

    /// Returns the table, opening it on the first call. Fails with `Storage`, naming the
    /// table, when it cannot be opened.
    fn open(&mut self) -> Result<&mut Table<'t, K, V>, LedgerError> {
        let table = match self.table.take() {
            Some(table) => table,
            None => self.txn.open_table(self.definition).map_err(|e| {
                LedgerError::Storage(format!(
                    "opening the ledger table {}: {e}",
                    self.definition.name()
                ))
            })?,
        };
        Ok(self.table.insert(table))
    }
}

/// Applies `jobs` in order inside `txn` after event `last_sequence`, and stores `frame` as the
/// journal frame the transaction holds; returns the last sequence and the events produced.
pub(super) fn apply(
    txn: &WriteTransaction,
    jobs: &mut [Job],
    last_sequence: u64,
    frame: u64,
) -> Result<(u64, Vec<Event>), LedgerError> {
    const OP: &str = "opening the ledger tables";
    let mut b = Batch {
        credentials: txn.open_table(CREDENTIALS).ctx(OP)?,
        expiry: txn.open_table(EXPIRY).ctx(OP)?,
        issued: txn.open_table(ISSUED).ctx(OP)?,
        replay_expiry: LazyTable::new(txn, REPLAY_EXPIRY),
        rules: LazyTable::new(txn, RULES),
        events: txn.open_table(EVENTS).ctx(OP)?,
        meta: txn.open_table(META).ctx(OP)?,
        cursor_id: LazyTable::new(txn, EXPIRED_CURSOR_ID),
        live_counts: txn.open_table(LIVE_COUNTS).ctx(OP)?,
        x509: LazyTable::new(txn, X509_EXPIRY),
        status: LazyTable::new(txn, STATUS_EXPIRY),
        counts: HashMap::new(),
        usage: UsageBatch::default(),
        last_sequence,
        emitted: Vec::new(),
    };
    for job in jobs.iter_mut() {
        match job {
            Job::Record(pending, _, result) => *result = b.insert_record(pending)?,
            Job::AddRule(rule, _, stored) => *stored = Some(b.add_rule(rule)?),
            Job::Expire((now, limit), _, n) => {
                b.flush_counts()?;
                *n = b.expire(*now, *limit)?;
            }
            Job::Sweep(params, _, n) => {
                b.flush_counts()?;
                *n = b.sweep(*params)?;
                let before_day = utc_day(params.expired_before.saturating_mul(1000));
                super::usage::sweep_days(txn, before_day.saturating_sub(USAGE_DAYS_KEPT))?;
            }
            Job::Close(_) => {}
        }
    }
    b.flush_counts()?;
    super::usage::flush(txn, std::mem::take(&mut b.usage))?;
    b.meta
        .insert(LAST_SEQUENCE_KEY, b.last_sequence)
        .ctx("storing the event sequence")?;
    b.meta
        .insert(JOURNAL_FRAME_KEY, frame)
        .ctx("storing the journal frame")?;
    Ok((b.last_sequence, b.emitted))
}

impl Batch<'_> {
    /// Stores an event with the next sequence (an `issued` or `expired` one by its credential's
    /// id only) and keeps it, whole, for publishing; returns the sequence.
    fn append(
        &mut self,
        kind: EventKind,
        at: i64,
        credential: Option<CredentialRecord>,
        revocation: Option<RevocationRule>,
    ) -> Result<u64, LedgerError> {
        self.last_sequence += 1;
        let event = Event {
            sequence: self.last_sequence,
            kind,
            at,
            credential,
            revocation,
            committed: None,
        };
        let bytes = match (&event.credential, &event.revocation) {
            (Some(record), _) => codec::encode_credential_event(kind, at, &record.credential_id),
            (None, Some(rule)) => codec::encode_rule_event(at, rule)?,
            (None, None) => {
                return Err(LedgerError::Storage(format!(
                    "a {} event must name a credential or a rule",
                    kind.as_str()
                )));
            }
        };
        self.events
            .insert(event.sequence, bytes.as_slice())
            .ctx("storing an event")?;
        self.emitted.push(event);
        Ok(self.last_sequence)
    }

    /// Inserts a record, its indexes, replay guard and `issued` event, and adds it to the
    /// batch's live counts and usage (written once per key at the end of the batch), unless
    /// the guard's key is stored or the id is recorded. Returns the record's result.
    fn insert_record(
        &mut self,
        p: &PendingRecord,
    ) -> Result<Result<u64, LedgerError>, LedgerError> {
        const OP: &str = "recording a credential";
        let id = p.record.credential_id.as_str();
        if let Some((key, expires_at)) = &p.replay
            && self
                .replay_expiry
                .open()?
                .get((*expires_at, key.as_str()))
                .ctx(OP)?
                .is_some()
        {
            return Ok(Err(LedgerError::Replay));
        }
        if self.credentials.get(id).ctx(OP)?.is_some() {
            return Ok(Err(LedgerError::Duplicate(id.to_owned())));
        }
        self.credentials.insert(id, p.bytes.as_slice()).ctx(OP)?;
        self.expiry.insert((p.record.expires_at, id), ()).ctx(OP)?;
        self.issued.insert((p.record.issued_at, id), ()).ctx(OP)?;
        if p.record.kind == CredentialKind::X509 {
            self.x509
                .open()?
                .insert((p.record.expires_at, id), ())
                .ctx(OP)?;
        }
        if p.record.status_list.is_some() {
            self.status
                .open()?
                .insert((p.record.expires_at, id), ())
                .ctx(OP)?;
        }
        for selector in COUNTED {
            let value = selector.value_of(&p.record).to_owned();
            *self
                .counts
                .entry((
                    crate::count_bucket(p.record.expires_at),
                    selector.code(),
                    value,
                ))
                .or_default() += 1;
        }
        self.usage.add(&p.record);
        if let Some((key, expires_at)) = &p.replay {
            self.replay_expiry
                .open()?
                .insert((*expires_at, key.as_str()), ())
                .ctx(OP)?;
        }
        let sequence = self.append(
            EventKind::Issued,
            p.record.issued_at,
            Some(p.record.clone()),
            None,
        )?;
        Ok(Ok(sequence))
    }

    /// Adds the batch's pending live counts to the stored ones, one read and write per key.
    fn flush_counts(&mut self) -> Result<(), LedgerError> {
        const OP: &str = "storing live counts";
        for ((expires_at, code, value), n) in self.counts.drain() {
            let key = (expires_at, code, value.as_str());
            let stored = self.live_counts.get(key).ctx(OP)?.map_or(0, |v| v.value());
            self.live_counts.insert(key, stored + n).ctx(OP)?;
        }
        Ok(())
    }

    fn add_rule(&mut self, rule: &NewRule) -> Result<RevocationRule, LedgerError> {
        let stored = RevocationRule {
            rule: rule.clone(),
            sequence: self.last_sequence + 1,
        };
        let bytes = serde_json::to_vec(&stored).ctx("encoding a rule")?;
        self.rules
            .open()?
            .insert(rule.revocation_id.as_str(), bytes.as_slice())
            .ctx("storing a rule")?;
        self.append(
            EventKind::Revoked,
            rule.effective_at,
            None,
            Some(stored.clone()),
        )?;
        Ok(stored)
    }

    /// Appends `expired` events, in (expires_at, id) order, for at most `limit` records past
    /// the cursor whose expiry is before `now`; returns how many. The cursor moves to `now` when
    /// that was all of them, else to the last record given its event (the next call resumes
    /// there), so one call never writes more than `limit` events.
    fn expire(&mut self, now: i64, limit: usize) -> Result<u64, LedgerError> {
        const OP: &str = "recording expiries";
        let cursor = self
            .meta
            .get(EXPIRED_CURSOR_KEY)
            .ctx(OP)?
            .map_or(0, |v| v.value());
        let cursor = i64::try_from(cursor).unwrap_or(i64::MAX);
        if now <= cursor || limit == 0 {
            return Ok(0);
        }
        let after = self
            .cursor_id
            .open()?
            .get(EXPIRED_CURSOR_KEY)
            .ctx(OP)?
            .map(|v| v.value().to_owned())
            .unwrap_or_default();
        let start = if after.is_empty() {
            Bound::Included((cursor, ""))
        } else {
            Bound::Excluded((cursor, after.as_str()))
        };
        let mut expired = Vec::new();
        let range = (start, Bound::Excluded((now, "")));
        for entry in self.expiry.range(range).ctx(OP)?.take(limit) {
            let (key, _) = entry.ctx(OP)?;
            let (expires_at, id) = key.value();
            expired.push((expires_at, id.to_owned()));
        }
        for (_, id) in &expired {
            let Some(bytes) = self
                .credentials
                .get(id.as_str())
                .ctx(OP)?
                .map(|b| b.value().to_vec())
            else {
                continue;
            };
            let record = codec::decode_record(id, &bytes)?;
            self.append(EventKind::Expired, record.expires_at, Some(record), None)?;
        }
        let (to, to_id) = match expired.last() {
            Some((at, id)) if expired.len() == limit => (*at, id.as_str()),
            _ => (now, ""),
        };
        self.meta
            .insert(EXPIRED_CURSOR_KEY, u64::try_from(to).unwrap_or_default())
            .ctx(OP)?;
        self.cursor_id
            .open()?
            .insert(EXPIRED_CURSOR_KEY, to_id)
            .ctx(OP)?;
        // Counts of credentials that expired at or before `now` are no longer live (reads
        // ignore them whether or not their events are written yet).
        self.live_counts
            .retain_in(..(now.saturating_add(1), 0u8, ""), |_, _| false)
            .ctx(OP)?;
        Ok(expired.len() as u64)
    }

    /// Deletes expired records (with their indexes), old events, dead rules and replay guards.
    fn sweep(&mut self, params: SweepParams) -> Result<u64, LedgerError> {
        const OP: &str = "sweeping the ledger";
        let upper = (params.expired_before, "");
        let mut expired = Vec::new();
        for entry in self.expiry.range(..upper).ctx(OP)?.take(params.limit) {
            let (key, _) = entry.ctx(OP)?;
            let (expires_at, id) = key.value();
            expired.push((expires_at, id.to_owned()));
        }
        let x509 = self.x509.open()?;
        let status = self.status.open()?;
        for (expires_at, id) in &expired {
            self.expiry.remove((*expires_at, id.as_str())).ctx(OP)?;
            x509.remove((*expires_at, id.as_str())).ctx(OP)?;
            status.remove((*expires_at, id.as_str())).ctx(OP)?;
            if let Some(bytes) = self
                .credentials
                .remove(id.as_str())
                .ctx(OP)?
                .map(|b| b.value().to_vec())
                && let Ok(record) = codec::decode_record(id, &bytes)
            {
                self.issued
                    .remove((record.issued_at, id.as_str()))
                    .ctx(OP)?;
            }
        }
        let mut guards = Vec::new();
        for entry in self
            .replay_expiry
            .open()?
            .range(..upper)
            .ctx(OP)?
            .take(params.limit)
        {
            let (key, _) = entry.ctx(OP)?;
            let (expires_at, guard) = key.value();
            guards.push((expires_at, guard.to_owned()));
        }
        let replay_expiry = self.replay_expiry.open()?;
        for (expires_at, guard) in &guards {
            replay_expiry
                .remove((*expires_at, guard.as_str()))
                .ctx(OP)?;
        }
        self.sweep_events_and_rules(params)?;
        Ok(expired.len() as u64)
    }

    fn sweep_events_and_rules(&mut self, params: SweepParams) -> Result<(), LedgerError> {
        const OP: &str = "sweeping events and rules";
        let mut old_events = Vec::new();
        for entry in self.events.iter().ctx(OP)?.take(params.limit) {
            let (seq, bytes) = entry.ctx(OP)?;
            match codec::event_at(seq.value(), bytes.value()) {
                Ok(at) if at < params.expired_before => old_events.push(seq.value()),
                _ => break,
            }
        }
        for seq in old_events {
            self.events.remove(seq).ctx(OP)?;
        }
        let mut dead = Vec::new();
        for entry in self.rules.open()?.iter().ctx(OP)? {
            let (id, bytes) = entry.ctx(OP)?;
            if let Ok(rule) = serde_json::from_slice::<RevocationRule>(bytes.value())
                && rule.rule.effective_at < params.rules_before
            {
                dead.push(id.value().to_owned());
            }
        }
        let rules = self.rules.open()?;
        for id in dead {
            rules.remove(id.as_str()).ctx(OP)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ::redb::{Database, ReadableDatabase, ReadableTableMetadata};
    use tokio::sync::oneshot;

    use super::*;
    use crate::Selector;
    use crate::test_records::{rule, sample, x509};

    fn record(record: CredentialRecord, guard: Option<&str>) -> Job {
        let pending = PendingRecord {
            bytes: codec::encode_record(&record),
            record,
            replay: guard.map(|key| (key.to_owned(), 100)),
        };
        Job::Record(Box::new(pending), oneshot::channel().0, Ok(0))
    }

    /// One batch that opens each of the lazily opened tables and uses it again after (records
    /// with and without guards and indexes, a rule, an expiry pass, a sweep of it all) applies
    /// every job as the eagerly opened tables did.
    #[test]
    fn one_batch_of_records_a_replayed_guard_a_rule_an_expiry_and_a_sweep_applies_every_job() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("l.redb")).unwrap();
        super::super::schema::init_schema(&db).unwrap();
        let mut with_status = sample("jwt-1", 100);
        with_status.status_list = Some(tessera_core::domain::StatusListRef {
            list: "0".into(),
            idx: 1,
        });
        let rule = rule("rev-1", Selector::Workload, "spiffe://example.org/w", 50);
        let sweep = SweepParams {
            expired_before: 150,
            rules_before: 0,
            limit: 10,
        };
        let mut jobs = vec![
            record(x509("x-1", 100), Some("guard")),
            record(with_status, None),
            record(sample("jwt-2", 100), Some("guard")),
            Job::AddRule(Box::new(rule), oneshot::channel().0, None),
            Job::Expire((200, 10), oneshot::channel().0, 0),
            Job::Sweep(sweep, oneshot::channel().0, 0),
        ];
        let txn = db.begin_write().unwrap();
        let (last, events) = apply(&txn, &mut jobs, 0, 1).unwrap();
        txn.commit().unwrap();

        assert!(matches!(jobs[0], Job::Record(_, _, Ok(1))));
        assert!(matches!(jobs[1], Job::Record(_, _, Ok(2))));
        assert!(matches!(
            jobs[2],
            Job::Record(_, _, Err(LedgerError::Replay))
        ));
        assert!(matches!(jobs[3], Job::AddRule(_, _, Some(_))));
        assert!(matches!(jobs[4], Job::Expire(_, _, 2)));
        assert!(matches!(jobs[5], Job::Sweep(_, _, 2)));
        // issued ×2, revoked, expired ×2
        assert_eq!((last, events.len()), (5, 5));
        let read = db.begin_read().unwrap();
        for table in [X509_EXPIRY, STATUS_EXPIRY, REPLAY_EXPIRY, EXPIRY, ISSUED] {
            assert!(read.open_table(table).unwrap().is_empty().unwrap());
        }
        assert!(read.open_table(CREDENTIALS).unwrap().is_empty().unwrap());
        assert_eq!(read.open_table(RULES).unwrap().len().unwrap(), 1);
    }
}
