use super::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const SECRET_B64: &str = "2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=";
const KEYGEN: &str = "key \"acme-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=\";\n};\n";
/// bytes 0xfb 0xff 0xfe ... : base64url uses `-` and `_` where standard base64 has `+` and `/`.
const EAB_B64URL: &str = "-__-AAEC";

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new(global: &str) -> Fx {
        let fx = Fx {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir(fx.path("certs.d")).unwrap();
        fs::create_dir(fx.path("secrets")).unwrap();
        fx.secret("secrets/acme-update.key", KEYGEN);
        fx.secret("secrets/ca.eab", &format!("{EAB_B64URL}\n"));
        fx.write("renewd.yaml", global);
        fx
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        fs::write(&p, text).unwrap();
        p
    }
    fn secret(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.write(rel, text);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
    fn spec(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!("certs.d/{name}.yaml"), text)
    }
    fn config(&self) -> PathBuf {
        self.path("renewd.yaml")
    }
    fn load(&self) -> Result<Loaded, ConfigErrors> {
        load(&self.config())
    }
    fn errors(&self) -> Vec<Diagnostic> {
        match self.load() {
            Ok(l) => panic!("expected errors, got {:#?}", l.settings.certs),
            Err(e) => e.0.into_iter().filter(|d| d.is_error()).collect(),
        }
    }
    /// The only error; its Display text.
    fn one_error(&self) -> (Diagnostic, String) {
        let errs = self.errors();
        assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs.clone()));
        let s = errs[0].to_string();
        (errs[0].clone(), s)
    }
}

