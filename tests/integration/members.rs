//! `cluster:` — several renewd members (daemons with their own state dirs and deploy targets, the same
//! specs) coordinated through a real 3-member etcd cluster in the topology's namespace, against
//! acme2certifier (which counts every newOrder and newAccount it answers).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use base64::Engine as _;

use crate::support::a2c::{SecondCa, SecondCaOptions};
use crate::support::etcd::{EtcdCluster, EtcdOptions};
use crate::support::proc::poll_until;
use crate::support::renewd::{log_text, signal, stop_daemon, wait_exit, wait_published, Renewd};
use crate::support::topology::{challenge_zone, domain, write_secret, Topology, TopologyOptions};
use crate::support::x509::cert_serial;
use crate::support::{assert_success, SpecFixture};

const NAME: &str = "www";

/// One renewd member of the test: its installation, its daemon, its log.
struct Member<'t> {
    name: String,
    r: Renewd<'t>,
    log: PathBuf,
    daemon: Option<Child>,
}

impl Member<'_> {
    fn deployed(&self) -> PathBuf {
        self.r.dir.join("deploy/fullchain.pem")
    }

    fn deployed_serial(&self) -> Option<String> {
        self.deployed()
            .exists()
            .then(|| cert_serial(&self.deployed()))
    }

    fn log(&self) -> String {
        log_text(&self.log)
    }

    fn start(&mut self) {
        self.daemon = Some(self.r.spawn_logged(&["run"], &self.log, &[]));
    }

    fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            stop_daemon(d, &self.log);
        }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            signal(d.id(), libc::SIGKILL);
            let _ = wait_exit(&mut d, Duration::from_secs(10));
        }
    }
}

/// The seal key every member shares (32 random bytes, base64), or another one.
fn seal_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A member `name` of `etcd` with the spec `www` for `host1` deploying to its own `deploy/`.
fn member<'t>(
    topo: &'t Topology,
    ca: &SecondCa<'t>,
    etcd: &EtcdCluster<'_>,
    name: &str,
    seal: &str,
    extra_global: &[&str],
) -> Member<'t> {
    let spec = Spec {
        domains: &[&domain("host1")],
        etcd_extra: "",
    };
    member_with(topo, ca, etcd, name, seal, extra_global, spec)
}

/// What may differ between members in a test: the spec's names, how they log in to etcd.
struct Spec<'a> {
    domains: &'a [&'a str],
    etcd_extra: &'a str,
}

fn member_with<'t>(
    topo: &'t Topology,
    ca: &SecondCa<'t>,
    etcd: &EtcdCluster<'_>,
    name: &str,
    seal: &str,
    extra_global: &[&str],
    spec: Spec<'_>,
) -> Member<'t> {
    let dir = topo.dir().join(name);
    let seal_file = dir.join("secrets/cluster.seal");
    let cluster = etcd.renewd_cluster_yaml(name, &seal_file, spec.etcd_extra);
    let mut global = vec![cluster.as_str()];
    global.extend_from_slice(extra_global);
    let spec = SpecFixture::new(NAME, spec.domains).line(&format!(
        "deploy: [{{ fullchain: \"{}\", key: \"{}\" }}]",
        dir.join("deploy/fullchain.pem").display(),
        dir.join("deploy/privkey.pem").display()
    ));
    let r = Renewd::member(topo, name, "30s", &[spec], &global);
    fs::create_dir_all(dir.join("deploy")).unwrap();
    write_secret(&seal_file, seal.as_bytes()).unwrap();
    ca.use_as_default(&r.config());
    Member {
        name: name.to_string(),
        log: topo.dir().join(format!("{name}.log")),
        r,
        daemon: None,
    }
}

fn wait_deployed(m: &Member<'_>, what: &str) -> String {
    poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        m.deployed_serial()
    })
    .unwrap_or_else(|| {
        panic!(
            "{}: {what}: nothing deployed within 60 s\n{}",
            m.name,
            m.log()
        )
    })
}

fn new_accounts(ca: &SecondCa<'_>) -> usize {
    ca.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/acme/newaccount")
        .count()
}

