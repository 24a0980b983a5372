//! The state directory on a real, small tmpfs filled to the brim: an install that fails leaves nothing
//! behind (no partial version, no temporary file, no trace of the new private key) and the old live files
//! intact; `remove_leftovers` and the next install leave only complete versions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::proc::poll_until;

use renewd::certs::pem_encode;
use renewd::state::{self, CertFiles, StateDir};

const PAGE: u64 = 4096;
const NAME: &str = "web";

/// A tmpfs mounted on a fresh temporary directory; unmounted when dropped, also when the test panics.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str, inodes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},nr_inodes={inodes},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs (run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free (pages, inodes).
    fn free(&self) -> (u64, u64) {
        Tmpfs::statvfs(self.path())()
    }

    /// A function giving the free (pages, inodes) of the file system at `path`.
    fn statvfs(path: &Path) -> impl Fn() -> (u64, u64) {
        let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        move || {
            // SAFETY: a valid C string and a zeroed out-parameter of the right type.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
            (
                st.f_bfree as u64 * st.f_frsize as u64 / PAGE,
                st.f_ffree as u64,
            )
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(self.path()).status().is_ok_and(|s| s.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("cannot unmount the tmpfs at {}", self.path().display());
        }
    }
}

/// Takes the space and inodes of a tmpfs but for `pages` free pages and `inodes` free inodes (None: leave
/// that one alone); gives them back when dropped.
struct Filler {
    dir: PathBuf,
    /// (pages, inodes) it takes, and the mount to ask.
    taken: (u64, u64),
    mount: PathBuf,
}

impl Filler {
    fn fill(tmpfs: &Tmpfs, pages: Option<u64>, inodes: Option<u64>) -> Filler {
        let before = tmpfs.free();
        let dir = tmpfs.path().join("filler");
        fs::create_dir(&dir).unwrap();
        let mut filler = Filler {
            dir,
            taken: (0, 0),
            mount: tmpfs.path().to_path_buf(),
        };
        if let Some(pages) = pages {
            let mut f = fs::File::create(filler.dir.join("pages")).unwrap();
            let chunk = vec![0u8; 16 * PAGE as usize];
            loop {
                match f.write(&chunk) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling: {e}"),
                }
            }
            let len = f.metadata().unwrap().len();
            let give_back = pages.saturating_sub(tmpfs.free().0);
            f.set_len((len.div_ceil(PAGE) - give_back) * PAGE).unwrap();
        }
        if let Some(inodes) = inodes {
            let mut made = Vec::new();
            loop {
                let p = filler.dir.join(format!("i{}", made.len()));
                match fs::File::create_new(&p) {
                    Ok(_) => made.push(p),
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling inodes: {e}"),
                }
            }
            let give_back = inodes.saturating_sub(tmpfs.free().1) as usize;
            for p in &made[made.len() - give_back..] {
                fs::remove_file(p).unwrap();
            }
        }
        let (free_pages, free_inodes) = tmpfs.free();
        filler.taken = (before.0 - free_pages, before.1 - free_inodes);
        assert!(
            pages.is_none_or(|p| p == free_pages),
            "{free_pages} pages free, wanted {pages:?}"
        );
        assert!(
            inodes.is_none_or(|i| i == free_inodes),
            "{free_inodes} inodes free, wanted {inodes:?}"
        );
        filler
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let mount = Tmpfs::statvfs(&self.mount);
        let start = mount();
        let _ = fs::remove_dir_all(&self.dir);
        // A child another test forks at this moment holds a copy of our descriptors until its exec
        // (close-on-exec), and the pages of an unlinked file stay allocated while any is open: on a
        // loaded machine that window is long enough for the next level to find the space still taken.
        let want = (start.0 + self.taken.0, start.1 + self.taken.1);
        let back = poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
            let (p, i) = mount();
            (p >= want.0 && i >= want.1).then_some(())
        });
        assert!(
            back.is_some(),
            "the filler's space did not come back: {:?} free, {want:?} expected",
            mount()
        );
    }
}

/// A real-looking issued certificate: an RSA 2048 key (its PEM differs for every call), a leaf and its issuer.
fn issue(domain: &str) -> CertFiles {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let leaf = rcgen::CertificateParams::new(vec![domain.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let cert = pem_encode("CERTIFICATE", leaf.der());
    let chain = pem_encode("CERTIFICATE", ca_cert.der());
    CertFiles {
        fullchain: format!("{cert}{chain}"),
        cert,
        chain,
        privkey: key.serialize_pem(),
    }
}

fn same(a: &CertFiles, b: &CertFiles) -> bool {
    (&a.cert, &a.chain, &a.fullchain, &a.privkey) == (&b.cert, &b.chain, &b.fullchain, &b.privkey)
}

/// Every path below `root`, not following links.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            all.push(e.path());
        }
    }
    all
}

