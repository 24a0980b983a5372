//! Process plumbing for the harness: one long-lived spawner thread, and bounded waits on commands.

use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

type Job = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from a thread that lives as long as the test process.
///
/// Every server gets `PR_SET_PDEATHSIG(SIGKILL)`, and Linux sends it when the *thread* that forked
/// the child exits, not the process. libtest runs each test on its own thread, and a test may start a
/// topology on a helper thread and hand it back; forking from a thread that never exits means the
/// servers die exactly when the test process does, and not a moment earlier.
pub fn spawn_long_lived(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("topology-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the topology spawner thread");
        tx
    });
    let gone = || io::Error::other("topology spawner thread is gone");
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send((cmd, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

/// [`spawn_long_lived`] with stdin from `/dev/null` and stdout and stderr appended to `log` (created
/// if need be; readable while the server runs). `Err` says which file or why the spawn failed.
pub fn spawn_long_lived_logged(mut cmd: Command, log: &Path) -> Result<Child, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    spawn_long_lived(cmd).map_err(|e| e.to_string())
}

/// SIGTERM every child, wait up to `grace` for all of them together, SIGKILL the rest (reaping each).
/// `L` names a child in the message about one that ignored SIGTERM.
pub fn stop_children<L: std::fmt::Debug>(mut children: Vec<(L, Child)>, grace: Duration) {
    for (_, child) in &children {
        // SAFETY: signalling a child we spawned and have not reaped (so the PID is still ours).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while !children.is_empty() && Instant::now() < deadline {
        children.retain_mut(|(_, c)| matches!(c.try_wait(), Ok(None)));
        if !children.is_empty() {
            thread::sleep(Duration::from_millis(10));
        }
    }
    for (label, mut child) in children {
        eprintln!(
            "{label:?} (pid {}) ignored SIGTERM for {grace:?}; SIGKILL",
            child.id()
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Like [`Command::output`], but kills the child and fails after `timeout` (a hung renewd or dig
/// must fail the test, not hang CI). Stdin is null unless the caller set it.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{:?} still running after {timeout:?}; killed it.\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    cmd,
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                ),
            ));
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// Calls `f` every `interval` until it returns `Some` (returned), or `None` once `timeout` passed.
pub fn poll_until<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        thread::sleep(interval);
    }
}

/// Calls `probe` every 20 ms until it returns `Some`, or fails with `what` after `timeout`.
/// `alive` is asked between tries so a server that died fails fast, with its reason.
pub fn poll_ready<T>(
    what: &str,
    timeout: Duration,
    alive: impl FnMut() -> Result<(), String>,
    probe: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let every = Duration::from_millis(20);
    poll_paced(what, timeout, every, every, alive, probe)
}

/// [`poll_ready`] with exponential backoff: 20 ms after the first try, twice as long after each
/// next, at most `max_pause`. For probes that cost a process start each (etcdctl) and may need a
/// while: quick when the answer comes at once, few tries when it does not.
pub fn poll_ready_backoff<T>(
    what: &str,
    timeout: Duration,
    max_pause: Duration,
    alive: impl FnMut() -> Result<(), String>,
    probe: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    poll_paced(
        what,
        timeout,
        Duration::from_millis(20),
        max_pause,
        alive,
        probe,
    )
}

fn poll_paced<T>(
    what: &str,
    timeout: Duration,
    first_pause: Duration,
    max_pause: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    let mut pause = first_pause;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        alive()?;
        if start.elapsed() >= timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        thread::sleep(pause);
        pause = (pause * 2).min(max_pause);
    }
}

/// The last `n` lines of a log file (for error messages), or a note that it cannot be read.
pub fn tail(path: &std::path::Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            format!(
                "--- last lines of {} ---\n{}",
                path.display(),
                lines[from..].join("\n")
            )
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