/// Every form a reader could use a private key in: PEM text, the DER, and the DER base64 (standard
/// and base64url, as in ACME account credentials).
fn key_forms(pem: &str) -> Vec<Vec<u8>> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .expect("PEM body");
    vec![
        pem.as_bytes().to_vec(),
        b64.as_bytes()[..48].to_vec(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(&der)
            .as_bytes()[..48]
            .to_vec(),
        der[der.len() - 40..].to_vec(),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The account key of `state_dir/accounts/a2c.json` (instant-acme's credentials: base64url PKCS#8).
fn account_key_forms(state: &Path) -> Vec<Vec<u8>> {
    let text = fs::read_to_string(state.join("accounts/a2c.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let key = v["credentials"]["key_pkcs8"]
        .as_str()
        .expect("credentials.key_pkcs8");
    let der = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key.trim_end_matches('='))
        .unwrap();
    vec![
        key.as_bytes()[..48].to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(&der)
            .as_bytes()[..48]
            .to_vec(),
        der[der.len() - 40..].to_vec(),
    ]
}

/// etcd with authentication: a user `renewd` that may read and write under `/renewd/` only.
/// Returns the `etcd:` keys a member logs in with; the password file is `<topology>/etcd-password`.
fn enable_etcd_auth(topo: &Topology, etcd: &EtcdCluster<'_>) -> String {
    for args in [
        &["user", "add", "root:root-pw"][..],
        &["user", "add", "renewd:renewd-pw"],
        &["role", "add", "renewd"],
        &[
            "role",
            "grant-permission",
            "renewd",
            "--prefix=true",
            "readwrite",
            "/renewd/",
        ],
        &["user", "grant-role", "renewd", "renewd"],
        &["auth", "enable"],
    ] {
        assert_success(&format!("etcdctl {args:?}"), &etcd.etcdctl(args));
    }
    let file = topo.dir().join("etcd-password");
    write_secret(&file, b"renewd-pw\n").unwrap();
    format!(", user: renewd, password_file: \"{}\"", file.display())
}

/// Tests 1, 4, 5 and 6 of the cluster, with etcd's password authentication: two members start together
/// and the due certificate is ordered exactly once (one newOrder, one newAccount at the CA) and deployed
/// by both; a third member started afterwards catches up and deploys it without an order; a fourth with
/// another seal key refuses with a clear error and deploys nothing; a fifth whose spec names other
/// domains orders for its names and the others refuse that version, saying so; etcd holds no private key
/// in any usable form; `renewd status` shows the version, who renewed it and who deployed it.
#[test]
fn a_due_certificate_is_ordered_once_and_every_member_with_the_seal_key_deploys_it() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        ..Default::default()
    });
    let etcd = EtcdCluster::start(&topo, EtcdOptions::default());
    let ca = SecondCa::start(&topo, SecondCaOptions::default());
    let login = enable_etcd_auth(&topo, &etcd);
    let seal = seal_key();
    let (h1, h2) = (domain("host1"), domain("host2"));
    let with = |name: &str, seal: &str, domains: &[&str]| {
        let spec = Spec {
            domains,
            etcd_extra: &login,
        };
        member_with(&topo, &ca, &etcd, name, seal, &[], spec)
    };
    let mut web1 = with("web1", &seal, &[&h1]);
    let mut web2 = with("web2", &seal, &[&h1]);
    web1.start();
    web2.start();
    let s1 = wait_deployed(&web1, "after the first renewal");
    let s2 = wait_deployed(&web2, "after the first renewal");
    assert_eq!(s1, s2, "both deploy the same certificate");
    assert_eq!(ca.new_order_count(), 1, "ordered exactly once");
    assert_eq!(
        new_accounts(&ca),
        1,
        "one account for the cluster (EAB spent once)"
    );

    // A member started afterwards catches up; one with another seal key refuses.
    let mut web3 = with("web3", &seal, &[&h1]);
    let mut web4 = with("web4", &seal_key(), &[&h1]);
    web3.start();
    web4.start();
    assert_eq!(wait_deployed(&web3, "catching up"), s1);
    let refused = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        web4.log()
            .contains("does not open with this member's seal key")
            .then_some(())
    });
    assert!(refused.is_some(), "web4 says why\n{}", web4.log());
    assert!(web4.deployed_serial().is_none(), "web4 deployed nothing");
    assert!(!web4.r.live(NAME, "privkey.pem").exists());
    assert_eq!(ca.new_order_count(), 1, "nobody ordered again");
    assert_eq!(new_accounts(&ca), 1);

    // `renewd status`: the cluster's version, who renewed it, which members deployed it.
    let status = web1.r.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let row = &v["certificates"][0]["cluster"];
    assert_eq!(row["serial"], s1.as_str(), "{v:#}");
    let renewer = row["renewed_by"].as_str().unwrap_or_default().to_string();
    assert!(["web1", "web2"].contains(&renewer.as_str()), "{v:#}");
    let mut deployed: Vec<&str> = row["deployed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["current"] == true)
        .map(|d| d["member"].as_str().unwrap())
        .collect();
    deployed.sort();
    assert_eq!(deployed, ["web1", "web2", "web3"], "{v:#}");
    assert_eq!(v["cluster"]["member"], "web1");
    assert_eq!(v["cluster"]["etcd"], "ok");
    let text = web1.r.run(&["status"]);
    assert!(
        text.stdout.contains(&format!("renewed by {renewer}"))
            && text.stdout.contains("deployed on web1, web2, web3"),
        "{}",
        text.stdout
    );

    // A member whose spec names other domains orders for them; the others refuse that version.
    let mut web5 = with("web5", &seal, &[&h1, &h2]);
    web5.start();
    let s5 = wait_deployed(&web5, "its own names");
    assert_ne!(s5, s1);
    assert_eq!(ca.new_order_count(), 2);
    for m in [&web1, &web2, &web3] {
        let said = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
            m.log()
                .contains("but this member's spec names host1.example.test: not installed")
                .then_some(())
        });
        assert!(
            said.is_some(),
            "{} refuses web5's version\n{}",
            m.name,
            m.log()
        );
        assert_eq!(
            m.deployed_serial().as_deref(),
            Some(s1.as_str()),
            "{}",
            m.name
        );
    }

    // `account rollover` on a member that never loaded the account: it comes from the cluster, and the
    // new key goes back there.
    let account_in_etcd = || {
        etcd.etcdctl(&[
            "--user",
            "root:root-pw",
            "get",
            "--print-value-only",
            "/renewd/accounts/a2c",
        ])
        .stdout
    };
    let before = account_in_etcd();
    let rolled = web3.r.run(&["account", "rollover", "a2c"]);
    assert_eq!(rolled.code, Some(0), "{}{}", rolled.stdout, rolled.stderr);
    assert!(
        rolled.stdout.contains("the cluster has the new key too"),
        "{}",
        rolled.stdout
    );
    assert_ne!(
        account_in_etcd(),
        before,
        "the cluster's credentials changed"
    );

    // No private key or account key in etcd in a usable form.
    assert_success(
        "etcdctl auth disable",
        &etcd.etcdctl(&["--user", "root:root-pw", "auth", "disable"]),
    );
    let dump = etcd.dump();
    assert!(
        dump.iter().any(|(k, _)| k.ends_with("/certs/www/version")),
        "{dump:?}"
    );
    let mut forms = key_forms(&fs::read_to_string(web1.r.live(NAME, "privkey.pem")).unwrap());
    // The member that renewed registered the account (the other adopted the version: no account).
    let renewer_state = if renewer == "web1" {
        web1.r.state()
    } else {
        web2.r.state()
    };
    forms.extend(account_key_forms(&renewer_state));
    forms.extend(account_key_forms(&web3.r.state()));
    for (key, value) in &dump {
        for form in &forms {
            assert!(
                !contains(value, form),
                "{key} holds a private key in the clear"
            );
        }
    }

    for m in [&mut web1, &mut web2, &mut web3, &mut web4, &mut web5] {
        m.stop();
    }
}

