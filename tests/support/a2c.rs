//! A second, real ACME CA beside Pebble: acme2certifier (PyPI, 0.46.3, installed by `.ci/install-deps`
//! into the venv [`venv_dir`]), for what Debian's Pebble 2.4.0 lacks: ARI (renewalInfo with a suggested
//! window and `Retry-After`), ACME profiles, dns-persist-01. Pebble stays the harness's default CA; a
//! test that needs one of these starts a [`SecondCa`] inside its [`Topology`].
//!
//! One per topology, at `https://127.0.0.1:14010/directory` ([`A2C_PORT`]) inside the topology's network
//! namespace, a child of the test process killed by PID on drop like the topology's servers. Its files live
//! in `<topology dir>/a2c/`:
//!
//! | file                  | what                                                                     |
//! |-----------------------|--------------------------------------------------------------------------|
//! | `acme_srv.cfg`        | its configuration (`ACME_SRV_CONFIGFILE`), rewritten by `restart_with`    |
//! | `acme_srv.db`         | its state (SQLite, `wsgi_handler`): accounts, orders, certificates        |
//! | `ca/root.pem`, `ca/intermediate.pem` (+ `.key`) | the issuing CA, made with `openssl` at start  |
//! | `eab.csv`             | the EAB key (`eab_kid,eab_mac`: [`A2C_EAB_KID`], 32 random bytes base64url) |
//! | `serve.py`            | the launcher (below)                                                     |
//! | `a2c.log`             | its stdout/stderr: acme2certifier's log (info level)                     |
//! | `access.log`          | one line per request: `METHOD PATH STATUS` ([`SecondCa::requests`])      |
//! | `posts.jsonl`         | per POST: `{"path", "payload"}`, the JWS payload decoded ([`SecondCa::new_order_payloads`]) |
//!
//! # The launcher
//! acme2certifier ships a WSGI module (`acme2certifier.share.acme2certifier_wsgi`) whose `__main__` binds
//! 0.0.0.0:80 over plain HTTP. `serve.py` imports its `application` (importing it reads the configuration,
//! once per process) and serves it with wsgiref + `ThreadingMixIn` on 127.0.0.1:14010 over TLS with the
//! certificate Pebble presents (`pebble/cert.pem`, SAN `IP:127.0.0.1`, signed by
//! [`Topology::tls_ca_pem_path`]), so the `trust:` renewd's fixtures already write covers it. It sets
//! `HTTPS=on` so acme2certifier builds `https://` URLs (it takes the host from the request's Host header:
//! no `server_name` is configured, which it warns about once). The TLS handshake is done on the request's
//! thread, not in `accept`. It also records every request (access log) and every POST's decoded JWS
//! payload, because acme2certifier's own log does not show them: that is how a test sees `replaces`.
//!
//! # Configuration (the keys, as 0.46.3 reads them)
//! - `[DEFAULT] dns_server_list: ["127.0.0.16"]` — the topology's CA resolver. IP addresses only, port 53
//!   always. DEFAULT keys show through in every section (configparser), so `[Challenge]` sees it too.
//!   Without it dns-01 validation would ask `/etc/resolv.conf`'s resolver and its other lookups
//!   9.9.9.9/8.8.8.8 (unreachable in the namespace, which has only `lo`).
//! - `[DBhandler] handler_module: acme2certifier.dbhandlers.wsgi_handler`, `dbfile`.
//! - `[EABhandler] eab_handler_module: acme2certifier.eabhandlers.file_handler`, `key_file` (CSV with the
//!   header `eab_kid,eab_mac`), `eab_strict_mode` ([`SecondCaOptions::eab_required`]; the directory's
//!   `meta.externalAccountRequired` shows it). A contact is required (unless `[Account]
//!   contact_check_disable`).
//! - `[CAhandler] handler_module: acme2certifier.cahandlers.openssl_ca_handler` with `issuing_ca_key`,
//!   `issuing_ca_cert` (always sent after the issued certificate), `issuing_ca_crl` (need not exist; it
//!   says so in its log), `cert_validity_days` (whole days), `cert_save_path`. Not set here:
//!   `ca_cert_chain_list` (JSON list of further PEM files sent after the issuing certificate: listing the
//!   issuing certificate there sends it twice, and renewd rightly refuses that chain).
//! - Profiles ([`SecondCaOptions::profiles`]): `[Order] profiles` (JSON object name → description: the
//!   directory's `meta.profiles`) switches the profile check on (unknown → `invalidProfile`), but with
//!   **exactly one** profile configured acme2certifier silently replaces an unknown one with it. A lifetime
//!   per profile needs the multi-handler set-up: `[CAhandler] multi_handler: True`, `default_handler: NAME`
//!   (orders without a profile), one `[CAhandler:NAME]` section per handler (each a whole openssl handler
//!   configuration with its own `cert_validity_days`), and `[Order] profile_cahandler` (JSON profile →
//!   handler name). The order does not echo the profile back.
//! - ARI, `[Renewalinfo]`: `renewalthreshold_pctg` (window start = issued + pct × lifetime, default 85),
//!   `renewal_window_duration` (seconds, or `2d`/`48h`; the window's end is min(notAfter, start + this);
//!   default notAfter), `retry_after_timeout` (the `Retry-After` header of renewalInfo answers, seconds,
//!   default 86400). The directory advertises `renewalInfo` unless `renewalinfo_disable`. A certificate
//!   is looked up by serial + AKI from the RFC 9773 id; an unknown one is a 404 `malformed`.
//!   `replaces` in newOrder is accepted and ignored (not echoed in the order, which RFC 9773 §5 requires,
//!   and not checked: an already replaced certificate can be replaced again).
//! - `[Challenge] dns_persist_allow_policy_wildcard` (default False, set with dns-persist-01 here): without
//!   it a wildcard authorization fails dns-persist-01 even with `policy=wildcard` in the record.
//! - `[Challenge] dns_persist_01_support` offers dns-persist-01 beside dns-01 (with `accounturi` and
//!   `issuer-domain-names` from `[Directory] caaidentities`, a JSON list, also the directory's
//!   `meta.caaIdentities`). dns-01 / dns-persist-01 validation is tried up to 5 times 0.5 s apart
//!   (`dns_validation_pause_timer`), and the challenge POST waits for it up to
//!   `challenge_validation_timeout` (10 s). The validator reads only the first string of each TXT record.
//!
//! # Gotchas
//! - Not safe under concurrent requests with its SQLite handler (0.46.3): parallel first renewalInfo
//!   requests race on a housekeeping row (500), parallel writes hit "database is locked" (badNonce). The
//!   launcher serves one request at a time.
//! - The configuration is read once per process (and cached): [`SecondCa::restart_with`] rewrites it and
//!   starts a new process on the same database, CA and EAB key.
//! - The directory is at `/directory` (also `/acme/directory`); newOrder is `/acme/neworders`,
//!   renewalInfo `/acme/renewal-info/{id}`.
//! - Status texts are odd (`200 Created`, `201 OK`); clients only read the code.
//! - Start: ~0.75 s from spawn to a served directory on the 2-core CI machine (the import is ~0.3 s of
//!   it; making the CA ~25 ms more); ~54 MB RSS.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::fixtures::SpecFixture;
use super::proc::{poll_ready, spawn_long_lived_logged, stop_children, tail};
use super::renewd::Renewd;
use super::topology::{write_secret, IssuingRoots, Topology, CA_RESOLVER_IP};
use super::x509::{ec_cert_in, EcCert};

