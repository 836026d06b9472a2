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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Yaml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The JWT secret of the reference server's sample config, and our built-in
/// development default. Release mode refuses to start with it.
pub const DEFAULT_JWT_SECRET: &str = "your-secret-key-change-in-production";

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "IM_";

/// Separator of nesting levels in configuration environment variables.
pub const ENV_SEPARATOR: &str = "__";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One problem with the configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key, e.g. `database.type`.
    pub key: String,
    /// What is wrong, e.g. `expected sqlite|postgres|mysql, got 'oracle'`.
    pub message: String,
    /// Where the offending value came from (a file or an environment
    /// variable), when known.
    pub source: Option<String>,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.key, self.message)?;
        }
        if let Some(source) = &self.source {
            write!(f, " (from {source})")?;
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist.
    #[error("config file {} not found", .0.display())]
    FileNotFound(PathBuf),
    /// Values that could not be parsed or that failed validation.
    #[error("{}", Issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    /// The individual problems (empty for [`ConfigError::FileNotFound`]).
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            Self::Invalid(issues) => issues,
            Self::FileNotFound(_) => &[],
        }
    }
}

struct Issues<'a>(&'a [ConfigIssue]);

impl fmt::Display for Issues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for issue in many {
                    write!(f, "\n  - {issue}")?;
                }
                Ok(())
            }
        }
    }
}

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

/// Protocol generation of a WebSocket connection (see protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WsGeneration {
    /// Flat v1 messages (SDK up to 2025-11-02).
    #[default]
    V1,
    /// `MessageInfo` wrapper, batch/range sync (SDK from 2025-11-25).
    V2,
}

/// Listeners, timeouts and run mode (`server.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Display name of this server, logged at start-up (reference server key).
    pub name: String,
    /// `debug` or `release`; release refuses the default JWT secret.
    pub mode: Mode,
    /// Address all three listeners bind to.
    pub host: IpAddr,
    /// HTTP API port (0 = ephemeral).
    pub http_port: u16,
    /// WebSocket port, paths `/ws`, `/ws/v1`, `/ws/v2` (0 = ephemeral).
    pub ws_port: u16,
    /// TCP (v2 packet) port (0 = ephemeral).
    pub tcp_port: u16,
    /// Generation of the plain `/ws` path until a connection's requests
    /// reveal its own (and for pushes once `ws_detect_hold` has passed).
    pub ws_default_generation: WsGeneration,
    /// How long after a plain-`/ws` connection opens its pushes wait for it
    /// to reveal its generation (0: no waiting).
    #[serde(deserialize_with = "duration::human")]
    pub ws_detect_hold: Duration,
    /// Cap on concurrent socket connections (WS + TCP); more are refused.
    pub max_connections: usize,
    /// A socket that has not authenticated within this time is closed.
    #[serde(deserialize_with = "duration::human")]
    pub auth_timeout: Duration,
    /// A socket with no inbound frame for this long is closed.
    #[serde(deserialize_with = "duration::human")]
    pub idle_timeout: Duration,
    /// Interval of server WebSocket pings.
    #[serde(deserialize_with = "duration::human")]
    pub ping_interval: Duration,
    /// On shutdown, how long open connections and the writer get to drain.
    #[serde(deserialize_with = "duration::human")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            name: "im-server".to_owned(),
            mode: Mode::Debug,
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: 8080,
            ws_port: 8081,
            tcp_port: 8082,
            ws_default_generation: WsGeneration::V1,
            ws_detect_hold: Duration::from_secs(3),
            max_connections: 10_000,
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            ping_interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    pub fn is_release(&self) -> bool {
        self.mode == Mode::Release
    }
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.http_port)
    }
    pub fn ws_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.ws_port)
    }
    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.tcp_port)
    }
}

/// `sqlite`, `postgres` or `mysql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    #[default]
    Sqlite,
    Postgres,
    Mysql,
}

impl DatabaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }
    /// Default server port of the backend (none for SQLite).
    pub fn default_port(self) -> Option<u16> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some(5432),
            Self::Mysql => Some(3306),
        }
    }
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Persistence (`database.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Backend; the YAML/env key is `type`.
    #[serde(rename = "type")]
    pub kind: DatabaseKind,
    /// SQLite database file (created with its directory when missing).
    #[serde(deserialize_with = "lenient::path")]
    pub path: PathBuf,
    /// Full connection URL; when set it wins over path/host/port/user/password/dbname.
    #[serde(deserialize_with = "lenient::opt_secret")]
    pub url: Option<SecretString>,
    #[serde(deserialize_with = "lenient::string")]
    pub host: String,
    /// Server port; unset = 5432 (postgres) or 3306 (mysql).
    pub port: Option<u16>,
    #[serde(deserialize_with = "lenient::string")]
    pub user: String,
    #[serde(deserialize_with = "lenient::secret")]
    pub password: SecretString,
    #[serde(deserialize_with = "lenient::string")]
    pub dbname: String,
    /// Pool size: most connections open at once.
    pub max_open_conns: u32,
    /// Connections kept open while idle (pool minimum where the pool supports it).
    pub max_idle_conns: u32,
    /// Connections older than this are recycled; 0 = never. A bare number is
    /// minutes (the reference server's unit), otherwise "30m", "1h".
    #[serde(deserialize_with = "duration::minutes_or_human")]
    pub conn_max_lifetime: Duration,
    /// Time allowed to open one connection.
    #[serde(deserialize_with = "duration::human")]
    pub connect_timeout: Duration,
    /// Time a query waits for a free pooled connection.
    #[serde(deserialize_with = "duration::human")]
    pub acquire_timeout: Duration,
    /// Run pending embedded migrations at start-up (`im-server migrate` runs
    /// them explicitly).
    pub auto_migrate: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            kind: DatabaseKind::Sqlite,
            path: PathBuf::from("./data/im.db"),
            url: None,
            host: "localhost".to_owned(),
            port: None,
            user: "im".to_owned(),
            password: SecretString::from(String::new()),
            dbname: "im".to_owned(),
            max_open_conns: 16,
            max_idle_conns: 4,
            conn_max_lifetime: Duration::from_secs(30 * 60),
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            auto_migrate: true,
        }
    }
}

impl DatabaseConfig {
    /// The port to connect to: `port`, or the backend's default.
    pub fn effective_port(&self) -> Option<u16> {
        self.port.or(self.kind.default_port())
    }

    /// The connection string for the configured backend: `url` when set;
    /// for SQLite the file path; otherwise `postgres://` / `mysql://` built
    /// from host, port, user, password and dbname (percent-encoded). It may
    /// contain the password, hence a secret.
    pub fn url(&self) -> SecretString {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let scheme = match self.kind {
            DatabaseKind::Sqlite => {
                return SecretString::from(self.path.to_string_lossy().into_owned());
            }
            DatabaseKind::Postgres => "postgres",
            DatabaseKind::Mysql => "mysql",
        };
        let mut url = format!("{scheme}://");
        if !self.user.is_empty() {
            url.push_str(&percent_encode(&self.user));
            let password = self.password.expose_secret();
            if !password.is_empty() {
                url.push(':');
                url.push_str(&percent_encode(password));
            }
            url.push('@');
        }
        url.push_str(&host_for_url(&self.host));
        if let Some(port) = self.effective_port() {
            url.push_str(&format!(":{port}"));
        }
        url.push('/');
        url.push_str(&percent_encode(&self.dbname));
        SecretString::from(url)
    }
}

