//! One renewal attempt from start to finish ([`Engine::renew_cancellable`]), bounded by `attempt_timeout`.
//!
//! Order of an attempt (DESIGN.md "How a renewal goes"), one method per phase ([`Phase`]): account → order
//! → the dns-01 values of every pending authorization → find each value's zone and publish it (journal
//! first, then RFC 2136 append, one UPDATE per zone shared with concurrent renewals: [`dns::Batcher`]) → wait until every authoritative server of every zone serves every value →
//! answer the challenges and poll the authorizations (a rejected name ends the attempt at once) → the
//! order → finalize with our own key and CSR → check the chain → install into `live/` → deploy targets →
//! delete exactly our TXT values (also on failure, cancellation and timeout).
//!
//! Blocking work (key generation, journal records, the state directory, the live files) runs on tokio's
//! blocking pool. Every request to the CA is bounded ([`crate::acme::REQUEST_TIMEOUT`]), every DNS query
//! too, and the whole attempt by `attempt_timeout`; accounts are loaded once per account at a time
//! (single flight), never under a lock shared with other accounts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, Problem, RetryPolicy,
};

use crate::acme::{self, AcmeAccount, AcmeError, Ca, RenewalWindow};
use crate::certs::{self, CertError, CertFacts, NewKey};
use crate::cluster::{CertLock, Cluster, ClusterError, Version};
use crate::config::{
    AccountSettings, CertSpec, ChallengeKind, DnsServerSettings, KeySpec, ReloadSpec, Settings,
};
use crate::core::pool::parked;
use crate::deploy::InstallError;
use crate::dns::name::PERSIST_LABEL;
use crate::dns::{self, DnsError, Resolver, Served, Updater};
use crate::journal::{self, Journal};
use crate::persist;
use crate::phase::{Phase, Progress, Timings};
use crate::state::{self, CertFiles, StateDir};

pub use crate::live::{read_live, LiveCert, LiveError};

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// The account could not be loaded or registered. `shared`: not this request's own failure but
    /// the one of the request it waited for (single flight), or of one this long ago (renewal-window
    /// requests do not retry a failed account for [`ACCOUNT_FAILURE_HOLD`]).
    #[error("{source}{}", shared_text(.shared))]
    Account {
        source: Arc<AcmeError>,
        shared: Option<Duration>,
    },
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The state directory: locks, the cleanup journal, the new version.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Deploy targets, config tests, reloads, hooks.
    #[error(transparent)]
    Deploy(#[from] InstallError),
    #[error("spec `{cert}`: {problem}")]
    Spec { cert: String, problem: String },
    /// The attempt ran past `attempt_timeout` (its TXT values were removed).
    #[error("{party}: no result within {} (attempt_timeout) while {phase}; gave up, its TXT values were removed", humantime::format_duration(*.after))]
    AttemptTimeout {
        /// Who was being waited for: the CA (account and directory) or the DNS server.
        party: String,
        phase: Phase,
        after: Duration,
    },
    #[error("interrupted by shutdown; its TXT values were removed")]
    Cancelled,
    #[error("another renewd process is renewing this certificate right now")]
    Busy,
    /// `cluster:`: etcd, the cluster lock, the cluster's version.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

fn shared_text(shared: &Option<Duration>) -> String {
    match shared {
        Some(ago) => format!(
            " (the same account failed {} ago; asking again later)",
            humantime::format_duration(Duration::from_secs(ago.as_secs()))
        ),
        None => String::new(),
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RenewError {
    let context = context.into();
    move |source| RenewError::Io { context, source }
}

/// Run blocking work on tokio's blocking pool, inside the caller's span.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// What a successful renewal produced.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub serial: String,
    pub not_after: SystemTime,
    pub order_url: String,
    pub zones: Vec<String>,
    /// Longest time any zone took to be served by all its authoritative servers.
    pub propagation: Duration,
    pub elapsed: Duration,
    /// How control was proven.
    pub challenge: ChallengeKind,
    /// dns-persist-01: how many records renewd had to write (0: every one already stood).
    pub persist_written: usize,
    /// `cluster:`: another member renewed it and this one installed its version (nothing was ordered here).
    pub renewed_by: Option<String>,
    /// Where the attempt's time went, phase by phase.
    pub phases: Timings,
}

/// After an account could not be loaded or registered (the CA unreachable, say), renewal-window requests
/// of its other certificates fail at once for this long instead of each trying again (at 1000
/// certificates that was 1000 connection attempts and ~12 s of CPU). Renewals always try.
pub const ACCOUNT_FAILURE_HOLD: Duration = Duration::from_secs(60);

/// How long the CA may take to validate every name once the challenges are answered.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the CA may take to issue after finalization.
pub const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(180);
/// Polling the CA: first after this long, then 1.5 times longer each time, up to [`POLL_MAX`]. Short,
/// because the first look is where a quick CA answers (Pebble validates and issues within 100 ms; with
/// 250 ms the validation and the download each waited ~250 ms too long), and a look is one small POST.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(5);

/// What `renewd renew --dry-run` found: the CA validated every name.
#[derive(Debug, Clone)]
pub struct DryRun {
    pub order_url: String,
    pub names: usize,
    /// Authorizations given up after validation (the CA answered `deactivated`).
    pub deactivated: usize,
    /// Authorizations the CA left valid although asked to deactivate them (it ignores the request): it
    /// may let them stand in for a validation of those names until they expire.
    pub still_valid: usize,
    pub propagation: Duration,
    pub elapsed: Duration,
    pub challenge: ChallengeKind,
    pub persist_written: usize,
}

/// What an order is for: a dry run never names the certificate it would replace (a CA would count it as
/// replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderKind {
    Renewal,
    DryRun,
}

/// An order the CA has validated, ready to finalize.
struct Validated {
    account: AcmeAccount,
    order: instant_acme::Order,
    order_url: String,
    zones: Vec<String>,
    propagation: Duration,
    persist_written: usize,
}

/// One TXT value we published (or are about to).
struct Published {
    updater: Arc<Updater>,
    zone: String,
    owner: String,
    value: String,
    entry: Option<journal::Entry>,
    /// `cluster:` its record in the cluster's cleanup journal.
    cluster_entry: Option<String>,
}

/// One name whose authorization waits for our answer.
struct Pending {
    /// As the CA names it (`*.x` for a wildcard).
    domain: String,
    /// The name without `*.`.
    base: String,
    wildcard: bool,
    /// dns-01: the TXT value to publish. dns-persist-01: none (the record depends on the account).
    value: Option<String>,
}

/// One ACME account of the engine: loaded or registered at most once at a time (single flight); the
/// lock is per account, so a CA that does not answer holds up only its own account's renewals.
struct AccountSlot {
    settings: AccountSettings,
    state: tokio::sync::Mutex<Flight<AcmeAccount>>,
    /// The CA's directory for renewal windows, which need no account.
    directory: tokio::sync::Mutex<Flight<Arc<acme::CaDirectory>>>,
}

/// One thing loaded at most once at a time: the result, or the last failed attempt.
struct Flight<T> {
    ready: Option<T>,
    failed: Option<(Instant, Arc<AcmeError>)>,
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight {
            ready: None,
            failed: None,
        }
    }
}

/// Load through `flight` (single flight: callers wait for the one loading). `hold`: fail at once with
/// the last failure when it is younger than that; without it, callers always try, except that those
/// that waited for another caller's failed attempt share its result.
async fn single_flight<T: Clone, F: std::future::Future<Output = Result<T, AcmeError>>>(
    flight: &tokio::sync::Mutex<Flight<T>>,
    hold: Option<Duration>,
    load: impl FnOnce() -> F,
) -> Result<T, RenewError> {
    let asked = Instant::now();
    let mut st = flight.lock().await;
    if let Some(a) = &st.ready {
        return Ok(a.clone());
    }
    if let Some((at, e)) = &st.failed {
        let waited_for_it = *at >= asked;
        if waited_for_it || hold.is_some_and(|h| at.elapsed() < h) {
            return Err(RenewError::Account {
                source: e.clone(),
                shared: Some(at.elapsed()),
            });
        }
    }
    match load().await {
        Ok(v) => {
            st.failed = None;
            st.ready = Some(v.clone());
            Ok(v)
        }
        Err(e) => {
            let e = Arc::new(e);
            st.failed = Some((Instant::now(), e.clone()));
            Err(RenewError::Account {
                source: e,
                shared: None,
            })
        }
    }
}

/// certbot's pre/post hooks (`pre_hooks:`, `post_hooks:`): one run of renewals is the time any attempt is in
/// flight (`renewd renew` holds it open for its whole run with [`Engine::hold_run`]).
#[derive(Default)]
struct HookRun {
    in_flight: usize,
    /// The pre-hooks run in this run (by argv): each distinct one once.
    pre_ran: std::collections::HashSet<Vec<String>>,
    /// The post-hooks of the specs attempted in this run, each distinct one once, in first-seen order.
    post: Vec<ReloadSpec>,
}

