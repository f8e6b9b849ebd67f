//! Reads of the PostgreSQL ledger, each one statement (or, for a page of `list`, a few) on a
//! pooled connection: no transaction is held across them.

use tokio_postgres::Client;

use super::connect::StorageContext;
use super::rows::{self, RECORD_COLUMNS};
use crate::{
    CredentialPage, CredentialRecord, Event, LedgerError, ListParams, LiveCounts, RevocationRule,
    Selector, StatusScan,
};

/// Returns the record with this id, or `None`. Fails with `Storage` when the database cannot
/// be read, `Corrupt` on a row that does not decode.
pub(super) async fn get(
    client: &Client,
    id: &str,
) -> Result<Option<CredentialRecord>, LedgerError> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM credentials c WHERE c.credential_id = $1");
    let row = client
        .query_opt(&sql, &[&id])
        .await
        .ctx("reading a credential")?;
    row.as_ref().map(rows::record).transpose()
}

/// Returns up to `limit` records in id order after `after`. Fails as [`get`] does.
pub(super) async fn scan(
    client: &Client,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<CredentialRecord>, LedgerError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM credentials c
         WHERE $1::text IS NULL OR c.credential_id > $1::text
         ORDER BY c.credential_id LIMIT $2"
    );
    let limit = rows::bigint(limit as u64);
    let found = client
        .query(&sql, &[&after, &limit])
        .await
        .ctx("scanning credentials")?;
    found.iter().map(rows::record).collect()
}

/// Returns up to `limit` events after `since`, in sequence order, each `issued`/`expired` one
/// with its credential as stored now (`None` once swept). Fails as [`get`] does.
pub(super) async fn events_since(
    client: &Client,
    since: u64,
    limit: usize,
) -> Result<Vec<Event>, LedgerError> {
    let sql = format!(
        "SELECT e.sequence, e.kind, e.at, e.rule, {RECORD_COLUMNS}
         FROM events e LEFT JOIN credentials c ON c.credential_id = e.credential_id
         WHERE e.sequence > $1 ORDER BY e.sequence LIMIT $2"
    );
    let (since, limit) = (rows::bigint(since), rows::bigint(limit as u64));
    let found = client
        .query(&sql, &[&since, &limit])
        .await
        .ctx("reading events")?;
    found.iter().map(event).collect()
}

/// Returns the event of a row of [`events_since`].
fn event(row: &tokio_postgres::Row) -> Result<Event, LedgerError> {
    let sequence = rows::sequence(rows::column(row, 0)?)?;
    let rule: Option<String> = rows::column(row, 3)?;
    let revocation = rule
        .map(|json| rows::rule(&json).map(|rule| RevocationRule { rule, sequence }))
        .transpose()?;
    Ok(Event {
        sequence,
        kind: rows::event_kind(rows::column(row, 1)?)?,
        at: rows::column(row, 2)?,
        credential: rows::record_at(row, 4)?,
        revocation,
        committed: None,
    })
}

/// Returns the last sequence taken (0 for a new ledger). Fails with `Storage` when the counter
/// cannot be read.
pub(super) async fn last_sequence(client: &Client) -> Result<u64, LedgerError> {
    const OP: &str = "reading the event sequence";
    let row = client
        .query_one("SELECT last FROM ledger_sequence", &[])
        .await
        .ctx(OP)?;
    rows::sequence(rows::column(&row, 0)?)
}

/// Returns every rule, oldest first. Fails as [`get`] does.
pub(super) async fn rules(client: &Client) -> Result<Vec<RevocationRule>, LedgerError> {
    let found = client
        .query("SELECT sequence, rule FROM rules ORDER BY sequence", &[])
        .await
        .ctx("reading rules")?;
    found
        .iter()
        .map(|row| {
            let sequence = rows::sequence(rows::column(row, 0)?)?;
            let rule = rows::rule(rows::column(row, 1)?)?;
            Ok(RevocationRule { rule, sequence })
        })
        .collect()
}

/// Returns the persisted counts of credentials expiring after `now`. Fails with `Corrupt` on
/// a selector code no selector has.
pub(super) async fn live_counts(client: &Client, now: i64) -> Result<LiveCounts, LedgerError> {
    let found = client
        .query(
            "SELECT expires_at, selector, value, n FROM live_counts WHERE expires_at > $1",
            &[&now],
        )
        .await
        .ctx("reading live counts")?;
    let mut counts = LiveCounts::new();
    for row in &found {
        let code: i16 = rows::column(row, 1)?;
        let selector = u8::try_from(code)
            .ok()
            .and_then(Selector::from_code)
            .ok_or_else(|| {
                LedgerError::Corrupt(format!("live count with unknown selector code {code}"))
            })?;
        let value: &str = rows::column(row, 2)?;
        let n: i64 = rows::column(row, 3)?;
        counts.add(
            selector,
            value,
            rows::column(row, 0)?,
            u64::try_from(n).unwrap_or_default(),
        );
    }
    Ok(counts)
}

/// Returns the X.509 records expiring after `after`, in expiry order. Fails as [`get`] does.
pub(super) async fn x509_records(
    client: &Client,
    after: i64,
) -> Result<Vec<CredentialRecord>, LedgerError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM credentials c WHERE c.kind = $1 AND c.expires_at > $2
         ORDER BY c.expires_at, c.credential_id"
    );
    let kind = rows::kind_code(crate::CredentialKind::X509);
    let found = client
        .query(&sql, &[&kind, &after])
        .await
        .ctx("reading live X.509 credentials")?;
    found.iter().map(rows::record).collect()
}

