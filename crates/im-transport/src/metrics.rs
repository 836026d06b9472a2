//! The transport's metrics (through the `metrics` facade: no-ops until the
//! server installs a recorder) and the `/metrics` endpoint, which renders
//! whatever recorder the server chose through a [`MetricsEndpoint`].
//!
//! Labels are bounded: the transport (`tcp`, `ws`, and `http` for TLS
//! handshakes), the TLS failure reason, the HTTP method, the
//! matched route template (never the raw path) and the status code.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use im_service::session::TransportKind;
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

/// Open socket connections, by `transport` (tcp, ws).
pub const CONNECTIONS: &str = "im_connections";
/// Socket connections accepted, by `transport`.
pub const CONNECTIONS_ACCEPTED: &str = "im_connections_accepted_total";
/// Socket connections closed, by `transport`.
pub const CONNECTIONS_CLOSED: &str = "im_connections_closed_total";
/// Socket connections refused at the connection cap, by `transport`.
pub const CONNECTIONS_REFUSED: &str = "im_connections_refused_total";
/// TLS handshakes that failed, by `transport` (http, ws, tcp) and `reason`
/// (`timeout`, `protocol`: not TLS or refused by either side, `io`: the
/// connection broke).
pub const TLS_HANDSHAKE_FAILURES: &str = "im_tls_handshake_failures_total";
/// HTTP requests answered, by `method`, `route` (the route template, or
/// `unmatched`) and `status`.
pub const HTTP_REQUESTS: &str = "im_http_requests_total";
/// HTTP request latency until the response head, by `method` and `route`.
pub const HTTP_REQUEST_SECONDS: &str = "im_http_request_duration_seconds";

/// Plain-`/ws` connections whose generation became known, by `generation`
/// (`v1`, `v2`) and `source`: `detected` (a request revealed it),
/// `remembered` (what the same token's last connection revealed, for a
/// `?token=` reconnect), `hold_expired` (pushes waited
/// `server.ws_detect_hold` and fell back to `server.ws_default_generation`).
pub const WS_GENERATIONS: &str = "im_ws_generations_total";
/// WebSocket upgrades carrying `?token=`, by `result`: `ok` (the session is
/// authenticated), `refused` (401), `unavailable` (503: storage failed).
pub const WS_QUERY_TOKENS: &str = "im_ws_query_tokens_total";

/// Registers the descriptions (`# HELP`) of this crate's metrics.
pub fn describe() {
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Open WebSocket and TCP connections, by transport"
    );
    describe_counter!(
        CONNECTIONS_ACCEPTED,
        "Socket connections accepted, by transport"
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Socket connections closed, by transport"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Socket connections refused at server.max_connections, by transport"
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed, by transport and reason (timeout, protocol, io)"
    );
    describe_counter!(
        WS_GENERATIONS,
        "Plain /ws connections whose generation became known, by generation and source (detected, remembered, hold_expired)"
    );
    describe_counter!(
        WS_QUERY_TOKENS,
        "WebSocket upgrades carrying ?token=, by result (ok, refused, unavailable)"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        Unit::Seconds,
        "HTTP request latency until the response head, by method and route template"
    );
}

pub(crate) fn transport_label(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::WebSocket => "ws",
        TransportKind::Tcp => "tcp",
    }
}

/// Counts a connection refused at the cap.
pub(crate) fn refused(kind: TransportKind) {
    refused_label(transport_label(kind));
}

/// Counts a connection refused at the cap, by label (`http` is refused only
/// while its TLS handshake would hold a slot).
pub(crate) fn refused_label(transport: &'static str) {
    counter!(CONNECTIONS_REFUSED, "transport" => transport).increment(1);
}

fn generation_label(g: im_core::Generation) -> &'static str {
    match g {
        im_core::Generation::V1 => "v1",
        im_core::Generation::V2 => "v2",
    }
}

/// Counts a plain-`/ws` connection whose generation became known.
pub(crate) fn ws_generation(g: im_core::Generation, source: &'static str) {
    counter!(WS_GENERATIONS, "generation" => generation_label(g), "source" => source).increment(1);
}

