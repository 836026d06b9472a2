//! Redis adapters of the cluster ports: the route table, presence and the
//! bus between nodes, all on one Redis
//! (a single server or a primary with replicas, not Redis Cluster: the
//! presence scripts read node keys they are not given as KEYS).
//!
//! Every key and channel starts with [`RedisOptions::key_prefix`]:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `{p}node:{node_id}` | string, PX `route_ttl` | the node's incarnation while it is alive |
//! | `{p}incarnation` | counter | hands out incarnations |
//! | `{p}routes:{user}` | hash | session key -> entry (see below) |
//! | `{p}presence:{user}` | hash | session key -> entry |
//! | `{p}last_seen:{user}` | string | ms of the latest session up or down |
//! | `{p}bus:node:{node_id}`, `{p}bus:all` | channels | the bus |
//!
//! An entry is `<incarnation>:<len>:<node_id><platform>`. Each
//! [`RedisCache::connect`] takes a new incarnation from `{p}incarnation`
//! and writes it to the node key; an entry counts only while its node key
//! holds its incarnation. So the sessions of a node that stopped refreshing
//! vanish after `route_ttl`, and those of a node's previous run vanish as
//! soon as it restarts under the same id. Readers prune dead entries.

mod bus;
mod encoding;
mod presence;
mod routes;
mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{Pool, PoolConfig, PoolError, Runtime, Timeouts};
use im_core::StoreError;
use im_core::ports::{HealthCheck, StoreResult};
use parking_lot::Mutex;
use redis::{ErrorKind, RedisError, ServerErrorKind};

pub use bus::RedisBus;
pub use presence::RedisPresence;
pub use routes::RedisRouteTable;

use scripts::Scripts;

/// How to reach Redis and how this node uses it.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS).
    pub url: String,
    /// Most pooled connections (the bus holds one more of its own).
    pub pool_size: usize,
    /// Longest wait to open a connection (the pool's and the bus's). The
    /// redis client also gives up on a connection attempt after 1 s.
    pub connect_timeout: Duration,
    /// Longest wait for one operation, a pooled connection included;
    /// past it the operation fails with [`StoreError::Unavailable`]. (The
    /// redis client also fails a single reply slower than 500 ms.)
    pub command_timeout: Duration,
    /// Starts every key and channel, so deployments and tests can share
    /// one Redis (e.g. `im:` or `im:staging:`).
    pub key_prefix: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// How long this node counts as alive after a refresh: refresh well
    /// within it (e.g. every third of it).
    pub route_ttl: Duration,
}

impl RedisOptions {
    /// Options for `url` and `node_id` with the defaults: 32 connections,
    /// 5 s to connect, 2 s per operation, prefix `im:`, TTL 30 s.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 32,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
            key_prefix: "im:".to_owned(),
            node_id: node_id.into(),
            route_ttl: Duration::from_secs(30),
        }
    }

    fn validate(&self) -> StoreResult<()> {
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis" | "rediss")) {
            return Err(StoreError::Other(format!(
                "redis url must start with redis:// or rediss://: {}",
                redact_url(&self.url)
            )));
        }
        if self.node_id.is_empty() {
            return Err(StoreError::Other("redis node_id is empty".to_owned()));
        }
        if self.pool_size == 0 {
            return Err(StoreError::Other("redis pool_size is 0".to_owned()));
        }
        if self.route_ttl.as_millis() == 0
            || self.connect_timeout.is_zero()
            || self.command_timeout.is_zero()
        {
            return Err(StoreError::Other(
                "redis route_ttl, connect_timeout and command_timeout must be positive".to_owned(),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("node_id", &self.node_id)
            .field("route_ttl", &self.route_ttl)
            .finish()
    }
}

/// `url` with the password of its userinfo replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                // `redis://password@host` is a password alone for some clients.
                format!("{scheme}://***@{host}{path}")
            }
        }
        None => url.to_owned(),
    }
}

/// Maps a redis error: connection trouble and the transient server states
/// (loading, failover, read-only replica) are retryable.
pub(crate) fn map_redis(e: RedisError) -> StoreError {
    counted(map_redis_uncounted(e))
}

/// Redis errors seen by the adapter, by kind (unavailable, other): every
/// redis, pool and timeout error passes through [`counted`].
pub const REDIS_ERRORS: &str = "im_redis_errors_total";

/// Registers the description (`# HELP`) of this crate's metric.
pub fn describe_metrics() {
    metrics::describe_counter!(
        REDIS_ERRORS,
        "Redis errors seen by the cache adapter, by kind (unavailable, other)"
    );
}

pub(crate) fn counted(e: StoreError) -> StoreError {
    let kind = match &e {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Conflict(_) => "conflict",
        StoreError::Other(_) => "other",
    };
    metrics::counter!(REDIS_ERRORS, "kind" => kind).increment(1);
    e
}

fn map_redis_uncounted(e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if transient {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Other(format!("redis: {e}"))
    }
}

