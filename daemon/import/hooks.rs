//! certbot's hooks as renewd runs them (certbot/_internal/hooks.py is the reference):
//!
//! - deploy (`renew_hook`): after each renewal of a lineage, certbot runs the executables of
//!   `renewal-hooks/deploy/` in name order, then the lineage's `renew_hook` (`--deploy-hook`) unless that
//!   string *is* one of the directory's hook paths, which it already ran. renewd's `hooks:` are exactly
//!   that: the same list, in the same order, the duplicate left out.
//! - post: certbot collects `renewal-hooks/post/*` and each attempted lineage's `post_hook` (each string
//!   once) and runs them once at the end of a `certbot renew` that attempted a renewal, successful or
//!   not: renewd's `post_hooks:` (each distinct one once when a run's last attempt ended).
//! - pre: certbot runs `renewal-hooks/pre/*` and `pre_hook` before the first renewal attempt of a run:
//!   renewd's `pre_hooks:` (each distinct one once before a run's first attempt).
//!
//! Hooks that live in certbot's tree (DIR, or where certbot ran) are copied to `hooks/` beside renewd's
//! configuration, mode kept, and the specs name the copies, so they do not vanish with certbot's tree.
//! certbot runs hook commands with a shell; renewd runs argv without one, so a command that is not a
//! single program path runs as `/bin/sh -c COMMAND`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::tree::{Found, Reads, Tree};
use super::{ImportError, Plan, RenewalConf};
use crate::fsread;

/// The largest hook the import copies (a script, or a small program).
const HOOK_MAX: u64 = 16 * 1024 * 1024;

/// Characters that make a command need a shell (or a shell word quoting).
const SHELL_SPECIAL: &[char] = &[
    ' ', '\t', '\n', '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[',
    ']', '#', '~', '=', '%', '{', '}', '!',
];

/// The executables of DIR's `renewal-hooks/{pre,deploy,post}/`, as certbot lists them.
#[derive(Debug, Clone, Default)]
pub(super) struct DirHooks {
    pub pre: Vec<PathBuf>,
    pub deploy: Vec<PathBuf>,
    pub post: Vec<PathBuf>,
}

impl DirHooks {
    /// List them (certbot's `list_hooks`: executable regular files not ending in `~`, sorted) and say
    /// what becomes of the pre- and post-hooks; the deploy hooks go into every spec as they are.
    pub(super) fn list(dir: &Path, p: &mut Plan) -> Result<DirHooks, ImportError> {
        let hooks = DirHooks {
            pre: list_hooks(dir, "pre", p)?,
            deploy: list_hooks(dir, "deploy", p)?,
            post: list_hooks(dir, "post", p)?,
        };
        for h in hooks.pre.iter().chain(&hooks.post) {
            p.notes.push(format!(
                "{}: a {} hook of every certificate (`{}_hooks:`): once per run, as certbot ran it",
                h.display(),
                if hooks.pre.contains(h) { "pre" } else { "post" },
                if hooks.pre.contains(h) { "pre" } else { "post" },
            ));
        }
        Ok(hooks)
    }
}

/// certbot's `list_hooks(DIR/renewal-hooks/KIND)`; what it skips is listed as not converted.
fn list_hooks(dir: &Path, kind: &str, p: &mut Plan) -> Result<Vec<PathBuf>, ImportError> {
    let d = dir.join("renewal-hooks").join(kind);
    let mut all: Vec<PathBuf> = match fs::read_dir(&d) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ImportError::ReadDir { path: d, source }),
    };
    all.sort();
    let mut out = Vec::new();
    for h in all {
        let exec = fs::metadata(&h)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if h.to_string_lossy().ends_with('~') {
            p.not_converted.push(format!(
                "{}: a backup file (ends in `~`): certbot skips it too",
                h.display()
            ));
        } else if exec {
            out.push(h);
        } else {
            p.not_converted.push(format!(
                "{}: not an executable file (certbot skips it too)",
                h.display()
            ));
        }
    }
    Ok(out)
}

/// A hook copied from certbot's tree to `hooks/REL` beside renewd's configuration.
#[derive(Debug, Clone)]
pub(super) struct HookCopy {
    pub source: PathBuf,
    /// Under the hooks directory: the path under certbot's tree without `renewal-hooks/`.
    pub rel: PathBuf,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

/// One lineage's hooks, argv each.
#[derive(Debug, Default)]
pub(super) struct LineageHooks {
    pub deploy: Vec<Vec<String>>,
    pub pre: Vec<Vec<String>>,
    pub post: Vec<Vec<String>>,
}

/// Everything one run converts hooks with: where copies go, the copies so far, and how paths were read.
pub(super) struct Hooks<'a> {
    pub hooks_dir: &'a Path,
    pub copies: &'a mut Vec<HookCopy>,
    pub reads: &'a mut Reads,
}