/// Its HTTPS port on 127.0.0.1 inside the namespace (Pebble: 14000, the ARI stand-in: 14001).
pub const A2C_PORT: u16 = 14010;
/// Where `.ci/install-deps` puts the venv, unless [`A2C_VENV_ENV`] says otherwise.
pub const A2C_VENV_DEFAULT: &str = "/opt/renewd-tests/a2c-venv";
/// The environment variable that overrides [`A2C_VENV_DEFAULT`] (install-deps reads it too).
pub const A2C_VENV_ENV: &str = "RENEWD_A2C_VENV";
/// The EAB key id in `eab.csv`.
pub const A2C_EAB_KID: &str = "renewd-a2c";
/// The name of the renewd account [`SecondCa::add_account`] writes.
pub const A2C_ACCOUNT: &str = "a2c";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(5);
const LAUNCHER: &str = include_str!("a2c_serve.py");

/// How to configure it. `Default`: EAB required, 90-day certificates, no profiles, acme2certifier's own
/// ARI defaults (window from 85 % of the lifetime to notAfter, `Retry-After: 86400`), no
/// dns-persist-01, issuer domain name `ca.example.test`.
#[derive(Debug, Clone)]
pub struct SecondCaOptions {
    /// `eab_strict_mode`: accounts must be bound to the EAB key (it is configured either way).
    pub eab_required: bool,
    /// `cert_validity_days` of orders without a profile, unless [`Self::default_profile`] names one.
    pub cert_validity_days: u32,
    /// ACME profiles: (name, certificate lifetime in whole days, at least 1). Empty: none offered.
    pub profiles: Vec<(String, u32)>,
    /// The profile whose lifetime an order without a profile gets (one of [`Self::profiles`]).
    pub default_profile: Option<String>,
    /// `renewalthreshold_pctg`: the suggested window starts this far into the lifetime (0: at issuance,
    /// so it is open at once).
    pub renewal_threshold_pct: f64,
    /// `renewal_window_duration`: the window is at most this long (None: it ends at notAfter).
    pub renewal_window: Option<Duration>,
    /// `retry_after_timeout`: the `Retry-After` of renewalInfo answers (whole seconds).
    pub retry_after: Duration,
    /// `dns_persist_01_support`.
    pub dns_persist_01: bool,
    /// `[Directory] caaidentities`: the issuer domain names (dns-persist-01's and `meta.caaIdentities`).
    pub caa_identities: Vec<String>,
}

