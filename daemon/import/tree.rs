//! Where the files a renewal conf names are now. certbot writes absolute paths under the configuration
//! directory it ran with (`config_dir = /etc/letsencrypt`); the import may read a copy of that tree
//! elsewhere (DIR: a backup, a tree from another machine). A path that is not at the place certbot wrote
//! but is at the same place under DIR is read from DIR; one that is at neither is an error naming both.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::ConfigObj;

/// Where one path named by a renewal conf is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// Where certbot wrote it, inside DIR or outside certbot's tree.
    AsWritten(PathBuf),
    /// Where certbot wrote it, under its original directory `root`, which is not DIR and still has it.
    Original { path: PathBuf, root: PathBuf },
    /// Not under the original directory `root` any more: the same relative path under DIR.
    Rebased { path: PathBuf, root: PathBuf },
}

impl Found {
    pub(super) fn path(&self) -> &Path {
        match self {
            Found::AsWritten(p)
            | Found::Original { path: p, .. }
            | Found::Rebased { path: p, .. } => p,
        }
    }
}

/// One conf's view of certbot's tree: DIR (absolute) and the directories its paths were written under.
#[derive(Debug, Clone)]
pub(super) struct Tree {
    dir: PathBuf,
    /// certbot's `config_dir` and what comes before `/live/` and `/archive/` in the conf's paths;
    /// longest first, DIR itself left out.
    roots: Vec<PathBuf>,
}

impl Tree {
    /// The roots of `c` (a renewal conf) for a tree now at `dir`.
    pub(super) fn of(c: &ConfigObj, dir: &Path) -> Tree {
        let mut roots: Vec<PathBuf> = Vec::new();
        let mut add = |r: &str| {
            let r = r.trim_end_matches('/');
            if r.starts_with('/') && r.len() > 1 && !roots.iter().any(|x| x.as_os_str() == r) {
                roots.push(PathBuf::from(r));
            }
        };
        if let Some(d) = c.get("renewalparams", "config_dir") {
            add(d);
        }
        for k in ["cert", "privkey", "chain", "fullchain"] {
            if let Some((root, _)) = c.get("", k).and_then(|p| p.rsplit_once("/live/")) {
                add(root);
            }
        }
        if let Some((root, _)) = c
            .get("", "archive_dir")
            .and_then(|p| p.rsplit_once("/archive/"))
        {
            add(root);
        }
        roots.retain(|r| r != dir);
        roots.sort_by_key(|r| std::cmp::Reverse(r.as_os_str().len()));
        Tree {
            dir: dir.to_path_buf(),
            roots,
        }
    }

    /// The places certbot's hooks directory had: DIR and every original root.
    pub(super) fn all_roots(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.dir.as_path()).chain(self.roots.iter().map(PathBuf::as_path))
    }

    /// Where to read `p`: as written when it is there; else the same relative path under DIR when that
    /// is there; else an error naming both. A path outside every root that is not there is returned as
    /// written (the reader says what is wrong with it).
    pub(super) fn find(&self, p: &Path) -> Result<Found, String> {
        let under = self
            .roots
            .iter()
            .find_map(|r| p.strip_prefix(r).ok().map(|rest| (r, rest)));
        if !missing(p) {
            return Ok(match under {
                Some((root, _)) if !p.starts_with(&self.dir) => Found::Original {
                    path: p.to_path_buf(),
                    root: root.clone(),
                },
                _ => Found::AsWritten(p.to_path_buf()),
            });
        }
        let Some((root, rest)) = under else {
            return Ok(Found::AsWritten(p.to_path_buf()));
        };
        let here = self.dir.join(rest);
        if missing(&here) {
            return Err(format!(
                "neither {} (as certbot wrote it) nor {} (the same path under {}) exists",
                p.display(),
                here.display(),
                self.dir.display()
            ));
        }
        Ok(Found::Rebased {
            path: here,
            root: root.clone(),
        })
    }

    /// `p` (a path as found) relative to certbot's tree (DIR or an original root), if it is inside.
    pub(super) fn contains(&self, p: &Path) -> Option<PathBuf> {
        self.all_roots()
            .find_map(|r| p.strip_prefix(r).ok().map(Path::to_path_buf))
    }
}