const GLOBAL: &str = "\
state_dir: state
workers: 8
accounts:
  secom:
    directory: https://acme.ca.example/directory
    contact: [mailto:pki@example.ac.jp]
    eab: { kid: \"KID-1\", hmac_key_file: secrets/ca.eab }
  le:
    directory: https://acme-v02.api.letsencrypt.org/directory
dns_servers:
  acme-master:
    address: acme-master.example.ac.jp:53
    tsig_key_file: secrets/acme-update.key
    ttl: 120
propagation:
  timeout: 2m
  nameservers: [dns1.example.ac.jp, \"192.0.2.1:5353\"]
resolver: [127.0.0.1, \"[::1]:5300\"]
defaults: { account: secom, dns: acme-master, key: { type: rsa, bits: 3072 }, renew_before: 30d }
stop_grace: 5s
";

fn valid() -> Fx {
    let fx = Fx::new(GLOBAL);
    fx.spec("gitlab", "domains: [GitLab.Example.ac.jp.]\n");
    fx.spec(
        "www",
        "\
domains: [www.example.ac.jp, \"*.www.example.ac.jp\"]
account: le
key: { type: ecdsa, curve: p384 }
zone: _acme-challenge.www.example.ac.jp.
renew_before: 720h
deploy:
  - { fullchain: /etc/ssl/www.crt, key: /etc/ssl/www.key, owner: root, group: ssl-cert, mode: \"0640\" }
  - { combined: /etc/haproxy/www.pem, mode: 0600 }
reload:
  - gitlab: nginx
  - nginx: {}
  - apache:
  - systemd: haproxy.service
  - command: [/usr/local/sbin/push, \"{fullchain}\"]
  - command: { argv: [/bin/true], timeout: 5s }
",
    );
    fx
}

#[test]
fn full_valid_config_loads_with_defaults_and_resolved_paths() {
    let fx = valid();
    fx.write("certs.d/README", "not a spec");
    fx.write("certs.d/.hidden.yaml", "garbage: [");
    let loaded = fx.load().unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let s = &loaded.settings;
    let base = fx.dir.path();
    assert_eq!(s.config_path, fx.config());
    assert_eq!(s.state_dir, base.join("state"));
    assert_eq!(s.certs_dir, base.join("certs.d"));
    assert_eq!(s.workers, 8);
    assert_eq!(s.stop_grace, Duration::from_secs(5));
    assert_eq!(s.propagation.timeout, Duration::from_secs(120));
    assert_eq!(
        s.propagation.nameservers,
        vec!["dns1.example.ac.jp", "192.0.2.1:5353"]
    );
    assert_eq!(
        s.resolver,
        vec![
            "127.0.0.1:53".parse().unwrap(),
            "[::1]:5300".parse().unwrap()
        ]
    );

    let secom = &s.accounts["secom"];
    assert_eq!(secom.directory, "https://acme.ca.example/directory");
    assert_eq!(secom.contact, vec!["mailto:pki@example.ac.jp"]);
    let eab = secom.eab.as_ref().unwrap();
    assert_eq!(eab.kid, "KID-1");
    assert_eq!(eab.hmac_key.expose(), &[0xfb, 0xff, 0xfe, 0x00, 0x01, 0x02]);
    assert_eq!(eab.hmac_key_file, base.join("secrets/ca.eab"));
    assert!(s.accounts["le"].eab.is_none());

    let dns = &s.dns_servers["acme-master"];
    assert_eq!(dns.address, "acme-master.example.ac.jp:53");
    assert_eq!(dns.ttl, 120);
    assert_eq!(dns.tsig_key_file, base.join("secrets/acme-update.key"));
    assert_eq!(dns.tsig.as_ref().unwrap().name, "acme-update");
    assert_eq!(
        dns.tsig.as_ref().unwrap().algorithm,
        TsigAlgorithm::HmacSha256
    );
    assert_eq!(dns.tsig.as_ref().unwrap().secret.expose().len(), 32);

    assert_eq!(s.certs.len(), 2);
    let g = &s.certs["gitlab"];
    assert_eq!(g.file, base.join("certs.d/gitlab.yaml"));
    assert_eq!(g.domains, vec!["gitlab.example.ac.jp"]);
    assert_eq!(g.account, "secom");
    assert_eq!(g.dns, "acme-master");
    assert_eq!(g.key, KeySpec::Rsa { bits: 3072 });
    assert_eq!(g.renew_before, Some(Duration::from_secs(30 * 86400)));
    assert_eq!(g.zone, None);
    assert!(g.deploy.is_empty() && g.reload.is_empty());

    let w = &s.certs["www"];
    assert_eq!(w.domains, vec!["www.example.ac.jp", "*.www.example.ac.jp"]);
    assert_eq!(w.account, "le");
    assert_eq!(w.key, KeySpec::EcdsaP384);
    assert_eq!(w.zone.as_deref(), Some("_acme-challenge.www.example.ac.jp"));
    assert_eq!(w.renew_before, Some(Duration::from_secs(720 * 3600)));
    assert_eq!(
        w.deploy,
        vec![
            DeployTarget {
                fullchain: Some("/etc/ssl/www.crt".into()),
                key: Some("/etc/ssl/www.key".into()),
                owner: Some("root".into()),
                group: Some("ssl-cert".into()),
                mode: Some(0o640),
                ..Default::default()
            },
            DeployTarget {
                combined: Some("/etc/haproxy/www.pem".into()),
                mode: Some(0o600),
                ..Default::default()
            },
        ]
    );
    assert_eq!(
        w.reload,
        vec![
            ReloadSpec::Gitlab("nginx".into()),
            ReloadSpec::Nginx,
            ReloadSpec::Apache,
            ReloadSpec::Systemd("haproxy.service".into()),
            ReloadSpec::Command {
                argv: vec!["/usr/local/sbin/push".into(), "{fullchain}".into()],
                timeout: Duration::from_secs(60)
            },
            ReloadSpec::Command {
                argv: vec!["/bin/true".into()],
                timeout: Duration::from_secs(5)
            },
        ]
    );

    // Secrets never show in Debug output.
    let dbg = format!("{s:?}");
    assert!(
        !dbg.contains(SECRET_B64) && !dbg.contains("251, 255"),
        "{dbg}"
    );
    assert!(dbg.contains("Secret(<redacted>)"));
}

#[test]
fn minimal_config_uses_defaults() {
    let fx = Fx::new(
        "accounts: { a: { directory: \"https://ca.example/dir\" } }\n\
         dns_servers: { p: { address: \"192.0.2.53\", tsig_key_file: secrets/acme-update.key } }\n",
    );
    fx.spec("one", "domains: [a.example.org]\n");
    let s = fx.load().unwrap_or_else(|e| panic!("{e}")).settings;
    assert_eq!(s.state_dir, PathBuf::from("/var/lib/renewd"));
    assert_eq!(s.workers, 4);
    assert_eq!(s.stop_grace, Duration::from_secs(30));
    assert_eq!(s.propagation.timeout, Duration::from_secs(300));
    assert_eq!(s.dns_servers["p"].ttl, 60);
    let c = &s.certs["one"];
    // A single account / DNS server is used when neither spec nor defaults name one.
    assert_eq!((c.account.as_str(), c.dns.as_str()), ("a", "p"));
    assert_eq!(c.key, KeySpec::Rsa { bits: 2048 });
}

#[test]
fn unknown_key_suggests_nearest_with_line_and_col() {
    let fx = valid();
    let p = fx.spec(
        "bad",
        "# a comment\nzone: x.example.org\n  \ndomain: [a.example.org]\n",
    );
    let errs = fx.errors();
    let e = errs
        .iter()
        .find(|d| d.message.contains("unknown key"))
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:4:1: error: unknown key `domain`; did you mean `domains`?",
            p.display()
        )
    );

    let fx = Fx::new(&GLOBAL.replace("workers: 8", "worker: 8"));
    fx.spec("ok", "domains: [a.example.org]\n");
    let (e, s) = fx.one_error();
    assert_eq!((e.line, e.col), (Some(2), Some(1)));
    assert!(
        s.ends_with("error: unknown key `worker`; did you mean `workers`?"),
        "{s}"
    );

    // Nested keys carry their path and their own position.
    let fx = Fx::new(&GLOBAL.replace("    ttl: 120", "    tll: 120"));
    fx.spec("ok", "domains: [a.example.org]\n");
    let (e, s) = fx.one_error();
    assert_eq!((e.line, e.col), (Some(14), Some(5)));
    assert!(
        s.contains("unknown key `dns_servers.acme-master.tll`; did you mean `ttl`?"),
        "{s}"
    );
}

#[test]
fn misplaced_keys_are_explained() {
    let fx = valid();
    fx.spec("x", "domains: [x.example.org]\nworkers: 2\n");
    let (_, s) = fx.one_error();
    assert!(s.contains("`workers` is a global setting"), "{s}");
}

#[test]
fn wrong_type() {
    let fx = Fx::new(&GLOBAL.replace("workers: 8", "workers: \"8\""));
    fx.spec("ok", "domains: [a.example.org]\n");
    let (e, s) = fx.one_error();
    assert_eq!((e.line, e.col), (Some(2), Some(10)));
    assert!(
        s.contains("`workers` must be an integer, found a string"),
        "{s}"
    );

    let fx = valid();
    fx.spec("x", "domains: x.example.org\n");
    let (_, s) = fx.one_error();
    assert!(
        s.contains("`domains` must be a list, found a string: write `domains: [x.example.org]`"),
        "{s}"
    );

    let fx = Fx::new(&GLOBAL.replace("workers: 8", "workers: 100"));
    fx.spec("ok", "domains: [a.example.org]\n");
    let (_, s) = fx.one_error();
    assert!(
        s.contains("`workers` must be from 1 to 64, found 100"),
        "{s}"
    );
}

#[test]
fn empty_domains() {
    let fx = valid();
    let p = fx.spec("x", "domains: []\n");
    let (e, s) = fx.one_error();
    assert_eq!(e.file, p);
    assert_eq!((e.line, e.col), (Some(1), Some(10)));
    assert!(s.contains("`domains` is empty"), "{s}");

    let fx = valid();
    fx.spec("y", "account: secom\n");
    let (_, s) = fx.one_error();
    assert!(s.contains("no `domains`"), "{s}");
}

#[test]
fn invalid_domain_names_the_label() {
    let fx = valid();
    fx.spec(
        "x",
        "domains:\n  - ok.example.org\n  - foo_bar.example.org\n  - gitlab\n  - a.*.example.org\n  - ok.example.org\n",
    );
    let errs = fx.errors();
    let text = ConfigErrors(errs.clone()).to_string();
    assert_eq!(errs.len(), 4, "{text}");
    assert_eq!((errs[0].line, errs[0].col), (Some(3), Some(5)));
    assert!(
        errs[0].message.contains("label `foo_bar` contains `_`"),
        "{text}"
    );
    assert!(
        errs[1].message.contains("not a fully-qualified name"),
        "{text}"
    );
    assert!(
        errs[2]
            .message
            .contains("only allowed as the whole first label"),
        "{text}"
    );
    assert!(
        errs[3].message.contains("listed twice (first at line 2)"),
        "{text}"
    );
}

#[test]
fn undefined_account_lists_defined_ones() {
    let fx = valid();
    fx.spec("x", "domains: [x.example.org]\naccount: secomm\n");
    let (e, s) = fx.one_error();
    assert_eq!((e.line, e.col), (Some(2), Some(10)));
    assert!(
        s.contains("`account`: `secomm` is not defined under `accounts` in the global file; defined: `le`, `secom`; did you mean `secom`?"),
        "{s}"
    );
}

#[test]
fn undefined_dns_server() {
    let fx = valid();
    fx.spec("x", "domains: [x.example.org]\ndns: primary\n");
    let (_, s) = fx.one_error();
    assert!(
        s.contains("`dns`: `primary` is not defined under `dns_servers` in the global file; defined: `acme-master`"),
        "{s}"
    );

    // In defaults, reported once in the global file.
    let fx = Fx::new(&GLOBAL.replace("dns: acme-master,", "dns: nope,"));
    fx.spec("a", "domains: [a.example.org]\n");
    fx.spec("b", "domains: [b.example.org]\n");
    let (e, s) = fx.one_error();
    assert_eq!(e.file, fx.config());
    assert!(s.contains("`defaults.dns`: `nope` is not defined"), "{s}");
}

#[test]
fn duplicate_domain_across_specs_names_first_file() {
    let fx = valid();
    let first = fx.spec("a-first", "domains: [dup.example.org]\n");
    let second = fx.spec(
        "b-second",
        "domains: [other.example.org, Dup.Example.org]\n",
    );
    let (e, s) = fx.one_error();
    assert_eq!(e.file, second);
    assert_eq!((e.line, e.col), (Some(1), Some(30)));
    assert!(
        s.contains(&format!(
            "`dup.example.org` is already in spec `a-first` ({})",
            first.display()
        )),
        "{s}"
    );
}

#[test]
fn bad_duration() {
    let fx = valid();
    fx.spec("x", "domains: [x.example.org]\nrenew_before: 30 dayz\n");
    let (e, s) = fx.one_error();
    assert_eq!((e.line, e.col), (Some(2), Some(15)));
    assert!(
        s.contains("`renew_before`: invalid duration `30 dayz`: "),
        "{s}"
    );
    assert!(s.contains("write e.g. `30d`, `720h`"), "{s}");

    let fx = valid();
    fx.spec("x", "domains: [x.example.org]\nrenew_before: 30\n");
    let (_, s) = fx.one_error();
    assert!(s.contains("`30` has no unit"), "{s}");
}

#[test]
fn unreadable_key_file() {
    let fx = Fx::new(&GLOBAL.replace("secrets/acme-update.key", "secrets/missing.key"));
    let spec = fx.spec("ok", "domains: [a.example.org]\n");
    // The dns-01 spec that needs the key is the error; the global file says where the key should be.
    let (e, s) = fx.one_error();
    assert_eq!(e.file, spec);
    assert!(
        s.contains(&fx.path("secrets/missing.key").display().to_string()),
        "{s}"
    );
    assert!(s.contains("does not exist"), "{s}");
    assert!(s.contains("tsig-keygen -a hmac-sha256"), "{s}");
    let all = fx.load().unwrap_err().0;
    let w = all
        .iter()
        .find(|d| !d.is_error() && d.file == fx.config())
        .expect("a warning in the global file");
    assert_eq!((w.line, w.col), (Some(13), Some(20)));
    assert!(w.to_string().contains("does not exist"), "{w}");

    // A dns-persist-01 spec renews without the key while its record stands: a warning, not an error.
    fx.spec(
        "ok",
        "domains: [a.example.org]\nchallenge: dns-persist-01\n",
    );
    let loaded = fx.load().expect("loads");
    assert!(loaded.settings.dns_servers["acme-master"].tsig.is_none());
    assert!(loaded.settings.certs.contains_key("ok"));

    // Standalone parser: FILE: error: ... without a position.
    let err = parse_tsig_key_file(&fx.path("secrets/missing.key")).unwrap_err();
    assert_eq!(err.line, None);
    assert!(err
        .to_string()
        .contains("missing.key: error: cannot read the TSIG key file"));
}

#[test]
fn malformed_key_file_points_at_the_token() {
    let fx = valid();
    let p = fx.secret(
        "secrets/acme-update.key",
        "key \"acme-update\" {\n\talgorithm hmac-sha256\n\tsecret \"2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=\";\n};\n",
    );
    let (e, s) = fx.one_error();
    assert_eq!(e.file, p);
    assert_eq!((e.line, e.col), (Some(3), Some(2)));
    assert!(
        s.contains("expected `;` after the `algorithm` value, found `secret`"),
        "{s}"
    );

    // Invalid base64: the line is given, the secret is not echoed.
    let bad = "key k { algorithm hmac-sha256;\n secret \"not*base64!\"; };";
    let e = parse_tsig_keys(Path::new("k.key"), bad).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("not valid base64") && !e.message.contains("not*base64"));

    let e = parse_tsig_keys(Path::new("k.key"), "key k { secret \"AAAA\"; };").unwrap_err();
    assert!(e.message.contains("has no `algorithm`"), "{e}");
    let e = parse_tsig_keys(Path::new("k.key"), "/* open\nkey k {};").unwrap_err();
    assert!(e.message.contains("unterminated `/*`"), "{e}");
    // A bare secret (no key statement) is not echoed.
    let e = parse_tsig_keys(Path::new("k.key"), &format!("{SECRET_B64}\n")).unwrap_err();
    assert_eq!(e.line, Some(1));
    assert!(!e.message.contains("2Fbc"), "{e}");
    let e = parse_tsig_keys(Path::new("k.key"), "").unwrap_err();
    assert!(e.message.contains("no key"), "{e}");
}

#[test]
fn hmac_md5_is_refused() {
    let text = "key \"old\" {\n\talgorithm hmac-md5;\n\tsecret \"AAAA\";\n};\n";
    let e = parse_tsig_keys(Path::new("old.key"), text).unwrap_err();
    assert_eq!((e.line, e.col), (Some(2), Some(12)));
    assert!(e.message.contains("hmac-md5 is broken"), "{e}");
    assert!(e.message.contains("tsig-keygen -a hmac-sha256 NAME"), "{e}");
}

#[test]
fn tsig_keygen_output_with_every_comment_style() {
    let k = parse_tsig_keys(Path::new("k.key"), KEYGEN).unwrap();
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].name, "acme-update");
    assert_eq!(k[0].algorithm, TsigAlgorithm::HmacSha256);

    let text = format!(
        "# generated by tsig-keygen\n// for acme-master\n/* multi\n   line */\n{}",
        KEYGEN.replace("hmac-sha256;", "HMAC-SHA256. ; # trailing\n\t/* inline */")
    );
    let k = parse_tsig_keys(Path::new("k.key"), &text).unwrap();
    assert_eq!(k[0].algorithm, TsigAlgorithm::HmacSha256);
    use base64::Engine;
    assert_eq!(
        k[0].secret.expose(),
        base64::engine::general_purpose::STANDARD
            .decode(SECRET_B64)
            .unwrap()
            .as_slice()
    );
    let k = parse_tsig_keys(
        Path::new("k.key"),
        "key sha512-key. { algorithm hmac-sha512; secret \"AAAA\"; };",
    )
    .unwrap();
    assert_eq!(
        (k[0].name.as_str(), k[0].algorithm),
        ("sha512-key", TsigAlgorithm::HmacSha512)
    );
}

