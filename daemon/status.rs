//! `renewd status`: one row per certificate, from the configuration, the live certificates, and the
//! daemon's `status.json` (failure history, last error). Works whether or not the daemon runs.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::daemon::{CertStatus, StatusFile};
use crate::fsread::{self, STATUS_MAX};
use crate::renew::read_live;
use crate::scheduler::{self, CertInput, History};
use crate::state::StateDir;

/// One certificate, as `renewd status --json` prints it. Field names are stable.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub domains: Vec<String>,
    /// RFC 3339, or null when there is no (readable) certificate.
    pub not_after: Option<String>,
    /// Whole days left until not_after (negative when expired), or null.
    pub days_left: Option<i64>,
    pub serial: Option<String>,
    /// The ACME profile the spec asks for (`profile:`), null for the CA's default.
    pub profile: Option<String>,
    /// How control of the names is proven: `dns-01` or `dns-persist-01`.
    pub challenge: String,
    /// The key type the spec orders (`rsa2048`, `ecdsa-p256`, ...).
    pub key: String,
    /// Where the files are: `live/NAME/` and every deploy target's paths.
    pub paths: Paths,
    /// Why it needs attention, in words (null when it does not).
    pub attention: Option<String>,
    /// RFC 3339 moment of the next planned renewal.
    pub next_renewal: String,
    /// Why then, in words.
    pub next_reason: String,
    /// What the daemon is doing with it (scheduled, waiting-for-worker, renewing, redeploying,
    /// backing-off, held, locked), when a daemon recorded it.
    pub state: Option<String>,
    /// The CA's suggested renewal window (ARI) as the daemon last fetched it (`start`, `end`, the
    /// `chosen` moment, `refetch_at`); null without a daemon or when the CA offers no ARI.
    pub ari_window: Option<crate::daemon::AriStatus>,
    /// "ok", "failed", or null when renewd has not tried yet.
    pub last_result: Option<String>,
    /// First line of the last error.
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// failing, or less than the warning threshold left, or no certificate.
    pub needs_attention: bool,
    /// `cluster:` only: the cluster's version (serial, who renewed it, when) and every member's deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<RowCluster>,
    #[serde(skip)]
    seconds_left: Option<i64>,
}

/// One certificate in the cluster (etcd).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RowCluster {
    /// The cluster's version: null when no member renewed it through the cluster yet.
    pub serial: Option<String>,
    pub renewed_by: Option<String>,
    pub renewed_at: Option<String>,
    /// Every member that recorded a deploy: its name, the serial it deployed, when, and whether that is
    /// the cluster's version.
    pub deployed: Vec<MemberDeploy>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberDeploy {
    pub member: String,
    pub serial: String,
    pub at: String,
    pub current: bool,
}

/// The `cluster` section of `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// This member's name.
    pub member: String,
    /// `ok`, or why etcd could not be read just now.
    pub etcd: String,
    /// What the daemon recorded: etcd unreachable since when (null while it answers, or no daemon).
    pub daemon_down_since: Option<String>,
}

/// `live/NAME/` and the deployed copies of one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct Paths {
    pub fullchain: String,
    pub privkey: String,
    /// Every file the deploy targets write.
    pub deployed: Vec<String>,
}

/// The `status --json` document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub generated_at: String,
    /// Present when the daemon refused the last configuration change.
    pub config_error: Option<String>,
    /// `cluster:` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReport>,
    pub certificates: Vec<Row>,
}

/// The last result of `renewd renew` for one certificate: `state_dir/results/NAME.json`, written under the
/// certificate's lock by the process that renewed it. `renewd status` shows it when it is newer than what
/// the daemon recorded, so a cron-driven `renewd renew` is visible (and a failure makes status exit 1)
/// whether or not a daemon runs; the daemon's own `status.json` keeps one writer, the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    pub ok: bool,
    /// The error (first line), when it failed.
    pub error: Option<String>,
    /// The new certificate's serial, when one was issued (also when only its deploy failed).
    pub serial: Option<String>,
    /// Failed attempts in a row, this one included (0 after a success), counted on from what `renewd
    /// status` showed before this run (the daemon's record or the previous run's, whichever is newer).
    /// Set by [`record_run`]; absent in records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
}

fn run_record_path(state: &StateDir, name: &str) -> std::path::PathBuf {
    state.root().join("results").join(format!("{name}.json"))
}

