//! Wiring: concrete adapters meet the services here, and nowhere else.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use im_core::Generation;
use im_core::ports::{
    ConversationStore, GroupStore, HealthCheck, MessageStore, PresenceStore, SystemClock, UserStore,
};
use im_repository::{
    AnyStore, DbOptions, LocalFileStore, ServerDbOptions, SqliteOptions, run_migrations,
};
use im_service::idgen::TimeOrderedIdGen;
use im_service::{
    AccountConfig, Cluster, ClusterConfig, FileService, Hub, JwtAuth, Limits, LimitsConfig,
    MessageWriter, MessagingService, Ports, Rate, ServiceConfig, Services,
};
use im_transport::tls::{CertStore, ServerTls};
use im_transport::{Transport, TransportConfig};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DatabaseKind, KickPolicy, WsGeneration};

/// The addresses the listeners actually bound (port 0 becomes a real port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    pub http: SocketAddr,
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
}

/// A built server: listeners bound, stores open, writer running.
pub struct App {
    transport: Arc<Transport>,
    services: Arc<Services>,
    listeners: [TcpListener; 3],
    addrs: LocalAddrs,
    shutdown: CancellationToken,
    writer_tasks: JoinSet<()>,
    /// With Redis: the link to the other nodes (its queue worker and
    /// liveness refresher), stopped by `cluster_stop` once the writer has
    /// drained, so that pushes of the last commits still cross.
    cluster_tasks: JoinSet<()>,
    cluster_stop: CancellationToken,
    grace: Duration,
    /// The Prometheus recorder's handle, with `metrics.enabled`.
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// With `tls.enabled`: the certificate, its acceptors, and which
    /// listeners use them.
    tls: Option<Tls>,
}

/// The TLS side of a built server.
struct Tls {
    certs: Arc<CertStore>,
    acceptors: ServerTls,
    http: bool,
    ws: bool,
    tcp: bool,
}

