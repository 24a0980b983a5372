//! dns-persist-01 and ACME profiles against the second real CA (acme2certifier, tests/support/a2c.rs),
//! with the standing `_validation-persist.<host>` records written through the real hidden primary (TSIG,
//! RFC 2136) and checked on the three real secondaries.

use std::fs;
use std::time::Duration;

use crate::support::a2c::{SecondCa, SecondCaOptions, A2C_ACCOUNT};
use crate::support::proc::poll_until;
use crate::support::renewd::{json_time, signal, wait_exit, Renewd};
use crate::support::topology::{domain, persist_zone, Topology, TopologyOptions};
use crate::support::x509::{cert_serial, cert_valid_for};
use crate::support::SpecFixture;

const ISSUER: &str = "ca.example.test";

fn persist_topology(n_hosts: usize) -> Topology {
    Topology::start(TopologyOptions {
        n_hosts,
        persist_zones: true,
        ..Default::default()
    })
}

fn persist_ca(topo: &Topology) -> SecondCa<'_> {
    SecondCa::start(
        topo,
        SecondCaOptions {
            dns_persist_01: true,
            caa_identities: vec![ISSUER.into()],
            ..Default::default()
        },
    )
}

/// The account URL renewd registered at the second CA (from its stored credentials).
fn account_url(r: &Renewd) -> String {
    let path = r
        .state()
        .join("accounts")
        .join(format!("{A2C_ACCOUNT}.json"));
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["credentials"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no account id in {}", path.display()))
        .to_string()
}

/// Poll until every secondary serves exactly `want` (as a set) at `owner`.
fn secondaries_serve(topo: &Topology, owner: &str, want: &[String]) {
    let mut want = want.to_vec();
    want.sort();
    let got = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let all: Vec<Vec<String>> = topo
            .secondary_addrs()
            .into_iter()
            .map(|a| {
                let mut v = topo.txt_at(a, owner);
                v.sort();
                v
            })
            .collect();
        all.iter().all(|v| *v == want).then_some(())
    });
    assert!(
        got.is_some(),
        "the secondaries do not all serve {want:?} at {owner}: {:?}",
        topo.secondary_addrs()
            .into_iter()
            .map(|a| topo.txt_at(a, owner))
            .collect::<Vec<_>>()
    );
}

fn master_serial(topo: &Topology, zone: &str) -> u32 {
    topo.soa_serial_at(topo.master_addr(), zone)
        .unwrap_or_else(|| panic!("no SOA for {zone} at the master"))
}

fn journal_is_empty(r: &Renewd) -> bool {
    fs::read_dir(r.state().join("journal"))
        .map(|d| {
            d.filter_map(Result::ok)
                .all(|e| !e.file_name().to_string_lossy().ends_with(".json"))
        })
        .unwrap_or(true)
}

