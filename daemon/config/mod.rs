//! Configuration: the global file (`renewd.yaml`) and one spec per certificate (`certs.d/NAME.yaml`).
//!
//! Two stages, as in ripgrep: [`raw`] turns YAML into a permissive tree of positioned nodes (only YAML
//! syntax can fail there), then [`validate`] checks keys, types and meaning in one pass and collects
//! *every* problem as a [`Diagnostic`] (`FILE:LINE:COL: error: message`). Nothing is validated inside a
//! `Deserialize` impl. This is the only module that reads configuration files, TSIG key files and EAB
//! key files; secrets end up in [`Secret`] and never in a message.

mod cluster;
mod error;
mod files;
mod names;
mod raw;
pub mod reference;
pub mod settings;
mod tsig_key;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub use cluster::DEFAULT_PREFIX as DEFAULT_CLUSTER_PREFIX;
pub use error::{ConfigErrors, Diagnostic, Pos, Severity};
pub use settings::*;
pub use tsig_key::{parse_tsig_key_file, parse_tsig_key_file_named, parse_tsig_keys};

use crate::fsread::{self, ReadError};
use error::{Diags, MAX_DIAGS_PER_FILE};
use files::FileKind;
use validate::{PartialSpec, SpecContext};

/// A valid configuration, and the warnings found on the way (e.g. a secret file readable by others).
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<Diagnostic>,
}

/// The global file alone (`settings.certs` is empty), with what is needed to load specs one by one.
#[derive(Debug, Clone)]
pub struct Global {
    pub settings: Settings,
    pub warnings: Vec<Diagnostic>,
    defaults: PartialSpec,
    account_names: BTreeSet<String>,
    dns_names: BTreeSet<String>,
    keyless_dns: BTreeMap<String, PathBuf>,
}

impl Global {
    /// The same global configuration with no specs loaded (to load them all again).
    pub fn clone_without_certs(&self) -> Global {
        let mut g = self.clone();
        g.settings.certs.clear();
        g
    }

    /// Load one spec file against this global configuration (defaults merged, references checked).
    /// Domains are checked against `self.settings.certs` (other names only), if any are present.
    pub fn load_spec(&self, path: &Path) -> Result<CertSpec, ConfigErrors> {
        self.load_spec_among(path, &DomainOwners::of(&self.settings.certs))
    }

    /// [`Global::load_spec`] with the owners of the domains of `self.settings.certs` already indexed:
    /// loading every spec of a directory one by one stays linear (the caller adds each spec it keeps).
    pub fn load_spec_among(
        &self,
        path: &Path,
        owners: &DomainOwners,
    ) -> Result<CertSpec, ConfigErrors> {
        let mut out = Vec::new();
        let cx = self.context();
        let (spec, domains) = load_one_spec(&mut out, path, Some(&cx));
        if let Some(spec) = &spec {
            check_against_others(&mut out, path, spec, &domains, owners, &self.settings.certs);
        }
        finish(out, spec)
    }

    fn context(&self) -> SpecContext<'_> {
        SpecContext {
            config_path: &self.settings.config_path,
            defaults: &self.defaults,
            accounts: &self.account_names,
            dns: &self.dns_names,
            keyless_dns: &self.keyless_dns,
        }
    }
}

/// Load the global file and every `*.yaml` spec in `certs_dir` (sorted by name; dotfiles and other
/// files ignored). On any error, every diagnostic found (errors and warnings) is returned.
pub fn load(config_path: &Path) -> Result<Loaded, ConfigErrors> {
    let mut out = Vec::new();
    let global = load_global_into(&mut out, config_path);
    let (certs_dir, certs_dir_pos) = match &global {
        Some(g) => (g.0.settings.certs_dir.clone(), g.1),
        None => (base_dir(config_path).join("certs.d"), None),
    };
    let files = list_specs(&mut out, config_path, &certs_dir, certs_dir_pos);

    let mut certs = BTreeMap::new();
    // domain → (spec name, file)
    let mut owners: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    let cx = global.as_ref().map(|g| g.0.context());
    for file in &files {
        let (spec, domains) = load_one_spec(&mut out, file, cx.as_ref());
        let name = spec_stem(file);
        let mut dup = false;
        for (dom, pos) in domains {
            match owners.get(&dom) {
                Some((other, other_file)) => {
                    dup = true;
                    out.push(Diagnostic::error(
                        file,
                        Some(pos),
                        format!(
                            "`domains`: `{dom}` is already in spec `{other}` ({}); a name may belong to only one certificate",
                            other_file.display()
                        ),
                    ));
                }
                None => {
                    owners.insert(dom, (name.clone(), file.clone()));
                }
            }
        }
        if let (Some(spec), false) = (spec, dup) {
            certs.insert(spec.name.clone(), std::sync::Arc::new(spec));
        }
    }
    sort_diags(&mut out);
    match global {
        Some((mut g, _)) if !out.iter().any(Diagnostic::is_error) => {
            g.settings.certs = certs;
            Ok(Loaded {
                settings: g.settings,
                warnings: out,
            })
        }
        _ => Err(ConfigErrors(out)),
    }
}

