//! The second CA of the harness (acme2certifier, tests/support/a2c.rs) and what renewd does against it:
//! EAB registration, dns-01 issuance, and ARI (RFC 9773) following a real server's renewalInfo: an open
//! window, a future window, its Retry-After. acme2certifier accepts `replaces` without echoing it, so a
//! renewal against it costs renewd one extra newOrder (its fallback), which is tested too.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime};

use crate::support::a2c::{SecondCa, SecondCaOptions, A2C_PORT};
use crate::support::ari::certificate_id;
use crate::support::proc::poll_until;
use crate::support::renewd::{json_time, log_text, stop_daemon, Renewd, Run};
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

/// `t` without its sub-second part (RFC 3339 times here have whole seconds).
fn whole(t: SystemTime) -> SystemTime {
    humantime::parse_rfc3339(&humantime::format_rfc3339_seconds(t).to_string()).unwrap()
}

/// The server's own answer for a certificate: (suggestedWindow start, end, Retry-After header), asked
/// with curl inside the namespace.
fn server_window(topo: &Topology, id: &str) -> (SystemTime, SystemTime, String) {
    let url = format!("https://127.0.0.1:{A2C_PORT}/acme/renewal-info/{id}");
    let mut cmd = topo.command("curl");
    cmd.args(["-fsS", "-i", "--max-time", "5", "--cacert"])
        .arg(topo.tls_ca_pem_path())
        .arg(&url);
    let out = topo.run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl {url}: {text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers, then a body");
    let retry_after = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("retry-after")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Retry-After in\n{head}"));
    let v: serde_json::Value = serde_json::from_str(body).expect("renewalInfo JSON");
    let w = &v["suggestedWindow"];
    (json_time(&w["start"]), json_time(&w["end"]), retry_after)
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

/// (a) The window is open already (acme2certifier restarted with `renewalthreshold_pctg: 0`: the window
/// starts at issuance): `renewd renew` renews now. Its newOrder names the certificate it replaces;
/// acme2certifier takes the order without echoing `replaces` (RFC 9773 §5 says it must), so renewd orders
/// once more without it: one extra newOrder, a warning that says what the CA did, and the renewal goes
/// through.
#[test]
fn ari_open_window_on_the_second_ca_renews_at_the_cost_of_one_extra_new_order() {
    let topo = topology();
    let mut ca = SecondCa::start(&topo, SecondCaOptions::default());
    let r = ca.renewd("30s", &host1());
    let first = issue(&r, &ca);
    let (start, _, _) = server_window(&topo, &first);
    assert!(
        start > SystemTime::now() + Duration::from_secs(70 * 86400),
        "by default the window opens at 85 % of 90 days"
    );

    ca.restart_with(SecondCaOptions {
        renewal_threshold_pct: 0.0,
        ..SecondCaOptions::default()
    });
    let (start, end, _) = server_window(&topo, &first);
    assert!(
        start <= SystemTime::now() && end > SystemTime::now(),
        "the window is open now"
    );
    let before = ca.requests().len();
    let run = renew(&r);
    let second = certificate_id(&r.live("host1", "cert.pem"));
    assert_ne!(second, first);
    verify_chain(
        &ca.roots().root,
        &r.live("host1", "chain.pem"),
        &r.live("host1", "cert.pem"),
    )
    .unwrap();

    // What went over the wire during the renewal: the window first, then two newOrders.
    let during: Vec<_> = ca.requests()[before..].to_vec();
    let renewal_info = format!("/acme/renewal-info/{first}");
    assert!(
        during
            .iter()
            .any(|q| q.method == "GET" && q.path == renewal_info && q.status == 200),
        "renewd asked for the window: {during:?}"
    );
    let orders: Vec<_> = during
        .iter()
        .filter(|q| q.method == "POST" && q.path == "/acme/neworders")
        .collect();
    assert_eq!(orders.len(), 2, "exactly one extra newOrder: {during:?}");
    assert!(orders.iter().all(|q| q.status == 201), "{orders:?}");
    let payloads = ca.new_order_payloads();
    assert_eq!(payloads.len(), 3, "{payloads:?}");
    assert_eq!(
        payloads[1]["replaces"].as_str(),
        Some(first.as_str()),
        "the renewal's first newOrder names the certificate it replaces: {}",
        payloads[1]
    );
    assert!(
        payloads[2].get("replaces").is_none(),
        "the second one does not: {}",
        payloads[2]
    );
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains("ordering again without `replaces`"))
        .unwrap_or_else(|| panic!("no warning about `replaces`:\n{}", run.stderr));
    assert!(
        warning.contains("WARN") && warning.contains(&first),
        "the warning names the certificate: {warning}"
    );
    assert!(
        warning.contains("the CA accepted the order but did not echo `replaces`"),
        "the warning says what the CA did: {warning}"
    );
    eprintln!("{warning}");
}

/// The daemon against the second CA: it asks for the live certificate's window, and once it has it
/// status.json holds the window, the moment chosen in it and the next fetch. Returns host1's entry.
fn daemon_with_window(r: &Renewd, log: &Path) -> (Child, serde_json::Value) {
    let daemon = r.spawn_logged(&["run"], log, &[]);
    let host1 = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let s = r.status_json();
        let c = &s["certificates"]["host1"];
        c["ari_window"].get("chosen").is_some().then(|| c.clone())
    })
    .unwrap_or_else(|| panic!("no ARI window in status.json\n{}", log_text(log)));
    (daemon, host1)
}

