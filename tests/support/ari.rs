//! A stand-in for the ACME renewal information endpoint (ARI, RFC 9773), which Debian's Pebble 2.4.0
//! lacks: a small HTTPS server on `127.0.0.1:14001` inside a [`Topology`]'s network namespace, in front
//! of that topology's Pebble (`127.0.0.1:14000`).
//!
//! - `GET /dir`: Pebble's directory (fetched with the client's Host header, so its URLs point here) plus
//!   `"renewalInfo": "https://127.0.0.1:14001/renewal-info"`.
//! - `GET /renewal-info/{id}`: the configured `{"suggestedWindow":{"start","end"}}` with the configured
//!   `Retry-After`; every id asked for is recorded. Without a window: 404 (with a Retry-After).
//! - everything else is proxied to Pebble unchanged, **Host header included**: Pebble builds its URLs and
//!   checks the JWS `url` from the request's Host, so the client's signatures (made for
//!   `https://127.0.0.1:14001/...`) stay valid and every URL Pebble hands out leads back here.
//! - `POST /order-plz` (newOrder): the JWS payload is decoded and recorded (to check `replaces`). Pebble
//!   2.4.0 ignores `replaces`; since RFC 9773 §5 makes a CA that offers ARI echo it in the order (and
//!   instant-acme checks that), the stand-in adds it to Pebble's answer, and records Pebble's own answer.
//!   Optionally newOrder is answered by the stand-in itself: with a status and `Retry-After` (a rate
//!   limit), or with `409 alreadyReplaced` when the payload carries `replaces`.
//!
//! How it enters the namespace: the server runs on its own thread, which switches its network namespace
//! with `setns(2)` on `<topology dir>/netns` (the namespace file the topology bind-mounts) and then runs a
//! current-thread tokio runtime, so its listening socket and its connections to Pebble all live in the
//! namespace (a thread's network namespace is per thread; the rest of the test process is unaffected).
//!
//! TLS: it presents Pebble's own HTTPS certificate (`pebble/cert.pem`, SAN `IP:127.0.0.1`; the port
//! does not matter to TLS), so the `trust:` file the fixtures already write (the topology's TLS CA)
//! covers it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::topology::Topology;

/// The stand-in's port on 127.0.0.1 inside the namespace (Pebble's ACME port is 14000).
pub const STAND_IN_PORT: u16 = 14001;
const PEBBLE: &str = "https://127.0.0.1:14000";

/// What the stand-in answers, and what it saw.
#[derive(Default)]
struct Shared {
    /// RFC 3339 start and end of the suggested window, for every certificate ...
    window: Option<(String, String)>,
    /// ... except these (by certificate id).
    windows: std::collections::HashMap<String, (String, String)>,
    /// The Retry-After header of renewalInfo answers.
    retry_after: String,
    renewal_info_requests: Vec<String>,
    new_order_payloads: Vec<serde_json::Value>,
    /// Pebble's own answers to the newOrder requests it got (before the stand-in adds `replaces`).
    pebble_order_answers: Vec<serde_json::Value>,
    /// Answer newOrder with this status and Retry-After instead of asking Pebble.
    fail_new_orders: Option<(u16, String)>,
    /// Answer newOrder requests that carry `replaces` with 409 alreadyReplaced.
    reject_replaces: bool,
    /// Show every invalid order as still pending (a CA that does not mark the order invalid when one of
    /// its authorizations fails); authorizations pass unchanged.
    orders_stay_pending: bool,
}

