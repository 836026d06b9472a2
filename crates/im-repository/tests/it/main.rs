//! Integration tests of im-repository: the same store suite on SQLite (a
//! file in a temporary directory, always), PostgreSQL and MySQL/MariaDB
//! (a fresh database per test on the servers named by
//! `IM_TEST_POSTGRES_URL` / `IM_TEST_MYSQL_URL`; skipped when unset unless
//! `IM_TEST_REQUIRE_BACKENDS=1`). Test names are
//! `<module>::<backend>::<test>`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

mod append;
mod conversation_state;
mod durability;
mod groups;
mod multi_writer;
mod reads;
mod social;

#[allow(dead_code)]
fn _assert_store_is_send_sync(s: im_repository::AnyStore) -> impl Send + Sync + Clone {
    s
}
