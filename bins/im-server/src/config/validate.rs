//! Validation of a loaded [`Config`]: ranges and cross-field rules, with
//! every problem reported at once against the key it concerns.

use std::fmt;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::report::{ConfigError, ConfigIssue};
use super::{Config, DatabaseKind, env_var_name};

impl Config {
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
        } else if let Some(taken) = im_transport::http::reserved_prefix(p) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        assert!(check_log_level("info").is_ok());
        assert!(check_log_level("DEBUG").is_ok());
        assert!(check_log_level("info,im_service=trace").is_ok());
        assert!(check_log_level("inof").is_err());
        assert!(check_log_level("").is_err());
    }
}
