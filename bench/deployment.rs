//! What the benchmarks on the reference deployment share: `renewd renew` timed (wall, CPU, peak RSS and
//! the DNS propagation renewd reports per certificate), the `workers:` of a written configuration, and
//! the UPDATEs the primary applied (SOA serial increments). Needs `mod support` (tests/support) beside it.
// Each benchmark uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::support::{output_text, renewd_bin, Topology};

/// One timed `renewd` run.
pub struct Timed {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    pub maxrss_kb: u64,
    /// The DNS propagation of every certificate it renewed, as its "renewed" lines say.
    pub props: Vec<f64>,
    pub text: String,
}

impl Timed {
    pub fn prop_mean(&self) -> f64 {
        self.props.iter().sum::<f64>() / self.props.len().max(1) as f64
    }

    pub fn prop_max(&self) -> f64 {
        self.props.iter().cloned().fold(0.0, f64::max)
    }
}

/// `renewd --config CONFIG ARGS` in the topology's namespace under `/usr/bin/time`; panics with its
/// output unless it exits 0.
pub fn renewd_timed(topo: &Topology, config: &Path, args: &[&str]) -> Timed {
    let mut cmd = topo.command("/usr/bin/time");
    cmd.arg("-f")
        .arg("BENCHTIME %U %S %M")
        .arg(renewd_bin())
        .arg("--config")
        .arg(config)
        .args(args);
    timed(&mut cmd)
}

fn timed(cmd: &mut Command) -> Timed {
    let t0 = Instant::now();
    let out = cmd.output().expect("renewd runs");
    let wall_s = t0.elapsed().as_secs_f64();
    let text = output_text(&out);
    assert!(out.status.success(), "renewd failed:\n{text}");
    let f: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("BENCHTIME "))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let props = text
        .lines()
        .filter_map(|l| l.split("DNS propagation ").nth(1))
        // "DNS propagation 5.2s, dns-01)" (older releases: "DNS propagation 5.2s)")
        .filter_map(|s| s.split('s').next()?.parse().ok())
        .collect();
    Timed {
        wall_s,
        user_s: f.first().copied().unwrap_or(0.0),
        sys_s: f.get(1).copied().unwrap_or(0.0),
        maxrss_kb: f.get(2).map_or(0, |&k| k as u64),
        props,
        text,
    }
}

/// Replaces the harness's `workers: 4` in a written configuration.
pub fn set_workers(config: &Path, workers: usize) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        text.replace("workers: 4\n", &format!("workers: {workers}\n")),
    )
    .unwrap();
}

/// The sum of the primary's SOA serials over every zone: its increase is the number of UPDATEs applied.
pub fn serial_sum(topo: &Topology) -> u64 {
    topo.zones()
        .iter()
        .filter_map(|z| topo.soa_serial_at(topo.master_addr(), z))
        .map(u64::from)
        .sum()
}
