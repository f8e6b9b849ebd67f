//! The audit log: append-only JSON lines of every issuance, refusal, revoke and admin action.
//! Each line carries `prev` (the previous line's `hash`) and its own `hash` — SHA-256 over the
//! line without `hash` — so editing, removing or reordering lines breaks the chain at the first
//! line touched ([`verify`], `tessera audit verify FILE`). One writer thread appends; callers
//! never wait for the disk.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};

use tessera_core::attest::sha256_hex;
use tessera_core::clock::SharedClock;

use crate::refusal_audit::Repeats;

/// Most bytes of an attacker-chosen value written to the audit log or the server log.
pub const UNTRUSTED_MAX: usize = 256;

/// Returns `value` unchanged when it has at most [`UNTRUSTED_MAX`] bytes, else its first
/// [`UNTRUSTED_MAX`] bytes (cut at a character boundary) followed by
/// `…[truncated, N bytes]`, N its full length. For what unauthenticated callers choose
/// (refusal reasons that quote their claims, destinations, purposes): a flood of large values
/// cannot make each refused request a large audit or log line.
pub fn untrusted(value: &str) -> Cow<'_, str> {
    if value.len() <= UNTRUSTED_MAX {
        return Cow::Borrowed(value);
    }
    let mut end = UNTRUSTED_MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}…[truncated, {} bytes]",
        &value[..end],
        value.len()
    ))
}

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the audit log cannot be used or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("line {line}: {reason}")]
    Broken { line: u64, reason: String },
    #[error(
        "the log was truncated: the ledger anchored line {anchored} (written at {at_ms} ms), \
         the file ends at line {lines}"
    )]
    Truncated {
        anchored: u64,
        lines: u64,
        at_ms: i64,
    },
}

/// Lines the audit queue holds before [`AuditLog::record`] drops (and counts) new ones.
pub const AUDIT_QUEUE: usize = 8192;

/// A handle to the audit writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::SyncSender<Message>,
    /// Lines dropped because the queue was full (`tessera_audit_dropped_total`).
    dropped: Counter,
    /// The last line written and flushed.
    position: Arc<Mutex<Option<AuditPosition>>>,
}

/// Where a service records what it did: the audit log if there is one, stamped by the clock.
#[derive(Clone)]
pub struct Audit {
    log: Option<AuditLog>,
    clock: SharedClock,
    /// Refusals of unauthenticated callers counted this interval.
    repeats: Arc<Repeats>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("enabled", &self.log.is_some())
            .finish()
    }
}

impl Audit {
    /// Records into `log` (nowhere when `None`) at the times `clock` gives.
    pub fn new(log: Option<AuditLog>, clock: SharedClock) -> Self {
        Audit {
            log,
            clock,
            repeats: Arc::default(),
        }
    }

    /// Appends a refusal `event` with `fields`. One of an `unauthenticated` caller (class
    /// [`crate::refusal::Class::Unauthenticated`]) is aggregated ([`crate::refusal_audit`]): written only when it is the first for
    /// `reason` (cut by [`untrusted`]) in the interval, else counted in the `refused_repeated`
    /// line that ends the interval. Others are written as they come.
    pub fn refusal(&self, event: &str, unauthenticated: bool, reason: &str, fields: Value) {
        let Some(log) = &self.log else { return };
        if !unauthenticated {
            log.record(event, self.clock.unix_seconds(), fields);
            return;
        }
        let now = self.clock.unix_seconds();
        let (full, ended) = self.repeats.note(event, &untrusted(reason), now);
        for summary in ended {
            log.record("refused_repeated", now, summary);
        }
        if full {
            log.record(event, now, fields);
        }
    }

    /// Appends an entry (a no-op without a log).
    pub fn record(&self, event: &str, fields: Value) {
        if let Some(log) = &self.log {
            log.record(event, self.clock.unix_seconds(), fields);
        }
    }

    /// Returns where the log's chain stands (its last line written and flushed), or `None`
    /// without a log or before its first line.
    pub fn position(&self) -> Option<AuditPosition> {
        self.log.as_ref()?.position()
    }

    /// Writes the counts of repeated refusals, then waits until everything recorded so far is
    /// written (at shutdown).
    pub fn flush(&self) {
        if let Some(log) = &self.log {
            let now = self.clock.unix_seconds();
            for summary in self.repeats.close(now) {
                log.record("refused_repeated", now, summary);
            }
            log.flush();
        }
    }
}

/// What the writer is asked to do.
#[derive(Debug)]
enum Message {
    Entry(Map<String, Value>),
    /// Answer once everything before it is written and flushed.
    Flush(mpsc::Sender<()>),
}

