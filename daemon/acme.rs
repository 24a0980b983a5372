//! ACME accounts: the HTTP client (system roots plus `trust:`, every request bounded), registration with
//! External Account Binding, credentials persisted 0600 under `state_dir/accounts/` and reused, ARI
//! renewal windows, and errors that name the CA, the phase and the CA's problem as data.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, BytesResponse, CertificateIdentifier,
    ExternalAccountKey, HttpClient, NewAccount, Problem,
};
use serde::{Deserialize, Serialize};

use crate::certs::CertFacts;
use crate::config::AccountSettings;
use crate::fsread;
use crate::phase::Phase;
use crate::state::{write_atomic, StateDir};

/// How long a TCP connection (and TLS handshake) to the CA may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request to the CA may take, from sending it to the last byte of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The CA behind one of renewd's accounts, as errors name it: "account `pebble` (https://…/dir)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    pub account: String,
    pub directory: String,
}

impl Ca {
    pub fn of(settings: &AccountSettings) -> Ca {
        Ca {
            account: settings.name.clone(),
            directory: settings.directory.clone(),
        }
    }
}

impl std::fmt::Display for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "account `{}` ({})", self.account, self.directory)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("account `{account}`: cannot read trust roots from {path}: {reason}; the file must hold PEM CERTIFICATE blocks")]
    Trust {
        account: String,
        path: PathBuf,
        reason: String,
    },
    #[error("account `{account}`: stored credentials {path} are unreadable: {reason}; move the file away to register again")]
    Credentials {
        account: String,
        path: PathBuf,
        reason: String,
    },
    /// `cluster:`: the account's credentials in etcd (shared by every member) could not be read or stored.
    #[error("account `{account}`: {source}")]
    Cluster {
        account: String,
        source: Box<crate::cluster::ClusterError>,
    },
    #[error("account `{account}`: cannot save credentials to {path}: {source}")]
    Save {
        account: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A request to the CA failed: no answer in time, a refused connection, TLS, or a problem document.
    #[error("{ca}: {phase}: {}{}", describe(.source), retry_text(.retry_after))]
    Request {
        ca: Ca,
        phase: Phase,
        source: Box<instant_acme::Error>,
        /// The CA's Retry-After, when it refused with 429/503 or rateLimited and sent one.
        retry_after: Option<SystemTime>,
    },
    /// The CA offers no challenge of the spec's type (`dns-01`, `dns-persist-01`) for a name.
    #[error("{ca}: the CA offers no {wanted} challenge for {domain} (it offers: {}){}", list_or_none(.offered), challenge_hint(.wanted, .offered))]
    NoDnsChallenge {
        ca: Ca,
        domain: String,
        /// The challenge type the spec asks for.
        wanted: String,
        offered: Vec<String>,
    },
    /// The spec's `profile:` is not among the profiles the CA's directory lists.
    #[error("{ca}: {}", profile_text(.profile, .offered))]
    UnknownProfile {
        ca: Ca,
        profile: String,
        /// The profiles the CA's directory lists, by name.
        offered: Vec<String>,
    },
    /// The CA offers dns-persist-01 but its directory names no issuer domain (`caaIdentities`) to put
    /// in the record.
    #[error("{ca}: the CA offers dns-persist-01 but its directory lists no issuer domain name (meta.caaIdentities), so renewd cannot tell which name the record must carry; ask the CA, or use `challenge: dns-01`")]
    NoIssuerDomain { ca: Ca },
    /// The CA marked a name's authorization (or its challenge) invalid.
    #[error("{ca}: the CA rejected {domain}: {}", problem_text(.problem.as_deref(), .status))]
    Rejected {
        ca: Ca,
        domain: String,
        /// The authorization's status as the CA gave it (`invalid`, `revoked`, `expired`, ...).
        status: String,
        /// The failed challenge's error, when the CA gave one.
        problem: Option<Box<Problem>>,
    },
    /// The order became invalid.
    #[error("{ca}: order {url} became invalid: {}", order_text(.problem.as_deref(), .rejected))]
    OrderInvalid {
        ca: Ca,
        url: String,
        /// The order's own error.
        problem: Option<Box<Problem>>,
        /// The names whose challenge failed, with the CA's error for each.
        rejected: Vec<(String, Problem)>,
    },
}

