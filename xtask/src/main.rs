//! `cargo xtask <command>`: see `xtask/src/lib.rs`.

use std::process::ExitCode;

use xtask::tidy::{Workspace, check};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  tidy    check the dependency direction between crates (docs/architecture.md)
          and that every crate inherits the workspace lints and dependencies
  bench   build release, run the im-bench scenarios against a fresh server
          (and nats-server with --vs nats), print the table; `bench --help`
  soak    build im-server and im-soak, run the randomized soak (seeded traffic,
          faults, history checker); `soak --help`
  dist    release build (--locked), stripped, packed with the example config,
          README and LICENSE into target/dist/*.tar.gz plus a .sha256; `dist --help`
  help    print this message";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["tidy"] => tidy(),
        ["bench", "help" | "-h" | "--help"] => {
            println!("{}", xtask::bench::USAGE);
            ExitCode::SUCCESS
        }
        ["bench", rest @ ..] => match xtask::bench::main(&xtask::workspace_root(), rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        ["soak", "help" | "-h" | "--help"] => {
            println!("{}", xtask::soak::USAGE);
            ExitCode::SUCCESS
        }
        ["soak", rest @ ..] => match xtask::soak::main(&xtask::workspace_root(), rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("soak: {e:#}");
                ExitCode::FAILURE
            }
        },
        ["dist", "help" | "-h" | "--help"] => {
            println!("{}", xtask::dist::USAGE);
            ExitCode::SUCCESS
        }
        ["dist", rest @ ..] => match xtask::dist::main(&xtask::workspace_root(), rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dist: {e:#}");
                ExitCode::FAILURE
            }
        },
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        [] => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        _ => {
            eprintln!(
                "error: unknown command or arguments: {}\n\n{USAGE}",
                args.join(" ")
            );
            ExitCode::from(2)
        }
    }
}

fn tidy() -> ExitCode {
    let root = xtask::workspace_root();
    let ws = match Workspace::load(&root) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("tidy: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let problems = check(&ws);
    if problems.is_empty() {
        println!("tidy: {} manifests ok", ws.members.len());
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        eprintln!("{p}");
    }
    eprintln!(
        "tidy: {} problem(s) in {} manifests",
        problems.len(),
        ws.members.len()
    );
    ExitCode::FAILURE
}
