//! Prometheus metrics of `renewd run`: a node_exporter textfile (`metrics_file`) and an optional
//! loopback HTTP listener (`metrics_listen`, `GET /metrics`).
//!
//! Registry and exposition are prometheus-client's (OpenMetrics text, which Prometheus scrapes as such
//! and node_exporter's textfile collector reads as the Prometheus text format). Every series carries
//! the labels `name` (the spec's file stem) and `account`:
//!
//! - `renewd_certificate_expiration_timestamp_seconds` (gauge): notAfter of the live certificate.
//! - `renewd_certificate_renewal_timestamp_seconds` (gauge): the planned next renewal.
//! - `renewd_certificate_ready` (gauge, 1 or 0): a valid certificate matching the spec (names and key)
//!   is live and the certificate is not failing.
//! - `renewd_renewal_attempts_total{result="success"|"failure"}` (counter).
//! - `renewd_renewal_duration_seconds`, `renewd_dns_propagation_seconds` (histograms, successful
//!   renewals; [`BUCKETS`] from 0.1 s to 10 min).
//! - `renewd_renewal_phase_seconds{phase}` (histogram over every successful renewal of the daemon,
//!   [`PHASE_BUCKETS`] from 10 ms to 5 min): where the time goes (`order`, `dns-update`, `propagation`,
//!   `validation`, `finalize`, `install`, `deploy`, ...; the labels of [`crate::phase::Phase::label`]).
//!   Only this one has no `name` and `account` labels: it describes the host, not a certificate.
//!
//! The gauges are rebuilt from the plan on every [`Metrics::publish`], so a removed spec's series
//! disappear; counters and histograms live as long as their spec does (per name and account) and
//! start at zero when it is first planned. The daemon's loop publishes after every turn (at start,
//! after every attempt, after plan changes); the file is rewritten only when the text changed. The
//! listener serves the last published text and never touches the loop.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::renew::{RenewError, Renewed};
use crate::state::write_atomic;

/// The media type of prometheus-client's text encoding.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Histogram buckets (seconds) for renewals and DNS propagation: 0.1 s to 10 min.
pub const BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Histogram buckets (seconds) for the phases of a renewal: 10 ms to 5 min.
pub const PHASE_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];
/// A client must send its request within this long.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Sending the answer may take this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head accepted (request line and headers).
const MAX_REQUEST: usize = 8192;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CertLabels {
    name: String,
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    name: String,
    account: String,
    result: String,
}

type HistogramFamily = Family<CertLabels, Histogram, fn() -> Histogram>;

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

fn new_phase_histogram() -> Histogram {
    Histogram::new(PHASE_BUCKETS)
}

/// What the gauges say about one planned certificate.
#[derive(Debug, Clone)]
pub struct CertSnapshot<'a> {
    pub name: &'a str,
    pub account: &'a str,
    pub not_after: Option<SystemTime>,
    pub next_renewal: Option<SystemTime>,
    pub ready: bool,
    /// `profile:` of the spec (empty for the CA's default) and its challenge type.
    pub profile: &'a str,
    pub challenge: &'a str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    name: String,
    account: String,
    profile: String,
    challenge: String,
}

