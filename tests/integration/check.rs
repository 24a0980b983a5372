//! `renewd check` through the real binary: no network, every error as FILE:LINE:COL, exit status 2.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::renewd_bin;

const KEY: &str = "key \"acme-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=\";\n};\n";

/// A valid installation in `dir`: global file, secrets (0600), and the given specs.
fn install(dir: &Path, specs: &[(&str, &str)]) {
    fs::create_dir_all(dir.join("certs.d")).unwrap();
    fs::create_dir_all(dir.join("secrets")).unwrap();
    fs::write(dir.join("secrets/acme-update.key"), KEY).unwrap();
    fs::write(
        dir.join("secrets/ca.eab"),
        "c2VjcmV0LWVhYi1rZXktb2YtdGhlLWNh\n",
    )
    .unwrap();
    for f in ["secrets/acme-update.key", "secrets/ca.eab"] {
        fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o600)).unwrap();
    }
    fs::write(
        dir.join("renewd.yaml"),
        format!(
            "state_dir: {}/state\n\
             accounts:\n  ca:\n    directory: https://acme.example.test/directory\n    \
             eab: {{ kid: kid-1, hmac_key_file: secrets/ca.eab }}\n\
             dns_servers:\n  acme-master:\n    address: 192.0.2.53\n    tsig_key_file: secrets/acme-update.key\n\
             defaults: {{ account: ca, dns: acme-master }}\n",
            dir.display()
        ),
    )
    .unwrap();
    for (name, body) in specs {
        fs::write(dir.join("certs.d").join(format!("{name}.yaml")), body).unwrap();
    }
}

fn check(dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(renewd_bin())
        .arg("--config")
        .arg(dir.join("renewd.yaml"))
        .arg("check")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_valid_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    install(
        tmp.path(),
        &[(
            "gitlab",
            "domains: [gitlab.example.test]\nkey: { type: rsa, bits: 3072 }\n",
        )],
    );
    let (code, stdout, stderr) = check(tmp.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("OK (1 certificate(s)"), "{stdout}");
    assert!(!stderr.contains("2FbcAy"), "secret in output");
}

#[test]
fn check_reports_every_error_with_file_line_col_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    install(
        tmp.path(),
        &[
            ("typo", "domain: [a.example.test]\n"),
            ("empty", "domains: []\n"),
            ("badname", "domains: [\"bad_label.example.test\"]\n"),
            ("noaccount", "domains: [c.example.test]\naccount: nosuch\n"),
            (
                "duration",
                "domains: [d.example.test]\nrenew_before: a month\n",
            ),
            ("dup", "domains: [c.example.test]\n"),
        ],
    );
    let (code, stdout, stderr) = check(tmp.path());
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    let certs = tmp.path().join("certs.d");
    let expect = [
        (
            format!("{}/typo.yaml:1:1:", certs.display()),
            "did you mean `domains`",
        ),
        (format!("{}/empty.yaml:1:", certs.display()), "domains"),
        (format!("{}/badname.yaml:1:", certs.display()), "bad_label"),
        (format!("{}/noaccount.yaml:2:", certs.display()), "nosuch"),
        (format!("{}/duration.yaml:2:", certs.display()), "a month"),
        (
            format!("{}/noaccount.yaml", certs.display()),
            "c.example.test",
        ),
    ];
    for (location, words) in expect {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&location) && l.contains(words)),
            "no error at {location} mentioning {words:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_warns_about_a_secret_readable_by_others_and_refuses_md5() {
    let tmp = tempfile::tempdir().unwrap();
    install(tmp.path(), &[("web", "domains: [w.example.test]\n")]);
    let key = tmp.path().join("secrets/acme-update.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stdout, stderr) = check(tmp.path());
    assert_eq!(code, Some(0), "a warning is not an error: {stdout}{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "{stderr}"
    );

    fs::write(&key, KEY.replace("hmac-sha256", "hmac-md5")).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = check(tmp.path());
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("{}:2:", key.display()))
            && stderr.contains("tsig-keygen -a hmac-sha256"),
        "{stderr}"
    );
}