/// The first issuance writes renewd's value beside the values already there (another account's, another
/// CA's), every later renewal makes no UPDATE at all (the primary's serial stays), and `persist remove`
/// deletes exactly renewd's value.
#[test]
fn dns_persist_01_writes_the_record_once_and_later_renewals_make_no_update() {
    let topo = persist_topology(1);
    let ca = persist_ca(&topo);
    let host = domain("host1");
    let owner = persist_zone(&host);
    let others = vec![
        format!("{ISSUER}; accounturi=https://127.0.0.1:14010/acme/acct/someone-else"),
        "other-ca.example; accounturi=https://other-ca.example/acct/1".to_string(),
    ];
    for v in &others {
        let out = topo.add_txt(&owner, v);
        assert!(out.status.success(), "{out:?}");
    }
    let r = ca.renewd(
        "30s",
        &[SpecFixture::new("host1", &[&host]).line("challenge: dns-persist-01")],
    );

    let run = r.run(&["renew"]);
    run.expect_code(0);
    assert!(
        run.line("host1")
            .contains("dns-persist-01 (1 record(s) written)"),
        "{}",
        run.stdout
    );
    let ours = format!("{ISSUER}; accounturi={}", account_url(&r));
    let mut all = others.clone();
    all.push(ours.clone());
    secondaries_serve(&topo, &owner, &all);
    assert!(journal_is_empty(&r), "a standing record is never journaled");

    // Every later renewal: the record stands, so not a single UPDATE reaches the primary.
    let serial = master_serial(&topo, &owner);
    for _ in 0..2 {
        let run = r.run(&["renew", "--force"]);
        run.expect_code(0);
        assert!(
            run.line("host1")
                .contains("dns-persist-01 (standing record, no DNS update)"),
            "{}",
            run.stdout
        );
    }
    assert_eq!(
        master_serial(&topo, &owner),
        serial,
        "the primary's zone changed"
    );
    secondaries_serve(&topo, &owner, &all);

    // dns-test --persist shows it on every authoritative server, writing nothing.
    let run = r.run(&["dns-test", "acme-master", "--persist"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout.matches(&ours).count(),
        3,
        "once per secondary:\n{}",
        run.stdout
    );
    assert_eq!(master_serial(&topo, &owner), serial);

    // The status says how control is proven.
    let status = r.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v["certificates"][0]["challenge"], "dns-persist-01");

    // persist remove: renewd's value only.
    let run = r.run(&["persist", "remove", "host1"]);
    run.expect_code(0);
    assert!(run.stdout.contains(&ours), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("its next renewal writes the record again"),
        "{}",
        run.stderr
    );
    secondaries_serve(&topo, &owner, &others);
    let run = r.run(&["persist", "remove", "host1"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("wrote no dns-persist-01 record"),
        "{}",
        run.stdout
    );

    // A record that went missing is written again.
    let run = r.run(&["renew", "--force"]);
    run.expect_code(0);
    assert!(
        run.line("host1").contains("1 record(s) written"),
        "{}",
        run.stdout
    );
    secondaries_serve(&topo, &owner, &all);
}

/// Issue 12.4, the daemon: a dns-persist-01 certificate whose record stands is renewed by `renewd run`
/// (the CA's ARI window made open) without a single UPDATE on the primary (its SOA serial stays), and
/// the renewed event in a real journald says how control was proven: `ACME_CHALLENGE=dns-persist-01`.
/// Issue 12.3: the daemon's metrics file shows the real profile and challenge of the certificate.
#[test]
fn daemon_renews_with_dns_persist_01_without_an_update_and_logs_the_challenge_to_journald() {
    use crate::support::journald::JournaldSandbox;
    use renewd::logging::message_id;

    let topo = persist_topology(1);
    let mut ca = SecondCa::start(
        &topo,
        SecondCaOptions {
            dns_persist_01: true,
            caa_identities: vec![ISSUER.into()],
            profiles: vec![("shortlived".into(), 1), ("classic".into(), 90)],
            default_profile: Some("classic".into()),
            ..Default::default()
        },
    );
    let host = domain("host1");
    let owner = persist_zone(&host);
    let metrics = topo.dir().join("renewd.prom");
    let metrics_line = format!(
        "metrics_file: {}",
        serde_json::to_string(metrics.to_str().unwrap()).unwrap()
    );
    let r = Renewd::with_global(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&host])
            .line("challenge: dns-persist-01")
            .line("profile: shortlived")],
        &[&metrics_line],
    );
    ca.use_as_default(&r.config());
    let run = r.run(&["renew"]);
    run.expect_code(0);
    assert!(
        run.line("host1").contains("1 record(s) written"),
        "{}",
        run.stdout
    );
    let ours = format!("{ISSUER}; accounturi={}", account_url(&r));
    secondaries_serve(&topo, &owner, std::slice::from_ref(&ours));
    let serial = master_serial(&topo, &owner);
    let first = cert_serial(&r.live("host1", "cert.pem"));

    // The CA's window for the live certificate has passed: the daemon renews at once.
    ca.restart_with(SecondCaOptions {
        renewal_threshold_pct: 0.0,
        renewal_window: Some(Duration::from_secs(1)),
        ..ca.options().clone()
    });
    let journal = JournaldSandbox::start();
    let mut daemon = r.spawn_daemon_under_journald(&journal);
    let renewed_id = format!("MESSAGE_ID={}", message_id::RENEWED);
    let entries = journal.wait_for(
        &["CERT_NAME=host1", &renewed_id],
        |e| !e.is_empty(),
        Duration::from_secs(60),
    );
    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(20)).expect("daemon exits");
    assert!(status.success(), "{status}");

    let e = &entries[0];
    assert_eq!(e.get("ACME_CHALLENGE").as_deref(), Some("dns-persist-01"));
    assert!(
        e.message().is_some_and(
            |m| m.contains("control proven by dns-persist-01 (standing record, no DNS update)")
        ),
        "{:?}",
        e.message()
    );
    let renewed = cert_serial(&r.live("host1", "cert.pem"));
    assert_ne!(renewed, first, "the daemon renewed it");
    assert_eq!(e.get("CERT_SERIAL"), Some(renewed.to_uppercase()));
    assert_eq!(
        master_serial(&topo, &owner),
        serial,
        "the daemon's renewal sent an UPDATE to the primary"
    );
    assert!(journal_is_empty(&r), "nothing journaled for cleanup");
    secondaries_serve(&topo, &owner, std::slice::from_ref(&ours));
    assert!(
        cert_valid_for(&r.live("host1", "cert.pem"), 20 * 3600)
            && !cert_valid_for(&r.live("host1", "cert.pem"), 25 * 3600),
        "ordered with the 1-day profile"
    );
    let text = fs::read_to_string(&metrics).unwrap();
    let info = "renewd_certificate_info{name=\"host1\",account=\"a2c\",profile=\"shortlived\",\
                challenge=\"dns-persist-01\"} 1";
    assert!(text.lines().any(|l| l == info), "no `{info}` in\n{text}");
}

