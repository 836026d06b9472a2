//! Integration tests of im-repository: each test opens its own SQLite file
//! in a temporary directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod append;
mod bench;
mod common;
mod durability;
mod reads;
