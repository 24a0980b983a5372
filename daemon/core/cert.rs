//! One certificate as the event loop sees it: its inputs (spec, live facts, failure history, the CA's
//! renewal window) and its state ([`CertState`]), changed only through the checked transitions below.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::certs::CertFacts;
use crate::config::CertSpec;
use crate::live::{LiveCert, LiveError};
use crate::scheduler::{self, AriWindow, CertInput, Decision, Failure, History, Reason};

/// What the loop is doing with one certificate. Every certificate is in exactly one of these; the loop
/// sleeps until the earliest `until` of the waiting ones, or an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertState {
    /// Nothing to do before `until`: the plan's due moment (lifetime rule, `renew_before`, the CA's
    /// window), or a pending redeploy.
    Scheduled { until: SystemTime },
    /// The last attempt failed: retrying at `until` (backoff, or the CA's Retry-After).
    BackingOff { until: SystemTime },
    /// The last attempt failed permanently: held until a configuration change, or `until`.
    Held { until: SystemTime },
    /// Another renewd process holds the certificate's lock: looking again at `until`.
    Locked { until: SystemTime },
    /// Due: waiting for a free worker since `since`.
    Waiting { job: Job, since: SystemTime },
    /// A worker is renewing it (order, DNS, validation, install, deploy).
    Renewing { since: SystemTime },
    /// A worker installs the live files on the deploy targets again, without an order.
    Redeploying { since: SystemTime },
    /// `renewd renew` only: nothing more to do in this run.
    Finished,
}

impl CertState {
    /// The state's name in `status.json` and `renewd status`.
    pub fn name(&self) -> &'static str {
        match self {
            CertState::Scheduled { .. } => "scheduled",
            CertState::BackingOff { .. } => "backing-off",
            CertState::Held { .. } => "held",
            CertState::Locked { .. } => "locked",
            CertState::Waiting { .. } => "waiting-for-worker",
            CertState::Renewing { .. } => "renewing",
            CertState::Redeploying { .. } => "redeploying",
            CertState::Finished => "finished",
        }
    }

    /// When this state ends by itself (a deadline of the loop), if it does.
    pub fn until(&self) -> Option<SystemTime> {
        match self {
            CertState::Scheduled { until }
            | CertState::BackingOff { until }
            | CertState::Held { until }
            | CertState::Locked { until } => Some(*until),
            _ => None,
        }
    }

    /// A worker runs for it.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            CertState::Renewing { .. } | CertState::Redeploying { .. }
        )
    }
}

/// What a worker does for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Order a new certificate (and deploy it).
    Renew,
    /// Install the live files on the deploy targets again, with their reloads.
    Redeploy,
}

/// A transition that the state it was asked from does not allow: a bug in the loop, logged and
/// refused (the certificate keeps its state).
#[derive(Debug, thiserror::Error)]
#[error("{name}: cannot {what} while {from}")]
pub struct BadTransition {
    name: String,
    what: &'static str,
    from: &'static str,
}

/// The CA's renewal window (ARI) for the live certificate, as far as the loop knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ari {
    /// No window: ask at `at` (the epoch: at once).
    Ask { at: SystemTime },
    /// A request is in flight; `kept` is the window it had (still used meanwhile).
    Fetching { kept: Option<(Vec<u8>, AriWindow)> },
    /// The window for the certificate with this raw serial; asked again at `window.refetch_at`.
    Known { serial: Vec<u8>, window: AriWindow },
}

impl Ari {
    fn fresh() -> Ari {
        Ari::Ask {
            at: SystemTime::UNIX_EPOCH,
        }
    }

    /// The window in force, if any.
    pub fn window(&self) -> Option<&AriWindow> {
        match self {
            Ari::Known { window, .. } => Some(window),
            Ari::Fetching {
                kept: Some((_, w)), ..
            } => Some(w),
            _ => None,
        }
    }
}

/// Whether the live files still have to be installed on the deploy targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeploy {
    No,
    /// After the scheduler's backoff from the last failure; `now`: at once (SIGHUP).
    Pending {
        now: bool,
    },
}

/// One certificate of the loop.
#[derive(Debug)]
pub struct Cert {
    pub name: String,
    pub spec: Arc<CertSpec>,
    pub live: Result<Option<LiveCert>, LiveError>,
    pub history: History,
    /// Fixed per certificate (random, up to [`scheduler::MAX_JITTER`]).
    pub jitter: Duration,
    pub ari: Ari,
    pub redeploy: Redeploy,
    /// Not before this moment: another process held the lock.
    pub locked_until: Option<SystemTime>,
    /// The plan as of the last change of the inputs.
    pub decision: Decision,
    state: CertState,
}

impl Cert {
    pub fn new(
        spec: Arc<CertSpec>,
        live: Result<Option<LiveCert>, LiveError>,
        history: History,
        jitter: Duration,
        redeploy: bool,
        now: SystemTime,
    ) -> Cert {
        let mut cert = Cert {
            name: spec.name.clone(),
            spec,
            live,
            history,
            jitter,
            ari: Ari::fresh(),
            redeploy: if redeploy {
                Redeploy::Pending { now: false }
            } else {
                Redeploy::No
            },
            locked_until: None,
            decision: Decision {
                at: now,
                reason: Reason::NoCertificate,
                summary: String::new(),
            },
            state: CertState::Scheduled { until: now },
        };
        cert.replan(now);
        cert
    }

