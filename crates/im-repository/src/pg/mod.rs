//! The PostgreSQL store: diesel-async's `AsyncPgConnection` (tokio-postgres,
//! pure Rust, no libpq) in a deadpool.
//!
//! * Every call checks a connection out of the pool ([`ServerDbOptions`] has
//!   the size and the timeouts); `append` is one READ COMMITTED transaction
//!   (see `write.rs` for the statements and the lock order that keeps
//!   several server processes on one database gapless and deadlock-free).
//! * `append` runs on a tokio task of its own, so dropping the caller's
//!   future never abandons a transaction halfway (the connection would go
//!   back to the pool mid-transaction and be discarded, the work lost).
//! * Migrations are embedded (`migrations/postgres`) and applied at open
//!   under an advisory lock, or by [`run_postgres_migrations`].

mod groups;
pub(crate) mod migrate;
mod social;
mod write;

#[cfg(test)]
mod explain;

use std::sync::Arc;

use deadpool::managed::Pool;
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use im_core::StoreError;
use im_core::model::NewMessage;
use im_core::ports::{Appended, HealthCheck, StoreResult};

use crate::error::map_join;
use crate::server::{self, MigrationMode, ServerDbOptions};

pub use migrate::run_postgres_migrations;

type PgPool = Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

struct Inner {
    pool: PgPool,
    opts: ServerDbOptions,
}

/// The PostgreSQL implementation of [`MessageStore`](im_core::ports::MessageStore),
/// [`UserStore`](im_core::ports::UserStore) and [`HealthCheck`]. Cheap to
/// clone (all clones share the pool).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.inner.opts.redacted_url())
            .finish_non_exhaustive()
    }
}

/// `SELECT 1` on an idle pooled connection before reuse.
fn ping(
    conn: &mut AsyncPgConnection,
) -> std::pin::Pin<Box<dyn Future<Output = diesel::QueryResult<()>> + Send + '_>> {
    Box::pin(async move {
        diesel::sql_query("SELECT 1")
            .execute(conn)
            .await
            .map(|_| ())
    })
}

impl PgStore {
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
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        // A closed connection is noticed without a round trip (tokio-postgres
        // sees the socket close); idle ones are pinged by the pool hook.
        config.recycling_method = RecyclingMethod::Fast;
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&opts.url, config);
        let pool = server::build_pool(manager, &opts, ping)?;
        let store = Self {
            inner: Arc::new(Inner { pool, opts }),
        };
        store.ping().await?;
        tracing::info!(url = %store.inner.opts.redacted_url(), "postgres store open");
        Ok(store)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &ServerDbOptions {
        &self.inner.opts
    }

    async fn reader(&self) -> StoreResult<Object<AsyncPgConnection>> {
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

crate::ports::impl_store_ports!(PgStore);
