//! `renewd run`: the long-running daemon.
//!
//! One task (the loop in [`run`]) owns the plan: for every certificate it keeps the spec, the facts of
//! the live certificate and the failure history, asks the pure [`scheduler::decide`] when to act, starts
//! due renewals on a worker pool bounded by `workers`, and sleeps until the earliest deadline. It is woken
//! early by finished renewals, spec changes (a debounced watcher on `certs_dir`) and signals. The watchdog
//! ping is sent from this loop, so a stuck loop stops the pings and systemd restarts the service.
//!
//! ARI (RFC 9773): for every certificate with a live certificate the loop keeps the CA's suggested
//! renewal window and a moment picked uniformly at random inside it ([`AriWindow`]). Windows are fetched
//! by tasks (at most [`ARI_FETCHES`] at once, each bounded by [`ARI_FETCH_TIMEOUT`]) that report back over
//! a channel like renewals do, so a slow CA never delays the loop or its watchdog ping. A window is
//! fetched when there is none yet, again when its Retry-After (clamped to [`ARI_REFETCH_MIN`,
//! `ARI_REFETCH_MAX`]) has passed, and anew for every new certificate. A changed window gets a new random
//! moment, so a window moved earlier (ahead of a mass revocation) is followed at once. A failed fetch is
//! retried after [`ARI_ERROR_RETRY`], and the certificate keeps the window it had (or, without one, the
//! non-ARI rule).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::{self, CertSpec, ConfigErrors, Settings};
use crate::deploy;
use crate::logging::message_id;
use crate::metrics::{CertSnapshot, Metrics};
use crate::renew::{read_live, Engine, LiveCert, LiveError, RenewError, Renewed};
use crate::scheduler::{self, AriWindow, CertInput, Decision, Failure, FailureKind, History};
use crate::state::{write_atomic, StateDir};
use crate::systemd::Notifier;

/// How long a certificate waits when another process holds its lock.
const BUSY_RETRY: Duration = Duration::from_secs(60);
/// The watcher's debounce: editors write a spec in several steps.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(300);
/// Longest single sleep when nothing is due and there is no watchdog.
const MAX_SLEEP: Duration = Duration::from_secs(24 * 3600);
/// renewalInfo requests in flight at once (separate from the renewal workers).
pub const ARI_FETCHES: usize = 4;
/// One renewalInfo request (including the account's first contact with the CA) may take this long.
pub const ARI_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// The CA's Retry-After for renewalInfo is clamped to [ARI_REFETCH_MIN, ARI_REFETCH_MAX].
pub const ARI_REFETCH_MIN: Duration = Duration::from_secs(60);
pub const ARI_REFETCH_MAX: Duration = Duration::from_secs(24 * 3600);
/// After a failed renewalInfo request, ask again after this long.
pub const ARI_ERROR_RETRY: Duration = Duration::from_secs(3600);
/// A CA without renewalInfo is asked again (a free check of its cached directory) after this long.
const ARI_UNSUPPORTED_RETRY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(ConfigErrors),
    #[error(transparent)]
    Renew(#[from] RenewError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// What the loop knows about one certificate.
struct Cert {
    spec: Arc<CertSpec>,
    live: Result<Option<LiveCert>, LiveError>,
    history: History,
    jitter: Duration,
    running: bool,
    decision: Option<Decision>,
    /// Not before this moment (another process held the lock).
    not_before: Option<SystemTime>,
    /// The CA's renewal window for the live certificate with this raw serial.
    ari: Option<(Vec<u8>, AriWindow)>,
    /// A renewalInfo request is in flight.
    ari_fetching: bool,
    /// Without a window: do not ask before this moment (the last request failed, or no ARI).
    ari_retry_at: Option<SystemTime>,
    /// The live files still have to be installed on the deploy targets (see [`deploy::needs_redeploy`]).
    redeploy: bool,
    /// Retry the redeploy at once (SIGHUP: the administrator fixed the server's configuration).
    redeploy_now: bool,
}

impl Cert {
    /// When to install the live files on the deploy targets again: at once, or after the scheduler's
    /// backoff from the last failure (SIGHUP skips the wait). None: nothing to redeploy.
    fn redeploy_at(&self, now: SystemTime) -> Option<SystemTime> {
        if !self.redeploy {
            return None;
        }
        if self.redeploy_now || self.history.consecutive_failures == 0 {
            return Some(now);
        }
        let failure = self.history.last_failure.as_ref()?;
        let time_left = self
            .live
            .as_ref()
            .ok()
            .and_then(|l| l.as_ref())
            .and_then(|l| l.facts.not_after.duration_since(now).ok());
        Some(failure.at + scheduler::backoff(self.history.consecutive_failures, time_left))
    }

    /// The live certificate, when it is one the CA can be asked about (it names its issuer's key).
    fn ari_subject(&self) -> Option<&crate::certs::CertFacts> {
        self.live
            .as_ref()
            .ok()
            .and_then(|l| l.as_ref())
            .map(|l| &l.facts)
            .filter(|f| f.authority_key_id.is_some())
    }

    /// Forget the window (a new certificate, or another CA or account).
    fn drop_ari(&mut self) {
        self.ari = None;
        self.ari_retry_at = None;
    }

    /// Read `live/NAME` again; true when another process installed a different certificate there
    /// (then the plan starts from it: no ARI window of the old one, no busy wait).
    fn reread_live(&mut self, state: &StateDir, name: &str) -> bool {
        let fresh = read_live(state, name);
        let serial = |l: &Result<Option<LiveCert>, LiveError>| {
            l.as_ref()
                .ok()
                .and_then(|l| l.as_ref())
                .map(|l| l.facts.raw_serial.clone())
        };
        if serial(&fresh) == serial(&self.live) {
            return false;
        }
        if let Ok(Some(l)) = &fresh {
            tracing::info!(cert_name = %name, cert_serial = %l.facts.serial,
                cert_not_after = %humantime::format_rfc3339_seconds(l.facts.not_after),
                "live certificate replaced by another process (renewd renew, import); replanned");
        }
        self.live = fresh;
        self.drop_ari();
        self.not_before = None;
        true
    }

    /// The scheduler's decision for this certificate at `now`.
    fn decide(&self, now: SystemTime) -> Decision {
        scheduler::decide(
            &CertInput {
                spec: &self.spec,
                live: &self.live,
                ari: self.ari.as_ref().map(|(_, w)| w),
                history: &self.history,
                jitter: self.jitter,
            },
            now,
        )
    }

    /// Whether the renewalInfo of the live certificate should be requested now.
    fn ari_due(&self, now: SystemTime) -> bool {
        if self.running || self.ari_fetching || self.ari_subject().is_none() {
            return false;
        }
        match &self.ari {
            Some((_, w)) => w.refetch_at <= now,
            None => self.ari_retry_at.is_none_or(|t| t <= now),
        }
    }

    /// When the loop must wake up for this certificate's next renewalInfo request.
    fn ari_wake(&self) -> Option<SystemTime> {
        if self.running || self.ari_fetching || self.ari_subject().is_none() {
            return None;
        }
        match &self.ari {
            Some((_, w)) => Some(w.refetch_at),
            None => Some(self.ari_retry_at.unwrap_or(SystemTime::UNIX_EPOCH)),
        }
    }
}

/// A finished renewalInfo request, sent back to the loop.
struct AriDone {
    name: String,
    /// The raw serial of the certificate it was asked for.
    serial: Vec<u8>,
    result: Result<Option<(SystemTime, SystemTime, Duration)>, String>,
}

/// The window to keep after the CA answered (start, end, Retry-After) at `now`: the moment picked in
/// `old` stays when the window did not change; a new or changed window gets a new moment from `pick`
/// (uniform in [start, end] in the daemon). So a window moved earlier is followed at once: its moment
/// lies inside the new window, not at the old one. The next request is due after the Retry-After,
/// clamped to [[`ARI_REFETCH_MIN`], [`ARI_REFETCH_MAX`]].
pub fn next_ari_window(
    old: Option<&AriWindow>,
    (start, end, retry_after): (SystemTime, SystemTime, Duration),
    now: SystemTime,
    pick: impl FnOnce(SystemTime, SystemTime) -> SystemTime,
) -> AriWindow {
    let refetch_at = now + retry_after.clamp(ARI_REFETCH_MIN, ARI_REFETCH_MAX);
    let chosen = match old {
        Some(w) if w.start == start && w.end == end => w.chosen,
        _ => pick(start, end),
    };
    AriWindow {
        start,
        end,
        chosen,
        refetch_at,
    }
}

/// A moment uniformly at random in [start, end] (to the millisecond).
fn random_moment(start: SystemTime, end: SystemTime) -> SystemTime {
    let span = end.duration_since(start).unwrap_or_default().as_millis() as u64;
    start + Duration::from_millis(rand::random_range(0..=span))
}

/// A finished renewal, sent back to the loop.
struct Done {
    name: String,
    spec: Arc<CertSpec>,
    outcome: Outcome,
}

/// What a worker did.
enum Outcome {
    /// A renewal (order, validation, install, deploy).
    Renewal(Result<Renewed, RenewError>),
    /// The live files installed again on the deploy targets, with their reloads, without a new order
    /// (after a failed configuration test or reload, or when a target differs from `live/`).
    Redeploy(Result<(), RenewError>),
}

/// The configuration currently in force, and the specs that failed to load (kept at their last
/// valid version, or absent).
struct Loaded {
    settings: Arc<Settings>,
    global: config::Global,
}

/// `status.json`: what `renewd status` and monitoring read. Stable field names.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatusFile {
    pub updated_at: Option<String>,
    /// The problem with the configuration, when the last reload or spec change was refused.
    pub config_error: Option<String>,
    pub certificates: BTreeMap<String, CertStatus>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CertStatus {
    /// The CA's suggested renewal window (ARI) and the moment picked in it, when the CA offers ARI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_window: Option<AriStatus>,
    pub domains: Vec<String>,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub next_renewal: Option<String>,
    pub next_reason: Option<String>,
    /// "ok", "failed", or null before the first attempt.
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    #[serde(default)]
    pub history: History,
}

/// The ARI part of [`CertStatus`] (RFC 3339 times).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AriStatus {
    pub start: String,
    pub end: String,
    pub chosen: String,
    pub refetch_at: String,
}

