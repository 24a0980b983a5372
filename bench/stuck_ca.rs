//! `renewd run` with N specs that are all due (no certificate yet) and an ACME CA that accepts connections
//! and never answers (a listener on 127.0.0.1 in this process that holds every connection open): the
//! worker pool is full of renewals that hang. Measures, after READY=1, the daemon's CPU time and context
//! switches over a window, and how many connections reached the CA.
//! Usage: `cargo run --release --example bench-stuck-ca -- [N=500] [SECONDS=60]`; set `RENEWD_BIN` to
//! measure another build (the configuration uses only keys every version knows).

#[path = "common.rs"]
#[allow(dead_code)] // the idle-daemon measurement is not used here
mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(500);
    let window: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The CA: accepts, then says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    setup(d, n, port);

    let sock_path = d.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let t0 = Instant::now();
    let mut child = common::spawn_daemon(d, &sock_path);
    let ready = common::wait_ready(&sock, t0);
    let pid = child.id();
    let (cpu0, ctx0) = (common::cpu_ticks(pid), common::ctx_switches(pid));
    std::thread::sleep(Duration::from_secs(window)); // the measured window (a benchmark, not a test)
    let (cpu1, ctx1) = (common::cpu_ticks(pid), common::ctx_switches(pid));
    let rss_kb = common::proc_status_field(pid, "VmRSS:");
    let t_stop = Instant::now();
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let stop = t_stop.elapsed();
    let tick = 100.0; // USER_HZ
    let cpu_ms = (cpu1 - cpu0) as f64 * 1000.0 / tick;
    println!("specs\tready_s\twindow_s\tcpu_ms\tcpu_%\tctx_switches\trss_kb\tconnections\tstop_s");
    println!(
        "{n}\t{:.3}\t{window}\t{cpu_ms:.0}\t{:.1}\t{}\t{rss_kb}\t{}\t{:.1}",
        ready.as_secs_f64(),
        cpu_ms / 10.0 / window as f64,
        ctx1.saturating_sub(ctx0),
        accepted.load(Ordering::SeqCst),
        stop.as_secs_f64()
    );
}

fn setup(d: &Path, n: usize, port: u16) {
    common::write_config(
        d,
        &format!("https://127.0.0.1:{port}/dir"),
        "workers: 4\nstop_grace: 2s\n",
    );
    for i in 0..n {
        fs::write(
            d.join("certs.d").join(format!("host{i:04}.yaml")),
            format!("domains: [host{i:04}.bench.test]\n"),
        )
        .unwrap();
    }
}
