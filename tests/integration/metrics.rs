//! Prometheus metrics of `renewd run` against the reference deployment: the node_exporter textfile
//! (`metrics_file`) and the loopback listener (`metrics_listen`), both read with the Prometheus
//! project's own Python parsers (Debian's python3-prometheus-client): the OpenMetrics parser, which
//! is strict about the format prometheus-client writes, and the Prometheus text parser, as
//! node_exporter's textfile collector reads the file.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::proc::poll_until;
use crate::support::renewd::{mode, signal, wait_exit, Renewd};
use crate::support::topology::{domain, Topology, TopologyOptions};
use crate::support::x509::openssl;
use crate::support::SpecFixture;

const LISTEN: &str = "127.0.0.1:9469";
/// Where a SIGHUP moves the listener.
const LISTEN2: &str = "127.0.0.1:9470";

/// Prints the samples of the exposition on stdin as JSON; argv[1]: `openmetrics` or `prometheus`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus
parse = openmetrics if sys.argv[1] == "openmetrics" else prometheus
print(json.dumps([
    {"family": f.name, "type": f.type, "name": s.name, "labels": s.labels, "value": s.value}
    for f in parse(sys.stdin.read()) for s in f.samples
]))
"#;

#[derive(Debug)]
pub(crate) struct Sample {
    family_type: String,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// The samples of `text`, as the real parser (`openmetrics` or `prometheus`) reads them (also used by
/// monitoring.rs).
pub(crate) fn parse(text: &str, format: &str) -> Vec<Sample> {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PARSE, format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (python3-prometheus-client: .ci/install-deps)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {format} parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    json.into_iter()
        .map(|s| Sample {
            family_type: s["type"].as_str().unwrap().to_string(),
            name: s["name"].as_str().unwrap().to_string(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// The one sample `name` of certificate host1 (account pebble) with the `extra` labels.
fn value(samples: &[Sample], name: &str, extra: &[(&str, &str)]) -> (f64, String) {
    let want: BTreeMap<String, String> = [("name", "host1"), ("account", "pebble")]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert_eq!(found.len(), 1, "{name}{want:?} in {samples:#?}");
    (found[0].value, found[0].family_type.clone())
}

/// notAfter of `cert` in seconds since the epoch, as openssl reads it.
fn not_after(cert: &Path) -> f64 {
    let out = openssl([
        OsStr::new("x509"),
        OsStr::new("-in"),
        cert.as_os_str(),
        OsStr::new("-noout"),
        OsStr::new("-enddate"),
        OsStr::new("-dateopt"),
        OsStr::new("iso_8601"),
    ]);
    assert!(out.status.success(), "{out:?}");
    // notAfter=2026-11-26 11:03:26Z
    let text = String::from_utf8(out.stdout).unwrap();
    let iso = text
        .trim()
        .trim_start_matches("notAfter=")
        .replace(' ', "T");
    let t = humantime::parse_rfc3339(&iso).unwrap_or_else(|e| panic!("{iso}: {e}"));
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as f64
}

/// `curl -i URL` inside the namespace: (status line, headers and body).
fn curl(topo: &Topology, url: &str) -> (String, String) {
    try_curl(topo, url).unwrap_or_else(|e| panic!("curl {url}: {e}"))
}

/// [`curl`], or curl's error (e.g. connection refused).
fn try_curl(topo: &Topology, url: &str) -> Result<(String, String), String> {
    let mut cmd = topo.command("curl");
    cmd.args(["-sS", "-i", "--max-time", "5", url]);
    let out = topo.run(&mut cmd);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    Ok((head.to_string(), body.to_string()))
}

/// What both the textfile and the listener must say once host1 was issued.
fn check_issued(samples: &[Sample], cert: &Path, what: &str, typed: bool) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expires = not_after(cert);
    let (v, t) = value(
        samples,
        "renewd_certificate_expiration_timestamp_seconds",
        &[],
    );
    assert_eq!((v, t.as_str()), (expires, "gauge"), "{what}: expiration");
    let (v, _) = value(samples, "renewd_certificate_ready", &[]);
    assert_eq!(v, 1.0, "{what}: ready");
    let (renewal, _) = value(samples, "renewd_certificate_renewal_timestamp_seconds", &[]);
    assert!(
        renewal > now && renewal < expires,
        "{what}: the next renewal ({renewal}) is planned after now ({now}) and before notAfter ({expires})"
    );
    let attempts = "renewd_renewal_attempts_total";
    let (v, t) = value(samples, attempts, &[("result", "success")]);
    assert_eq!(v, 1.0, "{what}: successful attempts");
    if typed {
        assert_eq!(t, "counter", "{what}");
    }
    let (v, _) = value(samples, attempts, &[("result", "failure")]);
    assert_eq!(v, 0.0, "{what}: failed attempts");
    for h in [
        "renewd_renewal_duration_seconds",
        "renewd_dns_propagation_seconds",
    ] {
        let (count, t) = value(samples, &format!("{h}_count"), &[]);
        assert_eq!((count, t.as_str()), (1.0, "histogram"), "{what}: {h}");
        let (inf, _) = value(samples, &format!("{h}_bucket"), &[("le", "+Inf")]);
        assert_eq!(inf, 1.0, "{what}: {h} +Inf bucket");
        let (sum, _) = value(samples, &format!("{h}_sum"), &[]);
        assert!(sum > 0.0 && sum < 600.0, "{what}: {h}_sum {sum}");
    }
    let (small, _) = value(
        samples,
        "renewd_renewal_duration_seconds_bucket",
        &[("le", "0.1")],
    );
    assert_eq!(small, 0.0, "{what}: no renewal takes 0.1 s");
    // Where the time went: one observation per phase the renewal passed through, and together they
    // are the renewal's duration (the cleanup after it is not a phase).
    let phase = "renewd_renewal_phase_seconds";
    for p in [
        "order",
        "dns-update",
        "propagation",
        "validation",
        "finalize",
        "install",
    ] {
        let found: Vec<(f64, &str)> = samples
            .iter()
            .filter(|s| s.name == format!("{phase}_count"))
            .filter(|s| s.labels.len() == 1 && s.labels.get("phase").map(String::as_str) == Some(p))
            .map(|s| (s.value, s.family_type.as_str()))
            .collect();
        assert_eq!(
            found,
            [(1.0, "histogram")],
            "{what}: {phase}{{phase=\"{p}\"}}"
        );
    }
    let phases: f64 = samples
        .iter()
        .filter(|s| s.name == format!("{phase}_sum"))
        .map(|s| s.value)
        .sum();
    let (duration, _) = value(samples, "renewd_renewal_duration_seconds_sum", &[]);
    assert!(
        phases <= duration + 0.01 && phases > duration * 0.8,
        "{what}: the phases ({phases} s) make up the renewal ({duration} s)"
    );
}

/// The textfile is written at start and after the renewal (atomically, 0644), the listener serves the
/// same metrics on GET /metrics only, both parse with the real parsers and match the certificate; a
/// removed spec's series disappear.
#[test]
fn daemon_exports_metrics_as_textfile_and_on_loopback_listener() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    });
    let h1 = domain("host1");
    let file = topo.dir().join("renewd.prom");
    let file_line = format!(
        "metrics_file: {}",
        serde_json::to_string(file.to_str().unwrap()).unwrap()
    );
    let listen_line = format!("metrics_listen: \"{LISTEN}\"");
    let r = Renewd::with_global(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&h1])],
        &[&file_line, &listen_line],
    );
    let log = topo.dir().join("daemon.log");
    let mut daemon = r.spawn_logged(&["run"], &log, &[]);
    let log_text = || fs::read_to_string(&log).unwrap_or_default();

    // At start: written before the first renewal finished.
    let first = poll_until(Duration::from_secs(20), Duration::from_millis(10), || {
        fs::read_to_string(&file).ok()
    })
    .unwrap_or_else(|| panic!("no metrics file at start; daemon log:\n{}", log_text()));
    let samples = parse(&first, "openmetrics");
    let (ready, _) = value(&samples, "renewd_certificate_ready", &[]);
    let (ok, _) = value(
        &samples,
        "renewd_renewal_attempts_total",
        &[("result", "success")],
    );
    assert!(
        ok == 1.0 || ready == 0.0,
        "not ready before the first success:\n{first}"
    );

    let success =
        "renewd_renewal_attempts_total{name=\"host1\",account=\"pebble\",result=\"success\"} 1";
    let text = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains(success))
    })
    .unwrap_or_else(|| {
        panic!(
            "no successful attempt in the metrics file:\n{}\ndaemon log:\n{}",
            fs::read_to_string(&file).unwrap_or_default(),
            log_text()
        )
    });
    assert_eq!(mode(&file), 0o644);
    let cert = r.live("host1", "cert.pem");
    check_issued(&parse(&text, "openmetrics"), &cert, "textfile", true);
    // As node_exporter's textfile collector reads it (the Prometheus text format: the counter is
    // untyped there).
    check_issued(
        &parse(&text, "prometheus"),
        &cert,
        "textfile (text format)",
        false,
    );

    let (head, body) = curl(&topo, &format!("http://{LISTEN}/metrics"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    check_issued(&parse(&body, "openmetrics"), &cert, "listener", true);
    let (head, _) = curl(&topo, &format!("http://{LISTEN}/"));
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // A removed spec: its series leave the file and the listener.
    fs::remove_file(r.spec_path("host1")).unwrap();
    let text = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        fs::read_to_string(&file)
            .ok()
            .filter(|t| !t.contains("host1"))
    })
    .unwrap_or_else(|| panic!("host1 still in the metrics file:\n{}", log_text()));
    // Only the host's phase histogram stays: it describes renewals done, not a certificate.
    let left: Vec<Sample> = parse(&text, "openmetrics")
        .into_iter()
        .filter(|s| !s.name.starts_with("renewd_renewal_phase_seconds"))
        .collect();
    assert!(left.is_empty(), "{text}");
    let (_, body) = curl(&topo, &format!("http://{LISTEN}/metrics"));
    assert!(!body.contains("host1"), "{body}");

    // SIGHUP with another `metrics_listen`: the listener moves, the old address is closed.
    let config = fs::read_to_string(r.config()).unwrap();
    fs::write(r.config(), config.replace(LISTEN, LISTEN2)).unwrap();
    signal(daemon.id(), libc::SIGHUP);
    let moved = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        try_curl(&topo, &format!("http://{LISTEN2}/metrics")).ok()
    })
    .unwrap_or_else(|| panic!("nothing on {LISTEN2} after SIGHUP:\n{}", log_text()));
    assert!(moved.0.starts_with("HTTP/1.1 200 OK"), "{}", moved.0);
    // curl exit 7: could not connect.
    poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        try_curl(&topo, &format!("http://{LISTEN}/metrics"))
            .is_err_and(|e| e.starts_with("curl: (7)"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{LISTEN} still answers after the move"));
    // An address that cannot be bound (Pebble's): the reload is refused and the listener stays.
    let taken = topo
        .acme_directory_url()
        .split('/')
        .nth(2)
        .expect("host:port in the directory URL")
        .to_string();
    fs::write(r.config(), config.replace(LISTEN, &taken)).unwrap();
    signal(daemon.id(), libc::SIGHUP);
    let refused = format!("metrics_listen: cannot listen on {taken}: Address already in use");
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        log_text()
            .lines()
            .any(|l| l.contains("reload refused") && l.contains(&refused))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no {refused:?} in the daemon log:\n{}", log_text()));
    let (head, _) = curl(&topo, &format!("http://{LISTEN2}/metrics"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");

    signal(daemon.id(), libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(20)).expect("daemon exits");
    assert!(status.success(), "exit status {status}\n{}", log_text());
}
