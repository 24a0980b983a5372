//! `renewd run`: the daemon. This module wires the event loop of [`crate::core`] to the world: the
//! configuration (loaded off the loop, [`Loader`]), signals and the two directory watchers (turned into
//! [`Input`]s), sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING), and one writer task that writes
//! `status.json` and the metrics file whenever the loop published a new [`Snapshot`] (changes that
//! arrive while it writes are coalesced into the next write).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::{self, CertSpec, ConfigErrors, Settings};
use crate::core::{
    self, Applied, CertView, Input, LoadKind, Loaded, Loader, Mode, Outputs, Scheduler, Snapshot,
    SystemClock, Work,
};
use crate::logging::message_id;
use crate::metrics::{self, CertSnapshot, Metrics, MetricsFile};
use crate::renew::{Engine, RenewError};
use crate::scheduler::History;
use crate::state::{write_atomic, StateDir};
use crate::systemd::Notifier;

pub use crate::core::ari::{
    next_ari_window, ARI_ERROR_RETRY, ARI_FETCHES, ARI_FETCH_TIMEOUT, ARI_REFETCH_MAX,
    ARI_REFETCH_MIN,
};

/// The watchers' debounce: editors write a spec in several steps.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(300);

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

/// The configuration in force: the settings, and the global file as loaded (to load specs against).
struct Config {
    settings: Arc<Settings>,
    /// Without specs (they are in `settings`).
    global: config::Global,
}

/// `status.json`: what `renewd status` and monitoring read. Stable field names.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatusFile {
    pub updated_at: Option<String>,
    /// The problem with the configuration, when the last reload or spec change was refused.
    pub config_error: Option<String>,
    /// `cluster:` only: this member and whether etcd answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
    pub certificates: BTreeMap<String, CertStatus>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub member: String,
    /// `ok` or `unreachable` (no answer, or no quorum: nobody orders).
    pub etcd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CertStatus {
    /// The CA's suggested renewal window (ARI) and the moment picked in it, when the CA offers ARI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_window: Option<AriStatus>,
    pub domains: Vec<String>,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    /// What the daemon is doing with it: scheduled, waiting-for-worker, renewing, redeploying,
    /// backing-off, held, locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub next_renewal: Option<String>,
    pub next_reason: Option<String>,
    /// "ok", "failed", or null before the first attempt.
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    #[serde(default)]
    pub history: History,
}

/// The ARI part of [`CertStatus`] (RFC 3339 times).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AriStatus {
    pub start: String,
    pub end: String,
    pub chosen: String,
    pub refetch_at: String,
}

/// Run the daemon until SIGTERM/SIGINT. Returns Err only for start-up failures.
pub async fn run(config_path: &Path, notifier: Notifier) -> Result<(), DaemonError> {
    let (input_tx, mut inputs) = mpsc::unbounded_channel::<Input>();
    forward_signals(input_tx.clone())?;

    let path = config_path.to_path_buf();
    let (config, spec_errors) = tokio::task::spawn_blocking(move || load_all(&path, None))
        .await
        .expect("loading the configuration does not panic")
        .map_err(DaemonError::Config)?;
    let engine = Arc::new(Engine::open(config.settings.clone()).await?);
    let state = engine.state.clone();
    let history = read_history(&state).await;
    let specs: Vec<Arc<CertSpec>> = config.settings.certs.values().cloned().collect();
    let inspections = engine.clone().inspect(specs).await;
    let mut core = Scheduler::new(
        config.settings.clone(),
        engine,
        Arc::new(SystemClock),
        Mode::Daemon,
        inspections,
        &history,
    );
    core.set_spec_errors(spec_errors);
    // Reading every spec and live/ left freed memory in the arenas of the threads that did it.
    trim_heap();

    let metrics_server = match config.settings.metrics_listen {
        Some(addr) => Some(serve_metrics(
            std::net::TcpListener::bind(addr).map_err(|e| DaemonError::Io {
                context: format!("metrics_listen: cannot listen on {addr}"),
                source: e,
            })?,
            &core.metrics(),
        )?),
        None => None,
    };
    let (snapshots, writer) = spawn_writer(state.clone(), core.metrics());
    let live_watcher = watch_live(&state.root().join("live"), input_tx.clone());
    // `cluster:` the loop hears of etcd's health and of the versions other members write.
    let follower = core.work().cluster().cloned().map(|cluster| {
        cluster.set_listener(input_tx.clone());
        tracing::info!(member = %cluster.member(), endpoints = %cluster.settings().endpoints.join(", "),
            "cluster member: following etcd");
        tokio::spawn(crate::cluster::follow::follow(
            cluster,
            state.clone(),
            input_tx.clone(),
        ))
    });
    let mut out = DaemonOutputs {
        watchdog: notifier.watchdog_interval(),
        next_ping: tokio::time::Instant::now(),
        notifier,
        last_status: String::new(),
        ready_sent: false,
        snapshots,
        metrics: core.metrics(),
        metrics_server,
        certs_dir: config.settings.certs_dir.clone(),
        spec_watcher: watch_specs(&config.settings.certs_dir, input_tx.clone()),
        inputs: input_tx,
    };
    let loader = loader(config_path.to_path_buf(), config.global);
    core::run(&mut core, &mut inputs, &loader, &mut out).await;
    if let Some(f) = follower {
        f.abort();
    }
    drop(live_watcher);
    drop(out);
    // The writer writes the last snapshot, then ends.
    let _ = writer.await;
    Ok(())
}

