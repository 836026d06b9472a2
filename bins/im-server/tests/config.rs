//! Layered config loading: defaults -> YAML -> IM_* env, validation messages,
//! the reference server's config file, the shipped example and docs.

// Helpers outside #[test] fns may panic too; figment's Jail closure returns
// its (large) error type.
#![allow(clippy::unwrap_used, clippy::panic, clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Jail;
use im_server::config::{
    Config, ConfigError, DatabaseKind, KickPolicy, LogFormat, Mode, WsGeneration,
};
use secrecy::ExposeSecret;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Loads `yaml` (written as `config.yaml` in the jail) plus the jail's env.
fn load_yaml(jail: &mut Jail, yaml: &str) -> Result<Config, ConfigError> {
    jail.create_file("config.yaml", yaml).unwrap();
    Config::load(Some(Path::new("config.yaml")))
}

fn error_text(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// The layout of the reference Go server's `config/config.yaml`: every
/// section and key it has, with its sample values.
const SEED_YAML: &str = r#"
server:
  name: "IM-Server"
  mode: "debug"
  http_port: 8080
  ws_port: 8081
  tcp_port: 8082

database:
  type: "postgres"
  host: "localhost"
  port: 5432
  user: "imserver"
  password: "imserver123"
  dbname: "im_db"
  max_open_conns: 100
  max_idle_conns: 10
  conn_max_lifetime: 60   # minutes

redis:
  host: "localhost"
  port: 6379
  password: ""
  db: 0
  pool_size: 100

logger:
  level: "debug"
  format: "console"
  output: "logs/im-server.log"
  console: true

auth:
  jwt_secret: "your-secret-key-change-in-production"
  token_expire_hours: 720

message:
  batch_size: 100
  max_length: 10240
  offline_days: 30

connection:
  heartbeat_interval: 30
  heartbeat_timeout: 90
  read_timeout: 60
  write_timeout: 60
  max_message_size: 65536

rate_limit:
  enabled: true
  requests_per_second: 100
  burst: 200
"#;

#[test]
fn defaults_load_without_file() {
    Jail::expect_with(|_jail| {
        let c = Config::load(None).unwrap();
        assert_eq!(c.server.mode, Mode::Debug);
        assert_eq!(
            (c.server.http_port, c.server.ws_port, c.server.tcp_port),
            (8080, 8081, 8082)
        );
        assert_eq!(c.server.http_addr().to_string(), "0.0.0.0:8080");
        assert_eq!(c.server.ws_default_generation, WsGeneration::V1);
        assert_eq!(c.server.ws_detect_hold, Duration::from_secs(3));
        assert_eq!(c.server.auth_timeout, Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.server.ping_interval, Duration::from_secs(30));
        assert_eq!(c.database.kind, DatabaseKind::Sqlite);
        assert_eq!(c.database.path, PathBuf::from("./data/im.db"));
        assert_eq!(c.database_url().expose_secret(), "./data/im.db");
        assert!(!c.redis.enabled);
        assert!(c.uses_default_secret());
        assert_eq!(c.auth.token_expire_hours, 720);
        // Unset: debug mode with the public default secret accepts them.
        assert_eq!(c.auth.allow_demo_tokens, None);
        assert!(c.demo_tokens_accepted());
        assert!(!c.auth.require_registered_users);
        // Anonymous uploads (what the SDK sends) are on, with their limits.
        assert!(c.files.anonymous_upload);
        assert_eq!(c.files.anonymous_ttl, Duration::from_secs(3600));
        assert_eq!(c.files.anonymous_uploads_per_minute, 60);
        assert_eq!(c.files.anonymous_bytes_per_window, 256 << 20);
        assert_eq!(c.files.anonymous_window, Duration::from_secs(3600));
        assert_eq!(c.files.anonymous_max_pending_bytes, 1 << 30);
        assert_eq!(c.message.max_content_bytes, 65536);
        assert_eq!(c.message.recall_window, Duration::from_secs(120));
        assert_eq!(c.message.writer.batch_size, 1024);
        assert_eq!(c.message.writer.workers, 4);
        assert_eq!(c.message.writer.linger, Duration::from_millis(2));
        assert_eq!(c.message.writer.queue_capacity, 8192);
        assert_eq!(c.session.kick_policy, KickPolicy::PerPlatform);
        assert_eq!(c.session.no_own_echo_platforms, vec!["iOS".to_owned()]);
        assert_eq!(c.session.outbound_queue, 1024);
        assert_eq!(c.session.max_frame_bytes, 1 << 20);
        assert_eq!(c.logger.format, LogFormat::Console);
        assert_eq!(c.cluster.node_id, None);
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("IM_AUTH__JWT_SECRET"))
        );
        Ok(())
    });
}

