//! The live certificate of a spec as renewd plans from it: the facts of `live/NAME/cert.pem` and whether
//! `privkey.pem` matches it ([`read_live`]), or why it cannot be used ([`LiveError`]).

use std::path::PathBuf;

use crate::certs::{self, CertFacts};
use crate::state::StateDir;

/// The live certificate of a spec, as read from `live/NAME/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCert {
    pub facts: CertFacts,
    pub key_matches: bool,
}

/// Why `live/NAME/` cannot be planned from. Every case makes the certificate due now (a new order
/// writes a fresh, complete set); the variants say what an administrator will find.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// A file of the set cannot be read (permissions, I/O, not a regular file, too large).
    #[error("cannot read {}: {reason}", .path.display())]
    Unreadable {
        path: PathBuf,
        kind: Option<std::io::ErrorKind>,
        reason: String,
    },
    /// `cert.pem` holds no certificate, or one x509-parser cannot read.
    #[error("{}: {reason}", .path.display())]
    BadCertificate { path: PathBuf, reason: String },
}

/// Read `live/NAME/` (Ok(None) when there is none yet). Blocking: call it off the async runtime.
pub fn read_live(state: &StateDir, name: &str) -> Result<Option<LiveCert>, LiveError> {
    match read_live_files(state, name)? {
        Some(files) => live_cert(state, name, &files).map(Some),
        None => Ok(None),
    }
}

/// The files of `live/NAME/` (Ok(None) when there is none yet), as read for [`live_cert`].
pub fn read_live_files(
    state: &StateDir,
    name: &str,
) -> Result<Option<crate::state::CertFiles>, LiveError> {
    state.read_live(name).map_err(|e| LiveError::Unreadable {
        path: state.live_dir(name),
        kind: Some(e.kind()),
        reason: e.to_string(),
    })
}

/// The facts of the live `files` of `name`, and whether the key matches the certificate.
pub fn live_cert(
    state: &StateDir,
    name: &str,
    files: &crate::state::CertFiles,
) -> Result<LiveCert, LiveError> {
    let cert_path = state.live_dir(name).join(crate::state::CERT_FILE);
    let bad = |reason: String| LiveError::BadCertificate {
        path: cert_path.clone(),
        reason,
    };
    let ders = certs::pem_certificates(&files.cert).map_err(|e| bad(e.to_string()))?;
    let facts = certs::facts(&ders[0], 0).map_err(|e| bad(e.to_string()))?;
    let key_matches = certs::public_key_of_pem(&files.privkey)
        .map(|k| k == facts.public_key)
        .unwrap_or(false);
    Ok(LiveCert { facts, key_matches })
}

/// [`read_live`] on tokio's blocking pool.
pub async fn read_live_async(state: &StateDir, name: &str) -> Result<Option<LiveCert>, LiveError> {
    let (state, name) = (state.clone(), name.to_string());
    tokio::task::spawn_blocking(move || read_live(&state, &name))
        .await
        .expect("reading live/ does not panic")
}

/// `renewd check`: a `renew_before` that does not fit the lifetime of the certificate in `live/` (where
/// there is one to tell), as a warning at the key that sets it. Reads only local files.
pub fn lifetime_warnings(settings: &crate::config::Settings) -> Vec<crate::config::Diagnostic> {
    let state = StateDir::new(&settings.state_dir);
    settings
        .certs
        .values()
        .filter(|spec| spec.renew_before.is_some())
        .filter_map(|spec| {
            let live = read_live(&state, &spec.name);
            let message = crate::core::cert::renew_before_warning(spec, &live)?;
            let (file, pos) =
                crate::config::spec_key_position(spec, &settings.config_path, "renew_before");
            Some(crate::config::Diagnostic::warning(
                &file,
                pos,
                format!("`renew_before` of `{}`: {message}", spec.name),
            ))
        })
        .collect()
}