/// Record what `renewd renew` did with `name` (atomically; 0644: it holds no secret), under the
/// certificate's lock `locks/NAME.lock`, so one writer at a time. `Ok(false)`, nothing written: another
/// process holds the lock right now (the daemon or another `renewd renew` renewing it), and what it is
/// doing ends after this record would have been made, so its result is the newer one anyway.
/// `daemon`: the daemon's status file as [`daemon_status`] read it, for counting failures on.
pub fn record_run(
    state: &StateDir,
    daemon: &StatusFile,
    name: &str,
    record: &RunRecord,
) -> io::Result<bool> {
    let Some(_lock) = state.lock_cert(name)? else {
        return Ok(false);
    };
    let mut record = record.clone();
    record.consecutive_failures = Some(if record.ok {
        0
    } else {
        let (before, _) = merged(daemon.certificates.get(name), read_run_record(state, name));
        before.consecutive_failures.saturating_add(1)
    });
    let path = run_record_path(state, name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
    crate::state::write_atomic(&path, &json, 0o644)?;
    Ok(true)
}

fn read_run_record(state: &StateDir, name: &str) -> Option<RunRecord> {
    let bytes = fsread::read_capped(&run_record_path(state, name), fsread::TEXT_MAX).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The daemon's `state_dir/status.json` (see [`read_status_file`]).
pub fn daemon_status(state: &StateDir) -> StatusFile {
    read_status_file(&state.status_file())
}

/// A certificate's failure history and last result as `renewd status` shows them: the daemon's
/// (`recorded`), or `renewd renew`'s (`run`) when that is newer.
fn merged(recorded: Option<&CertStatus>, run: Option<RunRecord>) -> (History, Option<String>) {
    let mut history: History = recorded.map(|r| r.history.clone()).unwrap_or_default();
    let mut last_result = recorded.and_then(|r| r.last_result.clone());
    let daemon_last = history
        .last_success
        .into_iter()
        .chain(history.last_failure.as_ref().map(|f| f.at))
        .max();
    if let Some(run) = run.filter(|run| daemon_last.is_none_or(|t| run.at > t)) {
        if run.ok {
            history.succeeded(run.at);
            last_result = Some("ok".into());
        } else {
            history.consecutive_failures = run
                .consecutive_failures
                .unwrap_or(history.consecutive_failures.saturating_add(1))
                .max(1);
            history.last_failure = Some(scheduler::Failure {
                at: run.at,
                kind: scheduler::FailureKind::Transient,
                retry_after: None,
                message: run.error.clone().unwrap_or_default(),
            });
            last_result = Some("failed".into());
        }
    }
    (history, last_result)
}

/// The daemon's `status.json` (a regular file of at most [`STATUS_MAX`] bytes); empty when there is
/// none yet, or (with a warning) when it cannot be used.
fn read_status_file(path: &Path) -> StatusFile {
    let parsed = fsread::read_capped(path, STATUS_MAX)
        .map_err(|e| (e.io_kind(), e.to_string()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| (None, e.to_string())));
    match parsed {
        Ok(file) => file,
        Err((Some(io::ErrorKind::NotFound), _)) => StatusFile::default(),
        Err((_, error)) => {
            tracing::warn!(path = %path.display(), %error,
                "ignoring the daemon's status file: no failure history shown");
            StatusFile::default()
        }
    }
}

/// Build the report, rows sorted by time left (no certificate first).
pub fn collect(settings: &Settings, warn: Duration, now: SystemTime) -> Report {
    let state = StateDir::new(&settings.state_dir);
    let file = read_status_file(&state.status_file());
    let mut rows: Vec<Row> = settings
        .certs
        .values()
        .map(|spec| {
            let live = read_live(&state, &spec.name);
            let recorded = file.certificates.get(&spec.name);
            // `renewd renew`'s own result, when it is newer than the daemon's last one.
            let (history, last_result) = merged(recorded, read_run_record(&state, &spec.name));
            let decision = scheduler::decide(
                &CertInput {
                    spec,
                    live: &live,
                    ari: None,
                    history: &history,
                    jitter: Duration::ZERO,
                },
                now,
            );
            let facts = live
                .as_ref()
                .ok()
                .and_then(|l| l.as_ref())
                .map(|l| &l.facts);
            let seconds_left = facts.map(|f| match f.not_after.duration_since(now) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            });
            let failing = history.consecutive_failures > 0;
            let short = seconds_left.is_none_or(|s| s < warn.as_secs() as i64);
            let attention = if failing {
                Some(format!("failing ({}x)", history.consecutive_failures))
            } else if seconds_left.is_none() {
                Some("no certificate".to_string())
            } else if short {
                let secs = warn.as_secs();
                Some(if secs % 86400 == 0 {
                    format!("less than {}d left", secs / 86400)
                } else {
                    format!("less than {} left", humantime::format_duration(warn))
                })
            } else {
                None
            };
            let live_dir = state.live_dir(&spec.name);
            let paths = Paths {
                fullchain: live_dir.join("fullchain.pem").display().to_string(),
                privkey: live_dir.join("privkey.pem").display().to_string(),
                deployed: spec
                    .deploy
                    .iter()
                    .flat_map(|t| [&t.fullchain, &t.cert, &t.chain, &t.key, &t.combined])
                    .flatten()
                    .map(|p| p.display().to_string())
                    .collect(),
            };
            Row {
                name: spec.name.clone(),
                domains: spec.domains.clone(),
                not_after: facts.map(|f| rfc3339(f.not_after)),
                days_left: seconds_left.map(|s| s.div_euclid(86400)),
                serial: facts.map(|f| f.serial.clone()),
                profile: spec.profile.clone(),
                challenge: spec.challenge.to_string(),
                key: spec.key.to_string(),
                paths,
                attention,
                // The daemon's own plan (with its jitter and ARI) when it recorded one.
                next_renewal: recorded
                    .and_then(|r| r.next_renewal.clone())
                    .unwrap_or_else(|| rfc3339(decision.at)),
                next_reason: recorded
                    .and_then(|r| r.next_reason.clone())
                    .unwrap_or_else(|| decision.summary.clone()),
                state: recorded.and_then(|r| r.state.clone()),
                ari_window: recorded.and_then(|r| r.ari_window.clone()),
                last_result,
                last_error: history
                    .last_failure
                    .as_ref()
                    .filter(|_| failing)
                    .map(|f| f.message.lines().next().unwrap_or_default().to_string()),
                consecutive_failures: history.consecutive_failures,
                needs_attention: failing || short,
                cluster: None,
                seconds_left,
            }
        })
        .collect();
    rows.sort_by_key(|r| (r.seconds_left.unwrap_or(i64::MIN), r.name.clone()));
    Report {
        generated_at: rfc3339(now),
        config_error: file.config_error,
        cluster: settings.cluster.as_ref().map(|c| ClusterReport {
            member: c.member.clone(),
            etcd: "not asked".to_string(),
            daemon_down_since: file.cluster.and_then(|c| c.down_since),
        }),
        certificates: rows,
    }
}

/// `cluster:`: add what etcd says about each certificate (one read per certificate, each bounded).
pub async fn add_cluster(report: &mut Report, settings: &Settings) {
    let (Some(cs), Some(section)) = (&settings.cluster, report.cluster.as_mut()) else {
        return;
    };
    let cluster = crate::cluster::Cluster::new(cs.clone());
    section.etcd = "ok".to_string();
    for row in &mut report.certificates {
        let version = match cluster.version(&row.name).await {
            Ok(v) => v,
            Err(e) => {
                section.etcd = e.to_string();
                return;
            }
        };
        let deployed = cluster.deployments(&row.name).await.unwrap_or_default();
        let current = version.as_ref().map(|v| v.serial.clone());
        row.cluster = Some(RowCluster {
            serial: current.clone(),
            renewed_by: version.as_ref().map(|v| v.renewed_by.clone()),
            renewed_at: version
                .as_ref()
                .map(|v| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(v.renewed_at))),
            deployed: deployed
                .into_iter()
                .map(|(member, d)| MemberDeploy {
                    current: current.as_deref() == Some(d.serial.as_str()),
                    member,
                    serial: d.serial,
                    at: rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(d.at)),
                })
                .collect(),
        });
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The table for people. `color`: ANSI colours (only when stdout is a terminal).
pub fn render_text(report: &Report, color: bool) -> String {
    let paint = |text: String, code: &str| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text
        }
    };
    let mut out = String::new();
    if let Some(e) = &report.config_error {
        out.push_str(&paint(format!("configuration: {e}\n"), "31"));
    }
    if let Some(c) = &report.cluster {
        let mut line = format!("cluster member {}: etcd {}", c.member, c.etcd);
        if let Some(since) = &c.daemon_down_since {
            line.push_str(&format!(
                "; the daemon has found etcd unreachable since {since}: no renewals"
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let header = format!(
        "{:<20} {:<22} {:>5}  {:<20}  {}\n",
        "NAME", "NOT AFTER", "DAYS", "NEXT RENEWAL", "LAST RESULT"
    );
    out.push_str(&header);
    for r in &report.certificates {
        let days = r
            .days_left
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into());
        let last = match (&r.last_result, &r.last_error) {
            (_, Some(e)) => format!("failed ({}x): {e}", r.consecutive_failures),
            (Some(ok), None) => ok.clone(),
            (None, None) => "-".into(),
        };
        let line = format!(
            "{:<20} {:<22} {:>5}  {:<20}  {}\n",
            r.name,
            r.not_after.as_deref().unwrap_or("none"),
            days,
            r.next_renewal,
            last
        );
        // Marked for readers without colour too: `!` and why.
        let line = match &r.attention {
            Some(why) => format!("{}  ! {why}\n", line.trim_end()),
            None => line,
        };
        let line = if r.consecutive_failures > 0 {
            paint(line, "31")
        } else if r.needs_attention {
            paint(line, "33")
        } else {
            line
        };
        out.push_str(&line);
        let mut about = format!("{}; {}, key {}", r.domains.join(", "), r.challenge, r.key);
        if let Some(p) = &r.profile {
            about.push_str(&format!(", profile {p}"));
        }
        out.push_str(&format!("{:<20} {about}\n", ""));
        let mut files = format!("{}, {}", r.paths.fullchain, r.paths.privkey);
        if !r.paths.deployed.is_empty() {
            files.push_str(&format!("; deployed to {}", r.paths.deployed.join(", ")));
        }
        out.push_str(&format!("{:<20} {files}\n", ""));
        if let Some(c) = &r.cluster {
            let version = match (&c.serial, &c.renewed_by) {
                (Some(s), Some(by)) => format!(
                    "cluster version {s}, renewed by {by} at {}",
                    c.renewed_at.as_deref().unwrap_or("?")
                ),
                _ => "no cluster version yet".to_string(),
            };
            let deployed: Vec<String> = c
                .deployed
                .iter()
                .map(|d| {
                    if d.current {
                        d.member.clone()
                    } else {
                        format!("{} (older {})", d.member, d.serial)
                    }
                })
                .collect();
            let deployed = if deployed.is_empty() {
                "none".to_string()
            } else {
                deployed.join(", ")
            };
            out.push_str(&format!("{:<20} {version}; deployed on {deployed}\n", ""));
        }
    }
    out
}

/// The `status --json` document for a configuration that does not load: the errors, no rows.
pub fn config_error_report(error: String, now: SystemTime) -> Report {
    Report {
        generated_at: rfc3339(now),
        config_error: Some(error),
        cluster: None,
        certificates: Vec::new(),
    }
}

/// Whether `renewd status` should exit 1 (a monitoring check).
pub fn needs_attention(report: &Report) -> bool {
    report.certificates.iter().any(|r| r.needs_attention)
        || report
            .cluster
            .as_ref()
            .is_some_and(|c| c.daemon_down_since.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Failure, FailureKind};

    const HOUR: Duration = Duration::from_secs(3600);

    /// A configuration with one certificate `web` (no live certificate) in a temporary directory.
    fn settings(d: &Path) -> Settings {
        crate::testutil::one_cert_settings(d)
    }

    /// The daemon's status.json with `web`'s history.
    fn daemon_recorded(settings: &Settings, history: History, last_result: &str) {
        let mut file = StatusFile::default();
        file.certificates.insert(
            "web".into(),
            CertStatus {
                last_result: Some(last_result.into()),
                history,
                ..Default::default()
            },
        );
        let state = StateDir::new(&settings.state_dir);
        std::fs::create_dir_all(state.root()).unwrap();
        std::fs::write(state.status_file(), serde_json::to_vec(&file).unwrap()).unwrap();
    }

    fn failure(at: SystemTime, message: &str) -> Failure {
        Failure {
            at,
            kind: FailureKind::Transient,
            retry_after: None,
            message: message.into(),
        }
    }

    fn web(settings: &Settings, now: SystemTime) -> Row {
        let report = collect(settings, Duration::from_secs(86400), now);
        report
            .certificates
            .into_iter()
            .find(|r| r.name == "web")
            .unwrap()
    }

    fn run(at: SystemTime, ok: bool) -> RunRecord {
        RunRecord {
            at,
            ok,
            error: (!ok).then(|| "issued, but the deploy or reload failed: exit 1\nmore".into()),
            serial: Some("0A".into()),
            consecutive_failures: None,
        }
    }

    /// [`record_run`] as `renewd renew` calls it: with the daemon's file as it is now.
    fn record(state: &StateDir, record: &RunRecord) -> bool {
        record_run(state, &daemon_status(state), "web", record).unwrap()
    }

    #[test]
    fn a_newer_failed_renew_wins_over_the_daemons_success() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        let mut history = History::default();
        history.succeeded(now - 2 * HOUR);
        daemon_recorded(&s, history, "ok");
        let state = StateDir::new(&s.state_dir);
        assert!(record(&state, &run(now - HOUR, false)));

        let row = web(&s, now);
        assert_eq!(row.last_result.as_deref(), Some("failed"));
        assert_eq!(row.consecutive_failures, 1);
        assert_eq!(
            row.last_error.as_deref(),
            Some("issued, but the deploy or reload failed: exit 1"),
            "the first line"
        );
        assert!(row.needs_attention);
        assert_eq!(row.attention.as_deref(), Some("failing (1x)"));
    }

    #[test]
    fn an_older_renew_result_loses_to_the_daemons_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        let state = StateDir::new(&s.state_dir);
        assert!(record(&state, &run(now - 2 * HOUR, false)));
        let mut history = History::default();
        history.succeeded(now - HOUR);
        daemon_recorded(&s, history, "ok");

        let row = web(&s, now);
        assert_eq!(row.last_result.as_deref(), Some("ok"));
        assert_eq!(row.consecutive_failures, 0);
        assert_eq!(row.last_error, None);

        // The daemon's newer failure also wins over renew's older success, and keeps its count.
        assert!(record(&state, &run(now - 2 * HOUR, true)));
        let mut history = History::default();
        history.failed(failure(now - HOUR, "REFUSED"));
        history.failed(failure(now - HOUR, "REFUSED"));
        daemon_recorded(&s, history, "failed");
        let row = web(&s, now);
        assert_eq!(row.last_result.as_deref(), Some("failed"));
        assert_eq!(row.consecutive_failures, 2);
        assert_eq!(row.last_error.as_deref(), Some("REFUSED"));
    }

    #[test]
    fn a_newer_successful_renew_clears_the_daemons_failures() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        let mut history = History::default();
        history.failed(failure(now - 2 * HOUR, "REFUSED"));
        daemon_recorded(&s, history, "failed");
        let state = StateDir::new(&s.state_dir);
        assert!(record(&state, &run(now - HOUR, true)));

        let row = web(&s, now);
        assert_eq!(row.last_result.as_deref(), Some("ok"));
        assert_eq!(row.consecutive_failures, 0);
        assert_eq!(row.last_error, None);
    }

    #[test]
    fn renews_failures_count_on_from_what_status_showed_before() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        let state = StateDir::new(&s.state_dir);
        let mut history = History::default();
        history.failed(failure(now - 4 * HOUR, "REFUSED"));
        daemon_recorded(&s, history, "failed");
        // The daemon failed once, then renew failed: two in a row.
        assert!(record(&state, &run(now - 3 * HOUR, false)));
        assert_eq!(web(&s, now).consecutive_failures, 2);
        // A success in between: the next failure is the first again.
        assert!(record(&state, &run(now - 2 * HOUR, true)));
        assert_eq!(web(&s, now).consecutive_failures, 0);
        assert!(record(&state, &run(now - HOUR, false)));
        let row = web(&s, now);
        assert_eq!(row.consecutive_failures, 1);
        assert_eq!(row.attention.as_deref(), Some("failing (1x)"));
        // A record of an earlier version (no count): one more than the daemon's.
        let old = RunRecord {
            consecutive_failures: None,
            ..run(now - HOUR, false)
        };
        std::fs::write(
            run_record_path(&state, "web"),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        assert_eq!(web(&s, now).consecutive_failures, 2);
    }

    #[test]
    fn without_a_daemon_renews_result_is_shown_and_failures_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        let state = StateDir::new(&s.state_dir);
        assert_eq!(web(&s, now).last_result, None, "nothing recorded yet");
        assert!(record(&state, &run(now - HOUR, false)));
        let row = web(&s, now);
        assert_eq!(row.last_result.as_deref(), Some("failed"));
        assert_eq!(row.consecutive_failures, 1);
        assert!(record(&state, &run(now - HOUR / 2, false)));
        assert_eq!(web(&s, now).consecutive_failures, 2);
    }

    #[test]
    fn record_run_waits_for_no_one_and_writes_nothing_while_the_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let state = StateDir::new(&s.state_dir);
        let now = SystemTime::now();
        let held = state.lock_cert("web").unwrap().expect("free");
        assert!(!record(&state, &run(now, false)));
        assert_eq!(read_run_record(&state, "web"), None);
        drop(held);
        assert!(record(&state, &run(now, false)));
        let stored = read_run_record(&state, "web").expect("written");
        assert_eq!((stored.ok, stored.error), (false, run(now, false).error));
    }
}
