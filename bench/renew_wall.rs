//! Wall time of `renewd renew` for N certificates on the reference deployment, and the DNS propagation
//! time renewd reports per certificate. Usage (root):
//! `cargo run --release --example bench-renew -- N [ROUNDS] [--shared] [--workers W] [--timings]`.
//! `--shared`: every challenge CNAMEd into one zone (`_acme-challenge.sharedK` → `sharedK.acme.example.test.`)
//! instead of one zone per host; `--workers` replaces the harness's `workers: 4`. `RENEWD_BIN` picks
//! the binary (e.g. an older build, for a before/after comparison).
//! Round 1 issues (registers the account first), later rounds are `renew --force` of the same names.
//! Prints one TSV row per round: n, round, wall_s, mean/max propagation_s, peak RSS of renewd (kB), and
//! the UPDATEs the primary applied in the round (SOA serial increments of the zones). `--timings`: also the
//! mean time per phase of a renewal in the round (`renewd renew --timings`).

#[path = "deployment.rs"]
mod deployment;
#[path = "../tests/support/mod.rs"]
mod support;

use support::{domain, SpecFixture, Topology, TopologyOptions};

fn main() {
    let (mut shared, mut timings, mut workers, mut numbers) =
        (false, false, None::<usize>, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--shared" => shared = true,
            "--timings" => timings = true,
            "--workers" => workers = args.next().and_then(|w| w.parse().ok()),
            _ => numbers.push(a.parse::<usize>().expect("N and ROUNDS are numbers")),
        }
    }
    let mut numbers = numbers.into_iter();
    let n: usize = numbers.next().unwrap_or(1);
    let rounds: usize = numbers.next().unwrap_or(3);
    let (opts, label) = if shared {
        let opts = TopologyOptions {
            n_hosts: 0,
            shared_zone_hosts: n,
            ..Default::default()
        };
        (opts, "shared")
    } else {
        let opts = TopologyOptions {
            n_hosts: n,
            ..Default::default()
        };
        (opts, "host")
    };
    let topo = Topology::start(opts);
    let specs: Vec<SpecFixture> = (1..=n)
        .map(|k| {
            let d = domain(&format!("{label}{k}"));
            SpecFixture::new(&format!("{label}{k}"), &[&d]).line("key: { type: rsa, bits: 2048 }")
        })
        .collect();
    let dir = topo.dir().join("renewd");
    let config = topo.write_renewd_config(&dir, &specs);
    if let Some(w) = workers {
        deployment::set_workers(&config, w);
    }
    println!("n\tround\twall_s\tprop_mean_s\tprop_max_s\tmaxrss_kb\tupdates");
    for round in 1..=rounds {
        let mut args = vec!["renew"];
        if round > 1 {
            args.push("--force");
        }
        if timings {
            args.push("--timings");
        }
        let serial0 = deployment::serial_sum(&topo);
        let run = deployment::renewd_timed(&topo, &config, &args);
        assert_eq!(
            run.props.len(),
            n,
            "one renewed line per certificate:\n{}",
            run.text
        );
        let updates = deployment::serial_sum(&topo) - serial0;
        let (wall, mean, max, rss) = (run.wall_s, run.prop_mean(), run.prop_max(), run.maxrss_kb);
        println!("{n}\t{round}\t{wall:.2}\t{mean:.2}\t{max:.2}\t{rss}\t{updates}");
        if timings {
            println!("\tmean per phase: {}", mean_phases(&run.text));
        }
        // BIND's notify-delay (5 s) holds back the NOTIFY of this round's deletions for up to 5 s, and
        // the next round's UPDATE for 5 s after that; real renewals are weeks apart, so measure the
        // steady state: let both windows pass (a benchmark pause, not a wait for a condition).
        if round < rounds {
            std::thread::sleep(std::time::Duration::from_secs(11));
        }
    }
}

/// The mean of each phase over the `NAME: phases: order 41ms, propagation 602ms, ...` lines, in the
/// order the phases first appear.
fn mean_phases(text: &str) -> String {
    let mut sums: Vec<(String, f64, usize)> = Vec::new();
    for line in text.lines().filter_map(|l| l.split_once(": phases: ")) {
        for item in line.1.split(", ") {
            let Some((phase, ms)) = item.rsplit_once(' ') else {
                continue;
            };
            let Some(ms) = ms.strip_suffix("ms").and_then(|m| m.parse::<f64>().ok()) else {
                continue;
            };
            match sums.iter_mut().find(|(p, _, _)| p == phase) {
                Some((_, sum, count)) => {
                    *sum += ms;
                    *count += 1;
                }
                None => sums.push((phase.to_string(), ms, 1)),
            }
        }
    }
    sums.iter()
        .map(|(p, sum, count)| format!("{p} {:.0}ms", sum / *count as f64))
        .collect::<Vec<_>>()
        .join(", ")
}
