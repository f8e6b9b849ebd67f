//! One batch of writes in one transaction. Records are inserted first (consecutive ones
//! pipelined on the connection), each refused on its own (`Replay`, `Duplicate`) without
//! failing the others; expiries and sweeps run in their place in the batch; the live counts
//! and the usage the batch added are written in key order; and only then, last, the batch
//! takes its sequences from the counter row, stores its events and rules and notifies, in one
//! statement whose row lock is held until COMMIT (see the module doc of [`super`]).

use std::collections::BTreeMap;

use deadpool_postgres::{Object, Pool, Transaction};
use futures::TryFutureExt;
use futures::future::try_join_all;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::rows::{self, RECORD_COLUMNS, RecordValues, credential_columns};
use super::{EVENTS_CHANNEL, connect};
use crate::usage::UsageBatch;
use crate::{
    COUNTED, CredentialRecord, Event, EventKind, LedgerError, NewRule, RecordParams,
    RevocationRule, SweepParams, USAGE_DAYS_KEPT, count_bucket, utc_day,
};

/// What a write asks for.
#[derive(Debug)]
pub(super) enum Work {
    Record(Box<RecordParams>),
    AddRule(NewRule),
    /// Now, at most this many events.
    Expire(i64, usize),
    Sweep(SweepParams),
    Close,
}

/// What became of one write of a committed batch.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Stored, with the batch's event at this index.
    Event(usize),
    /// Refused; nothing of it was written.
    Refused(LedgerError),
    /// How many credentials an expiry or a sweep handled.
    Count(u64),
    Closed,
}

/// A committed batch: one outcome per write, and its events with their sequences.
#[derive(Debug)]
pub(super) struct Done {
    pub outcomes: Vec<Outcome>,
    pub events: Vec<Event>,
}

/// A failed batch attempt; `retry` when PostgreSQL aborted it for a deadlock or a
/// serialization failure, so the same batch may succeed when tried again.
#[derive(Debug)]
pub(super) struct Failed {
    pub error: LedgerError,
    pub retry: bool,
}

impl From<LedgerError> for Failed {
    fn from(error: LedgerError) -> Self {
        Failed {
            error,
            retry: false,
        }
    }
}

/// Returns a `map_err` to [`Failed`] naming `operation`.
fn pg(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> Failed {
    move |e| Failed {
        retry: e.code().is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        }),
        error: LedgerError::Storage(format!("{operation}: {}", connect::chain(&e))),
    }
}

/// Inserts one record and its replay guard, unless the guard's key is stored (then `replay`
/// is true) or the id is (then `inserted` is false). `guarded` is false when another
/// transaction stored the same key meanwhile: the caller then deletes the record again.
const RECORD_SQL: &str = concat!(
    "WITH c AS (
    INSERT INTO credentials (",
    credential_columns!(),
    ")
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18
    WHERE $19::text IS NULL OR NOT EXISTS (SELECT 1 FROM replay WHERE key = $19::text)
    ON CONFLICT (credential_id) DO NOTHING
    RETURNING 1
), g AS (
    INSERT INTO replay (key, expires_at)
    SELECT $19::text, $20::bigint WHERE $19::text IS NOT NULL AND EXISTS (SELECT 1 FROM c)
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM c), EXISTS (SELECT 1 FROM g),
    EXISTS (SELECT 1 FROM replay WHERE key = $19::text)"
);

