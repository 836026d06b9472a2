//! Embedded MySQL/MariaDB migrations (`migrations/mysql`, compiled in).

use diesel_async::{AsyncConnection, AsyncMysqlConnection};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use im_core::StoreError;

use crate::server::{MigrationMode, ServerDbOptions, connect_once, run_embedded};

/// The MySQL migrations, embedded at build time (see `build.rs`).
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/mysql");

/// Named lock held while migrating, so that several processes starting at
/// once apply each migration once. (MySQL DDL is not transactional: a
/// migration that fails halfway must be repaired by hand either way.)
const LOCK: &str = "SELECT GET_LOCK('im_server_migrations', 600)";
const UNLOCK: &str = "SELECT RELEASE_LOCK('im_server_migrations')";

/// Applies (or, with [`MigrationMode::Check`], checks for) pending migrations.
pub(crate) async fn run(
    opts: &ServerDbOptions,
    mode: MigrationMode,
) -> Result<Vec<String>, StoreError> {
    let conn = connect_once(opts, AsyncMysqlConnection::establish(&opts.url)).await?;
    let applied = run_embedded(conn, MIGRATIONS, LOCK, UNLOCK, mode, "mysql").await?;
    if !applied.is_empty() {
        tracing::info!(url = %opts.redacted_url(), ?applied, "applied mysql migrations");
    }
    Ok(applied)
}

/// Connects to the MySQL/MariaDB database of `opts.url` (within
/// `opts.connect_timeout`) and applies every pending migration. Returns the
/// versions applied, oldest first (empty when the schema was already
/// current). Safe to run from several processes at once (a named lock
/// serializes them). [`crate::MysqlStore::open`] calls it when `opts.migrate`.
pub async fn run_mysql_migrations(opts: &ServerDbOptions) -> Result<Vec<String>, StoreError> {
    run(opts, MigrationMode::Apply).await
}
