//! The system under test: im-server processes on fixed ports (so a node
//! killed with SIGKILL comes back where its clients look for it), the
//! database they share (SQLite in the run's folder, or a scratch database on
//! PostgreSQL or MariaDB reached through a [`Proxy`] that can cut or stall
//! it), and a Redis server of the run's own (so restarting or flushing it
//! touches nobody else).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use im_repository::scratch::{self, Gate, ScratchDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::http;

/// The JWT secret of every node (the soak signs its own tokens).
pub const SECRET: &str = "soak-secret-not-for-production-0123456789";

/// Which deployment to soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// One node on the embedded SQLite default, no Redis.
    Sqlite,
    /// Three nodes on PostgreSQL and Redis.
    Cluster,
    /// One node on MariaDB/MySQL.
    Mysql,
}

impl Profile {
    pub fn nodes(self) -> usize {
        match self {
            Self::Cluster => 3,
            Self::Sqlite | Self::Mysql => 1,
        }
    }
}

/// Where a node listens.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub http: SocketAddr,
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
}

struct NodeProc {
    id: usize,
    addrs: Addrs,
    child: Option<Child>,
    log: PathBuf,
}

pub struct Rig {
    server_bin: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    nodes: Vec<Mutex<NodeProc>>,
    redis: Option<Mutex<RedisProc>>,
    proxy: Option<Proxy>,
    db: Mutex<Option<ScratchDb>>,
    /// The database server's real address, for restarts.
    pub db_kind: &'static str,
}

