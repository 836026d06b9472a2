//! `im-server`: parse the CLI, load the config, start tracing, then serve,
//! mint a token or run migrations. Everything else lives in the library.

use std::process::ExitCode;

use im_server::cli::{self, Command};
use im_server::config::Config;
use im_server::{app, telemetry};

fn main() -> ExitCode {
    let cli = cli::parse_env_args().unwrap_or_else(|e| e.exit());
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("im-server: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    match cli.command() {
        Command::Token {
            user,
            platform,
            expire_hours,
        } => match app::mint_token(&config, &user, &platform, expire_hours) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("im-server token: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Migrate => run(&config, |config| async move { app::migrate(&config).await }),
        Command::Serve => run(&config, |config| async move {
            let app = app::App::build(config).await?;
            app.run_until(app::shutdown_signal()).await
        }),
    }
}

fn run<F, Fut>(config: &Config, f: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let _guard = match telemetry::init(&config.logger) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("im-server: cannot start logging: {e}");
            return ExitCode::FAILURE;
        }
    };
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("im-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f(config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("im-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
