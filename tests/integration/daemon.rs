//! `renewd run` against the reference deployment: sd_notify on a test-owned socket, the spec watcher,
//! SIGHUP, SIGTERM during a renewal.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::notify::NotifySocket;
use crate::support::proc::poll_until;
use crate::support::renewd::{log_text, signal, spawn_run, wait_exit, wait_published, Renewd};
use crate::support::topology::{challenge_zone, domain, Topology, TopologyOptions};
use crate::support::x509::cert_sans;
use crate::support::SpecFixture;

/// A new spec must be planned within 2 s (issue 4); issuing it takes a few seconds more.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(40);

fn wait_issued(r: &Renewd, name: &str, log: &Path) {
    wait_issued_draining(r, name, log, None)
}

/// [`wait_issued`], reading the notify socket meanwhile (its queue holds only a few datagrams).
fn wait_issued_draining(r: &Renewd, name: &str, log: &Path, sock: Option<&NotifySocket>) {
    let cert = r.live(name, "cert.pem");
    poll_until(ISSUE_TIMEOUT, Duration::from_millis(1), || {
        if let Some(sock) = sock {
            sock.recv_until(|_| false, Duration::from_millis(50));
        }
        cert.exists().then_some(())
    })
    .unwrap_or_else(|| panic!("{name} was not issued; daemon log:\n{}", log_text(log)));
}

/// The sd_notify protocol as systemd sees it: READY once planned, WATCHDOG from the loop, RELOADING with
/// MONOTONIC_USEC then READY on SIGHUP (also when the new configuration is refused: the old one keeps
/// running and renewing, and STATUS says why), STOPPING on SIGTERM, exit 0.
#[test]
fn daemon_speaks_sd_notify_through_start_reload_invalid_reload_and_stop() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        ..Default::default()
    });
    let h1 = domain("host1");
    let r = Renewd::new(&topo, "30s", &[SpecFixture::new("host1", &[&h1])]);
    let sock = NotifySocket::new();
    let log = topo.dir().join("daemon.log");
    let sock_path = sock.env().1.into_string().unwrap();
    let mut daemon = r.spawn_logged(
        &["run"],
        &log,
        &[("NOTIFY_SOCKET", &sock_path), ("WATCHDOG_USEC", "1000000")],
    );
    let pid = daemon.id();

    sock.wait_count("READY=1", 1, Duration::from_secs(20));
    wait_issued_draining(&r, "host1", &log, Some(&sock));
    // The watchdog is pinged at half of WATCHDOG_USEC (0.5 s) by the scheduler loop.
    let pings = sock.lines().iter().filter(|l| *l == "WATCHDOG=1").count();
    sock.wait_count("WATCHDOG=1", pings + 3, Duration::from_secs(5));

    signal(pid, libc::SIGHUP);
    sock.wait_count("READY=1", 2, Duration::from_secs(10));

    // An invalid global file: refused, the old configuration keeps running.
    let config = r.config();
    let good = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("{good}wrokers: 2\n")).unwrap();
    signal(pid, libc::SIGHUP);
    sock.wait_count("READY=1", 3, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock
        .lines()
        .iter()
        .any(|l| l.starts_with("STATUS=") && l.contains("reload refused"))
    {
        assert!(
            Instant::now() < deadline,
            "STATUS should say the reload was refused: {:?}",
            sock.lines()
        );
        sock.recv_until(|_| true, Duration::from_millis(200));
    }
    assert!(
        log_text(&log).contains("renewd.yaml:") && log_text(&log).contains("wrokers"),
        "the refused key is logged with its file and line:\n{}",
        log_text(&log)
    );
    // Still renewing with the old configuration: a new spec is issued.
    let h2 = domain("host2");
    fs::write(r.spec_path("host2"), format!("domains: [\"{h2}\"]\n")).unwrap();
    wait_issued_draining(&r, "host2", &log, Some(&sock));
    assert!(
        sock.lines()
            .iter()
            .rev()
            .find(|l| l.starts_with("STATUS="))
            .is_some_and(|l| l.contains("2 certificates") && l.contains("reload refused")),
        "the refusal stays in STATUS until a reload succeeds: {:?}",
        sock.lines()
    );

    // The socket queue is short (net.unix.max_dgram_qlen): drain it before and while stopping, as
    // systemd would, so STOPPING=1 is not dropped.
    sock.recv_until(|_| false, Duration::from_millis(50));
    signal(pid, libc::SIGTERM);
    let status = poll_until(Duration::from_secs(20), Duration::from_millis(1), || {
        sock.recv_until(|_| false, Duration::from_millis(20));
        daemon.try_wait().ok().flatten()
    })
    .expect("daemon exits");
    assert!(status.success(), "exit status {status}\n{}", log_text(&log));

    sock.recv_until(|_| false, Duration::from_millis(100));
    let all = sock.lines();
    let lifecycle: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|l| ["READY=1", "RELOADING=1", "STOPPING=1"].contains(l))
        .collect();
    assert_eq!(
        lifecycle,
        [
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "STOPPING=1"
        ],
        "all messages: {all:?}"
    );
    let reloading_with_clock = all
        .iter()
        .filter(|l| {
            l.strip_prefix("MONOTONIC_USEC=")
                .is_some_and(|v| v.parse::<u64>().is_ok())
        })
        .count();
    assert_eq!(
        reloading_with_clock, 2,
        "MONOTONIC_USEC with each RELOADING=1: {all:?}"
    );
    let status_line = all
        .iter()
        .find(|l| l.starts_with("STATUS=") && l.contains("certificate"))
        .expect("a STATUS line");
    assert!(status_line.contains("failing"), "{status_line}");
}