    pub fn state(&self) -> &CertState {
        &self.state
    }

    fn refuse(&self, what: &'static str) -> BadTransition {
        let e = BadTransition {
            name: self.name.clone(),
            what,
            from: self.state.name(),
        };
        tracing::error!("scheduler bug: {e}");
        debug_assert!(false, "{e}");
        e
    }

    /// The live certificate, when there is one to plan from.
    pub fn live_cert(&self) -> Option<&LiveCert> {
        self.live.as_ref().ok().and_then(|l| l.as_ref())
    }

    /// The raw serial of the live certificate.
    pub fn live_serial(&self) -> Option<&[u8]> {
        self.live_cert().map(|l| l.facts.raw_serial.as_slice())
    }

    /// The live certificate, when it is one the CA can be asked about (it names its issuer's key).
    pub fn ari_subject(&self) -> Option<&CertFacts> {
        self.live_cert()
            .map(|l| &l.facts)
            .filter(|f| f.authority_key_id.is_some())
    }

    /// Compute the plan again from the inputs and settle into the state it says (not while a worker
    /// runs, nor once finished: those end through [`Cert::finished`]).
    pub fn replan(&mut self, now: SystemTime) {
        self.decision = scheduler::decide(
            &CertInput {
                spec: &self.spec,
                live: &self.live,
                ari: self.ari.window(),
                history: &self.history,
                jitter: self.jitter,
            },
            now,
        );
        if self.state.is_running() || self.state == CertState::Finished {
            return;
        }
        let mut until = self.decision.at;
        if let Some(r) = self.redeploy_at() {
            until = until.min(r);
        }
        let unlocked = self.locked_until.is_none_or(|l| l <= until);
        if matches!(self.state, CertState::Waiting { .. }) && until <= now && unlocked {
            return; // still due: it keeps its place in the queue
        }
        self.state = match (self.locked_until, &self.decision.reason) {
            (Some(l), _) if l > until => CertState::Locked { until: l },
            (_, Reason::Backoff { .. } | Reason::RetryAfter) => CertState::BackingOff { until },
            (_, Reason::PermanentFailure) => CertState::Held { until },
            _ => CertState::Scheduled { until },
        };
    }

    /// When the live files should be installed on the deploy targets again: at once, or after the
    /// backoff from the last failure (SIGHUP skips the wait). None: nothing to redeploy.
    fn redeploy_at(&self) -> Option<SystemTime> {
        let Redeploy::Pending { now } = self.redeploy else {
            return None;
        };
        let failure = match &self.history.last_failure {
            Some(f) if !now && self.history.consecutive_failures > 0 => f,
            _ => return Some(SystemTime::UNIX_EPOCH),
        };
        let time_left = self
            .live_cert()
            .and_then(|l| l.facts.not_after.duration_since(failure.at).ok());
        Some(failure.at + scheduler::backoff(self.history.consecutive_failures, time_left))
    }

    /// Transition: the state's deadline has passed → waiting for a worker. Returns the job it waits for.
    pub fn wake(&mut self, now: SystemTime) -> Option<Job> {
        let until = self.state.until()?;
        if until > now {
            return None;
        }
        if let CertState::Locked { .. } = self.state {
            // The other process had its turn: plan again without the lock.
            self.locked_until = None;
            self.replan(now);
            return self.wake(now);
        }
        let job = if self.decision.at <= now {
            Job::Renew
        } else if self.redeploy_at().is_some_and(|r| r <= now) {
            Job::Redeploy
        } else {
            self.replan(now);
            return None;
        };
        self.state = CertState::Waiting { job, since: now };
        Some(job)
    }

    /// Transition (`renewd renew --force`): due now, whatever the plan says.
    pub fn force(&mut self, now: SystemTime) {
        if self.state.until().is_some() {
            self.state = CertState::Waiting {
                job: Job::Renew,
                since: now,
            };
        }
    }

    /// Transition: a worker took it (waiting → renewing or redeploying).
    pub fn start(&mut self, now: SystemTime) -> Result<Job, BadTransition> {
        let CertState::Waiting { job, .. } = self.state else {
            return Err(self.refuse("start a worker"));
        };
        self.state = match job {
            Job::Renew => CertState::Renewing { since: now },
            Job::Redeploy => {
                self.redeploy = Redeploy::No;
                CertState::Redeploying { since: now }
            }
        };
        Ok(job)
    }

    /// Transition: the worker is done (renewing or redeploying → the plan's state, or finished).
    pub fn finished(&mut self, now: SystemTime, finish: bool) -> Result<(), BadTransition> {
        if !self.state.is_running() {
            return Err(self.refuse("finish a worker"));
        }
        if finish {
            self.state = CertState::Finished;
        } else {
            self.state = CertState::Scheduled { until: now };
            self.replan(now);
        }
        Ok(())
    }

