//! The ledger writer's journal: a file beside the redb file (`<ledger>.journal`) of
//! checksummed frames, each holding the writes of one committed batch ([`super::job::encode`]).
//!
//! redb makes a commit durable by writing every B-tree page the batch touched, then the header,
//! and fsyncing the file: on this kind of disk ~130 µs of CPU and ~320 µs of wall time per
//! commit. With the journal, a batch is committed to redb without an fsync and made durable by
//! one sequential write and one `fdatasync` of its frame (~30 µs, ~120 µs); redb is checkpointed
//! (committed with an fsync) now and then, after which the journal is written from its start
//! again. redb has no write-ahead log of its own, and no crate offers one that replays redb
//! transactions, hence this small format.
//!
//! A frame: `magic "TJ01" | number u64 LE | length u32 LE | crc32 u32 LE | payload`, the CRC
//! (IEEE, `crc32fast`) over number, length and payload. Frames are numbered without gaps over
//! the ledger's life, and every redb transaction of the writer stores the number of the batch it
//! holds (`journal_frame` in `meta`), so after a crash exactly the frames after the stored number
//! are replayed: read from the start of the file while the numbers follow each other and every
//! checksum holds. A torn last frame fails its checksum and ends the scan (its batch was never
//! answered); frames left from before the last checkpoint carry smaller numbers and end it too.
//!
//! The file grows in zero-filled, fsynced steps of [`GROWTH`], so a frame overwrites blocks that
//! are already allocated and its `fdatasync` has no file metadata to write.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StorageContext;
use crate::LedgerError;

const MAGIC: &[u8; 4] = b"TJ01";
const HEADER: usize = 20;
/// How much the file grows by when a frame would pass its end.
const GROWTH: u64 = 1 << 20;

/// A frame read back at open: the writes of batch `number`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frame {
    pub number: u64,
    pub payload: Vec<u8>,
}

/// The open journal file and where its next frame goes.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// Where the next frame is written.
    offset: u64,
    /// Bytes of the file that are allocated (written at least once).
    allocated: u64,
    /// The frame being built, kept to reuse its allocation.
    buf: Vec<u8>,
}