/// Run hooks of `kind` one after the other (off the runtime); a failure is logged and the rest run.
async fn run_hooks(kind: &'static str, hooks: Vec<ReloadSpec>) {
    for hook in hooks {
        let cx = crate::reload::Context {
            name: String::new(),
            domains: Vec::new(),
            lineage: std::path::PathBuf::new(),
        };
        let step = crate::reload::reload_step(&hook, &cx);
        let argv = step.argv.join(" ");
        match blocking(move || crate::reload::run(&step, &cx)).await {
            Ok(f) if f.success() => tracing::info!(hook = %argv, "{kind} hook ran"),
            Ok(f) => tracing::warn!(hook = %argv, output = %f.first_line().unwrap_or(""),
                "{kind} hook failed (status {:?}); going on", f.status),
            Err(e) => {
                tracing::warn!(hook = %argv, error = %e, "{kind} hook could not be started; going on")
            }
        }
    }
}

/// Everything a renewal needs that outlives one attempt: settings, state, resolver, journal, accounts.
pub struct Engine {
    pub settings: Arc<Settings>,
    pub state: StateDir,
    resolver: Resolver,
    journal: Arc<Journal>,
    /// RFC 2136 updates of concurrent renewals to one zone, coalesced (kept across reloads, like the
    /// journal, so that renewals started before and after a reload still share UPDATEs).
    updates: Arc<dns::Batcher>,
    /// Never held across an await: it only hands out the per-account slots.
    accounts: Mutex<HashMap<String, Arc<AccountSlot>>>,
    /// Held while pre/post hooks run, so a run's pre-hooks precede its attempts and its post-hooks the
    /// next run's pre-hooks.
    hook_run: Arc<tokio::sync::Mutex<HookRun>>,
    /// `cluster:`: the etcd handle shared by every renewal (kept across reloads).
    cluster: Option<Arc<Cluster>>,
}

/// `cluster:`: what a member that got a due certificate does.
enum Turn {
    /// Another member renewed it: its version is installed and deployed here.
    Adopted(Renewed),
    /// This member holds the certificate's lock and orders.
    Order(CertLock),
}

impl Engine {
    pub fn new(settings: Arc<Settings>) -> Result<Self, RenewError> {
        let state = StateDir::new(&settings.state_dir);
        state.ensure().map_err(io_err(format!(
            "cannot create the state directory {}",
            settings.state_dir.display()
        )))?;
        let journal = Journal::open(&state.journal_dir()).map_err(io_err(format!(
            "cannot open the cleanup journal in {}",
            state.journal_dir().display()
        )))?;
        let cluster = settings.cluster.clone().map(Cluster::new);
        Self::with(
            settings,
            state,
            Arc::new(journal),
            Arc::default(),
            HashMap::new(),
            Arc::default(),
            cluster,
        )
    }

