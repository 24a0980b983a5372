//! The CA's renewal windows (ARI, RFC 9773) in the loop: for every certificate with a live certificate the
//! loop keeps the CA's suggested window and a moment picked uniformly at random inside it
//! ([`next_ari_window`]). Windows are fetched by tasks beside the loop (at most a few at once, each
//! bounded) that report back as events, so a slow CA never delays the loop or its watchdog ping. A window
//! is fetched when there is none yet, again when its Retry-After (clamped to [[`ARI_REFETCH_MIN`],
//! [`ARI_REFETCH_MAX`]]) has passed, and anew for every new certificate. A changed window gets a new random
//! moment, so a window moved earlier (ahead of a mass revocation) is followed at once. A failed fetch is
//! retried after [`ARI_ERROR_RETRY`], and the certificate keeps the window it had (or, without one, the
//! non-ARI rule). Failures are logged once per account ([`AriFailures`]).
//!
//! `renewd renew` goes through the same code with one difference RFC 9773 §4.2 makes: a client that cannot
//! schedule itself for the chosen moment (a run from cron does not know when it runs next) renews once the
//! window has opened, so its moment is the window's start ([`window_start`]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::cert::{Ari, Cert};
use crate::acme::RenewalWindow;
use crate::scheduler::AriWindow;

/// renewalInfo requests in flight at once in the daemon (separate from the renewal workers).
pub const ARI_FETCHES: usize = 4;
/// One renewalInfo request of the daemon (including the account's first contact with the CA) may take this long.
pub const ARI_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `renewd renew` waits for the renewal window of one certificate before it keeps to the
/// lifetime rule.
pub const ARI_CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// The CA's Retry-After for renewalInfo is clamped to [ARI_REFETCH_MIN, ARI_REFETCH_MAX].
pub const ARI_REFETCH_MIN: Duration = Duration::from_secs(60);
pub const ARI_REFETCH_MAX: Duration = Duration::from_secs(24 * 3600);
/// After a failed renewalInfo request, ask again after this long.
pub const ARI_ERROR_RETRY: Duration = Duration::from_secs(3600);
/// A CA without renewalInfo is asked again (a free check of its cached directory) after this long.
pub const ARI_UNSUPPORTED_RETRY: Duration = Duration::from_secs(24 * 3600);

/// A finished renewalInfo request.
#[derive(Debug)]
pub struct AriDone {
    pub name: String,
    /// The raw serial of the certificate it was asked for.
    pub serial: Vec<u8>,
    /// (start, end, Retry-After); None: the CA offers no renewalInfo.
    pub result: Result<Option<RenewalWindow>, String>,
}

/// The window to keep after the CA answered (start, end, Retry-After) at `now`: the moment picked in
/// `old` stays when the window did not change; a new or changed window gets a new moment from `pick`
/// (uniform in [start, end] in the daemon). So a window moved earlier is followed at once: its moment
/// lies inside the new window, not at the old one. The next request is due after the Retry-After,
/// clamped to [[`ARI_REFETCH_MIN`], [`ARI_REFETCH_MAX`]].
pub fn next_ari_window(
    old: Option<&AriWindow>,
    (start, end, retry_after): (SystemTime, SystemTime, Duration),
    now: SystemTime,
    pick: impl FnOnce(SystemTime, SystemTime) -> SystemTime,
) -> AriWindow {
    let refetch_at = now + retry_after.clamp(ARI_REFETCH_MIN, ARI_REFETCH_MAX);
    let chosen = match old {
        Some(w) if w.start == start && w.end == end => w.chosen,
        _ => pick(start, end),
    };
    AriWindow {
        start,
        end,
        chosen,
        refetch_at,
    }
}

/// The window's start: the moment of a client that cannot wake itself at a chosen moment (`renewd renew`
/// from cron; RFC 9773 §4.2 step 5 with the next wake-up unknown).
pub fn window_start(start: SystemTime, _end: SystemTime) -> SystemTime {
    start
}

/// A moment uniformly at random in [start, end] (to the millisecond).
pub fn random_moment(start: SystemTime, end: SystemTime) -> SystemTime {
    let span = end.duration_since(start).unwrap_or_default().as_millis() as u64;
    start + Duration::from_millis(rand::random_range(0..=span))
}

