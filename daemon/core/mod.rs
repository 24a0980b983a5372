//! The event loop of `renewd run` and `renewd renew`: one task owns every certificate's state
//! ([`cert::CertState`]), starts due work on one bounded worker pool ([`pool::Pool`]), and sleeps until the
//! earliest deadline or the next event. It never waits for the network or the disk itself: renewals,
//! redeploys, renewal-window requests, reads of `live/` and configuration loads run in tasks that report
//! back as events.
//!
//! ```text
//!            ┌──────────── inputs: SIGHUP, spec watcher, live/ watcher, SIGTERM ───────────┐
//!            ▼                                                                              │
//!   loop { wake due certificates → start workers while the pool has room → start ARI requests
//!          → publish (STATUS=, status.json + metrics via the writer task, WATCHDOG=1)
//!          → sleep until the earliest `until` / watchdog ping / event }
//!            ▲            ▲                     ▲
//!      job finished   ARI answer      live/ inspected, configuration loaded
//! ```
//!
//! The loop is generic over the work it hands out ([`Work`], implemented by [`crate::renew::Engine`]) and
//! the clock ([`Clock`]), so that tests drive this very loop with tokio's paused clock.

pub mod ari;
pub mod cert;
pub mod pool;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::acme::RenewalWindow;
use crate::certs::CertFacts;
use crate::config::{CertSpec, ChallengeKind, Settings};
use crate::live::{LiveCert, LiveError};
use crate::logging::message_id;
use crate::metrics::Metrics;
use crate::renew::{RenewError, Renewed};
use crate::scheduler::{self, AriWindow, Failure, FailureKind, History};

use ari::{AriDone, AriFailures};
use cert::{Cert, CertState, Job, Redeploy};
use pool::{Joined, Pool};

/// How long a certificate waits when another process holds its lock.
pub const BUSY_RETRY: Duration = Duration::from_secs(60);
/// `cluster:`: how long a certificate another member renews (or that waits for etcd) waits at most; the
/// cluster's own events end the wait earlier.
pub const CLUSTER_HOLD: Duration = Duration::from_secs(600);

/// Not a failure of this certificate: another member holds it, or etcd cannot say who may renew.
fn waits_for_cluster(e: &crate::cluster::ClusterError) -> bool {
    use crate::cluster::ClusterError as C;
    matches!(e, C::Held { .. } | C::Unavailable { .. })
}
/// Longest single sleep when nothing is due (the plan is made again after it).
pub const MAX_SLEEP: Duration = Duration::from_secs(24 * 3600);
/// After the grace period and the cancellation, how long cancelled renewals may take to remove their TXT
/// values before the loop gives up on them (their journal records stay for the next start).
pub const CLEANUP_GRACE: Duration = Duration::from_secs(30);

/// A future the work hands back to the loop.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The wall clock the plan is made with (tests move it with tokio's paused clock).
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// What `live/NAME` holds now, and whether the deploy targets still need it.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub live: Result<Option<LiveCert>, LiveError>,
    pub redeploy: bool,
}

/// What the loop hands out. Every method returns at once with a future that runs in its own task.
pub trait Work: Send + Sync + 'static {
    /// One renewal attempt, ended early when `cancel` turns true.
    fn renew(
        self: Arc<Self>,
        spec: Arc<CertSpec>,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<Result<Renewed, RenewError>>;
    /// Install the live files on the deploy targets again, with their reloads.
    fn redeploy(self: Arc<Self>, spec: Arc<CertSpec>) -> BoxFuture<Result<(), RenewError>>;
    /// The CA's renewal window of the live certificate: (start, end, Retry-After); None without ARI.
    fn renewal_window(
        self: Arc<Self>,
        spec: Arc<CertSpec>,
        facts: CertFacts,
    ) -> BoxFuture<Result<Option<RenewalWindow>, RenewError>>;
    /// Read `live/` (and compare the deploy targets) for these specs.
    fn inspect(self: Arc<Self>, specs: Vec<Arc<CertSpec>>) -> BoxFuture<Vec<(String, Inspection)>>;
}

/// `renewd run` or `renewd renew`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forever: failures back off, renewed certificates are planned again.
    Daemon,
    /// One pass: every certificate ends `Finished` with a [`RunResult`]; `force`: renew all now.
    Once { force: bool },
}

/// How one certificate ended in a `renewd renew` run.
#[derive(Debug)]
pub enum RunResult {
    Renewed(Renewed),
    NotDue {
        not_after: SystemTime,
        due: SystemTime,
        /// The due moment is the one picked in the CA's renewal window (ARI).
        ari: bool,
    },
    Failed(RenewError),
    /// Another renewd process renews it right now (`cluster:` the member that does, by name).
    Busy {
        member: Option<String>,
    },
}

/// What the loop is told from outside.
#[derive(Debug)]
pub enum Input {
    /// SIGHUP: load the configuration again (and retry pending redeploys at once).
    Reload,
    /// A spec in `certs_dir` changed.
    SpecsChanged,
    /// These `live/NAME` links changed (another process installed a certificate).
    LiveChanged(Vec<String>),
    /// SIGTERM / SIGINT.
    Stop,
    /// `cluster:`: what the member's follower or its etcd requests learned.
    Cluster(ClusterNews),
}

