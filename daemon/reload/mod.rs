//! Reloads and hooks: what runs after a certificate was deployed (DESIGN.md "How a renewal goes", step 5).
//!
//! | `reload:` entry | config test | reload |
//! |---|---|---|
//! | `nginx: {}` | `nginx -t` | `systemctl reload nginx.service` when systemd runs the machine (`/run/systemd/system` exists), else `nginx -s reload` |
//! | `nginx: { config: PATH }` | `nginx -c PATH -t` | `nginx -c PATH -s reload` (a private instance: never via systemctl) |
//! | `apache: {}` | `apachectl configtest` | `apachectl graceful` |
//! | `apache: { config: PATH }` | same, with `APACHE_CONFDIR=dirname(PATH)` and `APACHE_ARGUMENTS=-f PATH` (Debian's apache2ctl) | same |
//! | `gitlab: SERVICE` | — | `gitlab-ctl hup SERVICE` |
//! | `systemd: UNIT` | — | `systemctl reload UNIT` |
//! | `command: [ARGV…]` | — | ARGV with `{name}` `{fullchain}` `{cert}` `{chain}` `{key}` (files in `live/NAME/`) and `{domains}` (space-separated) expanded |
//! | `hooks: [PROGRAM or ARGV…]` | — | ARGV as written (certbot deploy hooks) |
//!
//! Every config test runs before anything is reloaded ([`config_tests`]); if one fails, nothing is
//! reloaded and the caller ([`crate::deploy::install`]) puts the previous files back. Once the tests passed,
//! every reload, command and hook runs in order ([`reload_all`]); failures are collected, not fatal to the
//! others, since earlier steps may already serve the new files.
//!
//! # How children run
//! No shell. stdin is `/dev/null`; stdout and stderr are captured and logged line by line. Each child is
//! the leader of its own process group, and on timeout the whole group is killed (SIGKILL). The environment
//! is cleared and set to exactly ([`child_env`]):
//!
//! - `PATH=/usr/sbin:/usr/bin:/sbin:/bin`, or the value of `RENEWD_RELOAD_PATH` in renewd's own environment
//!   when that is set (for servers installed elsewhere, and for tests' stand-in tools)
//! - `LANG=C.UTF-8`
//! - `RENEWED_LINEAGE`: the certificate's `live/NAME` directory (as certbot's `/etc/letsencrypt/live/NAME`)
//! - `RENEWED_DOMAINS`: the certificate's names, space-separated (as certbot)
//!
//! and `NOTIFY_SOCKET`/`WATCHDOG_*` are removed ([`crate::systemd::sanitize_child_env`]) so no child can
//! speak to systemd in renewd's name.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::ReloadSpec;
use crate::state;

/// The children's `PATH` unless [`PATH_OVERRIDE_ENV`] is set.
pub const DEFAULT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// renewd's environment variable that replaces [`DEFAULT_PATH`] for every child.
pub const PATH_OVERRIDE_ENV: &str = "RENEWD_RELOAD_PATH";
/// How long a config test or a built-in reload (nginx, apache, gitlab, systemd) may take.
pub const BUILTIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What a child needs to know about the certificate.
#[derive(Debug, Clone)]
pub struct Context {
    pub name: String,
    pub domains: Vec<String>,
    /// `state_dir/live/NAME`: holds cert.pem, chain.pem, fullchain.pem, privkey.pem.
    pub lineage: PathBuf,
}

impl Context {
    /// Expand `{name}` `{fullchain}` `{cert}` `{chain}` `{key}` `{domains}` in one argument. Other braces
    /// are left as written.
    pub fn expand(&self, arg: &str) -> String {
        let file = |f: &str| self.lineage.join(f).to_string_lossy().into_owned();
        arg.replace("{name}", &self.name)
            .replace("{fullchain}", &file(state::FULLCHAIN_FILE))
            .replace("{cert}", &file(state::CERT_FILE))
            .replace("{chain}", &file(state::CHAIN_FILE))
            .replace("{key}", &file(state::PRIVKEY_FILE))
            .replace("{domains}", &self.domains.join(" "))
    }
}

