//! The state directory and atomic file writes.
//!
//! Layout (DESIGN.md "State directory"):
//! - `accounts/NAME.json`: ACME account credentials (0600)
//! - `archive/NAME/VERSION/{cert,chain,fullchain,privkey}.pem`: every issued version (newest kept: [`KEEP_VERSIONS`])
//! - `live/NAME`: a symlink to `../archive/NAME/VERSION`, so `live/NAME/fullchain.pem` etc. always name one
//!   consistent set. Switching versions is one `rename(2)` of a symlink: a reader sees the old set or the new
//!   set, never a new certificate with an old key.
//! - `journal/`: TXT values published and not yet removed (see [`crate::journal`])
//!
//! Every file is written to a temporary file in the target directory, fsynced, renamed over the target, and
//! the directory fsynced. Files holding a private key are created 0600 and never made wider.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsread;

/// How many issued versions of a certificate `archive/NAME/` keeps (the live one included).
pub const KEEP_VERSIONS: usize = 5;

/// The file names of one certificate version, as certbot names them.
pub const CERT_FILE: &str = "cert.pem";
pub const CHAIN_FILE: &str = "chain.pem";
pub const FULLCHAIN_FILE: &str = "fullchain.pem";
pub const PRIVKEY_FILE: &str = "privkey.pem";

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// The PEM texts of one issued certificate.
#[derive(Clone)]
pub struct CertFiles {
    pub cert: String,
    pub chain: String,
    pub fullchain: String,
    pub privkey: String,
}

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert", &format_args!("<{} bytes>", self.cert.len()))
            .field("privkey", &format_args!("<redacted>"))
            .finish()
    }
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create the directory tree (0700: it holds account keys and private keys).
    pub fn ensure(&self) -> io::Result<()> {
        for dir in [
            self.root.clone(),
            self.accounts_dir(),
            self.root.join("live"),
            self.root.join("archive"),
            self.journal_dir(),
        ] {
            create_private_dir(&dir)?;
        }
        Ok(())
    }

    pub fn accounts_dir(&self) -> PathBuf {
        self.root.join("accounts")
    }

    pub fn account_file(&self, account: &str) -> PathBuf {
        self.accounts_dir().join(format!("{account}.json"))
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// Take the per-certificate lock `locks/NAME.lock` (an exclusive `flock`, released when the file is
    /// closed, also by a crash). `Ok(None)`: another process holds it.
    pub fn lock_cert(&self, name: &str) -> io::Result<Option<File>> {
        let dir = self.root.join("locks");
        create_private_dir(&dir)?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{name}.lock")))?;
        // SAFETY: flock on a valid open descriptor.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc == 0 {
            Ok(Some(f))
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }

    /// `live/NAME`: the directory (through the symlink) holding the current files.
    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.root.join("live").join(name)
    }

    pub fn archive_dir(&self, name: &str) -> PathBuf {
        self.root.join("archive").join(name)
    }

    /// Read the live files of `name`, if there are any.
    pub fn read_live(&self, name: &str) -> io::Result<Option<CertFiles>> {
        let dir = self.live_dir(name);
        let read = |f: &str| read_pem(&dir.join(f));
        match read(FULLCHAIN_FILE) {
            Ok(fullchain) => Ok(Some(CertFiles {
                cert: read(CERT_FILE)?,
                chain: read(CHAIN_FILE)?,
                fullchain,
                privkey: read(PRIVKEY_FILE)?,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Store a new version and make it the live one. Returns the version directory.
    ///
    /// The version is written completely (each file fsynced, directory fsynced) before `live/NAME` is
    /// switched to it; older versions beyond [`KEEP_VERSIONS`] are removed afterwards.
    pub fn install(&self, name: &str, version: &str, files: &CertFiles) -> io::Result<PathBuf> {
        self.ensure()?;
        let archive = self.archive_dir(name);
        create_private_dir(&archive)?;
        let vdir = archive.join(version);
        create_private_dir(&vdir)?;
        write_atomic(&vdir.join(PRIVKEY_FILE), files.privkey.as_bytes(), 0o600)?;
        write_atomic(&vdir.join(CERT_FILE), files.cert.as_bytes(), 0o644)?;
        write_atomic(&vdir.join(CHAIN_FILE), files.chain.as_bytes(), 0o644)?;
        write_atomic(
            &vdir.join(FULLCHAIN_FILE),
            files.fullchain.as_bytes(),
            0o644,
        )?;
        fsync_dir(&archive)?;

        let live_parent = self.root.join("live");
        let live = live_parent.join(name);
        // A real directory at live/NAME (e.g. made by hand or by an import) is moved into the archive first,
        // so the symlink can replace it.
        if let Ok(meta) = fs::symlink_metadata(&live) {
            if meta.is_dir() {
                let moved = archive.join(format!("preexisting-{}", std::process::id()));
                fs::rename(&live, &moved)?;
            }
        }
        let tmp_link = live_parent.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp_link);
        std::os::unix::fs::symlink(Path::new("../archive").join(name).join(version), &tmp_link)?;
        fs::rename(&tmp_link, &live)?;
        fsync_dir(&live_parent)?;
        self.prune(name, version)?;
        Ok(vdir)
    }

    /// The version directories of `name`, oldest first (names sort by time: see [`version_name`]).
    pub fn versions(&self, name: &str) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = match fs::read_dir(self.archive_dir(name)) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        v.sort();
        Ok(v)
    }

    fn prune(&self, name: &str, current: &str) -> io::Result<()> {
        let versions = self.versions(name)?;
        if versions.len() <= KEEP_VERSIONS {
            return Ok(());
        }
        let excess = versions.len() - KEEP_VERSIONS;
        for old in versions.iter().take(excess) {
            if old != current {
                fs::remove_dir_all(self.archive_dir(name).join(old))?;
            }
        }
        Ok(())
    }
}

/// One PEM file of a live set (a regular file of at most [`fsread::TEXT_MAX`] bytes). NotFound stays
/// NotFound; anything else found there is InvalidData, with the path in the message.
fn read_pem(path: &Path) -> io::Result<String> {
    fsread::read_text_capped(path, fsread::TEXT_MAX).map_err(|e| match e {
        fsread::ReadError::Io(e) => e,
        other => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {other}", path.display()),
        ),
    })
}

/// A version directory name: UTC time of issue plus the serial, so names sort by time and are unique.
pub fn version_name(issued_unix: i64, serial_hex: &str) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(issued_unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let serial: String = serial_hex.chars().take(16).collect();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        serial.to_ascii_lowercase()
    )
}

