//! The embedded default store: one SQLite file through diesel + diesel-async.
//!
//! * One writer connection (diesel-async's `SyncConnectionWrapper`), serialized behind an
//!   async mutex: SQLite has one writer anyway. Each write call runs as one
//!   blocking task (`append` = one `BEGIN IMMEDIATE` transaction) spawned on
//!   its own tokio task, so dropping the caller's future never cuts a
//!   transaction in half.
//! * A deadpool of reader connections (`PRAGMA query_only`); WAL lets them
//!   read while the writer commits.
//! * `journal_mode=WAL`, `synchronous=FULL` by default (NORMAL on request:
//!   a power loss may then drop the last commits, a process crash may not),
//!   `foreign_keys=ON`, `busy_timeout` for other processes on the same file,
//!   a 64 MiB writer page cache and checkpoints every 10k WAL pages (see
//!   `conn.rs` for why).
//! * A writer connection found inside a transaction (a failed rollback) is
//!   replaced before the next write instead of poisoning every later one.

mod conn;
mod conversations;
mod groups;
pub(crate) mod migrate;
mod social;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use diesel::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Object;
use im_core::StoreError;
use im_core::model::NewMessage;
use im_core::ports::{Appended, HealthCheck, StoreResult};
use tokio::sync::Mutex;

use crate::error::{RepoError, map_connection, map_diesel, map_join, map_pool};
use conn::{AsyncSqlite, Pragmas, ReaderPool};

pub use migrate::run_sqlite_migrations;

/// Where the embedded store lives when nothing is configured.
pub const DEFAULT_SQLITE_PATH: &str = "./data/im.db";

/// Settings of [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The database file; it and its parent directory are created if missing.
    pub path: PathBuf,
    /// `synchronous=FULL` (true, the default: a commit survives power loss)
    /// or `NORMAL` (false: faster; a commit survives a process crash but the
    /// last ones may be lost on power loss).
    pub synchronous_full: bool,
    /// Number of reader connections (at least 1).
    pub read_pool_size: usize,
    /// How long to wait for a lock held by another connection or process,
    /// and for a free reader connection, before failing with
    /// [`StoreError::Unavailable`].
    pub busy_timeout: Duration,
    /// Apply pending migrations in [`SqliteStore::open`] (the default). When
    /// false, `open` refuses a database whose schema is not current (run
    /// [`run_sqlite_migrations`], e.g. `im-server migrate`, first).
    pub migrate: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_SQLITE_PATH),
            synchronous_full: true,
            read_pool_size: 4,
            busy_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

impl SqliteOptions {
    /// The defaults, with the database at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
}

struct Inner {
    writer: Arc<Mutex<AsyncSqlite>>,
    /// How to reopen the writer (see [`conn::ensure_clean`]).
    url: String,
    writer_pragmas: Pragmas,
    readers: ReaderPool,
    opts: SqliteOptions,
}

/// The SQLite implementation of [`MessageStore`], [`UserStore`] and
/// [`HealthCheck`]. Cheap to clone (all clones share the connections).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.opts.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `opts.path`, applies pending
    /// migrations (or checks there are none, see [`SqliteOptions::migrate`]),
    /// opens the writer connection and the reader pool.
    /// Must be called within a tokio runtime.
    pub async fn open(opts: SqliteOptions) -> Result<Self, StoreError> {
        let url = conn::url_of(&opts.path)?;
        let path = opts.path.clone();
        if opts.migrate {
            tokio::task::spawn_blocking(move || run_sqlite_migrations(&path))
                .await
                .map_err(map_join)??;
        } else {
            tokio::task::spawn_blocking(move || migrate::check_current(&path))
                .await
                .map_err(map_join)??;
        }

        let writer_pragmas = Pragmas::writer(opts.busy_timeout, opts.synchronous_full);
        let writer = conn::establish_async(url.clone(), writer_pragmas.clone())
            .await
            .map_err(map_connection)?;
        let readers = conn::reader_pool(
            &url,
            opts.read_pool_size,
            Pragmas::reader(opts.busy_timeout, opts.synchronous_full),
        )?;
        let store = Self {
            inner: Arc::new(Inner {
                writer: Arc::new(Mutex::new(writer)),
                url,
                writer_pragmas,
                readers,
                opts,
            }),
        };
        // Fail now, not at the first request, if readers cannot connect.
        store.ping().await?;
        tracing::info!(path = %store.path().display(), "sqlite store open");
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.opts.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.inner.opts
    }

    /// Runs `f` on the writer connection, as one blocking task, on a tokio
    /// task of its own (see the module docs on cancellation).
    async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, RepoError> + Send + 'static,
    {
        let writer = Arc::clone(&self.inner.writer);
        let url = self.inner.url.clone();
        let pragmas = self.inner.writer_pragmas.clone();
        let task = tokio::spawn(async move {
            let mut conn = writer.lock_owned().await;
            conn.spawn_blocking(move |c| {
                Ok(match conn::ensure_clean(c, &url, &pragmas) {
                    Ok(()) => f(c),
                    Err(e) => Err(RepoError::from(e)),
                })
            })
            .await
        });
        let outcome = task.await.map_err(map_join)?.map_err(map_diesel)?;
        outcome.map_err(StoreError::from)
    }

    /// A reader connection, waiting at most `busy_timeout` for one.
    async fn reader(&self) -> StoreResult<Object<AsyncSqlite>> {
        match tokio::time::timeout(self.inner.opts.busy_timeout, self.inner.readers.get()).await {
            Ok(conn) => conn.map_err(map_pool),
            Err(_) => Err(StoreError::Unavailable(
                "timed out waiting for a sqlite reader connection".into(),
            )),
        }
    }
}