fn map_pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => map_redis(e),
        PoolError::Timeout(t) => counted(StoreError::Unavailable(format!(
            "redis pool timeout ({t:?})"
        ))),
        PoolError::Closed => counted(StoreError::Unavailable("redis pool closed".to_owned())),
        other => counted(StoreError::Other(format!("redis pool: {other}"))),
    }
}

/// Key and channel names.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    fn node(&self, node_id: &str) -> String {
        format!("{}node:{node_id}", self.prefix)
    }
    fn node_prefix(&self) -> String {
        format!("{}node:", self.prefix)
    }
    fn incarnation(&self) -> String {
        format!("{}incarnation", self.prefix)
    }
    fn routes(&self, user: &str) -> String {
        format!("{}routes:{user}", self.prefix)
    }
    fn presence(&self, user: &str) -> String {
        format!("{}presence:{user}", self.prefix)
    }
    fn last_seen(&self, user: &str) -> String {
        format!("{}last_seen:{user}", self.prefix)
    }
    fn bus_node(&self, node_id: &str) -> String {
        format!("{}bus:node:{node_id}", self.prefix)
    }
    fn bus_all(&self) -> String {
        format!("{}bus:all", self.prefix)
    }
}

/// This node's sessions as written to Redis (user -> session -> platform),
/// to write them again when the node's liveness lapsed and others may have
/// pruned them. As large as the node's own sessions.
#[derive(Debug, Default)]
struct LocalSessions {
    routes: HashMap<String, HashMap<String, String>>,
    presence: HashMap<String, HashMap<String, String>>,
}

fn local_insert(
    map: &mut HashMap<String, HashMap<String, String>>,
    user: &str,
    session: &str,
    platform: &str,
) {
    map.entry(user.to_owned())
        .or_default()
        .insert(session.to_owned(), platform.to_owned());
}

fn local_remove(map: &mut HashMap<String, HashMap<String, String>>, user: &str, session: &str) {
    if let Some(sessions) = map.get_mut(user) {
        sessions.remove(session);
        if sessions.is_empty() {
            map.remove(user);
        }
    }
}

pub(crate) struct Inner {
    pool: Pool,
    /// For the bus's dedicated pub/sub connection.
    client: redis::Client,
    opts: RedisOptions,
    keys: Keys,
    /// This process's incarnation (see the module doc).
    incarnation: String,
    scripts: Scripts,
    local: Mutex<LocalSessions>,
    bus_started: AtomicBool,
}

impl Inner {
    /// Runs `op` with a pooled connection, within the command timeout.
    async fn with_conn<T, F, Fut>(&self, op: F) -> StoreResult<T>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let work = async {
            let conn = self.pool.get().await.map_err(map_pool)?;
            op(conn).await.map_err(map_redis)
        };
        match tokio::time::timeout(self.opts.command_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(counted(StoreError::Unavailable(format!(
                "redis did not answer within {:?}",
                self.opts.command_timeout
            )))),
        }
    }

    /// The entry this node writes for a session on `platform`.
    fn entry(&self, platform: &str) -> String {
        encoding::encode_entry(&self.incarnation, &self.opts.node_id, platform)
    }

    /// Reads the node keys of `node_ids` in one MGET: node id -> incarnation.
    async fn live_incarnations(
        &self,
        node_ids: Vec<String>,
    ) -> StoreResult<HashMap<String, Option<String>>> {
        if node_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = node_ids.iter().map(|n| self.keys.node(n)).collect();
        let values: Vec<Option<String>> = self
            .with_conn(
                |mut c| async move { redis::cmd("MGET").arg(&keys).query_async(&mut c).await },
            )
            .await?;
        Ok(node_ids.into_iter().zip(values).collect())
    }

    /// Prunes `dead` (field, value) entries of hash `key` in the background,
    /// each only if it still holds the value seen.
    fn prune_later(self: &Arc<Self>, key: String, dead: Vec<(String, String)>) {
        if dead.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(self);
        rt.spawn(async move {
            let r = inner
                .with_conn(|mut c| {
                    let mut inv = inner.scripts.hdel_if_equal.key(&key);
                    for (field, value) in &dead {
                        inv.arg(field).arg(value);
                    }
                    async move { inv.invoke_async::<i64>(&mut c).await }
                })
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, key, "pruning dead sessions failed");
            }
        });
    }

    /// Writes this node's liveness key. Returns the value it replaced.
    async fn write_liveness(&self) -> StoreResult<Option<String>> {
        let key = self.keys.node(&self.opts.node_id);
        let ttl = u64::try_from(self.opts.route_ttl.as_millis()).unwrap_or(u64::MAX);
        let inc = self.incarnation.clone();
        self.with_conn(|mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&inc)
                .arg("PX")
                .arg(ttl)
                .arg("GET")
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// Writes every local session again (after a liveness lapse).
    async fn rewrite_local_sessions(&self) -> StoreResult<()> {
        const BATCH: usize = 500;
        let mut writes: Vec<(String, String, String)> = Vec::new();
        {
            let local = self.local.lock();
            for (user, sessions) in &local.routes {
                for (session, platform) in sessions {
                    writes.push((
                        self.keys.routes(user),
                        session.clone(),
                        self.entry(platform),
                    ));
                }
            }
            for (user, sessions) in &local.presence {
                for (session, platform) in sessions {
                    writes.push((
                        self.keys.presence(user),
                        session.clone(),
                        self.entry(platform),
                    ));
                }
            }
        }
        for chunk in writes.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for (key, field, value) in chunk {
                pipe.hset(key, field, value).ignore();
            }
            self.with_conn(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await?;
        }
        Ok(())
    }
}

