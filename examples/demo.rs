//! The README's demo: the reference deployment of seed 000 on this machine (Pebble with EAB, a BIND hidden
//! primary with TSIG update-policy, three secondaries fed by NOTIFY/IXFR, the parent delegation and
//! resolvers, all inside a private network namespace), then the real `renewd check` and `renewd renew`
//! issuing certificates for three hosts. Prints each certificate's subject and expiry, then tears
//! everything down (RENEWD_KEEP_TESTBED=1 keeps the directory). Run it with `./demo.sh` (needs root).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Instant;

use support::{
    cert_not_after, cert_sans, domain, output_text, run_renewd, verify_chain, SpecFixture,
    Topology, TopologyOptions,
};

fn main() -> ExitCode {
    eprintln!(
        "starting the reference deployment (Pebble, 8 named) in a private network namespace ..."
    );
    let topo = Topology::start(TopologyOptions {
        n_hosts: 3,
        ..Default::default()
    });
    eprintln!(
        "  up in {:.1}s: {}",
        topo.startup_time().as_secs_f64(),
        topo.dir().display()
    );

    let (h1, h2, h3) = (domain("host1"), domain("host2"), domain("host3"));
    let wildcard = format!("*.{h3}");
    let specs = [
        // The seed's GitLab host: RSA 2048, as the commercial CA requires.
        SpecFixture::new("host1", &[&h1]).line("key: { type: rsa, bits: 2048 }"),
        SpecFixture::new("host2", &[&h2]).line("key: { type: ecdsa, curve: p256 }"),
        // A wildcard and its apex: two TXT values at one owner.
        SpecFixture::new("host3", &[&h3, &wildcard]).line("key: { type: ecdsa, curve: p384 }"),
    ];
    let dir = topo.dir().join("renewd");
    let config = topo.write_renewd_config(&dir, &specs);
    let config_arg = config.to_str().expect("UTF-8 path").to_string();

    let check = run_renewd(&topo, ["--config", &config_arg, "check"]);
    print!("$ renewd check\n{}", output_text(&check));
    if !check.status.success() {
        return ExitCode::FAILURE;
    }
    let t0 = Instant::now();
    let renew = run_renewd(&topo, ["--config", &config_arg, "renew"]);
    print!("$ renewd renew\n{}", output_text(&renew));
    println!("  ({:.2}s wall)", t0.elapsed().as_secs_f64());
    if !renew.status.success() {
        return ExitCode::FAILURE;
    }

    let roots = topo.issuing_roots();
    println!("\nissued certificates (checked with openssl against Pebble's issuing root):");
    for spec in &specs {
        let live = dir.join("state/live").join(&spec.name);
        let cert = live.join("cert.pem");
        let verified = match verify_chain(&roots.root, &live.join("chain.pem"), &cert) {
            Ok(()) => "chain OK".to_string(),
            Err(e) => format!("chain NOT OK: {e}"),
        };
        println!(
            "  {:<6} subject CN={:<22} SAN={:<45} notAfter={}  {verified}",
            spec.name,
            support::cert_subject_cn(&cert).unwrap_or_default(),
            cert_sans(&cert).join(","),
            cert_not_after(&cert),
        );
    }
    println!(
        "\nfiles: {}/state/live/<name>/{{cert,chain,fullchain,privkey}}.pem",
        dir.display()
    );
    ExitCode::SUCCESS
}
