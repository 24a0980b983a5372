//! The shipped systemd unit and configuration examples: checked with the real tools.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::proc::poll_until;
use crate::support::{assert_success, output_text, renewd_bin};

#[path = "../../packaging/docs.rs"]
mod docs;

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
/// The value of `KEY=` in the shipped systemd unit.
fn unit_setting(key: &str) -> String {
    let unit = fs::read_to_string(repo().join("packaging/systemd/renewd.service")).unwrap();
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .trim()
        .to_string()
}

/// The README's security model names exactly the capabilities the unit keeps.
#[test]
fn readme_names_the_units_capabilities() {
    let caps = unit_setting("CapabilityBoundingSet");
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.contains("CapabilityBoundingSet"))
        .expect("the README names CapabilityBoundingSet");
    for cap in caps.split_whitespace() {
        assert!(line.contains(cap), "the README does not name {cap}: {line}");
    }
    let named = line.matches("CAP_").count();
    assert_eq!(named, caps.split_whitespace().count(), "{line}");
}

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
    // ... and its Documentation=man:renewd(1) at the page the package installs.
    let man1 = tmp.path().join("man/man1");
    fs::create_dir_all(&man1).unwrap();
    fs::copy(repo().join("packaging/man/renewd.1"), man1.join("renewd.1")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", tmp.path().join("man"))
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
fn every_config_example_passes_renewd_check_once_its_placeholder_secrets_are_replaced() {
    use std::os::unix::fs::PermissionsExt;
    for dir in examples() {
        let tmp = tempfile::tempdir().unwrap();
        copy_tree(&dir, tmp.path());
        let global = tmp.path().join("renewd.yaml");
        // As copied: the placeholders are refused, each naming its file.
        let (code, text) = check(&global);
        assert_eq!(code, Some(2), "{}: {text}", dir.display());
        let secrets: Vec<PathBuf> = fs::read_dir(tmp.path().join("secrets"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(!secrets.is_empty(), "{}", dir.display());
        for s in &secrets {
            assert!(
                text.contains(&format!(
                    "{} still holds the example's placeholder",
                    s.display()
                )),
                "{}: {text}",
                s.display()
            );
        }
        // Real secrets, mode 0600: clean.
        for s in &secrets {
            let file_name = s.file_name().unwrap().to_string_lossy().into_owned();
            let real = if file_name.starts_with("etcd-") {
                // An etcd client certificate's private key (PEM).
                let out = Command::new("openssl")
                    .args([
                        "genpkey",
                        "-algorithm",
                        "EC",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                    ])
                    .output()
                    .expect("openssl");
                assert!(out.status.success());
                out.stdout
            } else if file_name.ends_with(".seal") {
                b"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n".to_vec()
            } else if s.extension().is_some_and(|e| e == "key") {
                let out = Command::new("tsig-keygen")
                    .args(["-a", "hmac-sha256", "acme-update"])
                    .output()
                    .expect("tsig-keygen (bind9-utils)");
                assert!(out.status.success());
                out.stdout
            } else {
                b"cmVhbC1sb29raW5nLXJhbmRvbS1ieXRlcy0wMTIzNDU2Nzg5\n".to_vec()
            };
            fs::write(s, real).unwrap();
            fs::set_permissions(s, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let (code, text) = check(&global);
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

/// The committed man pages and completions (what the package ships) are what the clap definitions
/// render today: a changed option cannot ship with stale documentation.
#[test]
fn man_pages_and_completions_match_the_cli() {
    let rendered = docs::render_all();
    assert!(rendered.len() >= 10, "{} files", rendered.len());
    let mut stale = Vec::new();
    for (rel, bytes) in &rendered {
        if fs::read(repo().join(rel)).ok().as_ref() != Some(bytes) {
            stale.push(rel.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {}; run `cargo run --example gen-docs` and commit the result",
        stale.join(", ")
    );
    // Nothing generated earlier for a subcommand that no longer exists.
    for dir in ["packaging/man", "packaging/completions"] {
        for e in fs::read_dir(repo().join(dir)).unwrap().flatten() {
            let rel = PathBuf::from(dir).join(e.file_name());
            assert!(
                rendered.iter().any(|(r, _)| *r == rel),
                "{} is not generated any more: delete it",
                rel.display()
            );
        }
    }
    // The pages a user reaches from renewd(1) exist, one per subcommand.
    let main = String::from_utf8(
        rendered
            .iter()
            .find(|(r, _)| r.ends_with("renewd.1"))
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    for sub in ["run", "check", "status", "renew", "dns-test", "import"] {
        assert!(
            main.contains(&format!("renewd\\-{}(1)", sub.replace('-', "\\-"))),
            "renewd.1 lacks renewd-{sub}(1)"
        );
        assert!(
            rendered
                .iter()
                .any(|(r, _)| r.ends_with(format!("renewd-{sub}.1"))),
            "no page for {sub}"
        );
    }
}

/// Runs a command, panics with its output unless it succeeds; returns stdout + stderr.
fn ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_success(what, &out);
    output_text(&out)
}

fn dpkg_status() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status} ${Version}", "renewd"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty() && !s.contains("not-installed")).then_some(s)
}

/// Purges the package when the test ends, also when it fails half way.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        if dpkg_status().is_some() {
            let _ = Command::new("dpkg").args(["--purge", "renewd"]).output();
        }
    }
}

/// Everything installed by the package: gone after purge.
const INSTALLED: &[&str] = &[
    "/usr/bin/renewd",
    "/usr/lib/systemd/system/renewd.service",
    "/etc/renewd/renewd.yaml",
    "/usr/share/man/man1/renewd.1.gz",
    "/usr/share/man/man1/renewd-dns-test.1.gz",
    "/usr/share/man/man5/renewd.yaml.5.gz",
    "/usr/share/bash-completion/completions/renewd",
    "/usr/share/zsh/vendor-completions/_renewd",
    "/usr/share/fish/vendor_completions.d/renewd.fish",
    "/usr/share/doc/renewd/README.md",
    "/usr/share/doc/renewd/examples/gitlab-eab/renewd.yaml",
    "/usr/share/doc/renewd/monitoring/renewd.rules.yml",
    "/usr/share/doc/renewd/monitoring/renewd-dashboard.json",
];

/// The Debian package as CI builds it (`cargo deb`, release build), its contents, and its life on this
/// machine: install, `renewd check` on the shipped configuration, an administrator's edit surviving an
/// upgrade, remove keeping the configuration, purge leaving nothing. Installs into the real system, so
/// it refuses to run where a renewd package is already installed.
#[test]
fn debian_package_builds_installs_upgrades_and_purges_cleanly() {
    if let Some(s) = dpkg_status() {
        panic!("a renewd package is installed on this machine ({s}); this test installs and purges its own, so remove that one first");
    }
    let state_dir_existed = Path::new("/var/lib/renewd").exists();
    let out_dir = tempfile::tempdir().unwrap();
    // nice: the release build must not starve the timing-sensitive tests running beside it.
    let built = ok(
        "cargo deb",
        Command::new("nice")
            .args(["-n", "19"])
            .arg(env!("CARGO"))
            .args(["deb", "--locked", "--deb-revision", "1", "--output"])
            .arg(out_dir.path().join("renewd_1.deb"))
            .current_dir(repo()),
    );
    let deb = out_dir.path().join("renewd_1.deb");
    assert!(deb.exists(), "{built}");

    // Contents: every path the package promises, with the right modes, and nothing else.
    let listing = ok("dpkg-deb -c", Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: Vec<(String, String)> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let mode = l.split_whitespace().next().unwrap().to_string();
            let path = l
                .rsplit(' ')
                .next()
                .unwrap()
                .trim_start_matches('.')
                .to_string();
            (path, mode)
        })
        .collect();
    let mode_of = |p: &str| {
        files
            .iter()
            .find(|(f, _)| f == p)
            .map(|(_, m)| m.as_str())
            .unwrap_or_else(|| panic!("{p} not in the package:\n{listing}"))
    };
    assert_eq!(mode_of("/usr/bin/renewd"), "-rwxr-xr-x");
    for p in INSTALLED.iter().skip(1) {
        assert_eq!(mode_of(p), "-rw-r--r--", "{p}");
    }
    for sub in ["run", "check", "status", "renew", "dns-test", "import"] {
        mode_of(&format!("/usr/share/man/man1/renewd-{sub}.1.gz"));
    }
    for dir in examples() {
        let name = dir.file_name().unwrap().to_str().unwrap();
        for e in fs::read_dir(dir.join("certs.d")).unwrap().flatten() {
            mode_of(&format!(
                "/usr/share/doc/renewd/examples/{name}/certs.d/{}",
                e.file_name().to_str().unwrap()
            ));
        }
    }
    for e in fs::read_dir(repo().join("config-examples/bind"))
        .unwrap()
        .flatten()
    {
        mode_of(&format!(
            "/usr/share/doc/renewd/examples/bind/{}",
            e.file_name().to_str().unwrap()
        ));
    }
    let allowed = [
        "/usr/bin/renewd",
        "/etc/renewd/renewd.yaml",
        "/usr/lib/systemd/system/renewd.service",
        "/usr/share/",
    ];
    for (f, _) in &files {
        assert!(
            allowed.iter().any(|a| f.starts_with(a)),
            "unexpected file {f} in the package"
        );
    }
    // Debian's own package checker: no error or warning (info-level tags are allowed).
    let lint = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .expect("lintian runs (installed by .ci/install-deps)");
    let tags = String::from_utf8_lossy(&lint.stdout);
    let bad: Vec<&str> = tags
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(bad.is_empty(), "lintian:\n{}", bad.join("\n"));
    let conffiles = ok(
        "dpkg-deb --info conffiles",
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert_eq!(conffiles.trim(), "/etc/renewd/renewd.yaml");
    let unit = ok(
        "unit from the package",
        Command::new("sh").arg("-c").arg(format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -xO ./usr/lib/systemd/system/renewd.service",
            deb.display()
        )),
    );
    assert_eq!(
        unit,
        fs::read_to_string(repo().join("packaging/systemd/renewd.service")).unwrap()
    );

    let _purge = PurgeOnDrop;
    ok("dpkg -i", Command::new("dpkg").arg("-i").arg(&deb));
    assert!(dpkg_status()
        .unwrap()
        .starts_with("install ok installed 0.1.0-1"));
    for p in INSTALLED {
        assert!(Path::new(p).exists(), "{p} not installed");
    }
    let version = ok(
        "renewd --version",
        Command::new("/usr/bin/renewd").arg("--version"),
    );
    assert_eq!(
        version.trim(),
        format!("renewd {}", env!("CARGO_PKG_VERSION"))
    );
    // The shipped default configuration is valid as installed: nothing to renew yet, and it says so.
    let check = ok("renewd check", Command::new("/usr/bin/renewd").arg("check"));
    assert!(
        check.contains(
            "/etc/renewd/renewd.yaml: OK (0 certificate(s), 0 account(s), 0 dns server(s))"
        ),
        "{check}"
    );
    assert!(check.contains("no ACME account defined yet"), "{check}");
    // certs.d is there and empty; secrets/ is root's alone.
    assert_eq!(fs::read_dir("/etc/renewd/certs.d").unwrap().count(), 0);
    assert_eq!(
        crate::support::renewd::mode(Path::new("/etc/renewd/secrets")),
        0o700
    );
    // /etc/renewd as the unit's ConfigurationDirectoryMode= says.
    let unit_mode = unit_setting("ConfigurationDirectoryMode");
    assert_eq!(
        format!(
            "{:04o}",
            crate::support::renewd::mode(Path::new("/etc/renewd"))
        ),
        unit_mode
    );
    // The unit as installed, with the real binary and man page: systemd-analyze has nothing to say.
    let verify = Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/renewd.service"])
        .output()
        .unwrap();
    assert!(
        verify.status.success() && output_text(&verify).trim().is_empty(),
        "{}",
        output_text(&verify)
    );
    // Enabled for multi-user.target; started too where systemd runs the machine (not in a container
    // without it, like the machines this was written on): then it must come up under the hardened unit
    // (Type=notify: active only after READY=1) and say what to do next.
    assert!(Path::new("/etc/systemd/system/multi-user.target.wants/renewd.service").exists());
    let systemd = Path::new("/run/systemd/system").is_dir();
    if systemd {
        let active = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            let out = Command::new("systemctl")
                .args(["is-active", "renewd"])
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout).trim() == "active").then_some(())
        });
        let journal = || {
            Command::new("journalctl")
                .args(["-u", "renewd", "--no-pager", "-n", "30"])
                .output()
                .map(|o| output_text(&o))
                .unwrap_or_default()
        };
        assert!(
            active.is_some(),
            "renewd.service did not become active:\n{}",
            journal()
        );
        let status = ok(
            "systemctl show",
            Command::new("systemctl").args(["show", "-p", "StatusText", "--value", "renewd"]),
        );
        assert!(
            status.contains("no certificates yet"),
            "{status}\n{}",
            journal()
        );
    }
    // man finds the page; bash completes the subcommands.
    let page = ok("man -w renewd", Command::new("man").args(["-w", "renewd"]));
    assert_eq!(page.trim(), "/usr/share/man/man1/renewd.1.gz");
    let completed = ok(
        "bash completion",
        Command::new("bash").arg("-c").arg(
            "source /usr/share/bash-completion/completions/renewd; \
             COMP_WORDS=(renewd dn); COMP_CWORD=1; COMP_LINE='renewd dn'; COMP_POINT=9; \
             _renewd renewd dn renewd; echo \"${COMPREPLY[@]}\"",
        ),
    );
    assert_eq!(completed.trim(), "dns-test");

    // An upgrade keeps the administrator's edits to the conffile (and asks nothing).
    let edited = format!(
        "{}workers: 2\n",
        fs::read_to_string("/etc/renewd/renewd.yaml")
            .unwrap()
            .replace("workers: 4", "")
    );
    fs::write("/etc/renewd/renewd.yaml", &edited).unwrap();
    let deb2 = out_dir.path().join("renewd_2.deb");
    ok(
        "cargo deb --no-build (revision 2)",
        Command::new(env!("CARGO"))
            .args([
                "deb",
                "--locked",
                "--no-build",
                "--deb-revision",
                "2",
                "--output",
            ])
            .arg(&deb2)
            .current_dir(repo()),
    );
    ok(
        "dpkg -i (upgrade)",
        Command::new("dpkg")
            .arg("-i")
            .arg(&deb2)
            .stdin(std::process::Stdio::null()),
    );
    assert!(dpkg_status()
        .unwrap()
        .starts_with("install ok installed 0.1.0-2"));
    assert_eq!(
        fs::read_to_string("/etc/renewd/renewd.yaml").unwrap(),
        edited
    );
    ok(
        "renewd check after the upgrade",
        Command::new("/usr/bin/renewd").arg("check"),
    );

    // remove: the program goes, the configuration stays.
    ok(
        "dpkg --remove",
        Command::new("dpkg").args(["--remove", "renewd"]),
    );
    assert!(!Path::new("/usr/bin/renewd").exists());
    assert_eq!(
        fs::read_to_string("/etc/renewd/renewd.yaml").unwrap(),
        edited
    );
    assert!(dpkg_status()
        .unwrap()
        .starts_with("deinstall ok config-files"));

    // purge: nothing left of the package, nor of what its scripts made.
    ok(
        "dpkg --purge",
        Command::new("dpkg").args(["--purge", "renewd"]),
    );
    assert_eq!(dpkg_status(), None);
    for p in INSTALLED.iter().chain(&[
        "/etc/renewd",
        "/etc/systemd/system/multi-user.target.wants/renewd.service",
        "/var/lib/dpkg/info/renewd.list",
        "/var/lib/dpkg/info/renewd.postrm",
    ]) {
        assert!(!Path::new(p).exists(), "{p} left after purge");
    }
    if systemd && !state_dir_existed {
        // The service this test started made it (StateDirectory=); purge keeps it by design.
        assert!(
            Path::new("/var/lib/renewd").exists(),
            "purge deleted the state directory"
        );
        fs::remove_dir_all("/var/lib/renewd").unwrap();
    } else {
        assert_eq!(
            Path::new("/var/lib/renewd").exists(),
            state_dir_existed,
            "purge touched /var/lib/renewd"
        );
    }
}

