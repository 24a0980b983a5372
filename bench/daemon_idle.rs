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

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let idle: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    // BENCH_DIR: set up there (kept afterwards) and reuse what an earlier run made, so several builds
    // are measured on the same certificates; else a temporary directory.
    let dir = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from);
    let d = kept.as_deref().unwrap_or(dir.path());
    let m = common::idle_daemon(d, n, idle);
    println!(
        "specs\tready_s\tstart_cpu_ms\trss_kb\tidle_s\tcpu_ms\tctx_switches\twarning_lines\tsighup_ready_s\tpeak_rss_kb"
    );
    println!(
        "{n}\t{:.3}\t{:.0}\t{}\t{idle}\t{:.0}\t{}\t{}\t{:.3}\t{}",
        m.ready.as_secs_f64(),
        m.start_cpu_ms,
        m.rss_kb,
        m.idle_cpu_ms,
        m.ctx_switches,
        m.warnings,
        m.sighup.as_secs_f64(),
        m.peak_rss_kb
    );
}
