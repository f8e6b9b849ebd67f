//! Writing credentials so that a reader never sees a partial file: each file is written whole to
//! a temporary file beside it (mode 0600 from creation), flushed to disk, then renamed over the
//! old one, and the folder is synced so the rename survives a crash.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a credential file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Replaces `path` with `contents` atomically, mode 0600. Fails when the folder is missing or
/// not writable; the old file is then left as it was.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let fail = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tessera-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_written_file_has_mode_0600_and_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.jwt");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new token").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new token");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_write_into_a_missing_folder_fails_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/token.jwt");
        let e = write_atomic(&path, b"x").unwrap_err();
        assert!(e.to_string().contains("missing/token.jwt"), "{e}");
    }

    #[test]
    fn a_concurrent_reader_sees_only_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        let a = vec![b'a'; 64 * 1024];
        let b = vec![b'b'; 64 * 1024];
        write_atomic(&path, &a).unwrap();
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    let seen = std::fs::read(&path).unwrap();
                    assert_eq!(seen.len(), 64 * 1024, "a partial file was read");
                    assert!(seen.iter().all(|c| *c == seen[0]), "a mixed file was read");
                }
            })
        };
        for i in 0..200 {
            write_atomic(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
        }
        reader.join().unwrap();
    }
}
