//! Deploy targets and what follows them: [`install`] writes every deploy target of a certificate all or
//! nothing, runs the config tests and reloads ([`crate::reload`]), and puts the previous files back when a
//! config test fails.
//!
//! # All or nothing
//! 1. Check every path ([`check_target_path`]): absolute; not a symlink, not anything but a regular file; its
//!    directory exists; no symlink on the way that sits in a directory other users can write (or that
//!    belongs to another user), so a planted link cannot redirect the key.
//! 2. Stage: every file of every target is written to a temp file beside it (`.NAME.XXXXXX.tmp`, created
//!    0600, written, fsynced, then chown and chmod to its final owner and mode: a key is never readable by
//!    others at any moment unless the configured mode says so).
//! 3. Commit: for each file, the previous file (if any) is hard-linked to `.NAME.renewd-prev` beside it, then
//!    the temp file is renamed over it and the directory fsynced. The target path names a complete old or a
//!    complete new file at every moment. If any step fails, every file already replaced is put back by
//!    renaming its `.renewd-prev` link over it (or removed, if there was none before).
//! 4. Config tests (`nginx -t`, `apachectl configtest`). If one fails: nothing is reloaded, the previous
//!    files are put back, and the error is `reload failed: <first line of the tool's error>` (logged with
//!    `MESSAGE_ID` [`crate::logging::message_id::RELOAD_FAILED`]).
//! 5. Reloads, commands, hooks in order; the `.renewd-prev` links are removed. A failing reload step is
//!    reported the same way, but the new files stay: the config tests passed and earlier steps may already
//!    serve them.
//!
//! `live/NAME` is not touched here: it already holds the new certificate. So that a failed reload can be
//! retried without a new order, every failure leaves a marker `live/.NAME.reload-failed` (holding the
//! message) that the next success removes; [`needs_redeploy`] tells whether the live files still have to
//! be installed (marker present, or a deploy target that differs from `live/`).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::config::{CertSpec, DeployTarget};
use crate::fsread;
use crate::logging::message_id;
use crate::reload::{self, ReloadError};
use crate::state::{self, CertFiles, Ownership};

/// Why [`install`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Writing the deploy targets failed; the previous files are in place.
    #[error("deploy of {cert}: {source}")]
    Deploy { cert: String, source: io::Error },
    /// A config test failed: the previous files were put back, nothing was reloaded.
    #[error("reload failed: {0}")]
    ConfigTest(ReloadError),
    /// Reloads, commands or hooks failed (each one; the others ran); the new files stay.
    #[error("reload failed: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Reload(Vec<ReloadError>),
    /// The blocking deploy task itself failed (a bug).
    #[error("deploy of {cert}: the deploy task failed: {reason}")]
    Task { cert: String, reason: String },
}

/// Deploy, config-test, reload (see the module documentation). Blocking work runs on tokio's blocking
/// pool, so a slow reload never stalls the runtime.
pub async fn install(
    spec: &CertSpec,
    files: &CertFiles,
    live_dir: &Path,
) -> Result<(), InstallError> {
    if spec.deploy.is_empty() && spec.reload.is_empty() {
        return Ok(());
    }
    let (spec, files, live_dir) = (spec.clone(), files.clone(), live_dir.to_path_buf());
    let cert = spec.name.clone();
    // The caller's span (the renewal's CERT_NAME, ...) goes along into the blocking thread.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| install_blocking(&spec, &files, &live_dir))
    })
    .await
    .unwrap_or_else(|e| {
        Err(InstallError::Task {
            cert,
            reason: e.to_string(),
        })
    })
}

/// [`install`] on the calling thread.
pub fn install_blocking(
    spec: &CertSpec,
    files: &CertFiles,
    live_dir: &Path,
) -> Result<(), InstallError> {
    let result = install_inner(spec, files, live_dir);
    let marker = failure_marker(live_dir);
    let marked = match &result {
        Ok(()) => match fs::remove_file(&marker) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Err(e) => state::write_atomic(&marker, format!("{e}\n").as_bytes(), 0o600),
    };
    if let Err(e) = marked {
        tracing::warn!(file = %marker.display(), error = %e,
            "cannot update the reload-failed marker");
    }
    result
}

