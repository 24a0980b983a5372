//! `renewd import certbot` against a configuration made by Debian's real certbot (with its dns-rfc2136
//! plugin) issuing from the reference deployment, with hooks in every place certbot has them. certbot
//! renews once itself (what its hooks do there is the reference); then its tree is moved elsewhere, as a
//! backup or another machine's copy would be, and imported from there: paths rebased, hooks copied, the
//! certificate stays certbot's (not due, not reissued), then `renew --force` issues a new one and runs the
//! hooks as certbot did.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::proc::output_with_timeout;
use crate::support::renewd::{mode, Renewd};
use crate::support::topology::{domain, write_secret, Topology, TopologyOptions, MASTER_IP};
use crate::support::x509::{cert_sans, cert_serial, private_key_type};
use crate::support::{assert_success, output_text};

/// certbot (Python start-up, account registration, one order with a 2 s propagation sleep).
const CERTBOT_TIMEOUT: Duration = Duration::from_secs(240);

/// An executable script at `path` that appends `TAG $0 $RENEWED_LINEAGE` to `log`.
fn logging_hook(path: &Path, tag: &str, log: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        path,
        format!(
            "#!/bin/sh\necho \"{tag} $0 $RENEWED_LINEAGE\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o750)).unwrap();
}

/// The lines of `log`, and the log emptied.
fn take_lines(log: &Path) -> Vec<String> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let _ = fs::remove_file(log);
    text.lines().map(str::to_string).collect()
}

fn count(lines: &[String], tag: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.split(' ').next() == Some(tag))
        .count()
}

