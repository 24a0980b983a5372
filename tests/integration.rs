//! renewd's integration tests: each test gets its own copy of the reference deployment
//! (tests/support/topology.rs) in a private network namespace. Run as root.

mod support;

#[path = "integration/ari.rs"]
mod ari;
#[path = "integration/check.rs"]
mod check;
#[path = "integration/cluster.rs"]
mod cluster;
#[path = "integration/daemon.rs"]
mod daemon;
#[path = "integration/daytwo.rs"]
mod daytwo;
#[path = "integration/deploy.rs"]
mod deploy;
#[path = "integration/dnstest.rs"]
mod dnstest;
#[path = "integration/faults.rs"]
mod faults;
#[path = "integration/import.rs"]
mod import;
#[path = "integration/members.rs"]
mod members;
#[path = "integration/metrics.rs"]
mod metrics;
#[path = "integration/monitoring.rs"]
mod monitoring;
#[path = "integration/packaging.rs"]
mod packaging;
#[path = "integration/persist.rs"]
mod persist;
#[path = "integration/renew.rs"]
mod renew;
#[path = "integration/second_ca.rs"]
mod second_ca;
#[path = "integration/state.rs"]
mod state;

use std::time::{Duration, Instant};

use support::*;

/// Polls every `interval` until `f` is true; returns the elapsed time, or panics after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// `persist_zones`: each host's `_validation-persist` zone is delegated, takes renewd's TSIG updates and
/// reaches every secondary, like its challenge zone (dns-persist-01's standing record lives there).
#[test]
fn topology_persist_zones_take_renewds_updates_and_reach_every_server() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        persist_zones: true,
        two_ns_hosts: vec!["host2".into()],
        ..Default::default()
    });
    let zone = persist_zone(&topo.host_domain(1));
    assert_eq!(zone, "_validation-persist.host1.example.test");
    let value = "ca.example.test; accounturi=https://127.0.0.1:14010/acme/acct/x";
    let out = topo.add_txt(&zone, value);
    assert!(out.status.success(), "{out:?}");
    for addr in topo.secondary_addrs() {
        wait_for(
            &format!("{addr} to serve the record at {zone}"),
            Duration::from_secs(20),
            || topo.txt_at(addr, &zone).contains(&value.to_string()),
        );
    }
    // Delegated from the parent: the CA's resolver finds it from the root down.
    let via_resolver = topo.dig(topo.ca_resolver_addr(), &[&zone, "TXT"]);
    assert!(via_resolver.contains("accounturi="), "{via_resolver}");
    // host2's persist zone has host2's two name servers (dns1, dns2), like its challenge zone.
    let ns = topo.dig(
        topo.resolver_addr(),
        &[&persist_zone(&topo.host_domain(2)), "NS"],
    );
    let mut ns: Vec<&str> = ns.lines().collect();
    ns.sort();
    assert_eq!(ns, vec!["dns1.example.test.", "dns2.example.test."]);
    // The challenge zones are unchanged.
    let challenge = challenge_zone(&topo.host_domain(1));
    assert!(topo.add_txt(&challenge, "still-works").status.success());
}

