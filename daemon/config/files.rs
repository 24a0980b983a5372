//! Files the configuration points at: secrets (TSIG keys, EAB HMAC keys) and trust roots.
//! Secret contents are never put into a message.

use std::io;
use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::error::{Diags, Pos};
use crate::fsread::{self, ReadError, SECRET_MAX, TEXT_MAX};

const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// "does not exist" / "permission denied" with what to do about it.
pub(crate) fn io_advice(e: &io::Error, path: &Path, what: &str) -> String {
    let p = path.display();
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "{what} {p} does not exist ({e}): check the path, or create the file"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot read {what} {p}: {e}; renewd runs as root or its own user: make the file readable by that user \
             (e.g. `chown root: {p} && chmod 600 {p}`)"
        ),
        _ => format!("cannot read {what} {p}: {e}"),
    }
}

/// Why `path` could not be read: the I/O advice, or what was found instead of a small regular file
/// followed by what such a file should be.
pub(crate) fn read_advice(e: &ReadError, path: &Path, kind: FileKind) -> String {
    match e {
        ReadError::Io(io) => io_advice(io, path, kind.what()),
        _ => format!("{} {} {e}: {}", kind.what(), path.display(), kind.about()),
    }
}

/// The files renewd's configuration consists of or points at, for messages about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Global,
    Spec,
    TsigKey,
    EabKey,
    Trust,
    SealKey,
    EtcdKey,
    EtcdPassword,
}

impl FileKind {
    pub(crate) fn what(self) -> &'static str {
        match self {
            FileKind::Global => "configuration file",
            FileKind::Spec => "spec file",
            FileKind::TsigKey => "TSIG key file",
            FileKind::EabKey => "EAB HMAC key file",
            FileKind::Trust => "trust file",
            FileKind::SealKey => "seal key file",
            FileKind::EtcdKey => "etcd client key file",
            FileKind::EtcdPassword => "etcd password file",
        }
    }

    /// What such a file is, for a message about finding something else.
    pub(crate) fn about(self) -> &'static str {
        match self {
            FileKind::Global => {
                "renewd.yaml is a short YAML file (accounts, DNS servers, defaults)"
            }
            FileKind::Spec => "a spec is a few lines of YAML about one certificate",
            FileKind::TsigKey => "a TSIG key file is a small text file as `tsig-keygen` writes it",
            FileKind::EabKey => {
                "an EAB HMAC key file is one line of text: the base64url key the CA gave you"
            }
            FileKind::Trust => {
                "`trust:` names a PEM file holding the root certificate(s) of the ACME server's TLS"
            }
            FileKind::SealKey => "a seal key file is one line: 32 random bytes, base64",
            FileKind::EtcdKey => {
                "the etcd client key is the PEM private key of `cluster.etcd.cert`"
            }
            FileKind::EtcdPassword => "an etcd password file holds the password on its first line",
        }
    }
}

/// Read a secret file named by the config at `at` (a regular file of at most [`SECRET_MAX`] bytes).
/// One that group or others may read or write is an error (`strict`), or a warning with
/// `allow_readable_secrets: true`; one that still holds an example's placeholder is an error.
pub(crate) fn read_secret(
    d: &mut Diags,
    at: Pos,
    key: &str,
    path: &Path,
    kind: FileKind,
    strict: bool,
) -> Option<String> {
    match fsread::read_text_capped(path, SECRET_MAX) {
        Ok(text) => {
            check_private(d, at, key, path, strict);
            if is_placeholder(&text) {
                d.err(
                    at,
                    format!(
                        "`{key}`: {} still holds the example's placeholder, not a real secret: {}",
                        path.display(),
                        match kind {
                            FileKind::TsigKey => format!("put the key `tsig-keygen -a hmac-sha256 NAME` wrote on the primary there (`tsig-keygen -a hmac-sha256 acme-update > {}`, the same key in named.conf), mode 0600", path.display()),
                            FileKind::EtcdKey => "put the PEM private key of `cluster.etcd.cert` there, mode 0600".to_string(),
                            FileKind::EtcdPassword => "put the etcd user's password on its first line, mode 0600".to_string(),
                            FileKind::SealKey => format!("`openssl rand -base64 32 > {}`, the same file on every member, mode 0600", path.display()),
                            _ => "put the EAB HMAC key the CA gave you there (one line, base64url), mode 0600".to_string(),
                        }
                    ),
                );
                return None;
            }
            Some(text)
        }
        Err(e) => {
            let mut msg = format!("`{key}`: {}", read_advice(&e, path, kind));
            if e.io_kind() == Some(io::ErrorKind::NotFound) && kind == FileKind::TsigKey {
                msg.push_str(&format!(
                    " with `tsig-keygen -a hmac-sha256 NAME > {}` (and give the same key to the DNS server)",
                    path.display()
                ));
            }
            d.err(at, msg);
            None
        }
    }
}

