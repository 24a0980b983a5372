//! Talking to the service manager: `sd_notify` readiness, status, reload and watchdog messages.
//!
//! # How to use it (in `main`, before any thread exists)
//!
//! ```ignore
//! let notifier = renewd::systemd::Notifier::from_env(); // captures NOTIFY_SOCKET, WATCHDOG_*
//! renewd::systemd::remove_notify_env();                 // no child process may inherit them
//! // ... build the tokio runtime, load the config, make the first plan ...
//! notifier.ready();
//! notifier.status("12 certificates, 0 failing, next: gitlab in 3d 4h");
//! if let Some(every) = notifier.watchdog_interval() { /* ping from the scheduler's own loop */ }
//! ```
//!
//! The protocol ([sd_notify(3)]): one datagram per notification, `KEY=VALUE` lines, sent to the
//! unix datagram socket named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//! The [`sd_notify`] crate supplies the message vocabulary ([`NotifyState`]), the monotonic clock
//! and the `WATCHDOG_USEC`/`WATCHDOG_PID` rules; the sending is done here, on the address captured
//! at start-up, because [`sd_notify::notify`] re-reads `NOTIFY_SOCKET` from the environment on every
//! call (and renewd removes it from the environment, see [`remove_notify_env`]) and does not
//! understand abstract socket names.
//!
//! Sending never blocks (a manager that does not read its socket must not stall the scheduler) and
//! never fails the daemon: the first error is logged at `warn`, later ones at `debug`.
//!
//! [sd_notify(3)]: https://www.freedesktop.org/software/systemd/man/sd_notify.html

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// Where the service manager listens (`Type=notify`).
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// The watchdog timeout in microseconds (`WatchdogSec=`).
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The PID the watchdog timeout is meant for; absent means "the process that reads it".
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// The variables that only the main process may use, and that no child process may inherit: a
/// reload command that inherited them could send `READY=1`/`WATCHDOG=1` on renewd's behalf (or be
/// confused by them), and systemd would (with `NotifyAccess=all`) believe it.
pub const MANAGER_ENV: [&str; 3] = [NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID];

/// Sends notifications to the service manager; every method is a no-op without `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notifier {
    /// The manager's socket and our unbound, non-blocking sending socket; `None`: no manager.
    target: Option<Target>,
    /// The full `WATCHDOG_USEC` timeout, when it is meant for this process.
    watchdog: Option<Duration>,
    /// Whether a sending error was logged at `warn` already.
    warned: AtomicBool,
}

#[derive(Debug)]
struct Target {
    /// `NOTIFY_SOCKET` as given (for messages).
    display: OsString,
    addr: Result<SocketAddr, String>,
    socket: io::Result<UnixDatagram>,
}

impl Notifier {
    /// A notifier for the service manager that started this process: reads `NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC` and `WATCHDOG_PID` now (call [`remove_notify_env`] right after, so that no
    /// child process inherits them). Without `NOTIFY_SOCKET` every method is a no-op.
    pub fn from_env() -> Notifier {
        Notifier::from_values(
            std::env::var_os(NOTIFY_SOCKET),
            std::env::var_os(WATCHDOG_USEC).as_deref(),
            std::env::var_os(WATCHDOG_PID).as_deref(),
        )
    }

    /// A notifier that sends nothing (the CLI commands, and tests).
    pub fn disabled() -> Notifier {
        Notifier::from_values(None, None, None)
    }