/// Run the daemon until SIGTERM/SIGINT. Returns Err only for start-up failures.
pub async fn run(config_path: &Path, notifier: Notifier) -> Result<(), DaemonError> {
    let mut sighup = signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;

    let (mut loaded, spec_errors) = load_all(config_path, None).map_err(DaemonError::Config)?;
    // Why the last SIGHUP was refused (kept until a reload succeeds), and which specs are invalid.
    let mut reload_error: Option<String> = None;
    let mut spec_error = spec_errors;
    let mut last_status = String::new();
    let mut engine = Arc::new(Engine::new(loaded.settings.clone())?);
    let (removed, failed) = engine.recover().await;
    if removed + failed > 0 {
        tracing::info!(removed, failed, "cleanup journal: stale TXT values handled");
    }
    let state = StateDir::new(&loaded.settings.state_dir);
    let previous = read_status(&state);
    let mut certs: BTreeMap<String, Cert> = BTreeMap::new();
    sync_certs(&mut certs, &loaded.settings, &state, &previous);

    let (spec_tx, mut spec_rx) = mpsc::channel::<()>(1);
    let mut watcher = watch_specs(&loaded.settings.certs_dir, spec_tx.clone());
    // live/NAME switched by another process (`renewd renew`, `renewd import`): re-read it.
    let (live_tx, mut live_rx) = mpsc::unbounded_channel::<Vec<String>>();
    let _live_watcher = watch_live(&state.root().join("live"), live_tx);
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(64);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut pool = Arc::new(Semaphore::new(loaded.settings.workers));
    let mut tasks: JoinSet<()> = JoinSet::new();
    // renewalInfo requests: never awaited at shutdown (dropping the set aborts them).
    let (ari_tx, mut ari_rx) = mpsc::channel::<AriDone>(64);
    let ari_pool = Arc::new(Semaphore::new(ARI_FETCHES));
    let mut ari_tasks: JoinSet<()> = JoinSet::new();
    let mut ari_failures = AriFailures::default();
    let mut status_written: Option<Vec<u8>> = None;
    let watchdog = notifier.watchdog_interval();
    let mut next_ping = tokio::time::Instant::now();
    let mut metrics = Metrics::new();
    // The listener serves the text the loop last published; it is replaced when a reload changes
    // `metrics_listen` and aborted when `run` returns. At start, an address that cannot be bound stops
    // the daemon; on reload it refuses the new configuration.
    let mut _metrics_server = match loaded.settings.metrics_listen {
        Some(addr) => Some(
            serve_metrics(addr, &metrics)
                .await
                .map_err(|e| DaemonError::Io {
                    context: format!("metrics_listen: cannot listen on {addr}"),
                    source: e,
                })?,
        ),
        None => None,
    };
    let mut ready_sent = false;

    loop {
        // Ask the CA for the renewal windows that are missing or stale (in tasks: never waits here).
        let now = SystemTime::now();
        while ari_tasks.try_join_next().is_some() {}
        for (name, cert) in certs.iter_mut() {
            // A window belongs to one certificate.
            let live_serial = cert.ari_subject().map(|f| f.raw_serial.clone());
            if cert
                .ari
                .as_ref()
                .is_some_and(|(s, _)| Some(s) != live_serial.as_ref())
            {
                cert.drop_ari();
            }
            if !cert.ari_due(now) {
                continue;
            }
            let Some(facts) = cert.ari_subject().cloned() else {
                continue;
            };
            cert.ari_fetching = true;
            let engine = engine.clone();
            let spec = cert.spec.clone();
            let name = name.clone();
            let tx = ari_tx.clone();
            let pool = ari_pool.clone();
            ari_tasks.spawn(async move {
                let result = match pool.acquire_owned().await {
                    Ok(_permit) => {
                        match tokio::time::timeout(
                            ARI_FETCH_TIMEOUT,
                            engine.renewal_window(&spec, &facts),
                        )
                        .await
                        {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(_) => Err(format!(
                                "no answer within {}",
                                humantime::format_duration(ARI_FETCH_TIMEOUT)
                            )),
                        }
                    }
                    Err(_) => Err("shutting down".to_string()),
                };
                let _ = tx
                    .send(AriDone {
                        name,
                        serial: facts.raw_serial,
                        result,
                    })
                    .await;
            });
        }

        // Start every due renewal the pool has room for.
        for (name, cert) in certs.iter_mut() {
            if cert.running {
                continue;
            }
            let mut decision = cert.decide(now);
            let blocked = cert.not_before.is_some_and(|t| t > now);
            // Before ordering: another process may have renewed it meanwhile (the watcher on live/
            // is not guaranteed to have told us yet, e.g. when our attempt found it locked).
            if decision.at <= now && !blocked && cert.reread_live(&state, name) {
                decision = cert.decide(now);
            }
            let redeploy_due = cert.redeploy_at(now).is_some_and(|t| t <= now);
            if decision.at > now && redeploy_due && !blocked {
                if let Ok(permit) = pool.clone().try_acquire_owned() {
                    cert.running = true;
                    cert.redeploy_now = false;
                    let spec = cert.spec.clone();
                    let name = name.clone();
                    let done = done_tx.clone();
                    let state = state.clone();
                    tracing::info!(cert_name = %name, "installing the live certificate on the deploy targets again");
                    let work_spec = spec.clone();
                    spawn_worker(&mut tasks, done, permit, name, spec, async move {
                        Outcome::Redeploy(redeploy(&state, &work_spec).await)
                    });
                }
            }
            if decision.at <= now && !blocked {
                if let Ok(permit) = pool.clone().try_acquire_owned() {
                    cert.running = true;
                    let engine = engine.clone();
                    let spec = cert.spec.clone();
                    let name = name.clone();
                    let done = done_tx.clone();
                    let cancel = cancel_rx.clone();
                    tracing::info!(cert_name = %name, reason = %decision.summary, "renewal starts");
                    let work_spec = spec.clone();
                    spawn_worker(&mut tasks, done, permit, name, spec, async move {
                        Outcome::Renewal(engine.renew_cancellable(&work_spec, cancel).await)
                    });
                }
            }
            cert.decision = Some(decision);
        }
        let config_error = join_errors(&reload_error, &spec_error);
        write_status(&state, &certs, config_error.as_deref(), &mut status_written);
        metrics.publish(
            &metric_snapshots(&certs, now),
            loaded.settings.metrics_file.as_deref(),
        );
        let text = status_text(
            &certs,
            &loaded.settings.certs_dir,
            config_error.as_deref(),
            now,
        );
        if text != last_status {
            notifier.status(&text);
            last_status = text;
        }
        if !ready_sent {
            notifier.ready();
            ready_sent = true;
            tracing::info!(
                message_id = message_id::STARTED,
                certificates = certs.len(),
                "renewd started"
            );
        }

        // Sleep until the earliest deadline, the next watchdog ping, or an event.
        let wake = next_wake(&certs, now);
        let mut deadline = tokio::time::Instant::now() + wake;
        if let Some(interval) = watchdog {
            if tokio::time::Instant::now() >= next_ping {
                notifier.watchdog();
                next_ping = tokio::time::Instant::now() + interval;
            }
            deadline = deadline.min(next_ping);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            Some(done) = done_rx.recv() => finish(&mut certs, &state, &mut metrics, done),
            Some(ari) = ari_rx.recv() => {
                // Every answer already there in one pass: one replan for many certificates.
                apply_ari(&mut certs, &mut ari_failures, ari);
                while let Ok(ari) = ari_rx.try_recv() {
                    apply_ari(&mut certs, &mut ari_failures, ari);
                }
            }
            Some(names) = live_rx.recv() => {
                refresh_live(&mut certs, &state, names);
                while let Ok(names) = live_rx.try_recv() {
                    refresh_live(&mut certs, &state, names);
                }
            }
            Some(()) = spec_rx.recv() => {
                match reload_specs(&mut loaded, &state, &mut certs) {
                    Ok(errors) => spec_error = errors,
                    Err(e) => spec_error = Some(e),
                }
            }
            _ = sighup.recv() => {
                notifier.reloading();
                // The administrator may have fixed a server's configuration: retry pending deploys now.
                // And may have renewed by hand: look at live/ again.
                let names: Vec<String> = certs.keys().cloned().collect();
                refresh_live(&mut certs, &state, names);
                for cert in certs.values_mut() {
                    cert.redeploy = needs_redeploy(&state, &cert.spec);
                    cert.redeploy_now = cert.redeploy;
                }
                match load_all(config_path, Some(&loaded)) {
                    Ok((new, spec_errors)) => {
                        let certs_dir_changed = new.settings.certs_dir != loaded.settings.certs_dir;
                        // Windows come from an account's CA: another CA or account, other windows.
                        let accounts_changed = new.settings.accounts != loaded.settings.accounts;
                        let listen_changed =
                            new.settings.metrics_listen != loaded.settings.metrics_listen;
                        // The daemon's state (status.json, locks, the live/ watcher, the certificates
                        // it plans from) lives in one directory for its whole run.
                        let new_engine = if new.settings.state_dir != loaded.settings.state_dir {
                            Err(format!(
                                "state_dir changed from {} to {}: restart renewd (systemctl restart renewd) to move to the new state directory",
                                loaded.settings.state_dir.display(),
                                new.settings.state_dir.display()
                            ))
                        } else {
                            engine.reconfigured(new.settings.clone()).map_err(|e| e.to_string())
                        };
                        let new_server = match (&new_engine, new.settings.metrics_listen) {
                            // Bound before the old listener closes: a refused reload keeps it.
                            (Ok(_), Some(addr)) if listen_changed => {
                                serve_metrics(addr, &metrics).await.map(Some).map_err(|e| {
                                    format!("metrics_listen: cannot listen on {addr}: {e}")
                                })
                            }
                            _ => Ok(None),
                        };
                        match new_engine.and_then(|e| new_server.map(|srv| (e, srv))) {
                            Ok((e, srv)) => {
                                if listen_changed {
                                    if srv.is_none() {
                                        tracing::info!("metrics listener stopped (metrics_listen removed)");
                                    }
                                    _metrics_server = srv;
                                }
                                engine = Arc::new(e);
                                if new.settings.workers != loaded.settings.workers {
                                    pool = Arc::new(Semaphore::new(new.settings.workers));
                                }
                                loaded = new;
                                sync_certs(&mut certs, &loaded.settings, &state, &BTreeMap::new());
                                if accounts_changed {
                                    certs.values_mut().for_each(Cert::drop_ari);
                                }
                                if certs_dir_changed {
                                    watcher = watch_specs(&loaded.settings.certs_dir, spec_tx.clone());
                                }
                                spec_error = spec_errors;
                                reload_error = None;
                                tracing::info!(message_id = message_id::CONFIG_RELOADED,
                                    certificates = certs.len(), "configuration reloaded");
                            }
                            Err(e) => {
                                reload_error = Some(format!("reload refused: {e}"));
                                tracing::error!(message_id = message_id::CONFIG_INVALID, error = %e,
                                    "reload refused; the previous configuration stays in force");
                            }
                        }
                    }
                    Err(errors) => {
                        for d in &errors.0 {
                            tracing::error!(message_id = message_id::CONFIG_INVALID, "{d}");
                        }
                        reload_error = Some(format!(
                            "reload refused, previous configuration kept: {}",
                            first_error(&errors)
                        ));
                    }
                }
                notifier.ready();
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    // Shutdown: no new renewals; in-flight ones get `stop_grace`, then are cancelled (their TXT values
    // are removed by the renewal itself before it returns).
    notifier.stopping();
    drop(watcher);
    ari_tasks.abort_all();
    let running = certs.values().filter(|c| c.running).count();
    tracing::info!(running, "stopping");
    let grace = tokio::time::sleep(loaded.settings.stop_grace);
    tokio::pin!(grace);
    let mut cancelled = false;
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            Some(done) = done_rx.recv() => finish(&mut certs, &state, &mut metrics, done),
            _ = &mut grace, if !cancelled => {
                tracing::warn!("grace period over: cancelling the renewals still running");
                let _ = cancel_tx.send(true);
                cancelled = true;
            }
        }
    }
    while let Ok(done) = done_rx.try_recv() {
        finish(&mut certs, &state, &mut metrics, done);
    }
    write_status(
        &state,
        &certs,
        join_errors(&reload_error, &spec_error).as_deref(),
        &mut status_written,
    );
    metrics.publish(
        &metric_snapshots(&certs, SystemTime::now()),
        loaded.settings.metrics_file.as_deref(),
    );
    Ok(())
}

fn join_errors(a: &Option<String>, b: &Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        context: context.to_string(),
        source,
    }
}