    /// The engine for a reloaded configuration (same state directory): the journal stays, and so does
    /// every account whose settings did not change (no new directory fetch, no new registration).
    pub fn reconfigured(&self, settings: Arc<Settings>) -> Result<Self, RenewError> {
        let kept = self
            .accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(name, slot)| settings.accounts.get(*name) == Some(&slot.settings))
            .map(|(name, slot)| (name.clone(), slot.clone()))
            .collect();
        // The daemon refuses a reload that changes `cluster:` (a restart moves to another etcd).
        Self::with(
            settings,
            self.state.clone(),
            self.journal.clone(),
            self.updates.clone(),
            kept,
            self.hook_run.clone(),
            self.cluster.clone(),
        )
    }

    /// The engine of a starting `renewd run` or `renewd renew`: what an interrupted run left in the state
    /// directory is removed, then the TXT values it left in DNS.
    pub async fn open(settings: Arc<Settings>) -> Result<Self, RenewError> {
        let engine = Engine::new(settings)?;
        let state = engine.state.clone();
        match blocking(move || state.remove_leftovers()).await {
            Ok(removed) => {
                for path in removed {
                    tracing::info!(path = %path.display(), "removed what an interrupted run left in the state directory");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot clean up the state directory"),
        }
        let (removed, failed) = engine.recover().await;
        if removed + failed > 0 {
            tracing::warn!(
                removed,
                failed,
                "cleanup journal: removed {removed} TXT value(s) left by an interrupted run{}",
                if failed > 0 {
                    format!(", {failed} could not be removed yet (retried at the next start)")
                } else {
                    String::new()
                }
            );
        }
        Ok(engine)
    }

    fn with(
        settings: Arc<Settings>,
        state: StateDir,
        journal: Arc<Journal>,
        updates: Arc<dns::Batcher>,
        accounts: HashMap<String, Arc<AccountSlot>>,
        hook_run: Arc<tokio::sync::Mutex<HookRun>>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Self, RenewError> {
        let resolver = Resolver::from_config(&settings.resolver)?;
        Ok(Engine {
            settings,
            state,
            resolver,
            journal,
            updates,
            accounts: Mutex::new(accounts),
            hook_run,
            cluster,
        })
    }

    /// `cluster:`: the etcd handle (the daemon's follower and `renewd status` use it too).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// An attempt of `spec` starts: the first of a run runs the pre-hooks not run yet in this run (each
    /// distinct one once), and the spec's post-hooks are noted for the run's end.
    async fn enter_run(&self, spec: Option<&CertSpec>) {
        let mut run = self.hook_run.lock().await;
        run.in_flight += 1;
        let Some(spec) = spec else { return };
        let argv = |h: &ReloadSpec| match h {
            ReloadSpec::Hook { argv, .. } => argv.clone(),
            _ => Vec::new(),
        };
        let pre: Vec<ReloadSpec> = spec
            .pre_hooks
            .iter()
            .filter(|h| run.pre_ran.insert(argv(h)))
            .cloned()
            .collect();
        for h in &spec.post_hooks {
            if !run.post.iter().any(|p| argv(p) == argv(h)) {
                run.post.push(h.clone());
            }
        }
        // Under the lock: the run's other attempts wait for its pre-hooks.
        run_hooks("pre", pre).await;
    }

    /// An attempt ended; the run's last one runs the run's post-hooks.
    async fn leave_run(&self) {
        let mut run = self.hook_run.lock().await;
        run.in_flight = run.in_flight.saturating_sub(1);
        if run.in_flight == 0 {
            let post = std::mem::take(&mut run.post);
            run.pre_ran.clear();
            run_hooks("post", post).await;
        }
    }

    /// `renewd renew`: hold one run of pre/post hooks open for the whole command, so each runs once per
    /// invocation as with `certbot renew`. Pair with [`Engine::end_run`].
    pub async fn begin_run(&self) {
        self.enter_run(None).await;
    }

    pub async fn end_run(&self) {
        self.leave_run().await;
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Remove TXT values a killed run left behind. Returns (removed, failed) counts; failures stay in the
    /// journal for the next start.
    pub async fn recover(&self) -> (usize, usize) {
        let journal = self.journal.clone();
        let stale = match blocking(move || journal.stale()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cleanup journal");
                return (0, 0);
            }
        };
        let (mut removed, mut failed) = (0, 0);
        let mut updaters: HashMap<String, Arc<Updater>> = HashMap::new();
        for (entry, rec) in stale {
            let Some(server) = self.settings.dns_servers.get(&rec.dns_server) else {
                tracing::warn!(dns_server = %rec.dns_server, owner = %rec.owner,
                    "a stale TXT value was published through a dns server no longer configured; remove it by hand");
                failed += 1;
                continue;
            };
            let updater = match updaters.get(&rec.dns_server) {
                Some(u) => u.clone(),
                None => match Updater::new(server, &self.resolver).await {
                    Ok(u) => {
                        let u = Arc::new(u);
                        updaters.insert(rec.dns_server.clone(), u.clone());
                        u
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot remove stale TXT values yet");
                        failed += 1;
                        continue;
                    }
                },
            };
            match updater.delete_txt(&rec.zone, &rec.owner, &rec.value).await {
                Ok(()) => {
                    tracing::info!(cert_name = %rec.cert, owner = %rec.owner, zone = %rec.zone,
                        "removed a TXT value left behind by an interrupted run");
                    let journal = self.journal.clone();
                    let _ = blocking(move || journal.remove(&entry)).await;
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove a stale TXT value; will retry at next start");
                    failed += 1;
                }
            }
        }
        let journal = self.journal.clone();
        blocking(move || journal.prune_locks()).await;
        (removed, failed)
    }

    /// The account `name` (loaded, or registered, once). `hold`: fail at once with the last failure
    /// when it is younger than that (renewal-window requests); renewals pass None and always try, except
    /// that requests which waited for another request's failed attempt share its result.
    async fn account(
        &self,
        name: &str,
        progress: &Progress,
        hold: Option<Duration>,
    ) -> Result<AcmeAccount, RenewError> {
        let slot = self.account_slot(name)?;
        // Waiting behind another request's load of the same account counts as loading it.
        progress.enter(Phase::LoadingAccount);
        single_flight(&slot.state, hold, || async {
            match &self.cluster {
                None => acme::account(&slot.settings, &self.state, |p| progress.enter(p)).await,
                Some(c) => self.cluster_account(c, &slot.settings, progress).await,
            }
        })
        .await
    }

    /// `cluster:`: one account for the whole cluster. Under the account's etcd lock: the credentials in
    /// etcd (if any) become the local file, the account is loaded (or registered: the EAB key is spent
    /// once per cluster), and the local file goes to etcd when etcd did not have it.
    async fn cluster_account(
        &self,
        c: &Arc<Cluster>,
        settings: &AccountSettings,
        progress: &Progress,
    ) -> Result<AcmeAccount, AcmeError> {
        let wrap = |e: ClusterError| AcmeError::Cluster {
            account: settings.name.clone(),
            source: Box::new(e),
        };
        let lock = c.lock_account(&settings.name).await.map_err(wrap)?;
        let path = self.state.account_file(&settings.name);
        let loaded = async {
            let shared = c.account(&settings.name).await.map_err(wrap)?;
            if let Some(bytes) = &shared {
                let (p, b, st) = (path.clone(), bytes.clone(), self.state.clone());
                blocking(move || st.ensure().and_then(|()| state::write_atomic(&p, &b, 0o600)))
                    .await
                    .map_err(|source| AcmeError::Save {
                        account: settings.name.clone(),
                        path: path.clone(),
                        source,
                    })?;
            }
            let account = acme::account(settings, &self.state, |p| progress.enter(p)).await?;
            let p = path.clone();
            let local = blocking(move || crate::fsread::read_capped(&p, crate::fsread::SECRET_MAX))
                .await
                .ok();
            if let Some(local) = local.filter(|l| shared.as_ref() != Some(l)) {
                c.put_account(&settings.name, &local).await.map_err(wrap)?;
                tracing::info!(account = %settings.name, "the account's credentials are stored in the cluster (sealed)");
            }
            Ok(account)
        }
        .await;
        lock.release().await;
        loaded
    }

    /// The account `name`, loaded (or registered) as a renewal would.
    pub async fn load_account(&self, name: &str) -> Result<AcmeAccount, RenewError> {
        self.account(name, &Progress::default(), None).await
    }

    fn account_slot(&self, name: &str) -> Result<Arc<AccountSlot>, RenewError> {
        let settings = self
            .settings
            .accounts
            .get(name)
            .ok_or_else(|| RenewError::Spec {
                cert: String::new(),
                problem: format!("account `{name}` is not defined"),
            })?;
        let mut slots = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(slots
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(AccountSlot {
                    settings: settings.clone(),
                    state: Default::default(),
                    directory: Default::default(),
                })
            })
            .clone())
    }

    /// The CA's suggested renewal window (ARI) for `facts`, the live certificate of `spec`, through the
    /// engine's cached account: (start, end, Retry-After). `Ok(None)` when the CA offers no renewalInfo.
    pub async fn renewal_window(
        &self,
        spec: &CertSpec,
        facts: &CertFacts,
    ) -> Result<Option<RenewalWindow>, RenewError> {
        let slot = self.account_slot(&spec.account)?;
        if !slot.settings.ari {
            return Ok(None);
        }
        let dir = single_flight(&slot.directory, Some(ACCOUNT_FAILURE_HOLD), || async {
            acme::directory(&slot.settings).await.map(Arc::new)
        })
        .await?;
        Ok(acme::renewal_window(&dir, facts).await?)
    }

    /// Renew `spec` now.
    pub async fn renew(&self, spec: &CertSpec) -> Result<Renewed, RenewError> {
        let (_never, cancel) = tokio::sync::watch::channel(false);
        self.renew_cancellable(spec, cancel).await
    }

    /// Renew `spec` now, giving up when `cancel` becomes true or after `attempt_timeout`. Either way,
    /// every TXT value published is deleted before this returns. Holds the certificate's lock
    /// (`state_dir/locks/NAME.lock`) so that two renewd processes never order the same certificate at once.
    pub async fn renew_cancellable(
        &self,
        spec: &CertSpec,
        mut cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Renewed, RenewError> {
        let _lock = self.lock(spec).await?;
        let cluster_lock = match &self.cluster {
            None => None,
            Some(c) => match self.cluster_turn(c, spec).await? {
                Turn::Adopted(r) => return Ok(r),
                Turn::Order(l) => Some(l),
            },
        };
        self.enter_run(Some(spec)).await;
        let progress = Progress::default();
        let limit = self.settings.attempt_timeout;
        let mut published: Vec<Published> = Vec::new();
        let lost = async {
            match &cluster_lock {
                Some(l) => {
                    l.lost().await;
                    l.key().to_string()
                }
                None => std::future::pending().await,
            }
        };
        let attempt = self.attempt(spec, &progress, &mut published, cluster_lock.as_ref());
        let result = tokio::select! {
            r = tokio::time::timeout(limit, attempt) => {
                r.unwrap_or_else(|_| Err(self.timed_out(spec, progress.phase(), limit)))
            }
            _ = cancel.wait_for(|stop| *stop) => Err(RenewError::Cancelled),
            key = lost => Err(ClusterError::LockLost { key }.into()),
        };
        self.cleanup(published).await;
        if let Some(l) = cluster_lock {
            l.release().await;
        }
        if let Err(RenewError::Acme(e @ AcmeError::Request { .. })) = &result {
            // The CA does not know the account or its key: the next attempt loads the account again,
            // so credentials changed meanwhile (a key rolled over on another cluster member, a file
            // replaced by hand) are used instead of the ones this process loaded first.
            let stale = e.problems().iter().any(|p| {
                p.r#type.as_deref().is_some_and(|t| {
                    ["accountDoesNotExist", "unauthorized", "badPublicKey"]
                        .iter()
                        .any(|k| t.ends_with(&format!(":{k}")))
                })
            });
            if stale {
                self.forget_account(&spec.account);
            }
        }
        self.leave_run().await;
        result
    }

    /// Drop the loaded account `name` (unless a load of it is running): the next use loads it again.
    fn forget_account(&self, name: &str) {
        let slot = self
            .accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let Some(slot) = slot else { return };
        if let Ok(mut flight) = slot.state.try_lock() {
            flight.ready = None;
        };
    }

    /// `cluster:`: install the cluster's version when it is newer than the live one; otherwise take the
    /// certificate's lock, look again (another member may have just finished), remove what a dead
    /// member's renewal left in DNS, and order.
    async fn cluster_turn(&self, c: &Arc<Cluster>, spec: &CertSpec) -> Result<Turn, RenewError> {
        if let Some(r) = self.adopt_if_newer(c, spec, false).await? {
            return Ok(Turn::Adopted(r));
        }
        let lock = c.lock_cert(&spec.name).await?;
        match self.adopt_if_newer(c, spec, false).await {
            Ok(None) => {}
            Ok(Some(r)) => {
                lock.release().await;
                return Ok(Turn::Adopted(r));
            }
            Err(e) => {
                lock.release().await;
                return Err(e);
            }
        }
        self.remove_stale_cluster_values(c, spec).await;
        Ok(Turn::Order(lock))
    }

    /// The cluster's version of `spec` installed and deployed here, when it is newer than the live one.
    /// A version for other names: `strict` refuses it with an error; otherwise it is left alone (this
    /// member's spec changed: it orders for its names).
    async fn adopt_if_newer(
        &self,
        c: &Arc<Cluster>,
        spec: &CertSpec,
        strict: bool,
    ) -> Result<Option<Renewed>, RenewError> {
        let Some(v) = c.version(&spec.name).await? else {
            return Ok(None);
        };
        let (state, name) = (self.state.clone(), spec.name.clone());
        let live = blocking(move || read_live(&state, &name))
            .await
            .ok()
            .flatten();
        let newer = live.as_ref().is_none_or(|l| {
            l.facts.serial != v.serial && unix_secs(l.facts.not_after) < v.not_after
        });
        if !newer {
            return Ok(None);
        }
        let mut wanted: Vec<String> = spec
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        wanted.sort();
        let mut theirs: Vec<String> = v.names.iter().map(|d| d.to_ascii_lowercase()).collect();
        theirs.sort();
        if wanted != theirs {
            let e = ClusterError::NamesDiffer {
                name: spec.name.clone(),
                member: v.renewed_by.clone(),
                cluster: theirs.join(", "),
                spec: wanted.join(", "),
            };
            if strict {
                return Err(e.into());
            }
            tracing::warn!("{e}; ordering for this member's names");
            return Ok(None);
        }
        self.adopt(c, spec, v).await.map(Some)
    }

    /// Install the cluster's version `v` of `spec` (checked: the key opens and matches, the names are
    /// the spec's), deploy it, and record the deploy in the cluster.
    async fn adopt(
        &self,
        c: &Arc<Cluster>,
        spec: &CertSpec,
        v: Version,
    ) -> Result<Renewed, RenewError> {
        let started = Instant::now();
        let privkey = c.open_key(&spec.name, &v)?;
        let public = certs::public_key_of_pem(&privkey)?;
        let issued = certs::check_issued(&v.fullchain, &public, &spec.domains)?;
        let files = CertFiles {
            cert: issued.cert_pem.clone(),
            chain: issued.chain_pem.clone(),
            fullchain: issued.fullchain_pem.clone(),
            privkey,
        };
        let progress = Progress::default();
        self.install(spec, &issued.leaf, &files, &progress).await?;
        tracing::info!(cert_serial = %issued.leaf.serial, renewed_by = %v.renewed_by,
            "installed the cluster's version (renewed by member {})", v.renewed_by);
        progress.enter(Phase::Deploying);
        crate::deploy::install(spec, &files, &self.state.live_dir(&spec.name)).await?;
        self.record_deploy(c, spec, &issued.leaf.serial).await;
        Ok(Renewed {
            serial: issued.leaf.serial.clone(),
            not_after: issued.leaf.not_after,
            order_url: String::new(),
            zones: Vec::new(),
            propagation: Duration::ZERO,
            elapsed: started.elapsed(),
            challenge: spec.challenge,
            persist_written: 0,
            renewed_by: Some(v.renewed_by),
            phases: progress.timings(),
        })
    }

    async fn record_deploy(&self, c: &Arc<Cluster>, spec: &CertSpec, serial: &str) {
        if let Err(e) = c.deployed(&spec.name, serial).await {
            tracing::warn!(error = %e, "deployed, but the deploy could not be recorded in the cluster");
        }
    }

    /// The TXT values a dead member's renewal of `spec` left (the cluster's cleanup journal): deleted
    /// before this member orders. One that cannot be deleted stays recorded for the next holder.
    async fn remove_stale_cluster_values(&self, c: &Arc<Cluster>, spec: &CertSpec) {
        let stale = match c.journal_stale(&spec.name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster's cleanup journal");
                return;
            }
        };
        for (key, rec) in stale {
            let Some(server) = self.settings.dns_servers.get(&rec.dns_server) else {
                tracing::warn!(dns_server = %rec.dns_server, owner = %rec.owner,
                    "a TXT value left by another member was published through a dns server this member does not know; remove it by hand");
                continue;
            };
            let deleted = match Updater::new(server, &self.resolver).await {
                Ok(u) => u.delete_txt(&rec.zone, &rec.owner, &rec.value).await,
                Err(e) => Err(e),
            };
            match deleted {
                Ok(()) => {
                    tracing::info!(owner = %rec.owner, dns_zone = %rec.zone,
                        "removed a TXT value an interrupted renewal on another member left behind");
                    if let Err(e) = c.journal_remove(key).await {
                        tracing::warn!(error = %e, "cannot drop a cleanup record from the cluster");
                    }
                }
                Err(e) => tracing::warn!(owner = %rec.owner, error = %e,
                    "cannot remove a TXT value another member left behind; trying again at the next renewal"),
            }
        }
    }

    async fn lock(&self, spec: &CertSpec) -> Result<std::fs::File, RenewError> {
        let (state, name) = (self.state.clone(), spec.name.clone());
        match blocking(move || state.lock_cert(&name)).await {
            Ok(Some(lock)) => Ok(lock),
            Ok(None) => Err(RenewError::Busy),
            Err(e) => Err(RenewError::Io {
                context: format!("cannot lock {}", spec.name),
                source: e,
            }),
        }
    }

    /// The error of an attempt that ran out of time in `phase`, naming whom it waited for.
    fn timed_out(&self, spec: &CertSpec, phase: Phase, after: Duration) -> RenewError {
        let party = match phase {
            Phase::FindingZones => "DNS discovery".to_string(),
            Phase::PublishingTxt | Phase::WaitingForPropagation => {
                match self.settings.dns_servers.get(&spec.dns) {
                    Some(s) => format!("dns server `{}` ({})", s.name, s.address),
                    None => format!("dns server `{}`", spec.dns),
                }
            }
            Phase::Installing => format!("state directory {}", self.state.root().display()),
            Phase::Deploying => format!("the deploy of {}", spec.name),
            _ => match self.settings.accounts.get(&spec.account) {
                Some(a) => Ca::of(a).to_string(),
                None => format!("account `{}`", spec.account),
            },
        };
        RenewError::AttemptTimeout {
            party,
            phase,
            after,
        }
    }

    /// One attempt, phase by phase; `published` collects every TXT value (for the cleanup).
    async fn attempt(
        &self,
        spec: &CertSpec,
        progress: &Progress,
        published: &mut Vec<Published>,
        cluster_lock: Option<&CertLock>,
    ) -> Result<Renewed, RenewError> {
        let started = Instant::now();
        // The key (an RSA key can take a second) is made while the DNS and the CA do their part.
        let key_job = start_key(spec, &self.state);
        let v = self
            .validated(spec, progress, published, OrderKind::Renewal, cluster_lock)
            .await?;
        let Validated {
            account,
            mut order,
            order_url,
            zones,
            propagation,
            persist_written,
        } = v;
        let (key, chain) = finalize(spec, key_job, &account, &mut order, progress).await?;
        let issued = certs::check_issued(&chain, key.pair.public_key_raw(), &spec.domains)?;
        let files = CertFiles {
            cert: issued.cert_pem.clone(),
            chain: issued.chain_pem.clone(),
            fullchain: issued.fullchain_pem.clone(),
            privkey: key.pem(),
        };
        // `cluster:` the version goes to etcd first (only while the lock is still ours): every member
        // installs it from there, this one included should it die before its own install.
        let cluster = self.cluster.as_ref().zip(cluster_lock);
        if let Some((c, lock)) = cluster {
            progress.enter(Phase::Publishing);
            let version = Version {
                id: state::version_name(unix_now() as i64, &issued.leaf.serial),
                names: issued.leaf.dns_names.clone(),
                serial: issued.leaf.serial.clone(),
                not_after: unix_secs(issued.leaf.not_after),
                renewed_by: c.member().to_string(),
                renewed_at: unix_now(),
                cert: files.cert.clone(),
                chain: files.chain.clone(),
                fullchain: files.fullchain.clone(),
                privkey_sealed: c.seal_key_for(&spec.name, &files.privkey),
            };
            c.publish(lock, &spec.name, &version).await?;
            tracing::info!(cert_serial = %issued.leaf.serial, "the new version is in the cluster");
        }
        self.install(spec, &issued.leaf, &files, progress).await?;
        tracing::info!(cert_serial = %issued.leaf.serial,
            cert_not_after = %issued.leaf.not_after_rfc3339(), "certificate issued and installed in live/");
        // Every deploy target all or nothing, config tests, reloads, hooks; rollback on a failed config test.
        progress.enter(Phase::Deploying);
        crate::deploy::install(spec, &files, &self.state.live_dir(&spec.name)).await?;
        if let Some((c, _)) = cluster {
            self.record_deploy(c, spec, &issued.leaf.serial).await;
        }
        Ok(Renewed {
            serial: issued.leaf.serial.clone(),
            not_after: issued.leaf.not_after,
            order_url,
            zones,
            propagation,
            elapsed: started.elapsed(),
            challenge: spec.challenge,
            persist_written,
            renewed_by: None,
            phases: progress.timings(),
        })
    }

    /// An order whose every name the CA has validated: account, order, proof (dns-01 values published
    /// and propagated, or the dns-persist-01 records checked), challenges answered, order ready.
    async fn validated(
        &self,
        spec: &CertSpec,
        progress: &Progress,
        published: &mut Vec<Published>,
        kind: OrderKind,
        cluster_lock: Option<&CertLock>,
    ) -> Result<Validated, RenewError> {
        let server = self.dns_server(spec)?;
        let account = self.account(&spec.account, progress, None).await?;
        let mut order = self.place_order(spec, &account, progress, kind).await?;
        let order_url = order.url().to_string();
        tracing::info!(acme_order_url = %order_url, "order placed");
        let pending = pending_challenges(&account, &mut order, spec.challenge, progress).await?;
        let (zones, propagation, persist_written) = match spec.challenge {
            ChallengeKind::Dns01 => {
                let by_owner = self
                    .publish(spec, server, &pending, published, progress, cluster_lock)
                    .await?;
                // Waiting for the secondaries holds no worker place (core::pool::parked).
                let propagation = parked(self.wait_for_propagation(&by_owner, progress)).await?;
                let zones = by_owner.keys().map(|(z, _)| z.clone()).collect();
                (zones, propagation, 0)
            }
            ChallengeKind::DnsPersist01 => {
                self.ensure_persist(spec, server, &account, &pending, progress)
                    .await?
            }
        };
        validate(
            &account,
            &mut order,
            &challenge_type(spec.challenge),
            !pending.is_empty(),
            progress,
        )
        .await?;
        Ok(Validated {
            account,
            order,
            order_url,
            zones,
            propagation,
            persist_written,
        })
    }

    /// `renewd renew --dry-run`: everything up to the CA's validation of every name, then the
    /// authorizations are deactivated (so the CA does not reuse them) and the TXT values removed. No
    /// `replaces` is sent, nothing is finalized, nothing is written to `live/` or the deploy targets.
    pub async fn dry_run(&self, spec: &CertSpec) -> Result<DryRun, RenewError> {
        let _lock = self.lock(spec).await?;
        let progress = Progress::default();
        let limit = self.settings.attempt_timeout;
        let mut published: Vec<Published> = Vec::new();
        let started = Instant::now();
        let attempt = async {
            let mut v = self
                .validated(spec, &progress, &mut published, OrderKind::DryRun, None)
                .await?;
            progress.enter(Phase::DeactivatingAuthorizations);
            let (mut deactivated, mut still_valid) = (0, 0);
            let mut authzs = v.order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz =
                    authz.map_err(|e| v.account.error(Phase::DeactivatingAuthorizations, e))?;
                if authz.status == AuthorizationStatus::Valid {
                    let answer = authz.deactivate().await.map(|_| ());
                    match answer {
                        Ok(()) => deactivated += 1,
                        // The CA took the request but answered with another status (it ignores
                        // deactivation): instant-acme's `Other` error, the answer kept in `authz`.
                        // Every name was validated, so the dry run stands; say what the CA did.
                        Err(instant_acme::Error::Other(_))
                            if authz.status != AuthorizationStatus::Deactivated =>
                        {
                            still_valid += 1;
                            tracing::warn!(cert_name = %spec.name,
                                "the CA did not deactivate the authorization for {} (it answered {:?}): \
                                 it may stand in for validating that name until it expires",
                                authz.identifier(), authz.status);
                        }
                        Err(e) => {
                            return Err(RenewError::from(
                                v.account.error(Phase::DeactivatingAuthorizations, e),
                            ))
                        }
                    }
                }
            }
            Ok::<_, RenewError>(DryRun {
                order_url: v.order_url.clone(),
                names: spec.domains.len(),
                deactivated,
                still_valid,
                propagation: v.propagation,
                elapsed: started.elapsed(),
                challenge: spec.challenge,
                persist_written: v.persist_written,
            })
        };
        let result = tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| Err(self.timed_out(spec, progress.phase(), limit)));
        self.cleanup(published).await;
        result
    }

    fn dns_server(&self, spec: &CertSpec) -> Result<&DnsServerSettings, RenewError> {
        self.settings
            .dns_servers
            .get(&spec.dns)
            .ok_or_else(|| RenewError::Spec {
                cert: spec.name.clone(),
                problem: format!("dns server `{}` is not defined", spec.dns),
            })
    }

    /// Place the order for `spec`. With a live predecessor the order says it replaces it (RFC 9773 §5);
    /// when the CA cannot take that (no ARI, `alreadyReplaced`, any other refusal that is not a rate
    /// limit, an order that does not echo `replaces`), the order is placed once more without it.
    async fn place_order(
        &self,
        spec: &CertSpec,
        account: &AcmeAccount,
        progress: &Progress,
        kind: OrderKind,
    ) -> Result<instant_acme::Order, RenewError> {
        progress.enter(Phase::PlacingOrder);
        let identifiers: Vec<Identifier> = spec
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        if let Some(profile) = &spec.profile {
            account.check_profile(profile)?;
        }
        let new_order = |identifiers| {
            let order = NewOrder::new(identifiers);
            match &spec.profile {
                Some(p) => order.profile(p),
                None => order,
            }
        };
        // The certificate this order replaces (ARI): the live one, when it can be named.
        let ari = self
            .settings
            .accounts
            .get(&spec.account)
            .is_none_or(|a| a.ari);
        let replaces = match kind {
            OrderKind::Renewal if ari => crate::live::read_live_async(&self.state, &spec.name)
                .await
                .ok()
                .flatten()
                .and_then(|live| acme::certificate_id(&live.facts)),
            OrderKind::Renewal | OrderKind::DryRun => None,
        };
        let gate = match replaces {
            Some(_) => account.replaces.gate().await,
            None => None,
        };
        if let (Some(id), false) = (replaces, account.replaces.ignored()) {
            let shown = id.to_string();
            match account
                .account
                .new_order(&new_order(&identifiers).replaces(id))
                .await
            {
                Ok(order) => {
                    account.replaces.learned(true);
                    tracing::info!(replaces = %shown, "the order replaces the live certificate");
                    return Ok(order);
                }
                // The directory has no renewalInfo: nothing was sent.
                Err(instant_acme::Error::Unsupported(_)) => {}
                Err(e) if acme::is_rate_limited(&e) => {
                    return Err(account.error(Phase::PlacingOrder, e).into());
                }
                // A problem document (alreadyReplaced, malformed, ...).
                Err(e @ instant_acme::Error::Api(_)) => {
                    tracing::warn!(replaces = %shown, error = %acme::describe(&e),
                        "the CA refused `replaces`; ordering again without it");
                }
                // An order that does not echo `replaces` (instant-acme's check, its only `Other` error of
                // newOrder; RFC 9773 §5 requires the echo): the CA took the order and ignored `replaces`.
                Err(instant_acme::Error::Other(_)) => {
                    account.replaces.learned(false);
                    tracing::warn!(replaces = %shown,
                        "the CA accepted the order but did not echo `replaces` (RFC 9773 §5 requires it), so it ignores it; ordering again without `replaces`, and leaving it out of this account's later orders");
                }
                Err(e) => return Err(account.error(Phase::PlacingOrder, e).into()),
            }
        }
        drop(gate);
        account
            .account
            .new_order(&new_order(&identifiers))
            .await
            .map_err(|e| account.error(Phase::PlacingOrder, e).into())
    }

    /// Find each value's zone, then publish: every value of one zone in one UPDATE (with what other
    /// renewals send to the zone meanwhile), each value in the cleanup journal before it is submitted. Returns the values by (zone, owner).
    async fn publish(
        &self,
        spec: &CertSpec,
        server: &DnsServerSettings,
        pending: &[Pending],
        published: &mut Vec<Published>,
        progress: &Progress,
        cluster_lock: Option<&CertLock>,
    ) -> Result<BTreeMap<(String, String), Vec<String>>, RenewError> {
        progress.enter(Phase::FindingZones);
        let mut by_owner: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for p in pending {
            let Some(value) = &p.value else { continue };
            let target = dns::find_target(&self.resolver, &p.domain, spec.zone.as_deref()).await?;
            by_owner
                .entry((target.zone.clone(), target.owner.clone()))
                .or_default()
                .push(value.clone());
        }
        if by_owner.is_empty() {
            return Ok(by_owner);
        }
        progress.enter(Phase::PublishingTxt);
        let updater = Arc::new(Updater::new(server, &self.resolver).await?);
        let mut by_zone: BTreeMap<&str, Vec<dns::Change>> = BTreeMap::new();
        for ((zone, owner), values) in &by_owner {
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            by_zone
                .entry(zone)
                .or_default()
                .push(dns::Change::new(dns::Op::Add, owner, &refs));
        }
        for (zone, changes) in by_zone {
            let first = published.len();
            for change in &changes {
                for value in &change.values {
                    let (entry, cluster_entry) = self
                        .journal_add(spec, zone, &change.owner, value, cluster_lock)
                        .await?;
                    published.push(Published {
                        updater: updater.clone(),
                        zone: zone.to_string(),
                        owner: change.owner.clone(),
                        value: value.clone(),
                        entry: Some(entry),
                        cluster_entry,
                    });
                }
            }
            // Every value of a zone in one UPDATE, shared with other renewals' values for the zone
            // (dns::batch): a second UPDATE to the zone would wait for BIND's notify-delay (5 s)
            // before the secondaries hear of it.
            let owners = changes.len();
            if let Err(e) = self
                .updates
                .submit(&server.name, &updater, zone, changes)
                .await
            {
                if e.update_was_rejected() {
                    // Nothing was published: forget these values instead of "cleaning" them later.
                    for p in published.drain(first..) {
                        self.journal_remove(p).await;
                    }
                }
                return Err(e.into());
            }
            tracing::info!(dns_zone = %zone, owners, values = published.len() - first, "TXT published");
        }
        Ok(by_owner)
    }

    async fn journal_add(
        &self,
        spec: &CertSpec,
        zone: &str,
        owner: &str,
        value: &str,
        cluster_lock: Option<&CertLock>,
    ) -> Result<(journal::Entry, Option<String>), RenewError> {
        let record = journal::Record {
            cert: spec.name.clone(),
            dns_server: spec.dns.clone(),
            zone: zone.to_string(),
            owner: owner.to_string(),
            value: value.to_string(),
            published_at: unix_now(),
        };
        // `cluster:` also in etcd, so that any member can remove it should this one die.
        let cluster_entry = match self.cluster.as_ref().zip(cluster_lock) {
            Some((c, lock)) => Some(c.journal_add(lock, &record).await?),
            None => None,
        };
        let journal = self.journal.clone();
        match blocking(move || journal.add(&record)).await {
            Ok(entry) => Ok((entry, cluster_entry)),
            Err(e) => {
                if let (Some(c), Some(key)) = (&self.cluster, cluster_entry) {
                    let _ = c.journal_remove(key).await;
                }
                Err(io_err("cannot write the cleanup journal")(e))
            }
        }
    }

    /// Forget a published value's journal records (local, and the cluster's).
    async fn journal_remove(&self, p: Published) {
        if let (Some(c), Some(key)) = (&self.cluster, p.cluster_entry) {
            if let Err(e) = c.journal_remove(key).await {
                tracing::warn!(error = %e, "cannot drop a cleanup record from the cluster");
            }
        }
        let Some(entry) = p.entry else { return };
        let journal = self.journal.clone();
        if let Err(e) = blocking(move || journal.remove(&entry)).await {
            tracing::warn!(error = %e, "cannot drop a cleanup journal record");
        }
    }

    /// Wait until every authoritative server of every zone serves every value; the longest wait.
    async fn wait_for_propagation(
        &self,
        by_owner: &BTreeMap<(String, String), Vec<String>>,
        progress: &Progress,
    ) -> Result<Duration, RenewError> {
        progress.enter(Phase::WaitingForPropagation);
        let waits = by_owner.iter().map(|((zone, owner), values)| async move {
            let explicit = &self.settings.propagation.nameservers;
            let servers = dns::authoritative_servers(&self.resolver, zone, explicit).await?;
            let t0 = Instant::now();
            let report =
                dns::wait_for_txt(&servers, owner, values, self.settings.propagation.timeout)
                    .await?;
            for (s, took) in &report.per_server {
                tracing::debug!(dns_zone = %zone, server = %s.name, ms = took.as_millis() as u64, "served");
            }
            Ok::<Duration, DnsError>(t0.elapsed())
        });
        let mut propagation = Duration::ZERO;
        for r in futures::future::join_all(waits).await {
            propagation = propagation.max(r?);
        }
        if !by_owner.is_empty() {
            tracing::info!(
                ms = propagation.as_millis() as u64,
                "every authoritative server serves the TXT records"
            );
        }
        Ok(propagation)
    }

    /// dns-persist-01: make sure every name's standing record is served by every authoritative server
    /// of its zone. One query per server shows it is there (no UPDATE, no journal entry); where it is
    /// missing, or names another account or CA, renewd appends its own value (other values at the owner
    /// stay), records it in `persist/NAME.json` first, and waits until every server serves it. Returns
    /// the zones, the propagation wait, and how many values were written.
    async fn ensure_persist(
        &self,
        spec: &CertSpec,
        server: &DnsServerSettings,
        account: &AcmeAccount,
        pending: &[Pending],
        progress: &Progress,
    ) -> Result<(Vec<String>, Duration, usize), RenewError> {
        if pending.is_empty() {
            return Ok((Vec::new(), Duration::ZERO, 0));
        }
        progress.enter(Phase::CheckingPersistRecord);
        let issuers = account.issuer_domains(Phase::CheckingPersistRecord).await?;
        // One record per base name; `policy=wildcard` when the order has `*.base`.
        let mut bases: BTreeMap<&str, bool> = BTreeMap::new();
        for p in pending {
            *bases.entry(p.base.as_str()).or_default() |= p.wildcard;
        }
        let now = unix_now();
        let explicit = &self.settings.propagation.nameservers;
        let mut zones = Vec::new();
        let mut to_write = Vec::new();
        for (base, wildcard) in bases {
            let target =
                dns::find_target_at(&self.resolver, PERSIST_LABEL, base, spec.zone.as_deref())
                    .await?;
            let servers =
                dns::authoritative_servers(&self.resolver, &target.zone, explicit).await?;
            let want = persist::Wanted {
                issuer: issuers[0].clone(),
                issuers: issuers.clone(),
                account_uri: account.account.id().to_string(),
                wildcard,
                persist_until: spec.persist_until,
            };
            let lacking: Vec<String> = dns::serving(&servers, &target.owner)
                .await
                .into_iter()
                .filter(|(_, served)| {
                    !matches!(served, Served::Txt(v) if v.iter().any(|x| persist::satisfies(x, &want, now)))
                })
                .map(|(s, _)| s.name)
                .collect();
            if !zones.contains(&target.zone) {
                zones.push(target.zone.clone());
            }
            if lacking.is_empty() {
                tracing::info!(dns_zone = %target.zone, owner = %target.owner, servers = servers.len(),
                    "the dns-persist-01 record stands on every authoritative server: no DNS update");
                continue;
            }
            tracing::info!(dns_zone = %target.zone, owner = %target.owner, lacking = %lacking.join(", "),
                "the dns-persist-01 record is missing there (or names another account or CA): writing it");
            to_write.push((target, servers, want.value()));
        }
        if to_write.is_empty() {
            return Ok((zones, Duration::ZERO, 0));
        }
        progress.enter(Phase::PublishingTxt);
        let updater = Updater::new(server, &self.resolver).await?;
        let book = persist::Book::new(self.state.root(), &spec.name);
        for (target, _, value) in &to_write {
            let written = persist::Written {
                dns_server: spec.dns.clone(),
                zone: target.zone.clone(),
                owner: target.owner.clone(),
                value: value.clone(),
                written_at: now,
            };
            let book = book.clone();
            blocking(move || book.add(written)).await.map_err(io_err(
                "cannot record the dns-persist-01 value in the state directory",
            ))?;
            updater
                .add_txt_values(&target.zone, &target.owner, &[value])
                .await?;
            tracing::info!(dns_zone = %target.zone, owner = %target.owner, value = %value,
                "dns-persist-01 record written");
        }
        progress.enter(Phase::WaitingForPropagation);
        let t0 = Instant::now();
        let timeout = self.settings.propagation.timeout;
        let waits = to_write.iter().map(|(target, servers, value)| {
            dns::wait_for_txt(servers, &target.owner, std::slice::from_ref(value), timeout)
        });
        for r in futures::future::join_all(waits).await {
            r?;
        }
        let propagation = t0.elapsed();
        tracing::info!(
            ms = propagation.as_millis() as u64,
            "every authoritative server serves the dns-persist-01 records"
        );
        Ok((zones, propagation, to_write.len()))
    }

    /// Write the new version into the state directory and make it live (off the async runtime).
    async fn install(
        &self,
        spec: &CertSpec,
        leaf: &CertFacts,
        files: &CertFiles,
        progress: &Progress,
    ) -> Result<(), RenewError> {
        progress.enter(Phase::Installing);
        let version = state::version_name(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            &leaf.serial,
        );
        let (st, name, files) = (self.state.clone(), spec.name.clone(), files.clone());
        blocking(move || st.install(&name, &version, &files))
            .await
            .map(|_| ())
            .map_err(io_err(format!(
                "cannot install {} into the state directory",
                spec.name
            )))
    }

    /// Delete exactly the values we published (one UPDATE per zone, shared with other renewals'
    /// deletions there), and drop their journal records.
    async fn cleanup(&self, published: Vec<Published>) {
        let mut groups: Vec<Vec<Published>> = Vec::new();
        for p in published {
            match groups
                .iter_mut()
                .find(|g| g[0].zone == p.zone && Arc::ptr_eq(&g[0].updater, &p.updater))
            {
                Some(g) => g.push(p),
                None => groups.push(vec![p]),
            }
        }
        for group in groups {
            let first = &group[0];
            let mut changes: Vec<dns::Change> = Vec::new();
            for p in &group {
                match changes.iter_mut().find(|c| c.owner == p.owner) {
                    Some(c) => c.values.push(p.value.clone()),
                    None => changes.push(dns::Change::new(dns::Op::Delete, &p.owner, &[&p.value])),
                }
            }
            let server = first.updater.server().name().to_string();
            let zone = first.zone.clone();
            match self
                .updates
                .submit(&server, &first.updater, &zone, changes)
                .await
            {
                Ok(()) => {
                    tracing::info!(dns_zone = %zone, values = group.len(), "TXT removed");
                    for p in group {
                        self.journal_remove(p).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(dns_zone = %zone, error = %e,
                        "cannot delete TXT values; they stay in the cleanup journal and are retried at next start");
                }
            }
        }
    }
}

