//! Command line: `im-server [--config PATH] [COMMAND]`.
//!
//! The reference Go server took `-config path` (Go's `flag` package, one
//! dash). [`parse_args`] rewrites `-config path` and `-config=path` to
//! `--config` before clap sees them, so both spellings work.
//!
//! ```text
//! im-server                                   # serve, embedded defaults + IM_* env
//! im-server --config config/config.yaml       # serve with a config file
//! im-server -config config/config.yaml serve  # Go-style flag
//! im-server migrate                           # run pending migrations and exit
//! im-server token --user alice --platform iOS # print a JWT for alice
//! ```

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::AuthConfig;

/// Parsed command line.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "im-server",
    version,
    about = "Instant messaging server (HTTP, WebSocket and TCP)"
)]
pub struct Cli {
    /// YAML config file; values from IM_<SECTION>__<KEY> environment
    /// variables override it. Without it: built-in defaults.
    #[arg(short = 'c', long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command to run; `serve` when none was given.
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Serve)
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a signed JWT for a user, for an app backend or for testing.
    ///
    /// The binary signs it with the configured `auth.jwt_secret`:
    /// `im_service::auth::JwtAuth::new(secret.expose_secret().as_bytes(), false)
    /// .issue(&UserId::parse(user)?, &platform, now_secs, token_ttl_secs(expire_hours, &cfg.auth))`
    /// and prints the token alone on stdout.
    Token {
        /// User id the token is for.
        #[arg(long, value_parser = non_empty)]
        user: String,
        /// Platform claim (e.g. iOS, Android, Web).
        #[arg(long, value_parser = non_empty)]
        platform: String,
        /// Lifetime in hours (default: auth.token_expire_hours).
        #[arg(long, value_name = "H", value_parser = clap::value_parser!(u32).range(1..=87_600))]
        expire_hours: Option<u32>,
    },
    /// Run pending database migrations and exit.
    Migrate,
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// Token lifetime in seconds for `im-server token`: `--expire-hours`, else
/// `auth.token_expire_hours`.
pub fn token_ttl_secs(expire_hours: Option<u32>, auth: &AuthConfig) -> i64 {
    i64::from(expire_hours.unwrap_or(auth.token_expire_hours)) * 3600
}

/// Rewrites the Go-style `-config` flag to `--config` (the first element is
/// the program name; nothing after a bare `--` is touched).
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut done = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || done {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            done = true;
            out.push(arg);
        } else if arg == "-config" {
            out.push("--config".to_owned());
        } else if let Some(value) = arg.strip_prefix("-config=") {
            out.push(format!("--config={value}"));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Parses `args` (program name first). On error, `err.exit()` prints the
/// message or help/version and exits with clap's status.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(normalize_args(args))
}

/// [`parse_args`] over the process arguments (non-UTF-8 is replaced lossily).
pub fn parse_env_args() -> Result<Cli, clap::Error> {
    parse_args(std::env::args_os().map(|a| a.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_args(
            std::iter::once("im-server")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn no_arguments_serves_with_defaults() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.config, None);
        assert_eq!(cli.command, None);
        assert_eq!(cli.command(), Command::Serve);
    }

    #[test]
    fn config_flag_forms() {
        for args in [
            &["--config", "a.yaml"][..],
            &["--config=a.yaml"],
            &["-c", "a.yaml"],
            &["-config", "a.yaml"],
            &["-config=a.yaml"],
            &["serve", "-config", "a.yaml"],
            &["serve", "--config", "a.yaml"],
        ] {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.config, Some(PathBuf::from("a.yaml")), "{args:?}");
            assert_eq!(cli.command(), Command::Serve, "{args:?}");
        }
    }

    #[test]
    fn serve_and_migrate() {
        assert_eq!(parse(&["serve"]).unwrap().command, Some(Command::Serve));
        let cli = parse(&["-config", "x.yaml", "migrate"]).unwrap();
        assert_eq!(cli.command(), Command::Migrate);
        assert_eq!(cli.config, Some(PathBuf::from("x.yaml")));
    }

    #[test]
    fn token_command() {
        let cli = parse(&["token", "--user", "alice", "--platform", "iOS"]).unwrap();
        assert_eq!(
            cli.command(),
            Command::Token {
                user: "alice".into(),
                platform: "iOS".into(),
                expire_hours: None
            }
        );
        let cli = parse(&[
            "--config=c.yaml",
            "token",
            "--user",
            "bob",
            "--platform",
            "Android",
            "--expire-hours",
            "24",
        ])
        .unwrap();
        assert_eq!(
            cli.command(),
            Command::Token {
                user: "bob".into(),
                platform: "Android".into(),
                expire_hours: Some(24)
            }
        );
        assert_eq!(cli.config, Some(PathBuf::from("c.yaml")));
    }

    #[test]
    fn token_errors() {
        assert!(parse(&["token", "--platform", "iOS"]).is_err());
        assert!(parse(&["token", "--user", "", "--platform", "iOS"]).is_err());
        assert!(
            parse(&[
                "token",
                "--user",
                "a",
                "--platform",
                "iOS",
                "--expire-hours",
                "0"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "token",
                "--user",
                "a",
                "--platform",
                "iOS",
                "--expire-hours",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn unknown_things_are_errors() {
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&["-conf", "x"]).is_err());
        assert!(parse(&["--config"]).is_err());
    }

    #[test]
    fn normalization_stops_at_double_dash() {
        let out =
            normalize_args(["im-server", "-config", "a", "--", "-config=b"].map(String::from));
        assert_eq!(out, ["im-server", "--config", "a", "--", "-config=b"]);
        // The program name is never rewritten.
        assert_eq!(normalize_args(["-config".to_owned()]), ["-config"]);
    }

    #[test]
    fn ttl_defaults_to_config() {
        let auth = AuthConfig::default();
        assert_eq!(token_ttl_secs(None, &auth), 720 * 3600);
        assert_eq!(token_ttl_secs(Some(1), &auth), 3600);
    }

    #[test]
    fn help_and_version_are_errors_with_display_kind() {
        let err = parse(&["--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        let err = parse(&["--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        <Cli as CommandFactory>::command().debug_assert();
    }
}
