//! What the daemon benchmarks share: CPU, context switches and RSS of a process from /proc, waiting for
//! READY=1 on a notify socket, and the renewd binary to measure (`RENEWD_BIN` to compare another build).

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The renewd binary: `$RENEWD_BIN`, else the one built beside this example.
pub fn renewd_bin() -> PathBuf {
    match std::env::var_os("RENEWD_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("renewd")
        }
    }
}

/// A renewd configuration in `d` (state in `d/state`, specs in `d/certs.d`) with one account `ca` at
/// `directory`, a DNS server on loopback with a TSIG key, and `extra` global lines; no spec yet.
pub fn write_config(d: &Path, directory: &str, extra: &str) {
    fs::create_dir_all(d.join("certs.d")).unwrap();
    let key = d.join("tsig.key");
    fs::write(
        &key,
        "key \"k\" {\n\talgorithm hmac-sha256;\n\tsecret \"2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=\";\n};\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        d.join("renewd.yaml"),
        format!(
            "state_dir: {}/state\n{extra}accounts:\n  ca: {{ directory: \"{directory}\" }}\n\
             dns_servers:\n  p: {{ address: 127.0.0.1, tsig_key_file: {} }}\n\
             resolver: [127.0.0.1]\ndefaults: {{ account: ca, dns: p, key: {{ type: ecdsa, curve: p256 }} }}\n",
            d.display(),
            key.display()
        ),
    )
    .unwrap();
}

/// `renewd run` on the configuration in `d`, reporting to the notify socket `sock`, logging to
/// `d/daemon.log`.
pub fn spawn_daemon(d: &Path, sock: &Path) -> Child {
    Command::new(renewd_bin())
        .arg("--config")
        .arg(d.join("renewd.yaml"))
        .arg("run")
        .env("NOTIFY_SOCKET", sock)
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(d.join("daemon.log")).unwrap()))
        .spawn()
        .unwrap()
}

/// Wait for READY=1 on `sock` (at most 120 s); the time since `t0`.
pub fn wait_ready(sock: &UnixDatagram, t0: Instant) -> Duration {
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let len = sock.recv(&mut buf).expect("READY=1 within 120 s");
        if String::from_utf8_lossy(&buf[..len])
            .lines()
            .any(|l| l == "READY=1")
        {
            return t0.elapsed();
        }
    }
}

pub fn proc_status_field(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of the whole process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Voluntary + involuntary context switches summed over every thread alive now (threads that ended took
/// theirs with them: a difference across a window may undercount, never overcount).
pub fn ctx_switches(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let s = fs::read_to_string(t.path().join("status")).unwrap_or_default();
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}
