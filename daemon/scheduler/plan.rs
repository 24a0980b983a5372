//! The plan for one certificate: when to try to renew it next, and why ([`decide`]).
//!
//! A pure function of the spec, the live certificate's facts, the CA's ARI window, the failure history and
//! `now`: no I/O, no clock reads, no randomness (the caller picks the ARI moment and the jitter).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::backoff::{backoff, near_expiry_cap, PERMANENT_WAIT, RETRY_AFTER_EXPIRY_MARGIN};
use super::format_in;
use crate::config::CertSpec;
use crate::live::{LiveCert, LiveError};

/// Lifetimes up to this long renew at half of the lifetime left instead of a third.
pub const SHORT_LIFETIME: Duration = Duration::from_secs(10 * 86400);

/// The jitter the daemon should draw from (uniformly, `0..=MAX_JITTER`, once per certificate) for
/// [`CertInput::jitter`]: a fleet of certificates issued together spreads over an hour.
pub const MAX_JITTER: Duration = Duration::from_secs(3600);

/// The jitter never uses more than this share (1/`JITTER_SHARE_DIVISOR`) of the time between the rule's
/// due moment and notAfter, so that short-lived certificates keep their retry budget.
pub const JITTER_SHARE_DIVISOR: u32 = 10;

/// The CA's suggested renewal window for one certificate (ARI, RFC 9773), as fetched by the caller.
///
/// The caller drops it when the live certificate changes (a window belongs to one certificate), and
/// replaces it when a re-fetch returns a different window: a window moved earlier (e.g. ahead of a mass
/// revocation) is followed as soon as the new window is given to [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AriWindow {
    pub start: SystemTime,
    pub end: SystemTime,
    /// The uniformly random moment in [start, end] picked when fetched (by the caller).
    pub chosen: SystemTime,
    /// When to fetch renewalInfo again (Retry-After).
    pub refetch_at: SystemTime,
}

/// How a renewal failed, as far as when to try again is concerned (see [`super::classify()`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// Network trouble, a server down, propagation too slow: back off and retry.
    Transient,
    /// The CA asked us to slow down (rateLimited, HTTP 429/503): honour its Retry-After when known.
    RateLimited,
    /// The request itself was refused (credentials, policy, names): wait for a configuration change, or
    /// [`PERMANENT_WAIT`].
    Permanent,
}

/// The last failed attempt of one certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    pub kind: FailureKind,
    /// The CA's Retry-After, when it sent one.
    #[serde(with = "humantime_serde", default)]
    pub retry_after: Option<SystemTime>,
    pub message: String,
}

/// The shortest time between a successful renewal and the next one the CA's window (ARI) asks for: a
/// window that has already passed for every new certificate would otherwise renew in a loop.
pub const ARI_MIN_GAP: Duration = Duration::from_secs(3600);

/// What happened to a certificate's past attempts. The caller clears it when the certificate's spec (or
/// the global configuration) changes, which ends any wait after a permanent failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Failed attempts since the last success; 0 means the last attempt (if any) succeeded.
    pub consecutive_failures: u32,
    #[serde(with = "humantime_serde", default)]
    pub last_success: Option<SystemTime>,
    #[serde(default)]
    pub last_failure: Option<Failure>,
}

impl History {
    /// Record a successful renewal.
    pub fn succeeded(&mut self, at: SystemTime) {
        self.consecutive_failures = 0;
        self.last_success = Some(at);
    }

    /// Record a failed attempt.
    pub fn failed(&mut self, failure: Failure) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_failure = Some(failure);
    }

    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.consecutive_failures > 0 && self.last_failure.is_some()
    }
}

/// Everything [`decide`] knows about one certificate.
pub struct CertInput<'a> {
    pub spec: &'a CertSpec,
    /// The live certificate: `Ok(None)` when there is none yet, `Err(reason)` when it is unreadable.
    pub live: &'a Result<Option<LiveCert>, LiveError>,
    pub ari: Option<&'a AriWindow>,
    pub history: &'a History,
    /// Fixed per certificate, chosen by the caller (random, `0..=`[`MAX_JITTER`]) so a fleet does not renew
    /// in the same second. Added to the rule's due moment (not to ARI's, which is random already).
    pub jitter: Duration,
}