impl Hooks<'_> {
    /// A lineage's hooks (argv each): `deploy` in the order certbot ran them after a renewal (directory
    /// deploy hooks, `renew_hook` unless it is one of them); `pre` and `post` as certbot ran them around a
    /// run (directory hooks, then the lineage's `pre_hook`/`post_hook` unless it is one of them).
    pub(super) fn of_lineage(
        &mut self,
        conf: &RenewalConf,
        tree: &Tree,
        dir_hooks: &DirHooks,
        p: &mut Plan,
    ) -> LineageHooks {
        let what = &conf.what;
        let mut out = Vec::new();
        for h in &dir_hooks.deploy {
            out.push(vec![self.copy_from_tree(h, tree, p)]);
        }
        if let Some(cmd) = conf.param("renew_hook") {
            match certbot_path_of(cmd, &dir_hooks.deploy, "deploy", tree) {
                Some(h) => p.notes.push(format!(
                    "{what}: `renew_hook = {cmd}` is {}: it runs once, as with certbot (which skips a renew_hook it \
                     already ran from renewal-hooks/deploy)",
                    h.display()
                )),
                None => out.push(self.command(cmd, conf, tree, p)),
            }
        }
        let mut post = Vec::new();
        for h in &dir_hooks.post {
            post.push(vec![self.copy_from_tree(h, tree, p)]);
        }
        if let Some(cmd) = conf.param("post_hook") {
            match certbot_path_of(cmd, &dir_hooks.post, "post", tree) {
                Some(h) => p.notes.push(format!(
                    "{what}: `post_hook = {cmd}` is {}: it runs once, as with certbot",
                    h.display()
                )),
                None => post.push(self.command(cmd, conf, tree, p)),
            }
        }
        let mut pre = Vec::new();
        for h in &dir_hooks.pre {
            pre.push(vec![self.copy_from_tree(h, tree, p)]);
        }
        if let Some(cmd) = conf.param("pre_hook") {
            match certbot_path_of(cmd, &dir_hooks.pre, "pre", tree) {
                Some(h) => p.notes.push(format!(
                    "{what}: `pre_hook = {cmd}` is {}: it runs once, as with certbot",
                    h.display()
                )),
                None => pre.push(self.command(cmd, conf, tree, p)),
            }
        }
        LineageHooks {
            deploy: out,
            pre,
            post,
        }
    }

    /// A hook listed from DIR's `renewal-hooks/`: its copy's path.
    fn copy_from_tree(&mut self, h: &Path, tree: &Tree, p: &mut Plan) -> String {
        match tree.contains(h) {
            Some(rel) => self.copy(h, &rel, p),
            None => h.to_string_lossy().into_owned(),
        }
    }

    /// Copy `source` (in certbot's tree at `rel`) to the hooks directory: the copy's path. A hook that
    /// cannot be read stays where it is, with a to-do. Two different files that would land on the same
    /// copy keep apart (`NAME-2`); the same file, or an identical one, is copied once.
    fn copy(&mut self, source: &Path, rel: &Path, p: &mut Plan) -> String {
        let target = |dir: &Path, rel: &Path| dir.join(rel).to_string_lossy().into_owned();
        if let Some(c) = self.copies.iter().find(|c| c.source == source) {
            return target(self.hooks_dir, &c.rel);
        }
        let read = fs::metadata(source)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                fsread::read_capped(source, HOOK_MAX)
                    .map(|bytes| (m.permissions().mode() & 0o777, bytes))
                    .map_err(|e| super::read_problem(source, &e))
            });
        let (mode, bytes) = match read {
            Ok(r) => r,
            Err(why) => {
                p.todo.push(format!(
                    "{}: not copied ({why}): the spec names it where it is, and it goes when certbot's directory \
                     does; copy it next to renewd's configuration and change the spec",
                    source.display()
                ));
                return source.to_string_lossy().into_owned();
            }
        };
        let base: PathBuf = {
            let mut c = rel.components();
            match c.next() {
                Some(Component::Normal(first)) if first == "renewal-hooks" => c.as_path().into(),
                _ => rel.to_path_buf(),
            }
        };
        let mut rel = base.clone();
        for n in 2.. {
            match self.copies.iter().find(|c| c.rel == rel) {
                None => break,
                Some(c) if c.bytes == bytes && c.mode == mode => {
                    return target(self.hooks_dir, &c.rel);
                }
                Some(_) => {
                    let name = base.file_name().unwrap_or_default().to_string_lossy();
                    rel = base.with_file_name(format!("{name}-{n}"));
                }
            }
        }
        let t = target(self.hooks_dir, &rel);
        self.copies.push(HookCopy {
            source: source.to_path_buf(),
            rel,
            mode,
            bytes,
        });
        t
    }

    /// A hook command as certbot ran it (with a shell) → argv: the program alone when the command is one
    /// path, else `/bin/sh -c COMMAND`. A program in certbot's tree is found (rebased onto DIR if need be)
    /// and copied; the command then names the copy.
    fn command(&mut self, cmd: &str, conf: &RenewalConf, tree: &Tree, p: &mut Plan) -> Vec<String> {
        let cmd = cmd.trim();
        let (prog, rest) = match cmd.find(char::is_whitespace) {
            Some(i) => (&cmd[..i], &cmd[i..]),
            None => (cmd, ""),
        };
        let new_prog = if prog.contains('/') && !prog.starts_with(['"', '\'', '~', '$']) {
            self.program(prog, conf, tree, p)
        } else {
            None
        };
        match new_prog {
            Some(prog) if rest.is_empty() && !prog.contains(SHELL_SPECIAL) => vec![prog],
            Some(prog) => shell(format!("{}{rest}", shell_word(&prog))),
            None if rest.is_empty() && !cmd.contains(SHELL_SPECIAL) => vec![cmd.to_string()],
            None => shell(cmd.to_string()),
        }
    }

    /// The program path a hook command should name: the copy when it is in certbot's tree, else where it
    /// is. `None`: keep the command as written.
    fn program(
        &mut self,
        prog: &str,
        conf: &RenewalConf,
        tree: &Tree,
        p: &mut Plan,
    ) -> Option<String> {
        let what = &conf.what;
        if prog.starts_with('/') {
            return match tree.find(Path::new(prog)) {
                Ok(found) => {
                    self.reads.record(&conf.file_name(), &found);
                    match tree.contains(found.path()) {
                        Some(rel) => Some(self.copy(found.path(), &rel, p)),
                        None => match found {
                            Found::AsWritten(_) => None,
                            other => Some(other.path().to_string_lossy().into_owned()),
                        },
                    }
                }
                Err(why) => {
                    p.todo.push(format!(
                        "{what}: hook program: {why}: the spec keeps `{prog}`, which fails until it is there"
                    ));
                    None
                }
            };
        }
        // Relative: certbot resolved it against its working directory: `/` under certbot.timer (as renewd
        // runs hooks), or its configuration directory when it was run from there by hand.
        let candidates: Vec<PathBuf> = std::iter::once(Path::new("/"))
            .chain(tree.all_roots())
            .map(|r| r.join(prog))
            .collect();
        let Some(found) = candidates.iter().find(|c| c.exists()) else {
            p.todo.push(format!(
                "{what}: hook program `{prog}` is a relative path and none of {} exists; renewd runs hooks in `/`: \
                 write its absolute path in the spec",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            return None;
        };
        // Outside certbot's tree it is relative to `/`, which is where renewd runs hooks: kept.
        tree.contains(found).map(|rel| self.copy(found, &rel, p))
    }
}

/// `renew_hook`/`post_hook` `cmd` is, as a string, the path of one of the directory's hooks `listed`
/// (as certbot compares them: `config_dir/renewal-hooks/KIND/NAME`, for the directory certbot ran with):
/// that hook.
fn certbot_path_of<'h>(
    cmd: &str,
    listed: &'h [PathBuf],
    kind: &str,
    tree: &Tree,
) -> Option<&'h PathBuf> {
    listed.iter().find(|h| {
        let Some(name) = h.file_name() else {
            return false;
        };
        tree.all_roots()
            .any(|root| root.join("renewal-hooks").join(kind).join(name).as_os_str() == cmd)
    })
}

fn shell(cmd: String) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), cmd]
}

/// `s` as one shell word.
fn shell_word(s: &str) -> String {
    if s.contains(SHELL_SPECIAL) {
        format!("'{}'", s.replace('\'', r"'\''"))
    } else {
        s.to_string()
    }
}