/// Redis (`redis.*`): presence, route table, cross-node bus, rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// false = one node with in-memory presence/routes/bus (no Redis needed).
    pub enabled: bool,
    /// Full URL (`redis://` or `rediss://`); wins over host/port/password/db.
    #[serde(deserialize_with = "lenient::opt_secret")]
    pub url: Option<SecretString>,
    #[serde(deserialize_with = "lenient::string")]
    pub host: String,
    pub port: u16,
    #[serde(deserialize_with = "lenient::secret")]
    pub password: SecretString,
    /// Logical database index.
    pub db: u32,
    pub pool_size: u32,
    /// Prefix of every key and channel, so several deployments can share a Redis.
    #[serde(deserialize_with = "lenient::string")]
    pub key_prefix: String,
    #[serde(deserialize_with = "duration::human")]
    pub connect_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: None,
            host: "localhost".to_owned(),
            port: 6379,
            password: SecretString::from(String::new()),
            db: 0,
            pool_size: 32,
            key_prefix: "im:".to_owned(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisConfig {
    /// `url` when set, else `redis://[:password@]host:port/db`.
    pub fn url(&self) -> SecretString {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let password = self.password.expose_secret();
        let auth = if password.is_empty() {
            String::new()
        } else {
            format!(":{}@", percent_encode(password))
        };
        SecretString::from(format!(
            "redis://{auth}{}:{}/{}",
            host_for_url(&self.host),
            self.port,
            self.db
        ))
    }
}

/// Tokens and user admission (`auth.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 signing secret of JWTs.
    #[serde(deserialize_with = "lenient::secret")]
    pub jwt_secret: SecretString,
    /// Lifetime of tokens the server issues (login, `im-server token`).
    pub token_expire_hours: u32,
    /// Lifetime of refresh tokens (login, `/api/auth/refresh`).
    pub refresh_expire_hours: u32,
    /// Shortest password `/api/auth/register` accepts (bytes).
    pub min_password_len: usize,
    /// Password hashes (argon2id, ~19 MiB and tens of ms each) computed at
    /// once; further logins wait.
    pub hash_concurrency: usize,
    /// Accept `demo_token_<user>` as a valid token for `<user>` (development
    /// only; the v1 Talk sample app logs in with it). Unset: accepted in
    /// debug mode while `jwt_secret` is the public default (anyone can mint
    /// tokens then anyway), refused otherwise. `false` always refuses;
    /// `true` accepts in debug mode and is a config error in release mode.
    /// See [`Config::demo_tokens_accepted`].
    pub allow_demo_tokens: Option<bool>,
    /// Sending to a user id never seen before is ERR_USER_NOT_EXIST instead
    /// of being stored for that user's first sync.
    pub require_registered_users: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: SecretString::from(DEFAULT_JWT_SECRET.to_owned()),
            token_expire_hours: 720,
            refresh_expire_hours: 24 * 60,
            min_password_len: 8,
            hash_concurrency: 2,
            allow_demo_tokens: None,
            require_registered_users: false,
        }
    }
}

impl AuthConfig {
    /// Whether `jwt_secret` is still [`DEFAULT_JWT_SECRET`].
    pub fn uses_default_secret(&self) -> bool {
        self.jwt_secret.expose_secret() == DEFAULT_JWT_SECRET
    }
    /// Lifetime of issued tokens.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.token_expire_hours) * 3600)
    }
    /// Lifetime of refresh tokens.
    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.refresh_expire_hours) * 3600)
    }
}

/// `console` (human-readable) or `json` (one object per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Console,
    Json,
}

/// When the log file rolls over to a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogRotation {
    Minutely,
    Hourly,
    #[default]
    Daily,
    /// One file, never rotated.
    Never,
}

/// Logging (`logger.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggerConfig {
    /// A level (`trace|debug|info|warn|error|off`) or an `EnvFilter` directive
    /// list (`info,im_service=debug`). `RUST_LOG`, when set, wins.
    #[serde(deserialize_with = "lenient::string")]
    pub level: String,
    pub format: LogFormat,
    /// Log file; empty/unset = no file. Rotated files are named
    /// `<file name>.<date>` in the file's directory.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub output: Option<PathBuf>,
    /// Also log to stdout.
    pub console: bool,
    /// Rotation of `output`.
    pub rotation: LogRotation,
    /// Rotated files kept (oldest deleted); unset = keep all.
    pub max_files: Option<usize>,
}

impl Default for LoggerConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Console,
            output: None,
            console: true,
            rotation: LogRotation::Daily,
            max_files: Some(14),
        }
    }
}

