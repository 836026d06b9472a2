//! The server's configuration: one typed [`Config`], read in layers with figment.
//!
//! Order (later wins): built-in defaults -> a YAML file (`--config PATH`, or the
//! Go-style `-config PATH`) -> environment variables `IM_<SECTION>__<KEY>`
//! (`__` separates nesting levels, e.g. `IM_DATABASE__TYPE=postgres`,
//! `IM_SERVER__HTTP_PORT=0`). The result is validated, and every problem is
//! reported with the key it concerns and where the value came from.
//!
//! The config file of the reference Go server (`config/config.yaml` with
//! `server`, `database`, `redis`, `logger`, `auth`, `message`, `connection`,
//! `rate_limit`) loads as it is. Keys it declared but never read are accepted
//! and reported by [`Config::warnings`]; any other unknown key is an error
//! with a "did you mean" hint, so typos never pass silently.
//!
//! There is no global settings object: the binary loads a `Config` once and
//! passes the parts each component needs.

mod report;
mod sections;
mod serde_helpers;
mod validate;

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Yaml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use self::report::{ConfigError, ConfigIssue};
use self::report::{describe_source, issues_from_figment};
pub use self::sections::{
    AuthConfig, BackendConfig, ChatRoomConfig, ClusterConfig, DatabaseConfig, DatabaseKind,
    DemoConfig, FilesConfig, GroupConfig, KickPolicy, LogFormat, LogRotation, LoggerConfig,
    MessageConfig, MetricsConfig, RateLimitConfig, RedisConfig, SeedConnectionConfig, ServerConfig,
    SessionConfig, TlsConfig, WriterConfig, WsGeneration,
};

/// The JWT secret of the reference server's sample config, and our built-in
/// development default. Release mode refuses to start with it.
pub const DEFAULT_JWT_SECRET: &str = "your-secret-key-change-in-production";

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "IM_";

/// Separator of nesting levels in configuration environment variables.
pub const ENV_SEPARATOR: &str = "__";

// ---------------------------------------------------------------------------
// The configuration
// ---------------------------------------------------------------------------

/// The whole configuration. `Debug` never prints secrets (they are
/// [`SecretString`]s and print as `[REDACTED]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub logger: LoggerConfig,
    pub message: MessageConfig,
    pub session: SessionConfig,
    pub group: GroupConfig,
    pub cluster: ClusterConfig,
    pub rate_limit: RateLimitConfig,
    pub files: FilesConfig,
    pub metrics: MetricsConfig,
    pub demo: DemoConfig,
    pub tls: TlsConfig,
    pub backend: BackendConfig,
    pub chatroom: ChatRoomConfig,
    /// The reference server's `connection` section. Accepted so its config
    /// file loads; it has no effect (the reference server never read it
    /// either). See [`ServerConfig`] and [`SessionConfig`] for our knobs.
    pub connection: SeedConnectionConfig,
}

/// `debug` or `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Debug,
    Release,
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