/// Why a certificate is planned for [`Decision::at`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No live certificate yet.
    NoCertificate,
    /// The live certificate cannot be read (the reason).
    Unreadable(LiveError),
    /// The live certificate does not match its private key.
    KeyMismatch,
    /// The live certificate's names differ from the spec's domains.
    NamesChanged,
    /// `notAfter − renew_before` (plus jitter).
    RenewBefore,
    /// A third of the lifetime left (half, for lifetimes of 10 days or less), plus jitter.
    LifetimeFraction,
    /// The moment picked inside the CA's ARI window.
    AriWindow,
    /// Retrying after `failures` consecutive failures.
    Backoff { failures: u32 },
    /// Retrying when the CA's Retry-After allows (or just before expiry, see [`RETRY_AFTER_EXPIRY_MARGIN`]).
    RetryAfter,
    /// The last attempt failed permanently: waiting for a configuration change or [`PERMANENT_WAIT`].
    PermanentFailure,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoCertificate => f.write_str("no certificate yet"),
            Reason::Unreadable(e) => write!(f, "the live certificate is unreadable: {e}"),
            Reason::KeyMismatch => {
                f.write_str("the live certificate does not match its private key")
            }
            Reason::NamesChanged => {
                f.write_str("the live certificate's names differ from the spec's domains")
            }
            Reason::RenewBefore => f.write_str("renew_before before expiry"),
            Reason::LifetimeFraction => f.write_str("a third of the lifetime left"),
            Reason::AriWindow => f.write_str("the CA's renewal window (ARI)"),
            Reason::Backoff { failures } => write!(f, "backing off after {}", times(*failures)),
            Reason::RetryAfter => f.write_str("the CA's Retry-After"),
            Reason::PermanentFailure => f.write_str("failed permanently"),
        }
    }
}

/// The next action for one certificate: try to renew it at `at` (`at <= now` means now).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Never before the `now` given to [`decide`].
    pub at: SystemTime,
    pub reason: Reason,
    /// Human text for STATUS=/status.json, e.g. "due in 3d 4h (a third of the lifetime left)",
    /// "failing (3 times): retry in 20m" or
    /// "failing permanently: waiting for a configuration change (or retry in 24h)".
    pub summary: String,
}

impl Decision {
    /// Whether the certificate should be renewed now.
    pub fn is_due(&self, now: SystemTime) -> bool {
        self.at <= now
    }
}

/// The certificate's own due moment (DESIGN.md "How a renewal goes" step 1), before failures.
struct Due {
    at: SystemTime,
    reason: Reason,
    not_after: Option<SystemTime>,
    /// Why, for the summary ("a third of the lifetime left", the names that changed, ...).
    why: String,
}

