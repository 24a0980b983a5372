//! Reading the files renewd is pointed at, safely: regular files only, and never more than a cap.
//!
//! A path in the configuration (or certbot's) may name `/dev/zero`, a named pipe or a directory by
//! mistake; `std::fs::read` would then read until memory runs out, or block forever. Here the file is
//! opened without blocking (`O_NONBLOCK`: opening a FIFO returns at once), its type is taken from the
//! open descriptor (no race with a rename), its size is checked against the cap before a byte is read,
//! and at most cap + 1 bytes are read, so a file that grows meanwhile is refused too.
//!
//! Errors say what was wrong, as a clause that reads well after a path: callers write
//! `"{path}: {error}"` and add what the file is for and what to do.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// TSIG key files, EAB key files, ACME account credentials JSON, journal records.
pub const SECRET_MAX: u64 = 64 * 1024;
/// renewd.yaml, specs, trust PEM bundles, certificate PEM files, certbot renewal confs / ini / hooks.
pub const TEXT_MAX: u64 = 1024 * 1024;
/// status.json (10,000 certificates).
pub const STATUS_MAX: u64 = 64 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed; the kind (NotFound, PermissionDenied, ...) is kept.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Not a regular file: `found` is "a directory", "a named pipe (FIFO)", ...
    #[error("is {found}, not a regular file")]
    NotRegular { found: &'static str },
    /// Larger than the cap (`size` is what `fstat` said, or cap + 1 when the file grew while read).
    #[error("is {size} bytes, more than the {cap} a file of this kind may have")]
    TooLarge { size: u64, cap: u64 },
    /// Not UTF-8 text; the first invalid byte is at this 1-based line and column (in characters).
    #[error("is not UTF-8 text (an invalid byte at line {line}, column {col})")]
    NotUtf8 { line: usize, col: usize },
}

impl ReadError {
    /// The I/O error kind, when the file could not be opened or read (to tell "missing" from "refused").
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            ReadError::Io(e) => Some(e.kind()),
            _ => None,
        }
    }
}

/// The whole file at `path`, if it is a regular file of at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)?;
    let size = regular_size(&file)?;
    if size > cap {
        return Err(ReadError::TooLarge { size, cap });
    }
    // The file may have grown since fstat: read one byte more than allowed to notice.
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(cap.saturating_add(1)).read_to_end(&mut data)?;
    let read = data.len() as u64;
    if read > cap {
        return Err(ReadError::TooLarge { size: read, cap });
    }
    Ok(data)
}

/// Like [`read_capped`], and the contents must be UTF-8.
pub fn read_text_capped(path: &Path, cap: u64) -> Result<String, ReadError> {
    let data = read_capped(path, cap)?;
    String::from_utf8(data).map_err(|e| {
        let bytes = e.as_bytes();
        let (line, col) = line_col(bytes, e.utf8_error().valid_up_to());
        ReadError::NotUtf8 { line, col }
    })
}

/// The size of an open file, if it is a regular one.
fn regular_size(file: &File) -> Result<u64, ReadError> {
    let meta = file.metadata()?;
    let t = meta.file_type();
    let found = if t.is_file() {
        return Ok(meta.len());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(ReadError::NotRegular { found })
}

/// 1-based line and column (in characters) of byte `at`, where `bytes[..at]` is valid UTF-8.
fn line_col(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_regular_file_is_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, "héllo\n").unwrap();
        assert_eq!(read_text_capped(&p, TEXT_MAX).unwrap(), "héllo\n");
        assert_eq!(read_capped(&p, 7).unwrap(), "héllo\n".as_bytes());
    }

    #[test]
    fn a_file_of_exactly_the_cap_is_read_and_one_byte_more_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, vec![b'a'; 4096]).unwrap();
        assert_eq!(read_capped(&p, 4096).unwrap().len(), 4096);
        let e = read_capped(&p, 4095).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::TooLarge {
                    size: 4096,
                    cap: 4095
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_large_sparse_file_is_refused_without_reading_it() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("big");
        File::create(&p)
            .unwrap()
            .set_len(100 * 1024 * 1024)
            .unwrap();
        let start = Instant::now();
        let e = read_capped(&p, SECRET_MAX).unwrap_err();
        // Reading 100 MB of zeros takes far longer than fstat; a generous bound, not a benchmark.
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(
                e,
                ReadError::TooLarge {
                    size: 104_857_600,
                    cap: SECRET_MAX
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "is 104857600 bytes, more than the 65536 a file of this kind may have"
        );
    }

    #[test]
    fn dev_zero_is_refused_as_a_character_device() {
        let e = read_capped(Path::new("/dev/zero"), SECRET_MAX).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    found: "a character device"
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "is a character device, not a regular file");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("pipe");
        crate::testutil::mkfifo(&p);
        // No writer ever opens it: a blocking open would hang here.
        let e = read_capped(&p, TEXT_MAX).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    found: "a named pipe (FIFO)"
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let e = read_capped(tmp.path(), TEXT_MAX).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    found: "a directory"
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.io_kind(), None);
    }

    #[test]
    fn a_missing_file_keeps_its_io_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let e = read_capped(&tmp.path().join("nope"), TEXT_MAX).unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn invalid_utf8_is_located_by_line_and_character_column() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        // Line 3: "é" is one character (two bytes), so the bad byte is the 5th character.
        std::fs::write(&p, b"one\ntwo\n\xc3\xa9abc\xffd\n").unwrap();
        let e = read_text_capped(&p, TEXT_MAX).unwrap_err();
        assert!(matches!(e, ReadError::NotUtf8 { line: 3, col: 5 }), "{e:?}");
        std::fs::write(&p, b"\xfe").unwrap();
        assert!(matches!(
            read_text_capped(&p, TEXT_MAX).unwrap_err(),
            ReadError::NotUtf8 { line: 1, col: 1 }
        ));
    }
}
