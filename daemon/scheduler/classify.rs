//! Which failures are worth retrying soon ([`classify()`]).
//!
//! The line: **permanent** means the request itself was refused or cannot be built (credentials, TSIG key,
//! update-policy, the CA's policy on these names, renewd's own configuration), so sending it again
//! unchanged gets the same answer; renewd waits for a configuration change or a day. **Rate limited** means
//! the CA asked us to slow down. Everything else is **transient** and retried with backoff: the network,
//! servers that are down or lagging, and DNS data that may be in the middle of being set up (delegations,
//! CNAMEs, zones) or a clock that NTP will fix — those are fixed outside renewd, so no configuration change
//! would end a permanent wait, and a 6 h backoff picks the fix up the same day.

use std::io::ErrorKind;
use std::time::SystemTime;

use super::plan::FailureKind;
use crate::acme::AcmeError;
use crate::certs::CertError;
use crate::dns::DnsError;
use crate::renew::RenewError;

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
        // Only renewal-window requests get it (the account failed moments ago): like a CA outage.
        RenewError::AccountUnavailable { .. } => FailureKind::Transient,
    };
    let retry_after = match err {
        RenewError::Acme(e) => e.retry_after().filter(|at| *at > now),
        _ => None,
    };
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
        | DnsError::NoResolver { .. }
        | DnsError::BadKey { .. }
        | DnsError::BadSig { .. }
        | DnsError::TsigOther { .. }
        | DnsError::Refused { .. }
        | DnsError::NotAuth { .. }
        | DnsError::NotZone { .. } => Permanent,
        // The server does not implement UPDATE: the wrong server is configured.
        DnsError::UpdateFailed { rcode, .. } if rcode == "NOTIMP" => Permanent,
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
        AcmeError::Register { source, .. } | AcmeError::Protocol { source, .. } => {
            instant_acme_kind(source)
        }
        AcmeError::ChallengeInvalid { detail, .. } | AcmeError::OrderInvalid { detail, .. } => {
            detail_kind(detail)
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

/// Challenge and order failures arrive as text built by [`crate::acme::describe`] ("…: the CA answered
/// caa (HTTP 403): …; …"), one per authorization; classify by the problem types named in it.
fn detail_kind(detail: &str) -> FailureKind {
    if detail.contains("offers no dns-01 challenge") {
        return FailureKind::Permanent;
    }
    const MARK: &str = "the CA answered ";
    let kinds = detail.match_indices(MARK).map(|(i, _)| {
        let rest = &detail[i + MARK.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        type_kind(&rest[..end])
    });
    worst(kinds)
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

    fn acme(json: &str) -> AcmeError {
        AcmeError::protocol(
            "creating the order",
            instant_acme::Error::Api(problem(json)),
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
                rcode: "NOTIMP".into(),
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
                rcode: "SERVFAIL".into(),
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
        // Registration carries the same problems.
        let register = AcmeError::Register {
            account: "secom".into(),
            directory: "https://acme.ca.example/directory".into(),
            source: Box::new(instant_acme::Error::Api(problem(
                r#"{"type":"urn:ietf:params:acme:error:externalAccountRequired","status":401}"#,
            ))),
            retry_after: None,
        };
        assert_eq!(kind(register), Permanent);
    }

    #[test]
    fn the_retry_after_attached_to_an_acme_error_is_returned() {
        let later = now() + Duration::from_secs(600);
        let limited = AcmeError::Protocol {
            context: "new order for a.example.test".into(),
            source: Box::new(instant_acme::Error::Api(problem(
                r#"{"type":"urn:ietf:params:acme:error:rateLimited","status":429}"#,
            ))),
            retry_after: Some(later),
        };
        assert!(limited.to_string().contains("retry after"), "{limited}");
        assert_eq!(classify(&limited.into(), now()), (RateLimited, Some(later)));
        let register = AcmeError::Register {
            account: "secom".into(),
            directory: "https://acme.ca.example/directory".into(),
            source: Box::new(instant_acme::Error::Api(problem(r#"{"status":503}"#))),
            retry_after: Some(later),
        };
        assert_eq!(
            classify(&register.into(), now()),
            (RateLimited, Some(later))
        );
        // Already past: nothing to wait for.
        let stale = AcmeError::Protocol {
            context: "new order".into(),
            source: Box::new(instant_acme::Error::Api(problem(r#"{"status":429}"#))),
            retry_after: Some(now() - Duration::from_secs(1)),
        };
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
    fn challenge_and_order_failures_read_the_described_problem() {
        let described = |json: &str| {
            format!(
                "a.example.test: {}",
                crate::acme::describe(&instant_acme::Error::Api(problem(json)))
            )
        };
        let caa = described(
            r#"{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids","status":403}"#,
        );
        let dns = described(
            r#"{"type":"urn:ietf:params:acme:error:dns","detail":"SERVFAIL","status":400}"#,
        );
        let order = |detail: String| AcmeError::OrderInvalid {
            url: "https://acme.ca.example/order/1".into(),
            detail,
        };
        assert_eq!(kind(order(caa.clone())), Permanent);
        assert_eq!(kind(order(dns.clone())), Transient);
        assert_eq!(kind(order(format!("{dns}; {caa}"))), Permanent);
        assert_eq!(kind(order("order status Invalid".into())), Transient);
        let no_dns01 = AcmeError::ChallengeInvalid {
            domain: "a.example.test".into(),
            detail: "the CA offers no dns-01 challenge for this name".into(),
        };
        assert_eq!(kind(no_dns01), Permanent);
    }

    #[test]
    fn network_failures_and_the_rest() {
        let timeout =
            AcmeError::protocol("waiting for the order", instant_acme::Error::Timeout(None));
        assert_eq!(kind(timeout), Transient);
        let other = AcmeError::protocol(
            "fetching the directory",
            instant_acme::Error::Other("connection reset".into()),
        );
        assert_eq!(kind(other), Transient);
        let unsupported = AcmeError::protocol(
            "creating the order",
            instant_acme::Error::Unsupported("profiles"),
        );
        assert_eq!(kind(unsupported), Permanent);
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
