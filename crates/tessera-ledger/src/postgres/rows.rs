//! How domain values are kept in PostgreSQL columns: the small-integer codes of kinds and
//! statuses (the same codes as the redb encoding), and the decoding of result rows.

use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use crate::{
    CiEvidence, CredentialKind, CredentialRecord, EventKind, EvidenceKind, LedgerError, NewRule,
    Status, StatusListRef,
};

/// The credential columns, in the order [`record_at`] reads them, for a table aliased `c`.
pub(super) const RECORD_COLUMNS: &str = "c.credential_id, c.kind, c.workload, c.owner, \
     c.destination, c.purpose, c.grant_name, c.evidence_kind, c.evidence_hash, c.issued_at, \
     c.expires_at, c.status, c.ci_issuer, c.ci_subject, c.ci_run_id, c.ci_jti, c.status_list, \
     c.status_idx";

/// The credential columns a record is written to, in the order of [`RecordValues::params`]
/// (a macro, so that statements can be built with `concat!`).
macro_rules! credential_columns {
    () => {
        "credential_id, kind, workload, owner, destination, purpose, grant_name, \
         evidence_kind, evidence_hash, issued_at, expires_at, status, ci_issuer, ci_subject, \
         ci_run_id, ci_jti, status_list, status_idx"
    };
}
pub(super) use credential_columns;

/// A record as the values of the columns of [`credential_columns`].
pub(super) struct RecordValues<'a> {
    record: &'a CredentialRecord,
    /// Kind, evidence kind and status codes.
    codes: [i16; 3],
    /// CI issuer, subject, run id and jti.
    ci: [Option<&'a str>; 4],
    /// The status list and the index in it.
    status: (Option<&'a str>, Option<i64>),
}

impl<'a> RecordValues<'a> {
    /// Returns the column values of `record`.
    pub(super) fn of(record: &'a CredentialRecord) -> Self {
        RecordValues {
            record,
            codes: [
                kind_code(record.kind),
                evidence_code(record.evidence_kind),
                status_code(record.status),
            ],
            ci: match &record.ci {
                Some(ci) => [
                    Some(ci.issuer.as_str()),
                    Some(ci.subject.as_str()),
                    ci.run_id.as_deref(),
                    ci.jti.as_deref(),
                ],
                None => [None; 4],
            },
            status: match &record.status_list {
                Some(s) => (Some(s.list.as_str()), Some(i64::from(s.idx))),
                None => (None, None),
            },
        }
    }

    /// Returns the values, in the order of [`credential_columns`].
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 18] {
        let r = self.record;
        [
            &r.credential_id,
            &self.codes[0],
            &r.workload,
            &r.owner,
            &r.destination,
            &r.purpose,
            &r.grant,
            &self.codes[1],
            &r.evidence_hash,
            &r.issued_at,
            &r.expires_at,
            &self.codes[2],
            &self.ci[0],
            &self.ci[1],
            &self.ci[2],
            &self.ci[3],
            &self.status.0,
            &self.status.1,
        ]
    }
}

pub(super) fn kind_code(kind: CredentialKind) -> i16 {
    match kind {
        CredentialKind::Jwt => 0,
        CredentialKind::X509 => 1,
    }
}

pub(super) fn evidence_code(kind: EvidenceKind) -> i16 {
    match kind {
        EvidenceKind::X509Svid => 0,
        EvidenceKind::JwtSvid => 1,
        EvidenceKind::Oidc => 2,
    }
}

pub(super) fn status_code(status: Status) -> i16 {
    match status {
        Status::Live => 0,
        Status::Revoked => 1,
        Status::Expired => 2,
    }
}

pub(super) fn event_code(kind: EventKind) -> i16 {
    match kind {
        EventKind::Issued => 0,
        EventKind::Revoked => 1,
        EventKind::Expired => 2,
    }
}

