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

/// What [`idle_daemon`] measured.
pub struct IdleDaemon {
    /// Start to READY=1.
    pub ready: Duration,
    /// CPU time of the first ~5 s (start, READY=1, the settle pause).
    pub start_cpu_ms: f64,
    /// VmRSS once settled.
    pub rss_kb: u64,
    /// CPU time and context switches over the idle window.
    pub idle_cpu_ms: f64,
    pub ctx_switches: u64,
    /// ` WARN ` lines in the daemon's log.
    pub warnings: usize,
    /// SIGHUP to READY=1 again.
    pub sighup: Duration,
    /// VmHWM after the SIGHUP.
    pub peak_rss_kb: u64,
}

/// `renewd run` with `n` valid specs whose certificates are all fresh (nothing due), in `d` (made there
/// unless `d/certs.d` already holds `n` specs): READY=1, start CPU, settled RSS, CPU and context
/// switches over `idle` seconds, then SIGHUP to READY=1 again. The account's CA is unreachable
/// (127.0.0.1:9): every renewal-window request at start fails, the worst case for the start.
pub fn idle_daemon(d: &Path, n: usize, idle: u64) -> IdleDaemon {
    if fs::read_dir(d.join("certs.d")).map_or(0, |r| r.count()) != n {
        idle_setup(d, n);
    }
    let sock_path = d.join("notify.sock");
    let _ = fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let t0 = Instant::now();
    let mut child = spawn_daemon(d, &sock_path);
    let ready = wait_ready(&sock, t0);
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(5)); // settle (a benchmark pause)
    let rss_kb = proc_status_field(pid, "VmRSS:");
    let (cpu0, ctx0) = (cpu_ticks(pid), ctx_switches(pid));
    std::thread::sleep(Duration::from_secs(idle));
    let (cpu1, ctx1) = (cpu_ticks(pid), ctx_switches(pid));
    // What the daemon said while idle (STATUS= lines) is not the answer to the SIGHUP.
    sock.set_nonblocking(true).unwrap();
    while sock.recv(&mut [0u8; 4096]).is_ok() {}
    sock.set_nonblocking(false).unwrap();
    let t_hup = Instant::now();
    // SAFETY: SIGHUP to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let sighup = wait_ready(&sock, t_hup);
    let peak_rss_kb = proc_status_field(pid, "VmHWM:");
    // The CA is unreachable here, so every certificate's renewalInfo request fails at start: how many
    // warning lines that costs the journal.
    let log = fs::read_to_string(d.join("daemon.log")).unwrap_or_default();
    let warnings = log.lines().filter(|l| l.contains(" WARN ")).count();
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let tick = 100.0; // USER_HZ
    IdleDaemon {
        ready,
        start_cpu_ms: cpu0 as f64 * 1000.0 / tick,
        rss_kb,
        idle_cpu_ms: (cpu1 - cpu0) as f64 * 1000.0 / tick,
        ctx_switches: ctx1.saturating_sub(ctx0),
        warnings,
        sighup,
        peak_rss_kb,
    }
}

/// `n` specs (`hostNNNN.bench.test`) and a fresh certificate for each in `d`'s state directory.
fn idle_setup(d: &Path, n: usize) {
    use renewd::certs::pem_encode;
    use renewd::state::{version_name, CertFiles, StateDir};
    use std::time::SystemTime;

    let _ = fs::remove_dir_all(d.join("certs.d"));
    let _ = fs::remove_dir_all(d.join("state"));
    write_config(d, "https://127.0.0.1:9/dir", "");
    let state = StateDir::new(d.join("state"));
    // Leaves issued by a CA (with an Authority Key Identifier, as real ones have), so the daemon can ask
    // the (unreachable) CA for each one's renewal window.
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_identifier_method = rcgen::KeyIdMethod::Sha256;
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    // One leaf key for every certificate: generating 10,000 keys would dominate the set-up, and the
    // daemon reads each certificate and key file all the same.
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let chain = pem_encode("CERTIFICATE", ca_cert.der());
    let privkey = kp.serialize_pem();
    let t = Instant::now();
    for i in 0..n {
        let name = format!("host{i:04}");
        let domain = format!("{name}.bench.test");
        fs::write(
            d.join("certs.d").join(format!("{name}.yaml")),
            format!("domains: [{domain}]\n"),
        )
        .unwrap();
        let mut params = rcgen::CertificateParams::new(vec![domain]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(89);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&kp, &issuer).unwrap();
        let pem = pem_encode("CERTIFICATE", cert.der());
        let files = CertFiles {
            cert: pem.clone(),
            fullchain: format!("{pem}{chain}"),
            chain: chain.clone(),
            privkey: privkey.clone(),
        };
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        state
            .install(&name, &version_name(secs, &format!("{i:x}")), &files)
            .unwrap();
    }
    eprintln!(
        "{n} specs and certificates made in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}
