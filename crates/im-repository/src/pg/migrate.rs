//! Embedded PostgreSQL migrations (`migrations/postgres`, compiled in).

use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use im_core::StoreError;

use crate::server::{MigrationMode, ServerDbOptions, connect_once, run_embedded};

/// The PostgreSQL migrations, embedded at build time (see `build.rs`).
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Session advisory lock held while migrating, so that several processes
/// starting at once apply each migration once.
const LOCK: &str = "SELECT pg_advisory_lock(72410001)";
const UNLOCK: &str = "SELECT pg_advisory_unlock(72410001)";

/// Applies (or, with [`MigrationMode::Check`], checks for) pending migrations.
pub(crate) async fn run(
    opts: &ServerDbOptions,
    mode: MigrationMode,
) -> Result<Vec<String>, StoreError> {
    let conn = connect_once(opts, AsyncPgConnection::establish(&opts.url)).await?;
    let applied = run_embedded(conn, MIGRATIONS, LOCK, UNLOCK, mode, "postgres").await?;
    if !applied.is_empty() {
        tracing::info!(url = %opts.redacted_url(), ?applied, "applied postgres migrations");
    }
    Ok(applied)
}

/// Connects to the PostgreSQL database of `opts.url` (within
/// `opts.connect_timeout`) and applies every pending migration. Returns the
/// versions applied, oldest first (empty when the schema was already
/// current). Safe to run from several processes at once (an advisory lock
/// serializes them). [`crate::PgStore::open`] calls it when `opts.migrate`.
pub async fn run_postgres_migrations(opts: &ServerDbOptions) -> Result<Vec<String>, StoreError> {
    run(opts, MigrationMode::Apply).await
}