/// `live/.NAME.reload-failed` beside `live/NAME`: present while the last deploy or reload failed.
pub fn failure_marker(live_dir: &Path) -> PathBuf {
    let name = live_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    live_dir.with_file_name(format!(".{name}.reload-failed"))
}

/// Do the live files still have to be installed? True after a failed deploy or reload (the marker), or
/// when a deploy target's file differs from what `files` (the live ones) would write there.
pub fn needs_redeploy(spec: &CertSpec, files: &CertFiles, live_dir: &Path) -> bool {
    if failure_marker(live_dir).exists() {
        return true;
    }
    match items(&spec.deploy, files) {
        // Read at most as much as would be written (a longer file differs, unread); a target that is
        // not a regular file (a FIFO would block the daemon's loop) differs too.
        Ok(items) => items.iter().any(|it| {
            fsread::read_capped(it.path, it.data.len() as u64)
                .map_or(true, |d| d != it.data.as_bytes())
        }),
        Err(_) => true,
    }
}

fn install_inner(spec: &CertSpec, files: &CertFiles, live_dir: &Path) -> Result<(), InstallError> {
    let deploy_err = |source| InstallError::Deploy {
        cert: spec.name.clone(),
        source,
    };
    let committed = stage(&spec.deploy, files)
        .and_then(Staged::commit)
        .map_err(deploy_err)?;
    let cx = reload::Context {
        name: spec.name.clone(),
        domains: spec.domains.clone(),
        lineage: live_dir.to_path_buf(),
    };
    if let Err(failed) = reload::config_tests(&spec.reload, &cx) {
        let restored = committed.rollback();
        let restored = match restored {
            Ok(()) => "previous files put back".to_string(),
            Err(e) => format!("putting the previous files back failed: {e}"),
        };
        tracing::error!(
            message_id = message_id::RELOAD_FAILED,
            "reload failed: {failed} (config test; nothing reloaded, {restored})"
        );
        return Err(InstallError::ConfigTest(failed));
    }
    let paths = committed.finish();
    if !paths.is_empty() {
        tracing::info!(
            message_id = message_id::DEPLOYED,
            "certificate {} deployed to {}",
            spec.name,
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let failures = reload::reload_all(&spec.reload, &cx);
    if failures.is_empty() {
        return Ok(());
    }
    let e = InstallError::Reload(failures);
    tracing::error!(message_id = message_id::RELOAD_FAILED, "{e}");
    Err(e)
}

// ---------------------------------------------------------------- files

/// One file to write: where, what, mode, owner.
struct Item<'a> {
    path: &'a Path,
    data: String,
    mode: u32,
    owner: Ownership,
}

fn items<'a>(targets: &'a [DeployTarget], files: &CertFiles) -> io::Result<Vec<Item<'a>>> {
    let mut out = Vec::new();
    for target in targets {
        let owner = Ownership {
            uid: target.owner.as_deref().map(lookup_user).transpose()?,
            gid: target.group.as_deref().map(lookup_group).transpose()?,
        };
        let combined = format!("{}{}", files.privkey, files.fullchain);
        for (path, data, secret) in [
            (&target.fullchain, &files.fullchain, false),
            (&target.cert, &files.cert, false),
            (&target.chain, &files.chain, false),
            (&target.key, &files.privkey, true),
            (&target.combined, &combined, true),
        ] {
            let Some(path) = path.as_deref() else {
                continue;
            };
            out.push(Item {
                path,
                data: data.clone(),
                mode: target.mode.unwrap_or(if secret { 0o600 } else { 0o644 }),
                owner,
            });
        }
    }
    Ok(out)
}