/// Takes `$1` sequences from the counter (its row lock is held until COMMIT), stores the
/// events (kinds `$2`, times `$3`, credential ids `$4`, rule JSON `$5`, in sequence order) and
/// the rules (ids `$6`, 1-based event ordinals `$7`, cut-offs `$8`, JSON `$9`), notifies the
/// replicas on channel `$10` with `<last sequence> <origin $11>`, and returns it.
const SEQUENCE_SQL: &str = "WITH s AS (
    UPDATE ledger_sequence SET last = last + $1 RETURNING last
), e AS (
    INSERT INTO events (sequence, kind, at, credential_id, rule)
    SELECT (SELECT last FROM s) - $1 + u.o, u.k, u.a, u.c, u.r
    FROM unnest($2::smallint[], $3::bigint[], $4::text[], $5::text[])
        WITH ORDINALITY AS u(k, a, c, r, o)
), r AS (
    INSERT INTO rules (revocation_id, sequence, effective_at, rule)
    SELECT v.id, (SELECT last FROM s) - $1 + v.o, v.eff, v.json
    FROM unnest($6::text[], $7::bigint[], $8::bigint[], $9::text[]) AS v(id, o, eff, json)
    ON CONFLICT (revocation_id) DO UPDATE
        SET sequence = EXCLUDED.sequence, effective_at = EXCLUDED.effective_at,
            rule = EXCLUDED.rule
), n AS (
    SELECT pg_notify($10, (SELECT last FROM s)::text || ' ' || $11)
)
SELECT (SELECT last FROM s) FROM n";

/// An event of the batch before its sequence is known.
struct Pending {
    kind: EventKind,
    at: i64,
    credential: Option<CredentialRecord>,
    rule: Option<NewRule>,
}

/// The parameters of [`SEQUENCE_SQL`]: the pending events as columns, and the rules by id.
struct Columns<'p> {
    kinds: Vec<i16>,
    ats: Vec<i64>,
    ids: Vec<Option<&'p str>>,
    jsons: Vec<Option<String>>,
    /// Revocation id → (1-based event ordinal, cut-off, JSON); the last rule of an id wins,
    /// as when stored one after the other.
    rules: BTreeMap<&'p str, (i64, i64, String)>,
}

impl<'p> Columns<'p> {
    /// Returns the columns of `pending`. Fails with `Storage` when a rule does not encode.
    fn of(pending: &'p [Pending]) -> Result<Self, LedgerError> {
        let mut c = Columns {
            kinds: Vec::with_capacity(pending.len()),
            ats: Vec::with_capacity(pending.len()),
            ids: Vec::with_capacity(pending.len()),
            jsons: Vec::with_capacity(pending.len()),
            rules: BTreeMap::new(),
        };
        for (ordinal, p) in (1i64..).zip(pending) {
            c.kinds.push(rows::event_code(p.kind));
            c.ats.push(p.at);
            c.ids
                .push(p.credential.as_ref().map(|r| r.credential_id.as_str()));
            let json = match &p.rule {
                Some(rule) => {
                    let json = serde_json::to_string(rule)
                        .map_err(|e| LedgerError::Storage(format!("encoding a rule: {e}")))?;
                    let entry = (ordinal, rule.effective_at, json.clone());
                    c.rules.insert(rule.revocation_id.as_str(), entry);
                    Some(json)
                }
                None => None,
            };
            c.jsons.push(json);
        }
        Ok(c)
    }
}

/// The state of one batch transaction.
struct Batch<'b> {
    txn: &'b Transaction<'b>,
    /// This replica's id in notifications, so its own listener can skip them.
    origin: &'b str,
    pending: Vec<Pending>,
    /// Live counts added by this batch: (expiry bucket, selector code, value) → how many.
    counts: BTreeMap<(i64, i16, String), i64>,
    /// Usage added by this batch's records, per key.
    usage: UsageBatch,
    outcomes: Vec<Outcome>,
}

/// Applies `works` in order in one transaction and commits it; returns the outcomes and the
/// events with their sequences. Fails (nothing written) when a statement or the commit fails;
/// a connection that failed is not returned to the pool.
pub(super) async fn commit(pool: &Pool, works: &[Work], origin: &str) -> Result<Done, Failed> {
    let mut client = connect::client(pool, "committing a ledger batch").await?;
    let result = apply(&mut client, works, origin).await;
    if result.is_err() {
        drop(Object::take(client)); // its state is unknown: close it
    }
    result
}