fn first_error(errors: &ConfigErrors) -> String {
    errors
        .0
        .iter()
        .find(|d| d.is_error())
        .map(|d| d.to_string())
        .unwrap_or_default()
}

/// Load the global file and every spec. An invalid global file is an error (at start: exit; on reload:
/// keep the old configuration). An invalid spec is logged and keeps its last valid version from
/// `previous` (or is left out); the returned string describes the invalid specs, for STATUS.
fn load_all(
    config_path: &Path,
    previous: Option<&Loaded>,
) -> Result<(Loaded, Option<String>), ConfigErrors> {
    let global = config::load_global(config_path)?;
    for w in &global.warnings {
        tracing::warn!("{w}");
    }
    let kept = previous.map(|p| &p.settings.certs);
    load_specs(global, kept)
        .map_err(|e| ConfigErrors(vec![config::Diagnostic::error(&e.0, None, e.1)]))
}

/// A spec file changed: reload the specs against the global configuration in force.
fn reload_specs(
    loaded: &mut Loaded,
    state: &StateDir,
    certs: &mut BTreeMap<String, Cert>,
) -> Result<Option<String>, String> {
    let global = loaded.global.clone_without_certs();
    let (new, errors) =
        load_specs(global, Some(&loaded.settings.certs)).map_err(|(_, message)| message)?;
    *loaded = new;
    sync_certs(certs, &loaded.settings, state, &BTreeMap::new());
    Ok(errors)
}

