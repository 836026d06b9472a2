//! Throw-away databases on a real server, for tests and measurement tools
//! (not used by the server itself).
//!
//! Tests against PostgreSQL and MySQL are gated on environment variables:
//! `IM_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`)
//! and `IM_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`) name an
//! account that may create databases. Unset, such a test skips; with
//! `IM_TEST_REQUIRE_BACKENDS=1` (CI), unset or unreachable fails it.
//! [`ScratchDb::create`] makes a fresh `im_test_<unique>` database there, so
//! tests run in parallel; it is dropped again by [`ScratchDb::drop_database`]
//! or, failing that, when the value is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel_async::{AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl};
use im_core::StoreError;

use crate::any::Backend;
use crate::error::{map_connection, map_diesel};

/// Set to `1` to make a missing or unreachable backend a test failure.
pub const REQUIRE_BACKENDS_ENV: &str = "IM_TEST_REQUIRE_BACKENDS";

/// The environment variable with the admin URL of `backend` (`None` for
/// SQLite, which needs no server).
pub fn url_env(backend: Backend) -> Option<&'static str> {
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some("IM_TEST_POSTGRES_URL"),
        Backend::Mysql => Some("IM_TEST_MYSQL_URL"),
    }
}

/// Whether `IM_TEST_REQUIRE_BACKENDS=1`.
pub fn backends_required() -> bool {
    std::env::var(REQUIRE_BACKENDS_ENV).is_ok_and(|v| v.trim() == "1")
}

/// Whether to run a test against `backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Run it; the admin URL (empty for SQLite).
    Run(String),
    /// Skip it, because of this (e.g. `IM_TEST_POSTGRES_URL not set`).
    Skip(String),
}

/// Reads the gate of `backend` from the environment. Errs when the backend
/// is required (see [`backends_required`]) but its variable is unset.
pub fn gate(backend: Backend) -> Result<Gate, String> {
    let Some(var) = url_env(backend) else {
        return Ok(Gate::Run(String::new()));
    };
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Ok(Gate::Run(url.trim().to_owned())),
        _ if backends_required() => Err(format!(
            "{var} not set, but {REQUIRE_BACKENDS_ENV}=1 requires the {backend} tests to run"
        )),
        _ => Ok(Gate::Skip(format!("{var} not set"))),
    }
}

/// `url` with its database name replaced by `db` (query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find('?').unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(end);
    let authority = before_query.split('/').next().unwrap_or(before_query);
    if scheme.is_empty() {
        format!("{authority}/{db}{query}")
    } else {
        format!("{scheme}://{authority}/{db}{query}")
    }
}

/// A name no other test run uses: `{prefix}_{pid}_{time}_{counter}`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// How long creating or dropping a scratch database may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects `C` to `url` within [`CONNECT_TIMEOUT`].
async fn admin<C: AsyncConnection>(url: &str) -> Result<C, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, C::establish(url)).await {
        Ok(conn) => conn.map_err(map_connection),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect to {} within {CONNECT_TIMEOUT:?}",
            crate::server::redact_url(url)
        ))),
    }
}

/// A database created for one test or tool run.
#[derive(Debug)]
pub struct ScratchDb {
    backend: Backend,
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchDb {
    /// Creates `im_test_<unique>` on the server of `admin_url` (a
    /// `postgres://` or `mysql://` URL of an account that may create
    /// databases) and returns it. Fails with [`StoreError::Unavailable`]
    /// when the server cannot be reached.
    pub async fn create(admin_url: &str) -> Result<Self, StoreError> {
        let backend = Backend::of_url(admin_url);
        let name = unique_name("im_test");
        match backend {
            Backend::Postgres => {
                let mut c: AsyncPgConnection = admin(admin_url).await?;
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut c)
                    .await
                    .map_err(map_diesel)?;
            }
            Backend::Mysql => {
                let mut c: AsyncMysqlConnection = admin(admin_url).await?;
                diesel::sql_query(format!(
                    "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                ))
                .execute(&mut c)
                .await
                .map_err(map_diesel)?;
            }
            Backend::Sqlite => {
                return Err(StoreError::Other(format!(
                    "not a postgres:// or mysql:// URL: {}",
                    crate::server::redact_url(admin_url)
                )));
            }
        }
        Ok(Self {
            backend,
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
            dropped: false,
        })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Drops the database now (closing other sessions on it, on
    /// PostgreSQL).
    pub async fn drop_database(mut self) -> Result<(), StoreError> {
        self.dropped = true;
        drop_db(self.backend, &self.admin_url, &self.name).await
    }
}

async fn drop_db(backend: Backend, admin_url: &str, name: &str) -> Result<(), StoreError> {
    match backend {
        Backend::Postgres => {
            let mut c: AsyncPgConnection = admin(admin_url).await?;
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut c)
                .await
                .map_err(map_diesel)?;
        }
        Backend::Mysql => {
            let mut c: AsyncMysqlConnection = admin(admin_url).await?;
            diesel::sql_query(format!("DROP DATABASE IF EXISTS `{name}`"))
                .execute(&mut c)
                .await
                .map_err(map_diesel)?;
        }
        Backend::Sqlite => {}
    }
    Ok(())
}

impl Drop for ScratchDb {
    /// Best effort: drops the database from a thread of its own (this may
    /// run inside an async runtime, which must not block on a future).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (backend, admin_url, name) = (self.backend, self.admin_url.clone(), self.name.clone());
        let outcome = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Other(e.to_string()))?;
            rt.block_on(drop_db(backend, &admin_url, &name))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cannot drop scratch database {}: {e}", self.name),
            Err(_) => eprintln!(
                "cannot drop scratch database {}: thread panicked",
                self.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("mysql://root@h:3306/test?ssl-mode=disabled", "y"),
            "mysql://root@h:3306/y?ssl-mode=disabled"
        );
        assert_eq!(with_database("postgres://h", "z"), "postgres://h/z");
        assert_ne!(unique_name("a"), unique_name("a"));
        assert!(unique_name("im_test").len() < 64);
    }
}
