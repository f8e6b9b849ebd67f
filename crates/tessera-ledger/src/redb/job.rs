//! What the `ledger-writer` thread is asked to do ([`WriterMsg`]), a request with room for its
//! result while its batch is applied ([`Job`]), and the journal encoding of a batch's jobs: the
//! writes alone, without their replies, so that replaying them after a crash applies exactly
//! what was answered.
//!
//! A journal payload is the batch's jobs in order, each `tag u8 | fields`:
//! `1` record: `credential id | record bytes ([`codec::encode_record`]) | has guard u8 |
//! [guard key | guard expires_at i64 LE]`; `2` rule: the JSON of the [`NewRule`], as a byte
//! string; `3` expire:
//! `now i64 LE | limit i64 LE`; `4` sweep: `expired_before i64 LE | rules_before i64 LE |
//! limit i64 LE`. Strings and byte strings are a LEB128 length then the bytes. A `Close` writes
//! nothing.

use tokio::sync::oneshot;

use super::codec::{self, DecodeError, Reader};
use crate::{CredentialRecord, LedgerError, NewRule, RevocationRule, SweepParams};

pub(super) type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// A record encoded by the caller, ready for the writer.
pub(super) struct PendingRecord {
    pub record: CredentialRecord,
    pub bytes: Vec<u8>,
    /// Replay guard key and expiry.
    pub replay: Option<(String, i64)>,
}

/// What the writer thread is asked to do.
pub(super) enum WriterMsg {
    Record(Box<PendingRecord>, Reply<u64>),
    AddRule(Box<NewRule>, Reply<RevocationRule>),
    /// Now, at most this many events, reply.
    Expire(i64, usize, Reply<u64>),
    Sweep(SweepParams, Reply<u64>),
    Close(Reply<()>),
}

/// A [`WriterMsg`] with room for its result, filled in while the batch is applied.
pub(super) enum Job {
    Record(Box<PendingRecord>, Reply<u64>, Result<u64, LedgerError>),
    AddRule(Box<NewRule>, Reply<RevocationRule>, Option<RevocationRule>),
    Expire((i64, usize), Reply<u64>, u64),
    Sweep(SweepParams, Reply<u64>, u64),
    Close(Reply<()>),
}

impl From<WriterMsg> for Job {
    fn from(msg: WriterMsg) -> Self {
        match msg {
            WriterMsg::Record(r, reply) => Job::Record(r, reply, Ok(0)),
            WriterMsg::AddRule(rule, reply) => Job::AddRule(rule, reply, None),
            WriterMsg::Expire(now, limit, reply) => Job::Expire((now, limit), reply, 0),
            WriterMsg::Sweep(params, reply) => Job::Sweep(params, reply, 0),
            WriterMsg::Close(reply) => Job::Close(reply),
        }
    }
}

impl Job {
    /// Sends the job's result; called only after its batch is durable.
    pub fn answer(self) {
        match self {
            Job::Record(_, reply, result) => send(reply, result),
            Job::AddRule(_, reply, rule) => send(reply, rule.ok_or(LedgerError::Closed)),
            Job::Expire(_, reply, n) | Job::Sweep(_, reply, n) => send(reply, Ok(n)),
            Job::Close(reply) => send(reply, Ok(())),
        }
    }

    /// Answers `Storage(message)`: the job's batch was not committed.
    pub fn fail(self, message: &str) {
        let err = || LedgerError::Storage(message.to_owned());
        match self {
            Job::Record(_, reply, _) | Job::Expire(_, reply, _) | Job::Sweep(_, reply, _) => {
                send(reply, Err(err()))
            }
            Job::AddRule(_, reply, _) => send(reply, Err(err())),
            Job::Close(reply) => send(reply, Err(err())),
        }
    }
}

/// Answers a waiter. One that gave up (dropped its future) is not an error.
fn send<T>(reply: Reply<T>, result: Result<T, LedgerError>) {
    let _ = reply.send(result);
}

const RECORD: u8 = 1;
const RULE: u8 = 2;
const EXPIRE: u8 = 3;
const SWEEP: u8 = 4;

/// Appends the journal encoding of `jobs` (their writes, not their results) to `out`. Fails
/// with `Storage` only if a rule cannot be encoded as JSON.
pub(super) fn encode(jobs: &[Job], out: &mut Vec<u8>) -> Result<(), LedgerError> {
    let put_i64 = |out: &mut Vec<u8>, n: i64| out.extend_from_slice(&n.to_le_bytes());
    let limit = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    for job in jobs {
        match job {
            Job::Record(p, _, _) => {
                out.push(RECORD);
                codec::put_str(out, &p.record.credential_id);
                codec::put_bytes(out, &p.bytes);
                match &p.replay {
                    Some((key, expires_at)) => {
                        out.push(1);
                        codec::put_str(out, key);
                        put_i64(out, *expires_at);
                    }
                    None => out.push(0),
                }
            }
            Job::AddRule(rule, _, _) => {
                out.push(RULE);
                let json = serde_json::to_vec(rule.as_ref())
                    .map_err(|e| LedgerError::Storage(format!("journaling a rule: {e}")))?;
                codec::put_bytes(out, &json);
            }
            Job::Expire((now, n), _, _) => {
                out.push(EXPIRE);
                put_i64(out, *now);
                put_i64(out, limit(*n));
            }
            Job::Sweep(params, _, _) => {
                out.push(SWEEP);
                put_i64(out, params.expired_before);
                put_i64(out, params.rules_before);
                put_i64(out, limit(params.limit));
            }
            Job::Close(_) => {}
        }
    }
    Ok(())
}