#[test]
fn yaml_overrides_defaults() {
    Jail::expect_with(|jail| {
        let c = load_yaml(
            jail,
            r#"
server:
  mode: release
  host: 127.0.0.1
  http_port: 0
  ws_default_generation: v2
  ws_detect_hold: 500ms
  idle_timeout: 2m
database:
  type: mysql
  host: db.internal
  user: chat
  password: 123456
  dbname: chat
  conn_max_lifetime: 1h
auth:
  jwt_secret: a-long-and-random-production-secret-value
  allow_demo_tokens: false
message:
  recall_window: 5m
  writer:
    linger: 500us
session:
  kick_policy: multi
cluster:
  node_id: node-a
"#,
        )
        .unwrap();
        assert_eq!(c.server.mode, Mode::Release);
        assert_eq!(c.server.http_addr().to_string(), "127.0.0.1:0");
        assert_eq!(c.server.ws_port, 8081, "untouched keys keep defaults");
        assert_eq!(c.server.ws_default_generation, WsGeneration::V2);
        assert_eq!(c.server.ws_detect_hold, Duration::from_millis(500));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.database.kind, DatabaseKind::Mysql);
        assert_eq!(c.database.conn_max_lifetime, Duration::from_secs(3600));
        assert_eq!(
            c.database_url().expose_secret(),
            "mysql://chat:123456@db.internal:3306/chat"
        );
        assert!(!c.uses_default_secret());
        assert_eq!(c.auth.allow_demo_tokens, Some(false));
        assert!(!c.demo_tokens_accepted());
        assert_eq!(c.message.recall_window, Duration::from_secs(300));
        assert_eq!(c.message.writer.linger, Duration::from_micros(500));
        assert_eq!(c.session.kick_policy, KickPolicy::Multi);
        assert_eq!(c.cluster.node_id.as_deref(), Some("node-a"));
        Ok(())
    });
}

#[test]
fn env_overrides_yaml() {
    Jail::expect_with(|jail| {
        jail.set_env("IM_DATABASE__TYPE", "postgres");
        jail.set_env("IM_DATABASE__URL", "postgres://u:p@pg:5432/im");
        jail.set_env("IM_SERVER__HTTP_PORT", "0");
        jail.set_env("IM_AUTH__JWT_SECRET", "12345");
        jail.set_env("IM_MESSAGE__WRITER__BATCH_SIZE", "64");
        jail.set_env("IM_SERVER__AUTH_TIMEOUT", "3s");
        jail.set_env("IM_REDIS__ENABLED", "true");
        jail.set_env("IM_SERVER__HOST", "::1");
        // Unrelated IM_ variables (no `__`) are not config keys.
        jail.set_env("IM_TEST_DATABASE_URL", "whatever");
        jail.set_env("IM_CONFIG", "elsewhere.yaml");
        let c = load_yaml(
            jail,
            "server:\n  http_port: 9000\n  ws_port: 9001\ndatabase:\n  type: sqlite\n",
        )
        .unwrap();
        assert_eq!(c.database.kind, DatabaseKind::Postgres);
        assert_eq!(
            c.database_url().expose_secret(),
            "postgres://u:p@pg:5432/im"
        );
        assert_eq!(c.server.http_port, 0);
        assert_eq!(c.server.ws_port, 9001, "YAML value kept");
        assert_eq!(
            c.auth.jwt_secret.expose_secret(),
            "12345",
            "numeric env value kept as text"
        );
        assert_eq!(c.message.writer.batch_size, 64);
        assert_eq!(c.server.auth_timeout, Duration::from_secs(3));
        assert!(c.redis.enabled);
        assert_eq!(c.server.tcp_addr().to_string(), "[::1]:8082");
        Ok(())
    });
}