/// The dns-01 values of every pending authorization of `order` (valid ones need nothing).
async fn pending_challenges(
    account: &AcmeAccount,
    order: &mut instant_acme::Order,
    kind: ChallengeKind,
    progress: &Progress,
) -> Result<Vec<Pending>, RenewError> {
    progress.enter(Phase::FetchingAuthorizations);
    let mut pending = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(|e| account.error(Phase::FetchingAuthorizations, e))?;
        let domain = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => return Err(rejected(account, domain, other, &authz.challenges).into()),
        }
        let offered: Vec<String> = authz
            .challenges
            .iter()
            .map(|c| challenge_name(&c.r#type))
            .collect();
        let identifier = authz.identifier();
        let wildcard = identifier.wildcard;
        let base = match identifier.identifier {
            Identifier::Dns(d) => d.trim_start_matches("*.").to_string(),
            _ => domain.trim_start_matches("*.").to_string(),
        };
        let Some(challenge) = authz.challenge(challenge_type(kind)) else {
            return Err(AcmeError::NoDnsChallenge {
                ca: account.ca.clone(),
                domain,
                wanted: kind.as_str().to_string(),
                offered,
            }
            .into());
        };
        let value = match kind {
            ChallengeKind::Dns01 => Some(challenge.key_authorization().dns_value()),
            ChallengeKind::DnsPersist01 => None,
        };
        pending.push(Pending {
            domain,
            base,
            wildcard,
            value,
        });
    }
    Ok(pending)
}

