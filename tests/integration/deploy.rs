//! Deploy and reload against real servers (issue 5): real nginx and Apache serving TLS from deployed
//! files, a broken nginx config rolled back, GitLab and systemd through stand-in tools, commands and
//! certbot-style hooks, modes and owners, planted symlinks.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::proc::output_with_timeout;
use crate::support::proc::poll_until;
use crate::support::renewd::{log_text, mode, signal, wait_exit, Renewd, Run};
use crate::support::topology::{domain, Topology, TopologyOptions};
use crate::support::webservers::{self_signed, WebServer};
use crate::support::x509::cert_serial;
use crate::support::{renewd_bin, SpecFixture};

fn topology() -> Topology {
    Topology::start(TopologyOptions {
        n_hosts: 1,
        notify_delay: Some(0),
        ..Default::default()
    })
}

/// A YAML double-quoted scalar.
fn q(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).unwrap()
}

fn qp(p: &Path) -> String {
    q(p.to_str().unwrap())
}

/// `renewd --config … ARGS` with extra environment variables.
fn run_env(r: &Renewd, args: &[&str], env: &[(&str, String)]) -> Run {
    let mut cmd = r.topo.command(renewd_bin());
    cmd.arg("--config").arg(r.config()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(output_with_timeout(&mut cmd, std::time::Duration::from_secs(120)).unwrap())
}

fn all_output(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

/// A directory as an admin would make it: 0755, root's.
fn mkdir(p: &Path) -> PathBuf {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    p.to_path_buf()
}

/// No temp files or `.renewd-prev` links left beside the deployed files.
fn assert_no_leftovers(dir: &Path) {
    let hidden: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "left in {}: {hidden:?}", dir.display());
}

fn uid_gid(name_user: &str, name_group: &str) -> (u32, u32) {
    let u = std::ffi::CString::new(name_user).unwrap();
    let g = std::ffi::CString::new(name_group).unwrap();
    // SAFETY: getpwnam/getgrnam with NUL-terminated names; results read at once.
    unsafe {
        let pw = libc::getpwnam(u.as_ptr());
        let gr = libc::getgrnam(g.as_ptr());
        assert!(!pw.is_null() && !gr.is_null(), "{name_user}/{name_group}");
        ((*pw).pw_uid, (*gr).gr_gid)
    }
}

/// Real nginx and Apache, each with its own deploy target; after each renewal both serve the new serial.
/// Modes and owners as configured.
#[test]
fn real_nginx_and_apache_serve_the_renewed_certificate() {
    let topo = topology();
    let h1 = domain("host1");
    let web = topo.dir().join("web");
    let ssl = mkdir(&web.join("ssl"));
    let (ngx_dir, apa_dir) = (mkdir(&web.join("nginx")), mkdir(&web.join("apache")));
    let (ngx_crt, ngx_key) = (ssl.join("nginx.crt"), ssl.join("nginx.key"));
    let (apa_crt, apa_key) = (ssl.join("apache.crt"), ssl.join("apache.key"));
    self_signed(&h1, &ngx_crt, &ngx_key);
    self_signed(&h1, &apa_crt, &apa_key);
    let nginx = WebServer::nginx(&topo, &ngx_dir, 8443, &h1, &ngx_crt, &ngx_key);
    let apache = WebServer::apache(&topo, &apa_dir, 9443, &h1, &apa_crt, &apa_key);
    let placeholder = nginx.serial(&topo).unwrap();

    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&h1])
            .line("deploy:")
            .line(&format!(
                "  - {{ fullchain: {}, key: {}, owner: nobody, group: nogroup, mode: \"0640\" }}",
                qp(&ngx_crt),
                qp(&ngx_key)
            ))
            .line(&format!(
                "  - {{ fullchain: {}, key: {} }}",
                qp(&apa_crt),
                qp(&apa_key)
            ))
            .line("reload:")
            .line(&format!("  - nginx: {{ config: {} }}", qp(&nginx.config)))
            .line(&format!("  - apache: {{ config: {} }}", qp(&apache.config)))],
    );
    r.run(&["check"]).expect_code(0);

    let mut previous = placeholder;
    for args in [&["renew"][..], &["renew", "--force"][..]] {
        let run = r.run(args);
        run.expect_code(0);
        let serial = cert_serial(&r.live("host1", "cert.pem"));
        assert_ne!(serial, previous);
        nginx.wait_for_serial(&topo, &serial);
        apache.wait_for_serial(&topo, &serial);
        assert_eq!(
            fs::read(&ngx_crt).unwrap(),
            fs::read(r.live("host1", "fullchain.pem")).unwrap()
        );
        previous = serial;
    }

    let (nobody, nogroup) = uid_gid("nobody", "nogroup");
    let m = fs::metadata(&ngx_key).unwrap();
    assert_eq!((m.uid(), m.gid(), mode(&ngx_key)), (nobody, nogroup, 0o640));
    assert_eq!(
        mode(&ngx_crt),
        0o640,
        "the target's mode applies to all its files"
    );
    let m = fs::metadata(&apa_key).unwrap();
    assert_eq!((m.uid(), mode(&apa_key)), (0, 0o600), "key default");
    assert_eq!(mode(&apa_crt), 0o644, "certificate default");
    assert_no_leftovers(&ssl);
}