/// News from the cluster (etcd) for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterNews {
    /// These certificates have a version in the cluster that differs from the live one: install it.
    Versions(Vec<String>),
    /// Another member gave these certificates' locks back (or its lease ran out): try again now.
    Unlocked(Vec<String>),
    /// etcd is unreachable or without quorum: nobody orders until it answers.
    Down { since: SystemTime, error: String },
    /// etcd answers again.
    Up,
}

/// etcd unreachable since when, and why (a snapshot shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDown {
    pub since: SystemTime,
    pub error: String,
}

/// What kind of configuration load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// SIGHUP: the global file and every spec.
    Full,
    /// The specs, against the global file in force.
    Specs,
}

/// A configuration loaded for the loop (by [`Loader`]).
pub struct Loaded<W> {
    pub kind: LoadKind,
    pub settings: Arc<Settings>,
    pub work: Arc<W>,
    /// The invalid specs (kept at their last valid version), for STATUS.
    pub spec_errors: Option<String>,
    /// `live/` of every spec that is new or changed (every spec for [`LoadKind::Full`]).
    pub inspections: Vec<(String, Inspection)>,
    /// The new metrics listener, when `metrics_listen` changed (Some(None): stop listening).
    pub metrics_listener: Option<Option<std::net::TcpListener>>,
}

/// Loads the configuration for the loop, off the loop: Err is the reason the load is refused.
pub type Loader<W> = Arc<
    dyn Fn(LoadKind, Arc<Settings>, Arc<W>) -> BoxFuture<Result<Loaded<W>, String>> + Send + Sync,
>;

/// What a worker reports.
struct JobDone {
    name: String,
    spec: Arc<CertSpec>,
    result: JobResult,
}

enum JobResult {
    /// `live/` changed since the plan (another process renewed it): nothing was ordered.
    Changed(Inspection),
    Renewal {
        result: Result<Renewed, RenewError>,
        after: Inspection,
    },
    Redeploy {
        result: Result<(), RenewError>,
        after: Inspection,
    },
}

/// What the side tasks (beside the workers) report.
enum Event<W> {
    Ari(AriDone),
    Inspected(Vec<(String, Inspection)>),
    Loaded(Box<Result<Loaded<W>, String>>),
}

/// The outcome of a configuration load, for the caller of [`Scheduler::apply_load`].
pub enum Applied {
    /// In force; a changed metrics listener to take over.
    Yes {
        kind: LoadKind,
        metrics_listener: Option<Option<std::net::TcpListener>>,
    },
    /// Refused; the previous configuration stays (the reason).
    Refused { kind: LoadKind, reason: String },
}

/// What `status.json`, the metrics and `STATUS=` are made from: the state of every certificate at `at`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: SystemTime,
    pub certs_dir: PathBuf,
    pub metrics_file: Option<PathBuf>,
    pub config_error: Option<String>,
    pub certs: Vec<CertView>,
    pub status_line: String,
    /// `cluster:` only: this member's name, and etcd unreachable since when.
    pub cluster: Option<(String, Option<ClusterDown>)>,
}

/// One certificate in a [`Snapshot`].
#[derive(Debug, Clone)]
pub struct CertView {
    pub name: String,
    pub account: String,
    pub domains: Vec<String>,
    pub serial: Option<String>,
    pub not_after: Option<SystemTime>,
    pub next_renewal: SystemTime,
    pub next_reason: String,
    pub state: &'static str,
    pub history: History,
    pub ari: Option<AriWindow>,
    /// A valid certificate matching the spec is live, and the last attempt did not fail.
    pub ready: bool,
    pub profile: Option<String>,
    pub challenge: ChallengeKind,
}

/// The loop's state: every certificate, the pool, the side tasks.
pub struct Scheduler<W: Work> {
    settings: Arc<Settings>,
    work: Arc<W>,
    clock: Arc<dyn Clock>,
    mode: Mode,
    certs: BTreeMap<String, Cert>,
    pool: Pool<JobDone>,
    side: JoinSet<Event<W>>,
    ari_slots: Arc<Semaphore>,
    ari_timeout: Duration,
    ari_failures: AriFailures,
    cancel: watch::Sender<bool>,
    metrics: Arc<Mutex<Metrics>>,
    /// Why the last SIGHUP was refused (until one succeeds), and which specs are invalid.
    reload_error: Option<String>,
    spec_errors: Option<String>,
    /// The load running, and one asked for meanwhile.
    loading: Option<LoadKind>,
    load_again: Option<LoadKind>,
    results: BTreeMap<String, RunResult>,
    /// Something a snapshot shows changed since the last one.
    dirty: bool,
    /// `cluster:` only: etcd unreachable since when (None: it answers).
    cluster_down: Option<ClusterDown>,
    /// How often the loop went round (a loop that polls shows here).
    pub turns: u64,
}

