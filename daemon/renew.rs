//! One renewal from start to finish ([`Engine::renew`]), and the due rule ([`due`]).
//!
//! Order of a renewal (DESIGN.md "How a renewal goes"): account → order → for every authorization find the
//! zone and publish the TXT value (journal first, then RFC 2136 append) → wait until every authoritative
//! server of every zone serves every value → tell the CA → finalize with our own key and CSR → check the
//! chain → install into `live/` → deploy targets → delete exactly our TXT values (also on failure).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use tokio::sync::Mutex;

use crate::acme::{self, AcmeAccount, AcmeError};
use crate::certs::{self, CertError, CertFacts, NewKey};
use crate::config::{CertSpec, Settings};
use crate::dns::{self, DnsError, Resolver, Updater};
use crate::journal::{self, Journal};
use crate::scheduler;
use crate::state::{self, CertFiles, StateDir};

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("spec `{cert}`: {problem}")]
    Spec { cert: String, problem: String },
    #[error("interrupted by shutdown; its TXT values were removed")]
    Cancelled,
    #[error("another renewd process is renewing this certificate right now")]
    Busy,
    #[error("account `{account}` is unavailable: the attempt {} ago failed: {error}", humantime::format_duration(*.ago))]
    AccountUnavailable {
        account: String,
        ago: Duration,
        error: String,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RenewError {
    let context = context.into();
    move |source| RenewError::Io { context, source }
}

/// Why a certificate is (or is not yet) due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Renew now, for this reason.
    Now(String),
    /// Not yet: due at this moment.
    At(SystemTime),
}

/// The due rule (DESIGN.md step 1) without ARI, jitter or failure history: `notAfter − renew_before` when
/// set, else when a third of the lifetime is left (half, for lifetimes of 10 days or less). Missing,
/// unreadable, mismatched-key or changed-names certificates are due now. The rule itself lives in
/// [`crate::scheduler::decide`], which the daemon uses with ARI, jitter and history.
pub fn due(spec: &CertSpec, current: &Result<Option<LiveCert>, String>, now: SystemTime) -> Due {
    let history = scheduler::History::default();
    let input = scheduler::CertInput {
        spec,
        live: current,
        ari: None,
        history: &history,
        jitter: Duration::ZERO,
    };
    let decision = scheduler::decide(&input, now);
    if decision.at > now {
        return Due::At(decision.at);
    }
    match (&decision.reason, current) {
        (scheduler::Reason::RenewBefore | scheduler::Reason::LifetimeFraction, Ok(Some(live))) => {
            Due::Now(format!(
                "expires {}",
                humantime::format_rfc3339_seconds(live.facts.not_after)
            ))
        }
        (scheduler::Reason::NamesChanged, _) => {
            Due::Now(decision.summary.trim_start_matches("due now: ").to_string())
        }
        (reason, _) => Due::Now(reason.to_string()),
    }
}

/// The live certificate of a spec, as read from `live/NAME/`.
#[derive(Debug, Clone)]
pub struct LiveCert {
    pub facts: CertFacts,
    pub key_matches: bool,
}

/// Read `live/NAME/` (Ok(None) when there is none yet; Err(reason) when it is unreadable).
pub fn read_live(state: &StateDir, name: &str) -> Result<Option<LiveCert>, String> {
    let files = match state.read_live(name) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let ders = certs::pem_certificates(&files.cert).map_err(|e| e.to_string())?;
    let facts = certs::facts(&ders[0], 0).map_err(|e| e.to_string())?;
    let key_matches = certs::public_key_of_pem(&files.privkey)
        .map(|k| k == facts.public_key)
        .unwrap_or(false);
    Ok(Some(LiveCert { facts, key_matches }))
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
}

/// The outcome of considering one certificate.
#[derive(Debug)]
pub enum Outcome {
    Renewed(Renewed),
    NotDue {
        not_after: SystemTime,
        due: SystemTime,
        /// `due` is the start of the CA's renewal window (ARI), earlier than the lifetime rule.
        ari: bool,
    },
}

/// How long `renewd renew` waits for the CA's renewal window of one certificate before it keeps to the
/// lifetime rule.
pub const ARI_CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a renewal needs that outlives one order: settings, state, resolver, journal, accounts.
pub struct Engine {
    pub settings: Arc<Settings>,
    pub state: StateDir,
    resolver: Resolver,
    journal: Journal,
    accounts: Mutex<Accounts>,
}

