//! Wall time of `renewd renew` for N certificates on the reference deployment, and the DNS propagation
//! time renewd reports per certificate. Usage (root): `cargo run --release --example bench-renew -- N [ROUNDS]`.
//! Round 1 issues (registers the account first), later rounds are `renew --force` of the same names.
//! Prints one TSV row per round: n, round, wall_s, mean/max propagation_s, peak RSS of renewd (kB).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use support::{domain, output_text, SpecFixture, Topology, TopologyOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let topo = Topology::start(TopologyOptions {
        n_hosts: n,
        ..Default::default()
    });
    let specs: Vec<SpecFixture> = (1..=n)
        .map(|k| {
            let d = domain(&format!("host{k}"));
            SpecFixture::new(&format!("host{k}"), &[&d]).line("key: { type: rsa, bits: 2048 }")
        })
        .collect();
    let dir = topo.dir().join("renewd");
    let config = topo.write_renewd_config(&dir, &specs);
    println!("n\tround\twall_s\tprop_mean_s\tprop_max_s\tmaxrss_kb");
    for round in 1..=rounds {
        let mut cmd = topo.command("/usr/bin/time");
        cmd.arg("-f").arg("MAXRSS=%M").arg(support::renewd_bin());
        cmd.arg("--config").arg(&config).arg("renew");
        if round > 1 {
            cmd.arg("--force");
        }
        let t0 = Instant::now();
        let out = cmd.output().expect("renewd runs");
        let wall = t0.elapsed().as_secs_f64();
        let text = output_text(&out);
        assert!(out.status.success(), "renew failed:\n{text}");
        let props: Vec<f64> = text
            .lines()
            .filter_map(|l| l.split("DNS propagation ").nth(1))
            .filter_map(|s| s.trim_end_matches(')').trim_end_matches('s').parse().ok())
            .collect();
        assert_eq!(props.len(), n, "one renewed line per certificate:\n{text}");
        let mean = props.iter().sum::<f64>() / n as f64;
        let max = props.iter().cloned().fold(0.0, f64::max);
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("MAXRSS="))
            .unwrap_or("?");
        println!("{n}\t{round}\t{wall:.2}\t{mean:.2}\t{max:.2}\t{rss}");
        // BIND's notify-delay (5 s) holds back the NOTIFY of this round's deletions for up to 5 s, and
        // the next round's UPDATE for 5 s after that; real renewals are weeks apart, so measure the
        // steady state: let both windows pass (a benchmark pause, not a wait for a condition).
        if round < rounds {
            std::thread::sleep(std::time::Duration::from_secs(11));
        }
    }
}