#[test]
fn topology_comes_up_and_accepts_tsig_update() {
    let topo = Topology::start(TopologyOptions {
        denied_hosts: vec!["locked".into()],
        cname_aliases: vec![("alias".into(), "host1".into())],
        ..TopologyOptions::default()
    });
    eprintln!(
        "topology up in {} ms ({})",
        topo.startup_time().as_millis(),
        topo.startup_phases()
            .iter()
            .map(|(p, d)| format!("{p} {} ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let zone = challenge_zone(&topo.host_domain(1));
    let value = format!("smoke-{}", std::process::id());
    let t0 = Instant::now();
    let out = topo.add_txt(&zone, &value);
    assert_success("nsupdate add", &out);
    let update_ms = t0.elapsed().as_millis();
    assert_eq!(topo.txt_at(topo.master_addr(), &zone), vec![value.clone()]);

    let mut seen = Vec::new();
    for (i, sec) in topo.secondary_addrs().into_iter().enumerate() {
        wait_for(
            &format!("dns{} to serve the TXT", i + 1),
            Duration::from_secs(20),
            || topo.txt_at(sec, &zone).contains(&value),
        );
        seen.push(format!("dns{}={} ms", i + 1, t0.elapsed().as_millis()));
    }
    eprintln!("UPDATE took {update_ms} ms; visible on {}", seen.join(" "));

    // Commands see /etc/resolv.conf → the client resolver, which resolves the parent's host records.
    let mut getent = topo.command("getent");
    getent.args(["hosts", &topo.host_domain(1)]);
    let out = topo.run(&mut getent);
    assert_success("getent hosts via the namespace's resolv.conf", &out);
    assert!(
        output_text(&out).starts_with("127.0.0.1"),
        "{}",
        output_text(&out)
    );

    // The client resolver follows the parent's CNAME alias into host1's zone.
    let via_alias = topo.dig(
        topo.resolver_addr(),
        &[&challenge_zone(&domain("alias")), "TXT"],
    );
    assert!(
        via_alias.contains(&value),
        "CNAME alias did not lead to host1's TXT: {via_alias}"
    );

    let out = topo.delete_txt(&zone, &value);
    assert_success("nsupdate delete", &out);
    for sec in topo.secondary_addrs() {
        wait_for("the TXT to disappear", Duration::from_secs(20), || {
            topo.txt_at(sec, &zone).is_empty()
        });
    }

    // A zone granted to another key refuses renewd's key, and accepts its own.
    let locked = challenge_zone(&domain("locked"));
    let refused = topo.add_txt(&locked, "nope");
    assert!(
        !refused.status.success(),
        "update of {locked} with acme-update must fail"
    );
    assert!(
        output_text(&refused).contains("REFUSED"),
        "{}",
        output_text(&refused)
    );
    let own = topo.nsupdate(
        &topo.other_tsig_key_file(),
        &format!(
            "server 127.0.0.12 53\nzone {locked}\nupdate add {locked}. 60 IN TXT \"yes\"\nsend\n"
        ),
    );
    assert_success("nsupdate with the granted key", &own);

    // A stopped secondary misses updates and catches up when it starts again.
    topo.stop_secondary(3);
    let zone2 = challenge_zone(&topo.host_domain(2));
    assert_success(
        "nsupdate add host2",
        &topo.add_txt(&zone2, "while-dns3-down"),
    );
    let dns3 = topo.secondary_addrs()[2];
    wait_for("dns1 to serve host2's TXT", Duration::from_secs(20), || {
        topo.txt_at(topo.secondary_addrs()[0], &zone2)
            .contains(&"while-dns3-down".to_string())
    });
    assert!(
        topo.txt_at(dns3, &zone2).is_empty(),
        "dns3 is down and must not answer"
    );
    topo.start_secondary(3);
    assert!(
        topo.txt_at(dns3, &zone2).is_empty(),
        "a restarted BIND secondary serves its old copy"
    );
    topo.refresh_secondary(3);
    topo.wait_secondaries_synced();
    assert_eq!(
        topo.txt_at(dns3, &zone2),
        vec!["while-dns3-down".to_string()]
    );

    // Pebble: ACME directory with EAB required, and an issuing chain to verify against.
    let dir: serde_json::Value =
        serde_json::from_str(&topo.curl(&topo.acme_directory_url()).expect("directory"))
            .expect("directory JSON");
    assert_eq!(
        dir["meta"]["externalAccountRequired"],
        serde_json::Value::Bool(true),
        "{dir}"
    );
    let roots = topo.issuing_roots();
    assert_eq!(pem_cert_count(&roots.root), 1);
    verify_chain(&roots.root, &roots.root, &roots.intermediate)
        .expect("intermediate chains to root");
}

#[test]
fn two_topologies_run_side_by_side() {
    let fast = || TopologyOptions {
        n_hosts: 1,
        notify_delay: Some(0),
        ..TopologyOptions::default()
    };
    // Start one on a helper thread to show servers survive the thread that started them.
    let b = std::thread::spawn(move || Topology::start(fast()))
        .join()
        .expect("start b");
    let a = Topology::start(fast());
    assert_ne!(a.dir(), b.dir());
    for t in [&a, &b] {
        for s in [Server::Master, Server::Pebble, Server::Secondary(1)] {
            let pid = t.pid(s).expect("running");
            assert!(
                std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "{s:?} died"
            );
        }
    }

    // Same addresses, different worlds: a TXT added in A is not in B.
    let zone = challenge_zone(&a.host_domain(1));
    assert_success("nsupdate in a", &a.add_txt(&zone, "only-in-a"));
    assert_eq!(
        a.txt_at(a.master_addr(), &zone),
        vec!["only-in-a".to_string()]
    );
    assert!(b.txt_at(b.master_addr(), &zone).is_empty());

    // A's TSIG key means nothing to B's master.
    let out = b.nsupdate(
        &a.tsig_key_file(),
        &format!("server 127.0.0.12 53\nzone {zone}\nupdate add {zone}. 60 IN TXT \"x\"\nsend\n"),
    );
    assert!(
        !out.status.success(),
        "B accepted A's key: {}",
        output_text(&out)
    );

    // Each Pebble has its own TLS CA: B's Pebble does not verify with A's CA.
    let mut cmd = b.command("curl");
    cmd.args(["-fsS", "--max-time", "5", "--cacert"])
        .arg(a.tls_ca_pem_path())
        .arg(b.acme_directory_url());
    let out = b.run(&mut cmd);
    assert!(!out.status.success(), "B's Pebble verified with A's CA");
    assert!(b.curl(&b.acme_directory_url()).is_ok());
    assert_ne!(a.eab_hmac_b64url(), b.eab_hmac_b64url());
}