/// Load every spec of `certs_dir` into `global`. An invalid spec is logged and keeps its version from
/// `kept` (the configuration in force), or is left out; the returned string describes the invalid
/// specs, for STATUS. Err: the directory cannot be read (its path and the reason).
fn load_specs(
    mut global: config::Global,
    kept: Option<&BTreeMap<String, CertSpec>>,
) -> Result<(Loaded, Option<String>), (PathBuf, String)> {
    let dir = global.settings.certs_dir.clone();
    let files = config::spec_files(&dir)
        .map_err(|e| (dir.clone(), format!("cannot read the certs directory: {e}")))?;
    let mut invalid = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match global.load_spec(&file) {
            Ok(spec) => {
                global.settings.certs.insert(spec.name.clone(), spec);
            }
            Err(errors) => {
                for d in &errors.0 {
                    tracing::error!(message_id = message_id::CONFIG_INVALID, cert_name = %name, "{d}");
                }
                invalid.push(first_error(&errors));
                if let Some(old) = kept.and_then(|k| k.get(&name)) {
                    tracing::warn!(cert_name = %name, "keeping the last valid version of this spec");
                    global.settings.certs.insert(name, old.clone());
                }
            }
        }
    }
    let errors = (!invalid.is_empty()).then(|| {
        format!(
            "{} invalid spec(s): {}",
            invalid.len(),
            invalid.first().cloned().unwrap_or_default()
        )
    });
    let settings = Arc::new(global.settings.clone());
    Ok((Loaded { settings, global }, errors))
}