/// Give the memory freed after reading every spec and `live/` back to the system: glibc keeps freed
/// pages in the arena of the thread that freed them (blocking-pool and inspection threads each have
/// one), which an idle daemon would carry as RSS for its whole run.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// SIGHUP → reload, SIGTERM / SIGINT → stop, as inputs of the loop.
fn forward_signals(tx: mpsc::UnboundedSender<Input>) -> Result<(), DaemonError> {
    let mut sighup = signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;
    tokio::spawn(async move {
        loop {
            let input = tokio::select! {
                _ = sighup.recv() => Input::Reload,
                _ = sigterm.recv() => Input::Stop,
                _ = sigint.recv() => Input::Stop,
            };
            if tx.send(input).is_err() {
                return;
            }
        }
    });
    Ok(())
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        context: context.to_string(),
        source,
    }
}

/// The failure history of the previous run, from `status.json`.
async fn read_history(state: &StateDir) -> BTreeMap<String, History> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        read_status(&state)
            .into_iter()
            .map(|(name, s)| (name, s.history))
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn read_status(state: &StateDir) -> BTreeMap<String, CertStatus> {
    crate::fsread::read_capped(&state.status_file(), crate::fsread::STATUS_MAX)
        .ok()
        .and_then(|b| serde_json::from_slice::<StatusFile>(&b).ok())
        .map(|s| s.certificates)
        .unwrap_or_default()
}

/// The production [`Loader`]: reads the configuration on the blocking pool. A SIGHUP load reads the global
/// file and every spec; a spec change only the specs, against the global file in force (kept here).
fn loader(config_path: PathBuf, global: config::Global) -> Loader<Engine> {
    let global = Arc::new(Mutex::new(global));
    Arc::new(move |kind, current, engine| {
        let (path, global) = (config_path.clone(), global.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || load(kind, &path, &global, &current, &engine))
                .await
                .unwrap_or_else(|e| Err(format!("loading the configuration failed: {e}")))
        })
    })
}