/// A wildcard certificate's record says `policy=wildcard` (and `persistUntil` when set); once it
/// stands, the TSIG key file can go: renewals go on, `check` warns, a dns-01 spec on that server is an
/// error, and a record that then goes missing fails the renewal with what to do.
#[test]
fn dns_persist_01_wildcard_then_renewals_without_the_tsig_key() {
    let topo = persist_topology(1);
    let ca = persist_ca(&topo);
    let host = domain("host1");
    let owner = persist_zone(&host);
    let wildcard = format!("*.{host}");
    let r = ca.renewd(
        "30s",
        &[SpecFixture::new("host1", &[&host, &wildcard])
            .line("challenge: dns-persist-01")
            .line("persist_until: 2099-12-31")],
    );
    r.run(&["renew"]).expect_code(0);
    let ours = format!(
        "{ISSUER}; accounturi={}; policy=wildcard; persistUntil=4102444799",
        account_url(&r)
    );
    secondaries_serve(&topo, &owner, std::slice::from_ref(&ours));

    let key_file = r.dir.join("secrets").join("acme-update.key");
    fs::remove_file(&key_file).unwrap();
    let check = r.run(&["check"]);
    check.expect_code(0);
    assert!(
        check.stderr.contains("does not exist") && check.stderr.contains("dns-persist-01"),
        "{}",
        check.stderr
    );
    let serial = master_serial(&topo, &owner);
    let run = r.run(&["renew", "--force"]);
    run.expect_code(0);
    assert!(
        run.line("host1").contains("standing record, no DNS update"),
        "{}",
        run.stdout
    );
    assert_eq!(master_serial(&topo, &owner), serial);

    // A dns-01 spec cannot use a server without a key.
    let dns01 = r.spec_path("host1-dns01");
    fs::write(&dns01, format!("domains: [\"{host}\"]\n")).unwrap();
    let check = r.run(&["check"]);
    check.expect_code(2);
    assert!(
        check.stderr.contains("has no TSIG key") && check.stderr.contains("dns-persist-01"),
        "{}",
        check.stderr
    );
    fs::remove_file(&dns01).unwrap();

    // The record disappears (someone cleaned the zone): renewd cannot write it, and says why.
    let out = topo.delete_txt(&owner, &ours);
    assert!(out.status.success(), "{out:?}");
    secondaries_serve(&topo, &owner, &[]);
    let run = r.run(&["renew", "--force"]);
    run.expect_code(1);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(
        text.contains("has no TSIG key") && text.contains(&key_file.display().to_string()),
        "{text}"
    );
}

