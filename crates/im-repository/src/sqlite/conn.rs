//! SQLite connections: pragmas, the writer connection and the reader pool.

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, ConnectionError, ConnectionResult, SqliteConnection};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use im_core::StoreError;

/// The async connection type: a sync SQLite connection whose calls run on
/// tokio's blocking pool.
pub(crate) type AsyncSqlite = SyncConnectionWrapper<SqliteConnection>;

/// The reader pool.
pub(crate) type ReaderPool = Pool<AsyncSqlite>;

/// Per-connection settings applied right after connecting.
#[derive(Debug, Clone)]
pub(crate) struct Pragmas {
    busy_timeout: Duration,
    synchronous_full: bool,
    /// Enforce foreign keys (off while migrating: table rebuilds need it off).
    foreign_keys: bool,
    /// Switch the file to WAL (persistent; done by the writer and migrations).
    wal: bool,
    /// `PRAGMA query_only`: reader connections cannot write by mistake.
    query_only: bool,
    /// Page cache of the connection, in KiB.
    cache_kib: u32,
}

/// WAL pages between automatic checkpoints (SQLite's default is 1000). A
/// batch of random inserts dirties many index pages; checkpointing less
/// often writes each hot page back once instead of after nearly every commit
/// (measured: ~20% more appends/s). The WAL grows to ~40 MiB between
/// checkpoints and is truncated back to [`JOURNAL_SIZE_LIMIT`] after one.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Bytes the WAL file is truncated to after a checkpoint.
const JOURNAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

impl Pragmas {
    /// The writer connection.
    pub(crate) fn writer(busy_timeout: Duration, synchronous_full: bool) -> Self {
        Self {
            busy_timeout,
            synchronous_full,
            foreign_keys: true,
            wal: true,
            query_only: false,
            cache_kib: 64 * 1024,
        }
    }

    /// A reader connection.
    pub(crate) fn reader(busy_timeout: Duration, synchronous_full: bool) -> Self {
        Self {
            busy_timeout,
            synchronous_full,
            foreign_keys: true,
            wal: false,
            query_only: true,
            cache_kib: 16 * 1024,
        }
    }

    /// The migration connection.
    pub(crate) fn migrations() -> Self {
        Self {
            busy_timeout: Duration::from_secs(30),
            synchronous_full: true,
            foreign_keys: false,
            wal: true,
            query_only: false,
            cache_kib: 2 * 1024,
        }
    }

    fn sql(&self) -> String {
        let on_off = |b: bool| if b { "ON" } else { "OFF" };
        let mut s = format!(
            "PRAGMA busy_timeout = {};\n",
            self.busy_timeout.as_millis().min(i32::MAX as u128)
        );
        if self.wal {
            s.push_str(&format!(
                "PRAGMA journal_mode = WAL;\n\
                 PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};\n\
                 PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};\n"
            ));
        }
        s.push_str(&format!(
            "PRAGMA synchronous = {};\n\
             PRAGMA foreign_keys = {};\n\
             PRAGMA temp_store = MEMORY;\n\
             PRAGMA cache_size = -{};\n\
             PRAGMA query_only = {};\n",
            if self.synchronous_full {
                "FULL"
            } else {
                "NORMAL"
            },
            on_off(self.foreign_keys),
            self.cache_kib,
            on_off(self.query_only),
        ));
        s
    }
}

/// The diesel URL of a database file.
pub(crate) fn url_of(path: &Path) -> Result<String, StoreError> {
    let s = path.to_str().ok_or_else(|| {
        StoreError::Other(format!("database path is not UTF-8: {}", path.display()))
    })?;
    if s.is_empty() || s == ":memory:" || s.starts_with("file:") {
        return Err(StoreError::Other(format!(
            "database path must name a file, got {s:?}"
        )));
    }
    Ok(s.to_owned())
}

/// Creates the parent directory of `path` if it is missing.
pub(crate) fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))),
        _ => Ok(()),
    }
}

/// Opens a sync connection and applies `pragmas` (blocking).
pub(crate) fn establish_sync(url: &str, pragmas: &Pragmas) -> ConnectionResult<SqliteConnection> {
    let mut conn = SqliteConnection::establish(url)?;
    conn.batch_execute(&pragmas.sql())
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// Makes sure the writer connection is outside any transaction before a new
/// write: a connection whose transaction manager is broken, or that was left
/// inside a transaction (a failed rollback), is replaced by a fresh one.
pub(crate) fn ensure_clean(
    conn: &mut SqliteConnection,
    url: &str,
    pragmas: &Pragmas,
) -> Result<(), StoreError> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let depth = AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth();
    if !matches!(depth, Ok(None)) {
        tracing::warn!(?depth, "sqlite writer connection not clean; reconnecting");
        *conn = establish_sync(url, pragmas).map_err(crate::error::map_connection)?;
    }
    Ok(())
}

/// Opens an async (wrapped) connection with `pragmas`.
pub(crate) async fn establish_async(
    url: String,
    pragmas: Pragmas,
) -> ConnectionResult<AsyncSqlite> {
    tokio::task::spawn_blocking(move || establish_sync(&url, &pragmas))
        .await
        .map_err(|e| ConnectionError::BadConnection(format!("connect task failed: {e}")))?
        .map(SyncConnectionWrapper::new)
}

/// A deadpool of `size` reader connections (opened lazily).
pub(crate) fn reader_pool(
    url: &str,
    size: usize,
    pragmas: Pragmas,
) -> Result<ReaderPool, StoreError> {
    let mut config = ManagerConfig::<AsyncSqlite>::default();
    // A local file connection does not go stale: skip the `SELECT 1` per checkout.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url: &str| {
        let url = url.to_owned();
        let pragmas = pragmas.clone();
        Box::pin(establish_async(url, pragmas))
    });
    let manager = AsyncDieselConnectionManager::<AsyncSqlite>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(|e| StoreError::Other(format!("cannot build reader pool: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pragmas_render() {
        let w = Pragmas::writer(Duration::from_millis(1500), true).sql();
        assert!(w.contains("busy_timeout = 1500"));
        assert!(w.contains("journal_mode = WAL"));
        assert!(w.contains("synchronous = FULL"));
        assert!(w.contains("foreign_keys = ON"));
        assert!(w.contains("query_only = OFF"));
        assert!(w.contains("cache_size = -65536"));
        assert!(w.contains("wal_autocheckpoint = 10000"));
        let r = Pragmas::reader(Duration::from_secs(1), false).sql();
        assert!(!r.contains("journal_mode"));
        assert!(r.contains("synchronous = NORMAL"));
        assert!(r.contains("query_only = ON"));
    }

    #[test]
    fn a_connection_left_in_a_transaction_is_replaced() {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        let pragmas = Pragmas::reader(Duration::from_secs(1), true);
        let mut c = establish_sync(":memory:", &pragmas).unwrap();
        ensure_clean(&mut c, ":memory:", &pragmas).unwrap();
        AnsiTransactionManager::begin_transaction(&mut c).unwrap();
        ensure_clean(&mut c, ":memory:", &pragmas).unwrap();
        let depth = AnsiTransactionManager::transaction_manager_status_mut(&mut c)
            .transaction_depth()
            .unwrap();
        assert_eq!(depth, None);
    }

    #[test]
    fn url_rejects_non_files() {
        assert!(url_of(Path::new(":memory:")).is_err());
        assert!(url_of(Path::new("")).is_err());
        assert!(url_of(Path::new("file:x?mode=memory")).is_err());
        assert_eq!(url_of(Path::new("data/im.db")).unwrap(), "data/im.db");
    }
}