/// The engine's ACME accounts: loaded (or registered) once, then shared by every renewal.
#[derive(Default)]
struct Accounts {
    ready: HashMap<String, AcmeAccount>,
    /// The last failed attempt to load or register each account (when, and why).
    failed: HashMap<String, (std::time::Instant, String)>,
}

/// After an account could not be loaded or registered (the CA unreachable, say), renewal-window requests
/// of its other certificates fail at once for this long instead of each trying again (at 1000
/// certificates that was 1000 connection attempts and ~12 s of CPU). Renewals always try.
pub const ACCOUNT_FAILURE_HOLD: Duration = Duration::from_secs(60);

/// One TXT value we published (or are about to).
struct Published {
    updater: Arc<Updater>,
    zone: String,
    owner: String,
    value: String,
    entry: Option<journal::Entry>,
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
        let resolver = Resolver::from_config(&settings.resolver)?;
        Ok(Engine {
            settings,
            state,
            resolver,
            journal,
            accounts: Mutex::new(Accounts::default()),
        })
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Remove TXT values a killed run left behind. Returns (removed, failed) counts; failures stay in the
    /// journal for the next start.
    pub async fn recover(&self) -> (usize, usize) {
        let stale = match self.journal.stale() {
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
                    tracing::info!(cert = %rec.cert, owner = %rec.owner, zone = %rec.zone,
                        "removed a TXT value left behind by an interrupted run");
                    let _ = self.journal.remove(&entry);
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove a stale TXT value; will retry at next start");
                    failed += 1;
                }
            }
        }
        self.journal.prune_locks();
        (removed, failed)
    }

    /// Renew `spec` if due (or always, with `force`).
    pub async fn renew_if_due(&self, spec: &CertSpec, force: bool) -> Result<Outcome, RenewError> {
        if !force {
            let live = read_live(&self.state, &spec.name);
            let now = SystemTime::now();
            if let (Due::At(at), Ok(Some(l))) = (due(spec, &live, now), &live) {
                // Not due by its lifetime; the CA may want it sooner (ARI, RFC 9773 §4.2: a revocation
                // ahead, say). A CA without renewalInfo, or one that does not answer, leaves the rule.
                let window =
                    tokio::time::timeout(ARI_CLI_TIMEOUT, self.renewal_window(spec, &l.facts));
                let ari_start = match window.await {
                    Ok(Ok(Some((start, _, _)))) => Some(start),
                    Ok(Ok(None)) => None,
                    Ok(Err(e)) => {
                        tracing::warn!(cert = %spec.name, error = %e,
                            "cannot fetch the CA's renewal window (ARI); keeping to the lifetime rule");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(cert = %spec.name,
                            "no renewal window (ARI) from the CA within {}s; keeping to the lifetime rule",
                            ARI_CLI_TIMEOUT.as_secs());
                        None
                    }
                };
                let not_after = l.facts.not_after;
                match ari_start {
                    Some(start) if start <= now => {
                        tracing::info!(cert = %spec.name, "the CA's renewal window (ARI) is open: renewing");
                    }
                    Some(start) if start < at => {
                        return Ok(Outcome::NotDue {
                            not_after,
                            due: start,
                            ari: true,
                        });
                    }
                    _ => {
                        return Ok(Outcome::NotDue {
                            not_after,
                            due: at,
                            ari: false,
                        })
                    }
                }
            }
        }
        self.renew(spec).await.map(Outcome::Renewed)
    }

    async fn account(&self, name: &str) -> Result<AcmeAccount, RenewError> {
        self.account_unless_failed(name, None).await
    }

    /// The account `name`; with `hold`, fails at once when the last attempt failed less than `hold` ago.
    async fn account_unless_failed(
        &self,
        name: &str,
        hold: Option<Duration>,
    ) -> Result<AcmeAccount, RenewError> {
        let mut accounts = self.accounts.lock().await;
        if let Some(a) = accounts.ready.get(name) {
            return Ok(a.clone());
        }
        if let (Some(hold), Some((at, error))) = (hold, accounts.failed.get(name)) {
            if at.elapsed() < hold {
                return Err(RenewError::AccountUnavailable {
                    account: name.to_string(),
                    ago: Duration::from_secs(at.elapsed().as_secs()),
                    error: error.clone(),
                });
            }
        }
        let settings = self
            .settings
            .accounts
            .get(name)
            .ok_or_else(|| RenewError::Spec {
                cert: String::new(),
                problem: format!("account `{name}` is not defined"),
            })?;
        match acme::account(settings, &self.state).await {
            Ok(account) => {
                accounts.failed.remove(name);
                accounts.ready.insert(name.to_string(), account.clone());
                Ok(account)
            }
            Err(e) => {
                accounts
                    .failed
                    .insert(name.to_string(), (std::time::Instant::now(), e.to_string()));
                Err(e.into())
            }
        }
    }

    /// The CA's suggested renewal window (ARI) for `facts`, the live certificate of `spec`, through the
    /// engine's cached account: (start, end, Retry-After). `Ok(None)` when the CA offers no renewalInfo.
    pub async fn renewal_window(
        &self,
        spec: &CertSpec,
        facts: &CertFacts,
    ) -> Result<Option<(SystemTime, SystemTime, Duration)>, RenewError> {
        let account = self
            .account_unless_failed(&spec.account, Some(ACCOUNT_FAILURE_HOLD))
            .await?;
        Ok(acme::renewal_window(&account, facts).await?)
    }

    /// Place the order for `spec`. With a live predecessor (named by `replaces`) the order says it
    /// replaces it (RFC 9773 §5); when the CA cannot take that (no ARI, `alreadyReplaced`, any other
    /// refusal that is not a rate limit), the order is placed once more without it.
    async fn new_order(
        &self,
        spec: &CertSpec,
        account: &AcmeAccount,
        identifiers: &[Identifier],
        replaces: Option<instant_acme::CertificateIdentifier<'static>>,
    ) -> Result<instant_acme::Order, RenewError> {
        let context = || format!("new order for {}", spec.domains.join(", "));
        if let Some(id) = replaces {
            let shown = id.to_string();
            match account
                .account
                .new_order(&NewOrder::new(identifiers).replaces(id))
                .await
            {
                Ok(order) => {
                    tracing::info!(cert = %spec.name, replaces = %shown, "the order replaces the live certificate");
                    return Ok(order);
                }
                // The directory has no renewalInfo: nothing was sent.
                Err(instant_acme::Error::Unsupported(_)) => {}
                Err(e) if acme::is_rate_limited(&e) => {
                    return Err(account.error(context(), e).into());
                }
                // A problem document (alreadyReplaced, malformed, ...), or an order that does not
                // echo `replaces` (instant-acme's check; RFC 9773 §5 requires the echo).
                Err(e)
                    if matches!(e, instant_acme::Error::Api(_))
                        || matches!(&e, instant_acme::Error::Other(inner)
                            if inner.to_string().contains("replaces")) =>
                {
                    tracing::warn!(cert = %spec.name, replaces = %shown, error = %acme::describe(&e),
                        "the CA refused `replaces`; ordering again without it");
                }
                Err(e) => return Err(account.error(context(), e).into()),
            }
        }
        account
            .account
            .new_order(&NewOrder::new(identifiers))
            .await
            .map_err(|e| account.error(context(), e).into())
    }

    /// Renew `spec` now.
    pub async fn renew(&self, spec: &CertSpec) -> Result<Renewed, RenewError> {
        let (_never, cancel) = tokio::sync::watch::channel(false);
        self.renew_cancellable(spec, cancel).await
    }

    /// Renew `spec` now, giving up when `cancel` becomes true. Either way, every TXT value published
    /// is deleted before this returns. Holds the certificate's lock (`state_dir/locks/NAME.lock`) so that
    /// two renewd processes never order the same certificate at once.
    pub async fn renew_cancellable(
        &self,
        spec: &CertSpec,
        mut cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Renewed, RenewError> {
        let _lock = match self.state.lock_cert(&spec.name) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Err(RenewError::Busy),
            Err(e) => {
                return Err(RenewError::Io {
                    context: format!("cannot lock {}", spec.name),
                    source: e,
                })
            }
        };
        let started = Instant::now();
        let mut published: Vec<Published> = Vec::new();
        let result = tokio::select! {
            r = self.renew_inner(spec, &mut published, started) => r,
            _ = cancel.wait_for(|stop| *stop) => Err(RenewError::Cancelled),
        };
        self.cleanup(spec, published).await;
        result
    }

    async fn renew_inner(
        &self,
        spec: &CertSpec,
        published: &mut Vec<Published>,
        started: Instant,
    ) -> Result<Renewed, RenewError> {
        let server = self
            .settings
            .dns_servers
            .get(&spec.dns)
            .ok_or_else(|| RenewError::Spec {
                cert: spec.name.clone(),
                problem: format!("dns server `{}` is not defined", spec.dns),
            })?;
        let account = self.account(&spec.account).await?;
        let updater = Arc::new(Updater::new(server, &self.resolver).await?);

        let identifiers: Vec<Identifier> = spec
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        // The certificate this order replaces (ARI): the live one, when it can be named.
        let replaces = read_live(&self.state, &spec.name)
            .ok()
            .flatten()
            .and_then(|live| acme::certificate_id(&live.facts));
        let mut order = self
            .new_order(spec, &account, &identifiers, replaces)
            .await?;
        let order_url = order.url().to_string();
        tracing::info!(cert = %spec.name, order = %order_url, "order placed");

        // 1. Collect the DNS-01 challenges of every pending authorization.
        struct Pending {
            domain: String,
            value: String,
        }
        let mut pending: Vec<Pending> = Vec::new();
        {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(|e| account.error("fetching authorizations", e))?;
                let domain = authz.identifier().to_string();
                match authz.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(AcmeError::ChallengeInvalid {
                            domain,
                            detail: format!("authorization is {other:?}"),
                        }
                        .into())
                    }
                }
                let challenge = authz.challenge(ChallengeType::Dns01).ok_or_else(|| {
                    AcmeError::ChallengeInvalid {
                        domain: domain.clone(),
                        detail: "the CA offers no dns-01 challenge for this name".into(),
                    }
                })?;
                pending.push(Pending {
                    domain,
                    value: challenge.key_authorization().dns_value(),
                });
            }
        }

        // 2. Where does each value go? Then publish (journal first).
        let mut by_owner: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for p in &pending {
            let target = dns::find_target(&self.resolver, &p.domain, spec.zone.as_deref()).await?;
            by_owner
                .entry((target.zone.clone(), target.owner.clone()))
                .or_default()
                .push(p.value.clone());
        }
        for ((zone, owner), values) in &by_owner {
            for value in values {
                let record = journal::Record {
                    cert: spec.name.clone(),
                    dns_server: spec.dns.clone(),
                    zone: zone.clone(),
                    owner: owner.clone(),
                    value: value.clone(),
                    published_at: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                };
                let entry = self
                    .journal
                    .add(&record)
                    .map_err(io_err("cannot write the cleanup journal"))?;
                published.push(Published {
                    updater: updater.clone(),
                    zone: zone.clone(),
                    owner: owner.clone(),
                    value: value.clone(),
                    entry: Some(entry),
                });
            }
            // All values of one owner in one UPDATE: a second UPDATE to the same zone would wait for
            // BIND's notify-delay (5 s) before the secondaries hear of it.
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            if let Err(e) = updater.add_txt_values(zone, owner, &refs).await {
                if e.update_was_rejected() {
                    // Nothing was published: forget these values instead of "cleaning" them later.
                    let ours = published.len() - values.len();
                    for p in published.drain(ours..) {
                        if let Some(entry) = &p.entry {
                            let _ = self.journal.remove(entry);
                        }
                    }
                }
                return Err(e.into());
            }
            tracing::info!(cert = %spec.name, zone = %zone, owner = %owner, values = values.len(), "TXT published");
        }

        // 3. Wait until every authoritative server of every zone serves every value.
        let mut waits = Vec::new();
        for ((zone, owner), values) in &by_owner {
            let resolver = &self.resolver;
            let explicit = &self.settings.propagation.nameservers;
            let timeout = self.settings.propagation.timeout;
            waits.push(async move {
                let servers = dns::authoritative_servers(resolver, zone, explicit).await?;
                let t0 = Instant::now();
                let report = dns::wait_for_txt(&servers, owner, values, timeout).await?;
                for (s, took) in &report.per_server {
                    tracing::debug!(zone = %zone, server = %s.name, ms = took.as_millis() as u64, "served");
                }
                Ok::<Duration, DnsError>(t0.elapsed())
            });
        }
        let mut propagation = Duration::ZERO;
        for r in futures::future::join_all(waits).await {
            propagation = propagation.max(r?);
        }

        // 4. Tell the CA, and wait for the order to become ready.
        if !pending.is_empty() {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(|e| account.error("fetching authorizations", e))?;
                if authz.status != AuthorizationStatus::Pending {
                    continue;
                }
                if let Some(mut ch) = authz.challenge(ChallengeType::Dns01) {
                    ch.set_ready()
                        .await
                        .map_err(|e| account.error("answering the dns-01 challenge", e))?;
                }
            }
        }
        let poll = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(Duration::from_secs(180));
        let status = order.poll_ready(&poll).await;
        match status {
            Ok(OrderStatus::Ready) => {}
            Ok(_) | Err(instant_acme::Error::Api(_)) => {
                let detail =
                    self.challenge_errors(&mut order)
                        .await
                        .unwrap_or_else(|| match &status {
                            Err(e) => acme::describe(e),
                            Ok(s) => format!("order status {s:?}"),
                        });
                return Err(AcmeError::OrderInvalid {
                    url: order_url,
                    detail,
                }
                .into());
            }
            Err(e) => {
                return Err(account
                    .error("waiting for the order to become ready", e)
                    .into())
            }
        }

        // 5. Finalize with a fresh key and our own CSR.
        let key = NewKey::generate(spec.key)?;
        let csr = key.csr_der(&spec.domains)?;
        order
            .finalize_csr(&csr)
            .await
            .map_err(|e| account.error("finalizing the order", e))?;
        let chain = order
            .poll_certificate(&poll)
            .await
            .map_err(|e| account.error("downloading the certificate", e))?;
        let issued = certs::check_issued(&chain, key.pair.public_key_raw(), &spec.domains)?;

        // 6. Install: live/ first, then every deploy target.
        let files = CertFiles {
            cert: issued.cert_pem.clone(),
            chain: issued.chain_pem.clone(),
            fullchain: issued.fullchain_pem.clone(),
            privkey: key.pem(),
        };
        let version = state::version_name(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            &issued.leaf.serial,
        );
        self.state
            .install(&spec.name, &version, &files)
            .map_err(io_err(format!(
                "cannot install {} into the state directory",
                spec.name
            )))?;
        // Every deploy target all or nothing, config tests, reloads, hooks; rollback on a failed config test.
        crate::deploy::install(spec, &files, &self.state.live_dir(&spec.name)).await?;
        tracing::info!(cert = %spec.name, serial = %issued.leaf.serial,
            not_after = %issued.leaf.not_after_rfc3339(), "certificate renewed");
        Ok(Renewed {
            serial: issued.leaf.serial.clone(),
            not_after: issued.leaf.not_after,
            order_url,
            zones: by_owner.keys().map(|(z, _)| z.clone()).collect(),
            propagation,
            elapsed: started.elapsed(),
        })
    }

    /// The CA's reasons for failed challenges of an invalid order, if it gives any.
    async fn challenge_errors(&self, order: &mut instant_acme::Order) -> Option<String> {
        let mut reasons = Vec::new();
        let mut authzs = order.authorizations();
        while let Some(Ok(authz)) = authzs.next().await {
            for ch in &authz.challenges {
                if let Some(err) = &ch.error {
                    reasons.push(format!(
                        "{}: {}",
                        authz.identifier(),
                        acme::describe(&instant_acme::Error::Api(err.clone()))
                    ));
                }
            }
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Delete exactly the values we published (one UPDATE per owner), and drop their journal records.
    async fn cleanup(&self, spec: &CertSpec, published: Vec<Published>) {
        let mut groups: Vec<Vec<Published>> = Vec::new();
        for p in published {
            match groups.iter_mut().find(|g| {
                g[0].zone == p.zone
                    && g[0].owner == p.owner
                    && Arc::ptr_eq(&g[0].updater, &p.updater)
            }) {
                Some(g) => g.push(p),
                None => groups.push(vec![p]),
            }
        }
        for group in groups {
            let first = &group[0];
            let values: Vec<&str> = group.iter().map(|p| p.value.as_str()).collect();
            match first
                .updater
                .delete_txt_values(&first.zone, &first.owner, &values)
                .await
            {
                Ok(()) => {
                    for p in &group {
                        if let Some(entry) = &p.entry {
                            if let Err(e) = self.journal.remove(entry) {
                                tracing::warn!(error = %e, "cannot drop a cleanup journal record");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(cert = %spec.name, owner = %first.owner, error = %e,
                        "cannot delete TXT values; they stay in the cleanup journal and are retried at next start");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renew_before: Option<Duration>) -> CertSpec {
        CertSpec::for_test("web", "a.example.test", renew_before)
    }

    fn live(days: u64, names: &[&str], key_matches: bool) -> Result<Option<LiveCert>, String> {
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

    const DAY: u64 = 86400;
    fn at(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + days * DAY)
    }

    #[test]
    fn a_third_of_the_lifetime_left() {
        let l = live(90, &["a.example.test"], true);
        assert_eq!(due(&spec(None), &l, at(10)), Due::At(at(60)));
        assert!(matches!(due(&spec(None), &l, at(60)), Due::Now(_)));
    }

    #[test]
    fn short_lifetimes_renew_at_half() {
        let l = live(6, &["a.example.test"], true);
        assert_eq!(due(&spec(None), &l, at(1)), Due::At(at(3)));
    }

    #[test]
    fn renew_before_wins() {
        let l = live(90, &["a.example.test"], true);
        let s = spec(Some(Duration::from_secs(10 * DAY)));
        assert_eq!(due(&s, &l, at(1)), Due::At(at(80)));
    }

    /// With the CA unreachable, the first renewal-window request tries (and fails), the next ones of
    /// the same account fail at once for ACCOUNT_FAILURE_HOLD, and a renewal still tries for real.
    #[tokio::test]
    async fn a_failed_account_is_not_retried_by_every_renewal_window_request() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("certs.d")).unwrap();
        let key = d.join("tsig.key");
        std::fs::write(
            &key,
            "key \"k\" { algorithm hmac-sha256; secret \"2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=\"; };\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        std::fs::write(
            d.join("renewd.yaml"),
            format!(
                "state_dir: {}/state\naccounts: {{ ca: {{ directory: \"https://127.0.0.1:9/dir\" }} }}\n\
                 dns_servers: {{ p: {{ address: 127.0.0.1, tsig_key_file: {} }} }}\nresolver: [127.0.0.1]\n",
                d.display(),
                key.display()
            ),
        )
        .unwrap();
        std::fs::write(d.join("certs.d/web.yaml"), "domains: [a.example.test]\n").unwrap();
        let settings = crate::config::load(&d.join("renewd.yaml"))
            .unwrap()
            .settings;
        let spec = settings.certs["web"].clone();
        let engine = Engine::new(Arc::new(settings)).unwrap();
        let facts = live(90, &["a.example.test"], true).unwrap().unwrap().facts;

        let first = engine.renewal_window(&spec, &facts).await.unwrap_err();
        assert!(matches!(first, RenewError::Acme(_)), "{first}");
        let t = std::time::Instant::now();
        let second = engine.renewal_window(&spec, &facts).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        let text = second.to_string();
        assert!(
            matches!(second, RenewError::AccountUnavailable { .. })
                && text.starts_with("account `ca` is unavailable: the attempt 0s ago failed: ")
                && text.contains("https://127.0.0.1:9/dir"),
            "{text}"
        );
        // A renewal does not take the shortcut.
        match engine.account("ca").await {
            Err(RenewError::Acme(_)) => {}
            Err(e) => panic!("a renewal got {e}"),
            Ok(_) => panic!("nothing listens on 127.0.0.1:9"),
        }
    }

    #[test]
    fn missing_mismatched_or_renamed_is_due_now() {
        let s = spec(None);
        assert!(matches!(due(&s, &Ok(None), at(0)), Due::Now(_)));
        assert!(matches!(due(&s, &Err("bad".into()), at(0)), Due::Now(_)));
        assert!(matches!(
            due(&s, &live(90, &["a.example.test"], false), at(0)),
            Due::Now(_)
        ));
        assert!(matches!(
            due(&s, &live(90, &["b.example.test"], true), at(0)),
            Due::Now(_)
        ));
    }
}
