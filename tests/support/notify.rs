//! A test-owned `NOTIFY_SOCKET`: the unix datagram socket systemd would listen on for a
//! `Type=notify` service, so a test can check the exact `sd_notify` messages renewd sends.
//!
//! ```ignore
//! let notify = NotifySocket::new();
//! let mut cmd = topo.command(renewd_bin());         // Topology::command removes NOTIFY_SOCKET...
//! cmd.envs([notify.env()]).env("WATCHDOG_USEC", "2000000"); // ...so set it afterwards
//! let ready = notify.recv_until(|m| m.lines().any(|l| l == "READY=1"), Duration::from_secs(30));
//! assert_eq!(field(ready.last().unwrap(), "READY"), Some("1"));
//! ```
//!
//! Each datagram is one message, kept as received minus the final newline (`"RELOADING=1\n
//! MONOTONIC_USEC=123"`); [`field`] and [`fields`] split one into `KEY=VALUE` lines. Receiving
//! blocks on the socket with a read timeout (no sleeps).

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
    /// Every message received so far, in order.
    received: Mutex<Vec<String>>,
}

impl Default for NotifySocket {
    fn default() -> Self {
        Self::new()
    }
}

impl NotifySocket {
    /// Binds a fresh socket in a new tempdir (world-writable like systemd's, in case the daemon
    /// drops privileges).
    pub fn new() -> NotifySocket {
        let dir = tempfile::Builder::new()
            .prefix("renewd-notify-")
            .tempdir()
            .expect("tempdir for the notify socket");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
        NotifySocket {
            _dir: dir,
            path,
            socket,
            received: Mutex::new(Vec::new()),
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `("NOTIFY_SOCKET", path)`, for `cmd.envs([sock.env()])`.
    pub fn env(&self) -> (&'static str, OsString) {
        ("NOTIFY_SOCKET", self.path.clone().into_os_string())
    }

    /// Receives messages until one satisfies `pred` or `timeout` passes; returns the messages
    /// received during this call (the matching one last, if one came — check it). Messages
    /// received earlier are not looked at again: see [`NotifySocket::messages`].
    pub fn recv_until(&self, pred: impl FnMut(&str) -> bool, timeout: Duration) -> Vec<String> {
        self.collect(pred, timeout).0
    }

    /// Like [`NotifySocket::recv_until`], but panics (listing every message so far) unless a
    /// matching message arrives within `timeout`; returns the matching message.
    #[track_caller]
    pub fn expect(&self, what: &str, pred: impl FnMut(&str) -> bool, timeout: Duration) -> String {
        match self.collect(pred, timeout) {
            (mut got, true) => got.pop().expect("the matching message"),
            (_, false) => panic!(
                "no sd_notify message {what} within {timeout:?}; all messages so far: {:#?}",
                self.messages()
            ),
        }
    }

    fn collect(
        &self,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> (Vec<String>, bool) {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Past the deadline, still take what is already queued (without waiting).
            let wait = (!left.is_zero()).then_some(left);
            match self.recv_one(wait) {
                Ok(Some(msg)) => {
                    let done = pred(&msg);
                    got.push(msg);
                    if done {
                        return (got, true);
                    }
                }
                Ok(None) if wait.is_none() => return (got, false),
                Ok(None) => {}
                Err(e) => panic!("receiving on {}: {e}", self.path.display()),
            }
        }
    }

    /// Every message received so far (first taking in, without waiting, what is queued).
    pub fn messages(&self) -> Vec<String> {
        while let Ok(Some(_)) = self.recv_one(None) {}
        self.received.lock().unwrap().clone()
    }

    /// Every line of every datagram received so far (a datagram may carry several `KEY=VALUE` lines).
    pub fn lines(&self) -> Vec<String> {
        self.messages()
            .iter()
            .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// Wait until `line` was received `n` times in all; panics after `timeout`.
    pub fn wait_count(&self, line: &str, n: usize, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.lines().iter().filter(|l| *l == line).count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {n} {line} within {timeout:?}: {:?}",
                self.lines()
            );
            self.recv_until(|_| true, Duration::from_millis(100));
        }
    }

    /// One datagram: waits up to `wait` (`None`: do not wait). `Ok(None)`: nothing came.
    fn recv_one(&self, wait: Option<Duration>) -> io::Result<Option<String>> {
        let mut buf = vec![0u8; 64 * 1024];
        let r = match wait {
            None => {
                self.socket.set_nonblocking(true)?;
                let r = self.socket.recv(&mut buf);
                self.socket.set_nonblocking(false)?;
                r
            }
            Some(d) => {
                // A zero read timeout means "block forever" to the kernel: never pass one.
                self.socket
                    .set_read_timeout(Some(d.max(Duration::from_millis(1))))?;
                self.socket.recv(&mut buf)
            }
        };
        match r {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let msg = text.strip_suffix('\n').unwrap_or(&text).to_string();
                self.received.lock().unwrap().push(msg.clone());
                Ok(Some(msg))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The `KEY=VALUE` lines of one message, in order.
pub fn fields(msg: &str) -> Vec<(&str, &str)> {
    msg.lines()
        .filter_map(|l| l.split_once('='))
        .collect::<Vec<_>>()
}

/// The value of `key` in one message (the first, if repeated).
pub fn field<'m>(msg: &'m str, key: &str) -> Option<&'m str> {
    fields(msg)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Whether the message has the line `KEY=VALUE` exactly.
pub fn has(msg: &str, key: &str, value: &str) -> bool {
    field(msg, key) == Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_collects_datagrams_as_messages() {
        let sock = NotifySocket::new();
        let (k, v) = sock.env();
        assert_eq!(k, "NOTIFY_SOCKET");
        assert_eq!(Path::new(&v), sock.path());

        // What a notifying process does: one datagram per notification.
        let sender = UnixDatagram::unbound().unwrap();
        for msg in [
            "READY=1\n",
            "STATUS=2 certificates, 0 failing\n",
            "RELOADING=1\nMONOTONIC_USEC=42\n",
        ] {
            sender.send_to(msg.as_bytes(), sock.path()).unwrap();
        }
        let got = sock.recv_until(|m| has(m, "RELOADING", "1"), Duration::from_secs(5));
        assert_eq!(
            got,
            [
                "READY=1",
                "STATUS=2 certificates, 0 failing",
                "RELOADING=1\nMONOTONIC_USEC=42"
            ]
        );
        assert_eq!(field(&got[2], "MONOTONIC_USEC"), Some("42"));
        assert_eq!(
            fields(&got[2]),
            [("RELOADING", "1"), ("MONOTONIC_USEC", "42")]
        );

        // Nothing more comes: recv_until gives up at the timeout and returns nothing.
        let t0 = Instant::now();
        assert!(sock
            .recv_until(|_| true, Duration::from_millis(100))
            .is_empty());
        assert!(t0.elapsed() >= Duration::from_millis(100));

        sender.send_to(b"STOPPING=1\n", sock.path()).unwrap();
        assert_eq!(
            sock.messages().last().map(String::as_str),
            Some("STOPPING=1")
        );
        assert_eq!(sock.messages().len(), 4);
        sender.send_to(b"WATCHDOG=1\n", sock.path()).unwrap();
        let m = sock.expect("WATCHDOG=1", |m| has(m, "WATCHDOG", "1"), Duration::ZERO);
        assert_eq!(m, "WATCHDOG=1");
        let missing = std::panic::catch_unwind(|| {
            sock.expect(
                "READY=1",
                |m| has(m, "READY", "1"),
                Duration::from_millis(20),
            )
        });
        assert!(missing.is_err());
    }
}
