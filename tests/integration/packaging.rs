//! The shipped systemd unit and configuration examples: checked with the real tools.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::renewd_bin;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every example directory (one `renewd.yaml` each).
fn examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(repo().join("config-examples"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("renewd.yaml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "examples: {dirs:?}");
    dirs
}

fn check(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(renewd_bin())
        .arg("--config")
        .arg(config)
        .arg("check")
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Copy a directory tree (examples are small).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify_silently() {
    let tmp = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = fs::read_to_string(repo().join("packaging/systemd/renewd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/renewd run"));
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let unit = unit.replace("/usr/bin/renewd", renewd_bin().to_str().unwrap());
    let path = tmp.path().join("renewd.service");
    fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

#[test]
fn every_config_example_passes_renewd_check() {
    for dir in examples() {
        let (code, text) = check(&dir.join("renewd.yaml"));
        assert_eq!(code, Some(0), "{}: {text}", dir.display());
        assert!(!text.contains("error"), "{}: {text}", dir.display());
    }
}

/// Each example with an unknown key added to its global file and to its first spec: `renewd check` names
/// the file and the line.
#[test]
fn every_config_example_mutated_with_an_unknown_key_fails_with_file_and_line() {
    for dir in examples() {
        let tmp = tempfile::tempdir().unwrap();
        copy_tree(&dir, tmp.path());
        let global = tmp.path().join("renewd.yaml");
        let text = fs::read_to_string(&global).unwrap();
        let line = text.lines().count() + 1;
        fs::write(&global, format!("{text}unknown_key: 1\n")).unwrap();
        let (code, out) = check(&global);
        assert_eq!(code, Some(2), "{}: {out}", dir.display());
        let at = format!("{}:{line}:", global.display());
        assert!(
            out.contains(&at),
            "{}: expected {at} in {out}",
            dir.display()
        );
        fs::write(&global, text).unwrap();

        let spec = fs::read_dir(tmp.path().join("certs.d"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "yaml"))
            .expect("a spec");
        let text = fs::read_to_string(&spec).unwrap();
        let line = text.lines().count() + 1;
        fs::write(&spec, format!("{text}unknown_key: 1\n")).unwrap();
        let (code, out) = check(&global);
        assert_eq!(code, Some(2), "{}: {out}", spec.display());
        let at = format!("{}:{line}:", spec.display());
        assert!(
            out.contains(&at) && out.contains("unknown key `unknown_key`"),
            "{}: expected {at} in {out}",
            spec.display()
        );
    }
}

/// The BIND side of the examples loads in named's own checkers.
#[test]
fn bind_examples_pass_named_checkconf_and_checkzone() {
    let bind = repo().join("config-examples/bind");
    let tmp = tempfile::tempdir().unwrap();
    let key = repo().join("config-examples/gitlab-eab/secrets/acme-update.key");
    let primary = fs::read_to_string(bind.join("primary.named.conf"))
        .unwrap()
        .replace("/etc/bind/keys/acme-update.key", key.to_str().unwrap());
    for (name, text) in [
        ("primary.conf", primary),
        (
            "secondary.conf",
            fs::read_to_string(bind.join("secondary.named.conf")).unwrap(),
        ),
    ] {
        let p = tmp.path().join(name);
        fs::write(&p, text).unwrap();
        let out = Command::new("named-checkconf").arg(&p).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("named-checkzone")
        .arg("_acme-challenge.gitlab.example.ac.jp")
        .arg(bind.join("db._acme-challenge.gitlab.example.ac.jp"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