/// nginx's config broken before a renewal: `nginx -t` fails, nothing is reloaded, the previous files are
/// back byte for byte, nginx still serves the old certificate, and renewd says why.
#[test]
fn a_broken_nginx_config_puts_the_previous_files_back_and_the_daemon_retries_after_the_fix() {
    let topo = topology();
    let h1 = domain("host1");
    let web = topo.dir().join("web");
    let ssl = mkdir(&web.join("ssl"));
    let ngx_dir = mkdir(&web.join("nginx"));
    let (crt, key) = (ssl.join("site.crt"), ssl.join("site.key"));
    self_signed(&h1, &crt, &key);
    let nginx = WebServer::nginx(&topo, &ngx_dir, 8443, &h1, &crt, &key);
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&h1])
            .line(&format!(
                "deploy: [{{ fullchain: {}, key: {}, mode: \"0600\" }}]",
                qp(&crt),
                qp(&key)
            ))
            .line(&format!(
                "reload: [{{ nginx: {{ config: {} }} }}]",
                qp(&nginx.config)
            ))],
    );
    r.run(&["renew"]).expect_code(0);
    let good = cert_serial(&r.live("host1", "cert.pem"));
    nginx.wait_for_serial(&topo, &good);
    let before: Vec<(Vec<u8>, u32, u64)> = [&crt, &key]
        .iter()
        .map(|p| {
            let m = fs::metadata(p).unwrap();
            (fs::read(p).unwrap(), mode(p), m.ino())
        })
        .collect();

    let site = ngx_dir.join("site.conf");
    let mut text = fs::read_to_string(&site).unwrap();
    text.push_str("bogus_directive on;\n");
    fs::write(&site, text).unwrap();

    let run = r.run(&["renew", "--force"]);
    run.expect_code(1);
    let line = run.line("host1");
    // The first line of `nginx -t`'s complaint (its format depends on the error_log setting).
    assert!(
        line.contains("FAILED: reload failed: ")
            && line.contains("[emerg]")
            && line.contains("unknown directive \"bogus_directive\""),
        "{}",
        all_output(&run)
    );
    let after: Vec<(Vec<u8>, u32, u64)> = [&crt, &key]
        .iter()
        .map(|p| {
            let m = fs::metadata(p).unwrap();
            (fs::read(p).unwrap(), mode(p), m.ino())
        })
        .collect();
    assert!(before == after, "the previous files are not back");
    assert_ne!(
        cert_serial(&r.live("host1", "cert.pem")),
        good,
        "live/ holds the new certificate"
    );
    assert_eq!(nginx.serial(&topo).as_deref(), Some(good.as_str()));
    assert_no_leftovers(&ssl);

    // The daemon retries the deploy of the live certificate without a new order: it fails while nginx's
    // configuration is broken (status.json says why, nginx keeps the old certificate), and succeeds at
    // once on SIGHUP after the administrator fixed nginx.
    let new_serial = cert_serial(&r.live("host1", "cert.pem"));
    let log = topo.dir().join("daemon.log");
    let mut daemon = r.spawn_logged(&["run"], &log, &[]);
    let status = || -> serde_json::Value {
        fs::read_to_string(r.state().join("status.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let failing = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let st = status();
        let err = st["certificates"]["host1"]["last_error"]
            .as_str()?
            .to_string();
        err.starts_with("reload failed: ").then_some(err)
    })
    .unwrap_or_else(|| {
        panic!(
            "status.json never said why: {}\n{}",
            status(),
            log_text(&log)
        )
    });
    assert!(failing.contains("bogus_directive"), "{failing}");
    assert_eq!(nginx.serial(&topo).as_deref(), Some(good.as_str()));

    let text = fs::read_to_string(&site).unwrap();
    fs::write(&site, text.replace("bogus_directive on;\n", "")).unwrap();
    signal(daemon.id(), libc::SIGHUP);
    nginx.wait_for_serial(&topo, &new_serial);
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        status()["certificates"]["host1"]["last_error"]
            .is_null()
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the failure is still reported: {}", status()));
    assert_eq!(
        cert_serial(&r.live("host1", "cert.pem")),
        new_serial,
        "no new order: the live certificate was deployed"
    );
    signal(daemon.id(), libc::SIGTERM);
    let exited = wait_exit(&mut daemon, Duration::from_secs(20)).expect("daemon exits");
    assert!(exited.success());
}