/// The daemon's metrics: counters and histograms kept across writes, and the last published text.
pub struct Metrics {
    attempts: Family<AttemptLabels, Counter>,
    duration: HistogramFamily,
    propagation: HistogramFamily,
    phases: Family<PhaseLabels, Histogram>,
    /// The (name, account) pairs the counters and histograms hold series for.
    known: BTreeSet<CertLabels>,
    text: watch::Sender<Arc<str>>,
    /// The file last written and its text.
    written: Option<(PathBuf, Arc<str>)>,
    /// `cluster:` only: etcd unreachable since (None: it answers).
    cluster: Option<Option<SystemTime>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            attempts: Family::default(),
            duration: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            propagation: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            phases: Family::new_with_constructor(new_phase_histogram as fn() -> Histogram),
            known: BTreeSet::new(),
            text: watch::channel(Arc::from("")).0,
            written: None,
            cluster: None,
        }
    }

    /// Count one finished renewal. Not an attempt: another process held the lock, or shutdown
    /// cancelled it.
    pub fn record(&mut self, name: &str, account: &str, result: &Result<Renewed, RenewError>) {
        let labels = CertLabels {
            name: name.to_string(),
            account: account.to_string(),
        };
        let outcome = match result {
            // Installed from the cluster: this member made no attempt.
            Ok(r) if r.renewed_by.is_some() => return,
            Ok(r) => {
                self.duration
                    .get_or_create(&labels)
                    .observe(r.elapsed.as_secs_f64());
                self.propagation
                    .get_or_create(&labels)
                    .observe(r.propagation.as_secs_f64());
                for (phase, spent) in &r.phases.0 {
                    let labels = PhaseLabels {
                        phase: phase.label().to_string(),
                    };
                    self.phases
                        .get_or_create(&labels)
                        .observe(spent.as_secs_f64());
                }
                "success"
            }
            Err(RenewError::Busy | RenewError::Cancelled) => return,
            Err(RenewError::Cluster(
                crate::cluster::ClusterError::Unavailable { .. }
                | crate::cluster::ClusterError::Held { .. },
            )) => return,
            Err(_) => "failure",
        };
        self.attempts
            .get_or_create(&attempt(&labels, outcome))
            .inc();
        self.known.insert(labels);
    }

    /// `cluster:` only: whether etcd answers (None), or since when it does not (`Some(since)`).
    pub fn set_cluster(&mut self, cluster: Option<Option<SystemTime>>) {
        self.cluster = cluster;
    }

    /// The exposition for `certs` (the current plan); series of certificates no longer planned are
    /// dropped.
    pub fn render(&mut self, certs: &[CertSnapshot<'_>]) -> String {
        let current: BTreeSet<CertLabels> = certs
            .iter()
            .map(|c| CertLabels {
                name: c.name.to_string(),
                account: c.account.to_string(),
            })
            .collect();
        for gone in self.known.difference(&current) {
            for result in ["success", "failure"] {
                self.attempts.remove(&attempt(gone, result));
            }
            self.duration.remove(gone);
            self.propagation.remove(gone);
        }
        for labels in &current {
            for result in ["success", "failure"] {
                drop(self.attempts.get_or_create(&attempt(labels, result)));
            }
            drop(self.duration.get_or_create(labels));
            drop(self.propagation.get_or_create(labels));
        }
        self.known = current;

        let expiration = Family::<CertLabels, Gauge>::default();
        let renewal = Family::<CertLabels, Gauge>::default();
        let ready = Family::<CertLabels, Gauge>::default();
        let info = Family::<InfoLabels, Gauge>::default();
        for c in certs {
            info.get_or_create(&InfoLabels {
                name: c.name.to_string(),
                account: c.account.to_string(),
                profile: c.profile.to_string(),
                challenge: c.challenge.to_string(),
            })
            .set(1);
            let labels = CertLabels {
                name: c.name.to_string(),
                account: c.account.to_string(),
            };
            if let Some(t) = c.not_after {
                expiration.get_or_create(&labels).set(unix_seconds(t));
            }
            if let Some(t) = c.next_renewal {
                renewal.get_or_create(&labels).set(unix_seconds(t));
            }
            ready.get_or_create(&labels).set(i64::from(c.ready));
        }

        let mut registry = Registry::default();
        registry.register(
            "renewd_certificate_expiration_timestamp_seconds",
            "notAfter of the live certificate, seconds since the epoch",
            expiration,
        );
        registry.register(
            "renewd_certificate_renewal_timestamp_seconds",
            "When the next renewal is planned, seconds since the epoch",
            renewal,
        );
        registry.register(
            "renewd_certificate_ready",
            "1 if a valid certificate matching the spec is live and renewals are not failing, else 0",
            ready,
        );
        registry.register(
            "renewd_certificate_info",
            "Always 1: how the certificate is ordered (ACME profile, empty for the CA's default) and proven (challenge)",
            info,
        );
        registry.register(
            "renewd_renewal_attempts",
            "Renewal attempts by result",
            self.attempts.clone(),
        );
        registry.register(
            "renewd_renewal_duration_seconds",
            "Duration of successful renewals, from the order to the cleanup",
            self.duration.clone(),
        );
        registry.register(
            "renewd_dns_propagation_seconds",
            "Time until every authoritative server served the challenge records (successful renewals)",
            self.propagation.clone(),
        );
        registry.register(
            "renewd_renewal_phase_seconds",
            "Time spent in each phase of successful renewals (all certificates)",
            self.phases.clone(),
        );
        if let Some(down) = self.cluster {
            let up = Gauge::<i64>::default();
            up.set(i64::from(down.is_none()));
            registry.register(
                "renewd_cluster_etcd_up",
                "cluster: 1 while etcd answers with a quorum (renewals may order), 0 while it does not",
                up,
            );
            let since = Gauge::<i64>::default();
            since.set(down.map(unix_seconds).unwrap_or(0));
            registry.register(
                "renewd_cluster_etcd_down_since_timestamp_seconds",
                "cluster: since when etcd has been unreachable or without quorum (0 while it answers)",
                since,
            );
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("encoding into a String cannot fail");
        text
    }

    /// Render, hand the text to the listener, and rewrite `file` (atomically, 0644) when the text or
    /// the file changed.
    pub fn publish(&mut self, certs: &[CertSnapshot<'_>], file: Option<&Path>) {
        let text = self.serve_text(certs);
        let mut file_state = self.written.take().map(MetricsFile);
        write_file(&mut file_state, file, &text);
        self.written = file_state.map(|f| f.0);
    }

    /// Render and hand the text to the listener; returns it (for [`write_file`]). In memory only.
    pub fn serve_text(&mut self, certs: &[CertSnapshot<'_>]) -> Arc<str> {
        let text: Arc<str> = Arc::from(self.render(certs));
        self.text.send_replace(text.clone());
        text
    }

    /// Whether anything reads the text: a listener ([`serve`], `metrics_listen`) or `file`.
    pub fn wanted(&self, file: Option<&Path>) -> bool {
        file.is_some() || self.text.receiver_count() > 0
    }

    /// Nothing reads the text any more (a reload removed the listener and the file): drop the last one.
    pub fn clear_text(&mut self) {
        if !self.text.borrow().is_empty() {
            self.text.send_replace(Arc::from(""));
        }
    }

    /// The published text, for [`serve`].
    pub fn subscribe(&self) -> watch::Receiver<Arc<str>> {
        self.text.subscribe()
    }
}

/// The metrics file last written and its text.
pub struct MetricsFile((PathBuf, Arc<str>));

/// Rewrite `file` (atomically, 0644) when the text or the file changed since `written` (blocking).
pub fn write_file(written: &mut Option<MetricsFile>, file: Option<&Path>, text: &Arc<str>) {
    let Some(file) = file else {
        *written = None;
        return;
    };
    if written
        .as_ref()
        .is_some_and(|w| w.0 .0 == file && w.0 .1 == *text)
    {
        return;
    }
    match write_atomic(file, text.as_bytes(), 0o644) {
        Ok(()) => *written = Some(MetricsFile((file.to_path_buf(), text.clone()))),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot write the metrics file");
            *written = None;
        }
    }
}

fn attempt(labels: &CertLabels, result: &str) -> AttemptLabels {
    AttemptLabels {
        name: labels.name.clone(),
        account: labels.account.clone(),
        result: result.to_string(),
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Serve `GET /metrics` on `listener` until the task is dropped: one request per connection, the
/// request within [`READ_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once.
pub async fn serve(listener: TcpListener, text: watch::Receiver<Arc<str>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // too many at once: dropping the stream closes it
        };
        let text = text.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = handle(stream, &text).await {
                tracing::debug!(error = %e, "metrics listener: connection failed");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, text: &watch::Receiver<Arc<str>>) -> io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()), // too slow: close without an answer
    };
    let body = text.borrow().clone();
    let answer = match head {
        Some(head) => response(&head, &body),
        None => status_only(431, "Request Header Fields Too Large", &[]),
    };
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or(Ok(()))
}

/// The request head (up to the empty line, or what arrived before the client closed); None when it
/// is longer than [`MAX_REQUEST`].
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
        let complete =
            buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n");
        if complete || n == 0 {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
}

/// The answer to one request head: `GET /metrics` (or `HEAD`) gets the exposition, another path 404,
/// another method on /metrics 405, anything unreadable 400.
pub fn response(head: &str, body: &str) -> Vec<u8> {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return status_only(400, "Bad Request", &[]);
    };
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return status_only(404, "Not Found", &[]);
    }
    match method {
        "GET" | "HEAD" => {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
                 Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if method == "GET" {
                out.extend_from_slice(body.as_bytes());
            }
            out
        }
        _ => status_only(405, "Method Not Allowed", &[("Allow", "GET, HEAD")]),
    }
}

