//! A real etcd cluster (Debian's etcd-server 3.4.23, from `.ci/install-deps`) inside a [`Topology`]'s
//! network namespace, for the tests of renewd's `cluster:` (several renewd processes with their own
//! state dirs, coordinating through the etcd v3 gRPC API).
//!
//! At most one per topology (the addresses are fixed). Member `n` (1-based, as its directory is
//! named; at most [`ETCD_MAX_MEMBERS`]) runs in the foreground as a child of the test process, killed
//! by PID on drop like the topology's servers, and listens on `127.0.0.5n` ([`member_ip`]): clients on
//! port 2379 (`http://`, or `https://` with client-certificate authentication when
//! [`EtcdOptions::tls`]), peers on 2380 (always plain HTTP). Its files, under `<topology dir>/etcd/`:
//!
//! | file                   | what                                                                    |
//! |------------------------|-------------------------------------------------------------------------|
//! | `memberN/data/`        | its data dir (WAL, snapshots, bbolt); kept when it is stopped, used again by [`EtcdCluster::start_member`] |
//! | `memberN/etcd.log`     | its stdout and stderr: etcd's log (zap, one JSON object a line) and a Go panic, if any |
//! | `tls/ca.pem`, `ca.key` | with `tls`: the CA every certificate below is signed by (EC P-256)       |
//! | `tls/memberN.pem/.key` | member N's server certificate, SAN `IP:127.0.0.5N`                       |
//! | `tls/client.pem/.key`  | the client certificate for renewd (and etcdctl), CN `renewd`            |
//!
//! Keys are PKCS#8 PEM, mode 0600 (renewd refuses secrets others can read). `RENEWD_KEEP_TESTBED=1`
//! keeps all of it with the topology's directory.
//!
//! # Start
//! Tuned for tests: heartbeat 50 ms, election timeout 500 ms ([`ETCD_HEARTBEAT_MS`],
//! [`ETCD_ELECTION_MS`]), a cluster token unique per topology. The members are started one after
//! the other, each as soon as the previous one serves its peer port (no waiting for any election),
//! then [`EtcdCluster::start`] polls (backoff from 20 ms) until every member answers a linearizable
//! read (`etcdctl endpoint health`): there is a leader and every member reaches it. Three members:
//! 0.2 to 0.8 s on the 2-core CI machine, TLS files included (~0.1 s of it).
//!
//! Why not all at once: a new member first asks every peer URL for the cluster's member list, with a
//! fixed 1 s timeout per peer (3.4 has no flag for it). A peer that is up but still doing the same has
//! bound its port and does not answer yet, so three members started together each wait 2 s; a peer
//! that is not started yet refuses the connection at once.
//!
//! # etcd 3.4 behaviour tests should know (measured here)
//! - Quorum lost (two of three down): a linearizable read or a write does not fail fast. A read waits
//!   for the client's deadline however long it is (etcdctl: `Error: context deadline exceeded`); a
//!   write fails after the server's own request timeout, 5 s + 2 election timeouts = 6 s here
//!   (`Error: rpc error: code = Unknown desc = context deadline exceeded`); etcd-client 0.21 gives
//!   `Cancelled, "Timeout expired"` at its `with_timeout`. A serializable read (`--consistency=s`)
//!   is still answered by a lone member, possibly stale. With the gRPC metadata `hasleader: true`
//!   (etcd-client's `ConnectOptions::with_require_leader(true)`) a member without a leader answers
//!   reads and writes at once (a few ms) with `Unavailable, "etcdserver: no leader"`.
//! - SIGTERM to the leader first hands leadership over, to the member it has been connected to
//!   longest: milliseconds when that one is up (stopping the leader took 60 to 95 ms here). When it
//!   has just gone (stopped a moment before, the leader has not noticed yet) the hand-over fails only
//!   after that same 6 s: stopping the members of a cluster one right after the other takes 6 s now
//!   and then. [`EtcdCluster::kill_member`] never waits.
//! - A TLS member refuses a client without a certificate in the handshake; etcdctl then retries until
//!   its deadline and prints only `context deadline exceeded`, etcd-client 0.21 fails the request at
//!   once with `Cancelled, "operation was canceled"` (connection closed), rustls reads the alert
//!   `BadCertificate`; the member logs `rejected connection` with `tls: client didn't provide a
//!   certificate`. With the files of [`EtcdCluster::tls`], etcd-client 0.21 (`tls-aws-lc`,
//!   `Identity::from_pem`) connects, writes and reads.
//! - With `--client-cert-auth`, etcd's own gRPC gateway (HTTP `/v3/...`) connects to the member with
//!   the member's certificate as a client certificate, so member certificates carry clientAuth too.
//! - A member answers clients only after it has published itself through raft, at every start: a
//!   member restarted while the others are down accepts TCP connections on its client port and
//!   leaves them hanging (a gRPC connect waits for its connect timeout) until a quorum is back.
//! - There is no `--unsafe-no-fsync` before 3.5; each member preallocates a 64 MB WAL file (sparse on
//!   ext4).