/// Returns the journal path of the ledger at `ledger`: the same name with `.journal` appended.
pub(super) fn path_of(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

impl Journal {
    /// Opens (creating it if missing) the journal at `path`; returns it, positioned at its start,
    /// and the frames numbered after `applied`, in order. Fails with `Storage` when the file
    /// cannot be opened or read, and with `Corrupt` when the frames after `applied` do not start
    /// at `applied + 1` (a frame the ledger needs is missing).
    pub fn open(path: &Path, applied: u64) -> Result<(Journal, Vec<Frame>), LedgerError> {
        const OP: &str = "opening the ledger journal";
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx(OP)?;
        if created {
            sync_parent(path)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ctx(OP)?;
        let frames: Vec<Frame> = chain(&bytes)
            .into_iter()
            .filter(|f| f.number > applied)
            .collect();
        if let Some(first) = frames.first()
            && first.number != applied + 1
        {
            return Err(LedgerError::Corrupt(format!(
                "the ledger journal {} starts at frame {} but the ledger holds frames up to {}: \
                 frames {} to {} are missing (was the ledger file restored without the journal \
                 that was beside it? Put that journal back, or move this one away to open the \
                 file as it is)",
                path.display(),
                first.number,
                applied,
                applied + 1,
                first.number - 1
            )));
        }
        let journal = Journal {
            file,
            path: path.to_owned(),
            offset: 0,
            allocated: bytes.len() as u64,
            buf: Vec::new(),
        };
        Ok((journal, frames))
    }

    /// Returns a journal on `path` (which must exist) opened read-only, so every append fails:
    /// for testing what the writer does then.
    #[cfg(test)]
    pub fn unwritable(path: &Path) -> Journal {
        Journal {
            file: File::open(path).expect("the journal file exists"),
            path: path.to_owned(),
            offset: 0,
            allocated: 0,
            buf: Vec::new(),
        }
    }

    /// Returns how many bytes of frames were written since the journal last restarted.
    pub fn written(&self) -> u64 {
        self.offset
    }

    /// Writes frame `number` holding `payload` and `fdatasync`s it; returns once it is durable.
    /// Fails with `Storage` when the write or the sync fails (the frame may then be torn, and
    /// the caller must make the batch durable another way before answering it).
    pub fn append(&mut self, number: u64, payload: &[u8]) -> Result<(), LedgerError> {
        const OP: &str = "writing the ledger journal";
        let len = u32::try_from(payload.len()).map_err(|_| {
            LedgerError::Storage(format!("{OP}: a batch of {} bytes", payload.len()))
        })?;
        self.buf.clear();
        self.buf.extend_from_slice(MAGIC);
        self.buf.extend_from_slice(&number.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf
            .extend_from_slice(&checksum(number, len.to_le_bytes(), payload).to_le_bytes());
        self.buf.extend_from_slice(payload);
        let end = self.offset + self.buf.len() as u64;
        if end > self.allocated {
            self.grow(end)?;
        }
        self.file.write_all_at(&self.buf, self.offset).ctx(OP)?;
        self.file.sync_data().ctx(OP)?;
        self.offset = end;
        Ok(())
    }

    /// Starts writing at the beginning of the file again: called once everything journaled is
    /// durable in redb (a checkpoint), so no frame in the file is needed any more.
    pub fn restart(&mut self) {
        self.offset = 0;
    }

    /// Extends the allocated part of the file past `end` with zeros, in steps of [`GROWTH`],
    /// and syncs it with its new size.
    fn grow(&mut self, end: u64) -> Result<(), LedgerError> {
        const OP: &str = "growing the ledger journal";
        let target = end.div_ceil(GROWTH) * GROWTH;
        let zeros = vec![0u8; 64 * 1024];
        let mut at = self.allocated;
        while at < target {
            let n = zeros.len().min((target - at) as usize);
            self.file.write_all_at(&zeros[..n], at).ctx(OP)?;
            at += n as u64;
        }
        self.file.sync_all().ctx(OP)?;
        tracing::debug!(path = %self.path.display(), bytes = target, "ledger journal grown");
        self.allocated = target;
        Ok(())
    }
}

/// Returns the frames at the start of `bytes` that follow each other: each with a valid magic
/// and checksum, and numbered one more than the one before.
fn chain(bytes: &[u8]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut at = 0usize;
    while let Some((frame, len)) = frame_at(bytes, at) {
        if frames
            .last()
            .is_some_and(|last| frame.number != last.number + 1)
        {
            break;
        }
        frames.push(frame);
        at += len;
    }
    frames
}

/// Returns the frame at `at` and its length in bytes, or `None` when the bytes there are not a
/// whole frame with a matching checksum.
fn frame_at(bytes: &[u8], at: usize) -> Option<(Frame, usize)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    if &header[..4] != MAGIC {
        return None;
    }
    let number = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let len_bytes: [u8; 4] = header[12..16].try_into().ok()?;
    let crc = u32::from_le_bytes(header[16..20].try_into().ok()?);
    let len = usize::try_from(u32::from_le_bytes(len_bytes)).ok()?;
    let start = at + HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (checksum(number, len_bytes, payload) == crc).then(|| {
        let frame = Frame {
            number,
            payload: payload.to_vec(),
        };
        (frame, HEADER + len)
    })
}

/// Returns the CRC-32 of a frame's number, length and payload.
fn checksum(number: u64, len: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&number.to_le_bytes());
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize()
}

/// Fsyncs the directory holding `path`, so a newly created file survives a crash.
fn sync_parent(path: &Path) -> Result<(), LedgerError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match File::open(parent).and_then(|dir| dir.sync_all()) {
        Ok(()) => Ok(()),
        // Some file systems refuse to sync a directory; the file is still written.
        Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(()),
        Err(e) => Err(LedgerError::Storage(format!(
            "syncing the ledger directory {}: {e}",
            parent.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn frames(path: &Path, applied: u64) -> Vec<(u64, Vec<u8>)> {
        let (_, frames) = Journal::open(path, applied).unwrap();
        frames.into_iter().map(|f| (f.number, f.payload)).collect()
    }

    #[test]
    fn frames_after_the_applied_number_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb.journal");
        let (mut journal, none) = Journal::open(&path, 6).unwrap();
        assert!(none.is_empty());
        for n in 7..=9 {
            journal.append(n, format!("batch {n}").as_bytes()).unwrap();
        }
        assert_eq!(
            frames(&path, 7),
            vec![(8, b"batch 8".to_vec()), (9, b"batch 9".to_vec())]
        );
        assert!(frames(&path, 9).is_empty());
    }

    #[test]
    fn a_torn_last_frame_ends_the_scan_and_earlier_frames_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path, 0).unwrap();
        journal.append(1, b"whole").unwrap();
        journal.append(2, b"torn in the middle").unwrap();
        let at = (HEADER + 5 + HEADER + 4) as u64;
        journal.file.write_all_at(b"XXXX", at).unwrap();
        assert_eq!(frames(&path, 0), vec![(1, b"whole".to_vec())]);
    }

    #[test]
    fn after_a_restart_the_frames_left_from_before_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path, 0).unwrap();
        for n in 1..=4 {
            journal
                .append(n, b"a longer batch before the checkpoint")
                .unwrap();
        }
        journal.restart();
        journal.append(5, b"short").unwrap();
        // Frame 5 overwrote frame 1; frames 2..4 behind it are older and end the chain.
        assert_eq!(frames(&path, 4), vec![(5, b"short".to_vec())]);
        assert!(frames(&path, 5).is_empty());
    }

    #[test]
    fn a_missing_frame_is_corrupt_and_names_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path, 0).unwrap();
        journal.append(5, b"five").unwrap();
        let err = Journal::open(&path, 2)
            .err()
            .expect("a gap must be refused");
        assert!(matches!(err, LedgerError::Corrupt(_)), "{err:?}");
        assert!(
            err.to_string().contains("frames 3 to 4 are missing"),
            "{err}"
        );
    }

    #[test]
    fn the_file_grows_in_zeroed_steps_and_a_frame_may_span_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path, 0).unwrap();
        let big = vec![7u8; GROWTH as usize];
        journal.append(1, b"small").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), GROWTH);
        journal.append(2, &big).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * GROWTH);
        assert_eq!(journal.written(), (2 * HEADER + 5) as u64 + GROWTH);
        assert_eq!(frames(&path, 1), vec![(2, big)]);
    }

    #[test]
    fn the_journal_sits_beside_the_ledger() {
        assert_eq!(
            path_of(Path::new("data/ledger.redb")),
            PathBuf::from("data/ledger.redb.journal")
        );
    }
}
