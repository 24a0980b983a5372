//! ARI (RFC 9773) and Retry-After in `renewd run`, against real Pebble + BIND with the local stand-in of
//! tests/support/ari.rs in front (hence their names): for what no real CA of the harness does. The real
//! server's windows, Retry-After and its `replaces` that is not echoed are tested against acme2certifier
//! in second_ca.rs; here: a CA that echoes `replaces` (one newOrder), `alreadyReplaced`, an injected 429,
//! and a window moved earlier for one certificate. Everything else (orders, challenges, DNS) is the real
//! deployment.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::support::ari::{certificate_id, AriStandIn};
use crate::support::proc::poll_until;
use crate::support::renewd::{json_time, log_text, stop_daemon, Renewd};
use crate::support::topology::{domain, Topology, TopologyOptions};
use crate::support::SpecFixture;

const RENEW_TIMEOUT: Duration = Duration::from_secs(40);

/// One topology, the stand-in in front of its Pebble, and a renewd config for `host1` pointing at it.
fn setup() -> (Topology, AriStandIn) {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let ari = AriStandIn::start(&topo);
    (topo, ari)
}

fn renewd<'t>(topo: &'t Topology, ari: &AriStandIn) -> Renewd<'t> {
    let r = Renewd::new(
        topo,
        "30s",
        &[SpecFixture::new("host1", &[&domain("host1")])],
    );
    ari.point_config_here(topo, &r.config());
    r
}

/// Issue `host1` with `renewd renew` (through the stand-in, so the account is the daemon's) and return
/// its ARI certificate id.
fn issue_with_the_cli(r: &Renewd, ari: &AriStandIn) -> String {
    r.run(&["renew"]).expect_code(0);
    let payloads = ari.new_order_payloads();
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    assert!(
        payloads[0].get("replaces").is_none(),
        "a first certificate replaces nothing: {}",
        payloads[0]
    );
    certificate_id(&r.live("host1", "cert.pem"))
}

/// Wait until the live certificate's id is no longer `old`; returns the new id.
fn wait_renewed(r: &Renewd, old: &str, log: &Path) -> String {
    poll_until(RENEW_TIMEOUT, Duration::from_millis(50), || {
        let id = certificate_id(&r.live("host1", "cert.pem"));
        (id != old).then_some(id)
    })
    .unwrap_or_else(|| panic!("host1 was not renewed; daemon log:\n{}", log_text(log)))
}

/// The CA's window opened an hour ago and closes in a few seconds: the daemon asks for the live
/// certificate's window at start, renews at once, and the new order names the certificate it replaces.
/// Then it asks for the new certificate's window.
#[test]
fn ari_window_in_the_past_renews_now_with_replaces_with_a_local_renewal_info_stand_in() {
    let (topo, ari) = setup();
    let r = renewd(&topo, &ari);
    let first = issue_with_the_cli(&r, &ari);
    let now = SystemTime::now();
    ari.set_window_for(
        &first,
        now - Duration::from_secs(3600),
        now + Duration::from_secs(3),
    );
    // Any other certificate (the next one): far in the future.
    ari.set_window(
        now + Duration::from_secs(40 * 86400),
        now + Duration::from_secs(41 * 86400),
    );

    let log = topo.dir().join("daemon.log");
    let t0 = Instant::now();
    let daemon = r.spawn_logged(&["run"], &log, &[]);
    let second = wait_renewed(&r, &first, &log);
    let took = t0.elapsed();

    let asked = ari.renewal_info_requests();
    assert_eq!(
        asked.first(),
        Some(&first),
        "the daemon asks for the live certificate's window first: {asked:?}"
    );
    let payloads = ari.new_order_payloads();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert_eq!(
        payloads[1]["replaces"].as_str(),
        Some(first.as_str()),
        "the renewal's newOrder names the certificate it replaces: {}",
        payloads[1]
    );
    let pebble = ari.pebble_order_answers();
    eprintln!(
        "renewed {took:?} after start; Pebble's answer to the order with replaces: status {}, replaces {}",
        pebble[1]["status"], pebble[1]["replaces"]
    );

    // A new certificate: its own window is asked for (and it is far away, so nothing more happens).
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        ari.renewal_info_requests().contains(&second).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no renewalInfo request for the new certificate {second}: {:?}\n{}",
            ari.renewal_info_requests(),
            log_text(&log)
        )
    });
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        r.status_json()["certificates"]["host1"]["ari_window"]
            .get("chosen")
            .is_some()
            .then_some(())
    })
    .expect("the new certificate's window is in status.json");
    stop_daemon(daemon, &log);
    assert_eq!(ari.new_order_payloads().len(), 2, "renewed once only");
}

/// The CA answers `409 alreadyReplaced` to the order naming the live certificate: the daemon orders once
/// more without `replaces`, and renews.
#[test]
fn ari_already_replaced_orders_again_without_replaces_with_a_local_renewal_info_stand_in() {
    let (topo, ari) = setup();
    let r = renewd(&topo, &ari);
    let first = issue_with_the_cli(&r, &ari);
    let now = SystemTime::now();
    ari.set_window_for(&first, now - Duration::from_secs(7200), now);
    ari.set_window(
        now + Duration::from_secs(40 * 86400),
        now + Duration::from_secs(41 * 86400),
    );
    ari.reject_replaces(true);

    let log = topo.dir().join("daemon.log");
    let daemon = r.spawn_logged(&["run"], &log, &[]);
    wait_renewed(&r, &first, &log);
    stop_daemon(daemon, &log);
    let payloads = ari.new_order_payloads();
    assert_eq!(payloads.len(), 3, "{payloads:?}");
    assert_eq!(payloads[1]["replaces"].as_str(), Some(first.as_str()));
    assert!(payloads[2].get("replaces").is_none(), "{}", payloads[2]);
    assert!(
        log_text(&log).contains("alreadyReplaced"),
        "the refusal is logged:\n{}",
        log_text(&log)
    );
}