async fn apply(client: &mut Object, works: &[Work], origin: &str) -> Result<Done, Failed> {
    let txn = client
        .transaction()
        .await
        .map_err(pg("starting a ledger batch"))?;
    if works
        .iter()
        .any(|w| matches!(w, Work::Expire(..) | Work::Sweep(_)))
    {
        // Expiries and sweeps of concurrent replicas take turns (taken first: lock order).
        txn.execute("SELECT 1 FROM expire_lock FOR UPDATE", &[])
            .await
            .map_err(pg("locking expiry"))?;
    }
    let mut b = Batch {
        txn: &txn,
        origin,
        pending: Vec::new(),
        counts: BTreeMap::new(),
        usage: UsageBatch::default(),
        outcomes: Vec::with_capacity(works.len()),
    };
    let mut i = 0;
    while let Some(work) = works.get(i) {
        match work {
            Work::Record(_) => {
                let run: Vec<&RecordParams> = works[i..]
                    .iter()
                    .map_while(|w| match w {
                        Work::Record(p) => Some(p.as_ref()),
                        _ => None,
                    })
                    .collect();
                i += run.len();
                b.insert_records(&run).await?;
                continue;
            }
            Work::AddRule(rule) => b.add_rule(rule),
            Work::Expire(now, limit) => b.expire(*now, *limit).await?,
            Work::Sweep(params) => b.sweep(*params).await?,
            Work::Close => b.outcomes.push(Outcome::Closed),
        }
        i += 1;
    }
    // Pipelined on the connection: usage costs no round trip of its own.
    let usage = std::mem::take(&mut b.usage);
    let stored = super::usage::flush(&txn, usage).map_err(pg("storing usage"));
    futures::future::try_join(b.flush_counts(), stored).await?;
    let events = b.sequence().await?;
    let outcomes = b.outcomes;
    txn.commit()
        .await
        .map_err(pg("committing a ledger batch"))?;
    Ok(Done { outcomes, events })
}

/// The parameters of [`RECORD_SQL`] for one record.
struct RecordArgs<'a> {
    values: RecordValues<'a>,
    guard_key: Option<&'a str>,
    guard_expires_at: Option<i64>,
}

impl<'a> RecordArgs<'a> {
    fn new(p: &'a RecordParams) -> Self {
        RecordArgs {
            values: RecordValues::of(&p.credential),
            guard_key: p.replay_guard.as_ref().map(|g| g.key.as_str()),
            guard_expires_at: p.replay_guard.as_ref().map(|g| g.expires_at),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params = Vec::with_capacity(20);
        params.extend(self.values.params());
        params.push(&self.guard_key);
        params.push(&self.guard_expires_at);
        params
    }
}

impl Batch<'_> {
    /// Inserts consecutive records, pipelined, and records each one's outcome.
    async fn insert_records(&mut self, run: &[&RecordParams]) -> Result<(), Failed> {
        const OP: &str = "recording a credential";
        let statement = self.txn.prepare_cached(RECORD_SQL).await.map_err(pg(OP))?;
        let args: Vec<RecordArgs> = run.iter().map(|p| RecordArgs::new(p)).collect();
        let params: Vec<_> = args.iter().map(RecordArgs::params).collect();
        let answers = try_join_all(params.iter().map(|p| self.txn.query_one(&statement, p)))
            .await
            .map_err(pg(OP))?;
        for (p, row) in run.iter().zip(answers) {
            let inserted: bool = rows::column(&row, 0)?;
            let guarded: bool = rows::column(&row, 1)?;
            let replay_seen: bool = rows::column(&row, 2)?;
            let id = &p.credential.credential_id;
            let outcome = match (inserted, p.replay_guard.is_some() && !guarded) {
                (true, false) => self.stored(&p.credential),
                (true, true) => {
                    // Another replica stored the same guard meanwhile: undo our insert.
                    self.txn
                        .execute("DELETE FROM credentials WHERE credential_id = $1", &[id])
                        .await
                        .map_err(pg(OP))?;
                    Outcome::Refused(LedgerError::Replay)
                }
                (false, _) if replay_seen => Outcome::Refused(LedgerError::Replay),
                (false, _) => Outcome::Refused(LedgerError::Duplicate(id.clone())),
            };
            self.outcomes.push(outcome);
        }
        Ok(())
    }