/// One configuration load (blocking). Err: why it is refused (the configuration in force stays).
fn load(
    kind: LoadKind,
    config_path: &Path,
    global: &Mutex<config::Global>,
    current: &Settings,
    engine: &Engine,
) -> Result<Loaded<Engine>, String> {
    let loaded = match kind {
        LoadKind::Full => match load_all(config_path, Some(&current.certs)) {
            Ok(l) => l,
            Err(errors) => {
                for d in &errors.0 {
                    tracing::error!(message_id = message_id::CONFIG_INVALID, "{d}");
                }
                return Err(format!(
                    "previous configuration kept: {}",
                    first_error(&errors)
                ));
            }
        },
        LoadKind::Specs => {
            let g = global
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone_without_certs();
            load_specs(g, Some(&current.certs)).map_err(|(_, message)| message)?
        }
    };
    let (config, spec_errors) = loaded;
    let settings = config.settings;
    // The daemon's state (status.json, locks, the live/ watcher, the certificates it plans from) lives
    // in one directory for its whole run.
    if settings.state_dir != current.state_dir {
        return Err(format!(
            "state_dir changed from {} to {}: restart renewd (systemctl restart renewd) to move to the new state directory",
            current.state_dir.display(),
            settings.state_dir.display()
        ));
    }
    // The follower and every renewal's locks live on one etcd connection for the whole run.
    if settings.cluster != current.cluster {
        return Err(
            "`cluster:` changed: restart renewd (systemctl restart renewd) to join the cluster with the new settings"
                .to_string(),
        );
    }
    let metrics_listener = match settings.metrics_listen {
        // Bound before the old listener closes: a refused reload keeps it.
        Some(addr) if settings.metrics_listen != current.metrics_listen => {
            Some(Some(std::net::TcpListener::bind(addr).map_err(|e| {
                format!("metrics_listen: cannot listen on {addr}: {e}")
            })?))
        }
        None if current.metrics_listen.is_some() => Some(None),
        _ => None,
    };
    let work = Arc::new(
        engine
            .reconfigured(settings.clone())
            .map_err(|e| e.to_string())?,
    );
    // live/ of every spec on SIGHUP (the administrator may have renewed or fixed something by hand),
    // of the new and changed ones otherwise.
    let specs: Vec<Arc<CertSpec>> = settings
        .certs
        .values()
        .filter(|s| kind == LoadKind::Full || current.certs.get(&s.name) != Some(*s))
        .cloned()
        .collect();
    let inspections = crate::renew::inspect_all(&engine.state, &specs);
    *global.lock().unwrap_or_else(|e| e.into_inner()) = config.global;
    trim_heap();
    Ok(Loaded {
        kind,
        settings,
        work,
        spec_errors,
        inspections,
        metrics_listener,
    })
}

/// The daemon's [`Outputs`]: sd_notify, the writer task, the metrics listener, the spec watcher.
struct DaemonOutputs {
    notifier: Notifier,
    watchdog: Option<Duration>,
    next_ping: tokio::time::Instant,
    last_status: String,
    ready_sent: bool,
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    metrics: Arc<Mutex<Metrics>>,
    metrics_server: Option<AbortOnDrop>,
    certs_dir: PathBuf,
    spec_watcher: Option<Watcher>,
    inputs: mpsc::UnboundedSender<Input>,
}

impl Outputs for DaemonOutputs {
    fn publish(&mut self, snapshot: Option<Snapshot>) {
        if let Some(snapshot) = snapshot {
            if snapshot.status_line != self.last_status {
                self.notifier.status(&snapshot.status_line);
                self.last_status = snapshot.status_line.clone();
            }
            if snapshot.certs_dir != self.certs_dir {
                self.certs_dir = snapshot.certs_dir.clone();
                self.spec_watcher = watch_specs(&self.certs_dir, self.inputs.clone());
            }
            if !self.ready_sent {
                self.ready_sent = true;
                self.notifier.ready();
                tracing::info!(
                    message_id = message_id::STARTED,
                    certificates = snapshot.certs.len(),
                    "renewd started"
                );
            }
            self.snapshots.send_replace(Some(Arc::new(snapshot)));
        }
        if let Some(interval) = self.watchdog {
            let now = tokio::time::Instant::now();
            if now >= self.next_ping {
                self.notifier.watchdog();
                self.next_ping = now + interval;
            }
        }
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.watchdog.map(|_| self.next_ping)
    }

    fn reloading(&mut self) {
        self.notifier.reloading();
    }

    fn loaded(&mut self, applied: Applied) {
        let kind = match applied {
            Applied::Yes {
                kind,
                metrics_listener,
            } => {
                if let Some(listener) = metrics_listener {
                    self.metrics_server = match listener.map(|l| serve_metrics(l, &self.metrics)) {
                        Some(Ok(server)) => Some(server),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "cannot serve the metrics listener");
                            None
                        }
                        None => {
                            tracing::info!("metrics listener stopped (metrics_listen removed)");
                            None
                        }
                    };
                }
                kind
            }
            Applied::Refused { kind, .. } => kind,
        };
        if kind == LoadKind::Full {
            self.notifier.ready();
        }
    }

    fn stopping(&mut self) {
        self.notifier.stopping();
        tracing::info!(message_id = message_id::STOPPING, "renewd stopping");
    }
}