/// Make `certs` follow `settings.certs`: add new specs, drop removed ones (a running renewal finishes),
/// and for a changed spec take the new version and forget its failure history.
fn sync_certs(
    certs: &mut BTreeMap<String, Cert>,
    settings: &Settings,
    state: &StateDir,
    previous: &BTreeMap<String, CertStatus>,
) {
    certs.retain(|name, cert| {
        let keep = settings.certs.contains_key(name);
        if !keep {
            tracing::info!(cert_name = %name, running = cert.running, "spec removed: no longer planned");
        }
        keep
    });
    for (name, spec) in &settings.certs {
        match certs.get_mut(name) {
            Some(cert) => {
                if !same_spec(&cert.spec, spec) {
                    tracing::info!(cert_name = %name, "spec changed");
                    cert.spec = Arc::new(spec.clone());
                    cert.history = History::default();
                    cert.live = read_live(state, name);
                    cert.drop_ari();
                    cert.redeploy = needs_redeploy(state, spec);
                }
            }
            None => {
                certs.insert(
                    name.clone(),
                    Cert {
                        spec: Arc::new(spec.clone()),
                        live: read_live(state, name),
                        history: previous
                            .get(name)
                            .map(|s| s.history.clone())
                            .unwrap_or_default(),
                        jitter: random_jitter(),
                        running: false,
                        decision: None,
                        not_before: None,
                        ari: None,
                        ari_fetching: false,
                        ari_retry_at: None,
                        redeploy: needs_redeploy(state, spec),
                        redeploy_now: false,
                    },
                );
            }
        }
    }
}

fn same_spec(a: &CertSpec, b: &CertSpec) -> bool {
    a == b
}

fn random_jitter() -> Duration {
    Duration::from_secs(rand::random_range(0..=scheduler::MAX_JITTER.as_secs()))
}

/// Record a finished renewal.
fn finish(certs: &mut BTreeMap<String, Cert>, state: &StateDir, metrics: &mut Metrics, done: Done) {
    let now = SystemTime::now();
    let Some(cert) = certs.get_mut(&done.name) else {
        return; // its spec was removed meanwhile
    };
    cert.running = false;
    let spec = &done.spec;
    let result = match done.outcome {
        Outcome::Renewal(result) => result,
        Outcome::Redeploy(result) => {
            finish_redeploy(cert, state, &done.name, result, now);
            return;
        }
    };
    metrics.record(&done.name, &spec.account, &result);
    cert.redeploy = needs_redeploy(state, spec);
    match &result {
        Ok(r) => {
            cert.history = History {
                consecutive_failures: 0,
                last_success: Some(now),
                last_failure: None,
            };
            cert.live = read_live(state, &done.name);
            cert.not_before = None;
            // A new certificate: its window is asked for anew.
            cert.drop_ari();
            tracing::info!(
                message_id = message_id::RENEWED,
                cert_name = %done.name,
                cert_domains = %spec.domains.join(","),
                acme_account = %spec.account,
                acme_order_url = %r.order_url,
                cert_serial = %r.serial,
                cert_not_after = %humantime::format_rfc3339_seconds(r.not_after),
                dns_zone = %r.zones.join(","),
                "renewed {} (serial {}, expires {})",
                done.name,
                r.serial,
                humantime::format_rfc3339_seconds(r.not_after)
            );
        }
        Err(RenewError::Busy) => {
            cert.not_before = Some(now + BUSY_RETRY);
            tracing::info!(cert_name = %done.name, "another renewd process holds this certificate; retrying later");
        }
        Err(RenewError::Cancelled) => {
            tracing::warn!(cert_name = %done.name, "renewal cancelled by shutdown");
        }
        Err(e) => {
            let (kind, retry_after) = scheduler::classify(e, now);
            cert.history.consecutive_failures += 1;
            cert.history.last_failure = Some(Failure {
                at: now,
                kind,
                retry_after,
                message: e.to_string(),
            });
            tracing::error!(
                message_id = message_id::FAILED,
                cert_name = %done.name,
                cert_domains = %spec.domains.join(","),
                acme_account = %spec.account,
                failures = cert.history.consecutive_failures,
                permanent = kind == FailureKind::Permanent,
                "renewal of {} failed: {e}",
                done.name
            );
        }
    }
}

/// Run one worker job on the pool; its outcome goes back to the loop, and the permit is released first.
fn spawn_worker(
    tasks: &mut JoinSet<()>,
    done: mpsc::Sender<Done>,
    permit: tokio::sync::OwnedSemaphorePermit,
    name: String,
    spec: Arc<CertSpec>,
    work: impl std::future::Future<Output = Outcome> + Send + 'static,
) {
    let span = tracing::info_span!(
        "renewal",
        cert_name = %spec.name,
        cert_domains = %spec.domains.join(","),
        acme_account = %spec.account
    );
    tasks.spawn(tracing::Instrument::instrument(
        async move {
            let outcome = work.await;
            drop(permit);
            let _ = done
                .send(Done {
                    name,
                    spec,
                    outcome,
                })
                .await;
        },
        span,
    ));
}