/// Create a directory (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Owner and group to give a written file (numeric, already resolved).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Write `data` to `path` atomically with `mode`: temp file in the same directory (created with at most
/// `mode` & 0600 until complete), fsync, chmod, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, data, mode, Ownership::default())?;
    commit_temp(tmp, path)
}

/// First half of an atomic write: a complete, fsynced temp file beside `path` with its final mode and owner.
/// Nothing is visible at `path` until [`commit_temp`]. Dropping the result removes the temp file.
pub fn write_temp(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Ownership,
) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path);
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Created readable by the owner only; widened (if `mode` says so) only after the owner is set.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    if owner.uid.is_some() || owner.gid.is_some() {
        std::os::unix::fs::fchown(tmp.as_file(), owner.uid, owner.gid)?;
    }
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    Ok(tmp)
}

/// Second half: rename the temp file over `path` and fsync the directory.
pub fn commit_temp(tmp: tempfile::NamedTempFile, path: &Path) -> io::Result<()> {
    tmp.persist(path).map_err(|e| e.error)?;
    fsync_dir(parent_dir(path))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn files(tag: &str) -> CertFiles {
        CertFiles {
            cert: format!("cert {tag}"),
            chain: format!("chain {tag}"),
            fullchain: format!("fullchain {tag}"),
            privkey: format!("key {tag}"),
        }
    }

    #[test]
    fn install_switches_live_and_keeps_previous() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        st.install("web", &version_name(1_700_000_000, "0a"), &files("one"))
            .unwrap();
        assert_eq!(st.read_live("web").unwrap().unwrap().cert, "cert one");
        st.install("web", &version_name(1_700_000_100, "0b"), &files("two"))
            .unwrap();
        let live = st.read_live("web").unwrap().unwrap();
        assert_eq!(live.cert, "cert two");
        assert_eq!(live.privkey, "key two");
        assert_eq!(st.versions("web").unwrap().len(), 2);
        let key_mode = fs::metadata(st.live_dir("web").join(PRIVKEY_FILE))
            .unwrap()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let root_mode = fs::metadata(tmp.path().join("archive")).unwrap().mode();
        assert_eq!(root_mode & 0o777, 0o700);
    }

    #[test]
    fn read_live_refuses_a_fifo_or_device_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        st.install("web", &version_name(1_700_000_000, "0a"), &files("one"))
            .unwrap();
        let chain = st.live_dir("web").join(CHAIN_FILE);
        fs::remove_file(&chain).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &chain).unwrap();
        let e = st.read_live("web").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string()
                .ends_with("chain.pem: is a character device, not a regular file"),
            "{e}"
        );
        // No live set at all is still "none", not an error.
        assert!(st.read_live("other").unwrap().is_none());
    }

    #[test]
    fn archive_is_pruned_to_keep_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        for i in 0..(KEEP_VERSIONS as i64 + 3) {
            st.install(
                "web",
                &version_name(1_700_000_000 + i, &format!("{i:02x}")),
                &files(&i.to_string()),
            )
            .unwrap();
        }
        let versions = st.versions("web").unwrap();
        assert_eq!(versions.len(), KEEP_VERSIONS);
        assert_eq!(
            st.read_live("web").unwrap().unwrap().cert,
            format!("cert {}", KEEP_VERSIONS + 2)
        );
    }

    #[test]
    fn a_directory_at_live_name_is_replaced_by_the_link() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        st.ensure().unwrap();
        let live = st.live_dir("web");
        fs::create_dir_all(&live).unwrap();
        fs::write(live.join(CERT_FILE), "old").unwrap();
        st.install("web", &version_name(1_700_000_000, "01"), &files("new"))
            .unwrap();
        assert_eq!(st.read_live("web").unwrap().unwrap().cert, "cert new");
        assert!(fs::symlink_metadata(&live)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn cert_lock_is_exclusive_until_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        let held = st.lock_cert("web").unwrap().expect("free");
        assert!(st.lock_cert("web").unwrap().is_none(), "second lock taken");
        assert!(st.lock_cert("other").unwrap().is_some());
        drop(held);
        assert!(st.lock_cert("web").unwrap().is_some());
    }

    #[test]
    fn write_atomic_sets_mode_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.pem");
        write_atomic(&p, b"hello", 0o640).unwrap();
        write_atomic(&p, b"world", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"world");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
