//! Real nginx and Apache (Debian's apache2) serving TLS on a loopback port inside a [`Topology`]'s network
//! namespace, from files renewd deploys; private config, pid, log and runtime paths under one directory.
//! Each runs in the foreground as our child, in its own process group, and is killed on drop.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::proc::{output_with_timeout, poll_until, spawn_long_lived, tail};
use super::topology::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Apache,
}

pub struct WebServer {
    pub kind: Kind,
    /// Its directory: config, pid file, logs.
    pub dir: PathBuf,
    /// The main configuration file (`nginx.conf` / `apache2.conf`).
    pub config: PathBuf,
    pub port: u16,
    pub server_name: String,
    child: Child,
}

/// A self-signed certificate and key for `name` (to start a server before renewd deployed anything).
pub fn self_signed(name: &str, cert: &Path, key: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl WebServer {
    /// nginx serving `fullchain`/`key` for `server_name` on 127.0.0.1:`port`.
    pub fn nginx(
        topo: &Topology,
        dir: &Path,
        port: u16,
        server_name: &str,
        fullchain: &Path,
        key: &Path,
    ) -> WebServer {
        fs::create_dir_all(dir.join("tmp")).unwrap();
        let d = dir.display();
        let config = dir.join("nginx.conf");
        fs::write(
            &config,
            format!(
                "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log info;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n\
                 client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
                 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
                 include {d}/site.conf;\n}}\n"
            ),
        )
        .unwrap();
        fs::write(
            dir.join("site.conf"),
            format!(
                "server {{\n  listen 127.0.0.1:{port} ssl;\n  server_name {server_name};\n\
                 ssl_certificate {};\n  ssl_certificate_key {};\n  location / {{ return 200 \"ok\\n\"; }}\n}}\n",
                fullchain.display(),
                key.display()
            ),
        )
        .unwrap();
        let mut cmd = topo.command("nginx");
        cmd.arg("-c").arg(&config);
        Self::start(Kind::Nginx, topo, dir, config, port, server_name, cmd)
    }

    /// Apache (apache2 -DFOREGROUND) serving `cert`+`chain` (fullchain) / `key` on 127.0.0.1:`port`.
    pub fn apache(
        topo: &Topology,
        dir: &Path,
        port: u16,
        server_name: &str,
        fullchain: &Path,
        key: &Path,
    ) -> WebServer {
        fs::create_dir_all(dir.join("run")).unwrap();
        let d = dir.display();
        let m = "/usr/lib/apache2/modules";
        let config = dir.join("apache2.conf");
        fs::write(
            &config,
            format!(
                "ServerRoot {d}\nDefaultRuntimeDir {d}/run\nPidFile {d}/apache.pid\n\
                 ErrorLog {d}/error.log\nLogLevel info\nMutex file:{d}/run default\n\
                 LoadModule mpm_event_module {m}/mod_mpm_event.so\n\
                 LoadModule authz_core_module {m}/mod_authz_core.so\n\
                 LoadModule socache_shmcb_module {m}/mod_socache_shmcb.so\n\
                 LoadModule ssl_module {m}/mod_ssl.so\n\
                 User nobody\nGroup nogroup\nServerName localhost\nDocumentRoot {d}\n\
                 StartServers 1\nServerLimit 1\nThreadsPerChild 4\nMaxRequestWorkers 4\n\
                 Listen 127.0.0.1:{port} https\n\
                 <VirtualHost 127.0.0.1:{port}>\n  ServerName {server_name}\n  SSLEngine on\n\
                 SSLCertificateFile {}\n  SSLCertificateKeyFile {}\n</VirtualHost>\n",
                fullchain.display(),
                key.display()
            ),
        )
        .unwrap();
        let mut cmd = topo.command("apache2");
        cmd.arg("-f").arg(&config).arg("-DFOREGROUND");
        Self::start(Kind::Apache, topo, dir, config, port, server_name, cmd)
    }

    fn start(
        kind: Kind,
        topo: &Topology,
        dir: &Path,
        config: PathBuf,
        port: u16,
        server_name: &str,
        mut cmd: Command,
    ) -> WebServer {
        let log = fs::File::create(dir.join("console.log")).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0);
        let child = spawn_long_lived(cmd).unwrap_or_else(|e| panic!("start {kind:?}: {e}"));
        let mut server = WebServer {
            kind,
            dir: dir.to_path_buf(),
            config,
            port,
            server_name: server_name.to_string(),
            child,
        };
        let up = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "{kind:?} exited at start ({status})\n{}\n{}",
                    tail(&dir.join("console.log"), 20),
                    tail(&dir.join("error.log"), 20)
                );
            }
            served_serial(topo, port, server_name)
        });
        assert!(
            up.is_some(),
            "{kind:?} does not serve TLS on 127.0.0.1:{port}\n{}",
            tail(&dir.join("error.log"), 20)
        );
        server
    }

    /// The serial of the certificate served now (None: no TLS answer).
    pub fn serial(&self, topo: &Topology) -> Option<String> {
        served_serial(topo, self.port, &self.server_name)
    }

    /// Wait until the served serial is `want` (a reload takes effect asynchronously).
    pub fn wait_for_serial(&self, topo: &Topology, want: &str) {
        let got = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
            (self.serial(topo).as_deref() == Some(want)).then_some(())
        });
        assert!(
            got.is_some(),
            "{:?} serves serial {:?}, expected {want}\n{}",
            self.kind,
            self.serial(topo),
            tail(&self.dir.join("error.log"), 20)
        );
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        // The master and its workers share the process group we gave the master.
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group of a child we started.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// `openssl s_client -connect 127.0.0.1:PORT -servername NAME` inside the namespace: the leaf's serial
/// (uppercase hex, as `openssl x509 -serial` prints it).
pub fn served_serial(topo: &Topology, port: u16, server_name: &str) -> Option<String> {
    let mut cmd = topo.command("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", server_name])
        .stdin(Stdio::null());
    let out = output_with_timeout(&mut cmd, Duration::from_secs(10)).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    let pem = &text[start..end];
    let dir = tempfile::tempdir().ok()?;
    let file = dir.path().join("served.pem");
    fs::write(&file, pem).ok()?;
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&file)
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    Some(s.trim().trim_start_matches("serial=").to_string())
}
