//! Validated settings: what the rest of renewd trusts. Built only by `config::load`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Bytes that must never be printed: TSIG secrets, EAB HMAC keys. Compared by value (in constant time),
/// so a rotated key in the same file is a changed setting.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
    /// The raw secret. Call sites are the only places a secret is touched: TSIG signing, EAB.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The whole validated configuration: global file plus every valid spec. Compared by value (secrets
/// included, never printed): a reload applies what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The global file this came from.
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub certs_dir: PathBuf,
    pub workers: usize,
    /// How long renewals in flight may go on after SIGTERM before they are cancelled (`stop_grace`).
    pub stop_grace: Duration,
    /// How long one renewal attempt may take from start to cleanup (`attempt_timeout`).
    pub attempt_timeout: Duration,
    pub accounts: BTreeMap<String, AccountSettings>,
    pub dns_servers: BTreeMap<String, DnsServerSettings>,
    pub propagation: PropagationSettings,
    /// Recursive resolvers for discovery (SOA/NS/CNAME/A lookups). Empty: /etc/resolv.conf.
    pub resolver: Vec<SocketAddr>,
    /// `metrics_file`: Prometheus metrics as a node_exporter textfile, rewritten atomically (0644).
    pub metrics_file: Option<PathBuf>,
    /// `metrics_listen`: a loopback address for the HTTP listener serving `GET /metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// `cluster:`: several renewd hosts coordinated through etcd. None: this host alone.
    pub cluster: Option<ClusterSettings>,
    /// Certificate specs by NAME (the file stem). Shared with the event loop's certificates (one copy
    /// of each spec, however many configurations and snapshots refer to it).
    pub certs: BTreeMap<String, Arc<CertSpec>>,
}

/// `cluster:`, validated: the etcd connection, the key prefix, this member's name and the seal key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Client URLs, all http:// or all https://.
    pub endpoints: Vec<String>,
    /// With https:// endpoints: the CA, and the client identity when etcd wants client certificates.
    pub tls: Option<EtcdTls>,
    pub auth: Option<EtcdAuth>,
    /// Every key renewd writes starts with this (`/renewd/`; always ends with `/`).
    pub prefix: String,
    /// This member's name (default: the host name).
    pub member: String,
    /// 32 bytes: seals private keys and account credentials before they reach etcd.
    pub seal_key: Secret,
    pub seal_key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    /// (certificate PEM, private key PEM).
    pub identity: Option<(Vec<u8>, Secret)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSettings {
    pub name: String,
    pub directory: String,
    pub contact: Vec<String>,
    pub eab: Option<Eab>,
    /// Extra PEM roots trusted for the ACME server's TLS (in addition to the system roots).
    pub trust: Option<PathBuf>,
    /// `ari:` ask this CA for renewal windows (RFC 9773) and send `replaces`. Default true.
    pub ari: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    /// Decoded HMAC key (the file holds it base64url, as CAs hand it out).
    pub hmac_key: Secret,
    pub hmac_key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServerSettings {
    pub name: String,
    /// `host` or `host:port` / `[v6]:port` as written; resolved when used (check never touches the network).
    pub address: String,
    /// `None` when `tsig_key_file` does not exist: the operator removed the credentials after the
    /// dns-persist-01 records were written. Only dns-persist-01 specs may use such a server; an UPDATE
    /// through it fails with [`crate::dns::DnsError::NoCredentials`].
    pub tsig: Option<TsigKey>,
    pub tsig_key_file: PathBuf,
    pub ttl: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Key name as the server knows it (without trailing dot).
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationSettings {
    pub timeout: Duration,
    /// Explicit `host:port` list to check instead of the zone's NS set (kept as written).
    pub nameservers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    Rsa { bits: u32 },
    EcdsaP256,
    EcdsaP384,
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Rsa { bits } => write!(f, "rsa{bits}"),
            KeySpec::EcdsaP256 => f.write_str("ecdsa-p256"),
            KeySpec::EcdsaP384 => f.write_str("ecdsa-p384"),
        }
    }
}

/// How a certificate's names are proven to the CA (`challenge:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// A TXT value at `_acme-challenge.<name>` per order, removed afterwards.
    #[default]
    Dns01,
    /// One standing TXT record at `_validation-persist.<name>` naming the CA and this account
    /// (draft-ietf-acme-dns-persist-01), written once and never removed by a renewal.
    DnsPersist01,
}