    /// Counts a stored record (live counts, usage) and queues its `issued` event; returns its
    /// outcome.
    fn stored(&mut self, record: &CredentialRecord) -> Outcome {
        self.usage.add(record);
        for selector in COUNTED {
            let key = (
                count_bucket(record.expires_at),
                i16::from(selector.code()),
                selector.value_of(record).to_owned(),
            );
            *self.counts.entry(key).or_default() += 1;
        }
        self.push(Pending {
            kind: EventKind::Issued,
            at: record.issued_at,
            credential: Some(record.clone()),
            rule: None,
        })
    }

    /// Queues an event; returns the outcome naming it.
    fn push(&mut self, pending: Pending) -> Outcome {
        self.pending.push(pending);
        Outcome::Event(self.pending.len() - 1)
    }

    fn add_rule(&mut self, rule: &NewRule) {
        let outcome = self.push(Pending {
            kind: EventKind::Revoked,
            at: rule.effective_at,
            credential: None,
            rule: Some(rule.clone()),
        });
        self.outcomes.push(outcome);
    }

    /// Adds the batch's live counts to the stored ones, in key order (so that concurrent
    /// batches lock count rows in the same order and cannot deadlock).
    async fn flush_counts(&mut self) -> Result<(), Failed> {
        if self.counts.is_empty() {
            return Ok(());
        }
        let mut buckets = Vec::with_capacity(self.counts.len());
        let mut codes = Vec::with_capacity(self.counts.len());
        let mut values = Vec::with_capacity(self.counts.len());
        let mut ns = Vec::with_capacity(self.counts.len());
        for ((bucket, code, value), n) in std::mem::take(&mut self.counts) {
            buckets.push(bucket);
            codes.push(code);
            values.push(value);
            ns.push(n);
        }
        // Prepared once per connection: a batch is on the mint path.
        let statement = self
            .txn
            .prepare_cached(
                "INSERT INTO live_counts (expires_at, selector, value, n)
                 SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::bigint[])
                 ON CONFLICT (expires_at, selector, value)
                 DO UPDATE SET n = live_counts.n + EXCLUDED.n",
            )
            .await
            .map_err(pg("storing live counts"))?;
        self.txn
            .execute(&statement, &[&buckets, &codes, &values, &ns])
            .await
            .map_err(pg("storing live counts"))?;
        Ok(())
    }

    /// Marks the first `limit`, in (expires_at, id) order, of the credentials that expired
    /// before `now` and have no `expired` event yet, and queues one for each (in that order);
    /// deletes the counts of buckets that ended.
    async fn expire(&mut self, now: i64, limit: usize) -> Result<(), Failed> {
        const OP: &str = "recording expiries";
        self.flush_counts().await?;
        let sql = format!(
            "UPDATE credentials AS c SET expired = true
             WHERE c.credential_id IN (
                 SELECT credential_id FROM credentials WHERE NOT expired AND expires_at < $1
                 ORDER BY expires_at, credential_id LIMIT $2)
             RETURNING {RECORD_COLUMNS}"
        );
        let limit = rows::bigint(limit as u64);
        let found = self
            .txn
            .query(&sql, &[&now, &limit])
            .await
            .map_err(pg(OP))?;
        let mut expired = found
            .iter()
            .map(rows::record)
            .collect::<Result<Vec<_>, _>>()?;
        expired.sort_by(|a, b| {
            (a.expires_at, &a.credential_id).cmp(&(b.expires_at, &b.credential_id))
        });
        let n = expired.len() as u64;
        for record in expired {
            self.push(Pending {
                kind: EventKind::Expired,
                at: record.expires_at,
                credential: Some(record),
                rule: None,
            });
        }
        self.txn
            .execute("DELETE FROM live_counts WHERE expires_at <= $1", &[&now])
            .await
            .map_err(pg(OP))?;
        self.outcomes.push(Outcome::Count(n));
        Ok(())
    }

    /// Deletes expired records, replay guards past their time, the oldest events that
    /// happened before the cut-off, dead rules and old usage days.
    async fn sweep(&mut self, p: SweepParams) -> Result<(), Failed> {
        const OP: &str = "sweeping the ledger";
        let limit = rows::bigint(p.limit as u64);
        let deleted = self
            .txn
            .execute(
                "DELETE FROM credentials WHERE credential_id IN (
                     SELECT credential_id FROM credentials WHERE expires_at < $1
                     ORDER BY expires_at, credential_id LIMIT $2)",
                &[&p.expired_before, &limit],
            )
            .await
            .map_err(pg(OP))?;
        self.txn
            .execute(
                "DELETE FROM replay WHERE key IN (
                     SELECT key FROM replay WHERE expires_at < $1
                     ORDER BY expires_at, key LIMIT $2)",
                &[&p.expired_before, &limit],
            )
            .await
            .map_err(pg(OP))?;
        self.sweep_events(p.expired_before, limit).await?;
        self.txn
            .execute(
                "DELETE FROM rules WHERE effective_at < $1",
                &[&p.rules_before],
            )
            .await
            .map_err(pg(OP))?;
        let before_day = utc_day(p.expired_before.saturating_mul(1000));
        super::usage::sweep_days(self.txn, before_day.saturating_sub(USAGE_DAYS_KEPT))
            .await
            .map_err(pg("sweeping usage days"))?;
        self.outcomes.push(Outcome::Count(deleted));
        Ok(())
    }

    /// Deletes up to `limit` of the oldest events, in sequence order, up to the first that
    /// happened at or after `before`.
    async fn sweep_events(&mut self, before: i64, limit: i64) -> Result<(), Failed> {
        const OP: &str = "sweeping events";
        let oldest = self
            .txn
            .query(
                "SELECT sequence, at FROM events ORDER BY sequence LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(pg(OP))?;
        let mut last_old = None;
        for row in &oldest {
            let at: i64 = rows::column(row, 1)?;
            if at >= before {
                break;
            }
            last_old = Some(rows::column::<i64>(row, 0)?);
        }
        if let Some(last) = last_old {
            self.txn
                .execute("DELETE FROM events WHERE sequence <= $1", &[&last])
                .await
                .map_err(pg(OP))?;
        }
        Ok(())
    }

    /// Takes the batch's sequences, stores its events and rules and notifies the replicas, as
    /// the transaction's last statement; returns the events with their sequences (none when
    /// the batch produced none: then the counter is not touched).
    async fn sequence(&mut self) -> Result<Vec<Event>, Failed> {
        const OP: &str = "storing events";
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.pending.len() as i64;
        let c = Columns::of(&self.pending)?;
        let rule_ids: Vec<&str> = c.rules.keys().copied().collect();
        let ordinals: Vec<i64> = c.rules.values().map(|v| v.0).collect();
        let cutoffs: Vec<i64> = c.rules.values().map(|v| v.1).collect();
        let rule_jsons: Vec<&str> = c.rules.values().map(|v| v.2.as_str()).collect();
        let (kinds, ats, ids, jsons) = (&c.kinds, &c.ats, &c.ids, &c.jsons);
        let statement = self
            .txn
            .prepare_cached(SEQUENCE_SQL)
            .await
            .map_err(pg(OP))?;
        let row = self
            .txn
            .query_one(
                &statement,
                &[
                    &n,
                    &kinds,
                    &ats,
                    &ids,
                    &jsons,
                    &rule_ids,
                    &ordinals,
                    &cutoffs,
                    &rule_jsons,
                    &EVENTS_CHANNEL,
                    &self.origin,
                ],
            )
            .await
            .map_err(pg(OP))?;
        let last = rows::sequence(rows::column(&row, 0)?)?;
        let first = last + 1 - self.pending.len() as u64;
        let events = std::mem::take(&mut self.pending)
            .into_iter()
            .zip(first..)
            .map(|(p, sequence)| Event {
                sequence,
                kind: p.kind,
                at: p.at,
                credential: p.credential,
                revocation: p.rule.map(|rule| RevocationRule { rule, sequence }),
                committed: None,
            })
            .collect();
        Ok(events)
    }
}