    /// Transition (`renewd renew`): nothing to do in this run.
    pub fn finish(&mut self) -> Result<(), BadTransition> {
        if self.state.is_running() {
            return Err(self.refuse("finish"));
        }
        self.state = CertState::Finished;
        Ok(())
    }

    /// A successful renewal.
    pub fn succeeded(&mut self, now: SystemTime) {
        self.history = History {
            consecutive_failures: 0,
            last_success: Some(now),
            last_failure: None,
        };
        self.locked_until = None;
    }

    /// A failed attempt (renewal or redeploy).
    pub fn failed(&mut self, failure: Failure) {
        self.history.failed(failure);
    }

    /// Take the live certificate as read now. A different certificate (renewed here or by another
    /// process) drops the old one's renewal window and lock wait. Returns whether it changed.
    pub fn set_live(&mut self, live: Result<Option<LiveCert>, LiveError>) -> bool {
        let serial = |l: &Result<Option<LiveCert>, LiveError>| {
            l.as_ref()
                .ok()
                .and_then(|l| l.as_ref())
                .map(|l| l.facts.raw_serial.clone())
        };
        let changed = serial(&live) != serial(&self.live);
        if changed {
            if !matches!(self.ari, Ari::Fetching { .. }) {
                self.ari = Ari::fresh();
            }
            self.locked_until = None;
            if let Some(warning) = renew_before_warning(&self.spec, &live) {
                tracing::warn!(cert_name = %self.name, "{warning}");
            }
        }
        self.live = live;
        changed
    }

    /// Take what a read of `live/` found: the certificate, and whether its deploy targets still need the
    /// live files. Returns whether the certificate changed (see [`Cert::set_live`]).
    pub fn inspected(&mut self, i: super::Inspection) -> bool {
        self.redeploy = if i.redeploy {
            Redeploy::Pending { now: false }
        } else {
            Redeploy::No
        };
        self.set_live(i.live)
    }

    /// Say that another process installed the live certificate (`renewd renew` by hand, an import).
    pub fn log_replaced(&self) {
        if let Some(l) = self.live_cert() {
            tracing::info!(cert_name = %self.name, cert_serial = %l.facts.serial,
                cert_not_after = %humantime::format_rfc3339_seconds(l.facts.not_after),
                "live certificate replaced by another process (renewd renew, import); replanned");
        }
    }

    /// A new version of the spec: its failure history no longer applies.
    pub fn set_spec(&mut self, spec: Arc<CertSpec>) {
        self.spec = spec;
        self.history = History::default();
        self.ari = Ari::fresh();
    }

    /// Whether the renewal window matters now: not while the certificate is due or being worked on (a new
    /// certificate gets its own window), nor once finished.
    fn ari_wanted(&self) -> bool {
        self.state.until().is_some() && self.ari_subject().is_some()
    }

    /// Whether the renewal window should be requested now.
    pub fn ari_due(&self, now: SystemTime) -> bool {
        if !self.ari_wanted() {
            return false;
        }
        match &self.ari {
            Ari::Ask { at } => *at <= now,
            Ari::Fetching { .. } => false,
            Ari::Known { window, .. } => window.refetch_at <= now,
        }
    }

    /// When the next renewal-window request is due, if one will be.
    pub fn ari_wake(&self) -> Option<SystemTime> {
        if !self.ari_wanted() {
            return None;
        }
        match &self.ari {
            Ari::Ask { at } => Some(*at),
            Ari::Fetching { .. } => None,
            Ari::Known { window, .. } => Some(window.refetch_at),
        }
    }

    /// Transition of the window: a request for the live certificate was sent.
    pub fn ari_fetching(&mut self) {
        let kept = match std::mem::replace(&mut self.ari, Ari::Fetching { kept: None }) {
            Ari::Known { serial, window } => Some((serial, window)),
            _ => None,
        };
        self.ari = Ari::Fetching { kept };
    }

    /// Whether the live certificate's renewal window has been asked for in this run (answered, failed
    /// or unsupported) — `renewd renew` decides only then.
    pub fn ari_settled(&self) -> bool {
        match &self.ari {
            Ari::Ask { at } => *at > SystemTime::UNIX_EPOCH || self.ari_subject().is_none(),
            Ari::Fetching { .. } => false,
            Ari::Known { .. } => true,
        }
    }
}

/// The warning for a `renew_before` that does not fit the live certificate's lifetime (it is capped at
/// half of it: see [`scheduler::renew_before_cap`]).
pub fn renew_before_warning(
    spec: &CertSpec,
    live: &Result<Option<LiveCert>, LiveError>,
) -> Option<String> {
    let before = spec.renew_before?;
    let live = live.as_ref().ok()?.as_ref()?;
    let lifetime = live.facts.lifetime();
    let capped = scheduler::renew_before_cap(before, lifetime)?;
    Some(format!(
        "renew_before {} does not fit the certificate's lifetime of {}: renewing {} before expiry instead \
         (half the lifetime); set renew_before below {} to choose yourself",
        scheduler::format_in(before),
        scheduler::format_in(lifetime),
        scheduler::format_in(capped),
        scheduler::format_in(capped)
    ))
}