impl SqliteStore {
    async fn append_batch(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        let owned = batch.to_vec();
        self.write(move |c| write::append(c, &owned)).await
    }

    async fn record_delivered_impl(
        &self,
        user: &str,
        device: &str,
        conversation_id: &str,
        seq: i64,
    ) -> StoreResult<()> {
        let (user, device, conversation_id) = (
            user.to_owned(),
            device.to_owned(),
            conversation_id.to_owned(),
        );
        self.write(move |c| write::record_delivered(c, &user, &device, &conversation_id, seq))
            .await
    }

    async fn record_acked_impl(
        &self,
        user: &str,
        device: &str,
        conversation_id: &str,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        let (user, device, conversation_id) = (
            user.to_owned(),
            device.to_owned(),
            conversation_id.to_owned(),
        );
        self.write(move |c| write::record_acked(c, &user, &device, &conversation_id, seq, now_ms))
            .await
    }

    async fn purge_acked_impl(&self, before_ms: i64) -> StoreResult<u64> {
        self.write(move |c| write::purge_acked(c, before_ms)).await
    }

    async fn delete_acked_impl(
        &self,
        user: &str,
        device: &str,
        due: Vec<(String, i64)>,
    ) -> StoreResult<u64> {
        let (user, device) = (user.to_owned(), device.to_owned());
        self.write(move |c| write::delete_acked(c, &user, &device, &due))
            .await
    }

    async fn touch_impl(&self, user: &str, now_ms: i64) -> StoreResult<()> {
        let user = user.to_owned();
        self.write(move |c| write::touch_user(c, &user, now_ms))
            .await
    }
}

crate::ports::impl_store_ports!(SqliteStore);

#[cfg(test)]
pub(crate) mod test_util {
    //! Query-plan checks: every statement of the store must search an index,
    //! never scan a table or sort.

    use diesel::connection::SimpleConnection;
    use diesel::query_builder::QueryFragment;
    use diesel::sql_types::Text;
    use diesel::sqlite::Sqlite;
    use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

    #[derive(QueryableByName)]
    struct PlanRow {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    /// A migrated in-memory database.
    pub(crate) fn memory_conn() -> SqliteConnection {
        let mut c = SqliteConnection::establish(":memory:").unwrap();
        super::migrate::run_pending(&mut c).unwrap();
        c.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        c
    }

    /// The `EXPLAIN QUERY PLAN` details of `q`.
    pub(crate) fn plan<Q: QueryFragment<Sqlite>>(c: &mut SqliteConnection, q: &Q) -> Vec<String> {
        let sql = diesel::debug_query::<Sqlite, _>(q).to_string();
        let sql = sql.split(" -- binds:").next().unwrap();
        diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .load::<PlanRow>(c)
            .unwrap()
            .into_iter()
            .map(|r| r.detail)
            .collect()
    }

    /// No table scan (constant rows and VALUES lists are fine), no sort, and
    /// each of `expected` appears in some detail line.
    pub(crate) fn assert_indexed(details: &[String], expected: &[&str]) {
        check_plan(details, expected, false);
    }

    /// [`assert_indexed`], but a sort for the ORDER BY is allowed.
    pub(crate) fn assert_indexed_sorted(details: &[String], expected: &[&str]) {
        check_plan(details, expected, true);
    }

    fn check_plan(details: &[String], expected: &[&str], sorted: bool) {
        let bad = |d: &String| {
            (d.starts_with("SCAN") && !d.contains("CONSTANT ROW") && !d.contains("VALUES CLAUSE"))
                || (d.contains("TEMP B-TREE") && !(sorted && d == "USE TEMP B-TREE FOR ORDER BY"))
        };
        assert!(
            !details.iter().any(bad),
            "table scan or sort in {details:?}"
        );
        for e in expected {
            assert!(
                details.iter().any(|d| d.contains(e)),
                "{e:?} not in {details:?}"
            );
        }
    }
}