/// Returns the value stored as `code` (its position in `values`). Fails with `Corrupt` naming
/// `field` for a code no value has.
fn from_code<T: Copy>(field: &str, code: i16, values: &[T]) -> Result<T, LedgerError> {
    usize::try_from(code)
        .ok()
        .and_then(|i| values.get(i).copied())
        .ok_or_else(|| LedgerError::Corrupt(format!("unknown {field} code {code}")))
}

/// Returns the event kind stored as `code`. Fails with `Corrupt` for an unknown code.
pub(super) fn event_kind(code: i16) -> Result<EventKind, LedgerError> {
    from_code(
        "event kind",
        code,
        &[EventKind::Issued, EventKind::Revoked, EventKind::Expired],
    )
}

/// Returns column `index` of `row`. Fails with `Corrupt` when it has another type.
pub(super) fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, LedgerError> {
    row.try_get(index)
        .map_err(|e| LedgerError::Corrupt(format!("column {index}: {e}")))
}

/// Returns a stored sequence as unsigned. Fails with `Corrupt` when it is negative.
pub(super) fn sequence(value: i64) -> Result<u64, LedgerError> {
    u64::try_from(value).map_err(|_| LedgerError::Corrupt(format!("negative sequence {value}")))
}

/// Returns `value` as a SQL bigint, saturating (limits and sequences beyond `i64::MAX` mean
/// "everything").
pub(super) fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Returns the record whose [`RECORD_COLUMNS`] start at column `at` of `row`, or `None` when
/// its id is NULL (an outer join found no credential). Fails with `Corrupt` on a column of
/// another type or an unknown code.
pub(super) fn record_at(row: &Row, at: usize) -> Result<Option<CredentialRecord>, LedgerError> {
    let Some(credential_id) = column::<Option<String>>(row, at)? else {
        return Ok(None);
    };
    let text = |i: usize| column::<String>(row, at + i);
    let code = |i: usize| column::<i16>(row, at + i);
    let ci_issuer: Option<String> = column(row, at + 12)?;
    let ci = match ci_issuer {
        Some(issuer) => Some(CiEvidence {
            issuer,
            subject: column::<Option<String>>(row, at + 13)?.unwrap_or_default(),
            run_id: column(row, at + 14)?,
            jti: column(row, at + 15)?,
        }),
        None => None,
    };
    let status_list = match column::<Option<String>>(row, at + 16)? {
        Some(list) => {
            let idx: i64 = column(row, at + 17)?;
            let idx = u32::try_from(idx)
                .map_err(|_| LedgerError::Corrupt(format!("status list index {idx}")))?;
            Some(StatusListRef { list, idx })
        }
        None => None,
    };
    Ok(Some(CredentialRecord {
        kind: from_code(
            "credential kind",
            code(1)?,
            &[CredentialKind::Jwt, CredentialKind::X509],
        )?,
        workload: text(2)?,
        owner: text(3)?,
        destination: text(4)?,
        purpose: text(5)?,
        grant: text(6)?,
        evidence_kind: from_code(
            "evidence kind",
            code(7)?,
            &[
                EvidenceKind::X509Svid,
                EvidenceKind::JwtSvid,
                EvidenceKind::Oidc,
            ],
        )?,
        evidence_hash: text(8)?,
        issued_at: column(row, at + 9)?,
        expires_at: column(row, at + 10)?,
        status: from_code(
            "status",
            code(11)?,
            &[Status::Live, Status::Revoked, Status::Expired],
        )?,
        ci,
        status_list,
        credential_id,
    }))
}

/// Returns the record whose columns start at column 0 of `row`. Fails with `Corrupt` as
/// [`record_at`] does, or when the id is NULL.
pub(super) fn record(row: &Row) -> Result<CredentialRecord, LedgerError> {
    record_at(row, 0)?.ok_or_else(|| LedgerError::Corrupt("credential without an id".into()))
}

/// Returns the rule stored as JSON (its sequence is kept in a column of its own). Fails with
/// `Corrupt` when it does not decode.
pub(super) fn rule(json: &str) -> Result<NewRule, LedgerError> {
    serde_json::from_str(json).map_err(|e| LedgerError::Corrupt(format!("rule: {e}")))
}