impl Config {
    /// The layered sources: the YAML file at `path` (if any) merged over the
    /// built-in defaults, then the `IM_*__*` environment variables.
    ///
    /// Only variables whose name contains `__` are read, so unrelated
    /// `IM_`-prefixed variables (e.g. test switches) are ignored, while a
    /// misspelled section such as `IM_DATBASE__TYPE` is still reported.
    pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::FileNotFound(path.to_path_buf()));
            }
            figment = figment.merge(Yaml::file(path));
        }
        Ok(figment.merge(env_provider()))
    }

    /// Loads defaults, then the file at `path`, then the environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(&Self::figment(path)?)
    }

    /// Extracts and validates a configuration from any figment (tests build
    /// their own). Missing keys take their defaults.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(issues_from_figment(e)))?;
        match config.validate() {
            Ok(()) => Ok(config),
            Err(ConfigError::Invalid(mut issues)) => {
                for issue in &mut issues {
                    if issue.source.is_none() {
                        issue.source = figment
                            .find_metadata(&issue.key)
                            .map(|md| describe_source(md, &issue.key));
                    }
                }
                Err(ConfigError::Invalid(issues))
            }
            Err(other) => Err(other),
        }
    }

    /// Whether the JWT secret is the built-in development default.
    pub fn uses_default_secret(&self) -> bool {
        self.auth.uses_default_secret()
    }

    /// Whether `demo_token_<user>` logs in: never in release mode; in debug
    /// mode as `auth.allow_demo_tokens` says, and when it is unset, exactly
    /// while the JWT secret is the public default (anyone can mint a valid
    /// token then anyway, and the v1 Talk sample app logs in with demo
    /// tokens).
    pub fn demo_tokens_accepted(&self) -> bool {
        if self.server.is_release() {
            return false;
        }
        self.auth
            .allow_demo_tokens
            .unwrap_or_else(|| self.uses_default_secret())
    }

    /// The database connection string (see [`DatabaseConfig::url`]).
    pub fn database_url(&self) -> SecretString {
        self.database.url()
    }

    /// Things worth a loud start-up warning that are not errors: the default
    /// JWT secret in debug mode, demo tokens, reference-server keys that have
    /// no effect. Log them once tracing is up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.uses_default_secret() {
            out.push(format!(
                "auth.jwt_secret is the built-in default: anyone can mint tokens; set {}",
                env_var_name("auth.jwt_secret")
            ));
        } else if self.auth.jwt_secret.expose_secret().len() < 32 {
            out.push("auth.jwt_secret is shorter than 32 bytes".to_owned());
        }
        if self.demo_tokens_accepted() {
            let why = if self.auth.allow_demo_tokens.is_some() {
                "auth.allow_demo_tokens is on"
            } else {
                "debug mode with the default auth.jwt_secret (set auth.allow_demo_tokens: false to refuse them)"
            };
            out.push(format!(
                "DEMO TOKENS ACCEPTED: `demo_token_<user>` logs in as any user without a password: {why}"
            ));
        }
        let unused = [
            (
                "message.batch_size",
                self.message.batch_size.is_some(),
                Some("message.sync_default_per_conversation"),
            ),
            (
                "message.max_length",
                self.message.max_length.is_some(),
                Some("message.max_content_bytes"),
            ),
            (
                "message.offline_days",
                self.message.offline_days.is_some(),
                None,
            ),
            (
                "connection.heartbeat_interval",
                self.connection.heartbeat_interval.is_some(),
                Some("server.ping_interval"),
            ),
            (
                "connection.heartbeat_timeout",
                self.connection.heartbeat_timeout.is_some(),
                Some("server.idle_timeout"),
            ),
            (
                "connection.read_timeout",
                self.connection.read_timeout.is_some(),
                Some("server.idle_timeout"),
            ),
            (
                "connection.write_timeout",
                self.connection.write_timeout.is_some(),
                None,
            ),
            (
                "connection.max_message_size",
                self.connection.max_message_size.is_some(),
                Some("session.max_frame_bytes"),
            ),
        ];
        for (key, present, instead) in unused {
            if present {
                let hint = instead.map(|k| format!("; use {k}")).unwrap_or_default();
                out.push(format!(
                    "{key} (from the reference server's config) has no effect{hint}"
                ));
            }
        }
        out
    }
}

/// The environment layer: `IM_A__B=v` sets `a.b`.
fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .split(ENV_SEPARATOR)
        .filter(|key| key.as_str().contains('.'))
}

/// The environment variable that sets dotted `key` (`auth.jwt_secret` ->
/// `IM_AUTH__JWT_SECRET`).
pub fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.split('.')
            .map(str::to_ascii_uppercase)
            .collect::<Vec<_>>()
            .join(ENV_SEPARATOR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names() {
        assert_eq!(env_var_name("auth.jwt_secret"), "IM_AUTH__JWT_SECRET");
        assert_eq!(
            env_var_name("message.writer.batch_size"),
            "IM_MESSAGE__WRITER__BATCH_SIZE"
        );
    }
}
