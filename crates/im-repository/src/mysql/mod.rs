//! The MySQL/MariaDB store: diesel-async's `AsyncMysqlConnection`
//! (mysql_async, pure Rust, no libmysqlclient) in a deadpool.
//!
//! * Each connection is set up with `READ COMMITTED` (InnoDB then takes no
//!   gap locks for reads, so concurrent writers block each other less) and
//!   strict SQL mode (too-long values fail instead of being truncated).
//! * Every call checks a connection out of the pool ([`ServerDbOptions`] has
//!   the size and the timeouts); `append` is one transaction (see
//!   `write.rs` for the statements and the lock order that keeps several
//!   server processes on one database gapless and deadlock-free).
//! * `append` runs on a tokio task of its own, so dropping the caller's
//!   future never abandons a transaction halfway.
//! * Migrations are embedded (`migrations/mysql`) and applied at open under
//!   a named lock, or by [`run_mysql_migrations`].

mod groups;
pub(crate) mod migrate;
mod social;
mod write;

#[cfg(test)]
mod explain;

use std::sync::Arc;

use deadpool::managed::Pool;
use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use im_core::StoreError;
use im_core::model::NewMessage;
use im_core::ports::{Appended, HealthCheck, StoreResult};

use crate::error::map_join;
use crate::server::{self, MigrationMode, ServerDbOptions};

pub use migrate::run_mysql_migrations;

type MysqlPool = Pool<AsyncDieselConnectionManager<AsyncMysqlConnection>>;

/// Run on every new connection (after diesel-async's own time zone and
/// character set statements).
pub(crate) const SESSION_SETUP: &str = "\
    SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;\n\
    SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO';\n";

/// Opens a connection and applies [`SESSION_SETUP`].
pub(crate) async fn establish(url: &str) -> diesel::ConnectionResult<AsyncMysqlConnection> {
    let mut conn = AsyncMysqlConnection::establish(url).await?;
    conn.batch_execute(SESSION_SETUP)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

struct Inner {
    pool: MysqlPool,
    opts: ServerDbOptions,
}

/// The MySQL/MariaDB implementation of
/// [`MessageStore`](im_core::ports::MessageStore),
/// [`UserStore`](im_core::ports::UserStore) and [`HealthCheck`]. Cheap to
/// clone (all clones share the pool).
#[derive(Clone)]
pub struct MysqlStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore")
            .field("url", &self.inner.opts.redacted_url())
            .finish_non_exhaustive()
    }
}

/// `SELECT 1` on an idle pooled connection before reuse.
fn ping(
    conn: &mut AsyncMysqlConnection,
) -> std::pin::Pin<Box<dyn Future<Output = diesel::QueryResult<()>> + Send + '_>> {
    Box::pin(async move {
        diesel::sql_query("SELECT 1")
            .execute(conn)
            .await
            .map(|_| ())
    })
}

impl MysqlStore {
    /// Applies pending migrations (or checks there are none, see
    /// [`ServerDbOptions::migrate`]), builds the pool and checks that a
    /// connection works. Must be called within a tokio runtime.
    pub async fn open(opts: ServerDbOptions) -> Result<Self, StoreError> {
        let mode = if opts.migrate {
            MigrationMode::Apply
        } else {
            MigrationMode::Check
        };
        migrate::run(&opts, mode).await?;
        let mut config = ManagerConfig::<AsyncMysqlConnection>::default();
        // Every checkout pings (`SELECT 1`): a MySQL connection whose link
        // was cut (a database restart) does not look broken to the pool,
        // and under steady traffic it is never idle long enough for the
        // idle ping of the pool hook, so with `Fast` the same dead
        // connections were handed out again and again and the store never
        // recovered (chaos::mariadb_outage_under_load_loses_and_duplicates_nothing).
        config.recycling_method = RecyclingMethod::Verified;
        config.custom_setup = Box::new(|url: &str| {
            let url = url.to_owned();
            Box::pin(async move { establish(&url).await })
        });
        let manager = AsyncDieselConnectionManager::<AsyncMysqlConnection>::new_with_config(
            &opts.url, config,
        );
        let pool = server::build_pool(manager, &opts, ping)?;
        let store = Self {
            inner: Arc::new(Inner { pool, opts }),
        };
        store.ping().await?;
        tracing::info!(url = %store.inner.opts.redacted_url(), "mysql store open");
        Ok(store)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &ServerDbOptions {
        &self.inner.opts
    }

    async fn reader(&self) -> StoreResult<Object<AsyncMysqlConnection>> {
        server::checkout(&self.inner.pool).await
    }

    async fn append_batch(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        let owned = batch.to_vec();
        let pool = self.inner.pool.clone();
        tokio::spawn(async move {
            let mut conn = server::checkout(&pool).await?;
            write::append(&mut conn, &owned)
                .await
                .map_err(StoreError::from)
        })
        .await
        .map_err(map_join)?
    }

    async fn record_delivered_impl(
        &self,
        user: &str,
        device: &str,
        conversation_id: &str,
        seq: i64,
    ) -> StoreResult<()> {
        let mut conn = self.reader().await?;
        write::record_delivered(&mut conn, user, device, conversation_id, seq)
            .await
            .map_err(StoreError::from)
    }

    async fn record_acked_impl(
        &self,
        user: &str,
        device: &str,
        conversation_id: &str,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        let mut conn = self.reader().await?;
        write::record_acked(&mut conn, user, device, conversation_id, seq, now_ms)
            .await
            .map_err(StoreError::from)
    }

    async fn purge_acked_impl(&self, before_ms: i64) -> StoreResult<u64> {
        let mut conn = self.reader().await?;
        write::purge_acked(&mut conn, before_ms)
            .await
            .map_err(StoreError::from)
    }

    async fn delete_acked_impl(
        &self,
        user: &str,
        device: &str,
        due: Vec<(String, i64)>,
    ) -> StoreResult<u64> {
        let mut conn = self.reader().await?;
        write::delete_acked(&mut conn, user, device, &due)
            .await
            .map_err(StoreError::from)
    }

    async fn touch_impl(&self, user: &str, now_ms: i64) -> StoreResult<()> {
        let mut conn = self.reader().await?;
        write::touch_user(&mut conn, user, now_ms)
            .await
            .map_err(StoreError::from)
    }
}

crate::ports::impl_store_ports!(MysqlStore);
