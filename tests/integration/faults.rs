//! The core under faults, against the reference deployment: a CA that accepts connections and never
//! answers (a listener in the namespace: a fault no real server produces on demand), Pebble stopped
//! (SIGSTOP) after renewd published its TXT values, a CA that leaves the order pending after a failed
//! challenge (the ARI stand-in rewriting Pebble's orders), and a `renew_before` longer than half the
//! lifetime of Pebble's short certificates.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::support::ari::AriStandIn;
use crate::support::notify::NotifySocket;
use crate::support::proc::poll_until;
use crate::support::renewd::{signal, wait_exit, wait_published, Renewd};
use crate::support::stuck::StuckListener;
use crate::support::topology::{challenge_zone, domain, Server, Topology, TopologyOptions};
use crate::support::SpecFixture;

/// The attempt deadline of these tests (the default is 10 minutes).
const ATTEMPT: Duration = Duration::from_secs(8);

/// Add an account `name` with `directory` to the renewd.yaml the fixtures wrote.
fn add_account(config: &Path, name: &str, directory: &str) {
    let text = fs::read_to_string(config).unwrap();
    let text = text.replacen(
        "accounts:\n",
        &format!("accounts:\n  {name}:\n    directory: \"{directory}\"\n"),
        1,
    );
    fs::write(config, text).unwrap();
}

/// A CA that accepts the connection and never answers: every renewal on its account fails within
/// `attempt_timeout` with an error naming the CA and the phase; the other account's certificate renews
/// meanwhile; SIGHUP, `renewd status` and SIGTERM answer at once; `renewd renew` against it ends on
/// SIGTERM within `stop_grace`.
#[test]
fn a_ca_that_never_answers_fails_each_renewal_within_attempt_timeout_with_a_stuck_listener() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 3,
        ..Default::default()
    });
    let stuck = StuckListener::start(&topo, 14002);
    let (h1, h2, h3) = (domain("host1"), domain("host2"), domain("host3"));
    let r = Renewd::with_global(
        &topo,
        "30s",
        &[
            SpecFixture::new("host1", &[&h1]),
            SpecFixture::new("host2", &[&h2]).line("account: stuck"),
            SpecFixture::new("host3", &[&h3]).line("account: stuck"),
        ],
        &["attempt_timeout: 8s", "stop_grace: 2s"],
    );
    add_account(&r.config(), "stuck", &stuck.directory_url());
    let sock = NotifySocket::new();
    let log = topo.dir().join("daemon.log");
    let sock_path = sock.env().1.into_string().unwrap();
    let mut daemon = r.spawn_logged(&["run"], &log, &[("NOTIFY_SOCKET", &sock_path)]);
    let log_text = || fs::read_to_string(&log).unwrap_or_default();

    sock.wait_count("READY=1", 1, Duration::from_secs(20));
    let started = SystemTime::now();
    // The other account's certificate is issued while both stuck renewals hang.
    poll_until(Duration::from_secs(40), Duration::from_millis(20), || {
        r.live("host1", "cert.pem").exists().then_some(())
    })
    .unwrap_or_else(|| panic!("host1 was not issued:\n{}", log_text()));
    assert!(stuck.accepted() >= 1, "the stuck CA was contacted");
    let running = r.status_json();
    assert_eq!(
        running["certificates"]["host2"]["state"], "renewing",
        "{running}"
    );

    // SIGHUP answers while the stuck renewals run.
    signal(daemon.id(), libc::SIGHUP);
    sock.wait_count("READY=1", 2, Duration::from_secs(5));
    // So does `renewd status`.
    let t = Instant::now();
    r.run(&["status", "--json"]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Both stuck renewals fail at their deadline (not after the request timeout, nor never).
    let failed = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let s = r.status_json();
        let ok = ["host2", "host3"]
            .iter()
            .all(|n| s["certificates"][n]["last_error"].is_string());
        ok.then_some(s)
    })
    .unwrap_or_else(|| panic!("the stuck renewals did not fail:\n{}", log_text()));
    let dir = stuck.directory_url();
    for name in ["host2", "host3"] {
        let c = &failed["certificates"][name];
        let error = c["last_error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!(
                "account `stuck` ({dir}): no result within 8s (attempt_timeout) while "
            )),
            "{name}: {error}"
        );
        assert!(
            error.contains("registering the account") || error.contains("loading the account"),
            "{name}: the phase: {error}"
        );
        assert!(!error.contains("registration"), "{error}");
        let at: SystemTime =
            humantime::parse_rfc3339(c["history"]["last_failure"]["at"].as_str().unwrap()).unwrap();
        let took = at.duration_since(started).unwrap_or_default();
        assert!(
            took <= ATTEMPT + Duration::from_secs(4),
            "{name} failed {took:?} after the start, attempt_timeout is {ATTEMPT:?}"
        );
        assert_eq!(c["state"], "backing-off", "{c}");
    }
    assert_eq!(failed["certificates"]["host1"]["last_result"], "ok");

    // SIGTERM answers at once (nothing is running now).
    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(5)).expect("the daemon stops at once");
    assert!(status.success(), "{status}\n{}", log_text());

    // `renewd renew` against the stuck CA: SIGTERM ends it within stop_grace (2 s), whatever the CA does.
    let before = stuck.accepted();
    let mut cli = r.spawn(&["renew", "host2"]);
    poll_until(Duration::from_secs(10), Duration::from_millis(10), || {
        (stuck.accepted() > before).then_some(())
    })
    .expect("renewd renew contacts the CA");
    let t = Instant::now();
    signal(cli.id(), libc::SIGTERM);
    let status = wait_exit(&mut cli, Duration::from_secs(6)).expect("renew ends on SIGTERM");
    let took = t.elapsed();
    let out = cli.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        stdout.contains("host2: FAILED: interrupted by shutdown; its TXT values were removed"),
        "{stdout}"
    );
}