impl<W: Work> Scheduler<W> {
    /// The loop's state for `settings`, with `inspections` of every spec and the failure `history` of
    /// the previous run.
    pub fn new(
        settings: Arc<Settings>,
        work: Arc<W>,
        clock: Arc<dyn Clock>,
        mode: Mode,
        inspections: Vec<(String, Inspection)>,
        history: &BTreeMap<String, History>,
    ) -> Self {
        let (ari_fetches, ari_timeout) = match mode {
            Mode::Daemon => (ari::ARI_FETCHES, ari::ARI_FETCH_TIMEOUT),
            Mode::Once { .. } => (settings.workers.max(ari::ARI_FETCHES), ari::ARI_CLI_TIMEOUT),
        };
        let mut s = Scheduler {
            pool: Pool::new(settings.workers),
            settings,
            work,
            clock,
            mode,
            certs: BTreeMap::new(),
            side: JoinSet::new(),
            ari_slots: Arc::new(Semaphore::new(ari_fetches)),
            ari_timeout,
            ari_failures: AriFailures::default(),
            cancel: watch::channel(false).0,
            metrics: Arc::new(Mutex::new(Metrics::new())),
            reload_error: None,
            spec_errors: None,
            loading: None,
            load_again: None,
            results: BTreeMap::new(),
            dirty: true,
            cluster_down: None,
            turns: 0,
        };
        s.sync_certs(inspections, history);
        if let Mode::Once { force: true } = mode {
            let now = s.now();
            for cert in s.certs.values_mut() {
                cert.force(now);
            }
        }
        s
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The metrics the loop counts attempts into (rendered by the writer).
    pub fn metrics(&self) -> Arc<Mutex<Metrics>> {
        self.metrics.clone()
    }

    pub fn set_spec_errors(&mut self, errors: Option<String>) {
        self.spec_errors = errors;
        self.dirty = true;
    }

    /// The certificates (for tests and the one-shot command).
    pub fn cert(&self, name: &str) -> Option<&Cert> {
        self.certs.get(name)
    }

    /// Make the certificates follow `settings.certs`: add new specs, drop removed ones (a running
    /// worker finishes and is ignored), and take a changed spec's new version (its failure history goes).
    fn sync_certs(
        &mut self,
        inspections: Vec<(String, Inspection)>,
        history: &BTreeMap<String, History>,
    ) {
        let now = self.now();
        let mut inspected: BTreeMap<String, Inspection> = inspections.into_iter().collect();
        let settings = self.settings.clone();
        self.certs.retain(|name, cert| {
            let keep = settings.certs.contains_key(name);
            if !keep {
                tracing::info!(cert_name = %name, running = cert.state().is_running(), "spec removed: no longer planned");
            }
            keep
        });
        for (name, spec) in &settings.certs {
            let inspection = inspected.remove(name);
            match self.certs.get_mut(name) {
                Some(cert) if *cert.spec == **spec => {
                    if let Some(i) = inspection {
                        cert.inspected(i);
                        cert.replan(now);
                    }
                }
                Some(cert) => {
                    tracing::info!(cert_name = %name, "spec changed");
                    cert.set_spec(spec.clone());
                    if let Some(i) = inspection {
                        cert.inspected(i);
                    }
                    cert.replan(now);
                }
                None => {
                    let i = inspection.unwrap_or(Inspection {
                        live: Ok(None),
                        redeploy: false,
                    });
                    let cert = Cert::new(
                        spec.clone(),
                        i.live,
                        history.get(name).cloned().unwrap_or_default(),
                        // A one-shot run from cron has no fleet to spread.
                        if self.mode == Mode::Daemon {
                            random_jitter()
                        } else {
                            Duration::ZERO
                        },
                        i.redeploy && self.mode == Mode::Daemon,
                        now,
                    );
                    if let Some(w) = cert::renew_before_warning(&cert.spec, &cert.live) {
                        tracing::warn!(cert_name = %name, "{w}");
                    }
                    self.certs.insert(name.clone(), cert);
                }
            }
        }
        self.dirty = true;
    }

    /// One turn's work: wake certificates whose deadline has passed, start workers while the pool has
    /// room (longest waiting first), and ask for the renewal windows that are missing or stale.
    pub fn step(&mut self) {
        self.turns += 1;
        let now = self.now();
        for cert in self.certs.values_mut() {
            if cert.wake(now).is_some() {
                self.dirty = true;
            }
        }
        if let Mode::Once { .. } = self.mode {
            self.finish_not_due();
        }
        self.start_waiting(now);
        if self.mode != (Mode::Once { force: true }) {
            self.start_ari(now);
        }
    }

    /// `renewd renew`: a certificate that is not due once its renewal window is known is done.
    fn finish_not_due(&mut self) {
        for (name, cert) in self.certs.iter_mut() {
            let waiting = matches!(cert.state(), CertState::Waiting { .. });
            if waiting || cert.state().is_running() || *cert.state() == CertState::Finished {
                continue;
            }
            if !cert.ari_settled() {
                continue;
            }
            let Some(live) = cert.live_cert() else {
                continue;
            };
            let result = RunResult::NotDue {
                not_after: live.facts.not_after,
                due: cert.decision.at,
                ari: cert.decision.reason == scheduler::Reason::AriWindow,
            };
            if cert.finish().is_ok() {
                self.results.insert(name.clone(), result);
            }
        }
    }

    fn start_waiting(&mut self, now: SystemTime) {
        if !self.pool.has_room() {
            return;
        }
        let mut waiting: Vec<(SystemTime, String)> = self
            .certs
            .iter()
            .filter_map(|(n, c)| match c.state() {
                CertState::Waiting { since, .. } => Some((*since, n.clone())),
                _ => None,
            })
            .collect();
        waiting.sort();
        for (_, name) in waiting {
            if !self.pool.has_room() {
                break;
            }
            self.start_job(&name, now);
        }
    }

    /// Transition a waiting certificate to its worker. The worker first reads `live/` again: when
    /// another process installed a certificate since the plan was made, it orders nothing and reports
    /// the new one.
    fn start_job(&mut self, name: &str, now: SystemTime) {
        let Some(cert) = self.certs.get_mut(name) else {
            return;
        };
        let Ok(job) = cert.start(now) else {
            return;
        };
        self.dirty = true;
        let spec = cert.spec.clone();
        let planned = match self.mode {
            Mode::Once { force: true } => None,
            _ => Some(cert.live_serial().map(<[u8]>::to_vec)),
        };
        let work = self.work.clone();
        let cancel = self.cancel.subscribe();
        match job {
            Job::Renew => {
                tracing::info!(cert_name = %name, reason = %cert.decision.summary, "renewal starts")
            }
            Job::Redeploy => {
                tracing::info!(cert_name = %name, "installing the live certificate on the deploy targets again")
            }
        }
        let span = tracing::info_span!(
            "renewal",
            cert_name = %spec.name,
            cert_domains = %spec.domains.join(","),
            acme_account = %spec.account
        );
        let owned = name.to_string();
        let job_fut = async move {
            let result = run_job(work, spec.clone(), job, planned, cancel).await;
            JobDone {
                name: owned,
                spec,
                result,
            }
        };
        self.pool
            .spawn(name, tracing::Instrument::instrument(job_fut, span));
    }

    fn start_ari(&mut self, now: SystemTime) {
        for (name, cert) in self.certs.iter_mut() {
            if !cert.ari_due(now) {
                continue;
            }
            let Some(facts) = cert.ari_subject().cloned() else {
                continue;
            };
            cert.ari_fetching();
            let (work, spec, name) = (self.work.clone(), cert.spec.clone(), name.clone());
            let (slots, limit) = (self.ari_slots.clone(), self.ari_timeout);
            self.side.spawn(async move {
                let serial = facts.raw_serial.clone();
                let result = match slots.acquire_owned().await {
                    Ok(_permit) => {
                        match tokio::time::timeout(limit, work.renewal_window(spec, facts)).await {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(_) => Err(format!(
                                "no answer within {}",
                                humantime::format_duration(limit)
                            )),
                        }
                    }
                    Err(_) => Err("shutting down".to_string()),
                };
                Event::Ari(AriDone {
                    name,
                    serial,
                    result,
                })
            });
        }
    }

    /// The earliest moment the loop must act without an event: a certificate's deadline or its next
    /// renewal-window request (at most [`MAX_SLEEP`] from `now`).
    pub fn next_wake(&self) -> SystemTime {
        let now = self.now();
        self.certs
            .values()
            .flat_map(|c| [c.state().until(), c.ari_wake()])
            .flatten()
            .min()
            .unwrap_or(now + MAX_SLEEP)
            .min(now + MAX_SLEEP)
    }

    /// A worker finished: record the outcome and let the certificate settle into its next state.
    fn on_job(&mut self, joined: Joined<JobDone>) {
        let now = self.now();
        self.dirty = true;
        let done = match joined {
            Joined::Done(done) => done,
            Joined::Panicked { name, reason } => {
                tracing::error!(cert_name = %name, "the worker task failed: {reason}");
                if let Some(cert) = self.certs.get_mut(&name) {
                    cert.failed(Failure {
                        at: now,
                        kind: FailureKind::Transient,
                        retry_after: None,
                        message: format!("the worker task failed: {reason}"),
                    });
                    let _ = cert.finished(now, self.mode != Mode::Daemon);
                }
                return;
            }
        };
        let once = self.mode != Mode::Daemon;
        let Some(cert) = self.certs.get_mut(&done.name) else {
            return; // its spec was removed meanwhile
        };
        let result = match done.result {
            JobResult::Changed(i) => {
                cert.inspected(i);
                cert.log_replaced();
                let _ = cert.finished(now, false);
                return;
            }
            JobResult::Renewal { result, after } => {
                self.metrics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(&done.name, &done.spec.account, &result);
                record_renewal(cert, &done.spec, &result, now);
                cert.inspected(after);
                result.map(RunResult::Renewed)
            }
            JobResult::Redeploy { result, after } => {
                record_redeploy(cert, &result, now);
                cert.inspected(after);
                let _ = cert.finished(now, once);
                return;
            }
        };
        let _ = cert.finished(now, once);
        if once {
            let r = match result {
                Ok(r) => r,
                Err(RenewError::Busy) => RunResult::Busy { member: None },
                Err(RenewError::Cluster(crate::cluster::ClusterError::Held { member, .. })) => {
                    RunResult::Busy {
                        member: Some(member),
                    }
                }
                Err(e) => RunResult::Failed(e),
            };
            self.results.insert(done.name, r);
        }
    }

    /// A side task reported. Returns the outcome of a configuration load, if it was one.
    fn on_event(&mut self, event: Event<W>) -> Option<Applied> {
        let now = self.now();
        self.dirty = true;
        match event {
            Event::Ari(done) => {
                if let Some(cert) = self.certs.get_mut(&done.name) {
                    // RFC 9773 §4.2: the daemon wakes itself at a random moment in the window; a
                    // one-shot run cannot (its next run is unknown), so the window's start is its moment.
                    let pick = match self.mode {
                        Mode::Daemon => ari::random_moment,
                        Mode::Once { .. } => ari::window_start,
                    };
                    ari::apply(cert, &mut self.ari_failures, done, now, pick);
                    cert.replan(now);
                }
                None
            }
            Event::Inspected(results) => {
                for (name, i) in results {
                    // A running worker reads live/ itself when it finishes.
                    if let Some(cert) = self
                        .certs
                        .get_mut(&name)
                        .filter(|c| !c.state().is_running())
                    {
                        if cert.inspected(i) {
                            cert.log_replaced();
                        }
                        cert.replan(now);
                    }
                }
                None
            }
            Event::Loaded(loaded) => Some(self.apply_load(*loaded)),
        }
    }

    /// Put a loaded configuration in force (or keep the old one, saying why). The worker bound moves
    /// to the new `workers` for the jobs started from now on; running jobs are never more than the
    /// bound they were started under, and no new one starts while they are at the new bound.
    pub fn apply_load(&mut self, loaded: Result<Loaded<W>, String>) -> Applied {
        let in_flight = self.loading.take().unwrap_or(LoadKind::Full);
        self.dirty = true;
        let loaded = match loaded {
            Ok(l) => l,
            Err(reason) => {
                // A refused spec change keeps the old specs; a refused SIGHUP says so until the next one.
                tracing::error!(message_id = message_id::CONFIG_INVALID, error = %reason,
                    "reload refused; the previous configuration stays in force");
                match in_flight {
                    LoadKind::Full => self.reload_error = Some(format!("reload refused: {reason}")),
                    LoadKind::Specs => self.spec_errors = Some(reason.clone()),
                }
                return Applied::Refused {
                    kind: in_flight,
                    reason,
                };
            }
        };
        let kind = loaded.kind;
        let accounts_changed = loaded.settings.accounts != self.settings.accounts;
        self.pool.set_limit(loaded.settings.workers);
        self.settings = loaded.settings;
        self.work = loaded.work;
        let hup = kind == LoadKind::Full;
        let inspections = loaded.inspections;
        let redeploy_now: Vec<String> = if hup {
            inspections
                .iter()
                .filter(|(_, i)| i.redeploy)
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.sync_certs(inspections, &BTreeMap::new());
        let now = self.now();
        for cert in self.certs.values_mut() {
            if accounts_changed {
                // Windows come from an account's CA: another CA or account, other windows.
                cert.ari = cert::Ari::Ask {
                    at: SystemTime::UNIX_EPOCH,
                };
            }
            if redeploy_now.contains(&cert.name) {
                // The administrator may have fixed a server's configuration: retry pending deploys now.
                cert.redeploy = Redeploy::Pending { now: true };
            }
            cert.replan(now);
        }
        self.spec_errors = loaded.spec_errors;
        if hup {
            self.reload_error = None;
            tracing::info!(
                message_id = message_id::CONFIG_RELOADED,
                certificates = self.certs.len(),
                "configuration reloaded"
            );
        }
        Applied::Yes {
            kind,
            metrics_listener: loaded.metrics_listener,
        }
    }

    /// Ask `loader` for the configuration in a task (one at a time; a request meanwhile runs after it).
    pub fn request_load(&mut self, kind: LoadKind, loader: &Loader<W>) {
        if self.loading.is_some() {
            self.load_again = Some(match (self.load_again, kind) {
                (Some(LoadKind::Full), _) | (_, LoadKind::Full) => LoadKind::Full,
                _ => LoadKind::Specs,
            });
            return;
        }
        self.loading = Some(kind);
        let fut = loader(kind, self.settings.clone(), self.work.clone());
        self.side
            .spawn(async move { Event::Loaded(Box::new(fut.await)) });
    }

    /// A load that was asked for while another ran.
    pub fn pending_load(&mut self) -> Option<LoadKind> {
        if self.loading.is_some() {
            return None;
        }
        self.load_again.take()
    }

    /// Read `live/` of these certificates again (in a task).
    pub fn inspect(&mut self, names: Vec<String>) {
        let specs: Vec<Arc<CertSpec>> = names
            .iter()
            .filter_map(|n| self.certs.get(n))
            .map(|c| c.spec.clone())
            .collect();
        if specs.is_empty() {
            return;
        }
        let fut = self.work.clone().inspect(specs);
        self.side.spawn(async move { Event::Inspected(fut.await) });
    }

    /// The next events of the workers and the side tasks: waits for one, then takes every other one that
    /// is already there, so that a burst (1000 renewal-window answers at start) costs one turn of the loop,
    /// not one each. Pending forever when nothing runs. Returns the outcome of a configuration load, if one
    /// was among them.
    pub async fn next_event(&mut self) -> Option<Applied> {
        let room = self.pool.room();
        let mut applied = tokio::select! {
            joined = self.pool.join_next() => {
                self.on_job(joined);
                None
            }
            Some(Ok(event)) = self.side.join_next() => self.on_event(event),
            // A renewal parked (waiting for DNS or the CA) and gave its place back: start what waits.
            _ = room => None,
        };
        while let Some(joined) = self.pool.try_join_next() {
            self.on_job(joined);
        }
        while let Some(event) = self.side.try_join_next() {
            if let Ok(event) = event {
                applied = self.on_event(event).or(applied);
            }
        }
        applied
    }

    /// Whether `renewd renew` is done with every certificate.
    pub fn all_finished(&self) -> bool {
        self.certs
            .values()
            .all(|c| *c.state() == CertState::Finished)
            && self.pool.is_empty()
    }

    /// The results of a `renewd renew` run.
    pub fn take_results(&mut self) -> BTreeMap<String, RunResult> {
        std::mem::take(&mut self.results)
    }

    /// Shutdown: nothing new starts, renewal-window requests stop; running workers get `grace`, then are
    /// cancelled (a renewal removes its TXT values before it returns) and get [`CLEANUP_GRACE`] for that.
    pub async fn shutdown(&mut self, grace: Duration) {
        self.side.abort_all();
        tracing::info!(running = self.pool.running(), "stopping");
        let deadline = tokio::time::Instant::now() + grace;
        let mut cancelled = false;
        while !self.pool.is_empty() {
            tokio::select! {
                joined = self.pool.join_next() => self.on_job(joined),
                _ = tokio::time::sleep_until(deadline), if !cancelled => {
                    tracing::warn!("grace period over: cancelling the renewals still running");
                    let _ = self.cancel.send(true);
                    cancelled = true;
                }
                _ = tokio::time::sleep_until(deadline + CLEANUP_GRACE), if cancelled => {
                    tracing::warn!(running = self.pool.running(),
                        "renewals did not end after their cancellation; their TXT values stay in the cleanup journal for the next start");
                    self.pool.abort_all();
                    break;
                }
            }
        }
    }

    /// Whether a snapshot would show something new since the last one.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The state of every certificate for status.json, the metrics and `STATUS=`.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let certs: Vec<CertView> = self.certs.values().map(|c| view(c, now)).collect();
        let config_error = self.config_error();
        Snapshot {
            at: now,
            certs_dir: self.settings.certs_dir.clone(),
            metrics_file: self.settings.metrics_file.clone(),
            status_line: status_line(
                &self.certs,
                &self.settings,
                config_error.as_deref(),
                self.cluster_down.as_ref(),
                now,
            ),
            config_error,
            certs,
            cluster: self
                .settings
                .cluster
                .as_ref()
                .map(|c| (c.member.clone(), self.cluster_down.clone())),
        }
    }

    /// News from the cluster. A version to install: a redeploy job (it installs the cluster's version
    /// and deploys it) unless a worker runs for the certificate. A lock given back, or etcd answering
    /// again: certificates waiting for that plan again at once.
    pub fn on_cluster(&mut self, news: ClusterNews) {
        let now = self.now();
        self.dirty = true;
        match news {
            ClusterNews::Versions(names) => {
                for name in names {
                    if let Some(cert) = self.certs.get_mut(&name) {
                        cert.locked_until = None;
                        cert.redeploy = Redeploy::Pending { now: true };
                        cert.replan(now);
                    }
                }
            }
            ClusterNews::Unlocked(names) => {
                for name in names {
                    if let Some(cert) = self
                        .certs
                        .get_mut(&name)
                        .filter(|c| matches!(c.state(), CertState::Locked { .. }))
                    {
                        cert.locked_until = None;
                        cert.replan(now);
                    }
                }
            }
            ClusterNews::Down { since, error } => {
                self.cluster_down = Some(ClusterDown { since, error });
            }
            ClusterNews::Up => {
                self.cluster_down = None;
                for cert in self
                    .certs
                    .values_mut()
                    .filter(|c| matches!(c.state(), CertState::Locked { .. }))
                {
                    cert.locked_until = None;
                    cert.replan(now);
                }
            }
        }
    }

    /// The work in force (the engine of the configuration applied last).
    pub fn work(&self) -> &Arc<W> {
        &self.work
    }

    fn config_error(&self) -> Option<String> {
        match (&self.reload_error, &self.spec_errors) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (Some(x), None) | (None, Some(x)) => Some(x.clone()),
            (None, None) => None,
        }
    }
}

