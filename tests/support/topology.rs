//! The reference deployment (seed 000) on one machine, in a private network namespace per instance.
//!
//! | address          | role                                                                   |
//! |------------------|------------------------------------------------------------------------|
//! | 127.0.0.10       | root `.` + `test.` TLD                                                 |
//! | 127.0.0.11       | parent `example.test`, delegates `_acme-challenge.<host>` NS dns1..3   |
//! |                  | (and `_validation-persist.<host>` with `persist_zones`)                |
//! | 127.0.0.12       | acme-master: hidden primary, TSIG update-policy, NOTIFY → dns1..3      |
//! | 127.0.0.13-15    | dns1..dns3: secondaries (NOTIFY + IXFR from acme-master)               |
//! | 127.0.0.16       | the CA's recursive resolver (Pebble `-dnsserver`)                      |
//! | 127.0.0.17       | the client resolver (renewd's `resolver:`, `/etc/resolv.conf` inside) |
//! | 127.0.0.1:14000  | Pebble ACME directory `https://127.0.0.1:14000/dir` (EAB required)     |
//! | 127.0.0.1:15000  | Pebble management (issuing roots)                                      |
//! | 127.0.0.1:14010  | acme2certifier, when a test starts one (`a2c.rs`)                      |
//!
//! Each [`Topology`] lives in its own tempdir and network namespace, so tests run in parallel with the
//! same addresses. Servers run in the foreground as children of the test process and are killed by
//! PID on drop (also when the test panics); `RENEWD_KEEP_TESTBED=1` keeps the directory and its logs.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::proc::{output_with_timeout, poll_ready, spawn_long_lived_logged, stop_children, tail};
use super::x509::{ec_cert_in, EcCert};

/// The parent zone every test name lives under.
pub const DOMAIN: &str = "example.test";
pub const ROOT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
pub const PARENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
pub const MASTER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);
pub const SECONDARY_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 13),
    Ipv4Addr::new(127, 0, 0, 14),
    Ipv4Addr::new(127, 0, 0, 15),
];
pub const CA_RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 16);
pub const CLIENT_RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 17);
pub const PEBBLE_ACME_PORT: u16 = 14000;
pub const PEBBLE_MGMT_PORT: u16 = 15000;
/// The key renewd signs its updates with (`grant acme-update name ZONE TXT`).
pub const TSIG_KEY_NAME: &str = "acme-update";
/// The key the zones of [`TopologyOptions::denied_hosts`] grant instead.
pub const OTHER_TSIG_KEY_NAME: &str = "other-update";
pub const EAB_KID: &str = "kid-1";
/// BIND's `notify-delay` default (seconds), what the reference deployment runs with.
pub const BIND_DEFAULT_NOTIFY_DELAY: u32 = 5;

/// How long one server may take to come up (generous: CI machines are slow and shared).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// SIGTERM → SIGKILL grace on shutdown.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The zone every challenge of [`TopologyOptions::shared_zone_hosts`] is CNAMEd into.
pub const SHARED_ZONE: &str = "acme.example.test";

/// `hostK.example.test` style name for a host label.
pub fn domain(label: &str) -> String {
    format!("{label}.{DOMAIN}")
}

/// The DNS-01 owner name (and, in this deployment, the zone) of a domain: `_acme-challenge.<domain>`.
pub fn challenge_zone(domain: &str) -> String {
    format!("_acme-challenge.{}", domain.trim_start_matches("*."))
}

/// The dns-persist-01 owner name (draft-ietf-acme-dns-persist) of a domain, in this deployment a zone of
/// its own when [`TopologyOptions::persist_zones`] is set: `_validation-persist.<domain>`.
pub fn persist_zone(domain: &str) -> String {
    format!("_validation-persist.{}", domain.trim_start_matches("*."))
}

/// One server process of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Server {
    Root,
    Parent,
    Master,
    /// dns1..dns3: `Secondary(1)` is dns1 (1-based, as the servers are named).
    Secondary(u8),
    CaResolver,
    ClientResolver,
    Pebble,
}

impl Server {
    pub const ALL_NAMED: [Server; 8] = [
        Server::Root,
        Server::Parent,
        Server::Master,
        Server::Secondary(1),
        Server::Secondary(2),
        Server::Secondary(3),
        Server::CaResolver,
        Server::ClientResolver,
    ];

    /// Directory (under [`Topology::dir`]) with its config, zone files and logs.
    pub fn dir_name(self) -> String {
        match self {
            Server::Root => "root".into(),
            Server::Parent => "parent".into(),
            Server::Master => "master".into(),
            Server::Secondary(n) => format!("dns{n}"),
            Server::CaResolver => "resolver".into(),
            Server::ClientResolver => "cresolver".into(),
            Server::Pebble => "pebble".into(),
        }
    }

    pub fn ip(self) -> Ipv4Addr {
        match self {
            Server::Root => ROOT_IP,
            Server::Parent => PARENT_IP,
            Server::Master => MASTER_IP,
            Server::Secondary(n) => {
                assert!((1..=3).contains(&n), "secondaries are dns1..dns3, got {n}");
                SECONDARY_IPS[usize::from(n) - 1]
            }
            Server::CaResolver => CA_RESOLVER_IP,
            Server::ClientResolver => CLIENT_RESOLVER_IP,
            Server::Pebble => Ipv4Addr::LOCALHOST,
        }
    }

    /// Where it listens (`:53`, or Pebble's ACME port).
    pub fn addr(self) -> SocketAddr {
        let port = if self == Server::Pebble {
            PEBBLE_ACME_PORT
        } else {
            53
        };
        SocketAddr::V4(SocketAddrV4::new(self.ip(), port))
    }

    fn is_recursive(self) -> bool {
        matches!(self, Server::CaResolver | Server::ClientResolver)
    }
}