    /// A notifier from explicit values of the three variables (what [`Notifier::from_env`] reads).
    ///
    /// `watchdog_usec` is honoured when it is a positive integer and `watchdog_pid` is absent or
    /// names this process (the rule of `sd_watchdog_enabled(3)`).
    pub fn from_values(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
    ) -> Notifier {
        let target = notify_socket
            .filter(|s| !s.is_empty())
            .map(|display| Target {
                addr: socket_addr(&display),
                socket: UnixDatagram::unbound().and_then(|s| {
                    s.set_nonblocking(true)?;
                    Ok(s)
                }),
                display,
            });
        let usec = watchdog_usec
            .and_then(|v| v.to_str())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v > 0);
        let pid_ok = match watchdog_pid {
            None => true,
            Some(p) => p
                .to_str()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .is_some_and(|p| p == std::process::id()),
        };
        Notifier {
            target,
            watchdog: usec.filter(|_| pid_ok).map(Duration::from_micros),
            warned: AtomicBool::new(false),
        }
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` was set).
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: start-up finished (the first plan exists), or a reload finished.
    pub fn ready(&self) {
        self.notify(&[NotifyState::Ready]);
    }

    /// `RELOADING=1` and `MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>` in one datagram (systemd ≥ 253
    /// requires the timestamp for `Type=notify-reload`); follow it with [`Notifier::ready`].
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.notify(&[NotifyState::Reloading, now]),
            // CLOCK_MONOTONIC cannot fail on Linux; say RELOADING=1 anyway.
            Err(e) => {
                self.report(&e);
                self.notify(&[NotifyState::Reloading]);
            }
        }
    }

    /// `STOPPING=1`: shutting down (SIGTERM/SIGINT received).
    pub fn stopping(&self) {
        self.notify(&[NotifyState::Stopping]);
    }

    /// `STATUS=<text>`, shown by `systemctl status`. Line breaks become spaces (one line only).
    pub fn status(&self, text: &str) {
        let line = one_line(text);
        self.notify(&[NotifyState::Status(&line)]);
    }

    /// `WATCHDOG=1`: the scheduler's loop is alive. Call it every [`Notifier::watchdog_interval`].
    pub fn watchdog(&self) {
        self.notify(&[NotifyState::Watchdog]);
    }

    /// How often to call [`Notifier::watchdog`]: half of `WATCHDOG_USEC` (as `sd_watchdog_enabled(3)`
    /// recommends), or `None` when there is no watchdog for this process (no `NOTIFY_SOCKET`, no or
    /// zero `WATCHDOG_USEC`, or `WATCHDOG_PID` names another process).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref()?;
        self.watchdog.map(|d| d / 2)
    }

    /// Sends `states` as one datagram (`KEY=VALUE` lines). Prefer the named methods.
    pub fn notify(&self, states: &[NotifyState<'_>]) {
        let Some(target) = &self.target else {
            return;
        };
        let mut msg = String::new();
        for s in states {
            msg.push_str(&s.to_string());
            msg.push('\n');
        }
        let sent = match (&target.socket, &target.addr) {
            (Ok(socket), Ok(addr)) => socket.send_to_addr(msg.as_bytes(), addr).and_then(|n| {
                if n == msg.len() {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "incomplete datagram",
                    ))
                }
            }),
            (Err(e), _) => Err(io::Error::new(e.kind(), e.to_string())),
            (_, Err(e)) => Err(io::Error::new(io::ErrorKind::InvalidInput, e.clone())),
        };
        if let Err(e) = sent {
            self.report(&io::Error::new(
                e.kind(),
                format!(
                    "sd_notify to {} ({}): {e}",
                    target.display.to_string_lossy(),
                    msg.trim_end().replace('\n', " ")
                ),
            ));
        }
    }

    fn report(&self, e: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "cannot notify the service manager (further errors at debug level)");
        } else {
            tracing::debug!(error = %e, "cannot notify the service manager");
        }
    }
}

/// `NOTIFY_SOCKET` → a socket address: a path, or `@name` for a Linux abstract socket.
fn socket_addr(value: &OsStr) -> Result<SocketAddr, String> {
    let bytes = value.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(name).map_err(|e| e.to_string());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err("abstract socket names need Linux".into());
        }
    }
    if !bytes.starts_with(b"/") {
        // systemd ≥ 254 may also pass `vsock:CID:PORT` (VMs); renewd does not run there.
        return Err(format!(
            "unsupported NOTIFY_SOCKET {:?} (expected an absolute path or @name)",
            value
        ));
    }
    SocketAddr::from_pathname(value).map_err(|e| e.to_string())
}

fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Removes `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from this process's environment, so
/// that no child process (reload commands, `nginx -t`, `gitlab-ctl`, ...) inherits them. Call it
/// right after [`Notifier::from_env`], early in `main`.
///
/// **Call it while the process is single-threaded** (before the tokio runtime or any other thread
/// exists): changing the environment races with any thread that reads it through libc (`getenv`
/// in C libraries, name resolution, ...), which is undefined behaviour. Edition 2021 lets safe
/// code call [`std::env::remove_var`]; edition 2024 makes it `unsafe` for exactly this reason.
pub fn remove_notify_env() {
    for var in MANAGER_ENV {
        std::env::remove_var(var);
    }
}

/// Removes the service manager's variables from `cmd`'s environment (belt and braces on top of
/// [`remove_notify_env`], for every command renewd spawns).
pub fn sanitize_child_env(cmd: &mut Command) {
    for var in MANAGER_ENV {
        cmd.env_remove(var);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Instant;

    /// A test-owned stand-in for systemd's notify socket.
    struct Manager {
        _dir: tempfile::TempDir,
        path: PathBuf,
        socket: UnixDatagram,
    }

    impl Manager {
        fn new() -> Manager {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Manager {
                _dir: dir,
                path,
                socket,
            }
        }

        fn notifier(&self) -> Notifier {
            Notifier::from_values(Some(self.path.clone().into()), None, None)
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).expect("a notification");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }

        fn nothing_pending(&self) -> bool {
            self.socket.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            let r = self.socket.recv(&mut buf);
            self.socket.set_nonblocking(false).unwrap();
            matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }

    fn monotonic_now_usec() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid pointer to a timespec.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
            0
        );
        ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
    }