#[test]
fn import_certbot_from_a_moved_copy_keeps_its_certificate_and_hook_semantics() {
    let started = Instant::now();
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        // certbot sleeps a fixed time and does not check the secondaries: let NOTIFY go at once.
        notify_delay: Some(0),
        ..TopologyOptions::default()
    });
    let host = domain("host1");
    let cb = topo.dir().join("certbot");
    // certbot's tree where it ran; moved to `copy` before the import.
    let cb_config = cb.join("config");
    let copy = topo.dir().join("backup/2024-06/letsencrypt");
    fs::create_dir_all(&cb_config).unwrap();

    // The seed's rfc2136.ini (in certbot's directory, as on the seed), with the topology's TSIG key.
    let secret = topo.tsig_secret();
    let ini = cb_config.join("rfc2136.ini");
    write_secret(
        &ini,
        format!(
            "dns_rfc2136_server = {MASTER_IP}\ndns_rfc2136_port = 53\ndns_rfc2136_name = acme-update\n\
             dns_rfc2136_secret = {secret}\ndns_rfc2136_algorithm = HMAC-SHA256\n"
        )
        .as_bytes(),
    )
    .unwrap();
    // Hooks in every place certbot has them, each logging what ran (outside certbot's tree, so the log
    // stays when the tree moves). The seed's deploy hook (there: reload GitLab's nginx) is both in
    // renewal-hooks/deploy and the lineage's --deploy-hook.
    let log = topo.dir().join("hooks.log");
    let deploy_hook = cb_config.join("renewal-hooks/deploy/gitlab-reload.sh");
    logging_hook(&deploy_hook, "deploy", &log);
    logging_hook(&cb_config.join("renewal-hooks/pre/pre.sh"), "pre-dir", &log);
    logging_hook(
        &cb_config.join("renewal-hooks/post/post.sh"),
        "post-dir",
        &log,
    );
    let lineage_cmd = |tag: &str| format!("echo {tag} >> {}", log.display());

    // certbot certonly --dns-rfc2136, as in the seed (60 s sleep shortened to 2 s).
    let certbot = |args: &[&str]| {
        let mut c = topo.certbot_command(&cb, args);
        let t = Instant::now();
        let out = output_with_timeout(&mut c, CERTBOT_TIMEOUT).expect("certbot runs");
        assert_success(&format!("certbot {}", args[0]), &out);
        eprintln!("--- certbot {}: {:.1?}", args[0], t.elapsed());
    };
    let account = topo.certbot_account_args();
    let (ini_path, deploy_path) = (ini.display().to_string(), deploy_hook.display().to_string());
    let (pre, post) = (lineage_cmd("pre-lineage"), lineage_cmd("post-lineage"));
    let mut certonly = vec!["certonly"];
    certonly.extend(account.iter().map(String::as_str));
    certonly.extend([
        "--authenticator",
        "dns-rfc2136",
        "--dns-rfc2136-credentials",
        &ini_path,
        "--dns-rfc2136-propagation-seconds",
        "2",
        "--key-type",
        "rsa",
        "--rsa-key-size",
        "2048",
        "-d",
        &host,
        "--cert-name",
        &host,
        "--deploy-hook",
        &deploy_path,
        "--pre-hook",
        &pre,
        "--post-hook",
        &post,
    ]);
    certbot(&certonly);
    take_lines(&log);
    // The reference: what certbot itself runs when it renews this lineage.
    certbot(&[
        "renew",
        "-n",
        "--force-renewal",
        "--no-random-sleep-on-renew",
    ]);
    let by_certbot = take_lines(&log);
    eprintln!("--- hooks run by certbot renew\n{}", by_certbot.join("\n"));
    let certbot_cert = cb_config.join("live").join(&host).join("cert.pem");
    let certbot_serial = cert_serial(&certbot_cert);

    // A second lineage that cannot be converted (http-01).
    fs::write(
        cb_config.join("renewal/www.example.test.conf"),
        "version = 2.1.0\ncert = /nonexistent/cert.pem\n[renewalparams]\nauthenticator = webroot\n\
         webroot_path = /var/www/html,\nserver = https://127.0.0.1:14000/dir\n",
    )
    .unwrap();
    // The tree moves: every absolute path inside it now points where nothing is.
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    fs::rename(&cb_config, &copy).unwrap();

    let dir = topo.dir().join("renewd");
    fs::create_dir_all(&dir).unwrap();
    let r = Renewd { topo: &topo, dir };
    let import = |extra: &[&str]| {
        let mut cmd = topo.command(crate::support::renewd_bin());
        // As in the shell certbot was run from: not certbot's configuration, so not `trust:`.
        cmd.env("REQUESTS_CA_BUNDLE", topo.tls_ca_pem_path())
            .arg("--config")
            .arg(r.config())
            .args(["import", "certbot"])
            .arg(&copy)
            .arg("--state-dir")
            .arg(r.state())
            .args(["--eab-kid", topo.eab_kid()])
            .args(extra);
        output_with_timeout(&mut cmd, Duration::from_secs(60)).expect("renewd import runs")
    };

    // Dry run: the YAML, secrets by file name only, hooks by name only, and what was not converted.
    let dry = import(&[]);
    assert_success("renewd import certbot (dry run)", &dry);
    let text = output_text(&dry);
    eprintln!("--- dry run\n{text}");
    assert!(!text.contains(&secret), "the TSIG secret was printed");
    assert!(
        !text.contains(topo.eab_hmac_b64url()),
        "the EAB key was printed"
    );
    let hooks_dir = r.dir.join("hooks");
    for want in [
        format!("(rebased {} -> {})", cb_config.display(), copy.display()),
        "dns_servers:".into(),
        "address: \"127.0.0.12:53\"".into(),
        "    ttl: 120\n".into(),
        "  ca-127-0-0-1:\n".into(),
        format!("domains: [\"{host}\"]"),
        "key: { type: rsa, bits: 2048 }".into(),
        format!(
            "  - \"{}\"\n",
            hooks_dir.join("deploy/gitlab-reload.sh").display()
        ),
        format!(
            "# copy of {}",
            copy.join("renewal-hooks/deploy/gitlab-reload.sh").display()
        ),
        "it runs once, as with certbot".into(),
        "pre/pre.sh: a pre hook of every certificate (`pre_hooks:`)".into(),
        "post/post.sh: a post hook of every certificate (`post_hooks:`)".into(),
        "pre_hooks:\n".into(),
        "post_hooks:\n".into(),
        "echo pre-lineage".into(),
        "echo post-lineage".into(),
        "REQUESTS_CA_BUNDLE is set in this shell".into(),
        "www.example.test.conf".into(),
        "http-01".into(),
        "EAB HMAC key".into(),
    ] {
        assert!(text.contains(&want), "dry run lacks `{want}`:\n{text}");
    }
    assert!(
        !text.contains("    trust: "),
        "trust: from the environment:\n{text}"
    );
    assert!(
        !r.config().exists() && !hooks_dir.exists(),
        "the dry run wrote files"
    );

    // --write, with the CA's TLS root given explicitly.
    let ca_pem = topo.tls_ca_pem_path().display().to_string();
    let written = import(&["--write", "--trust", &ca_pem]);
    assert_success("renewd import certbot --write", &written);
    eprintln!("--- --write\n{}", output_text(&written));
    let key_file = r.dir.join("secrets/rfc2136.key");
    assert_eq!(mode(&key_file), 0o600);
    let key_text = fs::read_to_string(&key_file).unwrap();
    assert!(key_text.contains("key \"acme-update\""), "{key_text}");
    assert!(key_text.contains("algorithm hmac-sha256;"), "{key_text}");
    assert!(key_text.contains(&secret));
    let global = fs::read_to_string(r.config()).unwrap();
    assert!(global.contains(&format!("trust: \"{ca_pem}\"")), "{global}");
    let copied = hooks_dir.join("deploy/gitlab-reload.sh");
    assert_eq!(mode(&copied), 0o750);
    assert_eq!(mode(&hooks_dir.join("post/post.sh")), 0o750);
    assert_eq!(mode(&hooks_dir.join("pre/pre.sh")), 0o750);

    // A second --write refuses and names every file it would have overwritten.
    let again = import(&["--write", "--trust", &ca_pem]);
    assert_eq!(again.status.code(), Some(1), "{}", output_text(&again));
    let again = output_text(&again);
    for f in [
        r.config(),
        key_file.clone(),
        r.spec_path(&host),
        copied.clone(),
    ] {
        assert!(
            again.contains(&f.display().to_string()),
            "refusal does not name {}:\n{again}",
            f.display()
        );
    }

    // The import asked for the EAB HMAC key (certbot does not keep it).
    write_secret(
        &r.dir.join("secrets/ca-127-0-0-1.eab"),
        format!("{}\n", topo.eab_hmac_b64url()).as_bytes(),
    )
    .unwrap();
    r.run(&["check"]).expect_code(0);

    // certbot's certificate is renewd's live one, and it is not due: nothing is reissued, nothing runs.
    let live_cert = r.live(&host, "cert.pem");
    assert_eq!(cert_serial(&live_cert), certbot_serial);
    assert_eq!(mode(&r.live(&host, "privkey.pem")), 0o600);
    let not_due = r.run(&["renew"]);
    not_due.expect_code(0);
    assert!(
        not_due.line(&host).contains("not due"),
        "{}",
        not_due.stdout
    );
    assert_eq!(cert_serial(&live_cert), certbot_serial);
    assert!(take_lines(&log).is_empty(), "a hook ran without a renewal");

    // --force issues a new certificate with the imported settings (new account with EAB, RSA 2048).
    let forced = r.run(&["renew", "--force"]);
    forced.expect_code(0);
    eprintln!("--- renew --force\n{}", forced.stdout);
    assert!(forced.line(&host).contains("renewed"), "{}", forced.stdout);
    assert_ne!(
        cert_serial(&live_cert),
        certbot_serial,
        "renew --force did not reissue"
    );
    assert_eq!(cert_sans(&live_cert), vec![host.clone()]);
    assert_eq!(private_key_type(&r.live(&host, "privkey.pem")), "rsa2048");
    let by_renewd = take_lines(&log);
    eprintln!(
        "--- hooks run by renewd renew --force\n{}",
        by_renewd.join("\n")
    );
    // The deploy hook in both places: once with certbot, once with renewd, from the copy.
    assert_eq!(count(&by_certbot, "deploy"), 1, "{by_certbot:?}");
    assert_eq!(count(&by_renewd, "deploy"), 1, "{by_renewd:?}");
    let lineage = r.state().join("live").join(&host);
    assert!(
        by_renewd.contains(&format!(
            "deploy {} {}",
            copied.display(),
            lineage.display()
        )),
        "{by_renewd:?}"
    );
    // Pre- and post-hooks: once each, in certbot's order (pre, deploy, post).
    let tags = |lines: &[String]| {
        lines
            .iter()
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    for tag in ["pre-dir", "pre-lineage", "post-dir", "post-lineage"] {
        assert_eq!(count(&by_certbot, tag), 1, "{by_certbot:?}");
        assert_eq!(count(&by_renewd, tag), 1, "{by_renewd:?}");
    }
    assert_eq!(
        tags(&by_renewd),
        tags(&by_certbot),
        "{by_renewd:?} vs {by_certbot:?}"
    );
    eprintln!("--- whole test: {:.1?}", started.elapsed());
}

