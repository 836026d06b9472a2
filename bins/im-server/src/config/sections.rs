//! The sections of [`Config`](super::Config): one struct per top-level key
//! (and `message.writer`), with its built-in defaults and the values derived
//! from it (addresses, connection URLs, TTLs).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::serde_helpers::{duration, lenient};
use super::{DEFAULT_JWT_SECRET, Mode};

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
    /// See [`Config::demo_tokens_accepted`](super::Config::demo_tokens_accepted).
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
