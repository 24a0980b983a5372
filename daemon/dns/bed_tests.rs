//! Real-server checks against the reference BIND deployment (a development aid; the project's
//! harness under tests/ carries the official integration tests).
//!
//! Bring a bed up, build the tests outside it, run them inside its network namespace:
//!
//! ```text
//! cargo test --lib --no-run            # prints target/debug/deps/renewd-XXXX
//! RENEWD_DNS_BED=/tmp/dnsbed/bench.env bench-exec.sh /tmp/dnsbed \
//!     target/debug/deps/renewd-XXXX dns::bed_tests --ignored --nocapture --test-threads 1
//! ```
//!
//! `bed_lagging_secondary_times_out` expects one secondary to be stopped first and its address in
//! `RENEWD_DNS_BED_DOWN` (e.g. `127.0.0.15`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::Rng;

use super::*;
use crate::config::settings::{DnsServerSettings, Secret, TsigAlgorithm, TsigKey};

struct Bed {
    env: HashMap<String, String>,
}

impl Bed {
    fn load() -> Bed {
        let path = std::env::var("RENEWD_DNS_BED")
            .expect("set RENEWD_DNS_BED to the bed's bench.env (see the module docs)");
        let text = std::fs::read_to_string(&path).expect("read bench.env");
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        Bed { env }
    }
    fn get(&self, k: &str) -> &str {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing from bench.env"))
    }
    fn addr(&self, k: &str) -> SocketAddr {
        format!("{}:53", self.get(k)).parse().unwrap()
    }
    fn resolver(&self) -> Resolver {
        Resolver::new(vec![self.addr("CLIENT_RESOLVER")])
    }
    fn settings(&self, key: Option<&str>, secret: Option<&[u8]>) -> DnsServerSettings {
        let real = base64::engine::general_purpose::STANDARD
            .decode(self.get("TSIG_SECRET"))
            .unwrap();
        DnsServerSettings {
            name: "acme-master".into(),
            address: self.get("MASTER").into(),
            tsig: Some(TsigKey {
                name: key.unwrap_or(self.get("TSIG_KEY_NAME")).into(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: Secret::new(secret.map(<[u8]>::to_vec).unwrap_or(real)),
            }),
            tsig_key_file: PathBuf::from("/etc/renewd/secrets/acme-update.key"),
            ttl: 60,
        }
    }
    async fn updater(&self, key: Option<&str>, secret: Option<&[u8]>) -> Updater {
        Updater::new(&self.settings(key, secret), &self.resolver())
            .await
            .unwrap()
    }
    fn zone(&self, host: &str) -> String {
        format!("_acme-challenge.{host}.{}", self.get("DOMAIN"))
    }
}

fn token() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(43)
        .map(char::from)
        .collect()
}