/// The batching message writer (`message.writer.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterConfig {
    /// Most messages per database transaction.
    pub batch_size: usize,
    /// How long a partial batch waits for more messages.
    #[serde(deserialize_with = "duration::human")]
    pub linger: Duration,
    /// Bound of each worker's queue; beyond it senders wait, then are refused.
    pub queue_capacity: usize,
    /// Parallel writer workers (conversations are sharded over them).
    pub workers: usize,
    /// How long a send waits for room in a full queue; then it gets no reply
    /// and the client resends it.
    #[serde(deserialize_with = "duration::human")]
    pub enqueue_timeout: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            linger: Duration::from_millis(2),
            queue_capacity: 8192,
            workers: 4,
            enqueue_timeout: Duration::from_millis(500),
        }
    }
}

/// Messaging (`message.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessageConfig {
    /// Largest `content` accepted (bytes); larger is ERR_MESSAGE_TOO_LARGE.
    pub max_content_bytes: usize,
    /// How long a sender may recall a message (group owners/admins: always).
    #[serde(deserialize_with = "duration::human")]
    pub recall_window: Duration,
    /// Messages per conversation in a batch sync when the client asks for none.
    pub sync_default_per_conversation: u32,
    /// Ceiling of messages per conversation in one sync reply.
    pub sync_max_per_conversation: u32,
    /// Upper bound of one sync reply body (must stay below `session.max_frame_bytes`).
    pub sync_max_reply_bytes: usize,
    /// Most messages streamed as BATCH_MSG after one BATCH_SYNC reply.
    pub sync_stream_max_messages: u32,
    /// Most bytes streamed as BATCH_MSG after one BATCH_SYNC reply.
    pub sync_stream_max_bytes: usize,
    /// How long a MSG_ACK row of a login that stopped syncing is kept (0: kept).
    #[serde(deserialize_with = "duration::human")]
    pub ack_retention: Duration,
    /// Minimum interval between two relayed typing notifications of a session.
    #[serde(deserialize_with = "duration::human")]
    pub typing_min_interval: Duration,
    pub writer: WriterConfig,
    /// Reference server key, accepted but unused.
    pub batch_size: Option<i64>,
    /// Reference server key, accepted but unused (see `max_content_bytes`).
    pub max_length: Option<i64>,
    /// Reference server key, accepted but unused (messages are kept).
    pub offline_days: Option<i64>,
}

impl Default for MessageConfig {
    fn default() -> Self {
        Self {
            max_content_bytes: 64 * 1024,
            recall_window: Duration::from_secs(120),
            sync_default_per_conversation: 100,
            sync_max_per_conversation: 500,
            sync_max_reply_bytes: 768 * 1024,
            sync_stream_max_messages: 10_000,
            sync_stream_max_bytes: 64 * 1024 * 1024,
            ack_retention: Duration::from_secs(30 * 24 * 3600),
            typing_min_interval: Duration::from_millis(200),
            writer: WriterConfig::default(),
            batch_size: None,
            max_length: None,
            offline_days: None,
        }
    }
}

/// What happens to a user's other sessions when they log in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KickPolicy {
    /// A new login replaces the old session on the same platform (KICK_OUT first).
    #[default]
    PerPlatform,
    /// One session per user, whatever the platform.
    Single,
    /// No kicking.
    Multi,
}

/// Client sessions (`session.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub kick_policy: KickPolicy,
    /// Platforms (the `platform` of AUTH_REQ, compared case-insensitively)
    /// whose sessions are not sent PUSH_MSG of their user's own messages
    /// sent from another session; they learn them by sync. Default `iOS`:
    /// the SwiftIM SDK shows pushed messages as incoming and unread.
    pub no_own_echo_platforms: Vec<String>,
    /// Frames queued for one session; when full the session is closed and
    /// the client re-syncs.
    pub outbound_queue: usize,
    /// Largest inbound or outbound frame (WS message or TCP packet body), bytes.
    pub max_frame_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            kick_policy: KickPolicy::PerPlatform,
            no_own_echo_platforms: vec![im_service::config::SWIFTIM_PLATFORM.to_owned()],
            outbound_queue: 1024,
            max_frame_bytes: 1024 * 1024,
        }
    }
}

/// Groups (`group.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// Most members of one group (owner included).
    pub max_members: u32,
    /// Most users one session may watch with ONLINE_STATUS_REQ.
    pub max_presence_subscriptions: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            max_members: 2000,
            max_presence_subscriptions: 1000,
        }
    }
}

/// Several nodes (`cluster.*`); only meaningful with `redis.enabled`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id in the route table; unset = generated at start-up.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub node_id: Option<String>,
    /// TTL of this node's route and presence entries in Redis.
    #[serde(deserialize_with = "duration::human")]
    pub route_ttl: Duration,
    /// How often the node refreshes those entries (must be below `route_ttl`).
    #[serde(deserialize_with = "duration::human")]
    pub refresh_interval: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            route_ttl: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(20),
        }
    }
}

impl ClusterConfig {
    /// `node_id`, or one made from `HOSTNAME` (when it is a valid id), the
    /// process id and the start time, unique enough for a route table.
    pub fn resolved_node_id(&self) -> String {
        if let Some(id) = &self.node_id {
            return id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| valid_node_id(h) && h.len() <= 32)
            .unwrap_or_else(|| "node".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{host}-{}-{nanos:08x}", std::process::id())
    }
}

/// Rate limits (`rate_limit.*`), token buckets counted by each node.
/// Per user: sustained `requests_per_second`, bursts up to `burst`, over
/// every authenticated request of a session except ACKs and typing (no
/// reply to sends and v2 sync requests, ERR_SEND_TOO_FAST to the others)
/// and every authenticated HTTP call (429). Per client
/// address: `ip_requests_per_second` / `ip_burst` over new WebSocket/TCP
/// connections (dropped) and register/login/refresh calls (429).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub requests_per_second: u32,
    pub burst: u32,
    /// New WebSocket/TCP connections and register/login/refresh calls per
    /// second from one client address, sustained.
    pub ip_requests_per_second: u32,
    /// Burst of the per-address limit.
    pub ip_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            requests_per_second: 100,
            burst: 200,
            ip_requests_per_second: 20,
            ip_burst: 100,
        }
    }
}

