//! The etcd harness (tests/support/etcd.rs) that the `cluster:` tests stand on: a real 3-member etcd
//! 3.4 inside the topology, what it does when members go away and come back, and its TLS with
//! client-certificate authentication as renewd's rustls meets it. Also several renewd installations
//! in one topology (`Renewd::member`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::support::ari::enter_netns;
use crate::support::etcd::{member_ip, EtcdCluster, EtcdOptions, EtcdTlsFiles, ETCD_CLIENT_PORT};
use crate::support::renewd::{mode, Renewd};
use crate::support::topology::{domain, Topology, TopologyOptions};
use crate::support::x509::private_key_type;
use crate::support::{assert_success, output_text, SpecFixture};

/// The cheapest topology: the cluster tests need its namespace, not its DNS.
fn topology() -> Topology {
    Topology::start(TopologyOptions {
        n_hosts: 1,
        settle_notify: false,
        ..Default::default()
    })
}

/// Runs `f` and returns its result with the wall time it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t0 = Instant::now();
    let v = f();
    (v, t0.elapsed())
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn etcd_cluster_keeps_quorum_with_one_member_down_loses_it_with_two_and_recovers() {
    let t_test = Instant::now();
    let topo = topology();
    let etcd = EtcdCluster::start(&topo, EtcdOptions::default());
    eprintln!(
        "etcd: 3 members up in {} ms (topology {} ms)",
        ms(etcd.startup_time()),
        ms(topo.startup_time())
    );
    assert_eq!(
        etcd.endpoints(),
        [
            "http://127.0.0.51:2379",
            "http://127.0.0.52:2379",
            "http://127.0.0.53:2379"
        ]
    );
    assert!(etcd.tls().is_none());
    assert_eq!(etcd.running(), [1, 2, 3]);
    for n in 1..=3 {
        assert!(etcd.log_path(n).starts_with(topo.dir().join("etcd")));
        assert!(etcd.data_dir(n).join("member/wal").is_dir(), "member{n}");
    }

    // Written through one member, read through another.
    assert_success(
        "put via member1",
        &etcd.etcdctl_member(1, &["put", "renewd/a", "one"]),
    );
    let read = etcd.etcdctl_member(3, &["get", "--print-value-only", "renewd/a"]);
    assert_success("get via member3", &read);
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "one");
    // Any bytes (a leading dash, a newline, not UTF-8) go through put/get/dump unchanged.
    let odd = b"-x\n\xff\x00end".to_vec();
    etcd.put("renewd/b", &odd);
    assert_eq!(etcd.get("renewd/b").as_deref(), Some(&odd[..]));
    assert_eq!(etcd.get("renewd/missing"), None);

    // Kill the leader (a crash): the other two elect a new one within about an election timeout
    // (500 ms to twice that) and keep quorum.
    let first = etcd.leader().expect("a leader");
    etcd.kill_member(first);
    let ((), failover) = timed(|| etcd.wait_healthy());
    assert!(
        etcd.has_quorum(),
        "no quorum with two of three members\n{}",
        etcd.log_tails(10)
    );
    etcd.put("renewd/c", b"while one is down");
    let second = etcd.leader().expect("a new leader");
    assert_ne!(second, first);

    // Stop the new leader too (SIGTERM: it hands leadership to the last member, then exits): no
    // quorum. A linearizable read hangs until its deadline; a serializable one is still answered
    // by the member left (what it has, possibly stale).
    let ((), stop) = timed(|| etcd.stop_member(second));
    let (quorum, no_quorum_read) = timed(|| etcd.has_quorum());
    assert!(!quorum, "quorum with one of three members");
    let (read, get_1s) = timed(|| etcd.etcdctl(&["get", "--command-timeout=1s", "renewd/a"]));
    assert!(!read.status.success());
    assert!(
        output_text(&read).contains("context deadline exceeded"),
        "{}",
        output_text(&read)
    );
    let survivor = etcd.running()[0];
    let stale = etcd.etcdctl_member(
        survivor,
        &["get", "--consistency=s", "--print-value-only", "renewd/c"],
    );
    assert_success("serializable get from the survivor", &stale);
    assert_eq!(
        String::from_utf8_lossy(&stale.stdout).trim(),
        "while one is down"
    );
    assert_eq!(etcd.leader(), None, "a lone member knows no leader");

    // One back (on its data dir): quorum again, with everything written before.
    let ((), restart) = timed(|| etcd.start_member(first));
    let ((), healthy_again) = timed(|| etcd.wait_healthy());
    assert!(etcd.has_quorum());
    etcd.start_member(second);
    etcd.wait_healthy();
    assert_eq!(etcd.running(), [1, 2, 3]);
    assert_eq!(
        etcd.dump(),
        vec![
            ("renewd/a".to_string(), b"one".to_vec()),
            ("renewd/b".to_string(), odd),
            ("renewd/c".to_string(), b"while one is down".to_vec()),
        ]
    );
    // All three down at once (a power cut: stopping them in a row can cost 6 s, see etcd.rs), then
    // back one by one: the first answers clients once the second is up.
    let ((), stop_all) = timed(|| (1..=3).for_each(|n| etcd.kill_member(n)));
    assert!(etcd.running().is_empty());
    let ((), start_all) = timed(|| {
        etcd.start_member(1);
        etcd.start_member(2);
        etcd.wait_healthy();
        etcd.start_member(3);
        etcd.wait_healthy();
    });
    assert_eq!(etcd.dump().len(), 3);
    eprintln!(
        "etcd: leader killed, healthy again after {} ms; stop the new leader {} ms; \
         has_quorum without quorum {} ms, etcdctl get --command-timeout=1s {} ms; \
         restart one {} ms + healthy {} ms; kill all three {} ms, start them one by one {} ms",
        ms(failover),
        ms(stop),
        ms(no_quorum_read),
        ms(get_1s),
        ms(restart),
        ms(healthy_again),
        ms(stop_all),
        ms(start_all)
    );

    // Several renewd installations beside it, each in its own directory with its own state.
    let specs = [SpecFixture::new("host1", &[&domain("host1")])];
    let web1 = Renewd::member(&topo, "web1", "30s", &specs, &[]);
    let web2 = Renewd::member(&topo, "web2", "30s", &specs, &["stop_grace: 2s"]);
    assert_eq!(web1.dir, topo.dir().join("web1"));
    assert_ne!(web1.state(), web2.state());
    for r in [&web1, &web2] {
        let yaml = std::fs::read_to_string(r.config()).unwrap();
        assert!(yaml.contains(r.state().to_str().unwrap()), "{yaml}");
        assert!(r.spec_path("host1").is_file());
    }

    let pids: Vec<u32> = (1..=3).filter_map(|n| etcd.pid(n)).collect();
    assert_eq!(pids.len(), 3);
    drop(etcd);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "etcd (pid {pid}) still exists after drop"
        );
    }
    eprintln!("test wall time {} ms", ms(t_test.elapsed()));
}

