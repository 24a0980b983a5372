//! What a certbot user reaches for on day two, against the real deployment (Pebble 2.4 with EAB, BIND):
//! `renew --dry-run`, `revoke`, `delete`, `account show|update|rollover|deactivate`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::proc::poll_until;
use crate::support::renewd::Renewd;
use crate::support::topology::{challenge_zone, domain, Server, Topology, TopologyOptions};
use crate::support::x509::cert_serial;
use crate::support::SpecFixture;

fn one_host() -> Topology {
    Topology::start(TopologyOptions {
        n_hosts: 1,
        ..Default::default()
    })
}

fn versions(r: &Renewd, name: &str) -> usize {
    fs::read_dir(r.state().join("archive").join(name))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// How many certificates Pebble says it issued (its log has a line for each).
fn pebble_issued(topo: &Topology) -> usize {
    fs::read_to_string(topo.log_path(Server::Pebble))
        .unwrap()
        .matches("Issued certificate serial ")
        .count()
}

fn no_txt_anywhere(topo: &Topology, owner: &str) {
    assert!(topo.txt_at(topo.master_addr(), owner).is_empty());
    for a in topo.secondary_addrs() {
        let gone = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            topo.txt_at(a, owner).is_empty().then_some(())
        });
        assert!(
            gone.is_some(),
            "TXT left at {a}: {:?}",
            topo.txt_at(a, owner)
        );
    }
}

/// A dry run goes through the CA's validation of every name and changes nothing: same live certificate,
/// same archive, deploy target untouched, no TXT left; it says "would renew".
#[test]
fn dry_run_validates_every_name_and_writes_nothing() {
    let topo = one_host();
    let host = domain("host1");
    let wildcard = format!("*.{host}");
    let deployed = topo.dir().join("deployed.pem");
    let r = Renewd::new(
        &topo,
        "30s",
        &[
            SpecFixture::new("host1", &[&host, &wildcard]).line(&format!(
                "deploy: [ {{ fullchain: \"{}\" }} ]",
                deployed.display()
            )),
        ],
    );
    r.run(&["renew"]).expect_code(0);
    let serial = cert_serial(&r.live("host1", "cert.pem"));
    let deployed_before = fs::read(&deployed).unwrap();
    let mtime = fs::metadata(&deployed).unwrap().modified().unwrap();
    let issued_at_ca = || pebble_issued(&topo);
    assert_eq!(issued_at_ca(), 1, "Pebble logged the first issuance");

    for _ in 0..2 {
        let run = r.run(&["renew", "--dry-run"]);
        run.expect_code(0);
        let line = run.line("host1");
        assert!(
            line.contains("would renew: the CA validated all 2 name(s)")
                && line.contains("2 authorization(s) deactivated"),
            "{line}"
        );
    }
    assert_eq!(cert_serial(&r.live("host1", "cert.pem")), serial);
    assert_eq!(
        issued_at_ca(),
        1,
        "the CA issued nothing for the dry runs (Pebble's log)"
    );
    assert_eq!(versions(&r, "host1"), 1, "no new version archived");
    assert_eq!(fs::read(&deployed).unwrap(), deployed_before);
    assert_eq!(fs::metadata(&deployed).unwrap().modified().unwrap(), mtime);
    no_txt_anywhere(&topo, &challenge_zone(&host));
}

