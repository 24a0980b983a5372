//! `cluster:` — several renewd hosts sharing one set of certificates through etcd.
//!
//! ```yaml
//! cluster:
//!   etcd: { endpoints: [https://10.0.0.1:2379], ca: F, cert: F, key: F, user: U, password_file: F }
//!   prefix: /renewd/
//!   member: web1                  # default: the host name
//!   seal_key_file: /etc/renewd/secrets/cluster.seal
//! ```
//!
//! Files are read here, once per load: a rotated key or certificate is a changed setting. Secrets (the
//! TLS client key, the password, the seal key) stay in [`Secret`]s.

use std::path::Path;

use super::error::Diags;
use super::files::{self, FileKind};
use super::raw::Node;
use super::settings::{ClusterSettings, EtcdAuth, Secret};
use super::validate::{fields, nonempty_string, path_value, string_list, sub};

pub(crate) const CLUSTER_KEYS: &[&str] = &["etcd", "prefix", "member", "seal_key_file"];
pub(crate) const ETCD_KEYS: &[&str] = &["endpoints", "ca", "cert", "key", "user", "password_file"];
/// `cluster.prefix` when not set.
pub const DEFAULT_PREFIX: &str = "/renewd/";

const SEAL_ADVICE: &str = "it must hold 32 random bytes, base64, on one line: `openssl rand -base64 32 > FILE; chmod 600 FILE`, the same file on every member";

pub(crate) fn cluster(
    d: &mut Diags,
    node: &Node,
    base: &Path,
    strict: bool,
) -> Option<ClusterSettings> {
    let f = fields(d, node, "cluster", CLUSTER_KEYS, &|_| None)?;
    let errs = d.error_count();
    let etcd = match f.get("etcd") {
        Some(n) => etcd(d, n, base, strict),
        None => {
            d.err(f.pos, "`cluster` has no `etcd` (the etcd cluster's `endpoints`, e.g. `etcd: { endpoints: [https://10.0.0.1:2379], ca: /etc/renewd/etcd-ca.pem, cert: ..., key: ... }`)");
            None
        }
    };
    let prefix = match f.get("prefix") {
        None => Some(DEFAULT_PREFIX.to_string()),
        Some(n) => nonempty_string(d, n, "cluster.prefix").and_then(|p| {
            if !p.starts_with('/') || p.contains(char::is_whitespace) {
                d.err(n.pos, format!("`cluster.prefix`: `{p}` must be a key path starting with `/`, without spaces, e.g. `/renewd/`"));
                None
            } else if p.ends_with('/') {
                Some(p)
            } else {
                Some(format!("{p}/"))
            }
        }),
    };
    let member = match f.get("member") {
        Some(n) => nonempty_string(d, n, "cluster.member").and_then(|m| {
            if member_name_ok(&m) {
                Some(m)
            } else {
                d.err(n.pos, format!("`cluster.member`: `{m}` is not a valid member name: use letters, digits, `.`, `_` and `-`"));
                None
            }
        }),
        None => match host_name() {
            Some(h) if member_name_ok(&h) => Some(h),
            other => {
                d.err(f.pos, format!("`cluster` has no `member` and the host name ({}) cannot serve as one: set `member: NAME` (letters, digits, `.`, `_`, `-`), unique in the cluster",
                    other.as_deref().unwrap_or("unknown")));
                None
            }
        },
    };
    let seal = match f.get("seal_key_file") {
        None => {
            d.err(
                f.pos,
                format!("`cluster` has no `seal_key_file` (the key that seals private keys and account credentials in etcd): {SEAL_ADVICE}"),
            );
            None
        }
        Some(n) => path_value(d, n, "cluster.seal_key_file", base).and_then(|p| {
            let text = files::read_secret(
                d,
                n.pos,
                "cluster.seal_key_file",
                &p,
                FileKind::SealKey,
                strict,
            )?;
            match decode_seal_key(&text) {
                Ok(key) => Some((p, key)),
                Err(e) => {
                    d.err(
                        n.pos,
                        format!(
                            "`cluster.seal_key_file`: {} {e}; {SEAL_ADVICE}",
                            p.display()
                        ),
                    );
                    None
                }
            }
        }),
    };
    if d.error_count() != errs {
        return None;
    }
    let (endpoints, tls, auth) = etcd?;
    let (seal_key_file, seal_key) = seal?;
    Some(ClusterSettings {
        endpoints,
        tls,
        auth,
        prefix: prefix?,
        member: member?,
        seal_key,
        seal_key_file,
    })
}

