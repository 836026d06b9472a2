//! Multi-node end to end: several real `im-server` processes behind no load
//! balancer at all (clients pick a node), sharing one PostgreSQL database and
//! one Redis, as docs/operations.md describes. Every assertion is about what
//! a client sees.
//!
//! Needs `IM_TEST_POSTGRES_URL` (an account that may create databases) and
//! `IM_TEST_REDIS_URL`; without them every test prints why and passes, unless
//! `IM_TEST_REQUIRE_BACKENDS=1` (CI), which makes that a failure. The Redis
//! outage tests also need `redis-server` on `PATH` (they run a private one).
//!
//! Each test gets its own scratch database, its own `redis.key_prefix` (its
//! keys are deleted afterwards), its own node ids and ports. At most
//! `IM_TEST_MULTINODE_JOBS` (default 2) clusters run at once, so a small
//! machine is not swamped by a dozen server processes. Set
//! `IM_TEST_MULTINODE_RUST_LOG` to pass a `RUST_LOG` to the nodes; their logs
//! are printed when a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, mpsc};
use std::time::{Duration, Instant};

use im_client::Client;
use im_core::command::{Event, Reply, Request, SendRequest, SyncState, UserStatus};
use im_core::{ErrorCode, Generation, StoredMessage};
use im_repository::scratch::{self, ScratchDb};
use im_server::config::Config;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The JWT secret every node of a test cluster shares.
const SECRET: &str = "multinode-e2e-secret-0123456789abcdef";
/// `cluster.route_ttl` of the test nodes.
const ROUTE_TTL: Duration = Duration::from_secs(2);
/// `cluster.refresh_interval` of the test nodes.
const REFRESH: Duration = Duration::from_millis(500);
/// How long a client waits for something that should arrive.
const WAIT: Duration = Duration::from_secs(5);
/// How long we watch to be sure something does NOT arrive.
const QUIET: Duration = Duration::from_millis(500);
/// How long a node may take to start (migrations included) and be ready.
const START: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Gate
// ---------------------------------------------------------------------------

/// The shared backends of a cluster.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Admin URL of the PostgreSQL server (scratch databases are made there).
    pub postgres_admin: String,
    /// URL of the Redis the nodes share.
    pub redis_url: String,
}

impl Backends {
    /// `None` (reason printed) when a backend is not configured; a panic
    /// instead when `IM_TEST_REQUIRE_BACKENDS=1`.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let pg = var("IM_TEST_POSTGRES_URL");
        let redis = var("IM_TEST_REDIS_URL");
        let mut missing = Vec::new();
        if pg.is_none() {
            missing.push("IM_TEST_POSTGRES_URL");
        }
        if redis.is_none() {
            missing.push("IM_TEST_REDIS_URL");
        }
        match (pg, redis) {
            (Some(postgres_admin), Some(redis_url)) => Some(Self {
                postgres_admin,
                redis_url,
            }),
            _ => {
                let why = format!("{} not set", missing.join(" and "));
                assert!(
                    !scratch::backends_required(),
                    "{why}, but {}=1 requires the multi-node tests to run",
                    scratch::REQUIRE_BACKENDS_ENV
                );
                eprintln!("skipping: {why}");
                None
            }
        }
    }
}

/// Clusters running at once in this test binary.
static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let n = std::env::var("IM_TEST_MULTINODE_JOBS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(2);
    Semaphore::new(n)
});

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// What may differ between clusters.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Redis of the nodes instead of `IM_TEST_REDIS_URL` (a private
    /// `redis-server`, for outage tests).
    pub redis_url: Option<String>,
    /// More `IM_*` variables for every node (they win over the harness's).
    pub env: Vec<(String, String)>,
}

/// The addresses one node listens on, read from its "im-server listening"
/// log line (the nodes bind port 0, so no port can be taken by someone else
/// between choosing and binding it).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub http: SocketAddr,
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
}

/// One server process.
pub struct Node {
    /// `cluster.node_id`.
    pub id: String,
    pub addrs: Addrs,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// Whether the process is still running (not killed by the test).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// N nodes of the real binary on one scratch PostgreSQL database and one
/// Redis (with a key prefix of their own). Nodes are numbered from 1. All
/// processes are killed, the Redis keys deleted and the database dropped
/// when the cluster is dropped.
pub struct Cluster {
    nodes: Vec<Node>,
    /// `redis.key_prefix` of this cluster.
    pub prefix: String,
    /// The Redis the nodes use.
    pub redis_url: String,
    /// Shared `files.dir` and the node logs.
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    config: Config,
    db: Option<ScratchDb>,
    _slot: SemaphorePermit<'static>,
}

impl Cluster {
    /// `n` nodes with the default options; `None` when the backends are not
    /// configured (the test should return).
    pub async fn start(n: usize) -> Option<Self> {
        Self::start_with(n, ClusterOptions::default()).await
    }