/// Loads the certificate and key of `tls.*` (failing with the file and the
/// problem named) and builds the acceptors.
fn load_tls(c: &Config) -> anyhow::Result<Option<Tls>> {
    let t = &c.tls;
    if !t.enabled {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&t.cert_path, &t.key_path) else {
        anyhow::bail!("tls.enabled is true but tls.cert_path or tls.key_path is not set");
    };
    let certs = CertStore::load(cert, key).context("loading the TLS certificate (tls.*)")?;
    let acceptors = ServerTls::new(certs.clone(), t.handshake_timeout)?;
    tracing::info!(
        cert = %cert.display(),
        http = t.http,
        ws = t.ws,
        tcp = t.tcp,
        "TLS enabled"
    );
    Ok(Some(Tls {
        certs,
        acceptors,
        http: t.http,
        ws: t.ws,
        tcp: t.tcp,
    }))
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// The app backend's token check (off without `backend.token`).
pub fn backend_auth(c: &Config) -> im_service::BackendAuth {
    use secrecy::ExposeSecret;
    c.backend
        .token
        .as_ref()
        .map_or_else(im_service::BackendAuth::disabled, |t| {
            im_service::BackendAuth::new(t.expose_secret())
        })
}

/// The service-layer settings taken from the config.
pub fn service_config(c: &Config) -> ServiceConfig {
    ServiceConfig {
        max_content_bytes: c.message.max_content_bytes,
        allow_demo_tokens: c.demo_tokens_accepted(),
        require_registered_users: c.auth.require_registered_users,
        kick_policy: match c.session.kick_policy {
            KickPolicy::PerPlatform => im_service::KickPolicy::PerPlatform,
            KickPolicy::Single => im_service::KickPolicy::Single,
            KickPolicy::Multi => im_service::KickPolicy::Multi,
        },
        no_own_echo_platforms: c.session.no_own_echo_platforms.clone(),
        sync_default_per_conversation: c.message.sync_default_per_conversation,
        sync_max_per_conversation: c.message.sync_max_per_conversation,
        sync_max_reply_bytes: c.message.sync_max_reply_bytes,
        sync_stream_max_messages: c.message.sync_stream_max_messages,
        sync_stream_max_bytes: c.message.sync_stream_max_bytes,
        ack_retention: c.message.ack_retention,
        typing_min_interval: c.message.typing_min_interval,
        writer: im_service::WriterConfig {
            batch_size: c.message.writer.batch_size,
            linger: c.message.writer.linger,
            queue_capacity: c.message.writer.queue_capacity,
            workers: c.message.writer.workers,
            enqueue_timeout: c.message.writer.enqueue_timeout,
        },
        recall_window: c.message.recall_window,
        max_group_members: c.group.max_members,
        max_presence_subscriptions: c.group.max_presence_subscriptions,
        chat_rooms: im_service::ChatRoomConfig {
            max_members: c.chatroom.max_members,
            max_rooms_per_user: c.chatroom.max_rooms_per_user,
            history_messages: c.chatroom.history_messages,
            join_on_send: c.chatroom.join_on_send,
            self_join: c.chatroom.self_join,
            max_messages_per_second: c.chatroom.max_messages_per_second,
        },
        // The group membership cache keeps its service defaults.
        ..ServiceConfig::default()
    }
}

/// The transport settings taken from the config.
pub fn transport_config(c: &Config) -> TransportConfig {
    TransportConfig {
        max_connections: c.server.max_connections,
        auth_timeout: c.server.auth_timeout,
        idle_timeout: c.server.idle_timeout,
        ping_interval: c.server.ping_interval,
        max_frame_bytes: c.session.max_frame_bytes,
        outbound_queue: c.session.outbound_queue,
        ws_default_generation: match c.server.ws_default_generation {
            WsGeneration::V1 => Generation::V1,
            WsGeneration::V2 => Generation::V2,
        },
        ws_detect_hold: c.server.ws_detect_hold,
        ..TransportConfig::default()
    }
}

/// The file-service settings taken from the config.
pub fn files_config(c: &Config) -> im_service::FilesConfig {
    im_service::FilesConfig {
        max_upload_bytes: c.files.max_upload_bytes,
        anonymous_upload: c.files.anonymous_upload,
        public_base_url: c.files.public_base_url.clone(),
        anonymous: im_service::AnonymousLimits {
            ttl: c.files.anonymous_ttl,
            uploads_per_minute: c.files.anonymous_uploads_per_minute,
            bytes_per_window: c.files.anonymous_bytes_per_window,
            window: c.files.anonymous_window,
            max_pending_bytes: c.files.anonymous_max_pending_bytes,
        },
    }
}

/// Leftovers of uploads interrupted by a crash older than this are deleted
/// at startup (in the background).
const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

/// Opens (creating it) the upload directory and sweeps crash leftovers in
/// the background.
async fn open_files(c: &Config) -> anyhow::Result<LocalFileStore> {
    let files = LocalFileStore::open(c.files.dir.clone())
        .await
        .with_context(|| format!("opening the files dir {}", c.files.dir.display()))?;
    let sweeper = files.clone();
    tokio::spawn(async move {
        match sweeper.sweep_stale(STALE_UPLOAD_AGE).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed leftovers of interrupted uploads"),
            Err(e) => tracing::warn!(error = %e, "could not sweep the files dir"),
        }
    });
    Ok(files)
}

/// The token signer/verifier of this config.
pub fn jwt(c: &Config) -> JwtAuth {
    JwtAuth::new(
        c.auth.jwt_secret.expose_secret().as_bytes(),
        c.demo_tokens_accepted(),
    )
}

