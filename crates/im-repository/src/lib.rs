//! Persistence adapters of im-server: diesel + diesel-async implementations
//! of the im-core store ports, with embedded migrations.
//!
//! Today: the embedded default, [`SqliteStore`] (one file, WAL, one writer
//! connection and a reader pool). PostgreSQL and MySQL come later behind the
//! same ports; what they will share is already backend-neutral:
//!
//! * `schema` — diesel `table!`s matching `migrations/{sqlite,postgres,mysql}`;
//! * `models` — row structs and conversions to/from the im-core model;
//! * `plan` — the append algorithm (dedupe, seq and cursor allocation from
//!   counter heads, rows to insert), leaving only the statements per backend;
//! * `error` — mapping of diesel/pool errors to [`im_core::StoreError`].
//!
//! Nothing diesel-typed crosses the crate boundary.

mod error;
mod models;
mod plan;
mod schema;
mod sqlite;

pub use sqlite::{DEFAULT_SQLITE_PATH, SqliteOptions, SqliteStore, run_sqlite_migrations};