/// The writer task: writes `status.json` and the metrics (file and listener text) for the newest
/// snapshot, on the blocking pool; snapshots published while it writes are coalesced. It ends after
/// writing the last snapshot once the sender is dropped.
fn spawn_writer(
    state: StateDir,
    metrics: Arc<Mutex<Metrics>>,
) -> (
    watch::Sender<Option<Arc<Snapshot>>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = watch::channel::<Option<Arc<Snapshot>>>(None);
    let task = tokio::spawn(async move {
        let written = Arc::new(Mutex::new(Written::default()));
        loop {
            let closed = rx.changed().await.is_err();
            let snapshot = rx.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                let (state, metrics, written) = (state.clone(), metrics.clone(), written.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
                    write_outputs(&state, &metrics, &snapshot, &mut w);
                    // Rendering status.json (and the metrics) for every certificate freed as much.
                    trim_heap();
                })
                .await;
            }
            if closed {
                return;
            }
        }
    });
    (tx, task)
}

/// What the writer wrote last (to skip writes that would change nothing).
#[derive(Default)]
struct Written {
    /// SHA-256 of the content (a copy of it would cost as much memory as status.json is large).
    status: Option<[u8; 32]>,
    metrics: Option<MetricsFile>,
}

fn write_outputs(
    state: &StateDir,
    metrics: &Mutex<Metrics>,
    snapshot: &Snapshot,
    written: &mut Written,
) {
    write_metrics(metrics, snapshot, &mut written.metrics);
    write_status(state, snapshot, &mut written.status);
}

/// Render the metrics for the listener and `metrics_file`, if either is there: with neither, nothing is
/// rendered and no text is kept (at 10,000 certificates the text is tens of megabytes).
fn write_metrics(metrics: &Mutex<Metrics>, snapshot: &Snapshot, written: &mut Option<MetricsFile>) {
    let file = snapshot.metrics_file.as_deref();
    let mut m = metrics.lock().unwrap_or_else(|e| e.into_inner());
    if !m.wanted(file) {
        m.clear_text();
        *written = None;
        return;
    }
    let gauges: Vec<CertSnapshot<'_>> = snapshot
        .certs
        .iter()
        .map(|c| CertSnapshot {
            name: &c.name,
            account: &c.account,
            not_after: c.not_after,
            next_renewal: Some(c.next_renewal),
            ready: c.ready,
            profile: c.profile.as_deref().unwrap_or(""),
            challenge: c.challenge.as_str(),
        })
        .collect();
    m.set_cluster(
        snapshot
            .cluster
            .as_ref()
            .map(|(_, down)| down.as_ref().map(|d| d.since)),
    );
    let text = m.serve_text(&gauges);
    drop(m);
    metrics::write_file(written, file, &text);
}