/// Uploaded files (`files.*`): `POST /upload` and `GET` of files.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Directory the file bodies are stored in.
    #[serde(deserialize_with = "lenient::path")]
    pub dir: PathBuf,
    /// Largest upload accepted (bytes); larger is 413.
    pub max_upload_bytes: u64,
    /// Base of the `url` returned by uploads (e.g. `https://cdn.example.com/files`);
    /// unset = `http://<Host>/files/<id>` from the upload request's Host header.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub public_base_url: Option<String>,
    /// Accept `POST /upload` without a token (the SDK's `IMFileManager`
    /// sends none); such files have no owner and are bounded by the
    /// `anonymous_*` limits. Off: uploads need a Bearer token.
    pub anonymous_upload: bool,
    /// An anonymous file no stored message references is deleted this long
    /// after its upload (by a sweep every minute).
    #[serde(deserialize_with = "duration::human")]
    pub anonymous_ttl: Duration,
    /// Anonymous uploads started per minute from one client address (IPv6:
    /// per /64), bursts up to the same number; 0 = no limit. Over: 429
    /// `upload_rate_limited`.
    pub anonymous_uploads_per_minute: u32,
    /// Bytes one client address may upload anonymously per
    /// `anonymous_window`; 0 = no limit. Over: 429 `upload_quota_exceeded`.
    pub anonymous_bytes_per_window: u64,
    #[serde(deserialize_with = "duration::human")]
    pub anonymous_window: Duration,
    /// Bytes all unreferenced anonymous files may hold together (each
    /// counted as at least 4 KiB); 0 = no cap. Full: 507 `insufficient_storage`.
    pub anonymous_max_pending_bytes: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        let anon = im_service::AnonymousLimits::default();
        Self {
            dir: PathBuf::from("./data/files"),
            max_upload_bytes: 100 * 1024 * 1024,
            public_base_url: None,
            anonymous_upload: true,
            anonymous_ttl: anon.ttl,
            anonymous_uploads_per_minute: anon.uploads_per_minute,
            anonymous_bytes_per_window: anon.bytes_per_window,
            anonymous_window: anon.window,
            anonymous_max_pending_bytes: anon.max_pending_bytes,
        }
    }
}

/// Prometheus metrics (`metrics.*`), served on the HTTP port.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the metrics route (and record metrics at all).
    pub enabled: bool,
    /// Route of the Prometheus text, on the HTTP port.
    #[serde(deserialize_with = "lenient::string")]
    pub path: String,
    /// When set, scrapes must send `Authorization: Bearer <token>`.
    #[serde(deserialize_with = "lenient::opt_secret")]
    pub token: Option<SecretString>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/metrics".to_owned(),
            token: None,
        }
    }
}

/// The browser demo chat (`demo.*`), served on the HTTP port at `/demo/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Serve the demo page (and redirect `/` to it).
    pub enabled: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The app backend's API (`backend.*`): calls only the app's own server
/// makes (system notices), authorised by a shared token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// `Authorization: Bearer <token>` of backend calls. Unset: the backend
    /// API is off (404). Never logged.
    #[serde(deserialize_with = "lenient::opt_secret")]
    pub token: Option<SecretString>,
}

/// Chat rooms (`chatroom.*`): `chatroom_<id>` conversations.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatRoomConfig {
    /// Most members of one room (members without a session go first when full).
    pub max_members: usize,
    /// Most rooms one user is in at once.
    pub max_rooms_per_user: usize,
    /// Newest messages of a room that stay readable (0 = none).
    pub history_messages: u32,
    /// A send into a room joins the sender (the SDK has no join call).
    pub join_on_send: bool,
    /// Users may join rooms themselves; off: only the app backend adds them.
    pub self_join: bool,
    /// Messages per second per room, burst as many (0 = unlimited).
    pub max_messages_per_second: u32,
}

impl Default for ChatRoomConfig {
    fn default() -> Self {
        let d = im_service::ChatRoomConfig::default();
        Self {
            max_members: d.max_members,
            max_rooms_per_user: d.max_rooms_per_user,
            history_messages: d.history_messages,
            join_on_send: d.join_on_send,
            self_join: d.self_join,
            max_messages_per_second: d.max_messages_per_second,
        }
    }
}

/// Native TLS (`tls.*`): rustls on the listeners chosen by `http`, `ws`
/// and `tcp`, with one certificate (chain) and key from PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve TLS at all; false = every listener is plain.
    pub enabled: bool,
    /// PEM file: the server's certificate first, then the intermediates.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub cert_path: Option<PathBuf>,
    /// PEM file: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[serde(deserialize_with = "lenient::opt_path")]
    pub key_path: Option<PathBuf>,
    /// HTTPS on `server.http_port`.
    pub http: bool,
    /// WSS on `server.ws_port`.
    pub ws: bool,
    /// TLS on `server.tcp_port`.
    pub tcp: bool,
    /// A connection whose TLS handshake takes longer is closed.
    #[serde(deserialize_with = "duration::human")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_path: None,
            key_path: None,
            http: true,
            ws: true,
            tcp: true,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl TlsConfig {
    /// Whether the HTTP listener speaks TLS.
    pub fn on_http(&self) -> bool {
        self.enabled && self.http
    }
    /// Whether the WebSocket listener speaks TLS.
    pub fn on_ws(&self) -> bool {
        self.enabled && self.ws
    }
    /// Whether the TCP listener speaks TLS.
    pub fn on_tcp(&self) -> bool {
        self.enabled && self.tcp
    }
}

/// Paths (and prefixes) the HTTP API serves itself: `metrics.path` must not
/// fall under them.
const API_PATHS: &[&str] = &[
    "/api/",
    "/messages/",
    "/files/",
    "/upload",
    "/health",
    "/ready",
    "/openapi.json",
    "/demo/",
];