/// instant-acme 0.8.5 knows no dns-persist-01: the CA's challenge arrives as `Unknown`, which is enough to
/// find it in the authorization and answer it (an empty POST, like dns-01).
fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Dns01 => ChallengeType::Dns01,
        ChallengeKind::DnsPersist01 => ChallengeType::Unknown(kind.as_str().to_string()),
    }
}

fn challenge_name(t: &ChallengeType) -> String {
    match t {
        ChallengeType::Http01 => "http-01".into(),
        ChallengeType::Dns01 => "dns-01".into(),
        ChallengeType::TlsAlpn01 => "tls-alpn-01".into(),
        ChallengeType::Unknown(s) => s.clone(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// The CA's verdict on a name whose authorization is no longer pending nor valid.
fn rejected(
    account: &AcmeAccount,
    domain: String,
    status: AuthorizationStatus,
    challenges: &[instant_acme::Challenge],
) -> AcmeError {
    AcmeError::Rejected {
        ca: account.ca.clone(),
        domain,
        status: format!("{status:?}").to_ascii_lowercase(),
        problem: challenges
            .iter()
            .find_map(|c| c.error.clone())
            .map(Box::new),
    }
}

/// Answer every pending dns-01 challenge, then poll the authorizations until the CA has validated every
/// name (a rejected name ends the attempt at once, with the CA's error for it), then the order until it
/// is ready.
async fn validate(
    account: &AcmeAccount,
    order: &mut instant_acme::Order,
    challenge: &ChallengeType,
    answered: bool,
    progress: &Progress,
) -> Result<(), RenewError> {
    if answered {
        progress.enter(Phase::AnsweringChallenge);
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(|e| account.error(Phase::FetchingAuthorizations, e))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut ch) = authz.challenge(challenge.clone()) {
                ch.set_ready()
                    .await
                    .map_err(|e| account.error(Phase::AnsweringChallenge, e))?;
            }
        }
        progress.enter(Phase::WaitingForValidation);
        parked(wait_for_authorizations(account, order)).await?;
    }
    progress.enter(Phase::WaitingForValidation);
    // Every authorization is valid, so the order is normally ready already: look once before polling
    // (the poll's first look comes only after POLL_FIRST).
    match order.refresh().await {
        Ok(state) if state.status == OrderStatus::Ready && state.error.is_none() => return Ok(()),
        Ok(_) => {}
        Err(e) => return Err(account.error(Phase::WaitingForValidation, e).into()),
    }
    let poll = RetryPolicy::new()
        .initial_delay(POLL_FIRST)
        .backoff(1.5)
        .timeout(VALIDATION_TIMEOUT);
    match order.poll_ready(&poll).await {
        Ok(OrderStatus::Ready) => Ok(()),
        Ok(_) => Err(order_invalid(account, order, None).await.into()),
        Err(instant_acme::Error::Api(problem)) => {
            Err(order_invalid(account, order, Some(problem)).await.into())
        }
        Err(e) => Err(account.error(Phase::WaitingForValidation, e).into()),
    }
}

/// Poll every pending authorization until all are valid; the first one the CA rejects ends the wait.
async fn wait_for_authorizations(
    account: &AcmeAccount,
    order: &mut instant_acme::Order,
) -> Result<(), RenewError> {
    let deadline = tokio::time::Instant::now() + VALIDATION_TIMEOUT;
    let mut delay = POLL_FIRST;
    loop {
        tokio::time::sleep(delay).await;
        delay = delay.mul_f32(1.5).min(POLL_MAX);
        let mut all_valid = true;
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(|e| account.error(Phase::WaitingForValidation, e))?;
            if authz.status == AuthorizationStatus::Pending {
                authz
                    .refresh()
                    .await
                    .map_err(|e| account.error(Phase::WaitingForValidation, e))?;
            }
            match authz.status {
                AuthorizationStatus::Valid => {}
                AuthorizationStatus::Pending => all_valid = false,
                other => {
                    let domain = authz.identifier().to_string();
                    return Err(rejected(account, domain, other, &authz.challenges).into());
                }
            }
        }
        if all_valid {
            return Ok(());
        }
        if tokio::time::Instant::now() + delay > deadline {
            return Err(account
                .error(
                    Phase::WaitingForValidation,
                    instant_acme::Error::Timeout(None),
                )
                .into());
        }
    }
}