/// The store options of this config: the SQLite file, or the PostgreSQL /
/// MySQL URL (`database.url`, or built from host, port, user, password and
/// dbname) with the pool settings. `max_idle_conns` has no deadpool
/// equivalent: idle connections stay open until `conn_max_lifetime`.
fn db_options(c: &Config, migrate: bool) -> DbOptions {
    let d = &c.database;
    let server = || ServerDbOptions {
        url: d.url().expose_secret().to_owned(),
        max_open_conns: usize::try_from(d.max_open_conns).unwrap_or(usize::MAX),
        connect_timeout: d.connect_timeout,
        acquire_timeout: d.acquire_timeout,
        conn_max_lifetime: (!d.conn_max_lifetime.is_zero()).then_some(d.conn_max_lifetime),
        migrate,
    };
    match d.kind {
        DatabaseKind::Sqlite => DbOptions::Sqlite(SqliteOptions {
            path: d.path.clone(),
            migrate,
            ..SqliteOptions::default()
        }),
        DatabaseKind::Postgres => DbOptions::Postgres(server()),
        DatabaseKind::Mysql => DbOptions::Mysql(server()),
    }
}

/// Opens the configured database (running migrations when
/// `database.auto_migrate`, otherwise refusing an outdated schema).
async fn open_store(c: &Config) -> anyhow::Result<AnyStore> {
    let opts = db_options(c, c.database.auto_migrate);
    let place = opts.describe();
    AnyStore::open(opts)
        .await
        .with_context(|| format!("opening {} database {place}", c.database.kind))
}

