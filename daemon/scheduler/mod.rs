//! The plan: when each certificate should next be renewed, as a pure function ([`decide`]), with the
//! backoff after failures ([`backoff()`]), the classification of failures ([`classify()`]) and the
//! `STATUS=` text ([`status_line`]).
//!
//! Nothing here does I/O, reads a clock or draws a random number: the event loop (`crate::core`) reads the
//! certificates, picks the ARI moment and the per-certificate jitter, passes `now`, and sleeps until the
//! earliest [`Decision::at`] (see [`deadline`]).

pub mod backoff;
pub mod classify;
pub mod plan;

use std::time::{Duration, SystemTime};

pub use backoff::{
    backoff, near_expiry_cap, BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_MIN_NEAR_EXPIRY, PERMANENT_WAIT,
    RETRY_AFTER_EXPIRY_MARGIN,
};
pub use classify::{classify, problem_kind, PERMANENT_PROBLEMS};
pub use plan::{
    decide, renew_before_cap, AriWindow, CertInput, Decision, Failure, FailureKind, History,
    Reason, MAX_JITTER, SHORT_LIFETIME,
};

/// A duration as people read it in a status line: its two largest units, the second left out when zero:
/// "3d 4h", "2h 5m", "12m 30s", "45s", "30d". Rounded down to the second.
pub fn format_in(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    let (big, small) = if days > 0 {
        ((days, "d"), (hours, "h"))
    } else if hours > 0 {
        ((hours, "h"), (minutes, "m"))
    } else if minutes > 0 {
        ((minutes, "m"), (seconds, "s"))
    } else {
        return format!("{seconds}s");
    };
    if small.0 == 0 {
        format!("{}{}", big.0, big.1)
    } else {
        format!("{}{} {}{}", big.0, big.1, small.0, small.1)
    }
}

/// The `STATUS=` text: "12 certificates, 0 failing, next: gitlab in 3d 4h".
///
/// `decisions` holds (certificate name, its decision, whether its last attempt failed). The next one is the
/// earliest decision (ties by name); "next: gitlab now" when it is due, "next: none" without certificates.
pub fn status_line(decisions: &[(String, Decision, bool)], now: SystemTime) -> String {
    status_line_renewing(decisions, &[], now)
}

/// [`status_line`] for a daemon with renewals in flight: those are named first and left out of "next":
/// "12 certificates, 0 failing, renewing: gitlab, next: web in 3d 4h" (or "renewing: gitlab +2" when three
/// are in flight). With nothing in flight it is exactly [`status_line`].
pub fn status_line_renewing(
    decisions: &[(String, Decision, bool)],
    renewing: &[&str],
    now: SystemTime,
) -> String {
    let count = decisions.len();
    let failing = decisions.iter().filter(|(_, _, failing)| *failing).count();
    let mut line = format!(
        "{count} certificate{}, {failing} failing",
        if count == 1 { "" } else { "s" }
    );
    if let Some(first) = renewing.first() {
        line.push_str(", renewing: ");
        line.push_str(first);
        if renewing.len() > 1 {
            line.push_str(&format!(" +{}", renewing.len() - 1));
        }
    }
    let next = decisions
        .iter()
        .filter(|(name, _, _)| !renewing.contains(&name.as_str()))
        .min_by(|a, b| (a.1.at, &a.0).cmp(&(b.1.at, &b.0)));
    match next {
        None => line.push_str(", next: none"),
        Some((name, decision, _)) => match decision.at.duration_since(now) {
            Ok(d) if !d.is_zero() => line.push_str(&format!(", next: {name} in {}", format_in(d))),
            _ => line.push_str(&format!(", next: {name} now")),
        },
    }
    line
}