/// `gitlab` and `systemd` through stand-in tools on the documented PATH override, a `command` with
/// placeholders, and the seed's certbot-style hook script seeing RENEWED_LINEAGE / RENEWED_DOMAINS.
/// A relative deploy path is refused by `renewd check`.
#[test]
fn gitlab_systemd_command_and_certbot_hook_with_a_stand_in_gitlab_ctl() {
    let topo = topology();
    let h1 = domain("host1");
    let wild = format!("*.{h1}");
    let base = topo.dir().join("tools");
    let bin = mkdir(&base.join("bin"));
    let rec = mkdir(&base.join("rec"));
    for tool in ["gitlab-ctl", "systemctl"] {
        let p = bin.join(tool);
        fs::write(
            &p,
            format!("#!/bin/sh\necho \"$@\" >> {}/{tool}.argv\n", rec.display()),
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // As in /etc/letsencrypt/renewal-hooks/deploy/gitlab-reload.sh: bash, reads the lineage.
    let hook = mkdir(&base.join("renewal-hooks/deploy")).join("gitlab-reload.sh");
    fs::write(
        &hook,
        format!(
            "#!/bin/bash\nset -e\nR={r}\necho \"$RENEWED_LINEAGE\" > $R/lineage\necho \"$RENEWED_DOMAINS\" > $R/domains\n\
             cp \"$RENEWED_LINEAGE/fullchain.pem\" $R/hook-fullchain.pem\nenv | sort > $R/env\n",
            r = rec.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let args_file = rec.join("command.args");
    let command = format!(
        "  - command: [/bin/sh, -c, {}, sh, \"{{name}}\", \"{{fullchain}}\", \"{{key}}\", \"{{domains}}\"]",
        q(format!("printf '%s\\n' \"$@\" > {}", args_file.display()))
    );

    // A relative deploy path: `renewd check` refuses it.
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&h1, &wild]).line("deploy: [{ key: ssl/host1.key }]")],
    );
    let run = r.run(&["check"]);
    run.expect_code(2);
    assert!(
        all_output(&run)
            .contains("`deploy[0].key` must be an absolute path, found `ssl/host1.key`"),
        "{}",
        all_output(&run)
    );

    let spec = [
        format!("domains: [{}, {}]", q(&h1), q(&wild)),
        "reload:".into(),
        "  - gitlab: nginx".into(),
        "  - systemd: haproxy.service".into(),
        command,
        format!("hooks: [{}]", qp(&hook)),
    ]
    .join("\n");
    fs::write(r.spec_path("host1"), spec + "\n").unwrap();
    r.run(&["check"]).expect_code(0);

    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());
    let run = run_env(&r, &["renew"], &[("RENEWD_RELOAD_PATH", path.clone())]);
    run.expect_code(0);

    let read = |f: &str| fs::read_to_string(rec.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    assert_eq!(read("gitlab-ctl.argv"), "hup nginx\n");
    assert_eq!(read("systemctl.argv"), "reload haproxy.service\n");
    let lineage = r.state().join("live/host1");
    assert_eq!(
        read("command.args"),
        format!(
            "host1\n{l}/fullchain.pem\n{l}/privkey.pem\n{h1} {wild}\n",
            l = lineage.display()
        )
    );
    assert_eq!(read("lineage").trim(), lineage.to_str().unwrap());
    assert_eq!(read("domains").trim(), format!("{h1} {wild}"));
    assert_eq!(
        fs::read(rec.join("hook-fullchain.pem")).unwrap(),
        fs::read(r.live("host1", "fullchain.pem")).unwrap()
    );
    // The hook's whole environment: the documented variables (and what bash adds itself).
    let env = read("env");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split('=').next())
        .filter(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n))
        .collect();
    assert_eq!(
        names,
        vec!["LANG", "PATH", "RENEWED_DOMAINS", "RENEWED_LINEAGE"],
        "{env}"
    );
    assert!(env.contains(&format!("PATH={path}\n")), "{env}");
}