/// How long the writer, woken by a line, waits before writing what has arrived: one write
/// (and one wake-up) for the lines of a few milliseconds instead of one per line. Lines still
/// in the queue are lost if the process is killed, as they were before the wait.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// The `audit-writer` thread's state: the file, and where its chain stands.
struct Writer {
    out: BufWriter<std::fs::File>,
    /// The file's path, for error messages.
    shown: String,
    prev: String,
    seq: u64,
    log_id: Option<String>,
    /// The last line written and flushed, shared with [`AuditLog::position`].
    written: Arc<Mutex<Option<AuditPosition>>>,
    /// The line being written, kept to reuse its allocation.
    line: Vec<u8>,
}

impl Writer {
    /// Writes lines until every sender is dropped: waits for one, lingers [`LINGER`], writes
    /// everything queued, flushes, then answers the flush requests among them.
    fn run(mut self, rx: &mpsc::Receiver<Message>) {
        while let Ok(first) = rx.recv() {
            if matches!(first, Message::Entry(_)) {
                std::thread::sleep(LINGER);
            }
            let mut flushed = Vec::new();
            for message in std::iter::once(first).chain(rx.try_iter()) {
                match message {
                    Message::Entry(fields) => self.write(fields),
                    Message::Flush(done) => flushed.push(done),
                }
            }
            match self.out.flush() {
                Ok(()) => self.publish_position(),
                Err(e) => {
                    tracing::error!(file = %self.shown, error = %e, "flushing the audit log failed")
                }
            }
            for done in flushed {
                let _ = done.send(());
            }
        }
    }

    /// Chains `fields` to the last line (`seq`, `prev`, `hash`) and writes it.
    fn write(&mut self, mut fields: Map<String, Value>) {
        fields.insert("seq".into(), (self.seq + 1).into());
        fields.insert("prev".into(), Value::String(self.prev.clone()));
        let hash = seal(&fields);
        fields.insert("hash".into(), Value::String(hash.clone()));
        // Serialized whole first, then handed to the buffer in one piece: the buffer then
        // reaches the file at line ends only (a line split across two writes is torn by a
        // crash between them).
        self.line.clear();
        let written = serde_json::to_writer(&mut self.line, &fields)
            .map_err(std::io::Error::from)
            .and_then(|()| {
                self.line.push(b'\n');
                self.out.write_all(&self.line)
            });
        match written {
            // The chain advances only past lines that were written.
            Ok(()) => {
                self.log_id.get_or_insert_with(|| hash.clone());
                (self.seq, self.prev) = (self.seq + 1, hash);
            }
            Err(e) => {
                tracing::error!(file = %self.shown, error = %e, "writing the audit log failed")
            }
        }
    }

    /// Makes the last line written the position [`AuditLog::position`] reports.
    fn publish_position(&self) {
        if let Some(log) = &self.log_id {
            *self.written.lock().unwrap_or_else(PoisonError::into_inner) = Some(AuditPosition {
                log: log.clone(),
                seq: self.seq,
                hash: self.prev.clone(),
            });
        }
    }
}

/// Returns the hash of a line's fields (without `hash`): of their compact JSON, keys in order,
/// as `serde_json` writes a `Value::Object` of them (which is what [`verify`] recomputes).
fn seal(fields: &Map<String, Value>) -> String {
    // A map of `Value`s has no key that is not a string, so this cannot fail; were it to, the
    // empty input's hash would break the chain where `verify` can name the line.
    sha256_hex(&serde_json::to_vec(fields).unwrap_or_default())
}

/// Where a log's chain stands: its identity (the hash of its first line), and the `seq` and
/// `hash` of its last line (what [`crate::audit_anchor`] stores in the ledger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPosition {
    pub log: String,
    pub seq: u64,
    pub hash: String,
}

/// Calls `each` with the number and text of every line of `file` that is complete (ended by
/// `\n`; a final fragment without one is what a crash mid-write leaves, never a line of the
/// chain). Returns the length in bytes of the complete lines. Fails with `Broken` on a line
/// that is not UTF-8, and with what `each` returns.
fn complete_lines(
    file: std::fs::File,
    mut each: impl FnMut(u64, &str) -> Result<(), AuditError>,
) -> Result<u64, AuditError> {
    let mut reader = BufReader::new(file);
    let (mut buf, mut n, mut complete) = (Vec::new(), 0, 0);
    loop {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| AuditError::Broken {
                line: n + 1,
                reason: e.to_string(),
            })?;
        if read == 0 || buf.last() != Some(&b'\n') {
            return Ok(complete);
        }
        n += 1;
        complete += read as u64;
        let text = std::str::from_utf8(&buf).map_err(|_| AuditError::Broken {
            line: n,
            reason: "not UTF-8".into(),
        })?;
        each(n, text.trim_end_matches('\n').trim_end_matches('\r'))?;
    }
}