    /// `n` nodes, started concurrently (the migration lock serialises their
    /// migrations), each ready (`GET /ready` is 200) on return.
    pub async fn start_with(n: usize, options: ClusterOptions) -> Option<Self> {
        let backends = Backends::from_env()?;
        let slot = SLOTS.acquire().await.unwrap();
        let db = ScratchDb::create(&backends.postgres_admin)
            .await
            .unwrap_or_else(|e| {
                panic!("IM_TEST_POSTGRES_URL is set but no database can be created there: {e}")
            });
        let redis_url = options.redis_url.unwrap_or(backends.redis_url);
        let prefix = format!("{}:", scratch::unique_name("imtest"));
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        let s = |v: &str| v.to_owned();
        let mut env: Vec<(String, String)> = vec![
            (s("IM_SERVER__HOST"), s("127.0.0.1")),
            (s("IM_SERVER__HTTP_PORT"), s("0")),
            (s("IM_SERVER__WS_PORT"), s("0")),
            (s("IM_SERVER__TCP_PORT"), s("0")),
            (s("IM_SERVER__SHUTDOWN_TIMEOUT"), s("2s")),
            (s("IM_DATABASE__TYPE"), s("postgres")),
            (s("IM_DATABASE__URL"), db.url().to_owned()),
            (s("IM_DATABASE__MAX_OPEN_CONNS"), s("4")),
            (s("IM_DATABASE__ACQUIRE_TIMEOUT"), s("30s")),
            (s("IM_REDIS__ENABLED"), s("true")),
            (s("IM_REDIS__URL"), redis_url.clone()),
            (s("IM_REDIS__KEY_PREFIX"), prefix.clone()),
            (s("IM_REDIS__POOL_SIZE"), s("4")),
            (s("IM_REDIS__CONNECT_TIMEOUT"), s("2s")),
            (
                s("IM_CLUSTER__ROUTE_TTL"),
                format!("{}ms", ROUTE_TTL.as_millis()),
            ),
            (
                s("IM_CLUSTER__REFRESH_INTERVAL"),
                format!("{}ms", REFRESH.as_millis()),
            ),
            (s("IM_AUTH__JWT_SECRET"), s(SECRET)),
            (s("IM_FILES__DIR"), files.display().to_string()),
            (s("IM_LOGGER__FORMAT"), s("json")),
            (s("IM_LOGGER__LEVEL"), s("info")),
        ];
        env.extend(options.env);
        let mut config = Config::default();
        config.auth.jwt_secret = SECRET.to_owned().into();
        let mut cluster = Self {
            nodes: Vec::new(),
            prefix,
            redis_url,
            dir,
            env,
            config,
            db: Some(db),
            _slot: slot,
        };
        let mut pending = Vec::new();
        for i in 1..=n {
            pending.push(cluster.spawn(i));
        }
        for (i, p) in pending.into_iter().enumerate() {
            let node = cluster.await_start(i + 1, p).await;
            cluster.nodes.push(node);
        }
        for i in 1..=n {
            cluster.wait_ready(i).await;
        }
        Some(cluster)
    }