/// Pebble stopped (SIGSTOP: the process is there, its connections stay open) right after renewd published
/// its TXT values: the attempt fails at `attempt_timeout`, naming the CA, and the values are removed.
#[test]
fn a_ca_that_stops_answering_after_the_txt_was_published_times_out_and_the_txt_is_removed() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let h1 = domain("host1");
    let r = Renewd::with_global(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&h1])],
        &["attempt_timeout: 8s"],
    );
    let pebble = topo.pid(Server::Pebble).expect("Pebble runs");
    let mut cli = r.spawn(&["renew", "host1"]);
    let owner = challenge_zone(&h1);
    wait_published(&topo, &owner);
    signal(pebble, libc::SIGSTOP);
    let status = wait_exit(&mut cli, ATTEMPT + Duration::from_secs(20));
    signal(pebble, libc::SIGCONT);
    let status = status.expect("renew ends after attempt_timeout");
    let out = cli.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status.code(), Some(1), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("host1: ")).unwrap();
    assert!(
        line.starts_with(&format!(
            "host1: FAILED: account `pebble` ({}): no result within 8s (attempt_timeout) while ",
            topo.acme_directory_url()
        )),
        "{line}"
    );
    assert!(topo.txt_at(topo.master_addr(), &owner).is_empty());
    assert!(r.journal_records().is_empty(), "{:?}", r.journal_records());
}

/// A CA that leaves the order pending after a challenge failed (the stand-in shows Pebble's invalid
/// orders as pending): the attempt ends as soon as the authorization is invalid, with the CA's error for
/// that name — before, it waited for the order until the 180 s poll gave up.
#[test]
fn a_rejected_challenge_ends_the_attempt_at_once_when_the_order_stays_pending_injected_by_a_stand_in(
) {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let ari = AriStandIn::start(&topo);
    ari.orders_stay_pending(true);
    let h1 = domain("host1");
    // An explicit zone and nameserver: renewd itself needs no lookup that dns1..3 would answer.
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&h1]).line(&format!("zone: {}", challenge_zone(&h1)))],
    );
    ari.point_config_here(&topo, &r.config());
    // renewd checks only the primary; the CA's resolver asks dns1..3, which are down: validation fails.
    let text = fs::read_to_string(r.config()).unwrap();
    let text = text.replace(
        "propagation:\n  timeout: 30s\n",
        &format!(
            "propagation:\n  timeout: 30s\n  nameservers: [\"{}\"]\n",
            topo.master_addr()
        ),
    );
    fs::write(r.config(), text).unwrap();
    for n in 1..=3 {
        topo.stop_secondary(n);
    }
    let t = Instant::now();
    let run = r.run(&["renew", "host1"]);
    let took = t.elapsed();
    run.expect_code(1);
    let line = run.line("host1");
    assert!(
        line.contains(&format!("the CA rejected {h1}: the CA answered ")),
        "{line}"
    );
    assert!(took < Duration::from_secs(90), "took {took:?}");
    eprintln!("rejected after {took:?}: {line}");
    assert!(topo
        .txt_at(topo.master_addr(), &challenge_zone(&h1))
        .is_empty());
}

/// `renew_before: 30d` with 6-day certificates: capped at half the lifetime (3 days) instead of making
/// every new certificate due at once; `renewd check`, `renewd renew` and `renewd status` say so.
#[test]
fn a_renew_before_longer_than_half_the_lifetime_is_capped_and_said() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        cert_validity: Duration::from_secs(6 * 86400),
        ..Default::default()
    });
    let h1 = domain("host1");
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&h1]).line("renew_before: 30d")],
    );
    r.run(&["renew"]).expect_code(0);
    let again = r.run(&["renew"]);
    again.expect_code(0);
    let line = again.line("host1");
    assert!(
        line.contains("not due") && line.contains("(in 2d 23h"),
        "{line}"
    );

    let check = r.run(&["check"]);
    check.expect_code(0);
    let spec = r.spec_path("host1");
    // Pebble's 6-day certificates last 6 days less a second.
    assert!(
        check.stderr.contains(&format!(
            "{}:2:1: warning: `renew_before` of `host1`: renew_before 30d does not fit the certificate's lifetime of 5d 23h: renewing 2d 23h before expiry instead",
            spec.display()
        )),
        "{}",
        check.stderr
    );

    let status = r.run(&["status", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let row = &report["certificates"][0];
    assert!(
        row.to_string()
            .contains("renew_before 30d capped at half of the 5d 23h lifetime"),
        "{row}"
    );
}