/// The tokio instant to sleep until for a decision due at `at`, given `now` read from both clocks at
/// (nearly) the same moment. The plan speaks wall-clock time (certificates expire by it), tokio sleeps on
/// the monotonic clock: replan after every wakeup so a step of the wall clock is corrected then.
pub fn deadline(
    at: SystemTime,
    now: SystemTime,
    now_instant: tokio::time::Instant,
) -> tokio::time::Instant {
    let wait = at.duration_since(now).unwrap_or_default();
    now_instant
        .checked_add(wait)
        // Farther than the monotonic clock can count: a year is as good as forever for a replan.
        .unwrap_or_else(|| now_instant + Duration::from_secs(365 * 86400))
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

    fn decision(in_: Duration) -> Decision {
        Decision {
            at: now() + in_,
            reason: Reason::LifetimeFraction,
            summary: String::new(),
        }
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        let cases = [
            (3 * DAY + 4 * HOUR + 59 * MIN, "3d 4h"),
            (30 * DAY, "30d"),
            (2 * HOUR + 5 * MIN + 7 * Duration::from_secs(1), "2h 5m"),
            (HOUR, "1h"),
            (20 * MIN, "20m"),
            (12 * MIN + Duration::from_secs(30), "12m 30s"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_millis(999), "0s"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_in(d), want, "{d:?}");
        }
    }

    #[test]
    fn the_status_line_of_issue_4() {
        let mut ds: Vec<(String, Decision, bool)> = (0..11)
            .map(|i| (format!("web{i:02}"), decision(10 * DAY + i * HOUR), false))
            .collect();
        ds.push(("gitlab".into(), decision(3 * DAY + 4 * HOUR), false));
        assert_eq!(
            status_line(&ds, now()),
            "12 certificates, 0 failing, next: gitlab in 3d 4h"
        );
        ds[0].2 = true;
        ds[0].1 = decision(Duration::ZERO);
        assert_eq!(
            status_line(&ds, now()),
            "12 certificates, 1 failing, next: web00 now"
        );
    }

    #[test]
    fn one_certificate_and_none() {
        let one = vec![("gitlab".to_string(), decision(45 * MIN), false)];
        assert_eq!(
            status_line(&one, now()),
            "1 certificate, 0 failing, next: gitlab in 45m"
        );
        assert_eq!(
            status_line(&[], now()),
            "0 certificates, 0 failing, next: none"
        );
    }

    #[test]
    fn renewals_in_flight_are_named_and_not_next() {
        let ds = vec![
            ("gitlab".to_string(), decision(Duration::ZERO), false),
            ("mail".to_string(), decision(Duration::ZERO), true),
            ("web".to_string(), decision(3 * DAY + 4 * HOUR), false),
        ];
        assert_eq!(
            status_line_renewing(&ds, &["gitlab"], now()),
            "3 certificates, 1 failing, renewing: gitlab, next: mail now"
        );
        assert_eq!(
            status_line_renewing(&ds, &["gitlab", "mail"], now()),
            "3 certificates, 1 failing, renewing: gitlab +1, next: web in 3d 4h"
        );
        assert_eq!(
            status_line_renewing(&ds, &["gitlab", "mail", "web"], now()),
            "3 certificates, 1 failing, renewing: gitlab +2, next: none"
        );
        assert_eq!(
            status_line_renewing(&ds, &[], now()),
            status_line(&ds, now())
        );
    }

    #[test]
    fn deadlines_map_wall_clock_to_tokio_time() {
        let base = tokio::time::Instant::now();
        assert_eq!(deadline(now() + 20 * MIN, now(), base), base + 20 * MIN);
        // Overdue: at once, not in the past.
        assert_eq!(deadline(now() - HOUR, now(), base), base);
    }

    /// How the scheduler task uses a decision: sleep until its deadline, then act. (Real time, briefly; the
    /// paused-clock version needs tokio's `test-util` feature.)
    #[tokio::test]
    async fn a_sleep_until_the_deadline_wakes_when_the_decision_is_due() {
        let wall = SystemTime::now();
        let mono = tokio::time::Instant::now();
        let d = decision(Duration::ZERO);
        let d = Decision {
            at: wall + Duration::from_millis(30),
            ..d
        };
        tokio::time::sleep_until(deadline(d.at, wall, mono)).await;
        assert!(mono.elapsed() >= Duration::from_millis(30));
        assert!(d.is_due(wall + mono.elapsed()));
    }
}

#[cfg(test)]
mod paused_clock_tests;