/// Test 2 and 7, over TLS with client certificates: the member holding the lock is SIGKILLed while its
/// TXT value is published (propagation held up by a stopped secondary); the other takes the lock when
/// the lease runs out, removes the dead member's value, renews and deploys; nothing is left behind in
/// DNS or in the cluster's cleanup journal.
#[test]
fn sigkill_of_the_renewing_member_lets_another_take_over_and_clean_up_over_tls() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let etcd = EtcdCluster::start(
        &topo,
        EtcdOptions {
            tls: true,
            ..Default::default()
        },
    );
    let ca = SecondCa::start(&topo, SecondCaOptions::default());
    let seal = seal_key();
    let mut web1 = member(&topo, &ca, &etcd, "web1", &seal, &[]);
    let mut web2 = member(&topo, &ca, &etcd, "web2", &seal, &[]);
    // dns1 down: web1's value cannot reach every authoritative server, so web1 waits with it published.
    topo.stop_secondary(1);
    web1.start();
    let owner = challenge_zone(&domain("host1"));
    let stale = wait_published(&topo, &owner);
    let cleanup_keys = || {
        etcd.dump()
            .into_iter()
            .filter(|(k, _)| k.contains("/certs/www/cleanup/"))
            .count()
    };
    assert_eq!(
        cleanup_keys(),
        stale.len(),
        "each value is in the cluster's journal"
    );
    web2.start();
    let held = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        web2.log()
            .contains("member `web1` is renewing")
            .then_some(())
    });
    assert!(held.is_some(), "web2 waits for web1's lock\n{}", web2.log());
    // SIGKILL: no cleanup by web1.
    let mut d = web1.daemon.take().unwrap();
    signal(d.id(), libc::SIGKILL);
    wait_exit(&mut d, Duration::from_secs(10)).expect("web1 died");
    topo.start_secondary(1);

    let serial = wait_deployed(&web2, "after taking over");
    assert!(
        web2.log()
            .contains("removed a TXT value an interrupted renewal on another member left behind"),
        "{}",
        web2.log()
    );
    assert_eq!(ca.new_order_count(), 2, "web1's order and web2's");
    let left = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        topo.txt_at(topo.master_addr(), &owner)
            .is_empty()
            .then_some(())
    });
    assert!(
        left.is_some(),
        "no TXT value left: {:?}",
        topo.txt_at(topo.master_addr(), &owner)
    );
    assert_eq!(cleanup_keys(), 0, "the cluster's cleanup journal is empty");

    // web1 comes back: it catches up (and removes its own stale journal), ordering nothing.
    web1.start();
    assert_eq!(wait_deployed(&web1, "after its restart"), serial);
    assert_eq!(ca.new_order_count(), 2);
    web1.stop();
    web2.stop();
}