/// A worker's job: read `live/` again first (a certificate another process renewed meanwhile is not
/// ordered again), then renew or redeploy, then read `live/` for the plan.
async fn run_job<W: Work>(
    work: Arc<W>,
    spec: Arc<CertSpec>,
    job: Job,
    planned: Option<Option<Vec<u8>>>,
    cancel: watch::Receiver<bool>,
) -> JobResult {
    let inspect = |work: Arc<W>, spec: Arc<CertSpec>| async move {
        work.inspect(vec![spec])
            .await
            .pop()
            .map(|(_, i)| i)
            .unwrap_or(Inspection {
                live: Ok(None),
                redeploy: false,
            })
    };
    if let (Job::Renew, Some(planned)) = (job, planned) {
        let now = inspect(work.clone(), spec.clone()).await;
        let serial = now
            .live
            .as_ref()
            .ok()
            .and_then(|l| l.as_ref())
            .map(|l| l.facts.raw_serial.clone());
        if serial != planned {
            return JobResult::Changed(now);
        }
    }
    match job {
        Job::Renew => {
            let result = work.clone().renew(spec.clone(), cancel).await;
            let after = inspect(work, spec).await;
            JobResult::Renewal { result, after }
        }
        Job::Redeploy => {
            let result = work.clone().redeploy(spec.clone()).await;
            let after = inspect(work, spec).await;
            JobResult::Redeploy { result, after }
        }
    }
}

