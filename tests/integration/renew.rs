//! `renewd renew` end to end against the reference deployment: real Pebble (EAB), real BIND hidden primary
//! with TSIG update-policy, three real secondaries fed by NOTIFY/IXFR, real resolvers.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::proc::poll_until;
use crate::support::renewd::{log_text, mode, stop_daemon, wait_published, Renewd};
use crate::support::topology::{challenge_zone, domain, Topology, TopologyOptions, SHARED_ZONE};
use crate::support::x509::{cert_sans, cert_serial, private_key_type, verify_chain};
use crate::support::SpecFixture;

/// Secondaries hear of a deletion by NOTIFY, which BIND may hold back for its notify-delay (5 s).
const SECONDARY_LAG: Duration = Duration::from_secs(20);

fn topology(opts: TopologyOptions) -> Topology {
    Topology::start(opts)
}

/// No TXT at `owner` on the primary now, and on none of the secondaries once they caught up.
fn assert_no_txt_left(topo: &Topology, owner: &str) {
    let on_master = topo.txt_at(topo.master_addr(), owner);
    assert!(
        on_master.is_empty(),
        "TXT left on the primary at {owner}: {on_master:?}"
    );
    for addr in topo.secondary_addrs() {
        let gone = poll_until(SECONDARY_LAG, Duration::from_millis(100), || {
            topo.txt_at(addr, owner).is_empty().then_some(())
        });
        assert!(
            gone.is_some(),
            "TXT still served by secondary {addr} at {owner}: {:?}",
            topo.txt_at(addr, owner)
        );
    }
}

