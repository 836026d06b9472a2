//! `/metrics` end to end: the real server on port 0, real clients over TCP
//! and WebSocket, then the Prometheus text parsed and checked value by
//! value.
//!
//! Its own test binary: the `metrics` facade has one recorder per process,
//! so exact counts need a process whose only traffic is these tests', and
//! the tests take turns ([`SERIAL`]): the gauges read at scrape time (queue
//! depths, sessions) are process-wide too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use im_client::Client;
use im_core::command::{Event, Reply};
use im_core::{ErrorCode, Generation};
use im_server::app::{App, mint_token};
use im_server::config::Config;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(5);

/// One test at a time in this process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Server {
    http: SocketAddr,
    ws: SocketAddr,
    tcp: SocketAddr,
    config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        im_server::telemetry::init_for_tests();
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.server.host = "127.0.0.1".parse().unwrap();
        c.server.http_port = 0;
        c.server.ws_port = 0;
        c.server.tcp_port = 0;
        c.database.path = dir.path().join("im.db");
        c.files.dir = dir.path().join("files");
        c.auth.jwt_secret = "metrics-test-secret".to_owned().into();
        tweak(&mut c);
        let app = App::build(c.clone()).await.unwrap();
        let addrs = app.local_addrs();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            http: addrs.http,
            ws: addrs.ws,
            tcp: addrs.tcp,
            config: c,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    fn token(&self, user: &str) -> String {
        mint_token(&self.config, user, "iOS", None).unwrap()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// `GET path` with optional extra headers: (status, lower-case head, body).
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.http).await.unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    /// Scrapes `/metrics` and parses it.
    async fn scrape(&self) -> Metrics {
        let (status, head, body) = self.get("/metrics", &[]).await;
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("content-type: text/plain"), "{head}");
        Metrics::parse(&body)
    }
}

/// One parsed exposition: `# TYPE` per metric name, and the value of each
/// series keyed by name and sorted labels.
#[derive(Debug, Default)]
struct Metrics {
    types: BTreeMap<String, String>,
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut m = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                m.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap();
                    (name.to_owned(), parse_labels(inner))
                }
            };
            let old = m.samples.insert((name, labels), value);
            assert!(old.is_none(), "series repeated: {line}");
        }
        m
    }

    /// The value of `name` with exactly `labels`, if the series exists.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in {:#?}", self.samples.keys()))
    }

    fn kind(&self, name: &str) -> &str {
        self.types
            .get(name)
            .map_or_else(|| panic!("no # TYPE for {name}"), String::as_str)
    }

    /// Every series of `name`, with its labels.
    fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, l), v)| (l, *v))
            .collect()
    }
}

/// `a="x",b="y"` with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().unwrap() {
                (_, '\\') => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        out.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

fn assert_auth_ok(r: &Reply) {
    assert!(
        matches!(
            r,
            Reply::Auth {
                code: ErrorCode::Success,
                ..
            }
        ),
        "{r:?}"
    );
}

fn assert_sent(r: &Reply) -> String {
    match r {
        Reply::Send {
            code: ErrorCode::Success,
            server_msg_id,
            ..
        } => server_msg_id.clone(),
        other => panic!("send failed: {other:?}"),
    }
}

