//! Embedding im-server's crates in another service.
//!
//! A "host" service with its own axum routes wires the messaging stack by
//! hand (what `im_server::app::App::build` does from a config file):
//!
//! 1. the embedded SQLite store (`im-repository`) in a temporary directory;
//! 2. the services (`im-service`): message writer, messaging, accounts, files;
//! 3. the transport (`im-transport`): the im HTTP API nested under `/im` in the
//!    host's own `Router`, plus the WebSocket and TCP listeners;
//! 4. one message end to end with `im-client`: bob listens on WebSocket v2,
//!    alice sends on TCP, bob receives the push, and the host's HTTP port
//!    shows bob's conversation with one unread message.
//!
//! Then everything shuts down and the program exits.
//!
//! ```sh
//! cargo run -p im-server --example embed
//! ```
//!
//! `bins/im-server/tests/it/embed.rs` runs [`run`] as a test.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
use im_client::Client;
use im_core::command::{Event, Reply};
use im_core::ports::{HealthCheck, MessageStore, SystemClock};
use im_core::{Generation, UserId};
use im_repository::{LocalFileStore, SqliteOptions, SqliteStore};
use im_service::idgen::TimeOrderedIdGen;
use im_service::{
    AccountConfig, FileService, FilesConfig, Hub, JwtAuth, MessageWriter, MessagingService, Ports,
    ServiceConfig, Services,
};
use im_transport::{Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the run observed.
#[derive(Debug)]
pub struct Outcome {
    /// The host's HTTP address (its own routes, and the im API under `/im`).
    pub http: SocketAddr,
    /// Seq of alice's message in `single_alice_bob`, from SEND_MSG_RSP.
    pub seq: i64,
    /// The text bob received by PUSH_MSG.
    pub received: String,
    /// The body of the host's own `GET /`.
    pub host_page: String,
    /// The JSON of bob's `GET /im/api/conversations`.
    pub bob_conversations: String,
}

/// Builds the stack in `dir`, sends one message, shuts down.
pub async fn run(dir: &Path) -> anyhow::Result<Outcome> {
    // 1. The embedded store: one SQLite file, migrated on open.
    let store = Arc::new(
        SqliteStore::open(SqliteOptions {
            path: dir.join("im.db"),
            ..SqliteOptions::default()
        })
        .await
        .context("opening SQLite")?,
    );

    // 2. The services, over that store (one store implements every port).
    let cfg = ServiceConfig::default();
    let messages: Arc<dyn MessageStore> = store.clone();
    let (writer, writer_tasks) = MessageWriter::spawn(Arc::clone(&messages), &cfg.writer);
    let messaging = MessagingService::from_ports(
        Ports {
            messages,
            users: store.clone(),
            groups: store.clone(),
            conversations: store.clone(),
            presence: Arc::new(im_cache::MemoryPresence::new()),
            friends: store.clone(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(TimeOrderedIdGen),
        },
        writer,
        Arc::new(Hub::with_node_id("embedded")),
        cfg,
    );
    // Bind first, so upload URLs can name the host's address and prefix.
    let http_listener = TcpListener::bind("127.0.0.1:0").await?;
    let ws_listener = TcpListener::bind("127.0.0.1:0").await?;
    let tcp_listener = TcpListener::bind("127.0.0.1:0").await?;
    let (http, ws, tcp) = (
        http_listener.local_addr()?,
        ws_listener.local_addr()?,
        tcp_listener.local_addr()?,
    );
    let files = FileService::new(
        Arc::new(LocalFileStore::open(dir.join("files")).await?),
        Arc::new(SystemClock),
        FilesConfig {
            // Uploads answer `<base>/<file_id>`; the API lives under /im here.
            public_base_url: Some(format!("http://{http}/im/files")),
            ..FilesConfig::default()
        },
    );
    // A real deployment reads 32+ random bytes from its secret store.
    let jwt = JwtAuth::new(b"embed-example-secret-not-for-production", false);
    let services = Arc::new(Services::new(
        jwt.clone(),
        messaging,
        store.clone(),
        store.clone(),
        AccountConfig::default(),
        files,
    ));

    // 3. The transport, and the host's router with the im API nested in it.
    let shutdown = CancellationToken::new();
    let health: Arc<dyn HealthCheck> = store.clone();
    let transport = Transport::new(
        Arc::clone(&services),
        TransportConfig::default(),
        vec![health],
        shutdown.clone(),
    );
    let host = Router::new()
        .route(
            "/",
            get(|| async { "host service: its own routes, im under /im" }),
        )
        .nest("/im", im_transport::http::router(Arc::clone(&transport)));
    let mut servers = tokio::task::JoinSet::new();
    let stop = shutdown.clone();
    servers.spawn(async move {
        // Connect info feeds the im API's per-address limit on login calls.
        let app = host.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(http_listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = server.await {
            eprintln!("host http server failed: {e}");
        }
    });
    servers.spawn(im_transport::ws::serve(Arc::clone(&transport), ws_listener));
    servers.spawn(im_transport::tcp::serve(
        Arc::clone(&transport),
        tcp_listener,
    ));

    // 4. One message end to end.
    let result = exchange(&jwt, http, ws, tcp).await;

    // Stop: listeners, then connections, then the writer's queue.
    shutdown.cancel();
    while servers.join_next().await.is_some() {}
    transport.drain(Duration::from_secs(5)).await;
    drop(transport);
    drop(services);
    let mut writer_tasks = writer_tasks;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while writer_tasks.join_next().await.is_some() {}
    })
    .await;
    result
}

/// bob on WebSocket v2, alice on TCP; alice sends, bob receives; then the
/// host's HTTP port is asked for its own page and bob's conversations.
async fn exchange(
    jwt: &JwtAuth,
    http: SocketAddr,
    ws: SocketAddr,
    tcp: SocketAddr,
) -> anyhow::Result<Outcome> {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let token = |user: &str| -> anyhow::Result<String> {
        Ok(jwt.issue(&UserId::parse(user)?, "iOS", now, 3600)?)
    };
    let (alice_token, bob_token) = (token("alice")?, token("bob")?);

    let mut bob = Client::connect_ws(ws, "/ws/v2", Generation::V2).await?;
    expect_success(bob.auth("bob", &bob_token, "iOS").await?)?;
    let mut alice = Client::connect_tcp(tcp).await?;
    expect_success(alice.auth("alice", &alice_token, "iOS").await?)?;

    let seq = match alice
        .send_text(
            "single_alice_bob",
            "embed-msg-1",
            "hello from the host service",
        )
        .await?
    {
        Reply::Send { code, seq, .. } if code.code() == 0 => seq,
        other => bail!("send refused: {other:?}"),
    };
    let received = match bob.next_event(Duration::from_secs(5)).await? {
        Some(Event::Message(m)) => {
            bob.ack(&m.server_msg_id).await?;
            String::from_utf8(m.content.to_vec())?
        }
        other => bail!("bob expected a push, got {other:?}"),
    };
    alice.close().await?;
    bob.close().await?;

    let host_page = http_get(http, "/", None).await?;
    let bob_conversations = http_get(http, "/im/api/conversations", Some(&bob_token)).await?;
    Ok(Outcome {
        http,
        seq,
        received,
        host_page,
        bob_conversations,
    })
}

fn expect_success(reply: Reply) -> anyhow::Result<()> {
    match reply {
        Reply::Auth { code, .. } if code.code() == 0 => Ok(()),
        other => bail!("AUTH refused: {other:?}"),
    }
}

/// A minimal HTTP/1.1 GET (the host would use its own HTTP client); returns
/// the body of a 200 response.
async fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    // Small replies with a Content-Length: the body is what follows the head.
    Ok(body.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = run(dir.path()).await?;
    println!("host HTTP on {} (im API under /im)", out.http);
    println!("GET /                      -> {}", out.host_page);
    println!("alice -> bob over TCP      -> seq {}", out.seq);
    println!("bob got (WebSocket v2)     -> {:?}", out.received);
    println!("GET /im/api/conversations  -> {}", out.bob_conversations);
    Ok(())
}