#[test]
fn multi_key_file() {
    let two = format!("{KEYGEN}\nkey \"other\" {{ algorithm hmac-sha384; secret \"AAAA\"; }};\n");
    let fx = valid();
    fx.secret("secrets/acme-update.key", &two);
    let (e, s) = fx.one_error();
    assert_eq!(e.file, fx.config());
    assert!(
        s.contains("holds 2 keys (`acme-update`, `other`): say which one with `tsig_key_name:`"),
        "{s}"
    );

    let fx = Fx::new(&GLOBAL.replace("    ttl: 120", "    tsig_key_name: other"));
    fx.secret("secrets/acme-update.key", &two);
    fx.spec("ok", "domains: [a.example.org]\n");
    let s = fx.load().unwrap_or_else(|e| panic!("{e}")).settings;
    assert_eq!(
        s.dns_servers["acme-master"].tsig.as_ref().unwrap().name,
        "other"
    );
    assert_eq!(
        s.dns_servers["acme-master"]
            .tsig
            .as_ref()
            .unwrap()
            .algorithm,
        TsigAlgorithm::HmacSha384
    );

    let fx = Fx::new(&GLOBAL.replace("    ttl: 120", "    tsig_key_name: nope"));
    fx.secret("secrets/acme-update.key", &two);
    fx.spec("ok", "domains: [a.example.org]\n");
    let (e, s) = fx.one_error();
    assert_eq!(e.line, Some(14));
    assert!(s.contains("no key named `nope`"), "{s}");
}