impl Default for SecondCaOptions {
    fn default() -> Self {
        SecondCaOptions {
            eab_required: true,
            cert_validity_days: 90,
            profiles: Vec::new(),
            default_profile: None,
            renewal_threshold_pct: 85.0,
            renewal_window: None,
            retry_after: Duration::from_secs(86400),
            dns_persist_01: false,
            caa_identities: vec!["ca.example.test".into()],
        }
    }
}

/// One request from the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A2cRequest {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    pub status: u16,
}

/// A running acme2certifier inside `topo`'s namespace. Dropping it stops it.
pub struct SecondCa<'t> {
    topo: &'t Topology,
    dir: PathBuf,
    python: PathBuf,
    eab_hmac: String,
    opts: SecondCaOptions,
    child: Mutex<Option<Child>>,
    startup: Duration,
}

/// The venv acme2certifier is installed in: `$RENEWD_A2C_VENV`, else [`A2C_VENV_DEFAULT`].
pub fn venv_dir() -> PathBuf {
    std::env::var_os(A2C_VENV_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(A2C_VENV_DEFAULT))
}

/// The python of `venv`, once it is known that acme2certifier is installed there; else why not.
fn venv_python(venv: &Path) -> Result<PathBuf, String> {
    let python = venv.join("bin/python");
    let installed = fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("site-packages/acme2certifier").is_dir());
    if python.exists() && installed {
        Ok(python)
    } else {
        Err(format!(
            "acme2certifier is not installed in {} (the second CA of tests/support/a2c.rs): run \
             `.ci/install-deps` as root (or point ${A2C_VENV_ENV} at a venv that has it)",
            venv.display()
        ))
    }
}

impl<'t> SecondCa<'t> {
    /// Make its CA, EAB key and configuration under `<topology dir>/a2c/`, start it, and return once it
    /// serves its directory. Panics with the reason (and its log) otherwise.
    pub fn start(topo: &'t Topology, opts: SecondCaOptions) -> SecondCa<'t> {
        let python = venv_python(&venv_dir()).unwrap_or_else(|e| panic!("{e}"));
        let dir = topo.dir().join("a2c");
        assert!(
            !dir.exists(),
            "one acme2certifier per topology: {} exists",
            dir.display()
        );
        let mut hmac = [0u8; 32];
        rand::fill(&mut hmac);
        let mut ca = SecondCa {
            topo,
            dir,
            python,
            eab_hmac: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hmac),
            opts,
            child: Mutex::new(None),
            startup: Duration::ZERO,
        };
        if let Err(e) = ca.prepare().and_then(|()| ca.launch()) {
            panic!("acme2certifier did not come up: {e}");
        }
        ca
    }

    /// Stop it, write the configuration for `opts`, start it again on the same database, CA and EAB key
    /// (acme2certifier reads its configuration once per process). Returns once it serves its directory.
    pub fn restart_with(&mut self, opts: SecondCaOptions) {
        self.stop();
        self.opts = opts;
        if let Err(e) = self.launch() {
            panic!("acme2certifier did not come back: {e}");
        }
    }

    /// Stop the process (SIGTERM, SIGKILL after 5 s). A no-op when it is not running.
    pub fn stop(&self) {
        if let Some(child) = self.child().take() {
            stop_children(vec![("acme2certifier", child)], STOP_GRACE);
        }
    }

