//! Native TLS end to end: the real server with HTTPS, WSS and TCP+TLS on
//! port 0, a test CA made with rcgen, the real client (and raw HTTP over a
//! rustls stream), bad inputs on every TLS port, reloading, and start-up
//! refusals.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use im_client::rustls::pki_types::{CertificateDer, ServerName};
use im_client::rustls::{ClientConfig, RootCertStore};
use im_client::{Client, ClientError, ClientOptions, ClientTls};
use im_core::Generation;
use im_server::app::App;
use im_server::config::Config;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::bad_input_matrix::{Witness, call};
use crate::messaging::http_on;
use crate::{TestServer, WAIT, assert_auth_ok, test_config};

/// A certificate authority of the tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `localhost` and 127.0.0.1: (chain PEM = leaf then this
    /// CA, PKCS#8 key PEM).
    pub fn leaf(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "im-server test");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let chain = format!("{}{}", cert.pem(), self.pem);
        (chain, key.serialize_pem())
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }

    /// Client TLS settings trusting this CA only.
    pub fn client(&self, server_name: &str) -> ClientTls {
        ClientTls::new(self.roots(), server_name).unwrap()
    }
}

/// The TLS side of a [`TestServer`]: a CA, the server's files in a temp
/// dir, and clients that trust the CA.
pub struct TestTls {
    pub ca: TestCa,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestTls {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("im-server test CA");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let tls = Self {
            ca,
            cert_path,
            key_path,
            _dir: dir,
        };
        tls.write_leaf_of(&tls.ca);
        tls
    }

    /// Replaces the server's files with a leaf of `ca`.
    pub fn write_leaf_of(&self, ca: &TestCa) {
        let (chain, key) = ca.leaf();
        std::fs::write(&self.cert_path, chain).unwrap();
        std::fs::write(&self.key_path, key).unwrap();
    }

    /// TLS on every listener, a short handshake timeout.
    pub fn configure(&self, c: &mut Config) {
        c.tls.enabled = true;
        c.tls.cert_path = Some(self.cert_path.clone());
        c.tls.key_path = Some(self.key_path.clone());
        c.tls.handshake_timeout = Duration::from_secs(1);
    }

    pub fn client(&self) -> ClientTls {
        self.ca.client("localhost")
    }

    /// A raw HTTP/1.1 request over TLS (ALPN http/1.1), trusting the CA;
    /// see `messaging::http`.
    pub async fn https(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let stream = tls_connect(addr, self.ca.roots(), "localhost")
            .await
            .unwrap();
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "ALPN"
        );
        http_on(stream, method, path, headers, body).await
    }
}

/// `GET /health` over HTTPS answers 200: the HTTPS listener still serves.
async fn assert_https_health(s: &TestServer) {
    let tls = s.tls.as_ref().unwrap();
    let (st, _, body) = tls.https(s.addrs.http, "GET", "/health", &[], "").await;
    assert_eq!(st, 200, "{body}");
}

