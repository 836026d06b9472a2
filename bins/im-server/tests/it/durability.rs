//! Durability: a real server process is killed with SIGKILL in the middle of
//! a stream of sends, restarted on the same database, and every send that
//! got a success SEND_MSG_RSP must be there exactly once, with gapless seqs;
//! resending the unacknowledged ones creates no duplicates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use im_client::Client;
use im_core::ErrorCode;
use im_core::command::{Reply, Request, SendRequest};

/// Backend under test, as the environment of the server process.
pub struct Backend {
    pub name: &'static str,
    pub env: Vec<(String, String)>,
}

impl Backend {
    pub fn sqlite(dir: &Path) -> Self {
        Self {
            name: "sqlite",
            env: vec![
                ("IM_DATABASE__TYPE".into(), "sqlite".into()),
                (
                    "IM_DATABASE__PATH".into(),
                    dir.join("durable.db").display().to_string(),
                ),
            ],
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SECRET: &str = "durability-secret";

pub struct Proc {
    child: Child,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    pub ws: SocketAddr,
}

impl Proc {
    pub async fn start(backend: &Backend, log: &Path) -> Self {
        let (http, ws, tcp) = (free_port(), free_port(), free_port());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_im-server"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("IM_SERVER__HOST", "127.0.0.1")
            .env("IM_SERVER__HTTP_PORT", http.to_string())
            .env("IM_SERVER__WS_PORT", ws.to_string())
            .env("IM_SERVER__TCP_PORT", tcp.to_string())
            .env("IM_AUTH__JWT_SECRET", SECRET)
            // The senders stream as fast as acks come back.
            .env("IM_RATE_LIMIT__ENABLED", "false")
            .env("IM_LOGGER__LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (k, v) in &backend.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let tcp: SocketAddr = format!("127.0.0.1:{tcp}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let http: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
        let ws: SocketAddr = format!("127.0.0.1:{ws}").parse().unwrap();
        let mut p = Self {
            child,
            tcp,
            http,
            ws,
        };
        loop {
            if let Ok(mut c) = Client::connect_tcp(tcp).await {
                if c.heartbeat().await.is_ok() {
                    return p;
                }
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("server exited early with {status}");
            }
            assert!(Instant::now() < deadline, "server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown hook runs.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn stop(mut self) {
        // SIGTERM for a graceful stop.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn token(user: &str) -> String {
    let auth = im_service::JwtAuth::new(SECRET.as_bytes(), false);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    auth.issue(&im_core::UserId::parse(user).unwrap(), "iOS", now, 3600)
        .unwrap()
}

pub(crate) async fn login(addr: SocketAddr, user: &str) -> Client {
    login_on(addr, user, "iOS").await
}

async fn login_on(addr: SocketAddr, user: &str, platform: &str) -> Client {
    let mut c = Client::connect_tcp(addr).await.unwrap();
    crate::assert_auth_ok(c.auth(user, &token(user), platform).await.unwrap());
    c
}

pub(crate) fn conv(a: &str, b: &str) -> String {
    if a < b {
        format!("single_{a}_{b}")
    } else {
        format!("single_{b}_{a}")
    }
}

pub(crate) fn send_req(cid: &str, conversation: &str) -> Request {
    Request::Send(SendRequest {
        client_msg_id: cid.to_owned(),
        conversation_id: conversation.to_owned(),
        message_type: 1,
        content: bytes::Bytes::from(cid.to_owned()),
        ..SendRequest::default()
    })
}

/// What one sender saw: every id it sent, and the (server id, seq) of those acked.
#[derive(Default)]
struct Ledger {
    sent: Vec<(String, String)>, // (client id, conversation)
    acked: HashMap<String, (String, i64)>,
}

/// Streams sends until the connection dies; returns what was sent and acked.
async fn stream_sends(mut c: Client, user: &'static str, peer: &'static str) -> Ledger {
    let mut ledger = Ledger::default();
    let conversation = conv(user, peer);
    let mut outstanding: BTreeMap<u32, String> = BTreeMap::new();
    for i in 0.. {
        let cid = format!("{user}-{i}");
        match c.send(&send_req(&cid, &conversation)).await {
            Ok(seq) => {
                ledger.sent.push((cid.clone(), conversation.clone()));
                outstanding.insert(seq, cid);
            }
            Err(_) => break,
        }
        // Keep up to 32 in flight; collect replies as they come.
        while outstanding.len() >= 32 || (i % 8 == 7 && !outstanding.is_empty()) {
            match c.next_reply(Duration::from_secs(5)).await {
                Ok(Some((
                    seq,
                    Reply::Send {
                        code: ErrorCode::Success,
                        client_msg_id,
                        server_msg_id,
                        seq: s,
                        ..
                    },
                ))) => {
                    if let Some(cid) = outstanding.remove(&seq) {
                        assert_eq!(cid, client_msg_id);
                        ledger.acked.insert(cid, (server_msg_id, s));
                    }
                }
                Ok(Some((seq, other))) => panic!("unexpected reply {seq}: {other:?}"),
                Ok(None) | Err(_) => return ledger,
            }
            if outstanding.len() < 32 {
                break;
            }
        }
    }
    ledger
}

/// Every message of `conversation`, via range sync in pages.
pub(crate) async fn all_messages(
    c: &mut Client,
    conversation: &str,
) -> Vec<im_core::StoredMessage> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let r = c
            .request(Request::SyncRange {
                request_id: format!("r{start}"),
                conversation_id: conversation.to_owned(),
                start_seq: start,
                end_seq: i64::from(i32::MAX),
                count: 500,
            })
            .await
            .unwrap();
        let Reply::SyncRange {
            code: ErrorCode::Success,
            messages,
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        if messages.is_empty() {
            return out;
        }
        start = messages.last().unwrap().message.seq + 1;
        out.extend(messages.into_iter().map(|m| m.message));
    }
}

fn check_conversation(msgs: &[im_core::StoredMessage], acked: &HashMap<String, (String, i64)>) {
    let seqs: Vec<i64> = msgs.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=msgs.len() as i64).collect::<Vec<_>>(),
        "seqs are gapless from 1"
    );
    let mut seen = HashSet::new();
    for m in msgs {
        assert!(
            seen.insert((m.sender_id.clone(), m.client_msg_id.clone())),
            "duplicate {}",
            m.client_msg_id
        );
    }
    for m in msgs {
        if let Some((id, seq)) = acked.get(&m.client_msg_id) {
            assert_eq!(
                (&m.server_msg_id, m.seq),
                (id, *seq),
                "acked message changed"
            );
        }
    }
}

pub async fn kill9_mid_stream(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Proc::start(&backend, &log).await;
    // Two conversations; in the first both sides write concurrently.
    let pairs: [(&'static str, &'static str); 3] =
        [("alice", "bob"), ("bob", "alice"), ("carol", "dave")];
    let mut tasks = Vec::new();
    for (u, p) in pairs {
        let c = login(server.tcp, u).await;
        tasks.push(tokio::spawn(stream_sends(c, u, p)));
    }
    // Let the stream run until a good number of sends are acked, then SIGKILL.
    // About 300 ms of streaming leaves plenty of in-flight work to interrupt.
    let mut probe = login(server.tcp, "probe").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(probe.heartbeat().await.is_ok(), "server died early");
    server.kill9();
    let mut ledgers = Vec::new();
    for t in tasks {
        ledgers.push(t.await.unwrap());
    }
    let acked: HashMap<String, (String, i64)> = ledgers
        .iter()
        .flat_map(|l| l.acked.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
    let sent: Vec<(String, String)> = ledgers
        .iter()
        .flat_map(|l| l.sent.iter().cloned())
        .collect();
    assert!(
        acked.len() >= 50,
        "only {} acked before the kill",
        acked.len()
    );
    assert!(
        sent.len() > acked.len(),
        "the kill should interrupt some sends ({} sent, {} acked)",
        sent.len(),
        acked.len()
    );

    // Restart on the same database.
    let server = Proc::start(&backend, &log).await;
    let mut reader = login_on(server.tcp, "alice", "Web").await;
    let mut reader2 = login_on(server.tcp, "carol", "Web").await;
    let ab = all_messages(&mut reader, &conv("alice", "bob")).await;
    let cd = all_messages(&mut reader2, &conv("carol", "dave")).await;
    check_conversation(&ab, &acked);
    check_conversation(&cd, &acked);
    let stored: HashSet<String> = ab
        .iter()
        .chain(&cd)
        .map(|m| m.client_msg_id.clone())
        .collect();
    for id in acked.keys() {
        assert!(
            stored.contains(id),
            "acknowledged message {id} lost after kill -9 ({})",
            backend.name
        );
    }

    // Clients resend everything not acknowledged (and some acknowledged ones).
    let mut resend: HashMap<&str, Client> = HashMap::new();
    for u in ["alice", "bob", "carol"] {
        resend.insert(u, login(server.tcp, u).await);
    }
    // Pipelined, like the SDK's resend queue after reconnecting.
    let mut waiting: Vec<(&str, u32, &str)> = Vec::new();
    for (cid, conversation) in &sent {
        let user = cid.split('-').next().unwrap();
        let c = resend.get_mut(user).unwrap();
        let seq = c.send(&send_req(cid, conversation)).await.unwrap();
        waiting.push((user, seq, cid.as_str()));
    }
    for (user, seq, cid) in waiting {
        let c = resend.get_mut(user).unwrap();
        let r = c.wait_reply(seq, Duration::from_secs(30)).await.unwrap();
        let Reply::Send {
            code: ErrorCode::Success,
            server_msg_id,
            seq,
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        if let Some((id, s)) = acked.get(cid) {
            assert_eq!(
                (&server_msg_id, seq),
                (id, *s),
                "resend of an acked message must return the original"
            );
        }
    }
    eprintln!(
        "{}: {} sent, {} acked before kill -9",
        backend.name,
        sent.len(),
        acked.len()
    );
    let ab = all_messages(&mut reader, &conv("alice", "bob")).await;
    let cd = all_messages(&mut reader2, &conv("carol", "dave")).await;
    check_conversation(&ab, &acked);
    check_conversation(&cd, &acked);
    assert_eq!(
        ab.len() + cd.len(),
        sent.len(),
        "every sent message stored exactly once after resends"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    kill9_mid_stream(Backend::sqlite(dir.path())).await;
}

/// A fresh PostgreSQL database for one test, created and dropped with `psql`
/// against the server named by `IM_TEST_POSTGRES_URL`.
pub(crate) struct PgDatabase {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

impl PgDatabase {
    /// None (test skipped, reason printed) when no server is configured; a
    /// panic when CI requires the backends and the server is unusable.
    pub(crate) fn create() -> Option<Self> {
        let required = std::env::var("IM_TEST_REQUIRE_BACKENDS").is_ok_and(|v| v == "1");
        let Ok(admin_url) = std::env::var("IM_TEST_POSTGRES_URL") else {
            assert!(
                !required,
                "IM_TEST_REQUIRE_BACKENDS=1 but IM_TEST_POSTGRES_URL is not set"
            );
            eprintln!("skipping: IM_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!(
            "im_dur_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        );
        let out = Command::new("psql")
            .arg(&admin_url)
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql to create a test database: {e}"));
        assert!(
            out.status.success(),
            "CREATE DATABASE failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Self {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_kill_9() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    kill9_mid_stream(Backend {
        name: "postgres",
        env: vec![
            ("IM_DATABASE__TYPE".into(), "postgres".into()),
            ("IM_DATABASE__URL".into(), db.url.clone()),
        ],
    })
    .await;
}
