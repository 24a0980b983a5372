//! The integration-test harness: a private copy of the reference deployment per test
//! ([`Topology`]), a second real CA beside its Pebble when a test asks for one ([`a2c::SecondCa`]),
//! a real etcd cluster when a test needs one ([`etcd::EtcdCluster`]), renewd config fixtures, and
//! certificate checks with the real `openssl`.
//!
//! Used by `tests/integration.rs` (`mod support;`) and `examples/demo.rs`
//! (`#[path = "../tests/support/mod.rs"] mod support;`). Each user needs only part of it.
#![allow(dead_code, unused_imports)]

pub mod a2c;
pub mod ari;
pub mod etcd;
pub mod fixtures;
pub mod journald;
pub mod notify;
pub mod proc;
pub mod renewd;
pub mod stuck;
pub mod topology;
pub mod webservers;
pub mod x509;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

pub use fixtures::SpecFixture;
pub use topology::{
    challenge_zone, domain, persist_zone, IssuingRoots, Server, Topology, TopologyOptions, DOMAIN,
    TSIG_KEY_NAME,
};
pub use x509::*;

/// How long one `renewd` invocation may take before the test fails (it is killed).
pub const RENEWD_TIMEOUT: Duration = Duration::from_secs(120);

/// The renewd binary under test: `$RENEWD_BIN`, else the one Cargo built for this integration test,
/// else (examples, which get no `CARGO_BIN_EXE_*`) `renewd` next to the running example's directory.
pub fn renewd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RENEWD_BIN") {
        return PathBuf::from(p);
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_renewd") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/examples/demo → target/<profile>/renewd
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .expect("binary in target/<profile>/examples");
    profile_dir.join("renewd")
}

/// Runs `renewd ARGS` inside the topology's namespace (pass `--config PATH` yourself), bounded by
/// [`RENEWD_TIMEOUT`]. Does not judge the exit status: see [`assert_success`].
pub fn run_renewd<I, S>(topo: &Topology, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = topo.command(renewd_bin());
    cmd.args(args).env("RUST_BACKTRACE", "1");
    proc::output_with_timeout(&mut cmd, RENEWD_TIMEOUT).unwrap_or_else(|e| panic!("renewd: {e}"))
}

/// Make a named pipe at `path` (for tests of files that must not be waited on).
pub fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Panics with stdout and stderr unless the command exited 0.
#[track_caller]
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stdout + stderr as one string, for `contains` checks.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