/// What is wrong with `st` whatever version is live: entries of the archive that are not complete
/// versions, temporary files or directories anywhere, files holding any line of `secret`'s body.
fn leftovers(st: &StateDir, secret: Option<&str>) -> Vec<String> {
    let mut wrong = Vec::new();
    for e in fs::read_dir(st.archive_dir(NAME)).unwrap() {
        let p = e.unwrap().path();
        let complete = [
            state::CERT_FILE,
            state::CHAIN_FILE,
            state::FULLCHAIN_FILE,
            state::PRIVKEY_FILE,
        ]
        .iter()
        .all(|f| p.join(f).is_file());
        if !complete || p.file_name().unwrap().to_str().unwrap().starts_with('.') {
            wrong.push(format!("not a complete version: {}", p.display()));
        }
    }
    let secret_lines: Vec<&str> = secret
        .into_iter()
        .flat_map(|s| s.lines().filter(|l| !l.starts_with("-----")))
        .collect();
    for p in walk(st.root()) {
        let file_name = p.file_name().unwrap().to_string_lossy();
        if file_name.ends_with(".tmp") || file_name.contains(".partial.") {
            wrong.push(format!("temporary: {}", p.display()));
        }
        if fs::symlink_metadata(&p).unwrap().is_file() {
            let text = fs::read_to_string(&p).unwrap_or_default();
            if secret_lines.iter().any(|l| text.contains(l)) {
                wrong.push(format!("holds the new private key: {}", p.display()));
            }
        }
    }
    wrong
}

fn live_is(st: &StateDir, version: &str, files: &CertFiles) -> Result<(), String> {
    let target = fs::canonicalize(st.live_dir(NAME)).map_err(|e| format!("live/{NAME}: {e}"))?;
    if target != fs::canonicalize(st.archive_dir(NAME).join(version)).unwrap() {
        return Err(format!("live/{NAME} → {}, not {version}", target.display()));
    }
    match st.read_live(NAME) {
        Ok(Some(live)) if same(&live, files) => Ok(()),
        other => Err(format!("live files differ from {version}: {other:?}")),
    }
}

#[test]
fn an_install_on_a_full_tmpfs_fails_cleanly_or_succeeds_whole() {
    let tmpfs = Tmpfs::mount("4m", 2048);
    let (v1, v2, v3) = (
        state::version_name(1_700_000_000, "01"),
        state::version_name(1_700_000_100, "02"),
        state::version_name(1_700_000_200, "03"),
    );
    let (one, two, three) = (issue("a.test"), issue("a.test"), issue("a.test"));
    // Version 2 needs 4 pages (each file is under one) and 6 inodes (a directory, 4 files, a link):
    // every resource from nothing free to just enough, alone and together.
    let levels: Vec<(Option<u64>, Option<u64>)> = (0..=4)
        .map(|p| (Some(p), None))
        .chain((0..=6).map(|i| (None, Some(i))))
        .chain([(Some(3), Some(6)), (Some(4), Some(5)), (Some(4), Some(6))])
        .collect();
    let (mut failed, mut installed, mut dirty) = (0, 0, 0);
    let mut problems = Vec::new();
    // Per level: the state directory, and whether installing version 2 failed there.
    let mut states = Vec::new();
    for (level, &(pages, inodes)) in levels.iter().enumerate() {
        let st = StateDir::new(tmpfs.path().join(format!("state-{level}")));
        st.install(NAME, &v1, &one)
            .expect("version 1, with room to spare");
        let filler = Filler::fill(&tmpfs, pages, inodes);
        let result = st.install(NAME, &v2, &two);
        drop(filler);
        let wrong: Vec<String> = match &result {
            Ok(_) => {
                installed += 1;
                let live = live_is(&st, &v2, &two).err();
                leftovers(&st, None).into_iter().chain(live).collect()
            }
            Err(_) => {
                failed += 1;
                let live = live_is(&st, &v1, &one).err();
                leftovers(&st, Some(&two.privkey))
                    .into_iter()
                    .chain(live)
                    .collect()
            }
        };
        let what = format!("level {level} ({pages:?} pages, {inodes:?} inodes free)");
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.kind());
        eprintln!("{what}: {outcome:?}, {} problems", wrong.len());
        dirty += usize::from(!wrong.is_empty());
        problems.extend(wrong.into_iter().map(|w| format!("{what}: {w}")));
        states.push((st, result.is_err()));
    }
    eprintln!(
        "{} fill levels: {failed} failed, {installed} installed version 2, {dirty} left something wrong",
        levels.len()
    );

    // With room again: what remains is cleaned at start-up, and the next version installs. A key of a
    // failed install is gone, also after the next successful one.
    for (level, (st, v2_failed)) in states.iter().enumerate() {
        let removed = st.remove_leftovers().unwrap();
        if !removed.is_empty() {
            eprintln!("level {level}: remove_leftovers removed {removed:?}");
        }
        st.install(NAME, &v3, &three).unwrap();
        let live = live_is(st, &v3, &three).err();
        let secret = v2_failed.then_some(two.privkey.as_str());
        problems.extend(
            leftovers(st, secret)
                .into_iter()
                .chain(live)
                .map(|w| format!("level {level} after version 3: {w}")),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