impl AcmeError {
    /// The CA's Retry-After attached to this error, if any.
    pub fn retry_after(&self) -> Option<SystemTime> {
        match self {
            AcmeError::Request { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Every problem document the CA sent with this error (for the retry policy).
    pub fn problems(&self) -> Vec<&Problem> {
        match self {
            AcmeError::Request { source, .. } => match source.as_ref() {
                instant_acme::Error::Api(p) => vec![p],
                _ => Vec::new(),
            },
            AcmeError::Rejected { problem, .. } => problem.iter().map(|p| p.as_ref()).collect(),
            AcmeError::OrderInvalid {
                problem, rejected, ..
            } => problem
                .iter()
                .map(|p| p.as_ref())
                .chain(rejected.iter().map(|(_, p)| p))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn retry_text(at: &Option<SystemTime>) -> String {
    match at {
        Some(t) => format!(
            " (the CA asks to retry after {})",
            humantime::format_rfc3339_seconds(*t)
        ),
        None => String::new(),
    }
}

fn challenge_hint(wanted: &str, offered: &[String]) -> String {
    let other = if wanted == "dns-01" {
        "dns-persist-01"
    } else {
        "dns-01"
    };
    if offered.iter().any(|o| o == other) {
        format!("; set `challenge: {other}` in the spec to use what it offers")
    } else {
        String::new()
    }
}

fn profile_text(profile: &str, offered: &[String]) -> String {
    if offered.is_empty() {
        format!("the CA offers no certificate profiles (its directory lists none), so `profile: {profile}` cannot be honoured: remove `profile:` from the spec")
    } else {
        format!(
            "the CA offers no profile `{profile}`; it offers: {}. Set `profile:` to one of them, or remove it for the CA's default",
            offered.join(", ")
        )
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn problem_text(p: Option<&Problem>, status: &str) -> String {
    match p {
        Some(p) => describe_problem(p),
        None => format!("authorization {status}, no error given"),
    }
}

fn order_text(p: Option<&Problem>, rejected: &[(String, Problem)]) -> String {
    let mut parts: Vec<String> = rejected
        .iter()
        .map(|(d, p)| format!("{d}: {}", describe_problem(p)))
        .collect();
    if parts.is_empty() {
        parts.push(match p {
            Some(p) => describe_problem(p),
            None => "no reason given".into(),
        });
    }
    parts.join("; ")
}

/// Whether an instant-acme error is the CA asking us to slow down: a problem document with HTTP status
/// 429 or 503, or of type `rateLimited`.
pub fn is_rate_limited(e: &instant_acme::Error) -> bool {
    match e {
        instant_acme::Error::Api(p) => {
            matches!(p.status, Some(429 | 503))
                || p.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited")
        }
        _ => false,
    }
}

/// The Retry-After of the last 429/503 answer an account's HTTP client saw (shared by the account's
/// clones). instant-acme drops the headers of error responses, so [`CaClient`] keeps this one.
#[derive(Clone, Debug, Default)]
pub struct RetryAfterSlot(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfterSlot {
    fn record(&self, at: Option<SystemTime>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Take the recorded moment (so it is attached to one error only).
    fn take(&self) -> Option<SystemTime> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The Retry-After to attach to `e`: the recorded one when `e` is a rate-limit answer.
    pub fn for_error(&self, e: &instant_acme::Error) -> Option<SystemTime> {
        if is_rate_limited(e) {
            self.take()
        } else {
            None
        }
    }
}

/// Parse a Retry-After header value (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date. `now` is when
/// the answer arrived.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly large values saturate at a year rather than overflowing.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX).min(365 * 86400);
        return Some(now + Duration::from_secs(secs));
    }
    httpdate::HttpDate::from_str(value)
        .ok()
        .map(SystemTime::from)
}

/// A request to the CA that got no complete answer within [`REQUEST_TIMEOUT`] (carried inside
/// `instant_acme::Error::Other`).
#[derive(Debug, thiserror::Error)]
#[error("no answer within {}", humantime::format_duration(*.0))]
pub struct NoAnswer(pub Duration);

/// renewd's [`HttpClient`]: every request (connection, TLS, headers and the whole body) is bounded by
/// `timeout`, and the Retry-After of every 429/503 answer is recorded into a [`RetryAfterSlot`].
#[derive(Clone)]
struct CaClient {
    inner: Arc<dyn HttpClient>,
    slot: RetryAfterSlot,
    timeout: Duration,
    /// `Link: <URL>;rel="alternate"` of certificate downloads, by the download's URL (RFC 8555 §7.4.2):
    /// instant-acme keeps only the default chain.
    alternates: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

/// The `rel="alternate"` targets of `Link` header values.
fn alternate_links(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let url = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            params
                .split(';')
                .any(|p| {
                    let p = p.trim().replace(' ', "");
                    p.eq_ignore_ascii_case("rel=\"alternate\"")
                        || p.eq_ignore_ascii_case("rel=alternate")
                })
                .then(|| url.to_string())
        })
        .collect()
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let url = req.uri().to_string();
        let fut = self.inner.request(req);
        let slot = self.slot.clone();
        let limit = self.timeout;
        let alternates = self.alternates.clone();
        Box::pin(async move {
            let whole = async move {
                let mut rsp = fut.await?;
                // The body is read here, inside the bound: a CA that sends headers and then stalls
                // must not hold the renewal.
                let body = rsp
                    .body
                    .into_bytes()
                    .await
                    .map_err(instant_acme::Error::Other)?;
                Ok::<_, instant_acme::Error>(BytesResponse {
                    parts: rsp.parts,
                    body: Box::new(body),
                })
            };
            let rsp = tokio::time::timeout(limit, whole)
                .await
                .map_err(|_| instant_acme::Error::Other(Box::new(NoAnswer(limit))))??;
            let is_chain = rsp
                .parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/pem-certificate-chain"));
            if is_chain {
                let links = alternate_links(&rsp.parts.headers);
                alternates
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(url, links);
            }
            let status = rsp.parts.status.as_u16();
            if status == 429 || status == 503 {
                let at = rsp
                    .parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                slot.record(at);
            }
            Ok(rsp)
        })
    }
}

/// An answer to a plain GET: status, headers, the whole body.
struct Fetched {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl CaClient {
    /// A plain (unauthenticated) GET, bounded like every request.
    async fn get(&self, url: &str) -> Result<Fetched, instant_acme::Error> {
        let req = http::Request::builder()
            .method(http::Method::GET)
            .uri(url)
            .header(
                http::header::USER_AGENT,
                concat!("renewd/", env!("CARGO_PKG_VERSION")),
            )
            .body(BodyWrapper::default())
            .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
        let mut rsp = self.request(req).await?;
        let body = rsp
            .body
            .into_bytes()
            .await
            .map_err(instant_acme::Error::Other)?;
        Ok(Fetched {
            status: rsp.parts.status,
            headers: rsp.parts.headers,
            body,
        })
    }

    /// GET `url` and parse its JSON; an error status becomes the CA's problem document when it sent one.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<(T, http::HeaderMap), instant_acme::Error> {
        let f = self.get(url).await?;
        if !f.status.is_success() {
            return Err(match serde_json::from_slice::<Problem>(&f.body) {
                Ok(p) => instant_acme::Error::Api(p),
                Err(_) => instant_acme::Error::Str("the CA answered with an error status"),
            });
        }
        let v = serde_json::from_slice(&f.body).map_err(instant_acme::Error::Json)?;
        Ok((v, f.headers))
    }
}

/// POST a JWS built by `sign(nonce)` to `url` (RFC 8555 §6.2): a fresh nonce from `new_nonce`, one retry
/// with the nonce of a badNonce answer. The body of a 2xx answer; the CA's problem otherwise.
async fn post_jws(
    http: &CaClient,
    new_nonce: &str,
    url: &str,
    sign: impl Fn(&str) -> Result<String, String>,
) -> Result<Bytes, instant_acme::Error> {
    let head = http::Request::builder()
        .method(http::Method::HEAD)
        .uri(new_nonce)
        .body(BodyWrapper::default())
        .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
    let rsp = http.request(head).await?;
    let replay = |h: &http::HeaderMap| {
        h.get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut nonce = replay(&rsp.parts.headers)
        .ok_or(instant_acme::Error::Str("no Replay-Nonce from newNonce"))?;
    for _ in 0..2 {
        let body = sign(&nonce).map_err(|e| instant_acme::Error::Other(e.into()))?;
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(url)
            .header(http::header::CONTENT_TYPE, "application/jose+json")
            .header(
                http::header::USER_AGENT,
                concat!("renewd/", env!("CARGO_PKG_VERSION")),
            )
            .body(BodyWrapper::from(body.into_bytes()))
            .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
        let mut rsp = http.request(req).await?;
        let next = replay(&rsp.parts.headers);
        let body = rsp
            .body
            .into_bytes()
            .await
            .map_err(instant_acme::Error::Other)?;
        if rsp.parts.status.is_success() {
            return Ok(body);
        }
        let problem = serde_json::from_slice::<Problem>(&body)
            .map_err(|_| instant_acme::Error::Str("the CA answered with an error status"))?;
        match (problem.r#type.as_deref(), next) {
            (Some("urn:ietf:params:acme:error:badNonce"), Some(n)) => nonce = n,
            _ => return Err(instant_acme::Error::Api(problem)),
        }
    }
    Err(instant_acme::Error::Str("the CA refused every nonce"))
}

/// `renewd revoke --with-key`: revoke `cert_der` with a JWS signed by the certificate's own private key
/// (RFC 8555 §7.6), no account needed (a certificate whose account is lost).
pub async fn revoke_with_key(
    dir: &CaDirectory,
    cert_der: &[u8],
    key: &crate::jws::JwsKey,
    reason: Option<u8>,
) -> Result<(), AcmeError> {
    use base64::Engine as _;
    let fail = |source: instant_acme::Error| AcmeError::Request {
        ca: dir.ca.clone(),
        phase: Phase::Revoking,
        retry_after: dir.retry_after.for_error(&source),
        source: Box::new(source),
    };
    let (Some(new_nonce), Some(revoke)) = (dir.new_nonce.as_deref(), dir.revoke_cert.as_deref())
    else {
        return Err(fail(instant_acme::Error::Str(
            "the CA's directory has no newNonce or revokeCert",
        )));
    };
    let mut payload = serde_json::json!({
        "certificate": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cert_der),
    });
    if let Some(r) = reason {
        payload["reason"] = r.into();
    }
    post_jws(&dir.http, new_nonce, revoke, |nonce| {
        key.body(crate::jws::By::Jwk, nonce, revoke, Some(&payload))
    })
    .await
    .map(|_| ())
    .map_err(fail)
}

/// What renewd reads from a CA without an account: its directory, fetched once, and the client to ask
/// with. Renewal windows (ARI) are plain GETs (RFC 9773 §4), so asking for them never registers an
/// account (which would spend a single-use EAB key on a `renew` with nothing due).
pub struct CaDirectory {
    pub ca: Ca,
    http: CaClient,
    retry_after: RetryAfterSlot,
    renewal_info: Option<String>,
    new_nonce: Option<String>,
    revoke_cert: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectoryUrls {
    renewal_info: Option<String>,
    new_nonce: Option<String>,
    revoke_cert: Option<String>,
}

/// Fetch the directory of the account's CA (one GET through a client with the account's `trust:`).
pub async fn directory(settings: &AccountSettings) -> Result<CaDirectory, AcmeError> {
    let retry_after = RetryAfterSlot::default();
    let ca = Ca::of(settings);
    let http = {
        let (settings, slot) = (settings.clone(), retry_after.clone());
        tokio::task::spawn_blocking(move || http_client(&settings, &slot))
            .await
            .expect("building the HTTP client does not panic")?
    };
    let fail = |source: instant_acme::Error| AcmeError::Request {
        ca: ca.clone(),
        phase: Phase::RenewalInfo,
        retry_after: retry_after.for_error(&source),
        source: Box::new(source),
    };
    let (urls, _) = http
        .get_json::<DirectoryUrls>(&settings.directory)
        .await
        .map_err(fail)?;
    Ok(CaDirectory {
        ca: ca.clone(),
        http,
        retry_after: retry_after.clone(),
        renewal_info: urls.renewal_info,
        new_nonce: urls.new_nonce,
        revoke_cert: urls.revoke_cert,
    })
}

/// An ACME account together with its CA and the Retry-After its HTTP client recorded.
#[derive(Clone)]
pub struct AcmeAccount {
    pub account: Account,
    pub ca: Ca,
    pub retry_after: RetryAfterSlot,
    /// The same HTTP client the account uses, for plain GETs (the directory's `meta`).
    http: CaClient,
    /// The directory's `meta.caaIdentities`, fetched once when first needed (dns-persist-01).
    issuer_domains: Arc<tokio::sync::OnceCell<Vec<String>>>,
    /// What the CA does with `replaces` (learned from the first order that sent it).
    pub replaces: Arc<ReplacesProbe>,
    /// The account key (PKCS#8 DER), for the POST-as-GET requests instant-acme has no call for
    /// (alternate chains). Never printed.
    key: Option<Arc<crate::config::Secret>>,
}

/// The account key inside instant-acme's credentials (PKCS#8, base64url in their serialization).
fn credentials_key(credentials: &AccountCredentials) -> Option<Arc<crate::config::Secret>> {
    use base64::Engine as _;
    let v = serde_json::to_value(credentials).ok()?;
    let b64 = v.get("key_pkcs8")?.as_str()?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()
        .map(|der| Arc::new(crate::config::Secret::new(der)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NonceUrl {
    new_nonce: String,
}

/// Whether the CA echoes `replaces` in the order (RFC 9773 §5 says it must). A CA that accepts the order
/// but leaves `replaces` out ignores it; instant-acme then refuses that order and renewd orders again
/// without it. So that this costs one extra newOrder per account, not one per renewal, the first order
/// with `replaces` goes alone (later ones wait for its answer at [`ReplacesProbe::gate`]), and once the
/// CA is known to ignore it, `replaces` is left out.
#[derive(Default)]
pub struct ReplacesProbe {
    /// 0: not known yet, 1: echoed, 2: ignored.
    known: std::sync::atomic::AtomicU8,
    gate: tokio::sync::Mutex<()>,
}

impl ReplacesProbe {
    /// Wait for the first order with `replaces` to be answered, while nobody knows yet what the CA does
    /// with it. Hold the guard while sending that order.
    pub async fn gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.known.load(std::sync::atomic::Ordering::Acquire) != 0 {
            return None;
        }
        Some(self.gate.lock().await)
    }

    pub fn ignored(&self) -> bool {
        self.known.load(std::sync::atomic::Ordering::Acquire) == 2
    }

    pub fn learned(&self, echoed: bool) {
        self.known.store(
            if echoed { 1 } else { 2 },
            std::sync::atomic::Ordering::Release,
        );
    }
}

/// The parts of a directory's `meta` that instant-acme does not expose.
#[derive(Deserialize, Default)]
struct DirectoryDoc {
    #[serde(default)]
    meta: DirectoryMeta,
}

#[derive(Deserialize, Default)]
struct DirectoryMeta {
    #[serde(default, rename = "caaIdentities")]
    caa_identities: Vec<String>,
}

impl AcmeAccount {
    fn new(
        account: Account,
        ca: Ca,
        retry_after: RetryAfterSlot,
        http: CaClient,
        key: Option<Arc<crate::config::Secret>>,
    ) -> Self {
        AcmeAccount {
            account,
            ca,
            retry_after,
            http,
            issuer_domains: Arc::default(),
            replaces: Arc::default(),
            key,
        }
    }

    /// The `rel="alternate"` chains the CA linked from the certificate download at `url`.
    pub fn alternate_chains(&self, url: &str) -> Vec<String> {
        self.http
            .alternates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .cloned()
            .unwrap_or_default()
    }

    /// Download a certificate chain by POST-as-GET (RFC 8555 §6.3), signed ES256 with the account key:
    /// instant-acme downloads only the default chain.
    pub async fn download_chain(&self, url: &str) -> Result<String, instant_acme::Error> {
        let key = self
            .key
            .as_ref()
            .ok_or(instant_acme::Error::Str("the account key is not at hand"))?;
        let jws = crate::jws::JwsKey::from_pkcs8(key.expose(), crate::config::KeySpec::EcdsaP256)
            .map_err(|e| instant_acme::Error::Other(e.into()))?;
        let (dir, _) = self.http.get_json::<NonceUrl>(&self.ca.directory).await?;
        let kid = self.account.id().to_string();
        let body = post_jws(&self.http, &dir.new_nonce, url, |nonce| {
            jws.body(crate::jws::By::Kid(&kid), nonce, url, None)
        })
        .await?;
        String::from_utf8(body.to_vec())
            .map_err(|_| instant_acme::Error::Str("the chain is not text"))
    }

    /// The CA's issuer domain names (the directory's `meta.caaIdentities`, lower-case): what a
    /// dns-persist-01 record names before `accounturi` (instant-acme 0.8.5 does not expose the
    /// challenge object's `issuer-domain-names`, nor the directory's meta). One GET, then cached for
    /// the life of this account handle.
    pub async fn issuer_domains(&self, phase: Phase) -> Result<Vec<String>, AcmeError> {
        let got = self
            .issuer_domains
            .get_or_try_init(|| async {
                let (doc, _) = self
                    .http
                    .get_json::<DirectoryDoc>(&self.ca.directory)
                    .await
                    .map_err(|e| self.error(phase, e))?;
                Ok::<_, AcmeError>(
                    doc.meta
                        .caa_identities
                        .into_iter()
                        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
                        .filter(|d| !d.is_empty())
                        .collect(),
                )
            })
            .await?;
        if got.is_empty() {
            return Err(AcmeError::NoIssuerDomain {
                ca: self.ca.clone(),
            });
        }
        Ok(got.clone())
    }

    /// `profile` if the CA's directory lists it; else the error naming what it lists.
    pub fn check_profile(&self, profile: &str) -> Result<(), AcmeError> {
        let mut offered: Vec<String> = self
            .account
            .profiles()
            .map(|p| p.name.to_string())
            .collect();
        if offered.iter().any(|p| p == profile) {
            return Ok(());
        }
        offered.sort();
        Err(AcmeError::UnknownProfile {
            ca: self.ca.clone(),
            profile: profile.to_string(),
            offered,
        })
    }

    /// A failed request of this account in `phase`, with the CA's Retry-After attached when it was a
    /// rate limit.
    pub fn error(&self, phase: Phase, source: instant_acme::Error) -> AcmeError {
        let retry_after = self.retry_after.for_error(&source);
        AcmeError::Request {
            ca: self.ca.clone(),
            phase,
            source: Box::new(source),
            retry_after,
        }
    }
}

/// The CA's suggested renewal window of a certificate: (start, end, how long to wait before asking again).
pub type RenewalWindow = (SystemTime, SystemTime, Duration);

/// ARI's certificate identifier (RFC 9773 §4.1) of a certificate: base64url(AKI keyIdentifier) "."
/// base64url(serial DER contents). None without an authority key identifier.
pub fn certificate_id(facts: &CertFacts) -> Option<CertificateIdentifier<'static>> {
    let aki = facts.authority_key_id.as_deref()?;
    Some(
        CertificateIdentifier::new(
            rustls_pki_types::Der::from_slice(aki),
            rustls_pki_types::Der::from_slice(&facts.raw_serial),
        )
        .into_owned(),
    )
}

/// The CA's suggested renewal window (start, end) for the certificate `facts`, and how long to wait
/// before asking again (its Retry-After). `Ok(None)` when the CA offers no renewalInfo (or the
/// certificate has no authority key identifier to name it by).
pub async fn renewal_window(
    dir: &CaDirectory,
    facts: &CertFacts,
) -> Result<Option<RenewalWindow>, AcmeError> {
    let (Some(id), Some(base)) = (certificate_id(facts), dir.renewal_info.as_deref()) else {
        return Ok(None);
    };
    let fail = |source: instant_acme::Error| AcmeError::Request {
        ca: dir.ca.clone(),
        phase: Phase::RenewalInfo,
        retry_after: dir.retry_after.for_error(&source),
        source: Box::new(source),
    };
    let url = format!("{}/{id}", base.trim_end_matches('/'));
    let (info, headers) = dir
        .http
        .get_json::<instant_acme::RenewalInfo>(&url)
        .await
        .map_err(fail)?;
    let start = SystemTime::from(info.suggested_window.start);
    let end = SystemTime::from(info.suggested_window.end);
    if end < start {
        return Err(fail(instant_acme::Error::Str(
            "the suggested window ends before it starts",
        )));
    }
    // RFC 9773 §4.2: the server MUST send Retry-After; without one, ask again in 6 hours.
    let now = SystemTime::now();
    let retry = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
        .map(|t| t.duration_since(now).unwrap_or_default())
        .unwrap_or(Duration::from_secs(6 * 3600));
    Ok(Some((start, end, retry)))
}

/// Say what a problem document means: "the CA answered TYPE (HTTP STATUS): DETAIL; SUBPROBLEMS".
pub fn describe_problem(p: &Problem) -> String {
    let kind = problem_type(p);
    let mut s = format!(
        "the CA answered {}",
        if kind.is_empty() { "error" } else { kind }
    );
    if let Some(status) = p.status {
        s.push_str(&format!(" (HTTP {status})"));
    }
    if let Some(d) = &p.detail {
        s.push_str(&format!(": {d}"));
    }
    for sub in &p.subproblems {
        s.push_str(&format!("; {sub}"));
    }
    if kind == "externalAccountRequired" {
        s.push_str(" — check `eab.kid` and the key in `eab.hmac_key_file`");
    }
    s
}

/// The short type of a problem document (`rateLimited` for `urn:ietf:params:acme:error:rateLimited`);
/// empty when it has none.
pub fn problem_type(p: &Problem) -> &str {
    p.r#type
        .as_deref()
        .unwrap_or("")
        .trim_start_matches("urn:ietf:params:acme:error:")
}

/// Say what an instant-acme error means, with the CA's problem type and detail when there is one.
pub fn describe(e: &instant_acme::Error) -> String {
    if let instant_acme::Error::Api(p) = e {
        return describe_problem(p);
    }
    // Walk the source chain: hyper/rustls put the useful part (e.g. "UnknownIssuer") deep inside.
    let mut s = e.to_string();
    let mut untrusted = false;
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        untrusted |= matches!(
            inner.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        );
        src = inner.source();
    }
    if untrusted {
        s.push_str(
            " — the ACME server's TLS certificate is not trusted: add its root with `trust:`",
        );
    }
    s
}

/// What `accounts/NAME.json` holds.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    eab_kid: Option<String>,
    credentials: AccountCredentials,
}

/// The HTTP client for one account: system roots plus the account's `trust:` file, connections bounded
/// by [`CONNECT_TIMEOUT`] and requests by [`REQUEST_TIMEOUT`]; it records the Retry-After of 429/503
/// answers into `slot`.
fn http_client(settings: &AccountSettings, slot: &RetryAfterSlot) -> Result<CaClient, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &settings.trust {
        let err = |reason: String| AcmeError::Trust {
            account: settings.name.clone(),
            path: path.clone(),
            reason,
        };
        let text =
            fsread::read_text_capped(path, fsread::TEXT_MAX).map_err(|e| err(e.to_string()))?;
        let ders = crate::certs::pem_certificates(&text).map_err(|e| err(e.to_string()))?;
        for der in ders {
            roots
                .add(der.into())
                .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    Ok(CaClient {
        inner: Arc::new(client),
        slot: slot.clone(),
        timeout: REQUEST_TIMEOUT,
        alternates: Arc::default(),
    })
}

/// Load the account from `accounts/NAME.json`, or register it (with EAB when configured) and save it 0600.
/// Blocking file work runs off the async runtime. `on_phase` is told when the account goes from
/// loading to registering.
///
/// Stored credentials are reused only when they were made for the same directory URL; a changed
/// `directory:` registers anew (the old file is kept as `NAME.json.old`).
pub async fn account(
    settings: &AccountSettings,
    state: &StateDir,
    on_phase: impl Fn(Phase),
) -> Result<AcmeAccount, AcmeError> {
    let slot = RetryAfterSlot::default();
    let ca = Ca::of(settings);
    let path = state.account_file(&settings.name);
    let (stored, client) = {
        let (settings, path, slot) = (settings.clone(), path.clone(), slot.clone());
        tokio::task::spawn_blocking(move || {
            Ok::<_, AcmeError>((
                read_stored(&settings, &path)?,
                http_client(&settings, &slot)?,
            ))
        })
        .await
        .expect("reading the account does not panic")?
    };
    let fail = |phase, source: instant_acme::Error| AcmeError::Request {
        ca: ca.clone(),
        phase,
        retry_after: slot.for_error(&source),
        source: Box::new(source),
    };
    if let Some(stored) = stored {
        if stored.directory == settings.directory {
            on_phase(Phase::LoadingAccount);
            let key = credentials_key(&stored.credentials);
            let account = Account::builder_with_http(Box::new(client.clone()))
                .from_credentials(stored.credentials)
                .await
                .map_err(|e| fail(Phase::LoadingAccount, e))?;
            return Ok(AcmeAccount::new(account, ca, slot, client, key));
        }
        tracing::warn!(
            account = %settings.name,
            old = %stored.directory,
            new = %settings.directory,
            "the directory URL changed: registering a new account"
        );
        let _ = std::fs::rename(&path, path.with_extension("json.old"));
    }
    on_phase(Phase::Registering);
    let (account, key) = register(settings, state, &path, Box::new(client.clone()))
        .await
        .map_err(|e| match e {
            Registration::Ca(source) => fail(Phase::Registering, source),
            Registration::Local(e) => e,
        })?;
    Ok(AcmeAccount::new(account, ca, slot, client, key))
}

fn read_stored(
    settings: &AccountSettings,
    path: &Path,
) -> Result<Option<StoredAccount>, AcmeError> {
    let unreadable = |reason: String| AcmeError::Credentials {
        account: settings.name.clone(),
        path: path.to_path_buf(),
        reason,
    };
    match fsread::read_capped(path, fsread::SECRET_MAX) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| unreadable(e.to_string())),
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(None),
        Err(e) => Err(unreadable(e.to_string())),
    }
}

/// Why a registration failed: the CA's answer, or saving the credentials.
enum Registration {
    Ca(instant_acme::Error),
    Local(AcmeError),
}

async fn register(
    settings: &AccountSettings,
    state: &StateDir,
    path: &Path,
    client: Box<dyn HttpClient>,
) -> Result<(Account, Option<Arc<crate::config::Secret>>), Registration> {
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let eab = settings
        .eab
        .as_ref()
        .map(|e| ExternalAccountKey::new(e.kid.clone(), e.hmac_key.expose()));
    let (account, credentials) = Account::builder_with_http(client)
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(Registration::Ca)?;
    let key = credentials_key(&credentials);
    save_credentials(settings, state, path, credentials)
        .await
        .map_err(Registration::Local)?;
    tracing::info!(account = %settings.name, id = %account.id(), "registered ACME account");
    Ok((account, key))
}

/// Write `accounts/NAME.json` (0600, atomically) for `settings` (off the async runtime).
pub async fn save_credentials(
    settings: &AccountSettings,
    state: &StateDir,
    path: &Path,
    credentials: AccountCredentials,
) -> Result<(), AcmeError> {
    let stored = StoredAccount {
        directory: settings.directory.clone(),
        eab_kid: settings.eab.as_ref().map(|e| e.kid.clone()),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&stored).expect("account credentials serialize");
    let (state, path_owned, name) = (state.clone(), path.to_path_buf(), settings.name.clone());
    tokio::task::spawn_blocking(move || {
        state
            .ensure()
            .and_then(|()| write_atomic(&path_owned, &json, 0o600))
            .map_err(|source| AcmeError::Save {
                account: name,
                path: path_owned,
                source,
            })
    })
    .await
    .expect("saving the account does not panic")
}

/// What `renewd account show` prints, read from `accounts/NAME.json` without the network.
#[derive(Debug, Clone)]
pub struct StoredInfo {
    pub url: String,
    pub directory: String,
    pub eab_kid: Option<String>,
    pub modified: Option<SystemTime>,
}

/// The stored account `settings.name`, if it was registered (no network).
pub fn stored_info(
    settings: &AccountSettings,
    state: &StateDir,
) -> Result<Option<StoredInfo>, AcmeError> {
    let path = state.account_file(&settings.name);
    let Some(stored) = read_stored(settings, &path)? else {
        return Ok(None);
    };
    let v = serde_json::to_value(&stored.credentials).unwrap_or_default();
    Ok(Some(StoredInfo {
        url: v["id"].as_str().unwrap_or_default().to_string(),
        directory: stored.directory,
        eab_kid: stored.eab_kid,
        modified: std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_in_seconds_counts_from_the_answer() {
        let now = at(1_800_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(now));
        // A year at most, whatever the CA says.
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(now + Duration::from_secs(365 * 86400))
        );
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let now = at(0);
        // RFC 9110's example date.
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now),
            Some(at(946_684_799))
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }

    /// A CA answering every request with `status` and `headers`.
    struct Canned {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl HttpClient for Canned {
        fn request(
            &self,
            _req: http::Request<BodyWrapper<Bytes>>,
        ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
        {
            let mut rsp = http::Response::builder().status(self.status);
            for (k, v) in &self.headers {
                rsp = rsp.header(*k, *v);
            }
            let rsp = rsp
                .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            Box::pin(async move { Ok(BytesResponse::from(rsp)) })
        }
    }

    async fn ask(client: &CaClient) {
        let req = http::Request::builder()
            .uri("https://acme.ca.example/new-order")
            .body(BodyWrapper::default())
            .unwrap();
        client.request(req).await.unwrap();
    }

    fn limited() -> instant_acme::Error {
        instant_acme::Error::Api(
            serde_json::from_str(
                r#"{"type":"urn:ietf:params:acme:error:rateLimited","status":429}"#,
            )
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn the_client_records_retry_after_of_429_and_503_only() {
        let slot = RetryAfterSlot::default();
        let client = |status, headers| CaClient {
            inner: Arc::new(Canned { status, headers }),
            slot: slot.clone(),
            timeout: REQUEST_TIMEOUT,
            alternates: Arc::default(),
        };
        ask(&client(200, vec![("retry-after", "60")])).await;
        assert_eq!(slot.for_error(&limited()), None);

        let before = SystemTime::now();
        ask(&client(429, vec![("retry-after", "60")])).await;
        let got = slot.for_error(&limited()).expect("recorded");
        assert!(
            got >= before + Duration::from_secs(60)
                && got <= SystemTime::now() + Duration::from_secs(60)
        );
        // Attached once only.
        assert_eq!(slot.for_error(&limited()), None);

        ask(&client(
            503,
            vec![("retry-after", "Fri, 31 Dec 1999 23:59:59 GMT")],
        ))
        .await;
        // Not a rate limit: nothing attached (and the recorded value stays for the one that is).
        let other = instant_acme::Error::Api(
            serde_json::from_str(r#"{"type":"urn:ietf:params:acme:error:malformed","status":400}"#)
                .unwrap(),
        );
        assert_eq!(slot.for_error(&other), None);
        assert_eq!(slot.for_error(&limited()), Some(at(946_684_799)));

        // A 429 without the header forgets an older value.
        ask(&client(429, vec![("retry-after", "60")])).await;
        ask(&client(429, vec![])).await;
        assert_eq!(slot.for_error(&limited()), None);
    }

    #[test]
    fn the_certificate_identifier_of_rfc_9773() {
        // RFC 9773 §4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
        // serial 00:87:65:43:21.
        let facts = CertFacts {
            serial: "0087654321".into(),
            not_before: at(0),
            not_after: at(1),
            dns_names: vec![],
            public_key: vec![],
            authority_key_id: Some(vec![
                0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
                0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
            ]),
            raw_serial: vec![0x00, 0x87, 0x65, 0x43, 0x21],
            subject: String::new(),
            issuer: String::new(),
        };
        assert_eq!(
            certificate_id(&facts).unwrap().to_string(),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        let no_aki = CertFacts {
            authority_key_id: None,
            ..facts
        };
        assert!(certificate_id(&no_aki).is_none());
    }
}