type Etcd = (
    Vec<String>,
    Option<super::settings::EtcdTls>,
    Option<EtcdAuth>,
);

fn etcd(d: &mut Diags, node: &Node, base: &Path, strict: bool) -> Option<Etcd> {
    let f = fields(d, node, "cluster.etcd", ETCD_KEYS, &|_| None)?;
    let errs = d.error_count();
    let mut endpoints = Vec::new();
    match f.get("endpoints") {
        None => d.err(f.pos, "`cluster.etcd` has no `endpoints` (the client URLs of the etcd members, e.g. `[https://10.0.0.1:2379, https://10.0.0.2:2379, https://10.0.0.3:2379]`)"),
        Some(n) => {
            let list = match &n.kind {
                super::raw::Kind::Str(s) => Some(vec![(s.trim().to_string(), n.pos)]),
                _ => string_list(d, n, "cluster.etcd.endpoints"),
            };
            for (url, pos) in list.unwrap_or_default() {
                match endpoint_ok(&url) {
                    Ok(()) => endpoints.push((url, pos)),
                    Err(e) => d.err(pos, format!("`cluster.etcd.endpoints`: `{url}` {e}")),
                }
            }
            if endpoints.is_empty() && d.error_count() == errs {
                d.err(n.pos, "`cluster.etcd.endpoints` is empty: list the client URLs of the etcd members");
            }
        }
    }
    let https = endpoints
        .iter()
        .filter(|(u, _)| u.starts_with("https://"))
        .count();
    if https != 0 && https != endpoints.len() {
        d.err(f.pos, "`cluster.etcd.endpoints` mixes https:// and http:// URLs: use one scheme for every member");
    }
    let https = https != 0;
    let file =
        |d: &mut Diags, key: &str| -> Option<(std::path::PathBuf, Vec<u8>, super::error::Pos)> {
            let n = f.get(key)?;
            let kp = sub("cluster.etcd", key);
            let p = path_value(d, n, &kp, base)?;
            match crate::fsread::read_capped(&p, crate::fsread::TEXT_MAX) {
                Ok(bytes) => Some((p, bytes, n.pos)),
                Err(e) => {
                    d.err(n.pos, format!("`{kp}`: {} {e}", p.display()));
                    None
                }
            }
        };
    let ca = file(d, "ca");
    let cert = file(d, "cert");
    let key = f.get("key").and_then(|n| {
        let p = path_value(d, n, "cluster.etcd.key", base)?;
        let text = files::read_secret(d, n.pos, "cluster.etcd.key", &p, FileKind::EtcdKey, strict)?;
        Some((p, text, n.pos))
    });
    for (what, pos) in [
        ("ca", ca.as_ref().map(|c| c.2)),
        ("cert", cert.as_ref().map(|c| c.2)),
        ("key", key.as_ref().map(|k| k.2)),
    ] {
        if let (Some(pos), false) = (pos, https) {
            d.err(pos, format!("`cluster.etcd.{what}` is set but the endpoints are http://: TLS needs https:// endpoints"));
        }
    }
    if https && ca.is_none() {
        d.err(f.pos, "`cluster.etcd` has https:// endpoints but no `ca`: name the PEM file of the CA that signed the etcd members' server certificates");
    }
    match (&cert, &key) {
        (Some(_), None) if !f.has("key") => d.err(f.pos, "`cluster.etcd` has a client `cert` but no `key`: give both (etcd's --client-cert-auth) or neither"),
        (None, Some(_)) if !f.has("cert") => d.err(f.pos, "`cluster.etcd` has a client `key` but no `cert`: give both (etcd's --client-cert-auth) or neither"),
        _ => {}
    }
    if let Some((p, bytes, pos)) = &ca {
        if let Err(e) = pem_has(bytes, "CERTIFICATE") {
            d.err(*pos, format!("`cluster.etcd.ca`: {} {e}", p.display()));
        }
    }
    if let Some((p, bytes, pos)) = &cert {
        if let Err(e) = pem_has(bytes, "CERTIFICATE") {
            d.err(*pos, format!("`cluster.etcd.cert`: {} {e}", p.display()));
        }
    }
    if let Some((p, text, pos)) = &key {
        if let Err(e) = pem_has(text.as_bytes(), "PRIVATE KEY") {
            d.err(*pos, format!("`cluster.etcd.key`: {} {e}", p.display()));
        }
    }
    let user = f
        .get("user")
        .and_then(|n| nonempty_string(d, n, "cluster.etcd.user"));
    let password = f.get("password_file").and_then(|n| {
        let p = path_value(d, n, "cluster.etcd.password_file", base)?;
        let text = files::read_secret(d, n.pos, "cluster.etcd.password_file", &p, FileKind::EtcdPassword, strict)?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
        if line.is_empty() {
            d.err(n.pos, format!("`cluster.etcd.password_file`: {} is empty: put the etcd user's password on its first line", p.display()));
            return None;
        }
        Some(line)
    });
    match (&user, &password) {
        (Some(_), None) if !f.has("password_file") => {
            d.err(f.pos, "`cluster.etcd` has a `user` but no `password_file`")
        }
        (None, Some(_)) => d.err(f.pos, "`cluster.etcd` has a `password_file` but no `user`"),
        _ => {}
    }
    if d.error_count() != errs {
        return None;
    }
    let tls = ca.map(|(_, ca_pem, _)| super::settings::EtcdTls {
        ca_pem,
        identity: cert
            .zip(key)
            .map(|((_, c, _), (_, k, _))| (c, Secret::new(k.into_bytes()))),
    });
    let auth = user.zip(password).map(|(user, p)| EtcdAuth {
        user,
        password: Secret::new(p.into_bytes()),
    });
    Some((endpoints.into_iter().map(|(u, _)| u).collect(), tls, auth))
}

