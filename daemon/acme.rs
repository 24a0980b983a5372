//! ACME accounts: the HTTP client (system roots plus `trust:`), registration with External Account Binding,
//! and credentials persisted 0600 under `state_dir/accounts/` and reused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};

use crate::config::AccountSettings;
use crate::state::{write_atomic, StateDir};

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("account `{account}`: cannot read trust roots from {path}: {reason}; the file must hold PEM CERTIFICATE blocks")]
    Trust {
        account: String,
        path: PathBuf,
        reason: String,
    },
    #[error("account `{account}`: stored credentials {path} are unreadable: {reason}; move the file away to register again")]
    Credentials {
        account: String,
        path: PathBuf,
        reason: String,
    },
    #[error("account `{account}`: cannot save credentials to {path}: {source}")]
    Save {
        account: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("account `{account}`: registration at {directory} failed: {}", describe(.source))]
    Register {
        account: String,
        directory: String,
        source: Box<instant_acme::Error>,
    },
    #[error("{context}: {}", describe(.source))]
    Protocol {
        context: String,
        source: Box<instant_acme::Error>,
    },
    #[error("the CA rejected the challenge for {domain}: {detail}")]
    ChallengeInvalid { domain: String, detail: String },
    #[error("order {url} became invalid: {detail}")]
    OrderInvalid { url: String, detail: String },
}

impl AcmeError {
    pub fn protocol(context: impl Into<String>, source: instant_acme::Error) -> Self {
        AcmeError::Protocol {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Say what an instant-acme error means, with the CA's problem type and detail when there is one.
pub fn describe(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => {
            let kind = p
                .r#type
                .as_deref()
                .map(|t| t.trim_start_matches("urn:ietf:params:acme:error:"))
                .unwrap_or("error");
            let mut s = format!("the CA answered {kind}");
            if let Some(status) = p.status {
                s.push_str(&format!(" (HTTP {status})"));
            }
            if let Some(d) = &p.detail {
                s.push_str(&format!(": {d}"));
            }
            for sub in &p.subproblems {
                s.push_str(&format!("; {sub}"));
            }
            if kind == "externalAccountRequired" || kind == "unauthorized" && s.contains("xternal")
            {
                s.push_str(" — check `eab.kid` and the key in `eab.hmac_key_file`");
            }
            s
        }
        other => {
            // Walk the source chain: hyper/rustls put the useful part (e.g. "UnknownIssuer") deep inside.
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(inner) = src {
                let text = inner.to_string();
                if !s.contains(&text) {
                    s.push_str(": ");
                    s.push_str(&text);
                }
                src = inner.source();
            }
            if s.contains("UnknownIssuer") || s.contains("invalid peer certificate") {
                s.push_str(" — the ACME server's TLS certificate is not trusted: add its root with `trust:`");
            }
            s
        }
    }
}

/// What `accounts/NAME.json` holds.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    eab_kid: Option<String>,
    credentials: AccountCredentials,
}

/// The HTTP client for one account: system roots plus the account's `trust:` file.
fn http_client(settings: &AccountSettings) -> Result<Box<dyn instant_acme::HttpClient>, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &settings.trust {
        let err = |reason: String| AcmeError::Trust {
            account: settings.name.clone(),
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let ders = crate::certs::pem_certificates(&text).map_err(|e| err(e.to_string()))?;
        for der in ders {
            roots
                .add(der.into())
                .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    Ok(Box::new(client))
}

/// Load the account from `accounts/NAME.json`, or register it (with EAB when configured) and save it 0600.
///
/// Stored credentials are reused only when they were made for the same directory URL; a changed
/// `directory:` registers anew (the old file is kept as `NAME.json.old`).
pub async fn account(settings: &AccountSettings, state: &StateDir) -> Result<Account, AcmeError> {
    let path = state.account_file(&settings.name);
    if let Some(stored) = read_stored(settings, &path)? {
        if stored.directory == settings.directory {
            let builder = Account::builder_with_http(http_client(settings)?);
            return builder
                .from_credentials(stored.credentials)
                .await
                .map_err(|source| AcmeError::Register {
                    account: settings.name.clone(),
                    directory: settings.directory.clone(),
                    source: Box::new(source),
                });
        }
        tracing::warn!(
            account = %settings.name,
            old = %stored.directory,
            new = %settings.directory,
            "the directory URL changed: registering a new account"
        );
        let _ = std::fs::rename(&path, path.with_extension("json.old"));
    }
    register(settings, state, &path).await
}

fn read_stored(
    settings: &AccountSettings,
    path: &Path,
) -> Result<Option<StoredAccount>, AcmeError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AcmeError::Credentials {
                account: settings.name.clone(),
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AcmeError::Credentials {
            account: settings.name.clone(),
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

async fn register(
    settings: &AccountSettings,
    state: &StateDir,
    path: &Path,
) -> Result<Account, AcmeError> {
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let eab = settings
        .eab
        .as_ref()
        .map(|e| ExternalAccountKey::new(e.kid.clone(), e.hmac_key.expose()));
    let builder = Account::builder_with_http(http_client(settings)?);
    let (account, credentials) = builder
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|source| AcmeError::Register {
            account: settings.name.clone(),
            directory: settings.directory.clone(),
            source: Box::new(source),
        })?;
    let stored = StoredAccount {
        directory: settings.directory.clone(),
        eab_kid: settings.eab.as_ref().map(|e| e.kid.clone()),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&stored).expect("account credentials serialize");
    state.ensure().map_err(|source| AcmeError::Save {
        account: settings.name.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &json, 0o600).map_err(|source| AcmeError::Save {
        account: settings.name.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    tracing::info!(account = %settings.name, id = %account.id(), "registered ACME account");
    Ok(account)
}