/// Returns the jobs encoded in `payload` by [`encode`], each with a reply nobody waits for (a
/// replayed batch was answered before the crash, or never). Fails with what is wrong when the
/// payload is not such an encoding.
pub(super) fn decode(payload: &[u8]) -> Result<Vec<Job>, DecodeError> {
    let mut r = Reader::new(payload);
    let mut jobs = Vec::new();
    let limit = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
    while !r.is_done() {
        let msg = match r.u8()? {
            RECORD => {
                let id = r.string()?;
                let bytes = r.bytes()?.to_vec();
                let replay = match r.u8()? {
                    0 => None,
                    _ => Some((r.string()?, r.i64()?)),
                };
                let record =
                    codec::decode_record(&id, &bytes).map_err(|_| DecodeError::Unknown {
                        field: "record in the journal",
                        value: RECORD,
                    })?;
                let pending = PendingRecord {
                    record,
                    bytes,
                    replay,
                };
                WriterMsg::Record(Box::new(pending), unanswered())
            }
            RULE => {
                let rule: NewRule =
                    serde_json::from_slice(r.bytes()?).map_err(|_| DecodeError::Unknown {
                        field: "rule in the journal",
                        value: RULE,
                    })?;
                WriterMsg::AddRule(Box::new(rule), unanswered())
            }
            EXPIRE => WriterMsg::Expire(r.i64()?, limit(r.i64()?), unanswered()),
            SWEEP => {
                let (expired_before, rules_before) = (r.i64()?, r.i64()?);
                let params = SweepParams {
                    expired_before,
                    rules_before,
                    limit: limit(r.i64()?),
                };
                WriterMsg::Sweep(params, unanswered())
            }
            tag => {
                return Err(DecodeError::Unknown {
                    field: "journal entry",
                    value: tag,
                });
            }
        };
        jobs.push(Job::from(msg));
    }
    Ok(jobs)
}

/// Returns a reply whose receiver is gone.
fn unanswered<T>() -> Reply<T> {
    oneshot::channel().0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::Selector;
    use crate::test_records::sample as record;
    use tessera_core::domain::RuleScope;

    fn jobs() -> Vec<Job> {
        let plain = record("first", 1_800);
        let guarded = record("second", 2_400);
        let pending = |record: CredentialRecord, replay| PendingRecord {
            bytes: codec::encode_record(&record),
            record,
            replay,
        };
        let rule = NewRule {
            revocation_id: "rev-1".into(),
            selector: Selector::Workload,
            value: "spiffe://example.org/ci".into(),
            effective_at: 1_700,
            effective_at_ms: Some(1_700_123),
            reason: "offboarded".into(),
            revoked_by: "spiffe://example.org/admin".into(),
            scope: Some(RuleScope {
                covered: 3,
                access_ends_at: Some(2_400),
            }),
        };
        let sweep = SweepParams {
            expired_before: 1_000,
            rules_before: 900,
            limit: 10_000,
        };
        [
            WriterMsg::Record(Box::new(pending(plain, None)), unanswered()),
            WriterMsg::Record(
                Box::new(pending(guarded, Some(("github:jti-1".into(), 2_000)))),
                unanswered(),
            ),
            WriterMsg::AddRule(Box::new(rule), unanswered()),
            WriterMsg::Expire(1_750, 512, unanswered()),
            WriterMsg::Sweep(sweep, unanswered()),
            WriterMsg::Close(unanswered()),
        ]
        .into_iter()
        .map(Job::from)
        .collect()
    }

    /// A comparable rendering of a job's write.
    fn describe(job: &Job) -> String {
        match job {
            Job::Record(p, _, _) => format!("record {:?} {:?} {:?}", p.record, p.bytes, p.replay),
            Job::AddRule(rule, _, _) => format!("rule {rule:?}"),
            Job::Expire(args, _, _) => format!("expire {args:?}"),
            Job::Sweep(p, _, _) => format!("sweep {p:?}"),
            Job::Close(_) => "close".into(),
        }
    }

    #[test]
    fn a_batch_decodes_to_the_same_writes_in_the_same_order_without_its_close() {
        let jobs = jobs();
        let mut payload = Vec::new();
        encode(&jobs, &mut payload).unwrap();
        let decoded = decode(&payload).unwrap();
        let expected: Vec<String> = jobs[..5].iter().map(describe).collect();
        assert_eq!(decoded.iter().map(describe).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_truncated_or_unknown_entry_is_an_error_not_a_panic() {
        let mut payload = Vec::new();
        encode(&jobs(), &mut payload).unwrap();
        for cut in [1, payload.len() / 2, payload.len() - 1] {
            assert!(decode(&payload[..cut]).is_err(), "cut at {cut}");
        }
        let err = decode(&[9]).err().expect("an unknown tag must fail");
        assert!(err.to_string().contains("journal entry"), "{err}");
    }
}
