//! A [`Decision`]'s deadline under tokio's paused clock: sleep until it, and wake exactly when it is due —
//! no real waiting. (The whole loop under the paused clock: `core/tests.rs`.)

use std::time::{Duration, SystemTime};

use tokio::time::{advance, sleep_until, Instant};

use super::*;
use crate::certs::CertFacts;
use crate::config::CertSpec;
use crate::live::{LiveCert, LiveError};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

fn spec(renew_before: Option<Duration>) -> CertSpec {
    CertSpec::for_test("gitlab", "gitlab.example.test", renew_before)
}

fn live(not_before: SystemTime, lifetime: Duration) -> Result<Option<LiveCert>, LiveError> {
    Ok(Some(LiveCert {
        facts: CertFacts {
            serial: "01".into(),
            not_before,
            not_after: not_before + lifetime,
            dns_names: vec!["gitlab.example.test".into()],
            public_key: vec![],
            authority_key_id: None,
            raw_serial: vec![1],
            subject: String::new(),
            issuer: String::new(),
        },
        key_matches: true,
    }))
}

/// The wall clock of these tests: it starts at a fixed moment and moves with tokio's paused clock.
struct Clock {
    wall0: SystemTime,
    mono0: Instant,
}

impl Clock {
    fn start() -> Self {
        Clock {
            wall0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            mono0: Instant::now(),
        }
    }
    fn now(&self) -> SystemTime {
        self.wall0 + self.mono0.elapsed()
    }
}

/// Sleep until `decision` is due, with the clock advanced by `step` at a time; returns how far the clock
/// went before the sleep finished.
async fn time_until_woken(clock: &Clock, decision: &Decision, step: Duration) -> Duration {
    let start = Instant::now();
    let sleep = sleep_until(deadline(decision.at, clock.now(), Instant::now()));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            _ = &mut sleep => return start.elapsed(),
            _ = advance(step) => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn renew_before_wakes_the_scheduler_on_the_day() {
    let clock = Clock::start();
    // A 90-day certificate issued 10 days ago, renew_before 30d: due in 50 days.
    let spec = spec(Some(30 * DAY));
    let live = live(clock.now() - 10 * DAY, 90 * DAY);
    let history = History::default();
    let input = CertInput {
        spec: &spec,
        live: &live,
        ari: None,
        history: &history,
        jitter: Duration::ZERO,
    };
    let d = decide(&input, clock.now());
    assert_eq!(d.summary, "due in 50d (30d before expiry)");
    let slept = time_until_woken(&clock, &d, HOUR).await;
    assert_eq!(slept, 50 * DAY);
    assert!(decide(&input, clock.now()).is_due(clock.now()));
}

#[tokio::test(start_paused = true)]
async fn backoff_sleeps_grow_and_stop_at_the_cap() {
    let clock = Clock::start();
    let spec = spec(None);
    let live = Ok(None);
    let mut history = History::default();
    let mut slept = Vec::new();
    for _ in 0..9 {
        history.failed(Failure {
            at: clock.now(),
            kind: FailureKind::Transient,
            retry_after: None,
            message: "no answer".into(),
        });
        let input = CertInput {
            spec: &spec,
            live: &live,
            ari: None,
            history: &history,
            jitter: Duration::ZERO,
        };
        let d = decide(&input, clock.now());
        slept.push(time_until_woken(&clock, &d, MIN).await / 60);
    }
    let minutes: Vec<u64> = slept.iter().map(|d| d.as_secs()).collect();
    assert_eq!(minutes, vec![5, 10, 20, 40, 80, 160, 320, 360, 360]);
}

#[tokio::test(start_paused = true)]
async fn near_expiry_and_retry_after() {
    let clock = Clock::start();
    let spec = spec(None);
    // Expires in 2 h; 10 failures behind it: the next try within 1 h.
    let live = live(clock.now() - 90 * DAY + 2 * HOUR, 90 * DAY);
    let mut history = History {
        consecutive_failures: 9,
        ..History::default()
    };
    history.failed(Failure {
        at: clock.now(),
        kind: FailureKind::Transient,
        retry_after: None,
        message: "propagation timeout".into(),
    });
    let input = CertInput {
        spec: &spec,
        live: &live,
        ari: None,
        history: &history,
        jitter: Duration::ZERO,
    };
    let d = decide(&input, clock.now());
    assert_eq!(time_until_woken(&clock, &d, MIN).await, HOUR);

    // The CA says 429, Retry-After in 20 min: honoured.
    let mut history = History::default();
    history.failed(Failure {
        at: clock.now(),
        kind: FailureKind::RateLimited,
        retry_after: Some(clock.now() + 20 * MIN),
        message: "rateLimited".into(),
    });
    let input = CertInput {
        history: &history,
        ..input
    };
    let d = decide(&input, clock.now());
    assert_eq!(d.reason, Reason::RetryAfter);
    assert_eq!(
        time_until_woken(&clock, &d, Duration::from_secs(1)).await,
        20 * MIN
    );
}