fn random_jitter() -> Duration {
    Duration::from_secs(rand::random_range(0..=scheduler::MAX_JITTER.as_secs()))
}

/// Record a finished renewal in the certificate's history, with its journal line.
/// How control was proven, in words: `dns-01`, `dns-persist-01 (standing record)`.
pub fn proof(r: &Renewed) -> String {
    match (r.challenge, r.persist_written) {
        (ChallengeKind::Dns01, _) => "dns-01".to_string(),
        (ChallengeKind::DnsPersist01, 0) => {
            "dns-persist-01 (standing record, no DNS update)".to_string()
        }
        (ChallengeKind::DnsPersist01, n) => format!("dns-persist-01 ({n} record(s) written)"),
    }
}

fn record_renewal(
    cert: &mut Cert,
    spec: &CertSpec,
    result: &Result<Renewed, RenewError>,
    now: SystemTime,
) {
    let name = cert.name.clone();
    match result {
        Ok(r) if r.renewed_by.is_some() => {
            let by = r.renewed_by.as_deref().unwrap_or_default();
            tracing::info!(
                message_id = message_id::DEPLOYED,
                cert_name = %name,
                cert_serial = %r.serial,
                cert_not_after = %humantime::format_rfc3339_seconds(r.not_after),
                "{name}: member {by} renewed it; its version (serial {}) is installed and deployed here",
                r.serial
            );
            cert.succeeded(now);
        }
        Ok(r) => {
            tracing::info!(
                message_id = message_id::RENEWED,
                cert_name = %name,
                cert_domains = %spec.domains.join(","),
                acme_account = %spec.account,
                acme_order_url = %r.order_url,
                cert_serial = %r.serial,
                cert_not_after = %humantime::format_rfc3339_seconds(r.not_after),
                dns_zone = %r.zones.join(","),
                acme_challenge = %r.challenge,
                renewal_phases = %r.phases,
                "renewed {name} (serial {}, expires {}; control proven by {})",
                r.serial,
                humantime::format_rfc3339_seconds(r.not_after),
                proof(r)
            );
            cert.succeeded(now);
        }
        Err(RenewError::Busy) => {
            cert.locked_until = Some(now + BUSY_RETRY);
            tracing::info!(cert_name = %name, "another renewd process holds this certificate; retrying later");
        }
        Err(RenewError::Cluster(e)) if waits_for_cluster(e) => {
            // Another member renews it, or etcd cannot tell who may: the watch (lock given back, a
            // new version) or etcd answering again wakes it; CLUSTER_HOLD is the backstop.
            cert.locked_until = Some(now + CLUSTER_HOLD);
            tracing::info!(cert_name = %name, "not renewed here: {e}");
        }
        Err(RenewError::Cancelled) => {
            tracing::warn!(cert_name = %name, "renewal cancelled by shutdown");
        }
        Err(e) => {
            let (kind, retry_after) = scheduler::classify(e, now);
            cert.failed(Failure {
                at: now,
                kind,
                retry_after,
                message: e.to_string(),
            });
            tracing::error!(
                message_id = message_id::FAILED,
                cert_name = %name,
                cert_domains = %spec.domains.join(","),
                acme_account = %spec.account,
                failures = cert.history.consecutive_failures,
                permanent = kind == FailureKind::Permanent,
                "renewal of {name} failed: {e}"
            );
        }
    }
}

