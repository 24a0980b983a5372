//! How long to wait after a failed renewal: from minutes growing to hours, never so long that the
//! certificate expires before the next try.

use std::time::Duration;

/// The wait after the first failure; it doubles with every further consecutive failure.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5 * 60);

/// The longest wait after a transient failure (reached after the 8th consecutive failure: 5 min, 10, 20,
/// 40, 80, 160, 320, then 6 h). Long enough not to hammer a CA or DNS server that is down for the night,
/// short enough that a problem fixed outside renewd (a DNS delegation, a firewall) is picked up the same day.
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);

/// The shortest wait the near-expiry cap can produce: a certificate about to expire is retried at most
/// once a minute.
pub const BACKOFF_MIN_NEAR_EXPIRY: Duration = Duration::from_secs(60);

/// The wait after a permanent failure (the CA or the DNS server refused the request itself). A change of
/// the configuration resets the history and so ends the wait at once; otherwise renewd tries again after
/// this long, because the fix may be somewhere renewd cannot see (named.conf, the CA's account settings).
pub const PERMANENT_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A Retry-After from the CA is honoured, except that renewd still makes one attempt this long before
/// notAfter if the CA's moment would be later: one refused request costs less than an expired certificate.
pub const RETRY_AFTER_EXPIRY_MARGIN: Duration = Duration::from_secs(3600);

/// The wait after `consecutive_failures` failures in a row (0 → no wait): [`BACKOFF_FIRST`] doubling up to
/// [`BACKOFF_MAX`], then capped by [`near_expiry_cap`].
///
/// `time_left` is the time from the failure to the certificate's notAfter; `None` when there is no
/// deadline to protect (no certificate yet, an unreadable one, or one that has already expired).
pub fn backoff(consecutive_failures: u32, time_left: Option<Duration>) -> Duration {
    if consecutive_failures == 0 {
        return Duration::ZERO;
    }
    // 2^6 × 5 min already exceeds the cap; the `min` keeps the shift far from overflowing.
    let doublings = (consecutive_failures - 1).min(16);
    let grown = BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX);
    near_expiry_cap(grown, time_left)
}

/// Never wait more than half of the time left until notAfter (but at least
/// [`BACKOFF_MIN_NEAR_EXPIRY`]), so the certificate gets several more tries before it expires: with 2 h
/// left the next try comes within 1 h, then within 30 min, and so on. No cap without a deadline
/// (`None`, or nothing left).
pub fn near_expiry_cap(wait: Duration, time_left: Option<Duration>) -> Duration {
    match time_left {
        Some(left) if !left.is_zero() => wait.min((left / 2).max(BACKOFF_MIN_NEAR_EXPIRY)),
        _ => wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn grows_from_five_minutes_doubling() {
        let got: Vec<u64> = (1..=8).map(|n| backoff(n, None).as_secs() / 60).collect();
        assert_eq!(got, vec![5, 10, 20, 40, 80, 160, 320, 360]);
    }

    #[test]
    fn no_failure_no_wait() {
        assert_eq!(backoff(0, None), Duration::ZERO);
        assert_eq!(backoff(0, Some(HOUR)), Duration::ZERO);
    }

    #[test]
    fn capped_at_six_hours_however_many_failures() {
        for n in [8, 9, 17, 33, 100, u32::MAX] {
            assert_eq!(backoff(n, None), 6 * HOUR, "after {n} failures");
        }
    }

    #[test]
    fn near_expiry_caps_at_half_the_time_left() {
        // Expiring in 2 h after 10 failures: the 6 h backoff shrinks to 1 h.
        assert_eq!(backoff(10, Some(2 * HOUR)), HOUR);
        // Plenty of time left: the cap does not bite.
        assert_eq!(backoff(3, Some(30 * 24 * HOUR)), 20 * MIN);
        // The floor: never more often than once a minute.
        assert_eq!(backoff(10, Some(30 * Duration::from_secs(1))), MIN);
        // Already expired (or nothing to protect): the plain backoff.
        assert_eq!(backoff(10, Some(Duration::ZERO)), 6 * HOUR);
    }
}