/// The error of an invalid order, with the CA's error for every name whose challenge failed.
async fn order_invalid(
    account: &AcmeAccount,
    order: &mut instant_acme::Order,
    problem: Option<Problem>,
) -> AcmeError {
    let mut rejected = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(Ok(authz)) = authzs.next().await {
        for ch in &authz.challenges {
            if let Some(err) = &ch.error {
                rejected.push((authz.identifier().to_string(), err.clone()));
            }
        }
    }
    AcmeError::OrderInvalid {
        ca: account.ca.clone(),
        url: order.url().to_string(),
        problem: problem
            .or_else(|| order.state().error.clone())
            .map(Box::new),
        rejected,
    }
}

/// The key and CSR of a new version, being made on the blocking pool.
type KeyJob = tokio::task::JoinHandle<Result<(NewKey, Vec<u8>), CertError>>;

/// Start making the new version's key (or taking the live one: `key.reuse`) and its CSR on the
/// blocking pool, inside the caller's span.
fn start_key(spec: &CertSpec, state: &StateDir) -> KeyJob {
    let (key_spec, domains) = (spec.key, spec.domains.clone());
    let reuse = spec.key_reuse.then(|| (state.clone(), spec.name.clone()));
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let key = match reuse.and_then(|(state, name)| reusable_key(&state, &name, key_spec)) {
                Some(key) => key,
                None => NewKey::generate(key_spec)?,
            };
            let csr = key.csr_der(&domains)?;
            Ok((key, csr))
        })
    })
}