/// Record the end of a redeploy: success clears the failure history; a failure backs off like a failed
/// renewal (the deploy module has logged it with MESSAGE_ID reload-failed).
fn finish_redeploy(
    cert: &mut Cert,
    state: &StateDir,
    name: &str,
    result: Result<(), RenewError>,
    now: SystemTime,
) {
    match result {
        Ok(()) => {
            cert.history.consecutive_failures = 0;
            cert.history.last_failure = None;
            cert.history.last_success = Some(now);
            tracing::info!(cert_name = %name, "the live certificate is deployed");
        }
        Err(RenewError::Busy) => cert.not_before = Some(now + BUSY_RETRY),
        Err(e) => {
            let (kind, retry_after) = scheduler::classify(&e, now);
            cert.history.consecutive_failures += 1;
            cert.history.last_failure = Some(Failure {
                at: now,
                kind,
                retry_after,
                message: e.to_string(),
            });
        }
    }
    cert.redeploy = needs_redeploy(state, &cert.spec);
}

/// Install the live files of `spec` on its deploy targets again, with reloads (holding its lock).
async fn redeploy(state: &StateDir, spec: &CertSpec) -> Result<(), RenewError> {
    let Some(_lock) = state
        .lock_cert(&spec.name)
        .map_err(|source| RenewError::Io {
            context: format!("cannot lock {}", spec.name),
            source,
        })?
    else {
        return Err(RenewError::Busy);
    };
    let files = state
        .read_live(&spec.name)
        .map_err(|source| RenewError::Io {
            context: format!("cannot read the live files of {}", spec.name),
            source,
        })?;
    match files {
        Some(files) => Ok(deploy::install(spec, &files, &state.live_dir(&spec.name)).await?),
        None => Ok(()),
    }
}

/// Whether the live files of `spec` still have to be installed on its deploy targets.
fn needs_redeploy(state: &StateDir, spec: &CertSpec) -> bool {
    match state.read_live(&spec.name) {
        Ok(Some(files)) => deploy::needs_redeploy(spec, &files, &state.live_dir(&spec.name)),
        _ => false,
    }
}

/// renewalInfo failures per ACME account. When a CA is unreachable every certificate of the account fails
/// the same way: the first failure is logged with its reason, the rest are counted and summed up once
/// an hour, and the recovery is logged once (not one warning per certificate per hour).
#[derive(Debug, Default)]
struct AriFailures(BTreeMap<String, AriOutage>);

#[derive(Debug)]
struct AriOutage {
    /// Failures since the last line about this account.
    unreported: usize,
    /// Failures since the outage began.
    total: usize,
    since: SystemTime,
    reported_at: SystemTime,
    last_error: String,
}

/// Between two summaries of a continuing outage.
const ARI_FAILURE_SUMMARY: Duration = Duration::from_secs(3600);

impl AriFailures {
    /// A failed request for `account`: the line to log now, if any.
    fn failed(
        &mut self,
        account: &str,
        cert: &str,
        error: &str,
        now: SystemTime,
    ) -> Option<String> {
        match self.0.get_mut(account) {
            None => {
                self.0.insert(
                    account.to_string(),
                    AriOutage {
                        unreported: 0,
                        total: 1,
                        since: now,
                        reported_at: now,
                        last_error: error.to_string(),
                    },
                );
                Some(format!(
                    "cannot fetch the CA's renewal window (ARI) for {cert} (account {account}): {error}; asking again in 1h (further failures of this account are summed up hourly)"
                ))
            }
            Some(o) => {
                o.unreported += 1;
                o.total += 1;
                o.last_error = error.to_string();
                let due =
                    now.duration_since(o.reported_at).unwrap_or_default() >= ARI_FAILURE_SUMMARY;
                due.then(|| {
                    let line = format!(
                        "renewal windows (ARI) of account {account} still failing: {} more failure(s) since the last report, {} since {}; last: {}",
                        o.unreported,
                        o.total,
                        humantime::format_rfc3339_seconds(o.since),
                        o.last_error
                    );
                    o.unreported = 0;
                    o.reported_at = now;
                    line
                })
            }
        }
    }

    /// A successful request for `account`: the line to log if it ends an outage.
    fn succeeded(&mut self, account: &str) -> Option<String> {
        self.0.remove(account).map(|o| {
            format!(
                "renewal windows (ARI) of account {account} answer again, after {} failure(s) since {}",
                o.total,
                humantime::format_rfc3339_seconds(o.since)
            )
        })
    }
}

/// Record a renewalInfo answer (or failure) for the certificate it was asked for.
fn apply_ari(certs: &mut BTreeMap<String, Cert>, failures: &mut AriFailures, done: AriDone) {
    let now = SystemTime::now();
    let Some(cert) = certs.get_mut(&done.name) else {
        return; // its spec was removed meanwhile
    };
    let account = cert.spec.account.clone();
    match &done.result {
        Ok(_) => {
            if let Some(line) = failures.succeeded(&account) {
                tracing::info!("{line}");
            }
        }
        Err(e) => {
            tracing::debug!(cert_name = %done.name, error = %e, "renewalInfo request failed");
            if let Some(line) = failures.failed(&account, &done.name, e, now) {
                tracing::warn!(cert_name = %done.name, acme_account = %account, "{line}");
            }
        }
    }
    cert.ari_fetching = false;
    if cert.ari_subject().map(|f| &f.raw_serial) != Some(&done.serial) {
        return; // the certificate changed meanwhile; the new one is asked for
    }
    match done.result {
        Ok(Some(window)) => {
            let old = cert.ari.take().map(|(_, w)| w);
            let new = next_ari_window(old.as_ref(), window, now, random_moment);
            if old.as_ref().map(|o| (o.start, o.end)) != Some((new.start, new.end)) {
                let ts = |t| humantime::format_rfc3339_seconds(t);
                tracing::info!(
                    cert_name = %done.name,
                    start = %ts(new.start),
                    end = %ts(new.end),
                    chosen = %ts(new.chosen),
                    moved = old.is_some(),
                    "the CA's renewal window (ARI): renewal planned for {}",
                    ts(new.chosen)
                );
            }
            cert.ari = Some((done.serial, new));
            cert.ari_retry_at = None;
        }
        Ok(None) => {
            cert.ari = None;
            cert.ari_retry_at = Some(now + ARI_UNSUPPORTED_RETRY);
        }
        Err(_) => match &mut cert.ari {
            Some((_, w)) => w.refetch_at = now + ARI_ERROR_RETRY,
            None => cert.ari_retry_at = Some(now + ARI_ERROR_RETRY),
        },
    }
}

