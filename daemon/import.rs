//! `renewd import certbot [DIR] [--write]`: turn a certbot `--dns-rfc2136` deployment into renewd's
//! configuration, and make certbot's current certificates renewd's live ones (nothing is reissued).
//!
//! What is read (certbot's own layout under DIR, default `/etc/letsencrypt`):
//! - `renewal/NAME.conf` (ConfigObj): the top-level `cert`/`privkey`/`chain`/`fullchain` paths and
//!   `[renewalparams]` (`authenticator`, `dns_rfc2136_credentials`, `dns_rfc2136_propagation_seconds`,
//!   `key_type`, `rsa_key_size`, `elliptic_curve`, `server`, `account`, `installer`, `renew_hook`,
//!   `pre_hook`, `post_hook`, `config_dir`, ...);
//! - the credentials ini each conf names (`dns_rfc2136_server`, `_port`, `_name`, `_secret`, `_algorithm`);
//! - `renewal-hooks/{pre,deploy,post}/*` (certbot's `list_hooks`: executable files, not ending in `~`,
//!   in name order);
//! - `accounts/<server host/path>/<id>/regr.json` (the contact addresses).
//!
//! DIR may be a copy of certbot's tree anywhere (a backup, another machine's tree): the confs name absolute
//! paths under the directory certbot ran with (`config_dir`, or what comes before `/live/` in `cert`). A
//! path that is not there but is at the same place under DIR is read from DIR, and the output says which
//! root was read from which (`tree`). Hooks are converted in `hooks`.
//!
//! What is produced: the global file (one `accounts:` entry per `server`, named after the CA's host; one
//! `dns_servers:` entry per distinct credentials ini, with certbot-dns-rfc2136's TTL), one
//! `certs.d/NAME.yaml` per certificate (domains from the certificate: CN first, then the other SANs), a
//! BIND key file per DNS server (0600), a copy of every hook that lives in certbot's tree under `hooks/`
//! (mode kept; the specs name the copies, so they survive DIR) and, with `--write`, the certificates
//! installed into `state_dir` with [`StateDir::install`].
//!
//! Hooks keep certbot's meaning where renewd can express it (certbot/_internal/hooks.py):
//! - deploy: `renewal-hooks/deploy/*` then the lineage's `renew_hook` (`--deploy-hook`), which is skipped
//!   when it is, as a string, one of the directory's hooks (certbot runs it once): the spec's `hooks:`;
//! - post: `renewal-hooks/post/*` then the lineage's `post_hook` (same rule). certbot runs them once at the
//!   end of a `certbot renew` that attempted a renewal; renewd has no such hook, so they become deploy-time
//!   hooks after the deploy hooks, and the output says how that differs;
//! - pre: renewd runs nothing before a renewal attempt: not converted, and said so.
//!
//! `trust:` comes only from `--trust`: certbot's configuration has no such setting (it used the
//! environment's `REQUESTS_CA_BUNDLE`, which the import mentions but does not take: the importing
//! shell's environment is not certbot's configuration).
//!
//! The ACME account is **not** carried over: instant-acme signs with ECDSA P-256 account keys only, and
//! certbot's account keys are RSA. renewd registers a new account on its first renewal, with EAB when the
//! CA requires it; certbot stores neither the EAB key id nor the HMAC key, so the user passes `--eab-kid`
//! and puts the HMAC key into the file the import names. Secrets are never printed: the dry run shows
//! key files (and copied hooks) by name only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::certs;
use crate::config::{self, ConfigErrors, Diagnostic};
use crate::fsread::{self, ReadError, SECRET_MAX, TEXT_MAX};
use crate::state::{self, CertFiles, StateDir};

mod hooks;
mod tree;

use hooks::{DirHooks, HookCopy, Hooks};
use tree::{Found, Reads, Tree};

/// Where `renewd import certbot` reads and writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// certbot's configuration directory (`/etc/letsencrypt`).
    pub certbot_dir: PathBuf,
    /// renewd's global file to write; specs and secrets go next to it.
    pub config: PathBuf,
    /// `state_dir:` of the new configuration (default `/var/lib/renewd`).
    pub state_dir: Option<PathBuf>,
    /// The CA's EAB key id (certbot does not store it).
    pub eab_kid: Option<String>,
    /// Extra roots for the ACME server's TLS (`trust:`), as the user gives them: certbot's configuration
    /// has no such setting.
    pub trust: Option<PathBuf>,
    /// The importing shell's `REQUESTS_CA_BUNDLE`: never used as `trust:`, only mentioned.
    pub env_ca_bundle: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}", read_problem(path, source))]
    Read { path: PathBuf, source: ReadError },
    #[error("cannot read {}: {source}", path.display())]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}{}", path.display(), removed_note(removed))]
    Write {
        path: PathBuf,
        source: io::Error,
        /// Files this run had already written, removed again.
        removed: Vec<PathBuf>,
    },
    #[error("the configuration the import would write does not pass `renewd check`; nothing was written:\n{0}")]
    Invalid(ConfigErrors),
    #[error("{} has no renewal/*.conf: is it certbot's configuration directory (--config-dir)?", .0.display())]
    NoRenewalConfs(PathBuf),
    #[error("nothing could be converted (see above); nothing was written")]
    NothingConverted,
    #[error("refusing to overwrite existing files (move them away, or import into another directory with --config):\n{}",
        .0.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n"))]
    Exists(Vec<PathBuf>),
    #[error("cannot check the configuration before writing it (staging directory): {source}")]
    Stage { source: io::Error },
    #[error("installing certificate `{name}` into {}: {source}", state.display())]
    Install {
        name: String,
        state: PathBuf,
        source: io::Error,
    },
}

/// "cannot read PATH: why", or "PATH is a named pipe (FIFO), not a regular file".
fn read_problem(path: &Path, e: &ReadError) -> String {
    match e {
        ReadError::Io(e) => format!("cannot read {}: {e}", path.display()),
        other => format!("{} {other}", path.display()),
    }
}

fn removed_note(removed: &[PathBuf]) -> String {
    if removed.is_empty() {
        return String::new();
    }
    let list: Vec<String> = removed
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect();
    format!(
        "\nthe files this run had written were removed again:\n{}",
        list.join("\n")
    )
}

/// One file the import writes.
#[derive(Clone)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub mode: u32,
    contents: Vec<u8>,
    shown: Shown,
}

/// How the dry run shows a planned file.
#[derive(Clone, Debug)]
enum Shown {
    Text,
    /// Holds a secret: the summary instead of the contents, and a private directory.
    Secret(String),
    /// A copy of this hook from certbot's tree: named, not shown.
    Copy(PathBuf),
}

impl std::fmt::Debug for PlannedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("shown", &self.shown)
            .finish()
    }
}

impl PlannedFile {
    fn text(path: PathBuf, contents: String) -> PlannedFile {
        PlannedFile {
            path,
            mode: 0o644,
            contents: contents.into_bytes(),
            shown: Shown::Text,
        }
    }

    /// The contents, unless it holds a secret or is a copied hook.
    pub fn shown_text(&self) -> Option<&str> {
        match self.shown {
            Shown::Text => std::str::from_utf8(&self.contents).ok(),
            Shown::Secret(_) | Shown::Copy(_) => None,
        }
    }

    fn secret(&self) -> bool {
        matches!(self.shown, Shown::Secret(_))
    }
}

/// One certbot certificate that becomes renewd's live one.
#[derive(Debug, Clone)]
pub struct Install {
    pub name: String,
    pub version: String,
    pub serial: String,
    pub not_after: SystemTime,
    pub source: PathBuf,
    files: CertFiles,
}

/// Everything the import would do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub files: Vec<PlannedFile>,
    pub state_dir: PathBuf,
    pub installs: Vec<Install>,
    /// `what: why` for each thing left out.
    pub not_converted: Vec<String>,
    /// Things converted into something that behaves differently (certbot's post-hooks).
    pub changed: Vec<String>,
    /// Things the user must do before `renewd check` passes / before switching.
    pub todo: Vec<String>,
    /// How renewd behaves differently (propagation check instead of a sleep, hook environment, ...).
    pub notes: Vec<String>,
    /// What `files` were rendered from (None when nothing was converted).
    conversion: Option<Conversion>,
}

// ---------------------------------------------------------------- ConfigObj / ini

/// A ConfigObj file as certbot writes it: `key = value` lines, `[section]` headers, `#` comments,
/// values optionally quoted. Top-level keys are in section "".
#[derive(Debug, Default, Clone)]
pub struct ConfigObj {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl ConfigObj {
    pub fn parse(text: &str) -> ConfigObj {
        let mut c = ConfigObj::default();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line
                    .trim_matches(|ch| ch == '[' || ch == ']')
                    .trim()
                    .to_string();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            c.sections
                .entry(section.clone())
                .or_default()
                .insert(k.trim().to_string(), unquote(v.trim()));
        }
        c
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .get(section)
            .and_then(|s| s.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty() && *v != "None")
    }
}

