//! The harness of the multi-node tests: backends discovery, a scratch
//! database per cluster, the `im-server` processes of a [`Cluster`] (spawned,
//! waited for, killed, their logs copied), a [`PrivateRedis`] for outage
//! tests, a raw HTTP helper and the Redis helpers.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, mpsc};
use std::time::{Duration, Instant};

use im_client::Client;
use im_core::Generation;
use im_repository::scratch::{self, ScratchDb};
use im_server::config::Config;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::client::assert_auth_ok;

/// The JWT secret every node of a test cluster shares.
const SECRET: &str = "multinode-e2e-secret-0123456789abcdef";
/// `cluster.route_ttl` of the test nodes.
pub(crate) const ROUTE_TTL: Duration = Duration::from_secs(2);
/// `cluster.refresh_interval` of the test nodes.
pub(crate) const REFRESH: Duration = Duration::from_millis(500);
/// How long a node may take to start (migrations included) and be ready.
const START: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Gate
// ---------------------------------------------------------------------------

/// The shared backends of a cluster.
#[derive(Debug, Clone)]
pub(crate) struct Backends {
    /// Admin URL of the PostgreSQL server (scratch databases are made there).
    pub(crate) postgres_admin: String,
    /// URL of the Redis the nodes share.
    pub(crate) redis_url: String,
}

impl Backends {
    /// `None` (reason printed) when a backend is not configured; a panic
    /// instead when `IM_TEST_REQUIRE_BACKENDS=1`.
    pub(crate) fn from_env() -> Option<Self> {
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
pub(crate) struct ClusterOptions {
    /// Redis of the nodes instead of `IM_TEST_REDIS_URL` (a private
    /// `redis-server`, for outage tests).
    pub(crate) redis_url: Option<String>,
    /// More `IM_*` variables for every node (they win over the harness's).
    pub(crate) env: Vec<(String, String)>,
}

/// The addresses one node listens on, read from its "im-server listening"
/// log line (the nodes bind port 0, so no port can be taken by someone else
/// between choosing and binding it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) http: SocketAddr,
    pub(crate) ws: SocketAddr,
    pub(crate) tcp: SocketAddr,
}

/// One server process.
pub(crate) struct Node {
    /// `cluster.node_id`.
    pub(crate) id: String,
    pub(crate) addrs: Addrs,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// Whether the process is still running (not killed by the test).
    pub(crate) fn is_running(&mut self) -> bool {
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
pub(crate) struct Cluster {
    nodes: Vec<Node>,
    /// `redis.key_prefix` of this cluster.
    pub(crate) prefix: String,
    /// The Redis the nodes use.
    pub(crate) redis_url: String,
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
    pub(crate) async fn start(n: usize) -> Option<Self> {
        Self::start_with(n, ClusterOptions::default()).await
    }

    /// `n` nodes, started concurrently (the migration lock serialises their
    /// migrations), each ready (`GET /ready` is 200) on return.
    pub(crate) async fn start_with(n: usize, options: ClusterOptions) -> Option<Self> {
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
    pub(crate) async fn wait_ready(&mut self, i: usize) {
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
    pub(crate) fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    /// Number of nodes (killed ones included).
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// SIGKILL of node `i`: no shutdown code runs, its Redis entries stay
    /// until they expire.
    pub(crate) fn kill9(&mut self, i: usize) {
        self.nodes[i - 1].kill();
    }

    /// A token for `user` on `platform`, signed with the cluster's secret.
    pub(crate) fn token(&self, user: &str, platform: &str) -> String {
        im_server::app::mint_token(&self.config, user, platform, None).unwrap()
    }

    /// An authenticated TCP (v2) client of node `i`.
    pub(crate) async fn tcp(&self, i: usize, user: &str, platform: &str) -> Client {
        let mut c = Client::connect_tcp(self.node(i).addrs.tcp).await.unwrap();
        assert_auth_ok(
            c.auth(user, &self.token(user, platform), platform)
                .await
                .unwrap(),
        );
        c
    }

    /// An authenticated WebSocket client of node `i` (`/ws/v1` or `/ws/v2`).
    pub(crate) async fn ws(
        &self,
        i: usize,
        user: &str,
        generation: Generation,
        platform: &str,
    ) -> Client {
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
    pub(crate) async fn api(
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
    pub(crate) fn logs(&self, lines: usize) -> String {
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
        if let Err(e) = delete_prefix(&self.redis_url, &self.prefix) {
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
pub(crate) struct PrivateRedis {
    pub(crate) port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts one on a free port; `None` (reason printed) when
    /// `redis-server` is not on PATH, a panic instead when the backends are
    /// required.
    pub(crate) fn start() -> Option<Self> {
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
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: every key is gone.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty), retrying for a few seconds.
    pub(crate) fn restart(&mut self) {
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
        if ping(&url) {
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

// ---------------------------------------------------------------------------
// Redis helpers
// ---------------------------------------------------------------------------

/// A synchronous connection to the Redis at `url` (any URL the `redis`
/// crate accepts), with short timeouts: 2 s to connect (AUTH and SELECT
/// included), 5 s for each reply afterwards.
fn redis_connection(url: &str) -> redis::RedisResult<redis::Connection> {
    let conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

/// Whether a Redis answers PING at `url`.
pub(crate) fn ping(url: &str) -> bool {
    redis_connection(url)
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok_and(|pong| pong == "PONG")
}

/// Deletes every key that starts with `prefix` (SCAN MATCH + DEL); how many
/// were deleted.
pub(crate) fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<usize> {
    let mut c = redis_connection(url)?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut c)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).exec(&mut c)?;
            deleted += keys.len();
        }
        cursor = next;
        if cursor == 0 {
            return Ok(deleted);
        }
    }
}