#[test]
fn group_readable_secret_is_an_error_unless_allowed() {
    let fx = valid();
    let key = fx.path("secrets/acme-update.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let (e, s) = fx.one_error();
    assert_eq!(e.line, Some(13));
    assert!(
        s.contains(&format!("run `chmod 600 {}`", key.display()))
            && s.contains("allow_readable_secrets: true"),
        "{s}"
    );

    let text = fs::read_to_string(fx.config()).unwrap();
    fs::write(fx.config(), format!("allow_readable_secrets: true\n{text}")).unwrap();
    let loaded = fx.load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert!(w.to_string().contains(": warning: "), "{w}");
}

#[test]
fn the_examples_placeholder_secrets_are_refused() {
    let fx = valid();
    let key = fx.path("secrets/acme-update.key");
    fs::write(
        &key,
        "// Placeholder: replace with the file tsig-keygen wrote\nkey \"acme-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"ZXhhbXBsZS1vbmx5LXJlcGxhY2UtbWUtd2l0aC10aGUtcmVhbC1rZXk=\";\n};\n",
    )
    .unwrap();
    let (_, s) = fx.one_error();
    assert!(s.contains("still holds the example's placeholder"), "{s}");
    // The same placeholder without the comment.
    fs::write(
        &key,
        "key \"acme-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"ZXhhbXBsZS1vbmx5LXJlcGxhY2UtbWUtd2l0aC10aGUtcmVhbC1rZXk=\";\n};\n",
    )
    .unwrap();
    let (_, s) = fx.one_error();
    assert!(s.contains("tsig-keygen -a hmac-sha256"), "{s}");
}

#[test]
fn eab_key_decoding() {
    use files::decode_eab_key;
    assert_eq!(
        decode_eab_key("-__-AAEC\n").unwrap(),
        vec![0xfb, 0xff, 0xfe, 0, 1, 2]
    );
    assert_eq!(
        decode_eab_key("+//+AAEC").unwrap(),
        vec![0xfb, 0xff, 0xfe, 0, 1, 2]
    );
    assert_eq!(decode_eab_key("AAE=").unwrap(), vec![0, 1]);
    assert_eq!(decode_eab_key("AAE").unwrap(), vec![0, 1]);
    assert!(decode_eab_key("\n\n").unwrap_err().contains("empty"));
    assert!(decode_eab_key("AAAA\nBBBB\n")
        .unwrap_err()
        .contains("one line"));
    let e = decode_eab_key("secret!!value").unwrap_err();
    assert!(!e.contains("secret!!value"));

    let fx = valid();
    fx.secret("secrets/ca.eab", "");
    let (e, s) = fx.one_error();
    assert_eq!(e.line, Some(7));
    assert!(
        s.contains("`accounts.secom.eab.hmac_key_file`") && s.contains("is empty"),
        "{s}"
    );
}

#[test]
fn all_errors_from_all_files_are_reported() {
    let fx = Fx::new(&GLOBAL.replace("workers: 8", "workers: many"));
    fx.spec(
        "a",
        "domains: [a.example.org]\nkey: { type: rsa, bits: 1024 }\n",
    );
    fx.spec(
        "b",
        "domains: [b.example.org]\nreload: [{ nginx: {}, apache: {} }]\n",
    );
    fx.spec(
        "c",
        "domains: [c.example.org]\ndeploy: [{ key: relative.key, mode: \"0999\" }]\n",
    );
    fx.spec("Bad Name", "domains: [d.example.org]\n");
    fx.spec("e", "domains: [e.example.org\n");
    let errs = fx.errors();
    let text = ConfigErrors(errs.clone()).to_string();
    for want in [
        "renewd.yaml:2:10: error: `workers` must be an integer, found a string",
        "a.yaml:2:25: error: `key.bits` must be 2048, 3072 or 4096, found 1024",
        "b.yaml:2:10: error: `reload[0]` has 2 keys",
        "c.yaml:2:17: error: `deploy[0].key` must be an absolute path, found `relative.key`",
        "c.yaml:2:37: error: `deploy[0].mode` must be an octal file mode",
        "Bad Name.yaml: error: `Bad Name` is not a valid spec name",
        "rename the file, e.g. to bad-name.yaml",
        "e.yaml:1:10: error: invalid YAML: ",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(errs.len(), 7, "{text}");
}

#[test]
fn missing_accounts_and_dns_servers_warn_but_a_spec_needing_them_fails() {
    // A fresh install: no accounts, no DNS servers, no specs → valid, with two warnings.
    let fx = Fx::new("workers: 2\n");
    let loaded = fx.load().expect("valid without accounts and dns_servers");
    let text: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    let text = text.join("\n");
    assert!(
        text.contains(
            "no ACME account defined yet: nothing can be renewed until you add one, e.g."
        ),
        "{text}"
    );
    assert!(text.contains("no DNS server defined yet"), "{text}");
    assert!(loaded.settings.certs.is_empty());
    // The same file with a spec: the spec cannot be renewed, so it is an error naming the global file.
    fx.spec("a", "domains: [a.example.org]\n");
    let text = ConfigErrors(fx.errors()).to_string();
    assert!(text.contains("a.yaml: error: no `account`: "), "{text}");
    assert!(
        text.contains("defines no accounts; add one under `accounts:` there first"),
        "{text}"
    );
    assert!(text.contains("no `dns`: "), "{text}");
}

#[test]
fn an_all_comment_global_file_is_valid_with_warnings() {
    let fx = Fx::new("# nothing configured yet\n# accounts: ...\n");
    let loaded = fx.load().expect("valid");
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings); // accounts, dns_servers, no specs
}

#[test]
fn missing_certs_dir() {
    let fx = Fx::new(&format!("certs_dir: nowhere\n{GLOBAL}"));
    let (e, s) = fx.one_error();
    assert_eq!((e.line, e.col), (Some(1), Some(12)));
    assert!(s.contains("cannot read certs_dir"), "{s}");
}

#[test]
fn load_spec_and_global() {
    let fx = valid();
    let g = load_global(&fx.config()).unwrap_or_else(|e| panic!("{e}"));
    assert!(g.settings.certs.is_empty());
    let spec = g.load_spec(&fx.path("certs.d/gitlab.yaml")).unwrap();
    assert_eq!(spec.key, KeySpec::Rsa { bits: 3072 });

    let mut settings = fx.load().unwrap().settings;
    let p = fx.spec("new", "domains: [www.example.ac.jp]\n");
    let e = load_spec(&settings, &p).unwrap_err().to_string();
    assert!(
        e.contains("new.yaml:1:11: error: `domains`: `www.example.ac.jp` is already in spec `www`"),
        "{e}"
    );
    settings.certs.clear();
    let spec = load_spec(&settings, &p).unwrap();
    assert_eq!(
        (spec.name.as_str(), spec.account.as_str()),
        ("new", "secom")
    );
    assert_eq!(spec.renew_before, Some(Duration::from_secs(30 * 86400)));
}

#[test]
fn yaml_syntax_and_duplicate_keys() {
    let fx = valid();
    fx.spec("x", "domains: [a.example.org]\ndomains: [b.example.org]\n");
    let (e, s) = fx.one_error();
    assert_eq!(e.line, Some(2));
    assert!(s.contains("duplicate key `domains`"), "{s}");
}

#[test]
fn yml_files_are_ignored_with_a_warning() {
    let fx = valid();
    fx.write("certs.d/old.yml", "domains: [old.example.org]\n");
    let l = fx.load().unwrap();
    assert_eq!(l.settings.certs.len(), 2);
    assert!(l.warnings[0].to_string().contains("rename it to old.yaml"));
}

#[test]
fn hooks_and_server_configs_follow_the_reload_entries() {
    let fx = Fx::new(GLOBAL);
    fx.spec(
        "gitlab",
        "\
domains: [gitlab.example.ac.jp]
reload:
  - nginx: { config: /srv/nginx/nginx.conf }
  - apache: { config: /srv/apache/apache2.conf }
hooks:
  - /etc/letsencrypt/renewal-hooks/deploy/gitlab-reload.sh
  - [/usr/local/bin/notify, --quiet]
  - { argv: [/bin/true], timeout: 5s }
",
    );
    let s = fx.load().unwrap().settings;
    let hook = |argv: &[&str], secs| ReloadSpec::Hook {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout: Duration::from_secs(secs),
    };
    assert_eq!(
        s.certs["gitlab"].reload,
        vec![
            ReloadSpec::NginxConfig("/srv/nginx/nginx.conf".into()),
            ReloadSpec::ApacheConfig("/srv/apache/apache2.conf".into()),
            hook(
                &["/etc/letsencrypt/renewal-hooks/deploy/gitlab-reload.sh"],
                60
            ),
            hook(&["/usr/local/bin/notify", "--quiet"], 60),
            hook(&["/bin/true"], 5),
        ]
    );
}

#[test]
fn hooks_from_defaults_and_hook_mistakes() {
    let global = GLOBAL.replace(
        "renew_before: 30d }",
        "renew_before: 30d, hooks: [/usr/local/bin/h] }",
    );
    let fx = Fx::new(&global);
    fx.spec("a", "domains: [a.example.org]\nreload: [{ nginx: {} }]\n");
    let s = fx.load().unwrap().settings;
    assert_eq!(
        s.certs["a"].reload,
        vec![
            ReloadSpec::Nginx,
            ReloadSpec::Hook {
                argv: vec!["/usr/local/bin/h".into()],
                timeout: Duration::from_secs(60)
            }
        ]
    );

    let fx = Fx::new(GLOBAL);
    fx.spec(
        "x",
        "domains: [x.example.org]\nhooks: [\"apachectl graceful\"]\n",
    );
    let (_, s) = fx.one_error();
    assert!(s.contains("without a shell"), "{s}");
    assert!(s.contains("[\"apachectl\", \"graceful\"]"), "{s}");

    let fx = Fx::new(GLOBAL);
    fx.spec("x", "domains: [x.example.org]\nhooks: /x.sh\n");
    let (_, s) = fx.one_error();
    assert!(s.contains("`hooks` must be a list"), "{s}");

    let fx = Fx::new(GLOBAL);
    fx.spec(
        "x",
        "domains: [x.example.org]\nreload: [{ nginx: { config: nginx.conf } }]\n",
    );
    let (_, s) = fx.one_error();
    assert!(s.contains("must be an absolute path"), "{s}");

    let fx = Fx::new(GLOBAL);
    fx.spec(
        "x",
        "domains: [x.example.org]\ndeploy: [{ key: ssl/x.key }]\n",
    );
    let (_, s) = fx.one_error();
    assert!(s.contains("must be an absolute path"), "{s}");
}

#[test]
fn metrics_file_and_loopback_listener() {
    let fx = Fx::new(&format!(
        "{GLOBAL}metrics_file: metrics/renewd.prom\nmetrics_listen: \"127.0.0.1:9469\"\n"
    ));
    fx.spec("ok", "domains: [a.example.org]\n");
    let s = fx.load().unwrap_or_else(|e| panic!("{e}")).settings;
    assert_eq!(s.metrics_file, Some(fx.path("metrics/renewd.prom")));
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9469".parse().unwrap()));
    let fx = Fx::new(&format!("{GLOBAL}metrics_listen: \"[::1]:9469\"\n"));
    let s = fx.load().unwrap_or_else(|e| panic!("{e}")).settings;
    assert_eq!(s.metrics_listen, Some("[::1]:9469".parse().unwrap()));
    assert_eq!(s.metrics_file, None);
    let fx = Fx::new(GLOBAL);
    assert_eq!(fx.load().unwrap().settings.metrics_listen, None);
}

#[test]
fn metrics_listen_refuses_non_loopback_addresses_with_file_line_col() {
    let line = GLOBAL.lines().count() + 1;
    for (value, expect) in [
        ("\"0.0.0.0:9469\"", "is not a loopback address"),
        ("\"192.0.2.10:9469\"", "is not a loopback address"),
        ("\"[::]:9469\"", "is not a loopback address"),
        ("\"127.0.0.1\"", "has no port"),
        ("\"localhost:9469\"", "write the loopback address itself"),
        ("\"127.0.0.1:99999\"", "is not a number from 1 to 65535"),
        ("[127.0.0.1]", "must be a string"),
    ] {
        let fx = Fx::new(&format!("{GLOBAL}metrics_listen: {value}\n"));
        let (e, s) = fx.one_error();
        assert_eq!((e.line, e.col), (Some(line), Some(17)), "{s}");
        assert!(
            s.starts_with(&format!("{}:{line}:17: error: ", fx.config().display())),
            "{s}"
        );
        assert!(s.contains(expect), "{value}: {s}");
    }
    let fx = Fx::new(&format!("{GLOBAL}metrics_listen: \"0.0.0.0:9469\"\n"));
    let (_, s) = fx.one_error();
    assert!(s.contains("`metrics_listen`: `0.0.0.0:9469`"), "{s}");
    assert!(s.contains("127.0.0.1 or [::1] only"), "{s}");
}

#[test]
fn files_that_are_not_small_regular_files_are_refused_with_what_was_found() {
    let fx = valid();
    // TSIG key file → a character device: the config line, the key, the path and what it is.
    fs::write(
        fx.config(),
        GLOBAL.replace("secrets/acme-update.key", "/dev/zero"),
    )
    .unwrap();
    let (e, s) = fx.one_error();
    assert_eq!((e.file.clone(), e.line), (fx.config(), Some(13)));
    assert!(s.contains("`dns_servers.acme-master.tsig_key_file`"), "{s}");
    assert!(
        s.contains("/dev/zero is a character device, not a regular file"),
        "{s}"
    );
    assert!(s.contains("as `tsig-keygen` writes it"), "{s}");

    // EAB key file → a directory.
    fs::write(fx.config(), GLOBAL.replace("secrets/ca.eab", "secrets")).unwrap();
    let (e, s) = fx.one_error();
    assert_eq!(e.line, Some(7));
    assert!(s.contains("`accounts.secom.eab.hmac_key_file`"), "{s}");
    assert!(s.contains("is a directory, not a regular file"), "{s}");

    // A TSIG key file larger than a secret may be.
    let big = fx.secret("secrets/big.key", &" ".repeat(70_000));
    fs::write(
        fx.config(),
        GLOBAL.replace("secrets/acme-update.key", "secrets/big.key"),
    )
    .unwrap();
    let (_, s) = fx.one_error();
    assert!(
        s.contains(&format!(
            "{} is 70000 bytes, more than the 65536",
            big.display()
        )),
        "{s}"
    );

    // A spec that is too large is refused before it is parsed.
    fs::write(fx.config(), GLOBAL).unwrap();
    let spec = fx.spec("huge", &"# padding\n".repeat(110_000));
    let (e, s) = fx.one_error();
    assert_eq!((e.file, e.line), (spec, None));
    assert!(
        s.contains("the spec file is 1100000 bytes, more than the 1048576"),
        "{s}"
    );
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let fx = valid();
    let p = fx.path("certs.d/latin1.yaml");
    fs::write(&p, b"domains: [a.example.org]\n# caf\xe9\n").unwrap();
    let (e, s) = fx.one_error();
    assert_eq!((e.file, e.line, e.col), (p, Some(2), Some(6)));
    assert!(s.contains("not UTF-8 text"), "{s}");
}

#[test]
fn diagnostics_are_capped_per_file_with_a_summary_line() {
    let fx = valid();
    let mut text = String::from("domains: [a.example.org]\n");
    for i in 0..1000 {
        text.push_str(&format!("k{i:04}: 1\n"));
    }
    let spec = fx.spec("many", &text);
    fx.spec("two", "domian: [b.example.org]\nkye: {}\n");
    let errors = fx.load().unwrap_err();
    let of = |f: &Path| errors.0.iter().filter(|d| d.file == f).collect::<Vec<_>>();
    let many = of(&spec);
    assert_eq!(many.len(), MAX_DIAGS_PER_FILE + 1);
    assert_eq!(many[0].line, Some(2));
    assert!(many[0].message.contains("expected one of"), "{}", many[0]);
    let last = many.last().unwrap().to_string();
    assert_eq!(
        last,
        format!(
            "{}: error: … and 980 more errors in this file (fix the ones above first)",
            spec.display()
        )
    );
    // Other files keep their own diagnostics, and the count covers what was left out.
    assert_eq!(of(&fx.path("certs.d/two.yaml")).len(), 2);
    assert_eq!(errors.error_count(), 1002);
}

#[test]
fn a_long_domain_list_is_checked_for_duplicates_in_one_pass() {
    let fx = valid();
    let mut text = String::from("domains:\n");
    for i in 0..30_000 {
        text.push_str(&format!("  - h{i}.example.org\n"));
    }
    text.push_str("  - h7.example.org\n");
    fx.spec("long", &text);
    let (e, s) = fx.one_error();
    assert_eq!(e.line, Some(30_002));
    assert!(
        s.contains("`h7.example.org` is listed twice (first at line 9)"),
        "{s}"
    );
}

#[test]
fn attempt_timeout_defaults_to_ten_minutes_and_refuses_a_deadline_no_renewal_can_meet() {
    let fx = valid();
    let s = fx.load().unwrap_or_else(|e| panic!("{e}")).settings;
    assert_eq!(s.attempt_timeout, Duration::from_secs(600));

    fx.write("renewd.yaml", &format!("{GLOBAL}attempt_timeout: 3m\n"));
    let s = fx.load().unwrap_or_else(|e| panic!("{e}")).settings;
    assert_eq!(s.attempt_timeout, Duration::from_secs(180));

    fx.write("renewd.yaml", &format!("{GLOBAL}attempt_timeout: 2s\n"));
    let (d, text) = fx.one_error();
    assert_eq!(d.line, Some(GLOBAL.lines().count() + 1));
    assert!(
        text.contains("`attempt_timeout`: 2s is too short for a renewal")
            && text.contains("at least 5s"),
        "{text}"
    );
}

#[test]
fn settings_compare_by_value_secrets_included() {
    let fx = valid();
    let a = fx.load().unwrap().settings;
    assert_eq!(a, fx.load().unwrap().settings);
    // A rotated EAB key in the same file is a changed configuration (and never printed).
    fx.secret(
        "secrets/ca.eab",
        "c2VjcmV0LWVhYi1rZXktb2YtdGhlLWNhLXJvdGF0ZWQ\n",
    );
    let b = fx.load().unwrap().settings;
    assert_ne!(a.accounts, b.accounts);
    assert_eq!(a.dns_servers, b.dns_servers);
    assert!(!format!("{:?}", b.accounts).contains("c2VjcmV0"));
}

#[test]
fn profile_challenge_and_persist_until() {
    let fx = valid();
    fx.spec(
        "p",
        "domains: [p.example.org]\nprofile: shortlived\nchallenge: dns-persist-01\npersist_until: 2099-12-31\n",
    );
    let l = fx.load().expect("loads");
    let spec = &l.settings.certs["p"];
    assert_eq!(spec.profile.as_deref(), Some("shortlived"));
    assert_eq!(spec.challenge, ChallengeKind::DnsPersist01);
    // The end of that day, UTC.
    assert_eq!(spec.persist_until, Some(4102444799));
    assert_eq!(l.settings.certs["www"].challenge, ChallengeKind::Dns01);
    assert_eq!(l.settings.certs["www"].profile, None);

    fx.spec("p", "domains: [p.example.org]\nchallenge: http-01\n");
    let (e, s) = fx.one_error();
    assert_eq!((e.line, e.col), (Some(2), Some(12)));
    assert!(s.contains("through DNS only"), "{s}");

    fx.spec("p", "domains: [p.example.org]\npersist_until: 2099-12-31\n");
    let (_, s) = fx.one_error();
    assert!(
        s.contains("`persist_until` applies to `challenge: dns-persist-01` only"),
        "{s}"
    );

    fx.spec(
        "p",
        "domains: [p.example.org]\nchallenge: dns-persist-01\npersist_until: next year\n",
    );
    let (_, s) = fx.one_error();
    assert!(s.contains("is not a date"), "{s}");

    fx.spec("p", "domains: [p.example.org]\nprofile: \"short lived\"\n");
    let (_, s) = fx.one_error();
    assert!(s.contains("is not a profile name"), "{s}");
}

#[test]
fn profile_and_challenge_under_defaults_apply_to_every_spec_that_does_not_say() {
    let fx = Fx::new(&GLOBAL.replace(
        "renew_before: 30d }",
        "renew_before: 30d, profile: tlsserver, challenge: dns-persist-01 }",
    ));
    fx.spec("d", "domains: [d.example.org]\n");
    fx.spec(
        "own",
        "domains: [o.example.org]\nprofile: shortlived\nchallenge: dns-01\n",
    );
    fx.spec(
        "until",
        "domains: [u.example.org]\npersist_until: 2099-12-31\n",
    );
    let s = fx.load().expect("loads").settings;
    assert_eq!(s.certs["d"].profile.as_deref(), Some("tlsserver"));
    assert_eq!(s.certs["d"].challenge, ChallengeKind::DnsPersist01);
    assert_eq!(s.certs["own"].profile.as_deref(), Some("shortlived"));
    assert_eq!(s.certs["own"].challenge, ChallengeKind::Dns01);
    // `persist_until` in a spec is allowed by the challenge it inherits.
    assert_eq!(s.certs["until"].challenge, ChallengeKind::DnsPersist01);
    assert_eq!(s.certs["until"].persist_until, Some(4102444799));

    let fx = Fx::new(&GLOBAL.replace(
        "renew_before: 30d }",
        "renew_before: 30d, challenge: http-01 }",
    ));
    let (_, s) = fx.one_error();
    assert!(
        s.contains("`defaults.challenge`") && s.contains("through DNS only"),
        "{s}"
    );
    let fx = Fx::new(&GLOBAL.replace(
        "renew_before: 30d }",
        "renew_before: 30d, profile: \"short lived\" }",
    ));
    let (_, s) = fx.one_error();
    assert!(
        s.contains("`defaults.profile`") && s.contains("is not a profile name"),
        "{s}"
    );
}

#[test]
fn key_reuse_and_ari_off() {
    let fx = Fx::new(&GLOBAL.replace(
        "    contact: [mailto:pki@example.ac.jp]\n",
        "    contact: [mailto:pki@example.ac.jp]\n    ari: false\n",
    ));
    fx.spec(
        "k",
        "domains: [k.example.org]\nkey: { type: ecdsa, curve: p384, reuse: true }\n",
    );
    let l = fx.load().expect("loads");
    assert!(l.settings.certs["k"].key_reuse);
    assert_eq!(l.settings.certs["k"].key, KeySpec::EcdsaP384);
    assert!(!l.settings.accounts["secom"].ari);
    assert!(l.settings.accounts["le"].ari);

    fx.spec(
        "k",
        "domains: [k.example.org]\nkey: { type: rsa, reuse: yes please }\n",
    );
    let (_, s) = fx.one_error();
    assert!(s.contains("`key.reuse` must be `true` or `false`"), "{s}");
}

const SEAL_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[test]
fn a_cluster_section_loads_with_its_defaults_and_the_seal_key_stays_secret() {
    let fx = Fx::new(&format!(
        "{GLOBAL}cluster:\n  etcd: {{ endpoints: [http://10.0.0.1:2379, \"http://10.0.0.2:2379\"] }}\n  member: web1\n  seal_key_file: secrets/cluster.seal\n"
    ));
    fx.secret("secrets/cluster.seal", &format!("{SEAL_B64}\n"));
    let s = fx.load().unwrap().settings;
    let c = s.cluster.as_ref().expect("cluster");
    assert_eq!(
        c.endpoints,
        ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(c.prefix, DEFAULT_CLUSTER_PREFIX);
    assert_eq!(c.member, "web1");
    assert_eq!(c.seal_key.expose(), b"0123456789abcdef0123456789abcdef");
    assert!(c.tls.is_none() && c.auth.is_none());
    let debug = format!("{c:?}");
    assert!(
        !debug.contains(SEAL_B64) && !debug.contains("0123456789abcdef"),
        "{debug}"
    );
}

#[test]
fn cluster_mistakes_name_the_line_and_what_to_do() {
    let fx = Fx::new(&format!(
        "{GLOBAL}cluster:\n  etcd: {{ endpoints: [https://10.0.0.1, https://10.0.0.2:2379] }}\n  prefix: renewd\n  seal_key_file: secrets/cluster.seal\n"
    ));
    fx.secret("secrets/cluster.seal", "c2hvcnQ=\n");
    let errs: Vec<String> = fx.errors().iter().map(|d| d.to_string()).collect();
    let all = errs.join("\n");
    let line = |n: usize, what: &str| {
        assert!(
            errs.iter()
                .any(|e| e.contains(&format!("renewd.yaml:{n}:")) && e.contains(what)),
            "line {n}: {what}\n{all}"
        )
    };
    let base = GLOBAL.lines().count();
    line(base + 2, "needs a port");
    line(base + 2, "has https:// endpoints but no `ca`");
    line(base + 3, "must be a key path starting with `/`");
    line(base + 4, "decodes to 5 bytes, not 32");
    assert!(all.contains("openssl rand -base64 32"), "{all}");
}

#[test]
fn a_readable_seal_key_is_refused_like_every_secret() {
    let fx = Fx::new(&format!(
        "{GLOBAL}cluster:\n  etcd: {{ endpoints: [http://10.0.0.1:2379] }}\n  member: web1\n  seal_key_file: secrets/cluster.seal\n"
    ));
    let p = fx.secret("secrets/cluster.seal", &format!("{SEAL_B64}\n"));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let (_, text) = fx.one_error();
    assert!(text.contains("chmod 600"), "{text}");
}
