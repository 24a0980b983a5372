//! Placeholder for the capped, regular-file-only reads (the full module lands from the `files` branch).

use std::io::Read;
use std::path::Path;

pub const SECRET_MAX: u64 = 64 * 1024;
pub const TEXT_MAX: u64 = 1024 * 1024;
pub const STATUS_MAX: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("is {found}, not a regular file")]
    NotRegular { found: &'static str },
    #[error("is {size} bytes, more than the {cap} a file of this kind may have")]
    TooLarge { size: u64, cap: u64 },
    #[error("is not UTF-8 text (line {line}, column {col})")]
    NotUtf8 { line: usize, col: usize },
}

impl ReadError {
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ReadError::Io(e) => Some(e.kind()),
            _ => None,
        }
    }
}

pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            found: "not a file",
        });
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            cap,
        });
    }
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            size: buf.len() as u64,
            cap,
        });
    }
    Ok(buf)
}

pub fn read_text_capped(path: &Path, cap: u64) -> Result<String, ReadError> {
    String::from_utf8(read_capped(path, cap)?).map_err(|_| ReadError::NotUtf8 { line: 0, col: 0 })
}
