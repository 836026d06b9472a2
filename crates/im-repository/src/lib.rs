//! Persistence adapters of im-server: diesel + diesel-async implementations
//! of the im-core store ports, with embedded migrations.
//!
//! * [`SqliteStore`] — the embedded default (one file, WAL, one writer
//!   connection and a reader pool);
//! * [`PgStore`] — PostgreSQL through `AsyncPgConnection` (tokio-postgres);
//! * [`MysqlStore`] — MySQL 8 / MariaDB 10.5+ through `AsyncMysqlConnection`
//!   (mysql_async);
//! * [`AnyStore`] — whichever [`DbOptions`] names, implementing the ports by
//!   delegation: what the binary opens.
//!
//! The drivers are pure Rust (no libpq, no libmysqlclient). The server
//! stores pool their connections in a deadpool with explicit timeouts
//! ([`ServerDbOptions`]); every store applies its embedded migrations
//! (`migrations/{sqlite,postgres,mysql}`) when it opens, or on request
//! ([`run_migrations`]).
//!
//! What the backends share:
//!
//! * `schema` — diesel `table!`s matching the three migration folders;
//! * `models` — row structs and conversions to/from the im-core model;
//! * `plan` — the append algorithm (dedupe, seq and cursor allocation from
//!   counter heads, rows to insert), leaving only the statements per backend;
//! * `read` — the read queries, the same diesel queries on every backend;
//! * `ports` — the port impls written once for the three stores;
//! * `groups`, `social` — the group/conversation-state and the
//!   account/profile/friend/token ports, laid out the same way;
//! * `error` — mapping of diesel/pool errors to [`im_core::StoreError`].
//!
//! Nothing diesel-typed crosses the crate boundary.
//!
//! [`LocalFileStore`] (module [`files`]) implements the file store port on
//! a local disk.

mod any;
mod error;
#[cfg(test)]
mod explain_util;
pub mod files;
mod groups;
mod models;
mod mysql;
mod pg;
mod plan;
mod ports;
mod read;
mod schema;
mod server;
mod social;
mod sql;
mod sqlite;
#[cfg(test)]
mod upgrade_tests;

#[cfg(any(test, feature = "scratch"))]
pub mod scratch;

pub use any::{AnyStore, Backend, DbOptions, run_migrations};
pub use error::{DB_ERRORS, describe_metrics};
pub use files::LocalFileStore;
pub use mysql::{MysqlStore, run_mysql_migrations};
pub use pg::{PgStore, run_postgres_migrations};
pub use server::ServerDbOptions;
pub use sqlite::{DEFAULT_SQLITE_PATH, SqliteOptions, SqliteStore, run_sqlite_migrations};