/// Why a profile cannot run here.
#[derive(Debug)]
pub struct Skip(pub String);

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Rig {
    /// Prepares the database and Redis of `profile` and starts its nodes.
    /// `Err(Skip)` inside `Ok` is not used: a missing backend comes back as
    /// `Ok(Err(Skip))` so the caller can decide whether it is fatal.
    pub async fn start(
        profile: Profile,
        server_bin: &Path,
        dir: &Path,
    ) -> anyhow::Result<Result<Arc<Self>, Skip>> {
        std::fs::create_dir_all(dir)?;
        let s = |v: &str| v.to_owned();
        let mut env: Vec<(String, String)> = vec![
            (s("IM_SERVER__HOST"), s("127.0.0.1")),
            (s("IM_SERVER__SHUTDOWN_TIMEOUT"), s("2s")),
            (s("IM_AUTH__JWT_SECRET"), s(SECRET)),
            (s("IM_FILES__DIR"), dir.join("files").display().to_string()),
            (s("IM_LOGGER__LEVEL"), s("info")),
        ];
        let (mut proxy, mut db, mut redis, mut db_kind) = (None, None, None, "sqlite");
        match profile {
            Profile::Sqlite => {
                env.push((s("IM_DATABASE__TYPE"), s("sqlite")));
                env.push((
                    s("IM_DATABASE__PATH"),
                    dir.join("soak.db").display().to_string(),
                ));
            }
            Profile::Cluster | Profile::Mysql => {
                let backend = if profile == Profile::Cluster {
                    im_repository::Backend::Postgres
                } else {
                    im_repository::Backend::Mysql
                };
                let admin = match scratch::gate(backend).map_err(anyhow::Error::msg)? {
                    Gate::Run(url) => url,
                    Gate::Skip(why) => return Ok(Err(Skip(why))),
                };
                let scratch = ScratchDb::create(&admin)
                    .await
                    .with_context(|| format!("creating a scratch database on {backend}"))?;
                let (url, p) = behind_proxy(scratch.url()).await?;
                db_kind = if profile == Profile::Cluster {
                    "postgres"
                } else {
                    "mysql"
                };
                // mysql_async would move a 127.0.0.1 connection to the Unix
                // socket and bypass the proxy.
                let url = if db_kind == "mysql" {
                    format!("{url}?prefer_socket=false")
                } else {
                    url
                };
                env.push((s("IM_DATABASE__TYPE"), s(db_kind)));
                env.push((s("IM_DATABASE__URL"), url));
                env.push((s("IM_DATABASE__ACQUIRE_TIMEOUT"), s("5s")));
                proxy = Some(p);
                db = Some(scratch);
            }
        }
        if profile == Profile::Cluster {
            let r = match RedisProc::start(dir).await? {
                Ok(r) => r,
                Err(skip) => return Ok(Err(skip)),
            };
            env.push((s("IM_REDIS__ENABLED"), s("true")));
            env.push((s("IM_REDIS__URL"), r.url()));
            env.push((s("IM_REDIS__CONNECT_TIMEOUT"), s("2s")));
            env.push((s("IM_CLUSTER__ROUTE_TTL"), s("5s")));
            env.push((s("IM_CLUSTER__REFRESH_INTERVAL"), s("1s")));
            redis = Some(Mutex::new(r));
        }
        let mut nodes = Vec::new();
        for id in 1..=profile.nodes() {
            nodes.push(Mutex::new(NodeProc {
                id,
                addrs: Addrs {
                    http: localhost(free_port()?),
                    ws: localhost(free_port()?),
                    tcp: localhost(free_port()?),
                },
                child: None,
                log: dir.join(format!("node-{id}.log")),
            }));
        }
        let rig = Arc::new(Self {
            server_bin: server_bin.to_owned(),
            dir: dir.to_owned(),
            env,
            nodes,
            redis,
            proxy,
            db: Mutex::new(db),
            db_kind,
        });
        // The first node migrates; the others then start together.
        for i in 0..rig.nodes.len() {
            rig.spawn(i)?;
            if i == 0 {
                rig.wait_ready(0).await?;
            }
        }
        for i in 1..rig.nodes.len() {
            rig.wait_ready(i).await?;
        }
        Ok(Ok(rig))
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn addrs(&self, i: usize) -> Addrs {
        let n = self.nodes.get(i % self.nodes.len().max(1));
        n.map(|n| lock(n).addrs).unwrap_or(Addrs {
            http: localhost(0),
            ws: localhost(0),
            tcp: localhost(0),
        })
    }

    fn spawn(&self, i: usize) -> anyhow::Result<()> {
        let Some(node) = self.nodes.get(i) else {
            bail!("no node {i}");
        };
        let mut n = lock(node);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let mut cmd = Command::new(&self.server_bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("IM_CLUSTER__NODE_ID", format!("node-{}", n.id))
            .env("IM_SERVER__HTTP_PORT", n.addrs.http.port().to_string())
            .env("IM_SERVER__WS_PORT", n.addrs.ws.port().to_string())
            .env("IM_SERVER__TCP_PORT", n.addrs.tcp.port().to_string());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        n.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", self.server_bin.display()))?,
        );
        Ok(())
    }

    /// Waits until node `i` answers `GET /ready` with 200.
    pub async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let addr = self.addrs(i).http;
        loop {
            if let Ok(r) =
                http::request(addr, "GET", "/ready", None, None, Duration::from_secs(2)).await
            {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if let Some(node) = self.nodes.get(i) {
                let mut n = lock(node);
                if let Some(c) = n.child.as_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        bail!(
                            "node {} exited with {status}; see {}",
                            n.id,
                            n.log.display()
                        );
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("node {} not ready within 90 s", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL to node `i` (no shutdown hook runs).
    pub fn kill9(&self, i: usize) {
        if let Some(node) = self.nodes.get(i) {
            let mut n = lock(node);
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Starts node `i` again on its ports and waits until it is ready.
    pub async fn restart(&self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_ready(i).await
    }

    /// Drops every database connection and refuses new ones.
    pub fn db_cut(&self) -> bool {
        self.proxy.as_ref().is_some_and(|p| {
            p.cut();
            true
        })
    }

    /// Holds every byte to and from the database (connections stay open).
    pub fn db_stall(&self, on: bool) -> bool {
        self.proxy.as_ref().is_some_and(|p| {
            p.stall(on);
            true
        })
    }

    pub fn db_restore(&self) {
        if let Some(p) = &self.proxy {
            p.restore();
        }
    }

    pub fn has_db_proxy(&self) -> bool {
        self.proxy.is_some()
    }

    pub fn has_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// SIGKILL to Redis, then a fresh one on the same port (empty: it keeps
    /// nothing on disk), after `down`.
    pub async fn redis_restart(&self, down: Duration) -> anyhow::Result<()> {
        let Some(r) = &self.redis else { return Ok(()) };
        lock(r).kill();
        tokio::time::sleep(down).await;
        let port = lock(r).port;
        let child = spawn_redis(port, &self.dir)?;
        lock(r).child = Some(child);
        let url = lock(r).url();
        wait_redis(&url).await
    }

    /// FLUSHALL on the run's Redis.
    pub async fn redis_flush(&self) -> anyhow::Result<()> {
        let Some(r) = &self.redis else { return Ok(()) };
        let url = lock(r).url();
        let client = redis::Client::open(url)?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await?;
        Ok(())
    }

    /// Restarts the machine's database server itself (`pg_ctlcluster` or
    /// the MariaDB daemon): every connection of every client is cut.
    pub async fn restart_database_server(&self) -> anyhow::Result<()> {
        let kind = self.db_kind;
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            match kind {
                "postgres" => {
                    let version = std::fs::read_dir("/etc/postgresql")?
                        .filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .max()
                        .context("no cluster under /etc/postgresql")?;
                    run(Command::new("pg_ctlcluster").args([
                        "--skip-systemctl-redirect",
                        &version,
                        "main",
                        "restart",
                    ]))
                }
                "mysql" => {
                    run(Command::new("mariadb-admin").args([
                        "-h",
                        "127.0.0.1",
                        "-uroot",
                        "shutdown",
                    ]))?;
                    // `shutdown` may return before the daemon has exited;
                    // started meanwhile, `--oknodo` would see it still
                    // running and start nothing (the server then stayed
                    // down for the rest of the run).
                    let gone = (0..300).any(|_| {
                        let running = Command::new("pgrep")
                            .args(["-x", "mariadbd"])
                            .stdout(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success());
                        if running {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        !running
                    });
                    if !gone {
                        bail!("MariaDB did not stop within 30 s");
                    }
                    run(Command::new("start-stop-daemon").args([
                        "--start",
                        "--oknodo",
                        "--background",
                        "--exec",
                        "/usr/sbin/mariadbd",
                    ]))?;
                    for _ in 0..300 {
                        let ok = Command::new("mariadb-admin")
                            .args(["-h", "127.0.0.1", "-uroot", "ping"])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success());
                        if ok {
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    bail!("MariaDB did not come back within 30 s")
                }
                _ => Ok(()),
            }
        })
        .await?
    }

    /// Stops every node (SIGTERM-free: the run is over) and drops the
    /// scratch database.
    pub async fn shutdown(&self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        if let Some(r) = &self.redis {
            lock(r).kill();
        }
        let db = lock(&self.db).take();
        if let Some(db) = db {
            if let Err(e) = db.drop_database().await {
                eprintln!("soak: dropping the scratch database: {e}");
            }
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `url` with its `host:port` replaced by a new [`Proxy`] to it.
async fn behind_proxy(url: &str) -> anyhow::Result<(String, Proxy)> {
    let rest = url.split_once("://").context("no scheme in URL")?.1;
    let (userinfo_host, path) = rest.split_once('/').context("no database in URL")?;
    let host = userinfo_host.rsplit('@').next().unwrap_or(userinfo_host);
    let upstream = tokio::net::lookup_host(host)
        .await?
        .next()
        .with_context(|| format!("cannot resolve {host}"))?;
    let proxy = Proxy::start(upstream).await?;
    let proxied = url.replacen(
        &format!("{host}/{path}"),
        &format!("{}/{path}", proxy.addr),
        1,
    );
    Ok((proxied, proxy))
}

/// A TCP proxy that can drop every connection and refuse new ones
/// ([`Proxy::cut`]) or hold every byte in both directions ([`Proxy::stall`])
/// until [`Proxy::restore`].
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    stalled: watch::Sender<bool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (stalled, _) = watch::channel(false);
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (up2, links2, stalled2) = (Arc::clone(&up), Arc::clone(&links), stalled.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let stall = stalled2.subscribe();
                let link = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::select! {
                            _ = pipe(cr, sw, stall.clone()) => {}
                            _ = pipe(sr, cw, stall) => {}
                        }
                    }
                });
                let mut l = lock(&links2);
                l.retain(|h| !h.is_finished());
                l.push(link.abort_handle());
            }
        })
        .abort_handle();
        Ok(Self {
            addr,
            up,
            stalled,
            links,
            accept,
        })
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for l in lock(&self.links).drain(..) {
            l.abort();
        }
    }

    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    pub fn restore(&self) {
        self.stalled.send_replace(false);
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copies `from` to `to`, holding each chunk while the stall is on.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stall: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stall.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to
            .write_all(buf.get(..n).unwrap_or_default())
            .await
            .is_err()
        {
            return;
        }
    }
}

struct RedisProc {
    port: u16,
    child: Option<Child>,
}

impl RedisProc {
    async fn start(dir: &Path) -> anyhow::Result<Result<Self, Skip>> {
        let port = free_port()?;
        let child = match spawn_redis(port, dir) {
            Ok(c) => c,
            Err(e) => return Ok(Err(Skip(format!("cannot start redis-server: {e:#}")))),
        };
        let r = Self {
            port,
            child: Some(child),
        };
        wait_redis(&r.url()).await?;
        Ok(Ok(r))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_redis(port: u16, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))?;
    Ok(Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?)
}

async fn wait_redis(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await {
            let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
            if pong.is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("redis at {url} did not answer PING within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