/// A spec dropped into certs_dir is issued without a restart; a changed one is reissued; a removed one
/// is no longer planned; an invalid one is reported with FILE:LINE:COL while the others keep working.
#[test]
fn daemon_follows_spec_changes_without_restart() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        ..Default::default()
    });
    let (h1, h2) = (domain("host1"), domain("host2"));
    let r = Renewd::new(&topo, "30s", &[]);
    let log = topo.dir().join("daemon.log");
    let mut daemon = r.spawn_logged(&["run"], &log, &[]);

    let t0 = Instant::now();
    fs::write(r.spec_path("host1"), format!("domains: [\"{h1}\"]\n")).unwrap();
    wait_issued(&r, "host1", &log);
    eprintln!("new spec issued {:?} after it was written", t0.elapsed());

    // Changed names: reissued with both.
    let wildcard = format!("*.{h1}");
    fs::write(
        r.spec_path("host1"),
        format!("domains: [\"{h1}\", \"{wildcard}\"]\n"),
    )
    .unwrap();
    let cert = r.live("host1", "cert.pem");
    poll_until(ISSUE_TIMEOUT, Duration::from_millis(100), || {
        cert_sans(&cert).contains(&wildcard).then_some(())
    })
    .unwrap_or_else(|| panic!("not reissued with the wildcard:\n{}", log_text(&log)));

    // An invalid spec is reported, the others keep working.
    let broken = r.spec_path("broken");
    fs::write(&broken, "domian: [x.example.test]\n").unwrap();
    fs::write(r.spec_path("host2"), format!("domains: [\"{h2}\"]\n")).unwrap();
    wait_issued(&r, "host2", &log);
    let expected = format!("{}:1:1:", broken.display());
    poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        log_text(&log).contains(&expected).then_some(())
    })
    .unwrap_or_else(|| panic!("no {expected} in the log:\n{}", log_text(&log)));

    // Removed: no longer planned.
    fs::remove_file(r.spec_path("host1")).unwrap();
    poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        r.status_json()["certificates"]
            .get("host1")
            .is_none()
            .then_some(())
    })
    .unwrap_or_else(|| panic!("host1 still planned: {}", r.status_json()));
    assert!(r.status_json()["certificates"].get("host2").is_some());

    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(20)).expect("daemon exits");
    assert!(status.success());
}