#[test]
fn etcd_cluster_with_tls_accepts_only_clients_with_a_certificate() {
    let t_test = Instant::now();
    let topo = topology();
    let etcd = EtcdCluster::start(
        &topo,
        EtcdOptions {
            tls: true,
            ..Default::default()
        },
    );
    eprintln!(
        "etcd: 3 members with TLS up in {} ms (certificates included)",
        ms(etcd.startup_time())
    );
    assert!(etcd.endpoints().iter().all(|e| e.starts_with("https://")));
    let tls = etcd.tls().expect("TLS files").clone();
    let tls_dir = tls.ca.parent().unwrap();
    for key in [
        tls.key.clone(),
        tls_dir.join("ca.key"),
        tls_dir.join("member1.key"),
    ] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    let key_pem = std::fs::read_to_string(&tls.key).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    assert_eq!(private_key_type(&tls.key), "ecdsa-p256");

    // etcdctl with the client certificate: everything works.
    etcd.put("renewd/tls", b"yes");
    assert_eq!(etcd.get("renewd/tls").as_deref(), Some(&b"yes"[..]));

    // Without one: refused in the handshake; etcdctl only sees its deadline pass.
    let mut cmd = etcd.etcdctl_command(&etcd.endpoints());
    cmd.arg(format!("--cacert={}", tls.ca.display())).args([
        "get",
        "--command-timeout=1s",
        "renewd/tls",
    ]);
    let out = topo.run(&mut cmd);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("context deadline exceeded"),
        "{}",
        output_text(&out)
    );
    let logs: String = (1..=3)
        .map(|n| std::fs::read_to_string(etcd.log_path(n)).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("tls: client didn't provide a certificate"),
        "{}",
        etcd.log_tails(10)
    );

    // rustls (aws-lc-rs, as renewd and tonic use it) reads the PEM files, verifies the member's
    // IP-address certificate and is let in with the client certificate, not without.
    let version =
        rustls_get(&topo, &tls, 2, "/version", true).expect("GET /version with a certificate");
    assert!(version.contains("\"etcdserver\":\"3.4."), "{version}");
    let refused = rustls_get(&topo, &tls, 2, "/version", false);
    assert!(refused.is_err(), "{refused:?}");
    eprintln!(
        "rustls without a client certificate: {}",
        refused.unwrap_err()
    );
    eprintln!("test wall time {} ms", ms(t_test.elapsed()));
}

/// An HTTP/1.1 GET over rustls to member `n`, from a thread inside the topology's namespace; the body
/// (with the headers) or why it failed.
fn rustls_get(
    topo: &Topology,
    tls: &EtcdTlsFiles,
    n: usize,
    path: &str,
    client_cert: bool,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = if client_cert {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
            .and_then(|it| it.collect())
            .map_err(|e| format!("{}: {e}", tls.cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&tls.key)
            .map_err(|e| format!("{}: {e}", tls.key.display()))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    let ip = member_ip(n);
    let netns = topo.dir().join("netns");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {ip}:{ETCD_CLIENT_PORT}\r\nConnection: close\r\n\r\n"
    );
    std::thread::spawn(move || -> Result<String, String> {
        enter_netns(&netns)?;
        let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::from(ip))
            .map_err(|e| e.to_string())?;
        let sock = TcpStream::connect((ip, ETCD_CLIENT_PORT)).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(conn, sock);
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        Ok(answer)
    })
    .join()
    .expect("the rustls thread")
}