/// A connected Redis pool, and the adapters of this node on it. Cheap to
/// clone; the adapters share the pool.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("opts", &self.inner.opts)
            .field("incarnation", &self.inner.incarnation)
            .finish()
    }
}

impl RedisCache {
    /// Builds the pool, checks it with PING, takes a new incarnation for
    /// this node and marks the node alive (for `route_ttl`; keep it alive
    /// with [`im_core::cluster::RouteTable::refresh`]). Must run inside a
    /// tokio runtime. [`StoreError::Unavailable`] when Redis cannot be
    /// reached, [`StoreError::Other`] for bad options.
    pub async fn connect(opts: RedisOptions) -> StoreResult<Self> {
        opts.validate()?;
        if opts.url.starts_with("rediss://") {
            // The only provider compiled in; fails harmlessly if the
            // process already chose one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(opts.url.as_str()).map_err(|e| {
            StoreError::Other(format!("bad redis url {}: {e}", redact_url(&opts.url)))
        })?;
        let mut cfg = deadpool_redis::Config::from_url(opts.url.clone());
        cfg.pool = Some(PoolConfig {
            max_size: opts.pool_size,
            timeouts: Timeouts {
                wait: Some(opts.command_timeout),
                create: Some(opts.connect_timeout),
                recycle: Some(opts.connect_timeout),
            },
            ..PoolConfig::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| StoreError::Other(format!("redis pool: {e}")))?;
        let keys = Keys {
            prefix: opts.key_prefix.clone(),
        };
        let mut inner = Inner {
            pool,
            client,
            keys,
            incarnation: String::new(),
            scripts: Scripts::new(),
            local: Mutex::new(LocalSessions::default()),
            bus_started: AtomicBool::new(false),
            opts,
        };
        let pong: String = inner
            .with_conn(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        if pong != "PONG" {
            return Err(StoreError::Other(format!("redis PING answered {pong:?}")));
        }
        let counter = inner.keys.incarnation();
        let incarnation: i64 = inner
            .with_conn(
                |mut c| async move { redis::cmd("INCR").arg(&counter).query_async(&mut c).await },
            )
            .await?;
        inner.incarnation = incarnation.to_string();
        inner.write_liveness().await?;
        tracing::info!(
            url = %redact_url(&inner.opts.url),
            node_id = %inner.opts.node_id,
            incarnation = %inner.incarnation,
            "connected to redis"
        );
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The route table of this node.
    pub fn routes(&self) -> RedisRouteTable {
        RedisRouteTable::new(Arc::clone(&self.inner))
    }

    /// Presence shared by every node.
    pub fn presence(&self) -> RedisPresence {
        RedisPresence::new(Arc::clone(&self.inner))
    }

    /// The bus of this node.
    pub fn bus(&self) -> RedisBus {
        RedisBus::new(Arc::clone(&self.inner))
    }

    /// A health check (PING) for `/ready`.
    pub fn health(&self) -> RedisHealth {
        RedisHealth {
            inner: Arc::clone(&self.inner),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.opts.node_id
    }
}

/// [`HealthCheck`] of the Redis pool: PING.
#[derive(Clone)]
pub struct RedisHealth {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisHealth").finish_non_exhaustive()
    }
}

#[async_trait]
impl HealthCheck for RedisHealth {
    async fn ping(&self) -> StoreResult<()> {
        let pong: String = self
            .inner
            .with_conn(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Other(format!("redis PING answered {pong:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("redis://:secret@host:6379/2"),
            "redis://:***@host:6379/2"
        );
        assert_eq!(
            redact_url("rediss://user:secret@host/0"),
            "rediss://user:***@host/0"
        );
        assert_eq!(redact_url("redis://secret@host"), "redis://***@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        let opts = RedisOptions::new("redis://:pw@h", "n1");
        assert!(!format!("{opts:?}").contains("pw@"));
    }

    #[test]
    fn validates_options() {
        assert!(RedisOptions::new("redis://h", "n1").validate().is_ok());
        assert!(RedisOptions::new("rediss://h", "n1").validate().is_ok());
        assert!(RedisOptions::new("http://h", "n1").validate().is_err());
        assert!(RedisOptions::new("redis://h", "").validate().is_err());
        let mut o = RedisOptions::new("redis://h", "n1");
        o.route_ttl = Duration::ZERO;
        assert!(o.validate().is_err());
    }

    #[test]
    fn maps_errors() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(map_redis(io), StoreError::Unavailable(_)));
        let other = RedisError::from((ErrorKind::UnexpectedReturnType, "bad"));
        assert!(matches!(map_redis(other), StoreError::Other(_)));
    }
}