impl App {
    /// Opens the stores, starts the writer and binds the three listeners.
    /// The default JWT secret and demo tokens are warned about by the
    /// caller, from [`Config::warnings`] (`main.rs`), once.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Before anything is opened: a bad certificate is a config error.
        let tls = load_tls(&config)?;
        // First, so that errors while opening the stores are counted too.
        let metrics = if config.metrics.enabled {
            Some(crate::metrics::install()?)
        } else {
            None
        };
        let store = open_store(&config).await?;
        let (files, file_refs) = FileService::new(
            Arc::new(open_files(&config).await?),
            Arc::new(SystemClock),
            files_config(&config),
        )
        .with_reference_tracking();
        // Counts what earlier runs left pending (and expires what is due).
        sweep_files(&files).await;
        if config.files.anonymous_upload {
            let f = &config.files;
            tracing::info!(
                ttl = ?f.anonymous_ttl,
                uploads_per_minute = f.anonymous_uploads_per_minute,
                bytes_per_window = f.anonymous_bytes_per_window,
                window = ?f.anonymous_window,
                max_pending_bytes = f.anonymous_max_pending_bytes,
                "anonymous uploads on (files.anonymous_*)"
            );
        }
        let store = Arc::new(store);
        let node_id = node_id(&config);
        let redis = if config.redis.enabled {
            Some(connect_redis(&config, &node_id).await?)
        } else {
            None
        };
        let presence: Arc<dyn PresenceStore> = match &redis {
            Some(r) => Arc::new(r.presence()),
            None => Arc::new(im_cache::MemoryPresence::new()),
        };
        // The outbound link first: the hub and the services take it at
        // construction; `connect_cluster` below connects it once they exist.
        let (hub, outbox) = match &redis {
            Some(r) => {
                let (link, outbox) = Cluster::new(
                    Arc::new(r.routes()),
                    Arc::new(r.bus()),
                    &ClusterConfig {
                        refresh_interval: config.cluster.refresh_interval,
                        ..ClusterConfig::default()
                    },
                );
                (Hub::clustered(link), Some(outbox))
            }
            None => (Hub::with_node_id(node_id.as_str()), None),
        };
        let messages: Arc<dyn MessageStore> = store.clone();
        let users: Arc<dyn UserStore> = store.clone();
        let health: Arc<dyn HealthCheck> = store.clone();
        let svc_cfg = service_config(&config);
        let (writer, writer_tasks) = MessageWriter::spawn(Arc::clone(&messages), &svc_cfg.writer);
        let groups: Arc<dyn GroupStore> = store.clone();
        let conversations: Arc<dyn ConversationStore> = store.clone();
        let messaging = MessagingService::from_ports(
            Ports {
                messages,
                users: Arc::clone(&users),
                groups,
                conversations,
                presence,
                friends: store.clone(),
                clock: Arc::new(SystemClock),
                ids: Arc::new(TimeOrderedIdGen),
            },
            writer,
            Arc::new(hub),
            svc_cfg,
        )
        .with_file_refs(file_refs);
        let shutdown = CancellationToken::new();
        let cluster_stop = CancellationToken::new();
        let mut health = vec![health];
        let mut cluster_tasks = JoinSet::new();
        if let (Some(r), Some(outbox)) = (&redis, outbox) {
            cluster_tasks = messaging.connect_cluster(outbox, &cluster_stop);
            health.push(Arc::new(r.health()));
            tracing::info!(node = %node_id, "cluster mode: routes, presence and bus in Redis");
        }
        let services = Arc::new(
            Services::new(
                jwt(&config),
                messaging,
                users,
                store.clone(),
                account_config(&config),
                files,
            )
            .with_limits(Limits::new(limits_config(&config)))
            .with_backend(backend_auth(&config)),
        );
        let svc = Arc::clone(&services);
        let mut transport_cfg = transport_config(&config);
        transport_cfg.metrics = metrics
            .as_ref()
            .map(|h| crate::metrics::endpoint(&config.metrics, h.clone()));
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))
        };
        let http = bind(config.server.http_addr()).await?;
        let ws = bind(config.server.ws_addr()).await?;
        let tcp = bind(config.server.tcp_addr()).await?;
        let addrs = LocalAddrs {
            http: http.local_addr()?,
            ws: ws.local_addr()?,
            tcp: tcp.local_addr()?,
        };
        // The demo page is told the port the WS listener really bound.
        transport_cfg.demo = config
            .demo
            .enabled
            .then(|| im_transport::http::demo::DemoConfig {
                ws_port: addrs.ws.port(),
                ws_tls: config.tls.on_ws(),
            });
        let transport = Transport::new(services, transport_cfg, health, shutdown.clone());
        Ok(Self {
            transport,
            services: svc,
            listeners: [http, ws, tcp],
            addrs,
            shutdown,
            writer_tasks,
            cluster_tasks,
            cluster_stop,
            grace: config.server.shutdown_timeout,
            metrics,
            tls,
        })
    }

    pub fn local_addrs(&self) -> LocalAddrs {
        self.addrs
    }

    /// The use cases this server serves (tests drive periodic work, such
    /// as [`FileService::sweep_anonymous`], through it).
    pub fn services(&self) -> Arc<Services> {
        Arc::clone(&self.services)
    }

    /// The TLS certificate in use (with `tls.enabled`): its
    /// [`CertStore::reload`] is what SIGHUP does.
    pub fn tls_certs(&self) -> Option<Arc<CertStore>> {
        self.tls.as_ref().map(|t| Arc::clone(&t.certs))
    }

    /// Serves until `signal` resolves, then stops accepting, lets open
    /// connections and queued writes finish (within the shutdown timeout).
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            transport,
            services,
            listeners,
            addrs,
            shutdown,
            mut writer_tasks,
            mut cluster_tasks,
            cluster_stop,
            grace,
            metrics,
            tls,
        } = self;
        let [http, ws, tcp] = listeners;
        let mut servers = JoinSet::new();
        let t = Arc::clone(&transport);
        let on = |pick: fn(&Tls) -> bool| {
            tls.as_ref()
                .filter(|x| pick(x))
                .map(|x| x.acceptors.clone())
        };
        let (http_tls, ws_tls, tcp_tls) = (on(|x| x.http), on(|x| x.ws), on(|x| x.tcp));
        let hup = sighup();
        // The addresses stay bare `ip:port` (tests and tools parse them).
        let secured: Vec<&str> = [("http", &http_tls), ("ws", &ws_tls), ("tcp", &tcp_tls)]
            .into_iter()
            .filter_map(|(name, t)| t.as_ref().map(|_| name))
            .collect();
        let tls_on = if secured.is_empty() {
            "off".to_owned()
        } else {
            secured.join(",")
        };
        tracing::info!(
            http = %addrs.http,
            ws = %addrs.ws,
            tcp = %addrs.tcp,
            tls = %tls_on,
            "im-server listening"
        );
        match http_tls {
            None => servers.spawn(im_transport::http::serve(Arc::clone(&t), http)),
            Some(a) => servers.spawn(im_transport::http::serve_tls(Arc::clone(&t), http, a)),
        };
        match ws_tls {
            None => servers.spawn(im_transport::ws::serve(Arc::clone(&t), ws)),
            Some(a) => servers.spawn(im_transport::ws::serve_tls(Arc::clone(&t), ws, a)),
        };
        match tcp_tls {
            None => servers.spawn(im_transport::tcp::serve(Arc::clone(&t), tcp)),
            Some(a) => servers.spawn(im_transport::tcp::serve_tls(Arc::clone(&t), tcp, a)),
        };
        drop(t);
        // Registered before the "listening" line: a SIGHUP from then on is
        // handled, never the default (exit).
        servers.spawn(reload_on_sighup(
            hup,
            tls.as_ref().map(|t| Arc::clone(&t.certs)),
            shutdown.clone(),
        ));
        servers.spawn(purge_expired_state(services, shutdown.clone()));
        if let Some(handle) = metrics {
            servers.spawn(crate::metrics::upkeep(handle, shutdown.clone()));
        }
        signal.await;
        tracing::info!("shutting down");
        // One budget for the whole stop: listeners, open connections, then
        // the writer's queue (a supervisor waiting `shutdown_timeout` plus a
        // little must not have to SIGKILL us).
        let deadline = tokio::time::Instant::now() + grace;
        shutdown.cancel();
        while servers.join_next().await.is_some() {}
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !transport.drain(left).await {
            tracing::warn!("connections still open after the shutdown timeout");
        }
        // Dropping the last service handle closes the writer queues; the
        // workers finish what was queued and stop.
        drop(transport);
        let flushed = tokio::time::timeout_at(deadline, async {
            while writer_tasks.join_next().await.is_some() {}
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("message writer did not drain within the shutdown timeout");
        }
        cluster_stop.cancel();
        while cluster_tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// This node's id: `cluster.node_id`, or random per start.
fn node_id(c: &Config) -> String {
    c.cluster
        .node_id
        .clone()
        .unwrap_or_else(|| format!("n{}", hex::encode(rand::random::<[u8; 6]>())))
}

/// Connects to the configured Redis for node `node_id`.
async fn connect_redis(c: &Config, node_id: &str) -> anyhow::Result<im_cache::RedisCache> {
    let url = c.redis.url();
    let mut opts = im_cache::RedisOptions::new(url.expose_secret(), node_id);
    opts.pool_size = usize::try_from(c.redis.pool_size).unwrap_or(32);
    opts.connect_timeout = c.redis.connect_timeout;
    opts.key_prefix.clone_from(&c.redis.key_prefix);
    opts.route_ttl = c.cluster.route_ttl;
    im_cache::RedisCache::connect(opts).await.with_context(|| {
        format!(
            "connecting to Redis at {}",
            im_cache::redact_url(url.expose_secret())
        )
    })
}

/// The account service settings of `c`.
pub fn account_config(c: &Config) -> AccountConfig {
    AccountConfig {
        token_ttl: c.auth.token_ttl(),
        refresh_ttl: c.auth.refresh_ttl(),
        min_password_len: c.auth.min_password_len,
        hash_concurrency: c.auth.hash_concurrency,
    }
}

/// The rate limits of `c` (none when `rate_limit.enabled` is false).
pub fn limits_config(c: &Config) -> LimitsConfig {
    let r = &c.rate_limit;
    if !r.enabled {
        return LimitsConfig::default();
    }
    LimitsConfig {
        per_user: Some(Rate {
            per_second: r.requests_per_second,
            burst: r.burst,
        }),
        per_ip: Some(Rate {
            per_second: r.ip_requests_per_second,
            burst: r.ip_burst,
        }),
    }
}

/// Expires unreferenced anonymous files, logging what happened.
async fn sweep_files(files: &FileService) {
    match files.sweep_anonymous().await {
        Ok(r) if r.expired > 0 => tracing::info!(
            expired = r.expired,
            pending = r.pending,
            "expired unreferenced anonymous files"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "sweeping anonymous files failed"),
    }
}

/// Every hour, forgets revocations of tokens that have expired anyway and
/// MSG_ACK rows older than `message.ack_retention`;
/// every minute, forgets rate-limit buckets that have refilled and expires
/// unreferenced anonymous files past `files.anonymous_ttl`.
async fn purge_expired_state(services: Arc<Services>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut minutes = 0u32;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        services.limits.purge();
        if minutes > 0 {
            // (`App::build` swept at start-up.)
            sweep_files(&services.files).await;
        }
        minutes = minutes.wrapping_add(1);
        if minutes % 60 != 1 {
            continue;
        }
        match services.accounts.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired token revocations purged"),
            Err(e) => tracing::warn!(error = %e, "purging token revocations failed"),
        }
        match services.messaging.purge_old_acks().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "MSG_ACK rows past message.ack_retention purged"),
            Err(e) => tracing::warn!(error = %e, "purging MSG_ACK rows failed"),
        }
    }
}