/// The reference server's `connection` section: accepted, never used.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedConnectionConfig {
    pub heartbeat_interval: Option<i64>,
    pub heartbeat_timeout: Option<i64>,
    pub read_timeout: Option<i64>,
    pub write_timeout: Option<i64>,
    pub max_message_size: Option<i64>,
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

    /// Checks ranges and cross-field rules; reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut v = Validator::default();
        self.validate_server(&mut v);
        self.validate_database(&mut v);
        self.validate_redis(&mut v);
        self.validate_auth(&mut v);
        self.validate_logger(&mut v);
        self.validate_message(&mut v);
        self.validate_session_cluster(&mut v);
        self.validate_misc(&mut v);
        v.finish()
    }

    fn validate_server(&self, v: &mut Validator) {
        let s = &self.server;
        let ports = [
            ("server.http_port", s.http_port),
            ("server.ws_port", s.ws_port),
            ("server.tcp_port", s.tcp_port),
        ];
        for (i, (key, port)) in ports.iter().enumerate() {
            for (other, other_port) in ports.iter().take(i) {
                if *port != 0 && port == other_port {
                    v.issue(key, format!("port {port} is already used by {other}"));
                }
            }
        }
        v.range("server.max_connections", s.max_connections, 1, 10_000_000);
        v.positive("server.auth_timeout", s.auth_timeout);
        v.positive("server.idle_timeout", s.idle_timeout);
        v.positive("server.ping_interval", s.ping_interval);
        if s.ws_detect_hold > Duration::from_secs(60) {
            v.issue(
                "server.ws_detect_hold",
                format!(
                    "must be at most 60s (pushes wait that long), got {}",
                    fmt_duration(s.ws_detect_hold)
                ),
            );
        }
        if !s.ping_interval.is_zero() && s.ping_interval >= s.idle_timeout {
            v.issue(
                "server.ping_interval",
                format!(
                    "must be shorter than server.idle_timeout ({}), got {}",
                    fmt_duration(s.idle_timeout),
                    fmt_duration(s.ping_interval)
                ),
            );
        }
    }

    fn validate_database(&self, v: &mut Validator) {
        let d = &self.database;
        match (&d.url, d.kind) {
            (Some(url), kind) => {
                let url = url.expose_secret();
                let schemes: &[&str] = match kind {
                    DatabaseKind::Sqlite => &[],
                    DatabaseKind::Postgres => &["postgres://", "postgresql://"],
                    DatabaseKind::Mysql => &["mysql://"],
                };
                if url.trim().is_empty() {
                    v.issue("database.url", "must not be empty".to_owned());
                } else if !schemes.is_empty() && !schemes.iter().any(|s| url.starts_with(s)) {
                    v.issue(
                        "database.url",
                        format!(
                            "must start with {} for database.type {kind}",
                            schemes.join(" or ")
                        ),
                    );
                }
            }
            (None, DatabaseKind::Sqlite) => {
                if d.path.as_os_str().is_empty() {
                    v.issue("database.path", "must not be empty for sqlite".to_owned());
                }
            }
            (None, kind) => {
                if d.host.trim().is_empty() {
                    v.issue(
                        "database.host",
                        format!("must not be empty for {kind} (or set database.url)"),
                    );
                }
                if d.dbname.trim().is_empty() {
                    v.issue(
                        "database.dbname",
                        format!("must not be empty for {kind} (or set database.url)"),
                    );
                }
                if d.port == Some(0) {
                    v.issue("database.port", "must not be 0".to_owned());
                }
            }
        }
        v.range("database.max_open_conns", d.max_open_conns, 1, 10_000);
        if d.max_idle_conns > d.max_open_conns {
            v.issue(
                "database.max_idle_conns",
                format!(
                    "must not exceed database.max_open_conns ({}), got {}",
                    d.max_open_conns, d.max_idle_conns
                ),
            );
        }
        v.positive("database.connect_timeout", d.connect_timeout);
        v.positive("database.acquire_timeout", d.acquire_timeout);
    }

    fn validate_redis(&self, v: &mut Validator) {
        let r = &self.redis;
        if let Some(url) = &r.url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                v.issue(
                    "redis.url",
                    "must start with redis:// or rediss://".to_owned(),
                );
            }
        } else if r.enabled {
            if r.host.trim().is_empty() {
                v.issue(
                    "redis.host",
                    "must not be empty when redis.enabled is true".to_owned(),
                );
            }
            if r.port == 0 {
                v.issue("redis.port", "must not be 0".to_owned());
            }
        }
        v.range("redis.pool_size", r.pool_size, 1, 10_000);
        v.positive("redis.connect_timeout", r.connect_timeout);
    }

    fn validate_auth(&self, v: &mut Validator) {
        let a = &self.auth;
        if a.jwt_secret.expose_secret().is_empty() {
            v.issue("auth.jwt_secret", "must not be empty".to_owned());
        } else if self.server.is_release() && self.uses_default_secret() {
            v.issue(
                "auth.jwt_secret",
                format!(
                    "refusing to start in release mode with the default secret; set {}",
                    env_var_name("auth.jwt_secret")
                ),
            );
        }
        v.range("auth.token_expire_hours", a.token_expire_hours, 1, 87_600);
        v.range(
            "auth.refresh_expire_hours",
            a.refresh_expire_hours,
            1,
            87_600,
        );
        v.range("auth.min_password_len", a.min_password_len, 6, 128);
        v.range("auth.hash_concurrency", a.hash_concurrency, 1, 256);
        if self.server.is_release() && a.allow_demo_tokens == Some(true) {
            v.issue(
                "auth.allow_demo_tokens",
                "refusing to start in release mode with demo tokens on: `demo_token_<user>` would log in as anyone; remove the key or set it to false".to_owned(),
            );
        }
    }

    fn validate_logger(&self, v: &mut Validator) {
        let l = &self.logger;
        if let Err(msg) = check_log_level(&l.level) {
            v.issue("logger.level", msg);
        }
        if !l.console && l.output.is_none() {
            v.issue(
                "logger.console",
                "is false and logger.output is not set: logs would go nowhere".to_owned(),
            );
        }
        if let Some(out) = &l.output {
            if out.file_name().is_none() {
                v.issue(
                    "logger.output",
                    format!("'{}' does not name a file", out.display()),
                );
            }
        }
        if l.max_files == Some(0) {
            v.issue(
                "logger.max_files",
                "must be at least 1 (or unset to keep all)".to_owned(),
            );
        }
    }

    fn validate_message(&self, v: &mut Validator) {
        let m = &self.message;
        v.range(
            "message.max_content_bytes",
            m.max_content_bytes,
            1,
            16 * 1024 * 1024,
        );
        if m.max_content_bytes >= self.session.max_frame_bytes {
            v.issue(
                "message.max_content_bytes",
                format!(
                    "must be smaller than session.max_frame_bytes ({}), got {}",
                    self.session.max_frame_bytes, m.max_content_bytes
                ),
            );
        }
        v.range(
            "message.sync_max_per_conversation",
            m.sync_max_per_conversation,
            1,
            10_000,
        );
        if m.sync_default_per_conversation == 0
            || m.sync_default_per_conversation > m.sync_max_per_conversation
        {
            v.issue(
                "message.sync_default_per_conversation",
                format!(
                    "must be 1..=message.sync_max_per_conversation ({}), got {}",
                    m.sync_max_per_conversation, m.sync_default_per_conversation
                ),
            );
        }
        if m.sync_max_reply_bytes == 0 || m.sync_max_reply_bytes >= self.session.max_frame_bytes {
            v.issue(
                "message.sync_max_reply_bytes",
                format!(
                    "must be 1..session.max_frame_bytes ({}), got {}",
                    self.session.max_frame_bytes, m.sync_max_reply_bytes
                ),
            );
        }
        // One message (content and extra up to max_content_bytes each, ids,
        // fields) must fit in one sync frame, which also stays under the
        // SDK's 1 MiB packet limit.
        let frame = m.sync_max_reply_bytes.min(1 << 20);
        if m.max_content_bytes.saturating_mul(2).saturating_add(4096) > frame {
            v.issue(
                "message.max_content_bytes",
                format!(
                    "twice it plus 4096 must fit in one sync frame (message.sync_max_reply_bytes, \
                     at most 1 MiB: {frame}), got {}",
                    m.max_content_bytes
                ),
            );
        }
        v.range(
            "message.sync_stream_max_messages",
            m.sync_stream_max_messages,
            0,
            1_000_000,
        );
        v.range(
            "message.sync_stream_max_bytes",
            m.sync_stream_max_bytes,
            0,
            1 << 30,
        );
        if !m.ack_retention.is_zero() && m.ack_retention < Duration::from_secs(3600) {
            v.issue(
                "message.ack_retention",
                format!(
                    "must be 0 (keep) or at least 1h (a shorter one makes offline devices \
                     count messages unread twice), got {:?}",
                    m.ack_retention
                ),
            );
        }
        let w = &m.writer;
        v.range("message.writer.batch_size", w.batch_size, 1, 10_000);
        v.range(
            "message.writer.queue_capacity",
            w.queue_capacity,
            1,
            10_000_000,
        );
        if w.queue_capacity < w.batch_size {
            v.issue(
                "message.writer.queue_capacity",
                format!(
                    "must be at least message.writer.batch_size ({}), got {}",
                    w.batch_size, w.queue_capacity
                ),
            );
        }
        v.range("message.writer.workers", w.workers, 1, 256);
        if w.linger > Duration::from_secs(1) {
            v.issue(
                "message.writer.linger",
                format!("must be at most 1s, got {}", fmt_duration(w.linger)),
            );
        }
    }

    fn validate_session_cluster(&self, v: &mut Validator) {
        v.range(
            "group.max_members",
            u64::from(self.group.max_members),
            2,
            100_000,
        );
        v.range(
            "group.max_presence_subscriptions",
            self.group.max_presence_subscriptions as u64,
            1,
            100_000,
        );
        let s = &self.session;
        for p in &s.no_own_echo_platforms {
            if p.is_empty() || p.len() > 64 || p.chars().any(char::is_control) {
                v.issue(
                    "session.no_own_echo_platforms",
                    format!("entries must be 1..=64 printable characters, got {p:?}"),
                );
            }
        }
        v.range("session.outbound_queue", s.outbound_queue, 1, 1_000_000);
        v.range(
            "session.max_frame_bytes",
            s.max_frame_bytes,
            1024,
            64 * 1024 * 1024,
        );
        let c = &self.cluster;
        if let Some(id) = &c.node_id {
            if !valid_node_id(id) {
                v.issue(
                    "cluster.node_id",
                    format!("must be 1..=64 characters of [A-Za-z0-9._-], got '{id}'"),
                );
            }
        }
        v.positive("cluster.route_ttl", c.route_ttl);
        v.positive("cluster.refresh_interval", c.refresh_interval);
        if c.refresh_interval >= c.route_ttl {
            v.issue(
                "cluster.refresh_interval",
                format!(
                    "must be shorter than cluster.route_ttl ({}), got {}",
                    fmt_duration(c.route_ttl),
                    fmt_duration(c.refresh_interval)
                ),
            );
        }
    }

    fn validate_misc(&self, v: &mut Validator) {
        let r = &self.rate_limit;
        if r.enabled {
            v.range(
                "rate_limit.requests_per_second",
                r.requests_per_second,
                1,
                1_000_000,
            );
            v.range("rate_limit.burst", r.burst, 1, 1_000_000);
            v.range(
                "rate_limit.ip_requests_per_second",
                r.ip_requests_per_second,
                1,
                1_000_000,
            );
            v.range("rate_limit.ip_burst", r.ip_burst, 1, 1_000_000);
        }
        let f = &self.files;
        if f.dir.as_os_str().is_empty() {
            v.issue("files.dir", "must not be empty".to_owned());
        }
        if f.max_upload_bytes == 0 {
            v.issue("files.max_upload_bytes", "must be at least 1".to_owned());
        }
        if f.anonymous_upload {
            if f.anonymous_bytes_per_window > 0 {
                v.positive("files.anonymous_window", f.anonymous_window);
                // Counted in KiB by a 32-bit bucket.
                v.range(
                    "files.anonymous_bytes_per_window",
                    f.anonymous_bytes_per_window,
                    1,
                    u64::from(u32::MAX) * 1024,
                );
            }
            if f.anonymous_ttl > Duration::from_secs(365 * 24 * 3600) {
                v.issue(
                    "files.anonymous_ttl",
                    "must be at most a year (use an authenticated upload to keep a file)"
                        .to_owned(),
                );
            }
        }
        if let Some(base) = &f.public_base_url {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                v.issue(
                    "files.public_base_url",
                    format!("must start with http:// or https://, got '{base}'"),
                );
            }
        }
        self.validate_metrics(v);
        self.validate_tls(v);
        self.validate_backend_chatroom(v);
    }

    fn validate_backend_chatroom(&self, v: &mut Validator) {
        if let Some(t) = &self.backend.token {
            let t = t.expose_secret();
            if t.len() < 16 || t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                v.issue(
                    "backend.token",
                    "must be 16-1024 printable ASCII characters without spaces".to_owned(),
                );
            } else if t == self.auth.jwt_secret.expose_secret() {
                v.issue(
                    "backend.token",
                    "must differ from auth.jwt_secret".to_owned(),
                );
            }
        }
        let c = &self.chatroom;
        v.range("chatroom.max_members", c.max_members, 1, 1_000_000);
        v.range(
            "chatroom.max_rooms_per_user",
            c.max_rooms_per_user,
            1,
            10_000,
        );
        v.range("chatroom.history_messages", c.history_messages, 0, 100_000);
        v.range(
            "chatroom.max_messages_per_second",
            c.max_messages_per_second,
            0,
            1_000_000,
        );
    }

    fn validate_tls(&self, v: &mut Validator) {
        let t = &self.tls;
        v.positive("tls.handshake_timeout", t.handshake_timeout);
        if !t.enabled {
            return;
        }
        for (key, path) in [
            ("tls.cert_path", &t.cert_path),
            ("tls.key_path", &t.key_path),
        ] {
            if path.is_none() {
                v.issue(
                    key,
                    format!(
                        "must be set when tls.enabled is true (a PEM file; or {})",
                        env_var_name(key)
                    ),
                );
            }
        }
        if !(t.http || t.ws || t.tcp) {
            v.issue(
                "tls.enabled",
                "is true but tls.http, tls.ws and tls.tcp are all false: no listener would use TLS"
                    .to_owned(),
            );
        }
    }

    fn validate_metrics(&self, v: &mut Validator) {
        let m = &self.metrics;
        let p = m.path.as_str();
        let charset = p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
        if !p.starts_with('/') || p.len() < 2 || p.len() > 128 || !charset || p.contains("//") {
            v.issue(
                "metrics.path",
                format!("must be '/' followed by 1-127 characters of [A-Za-z0-9/_.-], got '{p}'"),
            );
        } else if let Some(taken) = API_PATHS
            .iter()
            .find(|a| p == a.trim_end_matches('/') || p.starts_with(*a))
        {
            v.issue(
                "metrics.path",
                format!("'{p}' collides with the HTTP API's {taken}"),
            );
        }
        if let Some(t) = &m.token {
            let t = t.expose_secret();
            if t.is_empty() || t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                v.issue(
                    "metrics.token",
                    "must be 1-1024 printable ASCII characters without spaces".to_owned(),
                );
            }
        }
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