/// Record the end of a redeploy: success clears the failure history; a failure backs off like a failed
/// renewal (the deploy module has logged it with MESSAGE_ID reload-failed).
fn record_redeploy(cert: &mut Cert, result: &Result<(), RenewError>, now: SystemTime) {
    match result {
        Ok(()) => {
            cert.history.consecutive_failures = 0;
            cert.history.last_failure = None;
            cert.history.last_success = Some(now);
            tracing::info!(cert_name = %cert.name, "the live certificate is deployed");
        }
        Err(RenewError::Busy) => cert.locked_until = Some(now + BUSY_RETRY),
        Err(RenewError::Cluster(e)) if waits_for_cluster(e) => {
            cert.locked_until = Some(now + CLUSTER_HOLD);
        }
        Err(e) => {
            if !matches!(e, RenewError::Deploy(_)) {
                // Deploy failures are logged by the deploy module (reload-failed); the rest here.
                tracing::error!(cert_name = %cert.name, "installing {} failed: {e}", cert.name);
            }
            let (kind, retry_after) = scheduler::classify(e, now);
            cert.failed(Failure {
                at: now,
                kind,
                retry_after,
                message: e.to_string(),
            });
        }
    }
}

/// One certificate as a snapshot shows it.
fn view(c: &Cert, now: SystemTime) -> CertView {
    let live = c.live_cert();
    let ready = live.is_some_and(|l| {
        l.key_matches
            && l.facts.names_match(&c.spec.domains)
            && l.facts.not_before <= now
            && now < l.facts.not_after
    }) && c.history.consecutive_failures == 0;
    CertView {
        name: c.name.clone(),
        account: c.spec.account.clone(),
        domains: c.spec.domains.clone(),
        serial: live.map(|l| l.facts.serial.clone()),
        not_after: live.map(|l| l.facts.not_after),
        next_renewal: c.decision.at,
        next_reason: c.decision.summary.clone(),
        state: c.state().name(),
        history: c.history.clone(),
        ari: c.ari.window().cloned(),
        ready,
        profile: c.spec.profile.clone(),
        challenge: c.spec.challenge,
    }
}