/// `revoke` asks the CA with the account that ordered the certificate; the CA's answer to a second
/// revocation (already revoked) proves the first one took.
#[test]
fn revoke_then_the_ca_says_already_revoked() {
    let topo = one_host();
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&domain("host1")])],
    );
    let run = r.run(&["revoke", "host1"]);
    run.expect_code(1);
    assert!(run.stderr.contains("no live certificate"), "{}", run.stderr);

    r.run(&["renew"]).expect_code(0);
    let serial = cert_serial(&r.live("host1", "cert.pem"));
    let run = r.run(&["revoke", "host1", "--reason", "superseded"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("host1: revoked serial {serial}")),
        "{}",
        run.stdout
    );
    let again = r.run(&["revoke", "host1"]);
    again.expect_code(1);
    assert!(
        again.stderr.contains("alreadyRevoked")
            && again.stderr.contains("revoking the certificate"),
        "{}",
        again.stderr
    );

    // A new certificate whose account is then lost: revoked with the certificate's own key.
    r.run(&["renew", "--force"]).expect_code(0);
    let serial = cert_serial(&r.live("host1", "cert.pem"));
    fs::remove_file(r.state().join("accounts").join("pebble.json")).unwrap();
    let run = r.run(&["revoke", "host1"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("has not been registered yet"),
        "{}",
        run.stderr
    );
    let run = r.run(&["revoke", "host1", "--with-key", "--reason", "keycompromise"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains(&format!(
            "host1: revoked serial {serial} (signed with the certificate's key)"
        )),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let again = r.run(&["revoke", "host1", "--with-key"]);
    again.expect_code(1);
    assert!(again.stderr.contains("alreadyRevoked"), "{}", again.stderr);
}

/// `delete` asks first (and without a terminal does nothing without --yes), then removes the spec,
/// live and archive; the account stays.
#[test]
fn delete_removes_spec_live_and_archive_but_not_the_account() {
    let topo = one_host();
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&domain("host1")])],
    );
    r.run(&["renew"]).expect_code(0);
    let spec = r.spec_path("host1");
    let live = r.state().join("live").join("host1");
    let archive = r.state().join("archive").join("host1");
    let account = r.state().join("accounts").join("pebble.json");

    let run = r.run(&["delete", "host1"]);
    run.expect_code(1);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    assert!(spec.exists() && live.exists() && archive.exists());

    let run = r.run(&["delete", "host1", "--yes"]);
    run.expect_code(0);
    assert!(!spec.exists() && live.symlink_metadata().is_err() && !archive.exists());
    assert!(account.exists(), "the account is never deleted");
    let status = r.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v["certificates"], serde_json::json!([]));
    let run = r.run(&["delete", "host1", "--yes"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("no spec named `host1`"),
        "{}",
        run.stderr
    );
}

/// `key: { ..., reuse: true }` keeps the private key across renewals (a TLSA record stays valid); without
/// it every renewal has a new key.
#[test]
fn key_reuse_keeps_the_public_key_across_renewals() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        ..Default::default()
    });
    let r = Renewd::new(
        &topo,
        "30s",
        &[
            SpecFixture::new("kept", &[&domain("host1")])
                .line("key: { type: ecdsa, curve: p384, reuse: true }"),
            SpecFixture::new("fresh", &[&domain("host2")]),
        ],
    );
    r.run(&["renew"]).expect_code(0);
    let key = |name: &str| fs::read(r.live(name, "privkey.pem")).unwrap();
    let (kept, fresh) = (key("kept"), key("fresh"));
    let serial = cert_serial(&r.live("kept", "cert.pem"));
    r.run(&["renew", "--force"]).expect_code(0);
    assert_ne!(
        cert_serial(&r.live("kept", "cert.pem")),
        serial,
        "a new certificate"
    );
    assert_eq!(key("kept"), kept, "the same private key");
    assert!(crate::support::x509::key_matches_cert(
        &r.live("kept", "privkey.pem"),
        &r.live("kept", "cert.pem")
    ));
    assert_ne!(key("fresh"), fresh, "a new key without reuse");
}

fn stored_url(path: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    v["credentials"]["id"].as_str().unwrap().to_string()
}

/// `account show` (offline), `update --contact`, `rollover` (the old key is refused afterwards, the new
/// one renews), `deactivate` (the next order registers a new account).
#[test]
fn account_show_update_rollover_deactivate() {
    let topo = one_host();
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&domain("host1")])],
    );
    let show = r.run(&["account", "show"]);
    show.expect_code(0);
    assert!(
        show.stdout.contains("not registered yet"),
        "{}",
        show.stdout
    );

    r.run(&["renew"]).expect_code(0);
    let file = r.state().join("accounts").join("pebble.json");
    let url = stored_url(&file);
    let show = r.run(&["account", "show", "pebble"]);
    show.expect_code(0);
    assert!(
        show.stdout.contains(&format!("url:        {url}"))
            && show.stdout.contains("mailto:pki@example.test"),
        "{}",
        show.stdout
    );

    let run = r.run(&["account", "update", "--contact", "mailto:new@example.test"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("the CA now has contact mailto:new@example.test")
            && run.stdout.contains("change it there too"),
        "{}",
        run.stdout
    );

    let old = fs::read(&file).unwrap();
    let run = r.run(&["account", "rollover"]);
    run.expect_code(0);
    assert_ne!(fs::read(&file).unwrap(), old, "new credentials saved");
    assert_eq!(stored_url(&file), url, "the same account");
    r.run(&["renew", "--force"]).expect_code(0);
    // The old key: the CA no longer accepts it.
    let new = fs::read(&file).unwrap();
    fs::write(&file, &old).unwrap();
    let run = r.run(&["account", "update"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("updating the account"),
        "{}",
        run.stderr
    );
    fs::write(&file, &new).unwrap();

    let run = r.run(&["account", "deactivate"]);
    run.expect_code(1);
    assert!(file.exists());
    let run = r.run(&["account", "deactivate", "--yes"]);
    run.expect_code(0);
    assert!(!file.exists() && file.with_extension("json.deactivated").exists());
    r.run(&["renew", "--force"]).expect_code(0);
    assert_ne!(stored_url(&file), url, "a new account was registered");
}

/// The issuer CN of the topmost certificate of a PEM chain file, read with openssl.
fn top_issuer(chain: &Path) -> String {
    let pem = fs::read_to_string(chain).unwrap();
    let last = pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .last()
        .expect("a certificate")
        .to_string();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), last).unwrap();
    crate::support::x509::cert_issuer_cn(tmp.path()).expect("an issuer CN")
}