/// The exact environment of every child (see the module documentation).
pub fn child_env(cx: &Context) -> Vec<(String, String)> {
    let path = std::env::var(PATH_OVERRIDE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    vec![
        ("PATH".into(), path),
        ("LANG".into(), "C.UTF-8".into()),
        (
            "RENEWED_LINEAGE".into(),
            cx.lineage.to_string_lossy().into_owned(),
        ),
        ("RENEWED_DOMAINS".into(), cx.domains.join(" ")),
    ]
}

/// One program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub argv: Vec<String>,
    /// Extra environment on top of [`child_env`].
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Step {
    fn new(argv: &[&str]) -> Step {
        Step {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            timeout: BUILTIN_TIMEOUT,
        }
    }

    fn display(&self) -> String {
        self.argv.join(" ")
    }
}

/// True when systemd manages this machine (sd_booted(3)).
fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn apache_env(config: &Path) -> Vec<(String, String)> {
    let dir = config.parent().unwrap_or(Path::new("/"));
    vec![
        ("APACHE_CONFDIR".into(), dir.to_string_lossy().into_owned()),
        (
            "APACHE_ARGUMENTS".into(),
            format!("-f {}", config.to_string_lossy()),
        ),
    ]
}

/// The config test of an entry, if it has one.
pub fn config_test(spec: &ReloadSpec) -> Option<Step> {
    match spec {
        ReloadSpec::Nginx => Some(Step::new(&["nginx", "-t"])),
        ReloadSpec::NginxConfig(c) => Some(Step::new(&["nginx", "-c", &c.to_string_lossy(), "-t"])),
        ReloadSpec::Apache => Some(Step::new(&["apachectl", "configtest"])),
        ReloadSpec::ApacheConfig(c) => Some(Step {
            env: apache_env(c),
            ..Step::new(&["apachectl", "configtest"])
        }),
        _ => None,
    }
}

/// The reload (or command, or hook) of an entry, placeholders expanded.
pub fn reload_step(spec: &ReloadSpec, cx: &Context) -> Step {
    match spec {
        ReloadSpec::Nginx if systemd_booted() => {
            Step::new(&["systemctl", "reload", "nginx.service"])
        }
        ReloadSpec::Nginx => Step::new(&["nginx", "-s", "reload"]),
        ReloadSpec::NginxConfig(c) => {
            Step::new(&["nginx", "-c", &c.to_string_lossy(), "-s", "reload"])
        }
        ReloadSpec::Apache => Step::new(&["apachectl", "graceful"]),
        ReloadSpec::ApacheConfig(c) => Step {
            env: apache_env(c),
            ..Step::new(&["apachectl", "graceful"])
        },
        ReloadSpec::Gitlab(service) => Step::new(&["gitlab-ctl", "hup", service]),
        ReloadSpec::Systemd(unit) => Step::new(&["systemctl", "reload", unit]),
        ReloadSpec::Command { argv, timeout } => Step {
            argv: argv.iter().map(|a| cx.expand(a)).collect(),
            env: Vec::new(),
            timeout: *timeout,
        },
        ReloadSpec::Hook { argv, timeout } => Step {
            argv: argv.clone(),
            env: Vec::new(),
            timeout: *timeout,
        },
    }
}

/// How a child ended.
#[derive(Debug)]
pub struct Finished {
    /// `None`: killed after its timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The first non-empty line of stderr, else of stdout.
    pub fn first_line(&self) -> Option<&str> {
        first_line(&self.stderr).or_else(|| first_line(&self.stdout))
    }
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

/// Run one step (see the module documentation for the environment) and wait for it, at most its timeout.
/// `Err`: it could not be started.
pub fn run(step: &Step, cx: &Context) -> std::io::Result<Finished> {
    let started = Instant::now();
    let mut cmd = Command::new(&step.argv[0]);
    cmd.args(&step.argv[1..])
        .env_clear()
        .envs(child_env(cx))
        .envs(step.env.iter().cloned())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    crate::systemd::sanitize_child_env(&mut cmd);
    let mut child = cmd.spawn()?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        if let Some(mut pipe) = pipe {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            });
        }
        rx
    };
    let out_rx = reader(child.stdout.take().map(|p| Box::new(p) as _));
    let err_rx = reader(child.stderr.take().map(|p| Box::new(p) as _));
    let pid = child.id() as libc::pid_t;
    // One thread waits for the child; this one waits for that thread's word or the deadline (no polling).
    let (exit_tx, exit_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exit_tx.send(child.wait());
    });
    let status = match exit_rx.recv_timeout(step.timeout) {
        Ok(status) => Some(status?),
        Err(_) => {
            // SAFETY: kill(2) on the process group we created for this child (process_group(0)).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            // Reaped by the waiting thread; SIGKILL cannot be ignored, so this returns promptly.
            let _ = exit_rx.recv();
            None
        }
    };
    // A grandchild that left the process group may keep the pipes open: do not wait for it forever.
    let collect =
        |rx: mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    Ok(Finished {
        status,
        stdout: collect(out_rx),
        stderr: collect(err_rx),
        elapsed: started.elapsed(),
    })
}

