//! One renewal by dns-01 next to one by dns-persist-01 once its record stands, on the same CA
//! (acme2certifier, the harness's second CA) and the same reference deployment. Usage (root, after
//! `.ci/install-deps`): `cargo run --release --example bench-persist -- [ROUNDS]`.
//!
//! Round 0 issues both certificates (the dns-persist-01 record is written then, once); each later round
//! is `renew --force` of each, timed separately. Prints one TSV row per renewal: method, round, wall_s,
//! propagation_s (as renewd reports it), and renewd's own line.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::a2c::{SecondCa, SecondCaOptions};
use support::{domain, output_text, SpecFixture, Topology, TopologyOptions};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        persist_zones: true,
        ..Default::default()
    });
    let ca = SecondCa::start(
        &topo,
        SecondCaOptions {
            dns_persist_01: true,
            ..Default::default()
        },
    );
    let specs = [
        SpecFixture::new("dns01", &[&domain("host1")]).line("key: { type: rsa, bits: 2048 }"),
        SpecFixture::new("persist", &[&domain("host2")])
            .line("key: { type: rsa, bits: 2048 }")
            .line("challenge: dns-persist-01"),
    ];
    let dir = topo.dir().join("renewd");
    let config = topo.write_renewd_config(&dir, &specs);
    ca.use_as_default(&config);
    println!("method\tround\twall_s\tpropagation_s\trenewd");
    for round in 0..=rounds {
        for name in ["dns01", "persist"] {
            let mut cmd = topo.command(support::renewd_bin());
            cmd.arg("--config").arg(&config).arg("renew").arg(name);
            if round > 0 {
                cmd.arg("--force");
            }
            let t0 = Instant::now();
            let out = cmd.output().expect("renewd runs");
            let wall = t0.elapsed().as_secs_f64();
            let text = output_text(&out);
            assert!(out.status.success(), "renew {name} failed:\n{text}");
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name}: renewed")))
                .unwrap_or_default()
                .to_string();
            let prop = line
                .split("DNS propagation ")
                .nth(1)
                .and_then(|s| s.split('s').next())
                .unwrap_or("?");
            println!("{name}\t{round}\t{wall:.2}\t{prop}\t{line}");
        }
        // BIND's notify-delay (5 s) holds back the NOTIFY of the dns-01 deletion and of the next UPDATE:
        // renewals are weeks apart in production, so measure the steady state (a benchmark pause, not a
        // wait for a condition).
        if round < rounds {
            std::thread::sleep(Duration::from_secs(11));
        }
    }
}
