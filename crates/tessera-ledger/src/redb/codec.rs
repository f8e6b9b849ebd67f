//! The compact binary encodings of schema version 3: credential records and events.
//!
//! A record (the value under its credential id, which is not repeated):
//! `tag 0x01 | kind u8 | evidence kind u8 | status u8 | flags u8 | issued_at i64 LE |
//! expires_at i64 LE | workload | owner | destination | purpose | grant | evidence hash |
//! [ci issuer | ci subject | [run id] | [jti]] | [status list | status idx u32 LE]`, where
//! every string is a LEB128 length then UTF-8 bytes, and the evidence hash is 32 raw bytes when
//! it is 64 lowercase hex digits (flag `HASH_RAW`), else a string. The status list reference
//! (flag `HAS_STATUS`) came later: records written before it lack the flag and decode with
//! none.
//!
//! An event: `kind u8 | at i64 LE | payload`; the payload of `issued` and `expired` is the
//! credential id (the record is read from the credentials table), of `revoked` the JSON of
//! the [`RevocationRule`].

use crate::{
    CiEvidence, CredentialKind, CredentialRecord, EventKind, EvidenceKind, LedgerError,
    RevocationRule, Status, StatusListRef,
};

const RECORD_TAG: u8 = 1;
const HAS_CI: u8 = 1;
const HAS_RUN_ID: u8 = 1 << 1;
const HAS_JTI: u8 = 1 << 2;
const HASH_RAW: u8 = 1 << 3;
const HAS_STATUS: u8 = 1 << 4;

/// Returns the stored bytes of `record` (its id excluded: it is the key).
pub(super) fn encode_record(record: &CredentialRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    let raw_hash = hex32(&record.evidence_hash);
    let mut flags = if raw_hash.is_some() { HASH_RAW } else { 0 };
    if let Some(ci) = &record.ci {
        flags |= HAS_CI;
        flags |= if ci.run_id.is_some() { HAS_RUN_ID } else { 0 };
        flags |= if ci.jti.is_some() { HAS_JTI } else { 0 };
    }
    if record.status_list.is_some() {
        flags |= HAS_STATUS;
    }
    out.extend_from_slice(&[
        RECORD_TAG,
        kind_code(record.kind),
        evidence_code(record.evidence_kind),
        status_code(record.status),
        flags,
    ]);
    out.extend_from_slice(&record.issued_at.to_le_bytes());
    out.extend_from_slice(&record.expires_at.to_le_bytes());
    for s in [
        &record.workload,
        &record.owner,
        &record.destination,
        &record.purpose,
        &record.grant,
    ] {
        put_str(&mut out, s);
    }
    match raw_hash {
        Some(raw) => out.extend_from_slice(&raw),
        None => put_str(&mut out, &record.evidence_hash),
    }
    if let Some(ci) = &record.ci {
        put_str(&mut out, &ci.issuer);
        put_str(&mut out, &ci.subject);
        for s in [&ci.run_id, &ci.jti].into_iter().flatten() {
            put_str(&mut out, s);
        }
    }
    if let Some(status) = &record.status_list {
        put_str(&mut out, &status.list);
        out.extend_from_slice(&status.idx.to_le_bytes());
    }
    out
}

/// Returns the record stored as `bytes` under `credential_id`. Fails with `Corrupt` (naming
/// the id) when the bytes are not a record of this encoding.
pub(super) fn decode_record(
    credential_id: &str,
    bytes: &[u8],
) -> Result<CredentialRecord, LedgerError> {
    decode_record_fields(credential_id, bytes)
        .map_err(|what| LedgerError::Corrupt(format!("credential {credential_id}: {what}")))
}

/// What is wrong with stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DecodeError {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("string length too long at byte {0}")]
    LengthTooLong(usize),
    #[error("a string is not UTF-8")]
    NotUtf8,
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("unknown {field} {value}")]
    Unknown { field: &'static str, value: u8 },
}

/// Returns the value stored as one-byte `code` (its position in `values`); fails naming
/// `field` for a code no value has.
fn code<T: Copy>(field: &'static str, code: u8, values: &[T]) -> Result<T, DecodeError> {
    values
        .get(usize::from(code))
        .copied()
        .ok_or(DecodeError::Unknown { field, value: code })
}