use std::fs;
use std::io::{Seek, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::assert_success;
use super::proc::{
    output_with_timeout, poll_ready_backoff, spawn_long_lived_logged, stop_children, tail,
};
use super::topology::Topology;
use super::x509::{ec_cert_in, EcCert};

pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// Member addresses are `127.0.0.51` to `127.0.0.59`.
pub const ETCD_MAX_MEMBERS: usize = 9;
/// `--heartbeat-interval` (etcd's default: 100).
pub const ETCD_HEARTBEAT_MS: u32 = 50;
/// `--election-timeout` (etcd's default: 1000): a follower that hears nothing from the leader for
/// this long (randomized up to twice as long) starts an election.
pub const ETCD_ELECTION_MS: u32 = 500;
/// How long [`EtcdCluster::has_quorum`]'s linearizable read may take: long enough for an election
/// in progress (a follower waits 1 to 2 election timeouts before it starts one). Right after killing
/// the leader, [`EtcdCluster::wait_healthy`] is the way to wait for the next one: 0.6 to 1.4 s here.
pub const QUORUM_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the cluster, or one member, may take to come up (generous: CI machines are slow and shared).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest pause between two readiness probes.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(250);
/// SIGTERM → SIGKILL grace: more than the 6 s a leader spends trying to hand over leadership to a
/// member that does not answer.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// etcdctl's dial and command timeouts in readiness probes.
const PROBE_TIMEOUT: &str = "1s";
/// The bound on one etcdctl process (its own default command timeout is 5 s).
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Member `n`'s address: `127.0.0.5n`.
pub fn member_ip(n: usize) -> Ipv4Addr {
    assert!(
        (1..=ETCD_MAX_MEMBERS).contains(&n),
        "etcd members are 1..={ETCD_MAX_MEMBERS}, got {n}"
    );
    Ipv4Addr::new(127, 0, 0, 50 + n as u8)
}

/// What to start. `Default`: three members, plain HTTP.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Voting members, 1..=[`ETCD_MAX_MEMBERS`].
    pub members: usize,
    /// Client URLs over TLS with client-certificate authentication (`--client-cert-auth`):
    /// see [`EtcdCluster::tls`]. Peer traffic stays plain HTTP either way.
    pub tls: bool,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            members: 3,
            tls: false,
        }
    }
}

/// What a client needs with [`EtcdOptions::tls`] (absolute paths; keys 0600).
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    /// The CA that signed the members' certificates (trust it) and the client certificate.
    pub ca: PathBuf,
    /// The client certificate (CN `renewd`, extendedKeyUsage clientAuth).
    pub cert: PathBuf,
    /// Its key: EC P-256, PKCS#8 PEM.
    pub key: PathBuf,
}