// ---------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Validator {
    issues: Vec<ConfigIssue>,
}

impl Validator {
    fn issue(&mut self, key: &str, message: String) {
        self.issues.push(ConfigIssue {
            key: key.to_owned(),
            message,
            source: None,
        });
    }

    fn range<T: PartialOrd + fmt::Display + Copy>(&mut self, key: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.issue(key, format!("must be {min}..={max}, got {value}"));
        }
    }

    fn positive(&mut self, key: &str, value: Duration) {
        if value.is_zero() {
            self.issue(key, "must be longer than 0s".to_owned());
        }
    }

    fn finish(self) -> Result<(), ConfigError> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.issues))
        }
    }
}

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// A bare word must be a level (a bare word is otherwise a target name to
/// `EnvFilter`, so a typo like `inof` would silently log everything);
/// anything else must parse as an `EnvFilter` directive list.
fn check_log_level(level: &str) -> Result<(), String> {
    let trimmed = level.trim();
    let bare_word = !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if trimmed.is_empty() || (bare_word && !LEVELS.contains(&trimmed.to_ascii_lowercase().as_str()))
    {
        return Err(format!(
            "expected {} or a filter like 'info,im_service=debug', got '{level}'",
            LEVELS.join("|")
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(trimmed)
        .map(|_| ())
        .map_err(|e| format!("invalid filter '{level}': {e}"))
}

fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn fmt_duration(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

/// Percent-encodes everything outside RFC 3986 "unreserved".
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Brackets a bare IPv6 address for use in a URL.
fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

// ---------------------------------------------------------------------------
// Figment errors -> readable issues
// ---------------------------------------------------------------------------

fn issues_from_figment(err: figment::Error) -> Vec<ConfigIssue> {
    use figment::error::Kind;
    err.into_iter()
        .map(|e| {
            let mut path = e.path.clone();
            // Figment usually puts the offending field at the end of the
            // path already; add it when it does not.
            let mut ends_with = |name: &str| {
                if path.last().map(String::as_str) != Some(name) {
                    path.push(name.to_owned());
                }
            };
            let message = match &e.kind {
                Kind::UnknownField(name, expected) => {
                    ends_with(name);
                    unknown_key_message(name, expected)
                }
                Kind::MissingField(name) => {
                    ends_with(name);
                    "missing required key".to_owned()
                }
                Kind::DuplicateField(name) => {
                    ends_with(name);
                    "given more than once".to_owned()
                }
                Kind::UnknownVariant(got, expected) => {
                    format!("expected {}, got '{got}'", expected.join("|"))
                }
                Kind::InvalidType(actual, expected) => {
                    format!("expected {}, got {actual}", readable_expected(expected))
                }
                Kind::InvalidValue(actual, expected) => {
                    format!("expected {}, got {actual}", readable_expected(expected))
                }
                Kind::Message(msg) => msg.clone(),
                other => other.to_string(),
            };
            let key = path.join(".");
            let source = e.metadata.as_ref().map(|md| describe_source(md, &key));
            ConfigIssue {
                key,
                message,
                source,
            }
        })
        .collect()
}

/// Serde's names of primitive types, in words.
fn readable_expected(expected: &str) -> String {
    let words = match expected {
        "u8" => "an integer 0..=255",
        "u16" => "an integer 0..=65535",
        "u32" => "an integer 0..=4294967295",
        "u64" | "usize" => "a non-negative integer",
        "i64" => "an integer",
        "a boolean" => "true or false",
        other if other.starts_with("struct ") => "a map of keys",
        other => other,
    };
    words.to_owned()
}

fn unknown_key_message(name: &str, expected: &[&str]) -> String {
    let best = expected
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .min();
    match best {
        Some((d, candidate)) if d <= 2.max(name.len() / 3) => {
            format!("unknown key (did you mean '{candidate}'?)")
        }
        _ if expected.is_empty() => "unknown key".to_owned(),
        _ => format!("unknown key; expected one of: {}", expected.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

fn describe_source(md: &figment::Metadata, key: &str) -> String {
    if md.name.contains("environment variable") {
        return format!("environment variable {}", env_var_name(key));
    }
    match &md.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ => md.name.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Deserializers
// ---------------------------------------------------------------------------

/// Duration fields: humantime strings (`"10s"`, `"2m"`, `"1h 30m"`, `"250ms"`).
mod duration {
    use std::fmt;
    use std::time::Duration;

    use humantime_serde::re::humantime;
    use serde::Deserializer;
    use serde::de::{self, Visitor};

    struct Human {
        /// Unit of a bare number, if bare numbers are accepted.
        bare: Option<(u64, &'static str)>,
    }

    impl Visitor<'_> for Human {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.bare {
                Some((_, unit)) => write!(f, "a duration like \"30m\" or a number of {unit}"),
                None => f.write_str("a duration like \"10s\", \"2m\" or \"250ms\""),
            }
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s.trim()).map_err(|e| {
                E::custom(format!(
                    "expected a duration like \"10s\", \"2m\" or \"250ms\", got '{s}' ({e})"
                ))
            })
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            match self.bare {
                Some((secs, _)) => Ok(Duration::from_secs(n.saturating_mul(secs))),
                None if n == 0 => Ok(Duration::ZERO),
                None => Err(E::custom(format!(
                    "expected a duration with a unit like \"{n}s\" or \"{n}ms\", got the bare number {n}"
                ))),
            }
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!(
                    "expected a duration, got the negative number {n}"
                ))),
            }
        }
    }

    /// A humantime string (a bare `0` is allowed and means zero).
    pub fn human<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Human { bare: None })
    }

    /// A humantime string, or a bare number of minutes (the reference
    /// server's `conn_max_lifetime`).
    pub fn minutes_or_human<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Human {
            bare: Some((60, "minutes")),
        })
    }
}

