//! The configuration reference: every key of `renewd.yaml` and of a spec, with its type, default and an
//! example. `renewd.yaml(5)` is rendered from [`REFERENCE`] (packaging/docs.rs), and a test checks that
//! its keys are exactly the ones the loader accepts ([`loader_paths`], built from the key lists
//! `validate` checks against), so the reference cannot drift from the loader.

use super::cluster::{CLUSTER_KEYS, ETCD_KEYS};
use super::validate::{
    ACCOUNT_KEYS, COMMAND_KEYS, DEPLOY_KEYS, DNS_KEYS, EAB_KEYS, GLOBAL_KEYS, KEY_KEYS,
    PROPAGATION_KEYS, RELOAD_KINDS, SERVER_KEYS, SPEC_KEYS,
};

/// Where a key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `renewd.yaml`.
    Global,
    /// `certs.d/NAME.yaml`, or under `defaults:` in `renewd.yaml`.
    Spec,
}

/// One key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    pub scope: Scope,
    /// Dotted path; `NAME` stands for a name you choose, `[]` for a list item.
    pub path: &'static str,
    pub ty: &'static str,
    /// `-` when there is none (the key is required, or absent means "off").
    pub default: &'static str,
    pub example: &'static str,
    pub doc: &'static str,
}

const fn g(
    path: &'static str,
    ty: &'static str,
    default: &'static str,
    example: &'static str,
    doc: &'static str,
) -> KeyDoc {
    KeyDoc {
        scope: Scope::Global,
        path,
        ty,
        default,
        example,
        doc,
    }
}

const fn s(
    path: &'static str,
    ty: &'static str,
    default: &'static str,
    example: &'static str,
    doc: &'static str,
) -> KeyDoc {
    KeyDoc {
        scope: Scope::Spec,
        path,
        ty,
        default,
        example,
        doc,
    }
}