/// Counts a request revealing its connection's generation.
pub(crate) fn ws_generation_detected(g: im_core::Generation) {
    ws_generation(g, "detected");
}

/// Counts an upgrade carrying `?token=` by result.
pub(crate) fn ws_query_token(result: &'static str) {
    counter!(WS_QUERY_TOKENS, "result" => result).increment(1);
}

/// Counts a failed TLS handshake.
pub(crate) fn tls_handshake_failed(transport: &'static str, reason: &'static str) {
    counter!(TLS_HANDSHAKE_FAILURES, "transport" => transport, "reason" => reason).increment(1);
}

/// Held by a connection's session for its whole life: counts the accept,
/// and on drop the close, keeping the open-connections gauge in step even
/// when the read loop ends early.
pub(crate) struct OpenConnection(&'static str);

impl OpenConnection {
    pub(crate) fn new(kind: TransportKind) -> Self {
        let transport = transport_label(kind);
        counter!(CONNECTIONS_ACCEPTED, "transport" => transport).increment(1);
        gauge!(CONNECTIONS, "transport" => transport).increment(1.0);
        Self(transport)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        counter!(CONNECTIONS_CLOSED, "transport" => self.0).increment(1);
        gauge!(CONNECTIONS, "transport" => self.0).decrement(1.0);
    }
}

/// Axum middleware counting every HTTP request by route template and status.
pub(crate) async fn track_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route: Arc<str> = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| Arc::from("unmatched"), |p| Arc::from(p.as_str()));
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    counter!(HTTP_REQUESTS, "method" => method, "route" => Arc::clone(&route), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The methods the API serves; anything else is `other` (bounded labels).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Renders the installed recorder in the Prometheus text format.
pub type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;

/// What the server exposes at `GET <path>` on the HTTP port: the text that
/// `render` produces (the server wires its Prometheus recorder's handle),
/// optionally behind a bearer token.
#[derive(Clone)]
pub struct MetricsEndpoint {
    /// Route path, such as `/metrics`.
    pub path: String,
    /// When set, scrapes must send `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    pub render: RenderFn,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl MetricsEndpoint {
    /// Whether `path` is a literal route (`/` then `[A-Za-z0-9/_.-]`): no
    /// `{param}` or wildcard that axum would read as a pattern.
    pub(crate) fn is_plain_path(&self) -> bool {
        self.path.len() > 1
            && self.path.starts_with('/')
            && self
                .path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'))
    }

    /// Whether `header` (the `Authorization` value, if any) may scrape.
    pub(crate) fn allows(&self, header: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        constant_time_eq(given, token.as_bytes())
    }
}

/// Compares without stopping at the first difference (the token's length
/// is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(token: Option<&str>) -> MetricsEndpoint {
        MetricsEndpoint {
            path: "/metrics".into(),
            token: token.map(Arc::from),
            render: Arc::new(String::new),
        }
    }

    #[test]
    fn token_is_checked_when_set() {
        assert!(endpoint(None).allows(None));
        let e = endpoint(Some("s3cret"));
        assert!(!e.allows(None));
        assert!(!e.allows(Some(b"Bearer s3cre")));
        assert!(!e.allows(Some(b"Bearer s3cret2")));
        assert!(!e.allows(Some(b"s3cret")));
        assert!(e.allows(Some(b"Bearer s3cret")));
        assert!(!format!("{e:?}").contains("s3cret"));
    }

    #[test]
    fn only_literal_paths_are_routed() {
        let with = |p: &str| MetricsEndpoint {
            path: p.into(),
            ..endpoint(None)
        };
        assert!(with("/metrics").is_plain_path());
        assert!(with("/internal/prom.txt").is_plain_path());
        for bad in ["", "/", "metrics", "/{x}", "/*rest", "/a b"] {
            assert!(!with(bad).is_plain_path(), "{bad}");
        }
    }
}