/// Reads the `hash` and `seq` of the last line of an existing log, the hash of its first, and
/// the length of its complete lines.
fn tail(path: &Path) -> Result<(String, u64, Option<String>, u64), AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((GENESIS.to_owned(), 0, None, 0));
        }
        Err(e) => return Err(io(e)),
    };
    let mut first = None;
    let mut last = None;
    let complete = complete_lines(file, |_, line| {
        if !line.trim().is_empty() {
            if first.is_none() {
                first = Some(line.to_owned());
            }
            last = Some(line.to_owned());
        }
        Ok(())
    })?;
    let Some(last) = last else {
        return Ok((GENESIS.to_owned(), 0, None, complete));
    };
    let first = first.as_deref().and_then(line_hash);
    let value: Value = serde_json::from_str(&last).map_err(|e| AuditError::Broken {
        line: 0,
        reason: format!("last line is not JSON: {e}"),
    })?;
    let hash = value
        .get("hash")
        .and_then(Value::as_str)
        .unwrap_or(GENESIS)
        .to_owned();
    Ok((
        hash,
        value.get("seq").and_then(Value::as_u64).unwrap_or(0),
        first,
        complete,
    ))
}

/// Returns the `hash` member of a log line, if it has one.
fn line_hash(line: &str) -> Option<String> {
    let value: Value = serde_json::from_str(line).ok()?;
    value.get("hash")?.as_str().map(str::to_owned)
}