/// What a fresh package install starts (postinst enables and starts renewd.service): the shipped
/// /etc/renewd/renewd.yaml with an empty certs.d. The daemon comes up, says in its status what to do
/// next, and stops cleanly.
#[test]
fn shipped_default_config_starts_the_daemon_with_nothing_to_do() {
    use crate::support::notify::NotifySocket;
    let tmp = tempfile::tempdir().unwrap();
    let certs_d = tmp.path().join("certs.d");
    fs::create_dir(&certs_d).unwrap();
    let shipped = fs::read_to_string(repo().join("packaging/renewd.yaml")).unwrap();
    assert!(
        shipped.contains("state_dir: /var/lib/renewd")
            && shipped.contains("certs_dir: /etc/renewd/certs.d")
    );
    let config = tmp.path().join("renewd.yaml");
    fs::write(
        &config,
        shipped
            .replace(
                "/var/lib/renewd",
                tmp.path().join("state").to_str().unwrap(),
            )
            .replace("/etc/renewd/certs.d", certs_d.to_str().unwrap()),
    )
    .unwrap();
    let sock = NotifySocket::new();
    let mut child = crate::support::renewd::spawn_run(&config, &sock);
    let timeout = std::time::Duration::from_secs(20);
    sock.expect("READY=1", |m| m.contains("READY=1"), timeout);
    let want = format!(
        "STATUS=no certificates yet: add one NAME.yaml spec per certificate to {}",
        certs_d.display()
    );
    assert!(
        sock.messages().iter().any(|m| m.lines().any(|l| l == want)),
        "{:?}",
        sock.messages()
    );
    crate::support::renewd::signal(child.id(), libc::SIGTERM);
    sock.expect("STOPPING=1", |m| m.contains("STOPPING=1"), timeout);
    let status =
        crate::support::renewd::wait_exit(&mut child, timeout).expect("renewd exits after SIGTERM");
    assert!(status.success(), "{status}");
}