/// `renewd import certbot` on a certbot tree made by hand (no topology), with at most 1 GB of address
/// space: a file that is read without a cap fails with "out of memory" instead of the message asked for.
fn import_bounded(cb: &Path, config: &Path) -> std::process::Output {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -v 1048576 && exec \"$0\" \"$@\""])
        .arg(crate::support::renewd_bin())
        .arg("--config")
        .arg(config)
        .args(["import", "certbot"])
        .arg(cb);
    output_with_timeout(&mut cmd, Duration::from_secs(60)).expect("renewd import runs")
}

#[test]
fn import_refuses_a_credentials_file_at_dev_zero_and_a_renewal_conf_that_is_a_fifo() {
    let tmp = tempfile::tempdir().unwrap();
    let cb = tmp.path().join("letsencrypt");
    fs::create_dir_all(cb.join("renewal")).unwrap();
    let conf = cb.join("renewal/web.example.test.conf");
    fs::write(
        &conf,
        "version = 2.1.0\ncert = /nonexistent/cert.pem\n[renewalparams]\nauthenticator = dns-rfc2136\n\
         dns_rfc2136_credentials = /dev/zero\nserver = https://acme.example.test/directory\n",
    )
    .unwrap();
    let config = tmp.path().join("renewd/renewd.yaml");

    let out = import_bounded(&cb, &config);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "{} (certificate `web.example.test`): the credentials file /dev/zero is a character device, \
             not a regular file",
            conf.display()
        )),
        "{text}"
    );
    assert!(text.contains("nothing could be converted"), "{text}");

    fs::remove_file(&conf).unwrap();
    crate::support::mkfifo(&conf);
    let out = import_bounded(&cb, &config);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "{} is a named pipe (FIFO), not a regular file",
            conf.display()
        )),
        "{text}"
    );
    assert!(!config.exists());
}