/// (b) The window lies in the future (acme2certifier's default: from 85 % of the lifetime, here one day
/// long): the daemon does not renew, and `renewd status --json` shows the renewal planned for a moment
/// inside the server's window, for that reason.
#[test]
fn ari_future_window_on_the_second_ca_is_not_renewed_and_planned_inside_it() {
    let topo = topology();
    let ca = SecondCa::start(
        &topo,
        SecondCaOptions {
            renewal_window: Some(Duration::from_secs(86400)),
            ..SecondCaOptions::default()
        },
    );
    let r = ca.renewd("30s", &host1());
    let first = issue(&r, &ca);
    let (start, end, _) = server_window(&topo, &first);
    assert_eq!(
        end.duration_since(start).unwrap(),
        Duration::from_secs(86400)
    );

    let log = topo.dir().join("daemon.log");
    let (daemon, host1) = daemon_with_window(&r, &log);
    assert_eq!(json_time(&host1["ari_window"]["start"]), start, "{host1}");
    assert_eq!(json_time(&host1["ari_window"]["end"]), end, "{host1}");

    let status = r.run(&["status", "--json"]);
    status.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let row = report["certificates"]
        .as_array()
        .and_then(|rows| rows.iter().find(|c| c["name"] == "host1"))
        .unwrap_or_else(|| panic!("no host1 in {report}"))
        .clone();
    let next = json_time(&row["next_renewal"]);
    assert!(
        next >= start && next <= end,
        "planned {} outside the CA's window {} .. {}",
        row["next_renewal"],
        humantime::format_rfc3339(start),
        humantime::format_rfc3339(end)
    );
    assert_eq!(next, json_time(&host1["ari_window"]["chosen"]), "{host1}");
    assert!(
        row["next_reason"]
            .as_str()
            .is_some_and(|s| s.contains("renewal window")),
        "{row}"
    );
    stop_daemon(daemon, &log);
    assert_eq!(certificate_id(&r.live("host1", "cert.pem")), first);
    assert_eq!(ca.new_order_count(), 1, "no order placed");
}