fn status_only(code: u16, reason: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renewed(elapsed: f64, propagation: f64) -> Result<Renewed, RenewError> {
        Ok(Renewed {
            serial: "01".into(),
            not_after: SystemTime::UNIX_EPOCH,
            order_url: String::new(),
            zones: Vec::new(),
            propagation: Duration::from_secs_f64(propagation),
            elapsed: Duration::from_secs_f64(elapsed),
            challenge: crate::config::ChallengeKind::Dns01,
            persist_written: 0,
            renewed_by: None,
            phases: crate::phase::Timings(vec![
                (crate::phase::Phase::PlacingOrder, Duration::from_millis(40)),
                (
                    crate::phase::Phase::WaitingForPropagation,
                    Duration::from_secs_f64(propagation),
                ),
            ]),
        })
    }

    fn snap<'a>(name: &'a str, account: &'a str, ready: bool) -> CertSnapshot<'a> {
        CertSnapshot {
            name,
            account,
            not_after: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
            next_renewal: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_890_000_000)),
            ready,
            profile: "",
            challenge: "dns-01",
        }
    }

    #[test]
    fn exposition_has_every_metric_with_name_and_account() {
        let mut m = Metrics::new();
        m.record("www", "le", &renewed(12.5, 3.0));
        m.record("www", "le", &Err(RenewError::Busy));
        m.record("www", "le", &Err(RenewError::Cancelled));
        let text = m.render(&[snap("www", "le", true), snap("mail", "le", false)]);
        for line in [
            "renewd_certificate_expiration_timestamp_seconds{name=\"www\",account=\"le\"} 1900000000",
            "renewd_certificate_renewal_timestamp_seconds{name=\"www\",account=\"le\"} 1890000000",
            "renewd_certificate_ready{name=\"www\",account=\"le\"} 1",
            "renewd_certificate_ready{name=\"mail\",account=\"le\"} 0",
            "renewd_certificate_info{name=\"www\",account=\"le\",profile=\"\",challenge=\"dns-01\"} 1",
            "renewd_renewal_attempts_total{name=\"www\",account=\"le\",result=\"success\"} 1",
            "renewd_renewal_attempts_total{name=\"www\",account=\"le\",result=\"failure\"} 0",
            "renewd_renewal_attempts_total{name=\"mail\",account=\"le\",result=\"success\"} 0",
            "renewd_renewal_duration_seconds_count{name=\"www\",account=\"le\"} 1",
            "renewd_renewal_duration_seconds_bucket{le=\"30.0\",name=\"www\",account=\"le\"} 1",
            "renewd_renewal_duration_seconds_bucket{le=\"10.0\",name=\"www\",account=\"le\"} 0",
            "renewd_dns_propagation_seconds_sum{name=\"www\",account=\"le\"} 3.0",
            "renewd_dns_propagation_seconds_count{name=\"mail\",account=\"le\"} 0",
            "renewd_renewal_phase_seconds_count{phase=\"order\"} 1",
            "renewd_renewal_phase_seconds_bucket{le=\"0.05\",phase=\"order\"} 1",
            "renewd_renewal_phase_seconds_bucket{le=\"0.025\",phase=\"order\"} 0",
            "renewd_renewal_phase_seconds_sum{phase=\"propagation\"} 3.0",
            "# TYPE renewd_renewal_attempts counter",
            "# TYPE renewd_dns_propagation_seconds histogram",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn certificate_info_carries_the_profile_and_the_challenge() {
        let mut m = Metrics::new();
        let mut short = snap("short", "a2c", true);
        short.profile = "shortlived";
        short.challenge = "dns-persist-01";
        let text = m.render(&[short, snap("www", "le", true)]);
        for line in [
            "renewd_certificate_info{name=\"short\",account=\"a2c\",profile=\"shortlived\",challenge=\"dns-persist-01\"} 1",
            "renewd_certificate_info{name=\"www\",account=\"le\",profile=\"\",challenge=\"dns-01\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn a_removed_spec_loses_its_series_and_failures_are_counted() {
        let mut m = Metrics::new();
        m.record("old", "le", &renewed(1.0, 1.0));
        m.record(
            "www",
            "le",
            &Err(RenewError::Io {
                context: "x".into(),
                source: io::Error::other("boom"),
            }),
        );
        let text = m.render(&[snap("www", "le", false)]);
        assert!(!text.contains("name=\"old\""), "{text}");
        assert!(
            text.contains(
                "renewd_renewal_attempts_total{name=\"www\",account=\"le\",result=\"failure\"} 1"
            ),
            "{text}"
        );
        // Planned again: it starts from zero.
        let text = m.render(&[snap("old", "le", true)]);
        assert!(!text.contains("name=\"www\""), "{text}");
        assert!(
            text.contains(
                "renewd_renewal_attempts_total{name=\"old\",account=\"le\",result=\"success\"} 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_file_is_written_0644_and_only_when_the_text_changes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("renewd.prom");
        let mut m = Metrics::new();
        let rx = m.subscribe();
        m.publish(&[snap("www", "le", true)], Some(&file));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("renewd_certificate_ready{name=\"www\",account=\"le\"} 1"));
        assert_eq!(&*rx.borrow().clone(), text.as_str());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        std::fs::remove_file(&file).unwrap();
        m.publish(&[snap("www", "le", true)], Some(&file));
        assert!(!file.exists(), "unchanged text is not written again");
        m.publish(&[snap("www", "le", false)], Some(&file));
        assert!(std::fs::read_to_string(&file).unwrap().contains("} 0\n"));
    }

    #[test]
    fn only_get_metrics_is_served() {
        let ok = String::from_utf8(response(
            "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "a 1\n# EOF\n",
        ))
        .unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        assert!(ok.contains("Content-Length: 10\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\na 1\n# EOF\n"), "{ok}");
        let head =
            String::from_utf8(response("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", "a 1\n")).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let status =
            |req: &str| String::from_utf8(response(req, "a 1\n")).unwrap()[..12].to_string();
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404");
        assert_eq!(status("GET /metricsx HTTP/1.1\r\n\r\n"), "HTTP/1.1 404");
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 405");
        assert_eq!(status("\r\n\r\n"), "HTTP/1.1 400");
        assert_eq!(status(""), "HTTP/1.1 400");
    }

    #[tokio::test]
    async fn the_listener_answers_and_drops_silent_clients() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut m = Metrics::new();
        let server = tokio::spawn(serve(listener, m.subscribe()));
        m.publish(&[snap("www", "le", true)], None);
        // A client that sends nothing does not keep the next one waiting.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("renewd_certificate_ready{name=\"www\",account=\"le\"} 1"));
        assert!(answer.ends_with("# EOF\n"), "{answer}");
        server.abort();
    }
}