/// Finalize with the key of `key_job` and our own CSR; download the chain.
async fn finalize(
    spec: &CertSpec,
    key_job: KeyJob,
    account: &AcmeAccount,
    order: &mut instant_acme::Order,
    progress: &Progress,
) -> Result<(NewKey, String), RenewError> {
    // Only what is left of the key's making counts here.
    progress.enter(Phase::GeneratingKey);
    let (key, csr) = key_job
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    progress.enter(Phase::Finalizing);
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| account.error(Phase::Finalizing, e))?;
    progress.enter(Phase::DownloadingCertificate);
    // A CA that issues at once answers the finalization with a valid order: download it now; only an
    // order still processing is polled (whose first look comes after POLL_FIRST).
    let now = match order.state().status {
        OrderStatus::Valid => order
            .certificate()
            .await
            .map_err(|e| account.error(Phase::DownloadingCertificate, e))?,
        _ => None,
    };
    let chain = match now {
        Some(chain) => chain,
        None => {
            let poll = RetryPolicy::new()
                .initial_delay(POLL_FIRST)
                .backoff(1.5)
                .timeout(ISSUANCE_TIMEOUT);
            order
                .poll_certificate(&poll)
                .await
                .map_err(|e| account.error(Phase::DownloadingCertificate, e))?
        }
    };
    let chain = match (&spec.preferred_chain, order.state().certificate.clone()) {
        (Some(want), Some(url)) => preferred(account, &url, chain, want).await?,
        _ => chain,
    };
    Ok((key, chain))
}

