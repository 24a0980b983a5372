//! Which failures are worth retrying soon ([`classify()`]).
//!
//! The line: **permanent** means the request itself was refused or cannot be built (credentials, TSIG key,
//! update-policy, the CA's policy on these names, renewd's own configuration), so sending it again
//! unchanged gets the same answer; renewd waits for a configuration change or a day. **Rate limited** means
//! the CA asked us to slow down. Everything else is **transient** and retried with backoff: the network,
//! servers that are down or lagging, and DNS data that may be in the middle of being set up (delegations,
//! CNAMEs, zones) or a clock that NTP will fix — those are fixed outside renewd, so no configuration change
//! would end a permanent wait, and a 6 h backoff picks the fix up the same day.

use crate::cluster::ClusterError;
use std::io::ErrorKind;
use std::time::SystemTime;

use super::plan::FailureKind;
use crate::acme::AcmeError;
use crate::certs::CertError;
use crate::deploy::InstallError;
use crate::dns::DnsError;
use crate::renew::RenewError;
use hickory_proto::op::ResponseCode;

/// ACME problem types (RFC 8555 §6.7, RFC 8739, RFC 9773) that a retry of the same request will get again.
pub const PERMANENT_PROBLEMS: &[&str] = &[
    "unauthorized",
    "rejectedIdentifier",
    "caa",
    "badCSR",
    "externalAccountRequired",
    "accountDoesNotExist",
    "unsupportedIdentifier",
    "badPublicKey",
    "badSignatureAlgorithm",
    "invalidContact",
    "unsupportedContact",
    "userActionRequired",
];

/// How a renewal failed, and the CA's Retry-After when known.
///
/// The Retry-After comes from the 429/503 answer itself: the account's HTTP client records the header
/// (instant-acme drops the headers of error responses) and [`crate::acme::AcmeAccount::error`] attaches
/// it to the error of a call the CA refused with 429/503 or `rateLimited`. A moment that is already past
/// at `now` is no reason to wait and is left out.
pub fn classify(err: &RenewError, now: SystemTime) -> (FailureKind, Option<SystemTime>) {
    let kind = match err {
        RenewError::Dns(e) => dns_kind(e),
        RenewError::Acme(e) => acme_kind(e),
        RenewError::Cert(e) => cert_kind(e),
        RenewError::Io { source, .. } => io_kind(source),
        RenewError::Spec { .. } => FailureKind::Permanent,
        // Shutting down mid-renewal: try again soon after the next start.
        RenewError::Cancelled => FailureKind::Transient,
        // Another process holds the certificate's lock: its renewal decides; look again soon.
        RenewError::Busy => FailureKind::Transient,
        // The account's own failure decides, also when it was shared with waiting requests.
        RenewError::Account { source, .. } => acme_kind(source),
        RenewError::Deploy(e) => deploy_kind(e),
        // The CA, a DNS server or a reload did not finish in time: retried with backoff.
        RenewError::AttemptTimeout { .. } => FailureKind::Transient,
        RenewError::Cluster(e) => cluster_kind(e),
    };
    let retry_after = match err {
        RenewError::Acme(e) => e.retry_after(),
        RenewError::Account { source, .. } => source.retry_after(),
        _ => None,
    }
    .filter(|at| *at > now);
    (kind, retry_after)
}

fn io_kind(e: &std::io::Error) -> FailureKind {
    match e.kind() {
        // A directory or file renewd may not write: someone has to fix the permissions.
        ErrorKind::PermissionDenied => FailureKind::Permanent,
        _ => FailureKind::Transient,
    }
}