/// Load and check the global file only (no specs).
pub fn load_global(config_path: &Path) -> Result<Global, ConfigErrors> {
    let mut out = Vec::new();
    let global = load_global_into(&mut out, config_path);
    sort_diags(&mut out);
    match global {
        Some((mut g, _)) if !out.iter().any(Diagnostic::is_error) => {
            g.warnings = out;
            Ok(g)
        }
        _ => Err(ConfigErrors(out)),
    }
}

/// Reload one spec (the certs_dir watcher). `defaults` are read again from `settings.config_path`;
/// accounts and DNS servers are those of `settings`; domains are checked against the other specs
/// in `settings.certs` (if it has any).
pub fn load_spec(settings_without_certs: &Settings, path: &Path) -> Result<CertSpec, ConfigErrors> {
    let s = settings_without_certs;
    let mut out = Vec::new();
    let accounts: BTreeSet<String> = s.accounts.keys().cloned().collect();
    let dns: BTreeSet<String> = s.dns_servers.keys().cloned().collect();
    let mut defaults = PartialSpec::default();
    if let Some(text) = read_text(&mut out, &s.config_path, FileKind::Global) {
        match raw::parse(&s.config_path, &text) {
            Ok(root) => {
                if let raw::Kind::Map(entries) = &root.kind {
                    let def = entries.iter().find(|(k, v)| {
                        k.scalar_text().as_deref() == Some("defaults") && !v.is_null()
                    });
                    if let Some((_, node)) = def {
                        let mut d = Diags {
                            file: &s.config_path,
                            out: &mut out,
                        };
                        defaults = validate::partial_spec(&mut d, node, "defaults", true);
                        validate::check_refs(&mut d, &defaults, &accounts, &dns, "defaults.");
                    }
                }
            }
            Err(e) => out.push(e),
        }
    }
    if out.iter().any(Diagnostic::is_error) {
        sort_diags(&mut out);
        return Err(ConfigErrors(out));
    }
    let keyless_dns = validate::keyless_dns(s);
    let cx = SpecContext {
        config_path: &s.config_path,
        defaults: &defaults,
        accounts: &accounts,
        dns: &dns,
        keyless_dns: &keyless_dns,
    };
    let (spec, domains) = load_one_spec(&mut out, path, Some(&cx));
    if let Some(spec) = &spec {
        let owners = DomainOwners::of(&s.certs);
        check_against_others(&mut out, path, spec, &domains, &owners, &s.certs);
    }
    finish(out, spec)
}

/// Where `key` of `spec` is set: the spec file's own top-level key, else `defaults.KEY` in the global file
/// `config_path` (for diagnostics about a value that is valid YAML but does not fit, found later).
pub fn spec_key_position(spec: &CertSpec, config_path: &Path, key: &str) -> (PathBuf, Option<Pos>) {
    let find = |path: &Path, under: Option<&str>| -> Option<Pos> {
        let text = crate::fsread::read_text_capped(path, crate::fsread::TEXT_MAX).ok()?;
        let root = raw::parse(path, &text).ok()?;
        let map = match under {
            None => root,
            Some(section) => map_entry(&root, section)?.clone(),
        };
        map_entry_key(&map, key).map(|k| k.pos)
    };
    if let Some(pos) = find(&spec.file, None) {
        return (spec.file.clone(), Some(pos));
    }
    match find(config_path, Some("defaults")) {
        Some(pos) => (config_path.to_path_buf(), Some(pos)),
        None => (spec.file.clone(), None),
    }
}

fn map_entry_key<'a>(node: &'a raw::Node, key: &str) -> Option<&'a raw::Node> {
    match &node.kind {
        raw::Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.scalar_text().as_deref() == Some(key))
            .map(|(k, _)| k),
        _ => None,
    }
}

fn map_entry<'a>(node: &'a raw::Node, key: &str) -> Option<&'a raw::Node> {
    match &node.kind {
        raw::Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.scalar_text().as_deref() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The spec files of `certs_dir`, as `load` reads them: `*.yaml`, no dotfiles, sorted.
pub fn spec_files(certs_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(certs_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".yaml") {
            continue;
        }
        if entry.path().is_file() {
            v.push(entry.path());
        }
    }
    v.sort();
    Ok(v)
}

