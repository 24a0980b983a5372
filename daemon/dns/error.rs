//! Errors of everything renewd says to DNS.
//!
//! Each message is meant for the administrator who reads it in the journal or in `renewd status`:
//! it names the server (name and address), the zone, the owner and the TSIG key *name* involved,
//! and says what to change. Secrets never appear here.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A server as shown in messages: `acme-master (127.0.0.12:53)`, or just the address when the
/// name is the address. Cheap to clone (keeps [`DnsError`] small).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerRef(Arc<(String, SocketAddr)>);

impl ServerRef {
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        ServerRef(Arc::new((name.into(), addr)))
    }
    /// The configured or NS name (may be empty).
    pub fn name(&self) -> &str {
        &self.0 .0
    }
    pub fn addr(&self) -> SocketAddr {
        self.0 .1
    }
}

impl fmt::Debug for ServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerRef({self})")
    }
}

impl fmt::Display for ServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, addr) = (self.name(), self.addr());
        if name.is_empty() || name == addr.ip().to_string() || name == addr.to_string() {
            write!(f, "{addr}")
        } else {
            write!(f, "{name} ({addr})")
        }
    }
}

/// What one authoritative server served when propagation gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lagging {
    pub server: ServerRef,
    /// "no TXT", "SERVFAIL", "timeout", "old values only", "1 of 2 values", ...
    pub served: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    // ---- input and configuration ----
    #[error("`{name}` is not a valid DNS name: {reason}")]
    InvalidName { name: String, reason: String },

    #[error("`{address}` is not a usable DNS server address: {reason}")]
    InvalidAddress { address: String, reason: String },

    #[error("`{owner}` is not inside zone `{zone}`: set `zone:` to `{owner}` or a parent of it, or remove `zone:` to let renewd discover the zone")]
    OwnerNotInZone { owner: String, zone: String },

    #[error("TSIG key `{key}` cannot be used: {reason}")]
    InvalidTsigKey { key: String, reason: String },

    #[error("DNS server `{server}` has no TSIG key ({} does not exist), so renewd cannot write a record through it: create the file again (`tsig-keygen -a hmac-sha256 NAME`, the same key as the DNS server's)", .key_file.display())]
    NoCredentials { server: String, key_file: PathBuf },

    #[error("no DNS resolver to ask: {reason}; set `resolver:` in the global config")]
    NoResolver { reason: String },

    // ---- network ----
    #[error("no answer from {server} after {} s: is named running and reachable on port {}?", .after.as_secs_f64().ceil() as u64, .server.addr().port())]
    NoAnswer { server: ServerRef, after: Duration },

    #[error("cannot reach {server}: {reason}: is named running and reachable on port {}?", .server.addr().port())]
    Unreachable { server: ServerRef, reason: String },

    #[error("unusable answer from {server}: {reason}")]
    Malformed { server: ServerRef, reason: String },

    // ---- TSIG ----
    #[error("server {server} does not know TSIG key `{key}` (BADKEY): the key name in {} must match a `key \"{key}\"` statement in named.conf (with the same algorithm, {algorithm})", .key_file.display())]
    BadKey {
        server: ServerRef,
        key: String,
        algorithm: String,
        key_file: PathBuf,
    },

    #[error("server {server} rejected our signature (BADSIG): the secret of key `{key}` in {} differs from the server's copy; copy the key from the server again", .key_file.display())]
    BadSig {
        server: ServerRef,
        key: String,
        key_file: PathBuf,
    },

    #[error("server {server} rejected the time of our TSIG signature with key `{key}` (BADTIME): {}; check NTP on both machines", skew_text(*.skew_secs))]
    BadTime {
        server: ServerRef,
        key: String,
        /// Server time minus our time, when the server told us its time.
        skew_secs: Option<i64>,
    },

    #[error("server {server} answered with TSIG error {code} for key `{key}`")]
    TsigOther {
        server: ServerRef,
        key: String,
        code: u16,
    },

    #[error("the answer from {server} to our update of zone {zone} is not signed with key `{key}`: possible spoofing or a middlebox stripping TSIG; the update may or may not have been applied")]
    UnsignedResponse {
        server: ServerRef,
        zone: String,
        key: String,
    },

    #[error("the answer from {server} to our update of zone {zone} carries a TSIG signature that does not verify with key `{key}` ({reason}): possible spoofing, or a different key with the same name")]
    BadResponseSignature {
        server: ServerRef,
        zone: String,
        key: String,
        reason: String,
    },

    // ---- update response codes ----
    #[error("server {server} refused the update of `{owner}` TXT in zone {zone} with key {key} (REFUSED): the zone's update-policy does not grant it; add `update-policy {{ grant {key} name {owner}. TXT; }};` to zone \"{zone}\" (or `grant {key} zonesub TXT;`)")]
    Refused {
        server: ServerRef,
        zone: String,
        owner: String,
        key: String,
    },

    #[error("server {server} is not authoritative (primary) for zone {zone}, or key `{key}` selects a view without it (NOTAUTH): point the dns server at the zone's primary, or check the zone name")]
    NotAuth {
        server: ServerRef,
        zone: String,
        key: String,
    },

    #[error("server {server} says `{owner}` is not inside zone {zone} (NOTZONE): fix `zone:` in the spec, or remove it to let renewd discover the zone")]
    NotZone {
        server: ServerRef,
        zone: String,
        owner: String,
    },

    #[error("server {server} answered {} to the update of `{owner}` TXT in zone {zone} with key `{key}`; see the server's log for why", super::resolver::rcode_name(*.rcode))]
    UpdateFailed {
        server: ServerRef,
        zone: String,
        owner: String,
        key: String,
        rcode: hickory_proto::op::ResponseCode,
    },

    // ---- lookups and discovery ----
    #[error("looking up {rtype} `{name}` failed: {server} answered {rcode}")]
    LookupFailed {
        name: String,
        rtype: String,
        server: ServerRef,
        rcode: String,
    },

    #[error("`{host}` has no A or AAAA record")]
    NoAddress { host: String },

    #[error("CNAME chain from `{start}` is too long (more than {max} hops: {}); shorten it", .chain.join(" -> "))]
    CnameChainTooLong {
        start: String,
        max: usize,
        chain: Vec<String>,
    },

    #[error("CNAME loop at `{start}`: {}; fix the CNAME records", .chain.join(" -> "))]
    CnameLoop { start: String, chain: Vec<String> },

    #[error("no zone (SOA) found for `{name}` through the resolver: set `zone:` in the spec")]
    ZoneNotFound { name: String },

    #[error("zone {zone} has no usable NS records ({reason}): set `propagation.nameservers` or fix the delegation")]
    NoNameservers { zone: String, reason: String },

    #[error("query for TXT `{owner}` at {server} failed: {served}")]
    QueryFailed {
        server: ServerRef,
        owner: String,
        served: String,
    },

    // ---- propagation ----
    #[error("TXT `{owner}` is not on every authoritative server after {} s; lagging: {}{}. Check the zone transfers (NOTIFY/IXFR) from the primary to these servers, or raise `propagation.timeout`", .waited.as_secs(), lagging_text(.lagging), ok_text(.ok))]
    PropagationTimeout {
        owner: String,
        waited: Duration,
        lagging: Vec<Lagging>,
        /// Servers that did serve every value, with the time it took.
        ok: Vec<(ServerRef, Duration)>,
    },
}

