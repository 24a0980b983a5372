//! `cluster:` two renewd members on a real 3-member etcd (the harness's), acme2certifier as the CA, the
//! reference deployment. Usage (root, after `.ci/install-deps`):
//! `cargo run --release --example bench-cluster -- [ROUNDS]`.
//!
//! web2 runs `renewd run` (the follower); each round, web1 renews with `renewd renew --force` (it takes the
//! lock, orders, writes the version to etcd, installs and deploys). Prints one TSV row per round:
//! - `to_web2_ms`: from web1's install of the new certificate (its live cert.pem's mtime; the version was
//!   written to etcd just before) to web2's deployed fullchain holding it (its mtime: web2 watched etcd,
//!   installed, deployed);
//! - `web1_renew_s`: web1's whole `renew` command;
//! - `etcd_requests`: gRPC requests etcd's members handled during the round (their own
//!   `grpc_server_handled_total`, both members' requests: web1's renewal and web2's install), and by method.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::a2c::{SecondCa, SecondCaOptions};
use support::etcd::{EtcdCluster, EtcdOptions};
use support::proc::poll_until;
use support::renewd::Renewd;
use support::topology::write_secret;
use support::{cert_serial, domain, output_text, SpecFixture, Topology, TopologyOptions};

fn member<'t>(
    topo: &'t Topology,
    etcd: &EtcdCluster<'_>,
    ca: &SecondCa<'t>,
    name: &str,
    seal: &str,
) -> Renewd<'t> {
    let dir = topo.dir().join(name);
    let seal_file = dir.join("secrets/cluster.seal");
    let cluster = etcd.renewd_cluster_yaml(name, &seal_file, "");
    let spec = SpecFixture::new("www", &[&domain("host1")])
        .line("key: { type: rsa, bits: 2048 }")
        .line(&format!(
            "deploy: [{{ fullchain: \"{}\", key: \"{}\" }}]",
            dir.join("deploy/fullchain.pem").display(),
            dir.join("deploy/privkey.pem").display()
        ));
    let r = Renewd::member(topo, name, "30s", &[spec], &[&cluster]);
    fs::create_dir_all(dir.join("deploy")).unwrap();
    write_secret(&seal_file, seal.as_bytes()).unwrap();
    ca.use_as_default(&r.config());
    r
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let etcd = EtcdCluster::start(&topo, EtcdOptions::default());
    let ca = SecondCa::start(&topo, SecondCaOptions::default());
    let seal = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    );
    let web1 = member(&topo, &etcd, &ca, "web1", &seal);
    let web2 = member(&topo, &etcd, &ca, "web2", &seal);
    let web2_log = topo.dir().join("web2.log");
    let deployed = web2.dir.join("deploy/fullchain.pem");
    let mut follower = None;
    let serial_at_web2 = |p: &Path| p.exists().then(|| cert_serial(p));

    println!("round\tto_web2_ms\tweb1_renew_s\tetcd_requests\tby_method");
    for round in 0..=rounds {
        let before = etcd.grpc_requests();
        let mut cmd = topo.command(support::renewd_bin());
        cmd.arg("--config")
            .arg(web1.config())
            .args(["renew", "www"]);
        if round > 0 {
            cmd.arg("--force");
        }
        let t0 = Instant::now();
        let out = cmd.output().expect("renewd runs");
        let renew_s = t0.elapsed().as_secs_f64();
        let text = output_text(&out);
        assert!(out.status.success(), "web1 renew failed:\n{text}");
        // web1 writes the version to etcd, then installs it in its live/ (a few ms later): the file's
        // mtime is the moment of issuance on web1.
        let published = fs::metadata(web1.live("www", "cert.pem"))
            .and_then(|m| m.modified())
            .unwrap();
        let serial = cert_serial(&web1.live("www", "cert.pem"));
        if round == 0 {
            // Nothing follows yet: only web1's own requests.
            let after = etcd.grpc_requests();
            let total: u64 = after
                .iter()
                .map(|(m, n)| n - before.get(m).copied().unwrap_or(0))
                .sum();
            println!("0\t-\t{renew_s:.2}\t{total}\t(first issuance, account registered; web2 not started)");
        }
        if round == 0 {
            follower = Some(web2.spawn_logged(&["run"], &web2_log, &[]));
            let t = Instant::now();
            poll_until(Duration::from_secs(30), Duration::from_millis(5), || {
                (serial_at_web2(&deployed).as_deref() == Some(serial.as_str())).then_some(())
            })
            .expect("web2 catches up");
            println!(
                "# web2 started after round 0 and deployed the cluster's version {:.0} ms after its start",
                t.elapsed().as_secs_f64() * 1000.0
            );
            std::thread::sleep(Duration::from_secs(11));
            continue;
        }
        poll_until(Duration::from_secs(30), Duration::from_millis(5), || {
            (serial_at_web2(&deployed).as_deref() == Some(serial.as_str())).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "web2 did not deploy {serial}\n{}",
                fs::read_to_string(&web2_log).unwrap_or_default()
            )
        });
        let at_web2 = fs::metadata(&deployed).unwrap().modified().unwrap();
        let to_web2 = at_web2
            .duration_since(published)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(-1.0);
        // Let web2's deploy record and its keep-alive settle before counting.
        std::thread::sleep(Duration::from_millis(300));
        let after = etcd.grpc_requests();
        let mut total = 0;
        let mut methods = Vec::new();
        for (m, n) in &after {
            let d = n - before.get(m).copied().unwrap_or(0);
            if d > 0 {
                total += d;
                methods.push(format!("{m}={d}"));
            }
        }
        println!(
            "{round}\t{to_web2:.0}\t{renew_s:.2}\t{total}\t{}",
            methods.join(",")
        );
        if round < rounds {
            // BIND's notify-delay (5 s) holds back the next UPDATE's NOTIFY: measure the steady state
            // (renewals are weeks apart in production; a benchmark pause, not a wait for a condition).
            std::thread::sleep(Duration::from_secs(11));
        }
    }
    if let Some(mut f) = follower {
        support::renewd::signal(f.id(), libc::SIGTERM);
        let _ = support::renewd::wait_exit(&mut f, Duration::from_secs(20));
    }
}