/// The certificate's DNS names, sorted (read with openssl).
fn sans(cert: &std::path::Path) -> Vec<String> {
    let mut v = cert_sans(cert);
    v.sort();
    v
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// (a) + (b): one run issues three certificates of three key types; a forced run renews them again,
/// archives the previous version and updates the deploy targets.
#[test]
fn renew_issues_three_certificates_then_force_renews_them() {
    let topo = topology(TopologyOptions {
        n_hosts: 3,
        ..Default::default()
    });
    let roots = topo.issuing_roots();
    let deploy_dir = topo.dir().join("deployed");
    fs::create_dir_all(&deploy_dir).unwrap();
    let (h1, h2, h3) = (domain("host1"), domain("host2"), domain("host3"));
    let r = Renewd::new(
        &topo,
        "30s",
        &[
            SpecFixture::new("host1", &[&h1])
                .line("key: { type: rsa, bits: 2048 }")
                .line(&format!(
                    "deploy:\n  - {{ fullchain: {d}/host1.crt, key: {d}/host1.key, mode: \"0640\" }}",
                    d = deploy_dir.display()
                )),
            SpecFixture::new("host2", &[&h2]).line("key: { type: ecdsa, curve: p256 }"),
            SpecFixture::new("host3", &[&h3]).line("key: { type: ecdsa, curve: p384 }"),
        ],
    );
    r.run(&["check"]).expect_code(0);

    let t0 = Instant::now();
    let first = r.run(&["renew"]);
    eprintln!(
        "renew of 3 certificates: {:?}\n{}",
        t0.elapsed(),
        first.stdout
    );
    first.expect_code(0);

    let expected_key = [
        ("host1", &h1, "rsa2048"),
        ("host2", &h2, "ecdsa-p256"),
        ("host3", &h3, "ecdsa-p384"),
    ];
    let mut serials = Vec::new();
    for (name, dom, key_type) in expected_key {
        assert!(first.line(name).contains("renewed"), "{}", first.stdout);
        let cert = r.live(name, "cert.pem");
        verify_chain(&roots.root, &r.live(name, "chain.pem"), &cert)
            .unwrap_or_else(|e| panic!("{name} does not chain to Pebble's root: {e}"));
        verify_chain(
            &roots.root,
            &r.live(name, "chain.pem"),
            &r.live(name, "fullchain.pem"),
        )
        .unwrap_or_else(|e| panic!("{name} fullchain: {e}"));
        assert_eq!(sans(&cert), sorted(&[dom]), "{name} names");
        assert_eq!(private_key_type(&r.live(name, "privkey.pem")), key_type);
        assert_eq!(
            mode(&r.live(name, "privkey.pem")),
            0o600,
            "{name} privkey mode"
        );
        serials.push(cert_serial(&cert));
        assert_no_txt_left(&topo, &challenge_zone(dom));
    }
    assert!(r.journal_records().is_empty(), "journal not empty");
    let deployed_crt = deploy_dir.join("host1.crt");
    assert_eq!(
        fs::read(&deployed_crt).unwrap(),
        fs::read(r.live("host1", "fullchain.pem")).unwrap()
    );
    assert_eq!(mode(&deploy_dir.join("host1.key")), 0o640);

    // Not due: a plain run changes nothing.
    let again = r.run(&["renew"]);
    again.expect_code(0);
    assert!(again.line("host1").contains("not due"), "{}", again.stdout);
    assert_eq!(cert_serial(&r.live("host1", "cert.pem")), serials[0]);

    // The account was registered once (with EAB), saved 0600, and is reused.
    let account_file = r.state().join("accounts/pebble.json");
    assert_eq!(mode(&account_file), 0o600);
    let account = fs::read(&account_file).unwrap();

    // (b) --force: new serials, previous versions archived, deploy target updated.
    let forced = r.run(&["renew", "--force"]);
    forced.expect_code(0);
    assert_eq!(
        fs::read(&account_file).unwrap(),
        account,
        "account re-registered"
    );
    for (i, (name, _, _)) in expected_key.iter().enumerate() {
        let now = cert_serial(&r.live(name, "cert.pem"));
        assert_ne!(now, serials[i], "{name} was not reissued");
        let archive = r.state().join("archive").join(name);
        let versions: Vec<_> = fs::read_dir(&archive).unwrap().collect();
        assert_eq!(versions.len(), 2, "{name}: archive should hold 2 versions");
        let old_serials: Vec<String> = fs::read_dir(&archive)
            .unwrap()
            .map(|e| cert_serial(&e.unwrap().path().join("cert.pem")))
            .collect();
        assert!(
            old_serials.contains(&serials[i]),
            "{name}: previous version not archived"
        );
    }
    assert_eq!(
        fs::read(&deployed_crt).unwrap(),
        fs::read(r.live("host1", "fullchain.pem")).unwrap(),
        "deploy target not updated"
    );
}

/// (c): an explicit `zone:`, a discovered zone, and a `_acme-challenge` CNAME into a delegated zone.
#[test]
fn renew_with_explicit_zone_discovered_zone_and_cname() {
    let topo = topology(TopologyOptions {
        n_hosts: 3,
        cname_aliases: vec![("alias1".into(), "host3".into())],
        ..Default::default()
    });
    let (h1, h2, a1) = (domain("host1"), domain("host2"), domain("alias1"));
    let r = Renewd::new(
        &topo,
        "30s",
        &[
            SpecFixture::new("explicit", &[&h1]).line(&format!("zone: {}", challenge_zone(&h1))),
            SpecFixture::new("discovered", &[&h2]),
            SpecFixture::new("aliased", &[&a1]),
        ],
    );
    let run = r.run(&["renew"]);
    run.expect_code(0);
    for (name, dom) in [("explicit", &h1), ("discovered", &h2), ("aliased", &a1)] {
        assert!(run.line(name).contains("renewed"), "{}", run.stdout);
        assert_eq!(sans(&r.live(name, "cert.pem")), sorted(&[dom]));
    }
    // The alias's value went to the CNAME target's zone, and was removed there.
    assert_no_txt_left(&topo, &challenge_zone(&domain("host3")));
}

/// (d): a wildcard and its apex in one certificate: two TXT values at one owner.
#[test]
fn renew_wildcard_and_apex_in_one_certificate() {
    let topo = topology(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let h1 = domain("host1");
    let wildcard = format!("*.{h1}");
    let r = Renewd::new(&topo, "30s", &[SpecFixture::new("web", &[&h1, &wildcard])]);
    r.run(&["renew"]).expect_code(0);
    assert_eq!(sans(&r.live("web", "cert.pem")), sorted(&[&h1, &wildcard]));
    assert_no_txt_left(&topo, &challenge_zone(&h1));
}

/// (e): a wrong TSIG secret is BADSIG, a wrong key name BADKEY; nothing is written.
#[test]
fn renew_with_wrong_tsig_secret_or_key_name_fails_clearly_and_writes_nothing() {
    let topo = topology(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let h1 = domain("host1");
    let r = Renewd::new(&topo, "30s", &[SpecFixture::new("web", &[&h1])]);
    let key_file = r.dir.join("secrets/acme-update.key");
    let original = fs::read_to_string(&key_file).unwrap();

    // Same name, another secret.
    let secret_start = original.find("secret \"").unwrap() + "secret \"".len();
    let secret_end = secret_start + original[secret_start..].find('"').unwrap();
    let mut wrong_secret = original.clone();
    wrong_secret.replace_range(
        secret_start..secret_end,
        "c2VjcmV0LXRoYXQtdGhlLXNlcnZlci1kb2VzLW5vdC1rbm93IQ==",
    );
    fs::write(&key_file, &wrong_secret).unwrap();
    let run = r.run(&["renew"]);
    run.expect_code(1);
    let line = run.line("web");
    assert!(line.contains("BADSIG"), "{line}");
    assert!(line.contains("acme-update"), "names the key: {line}");
    assert!(!line.contains("c2VjcmV0"), "secret leaked: {line}");
    assert!(
        !r.state().join("live/web").exists(),
        "a certificate was written"
    );
    assert!(
        r.journal_records().is_empty(),
        "journal keeps a rejected value"
    );

    // Right secret, unknown key name.
    fs::write(
        &key_file,
        original.replace("\"acme-update\"", "\"no-such-key\""),
    )
    .unwrap();
    let run = r.run(&["renew"]);
    run.expect_code(1);
    let line = run.line("web");
    assert!(
        line.contains("BADKEY") && line.contains("no-such-key"),
        "{line}"
    );
    assert!(!r.state().join("live/web").exists());
    assert!(topo
        .txt_at(topo.master_addr(), &challenge_zone(&h1))
        .is_empty());
}

/// (f): a zone whose update-policy does not grant our key: REFUSED, with the grant line that would.
#[test]
fn renew_in_a_zone_not_granted_explains_the_update_policy() {
    let topo = topology(TopologyOptions {
        n_hosts: 1,
        denied_hosts: vec!["denied1".into()],
        ..Default::default()
    });
    let denied = domain("denied1");
    let r = Renewd::new(&topo, "30s", &[SpecFixture::new("denied", &[&denied])]);
    let run = r.run(&["renew"]);
    run.expect_code(1);
    let line = run.line("denied");
    let zone = challenge_zone(&denied);
    assert!(line.contains("REFUSED"), "{line}");
    assert!(
        line.contains(&format!("grant acme-update name {zone}. TXT;")),
        "suggests the update-policy grant: {line}"
    );
    assert!(!r.state().join("live/denied").exists());
}

/// (g): one secondary down: propagation times out naming it, its TXT is removed, and a certificate in a
/// zone that secondary does not serve still succeeds in the same run.
#[test]
fn renew_with_a_secondary_down_names_it_and_other_certificates_succeed() {
    let topo = topology(TopologyOptions {
        n_hosts: 2,
        // host2's zone is served by dns1 and dns2 only.
        two_ns_hosts: vec!["host2".into()],
        ..Default::default()
    });
    let (h1, h2) = (domain("host1"), domain("host2"));
    let r = Renewd::new(
        &topo,
        "4s",
        &[
            SpecFixture::new("lagging", &[&h1]),
            SpecFixture::new("fine", &[&h2]),
        ],
    );
    topo.stop_secondary(3);
    let run = r.run(&["renew"]);
    run.expect_code(1);
    let line = run.line("lagging");
    assert!(
        line.contains("dns3.example.test"),
        "names the lagging server: {line}"
    );
    assert!(line.contains("127.0.0.15"), "{line}");
    assert!(run.line("fine").contains("renewed"), "{}", run.stdout);
    assert!(r.state().join("live/fine/cert.pem").exists());
    assert!(!r.state().join("live/lagging").exists());
    assert!(topo
        .txt_at(topo.master_addr(), &challenge_zone(&h1))
        .is_empty());
    assert!(r.journal_records().is_empty());
}

/// (h): renewd killed with SIGKILL after publishing: the next run removes the stale value and completes.
#[test]
fn renew_after_sigkill_removes_the_stale_txt_and_completes() {
    let topo = topology(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let h1 = domain("host1");
    let owner = challenge_zone(&h1);
    let r = Renewd::new(&topo, "60s", &[SpecFixture::new("web", &[&h1])]);
    // With dns3 down, renewd waits in propagation after publishing: a window to kill it in.
    topo.stop_secondary(3);
    let mut child = r.spawn(&["renew"]);
    let stale = wait_published(&topo, &owner);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        topo.txt_at(topo.master_addr(), &owner),
        stale,
        "value left behind"
    );
    assert_eq!(r.journal_records().len(), 1, "the journal remembers it");

    topo.start_secondary(3);
    let run = r.run(&["renew"]);
    run.expect_code(0);
    assert!(run.stderr.contains("removed 1 TXT value"), "{}", run.stderr);
    assert!(run.line("web").contains("renewed"));
    let left = topo.txt_at(topo.master_addr(), &owner);
    assert!(
        left.iter().all(|v| !stale.contains(v)),
        "stale value still there: {left:?}"
    );
    assert_no_txt_left(&topo, &owner);
    assert!(r.journal_records().is_empty());
}

/// `renewd status`: rows sorted by time left, JSON with stable fields, exit 1 when a certificate needs
/// attention (none yet, or less than --warn left).
#[test]
fn status_lists_certificates_by_time_left_and_exits_1_when_attention_is_needed() {
    let topo = topology(TopologyOptions {
        n_hosts: 2,
        ..Default::default()
    });
    let (h1, h2) = (domain("host1"), domain("host2"));
    let deployed = topo.dir().join("deployed");
    fs::create_dir_all(&deployed).unwrap();
    let (web_crt, web_key) = (deployed.join("web.crt"), deployed.join("web.key"));
    let r = Renewd::new(
        &topo,
        "30s",
        &[
            SpecFixture::new("web", &[&h1]).line(&format!(
                "deploy: [ {{ fullchain: \"{}\", key: \"{}\" }} ]",
                web_crt.display(),
                web_key.display()
            )),
            SpecFixture::new("mail", &[&h2]),
        ],
    );
    r.run(&["renew", "web"]).expect_code(0);
    assert_eq!(
        fs::read(&web_crt).unwrap(),
        fs::read(r.live("web", "fullchain.pem")).unwrap(),
        "deployed where status will say"
    );

    let json = r.run(&["status", "--json"]);
    json.expect_code(1); // `mail` has no certificate yet
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("status JSON");
    let rows = doc["certificates"].as_array().unwrap();
    assert_eq!(rows[0]["name"], "mail", "no certificate sorts first: {doc}");
    assert!(rows[0]["not_after"].is_null());
    assert_eq!(rows[0]["needs_attention"], true);
    assert_eq!(rows[1]["name"], "web");
    assert_eq!(rows[1]["days_left"], 89, "{doc}");
    assert_eq!(
        rows[1]["serial"].as_str().unwrap(),
        cert_serial(&r.live("web", "cert.pem")).to_uppercase()
    );
    assert_eq!(rows[1]["domains"][0], h1.as_str());
    assert_eq!(
        rows[1]["last_result"], "ok",
        "renew's result is recorded: {doc}"
    );
    let path = |p: &std::path::Path| serde_json::json!(p.display().to_string());
    assert_eq!(
        rows[1]["paths"]["deployed"],
        serde_json::json!([path(&web_crt), path(&web_key)]),
        "{doc}"
    );
    assert_eq!(rows[0]["paths"]["deployed"], serde_json::json!([]), "{doc}");

    r.run(&["renew", "mail"]).expect_code(0);
    let text = r.run(&["status"]);
    text.expect_code(0);
    assert!(text.stdout.starts_with("NAME"), "{}", text.stdout);
    assert!(!text.stdout.contains('\x1b'), "no colour off a terminal");
    assert!(text.stdout.contains(&h2));
    assert!(
        !text.stdout.contains("  ! "),
        "nothing marked: {}",
        text.stdout
    );
    // What `certbot certificates` shows: key type and where the files are.
    assert!(
        text.stdout.contains("key rsa2048")
            && text.stdout.contains(&format!(
                "{}",
                r.state().join("live/web/fullchain.pem").display()
            )),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!(
            "; deployed to {}, {}\n",
            web_crt.display(),
            web_key.display()
        )),
        "{}",
        text.stdout
    );
    assert_eq!(
        text.stdout.matches("deployed to").count(),
        1,
        "mail has no deploy target: {}",
        text.stdout
    );
    let warn = r.run(&["status", "--warn", "100d"]);
    warn.expect_code(1);
    let marked: Vec<&str> = warn
        .stdout
        .lines()
        .filter(|l| l.contains("  ! less than 100d left"))
        .collect();
    assert_eq!(marked.len(), 2, "both rows marked:\n{}", warn.stdout);
    let json = r.run(&["status", "--json", "--warn", "100d"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["certificates"][0]["attention"], "less than 100d left");
    assert_eq!(doc["certificates"][0]["key"], "rsa2048");

    // An invalid configuration: the JSON still comes, with the error.
    let global = fs::read_to_string(r.config()).unwrap();
    fs::write(r.config(), format!("{global}bogus_key: 1\n")).unwrap();
    let json = r.run(&["status", "--json"]);
    json.expect_code(2);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON on stdout");
    assert!(
        doc["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("bogus_key")),
        "{doc}"
    );
    assert_eq!(doc["certificates"], serde_json::json!([]));
}

/// A `renewd renew` from cron whose deploy fails after the certificate was issued: reported as such,
/// recorded where `renewd status` reads it (exit 1), and cleared by the next good run.
#[test]
fn a_failed_deploy_from_renew_is_recorded_for_status() {
    let topo = topology(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("web", &[&domain("host1")])
            .line("reload: [ { command: [/bin/false] } ]")],
    );
    let run = r.run(&["renew"]);
    run.expect_code(1);
    assert!(
        run.line("web")
            .contains("issued and installed in live/, but the deploy or reload FAILED"),
        "{}",
        run.stdout
    );
    let status = r.run(&["status", "--json"]);
    status.expect_code(1);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let row = &doc["certificates"][0];
    assert_eq!(row["last_result"], "failed", "{doc}");
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("issued, but the deploy or reload failed")),
        "{doc}"
    );
    assert_eq!(row["consecutive_failures"], 1);

    fs::write(
        r.spec_path("web"),
        format!("domains: [\"{}\"]\n", domain("host1")),
    )
    .unwrap();
    r.run(&["renew", "--force"]).expect_code(0);
    let status = r.run(&["status", "--json"]);
    status.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(doc["certificates"][0]["last_result"], "ok", "{doc}");
}

/// Issue 14.2 with the daemon running. The daemon issues `web` but its reload fails (status.json: failed;
/// it retries the deploy only after its 5-minute backoff). Then cron-style `renewd renew --force web`:
/// a good one makes `renewd status` (table and JSON) show ok and exit 0, a newer one whose reload fails
/// shows that failure, counted from the good run (1x), and exits 1. The daemon's own file keeps its
/// record (one writer), and the daemon runs throughout.
#[test]
fn renew_beside_the_running_daemon_shows_its_newer_result_in_status() {
    let topo = topology(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    // The reload fails while this file exists (nothing renewd watches).
    let broken = topo.dir().join("reload-broken");
    fs::write(&broken, "").unwrap();
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("web", &[&domain("host1")]).line(&format!(
            "reload: [ {{ command: [/bin/sh, -c, \"test ! -e {}\"] }} ]",
            broken.display()
        ))],
    );
    let log = topo.dir().join("daemon.log");
    let mut daemon = r.spawn_logged(&["run"], &log, &[]);
    let daemon_failure = poll_until(Duration::from_secs(40), Duration::from_millis(50), || {
        let web = r.status_json()["certificates"]["web"].clone();
        (web["last_result"] == "failed").then_some(web)
    })
    .unwrap_or_else(|| panic!("the daemon recorded no failure\n{}", log_text(&log)));
    assert!(r.live("web", "cert.pem").exists(), "{daemon_failure}");
    let row = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with("web "))
            .unwrap_or_else(|| panic!("no row for web:\n{text}"))
            .to_string()
    };
    let status_json = |code: i32| -> serde_json::Value {
        let json = r.run(&["status", "--json"]);
        json.expect_code(code);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(doc["certificates"][0]["name"], "web", "{doc}");
        doc["certificates"][0].clone()
    };
    r.run(&["status"]).expect_code(1);

    // A good run from cron: newer than the daemon's failure.
    fs::remove_file(&broken).unwrap();
    r.run(&["renew", "--force", "web"]).expect_code(0);
    let text = r.run(&["status"]);
    text.expect_code(0);
    assert!(
        row(&text.stdout).trim_end().ends_with(" ok"),
        "{}",
        text.stdout
    );
    let web = status_json(0);
    assert_eq!(
        (&web["last_result"], &web["consecutive_failures"]),
        (&serde_json::json!("ok"), &serde_json::json!(0)),
        "{web}"
    );

    // A newer run whose reload fails: issued, shown as failed, one failure since the good run.
    fs::write(&broken, "").unwrap();
    let run = r.run(&["renew", "--force", "web"]);
    run.expect_code(1);
    assert!(
        run.line("web")
            .contains("issued and installed in live/, but the deploy or reload FAILED"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let serial = cert_serial(&r.live("web", "cert.pem"));
    let text = r.run(&["status"]);
    text.expect_code(1);
    assert!(
        row(&text.stdout).contains("failed (1x): issued, but the deploy or reload failed"),
        "{}",
        text.stdout
    );
    let web = status_json(1);
    assert_eq!(web["last_result"], "failed", "{web}");
    assert_eq!(web["consecutive_failures"], 1, "{web}");
    assert_eq!(web["serial"], serial.to_uppercase(), "{web}");
    assert!(
        web["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("issued, but the deploy or reload failed")),
        "{web}"
    );

    let own = r.status_json()["certificates"]["web"].clone();
    assert_eq!(
        (&own["last_result"], &own["history"]),
        (&daemon_failure["last_result"], &daemon_failure["history"]),
        "the daemon's own record is its own: {own}"
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon ran throughout\n{}",
        log_text(&log)
    );
    stop_daemon(daemon, &log);
}

/// `renewd renew` run by hand while another renewd process renews the same certificate does not place
/// a second order: it reports the certificate as skipped.
#[test]
fn renew_skips_a_certificate_another_process_is_renewing() {
    let topo = topology(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let h1 = domain("host1");
    let owner = challenge_zone(&h1);
    let r = Renewd::new(&topo, "60s", &[SpecFixture::new("web", &[&h1])]);
    topo.stop_secondary(3); // the first renewal waits in propagation, holding the lock
    let mut first = r.spawn(&["renew"]);
    wait_published(&topo, &owner);
    let second = r.run(&["renew", "--force", "web"]);
    second.expect_code(0);
    assert!(second.line("web").contains("skipped"), "{}", second.stdout);
    assert_eq!(
        topo.txt_at(topo.master_addr(), &owner).len(),
        1,
        "the second run published nothing"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}

/// `renewd status` after the daemon failed a certificate (a zone the key is not granted): the row says
/// failed with the first line of the error, JSON too, and the exit status is 1.
#[test]
fn status_shows_a_failing_certificate_with_its_error() {
    let topo = topology(TopologyOptions {
        n_hosts: 1,
        denied_hosts: vec!["denied1".into()],
        ..Default::default()
    });
    let (h1, denied) = (domain("host1"), domain("denied1"));
    let r = Renewd::new(
        &topo,
        "30s",
        &[
            SpecFixture::new("web", &[&h1]),
            SpecFixture::new("locked", &[&denied]),
        ],
    );
    let log = topo.dir().join("daemon.log");
    let mut daemon = r.spawn_logged(&["run"], &log, &[]);
    let status_file = r.state().join("status.json");
    poll_until(Duration::from_secs(40), Duration::from_millis(50), || {
        let st: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&status_file).ok()?).ok()?;
        let certs = &st["certificates"];
        (certs["locked"]["last_result"] == "failed" && certs["web"]["last_result"] == "ok")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no failure recorded:\n{}",
            fs::read_to_string(&log).unwrap()
        )
    });
    crate::support::renewd::signal(daemon.id(), libc::SIGTERM);
    daemon.wait().unwrap();

    let json = r.run(&["status", "--json"]);
    json.expect_code(1);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rows = doc["certificates"].as_array().unwrap();
    let locked = rows.iter().find(|r| r["name"] == "locked").unwrap();
    assert_eq!(locked["last_result"], "failed");
    assert_eq!(locked["consecutive_failures"], 1);
    assert!(
        locked["last_error"].as_str().unwrap().contains("REFUSED"),
        "{locked}"
    );
    assert!(!locked["last_error"].as_str().unwrap().contains('\n'));
    let web = rows.iter().find(|r| r["name"] == "web").unwrap();
    assert_eq!(web["last_result"], "ok");
    assert_eq!(web["needs_attention"], false);

    let text = r.run(&["status"]);
    text.expect_code(1);
    let row = text
        .stdout
        .lines()
        .find(|l| l.starts_with("locked"))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(
        row.contains("failed (1x)") && row.contains("REFUSED"),
        "{row}"
    );
}

/// `workers: N` instead of the fixture's 4, so that every renewal of the run starts at once.
fn set_workers(r: &Renewd, n: usize) {
    let text = fs::read_to_string(r.config()).unwrap();
    assert!(text.contains("workers: 4\n"), "{text}");
    fs::write(
        r.config(),
        text.replace("workers: 4\n", &format!("workers: {n}\n")),
    )
    .unwrap();
}

/// (k): many certificates whose challenges are CNAMEd into one zone share UPDATEs: the primary's
/// serial (one increment per applied UPDATE) grows by less than one add and one delete per
/// certificate, every certificate is issued, and nothing is left in the zone.
#[test]
fn renew_many_certificates_in_one_shared_zone_shares_updates() {
    const N: usize = 20;
    let topo = topology(TopologyOptions {
        n_hosts: 0,
        shared_zone_hosts: N,
        ..Default::default()
    });
    let specs: Vec<SpecFixture> = (1..=N)
        .map(|k| SpecFixture::new(&format!("shared{k}"), &[&domain(&format!("shared{k}"))]))
        .collect();
    let r = Renewd::new(&topo, "30s", &specs);
    set_workers(&r, N);
    let before = topo.soa_serial_at(topo.master_addr(), SHARED_ZONE).unwrap();
    let t0 = Instant::now();
    let run = r.run(&["renew"]);
    let wall = t0.elapsed();
    run.expect_code(0);
    for k in 1..=N {
        assert!(
            run.line(&format!("shared{k}")).contains("renewed"),
            "{}",
            run.stdout
        );
    }
    let updates = topo
        .soa_serial_at(topo.master_addr(), SHARED_ZONE)
        .unwrap()
        .wrapping_sub(before);
    eprintln!("{N} certificates in one zone: {updates} UPDATEs applied, {wall:?}");
    // Without coalescing it is exactly 2N (one add and one delete each). How many share depends on
    // how close together the renewals reach their UPDATEs: 25 for 20 certificates here (2 cores).
    assert!(
        (updates as usize) < 2 * N,
        "{updates} UPDATEs for {N} certificates: none shared (one add and one delete each is {})",
        2 * N
    );
    for k in 1..=N {
        assert!(
            topo.txt_at(topo.master_addr(), &format!("shared{k}.{SHARED_ZONE}"))
                .is_empty(),
            "TXT left for shared{k}"
        );
    }
    assert!(r.journal_records().is_empty(), "{:?}", r.journal_records());
}

/// (l): a refused owner in a shared zone fails its own renewal only, with its own error; the others
/// in the same zone (possibly in the same UPDATE) are issued.
#[test]
fn renew_with_one_refused_owner_in_a_shared_zone_fails_only_that_certificate() {
    let topo = topology(TopologyOptions {
        n_hosts: 0,
        shared_zone_hosts: 5,
        shared_zone_denied: vec!["refused1".into()],
        ..Default::default()
    });
    let mut specs: Vec<SpecFixture> = (1..=5)
        .map(|k| SpecFixture::new(&format!("shared{k}"), &[&domain(&format!("shared{k}"))]))
        .collect();
    specs.push(SpecFixture::new("refused", &[&domain("refused1")]));
    let r = Renewd::new(&topo, "30s", &specs);
    set_workers(&r, 6);
    let run = r.run(&["renew"]);
    run.expect_code(1);
    let line = run.line("refused");
    assert!(line.contains("REFUSED"), "{line}");
    assert!(
        line.contains(&format!("refused1.{SHARED_ZONE}")),
        "names its own owner: {line}"
    );
    for k in 1..=5 {
        let line = run.line(&format!("shared{k}"));
        assert!(line.contains("renewed"), "{line}\n{}", run.stdout);
        assert!(!line.contains("REFUSED"), "{line}");
    }
    assert!(!r.state().join("live/refused").exists());
    assert!(r.journal_records().is_empty(), "{:?}", r.journal_records());
}
