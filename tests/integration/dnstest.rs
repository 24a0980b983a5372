//! `renewd dns-test` against the reference deployment: one success with per-server timings, and one
//! test per failure an administrator must be able to act on.

use std::fs;

use crate::support::renewd::{Renewd, Run};
use crate::support::topology::{challenge_zone, domain, Server, Topology, TopologyOptions};
use crate::support::SpecFixture;

/// One host, NOTIFY at once (these tests do not measure BIND's notify-delay).
fn topology(extra: impl FnOnce(&mut TopologyOptions)) -> Topology {
    let mut opts = TopologyOptions {
        n_hosts: 1,
        notify_delay: Some(0),
        ..TopologyOptions::default()
    };
    extra(&mut opts);
    Topology::start(opts)
}

/// renewd configured for `topo` with one spec for host1 (dns server `acme-master`).
fn renewd<'t>(topo: &'t Topology, propagation: &str) -> Renewd<'t> {
    Renewd::new(
        topo,
        propagation,
        &[SpecFixture::new("host1", &[&domain("host1")])],
    )
}

/// `renewd dns-test ARGS`; the report goes to stderr too (shown with `--nocapture`).
fn dns_test(r: &Renewd<'_>, args: &[&str]) -> Run {
    let mut all = vec!["dns-test"];
    all.extend_from_slice(args);
    let run = r.run(&all);
    eprintln!(
        "$ renewd dns-test {}\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

#[track_caller]
fn assert_says(run: &Run, words: &[&str]) {
    for w in words {
        assert!(
            run.stdout.contains(w),
            "expected {w:?} in the report\n--- stdout\n{}--- stderr\n{}",
            run.stdout,
            run.stderr
        );
    }
}

/// The report line of `step` that mentions `what` (e.g. a server name).
#[track_caller]
fn line<'r>(run: &'r Run, step: &str, what: &str) -> &'r str {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(step) && l.contains(what))
        .unwrap_or_else(|| panic!("no `{step}` line with {what:?} in\n{}", run.stdout))
}