/// How a reload step ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Why a config test, reload, command or hook failed. Displays as the text after "reload failed: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// A config test (`nginx -t`, `apachectl configtest`) failed: the tool's first line of output.
    #[error("{first_line}")]
    ConfigTest {
        command: String,
        first_line: String,
        exit: Exit,
    },
    /// The step ran past its timeout; it and its process group were killed.
    #[error("`{command}` did not finish within {}; killed it and its process group", humantime::format_duration(*.after))]
    Timeout { command: String, after: Duration },
    /// The step ended unsuccessfully.
    #[error("`{command}` {}{}", exit_text(.exit), .first_line.as_ref().map(|l| format!(": {l}")).unwrap_or_default())]
    Failed {
        command: String,
        exit: Exit,
        first_line: Option<String>,
    },
    /// The program is not in the children's PATH.
    #[error("`{program}` not found in PATH {path}")]
    NotFound { program: String, path: String },
    /// The program could not be started for another reason.
    #[error("cannot start `{command}`: {reason}")]
    NotStarted { command: String, reason: String },
}

fn exit_text(exit: &Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited with status {c}"),
        Exit::Signal(s) => format!("was killed by signal {s}"),
    }
}

/// Run `step`, log its output, and say why it failed. `config_test`: a failed config test is described by
/// the tool's first line alone ([`ReloadError::ConfigTest`]).
fn run_logged(step: &Step, cx: &Context, config_test: bool) -> Result<(), ReloadError> {
    let what = step.display();
    let fin = match run(step, cx) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReloadError::NotFound {
                program: step.argv[0].clone(),
                path: child_env(cx)[0].1.clone(),
            })
        }
        Err(e) => {
            return Err(ReloadError::NotStarted {
                command: what,
                reason: e.to_string(),
            })
        }
    };
    for (stream, text) in [("stdout", &fin.stdout), ("stderr", &fin.stderr)] {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(command = %what, stream, "{line}");
        }
    }
    let Some(status) = fin.status else {
        return Err(ReloadError::Timeout {
            command: what,
            after: step.timeout,
        });
    };
    if status.success() {
        tracing::info!(command = %what, elapsed_ms = fin.elapsed.as_millis() as u64, "`{what}` succeeded");
        return Ok(());
    }
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(sig),
        _ => Exit::Code(-1),
    };
    let first_line = fin.first_line().map(str::to_string);
    Err(match first_line {
        Some(first_line) if config_test => ReloadError::ConfigTest {
            command: what,
            first_line,
            exit,
        },
        first_line => ReloadError::Failed {
            command: what,
            exit,
            first_line,
        },
    })
}

/// Run the config test of every entry that has one. `Err`: the first failure; nothing must be reloaded
/// then.
pub fn config_tests(specs: &[ReloadSpec], cx: &Context) -> Result<(), ReloadError> {
    for step in specs.iter().filter_map(config_test) {
        run_logged(&step, cx, true)?;
    }
    Ok(())
}