/// The `STATUS=` text.
fn status_line(
    certs: &BTreeMap<String, Cert>,
    settings: &Settings,
    config_error: Option<&str>,
    cluster_down: Option<&ClusterDown>,
    now: SystemTime,
) -> String {
    if certs.is_empty() && config_error.is_none() {
        // A fresh install: say what to do rather than "0 certificates".
        return format!(
            "no certificates yet: add one NAME.yaml spec per certificate to {}",
            settings.certs_dir.display()
        );
    }
    let decisions: Vec<(String, scheduler::Decision, bool)> = certs
        .iter()
        .map(|(n, c)| (n.clone(), c.decision.clone(), c.history.failing()))
        .collect();
    let renewing: Vec<&str> = certs
        .iter()
        .filter(|(_, c)| c.state().is_running())
        .map(|(n, _)| n.as_str())
        .collect();
    let mut text = scheduler::status_line_renewing(&decisions, &renewing, now);
    if let Some(down) = cluster_down {
        text.push_str(&format!(
            "; etcd unreachable since {}: no renewals",
            humantime::format_rfc3339_seconds(down.since)
        ));
    }
    if let Some(e) = config_error {
        text.push_str("; ");
        text.push_str(e);
    }
    text
}

/// What the loop's owner does with the outputs each turn.
pub trait Outputs {
    /// The loop went round: publish what changed.
    fn publish(&mut self, snapshot: Option<Snapshot>);
    /// The earliest moment the outputs need the loop (the next watchdog ping), if any.
    fn deadline(&self) -> Option<tokio::time::Instant>;
    /// A SIGHUP was received: the configuration is being loaded.
    fn reloading(&mut self);
    /// A load ended (applied or refused).
    fn loaded(&mut self, applied: Applied);
    /// SIGTERM: the loop stops.
    fn stopping(&mut self);
}