/// `preferred_chain`: the default chain if its topmost issuer is `want`, else the first of the CA's
/// alternate chains whose topmost issuer is; the default (and a warning naming what was offered) when
/// none is.
async fn preferred(
    account: &AcmeAccount,
    url: &str,
    default: String,
    want: &str,
) -> Result<String, RenewError> {
    let mut offered = Vec::new();
    let top = certs::top_issuer_cn(&default);
    if top.as_deref() == Some(want) {
        return Ok(default);
    }
    offered.extend(top);
    for alt in account.alternate_chains(url) {
        let chain = account
            .download_chain(&alt)
            .await
            .map_err(|e| account.error(Phase::DownloadingCertificate, e))?;
        let top = certs::top_issuer_cn(&chain);
        if top.as_deref() == Some(want) {
            tracing::info!(issuer = %want, "installing the CA's alternate chain (preferred_chain)");
            return Ok(chain);
        }
        offered.extend(top);
    }
    tracing::warn!(preferred_chain = %want, offered = %offered.join(", "),
        "no chain of the CA has the preferred topmost issuer; installing the default chain");
    Ok(default)
}

/// `key.reuse`: the live private key, when there is one of the spec's key type; else None (and why, in
/// the log).
fn reusable_key(state: &StateDir, name: &str, want: KeySpec) -> Option<NewKey> {
    let files = match state.read_live(name) {
        Ok(Some(f)) => f,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(cert_name = %name, error = %e, "key.reuse: the live key cannot be read; a new key is generated");
            return None;
        }
    };
    match NewKey::from_pem(&files.privkey) {
        Ok((key, kind)) if kind == want => {
            tracing::info!(cert_name = %name, "key.reuse: keeping the live private key");
            Some(key)
        }
        Ok((_, kind)) => {
            tracing::warn!(cert_name = %name, live = %kind, wanted = %want,
                "key.reuse: the live key is of another type than `key:`; a new key is generated");
            None
        }
        Err(e) => {
            tracing::warn!(cert_name = %name, error = %e, "key.reuse: the live key is unusable; a new key is generated");
            None
        }
    }
}

impl crate::core::Work for Engine {
    fn renew(
        self: Arc<Self>,
        spec: Arc<CertSpec>,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> crate::core::BoxFuture<Result<Renewed, RenewError>> {
        Box::pin(async move { self.renew_cancellable(&spec, cancel).await })
    }

    fn redeploy(
        self: Arc<Self>,
        spec: Arc<CertSpec>,
    ) -> crate::core::BoxFuture<Result<(), RenewError>> {
        Box::pin(async move { self.redeploy_live(&spec).await })
    }

    fn renewal_window(
        self: Arc<Self>,
        spec: Arc<CertSpec>,
        facts: CertFacts,
    ) -> crate::core::BoxFuture<Result<Option<RenewalWindow>, RenewError>> {
        Box::pin(async move { Engine::renewal_window(&self, &spec, &facts).await })
    }

    fn inspect(
        self: Arc<Self>,
        specs: Vec<Arc<CertSpec>>,
    ) -> crate::core::BoxFuture<Vec<(String, crate::core::Inspection)>> {
        let state = self.state.clone();
        Box::pin(async move { blocking(move || inspect_all(&state, &specs)).await })
    }
}

/// How many threads read `live/` at once for a large set of specs ([`inspect_all`]).
const INSPECT_THREADS: usize = 4;
/// Below this many specs one thread reads them all (starting threads would cost more than it saves).
const INSPECT_SERIAL_MAX: usize = 64;

/// What `live/` holds for each spec, and whether its deploy targets need the live files (blocking).
/// Many specs (the start, a SIGHUP) are read by up to [`INSPECT_THREADS`] scoped threads, each taking
/// a contiguous share: parsing the certificate and the key is CPU work, and the files may be on a disk
/// that answers better to several requests in flight. The result is in the order of `specs`.
pub fn inspect_all(
    state: &StateDir,
    specs: &[Arc<CertSpec>],
) -> Vec<(String, crate::core::Inspection)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(INSPECT_THREADS);
    if specs.len() <= INSPECT_SERIAL_MAX || threads == 1 {
        return specs.iter().map(|s| inspect_one(state, s)).collect();
    }
    let share = specs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let span = tracing::Span::current();
        let parts: Vec<_> = specs
            .chunks(share)
            .map(|part| {
                let span = span.clone();
                scope.spawn(move || {
                    span.in_scope(|| {
                        part.iter()
                            .map(|s| inspect_one(state, s))
                            .collect::<Vec<_>>()
                    })
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// [`inspect_all`] of one spec: one read of live/ serves both the certificate's facts and the
/// comparison with the deploy targets.
fn inspect_one(state: &StateDir, spec: &CertSpec) -> (String, crate::core::Inspection) {
    let inspection = match crate::live::read_live_files(state, &spec.name) {
        Ok(Some(files)) => crate::core::Inspection {
            redeploy: crate::deploy::needs_redeploy(spec, &files, &state.live_dir(&spec.name)),
            live: crate::live::live_cert(state, &spec.name, &files).map(Some),
        },
        live => crate::core::Inspection {
            live: live.map(|_| None),
            redeploy: false,
        },
    };
    (spec.name.clone(), inspection)
}

impl Engine {
    /// Install the live files of `spec` on its deploy targets again, with reloads (holding its lock).
    /// `cluster:` first the cluster's version, when it is newer than the live one (a version for other
    /// names is refused with [`ClusterError::NamesDiffer`]).
    pub async fn redeploy_live(&self, spec: &CertSpec) -> Result<(), RenewError> {
        let _lock = self.lock(spec).await?;
        if let Some(c) = &self.cluster {
            if self.adopt_if_newer(c, spec, true).await?.is_some() {
                return Ok(());
            }
        }
        let (state, name) = (self.state.clone(), spec.name.clone());
        let files = blocking(move || state.read_live(&name))
            .await
            .map_err(io_err(format!(
                "cannot read the live files of {}",
                spec.name
            )))?;
        match files {
            Some(files) => {
                crate::deploy::install(spec, &files, &self.state.live_dir(&spec.name)).await?;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(days: u64, names: &[&str], key_matches: bool) -> Result<Option<LiveCert>, LiveError> {
        let nb = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        Ok(Some(LiveCert {
            facts: CertFacts {
                serial: "01".into(),
                not_before: nb,
                not_after: nb + Duration::from_secs(days * 86400),
                dns_names: names.iter().map(|s| s.to_string()).collect(),
                public_key: vec![],
                authority_key_id: None,
                raw_serial: vec![1],
                subject: String::new(),
                issuer: String::new(),
            },
            key_matches,
        }))
    }

    #[tokio::test]
    async fn a_failed_directory_is_not_retried_by_every_renewal_window_request() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        // Its CA at port 9 on loopback: nothing listens, the connection is refused at once.
        let settings = crate::testutil::one_cert_settings(dir.path());
        let spec = settings.certs["web"].clone();
        let engine = Engine::new(Arc::new(settings)).unwrap();
        let facts = live(90, &["a.example.test"], true).unwrap().unwrap().facts;

        let first = engine.renewal_window(&spec, &facts).await.unwrap_err();
        let text = first.to_string();
        assert!(
            matches!(first, RenewError::Account { shared: None, .. })
                && text.starts_with(
                    "account `ca` (https://127.0.0.1:9/dir): asking for the renewal window (ARI): "
                ),
            "{text}"
        );
        let t = std::time::Instant::now();
        let second = engine.renewal_window(&spec, &facts).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        let text = second.to_string();
        assert!(
            matches!(
                second,
                RenewError::Account {
                    shared: Some(_),
                    ..
                }
            ) && text.contains("https://127.0.0.1:9/dir")
                && text.ends_with("(the same account failed 0s ago; asking again later)"),
            "{text}"
        );
        // Asking for a window never registers an account.
        assert!(!engine.state.account_file("ca").exists());
        // A renewal does not take the shortcut.
        match engine.account("ca", &Progress::default(), None).await {
            Err(RenewError::Account { shared: None, .. }) => {}
            Err(e) => panic!("a renewal got {e}"),
            Ok(_) => panic!("nothing listens on 127.0.0.1:9"),
        }
    }
}
