//! What the two server backends (PostgreSQL, MySQL/MariaDB) share: their
//! options, the deadpool pool with its timeouts and connection lifetime, and
//! running embedded migrations through diesel-async's
//! `AsyncConnectionWrapper` on a blocking thread.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{Hook, HookError, HookFuture, Manager, Pool};
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::{Connection, ConnectionResult};
use diesel_async::AsyncConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, PoolError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use im_core::StoreError;

use crate::error::{map_connection, map_join, map_pool};

/// Settings of a store on a database server ([`PgStore`](crate::PgStore),
/// [`MysqlStore`](crate::MysqlStore)).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerDbOptions {
    /// `postgres://user:password@host:port/dbname` or
    /// `mysql://user:password@host:port/dbname` (percent-encoded). TLS is not
    /// supported: the drivers are the pure-Rust ones, built without TLS.
    pub url: String,
    /// Most connections open at once (the pool size, at least 1). Every
    /// store call holds one connection for its duration; `append` holds one
    /// for its transaction.
    pub max_open_conns: usize,
    /// Time allowed to open one connection (TCP connect, authentication,
    /// session set-up), and to check that an idle one still answers.
    pub connect_timeout: Duration,
    /// Time a call waits for a free connection when all `max_open_conns`
    /// are busy, before failing with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// Connections older than this are closed instead of reused (`None`:
    /// kept until they break). Lets a load balancer or failover move them.
    pub conn_max_lifetime: Option<Duration>,
    /// Apply pending migrations when the store opens (the default). When
    /// false, opening refuses a database whose schema is not current.
    pub migrate: bool,
}

impl ServerDbOptions {
    /// The defaults for the database at `url`: 16 connections, 5 s connect
    /// and acquire timeouts, 30 min lifetime, migrate on open.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_open_conns: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            conn_max_lifetime: Some(Duration::from_secs(30 * 60)),
            migrate: true,
        }
    }

    /// The URL with its password replaced by `***` (for logs and `Debug`).
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for ServerDbOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerDbOptions")
            .field("url", &self.redacted_url())
            .field("max_open_conns", &self.max_open_conns)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("conn_max_lifetime", &self.conn_max_lifetime)
            .field("migrate", &self.migrate)
            .finish()
    }
}

/// `scheme://user:***@host/...`: the URL without its password.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A pooled connection is pinged before reuse when it sat idle this long
/// (a busy connection is not: a broken one fails its query, which the caller
/// sees as retryable [`StoreError::Unavailable`]).
const PING_IDLE_AFTER: Duration = Duration::from_secs(10);

/// A check that a connection still answers (`SELECT 1`).
pub(crate) type PingFn<C> =
    for<'a> fn(
        &'a mut C,
    ) -> std::pin::Pin<Box<dyn Future<Output = diesel::QueryResult<()>> + Send + 'a>>;

/// The deadpool of `C` connections for `opts`: at most `max_open_conns`,
/// `acquire_timeout` to wait for a free one, `connect_timeout` to open one
/// and to recycle one; a connection older than `conn_max_lifetime` is
/// dropped at checkout, and one idle for [`PING_IDLE_AFTER`] is pinged.
pub(crate) fn build_pool<C>(
    manager: AsyncDieselConnectionManager<C>,
    opts: &ServerDbOptions,
    ping: PingFn<C>,
) -> Result<Pool<AsyncDieselConnectionManager<C>>, StoreError>
where
    C: Send + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    let lifetime = opts.conn_max_lifetime;
    let ping_timeout = opts.connect_timeout;
    let pre_recycle = Hook::async_fn(move |conn: &mut C, metrics| -> HookFuture<'_, PoolError> {
        let too_old = lifetime.is_some_and(|max| metrics.age() >= max);
        let idle = metrics.last_used() >= PING_IDLE_AFTER;
        Box::pin(async move {
            if too_old {
                return Err(HookError::message("connection reached conn_max_lifetime"));
            }
            if idle {
                match tokio::time::timeout(ping_timeout, ping(conn)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(HookError::Backend(PoolError::QueryError(e))),
                    Err(_) => return Err(HookError::message("ping timed out")),
                }
            }
            Ok(())
        })
    });
    Pool::builder(manager)
        .max_size(opts.max_open_conns.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(opts.acquire_timeout))
        .create_timeout(Some(opts.connect_timeout))
        .recycle_timeout(Some(opts.connect_timeout))
        .pre_recycle(pre_recycle)
        .build()
        .map_err(|e| StoreError::Other(format!("cannot build the connection pool: {e}")))
}

