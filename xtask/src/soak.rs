//! `cargo xtask soak [--debug] [im-soak arguments…]`: builds im-server and
//! im-soak (release unless `--debug`) and runs the soak against that
//! server; every other argument goes to im-soak (`--profile`, `--seed`,
//! `--minutes`, `--known`, …; `cargo xtask soak --help` lists them).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub const USAGE: &str = "\
usage: cargo xtask soak [--debug] [im-soak arguments…]

Builds im-server and im-soak (release; --debug for the dev profile) and runs
im-soak --server-bin <that im-server> with the other arguments, e.g.
  cargo xtask soak --profile cluster --minutes 60
  cargo xtask soak --profile sqlite --seed 42 --seconds 120 --keep
The PostgreSQL / MariaDB profiles use IM_TEST_POSTGRES_URL / IM_TEST_MYSQL_URL.
im-soak's own options: cargo xtask soak -- --help";

/// Entry point of `cargo xtask soak …`.
pub fn main(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let debug = args.contains(&"--debug");
    let rest: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--debug" && *a != "--")
        .collect();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .current_dir(root)
        .args(["build", "-p", "im-server", "-p", "im-soak"]);
    if !debug {
        build.arg("--release");
    }
    if !build.status().context("running cargo build")?.success() {
        bail!("cargo build failed");
    }
    let dir = target_dir.join(if debug { "debug" } else { "release" });
    let status = Command::new(dir.join("im-soak"))
        .current_dir(root)
        .arg("--server-bin")
        .arg(dir.join("im-server"))
        .args(&rest)
        .status()
        .context("running im-soak")?;
    if !status.success() {
        bail!("im-soak: {status}");
    }
    Ok(())
}