/// Time until the earliest planned action of a certificate that is not running, or its next
/// renewalInfo request (bounded).
fn next_wake(certs: &BTreeMap<String, Cert>, now: SystemTime) -> Duration {
    certs
        .values()
        .filter(|c| !c.running)
        .filter_map(|c| {
            let at = c.decision.as_ref()?.at;
            let at = match c.not_before {
                Some(nb) if nb > at => nb,
                _ => at,
            };
            let at = c.redeploy_at(now).map_or(at, |r| r.min(at));
            Some(c.ari_wake().map_or(at, |ari| ari.min(at)))
        })
        .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
        .min()
        .unwrap_or(MAX_SLEEP)
        .min(MAX_SLEEP)
        // A due certificate waiting for a free worker is woken by the finished renewal instead.
        .max(Duration::from_millis(
            if certs.values().any(|c| c.running) {
                50
            } else {
                0
            },
        ))
}

/// What the metrics say about each planned certificate. Ready: a live certificate that is valid now
/// and matches the spec (names and key), and no failure since the last success.
fn metric_snapshots(certs: &BTreeMap<String, Cert>, now: SystemTime) -> Vec<CertSnapshot<'_>> {
    certs
        .iter()
        .map(|(name, c)| {
            let live = c.live.as_ref().ok().and_then(|l| l.as_ref());
            let ready = live.is_some_and(|l| {
                l.key_matches
                    && l.facts.names_match(&c.spec.domains)
                    && l.facts.not_before <= now
                    && now < l.facts.not_after
            }) && c.history.consecutive_failures == 0;
            CertSnapshot {
                name,
                account: &c.spec.account,
                not_after: live.map(|l| l.facts.not_after),
                next_renewal: c.decision.as_ref().map(|d| d.at),
                ready,
            }
        })
        .collect()
}

/// Binds `addr` and serves the metrics the loop publishes there.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: &Metrics,
) -> std::io::Result<AbortOnDrop> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics on http://{addr}/metrics");
    Ok(AbortOnDrop(tokio::spawn(crate::metrics::serve(
        listener,
        metrics.subscribe(),
    ))))
}

/// Aborts the task when dropped (the metrics listener ends with `run`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn status_text(
    certs: &BTreeMap<String, Cert>,
    certs_dir: &Path,
    config_error: Option<&str>,
    now: SystemTime,
) -> String {
    if certs.is_empty() && config_error.is_none() {
        // A fresh install: say what to do rather than "0 certificates".
        return format!(
            "no certificates yet: add one NAME.yaml spec per certificate to {}",
            certs_dir.display()
        );
    }
    let decisions: Vec<(String, Decision, bool)> = certs
        .iter()
        .filter_map(|(n, c)| {
            let d = c.decision.clone()?;
            Some((n.clone(), d, c.history.consecutive_failures > 0))
        })
        .collect();
    let renewing: Vec<&str> = certs
        .iter()
        .filter(|(_, c)| c.running)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut text = scheduler::status_line_renewing(&decisions, &renewing, now);
    if let Some(e) = config_error {
        text.push_str("; ");
        text.push_str(e);
    }
    text
}

fn read_status(state: &StateDir) -> BTreeMap<String, CertStatus> {
    std::fs::read(state.status_file())
        .ok()
        .and_then(|b| serde_json::from_slice::<StatusFile>(&b).ok())
        .map(|s| s.certificates)
        .unwrap_or_default()
}

/// Write `status.json` when what it says changed since `written` (the last content written, without its
/// time stamp): a loop iteration that changed nothing (an ARI answer of one certificate among 1000, say)
/// costs no file write and no fsync.
fn write_status(
    state: &StateDir,
    certs: &BTreeMap<String, Cert>,
    config_error: Option<&str>,
    written: &mut Option<Vec<u8>>,
) {
    let ts = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let mut file = StatusFile {
        updated_at: None,
        config_error: config_error.map(str::to_string),
        certificates: certs
            .iter()
            .map(|(name, c)| {
                let live = c.live.as_ref().ok().and_then(|l| l.as_ref());
                let last_result = if c.history.last_failure.is_some() {
                    Some("failed".to_string())
                } else if c.history.last_success.is_some() {
                    Some("ok".to_string())
                } else {
                    None
                };
                (
                    name.clone(),
                    CertStatus {
                        ari_window: c.ari.as_ref().map(|(_, w)| AriStatus {
                            start: ts(w.start),
                            end: ts(w.end),
                            chosen: ts(w.chosen),
                            refetch_at: ts(w.refetch_at),
                        }),
                        domains: c.spec.domains.clone(),
                        serial: live.map(|l| l.facts.serial.clone()),
                        not_after: live.map(|l| ts(l.facts.not_after)),
                        next_renewal: c.decision.as_ref().map(|d| ts(d.at)),
                        next_reason: c.decision.as_ref().map(|d| d.summary.clone()),
                        last_result,
                        last_error: c.history.last_failure.as_ref().map(|f| f.message.clone()),
                        history: c.history.clone(),
                    },
                )
            })
            .collect(),
    };
    let content = serde_json::to_vec(&file).expect("status serializes");
    if written.as_ref() == Some(&content) {
        return;
    }
    file.updated_at = Some(ts(SystemTime::now()));
    let json = serde_json::to_vec_pretty(&file).expect("status serializes");
    match write_atomic(&state.status_file(), &json, 0o644) {
        Ok(()) => *written = Some(content),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write status.json");
            *written = None;
        }
    }
}