/// The CA answers newOrder with 429 and `Retry-After: 300`: status.json shows a rate-limited failure
/// whose next try is not before the CA's moment (the backoff alone would say 5 minutes after the first
/// failure too, so a longer Retry-After is used to tell them apart).
#[test]
fn retry_after_on_new_order_is_honoured_injected_by_a_stand_in() {
    let (topo, ari) = setup();
    let r = renewd(&topo, &ari);
    ari.fail_new_orders(429, "1200");

    let log = topo.dir().join("daemon.log");
    let t0 = SystemTime::now();
    let daemon = r.spawn_logged(&["run"], &log, &[]);
    let host1 = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let s = r.status_json();
        let c = &s["certificates"]["host1"];
        (c["last_result"] == "failed").then(|| c.clone())
    })
    .unwrap_or_else(|| panic!("no failure in status.json\n{}", log_text(&log)));
    let t1 = SystemTime::now();
    stop_daemon(daemon, &log);

    let failure = &host1["history"]["last_failure"];
    assert_eq!(failure["kind"], "RateLimited", "{host1}");
    let asked = json_time(&failure["retry_after"]);
    assert!(
        asked >= t0 + Duration::from_secs(1200) && asked <= t1 + Duration::from_secs(1200),
        "Retry-After 1200 s from the answer: {host1}"
    );
    let next = json_time(&host1["next_renewal"]);
    assert!(
        next + Duration::from_secs(1) >= asked,
        "next try {} before the CA's Retry-After {}: {host1}",
        host1["next_renewal"],
        failure["retry_after"]
    );
    assert!(
        host1["next_reason"]
            .as_str()
            .is_some_and(|s| s.contains("as the CA asked")),
        "{host1}"
    );
    assert!(
        host1["last_error"]
            .as_str()
            .is_some_and(|s| s.contains("rateLimited") && s.contains("retry after")),
        "{host1}"
    );
    assert_eq!(ari.new_order_payloads().len(), 1, "one attempt only");
}

/// `renewd renew` without `--force` (the cron-style use, no daemon) asks the CA too: a window that opens
/// before the lifetime rule's due time is reported as the due time, and an open window renews now,
/// naming the replaced certificate.
#[test]
fn renew_cli_follows_the_ca_renewal_window_with_a_local_renewal_info_stand_in() {
    let (topo, ari) = setup();
    let r = renewd(&topo, &ari);
    let first = issue_with_the_cli(&r, &ari);
    let now = SystemTime::now();
    let start = now + Duration::from_secs(20 * 86400);
    ari.set_window(start, start + Duration::from_secs(86400));
    let run = r.run(&["renew"]);
    run.expect_code(0);
    let line = run.line("host1");
    let want = format!(
        "renewal due {} (in 19d 23h, the CA's renewal window)",
        humantime::format_rfc3339_seconds(start)
    );
    assert!(line.contains("not due") && line.contains(&want), "{line}");
    assert_eq!(ari.renewal_info_requests(), vec![first.clone()]);
    assert_eq!(ari.new_order_payloads().len(), 1, "no order placed");

    // The CA opens the window now (a revocation ahead): renewed at once, replacing the live one.
    ari.set_window_for(
        &first,
        now - Duration::from_secs(3600),
        now + Duration::from_secs(3600),
    );
    let run = r.run(&["renew"]);
    run.expect_code(0);
    assert!(
        run.line("host1").contains("renewed, serial"),
        "{}",
        run.stdout
    );
    let payloads = ari.new_order_payloads();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert_eq!(payloads[1]["replaces"].as_str(), Some(first.as_str()));
    let second = certificate_id(&r.live("host1", "cert.pem"));
    assert_ne!(second, first);

    // `ari: false` for a CA whose ARI misbehaves: its window is neither asked for nor followed, and no
    // order names the certificate it replaces.
    ari.set_window_for(
        &second,
        now - Duration::from_secs(3600),
        now + Duration::from_secs(3600),
    );
    let config = std::fs::read_to_string(r.config()).unwrap();
    let with_ari_off = config.replacen("\n    trust:", "\n    ari: false\n    trust:", 1);
    assert_ne!(with_ari_off, config);
    std::fs::write(r.config(), with_ari_off).unwrap();
    let asked = ari.renewal_info_requests().len();
    let run = r.run(&["renew"]);
    run.expect_code(0);
    assert!(
        run.line("host1").contains("not due") && !run.line("host1").contains("renewal window"),
        "{}",
        run.stdout
    );
    assert_eq!(
        ari.renewal_info_requests().len(),
        asked,
        "no window asked for"
    );
    r.run(&["renew", "--force"]).expect_code(0);
    let payloads = ari.new_order_payloads();
    assert_eq!(payloads.len(), 3, "{payloads:?}");
    assert!(payloads[2].get("replaces").is_none(), "{}", payloads[2]);
}
