//! Files the configuration points at: secrets (TSIG keys, EAB HMAC keys) and trust roots.
//! Secret contents are never put into a message.

use std::io;
use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::error::{Diags, Pos};

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

/// Read a secret file named by the config at `at`; warn if group or others may read or write it.
pub(crate) fn read_secret(
    d: &mut Diags,
    at: Pos,
    key: &str,
    path: &Path,
    what: &str,
) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            let mut msg = format!("`{key}`: {}", io_advice(&e, path, what));
            if e.kind() == io::ErrorKind::NotFound && what.contains("TSIG") {
                msg.push_str(&format!(
                    " with `tsig-keygen -a hmac-sha256 NAME > {}` (and give the same key to the DNS server)",
                    path.display()
                ));
            }
            d.err(at, msg);
            return None;
        }
    };
    check_private(d, at, key, path);
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(_) => {
            d.err(
                at,
                format!(
                    "`{key}`: {what} {} is not a text file (not UTF-8)",
                    path.display()
                ),
            );
            None
        }
    }
}

#[cfg(unix)]
fn check_private(d: &mut Diags, at: Pos, key: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            d.warn(
                at,
                format!(
                    "`{key}`: {} holds a secret but is accessible by group or others (mode {mode:04o}); \
                     run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ),
            );
        }
    }
}

#[cfg(not(unix))]
fn check_private(_d: &mut Diags, _at: Pos, _key: &str, _path: &Path) {}

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
    let bytes = std::fs::read(path).map_err(|e| io_advice(&e, path, "trust file"))?;
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
