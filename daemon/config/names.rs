//! Checks on names and addresses, with messages that say which part is wrong and why.

use std::net::{IpAddr, SocketAddr};

/// A certificate name: lower-cased, trailing dot stripped; `*.` allowed as the whole first label.
pub(crate) fn normalize_domain(input: &str) -> Result<String, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the domain name is empty".into());
    }
    if s.contains("://") || s.contains('/') {
        return Err(format!(
            "`{s}` is not a domain name (it looks like a URL or path): write only the host name, e.g. `gitlab.example.org`"
        ));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`{s}` is an IP address: renewd requests certificates for DNS names only"
        ));
    }
    if !s.is_ascii() {
        return Err(format!(
            "`{s}` contains non-ASCII characters: write internationalized names in their ASCII (punycode, `xn--…`) form"
        ));
    }
    let lower = s.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let (wild, rest) = match name.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, name),
    };
    if rest.contains('*') {
        return Err(format!(
            "`{s}`: `*` is only allowed as the whole first label of a wildcard name, as in `*.example.org`"
        ));
    }
    check_labels(s, rest, false)?;
    let labels = rest.split('.').count();
    if labels < 2 {
        return Err(if wild {
            format!("`{s}`: a wildcard needs at least two labels after `*.`, as in `*.example.org`")
        } else {
            format!(
                "`{s}` is not a fully-qualified name: write it with its domain, e.g. `{rest}.example.org`"
            )
        });
    }
    if name.len() > 253 {
        return Err(format!(
            "`{s}` is {} characters long; a domain name may have at most 253",
            name.len()
        ));
    }
    Ok(name.to_string())
}

/// A zone name (`_acme-challenge.host.example.org`): like a host name, but `_` is allowed.
pub(crate) fn normalize_zone(input: &str) -> Result<String, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the zone name is empty".into());
    }
    if !s.is_ascii() {
        return Err(format!(
            "`{s}` contains non-ASCII characters: write the zone in its ASCII (punycode) form"
        ));
    }
    let lower = s.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.contains('*') {
        return Err(format!("`{s}`: a zone name cannot contain `*`"));
    }
    check_labels(s, name, true)?;
    if name.len() > 253 {
        return Err(format!(
            "`{s}` is {} characters long; a domain name may have at most 253",
            name.len()
        ));
    }
    Ok(name.to_string())
}

fn check_labels(orig: &str, name: &str, allow_underscore: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("`{orig}` has no labels"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "`{orig}` has an empty label (two dots in a row, or a leading dot)"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "`{orig}`: label `{label}` is {} characters long; a label may have at most 63",
                label.len()
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || (allow_underscore && c == '_')))
        {
            let allowed = if allow_underscore {
                "letters, digits, `-` and `_`"
            } else {
                "letters, digits and `-`"
            };
            return Err(format!(
                "`{orig}`: label `{label}` contains `{bad}`, which is not allowed in a host name ({allowed} only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{orig}`: label `{label}` starts or ends with `-`, which is not allowed"
            ));
        }
    }
    Ok(())
}

/// `host`, `host:port`, `IP`, `IP:port`, `[v6]`, `[v6]:port`: returns (host, port).
pub(crate) fn parse_host_port(input: &str, default_port: u16) -> Result<(String, u16), String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the address is empty".into());
    }
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "`{s}`: the port `{p}` is not a number from 1 to 65535"
            )),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: missing `]` after the IPv6 address"))?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{s}`: `{host}` is not an IPv6 address"))?;
        let p = match after {
            "" => default_port,
            a => port(
                a.strip_prefix(':')
                    .ok_or_else(|| format!("`{s}`: expected `:PORT` after `]`"))?,
            )?,
        };
        return Ok((host.to_string(), p));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok((s.to_string(), default_port));
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => {
            return Err(format!(
            "`{s}` is not a valid address; write an IPv6 address with a port as `[2001:db8::1]:53`"
        ))
        }
        Some((h, p)) => (h, port(p)?),
        None => (s, default_port),
    };
    if host.parse::<IpAddr>().is_err() {
        let h = host.strip_suffix('.').unwrap_or(host);
        check_labels(host, &h.to_ascii_lowercase(), true)
            .map_err(|e| format!("`{s}` is not a valid host name: {e}"))?;
    }
    Ok((host.to_string(), p))
}