/// When to try to renew this certificate next.
///
/// 1. The due moment: missing, unreadable, key-mismatched or renamed certificates are due now (no jitter).
///    Otherwise the rule's moment is `notAfter − renew_before` when set, else when a third of the lifetime
///    is left (half for lifetimes ≤ 10 days), plus `jitter` (capped at a tenth of the time from that
///    moment to notAfter, so never past notAfter). With an ARI window, the due moment is the earlier of
///    ARI's `chosen` and the `renew_before` moment; without `renew_before`, ARI's `chosen` alone (the CA's
///    window replaces the lifetime rule, as DESIGN.md says). An ARI moment at or after notAfter is
///    nonsense and ignored.
/// 2. Failures: when the last attempt failed, the next try is the later of the due moment and the retry
///    moment (failure time + backoff, or + 24 h after a permanent failure; both capped at half the time
///    left before notAfter; not before the CA's Retry-After, except for one try an hour before notAfter).
///    So a due certificate that failed is retried at the retry moment, and a certificate that is not due
///    yet (a forced renewal failed) keeps its due moment.
pub fn decide(input: &CertInput, now: SystemTime) -> Decision {
    let due = certificate_due(input, now);
    let history = input.history;
    let failure = history
        .last_failure
        .as_ref()
        .filter(|_| history.consecutive_failures > 0);
    if let Some(failure) = failure {
        let retry = retry_moment(failure, history.consecutive_failures, due.not_after, now);
        if retry.at > due.at {
            let at = retry.at.max(now);
            let summary = failing_summary(&retry, failure, history.consecutive_failures, at, now);
            return Decision {
                at,
                reason: retry.reason,
                summary,
            };
        }
    }
    let at = due.at.max(now);
    let mut summary = match due.reason {
        Reason::RenewBefore | Reason::LifetimeFraction | Reason::AriWindow if at > now => {
            format!("due in {} ({})", in_text(at, now), due.why)
        }
        Reason::RenewBefore | Reason::LifetimeFraction | Reason::AriWindow => {
            format!("due now ({})", due.why)
        }
        _ => format!("due now: {}", due.why),
    };
    if failure.is_some() {
        summary.push_str("; the last attempt failed");
    }
    Decision {
        at,
        reason: due.reason,
        summary,
    }
}

fn certificate_due(input: &CertInput, now: SystemTime) -> Due {
    let now_because = |reason: Reason, why: String, not_after: Option<SystemTime>| Due {
        at: now,
        reason,
        not_after,
        why,
    };
    let live = match input.live {
        Err(e) => {
            let reason = Reason::Unreadable(e.clone());
            return now_because(reason.clone(), reason.to_string(), None);
        }
        Ok(None) => {
            return now_because(
                Reason::NoCertificate,
                Reason::NoCertificate.to_string(),
                None,
            )
        }
        Ok(Some(live)) => live,
    };
    let not_after = live.facts.not_after;
    if !live.key_matches {
        return now_because(
            Reason::KeyMismatch,
            Reason::KeyMismatch.to_string(),
            Some(not_after),
        );
    }
    if !live.facts.names_match(&input.spec.domains) {
        let why = format!(
            "the names changed (certificate has {}, spec asks for {})",
            live.facts.dns_names.join(", "),
            input.spec.domains.join(", ")
        );
        return now_because(Reason::NamesChanged, why, Some(not_after));
    }

    let (rule_at, rule_reason, rule_why) = match input.spec.renew_before {
        Some(before) => {
            let lifetime = live.facts.lifetime();
            let (before, why) = match renew_before_cap(before, lifetime) {
                Some(capped) => (
                    capped,
                    format!(
                        "{} before expiry: renew_before {} capped at half of the {} lifetime",
                        format_in(capped),
                        format_in(before),
                        format_in(lifetime)
                    ),
                ),
                None => (before, format!("{} before expiry", format_in(before))),
            };
            (
                not_after.checked_sub(before).unwrap_or(UNIX_EPOCH),
                Reason::RenewBefore,
                why,
            )
        }
        None => {
            let lifetime = live.facts.lifetime();
            let (left, why) = if lifetime <= SHORT_LIFETIME {
                (lifetime / 2, "half of the lifetime left")
            } else {
                (lifetime / 3, "a third of the lifetime left")
            };
            (
                not_after.checked_sub(left).unwrap_or(UNIX_EPOCH),
                Reason::LifetimeFraction,
                why.to_string(),
            )
        }
    };
    let window = not_after.duration_since(rule_at).unwrap_or_default();
    let jittered = rule_at + input.jitter.min(window / JITTER_SHARE_DIVISOR);

    let ari = input.ari.filter(|w| w.chosen < not_after);
    match ari {
        Some(w) if input.spec.renew_before.is_none() || w.chosen <= jittered => {
            // A CA whose window has always passed (every new certificate "renew now") must not make a
            // loop of renewals: at most one ARI renewal per ARI_MIN_GAP.
            let floor = input.history.last_success.map(|t| t + ARI_MIN_GAP);
            match floor {
                Some(floor) if w.chosen < floor && floor < not_after => Due {
                    at: floor,
                    reason: Reason::AriWindow,
                    not_after: Some(not_after),
                    why: format!(
                        "in the CA's renewal window, but not sooner than {} after the last renewal",
                        humantime::format_duration(ARI_MIN_GAP)
                    ),
                },
                _ => Due {
                    at: w.chosen,
                    reason: Reason::AriWindow,
                    not_after: Some(not_after),
                    why: "in the CA's renewal window".to_string(),
                },
            }
        }
        _ => Due {
            at: jittered,
            reason: rule_reason,
            not_after: Some(not_after),
            why: rule_why,
        },
    }
}