/// Run every reload, command and hook in order. Returns the failures, in order.
pub fn reload_all(specs: &[ReloadSpec], cx: &Context) -> Vec<ReloadError> {
    specs
        .iter()
        .filter_map(|s| run_logged(&reload_step(s, cx), cx, false).err())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            name: "web".into(),
            domains: vec!["a.example".into(), "b.example".into()],
            lineage: "/var/lib/renewd/live/web".into(),
        }
    }

    fn sh(script: &str, timeout: Duration) -> Step {
        Step {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: Vec::new(),
            timeout,
        }
    }

    #[test]
    fn placeholders_expand_to_live_files_and_domains() {
        let step = reload_step(
            &ReloadSpec::Command {
                argv: vec![
                    "/x".into(),
                    "{name}".into(),
                    "--cert={fullchain}".into(),
                    "{cert}".into(),
                    "{chain}".into(),
                    "{key}".into(),
                    "{domains}".into(),
                    "{other}".into(),
                ],
                timeout: Duration::from_secs(5),
            },
            &cx(),
        );
        assert_eq!(
            step.argv,
            vec![
                "/x",
                "web",
                "--cert=/var/lib/renewd/live/web/fullchain.pem",
                "/var/lib/renewd/live/web/cert.pem",
                "/var/lib/renewd/live/web/chain.pem",
                "/var/lib/renewd/live/web/privkey.pem",
                "a.example b.example",
                "{other}",
            ]
        );
        // Hooks are run as written.
        let hook = ReloadSpec::Hook {
            argv: vec!["/h".into(), "{key}".into()],
            timeout: Duration::from_secs(5),
        };
        assert_eq!(reload_step(&hook, &cx()).argv, vec!["/h", "{key}"]);
    }

    #[test]
    fn built_in_kinds() {
        let c = PathBuf::from("/srv/a/apache2.conf");
        assert_eq!(
            config_test(&ReloadSpec::NginxConfig("/n.conf".into()))
                .unwrap()
                .argv,
            vec!["nginx", "-c", "/n.conf", "-t"]
        );
        let t = config_test(&ReloadSpec::ApacheConfig(c.clone())).unwrap();
        assert_eq!(t.argv, vec!["apachectl", "configtest"]);
        assert!(t.env.contains(&("APACHE_CONFDIR".into(), "/srv/a".into())));
        assert_eq!(
            reload_step(&ReloadSpec::Gitlab("nginx".into()), &cx()).argv,
            vec!["gitlab-ctl", "hup", "nginx"]
        );
        assert_eq!(
            reload_step(&ReloadSpec::Systemd("haproxy.service".into()), &cx()).argv,
            vec!["systemctl", "reload", "haproxy.service"]
        );
        assert!(config_test(&ReloadSpec::Gitlab("nginx".into())).is_none());
    }

    #[test]
    fn children_get_exactly_the_documented_environment() {
        let fin = run(&sh("env | sort", Duration::from_secs(10)), &cx()).unwrap();
        assert!(fin.success(), "{fin:?}");
        let mut vars: Vec<&str> = fin.stdout.lines().collect();
        // sh itself adds PWD (and on some shells SHLVL, _); everything else must be ours.
        vars.retain(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="));
        let path = std::env::var(PATH_OVERRIDE_ENV).unwrap_or(DEFAULT_PATH.into());
        assert_eq!(
            vars,
            vec![
                "LANG=C.UTF-8".to_string(),
                format!("PATH={path}"),
                "RENEWED_DOMAINS=a.example b.example".to_string(),
                "RENEWED_LINEAGE=/var/lib/renewd/live/web".to_string(),
            ]
        );
        let fin = run(
            &sh("cat; readlink /proc/self/fd/0", Duration::from_secs(10)),
            &cx(),
        )
        .unwrap();
        assert_eq!(fin.stdout.trim(), "/dev/null");
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        let script = format!(
            "sleep 30 & echo $! > {p}; echo started; sleep 30",
            p = pidfile.display()
        );
        let t0 = Instant::now();
        let fin = run(&sh(&script, Duration::from_millis(500)), &cx()).unwrap();
        assert!(fin.status.is_none(), "{fin:?}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert_eq!(fin.stdout.trim(), "started");
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered asynchronously: poll (bounded) until the grandchild is gone or a zombie
        // waiting for whoever inherited it.
        let dead = || {
            let stat =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            (state.is_none() || state == Some('Z'), stat)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dead().0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (gone, stat) = dead();
        assert!(gone, "grandchild still runs: {stat}");
    }

    #[test]
    fn failures_are_one_line() {
        let c = cx();
        let e = run_logged(
            &sh(
                "echo out; echo 'bad thing' >&2; echo more >&2; exit 3",
                Duration::from_secs(5),
            ),
            &c,
            false,
        )
        .unwrap_err();
        assert!(
            matches!(
                &e,
                ReloadError::Failed {
                    exit: Exit::Code(3),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "`/bin/sh -c echo out; echo 'bad thing' >&2; echo more >&2; exit 3` exited with status 3: bad thing");
        let e = run_logged(
            &sh(
                "echo 'nginx: [emerg] x' >&2; exit 1",
                Duration::from_secs(5),
            ),
            &c,
            true,
        )
        .unwrap_err();
        assert!(
            matches!(
                &e,
                ReloadError::ConfigTest {
                    exit: Exit::Code(1),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "nginx: [emerg] x");
        let missing = Step::new(&["renewd-no-such-tool"]);
        let e = run_logged(&missing, &c, false).unwrap_err();
        assert!(matches!(&e, ReloadError::NotFound { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("`renewd-no-such-tool` not found in PATH"),
            "{e}"
        );
        assert!(run_logged(&sh("exit 0", Duration::from_secs(5)), &c, false).is_ok());
    }
}
