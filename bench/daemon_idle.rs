//! `renewd run` with N valid specs whose certificates are all fresh (nothing due): time from start to
//! READY=1, CPU time of the first 5 s, RSS once settled, CPU time and context switches of the idle
//! daemon over a window, and the warning lines it logged.
//! Then SIGHUP: the time from the signal to READY=1 again (every spec and every `live/` read again).
//! Usage: `cargo run --release --example bench-daemon-idle -- [N=1000] [IDLE_SECONDS=60]`
//! (`RENEWD_BIN` measures another build; `BENCH_DIR` keeps the specs and certificates for the next run).
//! The certificates are issued by a local CA, so at start the daemon asks the account's CA for each
//! one's renewal window (ARI); that CA is unreachable (127.0.0.1:9, nothing listens), the worst case
//! for the start: every request fails. Nothing else touches the network.

#[path = "common.rs"]
mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use renewd::certs::pem_encode;
use renewd::state::{version_name, CertFiles, StateDir};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let idle: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    // BENCH_DIR: set up there (kept afterwards) and reuse what an earlier run made, so several builds
    // are measured on the same certificates; else a temporary directory.
    let dir = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from);
    let d = kept.as_deref().unwrap_or(dir.path());
    if fs::read_dir(d.join("certs.d")).map_or(0, |r| r.count()) != n {
        setup(d, n);
    }
    let _ = fs::remove_file(d.join("notify.sock"));

    let sock_path = d.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let t0 = Instant::now();
    let mut child = common::spawn_daemon(d, &sock_path);
    let ready = common::wait_ready(&sock, t0);
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(5)); // settle (a benchmark pause)
    let rss_kb = common::proc_status_field(pid, "VmRSS:");
    let (cpu0, ctx0) = (common::cpu_ticks(pid), common::ctx_switches(pid));
    std::thread::sleep(Duration::from_secs(idle));
    let (cpu1, ctx1) = (common::cpu_ticks(pid), common::ctx_switches(pid));
    // What the daemon said while idle (STATUS= lines) is not the answer to the SIGHUP.
    sock.set_nonblocking(true).unwrap();
    while sock.recv(&mut [0u8; 4096]).is_ok() {}
    sock.set_nonblocking(false).unwrap();
    let t_hup = Instant::now();
    // SAFETY: SIGHUP to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let hup = common::wait_ready(&sock, t_hup);
    let hwm_kb = common::proc_status_field(pid, "VmHWM:");
    let tick = 100.0; // USER_HZ
                      // The CA is unreachable here, so every certificate's renewalInfo request fails at start: how many
                      // warning lines that costs the journal.
    let log = fs::read_to_string(d.join("daemon.log")).unwrap_or_default();
    let warnings = log.lines().filter(|l| l.contains(" WARN ")).count();
    println!(
        "specs\tready_s\tstart_cpu_ms\trss_kb\tidle_s\tcpu_ms\tctx_switches\twarning_lines\tsighup_ready_s\tpeak_rss_kb"
    );
    println!(
        "{n}\t{:.3}\t{:.0}\t{rss_kb}\t{idle}\t{:.0}\t{}\t{warnings}\t{:.3}\t{hwm_kb}",
        ready.as_secs_f64(),
        cpu0 as f64 * 1000.0 / tick,
        (cpu1 - cpu0) as f64 * 1000.0 / tick,
        ctx1.saturating_sub(ctx0),
        hup.as_secs_f64()
    );
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    child.wait().unwrap();
}

fn setup(d: &Path, n: usize) {
    let _ = fs::remove_dir_all(d.join("certs.d"));
    let _ = fs::remove_dir_all(d.join("state"));
    common::write_config(d, "https://127.0.0.1:9/dir", "");
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