/// SIGTERM while a renewal waits for propagation: the daemon cancels it after `stop_grace`, removes its
/// TXT value, writes no certificate and exits 0.
#[test]
fn daemon_sigterm_during_a_renewal_cancels_it_and_cleans_up() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let h1 = domain("host1");
    let owner = challenge_zone(&h1);
    let r = Renewd::with_global(
        &topo,
        "120s",
        &[SpecFixture::new("host1", &[&h1])],
        &["stop_grace: 2s"],
    );
    topo.stop_secondary(3); // propagation cannot complete: the renewal stays in flight
    let log = topo.dir().join("daemon.log");
    let mut daemon = r.spawn_logged(&["run"], &log, &[]);
    wait_published(&topo, &owner);

    let t0 = Instant::now();
    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(15)).expect("daemon exits");
    let took = t0.elapsed();
    assert!(status.success(), "exit {status}\n{}", log_text(&log));
    assert!(
        took < Duration::from_secs(2 + 8),
        "took {took:?} with stop_grace 2s"
    );
    assert!(
        topo.txt_at(topo.master_addr(), &owner).is_empty(),
        "TXT left behind"
    );
    assert!(r.journal_records().is_empty(), "journal not empty");
    assert!(
        !r.state().join("live/host1").exists(),
        "a certificate was written"
    );
    let temps: Vec<_> = walk(&r.state())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "partial files: {temps:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// Under systemd (stderr is the journal stream), renewd logs natively to journald: a real
/// systemd-journald started for the test receives the renewed event with its fields and MESSAGE_ID, and
/// `journalctl CERT_NAME=gitlab` shows the whole renewal in order, every event of it with the
/// certificate's domains and account (one span per renewal).
#[test]
fn daemon_logs_the_renewed_event_to_a_real_journald_with_its_fields() {
    use crate::support::journald::JournaldSandbox;
    use renewd::logging::message_id;

    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let journal = JournaldSandbox::start();
    let h1 = domain("host1");
    let deployed = topo.dir().join("gitlab.crt");
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("gitlab", &[&h1]).line(&format!(
            "deploy: [{{ fullchain: \"{}\" }}]",
            deployed.display()
        ))],
    );
    let mut daemon = r.spawn_daemon_under_journald(&journal);

    let renewed_id = format!("MESSAGE_ID={}", message_id::RENEWED);
    let entries = journal.wait_for(
        &["CERT_NAME=gitlab", &renewed_id],
        |e| !e.is_empty(),
        ISSUE_TIMEOUT,
    );
    let e = &entries[0];
    let serial = crate::support::x509::cert_serial(&r.live("gitlab", "cert.pem"));
    assert_eq!(e.get("CERT_DOMAINS").as_deref(), Some(h1.as_str()));
    assert_eq!(e.get("ACME_ACCOUNT").as_deref(), Some("pebble"));
    assert!(e
        .get("ACME_ORDER_URL")
        .is_some_and(|u| u.starts_with("https://127.0.0.1:14000/")));
    assert_eq!(e.get("CERT_SERIAL"), Some(serial.to_uppercase()));
    assert!(e.get("CERT_NOT_AFTER").is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        e.get("DNS_ZONE").as_deref(),
        Some(challenge_zone(&h1).as_str())
    );
    assert_eq!(e.get("SYSLOG_IDENTIFIER").as_deref(), Some("renewd"));
    assert_eq!(e.get("ACME_CHALLENGE").as_deref(), Some("dns-01"));
    // Where the time went, phase by phase, in the order the renewal passed through them.
    let phases = e.get("RENEWAL_PHASES").unwrap_or_default();
    let names: Vec<&str> = phases
        .split(", ")
        .filter_map(|p| p.rsplit_once(' ').map(|(name, _)| name))
        .collect();
    let at = |want: &str| names.iter().position(|n| *n == want);
    for order in [
        ["order", "dns-update"],
        ["dns-update", "propagation"],
        ["propagation", "validation"],
        ["validation", "finalize"],
        ["finalize", "install"],
        ["install", "deploy"],
    ] {
        assert!(
            at(order[0]).is_some() && at(order[0]) < at(order[1]),
            "{} before {} in RENEWAL_PHASES={phases}",
            order[0],
            order[1]
        );
    }
    assert!(
        e.message()
            .is_some_and(|m| m.contains("control proven by dns-01")),
        "{:?}",
        e.message()
    );

    // The whole renewal, as `journalctl CERT_NAME=gitlab` shows it.
    let all = journal.entries(&["CERT_NAME=gitlab"]).unwrap();
    let messages: Vec<String> = all.iter().filter_map(|e| e.message()).collect();
    let sequence = [
        "renewal starts",
        "order placed",
        "TXT published",
        "every authoritative server serves the TXT records",
        "certificate issued and installed in live/",
        "certificate gitlab deployed to",
        "TXT removed",
        "renewed gitlab (serial",
    ];
    let mut at = 0;
    for step in sequence {
        let found = messages[at..]
            .iter()
            .position(|m| m.starts_with(step))
            .unwrap_or_else(|| panic!("no {step:?} after {:?} in {messages:#?}", &messages[..at]));
        at += found + 1;
    }
    let order_placed = all
        .iter()
        .find(|e| e.message().is_some_and(|m| m == "order placed"))
        .unwrap();
    assert!(order_placed
        .get("ACME_ORDER_URL")
        .is_some_and(|u| u.starts_with("https://127.0.0.1:14000/")));
    // Every event inside the renewal carries the span's fields, once each.
    for e in all.iter().filter(|e| e.has("SPAN_NAME")) {
        assert_eq!(e.get("CERT_DOMAINS").as_deref(), Some(h1.as_str()), "{e:?}");
        assert_eq!(e.get("ACME_ACCOUNT").as_deref(), Some("pebble"), "{e:?}");
        assert!(
            e.0["CERT_NAME"].is_string(),
            "CERT_NAME more than once: {e:?}"
        );
    }
    assert!(
        all.iter().filter(|e| e.has("SPAN_NAME")).count() >= 6,
        "{messages:#?}"
    );

    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(20)).expect("daemon exits");
    assert!(status.success());
}

