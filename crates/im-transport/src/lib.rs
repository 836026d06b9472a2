//! Network edge of im-server: the HTTP API on :8080, WebSocket (`/ws`,
//! `/ws/v1`, `/ws/v2`) on :8081 and the 16-byte-header TCP protocol on :8082.
//!
//! Each connection has a read loop (decode, dispatch) and a writer task that
//! drains the session's bounded outbound queue, coalescing whatever is ready
//! into one write. The transport knows wire formats and sockets; the use
//! cases live in `im-service`.
//!
//! Each listener runs plain (`http::serve`, `ws::serve`, `tcp::serve`) or
//! over TLS (`http::serve_tls`, `ws::serve_tls`, `tcp::serve_tls` with a
//! [`tls::ServerTls`]); the connection code is the same, generic over the
//! stream.

mod conn;
pub mod http;
pub mod metrics;
pub mod tcp;
pub mod tls;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use im_core::Generation;
use im_core::ports::HealthCheck;
use im_service::Services;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connection-level limits and timers.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Most concurrent socket connections (WS + TCP) on this node.
    pub max_connections: usize,
    /// A connection that has not authenticated within this is closed.
    pub auth_timeout: Duration,
    /// A connection with no inbound frame for this long is closed.
    pub idle_timeout: Duration,
    /// Interval of server WebSocket pings.
    pub ping_interval: Duration,
    /// Largest inbound frame / packet body accepted; bigger closes the connection.
    pub max_frame_bytes: usize,
    /// Bound of each session's outbound queue (frames).
    pub outbound_queue: usize,
    /// Generation of plain `/ws` (no `?v=`) until a connection's requests
    /// reveal its own.
    pub ws_default_generation: Generation,
    /// How long after a plain-`/ws` connection opens its pushes wait for
    /// its generation to be known; then they use `ws_default_generation`.
    pub ws_detect_hold: Duration,
    /// Sends of one connection awaiting their commit at once.
    pub max_inflight_sends: usize,
    /// Consecutive undecodable frames tolerated before the connection is closed.
    pub max_bad_frames: u32,
    /// The metrics route of the HTTP API; `None` serves no such route.
    pub metrics: Option<metrics::MetricsEndpoint>,
    /// The browser demo at `/demo/` on the HTTP API; `None` serves none.
    pub demo: Option<http::demo::DemoConfig>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_connections: 50_000,
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            ping_interval: Duration::from_secs(30),
            max_frame_bytes: 1024 * 1024,
            outbound_queue: 1024,
            ws_default_generation: Generation::V1,
            ws_detect_hold: Duration::from_secs(3),
            max_inflight_sends: 64,
            max_bad_frames: 8,
            metrics: None,
            demo: None,
        }
    }
}

/// Shared state of every listener of a node.
pub struct Transport {
    pub(crate) services: Arc<Services>,
    pub(crate) cfg: TransportConfig,
    pub(crate) health: Vec<Arc<dyn HealthCheck>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) conn_limit: Arc<Semaphore>,
    /// The generation each token's last plain-`/ws` connection revealed.
    pub(crate) ws_generations: ws::TokenGenerations,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// `health` are the backends `/ready` pings.
    pub fn new(
        services: Arc<Services>,
        cfg: TransportConfig,
        health: Vec<Arc<dyn HealthCheck>>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let conn_limit = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
        Arc::new(Self {
            services,
            cfg,
            health,
            shutdown,
            tracker: TaskTracker::new(),
            conn_limit,
            ws_generations: ws::TokenGenerations::new(ws::REMEMBERED_TOKENS),
        })
    }

    /// Open socket connections right now.
    pub fn open_connections(&self) -> usize {
        self.cfg
            .max_connections
            .max(1)
            .saturating_sub(self.conn_limit.available_permits())
    }

    /// Waits until every connection task has ended (after shutdown was
    /// signalled), at most `grace`. Returns whether they all ended.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