/// `http(s)://HOST:PORT` (a path is not allowed: etcd's gRPC service is at the root).
fn endpoint_ok(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must be an https:// (or http://) URL, e.g. https://10.0.0.1:2379")?;
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.is_empty() || hostport.contains(['/', ' ', '?', '#']) {
        return Err("must be http(s)://HOST:PORT, without a path");
    }
    let port = hostport.rsplit_once(':').map(|(_, p)| p);
    match port {
        Some(p) if p.parse::<u16>().is_ok_and(|p| p != 0) => Ok(()),
        _ => Err("needs a port (etcd's client port is usually 2379)"),
    }
}

fn pem_has(bytes: &[u8], label: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains(&format!("-----BEGIN {label}-----"))
        || (label == "PRIVATE KEY"
            && (text.contains("-----BEGIN EC PRIVATE KEY-----")
                || text.contains("-----BEGIN RSA PRIVATE KEY-----")))
    {
        Ok(())
    } else {
        Err(format!("holds no PEM `{label}` block"))
    }
}

fn member_name_ok(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 64
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The seal key file: 32 bytes, standard base64 (what `openssl rand -base64 32` writes).
pub(crate) fn decode_seal_key(text: &str) -> Result<Secret, String> {
    use base64::Engine as _;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let [line] = lines.as_slice() else {
        return Err(format!("holds {} non-empty lines, not one", lines.len()));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| "is not base64".to_string())?;
    if bytes.len() != 32 {
        return Err(format!("decodes to {} bytes, not 32", bytes.len()));
    }
    Ok(Secret::new(bytes))
}

/// The host name (`gethostname(2)`), the default member name.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8(buf[..end].to_vec()).ok()?;
    // The short name: members are named, not addressed.
    Some(name.split('.').next().unwrap_or(&name).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_scheme_and_a_port_and_no_path() {
        assert!(endpoint_ok("https://10.0.0.1:2379").is_ok());
        assert!(endpoint_ok("http://etcd1.example:2379/").is_ok());
        assert!(endpoint_ok("10.0.0.1:2379").is_err());
        assert!(endpoint_ok("https://10.0.0.1").is_err());
        assert!(endpoint_ok("https://10.0.0.1:2379/v3").is_err());
    }

    #[test]
    fn a_seal_key_is_one_line_of_32_bytes_base64() {
        assert!(decode_seal_key("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\n").is_ok());
        assert!(decode_seal_key("MDEyMzQ1Njc4OTAx\n")
            .unwrap_err()
            .contains("12 bytes"));
        assert!(decode_seal_key("a\nb\n")
            .unwrap_err()
            .contains("2 non-empty"));
        assert!(decode_seal_key("!!!\n").unwrap_err().contains("base64"));
    }
}