fn refuse(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// May a symlink at `link` (inside `dir`) be followed? Only if nobody but root or renewd's user could have
/// put it there or can swap it: the directory is not writable by group or others (or is sticky and the
/// link is ours or root's), and the directory itself belongs to root or us.
fn symlink_trusted(dir: &fs::Metadata, link: &fs::Metadata) -> bool {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let trusted_owner = |uid: u32| uid == 0 || uid == me;
    let writable_by_others = dir.mode() & 0o022 != 0;
    let sticky = dir.mode() & 0o1000 != 0;
    trusted_owner(dir.uid()) && trusted_owner(link.uid()) && (!writable_by_others || sticky)
}

/// Refuse relative paths, anything but a regular file at the target, a missing directory, and symlinks
/// on the way that live in directories other users can write (see [`symlink_trusted`]).
pub fn check_target_path(path: &Path) -> io::Result<()> {
    if !path.is_absolute() {
        return Err(refuse(format!(
            "{}: a deploy path must be absolute",
            path.display()
        )));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(refuse(format!(
            "{}: a deploy path must not contain `.` or `..`",
            path.display()
        )));
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    // Walk the directories from the root: each component must be a directory, or a trusted symlink to one.
    let mut dir = PathBuf::from("/");
    let mut dir_meta = fs::symlink_metadata(&dir)?;
    for c in parent.components().skip(1) {
        let next = dir.join(c);
        let meta = fs::symlink_metadata(&next).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: directory {}: {e}", path.display(), next.display()),
            )
        })?;
        if meta.file_type().is_symlink() {
            if !symlink_trusted(&dir_meta, &meta) {
                return Err(refuse(format!(
                    "{}: {} is a symlink in {}, which other users can write (or which belongs to another user); renewd does not follow it",
                    path.display(),
                    next.display(),
                    dir.display()
                )));
            }
            let target = fs::metadata(&next)?;
            if !target.is_dir() {
                return Err(refuse(format!(
                    "{}: {} is not a directory",
                    path.display(),
                    next.display()
                )));
            }
            dir_meta = target;
        } else if meta.is_dir() {
            dir_meta = meta;
        } else {
            return Err(refuse(format!(
                "{}: {} is not a directory",
                path.display(),
                next.display()
            )));
        }
        dir = next;
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(refuse(format!(
            "{} is a symlink; renewd writes regular files only and neither follows nor replaces a link (point `deploy` at the file itself)",
            path.display()
        ))),
        Ok(m) if !m.is_file() => Err(refuse(format!(
            "{} exists and is not a regular file",
            path.display()
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// Every temp file written and fsynced; nothing visible yet. Dropping it removes the temp files.
pub struct Staged<'a> {
    temps: Vec<(tempfile::NamedTempFile, &'a Path)>,
}

/// Write every file of every target to a temp file beside it (see the module documentation).
pub fn stage<'a>(targets: &'a [DeployTarget], files: &CertFiles) -> io::Result<Staged<'a>> {
    let items = items(targets, files)?;
    for it in &items {
        check_target_path(it.path)?;
    }
    let mut temps = Vec::new();
    for it in items {
        let tmp = state::write_temp(it.path, it.data.as_bytes(), it.mode, it.owner)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", it.path.display())))?;
        temps.push((tmp, it.path));
    }
    Ok(Staged { temps })
}

impl<'a> Staged<'a> {
    /// The temp files and the paths they will replace.
    pub fn temp_paths(&self) -> Vec<(PathBuf, PathBuf)> {
        self.temps
            .iter()
            .map(|(t, p)| (t.path().to_path_buf(), p.to_path_buf()))
            .collect()
    }

    /// Rename every temp file over its target, keeping the previous file as `.NAME.renewd-prev`. On any
    /// failure, the files already replaced are put back and the error returned.
    pub fn commit(self) -> io::Result<Committed> {
        let mut done = Committed {
            replaced: Vec::new(),
        };
        for (tmp, path) in self.temps {
            match replace(tmp, path) {
                Ok(backup) => done.replaced.push((path.to_path_buf(), backup)),
                Err(e) => {
                    let e = io::Error::new(e.kind(), format!("{}: {e}", path.display()));
                    if let Err(re) = done.rollback() {
                        tracing::error!(error = %re, "cannot put a previous deploy file back");
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }
}

fn backup_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.renewd-prev"))
}

/// Link the current file (if any) to its backup name, then rename `tmp` over `path`.
fn replace(tmp: tempfile::NamedTempFile, path: &Path) -> io::Result<Option<PathBuf>> {
    let backup = backup_path(path);
    match fs::remove_file(&backup) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let had = match fs::hard_link(path, &backup) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    if let Err(e) = tmp.persist(path) {
        // Nothing was replaced: the previous file is still at `path`.
        if had {
            let _ = fs::remove_file(&backup);
        }
        return Err(e.error);
    }
    // Replaced: from here on the caller holds the backup, so a failure can still be rolled back.
    let parent = path.parent().unwrap_or(Path::new("/"));
    let done = Ok(had.then_some(backup.clone()));
    match state::fsync_dir(parent) {
        Ok(()) => done,
        Err(e) => {
            if had {
                fs::rename(&backup, path)?;
            } else {
                fs::remove_file(path)?;
            }
            Err(e)
        }
    }
}

/// The targets replaced, each with the link to its previous file.
pub struct Committed {
    replaced: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Committed {
    /// Put every previous file back (the very inode: contents, owner, mode), newest first; remove files
    /// that did not exist before. Tries all, returns the first error.
    pub fn rollback(self) -> io::Result<()> {
        let mut first = None;
        for (path, backup) in self.replaced.into_iter().rev() {
            let r = match backup {
                Some(b) => fs::rename(&b, &path),
                None => fs::remove_file(&path),
            }
            .and_then(|()| state::fsync_dir(path.parent().unwrap_or(Path::new("/"))));
            if let Err(e) = r {
                first.get_or_insert(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Keep the new files: remove the backups. Returns the paths written.
    pub fn finish(self) -> Vec<PathBuf> {
        self.replaced
            .into_iter()
            .map(|(path, backup)| {
                if let Some(b) = backup {
                    if let Err(e) = fs::remove_file(&b) {
                        tracing::warn!(file = %b.display(), error = %e, "cannot remove a previous deploy file");
                    }
                }
                path
            })
            .collect()
    }
}

/// Write one deploy target (all or nothing), without reloads.
pub fn deploy(target: &DeployTarget, files: &CertFiles) -> io::Result<()> {
    stage(std::slice::from_ref(target), files)?
        .commit()
        .map(|c| {
            c.finish();
        })
}

/// A user name (or numeric uid) to its uid.
pub fn lookup_user(name: &str) -> io::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: getpwnam reads a NUL-terminated string and returns a pointer into static storage that we
    // read immediately; renewd does not call it concurrently with other passwd functions on this thread.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(io::Error::other(format!("no such user `{name}`")));
    }
    // SAFETY: non-null pointer returned by getpwnam.
    Ok(unsafe { (*pw).pw_uid })
}

/// A group name (or numeric gid) to its gid.
pub fn lookup_group(name: &str) -> io::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: as for getpwnam above.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(io::Error::other(format!("no such group `{name}`")));
    }
    // SAFETY: non-null pointer returned by getgrnam.
    Ok(unsafe { (*gr).gr_gid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReloadSpec;
    use crate::testutil::{listing, mkfifo, mode};
    use std::fs::Permissions;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::Duration;

    fn files(tag: &str) -> CertFiles {
        CertFiles {
            cert: format!("cert {tag}\n"),
            chain: format!("chain {tag}\n"),
            fullchain: format!("fullchain {tag}\n"),
            privkey: format!("key {tag}\n"),
        }
    }

    fn target(dir: &Path) -> DeployTarget {
        DeployTarget {
            fullchain: Some(dir.join("site.crt")),
            key: Some(dir.join("site.key")),
            combined: Some(dir.join("site.pem")),
            mode: None,
            ..Default::default()
        }
    }

    fn spec(deploy: Vec<DeployTarget>, reload: Vec<ReloadSpec>) -> CertSpec {
        CertSpec {
            name: "web".into(),
            file: "/dev/null".into(),
            domains: vec!["a.example".into()],
            account: "ca".into(),
            key: crate::config::KeySpec::EcdsaP256,
            key_reuse: false,
            dns: "primary".into(),
            zone: None,
            renew_before: None,
            profile: None,
            challenge: Default::default(),
            persist_until: None,
            preferred_chain: None,
            deploy,
            reload,
            pre_hooks: vec![],
            post_hooks: vec![],
        }
    }

    fn sh(script: &str) -> ReloadSpec {
        ReloadSpec::Command {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn temp_files_have_their_final_mode_and_keys_are_never_readable_by_others() {
        let d = tempfile::tempdir().unwrap();
        let gid = fs::metadata(d.path()).unwrap().gid();
        let t = DeployTarget {
            group: Some(gid.to_string()),
            mode: Some(0o640),
            ..target(d.path())
        };
        let staged = stage(std::slice::from_ref(&t), &files("new")).unwrap();
        let temps = staged.temp_paths();
        assert_eq!(temps.len(), 3);
        for (tmp, final_path) in &temps {
            assert_eq!(tmp.parent(), final_path.parent(), "temp beside its target");
            assert!(!final_path.exists(), "nothing visible before commit");
            assert_eq!(mode(tmp), 0o640, "{}", tmp.display());
            assert_eq!(fs::metadata(tmp).unwrap().gid(), gid);
        }
        staged.commit().unwrap().finish();
        assert_eq!(mode(&d.path().join("site.key")), 0o640);
        assert_eq!(
            fs::read_to_string(d.path().join("site.pem")).unwrap(),
            "key new\nfullchain new\n"
        );
        assert_eq!(listing(d.path()), vec!["site.crt", "site.key", "site.pem"]);

        // Defaults: certificates 0644, anything holding the key 0600.
        let t = target(d.path());
        let staged = stage(std::slice::from_ref(&t), &files("x")).unwrap();
        for (tmp, p) in staged.temp_paths() {
            let want = if p.ends_with("site.crt") {
                0o644
            } else {
                0o600
            };
            assert_eq!(mode(&tmp), want, "{}", p.display());
        }
    }

    #[test]
    fn a_failed_commit_puts_every_previous_file_back() {
        let d = tempfile::tempdir().unwrap();
        let t = target(d.path());
        deploy(&t, &files("old")).unwrap();
        fs::set_permissions(d.path().join("site.key"), Permissions::from_mode(0o400)).unwrap();
        let staged = stage(std::slice::from_ref(&t), &files("new")).unwrap();
        // Make the last rename fail: its temp file vanishes.
        let temps = staged.temp_paths();
        fs::remove_file(&temps[2].0).unwrap();
        assert!(staged.commit().is_err());
        assert_eq!(
            fs::read_to_string(d.path().join("site.crt")).unwrap(),
            "fullchain old\n"
        );
        assert_eq!(
            fs::read_to_string(d.path().join("site.key")).unwrap(),
            "key old\n"
        );
        assert_eq!(mode(&d.path().join("site.key")), 0o400, "the very old file");
        assert_eq!(listing(d.path()), vec!["site.crt", "site.key", "site.pem"]);
    }

    #[test]
    fn two_targets_are_one_deploy() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ta = target(a.path());
        let tb = DeployTarget {
            cert: Some(b.path().join("missing-dir/x.crt")),
            ..Default::default()
        };
        deploy(&ta, &files("old")).unwrap();
        let s = spec(vec![ta, tb], vec![]);
        let e = install_blocking(&s, &files("new"), Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().starts_with("deploy of web: "), "{e}");
        assert!(e.to_string().contains("missing-dir"), "{e}");
        assert_eq!(
            fs::read_to_string(a.path().join("site.crt")).unwrap(),
            "fullchain old\n"
        );
        assert_eq!(listing(a.path()), vec!["site.crt", "site.key", "site.pem"]);
    }

    #[test]
    fn a_failed_config_test_restores_the_files_and_nothing_is_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let t = target(d.path());
        deploy(&t, &files("old")).unwrap();
        let marker = d.path().join("reloaded");
        // A config test that fails (nginx cannot read that file, or there is no nginx): the command after
        // it must not run.
        let s = spec(
            vec![t.clone()],
            vec![
                ReloadSpec::NginxConfig(d.path().join("no-such-nginx.conf")),
                sh(&format!("touch {}", marker.display())),
            ],
        );
        let e = install_blocking(&s, &files("new"), d.path()).unwrap_err();
        assert!(e.to_string().starts_with("reload failed: "), "{e}");
        assert!(!marker.exists(), "reloaded after a failed config test");
        assert_eq!(
            fs::read_to_string(d.path().join("site.key")).unwrap(),
            "key old\n"
        );
        assert_eq!(listing(d.path()), vec!["site.crt", "site.key", "site.pem"]);

        // A failing command after the files are in place: reported, files stay new.
        let s = spec(vec![t], vec![sh("echo nope >&2; exit 4")]);
        let e = install_blocking(&s, &files("new"), d.path()).unwrap_err();
        assert!(e.to_string().starts_with("reload failed: "), "{e}");
        assert!(e.to_string().ends_with("exited with status 4: nope"), "{e}");
        assert_eq!(
            fs::read_to_string(d.path().join("site.key")).unwrap(),
            "key new\n"
        );
    }

    #[test]
    fn a_failure_is_remembered_until_an_install_succeeds() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("live/web");
        fs::create_dir_all(&live).unwrap();
        let out = d.path().join("out");
        fs::create_dir(&out).unwrap();
        let t = target(&out);
        let failing = spec(vec![t.clone()], vec![sh("exit 1")]);
        assert!(
            needs_redeploy(&failing, &files("new"), &live),
            "never deployed"
        );
        assert!(install_blocking(&failing, &files("new"), &live).is_err());
        let marker = d.path().join("live/.web.reload-failed");
        assert!(fs::read_to_string(&marker)
            .unwrap()
            .starts_with("reload failed: "));
        assert!(needs_redeploy(&failing, &files("new"), &live));
        let ok = spec(vec![t], vec![sh("exit 0")]);
        install_blocking(&ok, &files("new"), &live).unwrap();
        assert!(!marker.exists());
        assert!(!needs_redeploy(&ok, &files("new"), &live));
        assert!(
            needs_redeploy(&ok, &files("newer"), &live),
            "targets differ"
        );
        // A target replaced by a named pipe differs, and is not waited on.
        let pem = out.join("site.pem");
        fs::remove_file(&pem).unwrap();
        mkfifo(&pem);
        assert!(needs_redeploy(&ok, &files("new"), &live));
    }

    #[test]
    fn symlinks_and_relative_paths_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let open = d.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, Permissions::from_mode(0o777)).unwrap();
        let elsewhere = d.path().join("elsewhere");
        fs::write(&elsewhere, "precious").unwrap();

        // A link at the target itself.
        symlink(&elsewhere, open.join("site.key")).unwrap();
        let e = check_target_path(&open.join("site.key")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("is a symlink"), "{e}");

        // A link on the way, in a directory others can write.
        let real = d.path().join("real");
        fs::create_dir(&real).unwrap();
        symlink(&real, open.join("ssl")).unwrap();
        let e = check_target_path(&open.join("ssl/site.key")).unwrap_err();
        assert!(e.to_string().contains("which other users can write"), "{e}");
        // The same link in a directory only we can write is fine.
        symlink(&real, d.path().join("ssl")).unwrap();
        check_target_path(&d.path().join("ssl/site.key")).unwrap();

        assert!(check_target_path(Path::new("ssl/site.key")).is_err());
        assert!(check_target_path(&d.path().join("real/../x")).is_err());

        let t = DeployTarget {
            key: Some(open.join("site.key")),
            ..Default::default()
        };
        assert!(deploy(&t, &files("new")).is_err());
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "precious");
    }
}
