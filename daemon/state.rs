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
//! the directory fsynced. A version directory is built the same way one level up: its files are written into
//! a temporary directory that is renamed into place whole, so a version is complete or absent. Files holding
//! a private key are created 0600 and never made wider. What a crash leaves behind (temporary files, links
//! and directories) is removed by [`StateDir::remove_leftovers`].

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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

    fn lock_file(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
    }

    /// Take the per-certificate lock `locks/NAME.lock` (an exclusive `flock`, released when the file is
    /// closed, also by a crash). `Ok(None)`: another process holds it.
    pub fn lock_cert(&self, name: &str) -> io::Result<Option<File>> {
        let path = self.lock_file(name);
        create_private_dir(parent_dir(&path))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        Ok(try_flock(&f)?.then_some(f))
    }

    /// `Ok(None)` while a renewal of `name` runs (in this process or another: `flock`s of separate opens
    /// exclude each other); otherwise a guard that keeps one from starting. A missing lock file is not
    /// created (`locks/` is not ours to change here): no renewal of `name` ever ran, none holds it.
    fn lock_if_idle(&self, name: &str) -> io::Result<Option<Option<File>>> {
        match File::open(self.lock_file(name)) {
            Ok(f) => Ok(try_flock(&f)?.then_some(Some(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(None)),
            Err(e) => Err(e),
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
    /// A version directory is complete or absent: the files are written (each fsynced) into
    /// `archive/NAME/.VERSION.partial.PID`, which is fsynced and renamed to `VERSION` whole, and only then is
    /// `live/NAME` switched to it; older versions beyond [`KEEP_VERSIONS`] are removed afterwards. On `Err`,
    /// `live/NAME` is as it was and the new version (with its private key) is gone.
    pub fn install(&self, name: &str, version: &str, files: &CertFiles) -> io::Result<PathBuf> {
        self.install_with(name, version, files, write_new)
    }

    /// [`install`](Self::install), with the function that writes each file (tests make it fail).
    fn install_with(
        &self,
        name: &str,
        version: &str,
        files: &CertFiles,
        write: impl Fn(&Path, &[u8], u32) -> io::Result<()>,
    ) -> io::Result<PathBuf> {
        self.ensure()?;
        let archive = self.archive_dir(name);
        create_private_dir(&archive)?;
        let vdir = archive.join(version);
        if fs::symlink_metadata(&vdir).is_ok() {
            if self.is_live(name, &vdir) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is the live version already", vdir.display()),
                ));
            }
            // A copy of this version that nothing uses (a leftover of an older renewd): replaced whole.
            discard(&vdir)?;
        }
        let partial = archive.join(format!(".{version}.partial.{}", std::process::id()));
        discard(&partial)?;
        fs::DirBuilder::new().mode(0o700).create(&partial)?;
        let mut new = Unpublished(Some(partial.clone()));
        for (file, text, mode) in [
            (PRIVKEY_FILE, &files.privkey, 0o600),
            (CERT_FILE, &files.cert, 0o644),
            (CHAIN_FILE, &files.chain, 0o644),
            (FULLCHAIN_FILE, &files.fullchain, 0o644),
        ] {
            write(&partial.join(file), text.as_bytes(), mode)?;
        }
        fsync_dir(&partial)?;
        fs::rename(&partial, &vdir)?;
        new.0 = Some(vdir.clone());
        fsync_dir(&archive)?;
        self.switch_live(name, version)?;
        new.0 = None;

        // live/NAME names the new version: the install has happened, and an Err would say it had not. What
        // follows only tidies up; a failure is logged (a crash here loses nothing either).
        if let Err(e) = fsync_dir(&self.root.join("live")) {
            tracing::warn!(cert_name = %name, error = %e, "cannot fsync the live directory after the switch");
        }
        if let Err(e) = self.prune(name, version) {
            tracing::warn!(cert_name = %name, error = %e, "cannot remove old versions from the archive");
        }
        Ok(vdir)
    }

    /// Point `live/NAME` at `archive/NAME/VERSION` with one rename of a symlink. On `Err`, `live/NAME` is as
    /// it was and the temporary link is gone.
    fn switch_live(&self, name: &str, version: &str) -> io::Result<()> {
        let live_parent = self.root.join("live");
        let live = live_parent.join(name);
        let tmp_link = live_parent.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp_link);
        std::os::unix::fs::symlink(Path::new("../archive").join(name).join(version), &tmp_link)?;
        let switched = (|| -> io::Result<()> {
            // A real directory at live/NAME (e.g. made by hand or by an import) is moved into the archive
            // first, so the symlink can replace it, and back if it cannot.
            let mut moved = None;
            if fs::symlink_metadata(&live).is_ok_and(|m| m.is_dir()) {
                let to = self
                    .archive_dir(name)
                    .join(format!("preexisting-{}", std::process::id()));
                fs::rename(&live, &to)?;
                moved = Some(to);
            }
            fs::rename(&tmp_link, &live).inspect_err(|_| {
                if let Some(to) = &moved {
                    let _ = fs::rename(to, &live);
                }
            })
        })();
        if switched.is_err() {
            let _ = fs::remove_file(&tmp_link);
        }
        switched
    }

    /// Whether `live/NAME` resolves to `dir`.
    fn is_live(&self, name: &str, dir: &Path) -> bool {
        match (fs::canonicalize(self.live_dir(name)), fs::canonicalize(dir)) {
            (Ok(live), Ok(dir)) => live == dir,
            _ => false,
        }
    }

    /// Remove what an interrupted run can leave behind; returns what was removed (for the log):
    /// - temporary version directories `archive/NAME/.VERSION.partial.PID`;
    /// - version directories missing one of the four files, unless `live/NAME` points at it;
    /// - temporary files `.*.tmp` in version directories, `accounts/` and `live/`, and the temporary links
    ///   `live/.NAME.PID.tmp`.
    ///
    /// Safe beside running renewals, in this process or another: a certificate whose lock is held keeps its
    /// archive and links until next time, and a temporary file is left alone while its writer holds it (see
    /// [`write_temp`]). `journal/` and `locks/` are never touched. A removal that fails does not stop the
    /// others; the first such failure is returned.
    pub fn remove_leftovers(&self) -> io::Result<Vec<PathBuf>> {
        let mut sweep = Sweep::default();
        for (_, name, _) in entries(&self.root.join("archive"))? {
            if name.starts_with('.') {
                continue;
            }
            let Some(_idle) = self.lock_if_idle(&name)? else {
                continue;
            };
            for (path, file_name, kind) in entries(&self.archive_dir(&name))? {
                if !kind.is_dir() {
                    continue;
                }
                if file_name.starts_with('.') {
                    if file_name.contains(".partial.") {
                        sweep.remove(path);
                    }
                } else if !self.is_live(&name, &path) && !is_complete(&path) {
                    sweep.remove(path);
                } else {
                    sweep.remove_temp_files(&path)?;
                }
            }
        }
        sweep.remove_temp_files(&self.accounts_dir())?;
        let live_parent = self.root.join("live");
        sweep.remove_temp_files(&live_parent)?;
        for (path, file_name, kind) in entries(&live_parent)? {
            if !kind.is_symlink() {
                continue;
            }
            let Some((name, _pid)) = file_name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".tmp"))
                .and_then(|n| n.rsplit_once('.'))
                .filter(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if let Some(_idle) = self.lock_if_idle(name)? {
                sweep.remove(path);
            }
        }
        sweep.finish()
    }

    /// The version directories of `name`, oldest first (names sort by time: see [`version_name`]).
    /// Temporary directories (dot names) are not versions.
    pub fn versions(&self, name: &str) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = entries(&self.archive_dir(name))?
            .into_iter()
            .filter(|(_, n, kind)| kind.is_dir() && !n.starts_with('.'))
            .map(|(_, n, _)| n)
            .collect();
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
                discard(&self.archive_dir(name).join(old))?;
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