// ---------------------------------------------------------------- internals

/// Order diagnostics by file (in the order files were first mentioned), then by position, and keep at
/// most [`MAX_DIAGS_PER_FILE`] of each file, followed by one [`Diagnostic::summary`] line for the rest.
fn sort_diags(out: &mut Vec<Diagnostic>) {
    let mut order: HashMap<PathBuf, usize> = HashMap::new();
    for d in out.iter() {
        let next = order.len();
        order.entry(d.file.clone()).or_insert(next);
    }
    // Stable: diagnostics at one position keep the order they were found in.
    out.sort_by_cached_key(|d| (order[&d.file], d.line.unwrap_or(0), d.col.unwrap_or(0)));
    let all = std::mem::take(out);
    let mut shown = 0;
    let (mut errors, mut warnings) = (0, 0);
    let mut iter = all.into_iter().peekable();
    while let Some(d) = iter.next() {
        let last_of_file = iter.peek().is_none_or(|n| n.file != d.file);
        let file = last_of_file.then(|| d.file.clone());
        if shown < MAX_DIAGS_PER_FILE {
            shown += 1;
            out.push(d);
        } else if d.is_error() {
            errors += 1;
        } else {
            warnings += 1;
        }
        if let Some(file) = file {
            if errors + warnings > 0 {
                out.push(Diagnostic::summary(&file, errors, warnings));
            }
            shown = 0;
            (errors, warnings) = (0, 0);
        }
    }
}

fn finish(mut out: Vec<Diagnostic>, spec: Option<CertSpec>) -> Result<CertSpec, ConfigErrors> {
    sort_diags(&mut out);
    match spec {
        Some(s) if !out.iter().any(Diagnostic::is_error) => Ok(s),
        _ => Err(ConfigErrors(out)),
    }
}

fn check_against_others(
    out: &mut Vec<Diagnostic>,
    path: &Path,
    spec: &CertSpec,
    domains: &[(String, Pos)],
    owners: &DomainOwners,
    others: &BTreeMap<String, std::sync::Arc<CertSpec>>,
) {
    for (dom, pos) in domains {
        if let Some(other) = owners
            .first_other(dom, &spec.name)
            .and_then(|n| others.get(n))
        {
            out.push(Diagnostic::error(
                path,
                Some(*pos),
                format!(
                    "`domains`: `{dom}` is already in spec `{}` ({}); a name may belong to only one certificate",
                    other.name,
                    other.file.display()
                ),
            ));
        }
    }
}

/// Which specs hold each domain: what [`Global::load_spec_among`] checks a new spec's domains against.
#[derive(Debug, Default)]
pub struct DomainOwners(HashMap<String, Vec<String>>);

impl DomainOwners {
    /// The owners of every domain of `certs`.
    pub fn of(certs: &BTreeMap<String, std::sync::Arc<CertSpec>>) -> DomainOwners {
        let mut owners = DomainOwners::default();
        for spec in certs.values() {
            owners.add(spec);
        }
        owners
    }

    /// `spec`'s domains belong to it too.
    pub fn add(&mut self, spec: &CertSpec) {
        for dom in &spec.domains {
            self.0
                .entry(dom.clone())
                .or_default()
                .push(spec.name.clone());
        }
    }

    /// The first (by name) spec other than `name` that holds `domain`.
    fn first_other(&self, domain: &str, name: &str) -> Option<&str> {
        self.0
            .get(domain)?
            .iter()
            .filter(|n| n.as_str() != name)
            .min()
            .map(String::as_str)
    }
}

