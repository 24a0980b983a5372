//! Day-two commands that act on one certificate or one account: `renewd revoke`, `renewd delete`,
//! `renewd account show|update|rollover|deactivate`. Each returns the lines to print; errors say what
//! was not done and what to do.

use instant_acme::{RevocationReason, RevocationRequest};
use rustls_pki_types::CertificateDer;

use crate::acme::{self, AcmeError};
use crate::config::{AccountSettings, Settings};
use crate::phase::Phase;
use crate::renew::{Engine, RenewError};
use crate::state::StateDir;

/// The reasons `--reason` takes (RFC 5280 §5.3.1 names, as certbot spells them).
pub const REASONS: &[&str] = &[
    "unspecified",
    "keycompromise",
    "affiliationchanged",
    "superseded",
    "cessationofoperation",
];

/// The RFC 5280 reason code of `--reason NAME`.
pub fn reason_code(name: &str) -> Option<u8> {
    Some(match name {
        "unspecified" => 0,
        "keycompromise" => 1,
        "affiliationchanged" => 3,
        "superseded" => 4,
        "cessationofoperation" => 5,
        _ => return None,
    })
}

pub fn reason(name: &str) -> Option<RevocationReason> {
    Some(match name {
        "unspecified" => RevocationReason::Unspecified,
        "keycompromise" => RevocationReason::KeyCompromise,
        "affiliationchanged" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessationofoperation" => RevocationReason::CessationOfOperation,
        _ => return None,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("no spec named `{0}`")]
    NoSpec(String),
    #[error("no account named `{name}` in the configuration; defined: {defined}")]
    NoAccount { name: String, defined: String },
    #[error("account `{0}` has not been registered yet (no {1}): there is nothing to do with it")]
    NotRegistered(String, String),
    #[error("{name} has no live certificate ({reason}): nothing to revoke")]
    NoCertificate { name: String, reason: String },
    #[error("{0}")]
    Acme(#[from] AcmeError),
    #[error("{0}")]
    Renew(#[from] RenewError),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0} is being renewed right now; try again when it is done")]
    Busy(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ManageError {
    let context = context.into();
    move |source| ManageError::Io { context, source }
}

/// "`a`, `b`": the configured account names, for messages.
fn defined_accounts(settings: &Settings) -> String {
    settings
        .accounts
        .keys()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn account_settings<'s>(
    settings: &'s Settings,
    name: &str,
) -> Result<&'s AccountSettings, ManageError> {
    settings
        .accounts
        .get(name)
        .ok_or_else(|| ManageError::NoAccount {
            name: name.to_string(),
            defined: defined_accounts(settings),
        })
}

/// The account to act on: the one named, else the only one, else the default of the specs.
pub fn pick_account(settings: &Settings, name: Option<&str>) -> Result<String, ManageError> {
    if let Some(n) = name {
        return account_settings(settings, n).map(|a| a.name.clone());
    }
    if settings.accounts.len() == 1 {
        return Ok(settings.accounts.keys().next().cloned().unwrap_or_default());
    }
    Err(ManageError::NoAccount {
        name: "(none given)".into(),
        defined: format!(
            "{}; name one: `renewd account show ACCOUNT`",
            defined_accounts(settings)
        ),
    })
}

/// The registered account `name` (loaded from `accounts/NAME.json`; never registered here).
async fn registered(engine: &Engine, name: &str) -> Result<acme::AcmeAccount, ManageError> {
    let settings = account_settings(&engine.settings, name)?;
    // `cluster:` another member may have registered it: loading it brings the credentials here.
    let in_cluster = match engine.cluster() {
        Some(c) => c.account(name).await?.is_some(),
        None => false,
    };
    if acme::stored_info(settings, &engine.state)?.is_none() && !in_cluster {
        return Err(ManageError::NotRegistered(
            name.to_string(),
            engine.state.account_file(name).display().to_string(),
        ));
    }
    Ok(engine.load_account(name).await?)
}

/// `renewd revoke NAME [--reason R]`: revoke the live certificate with the account that ordered it.
/// `with_key`: sign with the certificate's private key instead of the account (`Some(reason code)`, the
/// code 0 when no reason was given).
pub async fn revoke(
    engine: &Engine,
    name: &str,
    why: Option<RevocationReason>,
    with_key: Option<Option<u8>>,
) -> Result<Vec<String>, ManageError> {
    let spec = engine
        .settings
        .certs
        .get(name)
        .ok_or_else(|| ManageError::NoSpec(name.to_string()))?;
    let no_cert = |reason: String| ManageError::NoCertificate {
        name: name.to_string(),
        reason,
    };
    let files = engine
        .state
        .read_live(name)
        .map_err(|e| no_cert(e.to_string()))?
        .ok_or_else(|| {
            no_cert(format!(
                "{} is empty",
                engine.state.live_dir(name).display()
            ))
        })?;
    let der = crate::certs::pem_certificates(&files.cert)
        .map_err(|e| no_cert(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| no_cert("cert.pem holds no certificate".to_string()))?;
    let facts = crate::certs::facts(&der, 0).map_err(|e| no_cert(e.to_string()))?;
    if let Some(code) = with_key {
        // Signed by the certificate's own key: no account needed (one that is lost or deactivated).
        let (key, kind) = crate::certs::NewKey::from_pem(&files.privkey)
            .map_err(|e| no_cert(format!("privkey.pem: {e}")))?;
        let jws = crate::jws::JwsKey::from_pkcs8(&key.pair.serialize_der(), kind)
            .map_err(|e| no_cert(format!("privkey.pem: {e}")))?;
        let settings = account_settings(&engine.settings, &spec.account)?;
        let dir = acme::directory(settings).await?;
        acme::revoke_with_key(&dir, &der, &jws, code).await?;
        tracing::warn!(cert_name = %name, cert_serial = %facts.serial, "certificate revoked with its own key");
        return Ok(vec![
            format!("{name}: revoked serial {} (signed with the certificate's key)", facts.serial),
            format!(
                "{name}: it is still in live/ and the deploy targets: `renewd renew --force {name}` gets a new one, `renewd delete {name}` removes it"
            ),
        ]);
    }
    let account = registered(engine, &spec.account).await?;
    let der = CertificateDer::from(der);
    account
        .account
        .revoke(&RevocationRequest {
            certificate: &der,
            reason: why,
        })
        .await
        .map_err(|e| account.error(Phase::Revoking, e))?;
    tracing::warn!(cert_name = %name, cert_serial = %facts.serial, "certificate revoked");
    Ok(vec![
        format!(
            "{name}: revoked serial {} (account `{}`)",
            facts.serial, spec.account
        ),
        format!(
            "{name}: it is still in live/ and the deploy targets: `renewd renew --force {name}` gets a new one, `renewd delete {name}` removes it"
        ),
    ])
}

/// `renewd delete NAME`: remove the spec file, `live/NAME` and `archive/NAME` under NAME's lock. The
/// account, deployed copies and dns-persist-01 records stay (said in the output).
pub fn delete(settings: &Settings, name: &str) -> Result<Vec<String>, ManageError> {
    let state = StateDir::new(&settings.state_dir);
    let spec_file = settings
        .certs
        .get(name)
        .map(|s| s.file.clone())
        .unwrap_or_else(|| settings.certs_dir.join(format!("{name}.yaml")));
    let live = state.live_dir(name);
    let archive = state.archive_dir(name);
    if !spec_file.exists() && live.symlink_metadata().is_err() && !archive.exists() {
        return Err(ManageError::NoSpec(name.to_string()));
    }
    let Some(_lock) = state
        .lock_cert(name)
        .map_err(io(format!("cannot take the lock of {name}")))?
    else {
        return Err(ManageError::Busy(name.to_string()));
    };
    let mut out = Vec::new();
    // The spec first: a running daemon forgets the certificate before its files go.
    if spec_file.exists() {
        std::fs::remove_file(&spec_file)
            .map_err(io(format!("cannot remove {}", spec_file.display())))?;
        out.push(format!("{name}: removed {}", spec_file.display()));
    }
    if live.symlink_metadata().is_ok() {
        std::fs::remove_file(&live).map_err(io(format!("cannot remove {}", live.display())))?;
        out.push(format!("{name}: removed {}", live.display()));
    }
    if archive.exists() {
        std::fs::remove_dir_all(&archive)
            .map_err(io(format!("cannot remove {}", archive.display())))?;
        out.push(format!("{name}: removed {}", archive.display()));
    }
    if let Some(dir) = live.parent() {
        let _ = crate::state::fsync_dir(dir);
    }
    if let Some(spec) = settings.certs.get(name) {
        for t in &spec.deploy {
            for p in [&t.fullchain, &t.cert, &t.chain, &t.key, &t.combined]
                .into_iter()
                .flatten()
            {
                out.push(format!(
                    "{name}: left the deployed copy {} (servers may still use it)",
                    p.display()
                ));
            }
        }
    }
    let book = crate::persist::Book::new(state.root(), name);
    if book.read().map(|w| !w.is_empty()).unwrap_or(false) {
        out.push(format!(
            "{name}: the dns-persist-01 records renewd wrote stay ({}); remove them with `renewd persist remove {name}` before deleting, or by hand",
            book.path().display()
        ));
    }
    Ok(out)
}

/// `renewd account show [ACCOUNT]` (no network).
pub fn account_show(settings: &Settings, name: &str) -> Result<Vec<String>, ManageError> {
    let a = account_settings(settings, name)?;
    let state = StateDir::new(&settings.state_dir);
    let mut out = vec![
        format!("account:    {name}"),
        format!("directory:  {}", a.directory),
        format!(
            "contact:    {}",
            if a.contact.is_empty() {
                "(none)".to_string()
            } else {
                a.contact.join(", ")
            }
        ),
    ];
    if let Some(e) = &a.eab {
        out.push(format!("eab kid:    {}", e.kid));
    }
    match acme::stored_info(a, &state)? {
        Some(info) => {
            out.push(format!("url:        {}", info.url));
            out.push("key:        ECDSA P-256".to_string());
            out.push(format!(
                "stored:     {}{}",
                state.account_file(name).display(),
                info.modified
                    .map(|t| format!(" (written {})", humantime::format_rfc3339_seconds(t)))
                    .unwrap_or_default()
            ));
            if info.directory != a.directory {
                out.push(format!(
                    "note:       registered at {}; the next renewal registers a new account at the configured directory",
                    info.directory
                ));
            }
        }
        None => {
            out.push("url:        not registered yet (the first order registers it)".to_string())
        }
    }
    Ok(out)
}

/// `renewd account update [ACCOUNT] [--contact C...]`: set the CA's contact addresses (default: the
/// configured `contact:`).
pub async fn account_update(
    engine: &Engine,
    name: &str,
    contact: Option<Vec<String>>,
) -> Result<Vec<String>, ManageError> {
    let settings = account_settings(&engine.settings, name)?;
    let contact = contact.unwrap_or_else(|| settings.contact.clone());
    let account = registered(engine, name).await?;
    let refs: Vec<&str> = contact.iter().map(String::as_str).collect();
    account
        .account
        .update_contacts(&refs)
        .await
        .map_err(|e| account.error(Phase::UpdatingAccount, e))?;
    let mut out = vec![format!(
        "{name}: the CA now has contact {}",
        if contact.is_empty() {
            "(none)".to_string()
        } else {
            contact.join(", ")
        }
    )];
    if contact != settings.contact {
        out.push(format!(
            "{name}: renewd.yaml says contact {:?}: change it there too, or the next `renewd account update` sets it back",
            settings.contact
        ));
    }
    Ok(out)
}

/// `renewd account rollover [ACCOUNT]`: a new account key (RFC 8555 §7.3.5); the old one stops working.
pub async fn account_rollover(engine: &Engine, name: &str) -> Result<Vec<String>, ManageError> {
    let settings = account_settings(&engine.settings, name)?;
    let mut account = registered(engine, name).await?;
    let credentials = account
        .account
        .update_key()
        .await
        .map_err(|e| account.error(Phase::UpdatingAccount, e))?;
    let path = engine.state.account_file(name);
    acme::save_credentials(settings, &engine.state, &path, credentials).await?;
    tracing::warn!(account = %name, "account key rolled over");
    let mut out = vec![format!(
        "{name}: new account key (ECDSA P-256) saved to {}; the CA no longer accepts the old one",
        path.display()
    )];
    if let Some(c) = engine.cluster() {
        let stored = crate::fsread::read_capped(&path, crate::fsread::SECRET_MAX).map_err(|e| {
            io(format!("cannot read {} back", path.display()))(std::io::Error::other(e.to_string()))
        })?;
        c.replace_account(name, &stored).await?;
        out.push(format!(
            "{name}: the cluster has the new key too (sealed); the other members load it when the CA refuses their old one, or at their next start"
        ));
    }
    Ok(out)
}

/// `renewd account deactivate [ACCOUNT]`: the CA closes the account for good; the stored credentials
/// are kept as `NAME.json.deactivated`, so the next order registers a new account.
pub async fn account_deactivate(engine: &Engine, name: &str) -> Result<Vec<String>, ManageError> {
    let account = registered(engine, name).await?;
    let acme::AcmeAccount { account: inner, .. } = account.clone();
    inner
        .deactivate()
        .await
        .map_err(|e| account.error(Phase::UpdatingAccount, e))?;
    let path = engine.state.account_file(name);
    let kept = path.with_extension("json.deactivated");
    std::fs::rename(&path, &kept).map_err(io(format!(
        "the account is deactivated, but {} could not be moved away",
        path.display()
    )))?;
    tracing::warn!(account = %name, "account deactivated");
    if let Some(c) = engine.cluster() {
        c.remove_account(name).await?;
    }
    Ok(vec![
        format!("{name}: deactivated at the CA; its credentials are kept as {}", kept.display()),
        format!("{name}: the next order registers a new account (with EAB if configured: a single-use EAB key needs a new one)"),
    ])
}