    #[test]
    fn messages_arrive_exactly() {
        let m = Manager::new();
        let n = m.notifier();
        assert!(n.is_enabled());

        n.ready();
        assert_eq!(m.recv(), "READY=1\n");
        n.status("3 certificates, 0 failing, next: gitlab in 3d 4h");
        assert_eq!(
            m.recv(),
            "STATUS=3 certificates, 0 failing, next: gitlab in 3d 4h\n"
        );
        n.status("config invalid:\nrenewd.yaml:3:1: unknown key");
        assert_eq!(
            m.recv(),
            "STATUS=config invalid: renewd.yaml:3:1: unknown key\n"
        );
        n.stopping();
        assert_eq!(m.recv(), "STOPPING=1\n");
        n.watchdog();
        assert_eq!(m.recv(), "WATCHDOG=1\n");
        assert!(m.nothing_pending());
        assert!(!n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn reloading_carries_monotonic_usec_in_the_same_datagram() {
        let m = Manager::new();
        let n = m.notifier();
        let before = monotonic_now_usec();
        n.reloading();
        let after = monotonic_now_usec();
        let msg = m.recv();
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines.len(), 2, "{msg:?}");
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{msg:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{msg:?}: {e}"));
        assert!(
            before <= usec && usec <= after,
            "{before} <= {usec} <= {after}"
        );
        assert!(msg.ends_with('\n'));
        assert!(m.nothing_pending());
    }

    #[test]
    fn abstract_socket_name() {
        let name = format!("renewd-test-{}-{:?}", std::process::id(), Instant::now());
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::from_values(Some(format!("@{name}").into()), None, None);
        n.ready();
        let mut buf = [0u8; 64];
        let len = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\n");
    }

    #[test]
    fn no_socket_is_a_no_op() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.ready();
        n.reloading();
        n.status("x");
        n.watchdog();
        n.stopping();
        assert_eq!(n.watchdog_interval(), None);
        assert!(!n.warned.load(Ordering::Relaxed));
        // WATCHDOG_USEC without a socket to ping: no watchdog either.
        let n = Notifier::from_values(None, Some(OsStr::new("10000000")), None);
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn a_vanished_socket_is_not_fatal() {
        let m = Manager::new();
        let n = m.notifier();
        std::fs::remove_file(&m.path).unwrap();
        n.ready();
        assert!(n.warned.load(Ordering::Relaxed));
        n.watchdog(); // logged at debug, still no panic
        let bad = Notifier::from_values(Some("vsock:2:1234".into()), None, None);
        bad.ready();
        assert!(bad.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn watchdog_interval_is_half_and_honours_watchdog_pid() {
        let sock = || Some(OsString::from("/nonexistent/notify"));
        let me = std::process::id().to_string();
        let usec = OsStr::new("10000000");
        let n = Notifier::from_values(sock(), Some(usec), None);
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
        let n = Notifier::from_values(sock(), Some(usec), Some(OsStr::new(&me)));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
        let other = (std::process::id() + 1).to_string();
        let n = Notifier::from_values(sock(), Some(usec), Some(OsStr::new(&other)));
        assert_eq!(n.watchdog_interval(), None);
        let n = Notifier::from_values(sock(), Some(usec), Some(OsStr::new("garbage")));
        assert_eq!(n.watchdog_interval(), None);
        for bad in ["0", "", "-5", "ten"] {
            let n = Notifier::from_values(sock(), Some(OsStr::new(bad)), None);
            assert_eq!(n.watchdog_interval(), None, "WATCHDOG_USEC={bad:?}");
        }
        let n = Notifier::from_values(sock(), Some(OsStr::new("3")), None);
        assert_eq!(n.watchdog_interval(), Some(Duration::from_nanos(1500)));
    }

    #[test]
    fn sanitize_child_env_removes_the_manager_variables() {
        let mut cmd = Command::new("env");
        cmd.env(NOTIFY_SOCKET, "/run/systemd/notify")
            .env(WATCHDOG_USEC, "1000")
            .env(WATCHDOG_PID, "1")
            .env("RENEWD_KEEP_ME", "1");
        sanitize_child_env(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let env = String::from_utf8(out.stdout).unwrap();
        assert!(env.lines().any(|l| l == "RENEWD_KEEP_ME=1"), "{env}");
        for var in MANAGER_ENV {
            assert!(
                !env.lines().any(|l| l.starts_with(&format!("{var}="))),
                "{var} in {env}"
            );
        }
    }

    /// Changing the environment is only sound single-threaded, and libtest runs tests on many
    /// threads: so this test runs itself again as a child process (one test, the probe below)
    /// with the manager's variables set, and the child removes them and spawns `env`.
    #[test]
    fn remove_notify_env_hides_the_socket_from_children() {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--exact",
                "systemd::tests::remove_notify_env_probe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE_ENV, "1")
            .env(NOTIFY_SOCKET, "/run/systemd/notify")
            .env(WATCHDOG_USEC, "30000000")
            .env(WATCHDOG_PID, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("probe: no manager variables in env"),
            "{text}"
        );
    }

    const PROBE_ENV: &str = "RENEWD_TEST_REMOVE_NOTIFY_ENV_PROBE";

    /// The child half of the test above; does nothing when run normally.
    #[test]
    fn remove_notify_env_probe() {
        if std::env::var_os(PROBE_ENV).is_none() {
            return;
        }
        let n = Notifier::from_env();
        assert!(n.is_enabled());
        remove_notify_env();
        for var in MANAGER_ENV {
            assert!(std::env::var_os(var).is_none(), "{var} still set");
        }
        let out = Command::new("env").output().unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        for var in MANAGER_ENV {
            assert!(
                !env.lines().any(|l| l.starts_with(&format!("{var}="))),
                "{var} inherited: {env}"
            );
        }
        // The captured target still works after the variable is gone.
        assert!(n.is_enabled());
        println!("probe: no manager variables in env");
    }
}