fn skew_text(skew: Option<i64>) -> String {
    match skew {
        Some(s) if s > 0 => format!("our clock is {s} s behind the server's"),
        Some(s) if s < 0 => format!("our clock is {} s ahead of the server's", -s),
        Some(_) => "the clocks agree now, so the time check failed for another reason".to_string(),
        None => "our clock and the server's differ by more than the allowed fudge".to_string(),
    }
}

fn lagging_text(lagging: &[Lagging]) -> String {
    lagging
        .iter()
        .map(|l| format!("{}: {}", l.server, l.served))
        .collect::<Vec<_>>()
        .join("; ")
}

fn ok_text(ok: &[(ServerRef, Duration)]) -> String {
    if ok.is_empty() {
        return String::new();
    }
    let list = ok
        .iter()
        .map(|(s, d)| format!("{} after {} ms", s, d.as_millis()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(" (ready: {list})")
}

impl DnsError {
    /// Whether trying again later may help (network trouble, lagging servers) as opposed to a
    /// configuration problem that needs an administrator.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DnsError::NoAnswer { .. }
                | DnsError::Unreachable { .. }
                | DnsError::Malformed { .. }
                | DnsError::LookupFailed { .. }
                | DnsError::PropagationTimeout { .. }
                | DnsError::QueryFailed { .. }
                | DnsError::UpdateFailed { .. }
        )
    }

    /// Whether an UPDATE that failed with this error certainly changed nothing: the server (or our own
    /// checks before sending) rejected it. A timeout or an unverifiable answer leaves it open, so values
    /// that may have been published stay in the cleanup journal.
    pub fn update_was_rejected(&self) -> bool {
        matches!(
            self,
            DnsError::InvalidName { .. }
                | DnsError::OwnerNotInZone { .. }
                | DnsError::InvalidTsigKey { .. }
                | DnsError::BadKey { .. }
                | DnsError::BadSig { .. }
                | DnsError::BadTime { .. }
                | DnsError::TsigOther { .. }
                | DnsError::Refused { .. }
                | DnsError::NotAuth { .. }
                | DnsError::NotZone { .. }
                | DnsError::UpdateFailed { .. }
        )
    }
}