/// The placeholder secrets of config-examples/ (and anything marked like them): a real key is random
/// bytes, which never decode to these words.
fn is_placeholder(text: &str) -> bool {
    use base64::Engine as _;
    const MARKS: [&str; 3] = ["replace-me", "example-only", "replace_me"];
    if text.lines().any(|l| {
        let l = l.trim_start();
        (l.starts_with("//") || l.starts_with('#')) && l.contains("Placeholder")
    }) {
        return true;
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    text.split(|c: char| c.is_whitespace() || c == '"' || c == ';')
        .filter(|w| w.len() >= 16)
        .any(|w| {
            engines.iter().any(|e| {
                e.decode(w).is_ok_and(|b| {
                    let s = String::from_utf8_lossy(&b).to_ascii_lowercase();
                    MARKS.iter().any(|m| s.contains(m))
                })
            })
        })
}

#[cfg(unix)]
fn check_private(d: &mut Diags, at: Pos, key: &str, path: &Path, strict: bool) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let msg = format!(
                "`{key}`: {} holds a secret but is accessible by group or others (mode {mode:04o}); \
                 run `chmod 600 {}`{}",
                path.display(),
                path.display(),
                if strict {
                    " (or set `allow_readable_secrets: true` in the global file to accept it)"
                } else {
                    ""
                }
            );
            if strict {
                d.err(at, msg);
            } else {
                d.warn(at, msg);
            }
        }
    }
}

#[cfg(not(unix))]
fn check_private(_d: &mut Diags, _at: Pos, _key: &str, _path: &Path, _strict: bool) {}

/// EAB HMAC key file: one line, base64url (padding optional; standard base64 accepted too).
pub(crate) fn decode_eab_key(text: &str) -> Result<Vec<u8>, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = match lines.as_slice() {
        [] => return Err("is empty; put the HMAC key the CA gave you on one line".into()),
        [one] => *one,
        _ => {
            return Err(format!(
                "must hold exactly one line (the base64url HMAC key from the CA), found {}",
                lines.len()
            ))
        }
    };
    let bytes = URL_SAFE_ANY_PAD
        .decode(line)
        .or_else(|_| STANDARD_ANY_PAD.decode(line))
        .map_err(|_| {
            "does not hold a valid base64url key; copy the HMAC key exactly as the CA shows it"
                .to_string()
        })?;
    if bytes.is_empty() {
        return Err("holds an empty key".into());
    }
    Ok(bytes)
}

/// A PEM bundle of extra trust roots: must exist and contain at least one certificate.
pub(crate) fn check_trust(path: &Path) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let bytes =
        fsread::read_capped(path, TEXT_MAX).map_err(|e| read_advice(&e, path, FileKind::Trust))?;
    let mut n = 0usize;
    for item in CertificateDer::pem_slice_iter(&bytes) {
        match item {
            Ok(_) => n += 1,
            Err(e) => {
                return Err(format!(
                    "trust file {} is not valid PEM: {e}",
                    path.display()
                ))
            }
        }
    }
    if n == 0 {
        return Err(format!(
            "trust file {} contains no `-----BEGIN CERTIFICATE-----` block: it should hold the PEM root \
             certificate(s) of the ACME server's TLS",
            path.display()
        ));
    }
    Ok(())
}
