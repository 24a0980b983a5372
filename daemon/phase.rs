//! The phases of one renewal attempt, so that every error and every deadline says where it happened
//! ("… answering the dns-01 challenge: …", "no progress within 10m while waiting for the CA's validation").

use std::fmt;
use std::sync::{Arc, Mutex};

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

/// The phase a running attempt is in, shared between the attempt and whoever bounds it (the attempt
/// deadline reads it when it fires). Cheap to clone; the lock is never held across an await.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<Phase>>);

impl Progress {
    /// The attempt entered `phase`.
    pub fn enter(&self, phase: Phase) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    pub fn phase(&self) -> Phase {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