/// Returns the identity of the log at `path` (the hash of its first line), or `None` for an
/// empty log. Fails when the file cannot be read.
pub fn log_id(path: &Path) -> Result<Option<String>, AuditError> {
    Ok(tail(path)?.2)
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, continuing its chain, and starts the writer,
    /// whose queue holds [`AUDIT_QUEUE`] lines; lines recorded while it is full are counted in
    /// `dropped`. Fails when the file cannot be opened or its last line is not JSON.
    pub fn open(path: &Path, dropped: Counter) -> Result<AuditLog, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let (prev, seq, log_id, complete) = tail(path)?;
        let position = Arc::new(Mutex::new(log_id.clone().map(|log| AuditPosition {
            log,
            seq,
            hash: prev.clone(),
        })));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let length = file.metadata().map_err(io)?.len();
        if length > complete {
            // What a crash mid-write left after the last whole line: never part of the chain.
            tracing::warn!(file = %path.display(), bytes = length - complete,
                "the audit log ended in a partial line (a crash while writing it): removed");
            file.set_len(complete).map_err(io)?;
        }
        let (tx, rx) = mpsc::sync_channel::<Message>(AUDIT_QUEUE);
        let writer = Writer {
            out: BufWriter::new(file),
            shown: path.display().to_string(),
            prev,
            seq,
            log_id,
            written: Arc::clone(&position),
            line: Vec::new(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(io)?;
        Ok(AuditLog {
            tx,
            dropped,
            position,
        })
    }

    /// Appends an entry of `event` with `fields`, stamped with unix time `at`. Never waits:
    /// while the queue is full (a flood of refusals outruns the disk), the entry is dropped
    /// and counted.
    pub fn record(&self, event: &str, at: i64, fields: Value) {
        let mut map = match fields {
            Value::Object(map) => map,
            other => Map::from_iter([("detail".to_owned(), other)]),
        };
        map.insert("event".into(), Value::String(event.to_owned()));
        map.insert("at".into(), at.into());
        match self.tx.try_send(Message::Entry(map)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                self.dropped.inc();
            }
            // The writer only stops with the process.
            Err(mpsc::TrySendError::Disconnected(_)) => {}
        }
    }

    /// Returns once every entry recorded (and not dropped) before the call is written and
    /// flushed; waits for room in the queue.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Returns the last line written and flushed, or `None` before the first.
    pub fn position(&self) -> Option<AuditPosition> {
        self.position
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Checks the chain of the log at `path`; returns how many lines it holds (a final fragment
/// without its `\n`, left by a crash mid-write, is not a line: the next open removes it).
/// Fails naming the first line whose hash does not match its content or whose `prev` does not
/// match the line before it.
pub fn verify(path: &Path) -> Result<u64, AuditError> {
    let file = std::fs::File::open(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    complete_lines(file, |n, line| {
        let broken = |reason: String| AuditError::Broken { line: n, reason };
        let mut fields: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| broken(format!("not JSON: {e}")))?;
        let hash = match fields.remove("hash") {
            Some(Value::String(hash)) => hash,
            _ => return Err(broken("no hash".into())),
        };
        if fields.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(broken("prev does not match the hash of the line before: a line was removed, reordered or edited".into()));
        }
        if seal(&fields) != hash {
            return Err(broken(
                "hash does not match the line's content: the line was edited".into(),
            ));
        }
        prev = hash;
        count = n;
        Ok(())
    })?;
    Ok(count)
}

/// Checks the log at `path`, whose chain verified with `lines` lines, against the `anchor`
/// the ledger holds for it: the anchored line must be there with the anchored hash. Fails with
/// `Truncated` when the file ends before it, `Broken` when that line differs.
pub fn check_anchor(
    path: &Path,
    lines: u64,
    anchor: &tessera_ledger::AuditAnchor,
) -> Result<(), AuditError> {
    if anchor.seq > lines {
        return Err(AuditError::Truncated {
            anchored: anchor.seq,
            lines,
            at_ms: anchor.at_ms,
        });
    }
    let file = std::fs::File::open(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    let index = usize::try_from(anchor.seq.saturating_sub(1)).unwrap_or(usize::MAX);
    let line = BufReader::new(file).lines().nth(index);
    let hash = line.and_then(|l| l.ok()).as_deref().and_then(line_hash);
    if hash.as_deref() != Some(anchor.hash.as_str()) {
        return Err(AuditError::Broken {
            line: anchor.seq,
            reason: "its hash is not the one the ledger anchored".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_sealed_over_the_bytes_earlier_releases_hashed() {
        // Earlier releases hashed `Value::Object(fields).to_string()`; their logs must verify.
        let fields = serde_json::json!({
            "event": "issued", "at": 1_764_000_000, "seq": 7, "prev": "ab\u{e9}",
            "workload": "spiffe://x/\"quoted\"\n\u{1F511}", "ttl": -3, "ok": true, "none": null,
            "nested": {"z": [1, 2.5, "\u{0}"], "a": {}},
        });
        let Value::Object(map) = fields.clone() else {
            unreachable!("an object literal")
        };
        assert_eq!(seal(&map), sha256_hex(fields.to_string().as_bytes()));
    }

    #[test]
    fn a_full_queue_drops_new_lines_without_waiting_and_counts_them_in_the_metric() {
        let metrics = crate::metrics::Metrics::new();
        let (tx, queued) = mpsc::sync_channel(2);
        // No writer drains this queue: it stays full after two lines.
        let log = AuditLog {
            tx,
            dropped: metrics.audit_dropped.clone(),
            position: Arc::default(),
        };
        for i in 0..5 {
            log.record("refused", 1000 + i, serde_json::json!({"reason": "bad"}));
        }
        assert_eq!(queued.try_iter().count(), 2);
        assert_eq!(metrics.audit_dropped.get(), 3);
        assert!(
            metrics.encode().contains("tessera_audit_dropped_total 3"),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn untrusted_values_over_256_bytes_are_cut_at_a_character_boundary_and_marked() {
        assert_eq!(untrusted("short"), "short");
        let exact = "a".repeat(UNTRUSTED_MAX);
        assert_eq!(untrusted(&exact), exact);
        let long = format!("{}é{}", "a".repeat(UNTRUSTED_MAX - 1), "b".repeat(12_000));
        let cut = untrusted(&long);
        let total = long.len();
        assert_eq!(
            cut,
            format!(
                "{}…[truncated, {total} bytes]",
                "a".repeat(UNTRUSTED_MAX - 1)
            )
        );
    }

    #[test]
    fn verifies_an_intact_chain_across_reopens_and_names_an_edited_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        for round in 0..2 {
            let log = AuditLog::open(&path, Counter::default()).unwrap();
            for i in 0..3 {
                log.record(
                    "issued",
                    1000 + i,
                    serde_json::json!({"credential_id": format!("c{round}{i}")}),
                );
            }
            drop(log);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert_eq!(verify(&path).unwrap(), 6);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("c01", "cXX", 1);
        std::fs::write(&path, edited).unwrap();
        let err = verify(&path).unwrap_err().to_string();
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn a_partial_last_line_left_by_a_crash_is_not_a_line_and_the_next_open_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, Counter::default()).unwrap();
        log.record("issued", 1000, serde_json::json!({"credential_id": "c1"}));
        log.flush();
        drop(log);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(&whole[..whole.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(verify(&path).unwrap(), 1);
        let log = AuditLog::open(&path, Counter::default()).unwrap();
        log.record("issued", 1001, serde_json::json!({"credential_id": "c2"}));
        log.flush();
        drop(log);
        assert_eq!(verify(&path).unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(std::str::from_utf8(&whole).unwrap()),
            "{text}"
        );
        assert!(text.ends_with("}\n") && text.contains("\"c2\""), "{text}");
    }
}