/// `IP` or `IP:port` / `[v6]:port` (no names: this is how names get resolved).
pub(crate) fn parse_resolver(input: &str) -> Result<SocketAddr, String> {
    let (host, port) = parse_host_port(input, 53)?;
    let ip: IpAddr = host.parse().map_err(|_| {
        format!("`{}` is not an IP address: a resolver must be given by address, e.g. `127.0.0.1` or `[::1]:53`", input.trim())
    })?;
    Ok(SocketAddr::new(ip, port))
}

/// `metrics_listen`: `IP:PORT` or `[v6]:PORT` on a loopback address. The listener has no
/// authentication or TLS, so it is never offered beyond the machine: export further through
/// node_exporter's textfile collector (`metrics_file`) or a reverse proxy.
pub(crate) fn parse_metrics_listen(input: &str) -> Result<SocketAddr, String> {
    let s = input.trim();
    let (host, port) = parse_host_port(s, 0)?;
    let ip: IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) if host.eq_ignore_ascii_case("localhost") => {
            return Err(format!(
                "`{s}`: write the loopback address itself, e.g. `127.0.0.1:{}`",
                if port == 0 { 9469 } else { port }
            ))
        }
        Err(_) => {
            return Err(format!(
                "`{s}` is not an IP address and port: write e.g. `127.0.0.1:9469` or `[::1]:9469`"
            ))
        }
    };
    if port == 0 {
        return Err(format!(
            "`{s}` has no port: write ADDRESS:PORT, e.g. `{}`",
            SocketAddr::new(ip, 9469)
        ));
    }
    if !ip.is_loopback() {
        return Err(format!(
            "`{s}` is not a loopback address: the metrics listener has no authentication, so it \
             listens on 127.0.0.1 or [::1] only; export further with `metrics_file` (node_exporter's \
             textfile collector) or a reverse proxy"
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Levenshtein distance (small strings: config keys). Two rows, allocated once.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate, if it is close enough to be a plausible typo.
///
/// Cheap for any input: a candidate whose length differs by more than the allowed distance cannot be
/// close enough (the distance is at least the difference in length), so a long word is never compared.
pub(crate) fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase().replace('-', "_");
    let wlen = w.chars().count();
    candidates
        .iter()
        .filter_map(|c| {
            let allowed = (c.len().max(wlen) / 3).max(1);
            if c.starts_with(&w) && wlen >= 3 {
                return Some((c.len() - w.len(), *c));
            }
            if c.len().abs_diff(wlen) > allowed {
                return None;
            }
            let d = distance(&w, c);
            (d <= allowed).then_some((d, *c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            normalize_domain("GitLab.Example.ORG.").unwrap(),
            "gitlab.example.org"
        );
        assert_eq!(normalize_domain("*.example.org").unwrap(), "*.example.org");
        assert!(normalize_domain("gitlab")
            .unwrap_err()
            .contains("fully-qualified"));
        assert!(normalize_domain("a.*.example.org")
            .unwrap_err()
            .contains("first label"));
        assert!(normalize_domain("foo_bar.example.org")
            .unwrap_err()
            .contains("label `foo_bar` contains `_`"));
        assert!(normalize_domain("-a.example.org")
            .unwrap_err()
            .contains("starts or ends"));
        assert!(normalize_domain("a..example.org")
            .unwrap_err()
            .contains("empty label"));
        assert!(normalize_domain(&format!("{}.org", "a".repeat(64)))
            .unwrap_err()
            .contains("63"));
        assert!(normalize_domain("192.0.2.1")
            .unwrap_err()
            .contains("IP address"));
        assert_eq!(
            normalize_zone("_acme-challenge.gitlab.example.org.").unwrap(),
            "_acme-challenge.gitlab.example.org"
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_host_port("ns.example.org", 53).unwrap(),
            ("ns.example.org".into(), 53)
        );
        assert_eq!(parse_host_port("ns:5353", 53).unwrap(), ("ns".into(), 5353));
        assert_eq!(parse_host_port("[::1]:54", 53).unwrap(), ("::1".into(), 54));
        assert_eq!(
            parse_host_port("2001:db8::1", 53).unwrap(),
            ("2001:db8::1".into(), 53)
        );
        assert!(parse_host_port("ns:0", 53).is_err());
        assert!(parse_host_port("ns:abc", 53).is_err());
        assert_eq!(
            parse_resolver("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert!(parse_resolver("dns.example").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            nearest("domain", &["domains", "dns", "deploy"]),
            Some("domains")
        );
        assert_eq!(
            nearest("renew-before", &["renew_before"]),
            Some("renew_before")
        );
        assert_eq!(nearest("zzzzzz", &["domains", "dns"]), None);
    }
}