/// Create `path` (which must not exist) holding `data`, fsynced, with mode `mode`: created 0600, and
/// widened only when complete. For files in a directory nobody sees until it is renamed into place.
fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.set_permissions(Permissions::from_mode(mode))?;
    f.sync_all()
}

/// A version directory that `live/NAME` does not name (yet): removed when dropped, on every early return,
/// unless taken out first.
struct Unpublished(Option<PathBuf>);

impl Drop for Unpublished {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            // Best effort: the caller returns the error that brought us here.
            let _ = discard(&dir);
        }
    }
}

/// Remove a file, link or directory tree; a missing one is no error. In a directory the private key goes
/// first: `remove_dir_all` stops at its first error, and whatever else stays behind, the key must not.
fn discard(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if !m.is_dir() => fs::remove_file(path),
        Ok(_) => {
            let _ = fs::remove_file(path.join(PRIVKEY_FILE));
            fs::remove_dir_all(path)
        }
    }
}

/// Whether a version directory holds all four files.
fn is_complete(dir: &Path) -> bool {
    [CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE, PRIVKEY_FILE]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// The entries of `dir` with UTF-8 names (path, name, type, not following links); none if `dir` is missing.
fn entries(dir: &Path) -> io::Result<Vec<(PathBuf, String, fs::FileType)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        if let Ok(name) = e.file_name().into_string() {
            out.push((e.path(), name, e.file_type()?));
        }
    }
    Ok(out)
}

