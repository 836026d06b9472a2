//! Project chores, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! * `tidy`: the dependency direction of `docs/architecture.md` and manifest
//!   hygiene; also run by `cargo test --workspace` (`xtask/tests/tidy.rs`).
//! * `bench`: release build, im-bench scenarios against a fresh im-server
//!   (and nats-server with `--vs nats`), one summary table.
//! * `soak`: build im-server and im-soak, run the randomized soak with its
//!   history checker (`bins/im-soak`).
//! * `dist`: `--locked` release build, stripped, packed with the example
//!   config, README and LICENSE into `target/dist/*.tar.gz` plus a `.sha256`.

use std::path::{Path, PathBuf};

pub mod bench;
pub mod dist;
pub mod soak;
pub mod tidy;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}