/// The config file's directory, absolute (relative paths in the config are taken from there).
fn base_dir(config_path: &Path) -> PathBuf {
    let abs = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    abs.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The text of a configuration file (a regular file of at most [`fsread::TEXT_MAX`] bytes, UTF-8).
fn read_text(out: &mut Vec<Diagnostic>, path: &Path, kind: FileKind) -> Option<String> {
    let what = kind.what();
    let (pos, message) = match fsread::read_text_capped(path, fsread::TEXT_MAX) {
        Ok(s) => return Some(s),
        Err(ReadError::Io(e)) => (None, format!("cannot read the {what}: {e}")),
        Err(ReadError::NotUtf8 { line, col }) => (
            Some(Pos { line, col }),
            format!("the {what} is not UTF-8 text (an invalid byte here); save it as UTF-8"),
        ),
        Err(e) => (None, format!("the {what} {e}: {}", kind.about())),
    };
    out.push(Diagnostic::error(path, pos, message));
    None
}

/// Global settings plus where `certs_dir` was set; `None` when the file could not be read or parsed.
fn load_global_into(
    out: &mut Vec<Diagnostic>,
    config_path: &Path,
) -> Option<(Global, Option<Pos>)> {
    let text = read_text(out, config_path, FileKind::Global)?;
    let root = match raw::parse(config_path, &text) {
        Ok(r) => r,
        Err(e) => {
            out.push(e);
            return None;
        }
    };
    let base = base_dir(config_path);
    let mut d = Diags {
        file: config_path,
        out,
    };
    let g = validate::global(&mut d, config_path, &base, &root);
    Some((
        Global {
            keyless_dns: validate::keyless_dns(&g.settings),
            settings: g.settings,
            warnings: Vec::new(),
            defaults: g.defaults,
            account_names: g.account_names,
            dns_names: g.dns_names,
        },
        g.certs_dir_pos,
    ))
}

fn list_specs(
    out: &mut Vec<Diagnostic>,
    config_path: &Path,
    certs_dir: &Path,
    certs_dir_pos: Option<Pos>,
) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(certs_dir) {
        Ok(e) => e,
        Err(e) => {
            let how = if certs_dir_pos.is_some() {
                "fix `certs_dir`, or create the directory"
            } else {
                "create it (the default is certs.d next to the global file) or set `certs_dir:`"
            };
            out.push(Diagnostic::error(
                config_path,
                certs_dir_pos,
                format!(
                    "cannot read certs_dir {}: {e}; {how}, and put one NAME.yaml per certificate in it",
                    certs_dir.display()
                ),
            ));
            return Vec::new();
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".yml") {
            out.push(Diagnostic::warning(
                &path,
                None,
                format!("ignored: spec files must end in `.yaml`; rename it to {stem}.yaml"),
            ));
            continue;
        }
        if !name.ends_with(".yaml") {
            continue;
        }
        if !path.is_file() {
            out.push(Diagnostic::warning(
                &path,
                None,
                "ignored: not a regular file",
            ));
            continue;
        }
        files.push(path);
    }
    files.sort();
    if files.is_empty() {
        out.push(Diagnostic::warning(
            config_path,
            certs_dir_pos,
            format!(
                "no certificate specs in {}: add one NAME.yaml per certificate (e.g. `domains: [host.example.org]`)",
                certs_dir.display()
            ),
        ));
    }
    files
}

fn spec_stem(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default()
        .trim_end_matches(".yaml")
        .to_string()
}

/// One spec file. Without a context (global file unusable) only the spec's own keys are checked.
/// Returns the spec (if valid) and the domains it lists (with positions) for the duplicate check.
fn load_one_spec(
    out: &mut Vec<Diagnostic>,
    path: &Path,
    cx: Option<&SpecContext>,
) -> (Option<CertSpec>, Vec<(String, Pos)>) {
    let name = spec_stem(path);
    let mut name_ok = true;
    if !validate::spec_name_ok(&name) {
        name_ok = false;
        out.push(Diagnostic::error(
            path,
            None,
            format!(
                "`{name}` is not a valid spec name: the file name (without .yaml) is the certificate's name and must match \
                 [a-z0-9][a-z0-9._-]* (lower-case letters, digits, `.`, `_`, `-`); rename the file, e.g. to {}.yaml",
                suggest_name(&name)
            ),
        ));
    }
    let Some(text) = read_text(out, path, FileKind::Spec) else {
        return (None, Vec::new());
    };
    let root = match raw::parse(path, &text) {
        Ok(r) => r,
        Err(e) => {
            out.push(e);
            return (None, Vec::new());
        }
    };
    let mut d = Diags { file: path, out };
    if root.is_null() {
        d.err(
            None,
            "the spec is empty: it needs at least `domains: [host.example.org]`",
        );
        return (None, Vec::new());
    }
    let partial = validate::partial_spec(&mut d, &root, "", false);
    let domains = partial.domains.clone().unwrap_or_default();
    let spec = match cx {
        Some(cx) => validate::finish_spec(&mut d, &name, path, partial, cx),
        None => None,
    };
    (spec.filter(|_| name_ok), domains)
}

fn suggest_name(name: &str) -> String {
    spec_name(name, "mycert")
}

/// A valid certificate name (`[a-z0-9][a-z0-9._-]*`) made from `s` (lower-cased, other characters
/// replaced by `-`, leading punctuation dropped), or `fallback` when nothing is left.
pub fn spec_name(s: &str, fallback: &str) -> String {
    let mut n: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while n.starts_with(['.', '_', '-']) {
        n.remove(0);
    }
    if n.is_empty() {
        fallback.into()
    } else {
        n
    }
}