/// A connection from `pool` (see [`build_pool`] for the timeouts).
pub(crate) async fn checkout<C>(
    pool: &Pool<AsyncDieselConnectionManager<C>>,
) -> Result<Object<C>, StoreError>
where
    C: Send + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    pool.get().await.map_err(map_pool)
}

/// Opens one connection outside the pool (for migrations), within
/// `connect_timeout`.
pub(crate) async fn connect_once<C, F>(opts: &ServerDbOptions, connect: F) -> Result<C, StoreError>
where
    F: Future<Output = ConnectionResult<C>>,
{
    match tokio::time::timeout(opts.connect_timeout, connect).await {
        Ok(conn) => conn.map_err(map_connection),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect to {} within {:?}",
            opts.redacted_url(),
            opts.connect_timeout
        ))),
    }
}

/// How [`run_embedded`] treats pending migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MigrationMode {
    /// Apply them.
    Apply,
    /// Fail if there are any.
    Check,
}

/// Applies (or checks for) the pending `migrations` on `conn`, serialized
/// against other processes doing the same by the session lock that `lock`
/// takes and `unlock` releases. Runs on a blocking thread: diesel's migration
/// harness is synchronous, and `AsyncConnectionWrapper` drives the async
/// connection from there with the runtime's handle.
pub(crate) async fn run_embedded<C>(
    conn: C,
    migrations: EmbeddedMigrations,
    lock: &'static str,
    unlock: &'static str,
    mode: MigrationMode,
    backend: &'static str,
) -> Result<Vec<String>, StoreError>
where
    C: AsyncConnection + Send + 'static,
    AsyncConnectionWrapper<C>: Connection<Backend = C::Backend> + MigrationHarness<C::Backend>,
    EmbeddedMigrations: MigrationSource<C::Backend>,
{
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<C>::from(conn);
        let failed = |what: &str, e: &dyn fmt::Display| {
            StoreError::Other(format!("{backend} migrations: {what}: {e}"))
        };
        SimpleConnection::batch_execute(&mut conn, lock)
            .map_err(|e| failed("cannot take the migration lock", &e))?;
        let outcome = match mode {
            MigrationMode::Apply => conn
                .run_pending_migrations(migrations)
                .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| failed("failed", &e)),
            MigrationMode::Check => match conn.pending_migrations(migrations) {
                Ok(pending) if pending.is_empty() => Ok(Vec::new()),
                Ok(pending) => {
                    let names: Vec<String> =
                        pending.iter().map(|m| m.name().to_string()).collect();
                    Err(StoreError::Other(format!(
                        "the {backend} database is missing migrations {names:?}; run `im-server migrate`"
                    )))
                }
                Err(e) => Err(failed("cannot read the applied migrations", &e)),
            },
        };
        // The lock is per session: closing the connection releases it too.
        if let Err(e) = SimpleConnection::batch_execute(&mut conn, unlock) {
            tracing::warn!(error = %e, "{backend}: cannot release the migration lock");
        }
        outcome
    })
    .await
    .map_err(map_join)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://im:s3cret@db:5432/im?sslmode=disable"),
            "postgres://im:***@db:5432/im?sslmode=disable"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306/test"
        );
        assert_eq!(redact_url("mysql://a:b:c@h/d"), "mysql://a:***@h/d");
        assert_eq!(redact_url("./data/im.db"), "./data/im.db");
        let o = ServerDbOptions::new("postgres://u:pw@h/d");
        let dbg = format!("{o:?}");
        assert!(!dbg.contains("pw"), "{dbg}");
        assert!(dbg.contains("u:***@h"), "{dbg}");
    }
}