/// (c) The server's `Retry-After` on renewalInfo (acme2certifier `retry_after_timeout`, here 2 h) sets
/// when the daemon asks for the window again: not before, and one request until then.
#[test]
fn ari_retry_after_of_the_second_ca_sets_the_next_window_fetch() {
    let topo = topology();
    let retry = Duration::from_secs(7200);
    let ca = SecondCa::start(
        &topo,
        SecondCaOptions {
            retry_after: retry,
            ..SecondCaOptions::default()
        },
    );
    let r = ca.renewd("30s", &host1());
    let first = issue(&r, &ca);
    let (_, _, header) = server_window(&topo, &first);
    assert_eq!(header, "7200", "the server's Retry-After");
    let asked_before = ca.renewal_info_requests().len();

    let log = topo.dir().join("daemon.log");
    let t0 = SystemTime::now();
    let (daemon, host1) = daemon_with_window(&r, &log);
    let t1 = SystemTime::now();
    let refetch = json_time(&host1["ari_window"]["refetch_at"]);
    assert!(
        refetch >= whole(t0 + retry) && refetch <= t1 + retry,
        "next fetch {} is not the server's Retry-After (2 h) after the fetch: {host1}",
        host1["ari_window"]["refetch_at"]
    );
    stop_daemon(daemon, &log);
    let asked: Vec<String> = ca.renewal_info_requests()[asked_before..].to_vec();
    assert_eq!(
        asked,
        vec![first],
        "one renewalInfo request until the Retry-After"
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

/// After (a), the daemon leaves `replaces` out of the account's later orders: with two certificates whose
/// windows have passed, only the first newOrder carries `replaces`, and the warning comes once. Every
/// new certificate's window has passed too, with this configuration: the daemon plans the next renewal
/// an hour after the last one instead of renewing in a loop.
fn replaces_left_out_after_the_first_order(workers: u32) {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        ..Default::default()
    });
    let mut ca = SecondCa::start(&topo, SecondCaOptions::default());
    let specs = [
        SpecFixture::new("host1", &[&domain("host1")]),
        SpecFixture::new("host2", &[&domain("host2")]),
    ];
    let r = ca.renewd("30s", &specs);
    let config = std::fs::read_to_string(r.config()).unwrap();
    std::fs::write(
        r.config(),
        config.replace("workers: 4", &format!("workers: {workers}")),
    )
    .unwrap();
    r.run(&["renew"]).expect_code(0);
    let live = |name: &str| certificate_id(&r.live(name, "cert.pem"));
    let before = [live("host1"), live("host2")];
    assert_eq!(ca.new_order_count(), 2);

    // The daemon picks its moment at random inside the window: one second from issuance, so it is past.
    ca.restart_with(SecondCaOptions {
        renewal_threshold_pct: 0.0,
        renewal_window: Some(Duration::from_secs(1)),
        ..SecondCaOptions::default()
    });
    let log = topo.dir().join("daemon.log");
    let daemon = r.spawn_logged(&["run"], &log, &[]);
    poll_until(Duration::from_secs(40), Duration::from_millis(50), || {
        (live("host1") != before[0] && live("host2") != before[1]).then_some(())
    })
    .unwrap_or_else(|| panic!("not both renewed\n{}", log_text(&log)));
    let status = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let v = r.status_json();
        ["host1", "host2"]
            .iter()
            .all(|n| v["certificates"][n]["history"]["last_success"].is_string())
            .then_some(v)
    })
    .unwrap_or_else(|| panic!("no success recorded\n{}", log_text(&log)));
    for n in ["host1", "host2"] {
        let next = json_time(&status["certificates"][n]["next_renewal"]);
        assert!(
            next >= SystemTime::now() + Duration::from_secs(3500),
            "{n}: a window that has always passed must not renew in a loop: {}",
            status["certificates"][n]
        );
    }
    stop_daemon(daemon, &log);

    let orders = ca.new_order_payloads()[2..].to_vec();
    let with_replaces: Vec<_> = orders
        .iter()
        .filter(|p| p.get("replaces").is_some())
        .collect();
    assert_eq!(
        with_replaces.len(),
        1,
        "only the first order names the certificate it replaces: {orders:?}\n{}",
        log_text(&log)
    );
    assert!(
        before
            .iter()
            .any(|id| with_replaces[0]["replaces"].as_str() == Some(id)),
        "it names a certificate issued before: {}",
        with_replaces[0]
    );
    assert_eq!(
        log_text(&log).matches("did not echo `replaces`").count(),
        1,
        "{}",
        log_text(&log)
    );
    let renewed = log_text(&log).matches(" renewed host").count();
    eprintln!("{} newOrders for {renewed} renewals", orders.len());
}

/// [`replaces_left_out_after_the_first_order`] with renewals side by side (the fixtures' `workers: 4`):
/// the first order with `replaces` goes alone, the others wait for the CA's answer to it.
#[test]
fn ari_a_ca_that_ignores_replaces_costs_one_extra_new_order_per_account_with_parallel_renewals() {
    replaces_left_out_after_the_first_order(4);
}

