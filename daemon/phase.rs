//! The phases of one renewal attempt, so that every error and every deadline says where it happened
//! ("… answering the dns-01 challenge: …", "no progress within 10m while waiting for the CA's validation").

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a renewal attempt (or a request of the daemon outside one) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Before anything was sent anywhere.
    #[default]
    Starting,
    /// Restoring the stored account: the CA's directory is fetched.
    LoadingAccount,
    /// Registering a new account (with EAB when configured).
    Registering,
    /// Asking the CA for a certificate's renewal window (ARI).
    RenewalInfo,
    PlacingOrder,
    FetchingAuthorizations,
    /// Zone discovery for every name (CNAME chain, SOA walk).
    FindingZones,
    /// dns-persist-01: asking every authoritative server whether the standing record is there.
    CheckingPersistRecord,
    /// Journal, then the RFC 2136 UPDATE to the primary.
    PublishingTxt,
    /// Polling every authoritative server until it serves every value.
    WaitingForPropagation,
    AnsweringChallenge,
    /// Polling the authorizations and the order until the CA has validated every name.
    WaitingForValidation,
    GeneratingKey,
    Finalizing,
    DownloadingCertificate,
    /// `cluster:` writing the new version into etcd.
    Publishing,
    /// Writing the new version into the state directory.
    Installing,
    /// Deploy targets, config tests, reloads, hooks.
    Deploying,
    /// `renewd revoke`.
    Revoking,
    /// `renewd account update|rollover|deactivate`.
    UpdatingAccount,
    /// `renewd renew --dry-run`: giving up the validated authorizations.
    DeactivatingAuthorizations,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::LoadingAccount => "loading the account (fetching the CA's directory)",
            Phase::Registering => "registering the account",
            Phase::RenewalInfo => "asking for the renewal window (ARI)",
            Phase::PlacingOrder => "placing the order",
            Phase::FetchingAuthorizations => "fetching the authorizations",
            Phase::FindingZones => "finding the zones of the challenge records",
            Phase::CheckingPersistRecord => "checking the dns-persist-01 records",
            Phase::PublishingTxt => "publishing the TXT records",
            Phase::WaitingForPropagation => {
                "waiting until every authoritative server serves the TXT records"
            }
            Phase::AnsweringChallenge => "answering the dns-01 challenge",
            Phase::WaitingForValidation => "waiting for the CA's validation",
            Phase::GeneratingKey => "generating the private key",
            Phase::Finalizing => "finalizing the order",
            Phase::DownloadingCertificate => "downloading the certificate",
            Phase::Publishing => "writing the new version into the cluster (etcd)",
            Phase::Installing => "installing into the state directory",
            Phase::Deploying => "deploying and reloading",
            Phase::Revoking => "revoking the certificate",
            Phase::UpdatingAccount => "updating the account",
            Phase::DeactivatingAuthorizations => "deactivating the authorizations (dry run)",
        })
    }
}

impl Phase {
    /// A short name for timings (`renewd renew --timings`, the `RENEWAL_PHASES` journal field, the
    /// `phase` label of `renewd_renewal_phase_seconds`).
    pub fn label(self) -> &'static str {
        match self {
            Phase::Starting => "start",
            Phase::LoadingAccount => "account",
            Phase::Registering => "register",
            Phase::RenewalInfo => "ari",
            Phase::PlacingOrder => "order",
            Phase::FetchingAuthorizations => "authz",
            Phase::FindingZones => "zones",
            Phase::CheckingPersistRecord => "persist-check",
            Phase::PublishingTxt => "dns-update",
            Phase::WaitingForPropagation => "propagation",
            Phase::AnsweringChallenge => "answer",
            Phase::WaitingForValidation => "validation",
            Phase::GeneratingKey => "key",
            Phase::Finalizing => "finalize",
            Phase::DownloadingCertificate => "download",
            Phase::Publishing => "cluster",
            Phase::Installing => "install",
            Phase::Deploying => "deploy",
            Phase::Revoking => "revoke",
            Phase::UpdatingAccount => "account-update",
            Phase::DeactivatingAuthorizations => "deactivate",
        }
    }
}

/// Where the time of one attempt went: each phase it passed through with the time spent in it, in the
/// order first entered (a phase entered twice is summed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timings(pub Vec<(Phase, Duration)>);

impl Timings {
    fn add(&mut self, phase: Phase, spent: Duration) {
        match self.0.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, d)) => *d += spent,
            None => self.0.push((phase, spent)),
        }
    }

    /// Time spent in `phase` (zero if never entered).
    pub fn of(&self, phase: Phase) -> Duration {
        self.0
            .iter()
            .find(|(p, _)| *p == phase)
            .map_or(Duration::ZERO, |(_, d)| *d)
    }
}

/// `order 41ms, dns-update 3ms, propagation 602ms, ...`
impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (phase, d)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {}ms", phase.label(), d.as_millis())?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Current {
    phase: Phase,
    since: Instant,
    done: Timings,
}

impl Default for Current {
    fn default() -> Self {
        Current {
            phase: Phase::Starting,
            since: Instant::now(),
            done: Timings::default(),
        }
    }
}

/// The phase a running attempt is in, shared between the attempt and whoever bounds it (the attempt
/// deadline reads it when it fires), and the time each phase took so far. Cheap to clone; the lock is
/// never held across an await.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<Current>>);

impl Progress {
    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The attempt entered `phase`: the time since the previous `enter` is the previous phase's.
    pub fn enter(&self, phase: Phase) {
        let mut c = self.current();
        if c.phase == phase {
            return;
        }
        let now = Instant::now();
        let (prev, spent) = (c.phase, now - c.since);
        c.done.add(prev, spent);
        c.phase = phase;
        c.since = now;
    }

    pub fn phase(&self) -> Phase {
        self.current().phase
    }

    /// The phases so far, the current one up to now.
    pub fn timings(&self) -> Timings {
        let c = self.current();
        let mut t = c.done.clone();
        t.add(c.phase, c.since.elapsed());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_sum_a_phase_entered_twice_and_keep_the_first_order() {
        let mut t = Timings::default();
        t.add(Phase::PlacingOrder, Duration::from_millis(40));
        t.add(Phase::WaitingForPropagation, Duration::from_millis(600));
        t.add(Phase::PlacingOrder, Duration::from_millis(2));
        assert_eq!(t.to_string(), "order 42ms, propagation 600ms");
        assert_eq!(t.of(Phase::PlacingOrder), Duration::from_millis(42));
        assert_eq!(t.of(Phase::Finalizing), Duration::ZERO);
    }

    #[test]
    fn progress_counts_each_phase_from_its_enter_to_the_next() {
        let p = Progress::default();
        p.enter(Phase::PlacingOrder);
        std::thread::sleep(Duration::from_millis(20));
        p.enter(Phase::PlacingOrder); // the same phase again: nothing closes
        p.enter(Phase::Finalizing);
        let t = p.timings();
        let phases: Vec<Phase> = t.0.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            phases,
            [Phase::Starting, Phase::PlacingOrder, Phase::Finalizing]
        );
        assert!(
            t.of(Phase::PlacingOrder) >= Duration::from_millis(20),
            "{t}"
        );
        assert_eq!(p.phase(), Phase::Finalizing);
    }
}
