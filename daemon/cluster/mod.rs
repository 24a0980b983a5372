//! `cluster:` — several renewd members share one set of certificates through etcd (v3 API).
//!
//! Keys, under the configured prefix P (`/renewd/`):
//!
//! | key | value | written |
//! |---|---|---|
//! | `P/accounts/NAME` | the account's stored credentials, sealed | once, under the etcd lock `P/accounts/NAME/lock` |
//! | `P/certs/NAME/lock` | the member renewing NAME | bound to that member's lease ([`LOCK_TTL`]), kept alive while it renews |
//! | `P/certs/NAME/cleanup/ID` | a TXT value published and not yet removed (a journal record) | under the lock, before the UPDATE |
//! | `P/certs/NAME/version` | the newest certificate: PEMs, names, serial, notAfter, who, the private key sealed | in one transaction that holds only while the lock is the writer's |
//! | `P/certs/NAME/deployed/MEMBER` | the serial MEMBER deployed, and when | by each member after its deploy |
//!
//! One endpoint is used at a time (as etcd's own clients pin one): a request that finds it unreachable,
//! or without a leader, goes to the next one, and the one that answered is used from then on. (tonic's
//! balanced channel keeps sending requests to a dead member, each failing with a connection error.)
//! Every try is bounded by [`CALL_TIMEOUT`]. A call that no endpoint answers with a quorum marks the cluster
//! unreachable (since when, and why); the loop is told ([`Input::Cluster`]) and a probe asks again with a
//! growing pause until etcd answers, then the loop is told again. Nothing here blocks the loop.

pub mod follow;
mod lock;
pub mod seal;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn, TxnOp,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::ClusterSettings;
use crate::core::{ClusterNews, Input};
use crate::journal;

pub use lock::CertLock;

/// The lease of a certificate's lock: a member that dies holds it at most this long (seconds).
pub const LOCK_TTL: i64 = 10;
/// Every etcd request, including connecting to it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the lock of an account may take to get (another member may be registering it).
const ACCOUNT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// The probe's pauses while etcd is unreachable: from the first, doubling, up to the last.
const PROBE_FIRST: Duration = Duration::from_secs(1);
const PROBE_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No answer, no quorum, no leader: nobody can be sure to renew alone.
    #[error("etcd ({endpoints}) is unreachable or without quorum while {what}: {detail}")]
    Unavailable {
        endpoints: String,
        what: &'static str,
        detail: String,
    },
    /// etcd answered with a refusal (permission, authentication, a bad request).
    #[error("etcd ({endpoints}) refused {what}: {detail}")]
    Refused {
        endpoints: String,
        what: &'static str,
        detail: String,
    },
    /// Another member holds the certificate's lock.
    #[error("member `{member}` is renewing this certificate right now (etcd lock {key})")]
    Held { member: String, key: String },
    /// The lock's lease ran out while this member held it (etcd unreachable for [`LOCK_TTL`]).
    #[error("the cluster lock {key} was lost while renewing (etcd did not keep its lease alive); stopped so that another member can take over")]
    LockLost { key: String },
    /// A sealed value that this member's seal key does not open.
    #[error("{key} in etcd does not open with this member's seal key ({file}): {reason}; every member needs the same `seal_key_file`; nothing was installed")]
    Sealed {
        key: String,
        file: String,
        reason: seal::Unseal,
    },
    /// A value that is not what renewd writes there.
    #[error("{key} in etcd is not a usable renewd record: {problem}")]
    Corrupt { key: String, problem: String },
    /// The cluster's version names other domains than this member's spec.
    #[error("the cluster's version of {name} (renewed by {member}) is for {cluster}, but this member's spec names {spec}: not installed; give every member the same spec")]
    NamesDiffer {
        name: String,
        member: String,
        cluster: String,
        spec: String,
    },
}

impl ClusterError {
    /// Nothing can be decided until etcd answers again.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClusterError::Unavailable { .. } | ClusterError::LockLost { .. }
        )
    }
}

