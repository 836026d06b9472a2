//! The short soak profile of `.ci/run`: one SQLite node, then three nodes
//! on PostgreSQL + Redis, a minute of traffic under faults each, with a
//! fresh seed every run (printed; replay with `cargo xtask soak --seed`).
//! The cluster profile skips with a printed reason when
//! IM_TEST_POSTGRES_URL is unset, and fails when IM_TEST_REQUIRE_BACKENDS=1.
//!
//! It runs the `im-server` binary built beside this test: run it through
//! `cargo test --workspace` (which builds that binary), or point
//! IM_SOAK_SERVER_BIN at one.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("IM_SOAK_SERVER_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/short-<hash> -> target/<profile>/im-server
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let bin = dir.join(format!("im-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (it builds im-server) or set IM_SOAK_SERVER_BIN",
        bin.display()
    );
    bin
}

fn soak(profile: &str) {
    let out = tempfile::tempdir().expect("a temporary folder");
    // Kept for inspection when the run fails.
    let folder = std::env::temp_dir().join(format!("im-soak-ci-{profile}-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_im-soak"))
        .args([
            "--profile",
            profile,
            "--seconds",
            "60",
            "--fault-every",
            "5",
        ])
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--out")
        .arg(&folder)
        .current_dir(out.path())
        .status()
        .expect("im-soak runs");
    assert!(
        status.success(),
        "soak profile {profile} failed ({status}); its folder is {}",
        folder.display()
    );
}

#[test]
fn short_profiles_find_no_violation() {
    soak("sqlite");
    soak("cluster");
}