/// Test 3: with two of three etcd members down nobody orders, and `status.json`, `renewd status` and the
/// metrics say since when; with one member back (one still down) the renewal resumes by itself.
#[test]
fn without_quorum_no_member_orders_and_the_renewal_resumes_when_it_returns() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let etcd = EtcdCluster::start(&topo, EtcdOptions::default());
    let ca = SecondCa::start(&topo, SecondCaOptions::default());
    let seal = seal_key();
    let metrics = topo.dir().join("web1.prom");
    let metrics_line = format!("metrics_file: \"{}\"", metrics.display());
    let mut web1 = member(&topo, &ca, &etcd, "web1", &seal, &[&metrics_line]);
    etcd.kill_member(2);
    etcd.kill_member(3);
    web1.start();
    let down = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let s = web1.r.status_json();
        // The follower may find etcd away before the renewal does: wait for both.
        (s["cluster"]["etcd"] == "unreachable" && s["certificates"][NAME]["state"] == "locked")
            .then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "status.json: etcd unreachable, the certificate locked\n{:#}\n{}",
            web1.r.status_json(),
            web1.log()
        )
    });
    assert!(down["cluster"]["down_since"].is_string(), "{down:#}");
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("renewd_cluster_etcd_up 0"), "{prom}");
    let status = web1.r.run(&["status"]);
    assert!(
        status.stdout.contains("etcd unreachable since"),
        "{}{}",
        status.stdout,
        status.stderr
    );
    assert_eq!(ca.new_order_count(), 0, "nobody orders without quorum");

    etcd.start_member(2);
    let serial = wait_deployed(&web1, "after quorum came back");
    assert_eq!(ca.new_order_count(), 1);
    let s = web1.r.status_json();
    assert_eq!(s["cluster"]["etcd"], "ok", "{s:#}");
    assert!(!serial.is_empty());
    web1.stop();
}