/// `renew_before` as used for a certificate of `lifetime`: a value that does not leave the certificate at
/// least half of its lifetime (a 30d `renew_before` with 6-day certificates, 100d with 90-day ones) would
/// make every new certificate due the moment it is issued, so it is capped at half the lifetime. Returns
/// the capped value when the cap applies.
pub fn renew_before_cap(renew_before: Duration, lifetime: Duration) -> Option<Duration> {
    let half = lifetime / 2;
    (renew_before > half).then_some(half)
}

struct Retry {
    at: SystemTime,
    reason: Reason,
    /// The CA's Retry-After was later than notAfter − 1 h, so this try comes earlier than it asked.
    before_retry_after: Option<SystemTime>,
}

fn retry_moment(
    failure: &Failure,
    failures: u32,
    not_after: Option<SystemTime>,
    now: SystemTime,
) -> Retry {
    // A failure "in the future" (the clock was set back) counts as happening now.
    let failed_at = failure.at.min(now);
    let time_left = not_after
        .and_then(|na| na.duration_since(failed_at).ok())
        .filter(|left| !left.is_zero());
    let own = match failure.kind {
        FailureKind::Permanent => Retry {
            at: failed_at + near_expiry_cap(PERMANENT_WAIT, time_left),
            reason: Reason::PermanentFailure,
            before_retry_after: None,
        },
        FailureKind::Transient | FailureKind::RateLimited => Retry {
            at: failed_at + backoff(failures, time_left),
            reason: Reason::Backoff { failures },
            before_retry_after: None,
        },
    };
    let asked = match failure.retry_after {
        Some(asked) if asked > own.at && failure.kind != FailureKind::Permanent => asked,
        _ => return own,
    };
    // Honour the CA's Retry-After, unless it lands in the last hour before notAfter (or later): then one
    // try at notAfter − 1 h, when that is still after the failure. If that try is refused again, its
    // failure time is past that point and the CA's next Retry-After is honoured as it is.
    let last_chance = not_after.and_then(|na| na.checked_sub(RETRY_AFTER_EXPIRY_MARGIN));
    match last_chance {
        Some(last) if asked > last && last > failed_at => Retry {
            at: last.max(own.at),
            reason: Reason::RetryAfter,
            before_retry_after: Some(asked),
        },
        _ => Retry {
            at: asked,
            reason: Reason::RetryAfter,
            before_retry_after: None,
        },
    }
}

fn failing_summary(
    retry: &Retry,
    failure: &Failure,
    failures: u32,
    at: SystemTime,
    now: SystemTime,
) -> String {
    let when = if at > now {
        format!("retry in {}", in_text(at, now))
    } else {
        "retrying now".to_string()
    };
    let state = match failure.kind {
        FailureKind::Permanent => {
            return format!("failing permanently: waiting for a configuration change (or {when})")
        }
        FailureKind::RateLimited => format!("rate limited ({})", times(failures)),
        FailureKind::Transient => format!("failing ({})", times(failures)),
    };
    match (&retry.reason, retry.before_retry_after) {
        (Reason::RetryAfter, Some(asked)) => format!(
            "{state}: {when}, before the CA's Retry-After (in {}) because the certificate expires soon",
            in_text(asked, now)
        ),
        (Reason::RetryAfter, None) => format!("{state}: {when}, as the CA asked"),
        _ => format!("{state}: {when}"),
    }
}

