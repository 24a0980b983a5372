//! A renewd installation for one test: global config, specs, secrets and state in a tempdir, wired to a
//! [`Topology`], and helpers to run the real `renewd` binary inside the topology's network namespace.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, SystemTime};

use super::fixtures::SpecFixture;
use super::journald::JournaldSandbox;
use super::proc::output_with_timeout;
use super::renewd_bin;
use super::topology::Topology;

/// How long one `renewd` command may take in a test before it is killed (generous for slow CI).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Renewd<'t> {
    pub topo: &'t Topology,
    pub dir: PathBuf,
}

impl<'t> Renewd<'t> {
    /// Write the config of [`Topology::write_renewd_config_with`] (account `pebble`, dns server
    /// `acme-master`, ECDSA P-256 keys by default) with `propagation.timeout` set, and the specs.
    pub fn new(topo: &'t Topology, propagation: &str, specs: &[SpecFixture]) -> Self {
        Self::with_global(topo, propagation, specs, &[])
    }

    /// [`Renewd::new`] with extra global YAML lines (e.g. `stop_grace: 2s`).
    pub fn with_global(
        topo: &'t Topology,
        propagation: &str,
        specs: &[SpecFixture],
        global_extra: &[&str],
    ) -> Self {
        Self::in_dir(
            topo,
            topo.dir().join("renewd"),
            propagation,
            specs,
            global_extra,
        )
    }

    /// One of several renewd installations in the same topology (the hosts of a `cluster:`): like
    /// [`Renewd::with_global`], but in `<topology dir>/NAME`, so each has its own configuration,
    /// secrets, `certs.d/` and `state/`. `name` is a new directory name there (not a server's, not
    /// `renewd`, not one used before).
    pub fn member(
        topo: &'t Topology,
        name: &str,
        propagation: &str,
        specs: &[SpecFixture],
        global_extra: &[&str],
    ) -> Self {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        assert!(ok, "renewd member name {name:?}: letters, digits, - and _");
        let dir = topo.dir().join(name);
        assert!(
            !dir.exists(),
            "{} exists: choose another renewd member name",
            dir.display()
        );
        Self::in_dir(topo, dir, propagation, specs, global_extra)
    }

    fn in_dir(
        topo: &'t Topology,
        dir: PathBuf,
        propagation: &str,
        specs: &[SpecFixture],
        global_extra: &[&str],
    ) -> Self {
        topo.write_renewd_config_with(&dir, specs, global_extra);
        let config = dir.join("renewd.yaml");
        let text = fs::read_to_string(&config).unwrap();
        let text = text.replace("timeout: 30s", &format!("timeout: {propagation}"));
        fs::write(&config, text).unwrap();
        Renewd { topo, dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("renewd.yaml")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn live(&self, name: &str, file: &str) -> PathBuf {
        self.state().join("live").join(name).join(file)
    }

    /// Run `renewd --config CONFIG ARGS...` inside the topology and wait for it.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.topo.command(renewd_bin());
        cmd.arg("--config").arg(self.config()).args(args);
        let out = output_with_timeout(&mut cmd, RUN_TIMEOUT).expect("renewd runs");
        Run::from(out)
    }

    /// Start `renewd ARGS...` without waiting (for kill tests).
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.topo.command(renewd_bin());
        cmd.arg("--config")
            .arg(self.config())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().expect("renewd starts")
    }

    /// Start `renewd ARGS...` with stdout and stderr appended to `log` (readable while it runs) and
    /// extra environment variables.
    pub fn spawn_logged(&self, args: &[&str], log: &Path, env: &[(&str, &str)]) -> Child {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = self.topo.command(renewd_bin());
        cmd.arg("--config")
            .arg(self.config())
            .args(args)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("renewd starts")
    }

    /// Start `renewd run` the way systemd runs the service with its output going to `journal`
    /// (a real journald: [`JournaldSandbox::attach_as_service`], identifier `renewd`).
    pub fn spawn_daemon_under_journald(&self, journal: &JournaldSandbox) -> Child {
        let mut cmd = self.topo.command(renewd_bin());
        cmd.arg("--config").arg(self.config()).arg("run");
        journal
            .attach_as_service(&mut cmd, "renewd")
            .expect("a journal stream");
        cmd.spawn().expect("renewd starts")
    }

    /// The daemon's `state_dir/status.json` (Null while there is none).
    pub fn status_json(&self) -> serde_json::Value {
        let text = fs::read_to_string(self.state().join("status.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    pub fn spec_path(&self, name: &str) -> PathBuf {
        self.dir.join("certs.d").join(format!("{name}.yaml"))
    }

    /// Names of the records in the cleanup journal.
    pub fn journal_records(&self) -> Vec<String> {
        match fs::read_dir(self.state().join("journal")) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// The result of one renewd command, with its output kept for assertion messages.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panic with the whole output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "renewd exited {:?}, expected {code}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The stdout line about certificate `name`.
    pub fn line(&self, name: &str) -> &str {
        let prefix = format!("{name}: ");
        self.stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for {name} in\n{}{}", self.stdout, self.stderr))
    }
}

/// File mode bits (permissions only) of `path`, following symlinks.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `renewd --config CONFIG run` outside any topology (a daemon with no certificate to issue, or none it
/// can reach), reporting to `sock`; its log is discarded.
pub fn spawn_run(config: &Path, sock: &super::notify::NotifySocket) -> Child {
    std::process::Command::new(renewd_bin())
        .arg("--config")
        .arg(config)
        .arg("run")
        .envs([sock.env()])
        .stderr(Stdio::null())
        .spawn()
        .expect("renewd run starts")
}

/// Poll until `child` exits (reaping it); None after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    super::proc::poll_until(timeout, Duration::from_millis(20), || {
        child.try_wait().ok().flatten()
    })
}

/// Send `sig` to the process `pid` (one we started).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child PID we own.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Poll the primary until it serves a TXT value at `owner` (renewd published it); returns the values.
pub fn wait_published(topo: &Topology, owner: &str) -> Vec<String> {
    super::proc::poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let v = topo.txt_at(topo.master_addr(), owner);
        (!v.is_empty()).then_some(v)
    })
    .unwrap_or_else(|| panic!("no TXT value published at {owner} within 30 s"))
}

/// A log file's text (empty while there is none), for assertion messages.
pub fn log_text(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_default()
}

/// The RFC 3339 time in a JSON string (`status.json`, `renewd status --json`); panics with the value
/// when it is not one.
pub fn json_time(v: &serde_json::Value) -> SystemTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a time string: {v}"));
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// SIGTERM a daemon started with [`Renewd::spawn_logged`] and wait (20 s) for it to exit 0; panics with
/// its log otherwise.
pub fn stop_daemon(mut daemon: Child, log: &Path) {
    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("daemon did not exit\n{}", log_text(log)));
    assert!(status.success(), "exit {status}\n{}", log_text(log));
}