#[tokio::test]
async fn served_metrics_follow_the_traffic() {
    let _serial = SERIAL.lock().await;
    let s = Server::start(|_| {}).await;

    // alice over TCP, bob over WebSocket v2, and a WebSocket whose AUTH is
    // refused (it stays open, unauthenticated).
    let mut alice = Client::connect_tcp(s.tcp).await.unwrap();
    assert_auth_ok(&alice.auth("alice", &s.token("alice"), "iOS").await.unwrap());
    let mut bob = Client::connect_ws(s.ws, "/ws/v2", Generation::V2)
        .await
        .unwrap();
    assert_auth_ok(&bob.auth("bob", &s.token("bob"), "iOS").await.unwrap());
    let mut mallory = Client::connect_ws(s.ws, "/ws/v2", Generation::V2)
        .await
        .unwrap();
    let refused = mallory.auth("mallory", "not-a-jwt", "iOS").await.unwrap();
    assert!(
        matches!(
            refused,
            Reply::Auth {
                code: ErrorCode::AuthFailed,
                ..
            }
        ),
        "{refused:?}"
    );

    // One message, pushed to bob; then the same client_msg_id again (a
    // resend: a duplicate, not stored or pushed twice).
    let conv = "single_alice_bob";
    let id = assert_sent(&alice.send_text(conv, "m-1", "hello").await.unwrap());
    match bob.next_event(WAIT).await.unwrap() {
        Some(Event::Message(m)) => assert_eq!(m.server_msg_id, id),
        other => panic!("expected the push, got {other:?}"),
    }
    let again = assert_sent(&alice.send_text(conv, "m-1", "hello").await.unwrap());
    assert_eq!(again, id);

    let m = s.scrape().await;

    assert_eq!(m.kind("im_connections"), "gauge");
    assert_eq!(m.value("im_connections", &[("transport", "tcp")]), 1.0);
    assert_eq!(m.value("im_connections", &[("transport", "ws")]), 2.0);
    assert_eq!(m.kind("im_connections_accepted_total"), "counter");
    assert_eq!(
        m.value("im_connections_accepted_total", &[("transport", "tcp")]),
        1.0
    );
    assert_eq!(
        m.value("im_connections_accepted_total", &[("transport", "ws")]),
        2.0
    );
    assert_eq!(
        m.get("im_connections_closed_total", &[("transport", "tcp")]),
        None
    );
    assert_eq!(m.value("im_sessions", &[]), 2.0);

    assert_eq!(m.kind("im_auth_failures_total"), "counter");
    assert_eq!(
        m.series("im_auth_failures_total"),
        vec![(
            &[("op", "token"), ("reason", "invalid")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            1.0
        )]
    );

    assert_eq!(m.kind("im_messages_sent_total"), "counter");
    assert_eq!(
        m.value(
            "im_messages_sent_total",
            &[("kind", "single"), ("outcome", "stored")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "im_messages_sent_total",
            &[("kind", "single"), ("outcome", "duplicate")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "im_messages_sent_total",
            &[("kind", "single"), ("outcome", "failed")]
        ),
        None
    );
    assert_eq!(
        m.value("im_pushes_enqueued_total", &[("event", "message")]),
        1.0
    );

    // Two sends, one at a time: two batches of one message each.
    assert_eq!(m.kind("im_writer_batch_size"), "histogram");
    assert_eq!(m.value("im_writer_batch_size_count", &[]), 2.0);
    assert_eq!(m.value("im_writer_batch_size_sum", &[]), 2.0);
    assert_eq!(m.value("im_writer_batch_size_bucket", &[("le", "1")]), 2.0);
    assert_eq!(
        m.value("im_writer_batch_size_bucket", &[("le", "+Inf")]),
        2.0
    );
    assert_eq!(m.kind("im_writer_commit_seconds"), "histogram");
    assert_eq!(m.value("im_writer_commit_seconds_count", &[]), 2.0);
    let commit = m.value("im_writer_commit_seconds_sum", &[]);
    assert!(commit > 0.0 && commit < 10.0, "{commit}");
    assert_eq!(
        m.value("im_writer_commit_seconds_bucket", &[("le", "10")]),
        2.0
    );
    assert_eq!(m.value("im_writer_queue_depth", &[]), 0.0);
    assert_eq!(
        m.get("im_writer_batch_failures_total", &[("retryable", "false")]),
        None
    );

    // Labels are bounded: no user, conversation or message id anywhere.
    for (name, labels) in m.samples.keys() {
        for v in labels.values() {
            for secret in ["alice", "bob", "mallory", conv, id.as_str(), "m-1"] {
                assert!(!v.contains(secret), "{name}{labels:?} names {secret}");
            }
        }
    }

    // The first scrape is counted by route template and status.
    let m = s.scrape().await;
    assert!(
        m.value(
            "im_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "200")]
        ) >= 1.0
    );
    assert_eq!(m.kind("im_http_request_duration_seconds"), "histogram");

    // alice leaves: the TCP gauge goes back to 0 and the close is counted.
    alice.close().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = s.scrape().await;
        if m.value("im_connections", &[("transport", "tcp")]) == 0.0 {
            assert_eq!(
                m.value("im_connections_closed_total", &[("transport", "tcp")]),
                1.0
            );
            assert_eq!(m.value("im_sessions", &[]), 1.0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "tcp gauge stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    drop((bob, mallory));
    s.stop().await;
}

#[tokio::test]
async fn disabled_metrics_are_not_served() {
    let _serial = SERIAL.lock().await;
    let s = Server::start(|c| c.metrics.enabled = false).await;
    let (status, head, body) = s.get("/metrics", &[]).await;
    assert_eq!(status, 404, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(body.contains(r#""error":"not_found""#), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn path_and_token_are_configurable() {
    let _serial = SERIAL.lock().await;
    let s = Server::start(|c| {
        c.metrics.path = "/internal/prom".to_owned();
        c.metrics.token = Some("scrape-secret".to_owned().into());
    })
    .await;
    let (status, _, _) = s.get("/metrics", &[]).await;
    assert_eq!(status, 404);
    let (status, head, _) = s.get("/internal/prom", &[]).await;
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (status, _, _) = s
        .get("/internal/prom", &[("Authorization", "Bearer wrong")])
        .await;
    assert_eq!(status, 401);
    let (status, head, body) = s
        .get(
            "/internal/prom",
            &[("Authorization", "Bearer scrape-secret")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    let m = Metrics::parse(&body);
    assert_eq!(m.kind("im_writer_queue_depth"), "gauge");
    assert_eq!(m.value("im_writer_queue_depth", &[]), 0.0);
    s.stop().await;
}