/// Every key, in the order the reference shows them.
pub const REFERENCE: &[KeyDoc] = &[
    g("state_dir", "path", "/var/lib/renewd", "state_dir: /var/lib/renewd",
      "Accounts, live/ and archive/ certificates, the cleanup journal, status.json. Moving it needs a restart."),
    g("certs_dir", "path", "certs.d beside renewd.yaml", "certs_dir: /etc/renewd/certs.d",
      "The directory of spec files (NAME.yaml, one per certificate); watched by the daemon."),
    g("workers", "integer 1..", "4", "workers: 8",
      "Renewals that work at once. A renewal waiting for the DNS servers or the CA's validation gives its place to the next one and gets it back first when its wait is over; at most 8 × workers renewals are in flight."),
    g("stop_grace", "duration", "30s", "stop_grace: 1m",
      "After SIGTERM, how long renewals in flight may go on before they are cancelled (their TXT values are removed either way)."),
    g("attempt_timeout", "duration, at least 5s", "10m", "attempt_timeout: 15m",
      "The longest one renewal attempt may take, from the order to the cleanup; every network call has its own timeout too."),
    g("accounts", "map of NAME to account", "-", "accounts: { le: { directory: https://acme-v02.api.letsencrypt.org/directory } }",
      "The ACME accounts; a spec names one with `account:`."),
    g("accounts.NAME.directory", "URL", "- (required)", "directory: https://acme.ca.example/directory",
      "The CA's ACME directory URL."),
    g("accounts.NAME.contact", "list of URLs", "[]", "contact: [mailto:pki@example.org]",
      "Contact addresses registered with the account (`renewd account update` sends them again)."),
    g("accounts.NAME.eab", "map", "-", "eab: { kid: KID, hmac_key_file: /etc/renewd/secrets/ca.eab }",
      "External Account Binding, for CAs that require it; used once, at registration."),
    g("accounts.NAME.eab.kid", "string", "- (required with eab)", "kid: \"KID-1\"",
      "The key id the CA gave you."),
    g("accounts.NAME.eab.hmac_key_file", "path to a secret file", "- (required with eab)", "hmac_key_file: /etc/renewd/secrets/ca.eab",
      "The HMAC key, one line, base64url as CAs hand it out; mode 0600."),
    g("accounts.NAME.trust", "path to a PEM file", "- (system roots only)", "trust: /etc/renewd/private-ca.pem",
      "Extra roots for the CA's TLS certificate (a private CA), added to the system roots."),
    g("accounts.NAME.ari", "boolean", "true", "ari: false",
      "Ask this CA for renewal windows (RFC 9773 ARI) and send `replaces`; false for a CA whose ARI misbehaves."),
    g("dns_servers", "map of NAME to server", "-", "dns_servers: { primary: { address: ns1.example.org, tsig_key_file: /etc/renewd/secrets/acme-update.key } }",
      "The RFC 2136 primaries that take the TXT updates; a spec names one with `dns:`."),
    g("dns_servers.NAME.address", "host or host:port", "- (required)", "address: \"192.0.2.53:53\"",
      "The (hidden) primary that accepts TSIG-signed updates; port 53 by default."),
    g("dns_servers.NAME.tsig_key_file", "path to a BIND key file", "- (required)", "tsig_key_file: /etc/renewd/secrets/acme-update.key",
      "As `tsig-keygen -a hmac-sha256 NAME` writes it; mode 0600. If the file does not exist, only dns-persist-01 certificates whose record stands can renew through this server."),
    g("dns_servers.NAME.tsig_key_name", "string", "the only key in the file", "tsig_key_name: acme-update",
      "Which key of a file holding several."),
    g("dns_servers.NAME.ttl", "integer 1..86400", "60", "ttl: 120",
      "TTL of the TXT records written."),
    g("propagation", "map", "-", "propagation: { timeout: 5m }",
      "How renewd waits until every authoritative server serves the TXT values (no fixed sleep)."),
    g("propagation.timeout", "duration", "5m", "timeout: 2m",
      "The longest wait for every authoritative server."),
    g("propagation.nameservers", "list of host[:port]", "the zone's NS set", "nameservers: [\"192.0.2.1\", \"192.0.2.2:5353\"]",
      "Check these servers instead of the zone's NS set (split horizon, hidden secondaries)."),
    g("resolver", "list of IP[:port]", "/etc/resolv.conf", "resolver: [\"192.0.2.10\"]",
      "Recursive resolvers for zone discovery (SOA, NS, CNAME, addresses)."),
    g("metrics_file", "path", "- (off)", "metrics_file: /var/lib/prometheus/node-exporter/renewd.prom",
      "Prometheus metrics as a node_exporter textfile, rewritten atomically when they change."),
    g("metrics_listen", "loopback IP:port", "- (off)", "metrics_listen: \"127.0.0.1:9925\"",
      "Serve GET /metrics on this loopback address."),
    g("allow_readable_secrets", "boolean", "false", "allow_readable_secrets: true",
      "Accept secret files (TSIG, EAB) that group or others may read, with a warning; without it they are errors."),
    g("cluster", "map", "- (this host alone)", "cluster: { etcd: { endpoints: [https://10.0.0.1:2379] }, seal_key_file: /etc/renewd/secrets/cluster.seal }",
      "Several renewd hosts share one set of certificates through etcd: each certificate is renewed by one member at a time (a lease-bound lock), every member installs and deploys the result."),
    g("cluster.etcd", "map", "- (required)", "etcd: { endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379, https://10.0.0.3:2379], ca: /etc/renewd/etcd/ca.pem }",
      "How to reach etcd (v3 API; Debian's etcd-server)."),
    g("cluster.etcd.endpoints", "list of URLs", "- (required)", "endpoints: [https://10.0.0.1:2379]",
      "The client URLs of the etcd members, all https:// or all http://."),
    g("cluster.etcd.ca", "path (PEM)", "- (required with https://)", "ca: /etc/renewd/etcd/ca.pem",
      "The CA that signed the etcd members' server certificates."),
    g("cluster.etcd.cert", "path (PEM)", "-", "cert: /etc/renewd/etcd/web1.pem",
      "Client certificate, for etcd's --client-cert-auth; with `key`."),
    g("cluster.etcd.key", "path (PEM), secret", "-", "key: /etc/renewd/secrets/etcd-web1.key",
      "The client certificate's private key (mode 0600)."),
    g("cluster.etcd.user", "string", "-", "user: renewd",
      "etcd user (etcd auth enabled); with `password_file`."),
    g("cluster.etcd.password_file", "path, secret", "-", "password_file: /etc/renewd/secrets/etcd.password",
      "The etcd user's password on the first line (mode 0600)."),
    g("cluster.prefix", "key path", "/renewd/", "prefix: /renewd/prod/",
      "Every etcd key renewd writes starts with it; clusters sharing an etcd use different prefixes."),
    g("cluster.member", "name", "the host name", "member: web1",
      "This member's name, unique in the cluster: shown as who renewed and who deployed."),
    g("cluster.seal_key_file", "path, secret", "- (required)", "seal_key_file: /etc/renewd/secrets/cluster.seal",
      "32 random bytes, base64 (`openssl rand -base64 32`), the same on every member, mode 0600: private keys and account credentials are sealed with it (AES-256-GCM) before they reach etcd."),
    g("defaults", "map of spec keys", "-", "defaults: { account: le, dns: primary, key: { type: ecdsa } }",
      "Any spec key except `domains`: the value for every spec that does not set it."),
    s("domains", "list of names", "- (required)", "domains: [www.example.org, \"*.example.org\"]",
      "The certificate's names; the first is the subject CN. A name may belong to one spec only."),
    s("account", "account NAME", "the only account", "account: le",
      "The `accounts:` entry to order with."),
    s("key", "map (or rsa, rsa3072, rsa4096, ecdsa, ecdsa-p384)", "{ type: rsa, bits: 2048 }", "key: { type: ecdsa, curve: p256 }",
      "The certificate's key."),
    s("key.type", "rsa | ecdsa", "rsa", "type: ecdsa", "Key algorithm."),
    s("key.bits", "2048 | 3072 | 4096", "2048", "bits: 3072", "RSA key size."),
    s("key.curve", "p256 | p384", "p256", "curve: p384", "ECDSA curve."),
    s("key.reuse", "boolean", "false", "reuse: true",
      "Keep the live private key across renewals (TLSA/DANE, pinned keys) when it is of this type."),
    s("dns", "dns server NAME", "the only dns server", "dns: primary",
      "The `dns_servers:` entry the TXT updates go to."),
    s("zone", "DNS name", "discovered (SOA, following CNAMEs)", "zone: _acme-challenge.www.example.org",
      "The zone to update for every name of this certificate."),
    s("renew_before", "duration", "- (a third of the lifetime left; half for 10 days or less; or the CA's ARI window)", "renew_before: 30d",
      "Renew this long before notAfter (capped at half the lifetime)."),
    s("profile", "string", "- (the CA's default)", "profile: shortlived",
      "The ACME profile to order (the CA lists them in its directory's meta.profiles)."),
    s("challenge", "dns-01 | dns-persist-01", "dns-01", "challenge: dns-persist-01",
      "How control is proven: a TXT value per order, or one standing _validation-persist record written once."),
    s("persist_until", "date (YYYY-MM-DD) or RFC 3339 time", "-", "persist_until: 2027-12-31",
      "dns-persist-01 only: the record's persistUntil (a date means the end of that day, UTC)."),
    s("preferred_chain", "string (an issuer CN)", "- (the CA's default chain)", "preferred_chain: \"ISRG Root X1\"",
      "Install the chain whose topmost certificate is issued by this CN, among the default and the CA's alternate chains; the default when none is."),
    s("deploy", "list of targets", "[]", "deploy: [ { fullchain: /etc/nginx/tls/www.crt, key: /etc/nginx/tls/www.key } ]",
      "Where the certificate is copied after each renewal, all targets or none."),
    s("deploy[].fullchain", "path", "-", "fullchain: /etc/ssl/www.crt", "Certificate and chain."),
    s("deploy[].cert", "path", "-", "cert: /etc/ssl/www-cert.pem", "The certificate alone."),
    s("deploy[].chain", "path", "-", "chain: /etc/ssl/www-chain.pem", "The chain alone."),
    s("deploy[].key", "path", "-", "key: /etc/ssl/private/www.key", "The private key (mode 0600 by default)."),
    s("deploy[].combined", "path", "-", "combined: /etc/haproxy/www.pem", "Key and fullchain in one file (haproxy)."),
    s("deploy[].owner", "user", "root", "owner: root", "Owner of the files written."),
    s("deploy[].group", "group", "root", "group: ssl-cert", "Group of the files written."),
    s("deploy[].mode", "octal string", "0644; 0600 for files with the key", "mode: \"0640\"", "File mode."),
    s("reload", "list of one-key maps", "[]", "reload: [ { nginx: {} } ]",
      "What to reload after a deploy, config test first; a failed test puts the previous files back."),
    s("reload[].gitlab", "service", "-", "gitlab: nginx", "`gitlab-ctl hup SERVICE`."),
    s("reload[].nginx", "{} or { config: PATH }", "-", "nginx: {}", "`nginx -t`, then reload (systemctl, or `nginx -c PATH -s reload`)."),
    s("reload[].nginx.config", "path", "-", "config: /etc/nginx/nginx.conf", "An nginx instance with its own configuration."),
    s("reload[].apache", "{} or { config: PATH }", "-", "apache: {}", "`apachectl configtest`, then graceful."),
    s("reload[].apache.config", "path", "-", "config: /etc/apache2/apache2.conf", "An Apache instance with its own configuration."),
    s("reload[].systemd", "unit", "-", "systemd: haproxy.service", "`systemctl reload UNIT`."),
    s("reload[].command", "list (argv) or { argv, timeout }", "-", "command: [/usr/local/sbin/reload-lb]", "A program, no shell."),
    s("reload[].command.argv", "list of strings", "-", "argv: [/usr/local/sbin/reload-lb, --quiet]", "Program and arguments."),
    s("reload[].command.timeout", "duration", "60s", "timeout: 2m", "Killed (with its process group) after this long."),
    s("hooks", "list of paths or argv lists", "[]", "hooks: [/etc/renewd/hooks/notify.sh]",
      "certbot-style deploy hooks, after the reloads; they get RENEWED_LINEAGE and RENEWED_DOMAINS."),
    s("pre_hooks", "list of paths or argv lists", "[]", "pre_hooks: [/etc/renewd/hooks/pre.sh]",
      "certbot's pre-hooks: each distinct one runs once before the first renewal attempt of a run (renewd renew; in the daemon, when no other renewal is in flight); a failure is logged and the renewal goes on."),
    s("post_hooks", "list of paths or argv lists", "[]", "post_hooks: [/etc/renewd/hooks/post.sh]",
      "certbot's post-hooks: each distinct one runs once when the run's last renewal attempt has ended, successful or not."),
];