/// String-like fields that must survive YAML/env typing: `password: 123456`
/// or `IM_AUTH__JWT_SECRET=12345` arrive as numbers and are taken verbatim.
mod lenient {
    use std::fmt;
    use std::path::PathBuf;

    use secrecy::SecretString;
    use serde::Deserializer;
    use serde::de::{self, Visitor};

    struct Text;

    impl Visitor<'_> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
            Ok(s.to_owned())
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<String, E> {
            Ok(s)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_u128<E: de::Error>(self, n: u128) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_i128<E: de::Error>(self, n: i128) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<String, E> {
            Ok(b.to_string())
        }
        fn visit_char<E: de::Error>(self, c: char) -> Result<String, E> {
            Ok(c.to_string())
        }
    }

    struct OptText;

    impl<'de> Visitor<'de> for OptText {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or nothing")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            Ok(Some(string(d)?).filter(|s| !s.is_empty()))
        }
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(Text)
    }

    /// Unset, null and `""` are all `None`.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_option(OptText)
    }

    pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        string(d).map(PathBuf::from)
    }

    pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        opt_string(d).map(|s| s.map(PathBuf::from))
    }

    pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        string(d).map(SecretString::from)
    }

    pub fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        opt_string(d).map(|s| s.map(SecretString::from))
    }
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

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("http_prot", "http_port"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn log_levels() {
        assert!(check_log_level("info").is_ok());
        assert!(check_log_level("DEBUG").is_ok());
        assert!(check_log_level("info,im_service=trace").is_ok());
        assert!(check_log_level("inof").is_err());
        assert!(check_log_level("").is_err());
    }

    #[test]
    fn urls_are_encoded() {
        let mut d = DatabaseConfig {
            kind: DatabaseKind::Postgres,
            user: "u@x".into(),
            password: SecretString::from("p:w/d".to_owned()),
            ..DatabaseConfig::default()
        };
        assert_eq!(
            d.url().expose_secret(),
            "postgres://u%40x:p%3Aw%2Fd@localhost:5432/im"
        );
        d.kind = DatabaseKind::Mysql;
        d.password = SecretString::from(String::new());
        d.host = "::1".into();
        assert_eq!(d.url().expose_secret(), "mysql://u%40x@[::1]:3306/im");
        let r = RedisConfig {
            password: SecretString::from("s3cr3t".to_owned()),
            db: 2,
            ..RedisConfig::default()
        };
        assert_eq!(r.url().expose_secret(), "redis://:s3cr3t@localhost:6379/2");
    }

    #[test]
    fn generated_node_id_is_valid() {
        let id = ClusterConfig::default().resolved_node_id();
        assert!(valid_node_id(&id), "{id}");
    }
}