async fn wait_until_served(
    servers: &[AuthServer],
    owner: &str,
    pred: impl Fn(&[String]) -> bool,
) -> Duration {
    let t0 = Instant::now();
    loop {
        let mut all = true;
        for s in servers {
            let v = query_txt(s.addr, owner).await.unwrap_or_default();
            all &= pred(&v);
        }
        if all {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "servers never converged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_discovery() {
    let bed = Bed::load();
    let r = bed.resolver();
    let host1 = format!("host1.{}", bed.get("DOMAIN"));
    let t = find_target(&r, &host1, None).await.unwrap();
    println!("find_target({host1}) = {t:?}");
    assert_eq!(t.zone, bed.zone("host1"));
    assert_eq!(t.owner, bed.zone("host1"));
    let w = find_target(&r, &format!("*.host2.{}", bed.get("DOMAIN")), None)
        .await
        .unwrap();
    assert_eq!(w.zone, bed.zone("host2"));
    assert_eq!(w.challenge_name, bed.zone("host2"));
    // A name below the dedicated zone finds that zone through the negative answer's SOA.
    let sub = find_target(&r, &format!("a.b.host3.{}", bed.get("DOMAIN")), None)
        .await
        .unwrap();
    println!("find_target(a.b.host3) = {sub:?}");
    assert_eq!(sub.zone, bed.get("DOMAIN"));

    let servers = authoritative_servers(&r, &t.zone, &[]).await.unwrap();
    println!("authoritative_servers = {servers:?}");
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.ip().to_string()).collect();
    let want: Vec<String> = bed
        .get("SECONDARIES")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(addrs, want);
    let explicit = authoritative_servers(
        &r,
        &t.zone,
        &["127.0.0.13".into(), "dns2.example.test:53".into()],
    )
    .await
    .unwrap();
    assert_eq!(explicit.len(), 2);
    let ips = r.lookup_ip("acme-master.example.test").await.unwrap();
    assert_eq!(ips, vec![bed.addr("MASTER").ip()]);
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_wildcard_and_apex_values_coexist() {
    let bed = Bed::load();
    let r = bed.resolver();
    let u = bed.updater(None, None).await;
    let apex = find_target(&r, &format!("host1.{}", bed.get("DOMAIN")), None)
        .await
        .unwrap();
    let wild = find_target(&r, &format!("*.host1.{}", bed.get("DOMAIN")), None)
        .await
        .unwrap();
    assert_eq!(apex.owner, wild.owner);
    let servers = authoritative_servers(&r, &apex.zone, &[]).await.unwrap();
    let (v1, v2) = (token(), token());

    let t0 = Instant::now();
    u.add_txt(&apex.zone, &apex.owner, &v1).await.unwrap();
    let rt1 = t0.elapsed();
    let t1 = Instant::now();
    u.add_txt(&wild.zone, &wild.owner, &v2).await.unwrap();
    let rt2 = t1.elapsed();
    println!(
        "UPDATE round trip: {} ms, {} ms",
        rt1.as_micros() as f64 / 1000.0,
        rt2.as_micros() as f64 / 1000.0
    );

    let values = vec![v1.clone(), v2.clone()];
    let p = wait_for_txt(&servers, &apex.owner, &values, Duration::from_secs(20))
        .await
        .unwrap();
    for (s, d) in &p.per_server {
        println!(
            "propagated (both values, from first add) to {} ({}) in {} ms",
            s.name,
            s.addr,
            d.as_millis()
        );
    }
    for s in &servers {
        let got = query_txt(s.addr, &apex.owner).await.unwrap();
        assert!(got.contains(&v1) && got.contains(&v2), "{s:?}: {got:?}");
        // The same through dig, as an administrator would look.
        let dig = std::process::Command::new("dig")
            .args([
                "+short",
                "+norecurse",
                &format!("@{}", s.addr.ip()),
                &apex.owner,
                "TXT",
            ])
            .output();
        if let Ok(out) = dig {
            let text = String::from_utf8_lossy(&out.stdout);
            println!(
                "dig @{} {} TXT:\n{}",
                s.addr.ip(),
                apex.owner,
                text.trim_end()
            );
            assert!(text.contains(&v1) && text.contains(&v2));
        }
    }

    // Delete one by rdata: the other stays everywhere.
    u.delete_txt(&apex.zone, &apex.owner, &v1).await.unwrap();
    let took = wait_until_served(&servers, &apex.owner, |v| {
        !v.contains(&v1) && v.contains(&v2)
    })
    .await;
    println!(
        "delete of one value visible on all servers after {} ms",
        took.as_millis()
    );
    // Deleting a value that is not there is success.
    u.delete_txt(&apex.zone, &apex.owner, &v1).await.unwrap();
    u.delete_txt(&apex.zone, &apex.owner, &v2).await.unwrap();
    wait_until_served(&servers, &apex.owner, |v| !v.contains(&v2)).await;
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_single_add_propagation_time() {
    let bed = Bed::load();
    let r = bed.resolver();
    let u = bed.updater(None, None).await;
    let zone = bed.zone("host2");
    let servers = authoritative_servers(&r, &zone, &[]).await.unwrap();
    // Let notify-delay from earlier updates pass.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let v = token();
    let t0 = Instant::now();
    u.add_txt(&zone, &zone, &v).await.unwrap();
    let rt = t0.elapsed();
    // Precise per-server visibility (10 ms polls), independent of wait_for_txt's backoff.
    let mut precise = tokio::task::JoinSet::new();
    for s in servers.clone() {
        let (zone, v) = (zone.clone(), v.clone());
        precise.spawn(async move {
            loop {
                if query_txt(s.addr, &zone)
                    .await
                    .unwrap_or_default()
                    .contains(&v)
                {
                    return (s, t0.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    while let Some(Ok((s, d))) = precise.join_next().await {
        println!(
            "visible on {} ({}) {} ms after sending the UPDATE (10 ms polls)",
            s.name,
            s.addr,
            d.as_millis()
        );
    }
    let p = wait_for_txt(
        &servers,
        &zone,
        std::slice::from_ref(&v),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    println!("UPDATE round trip {} ms", rt.as_micros() as f64 / 1000.0);
    for (s, d) in &p.per_server {
        println!(
            "propagated to {} ({}) in {} ms",
            s.name,
            s.addr,
            d.as_millis()
        );
    }
    u.delete_txt(&zone, &zone, &v).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_two_values_in_one_update() {
    let bed = Bed::load();
    let r = bed.resolver();
    let u = bed.updater(None, None).await;
    let zone = bed.zone("host3");
    let servers = authoritative_servers(&r, &zone, &[]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (v1, v2) = (token(), token());
    let t0 = Instant::now();
    u.add_txt_values(&zone, &zone, &[&v1, &v2]).await.unwrap();
    let rt = t0.elapsed();
    let values = vec![v1.clone(), v2.clone()];
    let p = wait_for_txt(&servers, &zone, &values, Duration::from_secs(20))
        .await
        .unwrap();
    println!(
        "one UPDATE with two values: round trip {} ms",
        rt.as_micros() as f64 / 1000.0
    );
    for (s, d) in &p.per_server {
        println!(
            "both values on {} ({}) after {} ms",
            s.name,
            s.addr,
            d.as_millis()
        );
    }
    u.delete_txt_values(&zone, &zone, &[&v1, &v2])
        .await
        .unwrap();
    wait_until_served(&servers, &zone, |v| !v.contains(&v1) && !v.contains(&v2)).await;
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_wrong_secret_is_badsig() {
    let bed = Bed::load();
    let u = bed
        .updater(None, Some(b"not the right secret at all!"))
        .await;
    let zone = bed.zone("host1");
    let e = u.add_txt(&zone, &zone, "x").await.unwrap_err();
    println!("{e}");
    assert!(matches!(e, DnsError::BadSig { .. }), "{e:?}");
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_wrong_key_name_is_badkey() {
    let bed = Bed::load();
    let u = bed.updater(Some("no-such-key"), None).await;
    let zone = bed.zone("host1");
    let e = u.add_txt(&zone, &zone, "x").await.unwrap_err();
    println!("{e}");
    assert!(matches!(e, DnsError::BadKey { .. }), "{e:?}");
    assert!(e.to_string().contains("`no-such-key`"));
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_clock_skew_is_badtime() {
    let bed = Bed::load();
    let mut u = bed.updater(None, None).await;
    u.set_clock_offset(-1000);
    let zone = bed.zone("host1");
    let e = u.add_txt(&zone, &zone, "x").await.unwrap_err();
    println!("{e}");
    match e {
        DnsError::BadTime {
            skew_secs: Some(s), ..
        } => assert!((998..=1002).contains(&s), "{s}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_sub_name_is_refused() {
    let bed = Bed::load();
    let u = bed.updater(None, None).await;
    let zone = bed.zone("host1");
    let e = u
        .add_txt(&zone, &format!("foo.{zone}"), "x")
        .await
        .unwrap_err();
    println!("{e}");
    assert!(matches!(e, DnsError::Refused { .. }), "{e:?}");
    // A zone the primary does not have.
    let e = u
        .add_txt("example.org", "_acme-challenge.example.org", "x")
        .await
        .unwrap_err();
    println!("{e}");
    assert!(
        matches!(e, DnsError::NotAuth { .. } | DnsError::Refused { .. }),
        "{e:?}"
    );
    // Owner outside the zone is caught before sending.
    let e = u
        .add_txt(&zone, "_acme-challenge.host2.example.test", "x")
        .await
        .unwrap_err();
    println!("{e}");
    assert!(matches!(e, DnsError::OwnerNotInZone { .. }), "{e:?}");
}

#[tokio::test]
#[ignore = "needs the BIND test bed (RENEWD_DNS_BED)"]
async fn bed_nothing_listening() {
    let bed = Bed::load();
    let u =
        Updater::with_addr(&bed.settings(None, None), "127.0.0.99:53".parse().unwrap()).unwrap();
    let zone = bed.zone("host1");
    let e = u.add_txt(&zone, &zone, "x").await.unwrap_err();
    println!("{e}");
    assert!(
        matches!(e, DnsError::Unreachable { .. } | DnsError::NoAnswer { .. }),
        "{e:?}"
    );
}

#[tokio::test]
#[ignore = "needs the BIND test bed with one secondary stopped (RENEWD_DNS_BED_DOWN=its address)"]
async fn bed_lagging_secondary_times_out() {
    let bed = Bed::load();
    let down = std::env::var("RENEWD_DNS_BED_DOWN").expect("RENEWD_DNS_BED_DOWN");
    let r = bed.resolver();
    let u = bed.updater(None, None).await;
    let zone = bed.zone("host3");
    let servers = authoritative_servers(&r, &zone, &[]).await.unwrap();
    let v = token();
    u.add_txt(&zone, &zone, &v).await.unwrap();
    let t0 = Instant::now();
    let e = wait_for_txt(
        &servers,
        &zone,
        std::slice::from_ref(&v),
        Duration::from_secs(8),
    )
    .await
    .unwrap_err();
    println!("after {} ms: {e}", t0.elapsed().as_millis());
    match &e {
        DnsError::PropagationTimeout { lagging, ok, .. } => {
            assert_eq!(lagging.len(), 1);
            assert_eq!(lagging[0].server.addr().ip().to_string(), down);
            assert_eq!(ok.len(), servers.len() - 1);
        }
        other => panic!("{other:?}"),
    }
    u.delete_txt(&zone, &zone, &v).await.unwrap();
}