/// What to build. `Default` is the reference deployment with hosts `host1..host3`.
#[derive(Debug, Clone)]
pub struct TopologyOptions {
    /// Hosts `host1..hostN`: each gets `_acme-challenge.hostK.example.test` (master + dns1..3 + delegation).
    pub n_hosts: usize,
    /// Host labels whose challenge zone exists everywhere (master, secondaries, delegation) but whose
    /// update-policy grants [`OTHER_TSIG_KEY_NAME`], so renewd's `acme-update` key gets REFUSED.
    pub denied_hosts: Vec<String>,
    /// `(alias, target)` host labels: the parent zone gets
    /// `_acme-challenge.<alias>.example.test. CNAME _acme-challenge.<target>.example.test.` and the
    /// alias gets no zone of its own (the lego/certbot "CNAME delegation" setup).
    pub cname_aliases: Vec<(String, String)>,
    /// Hosts `shared1..sharedN` (the common "one challenge zone" layout): no zone of their own,
    /// `_acme-challenge.sharedK.example.test. CNAME sharedK.acme.example.test.`, and the zone
    /// [`SHARED_ZONE`] (master + dns1..3, delegated) lets renewd's key write TXT anywhere inside.
    pub shared_zone_hosts: usize,
    /// More labels CNAMEd into [`SHARED_ZONE`] like `shared_zone_hosts`, whose owner there the zone's
    /// update-policy denies to renewd's key (an UPDATE carrying it is REFUSED as a whole).
    pub shared_zone_denied: Vec<String>,
    /// Labels among `host1..hostN` whose challenge zone is served (and delegated) by dns1 and dns2
    /// only: with dns3 stopped, certificates in these zones still propagate.
    pub two_ns_hosts: Vec<String>,
    /// Pebble `externalAccountBindingRequired` (the EAB key is configured either way).
    pub eab_required: bool,
    /// Pebble `certificateValidityPeriod`. Default 90 days, like the seeds' CAs.
    pub cert_validity: Duration,
    /// acme-master `notify-delay` in seconds. `None` keeps BIND's default (5 s), as deployed.
    /// `Some(0)` makes every UPDATE NOTIFY at once, for tests that do not care.
    pub notify_delay: Option<u32>,
    /// After startup, wait until the master's startup NOTIFYs can no longer hold back the first
    /// UPDATE's NOTIFY (see [`Topology::try_start`]). Only matters with a non-zero notify delay.
    pub settle_notify: bool,
    /// Every `hostK` also gets the zone `_validation-persist.hostK.example.test` ([`persist_zone`]),
    /// built like its challenge zone: on the master with the same update-policy (renewd's key may
    /// write TXT at the apex), transferred to the same secondaries, delegated from the parent. For
    /// dns-persist-01's standing record.
    pub persist_zones: bool,
    /// `PEBBLE_ALTERNATE_ROOTS`: Pebble issues under this many more roots and links their chains as
    /// `rel="alternate"` from every certificate download.
    pub alternate_roots: u32,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        TopologyOptions {
            n_hosts: 3,
            denied_hosts: Vec::new(),
            cname_aliases: Vec::new(),
            shared_zone_hosts: 0,
            shared_zone_denied: Vec::new(),
            two_ns_hosts: Vec::new(),
            eab_required: true,
            cert_validity: Duration::from_secs(90 * 86400),
            notify_delay: None,
            settle_notify: true,
            persist_zones: false,
            alternate_roots: 0,
        }
    }
}

/// Pebble's issuing chain (new on every Pebble start), as fetched from the management port.
#[derive(Debug, Clone)]
pub struct IssuingRoots {
    pub root: PathBuf,
    pub intermediate: PathBuf,
}

/// One running copy of the reference deployment. Dropping it stops everything.
///
/// Create and drop it on threads of the test process as you like: servers are forked from one
/// long-lived thread (see [`spawn_long_lived`]).
pub struct Topology {
    opts: TopologyOptions,
    tempdir: Option<tempfile::TempDir>,
    dir: PathBuf,
    netns: OwnedFd,
    resolv_conf: CString,
    procs: Mutex<BTreeMap<Server, Child>>,
    /// Challenge zones served by the master and the secondaries.
    zones: Vec<String>,
    serial: u32,
    eab_hmac: String,
    startup: Duration,
    phases: Vec<(&'static str, Duration)>,
}

impl Topology {
    /// [`Topology::try_start`], panicking with the reason (and the failing server's log tail).
    pub fn start(opts: TopologyOptions) -> Topology {
        match Topology::try_start(opts) {
            Ok(t) => t,
            Err(e) => panic!("test topology did not come up: {e}"),
        }
    }

    /// Builds the topology and returns once every server answers: the master serves every challenge
    /// zone, dns1..3 have the master's serial of every zone, both resolvers resolve through the whole
    /// delegation chain, and Pebble serves its directory.
    ///
    /// NOTIFY settle: BIND sends NOTIFYs for a zone at most once per `notify-delay` (5 s default), and
    /// the startup NOTIFY counts, so an UPDATE in the first 5 s after the master loads would reach the
    /// secondaries only when those 5 s are up. A production master has been up for weeks, so with
    /// `settle_notify` this waits (overlapped with the rest of the startup) until `notify-delay` has
    /// passed since the master answered. Everything else is polled, no fixed sleeps.
    pub fn try_start(opts: TopologyOptions) -> Result<Topology, String> {
        let t0 = Instant::now();
        validate(&opts)?;
        let tempdir = tempfile::Builder::new()
            .prefix("renewd-topology.")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let dir = tempdir.path().to_path_buf();
        let netns = create_netns(&dir)?;
        let resolv_conf = CString::new(dir.join("resolv.conf").as_os_str().as_bytes())
            .map_err(|e| e.to_string())?;
        let mut zones: Vec<String> = (1..=opts.n_hosts)
            .map(|k| challenge_zone(&domain(&format!("host{k}"))))
            .collect();
        zones.extend(opts.denied_hosts.iter().map(|h| challenge_zone(&domain(h))));
        if opts.shared_zone_hosts > 0 || !opts.shared_zone_denied.is_empty() {
            zones.push(SHARED_ZONE.to_string());
        }
        if opts.persist_zones {
            zones.extend((1..=opts.n_hosts).map(|k| persist_zone(&domain(&format!("host{k}")))));
        }
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let mut hmac = [0u8; 32];
        rand::fill(&mut hmac);
        let eab_hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hmac);

        // From here on, Drop cleans up whatever was started.
        let mut topo = Topology {
            opts,
            tempdir: Some(tempdir),
            dir,
            netns,
            resolv_conf,
            procs: Mutex::new(BTreeMap::new()),
            zones,
            serial,
            eab_hmac,
            startup: Duration::ZERO,
            phases: Vec::new(),
        };
        topo.bring_up()?;
        topo.startup = t0.elapsed();
        Ok(topo)
    }