/// Not there (a dangling symlink counts as not there). Any other error is the reader's to report.
fn missing(p: &Path) -> bool {
    matches!(fs::metadata(p), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Which original roots were read from DIR (rebased) or from where they are (not DIR), per conf.
#[derive(Debug, Clone, Default)]
pub(super) struct Reads {
    rebased: BTreeMap<PathBuf, BTreeSet<String>>,
    original: BTreeMap<PathBuf, BTreeSet<String>>,
}

impl Reads {
    /// Remember how `found` was read for the conf `conf` (its file name).
    pub(super) fn record(&mut self, conf: &str, found: &Found) {
        let (map, root) = match found {
            Found::AsWritten(_) => return,
            Found::Original { root, .. } => (&mut self.original, root),
            Found::Rebased { root, .. } => (&mut self.rebased, root),
        };
        map.entry(root.clone())
            .or_default()
            .insert(conf.to_string());
    }

    /// One line per original root: which was rebased onto DIR, which was read where it is.
    pub(super) fn lines(&self, dir: &Path) -> Vec<String> {
        let confs = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        let mut out = Vec::new();
        for (root, c) in &self.rebased {
            out.push(format!(
                "certbot's paths under {} (where it ran; in {}) are not there: read from the same places under {} \
                 (rebased {} -> {})",
                root.display(),
                confs(c),
                dir.display(),
                root.display(),
                dir.display()
            ));
        }
        for (root, c) in &self.original {
            out.push(format!(
                "{} name files under {}, which still has them: read from there, not from {}",
                confs(c),
                root.display(),
                dir.display()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(root: &str) -> ConfigObj {
        ConfigObj::parse(&format!(
            "archive_dir = {root}/archive/web\ncert = {root}/live/web/cert.pem\n\
             [renewalparams]\nconfig_dir = {root}\n"
        ))
    }

    #[test]
    fn a_path_gone_from_the_original_root_is_read_from_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("copy");
        fs::create_dir_all(dir.join("live/web")).unwrap();
        fs::write(dir.join("live/web/cert.pem"), "x").unwrap();
        let old = tmp.path().join("gone");
        let tree = Tree::of(&conf(&old.to_string_lossy()), &dir);
        assert_eq!(
            tree.find(&old.join("live/web/cert.pem")).unwrap(),
            Found::Rebased {
                path: dir.join("live/web/cert.pem"),
                root: old.clone()
            }
        );
        let err = tree.find(&old.join("live/web/chain.pem")).unwrap_err();
        assert_eq!(
            err,
            format!(
                "neither {} (as certbot wrote it) nor {} (the same path under {}) exists",
                old.join("live/web/chain.pem").display(),
                dir.join("live/web/chain.pem").display(),
                dir.display()
            )
        );
        // Outside certbot's tree: as written, for the reader to complain about.
        assert_eq!(
            tree.find(Path::new("/nonexistent/rfc2136.ini")).unwrap(),
            Found::AsWritten(PathBuf::from("/nonexistent/rfc2136.ini"))
        );
    }

    #[test]
    fn a_path_still_at_the_original_root_is_read_there_and_said() {
        let tmp = tempfile::tempdir().unwrap();
        let (orig, dir) = (tmp.path().join("orig"), tmp.path().join("copy"));
        fs::create_dir_all(orig.join("live/web")).unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(orig.join("live/web/cert.pem"), "x").unwrap();
        let tree = Tree::of(&conf(&orig.to_string_lossy()), &dir);
        let found = tree.find(&orig.join("live/web/cert.pem")).unwrap();
        assert!(matches!(&found, Found::Original { root, .. } if *root == orig));
        let mut reads = Reads::default();
        reads.record("web.conf", &found);
        let lines = reads.lines(&dir);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("still has them"), "{lines:?}");
    }

    #[test]
    fn roots_come_from_config_dir_and_the_live_and_archive_paths() {
        let c = ConfigObj::parse(
            "archive_dir = /a/archive/web\ncert = /b/live/web/cert.pem\n[renewalparams]\nconfig_dir = /c/\n",
        );
        let tree = Tree::of(&c, Path::new("/b"));
        assert_eq!(tree.roots, [PathBuf::from("/c"), PathBuf::from("/a")]);
    }
}