/// What [`StateDir::remove_leftovers`] removed, and its first failure.
#[derive(Default)]
struct Sweep {
    removed: Vec<PathBuf>,
    error: Option<io::Error>,
}

impl Sweep {
    fn remove(&mut self, path: PathBuf) {
        match discard(&path) {
            Ok(()) => self.removed.push(path),
            Err(e) => {
                let e = io::Error::new(e.kind(), format!("cannot remove {}: {e}", path.display()));
                self.error.get_or_insert(e);
            }
        }
    }

    /// The temporary files `.*.tmp` of [`write_temp`] in `dir` that no writer holds.
    fn remove_temp_files(&mut self, dir: &Path) -> io::Result<()> {
        for (path, name, kind) in entries(dir)? {
            if kind.is_file() && name.starts_with('.') && name.ends_with(".tmp") {
                let unused = File::open(&path).and_then(|f| try_flock(&f));
                if matches!(unused, Ok(true)) {
                    self.remove(path);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> io::Result<Vec<PathBuf>> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.removed),
        }
    }
}

/// Take an exclusive `flock` on `f` without waiting: `Ok(false)` if someone else holds one.
fn try_flock(f: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid open descriptor.
    let rc = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
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
    // Held while the temp file is open, so `StateDir::remove_leftovers` leaves it alone until it is renamed
    // or dropped; where flock is unsupported only that protection is lost.
    let _ = try_flock(tmp.as_file());
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

    /// A state directory in which version one of `web` (the returned version name) is live.
    fn with_version_one() -> (tempfile::TempDir, StateDir, String) {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        let v1 = version_name(1_700_000_000, "0a");
        st.install("web", &v1, &files("one")).unwrap();
        (tmp, st, v1)
    }

    /// The files below `root` (not following links) whose text contains `needle`.
    fn tree_mentions(root: &Path, needle: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(dir) = todo.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let kind = e.file_type().unwrap();
                if kind.is_dir() {
                    todo.push(e.path());
                } else if kind.is_file() && fs::read_to_string(e.path()).unwrap().contains(needle) {
                    found.push(e.path());
                }
            }
        }
        found
    }

    fn archive_entries(st: &StateDir, name: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(st.archive_dir(name))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_install_leaves_no_trace_and_the_old_live_files() {
        for failing in [PRIVKEY_FILE, CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE] {
            let (tmp, st, v1) = with_version_one();
            let err = st
                .install_with(
                    "web",
                    &version_name(1_700_000_100, "0b"),
                    &files("two"),
                    |path, data, mode| {
                        write_new(path, data, mode)?;
                        if path.ends_with(failing) {
                            return Err(io::Error::other("injected"));
                        }
                        Ok(())
                    },
                )
                .unwrap_err();
            assert_eq!(err.to_string(), "injected", "{failing}");
            assert_eq!(archive_entries(&st, "web"), [v1.as_str()], "{failing}");
            assert_eq!(st.read_live("web").unwrap().unwrap().privkey, "key one");
            assert_eq!(tree_mentions(tmp.path(), "key two"), Vec::<PathBuf>::new());
        }
    }

    #[test]
    fn a_failed_live_switch_removes_the_new_version() {
        let (tmp, st, v1) = with_version_one();
        // Something that is not ours where the temporary link goes: the symlink cannot be made.
        let in_the_way = st
            .root()
            .join("live")
            .join(format!(".web.{}.tmp", std::process::id()));
        fs::create_dir(&in_the_way).unwrap();
        fs::write(in_the_way.join("x"), "x").unwrap();
        let v2 = version_name(1_700_000_100, "0b");
        st.install("web", &v2, &files("two")).unwrap_err();
        assert_eq!(archive_entries(&st, "web"), [v1]);
        assert_eq!(st.read_live("web").unwrap().unwrap().privkey, "key one");
        assert_eq!(tree_mentions(tmp.path(), "key two"), Vec::<PathBuf>::new());
        assert!(in_the_way.join("x").exists(), "removed what is not ours");
    }

    #[test]
    fn installing_an_existing_version_again() {
        let (_tmp, st, v1) = with_version_one();
        let v2 = version_name(1_700_000_100, "0b");
        // A stale, incomplete copy of v2 that is not live is replaced.
        fs::create_dir(st.archive_dir("web").join(&v2)).unwrap();
        fs::write(st.archive_dir("web").join(&v2).join(CERT_FILE), "stale").unwrap();
        st.install("web", &v2, &files("two")).unwrap();
        assert_eq!(st.read_live("web").unwrap().unwrap().cert, "cert two");
        // The live version is not overwritten.
        let err = st.install("web", &v2, &files("three")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(st.read_live("web").unwrap().unwrap().cert, "cert two");
        assert_eq!(archive_entries(&st, "web"), [v1, v2]);
    }

    #[test]
    fn remove_leftovers_removes_what_a_crash_leaves_and_keeps_the_rest() {
        let (_tmp, st, v1) = with_version_one();
        let v2 = version_name(1_700_000_100, "0b");
        st.install("web", &v2, &files("two")).unwrap();
        let archive = st.archive_dir("web");
        let plant = |path: PathBuf, text: &str| {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        };
        let partial = archive.join(".20231114T230000Z-0c.partial.4242");
        plant(partial.join(PRIVKEY_FILE), "key partial");
        let incomplete = archive.join(version_name(1_699_000_000, "09"));
        plant(incomplete.join(PRIVKEY_FILE), "key incomplete");
        let temp_in_version = plant(archive.join(&v1).join(".cert.pem.Ab12Cd.tmp"), "x");
        let temp_account = plant(
            st.account_file("ca").with_file_name(".ca.json.Xy98Zw.tmp"),
            "x",
        );
        let temp_link = st.root().join("live").join(".web.4242.tmp");
        std::os::unix::fs::symlink("../archive/web/whatever", &temp_link).unwrap();
        // Another certificate whose live version lacks a file: it is live, so it stays.
        let api_live = st
            .install("api", &version_name(1_700_000_000, "01"), &files("api"))
            .unwrap();
        fs::remove_file(api_live.join(CHAIN_FILE)).unwrap();
        // Not ours to clean.
        let in_journal = plant(st.journal_dir().join(".rec.json.Qq11Qq.tmp"), "x");
        let in_locks = plant(st.root().join("locks").join(".x.tmp"), "x");
        let live_marker = plant(st.root().join("live").join(".web.reload-failed"), "x");

        let mut removed = st.remove_leftovers().unwrap();
        removed.sort();
        let mut expected = vec![
            partial,
            incomplete,
            temp_in_version,
            temp_account,
            temp_link,
        ];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(archive_entries(&st, "web"), [v1, v2]);
        assert_eq!(st.read_live("web").unwrap().unwrap().privkey, "key two");
        assert!(api_live.join(PRIVKEY_FILE).exists());
        assert!(in_journal.exists() && in_locks.exists() && live_marker.exists());
        assert_eq!(st.remove_leftovers().unwrap(), Vec::<PathBuf>::new());
    }

    #[test]
    fn remove_leftovers_leaves_work_in_progress_alone() {
        let (_tmp, st, _) = with_version_one();
        let partial = st.archive_dir("web").join(".v.partial.4242");
        fs::create_dir(&partial).unwrap();
        // A renewal of web holds its lock; an account file is being written.
        let lock = st.lock_cert("web").unwrap().unwrap();
        let writing =
            write_temp(&st.account_file("ca"), b"{}", 0o600, Ownership::default()).unwrap();
        assert_eq!(st.remove_leftovers().unwrap(), Vec::<PathBuf>::new());
        assert!(partial.exists() && writing.path().exists());
        drop(lock);
        let writing_path = writing.path().to_path_buf();
        drop(writing.into_temp_path().keep().unwrap());
        let mut removed = st.remove_leftovers().unwrap();
        removed.sort();
        assert_eq!(removed, [writing_path, partial]);
    }
}