/// A ConfigObj value: `"a"`, `'a'` or `a  # comment`.
fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q) {
            if let Some(end) = rest.find(q) {
                return rest[..end].to_string();
            }
        }
    }
    match v.find(" #") {
        Some(i) => v[..i].trim_end().to_string(),
        None => v.to_string(),
    }
}

// ---------------------------------------------------------------- planning

/// The TTL certbot-dns-rfc2136 gives its TXT records (a class constant, not configurable in certbot 2.x).
const CERTBOT_RFC2136_TTL: u32 = 120;

#[derive(Clone, PartialEq, Eq)]
struct DnsEntry {
    name: String,
    address: String,
    key_name: String,
    algorithm: &'static str,
    secret: String,
    ini: PathBuf,
}

impl std::fmt::Debug for DnsEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsEntry")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("key_name", &self.key_name)
            .field("ini", &self.ini)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct AccountEntry {
    name: String,
    directory: String,
    contact: Vec<String>,
}

/// Where the files go: the global file, and `secrets/`, `certs.d/` and `hooks/` beside it.
#[derive(Debug, Clone)]
struct Layout {
    config: PathBuf,
    secrets: PathBuf,
    certs_d: PathBuf,
    /// Copies of the hooks that lived in certbot's tree.
    hooks: PathBuf,
}

impl Layout {
    /// Around `config` (`--config`); a relative directory is made absolute, as the loader resolves it.
    fn around(config: &Path) -> Layout {
        let dir = config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Layout {
            config: config.to_path_buf(),
            secrets: dir.join("secrets"),
            certs_d: dir.join("certs.d"),
            hooks: dir.join("hooks"),
        }
    }

    fn eab_file(&self, account: &str) -> PathBuf {
        self.secrets.join(format!("{account}.eab"))
    }

    fn key_file(&self, dns: &str) -> PathBuf {
        self.secrets.join(format!("{dns}.key"))
    }
}

/// What certbot's configuration converts to, before it is rendered into files. Kept in the [`Plan`] so
/// the same files can be rendered into a staging directory and checked by the loader before `--write`.
#[derive(Debug, Clone)]
struct Conversion {
    /// DIR, absolute.
    certbot_dir: PathBuf,
    state_dir: PathBuf,
    eab_kid: Option<String>,
    trust: Option<PathBuf>,
    /// The importing shell's REQUESTS_CA_BUNDLE (mentioned, never used).
    env_ca_bundle: Option<PathBuf>,
    accounts: Vec<AccountEntry>,
    dns: Vec<DnsEntry>,
    /// (name, YAML) per certificate.
    specs: Vec<(String, String)>,
    /// Hooks from certbot's tree, copied beside the configuration; the specs name the copies.
    hook_copies: Vec<HookCopy>,
    /// Which of certbot's original directories were read from DIR.
    reads: Reads,
    /// `dns_rfc2136_propagation_seconds` values seen (dropped: renewd checks instead of sleeping).
    propagation_seen: Vec<String>,
}

/// Read certbot's configuration and work out what to write. Reads files only.
pub fn plan(opts: &Options) -> Result<Plan, ImportError> {
    // Absolute: the paths the specs name are used from `/` (hooks) and from the config's directory.
    let cb = absolute_lexical(&opts.certbot_dir);
    let confs = renewal_confs(&cb)?;
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/lib/renewd"));
    let mut p = Plan {
        files: Vec::new(),
        state_dir: state_dir.clone(),
        installs: Vec::new(),
        not_converted: Vec::new(),
        changed: Vec::new(),
        todo: Vec::new(),
        notes: Vec::new(),
        conversion: None,
    };
    let layout = Layout::around(&opts.config);
    let dir_hooks = DirHooks::list(&cb, &mut p)?;
    let mut conv = Conversion {
        certbot_dir: cb.clone(),
        state_dir,
        eab_kid: opts.eab_kid.clone(),
        // Absolute: the loader would take a relative path from the config's directory, not from here.
        trust: opts
            .trust
            .clone()
            .map(|t| std::path::absolute(&t).unwrap_or(t)),
        env_ca_bundle: opts.env_ca_bundle.clone(),
        accounts: Vec::new(),
        dns: Vec::new(),
        specs: Vec::new(),
        hook_copies: Vec::new(),
        reads: Reads::default(),
        propagation_seen: Vec::new(),
    };
    for path in &confs {
        let conf = RenewalConf::read(path)?;
        let tree = Tree::of(&conf.c, &cb);
        if let Err(why) = convert_lineage(&conf, &tree, &dir_hooks, &layout, &mut conv, &mut p) {
            p.not_converted.push(format!("{}: {why}", conf.what));
        }
    }
    if conv.specs.is_empty() {
        return Ok(p);
    }
    conv.notes(&layout, &mut p);
    p.files = conv.files(&layout);
    p.conversion = Some(conv);
    Ok(p)
}

/// `p` made absolute from the working directory, `.` and `..` taken away by name (as the shell's `cd`
/// does), so that it compares with the absolute paths certbot wrote.
fn absolute_lexical(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `renewal/*.conf`, sorted; at least one.
fn renewal_confs(cb: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let renewal_dir = cb.join("renewal");
    let mut confs: Vec<PathBuf> = match fs::read_dir(&renewal_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImportError::NoRenewalConfs(cb.to_path_buf()))
        }
        Err(source) => {
            return Err(ImportError::ReadDir {
                path: renewal_dir,
                source,
            })
        }
    };
    confs.sort();
    if confs.is_empty() {
        return Err(ImportError::NoRenewalConfs(cb.to_path_buf()));
    }
    Ok(confs)
}

/// One lineage's `renewal/NAME.conf`.
struct RenewalConf {
    path: PathBuf,
    c: ConfigObj,
    lineage: String,
    /// "PATH (certificate `NAME`)", the start of every line about it.
    what: String,
}