    fn bring_up(&mut self) -> Result<(), String> {
        let mut phase = Instant::now();
        let mut mark = |phases: &mut Vec<(&'static str, Duration)>, name: &'static str| {
            phases.push((name, phase.elapsed()));
            phase = Instant::now();
        };
        // lo is down in a new namespace; named only listens on addresses configured on an interface.
        let mut batch = String::from("link set lo up\n");
        for ip in 10..=17 {
            let _ = writeln!(batch, "addr add 127.0.0.{ip}/32 dev lo");
        }
        let mut ip = self.netns_command("ip", false);
        ip.args(["-batch", "-"]);
        run_with_stdin(&mut ip, &batch)?;
        fs::write(
            self.dir.join("resolv.conf"),
            format!("nameserver {CLIENT_RESOLVER_IP}\noptions attempts:1 timeout:2\n"),
        )
        .map_err(|e| e.to_string())?;
        mark(&mut self.phases, "netns");

        self.write_keys()?;
        self.write_named_configs()?;
        mark(&mut self.phases, "keys+configs");

        // The master first: its startup NOTIFY starts the notify-delay clock, which then runs while
        // everything else comes up. Secondaries wait for it so their first SOA query succeeds.
        for s in [
            Server::Master,
            Server::Root,
            Server::Parent,
            Server::CaResolver,
            Server::ClientResolver,
        ] {
            self.spawn_server(s)?;
        }
        self.write_pebble_files()?;
        self.spawn_server(Server::Pebble)?;
        mark(&mut self.phases, "spawn");
        self.wait_authoritative(Server::Master)?;
        let master_ready = Instant::now();
        mark(&mut self.phases, "master ready");
        for n in 1..=3 {
            self.spawn_server(Server::Secondary(n))?;
        }
        self.wait_authoritative(Server::Root)?;
        self.wait_authoritative(Server::Parent)?;
        for n in 1..=3 {
            self.wait_synced(n)?;
        }
        mark(&mut self.phases, "secondaries synced");
        self.wait_resolver(Server::CaResolver)?;
        self.wait_resolver(Server::ClientResolver)?;
        mark(&mut self.phases, "resolvers");
        self.wait_pebble()?;
        mark(&mut self.phases, "pebble");
        self.settle_after(master_ready);
        mark(&mut self.phases, "notify settle");
        Ok(())
    }

    // ---------------------------------------------------------------- accessors

    /// The topology's directory: per-server subdirectories with `named.conf`, zones and `named.log`,
    /// `pebble/` (config, log, TLS CA), `keys/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &TopologyOptions {
        &self.opts
    }

    /// Wall time [`Topology::try_start`] took.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Per-phase startup times, for reports.
    pub fn startup_phases(&self) -> &[(&'static str, Duration)] {
        &self.phases
    }

    pub fn acme_directory_url(&self) -> String {
        format!("https://127.0.0.1:{PEBBLE_ACME_PORT}/dir")
    }

    pub fn eab_kid(&self) -> &str {
        EAB_KID
    }

    /// The EAB HMAC key as CAs hand it out: base64url without padding (32 random bytes).
    pub fn eab_hmac_b64url(&self) -> &str {
        &self.eab_hmac
    }

    /// The CA that signed Pebble's HTTPS certificate (for `accounts.*.trust`, curl `--cacert`).
    pub fn tls_ca_pem_path(&self) -> PathBuf {
        self.dir.join("pebble/tls-ca.pem")
    }

    /// Fetches Pebble's current issuing root and intermediate (they change on every Pebble start)
    /// into `pebble/issuing-{root,intermediate}.pem`.
    pub fn issuing_roots(&self) -> IssuingRoots {
        let roots = IssuingRoots {
            root: self.dir.join("pebble/issuing-root.pem"),
            intermediate: self.dir.join("pebble/issuing-intermediate.pem"),
        };
        for (url_path, file) in [
            ("roots/0", &roots.root),
            ("intermediates/0", &roots.intermediate),
        ] {
            let url = format!("https://127.0.0.1:{PEBBLE_MGMT_PORT}/{url_path}");
            let pem = self
                .curl(&url)
                .unwrap_or_else(|e| panic!("fetching {url} from Pebble: {e}"));
            fs::write(file, pem).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        }
        roots
    }

    /// The subject CN of Pebble's issuing root `n` (0: the default chain's; 1..: the alternates').
    pub fn root_cn(&self, n: u32) -> String {
        let url = format!("https://127.0.0.1:{PEBBLE_MGMT_PORT}/roots/{n}");
        let pem = self
            .curl(&url)
            .unwrap_or_else(|e| panic!("fetching {url} from Pebble: {e}"));
        let file = self.dir.join(format!("pebble/root-{n}.pem"));
        fs::write(&file, pem).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        super::x509::cert_subject_cn(&file).unwrap_or_else(|| panic!("no CN in root {n}"))
    }

    /// renewd's TSIG key, exactly as `tsig-keygen -a hmac-sha256 acme-update` wrote it (mode 0600).
    pub fn tsig_key_file(&self) -> PathBuf {
        self.dir.join("keys").join(format!("{TSIG_KEY_NAME}.key"))
    }

    /// The key that the [`TopologyOptions::denied_hosts`] zones grant (renewd does not have it).
    pub fn other_tsig_key_file(&self) -> PathBuf {
        self.dir
            .join("keys")
            .join(format!("{OTHER_TSIG_KEY_NAME}.key"))
    }

    /// acme-master, the UPDATE target: `127.0.0.12:53`.
    pub fn master_addr(&self) -> SocketAddr {
        Server::Master.addr()
    }

    /// dns1..dns3, `127.0.0.13-15:53`.
    pub fn secondary_addrs(&self) -> Vec<SocketAddr> {
        (1..=3).map(|n| Server::Secondary(n).addr()).collect()
    }

    /// The client resolver, `127.0.0.17:53` (renewd's `resolver:`).
    pub fn resolver_addr(&self) -> SocketAddr {
        Server::ClientResolver.addr()
    }

    /// The CA's resolver, `127.0.0.16:53` (Pebble's `-dnsserver`).
    pub fn ca_resolver_addr(&self) -> SocketAddr {
        Server::CaResolver.addr()
    }

    /// `hostK.example.test` (k from 1).
    pub fn host_domain(&self, k: usize) -> String {
        assert!(
            (1..=self.opts.n_hosts).contains(&k),
            "host{k} is not in this topology (n_hosts = {})",
            self.opts.n_hosts
        );
        domain(&format!("host{k}"))
    }

    /// Every zone on the master and the secondaries: the hosts' challenge zones, the denied hosts',
    /// then (with [`TopologyOptions::persist_zones`]) the hosts' `_validation-persist` zones.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// The SOA serial every zone was created with.
    pub fn initial_serial(&self) -> u32 {
        self.serial
    }

    /// A server's log (`named.log`, or Pebble's stdout/stderr).
    pub fn log_path(&self, s: Server) -> PathBuf {
        let file = if s == Server::Pebble {
            "pebble.log"
        } else {
            "named.log"
        };
        self.dir.join(s.dir_name()).join(file)
    }

    /// The PID of a running server.
    pub fn pid(&self, s: Server) -> Option<u32> {
        self.procs().get(&s).map(Child::id)
    }

    // ---------------------------------------------------------------- commands in the namespace

    /// A `Command` that runs inside this topology's network namespace: only `lo` with 127.0.0.x,
    /// so nothing leaves the machine and 127.0.0.1:14000 is this topology's Pebble. It also gets a
    /// private mount namespace with `/etc/resolv.conf` bind-mounted to the client resolver (best
    /// effort: skipped if the host's resolv.conf cannot be mounted over), `NOTIFY_SOCKET` removed,
    /// and `PR_SET_PDEATHSIG(SIGKILL)`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.netns_command(program, true)
    }