async fn tls_connect(
    addr: SocketAddr,
    roots: RootCertStore,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let provider = Arc::new(im_client::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
}

/// The value of `im_tls_handshake_failures_total` for `transport` and
/// `reason` (0 when absent), scraped over HTTPS. The recorder is shared by
/// every server of this process, so tests compare before and after.
async fn tls_failures(s: &TestServer, transport: &str, reason: &str) -> f64 {
    let tls = s.tls.as_ref().unwrap();
    let (status, _, text) = tls.https(s.addrs.http, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| l.starts_with("im_tls_handshake_failures_total{"))
        .filter(|l| {
            l.contains(&format!("transport=\"{transport}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads until the server closes (or `WAIT` passes: then false).
async fn closed_by_server(stream: &mut TcpStream) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return (false, got),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn https_wss_and_tcp_tls_carry_the_real_protocol() {
    let s = TestServer::start_tls(|_| {}).await;
    let tls = s.tls.as_ref().unwrap();

    // HTTPS: register, login, an authenticated GET.
    let (st, v) = call(
        &s,
        "POST",
        "/api/auth/register",
        None,
        r#"{"username":"tls_alice","password":"correct horse"}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        &s,
        "POST",
        "/api/auth/login",
        None,
        r#"{"username":"tls_alice","password":"correct horse","platform":"iOS"}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let (st, v) = call(&s, "GET", "/api/user/info/tls_alice", Some(&token), "").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["userID"], "tls_alice", "{v}");

    // The demo page is told to open wss: (the WS listener speaks TLS).
    let (st, _, body) = tls
        .https(s.addrs.http, "GET", "/demo/config.json", &[], "")
        .await;
    assert_eq!(st, 200, "{body}");
    let demo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(demo["wsTls"], true, "{body}");
    assert_eq!(demo["wsPort"], s.addrs.ws.port(), "{body}");

    // Upload URLs built from the request say https (served over TLS).
    let auth = format!("Bearer {token}");
    let (st, _, body) = tls
        .https(
            s.addrs.http,
            "POST",
            "/upload",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/octet-stream"),
            ],
            "hello over tls",
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let up: Value = serde_json::from_str(&body).unwrap();
    let url = up["url"].as_str().unwrap();
    assert!(url.starts_with("https://x/files/"), "{url}");
    let (st, _, got) = tls
        .https(
            s.addrs.http,
            "GET",
            url.trim_start_matches("https://x"),
            &[],
            "",
        )
        .await;
    assert_eq!((st, got.as_str()), (200, "hello over tls"));

    // The login token works on WSS v2; TCP+TLS and WSS exchange both ways and sync.
    let mut c = Client::connect_ws_with(s.addrs.ws, "/ws/v2", Generation::V2, s.client_options())
        .await
        .unwrap();
    assert_auth_ok(c.auth("tls_alice", &token, "iOS").await.unwrap());
    let mut w = Witness::new(&s).await;
    w.exchange("tls").await;
    w.exchange("tls again").await;
    w.check_stored().await;
    s.stop().await;
}

#[tokio::test]
async fn a_reader_that_lagged_behind_gets_every_push_over_tls() {
    // Enough to fill the socket buffers while bob does not read, so the
    // server's TLS writes meet a full socket and must resume (every record
    // that rustls held back must still go out).
    const N: usize = 300;
    let s = TestServer::start_tls(|c| c.rate_limit.enabled = false).await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.tcp("bob").await;
    let filler = "x".repeat(60 * 1024);
    for i in 0..N {
        let r = alice
            .send_text(
                "single_alice_bob",
                &format!("c-{i}"),
                &format!("{i} {filler}"),
            )
            .await
            .unwrap();
        crate::sent_ok(&r);
    }
    for i in 0..N {
        let (text, _) = crate::next_text(&mut bob)
            .await
            .unwrap_or_else(|| panic!("push {i} of {N} did not arrive"));
        assert!(text.starts_with(&format!("{i} ")), "push {i}");
    }
    s.stop().await;
}

#[tokio::test]
async fn plaintext_and_garbage_on_tls_ports_are_refused_and_the_server_survives() {
    let s = TestServer::start_tls(|_| {}).await;
    let mut w = Witness::new(&s).await;
    let protocol_tcp = tls_failures(&s, "tcp", "protocol").await;
    let protocol_http = tls_failures(&s, "http", "protocol").await;
    let protocol_ws = tls_failures(&s, "ws", "protocol").await;

    // The TCP protocol in the clear on the TCP+TLS port: no reply, closed.
    let mut plain = Client::connect_tcp(s.addrs.tcp).await.unwrap();
    let r = plain.auth("mallory", &s.token("mallory"), "iOS").await;
    assert!(r.is_err(), "a plain AUTH got {r:?}");
    w.exchange("plain tcp").await;

    // Plain HTTP on the HTTPS port: never an HTTP answer, closed.
    let mut raw = TcpStream::connect(s.addrs.http).await.unwrap();
    raw.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (closed, got) = closed_by_server(&mut raw).await;
    assert!(closed, "plain HTTP left open");
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
        "{got:?}"
    );
    w.exchange("plain http").await;
    assert_https_health(&s).await;

    // Plain WebSocket upgrade on the WSS port.
    let e = Client::connect_ws(s.addrs.ws, "/ws/v2", Generation::V2)
        .await
        .unwrap_err();
    assert!(!matches!(e, ClientError::Timeout { .. }), "{e:?}");
    w.exchange("plain ws").await;

    // Garbage, and a TLS record header followed by garbage, on every port.
    for addr in [s.addrs.http, s.addrs.ws, s.addrs.tcp] {
        for junk in [
            &b"\x00\xff\x13\x37 garbage garbage garbage\r\n\r\n"[..],
            &b"\x16\x03\x01\x00\x20not a client hello at all, no sir"[..],
        ] {
            let mut raw = TcpStream::connect(addr).await.unwrap();
            raw.write_all(junk).await.unwrap();
            let (closed, _) = closed_by_server(&mut raw).await;
            assert!(closed, "garbage left open on {addr}");
        }
        w.exchange("garbage").await;
    }

    // Counted, by transport: plain TCP, plain HTTP and two junk inputs per port.
    assert!(tls_failures(&s, "tcp", "protocol").await >= protocol_tcp + 3.0);
    assert!(tls_failures(&s, "http", "protocol").await >= protocol_http + 3.0);
    assert!(tls_failures(&s, "ws", "protocol").await >= protocol_ws + 3.0);
    w.check_stored().await;
    s.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_handshake_timeout_and_blocks_no_one() {
    let timeout = Duration::from_secs(3);
    let s = TestServer::start_tls(|c| c.tls.handshake_timeout = timeout).await;
    let before: Vec<f64> = {
        let mut v = Vec::new();
        for t in ["http", "ws", "tcp"] {
            v.push(tls_failures(&s, t, "timeout").await);
        }
        v
    };
    // Connect and say nothing, on all three ports.
    let started = Instant::now();
    let mut silent = Vec::new();
    for addr in [s.addrs.http, s.addrs.ws, s.addrs.tcp] {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // Meanwhile every listener accepts and serves others...
    let mut w = Witness::new(&s).await;
    w.exchange("while silent clients wait").await;
    assert_https_health(&s).await;
    // ...while the silent ones are still waiting (a handshake in the accept
    // loop would have held the others back until the silent ones timed out).
    assert!(
        started.elapsed() < timeout,
        "serving others took {:?}",
        started.elapsed()
    );
    for raw in &silent {
        let mut buf = [0u8; 1];
        let r = raw.try_read(&mut buf);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a silent client was closed early: {r:?}"
        );
    }
    // Then they are closed, not before the handshake timeout, and counted.
    for raw in &mut silent {
        let (closed, got) = closed_by_server(raw).await;
        assert!(closed, "silent client left open");
        assert!(got.is_empty(), "{got:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= timeout - Duration::from_millis(100),
        "closed after {waited:?}"
    );
    for (t, before) in ["http", "ws", "tcp"].into_iter().zip(before) {
        assert!(tls_failures(&s, t, "timeout").await > before, "{t}");
    }
    w.exchange("after silent clients").await;
    s.stop().await;
}

#[tokio::test]
async fn an_untrusting_client_fails_its_handshake_and_the_server_survives() {
    let s = TestServer::start_tls(|_| {}).await;
    let mut w = Witness::new(&s).await;
    let other = TestCa::new("someone else's CA");
    let cases = [
        ("unknown CA", other.client("localhost")),
        (
            "wrong name",
            s.tls.as_ref().unwrap().ca.client("not-this-server.example"),
        ),
    ];
    for (case, tls) in cases {
        let options = ClientOptions {
            tls: Some(tls),
            ..ClientOptions::default()
        };
        let e = Client::connect_tcp_with(s.addrs.tcp, options.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ClientError::Tls(m) if m.contains("certificate")),
            "{case}: {e:?}"
        );
        let e = Client::connect_ws_with(s.addrs.ws, "/ws/v2", Generation::V2, options)
            .await
            .unwrap_err();
        assert!(matches!(&e, ClientError::Tls(_)), "{case}: {e:?}");
        let e = tls_connect(s.addrs.http, other.roots(), "localhost")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("certificate"), "{case}: {e}");
        w.exchange(case).await;
    }
    w.check_stored().await;
    s.stop().await;
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_handshakes_and_a_bad_one_is_refused() {
    let s = TestServer::start_tls(|_| {}).await;
    let tls = s.tls.as_ref().unwrap();
    let certs = s.certs.clone().unwrap();
    let mut w = Witness::new(&s).await;
    // A new CA's leaf on disk, then reload.
    let next = TestCa::new("next CA");
    tls.write_leaf_of(&next);
    certs.reload().unwrap();
    // New handshakes present the new certificate, on every listener.
    let options = |ca: &TestCa| ClientOptions {
        tls: Some(ca.client("localhost")),
        ..ClientOptions::default()
    };
    let mut c = Client::connect_tcp_with(s.addrs.tcp, options(&next))
        .await
        .unwrap();
    assert_auth_ok(c.auth("carol", &s.token("carol"), "iOS").await.unwrap());
    let mut c = Client::connect_ws_with(s.addrs.ws, "/ws/v2", Generation::V2, options(&next))
        .await
        .unwrap();
    assert_auth_ok(c.auth("dave", &s.token("dave"), "iOS").await.unwrap());
    tls_connect(s.addrs.http, next.roots(), "localhost")
        .await
        .unwrap();
    let e = Client::connect_tcp_with(s.addrs.tcp, options(&tls.ca))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Tls(_)), "{e:?}");
    // Connections made before the reload carry on.
    w.exchange("after reload").await;
    // A key that does not match: refused, the previous certificate stays.
    let (chain, _) = tls.ca.leaf();
    std::fs::write(&tls.cert_path, chain).unwrap();
    let e = certs.reload().unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    Client::connect_tcp_with(s.addrs.tcp, options(&next))
        .await
        .unwrap();
    w.exchange("after a refused reload").await;
    s.stop().await;
}

/// `App::build` with TLS files written by `setup` in a temp dir; the error.
async fn build_error(setup: impl FnOnce(&Path, &mut Config)) -> String {
    im_server::telemetry::init_for_tests();
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.tls.enabled = true;
    c.tls.cert_path = Some(dir.path().join("cert.pem"));
    c.tls.key_path = Some(dir.path().join("key.pem"));
    setup(dir.path(), &mut c);
    match App::build(c).await {
        Ok(_) => panic!("App::build accepted a bad TLS setup"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn start_up_refuses_missing_empty_mismatched_and_swapped_files() {
    let ca = TestCa::new("start-up CA");
    let (chain, key) = ca.leaf();
    let (_, other_key) = ca.leaf();

    let e = build_error(|dir, _| std::fs::write(dir.join("key.pem"), &key).unwrap()).await;
    assert!(
        e.contains("cannot read the TLS certificate file") && e.contains("cert.pem"),
        "{e}"
    );
    let e = build_error(|dir, _| std::fs::write(dir.join("cert.pem"), &chain).unwrap()).await;
    assert!(
        e.contains("cannot read the TLS key file") && e.contains("key.pem"),
        "{e}"
    );
    let e = build_error(|dir, _| {
        std::fs::write(dir.join("cert.pem"), "").unwrap();
        std::fs::write(dir.join("key.pem"), &key).unwrap();
    })
    .await;
    assert!(
        e.contains("holds no PEM certificate") && e.contains("cert.pem"),
        "{e}"
    );
    let e = build_error(|dir, _| {
        std::fs::write(dir.join("cert.pem"), &chain).unwrap();
        std::fs::write(dir.join("key.pem"), "\n").unwrap();
    })
    .await;
    assert!(
        e.contains("holds no PEM private key") && e.contains("key.pem"),
        "{e}"
    );
    let e = build_error(|dir, _| {
        std::fs::write(dir.join("cert.pem"), &chain).unwrap();
        std::fs::write(dir.join("key.pem"), &other_key).unwrap();
    })
    .await;
    assert!(e.contains("does not match the certificate"), "{e}");
    assert!(!e.contains("BEGIN"), "{e}");
    // Certificate and key swapped.
    let e = build_error(|dir, _| {
        std::fs::write(dir.join("cert.pem"), &key).unwrap();
        std::fs::write(dir.join("key.pem"), &chain).unwrap();
    })
    .await;
    assert!(e.contains("holds no PEM certificate"), "{e}");
    // A directory instead of a file.
    let e = build_error(|dir, c| {
        std::fs::write(dir.join("key.pem"), &key).unwrap();
        c.tls.cert_path = Some(dir.to_path_buf());
    })
    .await;
    assert!(e.contains("cannot read the TLS certificate file"), "{e}");
}

/// The real binary, started with `env` (on port 0, in a temp dir), its
/// stdout log lines on a channel; killed on drop.
#[cfg(unix)]
struct Process {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
    _dir: tempfile::TempDir,
}

#[cfg(unix)]
impl Process {
    fn spawn(env: &[(&str, String)]) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_im-server"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("IM_SERVER__HOST", "127.0.0.1")
            .env("IM_SERVER__HTTP_PORT", "0")
            .env("IM_SERVER__WS_PORT", "0")
            .env("IM_SERVER__TCP_PORT", "0")
            .env("IM_DATABASE__PATH", dir.path().join("im.db"))
            .env("IM_FILES__DIR", dir.path().join("files"))
            .env("IM_AUTH__JWT_SECRET", "e2e-test-secret")
            .env("IM_LOGGER__FORMAT", "json");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
            _dir: dir,
        }
    }

    /// The first log line (from now on) containing `what`, within 20 s.
    async fn wait_for(&mut self, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.log.push(line.clone());
                    if line.contains(what) {
                        return serde_json::from_str(&line).unwrap();
                    }
                }
                Ok(None) => panic!(
                    "the server exited before logging {what:?}:\n{}",
                    self.log.join("\n")
                ),
                Err(_) => panic!("no {what:?} in the log:\n{}", self.log.join("\n")),
            }
        }
    }

    /// The addresses of the "im-server listening" line.
    async fn addrs(&mut self) -> (SocketAddr, SocketAddr, SocketAddr, String) {
        let v = self.wait_for("im-server listening").await;
        let f = |k: &str| -> String {
            v.get(k)
                .or_else(|| v["fields"].get(k))
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
        };
        (
            f("http").parse().unwrap(),
            f("ws").parse().unwrap(),
            f("tcp").parse().unwrap(),
            f("tls"),
        )
    }

    fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

#[cfg(unix)]
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_running_binary() {
    let tls = TestTls::new();
    let mut p = Process::spawn(&[
        ("IM_TLS__ENABLED", "true".to_owned()),
        ("IM_TLS__CERT_PATH", tls.cert_path.display().to_string()),
        ("IM_TLS__KEY_PATH", tls.key_path.display().to_string()),
    ]);
    let (http, ws, tcp, on) = p.addrs().await;
    assert_eq!(on, "http,ws,tcp");
    let options = |ca: &TestCa| ClientOptions {
        tls: Some(ca.client("localhost")),
        ..ClientOptions::default()
    };
    Client::connect_tcp_with(tcp, options(&tls.ca))
        .await
        .unwrap();

    let next = TestCa::new("renewed CA");
    tls.write_leaf_of(&next);
    p.signal("HUP");
    p.wait_for("TLS certificate reloaded").await;
    Client::connect_tcp_with(tcp, options(&next)).await.unwrap();
    Client::connect_ws_with(ws, "/ws/v2", Generation::V2, options(&next))
        .await
        .unwrap();
    tls_connect(http, next.roots(), "localhost").await.unwrap();
    let e = Client::connect_tcp_with(tcp, options(&tls.ca))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Tls(_)), "{e:?}");

    // Broken files: the error is logged, the renewed certificate stays.
    std::fs::write(&tls.key_path, "not a key").unwrap();
    p.signal("HUP");
    let v = p.wait_for("TLS certificate not reloaded").await;
    assert!(v.to_string().contains("key.pem"), "{v}");
    assert!(p.is_running());
    Client::connect_tcp_with(tcp, options(&next)).await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_without_tls_is_logged_and_harmless() {
    let mut p = Process::spawn(&[]);
    let (http, _, _, on) = p.addrs().await;
    assert_eq!(on, "off");
    p.signal("HUP");
    p.wait_for("nothing to reload").await;
    assert!(p.is_running());
    let (st, _, _) = crate::messaging::http(http, "GET", "/health", &[], "").await;
    assert_eq!(st, 200);
}
