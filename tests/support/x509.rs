//! Certificate checks with the real `openssl` CLI, so tests do not trust renewd's own parsing.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `openssl ARGS` (outside the namespace: no network needed).
pub fn openssl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}"))
}

/// Runs `openssl ARGS` in `dir` (file names relative to it); `Err` carries the arguments and
/// openssl's stderr.
pub fn openssl_in(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn openssl_ok(args: &[&OsStr]) -> String {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl verify -CAfile ROOT -untrusted CHAIN CERT`; `Err` carries openssl's explanation.
pub fn verify_chain(root: &Path, chain: &Path, cert: &Path) -> Result<(), String> {
    let out = openssl([
        OsStr::new("verify"),
        OsStr::new("-CAfile"),
        root.as_os_str(),
        OsStr::new("-untrusted"),
        chain.as_os_str(),
        cert.as_os_str(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text.trim().to_string())
    }
}

fn x509_field(cert: &Path, flag: &str) -> String {
    openssl_ok(&[
        OsStr::new("x509"),
        OsStr::new("-in"),
        cert.as_os_str(),
        OsStr::new("-noout"),
        OsStr::new(flag),
    ])
}

/// The serial number in hex, as openssl prints it (`serial=…`, without the prefix).
pub fn cert_serial(cert: &Path) -> String {
    let s = x509_field(cert, "-serial");
    s.trim().trim_start_matches("serial=").to_string()
}

/// `notAfter` as openssl prints it (e.g. `Feb  9 06:10:26 2026 GMT`).
pub fn cert_not_after(cert: &Path) -> String {
    let s = x509_field(cert, "-enddate");
    s.trim().trim_start_matches("notAfter=").to_string()
}

/// True if the certificate is still valid `secs` seconds from now (`openssl x509 -checkend`).
pub fn cert_valid_for(cert: &Path, secs: u64) -> bool {
    openssl([
        OsStr::new("x509"),
        OsStr::new("-in"),
        cert.as_os_str(),
        OsStr::new("-noout"),
        OsStr::new("-checkend"),
        OsStr::new(&secs.to_string()),
    ])
    .status
    .success()
}

/// The subject CN, if any.
pub fn cert_subject_cn(cert: &Path) -> Option<String> {
    name_cn(cert, "-subject")
}

/// The issuer CN (of the first certificate in the file), if any.
pub fn cert_issuer_cn(cert: &Path) -> Option<String> {
    name_cn(cert, "-issuer")
}

fn name_cn(cert: &Path, which: &str) -> Option<String> {
    let s = openssl_ok(&[
        OsStr::new("x509"),
        OsStr::new("-in"),
        cert.as_os_str(),
        OsStr::new("-noout"),
        OsStr::new(which),
        OsStr::new("-nameopt"),
        OsStr::new("multiline"),
    ]);
    s.lines()
        .find_map(|l| l.trim().strip_prefix("commonName"))
        .map(|v| v.trim().trim_start_matches('=').trim().to_string())
}

/// DNS names of the subjectAltName extension, in certificate order (without the `DNS:` prefix).
pub fn cert_sans(cert: &Path) -> Vec<String> {
    let out = openssl_ok(&[
        OsStr::new("x509"),
        OsStr::new("-in"),
        cert.as_os_str(),
        OsStr::new("-noout"),
        OsStr::new("-ext"),
        OsStr::new("subjectAltName"),
    ]);
    out.lines()
        .skip(1)
        .flat_map(|l| l.split(','))
        .filter_map(|e| e.trim().strip_prefix("DNS:").map(str::to_string))
        .collect()
}

/// How many certificates a PEM file holds (fullchain = leaf + intermediates).
pub fn pem_cert_count(pem: &Path) -> usize {
    std::fs::read_to_string(pem)
        .unwrap_or_else(|e| panic!("read {}: {e}", pem.display()))
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// The public key type of a certificate: `rsa2048`, `ecdsa-p256`, `ecdsa-p384` (renewd's `KeySpec`
/// spelling), or `unknown:<first line>`.
pub fn cert_key_type(cert: &Path) -> String {
    let pubkey = x509_field(cert, "-pubkey");
    pubkey_type(&pubkey)
}

/// The type of a private key file, spelled as [`cert_key_type`].
pub fn private_key_type(key: &Path) -> String {
    pubkey_type(&private_key_pub(key))
}

/// True if `key` is the private key of `cert` (same public key).
pub fn key_matches_cert(key: &Path, cert: &Path) -> bool {
    private_key_pub(key).trim() == x509_field(cert, "-pubkey").trim()
}

fn private_key_pub(key: &Path) -> String {
    openssl_ok(&[
        OsStr::new("pkey"),
        OsStr::new("-in"),
        key.as_os_str(),
        OsStr::new("-pubout"),
    ])
}

fn pubkey_type(pubkey_pem: &str) -> String {
    let tmp = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(tmp.path(), pubkey_pem).expect("write temp public key");
    let text = openssl_ok(&[
        OsStr::new("pkey"),
        OsStr::new("-pubin"),
        OsStr::new("-in"),
        tmp.path().as_os_str(),
        OsStr::new("-noout"),
        OsStr::new("-text"),
    ]);
    let bits = text
        .lines()
        .next()
        .and_then(|l| l.split('(').nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    if text.contains("Modulus:") {
        format!("rsa{bits}")
    } else if text.contains("NIST CURVE: P-256") || text.contains("prime256v1") {
        "ecdsa-p256".into()
    } else if text.contains("NIST CURVE: P-384") || text.contains("secp384r1") {
        "ecdsa-p384".into()
    } else {
        format!("unknown:{}", text.lines().next().unwrap_or(""))
    }
}

/// Where [`ec_cert_in`] writes, and who signs.
#[derive(Debug, Clone, Copy)]
pub struct EcCert<'a> {
    /// The subject's common name.
    pub cn: &'a str,
    /// The certificate file to write (PEM), relative to the directory.
    pub cert: &'a str,
    /// Its private key file to write (PKCS#8 PEM, mode 0600), relative to the directory.
    pub key: &'a str,
    /// The signing CA's certificate and key files, relative to the directory; `None`: self-signed
    /// (`req -x509`, with the `v3_ca` extensions of openssl.cnf unless `extensions` say otherwise).
    pub issuer: Option<(&'a str, &'a str)>,
    /// `-addext` values (e.g. `subjectAltName=IP:127.0.0.1`).
    pub extensions: &'a [&'a str],
}

/// A new EC P-256 key and a certificate for it (10 years), made in `dir` by one `openssl req`: with
/// OpenSSL 3, `req -CA` makes key, request and signature in one process. The key is PKCS#8 PEM
/// (`BEGIN PRIVATE KEY`), which rustls, Go and openssl all read; made 0600 whatever the umask.
pub fn ec_cert_in(dir: &Path, c: &EcCert) -> Result<(), String> {
    let subject = format!("/CN={}", c.cn);
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        &subject,
        "-keyout",
        c.key,
        "-out",
        c.cert,
    ];
    match c.issuer {
        None => args.push("-x509"),
        Some((ca_cert, ca_key)) => {
            args.extend(["-new", "-CA", ca_cert, "-CAkey", ca_key]);
            args.extend(["-copy_extensions", "none"]);
        }
    }
    for ext in c.extensions {
        args.extend(["-addext", ext]);
    }
    openssl_in(dir, &args)?;
    let key = dir.join(c.key);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("chmod 600 {}: {e}", key.display()))
}