    fn netns_command(&self, program: impl AsRef<OsStr>, with_resolv_conf: bool) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_remove("NOTIFY_SOCKET");
        // Each Command owns its own (close-on-exec) descriptor of the namespace, so it stays valid
        // however long the Command lives.
        let netns = self.netns.try_clone().expect("dup netns fd");
        let resolv = with_resolv_conf.then(|| self.resolv_conf.clone());
        let parent = std::process::id();
        // SAFETY: the closure only makes async-signal-safe syscalls and does not allocate.
        unsafe {
            cmd.pre_exec(move || enter_namespace(&netns, parent, resolv.as_deref()));
        }
        cmd
    }

    /// Runs `cmd` (from [`Topology::command`]) with a 60 s bound.
    pub fn run(&self, cmd: &mut Command) -> Output {
        output_with_timeout(cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `nsupdate -k KEY_FILE` inside the namespace with `script` on stdin (include `server`/`send`).
    pub fn nsupdate(&self, key_file: &Path, script: &str) -> Output {
        let mut cmd = self.command("nsupdate");
        cmd.arg("-k").arg(key_file).stdin(Stdio::piped());
        run_with_stdin_output(&mut cmd, script).unwrap_or_else(|e| panic!("nsupdate: {e}"))
    }

    /// Adds TXT `value` at the apex of challenge zone `zone` on the master with renewd's key.
    /// Returns nsupdate's output (check `status` yourself: a REFUSED update is a result too).
    pub fn add_txt(&self, zone: &str, value: &str) -> Output {
        self.nsupdate(
            &self.tsig_key_file(),
            &format!("server {MASTER_IP} 53\nzone {zone}\nupdate add {zone}. 60 IN TXT \"{value}\"\nsend\n"),
        )
    }

    /// Deletes exactly TXT `value` at the apex of `zone` (delete by rdata) with renewd's key.
    pub fn delete_txt(&self, zone: &str, value: &str) -> Output {
        self.nsupdate(
            &self.tsig_key_file(),
            &format!("server {MASTER_IP} 53\nzone {zone}\nupdate delete {zone}. IN TXT \"{value}\"\nsend\n"),
        )
    }

    /// `dig +norec +short TXT owner @server`: the TXT strings the server itself holds (strings of one
    /// record concatenated). Empty when it has none, or does not answer.
    pub fn txt_at(&self, server: SocketAddr, owner: &str) -> Vec<String> {
        let out = self.dig(server, &["+norec", owner, "TXT"]);
        out.lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(parse_txt_line)
            .collect()
    }

    /// `dig +short` output (errors included, as dig prints them) for a query sent to `server`.
    pub fn dig(&self, server: SocketAddr, args: &[&str]) -> String {
        let mut cmd = self.netns_command("dig", false);
        cmd.arg(format!("@{}", server.ip()))
            .args([
                "-p",
                &server.port().to_string(),
                "+short",
                "+time=1",
                "+tries=1",
            ])
            .args(args);
        match output_with_timeout(&mut cmd, Duration::from_secs(10)) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => panic!("dig: {e}"),
        }
    }

    /// The SOA serial `server` serves for `zone` (non-recursive), if it answers with one.
    pub fn soa_serial_at(&self, server: SocketAddr, zone: &str) -> Option<u32> {
        parse_soa_serial(&self.dig(server, &["+norec", zone, "SOA"]))
    }

    /// `rndc` against one named (e.g. `["sync"]`, `["notify", zone]`, `["zonestatus", zone]`).
    pub fn rndc(&self, s: Server, args: &[&str]) -> Output {
        assert!(s != Server::Pebble, "rndc talks to named only");
        let mut cmd = self.netns_command("rndc", false);
        cmd.arg("-c")
            .arg(self.dir.join("rndc.conf"))
            .args(["-s", &s.ip().to_string(), "-p", "953"])
            .args(args);
        self.run(&mut cmd)
    }

    /// curl (inside the namespace, trusting Pebble's TLS CA) and return the body.
    pub fn curl(&self, url: &str) -> Result<String, String> {
        let mut cmd = self.netns_command("curl", false);
        cmd.args(["-fsS", "--max-time", "5", "--cacert"])
            .arg(self.tls_ca_pem_path())
            .arg(url);
        let out =
            output_with_timeout(&mut cmd, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "curl {url}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The `secret "..."` of renewd's TSIG key (for clients configured with the secret itself: certbot's
    /// ini, lego's environment).
    pub fn tsig_secret(&self) -> String {
        let text = fs::read_to_string(self.tsig_key_file()).expect("read the TSIG key");
        let start = text.find("secret \"").expect("secret in key file") + "secret \"".len();
        let end = start + text[start..].find('"').expect("secret ends");
        text[start..end].to_string()
    }

    /// certbot inside the namespace, trusting Pebble's TLS CA (`REQUESTS_CA_BUNDLE`): `args`, then its
    /// configuration, work and log directories `dir/config`, `dir/work`, `dir/logs`.
    pub fn certbot_command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = self.command("certbot");
        c.env("REQUESTS_CA_BUNDLE", self.tls_ca_pem_path())
            .args(args)
            .arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--work-dir")
            .arg(dir.join("work"))
            .arg("--logs-dir")
            .arg(dir.join("logs"));
        c
    }

    /// certbot's options for an account at this Pebble (EAB), without prompts.
    pub fn certbot_account_args(&self) -> Vec<String> {
        vec![
            "-n".into(),
            "--agree-tos".into(),
            "-m".into(),
            "pki@example.test".into(),
            "--server".into(),
            self.acme_directory_url(),
            "--eab-kid".into(),
            self.eab_kid().into(),
            // `=`: a base64url key may begin with `-`, which argparse would take for an option.
            format!("--eab-hmac-key={}", self.eab_hmac_b64url()),
        ]
    }

    // ---------------------------------------------------------------- stopping and starting

    /// Stops dnsN (N = 1..=3) by PID (SIGTERM, then SIGKILL after 5 s).
    pub fn stop_secondary(&self, n: u8) {
        self.stop_server(Server::Secondary(n));
    }

    /// Starts dnsN again from its transferred zone files and waits until it answers for every zone.
    ///
    /// Like any BIND secondary restarted with fresh zone files, it does not ask the master at once:
    /// it serves what it had until the next NOTIFY or its SOA refresh timer (300 s here). Updates
    /// made while it was down stay missing until then; [`Topology::refresh_secondary`] asks now.
    pub fn start_secondary(&self, n: u8) {
        self.start_server(Server::Secondary(n));
    }

    /// `rndc refresh` every zone on dnsN (an SOA check against the master, then IXFR if behind).
    /// Returns at once; follow with [`Topology::wait_secondaries_synced`].
    pub fn refresh_secondary(&self, n: u8) {
        for zone in &self.zones_of_secondary(n) {
            let out = self.rndc(Server::Secondary(n), &["refresh", zone]);
            assert!(
                out.status.success(),
                "rndc refresh {zone} on dns{n}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Stops any server by PID. A no-op if it is not running.
    pub fn stop_server(&self, s: Server) {
        let child = self.procs().remove(&s);
        if let Some(child) = child {
            stop_children(vec![(s, child)], STOP_GRACE);
        }
    }

    /// Starts a stopped server again and waits until it answers. Pebble comes back with a new
    /// issuing chain and no accounts; the master comes back with a new startup NOTIFY (settled as
    /// in [`Topology::try_start`]).
    pub fn start_server(&self, s: Server) {
        assert!(self.pid(s).is_none(), "{s:?} is already running");
        let result = self.spawn_server(s).and_then(|()| match s {
            Server::Pebble => self.wait_pebble(),
            Server::CaResolver | Server::ClientResolver => self.wait_resolver(s),
            Server::Master => {
                self.wait_authoritative(s)?;
                self.settle_after(Instant::now());
                Ok(())
            }
            _ => self.wait_authoritative(s),
        });
        if let Err(e) = result {
            panic!("restarting {s:?}: {e}");
        }
    }

    /// Waits (up to 20 s) until every running secondary serves the master's current serial of every
    /// zone. Note BIND's `notify-delay`: a second UPDATE to a zone within 5 s of the last NOTIFY
    /// reaches the secondaries only when the 5 s are up.
    pub fn wait_secondaries_synced(&self) {
        for n in 1..=3 {
            if self.pid(Server::Secondary(n)).is_some() {
                self.wait_synced(n).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    // ---------------------------------------------------------------- internals

    fn procs(&self) -> MutexGuard<'_, BTreeMap<Server, Child>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn server_dir(&self, s: Server) -> PathBuf {
        self.dir.join(s.dir_name())
    }

    fn spawn_server(&self, s: Server) -> Result<(), String> {
        let sdir = self.server_dir(s);
        let (mut cmd, out_file) = if s == Server::Pebble {
            let mut cmd = self.netns_command("pebble", false);
            cmd.arg("-config")
                .arg(sdir.join("pebble-config.json"))
                .args(["-dnsserver", &Server::CaResolver.addr().to_string()])
                // No random 0-15 s sleep before validating; no authz reuse (renewals must really
                // validate again); no injected badNonce errors (they make timings noisy).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_AUTHZREUSE", "0")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env(
                    "PEBBLE_ALTERNATE_ROOTS",
                    self.opts.alternate_roots.to_string(),
                );
            (cmd, sdir.join("pebble.log"))
        } else {
            let mut cmd = self.netns_command("named", false);
            // Foreground so the harness holds the real PID; root without -u; IPv4 only.
            cmd.arg("-f")
                .arg("-4")
                .arg("-c")
                .arg(sdir.join("named.conf"));
            (cmd, sdir.join("named.out"))
        };
        cmd.current_dir(&sdir);
        let child =
            spawn_long_lived_logged(cmd, &out_file).map_err(|e| format!("spawning {s:?}: {e}"))?;
        self.procs().insert(s, child);
        Ok(())
    }

    /// Fails with the server's log tail if it has exited.
    fn check_alive(&self, s: Server) -> Result<(), String> {
        let mut procs = self.procs();
        let Some(child) = procs.get_mut(&s) else {
            return Err(format!("{s:?} is not running"));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                procs.remove(&s);
                drop(procs);
                let out = self.server_dir(s).join(if s == Server::Pebble {
                    "pebble.log"
                } else {
                    "named.out"
                });
                let mut msg = format!("{s:?} exited ({status})\n{}", tail(&out, 20));
                if s != Server::Pebble {
                    let _ = write!(msg, "\n{}", tail(&self.log_path(s), 20));
                    if fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                        .is_ok_and(|v| v.starts_with('Y'))
                    {
                        msg.push_str(
                            "\n(AppArmor is enabled: its usr.sbin.named profile keeps named out of temp \
                             directories; .ci/install-deps disables that profile)",
                        );
                    }
                }
                Err(msg)
            }
            Err(e) => Err(format!("{s:?}: {e}")),
        }
    }

    /// An authoritative server answers SOA (non-recursive) for every zone it is primary or secondary for.
    fn wait_authoritative(&self, s: Server) -> Result<(), String> {
        let zones: Vec<String> = match s {
            Server::Root => vec![".".into(), "test.".into()],
            Server::Parent => vec![DOMAIN.into()],
            Server::Secondary(n) => self.zones_of_secondary(n),
            _ => self.zones.clone(),
        };
        for zone in zones {
            poll_ready(
                &format!("{s:?} to serve {zone} SOA"),
                READY_TIMEOUT,
                || self.check_alive(s),
                || self.soa_serial_at(s.addr(), &zone),
            )?;
        }
        Ok(())
    }

    /// The secondaries (1-based) that serve `zone`: dns1..3, or dns1 and dns2 for the zones of
    /// [`TopologyOptions::two_ns_hosts`].
    pub fn zone_secondaries(&self, zone: &str) -> Vec<u8> {
        let two = self
            .opts
            .two_ns_hosts
            .iter()
            .any(|h| challenge_zone(&domain(h)) == zone || persist_zone(&domain(h)) == zone);
        if two {
            vec![1, 2]
        } else {
            vec![1, 2, 3]
        }
    }

    fn zones_of_secondary(&self, n: u8) -> Vec<String> {
        self.zones
            .iter()
            .filter(|z| self.zone_secondaries(z).contains(&n))
            .cloned()
            .collect()
    }

    fn wait_synced(&self, n: u8) -> Result<(), String> {
        let s = Server::Secondary(n);
        for zone in &self.zones_of_secondary(n) {
            let want = self
                .soa_serial_at(self.master_addr(), zone)
                .ok_or_else(|| format!("master does not answer SOA for {zone}"))?;
            poll_ready(
                &format!("dns{n} to serve {zone} serial {want}"),
                READY_TIMEOUT,
                || self.check_alive(s),
                || (self.soa_serial_at(s.addr(), zone) == Some(want)).then_some(()),
            )?;
        }
        Ok(())
    }

    /// A resolver answers recursively through root → test. → example.test (→ dns1..3).
    fn wait_resolver(&self, s: Server) -> Result<(), String> {
        let name = self
            .zones
            .first()
            .cloned()
            .unwrap_or_else(|| DOMAIN.to_string());
        poll_ready(
            &format!("{s:?} to resolve {name} SOA"),
            READY_TIMEOUT,
            || self.check_alive(s),
            || parse_soa_serial(&self.dig(s.addr(), &[&name, "SOA"])),
        )?;
        Ok(())
    }

    fn wait_pebble(&self) -> Result<(), String> {
        let dir = poll_ready(
            "Pebble's ACME directory",
            READY_TIMEOUT,
            || self.check_alive(Server::Pebble),
            || self.curl(&self.acme_directory_url()).ok(),
        )?;
        fs::write(self.dir.join("pebble/directory.json"), dir).map_err(|e| e.to_string())
    }

    fn settle_after(&self, master_ready: Instant) {
        let delay = self.opts.notify_delay.unwrap_or(BIND_DEFAULT_NOTIFY_DELAY);
        if !self.opts.settle_notify || delay == 0 {
            return;
        }
        // The startup NOTIFY goes out right when the zones load, i.e. just before the master
        // answered; half a second of margin covers the gap and a slow machine.
        let until =
            master_ready + Duration::from_secs(u64::from(delay)) + Duration::from_millis(500);
        if let Some(rest) = until.checked_duration_since(Instant::now()) {
            thread::sleep(rest);
        }
    }

    fn write_keys(&self) -> Result<(), String> {
        let keys = self.dir.join("keys");
        fs::create_dir_all(&keys).map_err(|e| e.to_string())?;
        for (name, file) in [
            (TSIG_KEY_NAME, self.tsig_key_file()),
            (OTHER_TSIG_KEY_NAME, self.other_tsig_key_file()),
            ("rndc-key", keys.join("rndc.key")),
        ] {
            let out = Command::new("tsig-keygen")
                .args(["-a", "hmac-sha256", name])
                .output()
                .map_err(|e| format!("tsig-keygen: {e} (is bind9-utils installed?)"))?;
            if !out.status.success() {
                return Err(format!(
                    "tsig-keygen: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            write_secret(&file, &out.stdout)?;
        }
        fs::write(
            self.dir.join("rndc.conf"),
            format!(
                "include \"{}\";\noptions {{ default-key \"rndc-key\"; default-port 953; }};\n",
                keys.join("rndc.key").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        fs::write(
            self.dir.join("root.hints"),
            format!(".  3600000 IN NS a.root-servers.test.\na.root-servers.test. 3600000 IN A {ROOT_IP}\n"),
        )
        .map_err(|e| e.to_string())
    }

    fn named_options(&self, s: Server) -> String {
        let d = self.server_dir(s);
        let d = d.display();
        let ip = s.ip();
        let rndc = self.dir.join("keys/rndc.key");
        let mut extra = String::new();
        if s.is_recursive() {
            extra.push_str("  recursion yes;\n  allow-recursion { 127.0.0.0/8; };\n  allow-query-cache { 127.0.0.0/8; };\n");
        } else {
            extra.push_str("  recursion no;\n");
        }
        if s == Server::CaResolver {
            // Tests re-validate the same name seconds apart (issue, then renew); with normal caching
            // the CA would see the previous TXT (TTL 60) or a cached NXDOMAIN/NODATA (SOA minimum 60).
            // In production renewals are weeks apart. 1 s is the smallest that keeps resolution
            // working: BIND 9.18 accepts 0 too, but documents that max-cache-ttl 0 can SERVFAIL
            // everything by losing the NS/glue needed mid-resolution.
            extra.push_str("  max-cache-ttl 1;\n  max-ncache-ttl 1;\n");
        }
        if s == Server::Master {
            if let Some(delay) = self.opts.notify_delay {
                let _ = writeln!(extra, "  notify-delay {delay};");
            }
        }
        let mut conf = format!(
            r#"include "{rndc}";
controls {{ inet {ip} port 953 allow {{ 127.0.0.0/8; }} keys {{ "rndc-key"; }}; }};
options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  listen-on port 53 {{ {ip}; }};
  listen-on-v6 {{ none; }};
  // Pinned: otherwise the kernel picks the destination as source and allow-transfer/notify ACLs misfire.
  query-source address {ip};
  notify-source {ip};
  transfer-source {ip};
  dnssec-validation no;
  allow-query {{ any; }};
{extra}}};
logging {{
  channel f {{ file "{d}/named.log"; print-time yes; print-category yes; print-severity yes; severity info; }};
  category default {{ f; }}; category notify {{ f; }}; category xfer-in {{ f; }}; category xfer-out {{ f; }};
  category update {{ f; }}; category security {{ f; }}; category lame-servers {{ null; }};
}};
"#,
            rndc = rndc.display()
        );
        if s != Server::Root {
            // Every named resolves (e.g. the master's NOTIFY targets) through our root, never the real one.
            let _ = writeln!(
                conf,
                "zone \".\" {{ type hint; file \"{}\"; }};",
                self.dir.join("root.hints").display()
            );
        }
        conf
    }

    fn write_named_configs(&self) -> Result<(), String> {
        let w = |path: PathBuf, text: String| {
            fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
        };
        for s in Server::ALL_NAMED.into_iter().chain([Server::Pebble]) {
            fs::create_dir_all(self.server_dir(s)).map_err(|e| e.to_string())?;
        }
        let dns = |n: usize| format!("dns{n}.{DOMAIN}.");

        // root + test.
        let mut conf = self.named_options(Server::Root);
        conf.push_str("zone \".\" { type primary; file \"root.db\"; notify no; };\n");
        conf.push_str("zone \"test.\" { type primary; file \"test.db\"; notify no; };\n");
        w(self.server_dir(Server::Root).join("named.conf"), conf)?;
        w(
            self.server_dir(Server::Root).join("root.db"),
            format!(
                "$TTL 86400\n. IN SOA a.root-servers.test. hostmaster.test. 1 1800 900 604800 86400\n\
                 . IN NS a.root-servers.test.\ntest. IN NS a.root-servers.test.\na.root-servers.test. IN A {ROOT_IP}\n"
            ),
        )?;
        w(
            self.server_dir(Server::Root).join("test.db"),
            format!(
                "$TTL 86400\n@ IN SOA a.root-servers.test. hostmaster.test. 1 1800 900 604800 86400\n\
                 @ IN NS a.root-servers.test.\na.root-servers IN A {ROOT_IP}\n\
                 {DOMAIN}. IN NS ns1.{DOMAIN}.\nns1.{DOMAIN}. IN A {PARENT_IP}\n"
            ),
        )?;

        // parent example.test: host A records, the delegations, the CNAME aliases.
        let mut conf = self.named_options(Server::Parent);
        let _ = writeln!(
            conf,
            "zone \"{DOMAIN}\" {{ type primary; file \"parent.db\"; notify no; }};"
        );
        w(self.server_dir(Server::Parent).join("named.conf"), conf)?;
        let mut db = format!(
            "$TTL 300\n@ IN SOA ns1.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 300\n@ IN NS ns1.{DOMAIN}.\n\
             ns1 IN A {PARENT_IP}\nacme-master IN A {MASTER_IP}\n"
        );
        for (i, ip) in SECONDARY_IPS.iter().enumerate() {
            let _ = writeln!(db, "dns{} IN A {ip}", i + 1);
        }
        let hosts = (1..=self.opts.n_hosts)
            .map(|k| format!("host{k}"))
            .chain(self.opts.denied_hosts.iter().cloned());
        for host in hosts {
            let _ = writeln!(db, "{host} IN A 127.0.0.1");
        }
        // Every zone the master serves is a child of example.test: delegate it to its secondaries.
        for zone in &self.zones {
            let label = zone.trim_end_matches(&format!(".{DOMAIN}"));
            for n in self.zone_secondaries(zone) {
                let _ = writeln!(db, "{label} IN NS {}", dns(usize::from(n)));
            }
        }
        let shared = (1..=self.opts.shared_zone_hosts)
            .map(|k| format!("shared{k}"))
            .chain(self.opts.shared_zone_denied.iter().cloned());
        for host in shared {
            let _ = writeln!(db, "{host} IN A 127.0.0.1");
            let _ = writeln!(db, "_acme-challenge.{host} IN CNAME {host}.{SHARED_ZONE}.");
        }
        for (alias, target) in &self.opts.cname_aliases {
            let _ = writeln!(db, "{alias} IN A 127.0.0.1");
            let _ = writeln!(
                db,
                "_acme-challenge.{alias} IN CNAME _acme-challenge.{target}.{DOMAIN}."
            );
        }
        w(self.server_dir(Server::Parent).join("parent.db"), db)?;

        // acme-master: one zone per host, as in the seed.
        let mut conf = self.named_options(Server::Master);
        let _ = writeln!(conf, "include \"{}\";", self.tsig_key_file().display());
        let _ = writeln!(
            conf,
            "include \"{}\";",
            self.other_tsig_key_file().display()
        );
        let secs: String = SECONDARY_IPS.iter().map(|ip| format!("{ip}; ")).collect();
        for zone in &self.zones {
            let denied = self
                .opts
                .denied_hosts
                .iter()
                .any(|h| challenge_zone(&domain(h)) == *zone);
            let key = if denied {
                OTHER_TSIG_KEY_NAME
            } else {
                TSIG_KEY_NAME
            };
            let policy = if zone == SHARED_ZONE {
                let denied: String = self
                    .opts
                    .shared_zone_denied
                    .iter()
                    .map(|h| format!("deny {key} name {h}.{zone}. TXT; "))
                    .collect();
                format!("{denied}grant {key} subdomain {zone}. TXT;")
            } else {
                format!("grant {key} name {zone}. TXT;")
            };
            let _ = write!(
                conf,
                "zone \"{zone}\" {{\n  type primary; file \"{zone}.db\";\n  update-policy {{ {policy} }};\n  \
                 allow-transfer {{ {secs}}};\n  also-notify {{ {secs}}};\n  notify yes;\n}};\n"
            );
            let mut db = format!(
                "$TTL 60\n@ IN SOA acme-master.{DOMAIN}. hostmaster.{DOMAIN}. {} 300 60 3600 60\n",
                self.serial
            );
            for n in self.zone_secondaries(zone) {
                let _ = writeln!(db, "@ IN NS {}", dns(usize::from(n)));
            }
            w(
                self.server_dir(Server::Master).join(format!("{zone}.db")),
                db,
            )?;
        }
        w(self.server_dir(Server::Master).join("named.conf"), conf)?;

        for n in 1..=3u8 {
            let s = Server::Secondary(n);
            let mut conf = self.named_options(s);
            for zone in self
                .zones
                .iter()
                .filter(|z| self.zone_secondaries(z).contains(&n))
            {
                let _ = writeln!(
                    conf,
                    "zone \"{zone}\" {{ type secondary; primaries {{ {MASTER_IP}; }}; file \"{zone}.db\"; notify no; }};"
                );
            }
            w(self.server_dir(s).join("named.conf"), conf)?;
        }
        for s in [Server::CaResolver, Server::ClientResolver] {
            w(self.server_dir(s).join("named.conf"), self.named_options(s))?;
        }
        Ok(())
    }

    fn write_pebble_files(&self) -> Result<(), String> {
        let p = self.server_dir(Server::Pebble);
        // Pebble's HTTPS certificate, from a CA of our own that clients are told to trust.
        ec_cert_in(
            &p,
            &EcCert {
                cn: "renewd test Pebble TLS root",
                cert: "tls-ca.pem",
                key: "tls-ca.key",
                issuer: None,
                extensions: &[],
            },
        )?;
        ec_cert_in(
            &p,
            &EcCert {
                cn: "localhost",
                cert: "cert.pem",
                key: "key.pem",
                issuer: Some(("tls-ca.pem", "tls-ca.key")),
                extensions: &[
                    "subjectAltName=DNS:localhost,DNS:pebble,IP:127.0.0.1",
                    "extendedKeyUsage=serverAuth",
                    "basicConstraints=CA:FALSE",
                ],
            },
        )?;
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{PEBBLE_ACME_PORT}"),
            "managementListenAddress": format!("127.0.0.1:{PEBBLE_MGMT_PORT}"),
            "certificate": p.join("cert.pem"),
            "privateKey": p.join("key.pem"),
            "httpPort": 5002,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "certificateValidityPeriod": self.opts.cert_validity.as_secs(),
            "externalAccountBindingRequired": self.opts.eab_required,
            "externalAccountMACKeys": { EAB_KID: self.eab_hmac },
        }});
        write_secret(&p.join("pebble-config.json"), config.to_string().as_bytes())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let procs: Vec<(Server, Child)> = std::mem::take(&mut *self.procs()).into_iter().collect();
        stop_children(procs, STOP_GRACE);
        let netns = self.dir.join("netns");
        if let Ok(c) = CString::new(netns.as_os_str().as_bytes()) {
            // SAFETY: plain syscall on a NUL-terminated path.
            let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    eprintln!("topology: umount {}: {e}", netns.display());
                }
            }
        }
        let keep = std::env::var_os("RENEWD_KEEP_TESTBED").is_some_and(|v| v == "1");
        if let Some(tempdir) = self.tempdir.take() {
            if keep {
                let path = tempdir.keep();
                eprintln!("topology: RENEWD_KEEP_TESTBED=1, left {} (server logs in */named.log, pebble/pebble.log)", path.display());
            } else {
                if thread::panicking() {
                    eprintln!(
                        "topology: removing {}; rerun with RENEWD_KEEP_TESTBED=1 to keep the server logs",
                        self.dir.display()
                    );
                }
                if let Err(e) = tempdir.close() {
                    eprintln!("topology: removing {}: {e}", self.dir.display());
                }
            }
        }
    }
}

// -------------------------------------------------------------------- helpers

fn validate(opts: &TopologyOptions) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let hosts: Vec<String> = (1..=opts.n_hosts).map(|k| format!("host{k}")).collect();
    for h in &opts.denied_hosts {
        if !label_ok(h) || hosts.contains(h) {
            return Err(format!(
                "denied host {h:?} must be a new lower-case label (not host1..hostN)"
            ));
        }
    }
    for h in &opts.shared_zone_denied {
        if !label_ok(h) || hosts.contains(h) || h.starts_with("shared") || h == "acme" {
            return Err(format!(
                "shared-zone denied label {h:?} must be a new lower-case label (not hostK, sharedK, acme)"
            ));
        }
    }
    for (alias, target) in &opts.cname_aliases {
        if !label_ok(alias) || hosts.contains(alias) || opts.denied_hosts.contains(alias) {
            return Err(format!(
                "CNAME alias {alias:?} must be a new lower-case label without a zone"
            ));
        }
        if !label_ok(target) {
            return Err(format!("CNAME target {target:?} must be a host label"));
        }
    }
    Ok(())
}

/// `unshare --net=<dir>/netns true`: a persistent namespace bind-mounted on a file, then opened.
fn create_netns(dir: &Path) -> Result<OwnedFd, String> {
    let file = dir.join("netns");
    fs::write(&file, b"").map_err(|e| format!("{}: {e}", file.display()))?;
    let mut arg = std::ffi::OsString::from("--net=");
    arg.push(&file);
    let out = Command::new("unshare")
        .arg(arg)
        .arg("true")
        .output()
        .map_err(|e| format!("unshare: {e} (is util-linux installed?)"))?;
    if !out.status.success() {
        return Err(format!(
            "unshare --net: {} (the harness must run as root)",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    match fs::File::open(&file) {
        Ok(f) => Ok(f.into()),
        Err(e) => {
            let c = CString::new(file.as_os_str().as_bytes()).expect("path without NUL");
            // SAFETY: plain syscall on a NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            Err(format!("open {}: {e}", file.display()))
        }
    }
}

/// Runs in the forked child before exec: only async-signal-safe syscalls, no allocation.
fn enter_namespace(
    netns: &OwnedFd,
    parent: u32,
    resolv_conf: Option<&CStr>,
) -> std::io::Result<()> {
    // SAFETY: raw syscalls with valid arguments; all pointers are NUL-terminated strings.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The test process died between fork and prctl: do not outlive it.
        if libc::getppid() as u32 != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Some(resolv_conf) = resolv_conf {
            if libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
            {
                libc::mount(
                    resolv_conf.as_ptr(),
                    c"/etc/resolv.conf".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                );
            }
        }
    }
    Ok(())
}

/// Write a file created 0600 (secrets: TSIG keys, EAB keys).
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<(), String> {
    let out = run_with_stdin_output(cmd, input)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run_with_stdin_output(cmd: &mut Command, input: &str) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_owned();
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let _ = writer.join();
    Ok(out)
}

/// The serial (third field) of a `dig +short ... SOA` answer.
fn parse_soa_serial(short: &str) -> Option<u32> {
    short
        .lines()
        .filter(|l| !l.starts_with(';'))
        .find_map(|l| l.split_whitespace().nth(2)?.parse().ok())
}

/// One `dig +short` TXT line (`"a" "b"`, with `\"`, `\\` and `\DDD` escapes) → the joined strings.
fn parse_txt_line(line: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = line.trim().bytes().peekable();
    let mut in_quotes = false;
    while let Some(b) = bytes.next() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\\' => {
                let mut digits = Vec::new();
                while digits.len() < 3 && bytes.peek().is_some_and(u8::is_ascii_digit) {
                    digits.push(bytes.next().unwrap_or(b'0') - b'0');
                }
                if digits.len() == 3 {
                    out.push(digits.iter().fold(0u32, |a, d| a * 10 + u32::from(*d)) as u8);
                } else if let Some(next) = bytes.next() {
                    out.push(next);
                }
            }
            _ if in_quotes => out.push(b),
            _ => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