fn dns_kind(e: &DnsError) -> FailureKind {
    use FailureKind::{Permanent, Transient};
    // Exhaustive on purpose: a new DnsError variant has to be classified here.
    match e {
        DnsError::InvalidName { .. }
        | DnsError::InvalidAddress { .. }
        | DnsError::OwnerNotInZone { .. }
        | DnsError::InvalidTsigKey { .. }
        // The operator removed the key file: someone has to put it back.
        | DnsError::NoCredentials { .. }
        | DnsError::NoResolver { .. }
        | DnsError::BadKey { .. }
        | DnsError::BadSig { .. }
        | DnsError::TsigOther { .. }
        | DnsError::Refused { .. }
        | DnsError::NotAuth { .. }
        | DnsError::NotZone { .. } => Permanent,
        // The server does not implement UPDATE: the wrong server is configured.
        DnsError::UpdateFailed {
            rcode: ResponseCode::NotImp,
            ..
        } => Permanent,
        // SERVFAIL and friends: the server's trouble, not our request's.
        DnsError::UpdateFailed { .. } => Transient,
        // Clock skew: NTP usually fixes it without anyone touching renewd.
        DnsError::BadTime { .. } => Transient,
        DnsError::NoAnswer { .. }
        | DnsError::Unreachable { .. }
        | DnsError::Malformed { .. }
        | DnsError::UnsignedResponse { .. }
        | DnsError::BadResponseSignature { .. }
        | DnsError::LookupFailed { .. }
        | DnsError::NoAddress { .. }
        | DnsError::CnameChainTooLong { .. }
        | DnsError::CnameLoop { .. }
        | DnsError::ZoneNotFound { .. }
        | DnsError::NoNameservers { .. }
        | DnsError::QueryFailed { .. }
        | DnsError::PropagationTimeout { .. } => Transient,
    }
}

fn acme_kind(e: &AcmeError) -> FailureKind {
    match e {
        AcmeError::Trust { .. } | AcmeError::Credentials { .. } => FailureKind::Permanent,
        AcmeError::Save { source, .. } => io_kind(source),
        AcmeError::Cluster { source, .. } => cluster_kind(source),
        AcmeError::Request { source, .. } => instant_acme_kind(source),
        // The CA will not validate this name with dns-01: asking again changes nothing.
        AcmeError::NoDnsChallenge { .. } => FailureKind::Permanent,
        // The spec or the CA's directory has to change first.
        AcmeError::UnknownProfile { .. } | AcmeError::NoIssuerDomain { .. } => {
            FailureKind::Permanent
        }
        // The CA's verdict: by the problems it gave (none: a DNS answer the CA did not like, transient).
        AcmeError::Rejected { .. } | AcmeError::OrderInvalid { .. } => {
            worst(e.problems().into_iter().map(problem_kind))
        }
    }
}

fn cluster_kind(e: &ClusterError) -> FailureKind {
    match e {
        // etcd comes back, the other member finishes, the next holder of the lock takes over.
        ClusterError::Unavailable { .. }
        | ClusterError::Held { .. }
        | ClusterError::LockLost { .. } => FailureKind::Transient,
        // A refused login or permission, another seal key, a foreign record, another spec: someone
        // has to change the configuration of a member or of etcd.
        ClusterError::Refused { .. }
        | ClusterError::Sealed { .. }
        | ClusterError::Corrupt { .. }
        | ClusterError::NamesDiffer { .. } => FailureKind::Permanent,
    }
}

fn deploy_kind(e: &InstallError) -> FailureKind {
    match e {
        // A deploy path renewd may not write: someone has to fix the permissions.
        InstallError::Deploy { source, .. } => io_kind(source),
        // A server whose configuration test or reload fails is fixed outside renewd: retried with
        // backoff (and at once on SIGHUP), the live files stay installed.
        InstallError::ConfigTest(_) | InstallError::Reload(_) | InstallError::Task { .. } => {
            FailureKind::Transient
        }
    }
}

fn instant_acme_kind(e: &instant_acme::Error) -> FailureKind {
    use instant_acme::Error;
    match e {
        Error::Api(problem) => problem_kind(problem),
        // The account key in the stored credentials is unusable; the directory URL is malformed; the CA
        // lacks a feature we need (EAB, ARI, profiles): none of these changes by itself.
        Error::KeyRejected | Error::InvalidUri(_) | Error::Unsupported(_) => FailureKind::Permanent,
        // Network, TLS, timeouts, garbled answers, and whatever comes later.
        _ => FailureKind::Transient,
    }
}