/// Watch `certs_dir` (non-recursive, debounced); any event means "rescan" (editors write via rename).
/// Re-read `live/NAME` of the named certificates that are not renewing: when another process installed a
/// new one, the plan, status and metrics follow it instead of the old certificate's expiry.
fn refresh_live(certs: &mut BTreeMap<String, Cert>, state: &StateDir, names: Vec<String>) {
    for name in names {
        match certs.get_mut(&name) {
            // A running renewal reads live/ itself when it finishes.
            Some(cert) if !cert.running => {
                cert.reread_live(state, &name);
            }
            _ => {}
        }
    }
}

/// Watch `live/` (one symlink per certificate, switched by rename) and send the names that changed.
fn watch_live(dir: &Path, tx: mpsc::UnboundedSender<Vec<String>>) -> Option<Watcher> {
    watch_dir(
        dir,
        "cannot watch live/: certificates installed by other processes are seen at the next attempt or SIGHUP",
        move |events| {
            let names: Vec<String> = events
                .iter()
                .filter_map(|e| e.path.file_name()?.to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .collect();
            if !names.is_empty() {
                let _ = tx.send(names);
            }
        },
    )
}

fn watch_specs(dir: &Path, tx: mpsc::Sender<()>) -> Option<Watcher> {
    watch_dir(
        dir,
        "cannot watch the certs directory; use SIGHUP after changes",
        move |_| {
            let _ = tx.try_send(());
        },
    )
}

type Watcher = notify_debouncer_mini::Debouncer<notify::RecommendedWatcher>;

/// A debounced, non-recursive watcher on `dir` calling `on_events`; None (after a warning saying
/// `unavailable`) when it cannot be set up.
fn watch_dir(
    dir: &Path,
    unavailable: &str,
    mut on_events: impl FnMut(Vec<notify_debouncer_mini::DebouncedEvent>) + Send + 'static,
) -> Option<Watcher> {
    let debouncer = notify_debouncer_mini::new_debouncer(
        WATCH_DEBOUNCE,
        move |res: notify_debouncer_mini::DebounceEventResult| {
            if let Ok(events) = res {
                on_events(events);
            }
        },
    );
    let mut debouncer = match debouncer {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "{unavailable}");
            return None;
        }
    };
    if let Err(e) = debouncer
        .watcher()
        .watch(dir, notify::RecursiveMode::NonRecursive)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "{unavailable}");
        return None;
    }
    Some(debouncer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86400);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn never(_: SystemTime, _: SystemTime) -> SystemTime {
        panic!("an unchanged window keeps its moment")
    }

    #[test]
    fn an_unreachable_ca_gives_one_ari_warning_per_account_then_hourly_summaries() {
        let mut f = AriFailures::default();
        let t0 = now();
        // 1000 certificates of one account fail within the same minute: one line.
        let first = f
            .failed("ca", "cert0", "connection refused", t0)
            .expect("first failure is logged");
        assert!(
            first.contains("cert0 (account ca): connection refused"),
            "{first}"
        );
        for i in 1..1000 {
            assert_eq!(
                f.failed("ca", &format!("cert{i}"), "connection refused", t0 + MIN),
                None
            );
        }
        // Another account is reported on its own.
        assert!(f.failed("other", "x", "timeout", t0 + MIN).is_some());
        // An hour after the first line: one summary with the counts and the last reason.
        let summary = f
            .failed("ca", "cert0", "connection reset", t0 + HOUR)
            .expect("hourly summary");
        assert!(
            summary.contains("1000 more failure(s) since the last report, 1001 since")
                && summary.ends_with("last: connection reset"),
            "{summary}"
        );
        assert_eq!(
            f.failed("ca", "cert1", "connection reset", t0 + HOUR + MIN),
            None
        );
        // Recovery is said once, with the outage's total; then a new outage is reported again.
        let back = f.succeeded("ca").expect("recovery is logged");
        assert!(
            back.contains("account ca answer again, after 1002 failure(s)"),
            "{back}"
        );
        assert_eq!(f.succeeded("ca"), None);
        assert!(f
            .failed("ca", "cert2", "connection refused", t0 + DAY)
            .is_some());
    }

    #[test]
    fn a_first_window_gets_a_moment_inside_it() {
        let (start, end) = (now() + 10 * DAY, now() + 12 * DAY);
        for _ in 0..100 {
            let w = next_ari_window(None, (start, end, 6 * HOUR), now(), random_moment);
            assert!(w.chosen >= start && w.chosen <= end, "{w:?}");
            assert_eq!(w.refetch_at, now() + 6 * HOUR);
        }
        // A window of one instant.
        let w = next_ari_window(None, (start, start, HOUR), now(), random_moment);
        assert_eq!(w.chosen, start);
    }

    #[test]
    fn an_unchanged_window_keeps_its_moment() {
        let (start, end) = (now() + 10 * DAY, now() + 12 * DAY);
        let old = next_ari_window(None, (start, end, HOUR), now(), |s, _| s + DAY);
        let later = now() + 2 * HOUR;
        let w = next_ari_window(Some(&old), (start, end, 3 * HOUR), later, never);
        assert_eq!(w.chosen, start + DAY);
        assert_eq!(w.refetch_at, later + 3 * HOUR);
    }

    #[test]
    fn a_window_moved_earlier_is_followed_at_once() {
        let old = next_ari_window(
            None,
            (now() + 30 * DAY, now() + 32 * DAY, HOUR),
            now(),
            |_, e| e,
        );
        // Ahead of a mass revocation: the window now ends before the old moment (and started already).
        let (start, end) = (now() - HOUR, now() + HOUR);
        for _ in 0..50 {
            let w = next_ari_window(Some(&old), (start, end, HOUR), now(), random_moment);
            assert!(w.chosen >= start && w.chosen <= end, "{w:?}");
            assert!(w.chosen < old.chosen);
        }
    }

    #[test]
    fn retry_after_is_clamped_between_a_minute_and_a_day() {
        let window = |retry| (now() + DAY, now() + 2 * DAY, retry);
        let w = next_ari_window(None, window(Duration::ZERO), now(), random_moment);
        assert_eq!(w.refetch_at, now() + MIN);
        let w = next_ari_window(None, window(30 * DAY), now(), random_moment);
        assert_eq!(w.refetch_at, now() + DAY);
    }
}
