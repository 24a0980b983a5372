//! The second CA of the harness (acme2certifier, tests/support/a2c.rs) and what renewd does against it:
//! EAB registration and dns-01 issuance.

use std::path::Path;
use std::time::Instant;

use crate::support::a2c::{SecondCa, SecondCaOptions, A2C_PORT};
use crate::support::ari::certificate_id;
use crate::support::renewd::{Renewd, Run};
use crate::support::topology::{domain, Topology, TopologyOptions};
use crate::support::x509::{cert_sans, verify_chain};
use crate::support::SpecFixture;

fn topology() -> Topology {
    Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    })
}

fn host1() -> Vec<SpecFixture> {
    vec![SpecFixture::new("host1", &[&domain("host1")])]
}

/// `renewd renew`, which must renew (or issue) `host1`.
fn renew(r: &Renewd) -> Run {
    let run = r.run(&["renew"]);
    run.expect_code(0);
    assert!(
        run.line("host1").contains("renewed, serial"),
        "{}",
        run.stdout
    );
    run
}

/// Issue `host1` from the second CA with `renewd renew`; returns its ARI certificate id.
fn issue(r: &Renewd, ca: &SecondCa) -> String {
    renew(r);
    assert_eq!(ca.new_order_count(), 1, "{:?}", ca.requests());
    certificate_id(&r.live("host1", "cert.pem"))
}

#[test]
fn second_ca_starts_beside_pebble_and_is_gone_after_drop() {
    let topo = topology();
    let t0 = Instant::now();
    let ca = SecondCa::start(&topo, SecondCaOptions::default());
    let up = t0.elapsed();
    eprintln!(
        "acme2certifier up in {} ms (its CA made, process started, directory served; the process alone {} \
         ms; topology {} ms), RSS {} KiB",
        up.as_millis(),
        ca.startup_time().as_millis(),
        topo.startup_time().as_millis(),
        ca.rss_kib().unwrap_or(0)
    );
    let dir: serde_json::Value =
        serde_json::from_str(&topo.curl(&ca.directory_url()).expect("directory")).unwrap();
    for key in ["newAccount", "newOrder", "renewalInfo"] {
        assert!(
            dir[key]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("https://127.0.0.1:{A2C_PORT}/"))),
            "{key}: {dir}"
        );
    }
    assert_eq!(dir["meta"]["externalAccountRequired"], true, "{dir}");
    assert_eq!(
        dir["meta"]["caaIdentities"],
        serde_json::json!(["ca.example.test"])
    );
    assert_eq!(
        ca.requests().last().map(|r| (r.method.as_str(), r.status)),
        Some(("GET", 200)),
        "the access log has the directory request"
    );

    let pid = ca.pid().expect("running");
    drop(ca);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "acme2certifier (pid {pid}) still exists after drop"
    );
    let err = topo
        .curl(&format!("https://127.0.0.1:{A2C_PORT}/directory"))
        .expect_err("nothing listens on the port any more");
    assert!(
        err.contains("Failed to connect") || err.contains("Couldn't connect"),
        "{err}"
    );
    topo.curl(&topo.acme_directory_url())
        .expect("Pebble still serves its directory");
}

/// `renewd renew` against the second CA: the account is registered with EAB (the directory requires it),
/// the certificate is issued via dns-01 and chains to the second CA's own root.
#[test]
fn renew_registers_with_eab_and_issues_from_the_second_ca() {
    let topo = topology();
    let ca = SecondCa::start(&topo, SecondCaOptions::default());
    let r = ca.renewd("30s", &host1());
    let t0 = Instant::now();
    issue(&r, &ca);
    eprintln!(
        "issued from acme2certifier in {} ms",
        t0.elapsed().as_millis()
    );

    let accounts = ca.post_payloads("/acme/newaccount");
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert!(
        accounts[0].get("externalAccountBinding").is_some(),
        "newAccount carries the EAB: {}",
        accounts[0]
    );
    let cert = r.live("host1", "cert.pem");
    verify_chain(&ca.roots().root, &r.live("host1", "chain.pem"), &cert)
        .unwrap_or_else(|e| panic!("not issued by the second CA: {e}"));
    assert_eq!(cert_sans(&cert), vec![domain("host1")]);
    assert!(
        verify_chain(
            &topo.issuing_roots().root,
            &r.live("host1", "chain.pem"),
            &cert
        )
        .is_err(),
        "Pebble did not issue it"
    );
}

/// The second CA with what Pebble lacks switched on: profiles (the directory lists them; an order without
/// one gets the default profile's lifetime, here 1 day) and dns-persist-01 offered beside dns-01 (with the
/// issuer domain names). renewd, which asks for neither yet, still issues with dns-01.
#[test]
fn second_ca_with_profiles_and_dns_persist_still_issues_with_dns01() {
    let topo = topology();
    let ca = SecondCa::start(
        &topo,
        SecondCaOptions {
            profiles: vec![("shortlived".into(), 1), ("classic".into(), 90)],
            default_profile: Some("shortlived".into()),
            dns_persist_01: true,
            caa_identities: vec!["ca.example.test".into(), "other.example.test".into()],
            ..SecondCaOptions::default()
        },
    );
    let dir: serde_json::Value =
        serde_json::from_str(&topo.curl(&ca.directory_url()).expect("directory")).unwrap();
    let profiles = dir["meta"]["profiles"]
        .as_object()
        .unwrap_or_else(|| panic!("no profiles: {dir}"));
    assert_eq!(
        profiles.keys().collect::<Vec<_>>(),
        vec!["classic", "shortlived"],
        "{dir}"
    );
    let r = ca.renewd("30s", &host1());
    issue(&r, &ca);
    let cert = r.live("host1", "cert.pem");
    assert!(
        crate::support::x509::cert_valid_for(&cert, 86400 - 600)
            && !crate::support::x509::cert_valid_for(&cert, 86400 + 600),
        "the default profile's lifetime is 1 day: notAfter {}",
        crate::support::x509::cert_not_after(&cert)
    );
    // The authorization offered dns-persist-01 with the issuer names and the account URL.
    let log = std::fs::read_to_string(ca.log_path()).unwrap();
    assert!(log.contains("'dns-persist-01'"), "{log}");
    assert!(log.contains("issuer-domain-names"), "{log}");
}