/// `renewd run`'s loop: until `Input::Stop` (or the inputs close), then the shutdown.
pub async fn run<W: Work>(
    core: &mut Scheduler<W>,
    inputs: &mut mpsc::UnboundedReceiver<Input>,
    loader: &Loader<W>,
    out: &mut impl Outputs,
) {
    loop {
        core.step();
        let snapshot = core.take_dirty().then(|| core.snapshot());
        out.publish(snapshot);
        if let Some(kind) = core.pending_load() {
            core.request_load(kind, loader);
        }
        let now = core.now();
        let mut deadline = scheduler::deadline(core.next_wake(), now, tokio::time::Instant::now());
        if let Some(ping) = out.deadline() {
            deadline = deadline.min(ping);
        }
        tokio::select! {
            // A certificate's deadline (or the daily replan) passed, not just a watchdog ping: the
            // STATUS= line's "next: … in 3d 4h" is refreshed too.
            _ = tokio::time::sleep_until(deadline) => {
                if core.next_wake() <= core.now() {
                    core.dirty = true;
                }
            }
            applied = core.next_event() => {
                if let Some(applied) = applied {
                    out.loaded(applied);
                }
            }
            input = inputs.recv() => match input {
                Some(Input::Reload) => {
                    out.reloading();
                    core.request_load(LoadKind::Full, loader);
                }
                Some(Input::SpecsChanged) => core.request_load(LoadKind::Specs, loader),
                Some(Input::LiveChanged(names)) => core.inspect(names),
                Some(Input::Cluster(news)) => core.on_cluster(news),
                Some(Input::Stop) | None => break,
            },
        }
    }
    out.stopping();
    let grace = core.settings.stop_grace;
    core.shutdown(grace).await;
    out.publish(Some(core.snapshot()));
}

/// `renewd renew`'s loop: until every certificate is finished, or `stop` fires (then the shutdown).
pub async fn run_once<W: Work>(
    core: &mut Scheduler<W>,
    stop: impl Future<Output = ()>,
) -> BTreeMap<String, RunResult> {
    tokio::pin!(stop);
    loop {
        core.step();
        if core.all_finished() {
            break;
        }
        let now = core.now();
        let deadline = scheduler::deadline(core.next_wake(), now, tokio::time::Instant::now());
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = core.next_event() => {}
            _ = &mut stop => {
                let grace = core.settings.stop_grace;
                core.shutdown(grace).await;
                break;
            }
        }
    }
    core.take_results()
}

#[cfg(test)]
mod tests;