/// The newest certificate of one spec, as the cluster holds it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Version {
    /// The version's name where it was renewed (`archive/NAME/ID` on that member; the others install
    /// it under a name of their own, as they would a renewal).
    pub id: String,
    pub names: Vec<String>,
    /// Upper-case hex.
    pub serial: String,
    /// Unix seconds.
    pub not_after: u64,
    pub renewed_by: String,
    pub renewed_at: u64,
    pub cert: String,
    pub chain: String,
    pub fullchain: String,
    /// The private key PEM, sealed for this version's key ([`seal`]).
    pub privkey_sealed: String,
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("id", &self.id)
            .field("serial", &self.serial)
            .field("renewed_by", &self.renewed_by)
            .finish_non_exhaustive()
    }
}

/// One member's deploy of a version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployed {
    pub serial: String,
    /// Unix seconds.
    pub at: u64,
}

/// Whether etcd answers, as far as this member knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// No request made yet.
    Unknown,
    Up,
    Down {
        since: SystemTime,
        error: String,
    },
}

/// A member's handle on the cluster: the etcd client (connected on first use), its health, and the
/// loop to tell when the health changes.
pub struct Cluster {
    settings: ClusterSettings,
    /// One client per endpoint, connected on first use.
    clients: Vec<tokio::sync::OnceCell<Client>>,
    /// The endpoint that answered last.
    pinned: std::sync::atomic::AtomicUsize,
    health: Mutex<Health>,
    listener: Mutex<Option<UnboundedSender<Input>>>,
    probing: AtomicBool,
    /// etcd requests made (for the benchmark: requests per renewal).
    requests: std::sync::atomic::AtomicU64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Cluster {
    pub fn new(settings: ClusterSettings) -> Arc<Self> {
        Arc::new(Cluster {
            clients: settings
                .endpoints
                .iter()
                .map(|_| tokio::sync::OnceCell::new())
                .collect(),
            pinned: Default::default(),
            settings,
            health: Mutex::new(Health::Unknown),
            listener: Mutex::new(None),
            probing: AtomicBool::new(false),
            requests: Default::default(),
        })
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    pub fn member(&self) -> &str {
        &self.settings.member
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// etcd requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The daemon's loop: told when etcd becomes unreachable or answers again.
    pub fn set_listener(&self, tx: UnboundedSender<Input>) {
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    fn tell(&self, news: ClusterNews) {
        if let Some(tx) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(Input::Cluster(news));
        }
    }

    fn endpoints(&self) -> String {
        self.settings.endpoints.join(", ")
    }

    // ---- keys ----

    pub fn cert_key(&self, name: &str, leaf: &str) -> String {
        format!("{}certs/{name}/{leaf}", self.settings.prefix)
    }

    pub fn certs_prefix(&self) -> String {
        format!("{}certs/", self.settings.prefix)
    }

    fn account_key(&self, name: &str) -> String {
        format!("{}accounts/{name}", self.settings.prefix)
    }

    // ---- health ----

    fn up(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let was_down = matches!(*h, Health::Down { .. });
        *h = Health::Up;
        drop(h);
        if was_down {
            tracing::info!(endpoints = %self.endpoints(), "etcd answers again: renewals may order");
            self.tell(ClusterNews::Up);
        }
    }

    fn down(self: &Arc<Self>, error: &ClusterError) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*h, Health::Down { .. }) {
            let since = SystemTime::now();
            *h = Health::Down {
                since,
                error: error.to_string(),
            };
            drop(h);
            tracing::error!(error = %error,
                "etcd is unreachable or without quorum: no member can be sure to renew alone, so none orders; the local files stay in use");
            self.tell(ClusterNews::Down {
                since,
                error: error.to_string(),
            });
        } else {
            drop(h);
        }
        self.start_probe();
    }

    /// While etcd is unreachable: one probe task asks again (a linearizable read) with a growing pause.
    fn start_probe(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut pause = PROBE_FIRST;
            loop {
                tokio::time::sleep(pause).await;
                let prefix = me.settings.prefix.clone();
                let r = me
                    .call("checking etcd", |mut c| {
                        let prefix = prefix.clone();
                        async move {
                            c.get(
                                prefix,
                                Some(GetOptions::new().with_prefix().with_count_only()),
                            )
                            .await
                        }
                    })
                    .await;
                if r.is_ok() {
                    break;
                }
                pause = (pause * 2).min(PROBE_MAX);
            }
            me.probing.store(false, Ordering::Release);
        });
    }

    /// The client of endpoint `i` (connected on first use; without a user that needs no request).
    async fn client_at(&self, i: usize) -> Result<Client, ClusterError> {
        let s = &self.settings;
        let endpoint = std::slice::from_ref(&s.endpoints[i]);
        let c = self.clients[i]
            .get_or_try_init(|| async {
                let mut opts = ConnectOptions::new()
                    .with_connect_timeout(CALL_TIMEOUT)
                    .with_timeout(CALL_TIMEOUT)
                    // A member without a leader answers at once with an error (and ends watches)
                    // instead of letting requests wait: quorum loss is seen within a request.
                    .with_require_leader(true);
                if let Some(tls) = &s.tls {
                    let mut t = TlsOptions::new()
                        .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca_pem));
                    if let Some((cert, key)) = &tls.identity {
                        t = t.identity(Identity::from_pem(cert, key.expose()));
                    }
                    opts = opts.with_tls(t);
                }
                if let Some(a) = &s.auth {
                    // etcd's tokens expire (simple tokens after 5 idle minutes): get a new one then.
                    opts = opts
                        .with_user(
                            a.user.clone(),
                            String::from_utf8_lossy(a.password.expose()).into_owned(),
                        )
                        .with_auto_token_refresh(true);
                }
                match tokio::time::timeout(CALL_TIMEOUT, Client::connect(endpoint, Some(opts)))
                    .await
                {
                    Ok(r) => r.map_err(|e| self.classify("connecting", e)),
                    Err(_) => Err(self.unavailable("connecting", "no answer within 5s")),
                }
            })
            .await?;
        Ok(c.clone())
    }

    fn unavailable(&self, what: &'static str, detail: impl Into<String>) -> ClusterError {
        ClusterError::Unavailable {
            endpoints: self.endpoints(),
            what,
            detail: detail.into(),
        }
    }

    /// Unreachable (transport, timeouts, no leader) or refused (everything else etcd says).
    fn classify(&self, what: &'static str, e: etcd_client::Error) -> ClusterError {
        use etcd_client::Error as E;
        use tonic::Code;
        let detail = match &e {
            E::GRpcStatus(s) => s.message().to_string(),
            other => other.to_string(),
        };
        let unavailable = match &e {
            E::TransportError(_) | E::IoError(_) | E::LeaseKeepAliveError(_) => true,
            E::GRpcStatus(s) => {
                matches!(
                    s.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted
                ) || s.message().contains("no leader")
                    || s.message().contains("timed out")
                    || s.message().contains("leader changed")
            }
            _ => false,
        };
        if unavailable {
            self.unavailable(what, detail)
        } else {
            ClusterError::Refused {
                endpoints: self.endpoints(),
                what,
                detail,
            }
        }
    }

    /// One etcd request: to the pinned endpoint, then to each other one while the answer is "unreachable"
    /// or "no leader" (each try bounded by [`CALL_TIMEOUT`]); the health is updated from the outcome.
    /// `f` may run more than once: what it writes must be harmless to write again.
    async fn call<T, F, Fut>(self: &Arc<Self>, what: &'static str, f: F) -> Result<T, ClusterError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let first = self.pinned.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in (0..n).map(|k| (first + k) % n) {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let tried = match self.client_at(i).await {
                Ok(c) => match tokio::time::timeout(CALL_TIMEOUT, f(c)).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(self.classify(what, e)),
                    Err(_) => Err(self.unavailable(what, "no answer within 5s")),
                },
                Err(e) => Err(e),
            };
            match tried {
                Ok(v) => {
                    self.pinned.store(i, Ordering::Relaxed);
                    self.up();
                    return Ok(v);
                }
                Err(e) if e.is_unavailable() => {
                    tracing::debug!(endpoint = %self.settings.endpoints[i], error = %e,
                        "trying the next etcd endpoint");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        let e = last.expect("at least one endpoint");
        self.down(&e);
        Err(e)
    }

    /// The value of `key`, if it exists.
    async fn get_value(
        self: &Arc<Self>,
        what: &'static str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        let resp = self
            .call(what, |mut c| {
                let key = key.to_string();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Every (key, value) under `prefix`.
    async fn get_prefix(
        self: &Arc<Self>,
        what: &'static str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, ClusterError> {
        let resp = self
            .call(what, |mut c| {
                let prefix = prefix.to_string();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }

    // ---- versions ----

    /// The cluster's version of `name`, if any.
    pub async fn version(self: &Arc<Self>, name: &str) -> Result<Option<Version>, ClusterError> {
        let key = self.cert_key(name, "version");
        let Some(value) = self.get_value("reading a version", &key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|e| ClusterError::Corrupt {
                key,
                problem: e.to_string(),
            })
    }

    /// Seal `privkey` for `name`'s version key.
    pub fn seal_key_for(&self, name: &str, privkey: &str) -> String {
        seal::seal(
            &self.settings.seal_key,
            &self.cert_key(name, "version"),
            privkey.as_bytes(),
        )
    }

    /// The private key of `v` (the version of `name`).
    pub fn open_key(&self, name: &str, v: &Version) -> Result<String, ClusterError> {
        let key = self.cert_key(name, "version");
        let plain =
            seal::unseal(&self.settings.seal_key, &key, &v.privkey_sealed).map_err(|reason| {
                ClusterError::Sealed {
                    key: key.clone(),
                    file: self.settings.seal_key_file.display().to_string(),
                    reason,
                }
            })?;
        String::from_utf8(plain).map_err(|_| ClusterError::Corrupt {
            key,
            problem: "the private key is not text".into(),
        })
    }

    /// Write `v` as the version of `name` in one transaction, only while `lock` is this member's.
    pub async fn publish(
        self: &Arc<Self>,
        lock: &CertLock,
        name: &str,
        v: &Version,
    ) -> Result<(), ClusterError> {
        let value = serde_json::to_vec(v).expect("a version serializes");
        self.guarded_put(
            lock,
            self.cert_key(name, "version"),
            value,
            "writing a version",
        )
        .await
    }

    /// Record that this member deployed `serial` of `name`.
    pub async fn deployed(self: &Arc<Self>, name: &str, serial: &str) -> Result<(), ClusterError> {
        let key = self.cert_key(name, &format!("deployed/{}", self.settings.member));
        let value = serde_json::to_vec(&Deployed {
            serial: serial.to_string(),
            at: unix(SystemTime::now()),
        })
        .expect("serializes");
        self.call("recording a deploy", |mut c| {
            let key = key.clone();
            let value = value.clone();
            async move { c.put(key, value, None).await }
        })
        .await
        .map(|_| ())
    }

    /// Who deployed which serial of `name`.
    pub async fn deployments(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Vec<(String, Deployed)>, ClusterError> {
        let prefix = self.cert_key(name, "deployed/");
        let kvs = self.get_prefix("reading deploys", &prefix).await?;
        Ok(kvs
            .into_iter()
            .filter_map(|(key, value)| {
                let member = key.strip_prefix(&prefix)?.to_string();
                Some((member, serde_json::from_slice(&value).ok()?))
            })
            .collect())
    }

    // ---- the cleanup journal in etcd ----

    /// Record a TXT value before it is published (under `lock`). Returns the record's key.
    pub async fn journal_add(
        self: &Arc<Self>,
        lock: &CertLock,
        record: &journal::Record,
    ) -> Result<String, ClusterError> {
        let id = format!(
            "{:020}-{:08x}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            rand::random::<u32>()
        );
        let key = self.cert_key(&record.cert, &format!("cleanup/{id}"));
        let value = serde_json::to_vec(record).expect("a record serializes");
        self.guarded_put(lock, key.clone(), value, "recording a TXT value")
            .await?;
        Ok(key)
    }

    pub async fn journal_remove(self: &Arc<Self>, key: String) -> Result<(), ClusterError> {
        self.call("dropping a TXT record", |mut c| {
            let key = key.clone();
            async move { c.delete(key, None).await }
        })
        .await
        .map(|_| ())
    }

    /// The TXT values a renewal of `name` published and did not remove (its member died).
    pub async fn journal_stale(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Vec<(String, journal::Record)>, ClusterError> {
        let prefix = self.cert_key(name, "cleanup/");
        let kvs = self
            .get_prefix("reading the cleanup journal", &prefix)
            .await?;
        let mut out = Vec::new();
        for (key, value) in kvs {
            match serde_json::from_slice(&value) {
                Ok(r) => out.push((key, r)),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "an unreadable cleanup record in etcd; left alone")
                }
            }
        }
        Ok(out)
    }

    async fn guarded_put(
        self: &Arc<Self>,
        lock: &CertLock,
        key: String,
        value: Vec<u8>,
        what: &'static str,
    ) -> Result<(), ClusterError> {
        let txn = Txn::new()
            .when([Compare::lease(
                lock.key().to_string(),
                CompareOp::Equal,
                lock.lease(),
            )])
            .and_then([TxnOp::put(key, value, None)]);
        let resp = self
            .call(what, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(ClusterError::LockLost {
                key: lock.key().to_string(),
            })
        }
    }

    // ---- accounts ----

    /// The account `name`'s stored credentials as the cluster holds them (the file's bytes), if any.
    pub async fn account(self: &Arc<Self>, name: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        let key = self.account_key(name);
        let Some(value) = self.get_value("reading an account", &key).await? else {
            return Ok(None);
        };
        let sealed = String::from_utf8_lossy(&value).into_owned();
        seal::unseal(&self.settings.seal_key, &key, &sealed)
            .map(Some)
            .map_err(|reason| ClusterError::Sealed {
                key,
                file: self.settings.seal_key_file.display().to_string(),
                reason,
            })
    }

    /// Store the account's credentials (sealed) unless the cluster has some already.
    pub async fn put_account(
        self: &Arc<Self>,
        name: &str,
        stored: &[u8],
    ) -> Result<(), ClusterError> {
        let key = self.account_key(name);
        let value = seal::seal(&self.settings.seal_key, &key, stored);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        self.call("storing an account", |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
        .map(|_| ())
    }

    /// Replace the account's credentials in the cluster (`renewd account rollover`: a new key).
    pub async fn replace_account(
        self: &Arc<Self>,
        name: &str,
        stored: &[u8],
    ) -> Result<(), ClusterError> {
        let key = self.account_key(name);
        let value = seal::seal(&self.settings.seal_key, &key, stored);
        self.call("storing an account", |mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, None).await }
        })
        .await
        .map(|_| ())
    }

    /// Forget the account's credentials (`renewd account deactivate`: the next order registers anew).
    pub async fn remove_account(self: &Arc<Self>, name: &str) -> Result<(), ClusterError> {
        let key = self.account_key(name);
        self.call("removing an account", |mut c| {
            let key = key.clone();
            async move { c.delete(key, None).await }
        })
        .await
        .map(|_| ())
    }

    /// Hold the account's etcd lock (etcd's lock service: waits while another member registers).
    pub async fn lock_account(self: &Arc<Self>, name: &str) -> Result<AccountLock, ClusterError> {
        let lease = self
            .call("taking a lease", |mut c| async move {
                c.lease_grant(ACCOUNT_LOCK_TIMEOUT.as_secs() as i64 + LOCK_TTL, None)
                    .await
            })
            .await?
            .id();
        let name_key = format!("{}/lock", self.account_key(name));
        // The endpoint that just granted the lease (etcd's lock call waits while another member holds
        // the lock, longer than one request may take, so it is not retried elsewhere).
        let client = self
            .client_at(self.pinned.load(Ordering::Relaxed) % self.clients.len())
            .await?;
        let mut c = client.clone();
        let opts = etcd_client::LockOptions::new().with_lease(lease);
        match tokio::time::timeout(ACCOUNT_LOCK_TIMEOUT, c.lock(name_key, Some(opts))).await {
            Ok(Ok(r)) => Ok(AccountLock {
                client,
                key: r.key().to_vec(),
                lease,
            }),
            Ok(Err(e)) => Err(self.classify("locking an account", e)),
            Err(_) => Err(self.unavailable(
                "locking an account",
                "another member held the account's lock for a minute",
            )),
        }
    }

    /// Try to take `name`'s lock for this member. [`ClusterError::Held`] when another member has it.
    pub async fn lock_cert(self: &Arc<Self>, name: &str) -> Result<CertLock, ClusterError> {
        CertLock::acquire(self, name).await
    }
}

/// An account's etcd lock; [`AccountLock::release`] gives it back (its lease ends it otherwise).
pub struct AccountLock {
    client: Client,
    key: Vec<u8>,
    lease: i64,
}

impl AccountLock {
    pub async fn release(self) {
        let mut c = self.client;
        let _ = tokio::time::timeout(CALL_TIMEOUT, c.unlock(self.key)).await;
        let _ = tokio::time::timeout(CALL_TIMEOUT, c.lease_revoke(self.lease)).await;
    }
}