impl RenewalConf {
    fn read(path: &Path) -> Result<RenewalConf, ImportError> {
        let text =
            fsread::read_text_capped(path, TEXT_MAX).map_err(|source| ImportError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let lineage = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(RenewalConf {
            path: path.to_path_buf(),
            c: ConfigObj::parse(&text),
            what: format!("{} (certificate `{lineage}`)", path.display()),
            lineage,
        })
    }

    /// A value of `[renewalparams]`.
    fn param(&self, key: &str) -> Option<&str> {
        self.c.get("renewalparams", key)
    }

    /// `NAME.conf`.
    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// One renewal conf → a spec, a DNS server, an account and a live certificate to install; or why not.
/// Things the spec cannot express are added to `p.not_converted` and do not stop the conversion.
fn convert_lineage(
    conf: &RenewalConf,
    tree: &Tree,
    dir_hooks: &DirHooks,
    layout: &Layout,
    conv: &mut Conversion,
    p: &mut Plan,
) -> Result<(), String> {
    let rp = |k: &str| conf.param(k);
    check_authenticator(rp("authenticator").unwrap_or("(none)"))?;
    let mut found: Vec<Found> = Vec::new();
    let mut find = |k: &str, path: &Path| -> Result<PathBuf, String> {
        let f = tree.find(path).map_err(|e| format!("`{k}`: {e}"))?;
        let path = f.path().to_path_buf();
        found.push(f);
        Ok(path)
    };
    let ini =
        rp("dns_rfc2136_credentials").ok_or("no `dns_rfc2136_credentials` in [renewalparams]")?;
    let ini = find("dns_rfc2136_credentials", Path::new(ini))?;
    let dns_name = dns_entry(&ini, &mut conv.dns)?;
    let current = current_certificate(&conf.c, &mut find)?;
    for f in &found {
        conv.reads.record(&conf.file_name(), f);
    }
    if let Some(s) = rp("dns_rfc2136_propagation_seconds") {
        conv.propagation_seen.push(s.to_string());
    }
    let key_yaml = key_yaml(&conf.c)?;
    let server = rp("server").ok_or("no `server` (ACME directory URL)")?;
    let account_name = account_entry(
        &conv.certbot_dir,
        server,
        rp("account"),
        &mut conv.accounts,
        p,
    );
    if rp("no_verify_ssl").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        p.todo.push(format!(
            "{}: certbot did not check the TLS certificate of {server} (`no_verify_ssl = True`); renewd always does: \
             import again with `--trust FILE` (the CA's TLS root), or add `trust:` to `accounts.{account_name}`",
            conf.what
        ));
    }

    let name = spec_name(&conf.lineage);
    if conv.specs.iter().any(|(n, _)| *n == name) {
        return Err(format!("a second certificate named `{name}`"));
    }
    let live = conv.state_dir.join("live").join(&name);
    let mut y = format!(
        "# Imported from certbot: {}\n# (certbot's certificate {}: serial {}, expires {})\n",
        conf.path.display(),
        current.path.display(),
        current.facts.serial,
        current.facts.not_after_rfc3339()
    );
    let _ = writeln!(
        y,
        "domains: [{}]",
        current.domains.iter().map(q).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(y, "account: {}", q(&account_name));
    let _ = writeln!(y, "key: {key_yaml}");
    let _ = writeln!(y, "dns: {}", q(&dns_name));
    let _ = writeln!(
        y,
        "# Servers that read {}/{{fullchain,privkey}}.pem: point them at {}/ or add a `deploy:` entry.",
        Path::new(conf.c.get("", "fullchain").unwrap_or(""))
            .parent()
            .unwrap_or(Path::new(""))
            .display(),
        live.display()
    );
    let hooks = Hooks {
        hooks_dir: &layout.hooks,
        copies: &mut conv.hook_copies,
        reads: &mut conv.reads,
    }
    .of_lineage(conf, tree, dir_hooks, p);
    y.push_str(&reload_and_hooks_yaml(conf, &hooks, p));
    unsupported_params(conf, p);
    p.installs.push(current.install(&name));
    conv.specs.push((name, y));
    Ok(())
}

/// Only dns-rfc2136 maps onto renewd.
fn check_authenticator(auth: &str) -> Result<(), String> {
    Err(match auth {
        "dns-rfc2136" => return Ok(()),
        "webroot" | "standalone" | "nginx" | "apache" => format!(
            "authenticator `{auth}` proves control with http-01; renewd uses dns-01 only \
             (RFC 2136 to a hidden primary): set up an `_acme-challenge` zone and write the spec by hand"
        ),
        "manual" => "authenticator `manual` (--manual-auth-hook scripts): renewd publishes TXT records itself \
             with RFC 2136 and has no auth hooks"
            .to_string(),
        other => format!(
            "authenticator `{other}`: renewd only speaks RFC 2136 (certbot's dns-rfc2136 plugin)"
        ),
    })
}

/// A lineage's current certificate: its files, facts, and the names for the spec (CN first).
struct Current {
    path: PathBuf,
    files: CertFiles,
    facts: certs::CertFacts,
    domains: Vec<String>,
}

impl Current {
    /// Installed as version "issue time + serial" of `name`.
    fn install(self, name: &str) -> Install {
        let issued = self
            .facts
            .not_before
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Install {
            name: name.to_string(),
            version: state::version_name(issued, &self.facts.serial),
            serial: self.facts.serial,
            not_after: self.facts.not_after,
            source: self.path,
            files: self.files,
        }
    }
}

/// Read and check the top-level `cert`/`privkey`/`chain`/`fullchain` of a renewal conf, each where
/// `find` says it is now.
fn current_certificate(
    c: &ConfigObj,
    find: &mut impl FnMut(&str, &Path) -> Result<PathBuf, String>,
) -> Result<Current, String> {
    let mut read = |k: &str| -> Result<(PathBuf, String), String> {
        let path = c
            .get("", k)
            .map(PathBuf::from)
            .ok_or_else(|| format!("no `{k}` path at the top of the file"))?;
        let path = find(k, &path)?;
        fsread::read_text_capped(&path, TEXT_MAX)
            .map(|t| (path.clone(), t))
            .map_err(|e| match e {
                ReadError::Io(e) => format!("cannot read {} ({k}): {e}", path.display()),
                other => format!(
                    "{} ({k}) {other}: certbot's {k} is a PEM file",
                    path.display()
                ),
            })
    };
    let (path, cert) = read("cert")?;
    let (_, privkey) = read("privkey")?;
    let (_, chain) = read("chain")?;
    let (_, fullchain) = read("fullchain")?;
    let files = CertFiles {
        cert,
        chain,
        fullchain,
        privkey,
    };
    let facts = certs::pem_certificates(&files.cert)
        .and_then(|ders| certs::facts(&ders[0], 0))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match certs::public_key_of_pem(&files.privkey) {
        Ok(pk) if pk == facts.public_key => {}
        Ok(_) => {
            return Err(format!(
                "the private key does not belong to the certificate {}",
                path.display()
            ))
        }
        Err(e) => return Err(format!("private key: {e}")),
    }
    let mut domains = Vec::new();
    if let Some(cn) = common_name(&facts.subject) {
        if facts.dns_names.contains(&cn) {
            domains.push(cn);
        }
    }
    for d in &facts.dns_names {
        if !domains.contains(d) {
            domains.push(d.clone());
        }
    }
    if domains.is_empty() {
        return Err("the certificate has no DNS names in subjectAltName".into());
    }
    Ok(Current {
        path,
        files,
        facts,
        domains,
    })
}

/// `reload:` from certbot's installer and `hooks:` from its hooks (see [`hooks`]), one argv each.
fn reload_and_hooks_yaml(conf: &RenewalConf, hooks: &hooks::LineageHooks, p: &mut Plan) -> String {
    let (rp, what) = (|k: &str| conf.param(k), &conf.what);
    let mut y = String::new();
    match rp("installer") {
        Some("nginx") => y.push_str("reload:\n  - nginx: {}\n"),
        Some("apache") => y.push_str("reload:\n  - apache: {}\n"),
        Some(other) => p.not_converted.push(format!(
            "{what}: installer `{other}`: renewd does not edit server configurations; add a `reload:` entry"
        )),
        None => {}
    }
    if !hooks.deploy.is_empty() {
        y.push_str(
            "# certbot's hooks (see the import's output): RENEWED_LINEAGE is now the live directory under state_dir.\nhooks:\n",
        );
        hook_list(&mut y, &hooks.deploy);
    }
    for (key, list) in [("pre_hooks", &hooks.pre), ("post_hooks", &hooks.post)] {
        if !list.is_empty() {
            let _ = writeln!(y, "{key}:");
            hook_list(&mut y, list);
        }
    }
    y
}

fn hook_list(y: &mut String, hooks: &[Vec<String>]) {
    for argv in hooks {
        // A lone path is written as a string; anything else (a path with a space too: as a plain string
        // the loader would take it for a command line) as an argv list.
        match argv.as_slice() {
            [prog] if !prog.contains(char::is_whitespace) => {
                let _ = writeln!(y, "  - {}", q(prog));
            }
            _ => {
                let _ = writeln!(
                    y,
                    "  - [{}]",
                    argv.iter().map(q).collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
}

/// certbot options renewd does not have: each one set is listed as not converted.
fn unsupported_params(conf: &RenewalConf, p: &mut Plan) {
    let (rp, what) = (|k: &str| conf.param(k), &conf.what);
    for (k, why) in [
        ("preferred_chain", "renewd takes the CA's default chain"),
        ("must_staple", "renewd does not request OCSP must-staple"),
    ] {
        if let Some(v) = rp(k) {
            if k != "must_staple" || v.eq_ignore_ascii_case("true") {
                p.not_converted.push(format!("{what}: `{k} = {v}`: {why}"));
            }
        }
    }
    if rp("reuse_key").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        p.not_converted.push(format!(
            "{what}: `reuse_key = True`: renewd generates a new key for every certificate"
        ));
    }
}

impl Conversion {
    /// The files, laid out by `layout`: the global file, one BIND key file per DNS server, one spec
    /// per certificate, one copy per hook from certbot's tree.
    fn files(&self, layout: &Layout) -> Vec<PlannedFile> {
        let mut files = vec![PlannedFile::text(
            layout.config.clone(),
            self.global_yaml(layout),
        )];
        for d in &self.dns {
            files.push(PlannedFile {
                path: layout.key_file(&d.name),
                mode: 0o600,
                contents: format!(
                    "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
                    d.key_name, d.algorithm, d.secret
                )
                .into_bytes(),
                shown: Shown::Secret(format!(
                    "BIND key \"{}\" ({}), secret from {}",
                    d.key_name,
                    d.algorithm,
                    d.ini.display()
                )),
            });
        }
        for (name, y) in &self.specs {
            files.push(PlannedFile::text(
                layout.certs_d.join(format!("{name}.yaml")),
                y.clone(),
            ));
        }
        for h in &self.hook_copies {
            files.push(PlannedFile {
                path: layout.hooks.join(&h.rel),
                mode: h.mode,
                contents: h.bytes.clone(),
                shown: Shown::Copy(h.source.clone()),
            });
        }
        files
    }

    /// renewd.yaml: the state directory, one account per ACME server, one DNS server per credentials ini.
    fn global_yaml(&self, layout: &Layout) -> String {
        let mut g = format!(
            "# Written by `renewd import certbot {}`.\nstate_dir: {}\naccounts:\n",
            self.certbot_dir.display(),
            qp(&self.state_dir)
        );
        for a in &self.accounts {
            let _ = writeln!(g, "  {}:\n    directory: {}", a.name, q(&a.directory));
            if !a.contact.is_empty() {
                let _ = writeln!(
                    g,
                    "    contact: [{}]",
                    a.contact.iter().map(q).collect::<Vec<_>>().join(", ")
                );
            }
            if let Some(kid) = &self.eab_kid {
                let _ = writeln!(
                    g,
                    "    eab: {{ kid: {}, hmac_key_file: {} }}",
                    q(kid),
                    qp(&layout.eab_file(&a.name))
                );
            }
            if let Some(t) = &self.trust {
                let _ = writeln!(g, "    trust: {}", qp(t));
            }
        }
        g.push_str("dns_servers:\n");
        for d in &self.dns {
            // certbot-dns-rfc2136 publishes its TXT records with a fixed TTL of 120 (`Authenticator.ttl`).
            let _ = writeln!(
                g,
                "  {}:\n    address: {}\n    tsig_key_file: {}\n    ttl: {CERTBOT_RFC2136_TTL}",
                d.name,
                q(&d.address),
                qp(&layout.key_file(&d.name))
            );
        }
        g
    }

    /// What the user must do (EAB key files) and how renewd differs (EAB, trust, propagation).
    fn notes(&self, layout: &Layout, p: &mut Plan) {
        if self.eab_kid.is_some() {
            for a in &self.accounts {
                p.todo.push(format!(
                    "certbot does not store the EAB HMAC key: put the key your CA gave you (base64url, one line) into {} \
                     and `chmod 600` it; renewd registers a new account with it on its first renewal",
                    layout.eab_file(&a.name).display()
                ));
            }
        } else {
            p.notes.push(
                "certbot stores neither the EAB key id nor the HMAC key: if your CA requires External Account Binding \
                 (SECOM, ZeroSSL, ...), import again with `--eab-kid KID`, or add `eab: { kid: KID, hmac_key_file: FILE }` \
                 to the account"
                    .into(),
            );
        }
        match (&self.trust, &self.env_ca_bundle) {
            (Some(t), _) => p.notes.push(format!(
                "the ACME server's TLS is checked against {} in addition to the system roots (`trust:`, from --trust)",
                t.display()
            )),
            (None, Some(env)) => p.notes.push(format!(
                "REQUESTS_CA_BUNDLE is set in this shell ({}): not taken as `trust:` (it is this shell's setting, not \
                 certbot's configuration); if the CA's TLS certificate needs it, import again with `--trust {}`",
                env.display(),
                env.display()
            )),
            (None, None) => {}
        }
        // First: where the files were read from is what a reader of a copy's import needs to see.
        p.notes.splice(0..0, self.reads.lines(&self.certbot_dir));
        if !self.hook_copies.is_empty() {
            p.notes.push(format!(
                "hooks from certbot's directory are copied to {}/ (mode kept; --write copies them) and the specs name \
                 the copies, so they stay when {} goes: {}",
                layout.hooks.display(),
                self.certbot_dir.display(),
                self.hook_copies
                    .iter()
                    .map(|h| h.source.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.propagation_seen.is_empty() {
            let mut seen = self.propagation_seen.clone();
            seen.sort();
            seen.dedup();
            p.notes.push(format!(
                "dns_rfc2136_propagation_seconds ({}): dropped; renewd waits until every authoritative server serves \
                 the TXT record (at most `propagation.timeout`, default 5m) instead of sleeping",
                seen.join(", ")
            ));
        }
    }
}

/// The `dns_servers` entry for a credentials ini (one per distinct server + key); its name.
fn dns_entry(ini: &Path, dns: &mut Vec<DnsEntry>) -> Result<String, String> {
    let text = fsread::read_text_capped(ini, TEXT_MAX).map_err(|e| match e {
        ReadError::Io(e) => format!("cannot read the credentials file {}: {e}", ini.display()),
        other => format!(
            "the credentials file {} {other}: `dns_rfc2136_credentials` names certbot's rfc2136.ini, \
             a few `dns_rfc2136_*` lines",
            ini.display()
        ),
    })?;
    let c = ConfigObj::parse(&text);
    let get = |k: &str| {
        c.get("", k)
            .ok_or_else(|| format!("{}: no `{k}`", ini.display()))
    };
    let server = get("dns_rfc2136_server")?;
    let port = c.get("", "dns_rfc2136_port").unwrap_or("53");
    let key_name = get("dns_rfc2136_name")?.trim_end_matches('.').to_string();
    let secret = get("dns_rfc2136_secret")?.to_string();
    // certbot's default algorithm is HMAC-MD5.
    let algorithm = tsig_algorithm(
        c.get("", "dns_rfc2136_algorithm").unwrap_or("HMAC-MD5"),
        ini,
        &key_name,
    )?;
    if crate::config::parse_tsig_keys(
        ini,
        &format!("key \"{key_name}\" {{ algorithm {algorithm}; secret \"{secret}\"; }};"),
    )
    .is_err()
    {
        return Err(format!(
            "{}: `dns_rfc2136_secret` is not valid base64, or `dns_rfc2136_name` is not a valid key name",
            ini.display()
        ));
    }
    let port: u16 = port.parse().map_err(|_| {
        format!(
            "{}: `dns_rfc2136_port` `{port}` is not a port",
            ini.display()
        )
    })?;
    let address = if server.contains(':') {
        format!("[{server}]:{port}")
    } else {
        format!("{server}:{port}")
    };
    let stem = ini
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rfc2136".into());
    let mut entry = DnsEntry {
        name: spec_name(&stem),
        address,
        key_name,
        algorithm,
        secret,
        ini: ini.to_path_buf(),
    };
    if let Some(e) = dns.iter().find(|e| {
        e.address == entry.address
            && e.key_name == entry.key_name
            && e.secret == entry.secret
            && e.algorithm == entry.algorithm
    }) {
        return Ok(e.name.clone());
    }
    let base = entry.name.clone();
    let mut n = 2;
    while dns.iter().any(|e| e.name == entry.name) {
        entry.name = format!("{base}-{n}");
        n += 1;
    }
    let name = entry.name.clone();
    dns.push(entry);
    Ok(name)
}

/// renewd's name of certbot's `dns_rfc2136_algorithm`, if renewd signs with it.
fn tsig_algorithm(alg: &str, ini: &Path, key_name: &str) -> Result<&'static str, String> {
    match alg.trim_end_matches('.').to_ascii_lowercase().as_str() {
        "hmac-sha256" => Ok("hmac-sha256"),
        "hmac-sha384" => Ok("hmac-sha384"),
        "hmac-sha512" => Ok("hmac-sha512"),
        other => Err(format!(
            "{}: TSIG algorithm {other} is not supported (renewd signs with hmac-sha256/384/512): \
             make a new key with `tsig-keygen -a hmac-sha256 {key_name}`, grant it in the zone's update-policy, \
             and import again",
            ini.display()
        )),
    }
}

/// `key:` of a spec from `key_type` / `rsa_key_size` / `elliptic_curve`.
fn key_yaml(c: &ConfigObj) -> Result<String, String> {
    let rp = |k: &str| c.get("renewalparams", k);
    // Before certbot 2.0 there was no key_type and keys were RSA.
    match rp("key_type")
        .unwrap_or("rsa")
        .to_ascii_lowercase()
        .as_str()
    {
        "rsa" => {
            let bits = rp("rsa_key_size").unwrap_or("2048");
            match bits {
                "2048" | "3072" | "4096" => Ok(format!("{{ type: rsa, bits: {bits} }}")),
                _ => Err(format!(
                    "rsa_key_size {bits}: renewd makes RSA keys of 2048, 3072 or 4096 bits"
                )),
            }
        }
        "ecdsa" => match rp("elliptic_curve").unwrap_or("secp256r1") {
            "secp256r1" => Ok("{ type: ecdsa, curve: p256 }".into()),
            "secp384r1" => Ok("{ type: ecdsa, curve: p384 }".into()),
            other => Err(format!(
                "elliptic_curve {other}: renewd makes ECDSA keys on P-256 or P-384"
            )),
        },
        other => Err(format!("key_type `{other}` is not rsa or ecdsa")),
    }
}

/// The `accounts` entry for `server`; its name.
fn account_entry(
    cb: &Path,
    server: &str,
    account_id: Option<&str>,
    accounts: &mut Vec<AccountEntry>,
    p: &mut Plan,
) -> String {
    if let Some(a) = accounts.iter().find(|a| a.directory == server) {
        return a.name.clone();
    }
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let base = account_name(server);
    let mut name = base.clone();
    let mut n = 2;
    while accounts.iter().any(|a| a.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    // certbot keeps accounts under accounts/<host[:port]><path>/<id>/.
    let (contact, key_kind) = match account_id {
        Some(id) => {
            let adir = cb
                .join("accounts")
                .join(rest.trim_end_matches('/'))
                .join(id);
            certbot_account(&adir, id, p)
        }
        None => (Vec::new(), None),
    };
    if contact.is_empty() {
        p.todo.push(format!(
            "certbot does not keep the account's e-mail address locally: add `contact: [\"mailto:you@example.org\"]` \
             to `accounts.{name}` if you want the CA's notices"
        ));
    }
    p.notes.push(format!(
        "certbot's ACME account{} is not reused: renewd (instant-acme) signs with ECDSA P-256 account keys in its own \
         format, and certbot's key is {}; renewd registers a new account for `accounts.{name}` on its first renewal \
         (certificates already issued stay valid)",
        account_id.map(|i| format!(" {i}")).unwrap_or_default(),
        key_kind.as_deref().unwrap_or("unknown")
    ));
    accounts.push(AccountEntry {
        name: name.clone(),
        directory: server.to_string(),
        contact,
    });
    name
}

/// A readable account name from the ACME directory URL's host: a few public CAs by name
/// (`letsencrypt`, `letsencrypt-staging`, ...), any other host with its dots as dashes
/// (`ca.example.test` → `ca-example-test`), an IP literal as `ca-` and its digits
/// (`127.0.0.1` → `ca-127-0-0-1`). The port is left out.
fn account_name(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    }
    .trim_end_matches('.')
    .to_ascii_lowercase();
    let dashed = |s: &str| -> String {
        let mut out = String::new();
        for c in s.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        out.trim_matches('-').to_string()
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return spec_name(&format!("ca-{}", dashed(&host)));
    }
    let staging = host.contains("staging") || host.contains("test");
    let known = [
        ("letsencrypt.org", "letsencrypt"),
        ("zerossl.com", "zerossl"),
        ("buypass.com", "buypass"),
        ("buypass.no", "buypass"),
        ("pki.goog", "google"),
        ("ssl.com", "sslcom"),
        ("sectigo.com", "sectigo"),
        ("digicert.com", "digicert"),
    ];
    for (suffix, name) in known {
        if host == suffix || host.ends_with(&format!(".{suffix}")) {
            return if staging {
                format!("{name}-staging")
            } else {
                name.to_string()
            };
        }
    }
    spec_name(&dashed(&host))
}

/// The contact addresses and the key type ("EC P-256") of certbot's account in `adir`. Since certbot
/// 0.x regr.json has an empty body (no contact); meta.json's register_to_eff holds the address when it
/// was shared with EFF. Only the key type is looked at, never the key.
fn certbot_account(adir: &Path, id: &str, p: &mut Plan) -> (Vec<String>, Option<String>) {
    let json = |f: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&fsread::read_capped(&adir.join(f), SECRET_MAX).ok()?).ok()
    };
    let mut contact = Vec::new();
    if let Some(regr) = json("regr.json") {
        if let Some(list) = regr["body"]["contact"].as_array() {
            contact = list
                .iter()
                .filter_map(|c| c.as_str())
                .filter(|c| c.starts_with("mailto:"))
                .map(str::to_string)
                .collect();
        }
    } else {
        p.notes.push(format!(
            "certbot account {id}: no readable {}",
            adir.join("regr.json").display()
        ));
    }
    if contact.is_empty() {
        if let Some(mail) = json("meta.json")
            .and_then(|m| m["register_to_eff"].as_str().map(str::to_string))
            .filter(|m| m.contains('@'))
        {
            contact.push(format!("mailto:{mail}"));
        }
    }
    let key_kind = json("private_key.json").and_then(|k| {
        let kty = k["kty"].as_str()?.to_string();
        Some(match k["crv"].as_str() {
            Some(crv) => format!("{kty} {crv}"),
            None => kty,
        })
    });
    (contact, key_kind)
}

/// `CN=...` of an RFC 4514-ish subject string.
fn common_name(subject: &str) -> Option<String> {
    subject
        .split([',', '+'])
        .map(str::trim)
        .find_map(|rdn| rdn.strip_prefix("CN="))
        .map(|s| s.to_ascii_lowercase())
}

/// A valid renewd name (`[a-z0-9][a-z0-9._-]*`) from a certbot lineage or file name.
fn spec_name(s: &str) -> String {
    crate::config::spec_name(s, "imported")
}

/// A YAML scalar (JSON strings are valid YAML double-quoted strings).
fn q(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).unwrap_or_else(|_| "\"\"".into())
}

fn qp(p: &Path) -> String {
    q(p.to_string_lossy())
}

// ---------------------------------------------------------------- output

impl Plan {
    /// Whether anything can be imported.
    pub fn is_empty(&self) -> bool {
        self.installs.is_empty()
    }

    /// The dry run: every file as it would be written (secret files by name only), the certificates
    /// that would become live, then what was not converted and what to do.
    pub fn render_dry_run(&self) -> String {
        let mut s = String::from(
            "# renewd import certbot: dry run, nothing written (add --write to write these files)\n",
        );
        for f in &self.files {
            let _ = writeln!(s, "\n# ---- {} (mode {:04o})", f.path.display(), f.mode);
            match (&f.shown, f.shown_text()) {
                (_, Some(t)) => s.push_str(t),
                (Shown::Secret(summary), None) => {
                    let _ = writeln!(s, "# {summary} (not shown)");
                }
                (Shown::Copy(source), None) => {
                    let _ = writeln!(
                        s,
                        "# copy of {} (not shown); the specs name this copy",
                        source.display()
                    );
                }
                (Shown::Text, None) => s.push_str("# (not UTF-8, not shown)\n"),
            }
        }
        s.push('\n');
        for i in &self.installs {
            let _ = writeln!(
                s,
                "# live certificate `{}` would be {}/live/{} (from {}, serial {}, expires {})",
                i.name,
                self.state_dir.display(),
                i.name,
                i.source.display(),
                i.serial,
                humantime::format_rfc3339_seconds(i.not_after)
            );
        }
        s.push_str(&self.render_report());
        s
    }

    /// Not converted / notes / to do.
    pub fn render_report(&self) -> String {
        let mut s = String::new();
        for (title, list) in [
            ("Not converted", &self.not_converted),
            ("Converted with a different meaning", &self.changed),
            ("Notes", &self.notes),
            ("To do", &self.todo),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{title}:");
            for item in list {
                let _ = writeln!(s, "  - {item}");
            }
        }
        s
    }

    /// Write every file and install the certificates. Refuses, with nothing written, when a file or live
    /// certificate it would create already exists, or when the loader rejects the configuration it would
    /// write. Returns one line per thing done.
    pub fn write(&self) -> Result<Vec<String>, ImportError> {
        self.refuse_existing()?;
        self.check_with_loader()?;
        let mut done = self.write_files()?;
        let st = StateDir::new(&self.state_dir);
        for i in &self.installs {
            st.install(&i.name, &i.version, &i.files)
                .map_err(|source| ImportError::Install {
                    name: i.name.clone(),
                    state: self.state_dir.clone(),
                    source,
                })?;
            done.push(format!(
                "installed {} as {}/live/{} (serial {}, expires {})",
                i.source.display(),
                self.state_dir.display(),
                i.name,
                i.serial,
                humantime::format_rfc3339_seconds(i.not_after)
            ));
        }
        Ok(done)
    }

    /// The import only creates: any planned file or live certificate already there stops it.
    fn refuse_existing(&self) -> Result<(), ImportError> {
        let existing: Vec<PathBuf> = self
            .files
            .iter()
            .map(|f| f.path.clone())
            .chain(
                self.installs
                    .iter()
                    .map(|i| self.state_dir.join("live").join(&i.name)),
            )
            .filter(|p| fs::symlink_metadata(p).is_ok())
            .collect();
        if existing.is_empty() {
            Ok(())
        } else {
            Err(ImportError::Exists(existing))
        }
    }

    /// Render the files into a private staging directory laid out like the target (`secrets/` and
    /// `certs.d/` beside the global file, paths in the global file pointing there), stand in for the EAB
    /// key files the user provides later, and load it with the loader `renewd check` uses. Its
    /// diagnostics are reported against the target paths.
    fn check_with_loader(&self) -> Result<(), ImportError> {
        let (Some(conv), Some(global)) = (&self.conversion, self.files.first()) else {
            return Ok(());
        };
        let stage_err = |source| ImportError::Stage { source };
        let stage = tempfile::Builder::new()
            .prefix("renewd-import.")
            .tempdir()
            .map_err(stage_err)?;
        let staged = Layout {
            config: stage
                .path()
                .join(global.path.file_name().unwrap_or("renewd.yaml".as_ref())),
            secrets: stage.path().join("secrets"),
            certs_d: stage.path().join("certs.d"),
            hooks: stage.path().join("hooks"),
        };
        state::create_private_dir(&staged.secrets).map_err(stage_err)?;
        fs::create_dir(&staged.certs_d).map_err(stage_err)?;
        fs::create_dir(&staged.hooks).map_err(stage_err)?;
        for f in conv.files(&staged) {
            if let Some(dir) = f.path.parent() {
                fs::create_dir_all(dir).map_err(stage_err)?;
            }
            state::write_atomic(&f.path, &f.contents, f.mode).map_err(stage_err)?;
        }
        if conv.eab_kid.is_some() {
            for a in &conv.accounts {
                // A well-formed stand-in (base64url of "placeholder"): the real key comes later.
                state::write_atomic(&staged.eab_file(&a.name), b"cGxhY2Vob2xkZXI\n", 0o600)
                    .map_err(stage_err)?;
            }
        }
        match config::load(&staged.config) {
            Ok(_) => Ok(()),
            Err(errors) => {
                let target = Layout::around(&global.path);
                Err(ImportError::Invalid(unstage(errors, &staged, &target)))
            }
        }
    }

    /// Every planned file through the atomic primitive: complete temp files beside their targets first
    /// (mode set before they are linked in), then each one placed only where nothing is.
    fn write_files(&self) -> Result<Vec<String>, ImportError> {
        let mut temps = Vec::new();
        for f in &self.files {
            let dir = f.path.parent().unwrap_or(Path::new("."));
            let mkdir = if f.secret() {
                state::create_private_dir(dir)
            } else {
                fs::create_dir_all(dir)
            };
            let err = |path: &Path| {
                let path = path.to_path_buf();
                move |source| ImportError::Write {
                    path,
                    source,
                    removed: Vec::new(),
                }
            };
            mkdir.map_err(err(dir))?;
            let tmp = state::write_temp(&f.path, &f.contents, f.mode, state::Ownership::default())
                .map_err(err(&f.path))?;
            temps.push((f.path.clone(), tmp));
        }
        let written = place_new(temps)?;
        Ok(written
            .iter()
            .map(|p| format!("wrote {}", p.display()))
            .collect())
    }
}

/// Link each complete temp file at its path, never over an existing file, then fsync the directories.
/// If one cannot be placed, the files placed before it are removed again (the rest of the temp files
/// go when dropped): the run leaves all of its files or none.
fn place_new(temps: Vec<(PathBuf, tempfile::NamedTempFile)>) -> Result<Vec<PathBuf>, ImportError> {
    let mut placed: Vec<PathBuf> = Vec::new();
    let mut failure = None;
    for (path, tmp) in temps {
        match tmp.persist_noclobber(&path) {
            Ok(_) => placed.push(path),
            Err(e) => {
                failure = Some((path, e.error));
                break;
            }
        }
    }
    if failure.is_none() {
        let mut dirs: Vec<&Path> = placed.iter().filter_map(|p| p.parent()).collect();
        dirs.sort();
        dirs.dedup();
        failure = dirs
            .into_iter()
            .find_map(|d| state::fsync_dir(d).err().map(|e| (d.to_path_buf(), e)));
    }
    let Some((path, source)) = failure else {
        return Ok(placed);
    };
    let removed: Vec<PathBuf> = placed
        .into_iter()
        .filter(|p| fs::remove_file(p).is_ok())
        .collect();
    for d in removed.iter().filter_map(|p| p.parent()) {
        let _ = state::fsync_dir(d);
    }
    Err(ImportError::Write {
        path,
        source,
        removed,
    })
}

/// The loader's diagnostics about the staged files, told about the files they stand for.
fn unstage(errors: ConfigErrors, staged: &Layout, target: &Layout) -> ConfigErrors {
    let pairs = [
        (&staged.secrets, &target.secrets),
        (&staged.certs_d, &target.certs_d),
        (&staged.hooks, &target.hooks),
        (&staged.config, &target.config),
    ];
    let map_path = |p: &Path| -> PathBuf {
        pairs
            .iter()
            .find_map(|(from, to)| {
                let rest = p.strip_prefix(from).ok()?;
                Some(if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                })
            })
            .unwrap_or_else(|| p.to_path_buf())
    };
    let map_text = |t: &str| -> String {
        pairs.iter().fold(t.to_string(), |t, (from, to)| {
            t.replace(&*from.to_string_lossy(), &to.to_string_lossy())
        })
    };
    ConfigErrors(
        errors
            .0
            .into_iter()
            .map(|d| Diagnostic {
                file: map_path(&d.file),
                message: map_text(&d.message),
                ..d
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{listing, mode};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn configobj_reads_sections_quotes_and_comments() {
        let c = ConfigObj::parse(
            "# renew_before_expiry = 30 days\nversion = 2.1.0\narchive_dir = /etc/letsencrypt/archive/a\n\
             cert = \"/x y/cert1.pem\"\n\n[renewalparams]\nkey_type = rsa\nrenew_hook = 'systemctl reload nginx'\n\
             server = https://acme/dir  # trailing\npref_challs = dns-01,\n",
        );
        assert_eq!(c.get("", "version"), Some("2.1.0"));
        assert_eq!(c.get("", "cert"), Some("/x y/cert1.pem"));
        assert_eq!(c.get("renewalparams", "key_type"), Some("rsa"));
        assert_eq!(
            c.get("renewalparams", "renew_hook"),
            Some("systemctl reload nginx")
        );
        assert_eq!(c.get("renewalparams", "server"), Some("https://acme/dir"));
        assert_eq!(c.get("renewalparams", "renew_before_expiry"), None);
    }

    #[test]
    fn key_types_map_and_unsupported_ones_are_refused() {
        let k = |s: &str| key_yaml(&ConfigObj::parse(&format!("[renewalparams]\n{s}")));
        assert_eq!(
            k("key_type = rsa\nrsa_key_size = 3072").unwrap(),
            "{ type: rsa, bits: 3072 }"
        );
        assert_eq!(k("").unwrap(), "{ type: rsa, bits: 2048 }");
        assert_eq!(
            k("key_type = ecdsa\nelliptic_curve = secp384r1").unwrap(),
            "{ type: ecdsa, curve: p384 }"
        );
        assert!(k("key_type = ecdsa\nelliptic_curve = secp521r1").is_err());
        assert!(k("key_type = rsa\nrsa_key_size = 1024").is_err());
    }

    #[test]
    fn hmac_md5_is_not_converted_and_the_secret_is_not_in_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let ini = tmp.path().join("rfc2136.ini");
        fs::write(
            &ini,
            "dns_rfc2136_server = 192.0.2.1\ndns_rfc2136_name = k\ndns_rfc2136_secret = c2VjcmV0c2VjcmV0\n\
             dns_rfc2136_algorithm = HMAC-MD5\n",
        )
        .unwrap();
        let err = dns_entry(&ini, &mut Vec::new()).unwrap_err();
        assert!(err.contains("hmac-md5"), "{err}");
        assert!(!err.contains("c2VjcmV0c2VjcmV0"), "{err}");

        fs::write(
            &ini,
            "dns_rfc2136_server = 2001:db8::1\ndns_rfc2136_port = 5353\ndns_rfc2136_name = k.\n\
             dns_rfc2136_secret = c2VjcmV0c2VjcmV0\ndns_rfc2136_algorithm = HMAC-SHA512\n",
        )
        .unwrap();
        let mut dns = Vec::new();
        assert_eq!(dns_entry(&ini, &mut dns).unwrap(), "rfc2136");
        assert_eq!(dns[0].address, "[2001:db8::1]:5353");
        assert_eq!(dns[0].key_name, "k");
        // The same credentials again share the entry.
        assert_eq!(dns_entry(&ini, &mut dns).unwrap(), "rfc2136");
        assert_eq!(dns.len(), 1);
    }

    const SECRET: &str = "2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=";

    /// A plan as `plan` makes it for one certbot lineage, writing around `dir/renewd.yaml`.
    fn planned(dir: &Path, spec: &str, eab_kid: Option<&str>) -> Plan {
        let conv = Conversion {
            certbot_dir: PathBuf::from("/etc/letsencrypt"),
            state_dir: dir.join("state"),
            eab_kid: eab_kid.map(str::to_string),
            trust: None,
            env_ca_bundle: None,
            accounts: vec![AccountEntry {
                name: "ca".into(),
                directory: "https://acme.example.test/directory".into(),
                contact: Vec::new(),
            }],
            dns: vec![DnsEntry {
                name: "rfc2136".into(),
                address: "192.0.2.1:53".into(),
                key_name: "acme-update".into(),
                algorithm: "hmac-sha256",
                secret: SECRET.into(),
                ini: PathBuf::from("/etc/letsencrypt/rfc2136.ini"),
            }],
            specs: vec![("web".into(), spec.into())],
            hook_copies: Vec::new(),
            reads: Reads::default(),
            propagation_seen: Vec::new(),
        };
        Plan {
            files: conv.files(&Layout::around(&dir.join("renewd.yaml"))),
            state_dir: dir.join("state"),
            installs: Vec::new(),
            not_converted: Vec::new(),
            changed: Vec::new(),
            todo: Vec::new(),
            notes: Vec::new(),
            conversion: Some(conv),
        }
    }

    const SPEC: &str = "domains: [\"web.example.test\"]\naccount: \"ca\"\nkey: { type: rsa, bits: 2048 }\ndns: \"rfc2136\"\n";

    #[test]
    fn write_places_every_file_with_its_mode_and_the_result_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = planned(tmp.path(), SPEC, None);
        assert!(!format!("{plan:?}").contains(SECRET), "secret in Debug");
        let done = plan.write().unwrap();
        assert_eq!(done.len(), 3, "{done:?}");
        let (config, key, spec) = (
            tmp.path().join("renewd.yaml"),
            tmp.path().join("secrets/rfc2136.key"),
            tmp.path().join("certs.d/web.yaml"),
        );
        assert_eq!(
            (mode(&config), mode(&key), mode(&spec)),
            (0o644, 0o600, 0o644)
        );
        assert_eq!(mode(&tmp.path().join("secrets")), 0o700);
        assert_eq!(fs::read_to_string(&spec).unwrap(), SPEC);
        assert_eq!(fs::read(&config).unwrap(), plan.files[0].contents);
        assert!(fs::read_to_string(&key).unwrap().contains(SECRET));
        // No temp file left beside them.
        assert_eq!(listing(tmp.path()), ["certs.d", "renewd.yaml", "secrets"]);
        assert_eq!(listing(&tmp.path().join("secrets")), ["rfc2136.key"]);
        assert_eq!(listing(&tmp.path().join("certs.d")), ["web.yaml"]);
        let loaded = config::load(&config).unwrap();
        assert_eq!(loaded.settings.dns_servers["rfc2136"].tsig_key_file, key);
    }

    #[test]
    fn write_refuses_when_a_planned_file_exists_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = planned(tmp.path(), SPEC, None);
        let spec = tmp.path().join("certs.d/web.yaml");
        fs::create_dir(tmp.path().join("certs.d")).unwrap();
        fs::write(&spec, "mine\n").unwrap();
        match plan.write() {
            Err(ImportError::Exists(paths)) => assert_eq!(paths, vec![spec.clone()]),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read_to_string(&spec).unwrap(), "mine\n");
        assert_eq!(listing(tmp.path()), ["certs.d"]);
    }

    #[test]
    fn write_refuses_what_the_loader_rejects_with_its_diagnostics_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = planned(
            tmp.path(),
            &SPEC.replace("web.example.test", "bad_label.example.test"),
            None,
        );
        let err = plan.write().unwrap_err();
        let ImportError::Invalid(errors) = &err else {
            panic!("{err:?}");
        };
        let e = errors.errors().next().unwrap();
        // Said about the file it would have written, not the staged copy.
        assert_eq!(e.file, tmp.path().join("certs.d/web.yaml"));
        assert_eq!(e.line, Some(1));
        let text = err.to_string();
        assert!(text.contains("bad_label"), "{text}");
        assert!(!text.contains("renewd-import."), "{text}");
        assert!(listing(tmp.path()).is_empty());
    }

    #[test]
    fn eab_key_files_are_stood_in_for_while_checking_and_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = planned(tmp.path(), SPEC, Some("kid-1"));
        plan.write().unwrap();
        assert_eq!(listing(&tmp.path().join("secrets")), ["rfc2136.key"]);
        // As the import's to-do says: the user puts the CA's key there, then it loads.
        let eab = tmp.path().join("secrets/ca.eab");
        state::write_atomic(&eab, b"c2VjcmV0LWVhYi1rZXk\n", 0o600).unwrap();
        config::load(&tmp.path().join("renewd.yaml")).unwrap();
    }

    #[test]
    fn a_deploy_hook_path_with_a_space_is_written_so_that_the_loader_takes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = RenewalConf {
            path: PathBuf::from("/etc/letsencrypt/renewal/web.conf"),
            c: ConfigObj::parse("[renewalparams]\nrenew_hook = systemctl reload nginx\n"),
            lineage: "web".into(),
            what: "web.conf".into(),
        };
        let hooks = hooks::LineageHooks {
            deploy: vec![vec![
                "/etc/letsencrypt/renewal-hooks/deploy/reload web.sh".to_string()
            ]],
            ..Default::default()
        };
        let mut scratch = planned(tmp.path(), "", None);
        let yaml = reload_and_hooks_yaml(&conf, &hooks, &mut scratch);
        assert!(
            yaml.contains("  - [\"/etc/letsencrypt/renewal-hooks/deploy/reload web.sh\"]\n"),
            "{yaml}"
        );
        planned(tmp.path(), &format!("{SPEC}{yaml}"), None)
            .write()
            .unwrap();
    }

    #[test]
    fn a_failed_placement_removes_the_files_placed_before_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let temp =
            |p: &Path| state::write_temp(p, b"new", 0o640, state::Ownership::default()).unwrap();
        let temps = vec![(a.clone(), temp(&a)), (b.clone(), temp(&b))];
        // Someone creates `b` after the existence check.
        fs::write(&b, "theirs").unwrap();
        match place_new(temps) {
            Err(ImportError::Write {
                path,
                source,
                removed,
            }) => {
                assert_eq!(path, b);
                assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
                assert_eq!(removed, vec![a.clone()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(listing(tmp.path()), ["b"]);
        assert_eq!(fs::read_to_string(&b).unwrap(), "theirs");
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(spec_name("Host1.Example.TEST"), "host1.example.test");
        assert_eq!(spec_name("_x y"), "x-y");
        assert_eq!(
            common_name("C=JP, CN=GitLab.example.test"),
            Some("gitlab.example.test".into())
        );
    }

    #[test]
    fn account_names_come_from_the_ca_host() {
        for (url, name) in [
            (
                "https://acme-v02.api.letsencrypt.org/directory",
                "letsencrypt",
            ),
            (
                "https://acme-staging-v02.api.letsencrypt.org/directory",
                "letsencrypt-staging",
            ),
            ("https://acme.zerossl.com/v2/DV90", "zerossl"),
            ("https://ca.example.test/acme/directory", "ca-example-test"),
            ("https://CA.Example.Test.:8443/dir", "ca-example-test"),
            ("https://127.0.0.1:14000/dir", "ca-127-0-0-1"),
            ("https://[2001:db8::1]:14000/dir", "ca-2001-db8-1"),
        ] {
            assert_eq!(account_name(url), name, "{url}");
        }
    }

    const LINEAGE: &str = "web.example.test";

    /// A certbot 2.x tree for LINEAGE made at `root` as certbot writes it (`config_dir = root`; live/
    /// symlinks into archive/; the rfc2136 ini in the tree), with `params` added to [renewalparams].
    fn certbot_tree(root: &Path, params: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![LINEAGE.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let archive = root.join("archive").join(LINEAGE);
        let live = root.join("live").join(LINEAGE);
        fs::create_dir_all(&archive).unwrap();
        fs::create_dir_all(&live).unwrap();
        fs::create_dir_all(root.join("renewal")).unwrap();
        for (k, text) in [
            ("cert", cert.pem()),
            ("chain", cert.pem()),
            ("fullchain", format!("{}{}", cert.pem(), cert.pem())),
            ("privkey", key.serialize_pem()),
        ] {
            fs::write(archive.join(format!("{k}1.pem")), text).unwrap();
            std::os::unix::fs::symlink(
                format!("../../archive/{LINEAGE}/{k}1.pem"),
                live.join(format!("{k}.pem")),
            )
            .unwrap();
        }
        fs::write(
            root.join("rfc2136.ini"),
            format!(
                "dns_rfc2136_server = 192.0.2.1\ndns_rfc2136_name = acme-update\n\
                 dns_rfc2136_secret = {SECRET}\ndns_rfc2136_algorithm = HMAC-SHA256\n"
            ),
        )
        .unwrap();
        let r = root.display();
        fs::write(
            root.join(format!("renewal/{LINEAGE}.conf")),
            format!(
                "version = 2.1.0\narchive_dir = {r}/archive/{LINEAGE}\ncert = {r}/live/{LINEAGE}/cert.pem\n\
                 privkey = {r}/live/{LINEAGE}/privkey.pem\nchain = {r}/live/{LINEAGE}/chain.pem\n\
                 fullchain = {r}/live/{LINEAGE}/fullchain.pem\n\n# Options used in the renewal process\n\
                 [renewalparams]\naccount = 0123abcd\nauthenticator = dns-rfc2136\n\
                 server = https://ca.example.test/acme/directory\nkey_type = ecdsa\nconfig_dir = {r}\n\
                 dns_rfc2136_credentials = {r}/rfc2136.ini\ndns_rfc2136_propagation_seconds = 2\n{params}"
            ),
        )
        .unwrap();
    }

    /// A hook script at `path` with `mode`.
    fn hook(path: &Path, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("#!/bin/sh\necho {}\n", path.display())).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `to` as a path relative to the working directory (as a user may type DIR).
    fn relative(to: &Path) -> PathBuf {
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count() - 1);
        PathBuf::from(up).join(to.strip_prefix("/").unwrap())
    }

    fn import_opts(cb: &Path, out: &Path) -> Options {
        Options {
            certbot_dir: cb.to_path_buf(),
            config: out.join("renewd.yaml"),
            state_dir: Some(out.join("state")),
            eab_kid: None,
            trust: None,
            env_ca_bundle: Some(PathBuf::from("/etc/ssl/private-ca.pem")),
        }
    }

    /// The argv of each `hooks:` entry of the imported spec, as the loader reads it.
    /// The loaded spec's (deploy hooks, pre_hooks, post_hooks), argv each.
    fn loaded_hooks(config: &Path) -> [Vec<Vec<String>>; 3] {
        let loaded = config::load(config).unwrap();
        let spec = &loaded.settings.certs[LINEAGE];
        let argvs = |list: &[config::ReloadSpec]| {
            list.iter()
                .filter_map(|r| match r {
                    config::ReloadSpec::Hook { argv, .. } => Some(argv.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        [
            argvs(&spec.reload),
            argvs(&spec.pre_hooks),
            argvs(&spec.post_hooks),
        ]
    }

    #[test]
    fn a_moved_tree_is_rebased_onto_dir_and_its_hooks_keep_certbots_meaning() {
        let tmp = tempfile::tempdir().unwrap();
        let orig = tmp.path().join("etc/letsencrypt");
        let deploy = orig.join("renewal-hooks/deploy/reload.sh");
        certbot_tree(
            &orig,
            &format!(
                "renew_hook = {}\npost_hook = systemctl reload nginx\npre_hook = {}/renewal-hooks/pre/stop.sh\n",
                deploy.display(),
                orig.display()
            ),
        );
        hook(&deploy, 0o750);
        hook(&orig.join("renewal-hooks/post/post.sh"), 0o755);
        hook(&orig.join("renewal-hooks/pre/stop.sh"), 0o755);
        hook(&orig.join("renewal-hooks/deploy/reload.sh~"), 0o755);
        // A copy elsewhere: the original is gone.
        let copy = tmp.path().join("backup/le-copy");
        fs::create_dir_all(copy.parent().unwrap()).unwrap();
        fs::rename(&orig, &copy).unwrap();
        let out = tmp.path().join("renewd");

        let plan = plan(&import_opts(&relative(&copy), &out)).unwrap();
        let report = plan.render_dry_run();
        assert_eq!(plan.installs.len(), 1, "{report}");
        assert_eq!(
            plan.installs[0].source,
            copy.join(format!("live/{LINEAGE}/cert.pem"))
        );
        let rebased = format!("(rebased {} -> {})", orig.display(), copy.display());
        assert!(report.contains(&rebased), "{report}");
        // The deploy hook in both places runs once; pre- and post-hooks keep certbot's meaning, and a
        // `pre_hook` that is the directory's own pre-hook runs once too.
        assert!(report.contains("it runs once, as with certbot"), "{report}");
        let hooks_dir = out.join("hooks");
        let sh = |c: &str| vec!["/bin/sh".to_string(), "-c".into(), c.into()];
        let expected = [
            vec![vec![hooks_dir
                .join("deploy/reload.sh")
                .display()
                .to_string()]],
            vec![vec![hooks_dir.join("pre/stop.sh").display().to_string()]],
            vec![
                vec![hooks_dir.join("post/post.sh").display().to_string()],
                sh("systemctl reload nginx"),
            ],
        ];
        let notes = plan.notes.join("\n");
        assert!(
            notes.contains("post/post.sh: a post hook of every certificate (`post_hooks:`)")
                && notes.contains("pre/stop.sh: a pre hook of every certificate (`pre_hooks:`)"),
            "{notes}"
        );
        let refused = plan.not_converted.join("\n");
        assert!(!refused.contains("pre-hook"), "{refused}");
        assert!(refused.contains("reload.sh~: a backup file"), "{refused}");
        // certbot's TTL, the CA's host name, no `trust:` from this shell's REQUESTS_CA_BUNDLE.
        let global = plan.files[0].shown_text().unwrap();
        assert!(global.contains("    ttl: 120\n"), "{global}");
        assert!(global.contains("  ca-example-test:\n"), "{global}");
        assert!(!global.contains("trust:"), "{global}");
        assert!(report.contains(
            "REQUESTS_CA_BUNDLE is set in this shell (/etc/ssl/private-ca.pem): not taken"
        ));
        // Hooks are named, not shown.
        assert!(report.contains(&format!(
            "# copy of {}",
            copy.join("renewal-hooks/deploy/reload.sh").display()
        )));
        assert!(!report.contains("echo "), "{report}");

        plan.write().unwrap();
        assert_eq!(loaded_hooks(&out.join("renewd.yaml")), expected);
        let copied = hooks_dir.join("deploy/reload.sh");
        assert_eq!(mode(&copied), 0o750);
        assert_eq!(
            fs::read(&copied).unwrap(),
            fs::read(copy.join("renewal-hooks/deploy/reload.sh")).unwrap()
        );
        assert_eq!(mode(&hooks_dir.join("post/post.sh")), 0o755);
        assert_eq!(listing(&hooks_dir), ["deploy", "post", "pre"]);
        assert_eq!(listing(&hooks_dir.join("deploy")), ["reload.sh"]);
    }

    #[test]
    fn a_deploy_hook_given_with_an_argument_runs_twice_as_with_certbot() {
        let tmp = tempfile::tempdir().unwrap();
        let cb = tmp.path().join("le");
        let deploy = cb.join("renewal-hooks/deploy/reload.sh");
        certbot_tree(&cb, &format!("renew_hook = {} --now\n", deploy.display()));
        hook(&deploy, 0o755);
        let out = tmp.path().join("renewd");
        let plan = plan(&import_opts(&cb, &out)).unwrap();
        let copy = out.join("hooks/deploy/reload.sh").display().to_string();
        plan.write().unwrap();
        assert_eq!(
            loaded_hooks(&out.join("renewd.yaml"))[0],
            vec![
                vec![copy.clone()],
                vec!["/bin/sh".into(), "-c".into(), format!("{copy} --now")],
            ]
        );
        assert_eq!(listing(&out.join("hooks/deploy")), ["reload.sh"]);
    }

    #[test]
    fn a_file_at_neither_place_is_said_with_both_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let orig = tmp.path().join("orig");
        certbot_tree(&orig, "");
        let copy = tmp.path().join("copy");
        fs::rename(&orig, &copy).unwrap();
        fs::remove_file(copy.join(format!("archive/{LINEAGE}/chain1.pem"))).unwrap();
        let plan = plan(&import_opts(&copy, &tmp.path().join("renewd"))).unwrap();
        assert!(plan.is_empty());
        let why = plan.not_converted.join("\n");
        let chain = format!("live/{LINEAGE}/chain.pem");
        assert!(
            why.contains(&format!(
                "`chain`: neither {} (as certbot wrote it) nor {} (the same path under {}) exists",
                orig.join(&chain).display(),
                copy.join(&chain).display(),
                copy.display()
            )),
            "{why}"
        );
    }

    #[test]
    fn hook_programs_are_found_where_certbot_found_them() {
        let tmp = tempfile::tempdir().unwrap();
        let cb = tmp.path().join("le");
        // Relative to certbot's directory (certbot run by hand from there), outside the tree, nowhere.
        certbot_tree(
            &cb,
            "renew_hook = scripts/reload.sh --all\npost_hook = /bin/true\npre_hook = true\n",
        );
        hook(&cb.join("scripts/reload.sh"), 0o700);
        let out = tmp.path().join("renewd");
        let p = plan(&import_opts(&cb, &out)).unwrap();
        let spec = p.files[2].shown_text().unwrap();
        let copy = out.join("hooks/scripts/reload.sh");
        assert!(
            spec.contains(&format!(
                "hooks:\n  - [\"/bin/sh\", \"-c\", \"{} --all\"]\npre_hooks:\n  - \"true\"\npost_hooks:\n  - \"/bin/true\"\n",
                copy.display()
            )),
            "{spec}"
        );
        p.write().unwrap();
        assert_eq!(mode(&copy), 0o700);

        let cb2 = tmp.path().join("le2");
        certbot_tree(&cb2, "renew_hook = hooks/missing.sh\n");
        let p = plan(&import_opts(&cb2, &tmp.path().join("renewd2"))).unwrap();
        let todo = p.todo.join("\n");
        assert!(
            todo.contains(
                "hook program `hooks/missing.sh` is a relative path and none of /hooks/missing.sh"
            ),
            "{todo}"
        );

        // Two different files that would be copied to the same place keep apart.
        let cb3 = tmp.path().join("le3");
        let other = cb3.join("deploy/reload.sh");
        certbot_tree(&cb3, &format!("renew_hook = {}\n", other.display()));
        hook(&cb3.join("renewal-hooks/deploy/reload.sh"), 0o755);
        hook(&other, 0o755);
        let out3 = tmp.path().join("renewd3");
        let p = plan(&import_opts(&cb3, &out3)).unwrap();
        p.write().unwrap();
        assert_eq!(
            loaded_hooks(&out3.join("renewd.yaml"))[0],
            vec![
                vec![out3.join("hooks/deploy/reload.sh").display().to_string()],
                vec![out3.join("hooks/deploy/reload.sh-2").display().to_string()],
            ]
        );
        assert_eq!(
            fs::read(out3.join("hooks/deploy/reload.sh-2")).unwrap(),
            fs::read(&other).unwrap()
        );
    }
}
