//! Service-layer tests over the in-memory fakes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod accounts;
mod cluster;
mod groups;
mod lifecycle;
mod messaging;
mod presence;
mod social;
mod sync;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use im_cache::MemoryPresence;
use im_core::command::{Event, Reply, Request, SendRequest};
use im_core::{ErrorCode, Generation};
use im_service::queue;
use im_service::session::TransportKind;
use im_service::{
    AccountConfig, Dispatched, Hub, JwtAuth, MessageWriter, MessagingService, Outbound, Ports,
    ServiceConfig, Services, SessionCtx,
};
use im_testkit::{ManualClock, MemoryStore, SeqIds};
use tokio_util::sync::CancellationToken;

pub const SECRET: &[u8] = b"test-secret";

pub struct Env {
    pub store: Arc<MemoryStore>,
    pub presence: Arc<MemoryPresence>,
    pub services: Arc<Services>,
    pub clock: Arc<ManualClock>,
    _writer_tasks: tokio::task::JoinSet<()>,
}

pub fn env_with(cfg: ServiceConfig) -> Env {
    env_on(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryPresence::new()),
        Hub::new(),
        SeqIds::default(),
        cfg,
    )
}

/// Services over a given store and presence store (several nodes share
/// them), with `hub` and server ids from `ids`.
pub fn env_on(
    store: Arc<MemoryStore>,
    presence: Arc<MemoryPresence>,
    hub: Hub,
    ids: SeqIds,
    cfg: ServiceConfig,
) -> Env {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (writer, writer_tasks) = MessageWriter::spawn(store.clone(), &cfg.writer);
    let ports = Ports {
        messages: store.clone(),
        users: store.clone(),
        groups: store.clone(),
        conversations: store.clone(),
        presence: presence.clone(),
        friends: store.clone(),
        clock: clock.clone(),
        ids: Arc::new(ids),
    };
    let messaging = MessagingService::from_ports(ports, writer, Arc::new(hub), cfg.clone());
    let services = Arc::new(Services::new(
        JwtAuth::new(SECRET, cfg.allow_demo_tokens),
        messaging,
        store.clone(),
        store.clone(),
        AccountConfig::default(),
        im_service::FileService::unconfigured(),
    ));
    Env {
        store,
        presence,
        services,
        clock,
        _writer_tasks: writer_tasks,
    }
}

pub fn uid(s: &str) -> im_core::UserId {
    im_core::UserId::parse(s).unwrap()
}

pub fn env() -> Env {
    env_with(ServiceConfig {
        allow_demo_tokens: true,
        ..ServiceConfig::default()
    })
}

pub struct Conn {
    pub ctx: SessionCtx,
    pub rx: queue::Receiver<Outbound>,
    pub close: CancellationToken,
}

impl Conn {
    pub fn new(env: &Env) -> Self {
        let (tx, rx) = queue::channel(64);
        let close = CancellationToken::new();
        let id = env.services.messaging.hub().next_session_id();
        let ctx = SessionCtx::new(
            id,
            im_service::session::GenerationCell::fixed(Generation::V2),
            TransportKind::Tcp,
            tx,
            close.clone(),
            im_service::session::viewer_cell(),
        );
        Self { ctx, rx, close }
    }

    pub async fn call(&mut self, env: &Env, req: Request) -> Option<Reply> {
        match self.ctx.dispatch(&env.services, req).await {
            Dispatched::None => None,
            Dispatched::Reply(r) => Some(r),
            Dispatched::Later(f) => tokio::time::timeout(Duration::from_secs(5), f)
                .await
                .expect("send timed out"),
        }
    }

    pub async fn login(env: &Env, user: &str, platform: &str) -> Self {
        let mut c = Self::new(env);
        let r = c
            .call(
                env,
                Request::Auth {
                    user_id: user.into(),
                    token: format!("demo_token_{user}"),
                    platform: platform.into(),
                },
            )
            .await;
        assert!(
            matches!(
                r,
                Some(Reply::Auth {
                    code: ErrorCode::Success,
                    ..
                })
            ),
            "{r:?}"
        );
        c
    }

    pub fn events(&mut self) -> Vec<Outbound> {
        let mut v = Vec::new();
        while let Some(o) = self.rx.try_recv() {
            v.push(o);
        }
        v
    }

    /// The pushed events only (replies dropped; a BATCH_MSG counts as its
    /// messages).
    pub fn pushes(&mut self) -> Vec<Event> {
        self.events()
            .into_iter()
            .flat_map(|o| match o {
                Outbound::Event(e) => vec![e.as_ref().clone()],
                Outbound::Batch(b) => b
                    .messages
                    .iter()
                    .map(|v| Event::Message(std::sync::Arc::new(v.message.clone())))
                    .collect(),
                Outbound::Reply { .. } => Vec::new(),
            })
            .collect()
    }

    /// Closes the session as the transport does, awaiting the presence update.
    pub async fn close(mut self, env: &Env) {
        self.ctx.close(&env.services).await;
    }

    pub fn user_id(&self) -> String {
        self.ctx.viewer().to_owned()
    }
}

/// Sends `body` from `conn` to `conv`; returns the reply.
pub async fn send(env: &Env, conn: &mut Conn, conv: &str, cid: &str, body: &str) -> Reply {
    conn.call(env, text(conv, cid, body)).await.unwrap()
}

/// The code of a reply.
pub fn code_of(r: &Reply) -> ErrorCode {
    match r {
        Reply::Send { code, .. }
        | Reply::Auth { code, .. }
        | Reply::Revoke { code, .. }
        | Reply::BatchSync { code, .. }
        | Reply::SyncRange { code, .. }
        | Reply::SyncInbox { code, .. }
        | Reply::ReadReceipt { code, .. }
        | Reply::OnlineStatus { code, .. }
        | Reply::Error { code, .. } => *code,
        Reply::Heartbeat { .. } => ErrorCode::Success,
    }
}

/// The message of an error reply.
pub fn msg_of(r: &Reply) -> String {
    match r {
        Reply::Send { msg, .. }
        | Reply::Auth { msg, .. }
        | Reply::Revoke { msg, .. }
        | Reply::BatchSync { msg, .. }
        | Reply::SyncRange { msg, .. }
        | Reply::SyncInbox { msg, .. }
        | Reply::ReadReceipt { msg, .. }
        | Reply::OnlineStatus { msg, .. }
        | Reply::Error { msg, .. } => msg.clone(),
        Reply::Heartbeat { .. } => String::new(),
    }
}

pub fn text(conv: &str, cid: &str, body: &str) -> Request {
    Request::Send(SendRequest {
        client_msg_id: cid.into(),
        conversation_id: conv.into(),
        message_type: 1,
        content: bytes::Bytes::copy_from_slice(body.as_bytes()),
        send_time: 1,
        ..SendRequest::default()
    })
}