/// A running etcd cluster inside a topology. Dropping it kills every member (SIGKILL by PID).
pub struct EtcdCluster<'t> {
    topo: &'t Topology,
    opts: EtcdOptions,
    dir: PathBuf,
    token: String,
    tls: Option<EtcdTlsFiles>,
    /// Member n at index n - 1; `None` while stopped.
    members: Mutex<Vec<Option<Child>>>,
    startup: Duration,
}

impl<'t> EtcdCluster<'t> {
    /// [`EtcdCluster::try_start`], panicking with the reason and the members' log tails.
    pub fn start(topo: &'t Topology, opts: EtcdOptions) -> EtcdCluster<'t> {
        EtcdCluster::try_start(topo, opts)
            .unwrap_or_else(|e| panic!("etcd cluster did not come up: {e}"))
    }

    /// Makes the TLS files (with `tls`), starts every member and returns once every member answers a
    /// linearizable read. On failure every member started is killed again.
    pub fn try_start(topo: &'t Topology, opts: EtcdOptions) -> Result<EtcdCluster<'t>, String> {
        let t0 = Instant::now();
        if !(1..=ETCD_MAX_MEMBERS).contains(&opts.members) {
            return Err(format!(
                "members: 1..={ETCD_MAX_MEMBERS}, got {}",
                opts.members
            ));
        }
        let dir = topo.dir().join("etcd");
        if dir.exists() {
            return Err(format!(
                "{} exists: one etcd cluster per topology (the addresses are fixed)",
                dir.display()
            ));
        }
        for n in 1..=opts.members {
            let d = dir.join(format!("member{n}"));
            fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        let tls = if opts.tls {
            Some(make_tls_files(&dir.join("tls"), opts.members)?)
        } else {
            None
        };
        let token = format!(
            "renewd-test-{}",
            topo.dir()
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut cluster = EtcdCluster {
            topo,
            members: Mutex::new((0..opts.members).map(|_| None).collect()),
            opts,
            dir,
            token,
            tls,
            startup: Duration::ZERO,
        };
        // On an error `cluster` is dropped here, which kills what did start.
        if let Err(e) = cluster.bring_up() {
            return Err(format!("{e}\n{}", cluster.log_tails(20)));
        }
        cluster.startup = t0.elapsed();
        Ok(cluster)
    }

    fn bring_up(&self) -> Result<(), String> {
        for n in 1..=self.opts.members {
            self.spawn_member(n)?;
            // Serving the peer port means its bootstrap check is done: the next member's check
            // gets an answer from it at once (see the module documentation).
            self.wait_serving(n)?;
        }
        self.poll_healthy()
    }

    // ---------------------------------------------------------------- accessors

    pub fn options(&self) -> &EtcdOptions {
        &self.opts
    }

    /// `<topology dir>/etcd`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wall time of [`EtcdCluster::try_start`]: TLS files, every member started, all healthy.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Every member's client URL (`http://127.0.0.5n:2379`, `https://` with TLS), in member order,
    /// running or not.
    pub fn endpoints(&self) -> Vec<String> {
        (1..=self.opts.members).map(|n| self.endpoint(n)).collect()
    }

    /// Member `n`'s client URL.
    pub fn endpoint(&self, n: usize) -> String {
        let scheme = if self.opts.tls { "https" } else { "http" };
        format!(
            "{scheme}://{}:{ETCD_CLIENT_PORT}",
            member_ip(self.index(n) + 1)
        )
    }

    /// CA, client certificate and key, with [`EtcdOptions::tls`].
    pub fn tls(&self) -> Option<&EtcdTlsFiles> {
        self.tls.as_ref()
    }

    /// Member `n`'s log (stdout and stderr; zap JSON lines).
    pub fn log_path(&self, n: usize) -> PathBuf {
        self.member_dir(n).join("etcd.log")
    }

    /// Member `n`'s data dir.
    pub fn data_dir(&self, n: usize) -> PathBuf {
        self.member_dir(n).join("data")
    }

    /// Member `n`'s PID while it runs.
    pub fn pid(&self, n: usize) -> Option<u32> {
        self.members()[self.index(n)].as_ref().map(Child::id)
    }

    /// The members started and not stopped, in order.
    pub fn running(&self) -> Vec<usize> {
        let members = self.members();
        (1..=self.opts.members)
            .filter(|&n| members[n - 1].is_some())
            .collect()
    }

    /// The last `lines` lines of every member's log, for assertion messages.
    pub fn log_tails(&self, lines: usize) -> String {
        (1..=self.opts.members)
            .map(|n| tail(&self.log_path(n), lines))
            .collect::<Vec<_>>()
            .join("\n")
    }

    // ---------------------------------------------------------------- stopping and starting

    /// SIGTERM member `n` by PID and wait for it to exit (SIGKILL after 10 s). A no-op if it is
    /// stopped. Stopping the leader hands leadership over first, which takes 6 s when the member it
    /// picks has just gone (see the module documentation).
    pub fn stop_member(&self, n: usize) {
        let child = self.members()[self.index(n)].take();
        if let Some(child) = child {
            stop_children(vec![(format!("etcd member{n}"), child)], STOP_GRACE);
        }
    }

    /// SIGKILL member `n` by PID (a crash, a power cut) and reap it. A no-op if it is stopped.
    pub fn kill_member(&self, n: usize) {
        let child = self.members()[self.index(n)].take();
        if let Some(child) = child {
            kill_and_reap(child);
        }
    }

    /// Starts a stopped member again on its data dir and waits until it serves its peer port. It
    /// answers clients only once it has published itself to the cluster through raft, which needs a
    /// quorum: [`EtcdCluster::wait_healthy`] waits for that. Until then its client port accepts
    /// connections and leaves them hanging.
    pub fn start_member(&self, n: usize) {
        assert!(self.pid(n).is_none(), "etcd member{n} is already running");
        if let Err(e) = self.spawn_member(n).and_then(|()| self.wait_serving(n)) {
            panic!("restarting etcd member{n}: {e}\n{}", self.log_tails(20));
        }
    }

    /// Waits (20 s) until every running member answers a linearizable read: there is a leader and
    /// every running member reaches it. Panics with the log tails otherwise.
    pub fn wait_healthy(&self) {
        if let Err(e) = self.poll_healthy() {
            panic!("{e}\n{}", self.log_tails(20));
        }
    }

    /// A linearizable read through any member succeeds within [`QUORUM_READ_TIMEOUT`] (2 s).
    /// Returns false only after that timeout: etcd has no fast failure for a lost quorum.
    pub fn has_quorum(&self) -> bool {
        let timeout = format!("{}ms", QUORUM_READ_TIMEOUT.as_millis());
        let out = self.etcdctl(&[
            "get",
            "--dial-timeout",
            &timeout,
            "--command-timeout",
            &timeout,
            "renewd-test/quorum-probe",
        ]);
        out.status.success()
    }

    /// The member that is leader, as the running members report it (`None` when they do not answer
    /// or do not know one).
    pub fn leader(&self) -> Option<usize> {
        let endpoints: Vec<String> = self
            .running()
            .into_iter()
            .map(|n| self.endpoint(n))
            .collect();
        let out = self.etcdctl_probe(&endpoints, &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?.iter().find_map(|e| {
            let status = &e["Status"];
            let id = status["header"]["member_id"].as_u64()?;
            (id != 0 && status["leader"].as_u64() == Some(id)).then_some(())?;
            let endpoint = e["Endpoint"].as_str()?;
            (1..=self.opts.members).find(|&n| self.endpoint(n) == endpoint)
        })
    }

    // ---------------------------------------------------------------- etcdctl

    /// `etcdctl ARGS` (API v3) inside the namespace with every member as endpoint and, with TLS, the
    /// CA and client certificate. Bounded by 30 s; does not judge the exit status.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.run_etcdctl(&self.endpoints(), args, None)
    }

    /// [`EtcdCluster::etcdctl`] with member `n` as the only endpoint.
    pub fn etcdctl_member(&self, n: usize, args: &[&str]) -> Output {
        self.run_etcdctl(&[self.endpoint(n)], args, None)
    }

    /// A `Command` for etcdctl inside the namespace (`ETCDCTL_API=3`, no other `ETCDCTL_*` from the
    /// test's environment) with `--endpoints` and nothing else: for clients the cluster should
    /// refuse, e.g. without a client certificate.
    pub fn etcdctl_command(&self, endpoints: &[String]) -> Command {
        let mut cmd = self.topo.command("etcdctl");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")));
        cmd
    }

    /// Writes `key` = `value` (any bytes: they go through etcdctl's stdin). Panics unless it succeeds.
    pub fn put(&self, key: &str, value: &[u8]) {
        let mut stdin = tempfile::tempfile().expect("temp file for the value");
        stdin
            .write_all(value)
            .and_then(|()| stdin.rewind())
            .expect("write the value");
        let out = self.run_etcdctl(&self.endpoints(), &["put", "--", key], Some(stdin));
        assert_success(&format!("etcdctl put {key}"), &out);
    }

    /// The value of `key` (linearizable read), `None` when there is none. Panics unless etcdctl
    /// succeeds.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let out = self.etcdctl(&["get", "-w", "json", "--", key]);
        assert_success(&format!("etcdctl get {key}"), &out);
        parse_kvs(&out.stdout).into_iter().next().map(|(_, v)| v)
    }

    /// Every key and value (linearizable read), sorted by key. Keys that are not UTF-8 come back
    /// with U+FFFD in them. Panics unless etcdctl succeeds.
    pub fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let out = self.etcdctl(&["get", "", "--prefix", "-w", "json"]);
        assert_success("etcdctl get --prefix \"\"", &out);
        parse_kvs(&out.stdout)
    }

    // ---------------------------------------------------------------- renewd's configuration

    /// The `cluster:` block of a renewd.yaml for member `member` of this etcd: every endpoint, the TLS
    /// files when the cluster has them, `etcd_extra` (more keys of `etcd:`, e.g. `user: …`), and
    /// `seal_file` (written by the caller, 0600).
    pub fn renewd_cluster_yaml(&self, member: &str, seal_file: &Path, etcd_extra: &str) -> String {
        let endpoints: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        let tls = match self.tls() {
            Some(t) => format!(
                ", ca: \"{}\", cert: \"{}\", key: \"{}\"",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ),
            None => String::new(),
        };
        format!(
            "cluster:\n  etcd: {{ endpoints: [{}]{tls}{etcd_extra} }}\n  member: {member}\n  seal_key_file: \"{}\"",
            endpoints.join(", "),
            seal_file.display()
        )
    }

    /// etcd's own count of the gRPC requests it handled, summed over the running members, by method
    /// (`grpc_server_handled_total` of each member's `/metrics`, plain http only).
    pub fn grpc_requests(&self) -> std::collections::BTreeMap<String, u64> {
        let mut by_method = std::collections::BTreeMap::new();
        for n in self.running() {
            let url = format!("http://{}:{ETCD_CLIENT_PORT}/metrics", member_ip(n));
            let text = self.topo.curl(&url).unwrap_or_default();
            for line in text
                .lines()
                .filter(|l| l.starts_with("grpc_server_handled_total{"))
            {
                let method = line
                    .split("grpc_method=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("?");
                let count: f64 = line
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                *by_method.entry(method.to_string()).or_insert(0) += count as u64;
            }
        }
        by_method
    }

    // ---------------------------------------------------------------- internals

    fn members(&self) -> MutexGuard<'_, Vec<Option<Child>>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Member `n`'s index in `members`; panics when the cluster has no member `n`.
    fn index(&self, n: usize) -> usize {
        assert!(
            (1..=self.opts.members).contains(&n),
            "etcd member{n} is not in this cluster (members = {})",
            self.opts.members
        );
        n - 1
    }

    fn member_dir(&self, n: usize) -> PathBuf {
        self.dir.join(format!("member{}", self.index(n) + 1))
    }

    fn tls_flags(&self) -> Vec<String> {
        match &self.tls {
            None => Vec::new(),
            Some(t) => vec![
                format!("--cacert={}", t.ca.display()),
                format!("--cert={}", t.cert.display()),
                format!("--key={}", t.key.display()),
            ],
        }
    }

    fn run_etcdctl(&self, endpoints: &[String], args: &[&str], stdin: Option<fs::File>) -> Output {
        let mut cmd = self.etcdctl_command(endpoints);
        cmd.args(self.tls_flags()).args(args);
        cmd.stdin(stdin.map_or_else(Stdio::null, Stdio::from));
        output_with_timeout(&mut cmd, ETCDCTL_TIMEOUT).unwrap_or_else(|e| panic!("etcdctl: {e}"))
    }

    /// etcdctl with 1 s dial and command timeouts.
    fn etcdctl_probe(&self, endpoints: &[String], args: &[&str]) -> Output {
        let timeouts = [
            "--dial-timeout",
            PROBE_TIMEOUT,
            "--command-timeout",
            PROBE_TIMEOUT,
        ];
        self.run_etcdctl(endpoints, &[args, &timeouts].concat(), None)
    }

    fn poll_healthy(&self) -> Result<(), String> {
        let running = self.running();
        let endpoints: Vec<String> = running.iter().map(|&n| self.endpoint(n)).collect();
        poll_ready_backoff(
            &format!("etcd members {running:?} to be healthy (endpoint health)"),
            READY_TIMEOUT,
            MAX_POLL_PAUSE,
            || running.iter().try_for_each(|&n| self.check_alive(n)),
            || {
                let out = self.etcdctl_probe(&endpoints, &["endpoint", "health"]);
                out.status.success().then_some(())
            },
        )
    }

    /// Waits until member `n` serves its peer port (plain HTTP whatever the client side, and
    /// refused at once while nothing listens: etcdctl would wait its whole dial timeout).
    fn wait_serving(&self, n: usize) -> Result<(), String> {
        let url = format!("http://{}:{ETCD_PEER_PORT}/members", member_ip(n));
        self.poll_member(n, &format!("etcd member{n} to serve {url}"), || {
            self.topo.curl(&url).ok().map(drop)
        })
    }

    fn poll_member<T>(
        &self,
        n: usize,
        what: &str,
        probe: impl FnMut() -> Option<T>,
    ) -> Result<T, String> {
        poll_ready_backoff(
            what,
            READY_TIMEOUT,
            MAX_POLL_PAUSE,
            || self.check_alive(n),
            probe,
        )
    }

    fn spawn_member(&self, n: usize) -> Result<(), String> {
        let dir = self.member_dir(n);
        let peer = |m: usize| format!("http://{}:{ETCD_PEER_PORT}", member_ip(m));
        let initial_cluster = (1..=self.opts.members)
            .map(|m| format!("member{m}={}", peer(m)))
            .collect::<Vec<_>>()
            .join(",");
        let client = self.endpoint(n);
        let mut cmd = self.topo.command("etcd");
        cmd.arg(format!("--name=member{n}"))
            .arg(format!("--data-dir={}", self.data_dir(n).display()))
            .arg(format!("--listen-peer-urls={}", peer(n)))
            .arg(format!("--initial-advertise-peer-urls={}", peer(n)))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            // Read only when the data dir is new; a restarted member finds its cluster in its WAL.
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(format!("--heartbeat-interval={ETCD_HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ETCD_ELECTION_MS}"))
            .args(["--logger=zap", "--log-outputs=stderr"]);
        if let Some(t) = &self.tls {
            let tls_dir = t.ca.parent().expect("tls/ca.pem has a directory");
            cmd.arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg(format!(
                    "--cert-file={}",
                    tls_dir.join(format!("member{n}.pem")).display()
                ))
                .arg(format!(
                    "--key-file={}",
                    tls_dir.join(format!("member{n}.key")).display()
                ));
        }
        cmd.current_dir(&dir);
        let child = spawn_long_lived_logged(cmd, &self.log_path(n)).map_err(|e| {
            format!("spawning etcd member{n}: {e} (is etcd-server installed? .ci/install-deps)")
        })?;
        self.members()[n - 1] = Some(child);
        Ok(())
    }

    /// Fails with the member's log tail if it has exited (and forgets it).
    fn check_alive(&self, n: usize) -> Result<(), String> {
        let mut members = self.members();
        let Some(child) = members[n - 1].as_mut() else {
            return Err(format!("etcd member{n} is not running"));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                members[n - 1] = None;
                Err(format!(
                    "etcd member{n} exited ({status})\n{}",
                    tail(&self.log_path(n), 20)
                ))
            }
            Err(e) => Err(format!("etcd member{n}: {e}")),
        }
    }
}

impl Drop for EtcdCluster<'_> {
    fn drop(&mut self) {
        let children: Vec<Child> = self.members().iter_mut().filter_map(Option::take).collect();
        for child in children {
            kill_and_reap(child);
        }
        if thread::panicking() {
            let logs: Vec<String> = (1..=self.opts.members)
                .map(|n| self.log_path(n).display().to_string())
                .collect();
            eprintln!(
                "etcd: member logs {} (RENEWD_KEEP_TESTBED=1 keeps them)",
                logs.join(" ")
            );
        }
    }
}

fn kill_and_reap(mut child: Child) {
    // Child::kill is SIGKILL to this child's PID; wait reaps it.
    let _ = child.kill();
    let _ = child.wait();
}

/// The CA, one server certificate per member, the client certificate, in `dir`.
fn make_tls_files(dir: &Path, members: usize) -> Result<EtcdTlsFiles, String> {
    fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let ca = ("ca.pem", "ca.key");
    ec_cert_in(
        dir,
        &EcCert {
            cn: "renewd test etcd CA",
            cert: ca.0,
            key: ca.1,
            issuer: None,
            extensions: &[],
        },
    )?;
    for n in 1..=members {
        let (cert, key) = (format!("member{n}.pem"), format!("member{n}.key"));
        let san = format!("subjectAltName=IP:{}", member_ip(n));
        ec_cert_in(
            dir,
            &EcCert {
                cn: &format!("etcd member{n}"),
                cert: &cert,
                key: &key,
                issuer: Some(ca),
                // clientAuth too: the member's gRPC gateway presents it to the member itself.
                extensions: &[
                    &san,
                    "extendedKeyUsage=serverAuth,clientAuth",
                    "basicConstraints=CA:FALSE",
                ],
            },
        )?;
    }
    ec_cert_in(
        dir,
        &EcCert {
            cn: "renewd",
            cert: "client.pem",
            key: "client.key",
            issuer: Some(ca),
            extensions: &["extendedKeyUsage=clientAuth", "basicConstraints=CA:FALSE"],
        },
    )?;
    Ok(EtcdTlsFiles {
        ca: dir.join(ca.0),
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
    })
}

/// The `kvs` of `etcdctl get -w json` (keys and values base64), in the order etcd sent them.
fn parse_kvs(json: &[u8]) -> Vec<(String, Vec<u8>)> {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap_or_else(|e| {
        panic!(
            "etcdctl -w json: {e}: {}",
            String::from_utf8_lossy(json).trim()
        )
    });
    let b64 = |field: &serde_json::Value| {
        let s = field.as_str().unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_else(|e| panic!("etcdctl -w json: base64 {s:?}: {e}"))
    };
    v["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(&b64(&kv["key"])).into_owned();
            (key, b64(&kv["value"]))
        })
        .collect()
}