fn decode_record_fields(
    credential_id: &str,
    bytes: &[u8],
) -> Result<CredentialRecord, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let tag = r.u8()?;
    if tag != RECORD_TAG {
        return Err(DecodeError::Unknown {
            field: "record encoding",
            value: tag,
        });
    }
    let (kind, evidence, status, flags) = (r.u8()?, r.u8()?, r.u8()?, r.u8()?);
    let issued_at = r.i64()?;
    let expires_at = r.i64()?;
    let (workload, owner, destination) = (r.string()?, r.string()?, r.string()?);
    let (purpose, grant) = (r.string()?, r.string()?);
    let evidence_hash = if flags & HASH_RAW != 0 {
        r.take(32)?.iter().map(|b| format!("{b:02x}")).collect()
    } else {
        r.string()?
    };
    let ci = if flags & HAS_CI != 0 {
        let (issuer, subject) = (r.string()?, r.string()?);
        let run_id = (flags & HAS_RUN_ID != 0).then(|| r.string()).transpose()?;
        let jti = (flags & HAS_JTI != 0).then(|| r.string()).transpose()?;
        Some(CiEvidence {
            issuer,
            subject,
            run_id,
            jti,
        })
    } else {
        None
    };
    let status_list = if flags & HAS_STATUS != 0 {
        let list = r.string()?;
        Some(StatusListRef {
            list,
            idx: r.u32()?,
        })
    } else {
        None
    };
    r.end()?;
    Ok(CredentialRecord {
        credential_id: credential_id.to_owned(),
        kind: code("kind", kind, &[CredentialKind::Jwt, CredentialKind::X509])?,
        workload,
        owner,
        destination,
        purpose,
        grant,
        evidence_kind: code(
            "evidence kind",
            evidence,
            &[
                EvidenceKind::X509Svid,
                EvidenceKind::JwtSvid,
                EvidenceKind::Oidc,
            ],
        )?,
        evidence_hash,
        issued_at,
        expires_at,
        status: code(
            "status",
            status,
            &[Status::Live, Status::Revoked, Status::Expired],
        )?,
        ci,
        status_list,
    })
}

/// A stored event before its credential is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StoredEvent {
    /// `issued` or `expired`, naming the credential.
    Credential(EventKind, i64, String),
    /// `revoked`, with its rule.
    Revoked(i64, Box<RevocationRule>),
}

/// Returns the stored bytes of an `issued` or `expired` event about `credential_id`.
pub(super) fn encode_credential_event(kind: EventKind, at: i64, credential_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + credential_id.len());
    out.push(event_code(kind));
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(credential_id.as_bytes());
    out
}

/// Returns the stored bytes of the `revoked` event of `rule`. Fails with `Storage` if the rule
/// cannot be encoded.
pub(super) fn encode_rule_event(at: i64, rule: &RevocationRule) -> Result<Vec<u8>, LedgerError> {
    let mut out = vec![event_code(EventKind::Revoked)];
    out.extend_from_slice(&at.to_le_bytes());
    serde_json::to_writer(&mut out, rule)
        .map_err(|e| LedgerError::Storage(format!("encoding a rule event: {e}")))?;
    Ok(out)
}

/// Returns when the event stored as `bytes` happened. Fails with `Corrupt` if it is too short.
pub(super) fn event_at(sequence: u64, bytes: &[u8]) -> Result<i64, LedgerError> {
    let mut r = Reader { bytes, pos: 1 };
    r.i64()
        .map_err(|what| LedgerError::Corrupt(format!("event {sequence}: {what}")))
}

/// Returns the event stored as `bytes`. Fails with `Corrupt` (naming the sequence) when the
/// bytes are not an event of this encoding.
pub(super) fn decode_event(sequence: u64, bytes: &[u8]) -> Result<StoredEvent, LedgerError> {
    let corrupt =
        |what: &dyn std::fmt::Display| LedgerError::Corrupt(format!("event {sequence}: {what}"));
    let mut r = Reader { bytes, pos: 0 };
    let code = r.u8().map_err(|e| corrupt(&e))?;
    let at = r.i64().map_err(|e| corrupt(&e))?;
    let payload = r.rest();
    let kind = match code {
        0 => EventKind::Issued,
        1 => EventKind::Revoked,
        2 => EventKind::Expired,
        other => {
            return Err(corrupt(&DecodeError::Unknown {
                field: "event kind",
                value: other,
            }));
        }
    };
    if kind == EventKind::Revoked {
        let rule = serde_json::from_slice(payload).map_err(|e| corrupt(&e))?;
        return Ok(StoredEvent::Revoked(at, Box::new(rule)));
    }
    let id = std::str::from_utf8(payload).map_err(|e| corrupt(&e))?;
    Ok(StoredEvent::Credential(kind, at, id.to_owned()))
}

fn event_code(kind: EventKind) -> u8 {
    match kind {
        EventKind::Issued => 0,
        EventKind::Revoked => 1,
        EventKind::Expired => 2,
    }
}

fn kind_code(kind: CredentialKind) -> u8 {
    match kind {
        CredentialKind::Jwt => 0,
        CredentialKind::X509 => 1,
    }
}

fn evidence_code(kind: EvidenceKind) -> u8 {
    match kind {
        EvidenceKind::X509Svid => 0,
        EvidenceKind::JwtSvid => 1,
        EvidenceKind::Oidc => 2,
    }
}

fn status_code(status: Status) -> u8 {
    match status {
        Status::Live => 0,
        Status::Revoked => 1,
        Status::Expired => 2,
    }
}

/// Returns the 32 bytes of `hex` when it is exactly 64 lowercase hex digits.
fn hex32(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Appends `s` as a LEB128 length then its UTF-8 bytes.
pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Appends `bytes` as a LEB128 length then the bytes.
pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
}