/// Returns the page of records with a status list entry that `scan` asks for, in (expires_at,
/// id) order. Fails as [`get`] does.
pub(super) async fn status_list_records(
    client: &Client,
    scan: &StatusScan,
) -> Result<Vec<CredentialRecord>, LedgerError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM credentials c
         WHERE c.status_list IS NOT NULL AND c.expires_at > $1
           AND (c.expires_at, c.credential_id) > ($2, $3)
         ORDER BY c.expires_at, c.credential_id LIMIT $4"
    );
    let (at, id) = scan.after.clone().unwrap_or((i64::MIN, String::new()));
    let limit = rows::bigint(scan.limit as u64);
    let found = client
        .query(&sql, &[&scan.expires_after, &at, &id, &limit])
        .await
        .ctx("reading credentials with a status list entry")?;
    found.iter().map(rows::record).collect()
}

/// Returns how many records are stored. Fails with `Storage` when they cannot be counted.
pub(super) async fn len(client: &Client) -> Result<u64, LedgerError> {
    let row = client
        .query_one("SELECT count(*) FROM credentials", &[])
        .await
        .ctx("counting credentials")?;
    let n: i64 = rows::column(&row, 0)?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// Returns [`Ledger::newest_issue_ms`](crate::Ledger::newest_issue_ms) from the records of the
/// newest issue second (the `credentials_issued` index). Fails with `Storage` when they cannot
/// be read.
pub(super) async fn newest_issue_ms(client: &Client) -> Result<Option<i64>, LedgerError> {
    const OP: &str = "reading the newest issue time";
    let rows = client
        .query(
            "SELECT credential_id, issued_at FROM credentials \
             WHERE issued_at = (SELECT max(issued_at) FROM credentials)",
            &[],
        )
        .await
        .ctx(OP)?;
    let mut newest = None;
    for row in &rows {
        let id: String = rows::column(row, 0)?;
        let second: i64 = rows::column(row, 1)?;
        newest = newest.max(Some(tessera_core::domain::id::issued_ms(&id, second)));
    }
    Ok(newest)
}

/// Where a page starts: strictly below `(issued_at, id)`, or at it too when `inclusive`.
struct Bound {
    issued_at: i64,
    id: String,
    inclusive: bool,
}

/// Returns the bound a page token names. Fails with `BadRequest` on a token this ledger does
/// not return (tokens are those of the redb ledger: `issued_at:id`, then a NUL meaning "this
/// key included").
fn parse_token(token: &str) -> Result<Option<Bound>, LedgerError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || LedgerError::BadRequest("page_token is not one this server returned".into());
    let (at, id) = token.split_once(':').ok_or_else(bad)?;
    let (id, inclusive) = match id.strip_suffix('\u{0}') {
        Some(id) => (id, true),
        None => (id, false),
    };
    if id.contains('\u{0}') {
        return Err(bad());
    }
    Ok(Some(Bound {
        issued_at: at.parse().map_err(|_| bad())?,
        id: id.to_owned(),
        inclusive,
    }))
}

/// Returns a token whose exclusive upper bound still includes `(at, id)`.
fn resume_token(at: i64, id: &str) -> String {
    format!("{at}:{id}\u{0}")
}

/// Returns one page of [`crate::Ledger::list`]: records newest first, examining at most
/// `scan_limit` of them (read in chunks), filtered as [`ListParams::matches`] says. Fails with
/// `BadRequest` on a foreign page token, else as [`get`] does.
pub(super) async fn list(client: &Client, p: &ListParams) -> Result<CredentialPage, LedgerError> {
    const OP: &str = "listing credentials";
    let mut bound = parse_token(&p.page_token)?;
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM credentials c
         WHERE $1::bigint IS NULL OR (c.issued_at, c.credential_id) < ($1::bigint, $2::text)
            OR ($3 AND (c.issued_at, c.credential_id) = ($1::bigint, $2::text))
         ORDER BY c.issued_at DESC, c.credential_id DESC LIMIT $4"
    );
    let statement = client.prepare(&sql).await.ctx(OP)?;
    let chunk = p.page_size.saturating_mul(2).clamp(64, 1024);
    let mut page = CredentialPage::default();
    let mut scanned = 0usize;
    loop {
        let take = chunk.min(p.scan_limit.saturating_sub(scanned)) + 1;
        let (at, id, inclusive) = match &bound {
            Some(b) => (Some(b.issued_at), Some(b.id.as_str()), b.inclusive),
            None => (None, None, false),
        };
        let found = client
            .query(
                &statement,
                &[&at, &id, &inclusive, &rows::bigint(take as u64)],
            )
            .await
            .ctx(OP)?;
        let fetched = found.len();
        for row in &found {
            let record = rows::record(row)?;
            if page.credentials.len() == p.page_size || scanned == p.scan_limit {
                page.next_page_token = resume_token(record.issued_at, &record.credential_id);
                return Ok(page);
            }
            scanned += 1;
            bound = Some(Bound {
                issued_at: record.issued_at,
                id: record.credential_id.clone(),
                inclusive: false,
            });
            if p.matches(&record) {
                page.credentials.push(record);
            }
        }
        if fetched < take {
            return Ok(page);
        }
    }
}