/// A command that hangs is killed after its timeout; a failing one is reported with its exit status and
/// first line; a symlink planted where a key goes is refused and its target left alone.
#[test]
fn command_timeout_failure_and_a_planted_symlink_are_reported() {
    let topo = topology();
    let h1 = domain("host1");
    let work = mkdir(&topo.dir().join("work"));
    let pid_file = work.join("hung.pid");
    let r = Renewd::new(
        &topo,
        "30s",
        &[SpecFixture::new("host1", &[&h1]).line(&format!(
            "reload: [{{ command: {{ argv: [/bin/sh, -c, {}], timeout: 1s }} }}]",
            q(format!("echo $$ > {}; exec sleep 60", pid_file.display()))
        ))],
    );
    let run = r.run(&["renew"]);
    run.expect_code(1);
    assert!(
        run.line("host1")
            .contains("reload failed: `/bin/sh -c echo $$")
            && run
                .line("host1")
                .contains("did not finish within 1s; killed it"),
        "{}",
        all_output(&run)
    );
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next();
    assert!(
        state.is_none() || state == Some('Z'),
        "still running: {stat}"
    );

    fs::write(
        r.spec_path("host1"),
        format!(
            "domains: [{}]\nreload: [{{ command: [/bin/sh, -c, \"echo 'push: LB refused the certificate' >&2; exit 3\"] }}]\n",
            q(&h1)
        ),
    )
    .unwrap();
    let run = r.run(&["renew", "--force"]);
    run.expect_code(1);
    assert!(
        run.line("host1")
            .contains("exited with status 3: push: LB refused the certificate"),
        "{}",
        all_output(&run)
    );
    assert!(
        run.line("host1").contains("reload failed: "),
        "{}",
        run.stdout
    );

    // A directory others can write, with a link where the key goes.
    let open = work.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    let precious = work.join("precious");
    fs::write(&precious, "do not overwrite\n").unwrap();
    symlink(&precious, open.join("host1.key")).unwrap();
    fs::write(
        r.spec_path("host1"),
        format!(
            "domains: [{}]\ndeploy: [{{ fullchain: {}, key: {} }}]\n",
            q(&h1),
            qp(&open.join("host1.crt")),
            qp(&open.join("host1.key"))
        ),
    )
    .unwrap();
    let run = r.run(&["renew", "--force"]);
    run.expect_code(1);
    assert!(
        run.line("host1").contains("host1.key is a symlink"),
        "{}",
        all_output(&run)
    );
    assert_eq!(fs::read_to_string(&precious).unwrap(), "do not overwrite\n");
    assert!(!open.join("host1.crt").exists(), "all or nothing");
    assert!(fs::symlink_metadata(open.join("host1.key"))
        .unwrap()
        .file_type()
        .is_symlink());
}