#[test]
fn seed_config_file_loads() {
    Jail::expect_with(|jail| {
        let c = load_yaml(jail, SEED_YAML).unwrap();
        assert_eq!(c.server.name, "IM-Server");
        assert_eq!(c.server.mode, Mode::Debug);
        assert_eq!(c.database.kind, DatabaseKind::Postgres);
        assert_eq!(
            c.database_url().expose_secret(),
            "postgres://imserver:imserver123@localhost:5432/im_db"
        );
        assert_eq!(c.database.max_open_conns, 100);
        assert_eq!(c.database.max_idle_conns, 10);
        assert_eq!(
            c.database.conn_max_lifetime,
            Duration::from_secs(60 * 60),
            "bare number = minutes"
        );
        assert_eq!(c.redis.pool_size, 100);
        assert_eq!(c.redis.url().expose_secret(), "redis://localhost:6379/0");
        assert_eq!(c.logger.level, "debug");
        assert_eq!(c.logger.output, Some(PathBuf::from("logs/im-server.log")));
        assert!(c.logger.console);
        assert!(c.uses_default_secret());
        assert!(c.rate_limit.enabled);
        assert_eq!(
            (c.rate_limit.requests_per_second, c.rate_limit.burst),
            (100, 200)
        );
        // Our own limits are not changed by the seed's unused keys...
        assert_eq!(c.message.max_content_bytes, 65536);
        // ...and the start-up warnings say so.
        let warnings = c.warnings().join("\n");
        for key in [
            "message.max_length",
            "message.offline_days",
            "connection.heartbeat_interval",
        ] {
            assert!(warnings.contains(key), "{warnings}");
        }
        Ok(())
    });
}

#[test]
fn seed_config_in_release_mode_needs_a_secret() {
    Jail::expect_with(|jail| {
        let yaml = SEED_YAML.replace("mode: \"debug\"", "mode: \"release\"");
        let err = error_text(load_yaml(jail, &yaml));
        assert!(
            err.contains(
                "auth.jwt_secret: refusing to start in release mode with the default secret; \
                 set IM_AUTH__JWT_SECRET"
            ),
            "{err}"
        );
        jail.set_env(
            "IM_AUTH__JWT_SECRET",
            "a-long-and-random-production-secret-value",
        );
        let c = load_yaml(jail, &yaml).unwrap();
        assert!(c.server.is_release());
        Ok(())
    });
}