/// Signs a token for `user` on `platform` with the configured secret.
pub fn mint_token(
    c: &Config,
    user: &str,
    platform: &str,
    expire_hours: Option<u32>,
) -> anyhow::Result<String> {
    let user =
        im_core::UserId::parse(user).context("--user must be 1-64 chars of [A-Za-z0-9_-]")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let now = i64::try_from(now)?;
    let ttl = crate::cli::token_ttl_secs(expire_hours, &c.auth);
    Ok(jwt(c).issue(&user, platform, now, ttl)?)
}

/// `im-server migrate`: applies the pending migrations of the configured
/// database (whatever `database.auto_migrate` says).
pub async fn migrate(c: &Config) -> anyhow::Result<()> {
    let opts = db_options(c, true);
    let place = opts.describe();
    let applied = run_migrations(&opts)
        .await
        .with_context(|| format!("migrating {} database {place}", c.database.kind))?;
    if applied.is_empty() {
        tracing::info!(database = %c.database.kind, "schema already current");
    } else {
        tracing::info!(database = %c.database.kind, ?applied, "migrations applied");
    }
    Ok(())
}

/// The SIGHUP listener (registering it replaces the default action, exit).
#[cfg(unix)]
fn sighup() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; nothing will be reloaded");
            None
        }
    }
}

#[cfg(not(unix))]
fn sighup() -> Option<()> {
    None
}

/// On every SIGHUP, reads the TLS certificate and key files again (with
/// `tls.enabled`); a failed reload keeps the certificate in use and says
/// why. Without TLS a SIGHUP is logged and ignored (rather than ending the
/// process, its default), so `systemctl reload` is always safe.
#[cfg(unix)]
async fn reload_on_sighup(
    hup: Option<tokio::signal::unix::Signal>,
    certs: Option<Arc<CertStore>>,
    shutdown: CancellationToken,
) {
    let Some(mut hup) = hup else { return };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        let Some(certs) = &certs else {
            tracing::info!("SIGHUP: TLS is off, nothing to reload");
            continue;
        };
        match certs.reload() {
            Ok(()) => tracing::info!(
                cert = %certs.cert_path().display(),
                "SIGHUP: TLS certificate reloaded; new connections use it"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "SIGHUP: TLS certificate not reloaded; keeping the previous one"
            ),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(
    _hup: Option<()>,
    _certs: Option<Arc<CertStore>>,
    _shutdown: CancellationToken,
) {
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