/// Classify an ACME problem document by its type (and HTTP status).
pub fn problem_kind(p: &instant_acme::Problem) -> FailureKind {
    let kind = problem_type(p.r#type.as_deref());
    if kind == "rateLimited" || matches!(p.status, Some(429 | 503)) {
        return FailureKind::RateLimited;
    }
    if kind == "compound" && !p.subproblems.is_empty() {
        let kinds = p
            .subproblems
            .iter()
            .map(|s| type_kind(problem_type(s.r#type.as_deref())));
        return worst(kinds);
    }
    type_kind(kind)
}

fn problem_type(t: Option<&str>) -> &str {
    t.unwrap_or("")
        .trim_start_matches("urn:ietf:params:acme:error:")
}

fn type_kind(kind: &str) -> FailureKind {
    if kind == "rateLimited" {
        FailureKind::RateLimited
    } else if PERMANENT_PROBLEMS.contains(&kind) {
        FailureKind::Permanent
    } else {
        FailureKind::Transient
    }
}

/// Several problems at once: rate limited if any is (the CA wants us to wait), else permanent if any is
/// (the same order will fail again on that name), else transient.
fn worst(kinds: impl Iterator<Item = FailureKind>) -> FailureKind {
    kinds.fold(FailureKind::Transient, |acc, k| match (acc, k) {
        (FailureKind::RateLimited, _) | (_, FailureKind::RateLimited) => FailureKind::RateLimited,
        (FailureKind::Permanent, _) | (_, FailureKind::Permanent) => FailureKind::Permanent,
        _ => FailureKind::Transient,
    })
}

fn cert_kind(e: &CertError) -> FailureKind {
    match e {
        // We cannot generate the key or build the request: retrying changes nothing.
        CertError::KeyGen(..) | CertError::Csr(_) | CertError::Key(_) => FailureKind::Permanent,
        // The CA sent something wrong: it may do better next time.
        CertError::EmptyChain
        | CertError::Parse { .. }
        | CertError::KeyMismatch
        | CertError::NameMismatch { .. }
        | CertError::BrokenChain { .. } => FailureKind::Transient,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::dns::ServerRef;
    use crate::phase::Phase;
    use FailureKind::{Permanent, RateLimited, Transient};

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn server() -> ServerRef {
        ServerRef::new(
            "acme-master",
            "127.0.0.12:53".parse::<SocketAddr>().unwrap(),
        )
    }

    fn kind(e: impl Into<RenewError>) -> FailureKind {
        let (kind, retry_after) = classify(&e.into(), now());
        assert_eq!(retry_after, None);
        kind
    }

    fn problem(json: &str) -> instant_acme::Problem {
        serde_json::from_str(json).unwrap()
    }

    fn ca() -> crate::acme::Ca {
        crate::acme::Ca {
            account: "secom".into(),
            directory: "https://acme.ca.example/directory".into(),
        }
    }

    fn request(
        phase: Phase,
        source: instant_acme::Error,
        retry_after: Option<SystemTime>,
    ) -> AcmeError {
        AcmeError::Request {
            ca: ca(),
            phase,
            source: Box::new(source),
            retry_after,
        }
    }

    fn acme(json: &str) -> AcmeError {
        request(
            Phase::PlacingOrder,
            instant_acme::Error::Api(problem(json)),
            None,
        )
    }

    #[test]
    fn dns_configuration_errors_are_permanent() {
        let s = server;
        let cases: Vec<DnsError> = vec![
            DnsError::BadKey {
                server: s(),
                key: "acme-update".into(),
                algorithm: "hmac-sha256".into(),
                key_file: PathBuf::from("/etc/renewd/secrets/acme-update.key"),
            },
            DnsError::BadSig {
                server: s(),
                key: "acme-update".into(),
                key_file: PathBuf::from("/etc/renewd/secrets/acme-update.key"),
            },
            DnsError::Refused {
                server: s(),
                zone: "z".into(),
                owner: "o".into(),
                key: "k".into(),
            },
            DnsError::NotAuth {
                server: s(),
                zone: "z".into(),
                key: "k".into(),
            },
            DnsError::NotZone {
                server: s(),
                zone: "z".into(),
                owner: "o".into(),
            },
            DnsError::InvalidName {
                name: "a..b".into(),
                reason: "empty label".into(),
            },
            DnsError::UpdateFailed {
                server: s(),
                zone: "z".into(),
                owner: "o".into(),
                key: "k".into(),
                rcode: ResponseCode::NotImp,
            },
        ];
        for e in cases {
            let text = e.to_string();
            assert_eq!(kind(e), Permanent, "{text}");
        }
    }

    #[test]
    fn dns_network_and_propagation_errors_are_transient() {
        let s = server;
        let cases: Vec<DnsError> = vec![
            DnsError::UpdateFailed {
                server: s(),
                zone: "z".into(),
                owner: "o".into(),
                key: "k".into(),
                rcode: ResponseCode::ServFail,
            },
            DnsError::NoAnswer {
                server: s(),
                after: Duration::from_secs(3),
            },
            DnsError::Unreachable {
                server: s(),
                reason: "connection refused".into(),
            },
            DnsError::LookupFailed {
                name: "_acme-challenge.a.example.test".into(),
                rtype: "SOA".into(),
                server: s(),
                rcode: "SERVFAIL".into(),
            },
            DnsError::PropagationTimeout {
                owner: "o".into(),
                waited: Duration::from_secs(300),
                lagging: vec![],
                ok: vec![],
            },
            DnsError::BadTime {
                server: s(),
                key: "k".into(),
                skew_secs: Some(400),
            },
            DnsError::ZoneNotFound { name: "x".into() },
        ];
        for e in cases {
            let text = e.to_string();
            assert_eq!(kind(e), Transient, "{text}");
        }
    }

    #[test]
    fn acme_problems() {
        let permanent = [
            r#"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"no","status":403}"#,
            r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","status":400}"#,
            r#"{"type":"urn:ietf:params:acme:error:caa","status":403}"#,
            r#"{"type":"urn:ietf:params:acme:error:badCSR","status":400}"#,
            r#"{"type":"urn:ietf:params:acme:error:externalAccountRequired","status":401}"#,
            r#"{"type":"urn:ietf:params:acme:error:accountDoesNotExist","status":400}"#,
        ];
        for json in permanent {
            assert_eq!(kind(acme(json)), Permanent, "{json}");
        }
        let rate_limited = [
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates","status":429}"#,
            r#"{"type":"urn:ietf:params:acme:error:serverInternal","status":503}"#,
            r#"{"detail":"slow down","status":429}"#,
        ];
        for json in rate_limited {
            assert_eq!(kind(acme(json)), RateLimited, "{json}");
        }
        let transient = [
            r#"{"type":"urn:ietf:params:acme:error:badNonce","status":400}"#,
            r#"{"type":"urn:ietf:params:acme:error:serverInternal","status":500}"#,
            r#"{"type":"urn:ietf:params:acme:error:dns","status":400}"#,
            r#"{"type":"about:blank"}"#,
        ];
        for json in transient {
            assert_eq!(kind(acme(json)), Transient, "{json}");
        }
        // Registration carries the same problems; so does a failure shared with waiting requests.
        let register = request(
            Phase::Registering,
            instant_acme::Error::Api(problem(
                r#"{"type":"urn:ietf:params:acme:error:externalAccountRequired","status":401}"#,
            )),
            None,
        );
        assert!(
            register.to_string().starts_with(
                "account `secom` (https://acme.ca.example/directory): registering the account: the CA answered externalAccountRequired"
            ),
            "{register}"
        );
        let shared = RenewError::Account {
            source: std::sync::Arc::new(register),
            shared: Some(Duration::from_secs(3)),
        };
        assert_eq!(kind(shared), Permanent);
    }

    #[test]
    fn the_retry_after_attached_to_an_acme_error_is_returned() {
        let later = now() + Duration::from_secs(600);
        let limited = request(
            Phase::PlacingOrder,
            instant_acme::Error::Api(problem(
                r#"{"type":"urn:ietf:params:acme:error:rateLimited","status":429}"#,
            )),
            Some(later),
        );
        assert!(limited.to_string().contains("retry after"), "{limited}");
        assert_eq!(classify(&limited.into(), now()), (RateLimited, Some(later)));
        let register = request(
            Phase::Registering,
            instant_acme::Error::Api(problem(r#"{"status":503}"#)),
            Some(later),
        );
        let shared = RenewError::Account {
            source: std::sync::Arc::new(register),
            shared: None,
        };
        assert_eq!(classify(&shared, now()), (RateLimited, Some(later)));
        // Already past: nothing to wait for.
        let stale = request(
            Phase::PlacingOrder,
            instant_acme::Error::Api(problem(r#"{"status":429}"#)),
            Some(now() - Duration::from_secs(1)),
        );
        assert_eq!(classify(&stale.into(), now()), (RateLimited, None));
    }

    #[test]
    fn compound_problems_take_the_worst_subproblem() {
        let json = |a: &str, b: &str| {
            format!(
                r#"{{"type":"urn:ietf:params:acme:error:compound","status":403,"subproblems":[
                {{"type":"urn:ietf:params:acme:error:{a}","identifier":{{"type":"dns","value":"a.example.test"}}}},
                {{"type":"urn:ietf:params:acme:error:{b}","identifier":{{"type":"dns","value":"b.example.test"}}}}]}}"#
            )
        };
        assert_eq!(kind(acme(&json("dns", "caa"))), Permanent);
        assert_eq!(kind(acme(&json("caa", "rateLimited"))), RateLimited);
        assert_eq!(kind(acme(&json("dns", "connection"))), Transient);
    }

    #[test]
    fn challenge_and_order_failures_are_classified_by_the_problems_as_data() {
        let caa = problem(
            r#"{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids","status":403}"#,
        );
        let dns = problem(
            r#"{"type":"urn:ietf:params:acme:error:dns","detail":"SERVFAIL","status":400}"#,
        );
        let order = |rejected: Vec<(&str, &instant_acme::Problem)>| AcmeError::OrderInvalid {
            ca: ca(),
            url: "https://acme.ca.example/order/1".into(),
            problem: None,
            rejected: rejected
                .into_iter()
                .map(|(d, p)| (d.to_string(), p.clone()))
                .collect(),
        };
        assert_eq!(kind(order(vec![("a.example.test", &caa)])), Permanent);
        assert_eq!(kind(order(vec![("a.example.test", &dns)])), Transient);
        assert_eq!(
            kind(order(vec![
                ("a.example.test", &dns),
                ("b.example.test", &caa)
            ])),
            Permanent
        );
        assert_eq!(kind(order(vec![])), Transient);
        // The wording of a detail never decides: a "dns" problem saying "caa" is still transient.
        let sneaky = problem(
            r#"{"type":"urn:ietf:params:acme:error:dns","detail":"the CA answered caa","status":400}"#,
        );
        assert_eq!(kind(order(vec![("a.example.test", &sneaky)])), Transient);
        let rejected = |p: Option<instant_acme::Problem>| AcmeError::Rejected {
            ca: ca(),
            domain: "a.example.test".into(),
            status: "invalid".into(),
            problem: p.map(Box::new),
        };
        assert_eq!(kind(rejected(Some(caa.clone()))), Permanent);
        assert_eq!(kind(rejected(Some(dns.clone()))), Transient);
        assert_eq!(kind(rejected(None)), Transient);
        let no_dns01 = AcmeError::NoDnsChallenge {
            ca: ca(),
            domain: "a.example.test".into(),
            wanted: "dns-01".into(),
            offered: vec!["http-01".into()],
        };
        assert_eq!(kind(no_dns01), Permanent);
    }

    #[test]
    fn network_failures_and_the_rest() {
        let timeout = request(
            Phase::WaitingForValidation,
            instant_acme::Error::Timeout(None),
            None,
        );
        assert_eq!(kind(timeout), Transient);
        let no_answer = request(
            Phase::LoadingAccount,
            instant_acme::Error::Other(Box::new(crate::acme::NoAnswer(Duration::from_secs(30)))),
            None,
        );
        assert_eq!(
            no_answer.to_string(),
            "account `secom` (https://acme.ca.example/directory): loading the account (fetching the CA's directory): no answer within 30s"
        );
        assert_eq!(kind(no_answer), Transient);
        let other = request(
            Phase::LoadingAccount,
            instant_acme::Error::Other("connection reset".into()),
            None,
        );
        assert_eq!(kind(other), Transient);
        let unsupported = request(
            Phase::PlacingOrder,
            instant_acme::Error::Unsupported("profiles"),
            None,
        );
        assert_eq!(kind(unsupported), Permanent);
        let timed_out = RenewError::AttemptTimeout {
            party: ca().to_string(),
            phase: Phase::PlacingOrder,
            after: Duration::from_secs(600),
        };
        assert_eq!(kind(timed_out), Transient);
        let config_test = InstallError::ConfigTest(crate::reload::ReloadError::ConfigTest {
            command: "nginx -t".into(),
            first_line: "nginx: [emerg] x".into(),
            exit: crate::reload::Exit::Code(1),
        });
        assert_eq!(config_test.to_string(), "reload failed: nginx: [emerg] x");
        assert_eq!(kind(RenewError::Deploy(config_test)), Transient);
        let spec = RenewError::Spec {
            cert: "web".into(),
            problem: "no account `x`".into(),
        };
        assert_eq!(kind(spec), Permanent);
        assert_eq!(kind(RenewError::Cancelled), Transient);
        assert_eq!(kind(RenewError::Busy), Transient);
        let io = |k: ErrorKind| RenewError::Io {
            context: "cannot write the cleanup journal".into(),
            source: std::io::Error::from(k),
        };
        assert_eq!(kind(io(ErrorKind::PermissionDenied)), Permanent);
        assert_eq!(kind(io(ErrorKind::StorageFull)), Transient);
        assert_eq!(kind(CertError::EmptyChain), Transient);
    }
}