/// The running stand-in; dropping it stops the server.
pub struct AriStandIn {
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

type ProxyClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

impl AriStandIn {
    /// Start the stand-in inside `topo`'s network namespace; returns once it accepts connections.
    pub fn start(topo: &Topology) -> AriStandIn {
        let shared = Arc::new(Mutex::new(Shared {
            retry_after: "21600".into(),
            ..Shared::default()
        }));
        let netns = topo.dir().join("netns");
        let pebble_dir = topo.dir().join("pebble");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ari-stand-in".into())
            .spawn(move || {
                if let Err(e) = enter_netns(&netns) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(serve(pebble_dir, state, ready_tx, stop_rx));
            })
            .expect("spawn the ARI stand-in thread");
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("ARI stand-in: {e}"),
            Err(_) => panic!("ARI stand-in: the server thread died"),
        }
        AriStandIn {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The directory URL renewd should use: `https://127.0.0.1:14001/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{STAND_IN_PORT}/dir")
    }

    /// Point the account of a renewd config written by the fixtures at the stand-in.
    pub fn point_config_here(&self, topo: &Topology, config: &Path) {
        let text = std::fs::read_to_string(config).expect("read renewd.yaml");
        let pebble = topo.acme_directory_url();
        assert!(
            text.contains(&pebble),
            "{} has no {pebble}",
            config.display()
        );
        std::fs::write(config, text.replace(&pebble, &self.directory_url()))
            .expect("write renewd.yaml");
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serve this suggested window from now on.
    pub fn set_window(&self, start: SystemTime, end: SystemTime) {
        let ts = |t| humantime::format_rfc3339_seconds(t).to_string();
        self.shared().window = Some((ts(start), ts(end)));
    }

    /// Serve this suggested window for the certificate `id` only (it wins over [`Self::set_window`]).
    pub fn set_window_for(&self, id: &str, start: SystemTime, end: SystemTime) {
        let ts = |t| humantime::format_rfc3339_seconds(t).to_string();
        self.shared()
            .windows
            .insert(id.to_string(), (ts(start), ts(end)));
    }

    /// The Retry-After header value of renewalInfo answers (default 6 h).
    pub fn set_retry_after(&self, value: &str) {
        self.shared().retry_after = value.to_string();
    }

    /// Answer every newOrder with `status` (e.g. 429) and this Retry-After header value (no Pebble).
    pub fn fail_new_orders(&self, status: u16, retry_after: &str) {
        self.shared().fail_new_orders = Some((status, retry_after.to_string()));
    }

    /// Answer newOrder requests carrying `replaces` with `409 alreadyReplaced`.
    /// Show invalid orders as pending (see `Shared::orders_stay_pending`).
    pub fn orders_stay_pending(&self, on: bool) {
        self.shared().orders_stay_pending = on;
    }

    pub fn reject_replaces(&self, on: bool) {
        self.shared().reject_replaces = on;
    }

    /// Every certificate id asked for at `/renewal-info/{id}`, in order.
    pub fn renewal_info_requests(&self) -> Vec<String> {
        self.shared().renewal_info_requests.clone()
    }

    /// The decoded JWS payload of every newOrder request, in order.
    pub fn new_order_payloads(&self) -> Vec<serde_json::Value> {
        self.shared().new_order_payloads.clone()
    }

    /// Pebble's own answers to the newOrder requests passed to it.
    pub fn pebble_order_answers(&self) -> Vec<serde_json::Value> {
        self.shared().pebble_order_answers.clone()
    }
}

impl Drop for AriStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Move the calling thread into the network namespace bind-mounted at `netns`.
pub fn enter_netns(netns: &Path) -> Result<(), String> {
    let file = std::fs::File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    // SAFETY: setns(2) with a valid namespace descriptor; affects only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "setns {}: {}",
            netns.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

async fn serve(
    pebble_dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let setup = || -> Result<(tokio_rustls::TlsAcceptor, ProxyClient), String> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pebble_dir.join("cert.pem"))
                .and_then(|it| it.collect())
                .map_err(|e| format!("pebble/cert.pem: {e}"))?;
        let key = PrivateKeyDer::from_pem_file(pebble_dir.join("key.pem"))
            .map_err(|e| format!("pebble/key.pem: {e}"))?;
        let mut server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("TLS server config: {e}"))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(pebble_dir.join("tls-ca.pem"))
            .map_err(|e| format!("pebble/tls-ca.pem: {e}"))?
        {
            roots
                .add(der.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok((tokio_rustls::TlsAcceptor::from(Arc::new(server)), client))
    };
    let (acceptor, client) = match setup() {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], STAND_IN_PORT));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("bind {addr}: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = &mut stop => return,
        };
        let acceptor = acceptor.clone();
        let client = client.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let client = client.clone();
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &client, &shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut rsp = Response::builder().status(status);
    for (k, v) in headers {
        rsp = rsp.header(*k, *v);
    }
    rsp.body(Full::new(body.into())).expect("valid response")
}

fn problem(
    status: u16,
    kind: &str,
    detail: &str,
    retry_after: Option<&str>,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": detail,
        "status": status,
    })
    .to_string();
    let mut headers = vec![("content-type", "application/problem+json")];
    if let Some(r) = retry_after {
        headers.push(("retry-after", r));
    }
    reply(status, &headers, body)
}

async fn handle(
    req: Request<Incoming>,
    client: &ProxyClient,
    shared: &Mutex<Shared>,
) -> Response<Full<Bytes>> {
    let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:14001")
        .to_string();

    if method == hyper::Method::GET && path == "/dir" {
        let get = Request::get(format!("{PEBBLE}/dir"))
            .header(hyper::header::HOST, &host)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, _, body) = match forward(client, get).await {
            Ok(x) => x,
            Err(e) => return reply(502, &[], e),
        };
        let mut dir: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(d) => d,
            Err(e) => return reply(502, &[], format!("Pebble's directory: {e}")),
        };
        dir["renewalInfo"] = format!("https://127.0.0.1:{STAND_IN_PORT}/renewal-info").into();
        return reply(
            status.as_u16(),
            &[("content-type", "application/json")],
            dir.to_string(),
        );
    }

    if method == hyper::Method::GET {
        if let Some(id) = path.strip_prefix("/renewal-info/") {
            let mut s = lock();
            s.renewal_info_requests.push(id.to_string());
            let retry_after = s.retry_after.clone();
            let window = s.windows.get(id).or(s.window.as_ref());
            return match window {
                Some((start, end)) => reply(
                    200,
                    &[
                        ("content-type", "application/json"),
                        ("retry-after", &retry_after),
                    ],
                    serde_json::json!({"suggestedWindow": {"start": start, "end": end}})
                        .to_string(),
                ),
                None => problem(404, "malformed", "no window configured", Some(&retry_after)),
            };
        }
    }

    // Everything else goes to Pebble with the headers it came with (Host included).
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(400, &[], format!("reading the request: {e}")),
    };
    let mut new_order_replaces = None;
    if method == hyper::Method::POST && path == "/order-plz" {
        let payload = jws_payload(&body).unwrap_or(serde_json::Value::Null);
        new_order_replaces = payload.get("replaces").cloned();
        let mut s = lock();
        s.new_order_payloads.push(payload);
        if let Some((status, retry_after)) = s.fail_new_orders.clone() {
            let kind = if status == 429 {
                "rateLimited"
            } else {
                "serverInternal"
            };
            return problem(
                status,
                kind,
                "the stand-in says: slow down",
                Some(&retry_after),
            );
        }
        if s.reject_replaces && new_order_replaces.is_some() {
            return problem(
                409,
                "alreadyReplaced",
                "the stand-in says: that certificate was already replaced",
                None,
            );
        }
    }
    let mut out = Request::builder().method(parts.method.clone()).uri(format!(
        "{PEBBLE}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    ));
    for (k, v) in &parts.headers {
        if !hop_by_hop(k.as_str()) {
            out = out.header(k, v);
        }
    }
    let out = out.body(Full::new(body)).expect("request");
    let (status, headers, body) = match forward(client, out).await {
        Ok(x) => x,
        Err(e) => return reply(502, &[], e),
    };
    let mut body = body;
    if let Some(replaces) = new_order_replaces {
        if let Ok(mut order) = serde_json::from_slice::<serde_json::Value>(&body) {
            lock().pebble_order_answers.push(order.clone());
            if status.is_success() && order.get("replaces").is_none() {
                order["replaces"] = replaces;
                body = Bytes::from(order.to_string());
            }
        }
    } else if method == hyper::Method::POST && path == "/order-plz" {
        if let Ok(order) = serde_json::from_slice::<serde_json::Value>(&body) {
            lock().pebble_order_answers.push(order);
        }
    }
    if lock().orders_stay_pending {
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) {
            // An order object: it has authorizations and a finalize URL.
            if v.get("authorizations").is_some() && v["status"] == "invalid" {
                v["status"] = "pending".into();
                if let Some(o) = v.as_object_mut() {
                    o.remove("error");
                }
                body = Bytes::from(v.to_string());
            }
        }
    }
    let mut rsp = Response::builder().status(status);
    for (k, v) in &headers {
        if !hop_by_hop(k.as_str()) {
            rsp = rsp.header(k, v);
        }
    }
    rsp.body(Full::new(body)).expect("response")
}

fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
    )
}

async fn forward(
    client: &ProxyClient,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
    let rsp = client
        .request(req)
        .await
        .map_err(|e| format!("to Pebble: {e}"))?;
    let (parts, body) = rsp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("Pebble's answer: {e}"))?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

/// ARI's certificate identifier (RFC 9773 §4.1) of the first certificate in a PEM file, computed here
/// independently of renewd: base64url(AKI keyIdentifier) "." base64url(serial DER contents).
pub fn certificate_id(pem_file: &Path) -> String {
    let pem = std::fs::read(pem_file).unwrap_or_else(|e| panic!("{}: {e}", pem_file.display()));
    let der = CertificateDer::from_pem_slice(&pem).expect("a PEM certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("X.509");
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("the certificate has an authority key identifier");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}",
        b64.encode(aki),
        b64.encode(cert.tbs_certificate.raw_serial())
    )
}

/// The JSON payload of a flattened JWS (`{"protected","payload","signature"}`).
fn jws_payload(body: &[u8]) -> Option<serde_json::Value> {
    let jws: serde_json::Value = serde_json::from_slice(body).ok()?;
    let payload = jws.get("payload")?.as_str()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