    // ---------------------------------------------------------------- accessors

    /// `https://127.0.0.1:14010/directory`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{A2C_PORT}/directory")
    }

    pub fn eab_kid(&self) -> &str {
        A2C_EAB_KID
    }

    /// The EAB MAC key as handed out: base64url without padding.
    pub fn eab_hmac_b64url(&self) -> &str {
        &self.eab_hmac
    }

    /// Its issuing chain: `root` (self-signed) and `intermediate` (signs the certificates; also sent in
    /// the chain). For `x509::verify_chain(&roots.root, chain, cert)`.
    pub fn roots(&self) -> IssuingRoots {
        IssuingRoots {
            root: self.dir.join("ca/root.pem"),
            intermediate: self.dir.join("ca/intermediate.pem"),
        }
    }

    /// `<topology dir>/a2c`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &SecondCaOptions {
        &self.opts
    }

    /// acme2certifier's own log (the process's stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("a2c.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Wall time of the last start, from spawning to a served directory.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Resident memory of the process in KiB (`VmRSS`), if it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Every request it answered so far (across restarts), in order.
    pub fn requests(&self) -> Vec<A2cRequest> {
        fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                Some(A2cRequest {
                    method: it.next()?.to_string(),
                    path: it.next()?.to_string(),
                    status: it.next()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// How many newOrder requests it answered.
    pub fn new_order_count(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/acme/neworders")
            .count()
    }

    /// The certificate ids of the renewalInfo GETs it answered, in order.
    pub fn renewal_info_requests(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET")
            .filter_map(|r| r.path.strip_prefix("/acme/renewal-info/"))
            .map(str::to_string)
            .collect()
    }

    /// The decoded JWS payload of every newOrder request, in order.
    pub fn new_order_payloads(&self) -> Vec<serde_json::Value> {
        self.post_payloads("/acme/neworders")
    }

    /// The decoded JWS payloads (`null` for POST-as-GET) of the POSTs to `path`, in order.
    pub fn post_payloads(&self, path: &str) -> Vec<serde_json::Value> {
        self.posts()
            .into_iter()
            .filter(|(p, _)| p == path)
            .map(|(_, payload)| payload)
            .collect()
    }

    /// The rows of a read-only SQL query on its database (`acme_srv.db`), each column as text: what the CA
    /// itself holds (e.g. an authorization's status after a deactivation request).
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        const SCRIPT: &str = "import json, sqlite3, sys\n\
            con = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n\
            print(json.dumps([[str(c) for c in row] for row in con.execute(sys.argv[2])]))\n";
        let out = std::process::Command::new(&self.python)
            .args(["-c", SCRIPT])
            .arg(self.dir.join("acme_srv.db"))
            .arg(sql)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "query {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("rows as JSON")
    }

    /// Every POST so far: (path, decoded JWS payload or `null` for POST-as-GET), in order.
    pub fn posts(&self) -> Vec<(String, serde_json::Value)> {
        fs::read_to_string(self.dir.join("posts.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|mut v| Some((v["path"].as_str()?.to_string(), v["payload"].take())))
            .collect()
    }

    // ---------------------------------------------------------------- renewd's configuration

    /// Add the account `a2c` to a renewd.yaml written by the fixtures (`accounts:` gets it first), and
    /// its EAB key as `secrets/a2c.eab` (0600) beside it. Specs use it with `account: a2c`.
    pub fn add_account(&self, config: &Path) {
        let base = config.parent().expect("renewd.yaml has a directory");
        let eab_file = base.join("secrets").join(format!("{A2C_ACCOUNT}.eab"));
        fs::create_dir_all(base.join("secrets")).expect("mkdir secrets");
        write_secret(&eab_file, format!("{}\n", self.eab_hmac).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let q = |s: &str| serde_json::to_string(s).expect("string to JSON");
        let account = format!(
            "  {A2C_ACCOUNT}:\n    directory: {dir}\n    contact: [\"mailto:pki@example.test\"]\n    \
             eab: {{ kid: {kid}, hmac_key_file: {eab} }}\n    trust: {trust}\n",
            dir = q(&self.directory_url()),
            kid = q(A2C_EAB_KID),
            eab = q(eab_file.to_str().expect("UTF-8 path")),
            trust = q(self.topo.tls_ca_pem_path().to_str().expect("UTF-8 path")),
        );
        let text = fs::read_to_string(config).expect("read renewd.yaml");
        assert!(
            text.contains("\naccounts:\n"),
            "{} has no accounts: block",
            config.display()
        );
        let text = text.replacen("\naccounts:\n", &format!("\naccounts:\n{account}"), 1);
        fs::write(config, text).expect("write renewd.yaml");
    }

    /// [`Self::add_account`], and make `a2c` the default account (`defaults: { account: a2c, ... }`).
    pub fn use_as_default(&self, config: &Path) {
        self.add_account(config);
        let text = fs::read_to_string(config).expect("read renewd.yaml");
        let pebble = "defaults: { account: pebble,";
        assert!(
            text.contains(pebble),
            "{} has no `{pebble}`",
            config.display()
        );
        let text = text.replace(pebble, &format!("defaults: {{ account: {A2C_ACCOUNT},"));
        fs::write(config, text).expect("write renewd.yaml");
    }

    /// [`Renewd::new`] with this CA as the default account (Pebble's stays defined).
    pub fn renewd(&self, propagation: &str, specs: &[SpecFixture]) -> Renewd<'t> {
        let r = Renewd::new(self.topo, propagation, specs);
        self.use_as_default(&r.config());
        r
    }

    // ---------------------------------------------------------------- internals

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The CA, the EAB key file, the launcher: what stays across restarts.
    fn prepare(&self) -> Result<(), String> {
        let ca = self.dir.join("ca");
        for d in [&ca, &self.dir.join("certs")] {
            fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        // A root, and an intermediate that signs (as Pebble's chain has it), both EC P-256.
        let ca_ext = [
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
            "subjectKeyIdentifier=hash",
        ];
        ec_cert_in(
            &ca,
            &EcCert {
                cn: "renewd test acme2certifier root",
                cert: "root.pem",
                key: "root.key",
                issuer: None,
                extensions: &ca_ext,
            },
        )?;
        ec_cert_in(
            &ca,
            &EcCert {
                cn: "renewd test acme2certifier intermediate",
                cert: "intermediate.pem",
                key: "intermediate.key",
                issuer: Some(("root.pem", "root.key")),
                extensions: &[&ca_ext[..], &["authorityKeyIdentifier=keyid:always"]].concat(),
            },
        )?;
        write_secret(
            &self.dir.join("eab.csv"),
            format!("eab_kid,eab_mac\n{A2C_EAB_KID},{}\n", self.eab_hmac).as_bytes(),
        )?;
        fs::write(self.dir.join("serve.py"), LAUNCHER).map_err(|e| format!("serve.py: {e}"))
    }

    /// Write the configuration, spawn, wait for the directory.
    fn launch(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        validate(&self.opts)?;
        let cfg = self.dir.join("acme_srv.cfg");
        fs::write(&cfg, self.config_ini()).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let pebble = self.topo.dir().join("pebble");
        let mut cmd = self.topo.command(&self.python);
        cmd.arg(self.dir.join("serve.py"))
            .args(["127.0.0.1", &A2C_PORT.to_string()])
            .args([pebble.join("cert.pem"), pebble.join("key.pem")])
            .args([self.dir.join("access.log"), self.dir.join("posts.jsonl")])
            .env("ACME_SRV_CONFIGFILE", &cfg)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(&self.dir);
        let child = spawn_long_lived_logged(cmd, &self.log_path())
            .map_err(|e| format!("spawning acme2certifier: {e}"))?;
        *self.child() = Some(child);
        poll_ready(
            "acme2certifier's directory",
            READY_TIMEOUT,
            || self.check_alive(),
            || self.topo.curl(&self.directory_url()).ok(),
        )?;
        self.startup = t0.elapsed();
        Ok(())
    }

    fn check_alive(&self) -> Result<(), String> {
        let mut child = self.child();
        let Some(c) = child.as_mut() else {
            return Err("acme2certifier is not running".into());
        };
        match c.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                *child = None;
                Err(format!(
                    "acme2certifier exited ({status})\n{}",
                    tail(&self.log_path(), 30)
                ))
            }
            Err(e) => Err(format!("acme2certifier: {e}")),
        }
    }

    fn config_ini(&self) -> String {
        let o = &self.opts;
        let d = |name: &str| self.dir.join(name).display().to_string();
        let json = |v: serde_json::Value| v.to_string();
        let handler = |validity: u32| {
            format!(
                "handler_module: acme2certifier.cahandlers.openssl_ca_handler\n\
                 issuing_ca_key: {}\nissuing_ca_cert: {}\nissuing_ca_crl: {}\n\
                 cert_validity_days: {validity}\ncert_save_path: {}\n",
                d("ca/intermediate.key"),
                d("ca/intermediate.pem"),
                d("ca/crl.pem"),
                d("certs"),
            )
        };
        let mut ini = format!(
            "[DEFAULT]\ndebug: False\ndns_server_list: {dns}\n\n\
             [Nonce]\nnonce_check_disable: False\n\n\
             [DBhandler]\nhandler_module: acme2certifier.dbhandlers.wsgi_handler\ndbfile: {db}\n\n\
             [EABhandler]\neab_handler_module: acme2certifier.eabhandlers.file_handler\n\
             key_file: {eab}\neab_strict_mode: {strict}\n\n\
             [Directory]\ncaaidentities: {caa}\n\n\
             [Challenge]\ndns_persist_01_support: {persist}\ndns_persist_allow_policy_wildcard: {persist}\n\n\
             [Renewalinfo]\nrenewalthreshold_pctg: {pct}\nretry_after_timeout: {retry}\n",
            dns = json(serde_json::json!([CA_RESOLVER_IP.to_string()])),
            db = d("acme_srv.db"),
            eab = d("eab.csv"),
            strict = py_bool(o.eab_required),
            caa = json(serde_json::json!(o.caa_identities)),
            persist = py_bool(o.dns_persist_01),
            pct = o.renewal_threshold_pct,
            retry = o.retry_after.as_secs(),
        );
        if let Some(w) = o.renewal_window {
            ini.push_str(&format!("renewal_window_duration: {}\n", w.as_secs()));
        }
        if o.profiles.is_empty() {
            ini.push_str(&format!("\n[CAhandler]\n{}", handler(o.cert_validity_days)));
            return ini;
        }
        let default_days = o
            .default_profile
            .as_ref()
            .and_then(|name| o.profiles.iter().find(|(n, _)| n == name))
            .map_or(o.cert_validity_days, |(_, days)| *days);
        let described: serde_json::Map<String, serde_json::Value> = o
            .profiles
            .iter()
            .map(|(n, days)| {
                (
                    n.clone(),
                    format!("certificates valid {days} day(s)").into(),
                )
            })
            .collect();
        let routes: serde_json::Map<String, serde_json::Value> = o
            .profiles
            .iter()
            .map(|(n, _)| (n.clone(), format!("profile-{n}").into()))
            .collect();
        ini.push_str(&format!(
            "\n[Order]\nprofiles: {}\nprofile_cahandler: {}\n\n\
             [CAhandler]\nmulti_handler: True\ndefault_handler: default\n\n\
             [CAhandler:default]\n{}",
            json(described.into()),
            json(routes.into()),
            handler(default_days),
        ));
        for (name, days) in &o.profiles {
            ini.push_str(&format!("\n[CAhandler:profile-{name}]\n{}", handler(*days)));
        }
        ini
    }
}

impl Drop for SecondCa<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn validate(o: &SecondCaOptions) -> Result<(), String> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if o.cert_validity_days == 0 || o.profiles.iter().any(|(_, days)| *days == 0) {
        return Err("certificate lifetimes are whole days, at least 1".into());
    }
    if let Some((n, _)) = o.profiles.iter().find(|(n, _)| !name_ok(n)) {
        return Err(format!("profile name {n:?}: letters, digits, - and _ only"));
    }
    if let Some(d) = &o.default_profile {
        if !o.profiles.iter().any(|(n, _)| n == d) {
            return Err(format!("default profile {d:?} is not among the profiles"));
        }
    }
    if o.renewal_window.is_some_and(|w| w.as_secs() == 0) {
        return Err("renewal_window is at least a second".into());
    }
    if !(0.0..=100.0).contains(&o.renewal_threshold_pct) {
        return Err("renewal_threshold_pct is a percentage".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_acme2certifier_says_to_run_install_deps() {
        let empty = tempfile::tempdir().unwrap();
        let e = venv_python(empty.path()).unwrap_err();
        assert!(
            e.contains("acme2certifier is not installed in")
                && e.contains("run `.ci/install-deps`"),
            "{e}"
        );
        assert!(e.contains(A2C_VENV_ENV), "{e}");
    }
}