#[test]
fn bad_enum_values_name_key_and_choices() {
    Jail::expect_with(|jail| {
        let err = error_text(load_yaml(jail, "database:\n  type: oracle\n"));
        assert!(
            err.contains("database.type: expected sqlite|postgres|mysql, got 'oracle'"),
            "{err}"
        );
        assert!(err.contains("config.yaml"), "names the file: {err}");

        let err = error_text(load_yaml(jail, "session:\n  kick_policy: everyone\n"));
        assert!(
            err.contains("session.kick_policy: expected per_platform|single|multi, got 'everyone'"),
            "{err}"
        );

        jail.set_env("IM_LOGGER__FORMAT", "xml");
        let err = error_text(load_yaml(jail, ""));
        assert!(
            err.contains("logger.format: expected console|json, got 'xml'"),
            "{err}"
        );
        assert!(
            err.contains("environment variable IM_LOGGER__FORMAT"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn out_of_range_values_are_reported_together() {
    Jail::expect_with(|jail| {
        let result = load_yaml(
            jail,
            r#"
message:
  writer:
    batch_size: 0
server:
  ws_port: 8080
  ping_interval: 2m
  ws_detect_hold: 2m
  max_connections: 0
database:
  max_open_conns: 4
  max_idle_conns: 8
cluster:
  node_id: "bad id!"
logger:
  level: verbose
"#,
        );
        let err = result.unwrap_err();
        let text = err.to_string();
        for expected in [
            "message.writer.batch_size: must be 1..=10000, got 0",
            "server.ws_port: port 8080 is already used by server.http_port",
            "server.ping_interval: must be shorter than server.idle_timeout (1m 30s), got 2m",
            "server.max_connections: must be 1..=10000000, got 0",
            "server.ws_detect_hold: must be at most 60s (pushes wait that long), got 2m",
            "database.max_idle_conns: must not exceed database.max_open_conns (4), got 8",
            "cluster.node_id: must be 1..=64 characters",
            "logger.level: expected trace|debug|info|warn|error|off",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(err.issues().len(), 8, "{text}");
        assert!(
            err.issues().iter().all(|i| i
                .source
                .as_deref()
                .is_some_and(|s| s.contains("config.yaml"))),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn metrics_keys_load_from_env_and_are_validated() {
    Jail::expect_with(|jail| {
        let c = Config::load(None).unwrap();
        assert!(c.metrics.enabled);
        assert_eq!(c.metrics.path, "/metrics");
        assert!(c.metrics.token.is_none());

        jail.set_env("IM_METRICS__ENABLED", "false");
        jail.set_env("IM_METRICS__PATH", "/internal/metrics");
        let c = Config::load(None).unwrap();
        assert!(!c.metrics.enabled);
        assert_eq!(c.metrics.path, "/internal/metrics");

        for (path, expected) in [
            ("metrics", "must be '/' followed by"),
            ("/", "must be '/' followed by"),
            ("/a b", "must be '/' followed by"),
            ("/health", "collides with the HTTP API's /health"),
            ("/api/metrics", "collides with the HTTP API's /api/"),
            ("/demo", "collides with the HTTP API's /demo/"),
            ("/demo/metrics", "collides with the HTTP API's /demo/"),
        ] {
            jail.set_env("IM_METRICS__PATH", path);
            let text = error_text(Config::load(None));
            assert!(
                text.contains("metrics.path") && text.contains(expected),
                "{path}: {text}"
            );
            assert!(text.contains("IM_METRICS__PATH"), "{text}");
        }
        jail.set_env("IM_METRICS__PATH", "/metrics");
        jail.set_env("IM_METRICS__TOKEN", "has space");
        let text = error_text(Config::load(None));
        assert!(text.contains("metrics.token: must be"), "{text}");
        assert!(!text.contains("has space"), "{text}");
        Ok(())
    });
}

#[test]
fn demo_key_loads_from_yaml_and_env() {
    Jail::expect_with(|jail| {
        assert!(Config::load(None).unwrap().demo.enabled);
        let c = load_yaml(jail, "demo:\n  enabled: false\n").unwrap();
        assert!(!c.demo.enabled);
        jail.set_env("IM_DEMO__ENABLED", "true");
        assert!(
            load_yaml(jail, "demo:\n  enabled: false\n")
                .unwrap()
                .demo
                .enabled
        );
        jail.set_env("IM_DEMO__ENABLED", "maybe");
        let text = error_text(Config::load(None));
        assert!(text.contains("demo.enabled"), "{text}");
        jail.set_env("IM_DEMO__ENABLED", "false");
        let text = error_text(load_yaml(jail, "demo:\n  enable: true\n"));
        assert!(text.contains("enable"), "{text}");
        Ok(())
    });
}

#[test]
fn tls_keys_default_off_load_from_env_and_are_validated() {
    Jail::expect_with(|jail| {
        let c = Config::load(None).unwrap();
        assert!(!c.tls.enabled);
        assert!(!c.tls.on_http() && !c.tls.on_ws() && !c.tls.on_tcp());
        assert!(c.tls.http && c.tls.ws && c.tls.tcp);
        assert_eq!(
            (c.tls.cert_path.as_deref(), c.tls.key_path.as_deref()),
            (None, None)
        );
        assert_eq!(c.tls.handshake_timeout, Duration::from_secs(10));

        jail.set_env("IM_TLS__ENABLED", "true");
        jail.set_env("IM_TLS__TCP", "false");
        let e = error_text(Config::load(None));
        assert!(
            e.contains("tls.cert_path: must be set when tls.enabled is true")
                && e.contains("IM_TLS__CERT_PATH"),
            "{e}"
        );
        assert!(e.contains("tls.key_path: must be set"), "{e}");

        jail.set_env("IM_TLS__CERT_PATH", "/etc/im-server/tls/fullchain.pem");
        jail.set_env("IM_TLS__KEY_PATH", "/etc/im-server/tls/key.pem");
        jail.set_env("IM_TLS__HANDSHAKE_TIMEOUT", "3s");
        let c = Config::load(None).unwrap();
        assert!(c.tls.on_http() && c.tls.on_ws() && !c.tls.on_tcp());
        assert_eq!(
            c.tls.cert_path.as_deref(),
            Some(Path::new("/etc/im-server/tls/fullchain.pem"))
        );
        assert_eq!(c.tls.handshake_timeout, Duration::from_secs(3));

        jail.set_env("IM_TLS__HTTP", "false");
        jail.set_env("IM_TLS__WS", "false");
        jail.set_env("IM_TLS__HANDSHAKE_TIMEOUT", "0");
        let e = error_text(Config::load(None));
        assert!(e.contains("no listener would use TLS"), "{e}");
        assert!(
            e.contains("tls.handshake_timeout: must be longer than 0s")
                && e.contains("IM_TLS__HANDSHAKE_TIMEOUT"),
            "{e}"
        );
        jail.set_env("IM_TLS__HANDSHAKE_TIMEOUT", "10");
        let e = error_text(Config::load(None));
        assert!(e.contains("tls.handshake_timeout"), "{e}");
        Ok(())
    });
}

#[test]
fn typos_are_caught_with_a_hint() {
    Jail::expect_with(|jail| {
        let err = error_text(load_yaml(jail, "server:\n  http_prot: 9000\n"));
        assert!(
            err.contains("server.http_prot: unknown key (did you mean 'http_port'?)"),
            "{err}"
        );

        let err = error_text(load_yaml(jail, "databse:\n  type: sqlite\n"));
        assert!(
            err.contains("databse: unknown key (did you mean 'database'?)"),
            "{err}"
        );

        jail.set_env("IM_MESSAGE__WRITER__LINGR", "1ms");
        let err = error_text(load_yaml(jail, ""));
        assert!(
            err.contains("message.writer.lingr: unknown key (did you mean 'linger'?)"),
            "{err}"
        );
        assert!(err.contains("IM_MESSAGE__WRITER__LINGR"), "{err}");
        Ok(())
    });
}

#[test]
fn type_errors_are_readable() {
    Jail::expect_with(|jail| {
        let err = error_text(load_yaml(jail, "server:\n  idle_timeout: 90\n"));
        assert!(err.contains("server.idle_timeout"), "{err}");
        assert!(err.contains("\"90s\""), "suggests a unit: {err}");

        let err = error_text(load_yaml(jail, "server:\n  http_port: 70000\n"));
        assert!(
            err.contains("server.http_port: expected an integer 0..=65535, got"),
            "{err}"
        );

        let err = error_text(load_yaml(jail, "message:\n  recall_window: soon\n"));
        assert!(
            err.contains("message.recall_window: expected a duration"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn missing_file_is_an_error() {
    Jail::expect_with(|_jail| {
        let err = Config::load(Some(Path::new("nope.yaml"))).unwrap_err();
        assert!(matches!(err, ConfigError::FileNotFound(_)));
        assert!(err.to_string().contains("nope.yaml"), "{err}");
        Ok(())
    });
}

#[test]
fn debug_output_never_shows_secrets() {
    Jail::expect_with(|jail| {
        jail.set_env("IM_DATABASE__PASSWORD", "db-password-XYZ");
        jail.set_env("IM_DATABASE__URL", "postgres://u:url-password-XYZ@h/db");
        jail.set_env("IM_REDIS__PASSWORD", "redis-password-XYZ");
        jail.set_env("IM_METRICS__TOKEN", "metrics-token-XYZ");
        jail.set_env("IM_AUTH__JWT_SECRET", "jwt-secret-XYZ-0123456789abcdefghij");
        let c = load_yaml(jail, "database:\n  type: postgres\n").unwrap();
        let debug = format!("{c:?} {c:#?}");
        assert!(!debug.contains("XYZ"), "{debug}");
        assert!(
            !debug.contains(im_server::config::DEFAULT_JWT_SECRET),
            "{debug}"
        );
        assert!(debug.contains("REDACTED"), "{debug}");
        assert!(!c.redis.url().expose_secret().is_empty());
        Ok(())
    });
}

#[test]
fn own_echo_platforms_come_from_yaml_and_env_and_are_checked() {
    Jail::expect_with(|jail| {
        let c = load_yaml(jail, "session:\n  no_own_echo_platforms: [iOS, Android]\n").unwrap();
        assert_eq!(c.session.no_own_echo_platforms, ["iOS", "Android"]);
        jail.set_env("IM_SESSION__NO_OWN_ECHO_PLATFORMS", "[]");
        let c = load_yaml(jail, "").unwrap();
        assert!(c.session.no_own_echo_platforms.is_empty());
        jail.set_env("IM_SESSION__NO_OWN_ECHO_PLATFORMS", "[iOS, \"\"]");
        let err = error_text(load_yaml(jail, ""));
        assert!(
            err.contains(
                "session.no_own_echo_platforms: entries must be 1..=64 printable characters"
            ),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn example_config_loads_validates_and_matches_defaults() {
    let example = repo_root().join("config/config.example.yaml");
    Jail::expect_with(|_jail| {
        let from_example = Config::load(Some(&example)).unwrap();
        let defaults = Config::load(None).unwrap();
        assert_eq!(
            format!("{from_example:#?}"),
            format!("{defaults:#?}"),
            "config.example.yaml must show the built-in defaults"
        );
        Ok(())
    });
}

/// Every leaf key of the example (comments stripped) is documented, with
/// its environment variable.
#[test]
fn docs_cover_every_example_key() {
    let example = std::fs::read_to_string(repo_root().join("config/config.example.yaml")).unwrap();
    let docs = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let keys = example_keys(&example);
    assert!(keys.len() > 50, "{keys:?}");
    for key in keys {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/configuration.md lacks `{key}`"
        );
        let env = im_server::config::env_var_name(&key);
        assert!(docs.contains(&env), "docs/configuration.md lacks {env}");
    }
}

/// Dotted leaf keys of a simple YAML file (maps only, two-space indents;
/// comments ignored).
fn example_keys(yaml: &str) -> Vec<String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut keys = Vec::new();
    for line in yaml.lines() {
        let text = line.trim_start();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let indent = line.len() - text.len();
        let (key, rest) = text.split_once(':').unwrap();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let rest = rest.split(" #").next().unwrap().trim();
        if rest.is_empty() {
            stack.push((indent, key.to_owned()));
        } else {
            let mut path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            path.push(key);
            keys.push(path.join("."));
        }
    }
    keys
}

/// `backend.token` is a secret of 16+ printable characters, distinct from
/// the JWT secret, never printed; `chatroom.*` are range-checked.
#[test]
fn backend_token_and_chatroom_limits_are_validated() {
    Jail::expect_with(|jail| {
        jail.set_env("IM_BACKEND__TOKEN", "short");
        jail.set_env("IM_CHATROOM__MAX_MEMBERS", "0");
        let text = error_text(Config::load(None));
        assert!(text.contains("backend.token: must be 16-1024"), "{text}");
        assert!(text.contains("chatroom.max_members"), "{text}");
        jail.set_env("IM_CHATROOM__MAX_MEMBERS", "5");
        jail.set_env("IM_AUTH__JWT_SECRET", "the-same-secret-for-both-0123");
        jail.set_env("IM_BACKEND__TOKEN", "the-same-secret-for-both-0123");
        let text = error_text(Config::load(None));
        assert!(text.contains("must differ from auth.jwt_secret"), "{text}");
        jail.set_env("IM_BACKEND__TOKEN", "a-backend-token-0123456789");
        let c = Config::load(None).unwrap();
        assert_eq!(c.chatroom.max_members, 5);
        assert_eq!(
            c.backend.token.as_ref().unwrap().expose_secret(),
            "a-backend-token-0123456789"
        );
        assert!(!format!("{c:?}").contains("a-backend-token"));
        Ok(())
    });
}

/// `message.ack_retention`: days by default, 0 keeps the rows, anything
/// under an hour is refused.
#[test]
fn ack_retention_loads_and_is_validated() {
    Jail::expect_with(|jail| {
        let c = Config::load(None).unwrap();
        assert_eq!(c.message.ack_retention, Duration::from_secs(30 * 24 * 3600));
        jail.set_env("IM_MESSAGE__ACK_RETENTION", "10m");
        let text = error_text(Config::load(None));
        assert!(text.contains("message.ack_retention"), "{text}");
        jail.set_env("IM_MESSAGE__ACK_RETENTION", "0s");
        assert!(Config::load(None).unwrap().message.ack_retention.is_zero());
        jail.set_env("IM_MESSAGE__ACK_RETENTION", "7d");
        assert_eq!(
            Config::load(None).unwrap().message.ack_retention,
            Duration::from_secs(7 * 24 * 3600)
        );
        Ok(())
    });
}

/// `auth.allow_demo_tokens` x `server.mode` x whether the JWT secret is the
/// public default. The v1 Talk sample app logs in with
/// `demo_token_<userID>` (Talk/Talk/ViewControllers/SettingsViewController.swift:251@5529e01).
#[test]
fn demo_tokens_by_mode_secret_and_key() {
    const CUSTOM: &str = "a-long-and-random-production-secret-value";
    // (mode, custom secret?, key) -> accepted, or the key of the config error.
    type Case = (&'static str, bool, Option<bool>, Result<bool, &'static str>);
    let cases: [Case; 12] = [
        ("debug", false, None, Ok(true)),
        ("debug", false, Some(true), Ok(true)),
        ("debug", false, Some(false), Ok(false)),
        ("debug", true, None, Ok(false)),
        ("debug", true, Some(true), Ok(true)),
        ("debug", true, Some(false), Ok(false)),
        // Release refuses the default secret whatever the key says...
        ("release", false, None, Err("auth.jwt_secret")),
        ("release", false, Some(false), Err("auth.jwt_secret")),
        ("release", false, Some(true), Err("auth.allow_demo_tokens")),
        // ...and demo tokens: never accepted, `true` refuses to start.
        ("release", true, None, Ok(false)),
        ("release", true, Some(false), Ok(false)),
        ("release", true, Some(true), Err("auth.allow_demo_tokens")),
    ];
    for (mode, custom, key, want) in cases {
        Jail::expect_with(|jail| {
            let mut yaml = format!("server:\n  mode: {mode}\nauth:\n  token_expire_hours: 720\n");
            if custom {
                yaml.push_str(&format!("  jwt_secret: {CUSTOM}\n"));
            }
            if let Some(k) = key {
                yaml.push_str(&format!("  allow_demo_tokens: {k}\n"));
            }
            let case = format!("{mode}, custom secret {custom}, key {key:?}");
            match (load_yaml(jail, &yaml), want) {
                (Ok(c), Ok(accepted)) => {
                    assert_eq!(c.auth.allow_demo_tokens, key, "{case}");
                    assert_eq!(c.demo_tokens_accepted(), accepted, "{case}");
                    let warned: Vec<String> = c
                        .warnings()
                        .into_iter()
                        .filter(|w| w.contains("demo_token_"))
                        .collect();
                    // One loud warning exactly when they are accepted,
                    // naming how to turn them off when that is the default.
                    assert_eq!(warned.len(), usize::from(accepted), "{case}: {warned:?}");
                    if let Some(w) = warned.first() {
                        assert!(w.starts_with("DEMO TOKENS ACCEPTED"), "{w}");
                        assert_eq!(
                            w.contains("allow_demo_tokens: false"),
                            key.is_none(),
                            "{case}: {w}"
                        );
                    }
                }
                (Err(e), Err(issue_key)) => {
                    assert!(e.issues().iter().any(|i| i.key == issue_key), "{case}: {e}");
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
            Ok(())
        });
    }
    // The environment sets it too.
    Jail::expect_with(|jail| {
        jail.set_env("IM_AUTH__ALLOW_DEMO_TOKENS", "false");
        let c = Config::load(None).unwrap();
        assert_eq!(c.auth.allow_demo_tokens, Some(false));
        assert!(!c.demo_tokens_accepted());
        Ok(())
    });
}

#[test]
fn anonymous_upload_limits_load_and_validate() {
    Jail::expect_with(|jail| {
        let c = load_yaml(
            jail,
            "files:\n  anonymous_ttl: 10m\n  anonymous_uploads_per_minute: 0\n  anonymous_bytes_per_window: 1048576\n  anonymous_window: 30m\n  anonymous_max_pending_bytes: 0\n",
        )
        .unwrap();
        assert_eq!(c.files.anonymous_ttl, Duration::from_secs(600));
        assert_eq!(c.files.anonymous_uploads_per_minute, 0);
        assert_eq!(c.files.anonymous_bytes_per_window, 1 << 20);
        assert_eq!(c.files.anonymous_window, Duration::from_secs(1800));
        assert_eq!(c.files.anonymous_max_pending_bytes, 0);
        let e = error_text(load_yaml(
            jail,
            "files:\n  anonymous_window: 0s\n  anonymous_ttl: 400d\n",
        ));
        assert!(
            e.contains("files.anonymous_window: must be longer than 0s"),
            "{e}"
        );
        assert!(
            e.contains("files.anonymous_ttl: must be at most a year"),
            "{e}"
        );
        // Off: the limits are not checked.
        assert!(
            load_yaml(
                jail,
                "files:\n  anonymous_upload: false\n  anonymous_window: 0s\n"
            )
            .is_ok()
        );
        Ok(())
    });
}
