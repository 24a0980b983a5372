//! `renewd check` through the real binary: no network, every error as FILE:LINE:COL, exit status 2.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::proc::output_with_timeout;
use crate::support::{mkfifo, renewd_bin};

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
    // Bounded: a file that hangs or floods the reader must fail the test, not the CI job.
    let out = output_with_timeout(
        Command::new(renewd_bin())
            .arg("--config")
            .arg(dir.join("renewd.yaml"))
            .arg("check"),
        Duration::from_secs(60),
    )
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
fn check_refuses_a_secret_readable_by_others_and_md5() {
    let tmp = tempfile::tempdir().unwrap();
    install(tmp.path(), &[("web", "domains: [w.example.test]\n")]);
    let key = tmp.path().join("secrets/acme-update.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stdout, stderr) = check(tmp.path());
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display()))
            && stderr.contains("allow_readable_secrets"),
        "{stderr}"
    );
    // The explicit override makes it a warning.
    let global = tmp.path().join("renewd.yaml");
    let text = fs::read_to_string(&global).unwrap();
    fs::write(&global, format!("allow_readable_secrets: true\n{text}")).unwrap();
    let (code, stdout, stderr) = check(tmp.path());
    assert_eq!(code, Some(0), "a warning is not an error: {stdout}{stderr}");
    assert!(stderr.contains("warning"), "{stderr}");
    fs::write(&global, text).unwrap();

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

/// Point `what` in the global file at `target` instead of the file `install` wrote.
fn repoint(dir: &Path, what: &str, target: &Path) {
    let global = dir.join("renewd.yaml");
    let text = fs::read_to_string(&global).unwrap();
    assert!(text.contains(what));
    fs::write(&global, text.replace(what, &target.display().to_string())).unwrap();
}

/// `renewd check` fails with exit status 2 and a line of stderr at `at` (`FILE:LINE:`) that mentions
/// all of `words`.
fn expect_check_error(dir: &Path, at: &str, words: &[&str]) {
    let (code, stdout, stderr) = check(dir);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(at) && words.iter().all(|w| l.contains(w))),
        "no line at {at} with {words:?} in:\n{stderr}"
    );
}

#[test]
fn check_refuses_a_device_a_fifo_a_directory_and_a_huge_spec_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    install(dir, &[("web", "domains: [w.example.test]\n")]);
    let global = dir.join("renewd.yaml").display().to_string();

    // tsig_key_file → /dev/zero: read to the end, it never ends.
    repoint(dir, "secrets/acme-update.key", Path::new("/dev/zero"));
    expect_check_error(
        dir,
        &format!("{global}:9:"),
        &[
            "`dns_servers.acme-master.tsig_key_file`",
            "/dev/zero is a character device, not a regular file",
        ],
    );

    // hmac_key_file → a named pipe: opened for reading, it blocks until a writer comes.
    install(dir, &[]);
    let fifo = dir.join("secrets/pipe.eab");
    mkfifo(&fifo);
    repoint(dir, "secrets/ca.eab", &fifo);
    let found = format!(
        "{} is a named pipe (FIFO), not a regular file",
        fifo.display()
    );
    expect_check_error(
        dir,
        &format!("{global}:5:"),
        &["`accounts.ca.eab.hmac_key_file`", &found],
    );

    // trust: → a directory.
    install(dir, &[]);
    let text = fs::read_to_string(dir.join("renewd.yaml")).unwrap();
    let text = text.replace(
        "    eab:",
        &format!("    trust: {}\n    eab:", dir.join("secrets").display()),
    );
    fs::write(dir.join("renewd.yaml"), text).unwrap();
    expect_check_error(
        dir,
        &format!("{global}:5:"),
        &["`accounts.ca.trust`", "is a directory, not a regular file"],
    );

    // A 2 MB spec: refused by its size, before YAML sees it.
    install(dir, &[]);
    let big = dir.join("certs.d/big.yaml");
    fs::write(&big, "# padding\n".repeat(200_000)).unwrap();
    expect_check_error(
        dir,
        &format!("{}: error:", big.display()),
        &["the spec file is 2000000 bytes, more than the 1048576"],
    );
}

#[test]
fn check_shows_twenty_errors_of_a_file_with_100000_unknown_keys_and_sums_up_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut text = String::with_capacity(1_000_000);
    for i in 0..100_000 {
        text.push_str(&format!("k{i:05}: 1\n"));
    }
    install(tmp.path(), &[("many", &text)]);
    let spec = tmp.path().join("certs.d/many.yaml");
    let (code, stdout, stderr) = check(tmp.path());
    assert_eq!(code, Some(2), "{stdout}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&spec.display().to_string()))
        .collect();
    assert_eq!(lines.len(), 21, "{stderr}");
    assert!(
        lines[0].contains(":1:1: error: unknown key `k00000`"),
        "{stderr}"
    );
    assert!(
        lines[20]
            .ends_with("error: … and 99980 more errors in this file (fix the ones above first)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("renewd: 100000 error(s) in the configuration"),
        "{stderr}"
    );
}