/// renewalInfo failures per ACME account. When a CA is unreachable every certificate of the account fails
/// the same way: the first failure is logged with its reason, the rest are counted and summed up once
/// an hour, and the recovery is logged once (not one warning per certificate per hour).
#[derive(Debug, Default)]
pub struct AriFailures(BTreeMap<String, AriOutage>);

#[derive(Debug)]
struct AriOutage {
    /// Failures since the last line about this account.
    unreported: usize,
    /// Failures since the outage began.
    total: usize,
    since: SystemTime,
    reported_at: SystemTime,
    last_error: String,
}

/// Between two summaries of a continuing outage.
const ARI_FAILURE_SUMMARY: Duration = Duration::from_secs(3600);

impl AriFailures {
    /// A failed request for `account`: the line to log now, if any.
    pub fn failed(
        &mut self,
        account: &str,
        cert: &str,
        error: &str,
        now: SystemTime,
    ) -> Option<String> {
        match self.0.get_mut(account) {
            None => {
                self.0.insert(
                    account.to_string(),
                    AriOutage {
                        unreported: 0,
                        total: 1,
                        since: now,
                        reported_at: now,
                        last_error: error.to_string(),
                    },
                );
                Some(format!(
                    "cannot fetch the CA's renewal window (ARI) for {cert} (account {account}): {error}; asking again in 1h (further failures of this account are summed up hourly)"
                ))
            }
            Some(o) => {
                o.unreported += 1;
                o.total += 1;
                o.last_error = error.to_string();
                let due =
                    now.duration_since(o.reported_at).unwrap_or_default() >= ARI_FAILURE_SUMMARY;
                due.then(|| {
                    let line = format!(
                        "renewal windows (ARI) of account {account} still failing: {} more failure(s) since the last report, {} since {}; last: {}",
                        o.unreported,
                        o.total,
                        humantime::format_rfc3339_seconds(o.since),
                        o.last_error
                    );
                    o.unreported = 0;
                    o.reported_at = now;
                    line
                })
            }
        }
    }

    /// A successful request for `account`: the line to log if it ends an outage.
    pub fn succeeded(&mut self, account: &str) -> Option<String> {
        self.0.remove(account).map(|o| {
            format!(
                "renewal windows (ARI) of account {account} answer again, after {} failure(s) since {}",
                o.total,
                humantime::format_rfc3339_seconds(o.since)
            )
        })
    }
}