impl ChallengeKind {
    /// The ACME challenge type, as written in a spec and offered by CAs.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Dns01 => "dns-01",
            ChallengeKind::DnsPersist01 => "dns-persist-01",
        }
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One certificate, from `certs.d/NAME.yaml` merged over `defaults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub name: String,
    pub file: PathBuf,
    /// Lower-case, no trailing dot; the first is the subject CN. `*.x` allowed.
    pub domains: Vec<String>,
    pub account: String,
    pub key: KeySpec,
    /// `key.reuse`: keep the live private key across renewals (a TLSA/DANE record or a pinned key must
    /// stay valid) when it is of the `key` type; a new key otherwise.
    pub key_reuse: bool,
    pub dns: String,
    /// Explicit zone for every name of this certificate (no trailing dot).
    pub zone: Option<String>,
    pub renew_before: Option<Duration>,
    /// `profile:` the ACME profile the order asks for (a CA that offers profiles lists them in its
    /// directory). `None`: the CA's default.
    pub profile: Option<String>,
    /// `challenge:` how the names are proven.
    pub challenge: ChallengeKind,
    /// `persist_until:` (dns-persist-01 only) the record's `persistUntil`, in seconds since the epoch.
    pub persist_until: Option<u64>,
    /// `preferred_chain:` the issuer CN of the topmost certificate of the chain to install, among the
    /// default chain and the CA's alternates (as certbot's `--preferred-chain`).
    pub preferred_chain: Option<String>,
    pub deploy: Vec<DeployTarget>,
    /// The `reload:` entries in order, then the `hooks:` entries ([`ReloadSpec::Hook`]).
    pub reload: Vec<ReloadSpec>,
    /// `pre_hooks:` ([`ReloadSpec::Hook`]s), certbot's pre-hooks: each distinct one runs once before the
    /// first renewal attempt of a run (`renewd renew`; in the daemon, while no other renewal is in flight).
    pub pre_hooks: Vec<ReloadSpec>,
    /// `post_hooks:`, certbot's post-hooks: each distinct one runs once when the run's last attempt has
    /// ended, successful or not.
    pub post_hooks: Vec<ReloadSpec>,
}

#[cfg(test)]
impl CertSpec {
    /// A minimal spec for unit tests: one domain, ECDSA P-256, no deploy or reload.
    pub(crate) fn for_test(name: &str, domain: &str, renew_before: Option<Duration>) -> CertSpec {
        CertSpec {
            name: name.into(),
            file: "/dev/null".into(),
            domains: vec![domain.into()],
            account: "ca".into(),
            key: KeySpec::EcdsaP256,
            key_reuse: false,
            dns: "primary".into(),
            zone: None,
            renew_before,
            profile: None,
            challenge: ChallengeKind::Dns01,
            persist_until: None,
            preferred_chain: None,
            deploy: vec![],
            reload: vec![],
            pre_hooks: vec![],
            post_hooks: vec![],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployTarget {
    pub fullchain: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub chain: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// key + fullchain in one file (haproxy style).
    pub combined: Option<PathBuf>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// File mode; default 0644 for certificates, 0600 for anything holding the key.
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadSpec {
    /// `gitlab-ctl hup SERVICE`
    Gitlab(String),
    Nginx,
    Apache,
    /// `systemctl reload UNIT`
    Systemd(String),
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
    /// `nginx: { config: PATH }`: `nginx -c PATH -t`, then `nginx -c PATH -s reload` (an instance with its
    /// own configuration, never through systemctl).
    NginxConfig(PathBuf),
    /// `apache: { config: PATH }`: `apachectl configtest` / `graceful` with `APACHE_CONFDIR` = the
    /// directory of PATH and `APACHE_ARGUMENTS=-f PATH` (Debian's apache2ctl).
    ApacheConfig(PathBuf),
    /// One entry of `hooks:` (certbot-compatible deploy hook): argv, no shell, no placeholders; it gets
    /// `RENEWED_LINEAGE` and `RENEWED_DOMAINS`. Hooks follow the `reload:` entries in
    /// [`CertSpec::reload`], in the order written.
    Hook {
        argv: Vec<String>,
        timeout: Duration,
    },
}