/// `profile:` asks the CA for a profile: a 1-day certificate from a short-lived profile is planned at
/// half its lifetime, a 90-day one from the default with a third left; an unknown profile fails before
/// any order with the list the CA offers; a CA without profiles (Pebble 2.4) says so.
#[test]
fn profiles_choose_the_lifetime_and_an_unknown_one_names_what_the_ca_offers() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 4,
        ..Default::default()
    });
    let ca = SecondCa::start(
        &topo,
        SecondCaOptions {
            profiles: vec![("shortlived".into(), 1), ("classic".into(), 90)],
            default_profile: Some("classic".into()),
            ..Default::default()
        },
    );
    let r = ca.renewd(
        "30s",
        &[
            SpecFixture::new("short", &[&domain("host1")]).line("profile: shortlived"),
            SpecFixture::new("long", &[&domain("host2")]),
            SpecFixture::new("bad", &[&domain("host3")]).line("profile: shortlive"),
            SpecFixture::new("onpebble", &[&domain("host4")])
                .line("account: pebble")
                .line("profile: shortlived"),
        ],
    );
    let run = r.run(&["renew", "short", "long"]);
    run.expect_code(0);
    let profiles: Vec<serde_json::Value> = ca
        .new_order_payloads()
        .into_iter()
        .map(|p| p["profile"].clone())
        .collect();
    assert!(
        profiles.contains(&serde_json::json!("shortlived")),
        "{profiles:?}"
    );
    assert!(profiles.contains(&serde_json::Value::Null), "{profiles:?}");

    let short = r.live("short", "cert.pem");
    let long = r.live("long", "cert.pem");
    assert!(cert_valid_for(&short, 20 * 3600) && !cert_valid_for(&short, 25 * 3600));
    assert!(cert_valid_for(&long, 89 * 86400));

    let status = r.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let row = |name: &str| {
        v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    let before_expiry = |name: &str| {
        let c = row(name);
        json_time(&c["not_after"])
            .duration_since(json_time(&c["next_renewal"]))
            .unwrap_or_else(|_| panic!("{name}: renewal planned after expiry: {c}"))
    };
    let short_left = before_expiry("short");
    assert!(
        (Duration::from_secs(11 * 3600)..=Duration::from_secs(13 * 3600)).contains(&short_left),
        "a 1-day certificate is renewed at half its lifetime: {:?} before expiry\n{}",
        short_left,
        status.stdout
    );
    let long_left = before_expiry("long");
    assert!(
        (Duration::from_secs(29 * 86400)..=Duration::from_secs(31 * 86400)).contains(&long_left),
        "a 90-day certificate is renewed with a third left: {long_left:?} before expiry"
    );
    assert_eq!(row("short")["profile"], "shortlived");
    assert_eq!(row("long")["profile"], serde_json::Value::Null);
    let table = r.run(&["status"]);
    assert!(
        table.stdout.contains("profile shortlived"),
        "{}",
        table.stdout
    );

    let orders = ca.new_order_count();
    let run = r.run(&["renew", "bad"]);
    run.expect_code(1);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(
        text.contains("the CA offers no profile `shortlive`; it offers: classic, shortlived"),
        "{text}"
    );
    assert_eq!(ca.new_order_count(), orders, "no order was placed");

    let run = r.run(&["renew", "onpebble"]);
    run.expect_code(1);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(
        text.contains("the CA offers no certificate profiles"),
        "{text}"
    );
}