fn times(n: u32) -> String {
    match n {
        1 => "once".to_string(),
        n => format!("{n} times"),
    }
}

fn in_text(at: SystemTime, now: SystemTime) -> String {
    format_in(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::CertFacts;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86400);

    /// Day `d` after the certificate's notBefore.
    fn day(d: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000) + DAY * d as u32
    }

    fn spec(renew_before: Option<Duration>) -> CertSpec {
        CertSpec::for_test("web", "a.example.test", renew_before)
    }

    fn cert(
        lifetime: Duration,
        names: &[&str],
        key_matches: bool,
    ) -> Result<Option<LiveCert>, LiveError> {
        Ok(Some(LiveCert {
            facts: CertFacts {
                serial: "01".into(),
                not_before: day(0),
                not_after: day(0) + lifetime,
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

    fn days90() -> Result<Option<LiveCert>, LiveError> {
        cert(DAY * 90, &["a.example.test"], true)
    }

    fn bad_pem() -> LiveError {
        LiveError::BadCertificate {
            path: "/var/lib/renewd/live/web/cert.pem".into(),
            reason: "bad PEM".into(),
        }
    }

    struct Case {
        spec: CertSpec,
        live: Result<Option<LiveCert>, LiveError>,
        ari: Option<AriWindow>,
        history: History,
        jitter: Duration,
    }

    impl Case {
        fn new(renew_before: Option<Duration>, live: Result<Option<LiveCert>, LiveError>) -> Self {
            Case {
                spec: spec(renew_before),
                live,
                ari: None,
                history: History::default(),
                jitter: Duration::ZERO,
            }
        }
        fn failed(mut self, n: u32, at: SystemTime, kind: FailureKind) -> Self {
            self.history.consecutive_failures = n;
            self.history.last_failure = Some(Failure {
                at,
                kind,
                retry_after: None,
                message: "boom".into(),
            });
            self
        }
        fn retry_after(mut self, t: SystemTime) -> Self {
            self.history.last_failure.as_mut().unwrap().retry_after = Some(t);
            self
        }
        fn ari(mut self, chosen: SystemTime) -> Self {
            self.ari = Some(AriWindow {
                start: chosen - HOUR,
                end: chosen + HOUR,
                chosen,
                refetch_at: chosen,
            });
            self
        }
        fn decide(&self, now: SystemTime) -> Decision {
            decide(
                &CertInput {
                    spec: &self.spec,
                    live: &self.live,
                    ari: self.ari.as_ref(),
                    history: &self.history,
                    jitter: self.jitter,
                },
                now,
            )
        }
    }

    #[test]
    fn renew_before() {
        let d = Case::new(Some(DAY * 30), days90()).decide(day(10));
        assert_eq!(d.at, day(60));
        assert_eq!(d.reason, Reason::RenewBefore);
        assert_eq!(d.summary, "due in 50d (30d before expiry)");
        let d = Case::new(Some(DAY * 30), days90()).decide(day(61));
        assert_eq!(d.at, day(61), "overdue is due now, not in the past");
        assert_eq!(d.summary, "due now (30d before expiry)");
    }

    #[test]
    fn a_third_of_the_lifetime() {
        let d = Case::new(None, days90()).decide(day(1));
        assert_eq!(d.at, day(60));
        assert_eq!(d.reason, Reason::LifetimeFraction);
        assert_eq!(d.summary, "due in 59d (a third of the lifetime left)");
        assert!(d.is_due(day(60)) && !d.is_due(day(60) - MIN));
    }

    #[test]
    fn lifetimes_of_ten_days_or_less_renew_at_half() {
        let six = cert(DAY * 6, &["a.example.test"], true);
        let d = Case::new(None, six).decide(day(1));
        assert_eq!((d.at, d.reason.clone()), (day(3), Reason::LifetimeFraction));
        assert_eq!(d.summary, "due in 2d (half of the lifetime left)");
        let ten = cert(DAY * 10, &["a.example.test"], true);
        assert_eq!(Case::new(None, ten).decide(day(1)).at, day(5));
        let eleven = cert(DAY * 11 + HOUR * 6, &["a.example.test"], true);
        // A third of 11 d 6 h is 3 d 18 h.
        assert_eq!(
            Case::new(None, eleven).decide(day(1)).at,
            day(7) + HOUR * 12
        );
    }

    #[test]
    fn an_earlier_ari_window_wins() {
        // renew_before says day 60; the CA's window (moved earlier, e.g. ahead of a revocation) says day 20.
        let c = Case::new(Some(DAY * 30), days90()).ari(day(20));
        let d = c.decide(day(1));
        assert_eq!((d.at, d.reason.clone()), (day(20), Reason::AriWindow));
        assert_eq!(d.summary, "due in 19d (in the CA's renewal window)");
        // Without renew_before the window replaces the lifetime rule, earlier or later.
        assert_eq!(
            Case::new(None, days90()).ari(day(20)).decide(day(1)).at,
            day(20)
        );
        assert_eq!(
            Case::new(None, days90()).ari(day(65)).decide(day(1)).at,
            day(65)
        );
        // A window that is already open is due now.
        let d = Case::new(None, days90()).ari(day(20)).decide(day(25));
        assert_eq!((d.at, d.reason), (day(25), Reason::AriWindow));
    }

    #[test]
    fn a_later_ari_window_does_not_delay_past_renew_before() {
        let d = Case::new(Some(DAY * 30), days90())
            .ari(day(70))
            .decide(day(1));
        assert_eq!((d.at, d.reason), (day(60), Reason::RenewBefore));
    }

    #[test]
    fn a_window_that_always_says_now_renews_at_most_once_an_hour() {
        let mut c = Case::new(None, days90()).ari(day(0));
        let d = c.decide(day(1));
        assert_eq!((d.at, d.reason.clone()), (day(1), Reason::AriWindow));
        c.history.succeeded(day(1));
        let d = c.decide(day(1));
        assert_eq!((d.at, d.reason), (day(1) + ARI_MIN_GAP, Reason::AriWindow));
        // An earlier renewal does not hold back a window that opens later.
        c.history.succeeded(day(0));
        c = c.ari(day(20));
        assert_eq!(c.decide(day(1)).at, day(20));
    }

    #[test]
    fn an_ari_moment_after_not_after_is_ignored() {
        let d = Case::new(None, days90()).ari(day(95)).decide(day(1));
        assert_eq!((d.at, d.reason), (day(60), Reason::LifetimeFraction));
    }

    #[test]
    fn jitter_is_added_and_bounded() {
        let mut c = Case::new(None, days90());
        c.jitter = 17 * MIN;
        assert_eq!(c.decide(day(1)).at, day(60) + 17 * MIN);
        // Never more than a tenth of the time left at the due moment: renew_before 1 h → at most 6 min.
        let mut c = Case::new(Some(HOUR), days90());
        c.jitter = MAX_JITTER;
        assert_eq!(c.decide(day(1)).at, day(90) - HOUR + 6 * MIN);
        // Even an absurd jitter stays before notAfter.
        c.jitter = DAY * 365;
        assert!(c.decide(day(1)).at < day(90));
        // ARI's moment is random already: no jitter on it.
        let mut c = Case::new(None, days90()).ari(day(20));
        c.jitter = 17 * MIN;
        assert_eq!(c.decide(day(1)).at, day(20));
    }

    #[test]
    fn missing_unreadable_mismatched_or_renamed_is_due_now_without_jitter() {
        let now = day(1);
        let cases = [
            (Ok(None), Reason::NoCertificate),
            (Err(bad_pem()), Reason::Unreadable(bad_pem())),
            (
                cert(DAY * 90, &["a.example.test"], false),
                Reason::KeyMismatch,
            ),
            (
                cert(DAY * 90, &["b.example.test"], true),
                Reason::NamesChanged,
            ),
        ];
        for (live, reason) in cases {
            let mut c = Case::new(Some(DAY * 30), live);
            c.jitter = MAX_JITTER;
            let d = c.decide(now);
            assert_eq!((d.at, &d.reason), (now, &reason));
            assert!(d.summary.starts_with("due now: "), "{}", d.summary);
        }
        let d = Case::new(None, cert(DAY * 90, &["b.example.test"], true)).decide(now);
        assert_eq!(
            d.summary,
            "due now: the names changed (certificate has b.example.test, spec asks for a.example.test)"
        );
    }

    #[test]
    fn a_due_certificate_that_failed_waits_for_the_backoff() {
        let now = day(61);
        for (n, wait) in [(1, 5 * MIN), (2, 10 * MIN), (3, 20 * MIN), (9, 6 * HOUR)] {
            let failed = now - MIN;
            let d = Case::new(None, days90())
                .failed(n, failed, FailureKind::Transient)
                .decide(now);
            assert_eq!(d.at, failed + wait, "after {n} failures");
            assert_eq!(d.reason, Reason::Backoff { failures: n });
        }
        let d = Case::new(None, days90())
            .failed(3, now - 5 * MIN, FailureKind::Transient)
            .decide(now);
        assert_eq!(d.summary, "failing (3 times): retry in 15m");
        // The wait is over: now.
        let d = Case::new(None, days90())
            .failed(1, now - HOUR, FailureKind::Transient)
            .decide(now);
        assert_eq!(d.at, now);
        assert_eq!(d.summary, "failing (once): retrying now");
        // A missing certificate backs off the same way.
        let d = Case::new(None, Ok(None))
            .failed(2, now, FailureKind::Transient)
            .decide(now);
        assert_eq!(
            (d.at, d.reason),
            (now + 10 * MIN, Reason::Backoff { failures: 2 })
        );
    }

    #[test]
    fn a_failure_does_not_bring_a_certificate_forward() {
        // `renewd renew --force` failed on day 10; the certificate is due on day 60 all the same.
        let d = Case::new(None, days90())
            .failed(1, day(10), FailureKind::Transient)
            .decide(day(10));
        assert_eq!(
            (d.at, d.reason.clone()),
            (day(60), Reason::LifetimeFraction)
        );
        assert!(
            d.summary.ends_with("; the last attempt failed"),
            "{}",
            d.summary
        );
        // A success since then: the old failure no longer counts.
        let mut c = Case::new(None, Ok(None)).failed(4, day(10), FailureKind::Permanent);
        c.history.succeeded(day(11));
        assert_eq!(c.decide(day(12)).at, day(12));
    }

    #[test]
    fn near_expiry_retries_within_half_the_time_left() {
        // Expiring in 2 h after 10 failures: the next try within 1 h, not 6 h.
        let now = day(90) - 2 * HOUR;
        let d = Case::new(None, days90())
            .failed(10, now, FailureKind::Transient)
            .decide(now);
        assert_eq!(d.at, now + HOUR);
        assert_eq!(d.summary, "failing (10 times): retry in 1h");
        // Already expired: no deadline left to protect, the plain 6 h backoff.
        let now = day(91);
        let d = Case::new(None, days90())
            .failed(10, now, FailureKind::Transient)
            .decide(now);
        assert_eq!(d.at, now + 6 * HOUR);
    }

    #[test]
    fn retry_after_is_honoured() {
        let now = day(61);
        let d = Case::new(None, days90())
            .failed(1, now, FailureKind::RateLimited)
            .retry_after(now + 3 * HOUR)
            .decide(now);
        assert_eq!(
            (d.at, d.reason.clone()),
            (now + 3 * HOUR, Reason::RetryAfter)
        );
        assert_eq!(
            d.summary,
            "rate limited (once): retry in 3h, as the CA asked"
        );
        // Also when later than our own 6 h cap.
        let d = Case::new(None, days90())
            .failed(9, now, FailureKind::RateLimited)
            .retry_after(now + 2 * DAY)
            .decide(now);
        assert_eq!(d.at, now + 2 * DAY);
        // Our own backoff still applies when it is later than the CA's moment.
        let d = Case::new(None, days90())
            .failed(3, now, FailureKind::RateLimited)
            .retry_after(now + MIN)
            .decide(now);
        assert_eq!(
            (d.at, d.reason),
            (now + 20 * MIN, Reason::Backoff { failures: 3 })
        );
        // Rate limited without a Retry-After: the plain backoff.
        let d = Case::new(None, days90())
            .failed(2, now, FailureKind::RateLimited)
            .decide(now);
        assert_eq!(d.at, now + 10 * MIN);
        assert_eq!(d.summary, "rate limited (2 times): retry in 10m");
    }

    #[test]
    fn retry_after_past_expiry_still_gets_one_try_an_hour_before_not_after() {
        let now = day(89);
        let c = Case::new(None, days90())
            .failed(2, now, FailureKind::RateLimited)
            .retry_after(day(92));
        let d = c.decide(now);
        assert_eq!(
            (d.at, d.reason.clone()),
            (day(90) - HOUR, Reason::RetryAfter)
        );
        assert_eq!(
            d.summary,
            "rate limited (2 times): retry in 23h, before the CA's Retry-After (in 3d) because the certificate expires soon"
        );
        // That try was refused too: now the CA's moment is honoured as it is.
        let now = day(90) - HOUR;
        let d = Case::new(None, days90())
            .failed(3, now, FailureKind::RateLimited)
            .retry_after(day(92))
            .decide(now);
        assert_eq!(d.at, day(92));
    }

    #[test]
    fn permanent_failures_wait_a_day_and_say_so() {
        let now = day(61);
        let d = Case::new(None, days90())
            .failed(1, now, FailureKind::Permanent)
            .decide(now);
        assert_eq!(
            (d.at, d.reason.clone()),
            (now + DAY, Reason::PermanentFailure)
        );
        assert_eq!(
            d.summary,
            "failing permanently: waiting for a configuration change (or retry in 1d)"
        );
        // Near expiry even a permanent failure is retried within half the time left (the fix may have
        // happened outside renewd, e.g. in named.conf).
        let now = day(90) - 4 * HOUR;
        let d = Case::new(None, days90())
            .failed(1, now, FailureKind::Permanent)
            .decide(now);
        assert_eq!(d.at, now + 2 * HOUR);
        // Clearing the history (a configuration change) makes it due at once.
        let mut c = Case::new(None, days90()).failed(1, now, FailureKind::Permanent);
        c.history = History::default();
        assert_eq!(c.decide(now).at, now);
    }

    #[test]
    fn a_failure_stamped_in_the_future_counts_as_now() {
        // The clock was set back a year after the failure: wait the backoff from now, not from then.
        let now = day(61);
        let d = Case::new(None, days90())
            .failed(1, now + DAY * 365, FailureKind::Transient)
            .decide(now);
        assert_eq!(d.at, now + 5 * MIN);
    }

    #[test]
    fn history_round_trips_through_json() {
        let mut h = History::default();
        h.failed(Failure {
            at: day(1),
            kind: FailureKind::RateLimited,
            retry_after: Some(day(2)),
            message: "slow down".into(),
        });
        h.succeeded(day(3));
        h.failed(Failure {
            at: day(4),
            kind: FailureKind::Permanent,
            retry_after: None,
            message: "no".into(),
        });
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains("\"2027-"), "times are RFC 3339: {json}");
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(back.failing());
        let empty: History = serde_json::from_str("{\"consecutive_failures\":0}").unwrap();
        assert_eq!(empty, History::default());
    }
}