/// Rewrites a file of the renewd installation or the topology.
fn edit(path: &std::path::Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn dns_test_passes_and_times_each_secondary_then_deletes_the_record() {
    let topo = topology(|o| o.cname_aliases = vec![("alias".into(), "host1".into())]);
    let r = renewd(&topo, "20s");
    let run = dns_test(&r, &["acme-master"]);
    run.expect_code(0);
    let zone = challenge_zone(&domain("host1"));
    assert_says(&run, &[&zone, "first domain of spec `host1`", "PASSED"]);
    for n in 1..=3 {
        let served = line(&run, "served", &format!("dns{n}.example.test"));
        assert!(served.starts_with("ok "), "{served}");
        assert!(served.contains(" ms"), "{served}");
        let serial = line(&run, "serial", &format!("dns{n}.example.test"));
        assert!(serial.contains("same as the primary"), "{serial}");
    }
    assert!(line(&run, "add", "renewd-dns-test-").starts_with("ok "));
    assert!(line(&run, "delete", "removed").starts_with("ok "));
    assert!(
        topo.txt_at(topo.master_addr(), &zone).is_empty(),
        "the test record must be gone from the primary"
    );
    assert!(
        !run.stdout.contains('\u{1b}'),
        "no colours when not a terminal"
    );

    // A CNAME is followed and shown; an explicit zone that ignores it is explained.
    let alias = challenge_zone(&domain("alias"));
    let run = dns_test(&r, &["acme-master", "--name", &domain("alias")]);
    run.expect_code(0);
    assert_says(&run, &[&format!("{alias} -> {zone}"), "PASSED"]);
    let run = dns_test(
        &r,
        &[
            "acme-master",
            "--name",
            &domain("alias"),
            "--zone",
            "example.test",
        ],
    );
    run.expect_code(1);
    let wrong = line(&run, "zone", "CNAME");
    assert!(wrong.starts_with("FAIL"), "{wrong}");
    assert_says(&run, &["where the CA will not look", &zone]);

    // Usage errors exit 2 and send nothing.
    let unknown = dns_test(&r, &["nope"]);
    unknown.expect_code(2);
    assert!(
        unknown.stderr.contains("no dns server named `nope`")
            && unknown.stderr.contains("acme-master"),
        "{}",
        unknown.stderr
    );
    let outside = dns_test(
        &r,
        &[
            "acme-master",
            "--name",
            &domain("host1"),
            "--zone",
            "other.test",
        ],
    );
    outside.expect_code(2);
    assert!(outside.stderr.contains("is not inside zone `other.test`"));
}

#[test]
fn dns_test_explains_a_key_name_the_server_does_not_know() {
    let topo = topology(|_| {});
    let r = renewd(&topo, "20s");
    edit(
        &r.dir.join("secrets/acme-update.key"),
        "key \"acme-update\"",
        "key \"renewd-wrong-name\"",
    );
    let run = dns_test(&r, &["acme-master"]);
    run.expect_code(1);
    let add = line(&run, "add", "BADKEY");
    assert!(add.starts_with("FAIL"), "{add}");
    assert_says(&run, &["`renewd-wrong-name`", "named.conf", "FAILED"]);
    assert!(!run.stdout.contains("removed"), "nothing was published");
}

#[test]
fn dns_test_explains_a_secret_that_differs_from_the_server() {
    let topo = topology(|_| {});
    let r = renewd(&topo, "20s");
    let key_file = r.dir.join("secrets/acme-update.key");
    let text = fs::read_to_string(&key_file).unwrap();
    let secret = text
        .split("secret \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("secret in the key file")
        .to_string();
    edit(
        &key_file,
        &secret,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let run = dns_test(&r, &["acme-master"]);
    run.expect_code(1);
    assert!(line(&run, "add", "BADSIG").starts_with("FAIL"));
    assert_says(&run, &["secret of key `acme-update`", "differs"]);
}

#[test]
fn dns_test_shows_the_grant_line_for_a_zone_the_key_may_not_update() {
    let topo = topology(|o| o.denied_hosts = vec!["locked".into()]);
    let r = renewd(&topo, "20s");
    let locked = challenge_zone(&domain("locked"));
    let run = dns_test(&r, &["acme-master", "--name", &domain("locked")]);
    run.expect_code(1);
    assert!(line(&run, "add", "REFUSED").starts_with("FAIL"));
    assert_says(
        &run,
        &[&format!(
            "update-policy {{ grant acme-update name {locked}. TXT; }};"
        )],
    );
    // The zone itself is fine: discovered, served by dns1..3 with the primary's serial.
    assert!(line(&run, "zone", &locked).starts_with("ok "));
    assert!(line(&run, "serial", "dns3.example.test").starts_with("ok "));
}

#[test]
fn dns_test_explains_an_unreachable_primary() {
    let topo = topology(|_| {});
    let r = renewd(&topo, "20s");
    edit(&r.config(), "\"127.0.0.12:53\"", "\"127.0.0.99:53\"");
    let run = dns_test(&r, &["acme-master"]);
    run.expect_code(1);
    let primary = line(&run, "primary", "127.0.0.99:53");
    assert!(primary.starts_with("FAIL"), "{primary}");
    assert_says(
        &run,
        &[
            "unreachable",
            "is named running",
            "dns_servers.acme-master.address",
        ],
    );
    // The public side is still checked, and nothing was sent.
    assert!(line(&run, "serial", "dns1.example.test").starts_with("ok "));
    assert!(!run.stdout.contains("renewd-dns-test-"));
}

#[test]
fn dns_test_names_dns3_when_the_primary_refuses_it_zone_transfers() {
    let topo = topology(|_| {});
    let r = renewd(&topo, "5s");
    // The primary stops allowing dns3 to transfer (it still NOTIFYs it): dns3 stays behind.
    let conf = topo.dir().join("master/named.conf");
    edit(
        &conf,
        "allow-transfer { 127.0.0.13; 127.0.0.14; 127.0.0.15; };",
        "allow-transfer { 127.0.0.13; 127.0.0.14; };",
    );
    let out = topo.rndc(Server::Master, &["reconfig"]);
    assert!(out.status.success(), "rndc reconfig: {out:?}");

    let run = dns_test(&r, &["acme-master"]);
    run.expect_code(1);
    let dns3 = line(&run, "served", "dns3.example.test");
    assert!(dns3.starts_with("FAIL"), "{dns3}");
    assert!(dns3.contains("does not follow the primary"), "{dns3}");
    assert_says(
        &run,
        &["allow-transfer { 127.0.0.15; }", "also-notify", "FAILED"],
    );
    for n in 1..=2 {
        assert!(line(&run, "served", &format!("dns{n}.example.test")).starts_with("ok "));
    }
    // Deleted even though the test failed.
    assert!(line(&run, "delete", "removed").starts_with("ok "));
}