/// `renewd renew --force` by hand while the daemon runs: the daemon sees the new live certificate
/// (watcher on live/), plans from its expiry and shows its serial, instead of renewing again at the old
/// certificate's due time.
#[test]
fn daemon_follows_a_certificate_renewed_by_hand() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let h1 = domain("host1");
    let r = Renewd::new(&topo, "30s", &[SpecFixture::new("host1", &[&h1])]);
    let log = topo.dir().join("daemon.log");
    let mut daemon = r.spawn_logged(&["run"], &log, &[]);
    wait_issued(&r, "host1", &log);
    let first = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        r.status_json()["certificates"]["host1"]["serial"]
            .as_str()
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no serial in status.json:\n{}", log_text(&log)));

    let run = r.run(&["renew", "host1", "--force"]);
    run.expect_code(0);
    let line = run.line("host1");
    let serial = line
        .split("serial ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no serial in {line:?}"))
        .to_string();
    assert_ne!(serial, first);

    let t0 = Instant::now();
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        (r.status_json()["certificates"]["host1"]["serial"].as_str() == Some(serial.as_str()))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "status.json still shows {first} after the manual renewal to {serial}:\n{}",
            log_text(&log)
        )
    });
    eprintln!(
        "daemon followed the manual renewal after {:?}",
        t0.elapsed()
    );
    let text = log_text(&log);
    assert!(
        text.lines()
            .any(|l| l.contains("replaced by another process") && l.contains(&serial)),
        "{text}"
    );
    // One order by the daemon, one by hand: the daemon did not renew again.
    assert_eq!(text.matches("renewed host1 (serial").count(), 1, "{text}");

    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(20)).expect("daemon exits");
    assert!(status.success(), "{status}\n{}", log_text(&log));
}

/// A reload that moves `state_dir` is refused (with what to do) instead of half-applied: the daemon's
/// status, locks and live/ watcher stay in the directory it started with.
#[test]
fn daemon_refuses_a_reload_that_moves_the_state_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let certs_d = tmp.path().join("certs.d");
    fs::create_dir(&certs_d).unwrap();
    let config = tmp.path().join("renewd.yaml");
    let (old, new) = (tmp.path().join("state"), tmp.path().join("state2"));
    fs::write(
        &config,
        format!("state_dir: {}\nworkers: 2\n", old.display()),
    )
    .unwrap();
    let sock = NotifySocket::new();
    let mut daemon = spawn_run(&config, &sock);
    sock.wait_count("READY=1", 1, Duration::from_secs(20));
    fs::write(
        &config,
        format!("state_dir: {}\nworkers: 2\n", new.display()),
    )
    .unwrap();
    signal(daemon.id(), libc::SIGHUP);
    let want = format!(
        "reload refused: state_dir changed from {} to {}: restart renewd (systemctl restart renewd) to move to the new state directory",
        old.display(),
        new.display()
    );
    sock.expect(
        "STATUS with the refusal",
        |m| {
            m.lines()
                .any(|l| l.starts_with("STATUS=") && l.contains(&want))
        },
        Duration::from_secs(10),
    );
    assert!(!new.exists(), "the new state directory was created");
    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(20)).expect("daemon exits");
    assert!(status.success(), "{status}");
}