/// Issue 14.3: asking for a renewal window needs no account. With the stored account gone (a fresh
/// host, or a single-use EAB key already spent), `renewd renew` with nothing due asks the second CA for
/// the window with a plain GET and registers nothing: no newAccount POST, no account file.
#[test]
fn renew_with_nothing_due_asks_for_the_window_without_registering_an_account() {
    let topo = topology();
    let ca = SecondCa::start(&topo, SecondCaOptions::default());
    let r = ca.renewd("30s", &host1());
    let id = issue(&r, &ca);
    assert_eq!(ca.post_payloads("/acme/newaccount").len(), 1);
    let account = r.state().join("accounts").join("a2c.json");
    assert!(account.exists(), "issuing stored the account");
    std::fs::remove_file(&account).unwrap();

    let before = ca.requests().len();
    let run = r.run(&["renew"]);
    run.expect_code(0);
    assert!(
        run.line("host1").contains("not due") && run.line("host1").contains("renewal window"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let during: Vec<_> = ca.requests()[before..].to_vec();
    let renewal_info = format!("/acme/renewal-info/{id}");
    assert!(
        during
            .iter()
            .any(|q| q.method == "GET" && q.path == renewal_info && q.status == 200),
        "renewd asked for the window: {during:?}"
    );
    let posts: Vec<_> = during.iter().filter(|q| q.method == "POST").collect();
    assert!(
        posts.is_empty(),
        "no POST at all, so no newAccount: {during:?}"
    );
    assert_eq!(
        ca.post_payloads("/acme/newaccount").len(),
        1,
        "still the one registration of the issuance"
    );
    assert!(
        !account.exists(),
        "no account was registered: {}",
        account.display()
    );
}

/// Issue 14.4, seen from the CA: `renewd renew --dry-run` against the second CA orders, has every name
/// validated, then POSTs `{"status": "deactivated"}` to each of the order's authorizations, and never
/// finalizes: no finalize POST, no certificate download, no certificate in the CA's database.
/// acme2certifier ignores deactivation (its answer, and its database, still say `valid`), and renewd
/// says so instead of counting them as deactivated.
#[test]
fn dry_run_on_the_second_ca_asks_to_deactivate_every_authorization_and_finalizes_nothing() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        ..Default::default()
    });
    let ca = SecondCa::start(&topo, SecondCaOptions::default());
    let names = [domain("host1"), domain("host2")];
    let r = ca.renewd("30s", &[SpecFixture::new("both", &[&names[0], &names[1]])]);
    r.run(&["renew"]).expect_code(0);
    let id = certificate_id(&r.live("both", "cert.pem"));
    let issued = || {
        ca.query("SELECT count(*) FROM certificate WHERE cert IS NOT NULL AND cert != ''")[0][0]
            .clone()
    };
    assert_eq!(issued(), "1", "the CA's database has the first certificate");
    let posts_before = ca.posts().len();

    let run = r.run(&["renew", "--dry-run"]);
    run.expect_code(0);
    assert!(
        run.line("both").contains(
            "would renew: the CA validated all 2 name(s) (dns-01"
        ) && run.line("both").contains(
            "0 authorization(s) deactivated (2 left valid by the CA, which ignored the request)"
        ),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        run.stderr
            .matches("the CA did not deactivate the authorization for")
            .count(),
        2,
        "{}",
        run.stderr
    );

    let posts: Vec<_> = ca.posts()[posts_before..].to_vec();
    let to = |prefix: &str| -> Vec<&(String, serde_json::Value)> {
        posts
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .collect()
    };
    assert_eq!(to("/acme/neworders").len(), 1, "one order: {posts:?}");
    assert!(
        !to("/acme/chall/").is_empty(),
        "the challenges were answered: {posts:?}"
    );
    let mut deactivated: Vec<&str> = to("/acme/authz/")
        .into_iter()
        .filter(|(_, payload)| payload["status"] == "deactivated")
        .map(|(p, _)| p.trim_start_matches("/acme/authz/"))
        .collect();
    deactivated.sort_unstable();
    deactivated.dedup();
    assert_eq!(
        deactivated.len(),
        2,
        "one deactivation request per authorization (one per name): {posts:?}"
    );
    // The CA's own record of those authorizations: still valid (it ignores deactivation).
    for authz in &deactivated {
        let status = ca.query(&format!(
            "SELECT s.name FROM \"authorization\" a JOIN status s ON a.status_id = s.id \
             WHERE a.name = '{authz}'"
        ));
        assert_eq!(status, vec![vec!["valid".to_string()]], "{authz}");
    }
    assert!(
        posts.iter().all(|(p, _)| !p.ends_with("/finalize")),
        "no finalize: {posts:?}"
    );
    assert!(to("/acme/cert").is_empty(), "no download: {posts:?}");
    assert_eq!(issued(), "1", "the CA issued nothing");
    assert_eq!(certificate_id(&r.live("both", "cert.pem")), id);
}