/// Every key path the loader accepts, built from its own key lists.
pub fn loader_paths() -> Vec<String> {
    let mut out = Vec::new();
    let under = |out: &mut Vec<String>, prefix: &str, keys: &[&str]| {
        out.extend(keys.iter().map(|k| format!("{prefix}{k}")));
    };
    under(&mut out, "", GLOBAL_KEYS);
    under(&mut out, "cluster.", CLUSTER_KEYS);
    under(&mut out, "cluster.etcd.", ETCD_KEYS);
    under(&mut out, "accounts.NAME.", ACCOUNT_KEYS);
    under(&mut out, "accounts.NAME.eab.", EAB_KEYS);
    under(&mut out, "dns_servers.NAME.", DNS_KEYS);
    under(&mut out, "propagation.", PROPAGATION_KEYS);
    under(&mut out, "", SPEC_KEYS);
    under(&mut out, "key.", KEY_KEYS);
    under(&mut out, "deploy[].", DEPLOY_KEYS);
    under(&mut out, "reload[].", RELOAD_KINDS);
    under(&mut out, "reload[].command.", COMMAND_KEYS);
    under(&mut out, "reload[].nginx.", SERVER_KEYS);
    under(&mut out, "reload[].apache.", SERVER_KEYS);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_has_every_key_the_loader_accepts_and_no_other() {
        let mut documented: Vec<String> = REFERENCE.iter().map(|k| k.path.to_string()).collect();
        documented.sort();
        let n = documented.len();
        documented.dedup();
        assert_eq!(n, documented.len(), "a key documented twice");
        let loader = loader_paths();
        let missing: Vec<&String> = loader.iter().filter(|p| !documented.contains(p)).collect();
        let extra: Vec<&String> = documented.iter().filter(|p| !loader.contains(p)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "not in the reference: {missing:?}; not accepted by the loader: {extra:?}"
        );
        for k in REFERENCE {
            assert!(
                !k.ty.is_empty() && !k.example.is_empty() && !k.doc.is_empty(),
                "{k:?}"
            );
        }
    }
}