/// Record a renewalInfo answer (or failure) for the certificate it was asked for (`cert`, whose spec
/// may have been removed meanwhile: then nothing is recorded). `pick` chooses the moment in a new window.
pub fn apply(
    cert: &mut Cert,
    failures: &mut AriFailures,
    done: AriDone,
    now: SystemTime,
    pick: impl FnOnce(SystemTime, SystemTime) -> SystemTime,
) {
    let account = cert.spec.account.clone();
    match &done.result {
        Ok(_) => {
            if let Some(line) = failures.succeeded(&account) {
                tracing::info!("{line}");
            }
        }
        Err(e) => {
            tracing::debug!(cert_name = %done.name, error = %e, "renewalInfo request failed");
            if let Some(line) = failures.failed(&account, &done.name, e, now) {
                tracing::warn!(cert_name = %done.name, acme_account = %account, "{line}");
            }
        }
    }
    let kept = match std::mem::replace(
        &mut cert.ari,
        Ari::Ask {
            at: SystemTime::UNIX_EPOCH,
        },
    ) {
        Ari::Fetching { kept } => kept,
        _ => None,
    };
    if cert.ari_subject().map(|f| &f.raw_serial) != Some(&done.serial) {
        return; // the certificate changed meanwhile; the new one is asked for
    }
    cert.ari = match done.result {
        Ok(Some(window)) => {
            let old = kept.map(|(_, w)| w);
            let new = next_ari_window(old.as_ref(), window, now, pick);
            if old.as_ref().map(|o| (o.start, o.end)) != Some((new.start, new.end)) {
                let ts = |t| humantime::format_rfc3339_seconds(t);
                tracing::info!(
                    cert_name = %done.name,
                    start = %ts(new.start),
                    end = %ts(new.end),
                    chosen = %ts(new.chosen),
                    moved = old.is_some(),
                    "the CA's renewal window (ARI): renewal planned for {}",
                    ts(new.chosen)
                );
            }
            Ari::Known {
                serial: done.serial,
                window: new,
            }
        }
        Ok(None) => Ari::Ask {
            at: now + ARI_UNSUPPORTED_RETRY,
        },
        Err(_) => match kept {
            Some((serial, mut window)) => {
                window.refetch_at = now + ARI_ERROR_RETRY;
                Ari::Known { serial, window }
            }
            None => Ari::Ask {
                at: now + ARI_ERROR_RETRY,
            },
        },
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86400);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn never(_: SystemTime, _: SystemTime) -> SystemTime {
        panic!("an unchanged window keeps its moment")
    }

    #[test]
    fn an_unreachable_ca_gives_one_ari_warning_per_account_then_hourly_summaries() {
        let mut f = AriFailures::default();
        let t0 = now();
        // 1000 certificates of one account fail within the same minute: one line.
        let first = f
            .failed("ca", "cert0", "connection refused", t0)
            .expect("first failure is logged");
        assert!(
            first.contains("cert0 (account ca): connection refused"),
            "{first}"
        );
        for i in 1..1000 {
            assert_eq!(
                f.failed("ca", &format!("cert{i}"), "connection refused", t0 + MIN),
                None
            );
        }
        // Another account is reported on its own.
        assert!(f.failed("other", "x", "timeout", t0 + MIN).is_some());
        // An hour after the first line: one summary with the counts and the last reason.
        let summary = f
            .failed("ca", "cert0", "connection reset", t0 + HOUR)
            .expect("hourly summary");
        assert!(
            summary.contains("1000 more failure(s) since the last report, 1001 since")
                && summary.ends_with("last: connection reset"),
            "{summary}"
        );
        assert_eq!(
            f.failed("ca", "cert1", "connection reset", t0 + HOUR + MIN),
            None
        );
        // Recovery is said once, with the outage's total; then a new outage is reported again.
        let back = f.succeeded("ca").expect("recovery is logged");
        assert!(
            back.contains("account ca answer again, after 1002 failure(s)"),
            "{back}"
        );
        assert_eq!(f.succeeded("ca"), None);
        assert!(f
            .failed("ca", "cert2", "connection refused", t0 + DAY)
            .is_some());
    }

    #[test]
    fn a_first_window_gets_a_moment_inside_it() {
        let (start, end) = (now() + 10 * DAY, now() + 12 * DAY);
        for _ in 0..100 {
            let w = next_ari_window(None, (start, end, 6 * HOUR), now(), random_moment);
            assert!(w.chosen >= start && w.chosen <= end, "{w:?}");
            assert_eq!(w.refetch_at, now() + 6 * HOUR);
        }
        // A window of one instant.
        let w = next_ari_window(None, (start, start, HOUR), now(), random_moment);
        assert_eq!(w.chosen, start);
    }

    #[test]
    fn an_unchanged_window_keeps_its_moment() {
        let (start, end) = (now() + 10 * DAY, now() + 12 * DAY);
        let old = next_ari_window(None, (start, end, HOUR), now(), |s, _| s + DAY);
        let later = now() + 2 * HOUR;
        let w = next_ari_window(Some(&old), (start, end, 3 * HOUR), later, never);
        assert_eq!(w.chosen, start + DAY);
        assert_eq!(w.refetch_at, later + 3 * HOUR);
    }

    #[test]
    fn a_window_moved_earlier_is_followed_at_once() {
        let old = next_ari_window(
            None,
            (now() + 30 * DAY, now() + 32 * DAY, HOUR),
            now(),
            |_, e| e,
        );
        // Ahead of a mass revocation: the window now ends before the old moment (and started already).
        let (start, end) = (now() - HOUR, now() + HOUR);
        for _ in 0..50 {
            let w = next_ari_window(Some(&old), (start, end, HOUR), now(), random_moment);
            assert!(w.chosen >= start && w.chosen <= end, "{w:?}");
            assert!(w.chosen < old.chosen);
        }
    }

    #[test]
    fn retry_after_is_clamped_between_a_minute_and_a_day() {
        let window = |retry| (now() + DAY, now() + 2 * DAY, retry);
        let w = next_ari_window(None, window(Duration::ZERO), now(), random_moment);
        assert_eq!(w.refetch_at, now() + MIN);
        let w = next_ari_window(None, window(30 * DAY), now(), random_moment);
        assert_eq!(w.refetch_at, now() + DAY);
    }
}