/// Write `status.json` when what it says changed since `written` (the last content written, without its
/// time stamp): a snapshot that changed nothing here costs no file write and no fsync.
fn write_status(state: &StateDir, snapshot: &Snapshot, written: &mut Option<[u8; 32]>) {
    let mut file = StatusFile {
        updated_at: None,
        config_error: snapshot.config_error.clone(),
        cluster: snapshot
            .cluster
            .as_ref()
            .map(|(member, down)| ClusterStatus {
                member: member.clone(),
                etcd: if down.is_some() { "unreachable" } else { "ok" }.to_string(),
                down_since: down
                    .as_ref()
                    .map(|d| humantime::format_rfc3339_seconds(d.since).to_string()),
                error: down.as_ref().map(|d| d.error.clone()),
            }),
        certificates: snapshot
            .certs
            .iter()
            .map(|c| (c.name.clone(), cert_status(c)))
            .collect(),
    };
    let content = serde_json::to_vec(&file).expect("status serializes");
    let digest: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &content)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes");
    drop(content);
    if written.as_ref() == Some(&digest) {
        return;
    }
    file.updated_at = Some(rfc3339(SystemTime::now()));
    let json = serde_json::to_vec_pretty(&file).expect("status serializes");
    match write_atomic(&state.status_file(), &json, 0o644) {
        Ok(()) => *written = Some(digest),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write status.json");
            *written = None;
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn cert_status(c: &CertView) -> CertStatus {
    let last_result = if c.history.last_failure.is_some() {
        Some("failed".to_string())
    } else if c.history.last_success.is_some() {
        Some("ok".to_string())
    } else {
        None
    };
    CertStatus {
        ari_window: c.ari.as_ref().map(|w| AriStatus {
            start: rfc3339(w.start),
            end: rfc3339(w.end),
            chosen: rfc3339(w.chosen),
            refetch_at: rfc3339(w.refetch_at),
        }),
        domains: c.domains.clone(),
        serial: c.serial.clone(),
        not_after: c.not_after.map(rfc3339),
        state: Some(c.state.to_string()),
        next_renewal: Some(rfc3339(c.next_renewal)),
        next_reason: Some(c.next_reason.clone()),
        last_result,
        last_error: c.history.last_failure.as_ref().map(|f| f.message.clone()),
        history: c.history.clone(),
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
    kept: Option<&BTreeMap<String, Arc<CertSpec>>>,
) -> Result<(Config, Option<String>), ConfigErrors> {
    let global = config::load_global(config_path)?;
    for w in &global.warnings {
        tracing::warn!("{w}");
    }
    load_specs(global, kept)
        .map_err(|e| ConfigErrors(vec![config::Diagnostic::error(&e.0, None, e.1)]))
}

/// Load every spec of `certs_dir` into `global`. An invalid spec is logged and keeps its version from
/// `kept` (the configuration in force), or is left out; the returned string describes the invalid
/// specs, for STATUS. Err: the directory cannot be read (its path and the reason).
fn load_specs(
    mut global: config::Global,
    kept: Option<&BTreeMap<String, Arc<CertSpec>>>,
) -> Result<(Config, Option<String>), (PathBuf, String)> {
    let dir = global.settings.certs_dir.clone();
    let files = config::spec_files(&dir)
        .map_err(|e| (dir.clone(), format!("cannot read the certs directory: {e}")))?;
    let mut invalid = Vec::new();
    // Each spec's domains are checked against those loaded before it: one index, kept as they load.
    let mut owners = config::DomainOwners::of(&global.settings.certs);
    for file in files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match global.load_spec_among(&file, &owners) {
            Ok(spec) => {
                owners.add(&spec);
                global
                    .settings
                    .certs
                    .insert(spec.name.clone(), Arc::new(spec));
            }
            Err(errors) => {
                for d in &errors.0 {
                    tracing::error!(message_id = message_id::CONFIG_INVALID, cert_name = %name, "{d}");
                }
                invalid.push(first_error(&errors));
                if let Some(old) = kept.and_then(|k| k.get(&name)) {
                    tracing::warn!(cert_name = %name, "keeping the last valid version of this spec");
                    owners.add(old);
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
    // The specs live once, in the settings; the global file kept for the next spec load needs none.
    let certs = std::mem::take(&mut global.settings.certs);
    let settings = Arc::new(Settings {
        certs,
        ..global.settings.clone()
    });
    Ok((Config { settings, global }, errors))
}

/// Binds `addr` and serves the metrics the loop publishes there.
fn serve_metrics(
    listener: std::net::TcpListener,
    metrics: &Mutex<Metrics>,
) -> Result<AbortOnDrop, DaemonError> {
    let addr = listener.local_addr().map_err(io("metrics_listen"))?;
    listener
        .set_nonblocking(true)
        .map_err(io("metrics_listen"))?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(io("metrics_listen"))?;
    tracing::info!(%addr, "serving metrics on http://{addr}/metrics");
    let text = metrics
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .subscribe();
    Ok(AbortOnDrop(tokio::spawn(crate::metrics::serve(
        listener, text,
    ))))
}

/// Aborts the task when dropped (the metrics listener ends with `run`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watch `live/` (one symlink per certificate, switched by rename) and send the names that changed.
fn watch_live(dir: &Path, tx: mpsc::UnboundedSender<Input>) -> Option<Watcher> {
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
                let _ = tx.send(Input::LiveChanged(names));
            }
        },
    )
}

/// Watch `certs_dir` (non-recursive, debounced); any event means "load the specs again" (editors write
/// via rename).
fn watch_specs(dir: &Path, tx: mpsc::UnboundedSender<Input>) -> Option<Watcher> {
    watch_dir(
        dir,
        "cannot watch the certs directory; use SIGHUP after changes",
        move |_| {
            let _ = tx.send(Input::SpecsChanged);
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