/// Reads fields front to back; every method fails with what was wrong instead of panicking.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Returns a reader at the start of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Returns whether every byte has been read.
    pub(super) fn is_done(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut le = [0u8; 4];
        le.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(le))
    }

    pub(super) fn i64(&mut self) -> Result<i64, DecodeError> {
        let mut le = [0u8; 8];
        le.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(le))
    }

    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }

    /// Reads a LEB128 length then that many bytes (what [`put_bytes`] wrote).
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let mut len = 0usize;
        for shift in (0..35).step_by(7) {
            let byte = self.u8()?;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return self.take(len);
            }
        }
        Err(DecodeError::LengthTooLong(self.pos))
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos = self.bytes.len();
        out
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.bytes.len() - self.pos))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::NewRule;

    fn record(ci: Option<CiEvidence>, evidence_hash: &str) -> CredentialRecord {
        CredentialRecord {
            credential_id: "AbCdEfGhIjKlMnOpQrStUv".into(),
            kind: CredentialKind::X509,
            workload: "spiffe://example.org/ns/payments/sa/api".into(),
            owner: "team-payments".into(),
            destination: "https://ledger.example.org/".repeat(10),
            purpose: "ledger:write".into(),
            grant: "payments-api".into(),
            evidence_kind: EvidenceKind::Oidc,
            evidence_hash: evidence_hash.into(),
            issued_at: 1_767_225_600,
            expires_at: -5,
            status: Status::Revoked,
            ci,
            status_list: None,
        }
    }

    #[test]
    fn records_round_trip_with_and_without_ci_evidence() {
        let ci = CiEvidence {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: "repo:acme/app:ref:refs/heads/main".into(),
            run_id: None,
            jti: Some("j".into()),
        };
        for r in [
            record(None, &"ab".repeat(32)),
            record(Some(ci), "not hex"),
            record(None, &"AB".repeat(32)),
            record(None, ""),
            with_status(record(None, &"ab".repeat(32))),
        ] {
            let bytes = encode_record(&r);
            assert_eq!(decode_record(&r.credential_id, &bytes).unwrap(), r);
        }
        let compact = encode_record(&record(None, &"ab".repeat(32)));
        let json = serde_json::to_vec(&record(None, &"ab".repeat(32))).unwrap();
        assert!(
            compact.len() + 200 < json.len(),
            "{} vs {}",
            compact.len(),
            json.len()
        );
    }

    fn with_status(mut r: CredentialRecord) -> CredentialRecord {
        r.status_list = Some(StatusListRef {
            list: "1767225600-00abcdef01234567".into(),
            idx: u32::MAX - 1,
        });
        r
    }

    #[test]
    fn a_record_written_before_status_lists_decodes_without_one() {
        // Bytes as the encoding wrote them before `HAS_STATUS` existed: no flag, no fields.
        let old = record(None, &"ab".repeat(32));
        let bytes = encode_record(&old);
        assert_eq!(bytes[4] & HAS_STATUS, 0);
        assert_eq!(decode_record(&old.credential_id, &bytes).unwrap(), old);
        let new = encode_record(&with_status(old.clone()));
        assert_eq!(
            &new[5..bytes.len()],
            &bytes[5..],
            "the fields before are unchanged"
        );
    }

    #[test]
    fn corrupt_record_bytes_are_an_error_never_a_panic() {
        for bytes in [
            encode_record(&record(None, &"ab".repeat(32))),
            encode_record(&with_status(record(None, &"ab".repeat(32)))),
        ] {
            corrupt_bytes_are_an_error(&bytes);
        }
    }

    fn corrupt_bytes_are_an_error(bytes: &[u8]) {
        for len in 0..bytes.len() {
            let err = decode_record("id", &bytes[..len]).unwrap_err();
            assert!(matches!(err, LedgerError::Corrupt(ref m) if m.contains("credential id")));
        }
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(decode_record("id", &trailing).is_err());
        assert!(decode_record("id", b"{\"credential_id\":\"x\"}").is_err());
        for i in 0..bytes.len() {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= 0xff;
            let _ = decode_record("id", &flipped);
        }
    }

    #[test]
    fn events_name_their_credential_or_carry_their_rule() {
        let bytes = encode_credential_event(EventKind::Expired, 42, "cred");
        assert_eq!(
            decode_event(7, &bytes).unwrap(),
            StoredEvent::Credential(EventKind::Expired, 42, "cred".into())
        );
        assert_eq!(event_at(7, &bytes).unwrap(), 42);
        let rule = RevocationRule {
            rule: NewRule {
                revocation_id: "r".into(),
                selector: crate::Selector::Owner,
                value: "team".into(),
                effective_at: 43,
                effective_at_ms: Some(43_210),
                reason: "why".into(),
                revoked_by: "admin".into(),
                scope: None,
            },
            sequence: 8,
        };
        let bytes = encode_rule_event(43, &rule).unwrap();
        assert_eq!(
            decode_event(8, &bytes).unwrap(),
            StoredEvent::Revoked(43, Box::new(rule))
        );
        for len in 0..9 {
            assert!(decode_event(9, &bytes[..len]).is_err());
        }
        assert!(decode_event(9, &[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
