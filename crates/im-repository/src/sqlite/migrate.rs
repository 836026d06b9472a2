//! Embedded SQLite migrations (`migrations/sqlite`, compiled in).

use std::path::Path;

use diesel::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use im_core::StoreError;

use super::conn::{Pragmas, establish_sync};

/// The SQLite migrations, embedded at build time (see `build.rs`).
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Applies pending migrations on an open connection; returns the versions applied.
pub(crate) fn run_pending(conn: &mut SqliteConnection) -> Result<Vec<String>, StoreError> {
    conn.run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| StoreError::Other(format!("sqlite migration failed: {e}")))
}

/// Creates the database file at `path` (and its parent directory) if needed
/// and applies every pending migration. Returns the versions applied, oldest
/// first (empty when the schema was already current).
///
/// Blocking: call it from a blocking context (e.g. `im-server migrate`, or
/// `tokio::task::spawn_blocking`). [`super::SqliteStore::open`] calls it itself.
pub fn run_sqlite_migrations(path: &Path) -> Result<Vec<String>, StoreError> {
    super::conn::create_parent_dir(path)?;
    let url = super::conn::url_of(path)?;
    let mut conn =
        establish_sync(&url, &Pragmas::migrations()).map_err(crate::error::map_connection)?;
    let applied = run_pending(&mut conn)?;
    if !applied.is_empty() {
        tracing::info!(path = %path.display(), ?applied, "applied sqlite migrations");
    }
    Ok(applied)
}

/// Fails unless every embedded migration has been applied to the database at
/// `path` (which is created, empty, if missing).
pub(crate) fn check_current(path: &Path) -> Result<(), StoreError> {
    super::conn::create_parent_dir(path)?;
    let url = super::conn::url_of(path)?;
    let mut conn =
        establish_sync(&url, &Pragmas::migrations()).map_err(crate::error::map_connection)?;
    let pending = conn
        .pending_migrations(MIGRATIONS)
        .map_err(|e| StoreError::Other(format!("cannot read sqlite migrations: {e}")))?;
    if pending.is_empty() {
        Ok(())
    } else {
        let names: Vec<String> = pending.iter().map(|m| m.name().to_string()).collect();
        Err(StoreError::Other(format!(
            "database {} is missing migrations {names:?}; run `im-server migrate`",
            path.display()
        )))
    }
}