/// `preferred_chain` installs the CA's alternate chain whose topmost issuer it names (Pebble links its
/// alternate roots' chains from every download); without it, or naming a root nobody offers, the default.
#[test]
fn preferred_chain_installs_the_alternate_chain_it_names() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 3,
        alternate_roots: 1,
        ..Default::default()
    });
    let (default_root, alternate_root) = (topo.root_cn(0), topo.root_cn(1));
    assert_ne!(default_root, alternate_root);
    let r = Renewd::new(
        &topo,
        "30s",
        &[
            SpecFixture::new("alt", &[&domain("host1")])
                .line(&format!("preferred_chain: \"{alternate_root}\"")),
            SpecFixture::new("plain", &[&domain("host2")]),
            SpecFixture::new("nosuch", &[&domain("host3")])
                .line("preferred_chain: \"No Such Root\""),
        ],
    );
    let run = r.run(&["renew"]);
    run.expect_code(0);
    assert_eq!(top_issuer(&r.live("alt", "chain.pem")), alternate_root);
    assert_eq!(top_issuer(&r.live("alt", "fullchain.pem")), alternate_root);
    assert_eq!(top_issuer(&r.live("plain", "chain.pem")), default_root);
    assert_eq!(top_issuer(&r.live("nosuch", "chain.pem")), default_root);
    assert!(
        run.stderr
            .contains("no chain of the CA has the preferred topmost issuer")
            && run.stderr.contains(&alternate_root),
        "{}",
        run.stderr
    );
}

/// certbot's pre- and post-hooks: each distinct one runs once per `renewd renew`, pre before the first
/// attempt and post after the last, also when an attempt failed; nothing runs when nothing is due.
#[test]
fn pre_and_post_hooks_run_once_per_renew_run() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 2,
        denied_hosts: vec!["denied".into()],
        ..Default::default()
    });
    let log = topo.dir().join("hooks.log");
    let hook = |name: &str, tag: &str| {
        let path = topo.dir().join(name);
        fs::write(
            &path,
            format!("#!/bin/sh\necho {tag} >> {}\n", log.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    };
    let (pre, post, deploy) = (
        hook("pre.sh", "pre"),
        hook("post.sh", "post"),
        hook("deploy.sh", "deploy"),
    );
    let lines = [
        format!("pre_hooks: [\"{pre}\"]"),
        format!("post_hooks: [\"{post}\"]"),
        format!("hooks: [\"{deploy}\"]"),
    ];
    let with_hooks = |s: SpecFixture| lines.iter().fold(s, |s, l| s.line(l));
    let r = Renewd::new(
        &topo,
        "30s",
        &[
            with_hooks(SpecFixture::new("one", &[&domain("host1")])),
            with_hooks(SpecFixture::new("two", &[&domain("host2")])),
            // Refused by the DNS server's update-policy: an attempt that fails.
            with_hooks(SpecFixture::new("bad", &[&domain("denied")])),
        ],
    );
    let run = r.run(&["renew"]);
    run.expect_code(1);
    let seen = fs::read_to_string(&log).unwrap();
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(
        seen,
        ["pre", "deploy", "deploy", "post"],
        "{}{}",
        run.stdout,
        run.stderr
    );
    fs::remove_file(&log).unwrap();
    let run = r.run(&["renew", "one", "two"]);
    run.expect_code(0);
    assert!(!log.exists(), "nothing due, no hook ran");
}
