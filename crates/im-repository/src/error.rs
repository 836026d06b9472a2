//! Mapping of diesel, pool and runtime errors to [`StoreError`] at the
//! adapter boundary: nothing diesel-typed leaves this crate.

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};
use im_core::StoreError;

/// The internal error of store code: a diesel error (mapped late, so the
/// transaction helpers can require `From<diesel::result::Error>`) or an
/// already-mapped store error.
#[derive(Debug)]
pub(crate) enum RepoError {
    Diesel(DieselError),
    Store(StoreError),
}

impl From<DieselError> for RepoError {
    fn from(e: DieselError) -> Self {
        Self::Diesel(e)
    }
}

impl From<StoreError> for RepoError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<RepoError> for StoreError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Diesel(e) => map_diesel(e),
            RepoError::Store(e) => e,
        }
    }
}

/// True for SQLite's "database is locked" / "busy" family (SQLITE_BUSY,
/// SQLITE_LOCKED), which diesel reports as `DatabaseErrorKind::Unknown`.
fn is_busy(message: &str) -> bool {
    message.contains("database is locked")
        || message.contains("database table is locked")
        || message.contains("busy")
}

/// True for lock conflicts that abort the transaction and that a retry
/// resolves, which diesel reports as `DatabaseErrorKind::Unknown` (the
/// drivers do not pass the error code on): PostgreSQL's deadlock (40P01,
/// "deadlock detected") and MySQL/MariaDB's deadlock (1213, "Deadlock found
/// when trying to get lock; try restarting transaction") and lock wait
/// timeout (1205, "Lock wait timeout exceeded; try restarting transaction").
fn is_lock_conflict(message: &str) -> bool {
    message.contains("deadlock")
        || message.contains("lock wait timeout")
        || message.contains("try restarting transaction")
}

/// True for a connection that broke under a query (I/O errors of the pure
/// Rust drivers, the server closing or killing the session), also reported
/// as `DatabaseErrorKind::Unknown`.
fn is_connection_loss(message: &str) -> bool {
    [
        "input/output error",
        "i/o error",
        "broken pipe",
        "connection reset",
        "connection closed",
        "connection to the server is closed",
        "server has gone away",
        "lost connection",
        "terminating connection",
        "unexpected eof",
    ]
    .iter()
    .any(|p| message.contains(p))
}

/// Maps a diesel query error: unique violations, serialization failures,
/// deadlocks and lock wait timeouts are [`StoreError::Conflict`] (the
/// transaction was rolled back; retrying it may succeed), lost connections
/// and SQLite busy errors are [`StoreError::Unavailable`], the rest
/// [`StoreError::Other`].
pub(crate) fn map_diesel(e: DieselError) -> StoreError {
    counted(map_diesel_uncounted(e))
}

/// Database errors seen by the adapter, by kind: the one place every
/// diesel, connection and pool error passes through.
pub const DB_ERRORS: &str = "im_db_errors_total";

/// Registers the description (`# HELP`) of this crate's metric.
pub fn describe_metrics() {
    metrics::describe_counter!(
        DB_ERRORS,
        "Database errors seen by the storage adapter, by kind (unavailable, conflict, other)"
    );
}

fn counted(e: StoreError) -> StoreError {
    let kind = match &e {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Conflict(_) => "conflict",
        StoreError::Other(_) => "other",
    };
    metrics::counter!(DB_ERRORS, "kind" => kind).increment(1);
    e
}

fn map_diesel_uncounted(e: DieselError) -> StoreError {
    match e {
        DieselError::DatabaseError(kind, info) => {
            let msg = info.message().to_owned();
            let lower = msg.to_ascii_lowercase();
            match kind {
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure => {
                    StoreError::Conflict(msg)
                }
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ReadOnlyTransaction => StoreError::Unavailable(msg),
                DatabaseErrorKind::Unknown if is_lock_conflict(&lower) => StoreError::Conflict(msg),
                DatabaseErrorKind::Unknown if is_connection_loss(&lower) || is_busy(&lower) => {
                    StoreError::Unavailable(msg)
                }
                _ => StoreError::Other(msg),
            }
        }
        DieselError::BrokenTransactionManager => {
            StoreError::Unavailable("broken transaction manager".into())
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// Maps a failure to open a connection: always [`StoreError::Unavailable`].
pub(crate) fn map_connection(e: ConnectionError) -> StoreError {
    counted(StoreError::Unavailable(format!("cannot connect: {e}")))
}

/// Maps a failure to check a connection out of a pool (including its wait,
/// connect and recycle timeouts): [`StoreError::Unavailable`] unless the
/// backend answered with a query error.
pub(crate) fn map_pool(e: diesel_async::pooled_connection::deadpool::PoolError) -> StoreError {
    use diesel_async::pooled_connection::PoolError as Backend;
    use diesel_async::pooled_connection::deadpool::PoolError;
    match e {
        PoolError::Backend(Backend::ConnectionError(e)) => map_connection(e),
        PoolError::Backend(Backend::QueryError(e)) => map_diesel(e),
        other => counted(StoreError::Unavailable(format!("connection pool: {other}"))),
    }
}

/// Maps a failed blocking/spawned task (panic or runtime shutdown).
pub(crate) fn map_join(e: tokio::task::JoinError) -> StoreError {
    if e.is_cancelled() {
        StoreError::Unavailable("store task cancelled (runtime shutting down?)".into())
    } else {
        StoreError::Other(format!("store task panicked: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseErrorKind, msg: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(msg.to_owned()))
    }

    #[test]
    fn kinds_map_to_store_errors() {
        assert!(matches!(
            map_diesel(db(
                DatabaseErrorKind::UniqueViolation,
                "UNIQUE constraint failed"
            )),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            map_diesel(db(DatabaseErrorKind::SerializationFailure, "x")),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            map_diesel(db(DatabaseErrorKind::Unknown, "database is locked")),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_diesel(db(DatabaseErrorKind::ClosedConnection, "gone")),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_diesel(db(DatabaseErrorKind::ForeignKeyViolation, "FOREIGN KEY")),
            StoreError::Other(_)
        ));
        assert!(matches!(
            map_diesel(db(
                DatabaseErrorKind::Unknown,
                "Deadlock found when trying to get lock; try restarting transaction"
            )),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            map_diesel(db(
                DatabaseErrorKind::Unknown,
                "Lock wait timeout exceeded; try restarting transaction"
            )),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            map_diesel(db(DatabaseErrorKind::Unknown, "deadlock detected")),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            map_diesel(db(
                DatabaseErrorKind::Unknown,
                "Input/output error: Connection reset by peer (os error 104)"
            )),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_diesel(db(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command"
            )),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_diesel(db(DatabaseErrorKind::Unknown, "syntax error at or near")),
            StoreError::Other(_)
        ));
        assert!(matches!(
            map_diesel(DieselError::NotFound),
            StoreError::Other(_)
        ));
        assert!(matches!(
            StoreError::from(RepoError::from(StoreError::Conflict("c".into()))),
            StoreError::Conflict(_)
        ));
    }
}