    /// Spawns node `i` (`cluster.node_id` = `node-<i>`); its stdout is
    /// copied to its log by a thread that also reports the listening line.
    fn spawn(&self, i: usize) -> Spawned {
        let log = self.dir.path().join(format!("node-{i}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_im-server"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("IM_CLUSTER__NODE_ID", format!("node-{i}"));
        if let Ok(filter) = std::env::var("IM_TEST_MULTINODE_RUST_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(file.try_clone().unwrap()));
        let mut child = cmd.spawn().expect("cannot spawn im-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || copy_log(stdout, file, &tx));
        Spawned {
            id: format!("node-{i}"),
            child: Some(child),
            listening: rx,
            log,
        }
    }

    /// Waits for the listening line of a spawned node. On failure the
    /// node's log is in the panic message (and `Spawned`'s drop kills it).
    async fn await_start(&self, i: usize, mut p: Spawned) -> Node {
        let deadline = Instant::now() + START;
        loop {
            let child = p.child.as_mut().unwrap();
            match p.listening.try_recv() {
                Ok(addrs) => {
                    return Node {
                        id: std::mem::take(&mut p.id),
                        addrs,
                        child: p.child.take(),
                        log: p.log.clone(),
                    };
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    // stdout closed: the process is gone or going.
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!(
                        "node {i} stopped before listening ({status:?}):\n{}",
                        tail(&p.log, 40)
                    );
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the copier finish, then report.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "node {i} exited with {status} before listening:\n{}",
                    tail(&p.log, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {i} not listening within {START:?}:\n{}",
                tail(&p.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `GET /ready` of node `i` until it is 200.
    pub async fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + START;
        let addr = self.node(i).addrs.http;
        loop {
            let last = match http(addr, "GET", "/ready", None, "").await {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            assert!(
                self.nodes[i - 1].is_running(),
                "node {i} died while starting:\n{}",
                tail(&self.nodes[i - 1].log, 40)
            );
            assert!(
                Instant::now() < deadline,
                "node {i} not ready within {START:?} (last: {last}):\n{}",
                tail(&self.nodes[i - 1].log, 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `i` (from 1).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    /// Number of nodes (killed ones included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// SIGKILL of node `i`: no shutdown code runs, its Redis entries stay
    /// until they expire.
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i - 1].kill();
    }

    /// A token for `user` on `platform`, signed with the cluster's secret.
    pub fn token(&self, user: &str, platform: &str) -> String {
        im_server::app::mint_token(&self.config, user, platform, None).unwrap()
    }

    /// An authenticated TCP (v2) client of node `i`.
    pub async fn tcp(&self, i: usize, user: &str, platform: &str) -> Client {
        let mut c = Client::connect_tcp(self.node(i).addrs.tcp).await.unwrap();
        assert_auth_ok(
            c.auth(user, &self.token(user, platform), platform)
                .await
                .unwrap(),
        );
        c
    }

    /// An authenticated WebSocket client of node `i` (`/ws/v1` or `/ws/v2`).
    pub async fn ws(&self, i: usize, user: &str, generation: Generation, platform: &str) -> Client {
        let path = match generation {
            Generation::V1 => "/ws/v1",
            Generation::V2 => "/ws/v2",
        };
        let mut c = Client::connect_ws(self.node(i).addrs.ws, path, generation)
            .await
            .unwrap();
        assert_auth_ok(
            c.auth(user, &self.token(user, platform), platform)
                .await
                .unwrap(),
        );
        c
    }

    /// A JSON HTTP call to node `i`, with a Bearer token of `user` when
    /// given; (status, parsed body).
    pub async fn api(
        &self,
        i: usize,
        user: Option<&str>,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let token = user.map(|u| self.token(u, "iOS"));
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, text) = http(
            self.node(i).addrs.http,
            method,
            path,
            token.as_deref(),
            &body,
        )
        .await
        .unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, v)
    }

    /// The last `lines` lines of every node's log.
    pub fn logs(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| format!("---- {} ----\n{}", n.id, tail(&n.log, lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            eprintln!("node logs (last lines):\n{}", self.logs(40));
        }
        if let Err(e) = resp::delete_prefix(&self.redis_url, &self.prefix) {
            eprintln!("cannot delete the Redis keys {}*: {e}", self.prefix);
        }
        drop(self.db.take());
    }
}

/// A node process that has not reported its addresses yet; killed when
/// dropped before becoming a [`Node`] (a failed start must not leak it).
struct Spawned {
    id: String,
    child: Option<Child>,
    listening: mpsc::Receiver<Addrs>,
    log: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Copies a node's JSON log lines to `file`, reporting the addresses of its
/// "im-server listening" line on `tx`.
fn copy_log(stdout: std::process::ChildStdout, mut file: std::fs::File, tx: &mpsc::Sender<Addrs>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        let _ = writeln!(file, "{line}");
        if !line.contains("im-server listening") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let field = |k: &str| {
            v.get(k)
                .or_else(|| v.get("fields").and_then(|f| f.get(k)))
                .and_then(serde_json::Value::as_str)
                .and_then(|s| s.parse::<SocketAddr>().ok())
        };
        if let (Some(http), Some(ws), Some(tcp)) = (field("http"), field("ws"), field("tcp")) {
            let _ = tx.send(Addrs { http, ws, tcp });
        }
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A raw HTTP/1.1 request (Connection: close) within 10 s; (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(token) = bearer {
            req.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        stream
            .read_to_end(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        let out = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in {head:?}"))?;
        Ok((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{method} {path}: no answer within 10s")))
}

// ---------------------------------------------------------------------------
// A private redis-server, for outage tests
// ---------------------------------------------------------------------------

/// A `redis-server` of one test, without persistence: stopping it loses
/// every key, as a Redis restarted without AOF/RDB does.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts one on a free port; `None` (reason printed) when
    /// `redis-server` is not on PATH, a panic instead when the backends are
    /// required.
    pub fn start() -> Option<Self> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                !scratch::backends_required(),
                "redis-server is not on PATH, but {}=1 requires the Redis outage tests to run",
                scratch::REQUIRE_BACKENDS_ENV
            );
            eprintln!("skipping: redis-server is not on PATH");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // A port can be taken between choosing and binding it: retry.
        for _ in 0..5 {
            let port = free_port();
            if let Ok(child) = spawn_redis(port, dir.path()) {
                return Some(Self {
                    port,
                    child: Some(child),
                    dir,
                });
            }
        }
        panic!("cannot start a private redis-server");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: every key is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty), retrying for a few seconds.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match spawn_redis(self.port, self.dir.path()) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("cannot restart redis-server on {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `redis-server` on `port` (no persistence, files in `dir`) and
/// waits until it answers PING.
fn spawn_redis(port: u16, dir: &Path) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))
        .unwrap();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| e.to_string())?;
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited with {status}"));
        }
        if resp::ping(&url) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("redis-server did not answer PING".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Just enough of RESP2 to ping a Redis and delete a test's keys, so the
/// tests need no Redis client crate.
mod resp {
    use std::io::{self, BufRead, BufReader, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    #[derive(Debug)]
    pub enum Value {
        Simple(String),
        Error(String),
        /// An integer reply (its value is never needed here).
        Int,
        Bulk(Option<Vec<u8>>),
        Array(Option<Vec<Value>>),
    }

    pub struct Conn {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    fn invalid(msg: impl Into<String>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, msg.into())
    }

    impl Conn {
        /// Connects to `redis://[[user]:password@]host[:port][/db]` (no TLS,
        /// no percent-decoding), authenticating and selecting the db.
        pub fn open(url: &str) -> io::Result<Self> {
            let rest = url
                .strip_prefix("redis://")
                .ok_or_else(|| invalid(format!("only redis:// URLs are supported: {url}")))?;
            let (userinfo, rest) = match rest.rsplit_once('@') {
                Some((u, r)) => (Some(u), r),
                None => (None, rest),
            };
            let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
            let hostport = if hostport.contains(':') {
                hostport.to_owned()
            } else {
                format!("{hostport}:6379")
            };
            let addr = hostport
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| invalid(format!("cannot resolve {hostport}")))?;
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.set_write_timeout(Some(Duration::from_secs(5)))?;
            let mut c = Self {
                reader: BufReader::new(stream.try_clone()?),
                writer: stream,
            };
            if let Some(info) = userinfo {
                let r = match info.split_once(':') {
                    Some(("", pass)) => c.cmd(&["AUTH", pass])?,
                    Some((user, pass)) => c.cmd(&["AUTH", user, pass])?,
                    None => c.cmd(&["AUTH", info])?,
                };
                if let Value::Error(e) = r {
                    return Err(invalid(format!("AUTH: {e}")));
                }
            }
            let db = db.split('?').next().unwrap_or("");
            if !db.is_empty() && db != "0" {
                if let Value::Error(e) = c.cmd(&["SELECT", db])? {
                    return Err(invalid(format!("SELECT: {e}")));
                }
            }
            Ok(c)
        }

        pub fn cmd(&mut self, args: &[&str]) -> io::Result<Value> {
            let mut out = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            self.writer.write_all(&out)?;
            read(&mut self.reader)
        }
    }

    fn line(r: &mut impl BufRead) -> io::Result<String> {
        let mut s = String::new();
        if r.read_line(&mut s)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        Ok(s.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read(r: &mut impl BufRead) -> io::Result<Value> {
        let l = line(r)?;
        let (kind, rest) = l.split_at(l.len().min(1));
        let num = || rest.parse::<i64>().map_err(|_| invalid(format!("bad {l}")));
        Ok(match kind {
            "+" => Value::Simple(rest.to_owned()),
            "-" => Value::Error(rest.to_owned()),
            ":" => {
                num()?;
                Value::Int
            }
            "$" => match usize::try_from(num()?) {
                Err(_) => Value::Bulk(None),
                Ok(n) => {
                    let mut buf = vec![0; n + 2];
                    r.read_exact(&mut buf)?;
                    buf.truncate(n);
                    Value::Bulk(Some(buf))
                }
            },
            "*" => match usize::try_from(num()?) {
                Err(_) => Value::Array(None),
                Ok(n) => Value::Array(Some((0..n).map(|_| read(r)).collect::<io::Result<_>>()?)),
            },
            _ => return Err(invalid(format!("unexpected reply {l:?}"))),
        })
    }

    /// Whether a Redis answers PING at `url`.
    pub fn ping(url: &str) -> bool {
        Conn::open(url)
            .and_then(|mut c| c.cmd(&["PING"]))
            .is_ok_and(|v| matches!(v, Value::Simple(ref s) if s == "PONG"))
    }

    /// Deletes every key that starts with `prefix` (SCAN + DEL).
    pub fn delete_prefix(url: &str, prefix: &str) -> io::Result<usize> {
        let mut c = Conn::open(url)?;
        let pattern = format!("{prefix}*");
        let mut cursor = "0".to_owned();
        let mut deleted = 0;
        loop {
            let Value::Array(Some(reply)) =
                c.cmd(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?
            else {
                return Err(invalid("unexpected SCAN reply"));
            };
            let mut it = reply.into_iter();
            let (Some(Value::Bulk(Some(next))), Some(Value::Array(Some(keys)))) =
                (it.next(), it.next())
            else {
                return Err(invalid("unexpected SCAN reply"));
            };
            let keys: Vec<String> = keys
                .into_iter()
                .filter_map(|k| match k {
                    Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                })
                .collect();
            if !keys.is_empty() {
                let mut args = vec!["DEL"];
                args.extend(keys.iter().map(String::as_str));
                c.cmd(&args)?;
                deleted += keys.len();
            }
            cursor = String::from_utf8_lossy(&next).into_owned();
            if cursor == "0" {
                return Ok(deleted);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------

fn assert_auth_ok(r: Reply) {
    assert!(
        matches!(
            r,
            Reply::Auth {
                code: ErrorCode::Success,
                ..
            }
        ),
        "auth failed: {r:?}"
    );
}

/// (server id, seq) of a successful send.
fn sent_ok(r: &Reply) -> (String, i64) {
    match r {
        Reply::Send {
            code: ErrorCode::Success,
            server_msg_id,
            seq,
            ..
        } => (server_msg_id.clone(), *seq),
        other => panic!("send failed: {other:?}"),
    }
}

/// `single_<a>_<b>` with the ids in order.
fn conv(a: &str, b: &str) -> String {
    if a < b {
        format!("single_{a}_{b}")
    } else {
        format!("single_{b}_{a}")
    }
}

fn text_req(cid: &str, conversation: &str) -> Request {
    Request::Send(SendRequest {
        client_msg_id: cid.to_owned(),
        conversation_id: conversation.to_owned(),
        message_type: 1,
        content: bytes::Bytes::from(cid.to_owned()),
        ..SendRequest::default()
    })
}

/// Sends a text whose content is its client id; (server id, seq).
async fn send(c: &mut Client, conversation: &str, cid: &str) -> (String, i64) {
    sent_ok(&c.request(text_req(cid, conversation)).await.unwrap())
}

/// The first event matching `pred` within `within` (others are skipped).
async fn next_matching(
    c: &mut Client,
    within: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Option<Event> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match c.next_event(left).await {
            Ok(Some(e)) if pred(&e) => return Some(e),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The next pushed message within `WAIT`.
async fn next_message(c: &mut Client) -> Option<Arc<StoredMessage>> {
    match next_matching(c, WAIT, |e| matches!(e, Event::Message(_))).await? {
        Event::Message(m) => Some(m),
        _ => unreachable!(),
    }
}

/// Every message pushed to `c` until it is quiet for `QUIET` (or closed).
async fn drain_messages(c: &mut Client) -> Vec<Arc<StoredMessage>> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = c.next_event(QUIET).await {
        if let Event::Message(m) = e {
            out.push(m);
        }
    }
    out
}

/// Asserts that no message is pushed to `c` within `QUIET`.
async fn assert_no_message(c: &mut Client, who: &str) {
    let extra = drain_messages(c).await;
    assert!(
        extra.is_empty(),
        "{who} got unexpected (duplicate?) pushes: {:?}",
        extra
            .iter()
            .map(|m| (&m.client_msg_id, m.seq))
            .collect::<Vec<_>>()
    );
}

/// The messages of `conversation` after `cursor`, by v2 BATCH_SYNC pages.
async fn batch_sync_after(
    c: &mut Client,
    conversation: &str,
    mut cursor: i64,
) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    loop {
        let r = c
            .request(Request::BatchSync {
                states: vec![SyncState {
                    conversation_id: conversation.to_owned(),
                    last_seq: cursor,
                }],
                max_per_conversation: 50,
            })
            .await
            .unwrap();
        let Reply::BatchSync {
            code: ErrorCode::Success,
            conversations,
            ..
        } = r
        else {
            panic!("batch sync failed: {r:?}")
        };
        let Some(batch) = conversations
            .into_iter()
            .find(|b| b.conversation_id == conversation)
        else {
            return out;
        };
        out.extend(batch.messages.into_iter().map(|m| m.message));
        cursor = batch.max_seq;
        if !batch.has_more {
            return out;
        }
    }
}

/// Every message of `conversation`, by SYNC_RANGE pages.
async fn all_messages(c: &mut Client, conversation: &str) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let r = c
            .request(Request::SyncRange {
                request_id: format!("r{start}"),
                conversation_id: conversation.to_owned(),
                start_seq: start,
                end_seq: i64::from(i32::MAX),
                count: 200,
            })
            .await
            .unwrap();
        let Reply::SyncRange {
            code: ErrorCode::Success,
            messages,
            ..
        } = r
        else {
            panic!("range sync failed: {r:?}")
        };
        let Some(last) = messages.last() else {
            return out;
        };
        start = last.message.seq + 1;
        out.extend(messages.into_iter().map(|m| m.message));
    }
}

/// The highest seq `n` such that seqs 1..=n were all seen: where a client
/// that detects gaps resumes its sync.
fn contiguous_cursor(seqs: impl IntoIterator<Item = i64>) -> i64 {
    let seen: HashSet<i64> = seqs.into_iter().collect();
    let mut n = 0;
    while seen.contains(&(n + 1)) {
        n += 1;
    }
    n
}

/// Presence of `user` as node-local ONLINE_STATUS_REQ answers it (this also
/// subscribes `c` to `user`).
async fn status_of(c: &mut Client, user: &str) -> UserStatus {
    let r = c
        .request(Request::OnlineStatus {
            user_ids: vec![user.to_owned()],
        })
        .await
        .unwrap();
    let Reply::OnlineStatus {
        code: ErrorCode::Success,
        mut statuses,
        ..
    } = r
    else {
        panic!("status query failed: {r:?}")
    };
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    statuses.remove(0)
}

/// Polls ONLINE_STATUS_REQ until `user` is `online` (true) or offline
/// (false); the last status seen, and whether it matched before `within`.
async fn poll_status(
    c: &mut Client,
    user: &str,
    online: bool,
    within: Duration,
) -> (bool, UserStatus) {
    let deadline = Instant::now() + within;
    loop {
        let st = status_of(c, user).await;
        if st.online == online {
            return (true, st);
        }
        if Instant::now() >= deadline {
            return (false, st);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_group(c: &Cluster, node: usize, owner: &str, members: &[&str]) -> String {
    let body = serde_json::json!({
        "groupName": "team", "faceURL": "", "introduction": "", "memberUserIDs": members,
    });
    let (status, v) = c
        .api(node, Some(owner), "POST", "/api/group/create", &body)
        .await;
    assert_eq!(status, 200, "{v}");
    v["data"]["groupID"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------
// The harness itself, and what a shared database gives without Redis
// ---------------------------------------------------------------------------

/// Three processes start, become ready and share one database: an account
/// registered on node 1 logs in on node 3 and authenticates a socket on node
/// 2; messages written on different nodes into one conversation get gapless
/// seqs from the database, and a user who was offline syncs them on any
/// node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_three_nodes_share_one_database() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    assert_eq!(c.node_count(), 3);
    let ids: HashSet<&str> = (1..=3).map(|i| c.node(i).id.as_str()).collect();
    assert_eq!(ids.len(), 3, "distinct node ids");
    for i in 1..=3 {
        let (status, v) = c
            .api(i, None, "GET", "/health", &serde_json::Value::Null)
            .await;
        assert_eq!(status, 200, "node {i}: {v}");
    }
    let register =
        serde_json::json!({"username": "ulla", "password": "correct horse", "nickname": "Ulla"});
    let (status, v) = c
        .api(1, None, "POST", "/api/auth/register", &register)
        .await;
    assert_eq!(status, 200, "{v}");
    let login =
        serde_json::json!({"username": "ulla", "password": "correct horse", "platform": "iOS"});
    let (status, v) = c.api(3, None, "POST", "/api/auth/login", &login).await;
    assert_eq!(
        status, 200,
        "a user registered on node 1 logs in on node 3: {v}"
    );
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let mut ulla = Client::connect_tcp(c.node(2).addrs.tcp).await.unwrap();
    assert_auth_ok(ulla.auth("ulla", &token, "iOS").await.unwrap());

    // alice (node 1) and bob (node 3) write the same conversation in turn.
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.tcp(3, "bob", "iOS").await;
    let mut acked = BTreeMap::new();
    for i in 0..6 {
        let (sender, cid) = if i % 2 == 0 {
            (&mut alice, format!("a-{i}"))
        } else {
            (&mut bob, format!("b-{i}"))
        };
        let (id, seq) = send(sender, &ab, &cid).await;
        acked.insert(seq, (id, cid));
    }
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>(),
        "seqs from the database are gapless across nodes"
    );
    // A reader on node 2 sees the conversation exactly as acknowledged.
    let mut alice_web = c.ws(2, "alice", Generation::V2, "Web").await;
    let msgs = batch_sync_after(&mut alice_web, &ab, 0).await;
    let got: Vec<(i64, String, String)> = msgs
        .iter()
        .map(|m| (m.seq, m.server_msg_id.clone(), m.client_msg_id.clone()))
        .collect();
    let want: Vec<(i64, String, String)> = acked
        .iter()
        .map(|(s, (id, cid))| (*s, id.clone(), cid.clone()))
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// 1:1
// ---------------------------------------------------------------------------

/// alice (two devices) and bob exchange messages; every other session of
/// both users gets each message once, the sending session none.
async fn exchange(alice: &mut Client, alice_web: &mut Client, bob: &mut Client) {
    let ab = conv("alice", "bob");
    let (id, seq) = send(alice, &ab, "hello-bob").await;
    let m = next_message(bob).await.expect("bob gets alice's message");
    assert_eq!(
        (m.server_msg_id.as_str(), m.seq, m.sender_id.as_str()),
        (id.as_str(), seq, "alice")
    );
    let m = next_message(alice_web)
        .await
        .expect("alice's other device gets her own message (multi-device sync)");
    assert_eq!((m.server_msg_id.as_str(), m.seq), (id.as_str(), seq));
    // bob speaks v1, whose SEND_MSG_RSP carries no server id: compare by
    // client id and seq.
    let (_, seq) = send(bob, &ab, "hello-alice").await;
    for (who, c) in [("alice iOS", &mut *alice), ("alice Web", &mut *alice_web)] {
        let m = next_message(c)
            .await
            .unwrap_or_else(|| panic!("{who} gets bob's message"));
        assert_eq!(
            (m.client_msg_id.as_str(), m.seq, m.sender_id.as_str()),
            ("hello-alice", seq, "bob"),
            "{who}"
        );
    }
    assert_no_message(alice, "alice iOS").await;
    assert_no_message(alice_web, "alice Web").await;
    assert_no_message(bob, "bob").await;
}

/// Control: every session on one node of a 3-node cluster (Redis enabled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_on_one_node_of_a_cluster() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let mut alice = c.tcp(2, "alice", "iOS").await;
    let mut alice_web = c.ws(2, "alice", Generation::V2, "Web").await;
    let mut bob = c.ws(2, "bob", Generation::V1, "Android").await;
    exchange(&mut alice, &mut alice_web, &mut bob).await;
}

/// alice on node 1, bob on node 2, alice's second device on node 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_across_nodes() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V1, "Android").await;
    let mut alice_web = c.ws(3, "alice", Generation::V2, "Web").await;
    exchange(&mut alice, &mut alice_web, &mut bob).await;
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

/// Members spread over three nodes (some sharing the sender's node, one with
/// two devices on two nodes) each get a group message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_fan_out_across_three_nodes_once_each() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let gid = create_group(&c, 3, "alice", &["bob", "carol", "dave", "erin"]).await;
    let group = format!("group_{gid}");
    let mut sessions: Vec<(&str, Client)> = vec![
        ("alice", c.tcp(1, "alice", "iOS").await),
        ("dave", c.tcp(1, "dave", "iOS").await),
        ("bob", c.tcp(2, "bob", "iOS").await),
        ("erin", c.ws(2, "erin", Generation::V2, "iOS").await),
        ("carol", c.tcp(3, "carol", "iOS").await),
        ("erin-web", c.ws(3, "erin", Generation::V2, "Web").await),
    ];
    // From node 1, then from node 3.
    for (sender, cid) in [("alice", "g-from-1"), ("carol", "g-from-3")] {
        let s = sessions.iter().position(|(n, _)| *n == sender).unwrap();
        let (id, seq) = send(&mut sessions[s].1, &group, cid).await;
        for (who, client) in &mut sessions {
            if *who == sender {
                continue;
            }
            let m = next_message(client)
                .await
                .unwrap_or_else(|| panic!("{who} gets {cid} from {sender}"));
            assert_eq!(
                (m.server_msg_id.as_str(), m.seq, m.group_id.as_str()),
                (id.as_str(), seq, gid.as_str()),
                "{who}"
            );
        }
    }
    for (who, client) in &mut sessions {
        assert_no_message(client, who).await;
    }
}

// ---------------------------------------------------------------------------
// Recall, read receipts, typing
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_reaches_the_other_node() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V2, "iOS").await;
    let (id, _) = send(&mut bob, &ab, "oops").await;
    let r = bob
        .request(Request::Revoke {
            message_id: id.clone(),
            conversation_id: ab.clone(),
        })
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Reply::Revoke {
                code: ErrorCode::Success,
                ..
            }
        ),
        "{r:?}"
    );
    let e = next_matching(&mut alice, WAIT, |e| matches!(e, Event::Revoked { .. }))
        .await
        .expect("alice on node 1 gets the recall made on node 2");
    let Event::Revoked {
        server_msg_id,
        revoked_by,
        ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!(
        (server_msg_id.as_str(), revoked_by.as_str()),
        (id.as_str(), "bob")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipt_reaches_the_other_node() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V2, "iOS").await;
    let mut ids = vec![
        send(&mut alice, &ab, "r-1").await.0,
        send(&mut alice, &ab, "r-2").await.0,
    ];
    let r = bob
        .request(Request::ReadReceipt {
            message_ids: vec![],
            conversation_id: ab.clone(),
        })
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Reply::ReadReceipt {
                code: ErrorCode::Success,
                ..
            }
        ),
        "{r:?}"
    );
    let e = next_matching(&mut alice, WAIT, |e| matches!(e, Event::ReadReceipt { .. }))
        .await
        .expect("alice on node 1 gets bob's read receipt from node 2");
    let Event::ReadReceipt {
        mut server_msg_ids,
        user_id,
        conversation_id,
        ..
    } = e
    else {
        unreachable!()
    };
    server_msg_ids.sort();
    ids.sort();
    assert_eq!(
        (server_msg_ids, user_id.as_str(), conversation_id.as_str()),
        (ids, "bob", ab.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_node() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V2, "iOS").await;
    alice
        .send(&Request::Typing {
            conversation_id: ab.clone(),
            status: 1,
        })
        .await
        .unwrap();
    let e = next_matching(&mut bob, WAIT, |e| matches!(e, Event::Typing { .. }))
        .await
        .expect("bob on node 2 gets alice's typing from node 1");
    assert!(
        matches!(e, Event::Typing { ref user_id, ref conversation_id, status: 1 }
            if user_id == "alice" && *conversation_id == ab),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------
// Presence and KICK_OUT
// ---------------------------------------------------------------------------

/// carol on node 1 watches dave, who logs in and out on node 2: she is
/// pushed both transitions, and her queries agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_across_nodes() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let mut carol = c.tcp(1, "carol", "iOS").await;
    assert!(
        !status_of(&mut carol, "dave").await.online,
        "dave starts offline"
    );
    let dave = c.ws(2, "dave", Generation::V2, "Android").await;
    let e = next_matching(
        &mut carol,
        WAIT,
        |e| matches!(e, Event::StatusChange(s) if s.user_id == "dave" && s.online),
    )
    .await
    .expect("carol (node 1) is pushed dave's login on node 2");
    let Event::StatusChange(st) = e else {
        unreachable!()
    };
    assert_eq!(st.platforms, vec!["Android".to_owned()]);
    let (ok, st) = poll_status(&mut carol, "dave", true, WAIT).await;
    assert!(ok, "a query on node 1 shows dave online: {st:?}");
    assert_eq!(st.platforms, vec!["Android".to_owned()]);
    dave.close().await.unwrap();
    let e = next_matching(
        &mut carol,
        WAIT,
        |e| matches!(e, Event::StatusChange(s) if s.user_id == "dave" && !s.online),
    )
    .await
    .expect("carol (node 1) is pushed dave's logout on node 2");
    let Event::StatusChange(st) = e else {
        unreachable!()
    };
    assert!(st.last_seen > 0, "{st:?}");
    let (ok, st) = poll_status(&mut carol, "dave", false, WAIT).await;
    assert!(ok, "a query on node 1 shows dave offline: {st:?}");
}

/// `session.kick_policy: per_platform` (the default) across nodes: another
/// platform on another node coexists; the same platform on another node
/// replaces the old session, which gets KICK_OUT and is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_out_across_nodes() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let mut old = c.tcp(1, "alice", "iOS").await;
    let mut web = c.ws(2, "alice", Generation::V2, "Web").await;
    assert!(
        next_matching(&mut old, QUIET, |e| matches!(e, Event::KickOut { .. }))
            .await
            .is_none(),
        "another platform does not kick"
    );
    let mut new = c.tcp(2, "alice", "iOS").await;
    let e = next_matching(&mut old, WAIT, |e| matches!(e, Event::KickOut { .. }))
        .await
        .expect("the node-1 session is kicked by the same-platform login on node 2");
    assert!(matches!(e, Event::KickOut { .. }), "{e:?}");
    assert!(
        old.closed(WAIT).await.unwrap(),
        "the kicked session is closed"
    );
    assert!(new.heartbeat().await.is_ok(), "the new session lives");
    assert!(web.heartbeat().await.is_ok(), "the Web session lives");
    assert!(
        next_matching(&mut web, QUIET, |e| matches!(e, Event::KickOut { .. }))
            .await
            .is_none(),
        "the Web session is not kicked"
    );
}

// ---------------------------------------------------------------------------
// A node killed with SIGKILL
// ---------------------------------------------------------------------------

/// What one streaming sender saw.
#[derive(Default)]
struct Ledger {
    /// Client ids in send order.
    sent: Vec<String>,
    /// Client id -> (server id, seq) of the acknowledged ones.
    acked: HashMap<String, (String, i64)>,
}

/// Sends `<prefix>-0`, `<prefix>-1`, … into `conversation` (a few in
/// flight, paced under the default rate limit) until the connection dies.
async fn stream_sends(
    mut c: Client,
    conversation: String,
    prefix: &'static str,
    progress: Arc<AtomicUsize>,
) -> Ledger {
    let mut ledger = Ledger::default();
    let mut outstanding: HashMap<u32, String> = HashMap::new();
    for i in 0.. {
        let cid = format!("{prefix}-{i}");
        match c.send(&text_req(&cid, &conversation)).await {
            Ok(seq) => {
                ledger.sent.push(cid.clone());
                outstanding.insert(seq, cid);
            }
            Err(_) => return ledger,
        }
        while outstanding.len() >= 4 {
            match c.next_reply(WAIT).await {
                Ok(Some((
                    seq,
                    Reply::Send {
                        code,
                        client_msg_id,
                        server_msg_id,
                        seq: s,
                        ..
                    },
                ))) => {
                    let cid = outstanding.remove(&seq);
                    if code == ErrorCode::Success {
                        assert_eq!(cid.as_deref(), Some(client_msg_id.as_str()));
                        ledger.acked.insert(client_msg_id, (server_msg_id, s));
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(Some((seq, other))) => panic!("unexpected reply {seq}: {other:?}"),
                Ok(None) | Err(_) => return ledger,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ledger
}

/// Asserts `msgs` (one conversation) has gapless seqs from 1, no duplicate
/// client id, and every acknowledged message unchanged.
fn check_conversation(msgs: &[StoredMessage], acked: &HashMap<String, (String, i64)>) {
    let seqs: Vec<i64> = msgs.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(msgs.len()).unwrap()).collect::<Vec<_>>(),
        "gapless seqs from 1"
    );
    let mut seen = HashSet::new();
    for m in msgs {
        assert!(
            seen.insert((m.sender_id.clone(), m.client_msg_id.clone())),
            "duplicate {}",
            m.client_msg_id
        );
    }
    let stored: HashMap<&str, (&str, i64)> = msgs
        .iter()
        .map(|m| (m.client_msg_id.as_str(), (m.server_msg_id.as_str(), m.seq)))
        .collect();
    for (cid, (id, seq)) in acked {
        assert_eq!(
            stored.get(cid.as_str()),
            Some(&(id.as_str(), *seq)),
            "acknowledged {cid} lost or changed"
        );
    }
}

/// Node 2 is SIGKILLed while dave streams sends from it to alice (node 1)
/// and alice sends to bob (node 2). dave and bob reconnect to node 3: dave
/// resends what was not acknowledged (idempotently), bob syncs from where
/// his pushes stopped. Every acknowledged message is there exactly once,
/// before, during and after the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_clients_reconnect_elsewhere_and_lose_nothing() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let (ab, ad) = (conv("alice", "bob"), conv("alice", "dave"));
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V2, "iOS").await;
    let dave = c.tcp(2, "dave", "iOS").await;
    let progress = Arc::new(AtomicUsize::new(0));
    let stream = tokio::spawn(stream_sends(
        dave,
        ad.clone(),
        "dave",
        Arc::clone(&progress),
    ));
    let mut to_bob: HashMap<String, (String, i64)> = HashMap::new();
    for i in 0..10 {
        let cid = format!("before-{i}");
        to_bob.insert(cid.clone(), send(&mut alice, &ab, &cid).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::SeqCst) < 20 {
        assert!(
            Instant::now() < deadline,
            "dave's stream is not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.kill9(2);
    let ledger = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("dave's stream notices the dead node")
        .unwrap();
    // Sends to bob while his node is dead and before he is back succeed.
    for i in 0..3 {
        let cid = format!("during-{i}");
        to_bob.insert(cid.clone(), send(&mut alice, &ab, &cid).await);
    }
    // What bob's dead connection had received.
    let pushed: Vec<Arc<StoredMessage>> = drain_messages(&mut bob)
        .await
        .into_iter()
        .filter(|m| m.conversation_id == ab)
        .collect();

    // bob reconnects to node 3 and syncs from his last contiguous push.
    let mut bob = c.ws(3, "bob", Generation::V2, "iOS").await;
    let cursor = contiguous_cursor(pushed.iter().map(|m| m.seq));
    let mut seen: Vec<StoredMessage> = pushed
        .iter()
        .filter(|m| m.seq <= cursor)
        .map(|m| (**m).clone())
        .collect();
    seen.extend(batch_sync_after(&mut bob, &ab, cursor).await);
    check_conversation(&seen, &to_bob);
    assert_eq!(
        seen.len(),
        to_bob.len(),
        "bob has exactly what was sent to him"
    );

    // dave reconnects to node 3 and resends everything (the SDK resends what
    // was not acknowledged; acknowledged ones must come back unchanged).
    let mut dave = c.tcp(3, "dave", "iOS").await;
    for cid in &ledger.sent {
        let (id, seq) = send(&mut dave, &ad, cid).await;
        if let Some(orig) = ledger.acked.get(cid) {
            assert_eq!(&(id, seq), orig, "resend of acknowledged {cid}");
        }
    }
    let msgs = all_messages(&mut alice, &ad).await;
    check_conversation(&msgs, &ledger.acked);
    assert_eq!(
        msgs.len(),
        ledger.sent.len(),
        "every send stored exactly once"
    );
    eprintln!(
        "kill -9: dave sent {}, {} acknowledged before the kill; bob had {} pushes",
        ledger.sent.len(),
        ledger.acked.len(),
        pushed.len()
    );

    // After: alice keeps writing; bob gets each message once, by push or by
    // the sync a client does on reconnect/gap detection.
    let mut after = HashMap::new();
    for i in 0..5 {
        let cid = format!("after-{i}");
        after.insert(cid.clone(), send(&mut alice, &ab, &cid).await);
    }
    let mut got: Vec<StoredMessage> = drain_messages(&mut bob)
        .await
        .into_iter()
        .map(|m| (*m).clone())
        .collect();
    let cursor = contiguous_cursor(seen.iter().chain(&got).map(|m| m.seq));
    got.retain(|m| m.seq <= cursor);
    got.extend(batch_sync_after(&mut bob, &ab, cursor).await);
    seen.extend(got);
    seen.sort_by_key(|m| m.seq);
    to_bob.extend(after);
    check_conversation(&seen, &to_bob);
    assert_eq!(seen.len(), to_bob.len());
}

/// The cluster view of a SIGKILLed node: its users show online from other
/// nodes while it lives and offline once `cluster.route_ttl` has passed;
/// a user who reconnects to another node gets pushes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_routes_expire_and_pushes_follow_the_reconnect() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut erin = c.tcp(1, "erin", "iOS").await;
    let _frank = c.tcp(2, "frank", "iOS").await;
    let _bob = c.tcp(2, "bob", "iOS").await;
    let (ok, st) = poll_status(&mut erin, "frank", true, WAIT).await;
    assert!(ok, "node 1 sees frank (node 2) online: {st:?}");
    c.kill9(2);
    let killed = Instant::now();
    let mut bob = c.tcp(3, "bob", "iOS").await;
    let (id, seq) = send(&mut alice, &ab, "to-the-new-node").await;
    let m = next_message(&mut bob)
        .await
        .expect("bob, back on node 3, gets pushes from node 1");
    assert_eq!((m.server_msg_id.as_str(), m.seq), (id.as_str(), seq));
    let (ok, st) = poll_status(&mut erin, "frank", false, ROUTE_TTL + REFRESH + WAIT).await;
    assert!(
        ok,
        "frank shows offline once route_ttl ({ROUTE_TTL:?}) has passed: {st:?} after {:?}",
        killed.elapsed()
    );
    // bob, back on node 3, is online.
    let (ok, st) = poll_status(&mut erin, "bob", true, WAIT).await;
    assert!(ok, "bob (node 3) online: {st:?}");
}

// ---------------------------------------------------------------------------
// Redis outage
// ---------------------------------------------------------------------------

/// With Redis down, sessions on one node still talk, sends to users on
/// other nodes are still stored, and once Redis is back a user who missed
/// those pushes gets them by sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_local_delivery_and_sends_continue() {
    if Backends::from_env().is_none() {
        return;
    }
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let Some(c) = Cluster::start_with(
        2,
        ClusterOptions {
            redis_url: Some(redis.url()),
            ..ClusterOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let (ab, ac) = (conv("alice", "bob"), conv("alice", "carol"));
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(1, "bob", Generation::V2, "iOS").await;
    let mut carol = c.tcp(2, "carol", "iOS").await;
    redis.stop();
    let mut to_carol = HashMap::new();
    for i in 0..5 {
        let (id, seq) = send(&mut alice, &ab, &format!("local-{i}")).await;
        let m = next_message(&mut bob)
            .await
            .unwrap_or_else(|| panic!("bob (same node) gets local-{i} with Redis down"));
        assert_eq!((m.server_msg_id.as_str(), m.seq), (id.as_str(), seq));
        let cid = format!("remote-{i}");
        to_carol.insert(cid.clone(), send(&mut alice, &ac, &cid).await);
    }
    let (id, seq) = send(&mut bob, &ab, "local-reply").await;
    let m = next_message(&mut alice)
        .await
        .expect("alice gets bob's reply with Redis down");
    assert_eq!((m.server_msg_id.as_str(), m.seq), (id.as_str(), seq));
    assert_no_message(&mut bob, "bob").await;

    redis.restart();
    // carol missed (some of) those pushes: she catches up by sync from the
    // last contiguous seq she saw.
    let pushed: Vec<StoredMessage> = drain_messages(&mut carol)
        .await
        .into_iter()
        .map(|m| (*m).clone())
        .collect();
    let cursor = contiguous_cursor(pushed.iter().map(|m| m.seq));
    let mut seen: Vec<StoredMessage> = pushed.into_iter().filter(|m| m.seq <= cursor).collect();
    seen.extend(batch_sync_after(&mut carol, &ac, cursor).await);
    check_conversation(&seen, &to_carol);
    assert_eq!(seen.len(), to_carol.len());
}

/// Cross-node pushes work, stop mattering while Redis is down (sends still
/// succeed), and resume once Redis is back on the same address (the nodes
/// reconnect and re-register their routes, even though the restarted Redis
/// lost every key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_back_cross_node_pushes_resume() {
    if Backends::from_env().is_none() {
        return;
    }
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let Some(c) = Cluster::start_with(
        2,
        ClusterOptions {
            redis_url: Some(redis.url()),
            ..ClusterOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let ac = conv("alice", "carol");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut carol = c.tcp(2, "carol", "iOS").await;
    let (id, _) = send(&mut alice, &ac, "before-outage").await;
    let m = next_message(&mut carol)
        .await
        .expect("cross-node push with Redis up");
    assert_eq!(m.server_msg_id, id);
    redis.stop();
    for i in 0..3 {
        send(&mut alice, &ac, &format!("during-outage-{i}")).await;
    }
    redis.restart();
    // Probe until a push crosses again (the nodes must reconnect and
    // re-register carol's route in the emptied Redis).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probes = HashSet::new();
    let resumed = loop {
        let cid = format!("probe-{}", probes.len());
        let (id, _) = send(&mut alice, &ac, &cid).await;
        probes.insert(id);
        if let Some(Event::Message(m)) = next_matching(
            &mut carol,
            Duration::from_millis(500),
            |e| matches!(e, Event::Message(m) if probes.contains(&m.server_msg_id)),
        )
        .await
        {
            break Some(m);
        }
        if Instant::now() >= deadline {
            break None;
        }
    };
    let m = resumed.expect("cross-node pushes resume within 30 s of Redis coming back");
    eprintln!("cross-node push resumed with {}", m.client_msg_id);
    // And nothing is duplicated: sync shows each message once.
    let all = all_messages(&mut carol, &ac).await;
    check_conversation(&all, &HashMap::new());
}
